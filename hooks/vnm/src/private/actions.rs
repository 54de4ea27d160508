//! `pre`, `clean`, `evpn-config` and `reconcile` of `scaleway_evpn`, on any
//! host (real or fake): validate, lock, read the record, observe, plan,
//! render, check, apply, record.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use anyhow::{Context, anyhow, bail};
use evpn::apply::EvpnHost;
use evpn::frr::FrrHost;
use evpn::observed::Observed;
use evpn::plan::{LinkPlan, Request, plan};
use evpn::record::{HostConfig, Record, RecordFile};
use evpn::segment::{Underlay, resolve, select};
use evpn::{Cluster, Role, Segment, User, Vni, firewall, frr};
use netapply::lock::HostLock;
use opennebula::driver::{Log, Output};
use opennebula::vm::Vm;

use super::Settings;
use super::apply::{Texts, VniChange, apply_change};

fn lock(settings: &Settings) -> anyhow::Result<HostLock> {
    Ok(HostLock::acquire(&settings.lock, settings.lock_timeout)?)
}

fn vnis(set: &BTreeSet<Vni>) -> String {
    if set.is_empty() {
        "none".to_owned()
    } else {
        set.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
    }
}

/// When FRR's configuration is rendered and reloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frr {
    /// When the VNIs to list differ from those of the last reload.
    IfChanged,
    /// Always (evpn-config, reconcile).
    Always,
}

/// One change of the host: from the record `before` to `after`.
struct Change<'a> {
    before: &'a Record,
    after: Record,
    /// The VNIs of `after` whose segments must be ensured (the others are
    /// left as they are).
    ensure: BTreeSet<Vni>,
    frr: Frr,
    /// A failed FRR reload undoes the devices made (`pre`, `evpn-config`);
    /// otherwise it is a warning and the next action tries again (`clean`,
    /// whose devices are gone already).
    undo_on_frr_failure: bool,
    /// Set the firewall table too.
    firewall: bool,
}

/// What a change did.
struct Outcome {
    plan: LinkPlan,
    /// The FRR configuration was reloaded.
    frr_reloaded: bool,
    /// Dry run: what would have been done.
    dry_run: Option<String>,
    after: Record,
}

/// The FRR configuration of `config` with `vnis`, as this host must have it.
fn render_frr(host: EvpnHost<'_>, config: &HostConfig, vnis: BTreeSet<Vni>) -> anyhow::Result<String> {
    let forwarding = host.system.forwarding()?;
    let text = frr::render(
        &config.cluster,
        &FrrHost {
            local: config.local,
            hostname: host.system.hostname()?,
            ip_forwarding: forwarding.ipv4,
            ipv6_forwarding: forwarding.ipv6,
            vnis,
        },
    )?;
    Ok(text)
}

