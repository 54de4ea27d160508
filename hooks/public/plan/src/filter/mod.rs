//! Security groups of the public NICs, enforced on the host.
//!
//! A NIC's security group rules become two chains in `table inet
//! one_scaleway_sg`, one per direction, holding the rules as OpenNebula's
//! own drivers apply them (`secgroup::render`: replies of established
//! connections, the rules, neighbour discovery, `drop`). A chain holds
//! nothing of its NIC, so NICs whose rules render the same chain share it:
//! `sg-<fingerprint>-in` and `-out` ([`FilterChain::Shared`],
//! `secgroup::chain`), and a direction the rules leave wide open has none
//! (its elements `continue`). A host has a chain per rule set, not per NIC:
//! `nft` reads every chain before each transaction. Verdict maps send a
//! packet to the chain of the NIC it concerns, by the VM's address as the
//! VM sees it (its private address behind the 1:1 NAT, its IPv6 /64 and
//! address):
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
//! chose). A NIC alias is judged by its parent NIC's chains (as in
//! OpenNebula). New rules re-point a NIC's elements to their chain, made in
//! the same transaction when no NIC had it, and the old chain goes in that
//! transaction once nothing jumps to it (the record says which NICs the
//! plan does not see use it: [`chains_in_use`]), so `update_sg` never
//! leaves a NIC open or half-filtered. The port guard makes sure a VM can
//! only send from its own addresses, which is what keying the chains on
//! source addresses relies on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use opennebula::vm::Vm;
use secgroup::{Direction, Fingerprint, Rule};
use serde::{Deserialize, Serialize};

use crate::endpoint::{Endpoint, Public};
use crate::ops::NftOp;
use crate::plan::PlanError;

mod plan;
mod script;

pub(crate) use plan::plan;
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

/// One of our chains: shared by every NIC whose rules render it
/// (`secgroup::chain`), or a NIC's own, as versions before shared chains
/// made them (found on an upgraded host, deleted once nothing jumps to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FilterChain {
    Shared {
        fingerprint: Fingerprint,
        direction: Direction,
    },
    Nic {
        vm: u64,
        nic_id: u32,
        direction: Direction,
    },
}

impl FilterChain {
    /// The chain of `direction` for `rules`: none when they leave it open.
    pub fn of(rules: &[Rule], direction: Direction) -> Option<Self> {
        (!open(rules, direction)).then(|| Self::Shared {
            fingerprint: Fingerprint::of(rules, direction),
            direction,
        })
    }

    /// Its name in the table.
    pub fn name(self) -> String {
        match self {
            Self::Shared { fingerprint, direction } => secgroup::chain::name(fingerprint, direction),
            Self::Nic { vm, nic_id, direction } => {
                format!("nic-{vm}-{nic_id}-{}", suffix(direction))
            }
        }
    }

    /// The chain a name in the table is (`None`: a base chain, or not ours).
    pub fn parse(name: &str) -> Option<Self> {
        if let Some((fingerprint, direction)) = secgroup::chain::parse_name(name) {
            return Some(Self::Shared { fingerprint, direction });
        }
        let rest = name.strip_prefix("nic-")?;
        let (rest, direction) = match rest.strip_suffix("-in") {
            Some(r) => (r, Direction::Inbound),
            None => (rest.strip_suffix("-out")?, Direction::Outbound),
        };
        let (vm, nic) = rest.split_once('-')?;
        Some(Self::Nic {
            vm: vm.parse().ok()?,
            nic_id: nic.parse().ok()?,
            direction,
        })
    }

    pub fn direction(self) -> Direction {
        match self {
            Self::Shared { direction, .. } | Self::Nic { direction, .. } => direction,
        }
    }
}

fn suffix(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => "in",
        Direction::Outbound => "out",
    }
}

/// Where a VM address's traffic goes in one direction's map: to the chain
/// of its NIC's rules, or on (`continue`, as if it had no element: the
/// NIC's rules let everything through in that direction, so it needs no
/// chain; OpenNebula's default security group does, both ways).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FilterTarget {
    Chain(FilterChain),
    Continue,
}

impl FilterTarget {
    /// The target of a NIC with `rules` in `direction`.
    pub fn of(rules: &[Rule], direction: Direction) -> Self {
        FilterChain::of(rules, direction).map_or(Self::Continue, Self::Chain)
    }

    /// The element's verdict as nft writes it.
    pub fn verdict(self) -> String {
        match self {
            Self::Chain(c) => format!("jump {}", c.name()),
            Self::Continue => CONTINUE.to_owned(),
        }
    }

