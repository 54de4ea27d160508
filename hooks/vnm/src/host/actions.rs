//! `pre`, the host part of `clean`, and `reconcile`, on any host (real or
//! fake): validate, lock, read the record, observe, plan, apply, record.

use std::collections::BTreeSet;

use anyhow::Context;
use host_tools::ApplyError;
use host_tools::lock::HostLock;
use host_tools::skeleton::{Change, Observe, converge};
use opennebula::driver::{Log, Output};
use opennebula::vm::Vm;
use public_apply::record::{Record, RecordFile};
use public_apply::{Host, apply, observe, observe_with_tables};
use public_plan::filter::NicFilter;
use public_plan::model;
use public_plan::ops::base_fingerprint;
use public_plan::{Endpoint, Observed, Owner, Plan, Request, Selection, plan, query, select, tables_ok_after};

use super::Settings;

/// The endpoints of a list, for a log line.
pub(super) fn list(endpoints: &[Endpoint]) -> String {
    endpoints.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

pub(super) fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Whether two endpoints map the same addresses (owners aside).
pub(super) fn same_addresses(a: &Endpoint, b: &Endpoint) -> bool {
    a.public == b.public && a.bridge == b.bridge
}

/// Where an action runs: the host, its settings, the record's file.
#[derive(Clone, Copy)]
pub(super) struct On<'a> {
    pub(super) host: Host<'a>,
    pub(super) settings: &'a Settings,
    pub(super) file: &'a RecordFile,
}

pub(super) const CANNOT_OBSERVE: &str = "cannot read the host's network state";

/// One change of the public driver on a host ([`host_tools::skeleton`]):
/// the request it plans, where it runs.
struct PublicChange<'a> {
    on: On<'a>,
    request: &'a Request,
}

/// What a public plan starts from.
struct PublicObserved {
    observed: Observed,
    /// Our nft tables taken from the record's model, not listed.
    from_model: bool,
    /// The record's tables' base is this version's.
    current: bool,
}

impl Change for PublicChange<'_> {
    type Record = Record;
    type Observed = PublicObserved;
    type Plan = Plan;
    type Applied = ();

    /// With [`Observe::Cheaply`], our nft tables are not listed (that grows
    /// with the number of NICs on the host) while the record's base
    /// fingerprint is this version's: the plan starts from the record's
    /// model of them, the links, routes and neighbour entries of this
    /// request being read as always.
    fn observe(&self, before: &Record, _after: &Record, how: Observe) -> anyhow::Result<PublicObserved> {
        let (host, request) = (self.on.host, self.request);
        let current = before.base.as_deref() == Some(base_fingerprint().as_str());
        // Only the recorded endpoints this request touches are modelled.
        let ours = model::touching(request);
        if how == Observe::Cheaply
            && current
            && let Some((nat, guard)) = model::tables(ours.iter().copied())
        {
            let filter = model::filters(request, &ours, &before.filters, &before.view.outside_chains);
            let observed = observe_with_tables(host, &query(request), nat, guard, filter).context(CANNOT_OBSERVE)?;
            return Ok(PublicObserved {
                observed,
                from_model: true,
                current,
            });
        }
        Ok(PublicObserved {
            observed: observe(host, &query(request)).context(CANNOT_OBSERVE)?,
            from_model: false,
            current,
        })
    }

    fn plan(&self, _before: &Record, _after: &Record, o: &PublicObserved) -> anyhow::Result<Plan> {
        let mut p = plan(self.request, &o.observed)?;
        if !o.from_model && !self.request.ensure.is_empty() && !o.current {
            // A host set up by an older version (or never): its tables'
            // base is declared again, whatever their listing says.
            p.nft.redeclare();
        }
        Ok(p)
    }

    fn notes(&self, p: &Plan) -> Vec<String> {
        p.notes.clone()
    }

    fn lines(&self, p: &Plan) -> String {
        if p.is_empty() { String::new() } else { p.to_string() }
    }

    fn dry_run(&self, p: &Plan) -> String {
        p.to_string()
    }

    fn apply(&self, _log: &mut Log<'_>, p: &Plan) -> anyhow::Result<()> {
        Ok(apply(self.on.host, p)?)
    }

    /// The kernel refused a transaction planned from the record's model (a
    /// table gone after a reboot, an element the record does not know).
    fn observe_again(&self, e: &anyhow::Error, o: &PublicObserved) -> Option<String> {
        e.downcast_ref::<ApplyError>()
            .filter(|e| e.nft_refused && o.from_model)
            .map(|e| format!("our nft tables are not as the host record says ({e}): reading them and planning again"))
    }

    fn settle(&self, after: &mut Record, o: &PublicObserved, p: &Plan, _applied: Option<&()>) {
        after.bridges.extend(p.bridges_created.iter().copied());
        for b in &p.bridges_deleted {
            after.bridges.remove(b);
        }
        if !o.from_model {
            // The fingerprint stays (or becomes) this version's when the
            // base is this version's afterwards: declared whole by this
            // plan, or found intact (or declared in part) on a host whose
            // record already had it.
            after.base =
                (p.nft.declares_base() || (o.current && tables_ok_after(&o.observed, p))).then_some(base_fingerprint());
        }
    }

    fn save(&self, record: &Record) -> anyhow::Result<()> {
        Ok(self.on.file.save(record)?)
    }
}

