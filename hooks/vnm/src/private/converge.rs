//! One change of the host's private networking, from the record before
//! to the record after: planned (links), rendered (FRR, firewall, security
//! groups), applied (`super::apply`) and recorded. Every action of the
//! driver is one [`converge`].

use std::collections::BTreeSet;

use anyhow::Context;
use evpn::apply::EvpnHost;
use evpn::frr::FrrHost;
use evpn::observed::Observed;
use evpn::plan::{LinkPlan, Request, plan};
use evpn::record::{HostConfig, Record, RecordFile};
use evpn::{Vni, firewall, frr};
use host_tools::lock::HostLock;
use opennebula::driver::{Log, Output};

use super::Settings;
use super::apply::{Texts, VniChange, apply_change};

pub(super) fn lock(settings: &Settings) -> anyhow::Result<HostLock> {
    Ok(HostLock::acquire(&settings.lock, settings.lock_timeout)?)
}

pub(super) fn vnis(set: &BTreeSet<Vni>) -> String {
    if set.is_empty() {
        "none".to_owned()
    } else {
        set.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
    }
}

/// When FRR's configuration is rendered and reloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Frr {
    /// When the VNIs to list differ from those of the last reload.
    IfChanged,
    /// Always (evpn-config, reconcile).
    Always,
}

/// One change of the host: from the record `before` to `after`.
pub(super) struct Change<'a> {
    pub(super) before: &'a Record,
    pub(super) after: Record,
    /// The VNIs of `after` whose segments must be ensured (the others are
    /// left as they are).
    pub(super) ensure: BTreeSet<Vni>,
    pub(super) frr: Frr,
    /// A failed FRR reload undoes the devices made (`pre`, `evpn-config`);
    /// otherwise it is a warning and the next action tries again (`clean`,
    /// whose devices are gone already).
    pub(super) undo_on_frr_failure: bool,
    /// Set the firewall table too.
    pub(super) firewall: bool,
    /// Write the security group tables (else only when they change).
    pub(super) filters: bool,
}

/// What a change did.
pub(super) struct Outcome {
    pub(super) plan: LinkPlan,
    /// The FRR configuration was reloaded.
    pub(super) frr_reloaded: bool,
    /// Dry run: what would have been done.
    pub(super) dry_run: Option<String>,
    pub(super) after: Record,
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
pub(super) fn converge(
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
        filters,
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
    let (filter_tables, filters_before) = (after.filter_tables(), before.filter_tables());
    let filter_tables = (filters || filter_tables != filters_before).then_some(filter_tables);
    // evpn-config and reconcile write them whole; the others in place.
    let filters_before = (!firewall).then_some(&filters_before);
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
        if let Some(f) = &filter_tables {
            text.push_str("# nft -f - (security groups)\n");
            text.push_str(&filters_before.map_or_else(|| f.script(), |b| f.update_script(b)));
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
            filters: filter_tables.as_ref().map(|f| (f, filters_before)),
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

pub(super) fn output(outcome: &Outcome) -> Output {
    outcome.dry_run.clone().map_or_else(Output::empty, Output::text)
}
