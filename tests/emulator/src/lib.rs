//! `scaleway-emulator`: a local Scaleway API for our tests and the sandbox.
//!
//! Contract: `scaleway-emulator --listen 127.0.0.1:PORT` (port 0 picks one)
//! prints `listening on http://127.0.0.1:PORT` as its first stdout line and
//! serves the Scaleway paths the drivers use, with control endpoints under
//! `/_emulator/`. This version only parses its command line and says the
//! server is not available yet.

use std::ffi::OsString;
use std::net::SocketAddr;

use clap::Parser;
use opennebula::cli::parse_args;
use opennebula::driver::{EXIT_FAILURE, Io};

const PROGRAM: &str = "scaleway-emulator";

/// A local emulator of the Scaleway API (flexible IPs, Elastic Metal, VPC, public gateways, IAM SSH keys).
#[derive(Debug, Parser)]
#[command(name = PROGRAM, version, after_help = "\
Status: the server is not available in this version yet.")]
struct Cli {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

/// Runs the program with the given argv and streams; returns the exit code.
pub fn main_with(argv: Vec<OsString>, mut io: Io<'_>) -> u8 {
    match parse_args::<Cli>(argv, &mut io) {
        Ok(cli) => {
            let _ = writeln!(
                io.stderr,
                "{PROGRAM}: cannot listen on {}: the emulator is not available in one-scaleway {} yet",
                cli.listen,
                env!("CARGO_PKG_VERSION")
            );
            EXIT_FAILURE
        }
        Err(code) => code,
    }
}
