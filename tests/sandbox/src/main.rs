//! `one-scaleway-sandbox`: what `sudo ./sandbox.sh` runs after building.
//! It plays a whole edge cluster's life on this machine the way an
//! OpenNebula administrator does, against a real oned (OpenNebula built
//! from source, our build installed into it with `install.sh -d`, oned and
//! every driver running as oneadmin) and the Scaleway emulator in its
//! network mode (servers, private networks and flexible-IP routes as
//! network namespaces, FRR on every server, each server its own files):
//!
//! 1. `scaleway-provision provider create` of the installed provider file,
//!    then `create --json` as oneadmin: 2 hosts, 2 public IPs (the
//!    hosts bootstrapped through the emulator's ssh alias; the package and
//!    service phases skipped: the "OS image" has FRR running), registered
//!    in oned;
//! 2. the public network (oned ran the IPAM driver, which made the flexible
//!    IPs) and a private network instantiated from the provision's template;
//! 3. two VMs created and deployed through oned, which runs the network
//!    drivers (host actions through its ssh stream, as oneadmin, with the
//!    shipped sudoers rules) around its VM driver, whose actions the
//!    sandbox's "libvirtd" turns into namespaces (`libvirt`);
//! 4. real packets: the internet to each VM's flexible IP, each VM to the
//!    internet (seen from its flexible IP), VM to VM over VXLAN/EVPN;
//! 5. a poweroff and resume, a live migration (`--hypervisor lxc`: LXC
//!    hosts, a VM replaced on the other host instead), and the same checks; then
//!    vm2, beside vm1, tries to take vm1's traffic with real packets
//!    (`hostile`): source spoofing, gratuitous ARP, vm1's MAC;
//! 6. day 2 (`day2`): `ip add`, `onevnet addar`, a NIC hot-attached (real
//!    packets on its flexible IP) and detached, `onevnet rmar`, `ip
//!    delete`, `host add` (a VM moved onto it, EVPN across), `host
//!    delete`, a VM deleted during its live migration (KVM);
//! 7. teardown (`delete`, then `provider delete`), and nothing left at Scaleway, in oned, in the kernel, in
//!    FRR, on this machine.
//!
//! Exit: 0 when every step and check passed, 1 otherwise, 130 when
//! interrupted (Ctrl-C, SIGTERM), 2 for a bad command line. Whatever
//! happens, everything it made is removed (by name and PID) before it
//! exits. Must run as root.

mod checks;
mod ctl;
mod day2;
mod hostile;
mod libvirt;
mod netns;
mod report;
mod sandbox;
mod secgroups;
mod story;
mod teardown;
mod timing;
mod vms;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::ctl::{Ctl, ip};
use crate::report::Report;
use crate::sandbox::{Opts, Sandbox};
use crate::teardown::Machine;

