//! `public_apply::lower` against the real kernel, in namespaces made for
//! the test: the base of our three tables and a host's elements, sent
//! through nf_tables netlink, leave exactly the ruleset `nft -f` of the
//! same script leaves (as `nft list ruleset` shows it: the rules nft reads
//! back from the kernel's expressions, the sets' types, the comments),
//! also when sent again over it; a refused batch leaves nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::net::Ipv4Addr;
use std::time::Duration;

use host_tools::nftables::{Change, Nftables};
use nix::sched::CloneFlags;
use public_apply::lower::changes;
use public_plan::NftBatch;
use public_plan::endpoint::BridgeName;
use public_plan::filter::{FilterAddr, FilterTarget};
use public_plan::guard::GuardElem;
use public_plan::ops::NftOp;
use secgroup::Direction;
use test_support::{NetNs, require_root};

fn send(ns: &NetNs, changes: Vec<Change>) -> Result<(), host_tools::netlink::Error> {
    let path = format!("/run/netns/{}", ns.name());
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
        Nftables::open(Duration::from_secs(10)).unwrap().apply(&changes)
    })
    .join()
    .unwrap()
}

/// VM `n`'s elements (one public NIC, group 0).
fn vm(n: u32) -> Vec<NftOp> {
    let ip = Ipv4Addr::from(0xac14_0000 + n);
    let external = Ipv4Addr::from(0xc612_0000 + n);
    let tap = BridgeName::parse(&format!("one-{n}-0")).unwrap();
    let mac = [2, 0, 0, 0, (n >> 8) as u8, n as u8];
    let mut ops = vec![
        NftOp::AddDnat { external, ip },
        NftOp::AddSnat { ip, external },
        NftOp::AddGuard(GuardElem::Port(tap)),
        NftOp::AddGuard(GuardElem::Mac(tap, mac)),
        NftOp::AddGuard(GuardElem::Addr4(tap, ip)),
    ];
    for direction in [Direction::Inbound, Direction::Outbound] {
        ops.push(NftOp::AddFilterAddr {
            addr: FilterAddr::V4(ip),
            direction,
            target: FilterTarget::Continue,
        });
    }
    ops
}

fn base_and(vms: std::ops::Range<u32>) -> NftBatch {
    let mut ops = vec![NftOp::EnsureBase, NftOp::EnsureGuard, NftOp::EnsureFilters];
    ops.extend(vms.flat_map(vm));
    NftBatch { ops }
}

fn ruleset(ns: &NetNs) -> String {
    ns.run_ok(&["nft", "list", "ruleset"], b"")
}

/// Our three tables' listings (in this order, whatever order they were
/// made in).
fn tables(ns: &NetNs) -> Vec<String> {
    [
        ["ip", "one_scaleway"],
        ["bridge", "one_scaleway_guard"],
        ["inet", "one_scaleway_sg"],
    ]
    .iter()
    .map(|[family, name]| ns.run(&["nft", "list", "table", family, name], b"").stdout)
    .collect()
}

#[test]
#[ignore = "needs root: run with --include-ignored"]
fn the_base_and_elements_are_what_nft_makes_of_the_script() {
    require_root();
    let (ours, nft) = (NetNs::new("lowa"), NetNs::new("lowb"));
    // 2,500 VMs: each map's elements more than one message holds.
    let batch = base_and(0..2500);
    send(&ours, changes(&batch).unwrap()).unwrap();
    nft.run_ok(&["nft", "-f", "-"], batch.render().as_bytes());
    let listed = ruleset(&ours);
    assert_eq!(listed, ruleset(&nft));
    for expected in [
        "ip6 saddr != { ::, fe80::/10 } iifname . ip6 saddr != @addr6 drop comment \"one-scaleway guard prerouting 5\"",
        "typeof iifname . @th,64,128",
        "dnat to ip daddr map @dnat_map",
        "\"one-2499-0\" . 172.20.9.195",
    ] {
        assert!(listed.contains(expected), "{expected} in\n{listed}");
    }
    // Again over it (a reconcile of a host whose tables are there): the
    // chains flushed and filled again, the elements kept.
    let again = base_and(0..2501);
    send(&ours, changes(&again).unwrap()).unwrap();
    nft.run_ok(&["nft", "-f", "-"], again.render().as_bytes());
    assert_eq!(ruleset(&ours), ruleset(&nft));
    assert_eq!(ruleset(&ours).matches("one-scaleway guard prerouting 5").count(), 1);
}

