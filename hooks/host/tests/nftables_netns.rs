//! `host_tools::nftables` against the real kernel, inside namespaces made
//! for the test: a batch sent through netlink leaves the tables exactly as
//! `nft -f` of the same changes does, in another namespace; a refused
//! change leaves nothing of its batch, with the kernel's reason.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::net::Ipv4Addr;
use std::time::Duration;

use host_tools::nftables::{Change, Data, Element, Elements, Family, Nftables, Value, Verdict};
use nix::sched::CloneFlags;
use test_support::{NetNs, require_root};

/// Tables of the three families with the key forms the drivers use.
const TABLES: &str = "\
add table ip t4
add map ip t4 nat { type ipv4_addr : ipv4_addr; }
add table bridge tb
add set bridge tb ports { type ifname; }
add set bridge tb macs { type ifname . ether_addr; }
add set bridge tb addr4 { type ifname . ipv4_addr; }
add table inet ti
add chain inet ti sg-a-in
add chain inet ti sg-b-in
add map inet ti in4 { type ipv4_addr : verdict; }
";

/// Runs `f` with an nf_tables socket inside namespace `ns`.
fn inside<T: Send + 'static>(ns: &NetNs, f: impl FnOnce(&mut Nftables) -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{}", ns.name());
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
        let mut nft = Nftables::open(Duration::from_secs(10)).unwrap();
        f(&mut nft)
    })
    .join()
    .unwrap()
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn change(add: bool, family: Family, table: &str, set: &str, elements: Vec<Element>) -> Change {
    Change::from(Elements {
        add,
        family,
        table: table.into(),
        set: set.into(),
        elements,
    })
}

fn nat_element(k: Ipv4Addr, v: Ipv4Addr) -> Element {
    Element::new(Value::default().ipv4(k), Data::Value(Value::default().ipv4(v)))
}

fn nat(add: bool, k: &str, v: &str) -> Change {
    change(add, Family::Ip, "t4", "nat", vec![nat_element(v4(k), v4(v))])
}

fn port(add: bool, set: &str, name: &str, n: u8) -> Change {
    let key = match set {
        "ports" => Value::default().ifname(name),
        "macs" => Value::default().ifname(name).ether([2, 0, 0, 0, 0, n]),
        _ => Value::default().ifname(name).ipv4(Ipv4Addr::new(172, 20, 0, n)),
    };
    change(add, Family::Bridge, "tb", set, vec![Element::new(key, Data::None)])
}

fn vmap(add: bool, k: &str, v: Verdict) -> Change {
    let e = Element::new(Value::default().ipv4(v4(k)), Data::Verdict(v));
    change(add, Family::Inet, "ti", "in4", vec![e])
}

fn ruleset(ns: &NetNs) -> String {
    ns.run_ok(&["nft", "list", "ruleset"], b"")
}

/// Applies `changes` through netlink in `a` and through `nft -f` in `b`,
/// and checks both rulesets are the same.
fn same(a: &NetNs, b: &NetNs, changes: Vec<Change>) {
    let script: String = changes.iter().map(|c| format!("{c}\n")).collect();
    inside(a, move |nft| nft.apply(&changes)).unwrap();
    b.run_ok(&["nft", "-f", "-"], script.as_bytes());
    assert_eq!(ruleset(a), ruleset(b), "after:\n{script}");
}

#[test]
#[ignore = "needs root: run with --include-ignored"]
fn a_batch_is_what_nft_makes_of_the_same_changes() {
    require_root();
    let (a, b) = (NetNs::new("nfta"), NetNs::new("nftb"));
    for ns in [&a, &b] {
        ns.run_ok(&["nft", "-f", "-"], TABLES.as_bytes());
    }
    let added = vec![
        nat(true, "198.18.0.1", "172.20.0.2"),
        nat(true, "198.18.0.3", "172.20.0.4"),
        port(true, "ports", "one-2-0", 2),
        port(true, "macs", "one-2-0", 2),
        port(true, "addr4", "one-2-0", 2),
        port(true, "ports", "one-123456789-0", 3),
        vmap(true, "172.20.0.2", Verdict::Continue),
        vmap(true, "172.20.0.4", Verdict::Jump("sg-a-in".into())),
        vmap(true, "172.20.0.6", Verdict::Goto("sg-b-in".into())),
        vmap(true, "172.20.0.8", Verdict::Drop),
        vmap(true, "172.20.0.10", Verdict::Accept),
    ];
    same(&a, &b, added.clone());
    let listed = ruleset(&a);
    for want in [
        "198.18.0.1 : 172.20.0.2",
        "\"one-2-0\" . 02:00:00:00:00:02",
        "\"one-2-0\" . 172.20.0.2",
        "\"one-123456789-0\"",
        "172.20.0.4 : jump sg-a-in",
        "172.20.0.6 : goto sg-b-in",
    ] {
        assert!(listed.contains(want), "{want} missing from:\n{listed}");
    }
    // Adding what is there changes nothing (nft's `add`).
    same(&a, &b, added);
    // A deletion as the drivers make it (the element added then deleted:
    // no error when it is missing), then one of a missing element.
    let gone = vec![
        nat(true, "198.18.0.1", "172.20.0.2"),
        nat(false, "198.18.0.1", "172.20.0.2"),
        port(true, "macs", "one-2-0", 2),
        port(false, "macs", "one-2-0", 2),
        vmap(true, "172.20.0.4", Verdict::Jump("sg-a-in".into())),
        vmap(false, "172.20.0.4", Verdict::Jump("sg-a-in".into())),
    ];
    same(&a, &b, gone.clone());
    same(&a, &b, gone);
    assert!(!ruleset(&a).contains("198.18.0.1"));
}

