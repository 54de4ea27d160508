//! `pre`, `clean` and `update_sg` of `scaleway_evpn`, on any host (real or
//! fake): validate, lock, read the record, observe, plan, render, check,
//! apply, record (one [`converge`]).

use std::collections::BTreeSet;

use anyhow::{Context, anyhow};
use opennebula::driver::{Log, Output};
use opennebula::vm::Vm;
use private_apply::apply::EvpnHost;
use private_plan::segment::{Underlay, resolve, select};
use private_plan::{Segment, User, Vni};

use super::Settings;
use super::converge::{Change, Frr, begin, converge, output, vnis};

/// `pre` on `host`.
pub fn pre_with(vm: &Vm, log: &mut Log<'_>, host: EvpnHost<'_>, settings: &Settings) -> anyhow::Result<Output> {
    let selection = select(vm)?;
    if selection.requests.is_empty() {
        log.debug(format_args!(
            "VM {}: no NIC of driver scaleway_evpn to set up{}",
            vm.id,
            if selection.hotplug {
                " (another NIC is being attached)"
            } else {
                ""
            }
        ));
        return Ok(Output::empty());
    }
    let context = || format!("VM {}: cannot set up its private NICs on this host", vm.id);
    let no_config = || {
        anyhow!(
            "VM {}: this host has no BGP-EVPN configuration yet: run `scaleway-vnm --driver scaleway_evpn \
             evpn-config <cluster description>` on it first (the provision flow does); nothing was changed",
            vm.id
        )
    };
    // Without a record there is no configuration: said without taking the lock.
    if !settings.record.exists() {
        return Err(no_config());
    }
    let (_lock, file, record) = begin(settings)?;
    let Some(config) = record.config.clone() else {
        return Err(no_config());
    };
    let observed = host.links.observe().context("cannot read the host's links")?;
    let underlay = Underlay {
        local: config.local,
        device: config.cluster.underlay_device.clone(),
    };
    let mut after = record.clone();
    if !selection.hotplug {
        // What the record holds for this VM and the document no longer has.
        after.forget(|u| u.vm == vm.id);
    }
    let mut segments: Vec<(User, Segment)> = Vec::new();
    for r in &selection.requests {
        let (segment, guest_mtu) = resolve(r, &underlay, &observed).with_context(context)?;
        if r.guest_mtu.is_none() && segment.mtu < 1500 {
            log.warn(format_args!(
                "{}: GUEST_MTU is not set: the guest keeps MTU 1500 and its frames above {} bytes are dropped; set \
                 GUEST_MTU = \"{}\" on the network (the guest then gets it from libvirt and its context)",
                r.user, segment.mtu, segment.mtu
            ));
        }
        log.debug(format_args!("{}: {segment}, guest MTU {guest_mtu}", r.user));
        after
            .use_segment(r.user, &segment)
            .and_then(|()| after.set_filter(r.user, &r.port, r.rules.clone()))
            .map_err(|e| anyhow!(e))
            .with_context(context)?;
        segments.push((r.user, segment));
    }
    // A segment the VM was the only user of was forgotten and recorded
    // again: it keeps what the record knew of its bridge.
    for (vni, s) in &mut after.segments {
        if let Some(old) = record.segments.get(vni)
            && old.segment.bridge == s.segment.bridge
        {
            s.created_bridge |= old.created_bridge;
        }
    }
    let ensure: BTreeSet<Vni> = segments.iter().map(|(_, s)| s.vni).collect();
    let outcome = converge(
        log,
        host,
        settings,
        &file,
        &observed,
        Change {
            before: &record,
            after,
            ensure,
            frr: Frr::IfChanged,
            undo_on_frr_failure: true,
            firewall: false,
            filters: false,
        },
    )
    .with_context(context)?;
    if outcome.dry_run.is_none() {
        let list = segments
            .iter()
            .map(|(u, s)| format!("{u}: {s}"))
            .collect::<Vec<_>>()
            .join("; ");
        if outcome.plan.is_empty() && !outcome.frr_reloaded {
            log.info(format_args!("VM {}: already in place: {list}", vm.id));
        } else {
            log.info(format_args!("VM {}: set up {list}", vm.id));
        }
        if outcome.frr_reloaded {
            log.info(format_args!(
                "FRR updated: VNIs listed {}",
                vnis(&outcome.after.wanted_vnis())
            ));
        }
    }
    Ok(output(&outcome))
}

fn nothing_recorded(log: &mut Log<'_>, vm: u64) -> Output {
    log.info(format_args!(
        "VM {vm}: no NIC of driver scaleway_evpn recorded on this host: nothing to remove"
    ));
    Output::empty()
}

