//! Our two nftables tables as the host record says they are.
//!
//! Listing a table costs time that grows with its elements (`nft` 1.0.6
//! reads every element of the table even for one key), so `pre` and
//! `clean` do not list them: they plan against this model, built from the
//! endpoints the record holds, and the transaction itself checks the model
//! against the kernel. Additions are idempotent and deletions are rendered
//! as an addition then a deletion, so an element the model has wrong makes
//! no difference, except one that maps a key elsewhere: then the kernel
//! refuses the whole transaction ("File exists"), as it does when a table
//! or set is missing ("No such file or directory": the host rebooted),
//! and the action reads the tables and plans again.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::endpoint::{Endpoint, Public};
use crate::filter::{FilterChain, FilterState, FilterTarget, NicFilter, Targets, chains_in_use, nic_of};
use crate::guard::{GuardState, elements};
use crate::needs::objects;
use crate::observed::{NatState, simulate_nft};
use crate::ops::{NftBatch, NftOp};
use crate::plan::Request;

/// What identifies an endpoint's elements in our tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Vm(u64),
    Port(crate::endpoint::BridgeName),
    Mac([u8; 6]),
    Addr(IpAddr),
}

/// An endpoint's keys (no allocation: `narrow` looks at every endpoint
/// of the host).
fn keys(e: &Endpoint) -> impl Iterator<Item = Key> {
    let port = e.port.map(|p| [Key::Port(p.tap), Key::Mac(p.mac)]);
    let addrs: [IpAddr; 3] = match e.public {
        Public::V4 { ip, gateway, external } => [ip.into(), gateway.into(), external.into()],
        Public::V6 { ip, gateway, prefix } => [ip.into(), gateway.into(), prefix.into()],
    };
    std::iter::once(Key::Vm(e.owner.vm))
        .chain(port.into_iter().flatten())
        .chain(addrs.into_iter().map(Key::Addr))
}

/// `request` with `keep` narrowed to the endpoints that share a key with
/// one it ensures or removes ([`touching`]'s), the bridges of the others
/// in `busy_bridges`: the planner looks at nothing else of them (tested:
/// the plan is the same), and planning then costs the same whatever the
/// number of endpoints the host has.
pub fn narrow(mut request: Request) -> Request {
    let wanted: BTreeSet<Key> = request.ensure.iter().chain(&request.remove).flat_map(keys).collect();
    let (near, far): (Vec<Endpoint>, Vec<Endpoint>) = std::mem::take(&mut request.keep)
        .into_iter()
        .partition(|k| keys(k).any(|key| wanted.contains(&key)));
    request.busy_bridges.extend(far.iter().map(|e| e.bridge));
    request.keep = near;
    request
}

/// The part of the record a plan for `request` looks at: the endpoints it
/// removes, and those it keeps that share a VM, a port (tap or MAC) or an
/// address (private, gateway, flexible IP, IPv6 prefix) with one it
/// ensures or removes. The other endpoints' elements are neither read nor
/// changed by the plan, so modelling them would only make every action
/// cost more with the number of NICs on the host.
pub fn touching(request: &Request) -> Vec<&Endpoint> {
    let wanted: BTreeSet<Key> = request.ensure.iter().chain(&request.remove).flat_map(keys).collect();
    request
        .keep
        .iter()
        .filter(|k| keys(k).any(|key| wanted.contains(&key)))
        .chain(&request.remove)
        .collect()
}

/// The recorded security group rules of the NICs a plan for `request`
/// looks at (those of `touching`, and those it ensures).
pub fn touching_filters(request: &Request, touching: &[&Endpoint], filters: &[NicFilter]) -> Vec<NicFilter> {
    let nics: BTreeSet<(u64, u32)> = touching.iter().copied().chain(&request.ensure).map(nic_of).collect();
    filters
        .iter()
        .filter(|f| nics.contains(&(f.vm, f.nic_id)))
        .cloned()
        .collect()
}