/// Rehearses a whole OpenNebula edge cluster on Scaleway Elastic Metal on this machine (emulated Scaleway,
/// hosts and VMs as network namespaces, real nftables and FRR), with the drivers of an install.
#[derive(Debug, Parser)]
#[command(
    name = "one-scaleway-sandbox",
    version,
    after_help = "\
Run it through sandbox.sh (sudo ./sandbox.sh [--keep] [--timing] [--speed F]), which builds OpenNebula (cached) and \
our workspace, then passes --bindir target/release. Root is needed (network namespaces, nftables, FRR, oned \
as oneadmin). A log of every program run is written to $TMPDIR/one-scaleway-sandbox-PREFIX.log."
)]
struct Cli {
    /// The build to use: the folder of our binaries and the test hypervisor (target/release). OpenNebula is
    /// the installation ONE_SCALEWAY_ONED names, else what tests/oned/build.sh builds (cached).
    #[arg(long, value_name = "DIR", required_unless_present = "cleanup")]
    bindir: Option<PathBuf>,
    /// Leave the sandbox up after the checks, until Ctrl-C (then tear it down and check).
    #[arg(long)]
    keep: bool,
    /// Part 7: a VM deployed and terminated at Scaleway's own speed (emulator speed 1.0), timed against
    /// the same without our drivers (prints the figures).
    #[arg(long)]
    timing: bool,
    /// Emulator speed: every Scaleway delay is multiplied by F (1.0 is realistic: an OS install takes about 6 min).
    #[arg(long, value_name = "F", default_value_t = 0.1)]
    speed: f64,
    /// The hosts' hypervisor: kvm, or lxc (OpenNebula's LXC path: a veth on the bridge, no live
    /// migration; VMs are replaced, not moved).
    #[arg(long, value_enum, default_value = "kvm")]
    hypervisor: sandbox::Hypervisor,
    /// Prefix of every namespace (1 to 12 lower-case letters and digits).
    #[arg(long, default_value = "sbx")]
    prefix: String,
    /// Remove what a killed sandbox left (its namespaces, FRR daemons, folders) and exit.
    #[arg(long)]
    cleanup: bool,
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `--cleanup`: the VM namespaces by name, then the emulator's leftovers.
fn cleanup(prefix: &str, emulator: Option<PathBuf>) -> ExitCode {
    let ctl = Ctl::default();
    for line in sandbox::cleanup_made(prefix) {
        println!("{line}");
    }
    let vm = format!("{prefix}-vm");
    for ns in netns::namespaces() {
        if ns
            .strip_prefix(&vm)
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        {
            match ip(&ctl, &["netns", "del", &ns]) {
                Ok(_) => println!("deleted namespace {ns}"),
                Err(e) => eprintln!("{e:#}"),
            }
        }
    }
    let program = emulator.unwrap_or_else(|| PathBuf::from("scaleway-emulator"));
    match std::process::Command::new(&program)
        .args(["cleanup", "--prefix", prefix])
        .status()
    {
        Ok(s) if s.success() => {
            println!("cleanup of the sandbox with prefix {prefix}: done");
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("cannot run {} cleanup: {e}", program.display());
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if !is_root() {
        eprintln!("one-scaleway-sandbox needs root (network namespaces, nftables, FRR): sudo ./sandbox.sh");
        return ExitCode::FAILURE;
    }
    if let Err(e) = scaleway_emulator::network::check_prefix(&cli.prefix) {
        eprintln!("one-scaleway-sandbox: --prefix: {e}");
        return ExitCode::from(2);
    }
    if !(cli.speed.is_finite() && cli.speed > 0.0 && cli.speed <= 1.0) {
        eprintln!("one-scaleway-sandbox: --speed {}: a number in (0, 1]", cli.speed);
        return ExitCode::from(2);
    }
    if cli.cleanup {
        return cleanup(&cli.prefix, cli.bindir.map(|d| d.join("scaleway-emulator")));
    }
    let Some(bindir) = cli.bindir else {
        eprintln!("one-scaleway-sandbox: --bindir DIR is needed");
        return ExitCode::from(2);
    };
    let ctl = Ctl::default();
    // First, before any thread: Ctrl-C and SIGTERM go to a thread that stops the children.
    if let Err(e) = ctl::take_signals(&ctl) {
        eprintln!("one-scaleway-sandbox: {e:#}");
        return ExitCode::FAILURE;
    }
    let log = std::env::temp_dir().join(format!("one-scaleway-sandbox-{}.log", cli.prefix));
    let _ = std::fs::write(&log, "");
    ctl.set_log(&log);
    let leftovers: Vec<String> = netns::namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{}-", cli.prefix)))
        .collect();
    if sandbox::marker(&cli.prefix).exists() {
        eprintln!(
            "one-scaleway-sandbox: {} exists: another sandbox runs, or one was killed (then: sudo ./sandbox.sh \
             --cleanup, or use --prefix)",
            sandbox::marker(&cli.prefix).display()
        );
        return ExitCode::FAILURE;
    }
    if !leftovers.is_empty() {
        eprintln!(
            "one-scaleway-sandbox: namespaces {} exist: another sandbox runs, or one was killed (then: \
             sudo ./sandbox.sh --cleanup, or use --prefix)",
            leftovers.join(", ")
        );
        return ExitCode::FAILURE;
    }
    let opts = Opts {
        bindir,
        prefix: cli.prefix.clone(),
        speed: cli.speed,
        keep: cli.keep,
        timing: cli.timing,
        hypervisor: cli.hypervisor,
    };
    let before = Machine::observe(&ctl, &opts.prefix);
    let mut rep = Report::new();
    let mut sb = match Sandbox::new(opts, ctl.clone()) {
        Ok(sb) => sb,
        Err(e) => {
            eprintln!("one-scaleway-sandbox: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "one-scaleway sandbox: an edge cluster on emulated Scaleway Elastic Metal, a real oned, the programs of {}",
        sb.paths.bindir.display()
    );
    let played = story::run(&mut sb, &mut rep).and_then(|()| teardown::run(&mut sb, &mut rep, &before));
    let interrupted = ctl.cancelled();
    if played.is_err() {
        teardown::abort(&mut sb, &mut rep, &before);
    }
    drop(sb);
    print!("{}", rep.summary(interrupted));
    println!("  log of every program run: {}", log.display());
    if interrupted {
        ExitCode::from(130)
    } else if played.is_ok() && rep.all_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
