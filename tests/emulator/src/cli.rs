//! The command line: serving (with the network mode's signal handling),
//! the `exec` and `cleanup` subcommands, and the `scaleway-emulator-ssh`
//! alias. See the crate documentation.

use std::ffi::OsString;
use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use opennebula::cli::{EXIT_USAGE, parse_args};
use opennebula::driver::{EXIT_FAILURE, Io};

use crate::network::{self, NetworkOptions};
use crate::{DEFAULT_SPEED, Emulator, Options, StartError};

const PROGRAM: &str = "scaleway-emulator";

/// A local emulator of the Scaleway API (flexible IPs, Elastic Metal, VPC, public gateways, IPAM, IAM SSH keys).
#[derive(Debug, Parser)]
#[command(name = PROGRAM, version, args_conflicts_with_subcommands = true, after_help = "\
Prints `listening on http://127.0.0.1:PORT` as its first line, then serves until killed.
Point a client at it with SCW_API_URL=http://127.0.0.1:PORT and any UUID as secret key.
Control endpoints live under /_emulator/ (state, calls, faults, clock, speed, projects, stock, reset, network);
see the crate documentation (cargo doc -p scaleway-emulator) for their shapes.

Network mode (--network PREFIX, root and iproute2 needed): the internet is namespace PREFIX-inet (client
192.0.2.1 and 2001:db8::1 on its lo); each installed server is namespace PREFIX-<first 8 hex digits of its id>
(eth0 = its public addresses, scwpriv0... = its attached private networks, each a bridge br0 in
PREFIX-pn-<8 hex>); attached flexible IPs are routed by PREFIX-inet to their server. SIGTERM/SIGINT delete
every namespace it created. Run programs on a server with `scaleway-emulator exec`; a symlink named
scaleway-emulator-ssh behaves as `ssh [OPTIONS] HOST COMMAND...` (for ONE_SCALEWAY_SSH; prefix and state root
from SCALEWAY_EMULATOR_PREFIX and SCALEWAY_EMULATOR_STATE_ROOT).")]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    /// Loopback address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Accept only this secret key (X-Auth-Token); repeatable. Without it any UUID is accepted.
    #[arg(long = "secret-key", value_name = "UUID")]
    secret_keys: Vec<String>,
    /// Multiply every simulated delay by F (1.0 = realistic: a FIP attach takes 5 s, an OS install about 6 min;
    /// 0.01 suits tests).
    #[arg(long, value_name = "F", default_value_t = DEFAULT_SPEED)]
    speed: f64,
    /// Start with a frozen clock that only POST /_emulator/clock moves.
    #[arg(long)]
    manual_clock: bool,
    /// Seed for generated ids, addresses and fault probabilities (reproducible runs).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// A project that exists from the start (gets a default VPC in every region); repeatable.
    #[arg(long = "project-id", value_name = "UUID")]
    project_ids: Vec<String>,
    /// Network mode: servers, private networks and flexible IPs become network namespaces named PREFIX-...
    /// (1 to 12 lower-case letters and digits; root needed).
    #[arg(long, value_name = "PREFIX")]
    network: Option<String>,
    /// Network mode: folder of the per-server folders and hosts.json (default /run/scaleway-emulator/PREFIX).
    #[arg(long, value_name = "DIR", requires = "network")]
    state_root: Option<std::path::PathBuf>,
    /// Network mode: MTU of the servers' private NICs.
    #[arg(long, value_name = "N", default_value_t = 1500, requires = "network")]
    mtu: u32,
    /// Network mode: start FRR (zebra and bgpd, /usr/lib/frr) in every server's namespace, with its own
    /// folder STATE_ROOT/<server id>/frr (the server's /run/frr with --host-fs, else named by
    /// ONE_SCALEWAY_FRR_DIR in the server's env file).
    #[arg(long, requires = "network")]
    frr: bool,
    /// Network mode: every server gets its own /etc and /var/lib (overlays of this machine's), /var/tmp
    /// and /run for what `exec` and the ssh alias run there, kept in STATE_ROOT/<server id>/fs.
    #[arg(long, requires = "network")]
    host_fs: bool,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Runs PROGRAM ARGS... in a server's namespace (network mode): TARGET is its public IPv4/IPv6 address,
    /// id or name, or `internet`. Without --host-fs, sets ONE_SCALEWAY_STATE_DIR and ONE_SCALEWAY_HOST_LOCK
    /// to the server's own folder; exits with the program's code.
    Exec(network::exec::ExecArgs),
    /// Deletes the namespaces (PREFIX-inet, PREFIX-<8 hex>, PREFIX-pn-<8 hex>) and folders a killed emulator left.
    Cleanup(network::exec::CleanupArgs),
    /// Internal (what `exec` and the ssh alias run): a server's own files mounted, the login user, then PROGRAM.
    #[command(name = "enter-host-fs", hide = true)]
    EnterHostFs(network::exec::EnterArgs),
}

