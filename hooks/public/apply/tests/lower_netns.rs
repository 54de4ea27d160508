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

#[test]
#[ignore = "needs root: run with --include-ignored"]
fn the_base_and_elements_are_what_nft_makes_of_the_script() {
    require_root();
    let (ours, nft) = (NetNs::new("lowa"), NetNs::new("lowb"));
    let batch = base_and(0..300);
    send(&ours, changes(&batch).unwrap()).unwrap();
    nft.run_ok(&["nft", "-f", "-"], batch.render().as_bytes());
    let listed = ruleset(&ours);
    assert_eq!(listed, ruleset(&nft));
    for expected in [
        "ip6 saddr != { ::, fe80::/10 } iifname . ip6 saddr != @addr6 drop comment \"one-scaleway guard prerouting 5\"",
        "typeof iifname . @th,64,128",
        "dnat to ip daddr map @dnat_map",
        "\"one-299-0\" . 172.20.1.43",
    ] {
        assert!(listed.contains(expected), "{expected} in\n{listed}");
    }
    // Again over it (a reconcile of a host whose tables are there): the
    // chains flushed and filled again, the elements kept.
    let again = base_and(0..301);
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
