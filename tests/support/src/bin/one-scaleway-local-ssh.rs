//! `one-scaleway-local-ssh`: an `ssh` for a test oned whose hosts are this
//! machine. Put first on oned's `PATH` (as `ssh`), it takes OpenNebula's
//! `ssh [OPTIONS] HOST COMMAND...` and runs COMMAND's words here, as the
//! calling user, with stdin, stdout and stderr passed through (OpenNebula's
//! ssh stream: `ssh HOST bash -s`). Only for tests whose host actions change
//! nothing on the machine (recorded, not run); hosts that do change
//! networking are the emulator's namespaces (`scaleway-emulator-ssh`).
#![allow(clippy::expect_used)]

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

/// ssh's options that take a value.
const WITH_VALUE: &str = "bcDEeFIiJLlmOopQRSWw";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        let Some(flags) = a.strip_prefix('-') else { break };
        i += 1;
        // -oX=Y (value attached) or -o X=Y (next word).
        if let Some(first) = flags.chars().next()
            && WITH_VALUE.contains(first)
            && flags.len() == 1
        {
            i += 1;
        }
    }
    // HOST, then the command's words.
    let words = args.get(i + 1..).unwrap_or_default();
    let Some((program, rest)) = words.split_first() else {
        eprintln!("one-scaleway-local-ssh: no command (an interactive login is not supported)");
        return ExitCode::from(255);
    };
    let e = Command::new(program).args(rest).exec();
    eprintln!("one-scaleway-local-ssh: cannot run {program}: {e}");
    ExitCode::from(255)
}