/// The filters' table as the record says it is, for a plan of `request`:
/// the chains of the NICs it looks at, those its NICs' rules need that a
/// recorded NIC already uses (shared: not set again, which would cost the
/// kernel a flush), the elements of `touching` and of the NICs it ensures
/// with other rules than recorded (their elements move to the chain of
/// their new rules; the others' are added again as they are), and the
/// chains that NICs the plan leaves alone use, which it must not delete.
///
/// `outside`: chains NICs beyond the record's part the action read use
/// (they exist, and stay).
pub fn filters(
    request: &Request,
    touching: &[&Endpoint],
    recorded: &[NicFilter],
    outside: &BTreeSet<FilterChain>,
) -> FilterState {
    let filters = touching_filters(request, touching, recorded);
    let old: BTreeMap<(u64, u32), &Vec<secgroup::Rule>> =
        filters.iter().map(|f| ((f.vm, f.nic_id), &f.rules)).collect();
    let changed: BTreeSet<(u64, u32)> = request
        .filters
        .iter()
        .map(|f| ((f.vm, f.nic_id), &f.rules))
        .filter(|(nic, rules)| old.get(nic).is_some_and(|o| o != rules))
        .map(|(nic, _)| nic)
        .collect();
    let moved = request.ensure.iter().filter(|e| changed.contains(&nic_of(e)));
    let mut state = FilterState::model(&filters, touching.iter().copied().chain(moved));
    let mut targets = Targets::default();
    let mut needed = BTreeMap::new();
    for f in &request.filters {
        for t in targets.get(&f.rules) {
            if let FilterTarget::Chain(c) = t
                && !state.chains.contains_key(&c.name())
            {
                needed.entry(c).or_insert(&f.rules);
            }
        }
    }
    let wanted: BTreeSet<FilterChain> = needed.keys().copied().collect();
    let mut existing = chains_in_use(recorded, &BTreeSet::new(), &wanted);
    existing.extend(wanted.intersection(outside).copied());
    for c in existing {
        let op = NftOp::SetChain {
            direction: c.direction(),
            rules: needed[&c].clone(),
        };
        let _ = crate::filter::simulate(&mut state, &[op]);
    }
    // Only a NIC that goes or changes rules may leave a chain unused.
    let except: BTreeSet<(u64, u32)> = request.remove.iter().map(nic_of).chain(changed).collect();
    let candidates: BTreeSet<FilterChain> = filters
        .iter()
        .filter(|f| except.contains(&(f.vm, f.nic_id)))
        .flat_map(|f| targets.get(&f.rules))
        .filter_map(|t| match t {
            FilterTarget::Chain(c) => Some(c),
            FilterTarget::Continue => None,
        })
        .collect();
    state.used_elsewhere = chains_in_use(recorded, &except, &candidates);
    state.used_elsewhere.extend(candidates.intersection(outside).copied());
    state
}