#[test]
#[ignore = "needs root: run with --include-ignored"]
fn a_refused_change_leaves_nothing_of_its_batch() {
    require_root();
    let ns = NetNs::new("nftr");
    ns.run_ok(&["nft", "-f", "-"], TABLES.as_bytes());
    inside(&ns, |nft| nft.apply(&[nat(true, "198.18.0.1", "172.20.0.2")])).unwrap();
    let before = ruleset(&ns);
    // A set that does not exist, after a change that alone would succeed.
    let e = inside(&ns, |nft| {
        nft.apply(&[
            port(true, "ports", "one-9-0", 9),
            change(
                true,
                Family::Ip,
                "t4",
                "nosuch",
                vec![nat_element(v4("1.2.3.4"), v4("5.6.7.8"))],
            ),
        ])
    })
    .unwrap_err();
    assert_eq!(e.errno, Some(2), "{e}");
    assert!(
        e.message.contains("`add element ip t4 nosuch { 1.2.3.4 : 5.6.7.8 }`"),
        "{e}"
    );
    // A key mapped elsewhere (what a driver's deletion of a stale mapping
    // must not remove): refused, the batch's other changes undone.
    let e = inside(&ns, |nft| {
        nft.apply(&[
            vmap(true, "172.20.0.2", Verdict::Continue),
            nat(true, "198.18.0.1", "172.20.0.99"),
            nat(false, "198.18.0.1", "172.20.0.99"),
        ])
    })
    .unwrap_err();
    assert_eq!(e.errno, Some(17), "{e}");
    assert!(e.message.contains("198.18.0.1 : 172.20.0.99"), "{e}");
    // An element jumping to a chain that does not exist.
    let e = inside(&ns, |nft| {
        nft.apply(&[vmap(true, "172.20.0.4", Verdict::Jump("sg-none-in".into()))])
    })
    .unwrap_err();
    assert_eq!(e.errno, Some(2), "{e}");
    assert_eq!(ruleset(&ns), before, "nothing of the refused batches");
    // A missing table.
    ns.run_ok(&["nft", "delete", "table", "ip", "t4"], b"");
    let e = inside(&ns, |nft| nft.apply(&[nat(true, "198.18.0.1", "172.20.0.2")])).unwrap_err();
    assert_eq!(e.errno, Some(2), "{e}");
}

#[test]
#[ignore = "needs root: run with --include-ignored"]
fn a_table_is_found_by_family_and_name() {
    require_root();
    let ns = NetNs::new("nftt");
    let found = |ns: &NetNs| {
        inside(ns, |nft| {
            [
                (Family::Ip, "t4"),
                (Family::Bridge, "tb"),
                (Family::Inet, "ti"),
                (Family::Ip, "tb"),
                (Family::Inet, "t4"),
            ]
            .map(|(f, n)| nft.has_table(f, n).unwrap())
        })
    };
    assert_eq!(found(&ns), [false; 5]);
    ns.run_ok(&["nft", "-f", "-"], TABLES.as_bytes());
    assert_eq!(found(&ns), [true, true, true, false, false]);
}

/// `reconcile` sends thousands of elements in one batch (megabytes, one
/// write); only its last message is acknowledged, the kernel answering
/// every refused one: thousands of refusals are still an error, not a
/// wait for an acknowledgement lost in a full socket.
#[test]
#[ignore = "needs root: run with --include-ignored"]
fn a_large_batch_is_one_write_and_its_refusals_are_read() {
    require_root();
    let ns = NetNs::new("nftl");
    ns.run_ok(&["nft", "-f", "-"], TABLES.as_bytes());
    let addr = |n: u32| Ipv4Addr::from(0x0a00_0000 + n);
    let many: Vec<Change> = (0..20_000)
        .map(|n| change(true, Family::Ip, "t4", "nat", vec![nat_element(addr(n), addr(n + 1))]))
        .collect();
    inside(&ns, move |nft| nft.apply(&many)).unwrap();
    let listed = ns.run_ok(&["nft", "list", "map", "ip", "t4", "nat"], b"");
    assert_eq!(listed.matches(" : 10.").count(), 20_000);
    // One change of 70,000 elements (more than one message holds, more
    // than a list numbers), jumping to a chain.
    let one = change(
        true,
        Family::Inet,
        "ti",
        "in4",
        (0..70_000)
            .map(|n| {
                Element::new(
                    Value::default().ipv4(addr(n)),
                    Data::Verdict(Verdict::Jump("sg-a-in".into())),
                )
            })
            .collect(),
    );
    inside(&ns, move |nft| nft.apply(&[one])).unwrap();
    let listed = ns.run_ok(&["nft", "list", "map", "inet", "ti", "in4"], b"");
    assert_eq!(listed.matches(" : jump sg-a-in").count(), 70_000);
    let refused: Vec<Change> = (0..20_000)
        .map(|n| change(true, Family::Ip, "t4", "nosuch", vec![nat_element(addr(n), addr(n))]))
        .collect();
    let e = inside(&ns, move |nft| nft.apply(&refused)).unwrap_err();
    assert!(e.errno.is_some(), "{e}");
    assert!(e.message.contains("refused"), "{e}");
    let listed = ns.run_ok(&["nft", "list", "map", "ip", "t4", "nat"], b"");
    assert_eq!(listed.matches(" : 10.").count(), 20_000, "nothing of the refused batch");
}