/// Plans, checks and applies a change; saves the record when something
/// changed.
fn converge(
    log: &mut Log<'_>,
    host: EvpnHost<'_>,
    settings: &Settings,
    file: &RecordFile,
    observed: &Observed,
    change: Change<'_>,
) -> anyhow::Result<Outcome> {
    let Change {
        before,
        mut after,
        ensure,
        frr,
        undo_on_frr_failure,
        firewall,
    } = change;
    let request = Request {
        ensure: after
            .segments
            .iter()
            .filter(|(vni, _)| ensure.contains(vni))
            .map(|(_, s)| s.segment.clone())
            .collect(),
        remove: before
            .segments
            .iter()
            .filter(|(vni, _)| !after.segments.contains_key(vni))
            .map(|(_, s)| s.segment.clone())
            .collect(),
        owned_bridges: before
            .segments
            .values()
            .filter(|s| s.created_bridge)
            .map(|s| s.segment.bridge.clone())
            .collect(),
        owned_vxlans: before.segments.values().map(|s| s.segment.vxlan.clone()).collect(),
    };
    let p = plan(&request, observed)?;
    for note in &p.notes {
        log.warn(note);
    }
    for s in after.segments.values_mut() {
        if p.created_bridges.contains(&s.segment.bridge) {
            s.created_bridge = true;
        }
    }
    let wanted = after.wanted_vnis();
    let frr_text = match (&after.config, frr) {
        (Some(config), Frr::Always) => Some(render_frr(host, config, wanted.clone())?),
        (Some(config), Frr::IfChanged) if after.announced.as_ref() != Some(&wanted) => {
            Some(render_frr(host, config, wanted.clone())?)
        }
        (None, _) if after.announced.as_ref().is_some_and(|a| *a != wanted) => {
            log.warn("no cluster description applied on this host (evpn-config): FRR's configuration is left as it is");
            None
        }
        _ => None,
    };
    // Only VNIs changed since FRR got our configuration: changed in place.
    let vni_change = match (&after.config, frr, &after.announced) {
        (Some(config), Frr::IfChanged, Some(announced)) if frr_text.is_some() => Some(VniChange {
            asn: config.cluster.asn,
            add: wanted.difference(announced).copied().collect(),
            remove: announced.difference(&wanted).copied().collect(),
        }),
        _ => None,
    };
    let firewall_text = match (&after.config, firewall) {
        (Some(c), true) => Some(firewall::Rules::Underlay {
            underlay: c.cluster.underlay,
            device: c.device.clone(),
        }),
        _ => None,
    };
    if !p.is_empty() {
        for line in p.to_string().lines().filter(|l| !l.starts_with("# note:")) {
            log.debug(format_args!("plan: {line}"));
        }
    }
    if settings.dry_run {
        let mut text = p.to_string();
        if let Some(f) = &firewall_text {
            text.push_str("# nft -f -\n");
            text.push_str(&f.script());
        }
        if let Some(f) = &frr_text {
            text.push_str(&format!(
                "# FRR configuration (vtysh -C -f, then frr-reload.py --reload)\n{f}"
            ));
        }
        return Ok(Outcome {
            plan: p,
            frr_reloaded: false,
            dry_run: Some(text),
            after,
        });
    }
    let new_conf = settings.frr_conf.with_extension("conf.new");
    let applied = apply_change(
        log,
        host,
        &new_conf,
        &settings.frr_conf,
        &Texts {
            frr: frr_text.as_deref(),
            vnis: vni_change.as_ref(),
            firewall: firewall_text.as_ref(),
        },
        &p,
        undo_on_frr_failure,
    );
    // Gone once renamed; left behind by a failure otherwise.
    let _ = std::fs::remove_file(&new_conf);
    let frr_reloaded = applied?;
    if frr_reloaded {
        after.announced = Some(wanted);
    }
    if after != *before {
        file.save(&after)
            .context("the changes were applied but not recorded (the next action records them)")?;
    }
    Ok(Outcome {
        plan: p,
        frr_reloaded,
        dry_run: None,
        after,
    })
}

fn output(outcome: &Outcome) -> Output {
    outcome.dry_run.clone().map_or_else(Output::empty, Output::text)
}

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
    let _lock = lock(settings)?;
    let file = RecordFile::new(&settings.record);
    let record = file.load()?;
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
    let _lock = lock(settings)?;
    let file = RecordFile::new(&settings.record);
    let record = file.load()?;
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

/// This host's underlay address and device, from the description and the host.
fn find_local(cluster: &Cluster, observed: &Observed) -> anyhow::Result<(Ipv4Addr, String)> {
    let local = match cluster.local {
        Some(l) => l,
        None => {
            let mine: Vec<Ipv4Addr> = cluster
                .hosts
                .iter()
                .copied()
                .filter(|h| observed.holder_of(*h).is_some())
                .collect();
            match mine[..] {
                [one] => one,
                [] => {
                    let held: Vec<String> = observed
                        .links
                        .values()
                        .flat_map(|l| l.ipv4.iter().map(ToString::to_string))
                        .collect();
                    bail!(
                        "none of HOSTS is an address of this host (it has {}): is this host in the cluster? LOCAL \
                         names this host's underlay address",
                        held.join(", ")
                    );
                }
                _ => bail!(
                    "this host holds several addresses of HOSTS ({}): set LOCAL",
                    mine.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ),
            }
        }
    };
    let holder = observed.holder_of(local);
    let device = match (&cluster.underlay_device, holder) {
        (Some(d), Some(h)) if d.as_str() == h => h.to_owned(),
        (Some(d), _) => bail!(
            "UNDERLAY_DEVICE = {d} does not hold this host's underlay address {local} ({})",
            holder.map_or_else(|| "no device does".to_owned(), |h| format!("{h} does"))
        ),
        (None, Some(h)) => h.to_owned(),
        (None, None) => bail!("LOCAL = {local} is not an address of this host"),
    };
    Ok((local, device))
}