/// Both tables as declaring their base and adding the elements of
/// `endpoints` to empty tables makes them; `None` when the endpoints
/// conflict with each other (a damaged record: read the tables instead).
///
/// Give it the endpoints the record holds that the action does not
/// ensure: the ones it ensures are left out, so their elements are always
/// added again (after a reboot, or an element deleted by hand).
pub fn tables<'a>(endpoints: impl IntoIterator<Item = &'a Endpoint>) -> Option<(NatState, GuardState)> {
    let endpoints: Vec<&Endpoint> = endpoints.into_iter().collect();
    let mut ops = vec![NftOp::EnsureBase, NftOp::EnsureGuard];
    for e in &endpoints {
        if let Some((external, ip)) = objects(e).nat {
            ops.push(NftOp::AddDnat { external, ip });
            ops.push(NftOp::AddSnat { ip, external });
        }
    }
    ops.extend(elements(endpoints.iter().copied()).into_iter().map(NftOp::AddGuard));
    let (mut nat, mut guard) = (NatState::default(), GuardState::default());
    let mut filter = crate::filter::FilterState::default();
    simulate_nft(&mut nat, &mut guard, &mut filter, &NftBatch { ops }).ok()?;
    Some((nat, guard))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{BridgeName, Owner, Port, Public};
    use crate::ops::NFT_DNAT_MAP;

    fn endpoint(vm: u64, n: u8, external: u8) -> Endpoint {
        Endpoint {
            owner: Owner {
                vm,
                nic_id: 0,
                alias: None,
            },
            bridge: BridgeName::parse("scwpub0").unwrap(),
            public: Public::V4 {
                ip: [172, 30, 0, 2 * n].into(),
                gateway: [172, 30, 0, 2 * n + 1].into(),
                external: [198, 51, 100, external].into(),
            },
            port: Some(Port {
                tap: BridgeName::parse(&format!("one-{vm}-0")).unwrap(),
                mac: [2, 0, 0, 0, 0, n],
            }),
        }
    }

    /// Whether both tables' bases are this version's.
    fn base_ok(nat: NatState, guard: GuardState) -> bool {
        let observed = crate::Observed {
            nat,
            guard,
            filter: crate::filter::FilterState::model(&[], []),
            ..crate::Observed::default()
        };
        crate::plan::tables_ok_after(&observed, &crate::Plan::default())
    }

    #[test]
    fn only_the_endpoints_a_request_touches_are_modelled() {
        let new = endpoint(1, 1, 1);
        let unrelated = endpoint(2, 2, 2);
        let same_vm = endpoint(1, 3, 3);
        let same_fip = endpoint(4, 4, 1);
        let mut same_private = endpoint(5, 1, 5);
        same_private.port = None;
        let gone = endpoint(6, 6, 6);
        let request = Request {
            ensure: vec![new],
            remove: vec![gone],
            keep: vec![unrelated, same_vm, same_fip, same_private],
            ..Request::default()
        };
        assert_eq!(
            touching(&request),
            [&request.keep[1], &request.keep[2], &request.keep[3], &gone]
        );
        let filter = |vm| NicFilter {
            vm,
            nic_id: 0,
            rules: Vec::new(),
        };
        let recorded = [filter(1), filter(2), filter(4), filter(9)];
        let kept: Vec<u64> = touching_filters(&request, &touching(&request), &recorded)
            .iter()
            .map(|f| f.vm)
            .collect();
        assert_eq!(kept, [1, 4]);
    }

    /// A NIC of a rule set other recorded NICs have: their chains are in
    /// the model, so its plan only adds its elements (setting a chain again
    /// costs the kernel a flush); the chains of a new rule set are set.
    #[test]
    fn a_shared_chain_in_use_is_modelled() {
        let ssh = |vm| {
            let mut rules = secgroup::default_rules();
            rules[1].protocol = secgroup::Protocol::Tcp;
            rules[1].ports = vec![secgroup::PortRange { first: 22, last: 22 }];
            NicFilter { vm, nic_id: 0, rules }
        };
        let recorded = [ssh(2), ssh(3)];
        let mut https = ssh(1);
        https.rules[1].ports[0].first = 443;
        https.rules[1].ports[0].last = 443;
        for (filter, sets) in [(ssh(1), 0), (https, 1)] {
            let request = Request {
                ensure: vec![endpoint(1, 1, 1)],
                keep: vec![endpoint(2, 2, 2), endpoint(3, 3, 3)],
                filters: vec![filter],
                ..Request::default()
            };
            let observed = filters(&request, &touching(&request), &recorded, &BTreeSet::new());
            let mut p = crate::Plan::default();
            crate::filter::plan(&request, &observed, &mut p);
            let set = p.nft.ops.iter().filter(|o| matches!(o, NftOp::SetChain { .. })).count();
            assert_eq!(set, sets, "{:?}", p.nft.ops);
            assert_eq!(p.nft.ops.len(), sets + 2, "{:?}", p.nft.ops);
        }
    }

    #[test]
    fn the_model_is_what_applying_the_record_makes() {
        let (a, b) = (endpoint(1, 1, 1), endpoint(2, 2, 2));
        let (nat, guard) = tables([&a, &b]).unwrap();
        assert!(base_ok(nat.clone(), guard.clone()));
        assert_eq!(
            nat.get(NFT_DNAT_MAP, [198, 51, 100, 2].into()),
            Some([172, 30, 0, 4].into())
        );
        assert_eq!(guard.elements, elements([&a, &b]));
        let (nat, guard) = tables([]).unwrap();
        assert!(base_ok(nat.clone(), guard.clone()));
        assert!(guard.elements.is_empty());
        // Two recorded endpoints with one flexible IP: no model.
        assert_eq!(tables([&a, &endpoint(3, 3, 1)]), None);
    }
}
