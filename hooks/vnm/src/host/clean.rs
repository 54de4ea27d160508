//! `clean_host` of the public driver on a host: the VM's public NICs
//! removed (what the record holds for the VM when its document cannot
//! tell), in one plan.

use std::collections::BTreeSet;

use anyhow::{Context, anyhow};
use opennebula::driver::{Log, Output};
use opennebula::vm::Vm;
use public_apply::Host;
use public_plan::{Endpoint, Owner, Request, model, select};

use super::Settings;
use super::actions::*;

/// The host part of `clean` on `host`.
pub fn clean_host_with(vm: &Vm, log: &mut Log<'_>, host: Host<'_>, settings: &Settings) -> anyhow::Result<Output> {
    // Validate first; a document we cannot read still lets us remove what
    // the record holds for the VM, unless a NIC is being detached (then we
    // would not know which).
    let selection = match select(vm) {
        Ok(s) => Some(s),
        Err(e) => {
            let hotplug = vm
                .nics
                .iter()
                .any(|n| n.attrs.get("ATTACH").is_some_and(|v| v.eq_ignore_ascii_case("yes")));
            if hotplug {
                return Err(anyhow!(e).context(format!("VM {}: cannot tell which NIC is being detached", vm.id)));
            }
            log.warn(format_args!(
                "VM {}: {e}; removing what the host record holds for the VM",
                vm.id
            ));
            None
        }
    };
    if selection.as_ref().is_some_and(|s| s.hotplug && s.endpoints.is_empty()) {
        log.debug(format_args!(
            "VM {}: the NIC being detached is not a public NIC of driver scaleway",
            vm.id
        ));
        return Ok(Output::empty());
    }
    let named: Vec<Endpoint> = selection.as_ref().map(|s| s.endpoints.clone()).unwrap_or_default();
    let (_lock, file, record) = begin(settings, Read::For(vm.id, &named, &[]))?;
    let on = On {
        host,
        settings,
        file: &file,
    };
    let mut remove: Vec<Endpoint> = Vec::new();
    match &selection {
        Some(s) if s.hotplug => {
            // The detached NIC, as the document and as the record say.
            remove.extend(s.endpoints.iter().copied());
            remove.extend(
                record
                    .of_vm(vm.id)
                    .into_iter()
                    .filter(|r| s.endpoints.iter().any(|e| e.owner == r.owner)),
            );
        }
        Some(s) => {
            remove.extend(s.endpoints.iter().copied());
            remove.extend(record.of_vm(vm.id));
        }
        None => remove.extend(record.of_vm(vm.id)),
    }
    remove.sort();
    remove.dedup();
    if remove.is_empty() {
        log.debug(format_args!(
            "VM {}: no public NIC of driver scaleway on this host",
            vm.id
        ));
        return Ok(Output::empty());
    }
    let owners: BTreeSet<Owner> = remove.iter().map(|e| e.owner).collect();
    let keep: Vec<Endpoint> = record
        .endpoints
        .iter()
        .filter(|r| !owners.contains(&r.owner))
        .copied()
        .collect();
    let request = model::narrow(Request {
        ensure: Vec::new(),
        remove: remove.clone(),
        keep,
        owned_bridges: record.bridges.clone(),
        busy_bridges: record.view.busy_bridges.clone(),
        ..Request::default()
    });
    let recorded = remove.iter().any(|e| record.endpoints.contains(e));
    let (p, dry, _) = run(log, on, &record, &request, None, |r| {
        r.forget(owners);
    })
    .with_context(|| format!("VM {}: cannot remove its public NICs from this host", vm.id))?;
    if dry.is_none() {
        // Without a recorded endpoint, deleting its nft elements again
        // (which `clean` does, whatever the record says) removed nothing.
        if p.is_empty() || (!recorded && p.only_nft_elements()) {
            log.info(format_args!("VM {}: nothing of it left on this host", vm.id));
        } else {
            log.info(format_args!("VM {}: removed {}", vm.id, list(&remove)));
        }
        for b in &p.bridges_deleted {
            log.info(format_args!("bridge {b} deleted: no public NIC uses it any more"));
        }
    }
    Ok(output(dry))
}
