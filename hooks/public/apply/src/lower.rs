//! A transaction as nf_tables netlink changes ([`host_tools::nftables`]),
//! applied from the driver's process instead of an `nft` process: the
//! base of our tables ([`crate::base`]: a host's first `pre`, `reconcile`),
//! the chains of the security groups' rules ([`crate::chains`]: a group's
//! first VM on the host, `reconcile`) and the elements of our sets and maps
//! (a VM's NAT mappings, its port's guard elements, its addresses' security
//! group verdicts: most `pre` and `clean`).
//!
//! The changes are the script's own, line for line ([`NftBatch::render`]:
//! the same order, a deletion as an addition then a deletion of the same
//! element); a transaction that holds elements of interval sets (IPv6
//! prefixes, whose ends nft computes) goes to `nft -f -` whole.

use std::collections::BTreeSet;

use host_tools::nftables::decl::{DeleteChain, Flush};
use host_tools::nftables::{Change, Data, Element, Elements, Family, Value, Verdict};
use public_plan::NftBatch;
use public_plan::filter::{FilterAddr, FilterChain, FilterTarget, map};
use public_plan::guard::{GUARD_TABLE, GuardElem, SETS};
use public_plan::ops::{NFT_DNAT_MAP, NFT_SNAT_MAP, NFT_TABLE, NftOp};

fn v4(a: std::net::Ipv4Addr) -> Value {
    Value::default().ipv4(a)
}

/// A guard element's key (`None`: an interval set's).
fn guard_key(e: &GuardElem) -> Option<Value> {
    let port = |t: &public_plan::endpoint::BridgeName| Value::default().ifname(t.as_str());
    match e {
        GuardElem::Port(t) => Some(port(t)),
        GuardElem::Mac(t, mac) => Some(port(t).ether(*mac)),
        GuardElem::Addr4(t, a) => Some(port(t).ipv4(*a)),
        GuardElem::Addr6(..) | GuardElem::Nd6(..) => None,
    }
}

fn verdict(t: FilterTarget) -> Verdict {
    match t {
        FilterTarget::Chain(c) => Verdict::Jump(c.name()),
        FilterTarget::Continue => Verdict::Continue,
    }
}

/// Whether `op` is a change this module sends (the base: when its rules
/// are known, [`changes`] tells).
fn lowered(op: &NftOp) -> bool {
    match op {
        NftOp::AddDnat { .. } | NftOp::AddSnat { .. } | NftOp::DeleteDnat { .. } | NftOp::DeleteSnat { .. } => true,
        NftOp::AddGuard(e) | NftOp::DeleteGuard(e) => guard_key(e).is_some(),
        NftOp::AddFilterAddr { addr, .. } | NftOp::DeleteFilterAddr { addr, .. } => {
            matches!(addr, FilterAddr::V4(_))
        }
        NftOp::EnsureBase | NftOp::EnsureGuard | NftOp::EnsureFilters => true,
        NftOp::DeleteChain(_) | NftOp::SetChain { .. } => true,
    }
}

/// Appends the changes of `elements` (of one set): an addition, or a
/// deletion as an addition then a deletion.
fn push(out: &mut Vec<Change>, delete: bool, family: Family, table: &str, set: &str, elements: Vec<Element>) {
    if elements.is_empty() {
        return;
    }
    let change = |add: bool, elements: Vec<Element>| {
        Change::from(Elements {
            add,
            family,
            table: table.to_owned(),
            set: set.to_owned(),
            elements,
        })
    };
    if delete {
        out.push(change(true, elements.clone()));
        out.push(change(false, elements));
    } else {
        out.push(change(true, elements));
    }
}

