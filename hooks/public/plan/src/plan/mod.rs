//! The planner: wanted endpoints + observed host state -> the changes.
//!
//! [`plan`] is a pure function. It adds what the endpoints to ensure need and
//! is missing, removes what the endpoints to remove had and nothing else
//! still needs, and refuses (changing nothing) when the host already maps a
//! flexible IP or a private IP of ours to something else. The plan is
//! empty when the host already matches, so applying twice is a no-op.
//!
//! Bridges: a bridge is created when missing (and recorded as ours). It is
//! deleted only when all of these hold: we created it, no endpoint to keep
//! or to ensure uses it, and it has no port left (no VM tap or anything
//! else attached). Otherwise it stays: an empty bridge costs nothing, a
//! deleted one under a running VM would cut it off.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use opennebula::attr::DocError;

use crate::conflict::{Conflicts, Index, check_endpoints, holder};
use crate::endpoint::{BridgeName, Endpoint, Public};
use crate::needs::objects;
use crate::observed::{HostAddress, NatState, Observed, Rule};
use crate::ops::{
    IpOp, NFT_DNAT_MAP, NFT_POSTROUTING, NFT_PREROUTING, NFT_SNAT_MAP, NFT_TABLE, NftBatch, NftOp, Route, SysctlWrite,
    bridge_mac,
};

mod removal;

use removal::plan_removal;

/// Why there is no plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// The VM document cannot be read.
    Document(DocError),
    /// A NIC attribute does not fit (`path` names it).
    Nic { path: String, problem: String },
    /// The host already maps an address of ours to something else.
    Conflict(Vec<String>),
    /// Host state we cannot work with (a device that is not a bridge, a
    /// table of ours changed by hand), with what to do about it.
    Host(String),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Document(e) => write!(f, "{e}"),
            Self::Nic { path, problem } => write!(f, "{path} {problem}"),
            Self::Conflict(list) => write!(
                f,
                "refusing a conflicting mapping, nothing was changed: {}",
                list.join("; ")
            ),
            Self::Host(problem) => f.write_str(problem),
        }
    }
}

impl std::error::Error for PlanError {}

/// What to plan for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Endpoints that must be in place afterwards.
    pub ensure: Vec<Endpoint>,
    /// Endpoints that must be gone afterwards (what another endpoint still
    /// needs stays). An address whose mapping changes (same flexible IP,
    /// new private IP) is refused as a conflict when its old mapping is
    /// removed in the same plan: plan the removal first, then the addition.
    pub remove: Vec<Endpoint>,
    /// The other endpoints known on this host: never touched; what they
    /// need is never removed, and an address of theirs is never re-mapped.
    pub keep: Vec<Endpoint>,
    /// Bridges we created (the only ones we may delete).
    pub owned_bridges: BTreeSet<BridgeName>,
    /// Bridges that endpoints beyond `ensure`, `remove` and `keep` use
    /// (those [`crate::model::narrow`] leaves out): never deleted.
    pub busy_bridges: BTreeSet<BridgeName>,
    /// The security group rules to set on NICs (those of `ensure`, or of
    /// a VM whose groups changed).
    pub filters: Vec<crate::filter::NicFilter>,
    /// Delete every chain of the filters' table nothing jumps to (a
    /// listing's plan: `reconcile`).
    pub collect_chains: bool,
}

/// The changes, in the order they are applied: `ip_before` (rtnetlink
/// changes, in order), `sysctls`, `nft` (one transaction), `ip_after`.
/// Additions come first and NAT last, so a flexible IP is only ever
/// translated to an address the host routes; removals take the NAT away
/// first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub ip_before: Vec<IpOp>,
    pub sysctls: Vec<SysctlWrite>,
    pub nft: NftBatch,
    pub ip_after: Vec<IpOp>,
    /// Bridges this plan creates (to record as ours).
    pub bridges_created: Vec<BridgeName>,
    /// Bridges of ours this plan deletes, or found gone (to forget).
    pub bridges_deleted: Vec<BridgeName>,
    /// Things worth a log line (what was left alone, and why).
    pub notes: Vec<String>,
}

