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
//! A NIC alias is judged by its parent NIC's chains (as in OpenNebula). The
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
            "ip saddr vmap @out4",
            "ip6 saddr vmap @out6",
            "ip daddr vmap @in4",
            "ip6 daddr vmap @in6",
        ],
    ),
    ("input", &["ip saddr vmap @out4", "ip6 saddr vmap @out6"]),
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
        for e in endpoints {
            let (vm, nic_id) = nic_of(e);
            if filters.iter().any(|f| (f.vm, f.nic_id) == (vm, nic_id)) {
                ops.extend(
                    addrs(e)
                        .into_iter()
                        .map(|addr| NftOp::AddFilterAddr { addr, vm, nic_id }),
                );
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
        let stale = DIRECTIONS
            .iter()
            .any(|&d| observed.chain_tag(&chain_name(vm, nic_id, d)) != Some(chain_tag(rules, d).as_str()));
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
    let mut delete = |ops: &mut Vec<NftOp>, addr: FilterAddr, vm: u64, nic_id: u32| {
        if deleted.insert((addr, vm, nic_id)) {
            ops.push(NftOp::DeleteFilterAddr { addr, vm, nic_id });
        }
    };
    for e in &request.remove {
        let (vm, nic_id) = nic_of(e);
        for addr in addrs(e) {
            let needed = still
                .iter()
                .any(|s| nic_of(s) == (vm, nic_id) && addrs(s).contains(&addr));
            let chain = chain_name(vm, nic_id, Direction::Inbound);
            if !needed && observed.target(map(addr, Direction::Inbound), addr) == Some(chain.as_str()) {
                delete(&mut ops, addr, vm, nic_id);
            }
        }
    }
    let gone: BTreeSet<(u64, u32)> = request
        .remove
        .iter()
        .map(nic_of)
        .filter(|key| !still.iter().any(|s| nic_of(s) == *key))
        .filter(|&(vm, nic)| {
            DIRECTIONS
                .iter()
                .any(|&d| observed.chains.contains_key(&chain_name(vm, nic, d)))
        })
        .collect();
    for (vm, nic_id) in gone {
        ops.push(NftOp::DeleteFilter { vm, nic_id });
    }
    let mut added = BTreeSet::new();
    for e in &request.ensure {
        let (vm, nic_id) = nic_of(e);
        let chain = chain_name(vm, nic_id, Direction::Inbound);
        if !wanted.contains_key(&(vm, nic_id)) && !observed.chains.contains_key(&chain) {
            continue;
        }
        for addr in addrs(e) {
            match observed.target(map(addr, Direction::Inbound), addr) {
                Some(c) if c == chain => continue,
                Some(other) => {
                    // Left by another NIC (a crash, a record lost): re-pointed.
                    if let Some((ovm, onic)) = parse_chain_name(other) {
                        delete(&mut ops, addr, ovm, onic);
                    }
                }
                None => {}
            }
            if added.insert((addr, vm, nic_id)) {
                ops.push(NftOp::AddFilterAddr { addr, vm, nic_id });
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

const DIRECTIONS: [Direction; 2] = [Direction::Inbound, Direction::Outbound];

/// The filters' part of an `nft -f -` script: the base (when declared),
/// the chains the batch sets or deletes (declared before the maps: nft
/// 1.0.6 refuses an element jumping to a chain declared after its interval
/// map in one transaction), their rules (`flush` then the rules, the last
/// one tagged with their fingerprint), the deletions (an element added then
/// deleted, a chain flushed then deleted: a missing one is no error), then
/// the additions (to chains that must exist: an element never jumps to a
/// chain this batch did not fill or find).
pub fn render(ops: &[NftOp], out: &mut String) {
    let t = format!("inet {FILTER_TABLE}");
    let ensure = ops.contains(&NftOp::EnsureFilters);
    if ensure {
        out.push_str(&format!("add table {t} {{ comment \"{FILTER_COMMENT}\"; }}\n"));
    }
    let declared: BTreeSet<String> = ops
        .iter()
        .filter_map(|o| match o {
            NftOp::SetFilter { vm, nic_id, .. } | NftOp::DeleteFilter { vm, nic_id } => Some((*vm, *nic_id)),
            _ => None,
        })
        .flat_map(|(vm, nic)| DIRECTIONS.map(|d| chain_name(vm, nic, d)))
        .collect();
    for c in &declared {
        out.push_str(&format!("add chain {t} {c}\n"));
    }
    if ensure {
        for (name, decl) in MAPS {
            out.push_str(&format!("add map {t} {name} {{ {decl} }}\n"));
        }
        for (name, rules) in BASE {
            out.push_str(&format!(
                "add chain {t} {name} {{ type filter hook {name} priority filter; policy accept; }}\n"
            ));
            out.push_str(&format!("flush chain {t} {name}\n"));
            for (n, r) in rules.iter().enumerate() {
                out.push_str(&format!("add rule {t} {name} {r} comment \"{}\"\n", rule_tag(name, n)));
            }
        }
    }
    for op in ops {
        if let NftOp::SetFilter { vm, nic_id, rules } = op {
            for d in DIRECTIONS {
                let c = chain_name(*vm, *nic_id, d);
                out.push_str(&format!("flush chain {t} {c}\n"));
                let lines = secgroup::render::chain(rules, d);
                let last = lines.len().saturating_sub(1);
                for (i, line) in lines.iter().enumerate() {
                    if i == last {
                        out.push_str(&format!(
                            "add rule {t} {c} {line} comment \"{}\"\n",
                            chain_tag(rules, d)
                        ));
                    } else {
                        out.push_str(&format!("add rule {t} {c} {line}\n"));
                    }
                }
            }
        }
    }
    let element = |addr: FilterAddr, vm: u64, nic: u32, d: Direction| {
        format!("{} {{ {addr} : jump {} }}", map(addr, d), chain_name(vm, nic, d))
    };
    for op in ops {
        if let NftOp::DeleteFilterAddr { addr, vm, nic_id } = *op {
            for d in DIRECTIONS {
                let e = element(addr, vm, nic_id, d);
                out.push_str(&format!("add element {t} {e}\ndelete element {t} {e}\n"));
            }
        }
    }
    for op in ops {
        if let NftOp::DeleteFilter { vm, nic_id } = *op {
            for d in DIRECTIONS {
                let c = chain_name(vm, nic_id, d);
                out.push_str(&format!("flush chain {t} {c}\ndelete chain {t} {c}\n"));
            }
        }
    }
    for op in ops {
        if let NftOp::AddFilterAddr { addr, vm, nic_id } = *op {
            for d in DIRECTIONS {
                out.push_str(&format!("add element {t} {}\n", element(addr, vm, nic_id, d)));
            }
        }
    }
}

/// The filters' part of a transaction on the simulated table (nft's
/// rules: anything in a missing table fails, an element jumping to a
/// missing chain fails, a key mapped elsewhere fails, a chain still jumped
/// to cannot be deleted).
pub fn simulate(s: &mut FilterState, ops: &[NftOp]) -> Result<(), String> {
    let missing = || "Error: Could not process rule: No such file or directory".to_owned();
    let exists = || "Error: Could not process rule: File exists".to_owned();
    let mut next = s.clone();
    if ops.contains(&NftOp::EnsureFilters) {
        next.table = true;
        for (name, decl) in MAPS {
            let t = if decl.contains("ipv4") {
                "ipv4_addr"
            } else {
                "ipv6_addr"
            };
            next.maps
                .insert(name.to_owned(), (t.to_owned(), decl.contains("interval")));
        }
        for (name, rules) in BASE {
            next.chains.insert(
                name.to_owned(),
                (
                    Some(name.to_owned()),
                    (0..rules.len()).map(|n| Some(rule_tag(name, n))).collect(),
                ),
            );
        }
    }
    let touches = ops
        .iter()
        .any(|o| !matches!(o, NftOp::EnsureFilters) && is_filter_op(o));
    if touches && !next.table {
        return Err(missing());
    }
    for op in ops {
        match op {
            NftOp::SetFilter { vm, nic_id, rules } => {
                for d in DIRECTIONS {
                    let n = secgroup::render::chain(rules, d).len();
                    let mut tags = vec![None; n.saturating_sub(1)];
                    tags.push(Some(chain_tag(rules, d)));
                    next.chains.insert(chain_name(*vm, *nic_id, d), (None, tags));
                }
            }
            NftOp::DeleteFilter { vm, nic_id } => {
                for d in DIRECTIONS {
                    next.chains.entry(chain_name(*vm, *nic_id, d)).or_default();
                }
            }
            _ => {}
        }
    }
    for op in ops {
        if let NftOp::DeleteFilterAddr { addr, vm, nic_id } = *op {
            for d in DIRECTIONS {
                let c = chain_name(vm, nic_id, d);
                if !next.chains.contains_key(&c) {
                    return Err(missing());
                }
                let m = next.elements.entry(map(addr, d).to_owned()).or_default();
                match m.get(&addr) {
                    Some(other) if *other != c => return Err(exists()),
                    _ => {
                        m.remove(&addr);
                    }
                }
            }
        }
    }
    for op in ops {
        if let NftOp::DeleteFilter { vm, nic_id } = *op {
            for d in DIRECTIONS {
                let c = chain_name(vm, nic_id, d);
                if next.elements.values().any(|m| m.values().any(|v| *v == c)) {
                    return Err("Error: Could not process rule: Device or resource busy".into());
                }
                next.chains.remove(&c);
            }
        }
    }
    for op in ops {
        if let NftOp::AddFilterAddr { addr, vm, nic_id } = *op {
            for d in DIRECTIONS {
                let c = chain_name(vm, nic_id, d);
                if !next.chains.contains_key(&c) {
                    return Err(missing());
                }
                let m = next.elements.entry(map(addr, d).to_owned()).or_default();
                match m.get(&addr) {
                    Some(other) if *other != c => return Err(exists()),
                    _ => {
                        m.insert(addr, c);
                    }
                }
            }
        }
    }
    *s = next;
    Ok(())
}

/// Whether an op is one of the filters'.
pub fn is_filter_op(op: &NftOp) -> bool {
    matches!(
        op,
        NftOp::EnsureFilters
            | NftOp::SetFilter { .. }
            | NftOp::DeleteFilter { .. }
            | NftOp::AddFilterAddr { .. }
            | NftOp::DeleteFilterAddr { .. }
    )
}
