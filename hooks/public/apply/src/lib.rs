//! Appliers for the host side of the public network driver `scaleway`.
//!
//! Thin, behind traits, each with a real implementation and a fake
//! (`fake::FakeHost`, in test builds: feature `fake`):
//!
//! - [`nft::Nft`]: our tables, read with `nft -j list table ip one_scaleway`
//!   and `nft -j list table bridge one_scaleway_guard` ([`guard`] reads the
//!   latter; [`observe_with_tables`] takes them from the host record's model
//!   instead), changed in one transaction ([`nft::NftCommand`]): through
//!   nf_tables netlink from this process ([`lower`]; [`base`]: the tables'
//!   base; [`chains`]: the security groups' chains of rules; the VMs'
//!   elements, IPv6 prefixes as intervals);
//!   a transaction the kernel refuses is an [`ApplyError`] with `nft_refused`;
//! - [`ip::Ip`]: links, routes, proxy and neighbour entries, read one entry
//!   at a time (what the request names) and changed in order through
//!   rtnetlink from the driver's own process ([`ip::IpNetlink`],
//!   [`host_tools::netlink`]): no `ip` process;
//! - [`sysctl::Sysctl`]: `/proc/sys`, written and read back ([`sysctl::ProcSysctl`]).
//!
//! No shell, ever: every tool (`nft`) runs from an argument vector
//! ([`host_tools::Tools`], through `sudo -n` when not root), and every error
//! keeps the tool's stderr. As oneadmin, [`apply`] sends a plan's changes to
//! the root helper in one request ([`root`]). Around them: the host-wide lock
//! ([`host_tools::lock::HostLock`]) and the record of what was applied
//! ([`record::RecordFile`]).
//!
//! [`observe`] reads what a plan starts from; [`apply`] applies a plan in
//! its order and, when a step fails, undoes the additions made before it.

pub mod base;
pub mod chains;
/// A fake host for tests: compiled into test builds only (feature `fake`).
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod filter;
pub mod guard;
pub mod ip;
pub mod listing;
pub mod lower;
pub mod nft;
pub mod record;
pub mod root;
pub mod sysctl;

use public_plan::{IpOp, Observed, Plan, Query};

use host_tools::{ApplyError, Tools};

/// The three side effects of one host.
#[derive(Clone, Copy)]
pub struct Host<'a> {
    pub nft: &'a dyn nft::Nft,
    pub ip: &'a dyn ip::Ip,
    pub sysctl: &'a dyn sysctl::Sysctl,
    /// When set (the driver is not root), [`apply`] sends the whole plan
    /// to the root helper through these tools, in one request.
    pub helper: Option<&'a Tools>,
}

/// Reads the host state a plan starts from: our tables, links, and the
/// routes, proxy entries and sysctls `query` names (`public_plan::query`).
pub fn observe(host: Host<'_>, query: &Query) -> Result<Observed, ApplyError> {
    let nat = host.nft.observe()?;
    let guard = host.nft.observe_guard()?;
    let filter = host.nft.observe_filter()?;
    observe_with_tables(host, query, nat, guard, filter)
}

/// [`observe`], with our tables given (`public_plan::model::tables`) instead
/// of listed.
pub fn observe_with_tables(
    host: Host<'_>,
    query: &Query,
    nat: public_plan::observed::NatState,
    guard: public_plan::guard::GuardState,
    filter: public_plan::filter::FilterState,
) -> Result<Observed, ApplyError> {
    let shown = host.ip.observe(query)?;
    let mut sysctls = std::collections::BTreeMap::new();
    for key in &query.sysctls {
        if let Some(value) = host.sysctl.read(key)? {
            sysctls.insert(key.clone(), value);
        }
    }
    Ok(Observed {
        nat,
        guard,
        filter,
        neighbours: shown.neighbours,
        links: shown.links,
        routes: shown.routes,
        proxies: shown.proxies,
        sysctls,
        addresses: shown.addresses,
    })
}

/// Undoes `applied` (best effort, every step tried) and says so in `error`.
fn undo(host: Host<'_>, applied: &[IpOp], error: &mut ApplyError) {
    let ops: Vec<IpOp> = applied.iter().rev().filter_map(IpOp::undo).collect();
    if ops.is_empty() {
        return;
    }
    match host.ip.apply(&ops, true) {
        Ok(()) => error.message.push_str("; the changes made before it were undone"),
        Err(u) => error
            .message
            .push_str(&format!("; undoing the changes made before it failed too: {u}")),
    }
}

/// Applies `plan`: `ip_before`, the sysctls, the nft transaction,
/// `ip_after`. When one of the first three fails, the additions already
/// made are undone (nothing half-done stays for a NIC that failed); a
/// failure in `ip_after` (removals) leaves the rest removed, and removing
/// again finishes the job.
pub fn apply(host: Host<'_>, plan: &Plan) -> Result<(), ApplyError> {
    if let Some(tools) = host.helper {
        return through_helper(tools, plan);
    }
    if let Err(mut e) = host.ip.apply(&plan.ip_before, false) {
        let done = e
            .failed_line
            .map_or(plan.ip_before.len(), |n| n.saturating_sub(1).min(plan.ip_before.len()));
        undo(host, &plan.ip_before[..done], &mut e);
        return Err(e);
    }
    for s in &plan.sysctls {
        if let Err(mut e) = host.sysctl.write(&s.key, s.value) {
            undo(host, &plan.ip_before, &mut e);
            return Err(e);
        }
    }
    if let Err(mut e) = host.nft.apply(&plan.nft) {
        e.nft_refused = true;
        undo(host, &plan.ip_before, &mut e);
        return Err(e);
    }
    host.ip.apply(&plan.ip_after, false)
}

/// [`apply`] by the root helper: one `sudo -n` of it with the plan's
/// changes ([`root::Public::Apply`]); it applies them as [`apply`] does.
fn through_helper(tools: &Tools, plan: &Plan) -> Result<(), ApplyError> {
    if plan.is_empty() {
        return Ok(());
    }
    if !tools.uses_sudo() {
        return Err(ApplyError::new(
            "internal error: a plan sent to the root helper by a driver that does not use it",
        ));
    }
    let what = "apply (the plan's ip, sysctl and nft changes)";
    let ran = tools.run_root(what, &[], b"", || root::Public::apply(plan).to_json())?;
    if ran.success {
        return Ok(());
    }
    let failed: root::Failed = serde_json::from_str(ran.stdout.trim()).unwrap_or_default();
    let mut e = tools.failure(what, &[], &ran);
    e.nft_refused = failed.nft_refused;
    Err(e)
}