#[test]
#[ignore = "needs root: run with --include-ignored"]
fn a_refused_batch_leaves_nothing() {
    require_root();
    let ns = NetNs::new("lowr");
    // A flexible IP mapped elsewhere: the base and the other VMs of the
    // same batch are not left half made.
    let mut batch = base_and(0..10);
    let stale = Ipv4Addr::from(0xc612_0000 + 3);
    batch.ops.push(NftOp::AddDnat {
        external: stale,
        ip: Ipv4Addr::new(10, 9, 9, 9),
    });
    let e = send(&ns, changes(&batch).unwrap()).unwrap_err();
    assert_eq!(e.errno, Some(17), "{e}");
    assert!(e.message.contains("dnat_map"), "{e}");
    assert_eq!(ruleset(&ns), "");
}

/// A batch that sets a security group's chains (every rule form OpenNebula
/// has: the document a real oned sent) and elements jumping to them,
/// through netlink, leaves the ruleset `nft -f` of the script leaves; a
/// chain deleted through netlink goes.
#[test]
#[ignore = "needs root: run with --include-ignored"]
fn chains_of_rules_and_the_rest_are_what_nft_makes_of_the_script() {
    const COUNT: u32 = 1500;
    use public_plan::filter::FilterChain;
    require_root();
    // Its NIC in group 100 only (both directions restricted), as the
    // benchmark has it.
    let doc = test_support::set_attribute(
        &test_support::fixture("vnm/secgroup-scaleway-pre.xml"),
        "NIC",
        "NIC_ID",
        "0",
        "SECURITY_GROUPS",
        Some("100"),
    );
    let doc_vm = opennebula::vm::Vm::from_element(&opennebula::xml::parse(doc.as_bytes()).unwrap()).unwrap();
    let endpoints = public_plan::select(&doc_vm).unwrap();
    let rules = public_plan::filter::select(&doc_vm, &endpoints.endpoints[..1])
        .unwrap()
        .remove(0)
        .rules;
    let mut ops = vec![NftOp::EnsureBase, NftOp::EnsureGuard, NftOp::EnsureFilters];
    let mut targets = Vec::new();
    for direction in [Direction::Inbound, Direction::Outbound] {
        let chain = FilterChain::of(&rules, direction).expect("both directions restricted");
        ops.push(NftOp::SetChain {
            direction,
            rules: rules.clone(),
        });
        targets.push((direction, FilterTarget::Chain(chain)));
    }
    for n in 0..COUNT {
        ops.extend(vm(n).into_iter().map(|o| match o {
            NftOp::AddFilterAddr { addr, direction, .. } => NftOp::AddFilterAddr {
                addr,
                direction,
                target: targets.iter().find(|(d, _)| *d == direction).unwrap().1,
            },
            o => o,
        }));
    }
    let batch = NftBatch { ops };
    let (ours, nft) = (NetNs::new("lowc"), NetNs::new("lowd"));
    send(&ours, changes(&batch).unwrap()).unwrap();
    nft.run_ok(&["nft", "-f", "-"], batch.render().as_bytes());
    assert_eq!(tables(&ours), tables(&nft));
    assert!(ruleset(&ours).contains("jump sg-"));
    // The VMs gone, their chains deleted with them.
    let mut gone: Vec<NftOp> = (0..COUNT)
        .flat_map(vm)
        .filter_map(|o| match o {
            NftOp::AddFilterAddr { addr, direction, .. } => Some(NftOp::DeleteFilterAddr {
                addr,
                direction,
                target: targets.iter().find(|(d, _)| *d == direction).unwrap().1,
            }),
            _ => None,
        })
        .collect();
    for (_, t) in &targets {
        if let FilterTarget::Chain(c) = t {
            gone.push(NftOp::DeleteChain(*c));
        }
    }
    let gone = NftBatch { ops: gone };
    send(&ours, changes(&gone).unwrap()).unwrap();
    nft.run_ok(&["nft", "-f", "-"], gone.render().as_bytes());
    assert_eq!(tables(&ours), tables(&nft));
    assert!(!ruleset(&ours).contains("sg-"));
}