/// `evpn-config` on `host`: the cluster description `text` (read from `source`).
pub fn evpn_config_with(
    text: &str,
    source: &str,
    log: &mut Log<'_>,
    host: EvpnHost<'_>,
    settings: &Settings,
) -> anyhow::Result<Output> {
    let cluster = Cluster::parse(text).with_context(|| format!("the cluster description {source}"))?;
    let _lock = lock(settings)?;
    let file = RecordFile::new(&settings.record);
    let record = file.load()?;
    let observed = host.links.observe().context("cannot read the host's links")?;
    let (local, device) = find_local(&cluster, &observed).context("cannot place this host in the cluster")?;
    let role = cluster.role_of(local).unwrap_or(Role::Client);
    let mut after = record.clone();
    // The recorded segments follow the host's underlay address (and the
    // configured underlay device).
    for s in after.segments.values_mut() {
        s.segment.local = local;
        if let Some(d) = &cluster.underlay_device {
            s.segment.underlay = d.as_str().to_owned();
        }
    }
    let peers = match role {
        Role::Reflector => cluster.hosts.len() - 1,
        Role::Client => cluster.reflector_addresses().len(),
    };
    let reflectors = cluster
        .reflector_addresses()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let (asn, underlay) = (cluster.asn, cluster.underlay);
    after.config = Some(HostConfig {
        cluster,
        local,
        device: device.clone(),
    });
    let summary = format!(
        "{local} is {} of AS {asn} (reflectors {reflectors}), {peers} BGP peer{}, VNIs {}; firewall: BGP and VXLAN \
         only from {underlay} on {device}",
        match role {
            Role::Reflector => "a route reflector",
            Role::Client => "a client",
        },
        if peers == 1 { "" } else { "s" },
        vnis(&after.wanted_vnis()),
    );
    let ensure: BTreeSet<Vni> = after.segments.keys().copied().collect();
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
            frr: Frr::Always,
            undo_on_frr_failure: true,
            firewall: true,
        },
    )
    .context("cannot apply the cluster description")?;
    if let Some(text) = outcome.dry_run {
        return Ok(Output::text(text));
    }
    log.info(format_args!("FRR reloaded: {summary}"));
    Ok(Output::text(format!("{summary}\n")))
}

/// `reconcile` on `host`: every recorded segment, FRR's configuration and
/// the firewall, put back.
pub fn reconcile_with(log: &mut Log<'_>, host: EvpnHost<'_>, settings: &Settings) -> anyhow::Result<Output> {
    let _lock = lock(settings)?;
    let file = RecordFile::new(&settings.record);
    let record = file.load()?;
    if record.config.is_none() && record.segments.is_empty() {
        log.info(format_args!(
            "the host record {} holds nothing: nothing to reconcile",
            file.path().display()
        ));
        return Ok(Output::text("reconciled 0 segments: nothing recorded\n"));
    }
    let observed = host.links.observe().context("cannot read the host's links")?;
    let ensure: BTreeSet<Vni> = record.segments.keys().copied().collect();
    let outcome = converge(
        log,
        host,
        settings,
        &file,
        &observed,
        Change {
            before: &record,
            after: record.clone(),
            ensure,
            frr: Frr::Always,
            undo_on_frr_failure: false,
            firewall: true,
        },
    )
    .context("cannot reconcile the host's private networks")?;
    if let Some(text) = outcome.dry_run {
        return Ok(Output::text(text));
    }
    let n = record.segments.len();
    let summary = format!(
        "reconciled {n} segment{} (VNIs {}): {}{}",
        if n == 1 { "" } else { "s" },
        vnis(&record.segments.keys().copied().collect()),
        if outcome.plan.is_empty() {
            "devices already in place".to_owned()
        } else {
            format!("{} device changes", outcome.plan.ops.len())
        },
        if outcome.frr_reloaded { ", FRR reloaded" } else { "" }
    );
    log.info(&summary);
    Ok(Output::text(format!("{summary}\n")))
}
