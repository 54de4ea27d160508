//! The filters' part of a plan.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use secgroup::Direction;

use super::{
    DIRECTIONS, FilterAddr, FilterChain, FilterState, FilterTarget, Targets, addrs, direction_of, map, nic_of,
};
use crate::ops::NftOp;
use crate::plan::{Plan, Request};

/// Plans the filters of `request` against `observed` (listed, or the
/// record's model): the chains the NICs' rules need, set when missing or
/// not filled by us; each address's elements pointed at its NIC's targets;
/// the addresses of removed endpoints taken out; the chains nothing jumps
/// to afterwards deleted (those this plan's elements left, a touched NIC's
/// own chains from an earlier version, and with `collect_chains` every
/// chain of the table).
pub(crate) fn plan(request: &Request, observed: &FilterState, p: &mut Plan) {
    let mut targets = Targets::default();
    let wanted: BTreeMap<(u64, u32), [FilterTarget; 2]> = request
        .filters
        .iter()
        .map(|f| ((f.vm, f.nic_id), targets.get(&f.rules)))
        .collect();
    let mut ops = Vec::new();
    let mut set = BTreeSet::new();
    for f in &request.filters {
        for (direction, t) in DIRECTIONS.into_iter().zip(wanted[&(f.vm, f.nic_id)]) {
            if let FilterTarget::Chain(c @ FilterChain::Shared { fingerprint, .. }) = t
                && observed.chain_tag(&c.name()) != Some(secgroup::chain::tag(fingerprint).as_str())
                && set.insert(c)
            {
                ops.push(NftOp::SetChain {
                    direction,
                    rules: f.rules.clone(),
                });
            }
        }
    }
    let current = |addr: FilterAddr, d: Direction| observed.target(map(addr, d), addr).and_then(FilterTarget::parse);
    let mut deleted: BTreeMap<(FilterAddr, Direction), FilterTarget> = BTreeMap::new();
    if !request.remove.is_empty() {
        // An address an endpoint that stays has (an alias of the same NIC,
        // a VM given it again) keeps its elements.
        let held: HashSet<FilterAddr> = request.ensure.iter().chain(&request.keep).flat_map(addrs).collect();
        for e in &request.remove {
            for addr in addrs(e).into_iter().filter(|a| !held.contains(a)) {
                for d in DIRECTIONS {
                    if let Some(t) = current(addr, d) {
                        deleted.insert((addr, d), t);
                    }
                }
            }
        }
    }
    let mut added = BTreeMap::new();
    for e in &request.ensure {
        // Rules not given (a record from before security groups): its
        // elements stay as they are.
        let Some(t) = wanted.get(&nic_of(e)) else {
            continue;
        };
        for (d, target) in DIRECTIONS.into_iter().zip(*t) {
            for addr in addrs(e) {
                match current(addr, d) {
                    Some(t) if t == target => continue,
                    // Left by another NIC (a crash, a record lost), or this
                    // one's from before its rules changed: re-pointed.
                    Some(other) => {
                        deleted.insert((addr, d), other);
                    }
                    None => {}
                }
                added.entry((addr, d)).or_insert(target);
            }
        }
    }
    let gone = unused_chains(request, observed, &set, &deleted, &added);
    ops.extend(
        deleted
            .iter()
            .map(|(&(addr, direction), &target)| NftOp::DeleteFilterAddr {
                addr,
                direction,
                target,
            }),
    );
    ops.extend(gone.into_iter().map(NftOp::DeleteChain));
    ops.extend(added.iter().map(|(&(addr, direction), &target)| NftOp::AddFilterAddr {
        addr,
        direction,
        target,
    }));
    if !ops.is_empty() && !observed.base_ok() {
        ops.insert(0, NftOp::EnsureFilters);
    }
    p.nft.ops.extend(ops);
}

/// The chains of the table nothing jumps to once the plan's elements are
/// deleted and added, among those that may have become so.
fn unused_chains(
    request: &Request,
    observed: &FilterState,
    set: &BTreeSet<FilterChain>,
    deleted: &BTreeMap<(FilterAddr, Direction), FilterTarget>,
    added: &BTreeMap<(FilterAddr, Direction), FilterTarget>,
) -> Vec<FilterChain> {
    let mut candidates: BTreeSet<FilterChain> = deleted
        .values()
        .filter_map(|t| match t {
            FilterTarget::Chain(c) => Some(*c),
            FilterTarget::Continue => None,
        })
        .collect();
    let nics: BTreeSet<(u64, u32)> = request.ensure.iter().chain(&request.remove).map(nic_of).collect();
    for (vm, nic_id) in nics {
        for direction in DIRECTIONS {
            candidates.insert(FilterChain::Nic { vm, nic_id, direction });
        }
    }
    if request.collect_chains {
        candidates.extend(observed.chains.keys().filter_map(|n| FilterChain::parse(n)));
    }
    candidates.retain(|c| observed.chains.contains_key(&c.name()) && !set.contains(c));
    if candidates.is_empty() {
        return Vec::new();
    }
    let mut used: BTreeSet<String> = added.values().map(|t| t.listed()).collect();
    for (m, elements) in &observed.elements {
        let Some(d) = direction_of(m) else { continue };
        used.extend(
            elements
                .iter()
                .filter(|(addr, _)| !deleted.contains_key(&(**addr, d)))
                .map(|(_, t)| t.clone()),
        );
    }
    candidates
        .into_iter()
        .filter(|c| !used.contains(&c.name()) && !observed.used_elsewhere.contains(c))
        .collect()
}
