//! Security groups of the public NICs, enforced on the host.
//!
//! Each public NIC gets two chains of its own in `table inet
//! one_scaleway_sg`, `nic-<vm>-<nic>-in` and `-out`, holding its security
//! group rules as OpenNebula's own drivers apply them (`secgroup::render`:
//! replies of established connections, the rules, neighbour discovery,
//! `drop`). Verdict maps send a packet to the chains of the NIC it concerns,
//! by the VM's address as the VM sees it (its private address behind the
//! 1:1 NAT, its IPv6 /64 and address):
//!
//! - `forward` (priority `filter`, after the DNAT of `prerouting` and before
//!   the SNAT of `postrouting`): the sender's `-out` chain by source
//!   (`out4`, `out6`), then the receiver's `-in` chain by destination
//!   (`in4`, `in6`); a VM reaching another VM's flexible IP on the same host
//!   passes both;
//! - `input`: what a VM sends to the host itself, through its `-out` chain
//!   (as OpenNebula's `INPUT` rule).
//!
//! Both base chains first accept what is bridged through a private
//! network (`secgroup::SKIP_PRIVATE`: `scaleway_evpn` marks it; with
//! `br_netfilter` it reaches these hooks, with whatever addresses a tenant
//! chose). A NIC alias is judged by its parent NIC's chains (as in OpenNebula). The
//! chains of a NIC are replaced in one transaction (`flush` then the
//! rules), so `update_sg` never leaves a NIC open or half-filtered. The port
//! guard makes sure a VM can only send from its own addresses, which is
//! what keying the chains on source addresses relies on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use opennebula::vm::Vm;
use secgroup::{Direction, Rule};
use serde::{Deserialize, Serialize};

use crate::endpoint::{Endpoint, Public};
use crate::ops::NftOp;
use crate::plan::{Plan, PlanError, Request};

mod script;

pub use script::{is_filter_op, render, simulate};

/// Our table (family `inet`).
pub const FILTER_TABLE: &str = "one_scaleway_sg";
/// The table's comment.
pub const FILTER_COMMENT: &str =
    "one-scaleway: OpenNebula security groups of the VMs' public NICs (OpenNebula VN_MAD scaleway)";

/// The security group rules of one public NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicFilter {
    pub vm: u64,
    pub nic_id: u32,
    pub rules: Vec<Rule>,
}

/// An address in the verdict maps: an IPv4 address, or an IPv6 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FilterAddr {
    V4(Ipv4Addr),
    V6(Ipv6Addr, u8),
}

impl fmt::Display for FilterAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(a) => write!(f, "{a}"),
            Self::V6(a, len) => write!(f, "{a}/{len}"),
        }
    }
}

/// Where a VM address's traffic goes in one direction's map: to its
/// NIC's chain of that direction, or on (`continue`, as if it had no
/// element: the NIC's rules let everything through in that direction, so
/// it needs no chain; OpenNebula's default security group does, both ways).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FilterTarget {
    Chain { vm: u64, nic_id: u32 },
    Continue,
}

impl FilterTarget {
    /// The target of NIC `(vm, nic_id)` with `rules` in `direction`.
    pub fn of(vm: u64, nic_id: u32, rules: &[Rule], direction: Direction) -> Self {
        if open(rules, direction) {
            Self::Continue
        } else {
            Self::Chain { vm, nic_id }
        }
    }

    /// The element's verdict as nft writes it.
    pub fn verdict(self, direction: Direction) -> String {
        match self {
            Self::Chain { vm, nic_id } => format!("jump {}", chain_name(vm, nic_id, direction)),
            Self::Continue => "continue".to_owned(),
        }
    }

    /// As [`FilterState::elements`] keeps it: the chain's name, or `continue`.
    pub fn listed(self, direction: Direction) -> String {
        match self {
            Self::Chain { vm, nic_id } => chain_name(vm, nic_id, direction),
            Self::Continue => CONTINUE.to_owned(),
        }
    }
}

/// A map element's target when it is the `continue` verdict.
pub const CONTINUE: &str = "continue";

