//! The changes are the script's, line for line: for every kind of batch
//! the planner makes of the base, chains and elements, the changes read as
//! nft scripts are exactly `NftBatch::render`; IPv6 elements (intervals)
//! as nft sends them ([`v6`]).

#![allow(clippy::unwrap_used)] // test code

use std::net::Ipv4Addr;

use public_plan::NftBatch;
use public_plan::endpoint::BridgeName;
use public_plan::filter::{FilterAddr, FilterChain, FilterTarget};
use public_plan::guard::GuardElem;
use public_plan::ops::NftOp;
use secgroup::Direction;
use secgroup::chain::Fingerprint;

use super::changes;

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn tap(n: u32) -> BridgeName {
    BridgeName::parse(&format!("one-{n}-0")).unwrap()
}

fn shared(direction: Direction) -> FilterTarget {
    FilterTarget::Chain(FilterChain::Shared {
        fingerprint: Fingerprint::of(&[], direction),
        direction,
    })
}

/// A VM's elements: NAT, guard, filters (`add`: its `Add*` ops, else its
/// `Delete*` ops).
fn vm(n: u8, add: bool, target: FilterTarget) -> Vec<NftOp> {
    let (ip, external) = (Ipv4Addr::new(172, 20, 0, n), Ipv4Addr::new(198, 18, 0, n));
    let t = tap(u32::from(n));
    let guard = [
        GuardElem::Port(t),
        GuardElem::Mac(t, [2, 0, 0xac, 0x14, 0, n]),
        GuardElem::Addr4(t, ip),
    ];
    let mut ops = Vec::new();
    if add {
        ops.push(NftOp::AddDnat { external, ip });
        ops.push(NftOp::AddSnat { ip, external });
        ops.extend(guard.into_iter().map(NftOp::AddGuard));
    } else {
        ops.push(NftOp::DeleteDnat { external, ip });
        ops.push(NftOp::DeleteSnat { ip, external });
        ops.extend(guard.into_iter().map(NftOp::DeleteGuard));
    }
    for direction in [Direction::Inbound, Direction::Outbound] {
        let (addr, target) = (
            FilterAddr::V4(ip),
            if target == FilterTarget::Continue {
                target
            } else {
                shared(direction)
            },
        );
        ops.push(NftOp::filter_addr(add, addr, direction, target));
    }
    ops
}

fn script(ops: Vec<NftOp>) -> (String, String) {
    let batch = NftBatch { ops };
    let ours: String = changes(&batch).unwrap().iter().map(|c| format!("{c}\n")).collect();
    (ours, batch.render())
}

#[test]
fn the_changes_are_the_scripts_lines() {
    let restricted = shared(Direction::Inbound);
    let batches = [
        // pre of one VM, group 0 and restricted.
        vm(2, true, FilterTarget::Continue),
        vm(2, true, restricted),
        // clean of one VM.
        vm(2, false, FilterTarget::Continue),
        vm(2, false, restricted),
        // Two VMs at once, one coming and one going, re-mapped keys.
        [
            vm(3, true, restricted),
            vm(4, false, FilterTarget::Continue),
            vm(5, true, FilterTarget::Continue),
        ]
        .concat(),
        [
            vec![NftOp::DeleteDnat {
                external: v4("198.18.0.9"),
                ip: v4("172.20.0.8"),
            }],
            vec![NftOp::AddDnat {
                external: v4("198.18.0.9"),
                ip: v4("172.20.0.9"),
            }],
            vec![NftOp::AddFilterAddr {
                addr: FilterAddr::V4(v4("172.20.0.9")),
                direction: Direction::Inbound,
                target: FilterTarget::Chain(FilterChain::Nic {
                    vm: 9,
                    nic_id: 0,
                    direction: Direction::Inbound,
                }),
            }],
        ]
        .concat(),
        // A host's first pre, a reconcile: the base and many VMs.
        [
            vec![NftOp::EnsureBase, NftOp::EnsureGuard, NftOp::EnsureFilters],
            (1..=200).flat_map(|n| vm(n, true, FilterTarget::Continue)).collect(),
        ]
        .concat(),
        // The guard's base alone (an older version's guard).
        [vec![NftOp::EnsureGuard], vm(2, true, FilterTarget::Continue)].concat(),
        // Chains nothing jumps to any more, deleted (a reconcile, a clean).
        [
            vec![NftOp::EnsureFilters],
            vm(2, false, restricted),
            vec![
                NftOp::DeleteChain(FilterChain::Shared {
                    fingerprint: Fingerprint::of(&[], Direction::Outbound),
                    direction: Direction::Outbound,
                }),
                NftOp::DeleteChain(FilterChain::Shared {
                    fingerprint: Fingerprint::of(&[], Direction::Inbound),
                    direction: Direction::Inbound,
                }),
            ],
            vm(3, true, FilterTarget::Continue),
        ]
        .concat(),
    ];
    for ops in batches {
        let (ours, rendered) = script(ops);
        assert_eq!(ours, rendered);
    }
    let (ours, _) = script(vm(2, false, restricted));
    assert!(
        ours.starts_with(
            "add element ip one_scaleway dnat_map { 198.18.0.2 : 172.20.0.2 }\n\
             delete element ip one_scaleway dnat_map { 198.18.0.2 : 172.20.0.2 }\n"
        ),
        "{ours}"
    );
}

/// Interval elements (IPv6 prefixes) are changes too, beside the others
/// ([`v6`]: as nft sends them); an empty batch is none.
#[test]
fn interval_elements_are_changes_too() {
    let t = tap(7);
    let a6 = "2001:db8::".parse().unwrap();
    for other in [
        NftOp::AddGuard(GuardElem::Addr6(t, a6, 64)),
        NftOp::DeleteGuard(GuardElem::Nd6(t, a6, 64)),
        NftOp::AddFilterAddr {
            addr: FilterAddr::V6(a6, 64),
            direction: Direction::Inbound,
            target: FilterTarget::Continue,
        },
    ] {
        let mut ops = vm(2, true, FilterTarget::Continue);
        ops.push(other.clone());
        let batch = NftBatch { ops };
        let text: String = changes(&batch).unwrap().iter().map(|c| format!("{c}\n")).collect();
        assert_eq!(text, batch.render(), "{other:?}");
    }
    assert_eq!(changes(&NftBatch::default()), None);
}

/// A batch that sets chains of rules is one netlink batch too: the
/// chains' declarations, the base, their rules, then the elements
/// jumping to them, as the script has them; with an IPv6 prefix, none.
#[test]
fn chains_of_rules_are_changes_too() {
    let mut closed = secgroup::default_rules();
    closed.remove(0);
    let direction = [Direction::Inbound, Direction::Outbound]
        .into_iter()
        .find(|d| FilterChain::of(&closed, *d).is_some())
        .unwrap();
    let set = NftOp::SetChain {
        direction,
        rules: closed,
    };
    let restricted = shared(direction);
    let batch = NftBatch {
        ops: [
            vec![NftOp::EnsureBase, NftOp::EnsureGuard, NftOp::EnsureFilters, set],
            vm(2, true, restricted),
        ]
        .concat(),
    };
    let text: String = changes(&batch).unwrap().iter().map(|c| format!("{c}\n")).collect();
    assert_eq!(text, batch.render());
    assert!(text.contains("flush chain inet one_scaleway_sg sg-"), "{text}");
    assert!(text.contains(": jump sg-"), "{text}");
}

mod v6;
