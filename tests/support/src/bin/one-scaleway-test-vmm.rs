//! `one-scaleway-test-vmm`: the hypervisor of a test oned (`VM_MAD` run by
//! OpenNebula's own `one_vmm_exec`, so that oned runs the network drivers as
//! in production). Linked as `remotes/vmm/<name>/<action>`: `deploy` prints a
//! deploy id (`one-<VM id>`), `poll` reports the VM running, every other
//! action succeeds without doing anything. The VMs are not real: what the
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
        _ => {}
    }
    ExitCode::SUCCESS
}
