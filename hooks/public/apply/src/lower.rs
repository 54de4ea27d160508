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
//! element; an IPv6 prefix as the interval of its first and last
//! addresses, [`host_tools::nftables::Element`]).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use host_tools::nftables::decl::{DeleteChain, Flush};
use host_tools::nftables::{Change, Data, Element, Elements, Family, Value, Verdict};
use public_plan::NftBatch;
use public_plan::filter::{FilterAddr, FilterChain, FilterTarget, map};
use public_plan::guard::{GUARD_TABLE, GuardElem, SETS};
use public_plan::ops::{NFT_DNAT_MAP, NFT_SNAT_MAP, NFT_TABLE, NftOp};

fn v4(a: Ipv4Addr) -> Value {
    Value::default().ipv4(a)
}

/// The first and last addresses of `prefix/len` (as nft reads a prefix:
/// its address's host bits ignored).
fn range6(prefix: Ipv6Addr, len: u8) -> (Ipv6Addr, Ipv6Addr) {
    let host = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
    (
        Ipv6Addr::from(u128::from(prefix) & !host),
        Ipv6Addr::from(u128::from(prefix) | host),
    )
}

/// A guard element: a key, or (IPv6) an interval of `port . address`, of
/// `port . header bytes` for the neighbour advertisements' target (its
/// first value as the script writes it).
fn guard_element(e: &GuardElem) -> Element {
    let port = |t: &public_plan::endpoint::BridgeName| Value::default().ifname(t.as_str());
    let (key, key_end) = match e {
        GuardElem::Port(t) => (port(t), None),
        GuardElem::Mac(t, mac) => (port(t).ether(*mac), None),
        GuardElem::Addr4(t, a) => (port(t).ipv4(*a), None),
        GuardElem::Addr6(t, a, len) => {
            let (first, last) = range6(*a, *len);
            (port(t).ipv6(first), Some(port(t).ipv6(last)))
        }
        GuardElem::Nd6(t, a, len) => {
            let (_, last) = range6(*a, *len);
            (port(t).raw128(u128::from(*a)), Some(port(t).raw128(u128::from(last))))
        }
    };
    Element {
        key,
        key_end,
        data: Data::None,
    }
}

/// A security group verdict map's element: an address, or an IPv6 prefix.
fn filter_element(addr: FilterAddr, target: FilterTarget) -> Element {
    let (key, key_end) = match addr {
        FilterAddr::V4(a) => (v4(a), None),
        FilterAddr::V6(a, len) => {
            let (first, last) = range6(a, len);
            (Value::default().ipv6(first), Some(Value::default().ipv6(last)))
        }
    };
    Element {
        key,
        key_end,
        data: Data::Verdict(verdict(target)),
    }
}

fn verdict(t: FilterTarget) -> Verdict {
    match t {
        FilterTarget::Chain(c) => Verdict::Jump(c.name()),
        FilterTarget::Continue => Verdict::Continue,
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

/// The batch as netlink changes, in its script's order; `None` for an
/// empty batch, or a base rule or chain line this crate does not know how
/// to compile (then `nft -f -` of the script).
pub fn changes(batch: &NftBatch) -> Option<Vec<Change>> {
    if batch.is_empty() {
        return None;
    }
    let ops = &batch.ops;
    let mut out = Vec::new();
    if ops.contains(&NftOp::EnsureBase) {
        out.extend(crate::base::nat()?);
    }
    let pick = |f: &dyn Fn(&NftOp) -> Option<Element>| ops.iter().filter_map(f).collect::<Vec<_>>();
    let nat = |key, value| Element::new(v4(key), Data::Value(v4(value)));
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
            let elements = pick(&|o| match o {
                NftOp::DeleteGuard(e) if delete && e.set() == set => Some(guard_element(e)),
                NftOp::AddGuard(e) if !delete && e.set() == set => Some(guard_element(e)),
                _ => None,
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
            if delete == matches!(op, NftOp::DeleteFilterAddr { .. }) {
                maps.entry(map(*addr, *direction))
                    .or_default()
                    .push(filter_element(*addr, *target));
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
