//! Stand-ins the drivers run instead of the real tools, when the bench's
//! own executable is called through a link with the tool's name:
//!
//! - `ip`, `nft`, `sysctl`, `vtysh`, `frr-reload.py`: **record/replay**.
//!   Recording (`ONE_SCALEWAY_BENCH_SHIM=record`) runs the real tool and
//!   appends the call (arguments, stdin) and its answer (stdout, stderr,
//!   exit code) to a tape; replaying (`=replay`) answers each call from the
//!   tape at once, without the kernel or FRR. The n-th identical call of a
//!   run gets the n-th recorded answer (claims in `ONE_SCALEWAY_BENCH_CLAIMS`,
//!   emptied before each run). A call not on the tape fails (exit 97).
//! - `bench-ssh`: the frontend's SSH to a host. For `scaleway-vnm clean`
//!   (`ssh ... HOST PATH/clean_host`) it reads the document and succeeds;
//!   for `scaleway-provision` (`ssh ... USER@HOST -- ARGV`) it answers like
//!   a freshly installed Ubuntu server (the provision tests' fake hosts).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

/// Tools with a record/replay stand-in.
pub const TOOLS: [&str; 5] = ["ip", "nft", "sysctl", "vtysh", "frr-reload.py"];
/// The SSH stand-in's name.
pub const SSH: &str = "bench-ssh";

pub const MODE_ENV: &str = "ONE_SCALEWAY_BENCH_SHIM";
pub const TAPE_ENV: &str = "ONE_SCALEWAY_BENCH_TAPE";
pub const CLAIMS_ENV: &str = "ONE_SCALEWAY_BENCH_CLAIMS";
pub const REAL_PATH_ENV: &str = "ONE_SCALEWAY_BENCH_REAL_PATH";
/// Debian's `frr-reload.py` (the evpn driver's default).
pub const FRR_RELOAD: &str = "/usr/lib/frr/frr-reload.py";

/// Whether `name` (argv0's file name) is a stand-in.
pub fn is_shim(name: &str) -> bool {
    name == SSH || TOOLS.contains(&name)
}

/// Runs the stand-in `name`; returns the exit code.
pub fn main(name: &str, args: &[String]) -> u8 {
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let (code, out, err) = if name == SSH {
        ssh(args)
    } else {
        match std::env::var(MODE_ENV).as_deref() {
            Ok("record") => record(name, args, &stdin),
            Ok("replay") => replay(name, args, &stdin),
            _ => (
                97,
                String::new(),
                format!("one-scaleway-bench {name}: {MODE_ENV} is not set\n"),
            ),
        }
    };
    let _ = std::io::stdout().write_all(out.as_bytes());
    let _ = std::io::stderr().write_all(err.as_bytes());
    code
}

fn key(name: &str, args: &[String], stdin: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    (name, args, stdin).hash(&mut h);
    h.finish()
}

/// The real program behind a stand-in.
fn real_program(name: &str) -> Option<PathBuf> {
    if name == "frr-reload.py" {
        return Some(PathBuf::from(FRR_RELOAD));
    }
    let path = std::env::var_os(REAL_PATH_ENV)?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

fn record(name: &str, args: &[String], stdin: &[u8]) -> (u8, String, String) {
    let fail = |m: String| (97, String::new(), format!("one-scaleway-bench {name}: {m}\n"));
    let Some(program) = real_program(name) else {
        return fail(format!("the real {name} is not found in {REAL_PATH_ENV}"));
    };
    let out = match opennebula::process::run(Command::new(&program).args(args), stdin, Duration::from_secs(600)) {
        Ok(o) => o,
        Err(e) => return fail(format!("running {}: {e}", program.display())),
    };
    let code = u8::try_from(out.status.code().unwrap_or(1)).unwrap_or(1);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    let entry = json!({
        "key": format!("{:016x}", key(name, args, stdin)),
        "tool": name,
        "args": args,
        "stdin": String::from_utf8_lossy(stdin),
        "code": code,
        "stdout": stdout,
        "stderr": stderr,
    });
    let tape = std::env::var_os(TAPE_ENV).map(PathBuf::from);
    let written = tape.as_ref().is_some_and(|t| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(t)
            .and_then(|mut f| f.write_all(format!("{entry}\n").as_bytes()))
            .is_ok()
    });
    if !written {
        return fail(format!("cannot append to the tape {TAPE_ENV}={tape:?}"));
    }
    (code, stdout, stderr)
}

/// Claims the next occurrence of `key` in this run: 0, 1, ...
fn claim(dir: &Path, key: &str) -> usize {
    (0..10_000)
        .find(|n| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dir.join(format!("{key}-{n}")))
                .is_ok()
        })
        .unwrap_or(0)
}

fn replay(name: &str, args: &[String], stdin: &[u8]) -> (u8, String, String) {
    let k = format!("{:016x}", key(name, args, stdin));
    let tape = std::env::var_os(TAPE_ENV)
        .and_then(|t| std::fs::read_to_string(t).ok())
        .unwrap_or_default();
    let matches: Vec<Value> = tape
        .lines()
        .filter(|l| l.contains(&k))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["key"] == k.as_str())
        .collect();
    if matches.is_empty() {
        return (
            97,
            String::new(),
            format!(
                "one-scaleway-bench: no recorded answer for `{name} {}` (stdin {} bytes)\n",
                args.join(" "),
                stdin.len()
            ),
        );
    }
    let n = std::env::var_os(CLAIMS_ENV).map_or(0, |d| claim(Path::new(&d), &k));
    let entry = &matches[n.min(matches.len() - 1)];
    (
        entry["code"].as_u64().and_then(|c| u8::try_from(c).ok()).unwrap_or(1),
        entry["stdout"].as_str().unwrap_or("").to_owned(),
        entry["stderr"].as_str().unwrap_or("").to_owned(),
    )
}

/// The SSH stand-in (see the module's documentation).
fn ssh(args: &[String]) -> (u8, String, String) {
    let mut rest = args;
    while let [flag, _, tail @ ..] = rest
        && flag == "-o"
    {
        rest = tail;
    }
    // rest = [host, "--", argv...] (provision) or [host, remote action] (vnm clean).
    let Some(sep) = rest.iter().position(|a| a == "--") else {
        return (0, String::new(), String::new());
    };
    let mut words: Vec<&str> = rest[sep + 1..].iter().map(String::as_str).collect();
    if words.first() == Some(&"sudo") {
        words.remove(0);
        if words.first() == Some(&"-n") {
            words.remove(0);
        }
        if words.first() == Some(&"-u") && words.len() >= 2 {
            words.drain(..2);
        }
    }
    let out = match words.as_slice() {
        ["ip", "-o", "route", "show", "default"] => "default via 62.210.0.1 dev eno1 proto static\n",
        ["printenv", "SSH_CLIENT"] => "203.0.113.10 50022 22\n",
        ["cat", "/etc/hosts"] => "127.0.0.1 localhost\n::1 localhost ip6-localhost\n",
        ["cat", "/etc/frr/daemons"] => "zebra=yes\nbgpd=no\nospfd=no\n",
        _ => "",
    };
    (0, out.to_owned(), String::new())
}