/// What `NftCommand` does with a transaction that sets a group's chains
/// and is refused (a flexible IP mapped elsewhere): nothing changed, its
/// chains included, and the error says so; the transaction once the
/// conflict is gone applies whole.
#[test]
#[ignore = "needs root: run with --include-ignored"]
fn a_refused_transaction_with_chains_changes_nothing() {
    use public_apply::nft::{Nft, NftCommand};
    require_root();
    let ns = NetNs::new("lowe");
    let (closed, direction, chain) = closed_group();
    let mut ops = vec![
        NftOp::EnsureBase,
        NftOp::EnsureGuard,
        NftOp::EnsureFilters,
        NftOp::SetChain {
            direction,
            rules: closed,
        },
    ];
    ops.extend(vm(1).into_iter().map(|o| match o {
        NftOp::AddFilterAddr { addr, direction: d, .. } if d == direction => NftOp::AddFilterAddr {
            addr,
            direction: d,
            target: FilterTarget::Chain(chain),
        },
        o => o,
    }));
    let batch = NftBatch { ops };
    // VM 1's flexible IP already mapped to another address.
    ns.run_ok(
        &["nft", "-f", "-"],
        format!(
            "add table ip one_scaleway\nadd map ip one_scaleway dnat_map {{ type ipv4_addr : ipv4_addr; }}\n\
             add element ip one_scaleway dnat_map {{ {} : 10.9.9.9 }}\n",
            Ipv4Addr::from(0xc612_0000 + 1)
        )
        .as_bytes(),
    );
    let path = format!("/run/netns/{}", ns.name());
    let apply = move |batch: NftBatch| {
        let path = path.clone();
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
            let tools = host_tools::Tools::direct(Duration::from_secs(10));
            NftCommand { tools: &tools }.apply(&batch)
        })
        .join()
        .unwrap()
    };
    let e = apply(batch.clone()).unwrap_err();
    assert!(e.message.contains("dnat_map"), "{e}");
    assert!(
        e.message
            .contains("nothing was changed: the transaction is all or nothing"),
        "{e}"
    );
    for (family, table) in [("inet", "one_scaleway_sg"), ("bridge", "one_scaleway_guard")] {
        assert_eq!(ns.run(&["nft", "list", "table", family, table], b"").code, 1, "{table}");
    }
    // The conflict gone: the same transaction applies whole.
    ns.run_ok(&["nft", "flush", "map", "ip", "one_scaleway", "dnat_map"], b"");
    apply(batch).unwrap();
    let sg = ns.run_ok(&["nft", "list", "table", "inet", "one_scaleway_sg"], b"");
    assert!(sg.contains(&format!("jump {}", chain.name())), "{sg}");
}

/// OpenNebula's default group without its inbound rule: the rules, the
/// direction they close, and its chain.
fn closed_group() -> (Vec<secgroup::Rule>, Direction, public_plan::filter::FilterChain) {
    use public_plan::filter::FilterChain;
    let mut closed = secgroup::default_rules();
    closed.remove(0);
    let direction = [Direction::Inbound, Direction::Outbound]
        .into_iter()
        .find(|d| FilterChain::of(&closed, *d).is_some())
        .unwrap();
    let chain = FilterChain::of(&closed, direction).unwrap();
    (closed, direction, chain)
}

