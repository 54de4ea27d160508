//! The port guard: what a VM may send on the public bridge.
//!
//! Every public NIC of a host shares one bridge. Without a guard, a VM
//! could answer ARP or neighbour solicitations for a neighbour's address
//! (and receive its inbound flexible-IP traffic), poison the gateway entry
//! of a neighbour, make the bridge learn a neighbour's MAC on its own port,
//! or send with a neighbour's source address, which the SNAT map would then
//! rewrite to the neighbour's flexible IP.
//!
//! One nftables table of family `bridge`, `one_scaleway_guard`, keyed by
//! the VM's port (its tap, the NIC's `TARGET`: the rules hold before the
//! tap exists, so the guard is in place before the VM's first frame):
//!
//! - `prerouting` (before the bridge learns a source MAC): a frame from a
//!   guarded port must carry the port's MAC (Ethernet source and ARP
//!   sender), an ARP sender address and an IPv4 source of the port's own
//!   (0.0.0.0 allowed in ARP probes), an IPv6 source of the port's own
//!   addresses or /64s (or `::`, link-local), a neighbour advertisement's
//!   target likewise; router advertisements, redirects and every other
//!   Ethernet type (VLAN tags included) are dropped;
//! - `forward` and `output` (port isolation): a frame reaches a guarded
//!   port only when it is addressed to that port's MAC, so no VM receives
//!   another VM's broadcasts, ARP or neighbour solicitations, or unicast
//!   that the bridge floods (an unknown or aged MAC); the host's own
//!   broadcasts and multicasts still reach every port. A unicast frame from
//!   one VM to another's MAC stays possible: that is how `br_netfilter`
//!   (loaded on OpenNebula's KVM nodes) delivers a VM's traffic to another
//!   VM's flexible IP on the same host after the NAT, and the sender's
//!   addresses have been checked by then.
//!
//! The per-port facts are set elements (`ports`, `macs`, `addr4`, `addr6`,
//! and `nd6`, the same IPv6 ranges typed for the raw target field), added
//! by `pre` and deleted by `clean` exactly, in the NAT's transaction. The
//! host also keeps a permanent neighbour entry for each VM address (the
//! VM's MAC), so nothing a VM sends can redirect another VM's traffic.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::endpoint::{BridgeName, Endpoint, Port, Public, mac_text};
use crate::observed::Observed;
use crate::ops::{IpOp, NftOp};
use crate::plan::{Plan, PlanError};

/// Our table (family `bridge`).
pub const GUARD_TABLE: &str = "one_scaleway_guard";
/// The table's comment, so an administrator knows whose it is.
pub const GUARD_COMMENT: &str =
    "one-scaleway: only a VM's own MAC and addresses leave its port, no frame between VMs (OpenNebula VN_MAD scaleway)";
/// The sets, with their declarations.
pub const SETS: [(&str, &str); 5] = [
    ("ports", "type ifname;"),
    ("macs", "type ifname . ether_addr;"),
    ("addr4", "type ifname . ipv4_addr;"),
    ("addr6", "type ifname . ipv6_addr; flags interval;"),
    ("nd6", "typeof iifname . @th,64,128; flags interval;"),
];
/// The base chains: name, hook, priority, rules. Each rule is tagged with
/// a comment naming its place, so a changed or missing rule is seen.
pub const CHAINS: [(&str, &str, i64, &[&str]); 3] = [
    (
        "prerouting",
        "prerouting",
        -200,
        &[
            "iifname != @ports accept",
            "iifname . ether saddr != @macs drop",
            "iifname . arp saddr ether != @macs drop",
            "arp saddr ip != 0.0.0.0 iifname . arp saddr ip != @addr4 drop",
            "iifname . ip saddr != @addr4 drop",
            "ip6 saddr != { ::, fe80::/10 } iifname . ip6 saddr != @addr6 drop",
            "icmpv6 type { nd-router-advert, nd-redirect } drop",
            "icmpv6 type nd-neighbor-advert @th,64,128 & 0xffc00000000000000000000000000000 != \
             0xfe800000000000000000000000000000 iifname . @th,64,128 != @nd6 drop",
            "ether type != { ip, arp, ip6 } drop",
        ],
    ),
    (
        "forward",
        "forward",
        0,
        &["iifname @ports oifname . ether daddr != @macs drop"],
    ),
    (
        "output",
        "output",
        0,
        &["oifname @ports ether daddr & 01:00:00:00:00:00 == 00:00:00:00:00:00 oifname . ether daddr != @macs drop"],
    ),
];

/// The comment of rule `n` of `chain`.
pub fn rule_tag(chain: &str, n: usize) -> String {
    format!("one-scaleway guard {chain} {n}")
}

