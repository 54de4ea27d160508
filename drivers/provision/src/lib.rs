//! `scaleway-provision`: an edge cluster's whole lifecycle on Scaleway
//! (VPC, private network, public gateway, SSH keys, Elastic Metal servers),
//! and the OpenNebula objects to register for it.
//!
//! This version has no commands yet: it answers `--help` and `--version`
//! and says so for anything else.

use std::ffi::OsString;

use clap::Parser;
use opennebula::cli::{EXIT_USAGE, parse_args};
use opennebula::driver::Io;

const PROGRAM: &str = "scaleway-provision";

/// Creates, grows, shrinks and deletes OpenNebula edge clusters on Scaleway Elastic Metal.
#[derive(Debug, Parser)]
#[command(name = PROGRAM, version, after_help = "\
Status: no commands are available in this version. The provision driver will create a cluster \
from a provision description (create, with --dry-run), add and remove hosts and public IPs, \
show it, and delete it with everything it created.")]
struct Cli {}

/// Runs the program with the given argv and streams; returns the exit code.
pub fn main_with(argv: Vec<OsString>, mut io: Io<'_>) -> u8 {
    match parse_args::<Cli>(argv, &mut io) {
        Ok(Cli {}) => {
            let _ = writeln!(
                io.stderr,
                "{PROGRAM}: no commands are available in one-scaleway {} yet (see --help)",
                env!("CARGO_PKG_VERSION")
            );
            EXIT_USAGE
        }
        Err(code) => code,
    }
}
