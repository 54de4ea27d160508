//! `one-scaleway-recorder`: stands in for one of our driver binaries (the
//! test harness moves `remotes/<kind>/<driver>/scaleway-{ipam,vnm}` to
//! `<binary>.real` and puts this program in its place, so the installed
//! action files run it exactly as they run the driver) and records what
//! OpenNebula really sends, then runs the real binary unchanged.
//!
//! It writes `<ONE_SCALEWAY_RECORD_DIR>/<ns>-<pid>-<kind>-<driver>-<action>.stdin`
//! (stdin as received) and `.args` (OpenNebula's arguments, one a line: the
//! words after `--`), then runs `<binary>.real` with the same arguments and
//! stdin, and exits with its code. The recordings become the test fixtures
//! (`tests/fixtures/`). With `ONE_SCALEWAY_RECORD_ONLY` listing the action's
//! kind (`vnm`, `ipam`), it only records and succeeds.
#![allow(clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

fn fail(message: &str) -> ExitCode {
    eprintln!("one-scaleway-recorder: {message}");
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let mut argv = std::env::args_os();
    let Some(argv0) = argv.next() else {
        return fail("no argv[0]");
    };
    let args: Vec<_> = argv.collect();
    let binary = PathBuf::from(&argv0);
    let name = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let folder = binary.parent();
    let driver = name(folder);
    let kind = name(folder.and_then(Path::parent));
    // The action file's words: [--driver D] ACTION -- OpenNebula's arguments.
    let words: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let split = words.iter().position(|w| w == "--").unwrap_or(words.len());
    let (own, given) = words.split_at(split);
    let action = own
        .iter()
        .enumerate()
        .filter(|(i, w)| !(w.starts_with("--") || (*i > 0 && own[i - 1] == "--driver")))
        .map(|(_, w)| w.clone())
        .next()
        .unwrap_or_default();
    let given: Vec<&String> = given.iter().skip(1).collect();
    let mut program = binary.clone().into_os_string();
    program.push(".real");
    let program = PathBuf::from(program);
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        return fail(&format!("cannot read stdin: {e}"));
    }
    if let Some(dir) = std::env::var_os("ONE_SCALEWAY_RECORD_DIR") {
        let ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let base = PathBuf::from(dir).join(format!("{ns}-{}-{kind}-{driver}-{action}", std::process::id()));
        let args_text: String = given.iter().map(|a| format!("{a}\n")).collect();
        let written = std::fs::write(base.with_extension("stdin"), &stdin)
            .and_then(|()| std::fs::write(base.with_extension("args"), args_text));
        if let Err(e) = written {
            return fail(&format!("cannot record into {}: {e}", base.display()));
        }
    }
    // Record only (the test's hosts are this machine): succeed, change nothing.
    if std::env::var("ONE_SCALEWAY_RECORD_ONLY").is_ok_and(|kinds| kinds.split(',').any(|k| k == kind)) {
        return ExitCode::SUCCESS;
    }
    let child = Command::new(&program)
        .arg0(&argv0)
        .args(&args)
        .stdin(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return fail(&format!("cannot run {}: {e}", program.display())),
    };
    if let Some(mut pipe) = child.stdin.take() {
        // The action may exit before reading everything: a broken pipe is fine.
        let _ = pipe.write_all(&stdin);
    }
    match child.wait() {
        Ok(status) => match status.code() {
            Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            None => ExitCode::from(128 + u8::try_from(status.signal().unwrap_or(0)).unwrap_or(0)),
        },
        Err(e) => fail(&format!("cannot wait for {}: {e}", program.display())),
    }
}