/// One element of the guard's sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardElem {
    /// A guarded port.
    Port(BridgeName),
    /// The port's MAC.
    Mac(BridgeName, [u8; 6]),
    /// An IPv4 address the port may send from.
    Addr4(BridgeName, Ipv4Addr),
    /// An IPv6 prefix the port may send from.
    Addr6(BridgeName, Ipv6Addr, u8),
    /// The same prefix, as the neighbour-advertisement target's range.
    Nd6(BridgeName, Ipv6Addr, u8),
}

impl GuardElem {
    /// The set it belongs to.
    pub fn set(&self) -> &'static str {
        match self {
            Self::Port(_) => "ports",
            Self::Mac(..) => "macs",
            Self::Addr4(..) => "addr4",
            Self::Addr6(..) => "addr6",
            Self::Nd6(..) => "nd6",
        }
    }

    /// The port it concerns.
    pub fn tap(&self) -> BridgeName {
        match *self {
            Self::Port(t) | Self::Mac(t, _) | Self::Addr4(t, _) | Self::Addr6(t, ..) | Self::Nd6(t, ..) => t,
        }
    }
}

/// The last address of `prefix/len`.
fn last(prefix: Ipv6Addr, len: u8) -> Ipv6Addr {
    let host = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
    Ipv6Addr::from(u128::from(prefix) | host)
}

/// nft's syntax for the element.
impl fmt::Display for GuardElem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Port(t) => write!(f, "\"{t}\""),
            Self::Mac(t, mac) => write!(f, "\"{t}\" . {}", mac_text(mac)),
            Self::Addr4(t, a) => write!(f, "\"{t}\" . {a}"),
            Self::Addr6(t, a, len) => write!(f, "\"{t}\" . {a}/{len}"),
            Self::Nd6(t, a, len) => write!(
                f,
                "\"{t}\" . 0x{:032x}-0x{:032x}",
                u128::from(a),
                u128::from(last(a, len))
            ),
        }
    }
}

/// A permanent neighbour entry of the host: the VM's address on the bridge
/// always resolves to the VM's MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Neigh {
    pub addr: IpAddr,
    pub mac: [u8; 6],
    pub dev: BridgeName,
}

impl fmt::Display for Neigh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} lladdr {} dev {}", self.addr, mac_text(self.mac), self.dev)
    }
}

/// A neighbour entry as the host has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighState {
    pub mac: Option<[u8; 6]>,
    pub permanent: bool,
}

/// The host's permanent neighbour entry for an endpoint's VM address
/// (none without a known port).
pub fn neighbour(e: &Endpoint) -> Option<Neigh> {
    let port = e.port?;
    let addr = match e.public {
        Public::V4 { ip, .. } => IpAddr::V4(ip),
        Public::V6 { ip, .. } => IpAddr::V6(ip),
    };
    Some(Neigh {
        addr,
        mac: port.mac,
        dev: e.bridge,
    })
}

/// The guard's elements for `endpoints`: per VM and bridge, each port of
/// the VM with its MAC, and every address of the VM on each of its ports.
/// A VM may answer from one public NIC for the address of another (a guest
/// with one default route does), never for another VM's.
pub fn elements<'a>(endpoints: impl IntoIterator<Item = &'a Endpoint>) -> BTreeSet<GuardElem> {
    // (VM, bridge) -> its ports, its addresses.
    type Group = (BTreeSet<Port>, Vec<Public>);
    let mut groups: BTreeMap<(u64, BridgeName), Group> = BTreeMap::new();
    for e in endpoints {
        let Some(port) = e.port else { continue };
        let g = groups.entry((e.owner.vm, e.bridge)).or_default();
        g.0.insert(port);
        g.1.push(e.public);
    }
    let mut out = BTreeSet::new();
    for (ports, addresses) in groups.into_values() {
        for &Port { tap: t, mac } in &ports {
            out.insert(GuardElem::Port(t));
            out.insert(GuardElem::Mac(t, mac));
            for public in &addresses {
                match *public {
                    Public::V4 { ip, .. } => {
                        out.insert(GuardElem::Addr4(t, ip));
                    }
                    Public::V6 { ip, prefix, .. } => {
                        out.insert(GuardElem::Addr6(t, prefix, 64));
                        out.insert(GuardElem::Nd6(t, prefix, 64));
                        if !Public::ip_in_prefix(ip, prefix) {
                            out.insert(GuardElem::Addr6(t, ip, 128));
                            out.insert(GuardElem::Nd6(t, ip, 128));
                        }
                    }
                }
            }
        }
    }
    out
}

/// The table as observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardState {
    pub table: bool,
    /// Set name -> (types, interval flag).
    pub sets: BTreeMap<String, (Vec<String>, bool)>,
    pub chains: BTreeMap<String, GuardChain>,
    pub elements: BTreeSet<GuardElem>,
}