/// One change of the host from `record` to `record` updated by `update`
/// ([`host_tools::skeleton::converge`]); `listed`: the host's state read
/// already (`reconcile`), else observed from the record's model when
/// possible. Returns the plan, its text when dry-running, and the record
/// after.
pub(super) fn run(
    log: &mut Log<'_>,
    on: On<'_>,
    record: &Record,
    request: &Request,
    listed: Option<Observed>,
    update: impl FnOnce(&mut Record),
) -> anyhow::Result<(Plan, Option<String>, Record)> {
    let mut after = record.clone();
    update(&mut after);
    let observed = listed.map(|observed| PublicObserved {
        observed,
        from_model: false,
        current: record.base.as_deref() == Some(base_fingerprint().as_str()),
    });
    let change = PublicChange { on, request };
    let done = converge(&change, log, record, after, observed, on.settings.dry_run)?;
    Ok((done.plan, done.dry_run, done.after))
}

/// What of the record an action reads.
#[derive(Clone, Copy)]
pub(super) enum Read<'a> {
    /// Everything (`reconcile`).
    All,
    /// What an action on VM `vm` with these endpoints and rules looks at
    /// ([`RecordFile::load_for`]).
    For(u64, &'a [Endpoint], &'a [NicFilter]),
}

/// The skeleton's steps after validation: the host lock, then the record.
pub(super) fn begin(settings: &Settings, read: Read<'_>) -> anyhow::Result<(HostLock, RecordFile, Record)> {
    let lock = HostLock::acquire(&settings.lock, settings.lock_timeout)?;
    let file = RecordFile::new(&settings.record);
    let record = match read {
        Read::All => file.load()?,
        Read::For(vm, endpoints, filters) => file.load_for(vm, endpoints, filters)?,
    };
    Ok((lock, file, record))
}

pub(super) fn output(dry_run: Option<String>) -> Output {
    dry_run.map_or_else(Output::empty, Output::text)
}

/// `pre` on `host`.
pub fn pre_with(vm: &Vm, log: &mut Log<'_>, host: Host<'_>, settings: &Settings) -> anyhow::Result<Output> {
    set_up(vm, log, host, settings, false)
}

/// `update_sg` on `host`: the VM's public NICs get the security group
/// rules of the document (oned sends it for every VM of a group whose rules
/// changed), in one transaction, if the VM runs here; the rest is ensured
/// as `pre` would.
pub fn update_sg_with(vm: &Vm, log: &mut Log<'_>, host: Host<'_>, settings: &Settings) -> anyhow::Result<Output> {
    set_up(vm, log, host, settings, true)
}