    /// As [`FilterState::elements`] keeps it: the chain's name, or `continue`.
    pub fn listed(self) -> String {
        match self {
            Self::Chain(c) => c.name(),
            Self::Continue => CONTINUE.to_owned(),
        }
    }

    /// The target a listed element names (`None`: a chain not ours).
    pub fn parse(listed: &str) -> Option<Self> {
        if listed == CONTINUE {
            return Some(Self::Continue);
        }
        FilterChain::parse(listed).map(Self::Chain)
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

/// The filters' table, as listed or as the host record says it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterState {
    pub table: bool,
    /// Map name -> its declaration as listed (`ipv4_addr`, interval).
    pub maps: BTreeMap<String, (String, bool)>,
    /// Chain name -> hook (base chains) and each rule's comment.
    pub chains: BTreeMap<String, (Option<String>, Vec<Option<String>>)>,
    /// Map name -> address -> the chain it jumps to, or `continue`.
    pub elements: BTreeMap<String, BTreeMap<FilterAddr, String>>,
    /// Chains that elements this state leaves out jump to (a model of the
    /// NICs an action touches: the chains the record's other NICs use,
    /// [`chains_in_use`]); a plan deletes none of them.
    pub used_elsewhere: BTreeSet<FilterChain>,
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

    /// The tag a chain holds (its last rule's comment).
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
        let mut targets = Targets::default();
        let mut set = BTreeSet::new();
        let mut of_nic = BTreeMap::new();
        for f in filters {
            let t = targets.get(&f.rules);
            for (direction, target) in DIRECTIONS.into_iter().zip(t) {
                if let FilterTarget::Chain(c) = target
                    && set.insert(c)
                {
                    ops.push(NftOp::SetChain {
                        direction,
                        rules: f.rules.clone(),
                    });
                }
            }
            of_nic.insert((f.vm, f.nic_id), t);
        }
        for e in endpoints {
            if let Some(t) = of_nic.get(&nic_of(e)) {
                for addr in addrs(e) {
                    for (direction, target) in DIRECTIONS.into_iter().zip(*t) {
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

/// The targets of rule sets, each computed once
/// (`secgroup::chain::Fingerprints`).
#[derive(Debug, Default)]
pub struct Targets<'a>(secgroup::chain::Fingerprints<'a>);

impl<'a> Targets<'a> {
    /// The targets of a NIC with `rules`, inbound then outbound.
    pub fn get(&mut self, rules: &'a [Rule]) -> [FilterTarget; 2] {
        let [i, o] = self.0.of(rules);
        let target = |fp: Option<Fingerprint>, direction| {
            fp.map_or(FilterTarget::Continue, |fingerprint| {
                FilterTarget::Chain(FilterChain::Shared { fingerprint, direction })
            })
        };
        [target(i, Direction::Inbound), target(o, Direction::Outbound)]
    }
}

/// The shared chains of `candidates` that NICs of `filters` other than
/// `except` jump to: what a plan that sees only `except`'s elements must
/// not delete.
pub fn chains_in_use(
    filters: &[NicFilter],
    except: &BTreeSet<(u64, u32)>,
    candidates: &BTreeSet<FilterChain>,
) -> BTreeSet<FilterChain> {
    let mut out = BTreeSet::new();
    if candidates.is_empty() {
        return out;
    }
    let mut targets = Targets::default();
    for f in filters.iter().filter(|f| !except.contains(&(f.vm, f.nic_id))) {
        for t in targets.get(&f.rules) {
            if let FilterTarget::Chain(c) = t
                && candidates.contains(&c)
            {
                out.insert(c);
            }
        }
        if out.len() == candidates.len() {
            break;
        }
    }
    out
}

/// The NICs of `filters` whose filtering changes: rules other than
/// `recorded`, or one of their chains set by `ops` (found missing or not
/// ours).
pub fn changed<'a>(ops: &[NftOp], filters: &'a [NicFilter], recorded: &[NicFilter]) -> Vec<&'a NicFilter> {
    let set: BTreeSet<FilterChain> = ops
        .iter()
        .filter_map(|o| match o {
            NftOp::SetChain { direction, rules } => FilterChain::of(rules, *direction),
            _ => None,
        })
        .collect();
    filters
        .iter()
        .filter(|f| {
            !recorded.contains(f)
                || DIRECTIONS
                    .iter()
                    .any(|&d| FilterChain::of(&f.rules, d).is_some_and(|c| set.contains(&c)))
        })
        .collect()
}

/// The direction of a map (`in4`, `out6`, ...).
pub fn direction_of(map: &str) -> Option<Direction> {
    match map {
        "in4" | "in6" => Some(Direction::Inbound),
        "out4" | "out6" => Some(Direction::Outbound),
        _ => None,
    }
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
mod tests;