/// One chain of the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardChain {
    pub hook: Option<String>,
    pub prio: Option<i64>,
    /// Each rule's comment.
    pub rules: Vec<Option<String>>,
}

/// The types nft reports for each set (`nd6`'s raw field is an integer).
fn set_types(name: &str) -> (Vec<String>, bool) {
    let t = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    match name {
        "ports" => (t(&["ifname"]), false),
        "macs" => (t(&["ifname", "ether_addr"]), false),
        "addr4" => (t(&["ifname", "ipv4_addr"]), false),
        "addr6" => (t(&["ifname", "ipv6_addr"]), true),
        _ => (t(&["ifname", "integer"]), true),
    }
}

/// `Ok(true)` when the table is as we make it, `Ok(false)` when parts are
/// missing or rules differ (re-declaring it repairs that, its elements
/// stay), `Err` when a set has another type (only deleting the table helps).
pub fn base_is_ok(g: &GuardState) -> Result<bool, String> {
    if !g.table {
        return Ok(false);
    }
    let mut ok = true;
    for (name, _) in SETS {
        match g.sets.get(name) {
            None => ok = false,
            Some(shape) if *shape != set_types(name) => {
                return Err(format!("set {name} has type {}", shape.0.join(" . ")));
            }
            Some(_) => {}
        }
    }
    for (name, hook, prio, rules) in CHAINS {
        let want: Vec<Option<String>> = (0..rules.len()).map(|n| Some(rule_tag(name, n))).collect();
        match g.chains.get(name) {
            Some(c) if c.hook.as_deref() == Some(hook) && c.prio == Some(prio) && c.rules == want => {}
            Some(c) if c.hook.is_some() && (c.hook.as_deref() != Some(hook) || c.prio != Some(prio)) => {
                return Err(format!(
                    "chain {name} is on hook {} priority {}, not {hook} priority {prio}",
                    c.hook.as_deref().unwrap_or("none"),
                    c.prio.map_or("none".to_owned(), |p| p.to_string())
                ));
            }
            _ => ok = false,
        }
    }
    Ok(ok)
}

/// The guard's part of an `nft -f -` script: the base when `ops` ensures
/// it, then deletions (each an `add` then a `delete` of the element, so a
/// missing one is no error), then additions, one line per set and verb.
pub fn render(ops: &[NftOp], out: &mut String) {
    let t = format!("bridge {GUARD_TABLE}");
    if ops.contains(&NftOp::EnsureGuard) {
        out.push_str(&format!("add table {t} {{ comment \"{GUARD_COMMENT}\"; }}\n"));
        for (name, decl) in SETS {
            out.push_str(&format!("add set {t} {name} {{ {decl} }}\n"));
        }
        for (name, hook, prio, rules) in CHAINS {
            out.push_str(&format!(
                "add chain {t} {name} {{ type filter hook {hook} priority {prio}; policy accept; }}\n"
            ));
            out.push_str(&format!("flush chain {t} {name}\n"));
            for (n, rule) in rules.iter().enumerate() {
                out.push_str(&format!(
                    "add rule {t} {name} {rule} comment \"{}\"\n",
                    rule_tag(name, n)
                ));
            }
        }
    }
    for (verbs, pick) in [
        (
            &["add", "delete"][..],
            (|o: &NftOp| matches!(o, NftOp::DeleteGuard(_))) as fn(&NftOp) -> bool,
        ),
        (&["add"][..], |o: &NftOp| matches!(o, NftOp::AddGuard(_))),
    ] {
        for (set, _) in SETS {
            let items: Vec<String> = ops
                .iter()
                .filter(|o| pick(o))
                .filter_map(|o| match o {
                    NftOp::AddGuard(e) | NftOp::DeleteGuard(e) if e.set() == set => Some(e.to_string()),
                    _ => None,
                })
                .collect();
            if !items.is_empty() {
                for verb in verbs {
                    out.push_str(&format!("{verb} element {t} {set} {{ {} }}\n", items.join(", ")));
                }
            }
        }
    }
}

/// The guard's part of a transaction on the simulated table (nft's rules:
/// adding an element that exists is accepted; a deletion, rendered as an
/// addition then a deletion, is accepted for a missing element).
pub fn simulate(g: &mut GuardState, ops: &[NftOp]) -> Result<(), String> {
    if ops.contains(&NftOp::EnsureGuard) {
        g.table = true;
        for (name, _) in SETS {
            g.sets.entry(name.to_owned()).or_insert_with(|| set_types(name));
        }
        for (name, hook, prio, rules) in CHAINS {
            g.chains.insert(
                name.to_owned(),
                GuardChain {
                    hook: Some(hook.to_owned()),
                    prio: Some(prio),
                    rules: (0..rules.len()).map(|n| Some(rule_tag(name, n))).collect(),
                },
            );
        }
    }
    for op in ops {
        match op {
            NftOp::AddGuard(_) | NftOp::DeleteGuard(_) if !g.table => {
                return Err("Error: No such file or directory".into());
            }
            NftOp::DeleteGuard(e) => {
                g.elements.remove(e);
            }
            _ => {}
        }
    }
    for op in ops {
        if let NftOp::AddGuard(e) = op {
            g.elements.insert(*e);
        }
    }
    Ok(())
}

