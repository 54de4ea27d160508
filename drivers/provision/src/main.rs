//! `scaleway-provision`: see the library for the contract.

use std::process::ExitCode;

use opennebula::driver::{Env, Io};

fn main() -> ExitCode {
    let io = Io {
        stdin: &mut std::io::stdin().lock(),
        stdout: &mut std::io::stdout().lock(),
        stderr: &mut std::io::stderr().lock(),
    };
    ExitCode::from(scaleway_provision::main_with(
        std::env::args_os().collect(),
        &Env::from_process(),
        io,
    ))
}