/// The batch as netlink changes, in its script's order; `None` when it
/// holds anything else (a chain of rules set, an IPv6 prefix).
pub fn changes(batch: &NftBatch) -> Option<Vec<Change>> {
    if batch.is_empty() || !batch.ops.iter().all(lowered) {
        return None;
    }
    let ops = &batch.ops;
    let mut out = Vec::new();
    if ops.contains(&NftOp::EnsureBase) {
        out.extend(crate::base::nat()?);
    }
    let pick = |f: &dyn Fn(&NftOp) -> Option<Element>| ops.iter().filter_map(f).collect::<Vec<_>>();
    let nat = |key, value| Element {
        key: v4(key),
        data: Data::Value(v4(value)),
    };
    for (delete, set, elements) in [
        (
            true,
            NFT_DNAT_MAP,
            pick(&|o| match o {
                NftOp::DeleteDnat { external, ip } => Some(nat(*external, *ip)),
                _ => None,
            }),
        ),
        (
            true,
            NFT_SNAT_MAP,
            pick(&|o| match o {
                NftOp::DeleteSnat { ip, external } => Some(nat(*ip, *external)),
                _ => None,
            }),
        ),
        (
            false,
            NFT_DNAT_MAP,
            pick(&|o| match o {
                NftOp::AddDnat { external, ip } => Some(nat(*external, *ip)),
                _ => None,
            }),
        ),
        (
            false,
            NFT_SNAT_MAP,
            pick(&|o| match o {
                NftOp::AddSnat { ip, external } => Some(nat(*ip, *external)),
                _ => None,
            }),
        ),
    ] {
        push(&mut out, delete, Family::Ip, NFT_TABLE, set, elements);
    }
    if ops.contains(&NftOp::EnsureGuard) {
        out.extend(crate::base::guard()?);
    }
    for delete in [true, false] {
        for (set, _) in SETS {
            let elements = pick(&|o| {
                match o {
                    NftOp::DeleteGuard(e) if delete && e.set() == set => guard_key(e),
                    NftOp::AddGuard(e) if !delete && e.set() == set => guard_key(e),
                    _ => None,
                }
                .map(|key| Element { key, data: Data::None })
            });
            push(&mut out, delete, Family::Bridge, GUARD_TABLE, set, elements);
        }
    }
    // The security groups' table: the chains set or deleted are declared
    // first (deleting a missing one is no error), those set flushed and
    // filled after the base, those deleted flushed and deleted between the
    // deletions and the additions of elements, as the script has them.
    let t = || public_plan::filter::FILTER_TABLE.to_owned();
    let declared: BTreeSet<String> = ops
        .iter()
        .filter_map(|o| match o {
            NftOp::SetChain { direction, rules } => FilterChain::of(rules, *direction).map(FilterChain::name),
            NftOp::DeleteChain(c) => Some(c.name()),
            _ => None,
        })
        .collect();
    if ops.contains(&NftOp::EnsureFilters) {
        out.push(crate::base::filter_table());
    }
    out.extend(declared.iter().map(|c| crate::chains::declare(c)));
    if ops.contains(&NftOp::EnsureFilters) {
        out.extend(crate::base::filter_base()?);
    }
    for op in ops {
        if let NftOp::SetChain { direction, rules } = op
            && FilterChain::of(rules, *direction).is_some()
        {
            out.extend(crate::chains::set_chain(*direction, rules)?);
        }
    }
    for delete in [true, false] {
        if !delete {
            for op in ops {
                if let NftOp::DeleteChain(c) = op {
                    let (family, table, chain) = (Family::Inet, t(), c.name());
                    out.push(Change::Flush(Flush {
                        family,
                        table: table.clone(),
                        chain: chain.clone(),
                    }));
                    out.push(Change::DeleteChain(DeleteChain { family, table, chain }));
                }
            }
        }
        let mut maps: std::collections::BTreeMap<&str, Vec<Element>> = std::collections::BTreeMap::new();
        for op in ops {
            let (NftOp::DeleteFilterAddr {
                addr,
                direction,
                target,
            }
            | NftOp::AddFilterAddr {
                addr,
                direction,
                target,
            }) = op
            else {
                continue;
            };
            if let (FilterAddr::V4(a), true) = (addr, delete == matches!(op, NftOp::DeleteFilterAddr { .. })) {
                maps.entry(map(*addr, *direction)).or_default().push(Element {
                    key: v4(*a),
                    data: Data::Verdict(verdict(*target)),
                });
            }
        }
        for (m, elements) in maps {
            push(
                &mut out,
                delete,
                Family::Inet,
                public_plan::filter::FILTER_TABLE,
                m,
                elements,
            );
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests;