/// Plans the guard of `ensure` (elements, base, neighbour entries) and the
/// removal of what `remove` had that `still` (the endpoints that stay,
/// `ensure` included) does not need.
pub(crate) fn plan(
    ensure: &[Endpoint],
    remove: &[Endpoint],
    still: &[&Endpoint],
    observed: &Observed,
    p: &mut Plan,
) -> Result<(), PlanError> {
    let vms = |list: &[Endpoint]| list.iter().map(|e| e.owner.vm).collect::<BTreeSet<u64>>();
    let (ensured, removed) = (vms(ensure), vms(remove));
    let wanted = elements(still.iter().copied().filter(|e| ensured.contains(&e.owner.vm)));
    for el in &wanted {
        if !observed.guard.elements.contains(el) {
            p.nft.ops.push(NftOp::AddGuard(*el));
        }
    }
    if ensure.iter().any(|e| e.port.is_some()) {
        match base_is_ok(&observed.guard) {
            Ok(true) => {}
            Ok(false) => {
                if observed.guard.table {
                    p.notes.push(format!(
                        "table bridge {GUARD_TABLE} lacks parts or its rules were changed: re-declaring it (its elements stay)"
                    ));
                }
                p.nft.ops.insert(0, NftOp::EnsureGuard);
            }
            Err(problem) => {
                return Err(PlanError::Host(format!(
                    "table bridge {GUARD_TABLE} is not as the driver makes it ({problem}): delete it (`nft delete \
                     table bridge {GUARD_TABLE}`) and run the driver's reconcile to rebuild it"
                )));
            }
        }
    }
    // In the endpoints' order, each once (a set beside: reconcile has
    // thousands).
    let (mut neighbours, mut seen): (Vec<Neigh>, BTreeSet<Neigh>) = (Vec::new(), BTreeSet::new());
    for n in ensure.iter().filter_map(neighbour) {
        let want = NeighState {
            mac: Some(n.mac),
            permanent: true,
        };
        if observed.neighbours.get(&(n.addr, n.dev.as_str().to_owned())) != Some(&want) && seen.insert(n) {
            neighbours.push(n);
        }
    }
    p.ip_before.extend(neighbours.into_iter().map(IpOp::SetNeigh));

    if remove.is_empty() {
        return Ok(());
    }
    // What the VMs losing endpoints had, minus what anything that stays
    // needs. An element names a port (tap), so only the VMs with a port of
    // theirs can need one of them: those are the ones modelled, not every
    // VM on the host.
    let losing: Vec<&Endpoint> = still
        .iter()
        .copied()
        .chain(remove)
        .filter(|e| removed.contains(&e.owner.vm))
        .collect();
    let taps: BTreeSet<BridgeName> = losing.iter().filter_map(|e| e.port.map(|p| p.tap)).collect();
    let sharing: BTreeSet<u64> = still
        .iter()
        .filter(|e| removed.contains(&e.owner.vm) || e.port.is_some_and(|p| taps.contains(&p.tap)))
        .map(|e| e.owner.vm)
        .collect();
    let before = elements(losing.iter().copied());
    let kept = elements(still.iter().copied().filter(|e| sharing.contains(&e.owner.vm)));
    for el in before.difference(&kept) {
        if observed.guard.elements.contains(el) {
            p.nft.ops.push(NftOp::DeleteGuard(*el));
        }
    }
    let gone: BTreeSet<(IpAddr, BridgeName)> = remove.iter().filter_map(neighbour).map(|n| (n.addr, n.dev)).collect();
    let kept_neighbours: BTreeSet<(IpAddr, BridgeName)> = still
        .iter()
        .filter_map(|e| neighbour(e))
        .map(|n| (n.addr, n.dev))
        .filter(|k| gone.contains(k))
        .collect();
    for n in remove.iter().filter_map(neighbour) {
        let theirs = observed.neighbours.get(&(n.addr, n.dev.as_str().to_owned()));
        if theirs.is_some_and(|s| s.permanent && s.mac == Some(n.mac))
            && !kept_neighbours.contains(&(n.addr, n.dev))
            && !p.ip_after.contains(&IpOp::DeleteNeigh(n))
        {
            p.ip_after.push(IpOp::DeleteNeigh(n));
        }
    }
    Ok(())
}