impl Plan {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.ip_before.is_empty() && self.sysctls.is_empty() && self.nft.is_empty() && self.ip_after.is_empty()
    }

    /// Whether its only changes are nft element additions and deletions
    /// (no-ops for elements that exist, and for missing ones): what `pre`
    /// of a VM in place, or a second `clean`, plans when it trusts the host
    /// record for our tables' contents.
    pub fn only_nft_elements(&self) -> bool {
        self.ip_before.is_empty()
            && self.sysctls.is_empty()
            && self.ip_after.is_empty()
            && self
                .nft
                .ops
                .iter()
                .all(|o| !matches!(o, NftOp::EnsureBase | NftOp::EnsureGuard))
    }

    /// How many nftables transactions applying it makes: one or none (the
    /// applier sends it through nf_tables netlink, or as one `nft -f -`;
    /// the `ip` changes are rtnetlink messages from the driver's process,
    /// sysctls file writes).
    pub fn processes(&self) -> usize {
        usize::from(!self.nft.is_empty())
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for note in &self.notes {
            writeln!(f, "# note: {note}")?;
        }
        if self.is_empty() {
            return writeln!(f, "# nothing to change");
        }
        if !self.ip_before.is_empty() {
            writeln!(f, "# ip (rtnetlink, in order)")?;
            for op in &self.ip_before {
                writeln!(f, "{op}")?;
            }
        }
        if !self.sysctls.is_empty() {
            writeln!(f, "# sysctl (written under /proc/sys, read back)")?;
            for s in &self.sysctls {
                writeln!(f, "{s}")?;
            }
        }
        if !self.nft.is_empty() {
            writeln!(f, "# nft -f -")?;
            f.write_str(&self.nft.render())?;
        }
        if !self.ip_after.is_empty() {
            writeln!(f, "# ip (rtnetlink, in order)")?;
            for op in &self.ip_after {
                writeln!(f, "{op}")?;
            }
        }
        Ok(())
    }
}

/// Whether our table is as we make it: `Ok(true)` yes, `Ok(false)` parts
/// are missing or its rules differ (re-declaring it repairs that), `Err`
/// when it holds something a re-declaration cannot fix.
fn base_is_ok(nat: &NatState) -> Result<bool, String> {
    if !nat.table {
        return Ok(false);
    }
    let mut ok = true;
    for map in [NFT_DNAT_MAP, NFT_SNAT_MAP] {
        match nat.maps.get(map) {
            None => ok = false,
            Some(m) if m.key_type != "ipv4_addr" || m.data_type != "ipv4_addr" => {
                return Err(format!("map {map} has type {} : {}", m.key_type, m.data_type));
            }
            Some(_) => {}
        }
    }
    for (chain, hook, prio, snat, field, map) in [
        (NFT_PREROUTING, "prerouting", -100, false, "daddr", NFT_DNAT_MAP),
        (NFT_POSTROUTING, "postrouting", 100, true, "saddr", NFT_SNAT_MAP),
    ] {
        match nat.chains.get(chain) {
            None => ok = false,
            Some(c) => {
                if c.kind.as_deref() != Some("nat") || c.hook.as_deref() != Some(hook) || c.prio != Some(prio) {
                    return Err(format!(
                        "chain {chain} is a {} chain on hook {} priority {}, not a nat chain on {hook} priority {prio}",
                        c.kind.as_deref().unwrap_or("regular"),
                        c.hook.as_deref().unwrap_or("none"),
                        c.prio.map_or("none".to_owned(), |p| p.to_string())
                    ));
                }
                let expected = Rule::NatMap {
                    snat,
                    field: field.to_owned(),
                    map: map.to_owned(),
                };
                if c.rules != [Rule::SkipPrivate, expected] {
                    ok = false;
                }
            }
        }
    }
    Ok(ok)
}

/// Whether our tables' bases are as this version declares them once
/// `plan` is applied to the `observed` host (each found intact, or
/// declared by the plan).
pub fn tables_ok_after(observed: &Observed, plan: &Plan) -> bool {
    (base_is_ok(&observed.nat) == Ok(true) || plan.nft.ops.contains(&NftOp::EnsureBase))
        && (crate::guard::base_is_ok(&observed.guard) == Ok(true) || plan.nft.ops.contains(&NftOp::EnsureGuard))
        && (observed.filter.base_ok() || plan.nft.ops.contains(&NftOp::EnsureFilters))
}

