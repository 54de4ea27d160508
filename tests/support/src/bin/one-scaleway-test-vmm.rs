//! `one-scaleway-test-vmm`: the hypervisor of a test oned (`VM_MAD` run by
//! OpenNebula's own `one_vmm_exec`, so that oned runs the network drivers as
//! in production). Linked as `remotes/vmm/<name>/<action>`: `deploy` prints a
//! deploy id (`one-<VM id>`), `poll` reports the VM running, `migrate` lasts
//! while `$ONE_LOCATION/var/hold-migrate` exists, every other action succeeds
//! without doing anything. The VMs are not real: what the
//! tests check is what oned sends the network drivers around these actions.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let action = args
        .first()
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or_default()
        .to_owned();
    match action.as_str() {
        // deploy <deployment file> <host> <vm id> <host>
        "deploy" => {
            let id = args.get(3).filter(|s| s.chars().all(|c| c.is_ascii_digit())).cloned();
            match id {
                Some(id) => println!("one-{id}"),
                None => {
                    eprintln!("one-scaleway-test-vmm deploy: expected <file> <host> <vm id>, got {args:?}");
                    return ExitCode::from(1);
                }
            }
        }
        "poll" => println!("STATE=a"),
        // A migration in progress, for as long as $ONE_LOCATION/var/hold-migrate
        // exists (at most two minutes): lets a test act during a migration.
        "migrate" => {
            if let Some(location) = std::env::var_os("ONE_LOCATION") {
                let hold = std::path::Path::new(&location).join("var/hold-migrate");
                let started = std::time::Instant::now();
                while hold.exists() && started.elapsed() < std::time::Duration::from_secs(120) {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        }
        _ => {}
    }
    ExitCode::SUCCESS
}