/// Whether a NIC's rules leave a direction wide open: then it has no chain
/// for it ([`FilterTarget::Continue`]).
pub use secgroup::open;

/// The NIC whose chains judge an endpoint's traffic: its own, or its
/// parent's for an alias.
pub fn nic_of(e: &Endpoint) -> (u64, u32) {
    (e.owner.vm, e.owner.alias.map_or(e.owner.nic_id, |(_, parent)| parent))
}

/// The VM's addresses of an endpoint, as the VM sees them.
pub fn addrs(e: &Endpoint) -> Vec<FilterAddr> {
    match e.public {
        Public::V4 { ip, .. } => vec![FilterAddr::V4(ip)],
        Public::V6 { ip, prefix, .. } => {
            let mut out = vec![FilterAddr::V6(prefix, 64)];
            if !Public::ip_in_prefix(ip, prefix) {
                out.push(FilterAddr::V6(ip, 128));
            }
            out
        }
    }
}

/// A chain's name.
pub fn chain_name(vm: u64, nic: u32, direction: Direction) -> String {
    let d = match direction {
        Direction::Inbound => "in",
        Direction::Outbound => "out",
    };
    format!("nic-{vm}-{nic}-{d}")
}

/// The rules of the NICs the endpoints belong to (the parent NIC for an
/// alias), from the VM document.
pub fn select(vm: &Vm, endpoints: &[Endpoint]) -> Result<Vec<NicFilter>, PlanError> {
    let nics: BTreeSet<u32> = endpoints.iter().map(|e| nic_of(e).1).collect();
    let mut out = Vec::new();
    for nic_id in nics {
        let Some(raw) = vm.nics.iter().find(|n| !n.alias && n.nic_id == nic_id) else {
            return Err(PlanError::Nic {
                path: format!("VM/TEMPLATE/NIC[NIC_ID={nic_id}]"),
                problem: "is missing (a NIC alias names it as its parent)".into(),
            });
        };
        let rules = secgroup::nic_rules(&vm.security_group_rules, &raw.attrs).map_err(PlanError::Document)?;
        out.push(NicFilter {
            vm: vm.id,
            nic_id,
            rules,
        });
    }
    Ok(out)
}

/// The comment of base rule `n` of `chain`.
pub fn rule_tag(chain: &str, n: usize) -> String {
    format!("one-scaleway sg {chain} {n}")
}

/// The maps: name, declaration.
pub const MAPS: [(&str, &str); 4] = [
    ("in4", "type ipv4_addr : verdict;"),
    ("out4", "type ipv4_addr : verdict;"),
    ("in6", "type ipv6_addr : verdict; flags interval;"),
    ("out6", "type ipv6_addr : verdict; flags interval;"),
];

/// The base chains: name (= hook), rules.
pub const BASE: [(&str, &[&str]); 2] = [
    (
        "forward",
        &[
            secgroup::SKIP_PRIVATE,
            "ip saddr vmap @out4",
            "ip6 saddr vmap @out6",
            "ip daddr vmap @in4",
            "ip6 daddr vmap @in6",
        ],
    ),
    (
        "input",
        &[secgroup::SKIP_PRIVATE, "ip saddr vmap @out4", "ip6 saddr vmap @out6"],
    ),
];

/// The comment on the last rule (`drop`) of a NIC chain: a fingerprint of
/// its rules, so a listing tells whether the chain holds what is wanted.
pub fn chain_tag(rules: &[Rule], direction: Direction) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for line in secgroup::render::chain(rules, direction) {
        for b in line.bytes().chain([b'\n']) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("one-scaleway sg rules {h:016x}")
}

/// The NIC a chain name belongs to.
pub fn parse_chain_name(name: &str) -> Option<(u64, u32)> {
    let rest = name.strip_prefix("nic-")?;
    let rest = rest.strip_suffix("-in").or_else(|| rest.strip_suffix("-out"))?;
    let (vm, nic) = rest.split_once('-')?;
    Some((vm.parse().ok()?, nic.parse().ok()?))
}