/// The signals that stop the binary cleanly in the network mode.
fn stop_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    set
}

/// Runs the program with the given argv and streams; returns the exit code.
pub fn main_with(argv: Vec<OsString>, mut io: Io<'_>) -> u8 {
    let alias = argv
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == "scaleway-emulator-ssh" || n == "ssh");
    // A copy named as the alias (a setuid one) runs itself again to enter a
    // server, as root by then: another user may not call that directly.
    let entering = argv.get(1).is_some_and(|a| a == "enter-host-fs");
    if entering && !nix::unistd::getuid().is_root() {
        let _ = writeln!(io.stderr, "{PROGRAM}: enter-host-fs is internal (run by root only)");
        return 2;
    }
    if alias && !entering {
        return network::exec::ssh_main(argv.get(1..).unwrap_or_default(), &mut io);
    }
    let cli = match parse_args::<Cli>(argv, &mut io) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match cli.command {
        Some(Sub::Exec(args)) => return network::exec::exec_main(args, &mut io),
        Some(Sub::Cleanup(args)) => return network::exec::cleanup_main(args, &mut io),
        Some(Sub::EnterHostFs(args)) => return network::exec::enter_main(&args, &mut io),
        None => {}
    }
    let network = cli.network.map(|prefix| NetworkOptions {
        state_root: cli.state_root.unwrap_or_else(|| network::default_state_root(&prefix)),
        mtu: cli.mtu,
        frr: cli.frr,
        host_fs: cli.host_fs,
        prefix,
    });
    // In the network mode, SIGTERM/SIGINT/SIGHUP are taken by a thread (blocked
    // here, before any thread starts, so every thread inherits the mask) that
    // stops the emulator, which then deletes its namespaces.
    let signals = network.is_some().then(stop_signals);
    if let Some(set) = &signals
        && let Err(e) = set.thread_block()
    {
        let _ = writeln!(io.stderr, "{PROGRAM}: cannot block signals: {e}");
        return EXIT_FAILURE;
    }
    let options = Options {
        listen: cli.listen,
        secret_keys: cli.secret_keys,
        speed: cli.speed,
        manual_clock: cli.manual_clock,
        seed: cli.seed,
        project_ids: cli.project_ids,
        network,
    };
    let mut running = match Emulator::start(options) {
        Ok(r) => r,
        Err(e @ (StartError::NotLoopback(_) | StartError::BadOption(_))) => {
            let _ = writeln!(io.stderr, "{PROGRAM}: {e}");
            return EXIT_USAGE;
        }
        Err(e) => {
            let _ = writeln!(io.stderr, "{PROGRAM}: {e}");
            return EXIT_FAILURE;
        }
    };
    if let Some(set) = signals {
        let stopper = running.stopper();
        std::thread::spawn(move || {
            if set.wait().is_ok() {
                stopper.stop();
            }
        });
    }
    if writeln!(io.stdout, "listening on {}", running.url())
        .and_then(|()| io.stdout.flush())
        .is_err()
    {
        return EXIT_FAILURE;
    }
    running.wait();
    running.stop();
    0
}