/// `clean` on `host`.
pub fn clean_with(vm: &Vm, log: &mut Log<'_>, host: EvpnHost<'_>, settings: &Settings) -> anyhow::Result<Output> {
    // A document we cannot read still lets us remove what the record holds
    // for the VM, unless a NIC is being detached (we would not know which).
    let selection = match select(vm) {
        Ok(s) => Some(s),
        Err(e) if vm.is_hotplug() => {
            return Err(anyhow!(e).context(format!("VM {}: cannot tell which NIC is being detached", vm.id)));
        }
        Err(e) => {
            log.warn(format_args!(
                "VM {}: {e}; removing what the host record holds for the VM",
                vm.id
            ));
            None
        }
    };
    let detached: Option<BTreeSet<User>> = match &selection {
        Some(s) if s.hotplug => {
            if s.requests.is_empty() {
                log.debug(format_args!(
                    "VM {}: the NIC being detached is not a NIC of driver scaleway_evpn",
                    vm.id
                ));
                return Ok(Output::empty());
            }
            Some(s.requests.iter().map(|r| r.user).collect())
        }
        _ => None,
    };
    // Without a record nothing was ever set up here: said without taking the lock.
    if !settings.record.exists() {
        return Ok(nothing_recorded(log, vm.id));
    }
    let (_lock, file, record) = begin(settings)?;
    let mut after = record.clone();
    match &detached {
        Some(users) => after.forget(|u| users.contains(u)),
        None => after.forget(|u| u.vm == vm.id),
    }
    if after == record {
        return Ok(nothing_recorded(log, vm.id));
    }
    let released: Vec<Vni> = record
        .users_of(vm.id)
        .into_iter()
        .filter(|(_, u)| detached.as_ref().is_none_or(|d| d.contains(u)))
        .map(|(v, _)| v)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let observed = host.links.observe().context("cannot read the host's links")?;
    let outcome = converge(
        log,
        host,
        settings,
        &file,
        &observed,
        Change {
            before: &record,
            after,
            ensure: BTreeSet::new(),
            frr: Frr::IfChanged,
            undo_on_frr_failure: false,
            firewall: false,
            filters: false,
        },
    )
    .with_context(|| format!("VM {}: cannot remove its private NICs from this host", vm.id))?;
    if outcome.dry_run.is_none() {
        for vni in released {
            match outcome.after.segments.get(&vni) {
                Some(s) => log.info(format_args!(
                    "VM {}: left VNI {vni}, which {} still use{} on this host",
                    vm.id,
                    s.users.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                    if s.users.len() == 1 { "s" } else { "" }
                )),
                None => log.info(format_args!(
                    "VM {}: left VNI {vni}, which no VM uses on this host any more: removed{}",
                    vm.id,
                    if outcome.frr_reloaded {
                        " (and from FRR's configuration)"
                    } else {
                        ""
                    }
                )),
            }
        }
    }
    Ok(output(&outcome))
}

/// `update_sg` on `host`: the VM's private NICs recorded on this host get
/// the security group rules of the document (oned sends it for every VM of
/// a group whose rules changed), in one transaction with everything else
/// the tables hold; nothing for a VM that does not run here.
pub fn update_sg_with(vm: &Vm, log: &mut Log<'_>, host: EvpnHost<'_>, settings: &Settings) -> anyhow::Result<Output> {
    let selection = select(vm)?;
    let elsewhere = |log: &mut Log<'_>| {
        log.info(format_args!(
            "VM {}: no private NIC of it on this host: its security groups apply where it runs",
            vm.id
        ));
        Ok(Output::empty())
    };
    if selection.requests.is_empty() {
        log.debug(format_args!("VM {}: no NIC of driver scaleway_evpn", vm.id));
        return Ok(Output::empty());
    }
    if !settings.record.exists() {
        return elsewhere(log);
    }
    let (_lock, file, record) = begin(settings)?;
    let mut after = record.clone();
    let mut updated = Vec::new();
    for r in &selection.requests {
        if !record.segments.values().any(|s| s.users.contains(&r.user)) {
            continue;
        }
        after
            .set_filter(r.user, &r.port, r.rules.clone())
            .map_err(|e| anyhow!(e))
            .with_context(|| format!("VM {}: cannot update its security groups on this host", vm.id))?;
        let n = r.rules.len();
        updated.push(format!("{} ({n} rule{})", r.user, if n == 1 { "" } else { "s" }));
    }
    if updated.is_empty() {
        return elsewhere(log);
    }
    // Nothing but the tables changes: no link is observed or planned.
    let outcome = converge(
        log,
        host,
        settings,
        &file,
        &private_plan::observed::Observed::default(),
        Change {
            before: &record,
            after,
            ensure: BTreeSet::new(),
            frr: Frr::IfChanged,
            undo_on_frr_failure: false,
            firewall: false,
            filters: true,
        },
    )
    .with_context(|| format!("VM {}: cannot update its security groups on this host", vm.id))?;
    if outcome.dry_run.is_none() {
        log.info(format_args!(
            "VM {}: security groups set on {}",
            vm.id,
            updated.join(", ")
        ));
    }
    Ok(output(&outcome))
}