/// The filters' table, as listed or as the host record says it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterState {
    pub table: bool,
    /// Map name -> its declaration as listed (`ipv4_addr`, interval).
    pub maps: BTreeMap<String, (String, bool)>,
    /// Chain name -> hook (base chains) and each rule's comment.
    pub chains: BTreeMap<String, (Option<String>, Vec<Option<String>>)>,
    /// Map name -> address -> the chain it jumps to.
    pub elements: BTreeMap<String, BTreeMap<FilterAddr, String>>,
}

impl FilterState {
    /// Whether the table, its maps and base chains are as we declare them.
    pub fn base_ok(&self) -> bool {
        self.table
            && MAPS.iter().all(|(name, decl)| {
                self.maps.get(*name).is_some_and(|(t, interval)| {
                    decl.starts_with(&format!("type {t} ")) && *interval == decl.contains("interval")
                })
            })
            && BASE.iter().all(|(name, rules)| {
                self.chains.get(*name).is_some_and(|(hook, tags)| {
                    hook.as_deref() == Some(*name)
                        && *tags == (0..rules.len()).map(|n| Some(rule_tag(name, n))).collect::<Vec<_>>()
                })
            })
    }

    /// The fingerprint a NIC chain holds (its last rule's comment).
    pub fn chain_tag(&self, name: &str) -> Option<&str> {
        self.chains.get(name)?.1.last()?.as_deref()
    }

    /// The chain `addr` jumps to in `map`.
    pub fn target(&self, map: &str, addr: FilterAddr) -> Option<&str> {
        self.elements.get(map)?.get(&addr).map(String::as_str)
    }

    /// The table as applying `filters` and the filtered addresses of
    /// `endpoints` to an empty host makes it (the host record's model).
    pub fn model<'a>(filters: &[NicFilter], endpoints: impl IntoIterator<Item = &'a Endpoint>) -> Self {
        let mut s = Self::default();
        let mut ops = vec![NftOp::EnsureFilters];
        for f in filters {
            ops.push(NftOp::SetFilter {
                vm: f.vm,
                nic_id: f.nic_id,
                rules: f.rules.clone(),
            });
        }
        let rules: BTreeMap<(u64, u32), &Vec<Rule>> = filters.iter().map(|f| ((f.vm, f.nic_id), &f.rules)).collect();
        for e in endpoints {
            let (vm, nic_id) = nic_of(e);
            if let Some(rules) = rules.get(&(vm, nic_id)) {
                for addr in addrs(e) {
                    for direction in DIRECTIONS {
                        let target = FilterTarget::of(vm, nic_id, rules, direction);
                        ops.push(NftOp::AddFilterAddr {
                            addr,
                            direction,
                            target,
                        });
                    }
                }
            }
        }
        // Conflicting records make a model that plans re-pointing; the
        // kernel then says what is true.
        let _ = simulate(&mut s, &ops);
        s
    }
}

