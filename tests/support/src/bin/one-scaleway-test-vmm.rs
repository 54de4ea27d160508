//! `one-scaleway-test-vmm`: the hypervisor of a test oned (`VM_MAD` run by
//! OpenNebula's own `one_vmm_exec`, so that oned runs the network drivers as
//! in production). Linked as `remotes/vmm/<name>/<action>`, run on the
//! frontend as oneadmin with `<action args...> <vm id> <host>`: `deploy`
//! prints a deploy id (`one-<VM id>`), `poll` reports the VM running,
//! `migrate` lasts while `$ONE_LOCATION/var/hold-migrate` exists.
//!
//! The VMs are real only when `ONE_SCALEWAY_TEST_LIBVIRT` names a Unix
//! socket: every action but `poll` is then handed to the program serving it
//! (the sandbox, as "libvirtd": root, it plugs the VM namespaces into the
//! hosts' bridges), one line of tab-separated words (the action, then its
//! arguments), answered `ok` or `error <why>`. Without it, every other
//! action succeeds without doing anything: what the tests check then is
//! what oned sends the network drivers around these actions.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;

/// The socket of the program that plugs the VMs.
const LIBVIRT_ENV: &str = "ONE_SCALEWAY_TEST_LIBVIRT";

fn ask_libvirt(socket: &str, words: &[String]) -> Result<(), String> {
    if words.iter().any(|w| w.contains(['\t', '\n'])) {
        return Err(format!("an argument holds a tab or a newline: {words:?}"));
    }
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("cannot reach {socket}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(300)))
        .map_err(|e| e.to_string())?;
    writeln!(stream, "{}", words.join("\t")).map_err(|e| format!("writing to {socket}: {e}"))?;
    stream
        .shutdown(std::net::Shutdown::Write)
        .map_err(|e| format!("{socket}: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("reading from {socket}: {e}"))?;
    match answer.trim_end().strip_prefix("ok") {
        Some("") => Ok(()),
        _ => Err(answer.trim().trim_start_matches("error ").to_owned()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let action = args
        .first()
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or_default()
        .to_owned();
    match action.as_str() {
        // deploy <deployment file> <host> <vm id> <host>
        "deploy"
            if args
                .get(3)
                .is_none_or(|s| s.is_empty() || !s.chars().all(|c| c.is_ascii_digit())) =>
        {
            eprintln!("ERROR: one-scaleway-test-vmm deploy: expected <file> <host> <vm id> <host>, got {args:?}");
            return ExitCode::from(1);
        }
        "poll" => {
            println!("STATE=a");
            return ExitCode::SUCCESS;
        }
        // A migration in progress, for as long as $ONE_LOCATION/var/hold-migrate
        // exists (at most two minutes): lets a test act during a migration.
        "migrate" => {
            if let Some(location) = std::env::var_os("ONE_LOCATION") {
                let hold = std::path::Path::new(&location).join("var/hold-migrate");
                let started = std::time::Instant::now();
                while hold.exists() && started.elapsed() < Duration::from_secs(120) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        _ => {}
    }
    if let Ok(socket) = std::env::var(LIBVIRT_ENV) {
        let mut words = vec![action.clone()];
        words.extend(args.iter().skip(1).cloned());
        if let Err(e) = ask_libvirt(&socket, &words) {
            eprintln!("ERROR: {action}: {e}");
            return ExitCode::from(1);
        }
    }
    if action == "deploy"
        && let Some(id) = args.get(3)
    {
        println!("one-{id}");
    }
    ExitCode::SUCCESS
}
