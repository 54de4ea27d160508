//! One change of the host's private networking, from the record before
//! to the record after: planned (links), rendered (FRR, firewall, security
//! groups), applied (`super::apply`) and recorded. Every action of the
//! driver is one [`converge`].

use std::collections::BTreeSet;

use anyhow::Context;
use host_tools::lock::HostLock;
use host_tools::skeleton::{self, Observe};
use opennebula::driver::{Log, Output};
use private_apply::apply::EvpnHost;
use private_apply::record::{HostConfig, Record, RecordFile};
use private_plan::frr::FrrHost;
use private_plan::observed::Observed;
use private_plan::plan::{LinkPlan, Request, plan};
use private_plan::sg::Filters;
use private_plan::{Vni, firewall, frr};

use super::Settings;
use super::apply::{Texts, VniChange, apply_change};

/// The skeleton's steps after validation: the host lock, then the record.
pub(super) fn begin(settings: &Settings) -> anyhow::Result<(HostLock, RecordFile, Record)> {
    let lock = HostLock::acquire(&settings.lock, settings.lock_timeout)?;
    let file = RecordFile::new(&settings.record);
    let record = file.load()?;
    Ok((lock, file, record))
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

/// One change of the private driver on a host ([`host_tools::skeleton`]).
struct PrivateChange<'a> {
    host: EvpnHost<'a>,
    settings: &'a Settings,
    file: &'a RecordFile,
    ensure: &'a BTreeSet<Vni>,
    frr: Frr,
    undo_on_frr_failure: bool,
    firewall: bool,
    filters: bool,
}

/// A planned private change: the links, and what is written besides.
struct PrivatePlan {
    links: LinkPlan,
    wanted: BTreeSet<Vni>,
    frr: Option<String>,
    vnis: Option<VniChange>,
    firewall: Option<firewall::Rules>,
    /// The security group tables to write, and what the record said they
    /// held (to update them in place) unless written whole.
    filters: Option<(Filters, Option<Filters>)>,
    /// FRR's VNIs should change but the host has no cluster description.
    frr_left: bool,
}

impl skeleton::Change for PrivateChange<'_> {
    type Record = Record;
    type Observed = Observed;
    type Plan = PrivatePlan;
    /// FRR was reloaded.
    type Applied = bool;

    fn observe(&self, _before: &Record, _after: &Record, _how: Observe) -> anyhow::Result<Observed> {
        self.host.links.observe().context("cannot read the host's links")
    }

    fn plan(&self, before: &Record, after: &Record, observed: &Observed) -> anyhow::Result<PrivatePlan> {
        let request = Request {
            ensure: after
                .segments
                .iter()
                .filter(|(vni, _)| self.ensure.contains(vni))
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
        let links = plan(&request, observed)?;
        let wanted = after.wanted_vnis();
        let frr_text = match (&after.config, self.frr) {
            (Some(config), Frr::Always) => Some(render_frr(self.host, config, wanted.clone())?),
            (Some(config), Frr::IfChanged) if after.announced.as_ref() != Some(&wanted) => {
                Some(render_frr(self.host, config, wanted.clone())?)
            }
            _ => None,
        };
        // Only VNIs changed since FRR got our configuration: changed in place.
        let vnis = match (&after.config, self.frr, &after.announced) {
            (Some(config), Frr::IfChanged, Some(announced)) if frr_text.is_some() => Some(VniChange {
                asn: config.cluster.asn,
                add: wanted.difference(announced).copied().collect(),
                remove: announced.difference(&wanted).copied().collect(),
            }),
            _ => None,
        };
        let firewall = match (&after.config, self.firewall) {
            (Some(c), true) => Some(firewall::Rules::Underlay {
                underlay: c.cluster.underlay,
                device: c.device.clone(),
            }),
            _ => None,
        };
        let (tables, tables_before) = (after.filter_tables(), before.filter_tables());
        let filters = (self.filters || tables != tables_before).then(|| {
            // evpn-config and reconcile write them whole; the others in place.
            (tables, (!self.firewall).then_some(tables_before))
        });
        let frr_left = after.config.is_none() && after.announced.as_ref().is_some_and(|a| *a != wanted);
        Ok(PrivatePlan {
            links,
            wanted,
            frr_left,
            frr: frr_text,
            vnis,
            firewall,
            filters,
        })
    }

    fn notes(&self, p: &PrivatePlan) -> Vec<String> {
        let mut notes = p.links.notes.clone();
        if p.frr_left {
            notes.push(
                "no cluster description applied on this host (evpn-config): FRR's configuration is left as it is"
                    .to_owned(),
            );
        }
        notes
    }

    fn lines(&self, p: &PrivatePlan) -> String {
        if p.links.is_empty() {
            String::new()
        } else {
            p.links.to_string()
        }
    }

    fn dry_run(&self, p: &PrivatePlan) -> String {
        let mut text = p.links.to_string();
        if let Some(f) = &p.firewall {
            text.push_str("# nft -f -\n");
            text.push_str(&f.script());
        }
        if let Some((f, before)) = &p.filters {
            text.push_str("# nft -f - (security groups)\n");
            text.push_str(&before.as_ref().map_or_else(|| f.script(), |b| f.update_script(b)));
        }
        if let Some(f) = &p.frr {
            text.push_str(&format!(
                "# FRR configuration (vtysh -C -f, then frr-reload.py --reload)\n{f}"
            ));
        }
        text
    }

    fn apply(&self, log: &mut Log<'_>, p: &PrivatePlan) -> anyhow::Result<bool> {
        let new_conf = self.settings.frr_conf.with_extension("conf.new");
        let applied = apply_change(
            log,
            self.host,
            &new_conf,
            &self.settings.frr_conf,
            &Texts {
                frr: p.frr.as_deref(),
                vnis: p.vnis.as_ref(),
                firewall: p.firewall.as_ref(),
                filters: p.filters.as_ref().map(|(f, before)| (f, before.as_ref())),
            },
            &p.links,
            self.undo_on_frr_failure,
        );
        // Gone once renamed; left behind by a failure otherwise.
        let _ = std::fs::remove_file(&new_conf);
        applied
    }

    fn settle(&self, after: &mut Record, _observed: &Observed, p: &PrivatePlan, frr_reloaded: Option<&bool>) {
        for s in after.segments.values_mut() {
            if p.links.created_bridges.contains(&s.segment.bridge) {
                s.created_bridge = true;
            }
        }
        if frr_reloaded == Some(&true) {
            after.announced = Some(p.wanted.clone());
        }
    }

    fn save(&self, record: &Record) -> anyhow::Result<()> {
        Ok(self.file.save(record)?)
    }
}

/// Plans, checks and applies a change; saves the record when something
/// changed ([`host_tools::skeleton::converge`]).
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
        after,
        ensure,
        frr,
        undo_on_frr_failure,
        firewall,
        filters,
    } = change;
    let private = PrivateChange {
        host,
        settings,
        file,
        ensure: &ensure,
        frr,
        undo_on_frr_failure,
        firewall,
        filters,
    };
    let done = skeleton::converge(&private, log, before, after, Some(observed.clone()), settings.dry_run)?;
    Ok(Outcome {
        plan: done.plan.links,
        frr_reloaded: done.applied == Some(true),
        dry_run: done.dry_run,
        after: done.after,
    })
}

pub(super) fn output(outcome: &Outcome) -> Output {
    outcome.dry_run.clone().map_or_else(Output::empty, Output::text)
}