/// Plans the filters of `request` against `observed` (listed, or the
/// record's model).
pub(crate) fn plan(request: &Request, observed: &FilterState, p: &mut Plan) {
    let mut ops = Vec::new();
    let wanted: BTreeMap<(u64, u32), &Vec<Rule>> =
        request.filters.iter().map(|f| ((f.vm, f.nic_id), &f.rules)).collect();
    for (&(vm, nic_id), rules) in &wanted {
        let mut stale = false;
        for d in DIRECTIONS {
            let chain = chain_name(vm, nic_id, d);
            if open(rules, d) {
                // No chain: one left from before goes once nothing jumps to it.
                if observed.chains.contains_key(&chain) {
                    ops.push(NftOp::DeleteFilter {
                        vm,
                        nic_id,
                        direction: d,
                    });
                }
            } else {
                stale |= observed.chain_tag(&chain) != Some(chain_tag(rules, d).as_str());
            }
        }
        if stale {
            ops.push(NftOp::SetFilter {
                vm,
                nic_id,
                rules: (*rules).clone(),
            });
        }
    }
    let still: Vec<&Endpoint> = request.ensure.iter().chain(&request.keep).collect();
    let mut deleted = BTreeSet::new();
    let mut delete = |ops: &mut Vec<NftOp>, addr: FilterAddr, direction: Direction, target: FilterTarget| {
        if deleted.insert((addr, direction)) {
            ops.push(NftOp::DeleteFilterAddr {
                addr,
                direction,
                target,
            });
        }
    };
    // What the NIC's element of an address is in the observed map.
    let current = |addr: FilterAddr, d: Direction| -> Option<FilterTarget> {
        let listed = observed.target(map(addr, d), addr)?;
        if listed == CONTINUE {
            return Some(FilterTarget::Continue);
        }
        let (vm, nic_id) = parse_chain_name(listed)?;
        Some(FilterTarget::Chain { vm, nic_id })
    };
    for e in &request.remove {
        let (vm, nic_id) = nic_of(e);
        for addr in addrs(e) {
            let needed = still
                .iter()
                .any(|s| nic_of(s) == (vm, nic_id) && addrs(s).contains(&addr));
            // `continue` names no NIC: it is this one's when no other
            // endpoint that stays has the address.
            let held = still.iter().any(|s| addrs(s).contains(&addr));
            for d in DIRECTIONS {
                match current(addr, d) {
                    Some(t @ FilterTarget::Chain { vm: v, nic_id: n }) if !needed && (v, n) == (vm, nic_id) => {
                        delete(&mut ops, addr, d, t);
                    }
                    Some(FilterTarget::Continue) if !needed && !held => {
                        delete(&mut ops, addr, d, FilterTarget::Continue);
                    }
                    _ => {}
                }
            }
        }
    }
    let gone: BTreeSet<(u64, u32)> = request
        .remove
        .iter()
        .map(nic_of)
        .filter(|key| !still.iter().any(|s| nic_of(s) == *key))
        .collect();
    for (vm, nic_id) in gone {
        for direction in DIRECTIONS {
            if observed.chains.contains_key(&chain_name(vm, nic_id, direction)) {
                ops.push(NftOp::DeleteFilter { vm, nic_id, direction });
            }
        }
    }
    let mut added = BTreeSet::new();
    for e in &request.ensure {
        let (vm, nic_id) = nic_of(e);
        for d in DIRECTIONS {
            let target = match wanted.get(&(vm, nic_id)) {
                Some(rules) => FilterTarget::of(vm, nic_id, rules, d),
                // Rules not given (a record from before security groups):
                // the NIC's chain when it has one, else nothing.
                None if observed.chains.contains_key(&chain_name(vm, nic_id, d)) => FilterTarget::Chain { vm, nic_id },
                None => continue,
            };
            for addr in addrs(e) {
                match current(addr, d) {
                    Some(t) if t == target => continue,
                    // Left by another NIC (a crash, a record lost), or this
                    // one's from before its rules changed: re-pointed.
                    Some(other) => delete(&mut ops, addr, d, other),
                    None => {}
                }
                if added.insert((addr, d)) {
                    ops.push(NftOp::AddFilterAddr {
                        addr,
                        direction: d,
                        target,
                    });
                }
            }
        }
    }
    if !ops.is_empty() && !observed.base_ok() {
        ops.insert(0, NftOp::EnsureFilters);
    }
    p.nft.ops.extend(ops);
}

/// The map of one family and direction.
pub fn map(addr: FilterAddr, direction: Direction) -> &'static str {
    match (addr, direction) {
        (FilterAddr::V4(_), Direction::Inbound) => "in4",
        (FilterAddr::V4(_), Direction::Outbound) => "out4",
        (FilterAddr::V6(..), Direction::Inbound) => "in6",
        (FilterAddr::V6(..), Direction::Outbound) => "out6",
    }
}

