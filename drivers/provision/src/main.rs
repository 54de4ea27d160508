//! `scaleway-provision`: see the library for the contract.

use std::process::ExitCode;

use opennebula::driver::{Env, Io};

fn main() -> ExitCode {
    let io = Io {
        stdin: &mut std::io::stdin().lock(),
        stdout: &mut std::io::stdout().lock(),
        // Not locked: the progress of the worker threads goes to stderr too.
        stderr: &mut std::io::stderr(),
    };
    ExitCode::from(scaleway_provision::main_with(
        std::env::args_os().collect(),
        &Env::from_process(),
        io,
    ))
}