/// Collects items in first-seen order, once each.
struct Ordered<T: Ord + Clone> {
    items: Vec<T>,
    seen: BTreeSet<T>,
}

impl<T: Ord + Clone> Ordered<T> {
    fn new() -> Self {
        Self {
            items: Vec::new(),
            seen: BTreeSet::new(),
        }
    }

    fn push(&mut self, item: T) {
        if self.seen.insert(item.clone()) {
            self.items.push(item);
        }
    }
}

/// A VM's addresses must not be inside one of the host's own networks (the
/// EVPN underlay, the host's public subnet...): its route and proxy entries
/// would take the host's own traffic (BGP, VXLAN, SSH) to the VM. The
/// flexible IP itself may share the host's public subnet.
fn check_host_networks(e: &Endpoint, observed: &Observed, conflicts: &mut Conflicts) {
    let (vm_side, prefix): (Vec<IpAddr>, Option<(IpAddr, u8)>) = match e.public {
        Public::V4 { ip, gateway, .. } => (vec![ip.into(), gateway.into()], None),
        Public::V6 { ip, gateway, prefix } => (vec![ip.into(), gateway.into()], Some((prefix.into(), 64))),
    };
    for host in observed.addresses.iter().filter(|a| !a.is_link_local()) {
        let inside = vm_side.iter().find(|a| host.contains(**a)).copied().or_else(|| {
            prefix
                .map(|(p, len)| HostAddress {
                    addr: p,
                    len,
                    dev: String::new(),
                })
                .filter(|p| p.contains(host.addr))
                .map(|_| host.addr)
        });
        if let Some(address) = inside {
            conflicts.add(
                address,
                format!(
                    "{}: address {address} is inside this host's own network {}/{} ({} on {}): the VM would take \
                     the host's own traffic; give its address range a PRIVATE_CIDR outside the host's networks",
                    e.owner,
                    host.network(),
                    host.len,
                    host.addr,
                    host.dev
                ),
            );
        }
    }
}