pub(crate) const DIRECTIONS: [Direction; 2] = [Direction::Inbound, Direction::Outbound];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{BridgeName, Owner, Port};

    fn endpoint(vm: u64, nic_id: u32, alias: Option<(u32, u32)>, n: u8) -> Endpoint {
        Endpoint {
            owner: Owner { vm, nic_id, alias },
            bridge: BridgeName::parse("scwpub0").unwrap(),
            public: Public::V4 {
                ip: [172, 30, 0, 4 * n].into(),
                gateway: [172, 30, 0, 4 * n + 1].into(),
                external: [198, 51, 100, n].into(),
            },
            port: Some(Port {
                tap: BridgeName::parse(&format!("one-{vm}-0")).unwrap(),
                mac: [2, 0, 0, 0, 0, n],
            }),
        }
    }

    fn filter(vm: u64, nic_id: u32, inbound_port: u16) -> NicFilter {
        let mut rules = secgroup::default_rules();
        rules[1].protocol = secgroup::Protocol::Tcp;
        rules[1].ports = vec![secgroup::PortRange {
            first: inbound_port,
            last: inbound_port,
        }];
        NicFilter { vm, nic_id, rules }
    }

    fn ops(request: &Request, observed: &FilterState) -> Vec<NftOp> {
        let mut p = Plan::default();
        plan(request, observed, &mut p);
        p.nft.ops
    }

    fn add(n: u8, direction: Direction, target: FilterTarget) -> NftOp {
        NftOp::AddFilterAddr {
            addr: FilterAddr::V4([172, 30, 0, 4 * n].into()),
            direction,
            target,
        }
    }

    fn delete(n: u8, direction: Direction, target: FilterTarget) -> NftOp {
        NftOp::DeleteFilterAddr {
            addr: FilterAddr::V4([172, 30, 0, 4 * n].into()),
            direction,
            target,
        }
    }

    const IN: Direction = Direction::Inbound;
    const OUT: Direction = Direction::Outbound;
    const ON: FilterTarget = FilterTarget::Continue;
    const NIC7: FilterTarget = FilterTarget::Chain { vm: 7, nic_id: 0 };

    /// `filter`'s rules: inbound TCP to one port (a chain), outbound
    /// everything (open: no chain, the elements `continue`).
    #[test]
    fn chains_are_set_only_when_their_rules_change() {
        let (nic, alias) = (endpoint(7, 0, None, 1), endpoint(7, 2, Some((0, 0)), 2));
        let recorded = FilterState::model(&[filter(7, 0, 22)], [&nic, &alias]);
        assert!(recorded.base_ok());
        assert!(recorded.chains.contains_key("nic-7-0-in") && !recorded.chains.contains_key("nic-7-0-out"));
        let same = Request {
            ensure: vec![nic],
            keep: vec![alias],
            filters: vec![filter(7, 0, 22)],
            ..Request::default()
        };
        // The same rules: the VM's address is asserted again, the chains stay.
        assert_eq!(
            ops(&same, &FilterState::model(&[filter(7, 0, 22)], [&alias])),
            [add(1, IN, NIC7), add(1, OUT, ON)]
        );
        assert!(ops(&same, &recorded).is_empty());
        // Other rules: the chains are set again, nothing else.
        let other = Request {
            filters: vec![filter(7, 0, 443)],
            ..same.clone()
        };
        let planned = ops(&other, &recorded);
        assert!(
            matches!(planned[..], [NftOp::SetFilter { nic_id: 0, .. }]),
            "{planned:?}"
        );
        // The alias goes: its address only; the NIC's chain stays for the NIC.
        let detach = Request {
            remove: vec![alias],
            keep: vec![nic],
            ..Request::default()
        };
        assert_eq!(ops(&detach, &recorded), [delete(2, IN, NIC7), delete(2, OUT, ON)]);
        // Both go: their addresses, then the chain.
        let clean = Request {
            remove: vec![nic, alias],
            ..Request::default()
        };
        let planned = ops(&clean, &recorded);
        assert_eq!(planned.len(), 5, "{planned:?}");
        assert_eq!(
            planned[4],
            NftOp::DeleteFilter {
                vm: 7,
                nic_id: 0,
                direction: IN
            }
        );
        // An unknown table (listed empty): the base is declared with the rest.
        assert_eq!(ops(&same, &FilterState::default())[0], NftOp::EnsureFilters);
    }

    /// Rules that open a direction, then close it again (`update_sg`): the
    /// elements are re-pointed in the transaction that adds or deletes the
    /// chain, which the simulation (nft's rules) accepts.
    #[test]
    fn a_direction_opened_or_closed_moves_its_elements_and_its_chain() {
        let nic = endpoint(7, 0, None, 1);
        let closed = filter(7, 0, 22);
        let mut open_both = closed.clone();
        open_both.rules = secgroup::default_rules();
        for (from, to, expected) in [
            (
                &closed,
                &open_both,
                vec![
                    NftOp::DeleteFilter {
                        vm: 7,
                        nic_id: 0,
                        direction: IN,
                    },
                    delete(1, IN, NIC7),
                    add(1, IN, ON),
                ],
            ),
            (
                &open_both,
                &closed,
                vec![
                    NftOp::SetFilter {
                        vm: 7,
                        nic_id: 0,
                        rules: closed.rules.clone(),
                    },
                    delete(1, IN, ON),
                    add(1, IN, NIC7),
                ],
            ),
        ] {
            let mut host = FilterState::model(std::slice::from_ref(from), [&nic]);
            let request = Request {
                ensure: vec![nic],
                filters: vec![to.clone()],
                ..Request::default()
            };
            let planned = ops(&request, &host);
            assert_eq!(planned, expected);
            simulate(&mut host, &planned).unwrap();
            assert_eq!(host, FilterState::model(std::slice::from_ref(to), [&nic]));
            let mut script = String::new();
            render(&planned, &mut script);
            assert!(!script.contains("nic-7-0-out"), "{script}");
        }
        assert!(
            FilterState::model(&[open_both], [&nic])
                .chains
                .keys()
                .all(|c| !c.starts_with("nic-"))
        );
    }

    /// A host set up by a version that gave every NIC two chains: a NIC of
    /// group 0 found with its chains (a listing, after the model's
    /// transaction was refused) loses them, its elements re-pointed, in
    /// one transaction nft accepts.
    #[test]
    fn chains_an_earlier_version_made_for_an_open_nic_go() {
        let nic = endpoint(7, 0, None, 1);
        let mut old = FilterState::model(&[filter(7, 0, 22)], [&nic]);
        // What the earlier version made: both chains, both elements jumping.
        let tags = |d| (None, vec![Some(chain_tag(&secgroup::default_rules(), d))]);
        old.chains.insert("nic-7-0-out".into(), tags(OUT));
        old.chains.insert("nic-7-0-in".into(), tags(IN));
        let addr = FilterAddr::V4([172, 30, 0, 4].into());
        old.elements.get_mut("out4").unwrap().insert(addr, "nic-7-0-out".into());
        let request = Request {
            ensure: vec![nic],
            filters: vec![NicFilter {
                vm: 7,
                nic_id: 0,
                rules: secgroup::default_rules(),
            }],
            ..Request::default()
        };
        let planned = ops(&request, &old);
        let mut host = old.clone();
        simulate(&mut host, &planned).unwrap();
        let open = NicFilter {
            vm: 7,
            nic_id: 0,
            rules: secgroup::default_rules(),
        };
        assert_eq!(host, FilterState::model(&[open], [&nic]), "{planned:?}");
        assert!(host.chains.keys().all(|c| !c.starts_with("nic-")));
    }

    /// A `continue` element names no NIC: a NIC that goes takes it only
    /// when no endpoint that stays has the address.
    #[test]
    fn an_open_address_another_endpoint_holds_stays() {
        let (gone, holder) = (endpoint(7, 0, None, 1), endpoint(8, 0, None, 1));
        let host = FilterState::model(&[filter(8, 0, 22)], [&holder]);
        let request = Request {
            remove: vec![gone],
            keep: vec![holder],
            ..Request::default()
        };
        assert!(ops(&request, &host).is_empty());
        let alone = Request {
            remove: vec![gone],
            ..Request::default()
        };
        assert_eq!(ops(&alone, &host), [delete(1, OUT, ON)]);
    }
}
