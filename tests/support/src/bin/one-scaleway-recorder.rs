//! `one-scaleway-recorder`: stands in for one of our action files (the test
//! harness links `remotes/<kind>/<driver>/<action>` to it) and records what
//! OpenNebula really sends, then runs the real action unchanged.
//!
//! It writes `<ONE_SCALEWAY_RECORD_DIR>/<ns>-<pid>-<kind>-<driver>-<action>.stdin`
//! (stdin as received) and `.args` (one argument a line), then runs the
//! driver binary of the same folder (`scaleway-ipam` or `scaleway-vnm`) with
//! the action file as argv[0], the same arguments and stdin, and exits with
//! its code. The recordings become the test fixtures (`tests/fixtures/`).
//! With `ONE_SCALEWAY_RECORD_ONLY` listing the action's kind (`vnm`, `ipam`),
//! it only records and succeeds.
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
    let action_file = PathBuf::from(&argv0);
    let name = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let action = name(Some(&action_file));
    let folder = action_file.parent();
    let driver = name(folder);
    let kind = name(folder.and_then(Path::parent));
    let Some(folder) = folder else {
        return fail("argv[0] has no folder");
    };
    let Some(program) = ["scaleway-ipam", "scaleway-vnm"]
        .iter()
        .map(|p| folder.join(p))
        .find(|p| p.is_file())
    else {
        return fail(&format!(
            "no scaleway-ipam or scaleway-vnm beside {}",
            action_file.display()
        ));
    };
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
        let args_text: String = args.iter().map(|a| format!("{}\n", a.to_string_lossy())).collect();
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