/// Plans `request` against the `observed` host.
pub fn plan(request: &Request, observed: &Observed) -> Result<Plan, PlanError> {
    let keep = Index::of(&request.keep);
    let mut conflicts = Conflicts::default();
    check_endpoints(&request.ensure, &keep, &mut conflicts);
    for e in &request.ensure {
        check_host_networks(e, observed, &mut conflicts);
    }

    // What the endpoints to ensure need, and conflicts with the kernel.
    let mut bridges = Ordered::new();
    let mut routes = Ordered::new();
    let mut proxies = Ordered::new();
    let mut sysctls: Vec<SysctlWrite> = Vec::new();
    let mut nat: Vec<(Ipv4Addr, Ipv4Addr)> = Vec::new();
    for e in &request.ensure {
        bridges.push(e.bridge);
        let o = objects(e);
        for r in o.routes {
            routes.push(r);
        }
        for p in o.proxies {
            proxies.push(p);
        }
        for s in o.sysctls {
            if !sysctls.iter().any(|x| x.key == s.key) {
                sysctls.push(s);
            }
        }
        if let Some((external, ip)) = o.nat {
            if let Some(theirs) = observed.nat.get(NFT_DNAT_MAP, external).filter(|t| *t != ip) {
                conflicts.add(external, format!(
                    "flexible IP {external} is already mapped to {theirs} on this host ({}): refusing to map it to {ip} for {}",
                    holder(keep.owner_of_private(theirs)),
                    e.owner
                ));
            }
            if let Some(theirs) = observed.nat.get(NFT_SNAT_MAP, ip).filter(|t| *t != external) {
                conflicts.add(ip, format!(
                    "private IP {ip} is already translated to {theirs} on this host ({}): refusing to translate it to {external} for {}",
                    holder(keep.owner_of_external(theirs)),
                    e.owner
                ));
            }
            nat.push((external, ip));
        }
    }
    let route_state = |r: &Route| -> (bool, Vec<String>) {
        let mut exact = false;
        let mut others = Vec::new();
        for o in observed.routes.iter().filter(|o| o.dst == r.dst && o.len == r.len) {
            if o.dev.as_deref() == Some(r.dev.as_str()) && o.gateway == r.via && o.kind.is_none() {
                exact = true;
            } else {
                let mut text = match &o.kind {
                    Some(k) => format!("{k} {}/{}", o.dst, o.len),
                    None => format!("{}/{}", o.dst, o.len),
                };
                if let Some(g) = o.gateway {
                    text.push_str(&format!(" via {g}"));
                }
                if let Some(d) = &o.dev {
                    text.push_str(&format!(" dev {d}"));
                }
                others.push(text);
            }
        }
        (exact, others)
    };
    let mut missing_routes = Vec::new();
    for r in &routes.items {
        let (exact, others) = route_state(r);
        if !exact && !others.is_empty() {
            conflicts.add(
                r.dst,
                format!(
                    "the host already routes {}/{} elsewhere ({}): refusing to route it to {}",
                    r.dst,
                    r.len,
                    others.join(", "),
                    r.dev
                ),
            );
        }
        if !exact {
            missing_routes.push(*r);
        }
    }
    if !conflicts.list.is_empty() {
        return Err(PlanError::Conflict(conflicts.list));
    }

    let mut p = Plan::default();
    // Bridges, routes, proxies.
    for &b in &bridges.items {
        match observed.link(b) {
            None => {
                p.ip_before.push(IpOp::AddBridge {
                    name: b,
                    mac: bridge_mac(b),
                });
                p.ip_before.push(IpOp::SetUp(b));
                p.bridges_created.push(b);
            }
            Some(l) if l.kind.as_deref() != Some("bridge") => {
                return Err(PlanError::Host(format!(
                    "BRIDGE {b} exists on this host but is a {} device, not a bridge: use another BRIDGE \
                     in the virtual network, or remove that device",
                    l.kind.as_deref().unwrap_or("physical")
                )));
            }
            Some(l) if !l.up => p.ip_before.push(IpOp::SetUp(b)),
            Some(_) => {}
        }
    }
    p.ip_before.extend(missing_routes.into_iter().map(IpOp::AddRoute));
    p.ip_before.extend(
        proxies
            .items
            .iter()
            .filter(|x| !observed.has_proxy(x.addr, x.dev))
            .map(|x| IpOp::AddProxy(*x)),
    );
    // Sysctls (a bridge created now has none yet: they are all written).
    p.sysctls = sysctls
        .into_iter()
        .filter(|s| observed.sysctls.get(&s.key).map(String::as_str) != Some(s.value))
        .collect();
    // NAT.
    if !nat.is_empty() {
        match base_is_ok(&observed.nat) {
            Ok(true) => {}
            Ok(false) => {
                if observed.nat.table {
                    p.notes.push(format!(
                        "table ip {NFT_TABLE} lacks parts or its rules were changed: re-declaring it (its elements stay)"
                    ));
                }
                p.nft.ops.push(NftOp::EnsureBase);
            }
            Err(problem) => {
                return Err(PlanError::Host(format!(
                    "table ip {NFT_TABLE} is not as the driver makes it ({problem}): if nothing else uses it, \
                     delete it (`nft delete table ip {NFT_TABLE}`) and run the driver's reconcile to rebuild it"
                )));
            }
        }
        for &(external, ip) in &nat {
            if observed.nat.get(NFT_DNAT_MAP, external).is_none() {
                p.nft.ops.push(NftOp::AddDnat { external, ip });
            }
            if observed.nat.get(NFT_SNAT_MAP, ip).is_none() {
                p.nft.ops.push(NftOp::AddSnat { ip, external });
            }
        }
    }

    let still: Vec<&Endpoint> = request.ensure.iter().chain(&request.keep).collect();
    crate::guard::plan(&request.ensure, &request.remove, &still, observed, &mut p)?;
    plan_removal(request, observed, &mut p);
    crate::filter::plan(request, &observed.filter, &mut p);
    Ok(p)
}