/// VM `n`'s IPv6 elements (its prefix: a /64, or a /128 for every third
/// VM; a prefix written with host bits, as nft reads it; VM 0's prefix
/// reaches the last address) jumping to the chains of `targets`, or on.
fn vm6(n: u32, add: bool, targets: &[(Direction, FilterTarget)]) -> Vec<NftOp> {
    let tap = BridgeName::parse(&format!("one-{n}-0")).unwrap();
    let (prefix, len) = match n {
        0 => ("ffff:ffff:ffff:ffff::".parse().unwrap(), 64),
        n if n.is_multiple_of(3) => (
            std::net::Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0000u128 + u128::from(n)),
            128,
        ),
        n => (
            std::net::Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0001u128 + (u128::from(n) << 64)),
            64,
        ),
    };
    let mut ops: Vec<NftOp> = [GuardElem::Addr6(tap, prefix, len), GuardElem::Nd6(tap, prefix, len)]
        .into_iter()
        .map(|g| if add { NftOp::AddGuard(g) } else { NftOp::DeleteGuard(g) })
        .collect();
    for (direction, target) in targets {
        let (addr, direction, target) = (FilterAddr::V6(prefix, len), *direction, *target);
        ops.push(NftOp::filter_addr(add, addr, direction, target));
    }
    ops
}

/// IPv6 elements (the guard's `port . prefix` intervals, the filters'
/// prefix maps, some jumping to a group's chains) through netlink leave
/// the tables `nft -f` of the same script leaves, added (with the base, and
/// again over them) and deleted.
#[test]
#[ignore = "needs root: run with --include-ignored"]
fn ipv6_prefixes_are_what_nft_makes_of_the_script() {
    require_root();
    let (closed, direction, chain) = closed_group();
    let chain = FilterTarget::Chain(chain);
    let targets = |n: u32| -> Vec<(Direction, FilterTarget)> {
        [Direction::Inbound, Direction::Outbound]
            .into_iter()
            .map(|d| {
                (
                    d,
                    if d == direction && n.is_multiple_of(2) {
                        chain
                    } else {
                        FilterTarget::Continue
                    },
                )
            })
            .collect()
    };
    let (ours, nft) = (NetNs::new("low6a"), NetNs::new("low6b"));
    let mut ops = base_and(0..3).ops;
    ops.push(NftOp::SetChain {
        direction,
        rules: closed,
    });
    ops.extend((0..300).flat_map(|n| vm6(n, true, &targets(n))));
    let batch = NftBatch { ops };
    for _ in 0..2 {
        send(&ours, changes(&batch).unwrap()).unwrap();
        nft.run_ok(&["nft", "-f", "-"], batch.render().as_bytes());
        assert_eq!(tables(&ours), tables(&nft));
    }
    let listed = ruleset(&ours);
    for expected in [
        "\"one-1-0\" . 2001:db8:0:1::/64",
        "2001:db8::3 : continue",
        "ffff:ffff:ffff:ffff::/64 : jump sg-",
    ] {
        assert!(listed.contains(expected), "{expected} in\n{listed}");
    }
    // Half of them gone.
    let gone = NftBatch {
        ops: (0..150).flat_map(|n| vm6(n, false, &targets(n))).collect(),
    };
    send(&ours, changes(&gone).unwrap()).unwrap();
    nft.run_ok(&["nft", "-f", "-"], gone.render().as_bytes());
    assert_eq!(tables(&ours), tables(&nft));
    assert!(!ruleset(&ours).contains("\"one-1-0\" . 2001:db8:0:1::/64"));
    assert!(ruleset(&ours).contains("\"one-299-0\" . 2001:db8:0:12b::/64"));
}
