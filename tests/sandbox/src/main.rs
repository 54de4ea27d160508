//! `one-scaleway-sandbox`: what `sudo ./sandbox.sh` runs after building and
//! installing. It plays a whole edge cluster's life on this machine with
//! the programs of an install (`install.sh -d DIR`), calling them as
//! OpenNebula and its administrator would, against the Scaleway emulator
//! (in its network mode: servers, private networks and flexible-IP routes
//! as network namespaces, FRR on every server) and an oned stand-in:
//!
//! 1. `scaleway-provision create`: 2 hosts, 2 public IPs (the hosts are
//!    bootstrapped through the emulator's ssh alias; the package, access
//!    and service phases are skipped: the "OS image" has FRR running);
//! 2. the public network (the IPAM driver registered the flexible IPs) and
//!    a private network from the provision's template;
//! 3. two VMs (namespaces on the hosts' bridges), `pre`/`post` where oned
//!    runs them;
//! 4. real packets: the internet to each VM's flexible IP, each VM to the
//!    internet (seen from its flexible IP), VM to VM over VXLAN/EVPN;
//! 5. a live migration, and the same checks;
//! 6. teardown, and nothing left at Scaleway, in oned, in the kernel, in
//!    FRR, on this machine.
//!
//! Exit: 0 when every step and check passed, 1 otherwise, 130 when
//! interrupted (Ctrl-C, SIGTERM), 2 for a bad command line. Whatever
//! happens, everything it made is removed (by name and PID) before it
//! exits. Must run as root.

mod ctl;
mod netns;
mod report;
mod sandbox;
mod story;
mod teardown;
mod vmdoc;
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
Run it through sandbox.sh (sudo ./sandbox.sh [--keep] [--speed F]), which builds, installs into a temporary \
folder and passes it as --one-location. Root is needed (network namespaces, nftables, FRR). A log of every \
program run is written to $TMPDIR/one-scaleway-sandbox-PREFIX.log."
)]
struct Cli {
    /// The install to use: a folder made by `install.sh -d DIR` (OpenNebula's ONE_LOCATION layout).
    #[arg(long, value_name = "DIR", required_unless_present = "cleanup")]
    one_location: Option<PathBuf>,
    /// Leave the sandbox up after the checks, until Ctrl-C (then tear it down and check).
    #[arg(long)]
    keep: bool,
    /// Emulator speed: every Scaleway delay is multiplied by F (1.0 is realistic: an OS install takes about 6 min).
    #[arg(long, value_name = "F", default_value_t = 0.1)]
    speed: f64,
    /// Prefix of every namespace (1 to 12 lower-case letters and digits).
    #[arg(long, default_value = "sbx")]
    prefix: String,
    /// Remove what a killed sandbox left (its namespaces, FRR daemons, folders) and exit.
    #[arg(long)]
    cleanup: bool,
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .is_some_and(|u| u == "0")
}

/// `--cleanup`: the VM namespaces by name, then the emulator's leftovers.
fn cleanup(prefix: &str, emulator: Option<PathBuf>) -> ExitCode {
    let ctl = Ctl::default();
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
        return cleanup(&cli.prefix, cli.one_location.map(|d| d.join("bin/scaleway-emulator")));
    }
    let Some(one_location) = cli.one_location else {
        eprintln!("one-scaleway-sandbox: --one-location DIR is needed");
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
    if !leftovers.is_empty() {
        eprintln!(
            "one-scaleway-sandbox: namespaces {} exist: another sandbox runs, or one was killed (then: \
             sudo ./sandbox.sh --cleanup, or use --prefix)",
            leftovers.join(", ")
        );
        return ExitCode::FAILURE;
    }
    let opts = Opts {
        one_location,
        prefix: cli.prefix.clone(),
        speed: cli.speed,
        keep: cli.keep,
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
        "one-scaleway sandbox: an edge cluster on emulated Scaleway Elastic Metal, driven by the programs in {}",
        sb.paths.one.display()
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