/// `pre`, or `update_sg` (`only_here`: nothing for a VM the host record
/// does not hold).
pub(super) fn set_up(
    vm: &Vm,
    log: &mut Log<'_>,
    host: Host<'_>,
    settings: &Settings,
    only_here: bool,
) -> anyhow::Result<Output> {
    let Selection {
        endpoints,
        hotplug,
        filters,
    } = select(vm)?;
    if endpoints.is_empty() {
        log.debug(format_args!(
            "VM {}: no public NIC of driver scaleway to set up{}",
            vm.id,
            if hotplug {
                " (another NIC is being attached)"
            } else {
                ""
            }
        ));
        return Ok(Output::empty());
    }
    let (_lock, file, record) = begin(settings, Read::For(vm.id, &endpoints, &filters))?;
    let on = On {
        host,
        settings,
        file: &file,
    };
    if only_here && record.of_vm(vm.id).is_empty() {
        log.info(format_args!(
            "VM {}: no public NIC of it on this host: its security groups apply where it runs",
            vm.id
        ));
        return Ok(Output::empty());
    }
    let selected: BTreeSet<Owner> = endpoints.iter().map(|e| e.owner).collect();
    // What the record holds for this VM that the document no longer has
    // (NICs re-addressed, or gone while the host was away): removed. During
    // a hot attach the VM's other NICs are not in the document's selection
    // and stay.
    let stale: Vec<Endpoint> = record
        .of_vm(vm.id)
        .into_iter()
        .filter(|r| match endpoints.iter().find(|e| e.owner == r.owner) {
            Some(e) => !same_addresses(e, r),
            None => !hotplug,
        })
        .collect();
    // The same addresses recorded for another VM: the address range was
    // released and leased again without a clean on this host. The mapping
    // is the same, only its owner changes.
    let moved: Vec<Endpoint> = record
        .endpoints
        .iter()
        .filter(|r| r.owner.vm != vm.id && endpoints.iter().any(|e| same_addresses(e, r)))
        .copied()
        .collect();
    for m in &moved {
        log.warn(format_args!(
            "{m} was recorded for {}, which never cleaned it up on this host: it now belongs to VM {}",
            m.owner, vm.id
        ));
    }
    let context = || format!("VM {}: cannot set up its public NICs on this host", vm.id);
    let before_filters: Vec<_> = record.filters.iter().filter(|f| f.vm == vm.id).cloned().collect();
    let mut record = record;
    let mut dry_text = Vec::new();
    // Stale endpoints go first, in a plan of their own: a re-addressed NIC
    // may keep its flexible IP, whose old mapping must be gone before the
    // new one is added. (Rare: only when a VM's NIC changed under us.)
    if !stale.is_empty() {
        let request = model::narrow(Request {
            ensure: Vec::new(),
            remove: stale.clone(),
            keep: record
                .endpoints
                .iter()
                .filter(|r| !stale.iter().any(|s| s.owner == r.owner))
                .copied()
                .collect(),
            owned_bridges: record.bridges.clone(),
            busy_bridges: record.view.busy_bridges.clone(),
            filters: Vec::new(),
            ..Request::default()
        });
        let (_, dry, updated) = run(log, on, &record, &request, None, |r| {
            r.forget(stale.iter().map(|e| e.owner));
        })
        .with_context(context)?;
        record = updated;
        dry_text.extend(dry);
    }
    let keep: Vec<Endpoint> = record
        .endpoints
        .iter()
        .filter(|r| !selected.contains(&r.owner) && !moved.iter().any(|m| m.owner == r.owner))
        .copied()
        .collect();
    let request = model::narrow(Request {
        ensure: endpoints.clone(),
        remove: Vec::new(),
        keep,
        owned_bridges: record.bridges.clone(),
        busy_bridges: record.view.busy_bridges.clone(),
        filters: filters.clone(),
        ..Request::default()
    });
    let (p, dry, _) = run(log, on, &record, &request, None, |r| {
        r.forget(moved.iter().map(|e| e.owner));
        r.put(&endpoints);
        r.put_filters(&filters);
    })
    .with_context(context)?;
    let dry = dry.map(|text| {
        dry_text.push(text);
        dry_text.concat()
    });
    if dry.is_none() {
        let updated: Vec<String> = public_plan::filter::changed(&p.nft.ops, &filters, &before_filters)
            .iter()
            .map(|f| format!("NIC {} ({})", f.nic_id, plural(f.rules.len(), "rule")))
            .collect();
        if only_here {
            if updated.is_empty() {
                log.info(format_args!("VM {}: its security groups are in place", vm.id));
            } else {
                log.info(format_args!(
                    "VM {}: security groups set on {}",
                    vm.id,
                    updated.join(", ")
                ));
            }
        } else if p.is_empty() {
            log.info(format_args!("VM {}: already in place: {}", vm.id, list(&endpoints)));
        } else if p.only_nft_elements() {
            log.info(format_args!(
                "VM {}: already in place (its NAT and guard elements asserted again): {}",
                vm.id,
                list(&endpoints)
            ));
        } else {
            log.info(format_args!("VM {}: set up {}", vm.id, list(&endpoints)));
        }
        if !stale.is_empty() {
            log.info(format_args!(
                "VM {}: removed what it no longer has: {}",
                vm.id,
                list(&stale)
            ));
        }
    }
    Ok(output(dry))
}
