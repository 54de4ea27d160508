//! What `public_apply::ip` reads for a query, against the real kernel in a
//! namespace made for the test: the entries the query names, found one at
//! a time, also where the kernel's route lookup ends elsewhere (a policy
//! rule's table, a more specific route, a blackhole), and nothing of
//! another bridge.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::net::IpAddr;
use std::time::Duration;

use host_tools::netlink::Rtnl;
use nix::sched::CloneFlags;
use public_apply::ip::{IpState, observe_netlink};
use public_plan::Query;
use public_plan::endpoint::BridgeName;
use test_support::{NetNs, require_root};

fn observe(ns: &NetNs, query: Query) -> IpState {
    let path = format!("/run/netns/{}", ns.name());
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
        observe_netlink(Rtnl::open(Duration::from_secs(10)).unwrap(), &query).unwrap()
    })
    .join()
    .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn bridge(s: &str) -> BridgeName {
    BridgeName::parse(s).unwrap()
}

/// The routes the state holds, as `dst/len dev`.
fn routes(s: &IpState) -> Vec<String> {
    let mut r: Vec<String> = s
        .routes
        .iter()
        .map(|r| format!("{}/{} {}", r.dst, r.len, r.dev.as_deref().unwrap_or("-")))
        .collect();
    r.sort();
    r
}

#[test]
#[ignore = "needs root: run with --include-ignored"]
fn a_query_reads_exactly_what_it_names_wherever_the_lookup_ends() {
    require_root();
    let ns = NetNs::new("obs");
    for args in [
        &["link", "add", "scwpub0", "type", "bridge"][..],
        &["link", "set", "scwpub0", "up"],
        &["link", "add", "scwpub1", "type", "bridge"],
        &["link", "set", "scwpub1", "up"],
        &["route", "add", "172.30.0.4/32", "dev", "scwpub0"],
        &["route", "add", "172.30.0.6/32", "dev", "scwpub1"],
        &["neigh", "add", "proxy", "172.30.0.5", "dev", "scwpub0"],
        &["neigh", "add", "proxy", "172.30.0.7", "dev", "scwpub1"],
        &[
            "neigh",
            "replace",
            "172.30.0.4",
            "lladdr",
            "02:00:00:00:01:00",
            "dev",
            "scwpub0",
            "nud",
            "permanent",
        ],
        // A host has a default route: the lookup of an address not routed
        // yet ends there.
        &["link", "add", "uplink0", "type", "veth", "peer", "uplink1"],
        &["link", "set", "uplink0", "up"],
        &["link", "set", "uplink1", "up"],
        &["addr", "add", "10.20.0.5/24", "dev", "uplink0"],
        &["route", "add", "default", "via", "10.20.0.1"],
    ] {
        let mut full = vec!["ip"];
        full.extend_from_slice(args);
        ns.run_ok(&full, b"");
    }
    let mut q = Query::default();
    q.links.insert(bridge("scwpub0"));
    q.routes.insert((ip("172.30.0.4"), 32));
    q.routes.insert((ip("172.30.0.8"), 32));
    q.proxies.insert((ip("172.30.0.5"), bridge("scwpub0")));
    q.proxies.insert((ip("172.30.0.7"), bridge("scwpub0")));
    q.neighbours.insert((ip("172.30.0.4"), bridge("scwpub0")));
    q.addresses.0 = true;
    let s = observe(&ns, q.clone());
    assert_eq!(s.links.keys().collect::<Vec<_>>(), ["scwpub0"], "only the link named");
    assert!(s.links["scwpub0"].up && s.links["scwpub0"].kind.as_deref() == Some("bridge"));
    assert_eq!(routes(&s), ["172.30.0.4/32 scwpub0"], "one lookup per route, no dump");
    assert_eq!(
        s.proxies.iter().map(|(a, d)| format!("{a} {d}")).collect::<Vec<_>>(),
        ["172.30.0.5 scwpub0"],
        "the proxy entry of the other bridge is not this query's"
    );
    let n = &s.neighbours[&(ip("172.30.0.4"), "scwpub0".to_owned())];
    assert!(n.permanent && n.mac == Some([2, 0, 0, 0, 1, 0]));
    assert!(
        s.addresses.iter().any(|a| a.addr == ip("10.20.0.5")),
        "{:?}",
        s.addresses
    );

    // Without a default route the lookup finds nothing (as it would if an
    // `unreachable` rule came first): the main table is read.
    ns.run_ok(&["ip", "route", "del", "default"], b"");
    assert_eq!(
        routes(&observe(&ns, q.clone())),
        ["10.20.0.0/24 uplink0", "172.30.0.4/32 scwpub0", "172.30.0.6/32 scwpub1"]
    );
    ns.run_ok(&["ip", "route", "add", "default", "via", "10.20.0.1"], b"");

    // A policy rule sends the lookup to another table first: the main
    // table is read instead, and the route is still found.
    ns.run_ok(
        &["ip", "route", "add", "default", "dev", "scwpub1", "table", "100"],
        b"",
    );
    ns.run_ok(&["ip", "rule", "add", "pref", "10", "lookup", "100"], b"");
    let r = routes(&observe(&ns, q.clone()));
    assert!(r.contains(&"172.30.0.4/32 scwpub0".to_owned()) && r.len() > 1, "{r:?}");
    ns.run_ok(&["ip", "rule", "del", "pref", "10"], b"");

    // A blackhole covering the address: the main table is read.
    ns.run_ok(&["ip", "route", "add", "blackhole", "172.30.0.8/29"], b"");
    let r = routes(&observe(&ns, q.clone()));
    assert!(
        r.contains(&"172.30.0.8/29 -".to_owned()) && r.contains(&"172.30.0.4/32 scwpub0".to_owned()),
        "{r:?}"
    );

    // IPv6: a /64 on the bridge, and a more specific route inside it.
    ns.run_ok(&["ip", "route", "add", "2001:db8:1::/64", "dev", "scwpub0"], b"");
    let mut q6 = Query::default();
    q6.routes.insert((ip("2001:db8:1::"), 64));
    assert_eq!(routes(&observe(&ns, q6.clone())), ["2001:db8:1::/64 scwpub0"]);
    ns.run_ok(&["ip", "route", "add", "2001:db8:1::/128", "dev", "scwpub1"], b"");
    let r = routes(&observe(&ns, q6));
    assert!(r.contains(&"2001:db8:1::/64 scwpub0".to_owned()), "{r:?}");

    // A bridge the plan may delete: its ports are read.
    ns.run_ok(&["ip", "link", "add", "one-1-0", "type", "veth", "peer", "vm-1-0"], b"");
    ns.run_ok(&["ip", "link", "set", "one-1-0", "master", "scwpub1"], b"");
    let mut qp = Query::default();
    qp.links.insert(bridge("scwpub1"));
    qp.ports.insert(bridge("scwpub1"));
    let s = observe(&ns, qp);
    assert_eq!(s.links["one-1-0"].master.as_deref(), Some("scwpub1"));
    assert!(!s.links.contains_key("vm-1-0"), "only the bridge's ports");

    // Everything (reconcile): every route of the main table, every entry.
    let all = observe(&ns, Query::all());
    assert!(all.links.contains_key("scwpub1") && all.links.contains_key("vm-1-0"));
    assert!(all.proxies.len() == 2 && all.neighbours.len() == 1, "{all:?}");
}

/// Many entries of a kind (`reconcile`) are read by a dump, keeping those
/// the query names: the state is what reading them one by one gives.
#[test]
#[ignore = "needs root: run with --include-ignored"]
fn many_entries_are_dumped_and_read_as_one_by_one() {
    require_root();
    let ns = NetNs::new("obd");
    let mut batch = String::from(
        "link add scwpub0 type bridge\nlink set scwpub0 up\nlink add scwpub1 type bridge\nlink set scwpub1 up\n",
    );
    for n in 1..=60u32 {
        let dev = if n % 2 == 0 { "scwpub0" } else { "scwpub1" };
        batch.push_str(&format!(
            "route add 172.30.1.{n}/32 dev {dev}\nneigh add proxy 172.30.2.{n} dev {dev}\n\
             neigh replace 172.30.1.{n} lladdr 02:00:00:00:00:{n:02x} dev {dev} nud permanent\n"
        ));
    }
    // Entries the query does not name: another bridge's, unrelated ones.
    batch.push_str("route add 10.9.0.0/16 dev scwpub1\nneigh add proxy 10.9.0.1 dev scwpub1\n");
    ns.run_ok(&["ip", "-batch", "-"], batch.as_bytes());
    let query = |count: u32| {
        let mut q = Query::default();
        for n in 1..=count {
            let dev = bridge(if n % 2 == 0 { "scwpub0" } else { "scwpub1" });
            q.links.insert(dev);
            // Every third asked on the other bridge: not this query's.
            let asked = if n % 3 == 0 { bridge("scwpub9") } else { dev };
            q.routes.insert((ip(&format!("172.30.1.{n}")), 32));
            q.proxies.insert((ip(&format!("172.30.2.{n}")), asked));
            q.neighbours.insert((ip(&format!("172.30.1.{n}")), dev));
        }
        q
    };
    let many = observe(&ns, query(50));
    assert_eq!(many.proxies.len(), 34, "{:?}", many.proxies);
    assert_eq!(many.neighbours.len(), 50);
    assert!(routes(&many).contains(&"172.30.1.50/32 scwpub0".to_owned()));
    // The same entries, read one by one (a query under the threshold each).
    for n in [1u32, 2, 3, 49, 50] {
        let mut one = Query::default();
        let q = query(50);
        one.links = q.links.clone();
        one.proxies = q
            .proxies
            .iter()
            .filter(|(a, _)| *a == ip(&format!("172.30.2.{n}")))
            .cloned()
            .collect();
        one.neighbours = q
            .neighbours
            .iter()
            .filter(|(a, _)| *a == ip(&format!("172.30.1.{n}")))
            .cloned()
            .collect();
        let s = observe(&ns, one);
        for (k, v) in &s.neighbours {
            assert_eq!(many.neighbours.get(k), Some(v), "{k:?}");
        }
        assert_eq!(s.neighbours.len(), 1);
        assert!(s.proxies.iter().all(|p| many.proxies.contains(p)));
        assert_eq!(s.proxies.len(), usize::from(n % 3 != 0));
    }
}

/// Route and neighbour changes go in one batch: a refused one stops the
/// list there, and those after it in the batch (made by the kernel, which
/// goes on) are undone; with `keep_going` they stay and the first failure
/// is named.
#[test]
#[ignore = "needs root: run with --include-ignored"]
fn a_failure_in_a_batch_leaves_only_the_changes_before_it() {
    use public_apply::ip::apply_netlink;
    use public_plan::IpOp;
    use public_plan::ops::{Proxy, Route};
    require_root();
    let ns = NetNs::new("obb");
    for args in [
        &["link", "add", "scwpub0", "type", "bridge"][..],
        &["link", "set", "scwpub0", "up"],
        &["route", "add", "172.30.0.6/32", "dev", "scwpub0"],
    ] {
        let mut all = vec!["ip"];
        all.extend_from_slice(args);
        ns.run_ok(&all, b"");
    }
    let route = |a: &str| {
        IpOp::AddRoute(Route {
            dst: ip(a),
            len: 32,
            via: None,
            dev: bridge("scwpub0"),
        })
    };
    let ops = vec![
        route("172.30.0.4"),
        route("172.30.0.6"),
        route("172.30.0.8"),
        IpOp::AddProxy(Proxy {
            addr: ip("172.30.0.9"),
            dev: bridge("scwpub0"),
        }),
    ];
    let path = format!("/run/netns/{}", ns.name());
    let apply = move |ops: Vec<IpOp>, keep_going: bool| {
        let path = path.clone();
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
            apply_netlink(&mut Rtnl::open(Duration::from_secs(10)).unwrap(), &ops, keep_going)
        })
        .join()
        .unwrap()
    };
    let shown = || {
        let routes = ns.run_ok(&["ip", "route", "show", "dev", "scwpub0"], b"");
        let proxies = ns.run_ok(&["ip", "neigh", "show", "proxy"], b"");
        format!("{routes}{proxies}")
    };
    let e = apply(ops.clone(), false).unwrap_err();
    assert_eq!(e.failed_line, Some(2), "{e}");
    assert!(e.message.contains("ip route add 172.30.0.6/32"), "{e}");
    let after = shown();
    assert!(
        after.contains("172.30.0.4 ") && after.contains("172.30.0.6 "),
        "{after}"
    );
    assert!(
        !after.contains("172.30.0.8") && !after.contains("172.30.0.9"),
        "{after}"
    );
    let e = apply(ops, true).unwrap_err();
    assert_eq!(e.failed_line, Some(1), "{e}");
    let after = shown();
    assert!(
        after.contains("172.30.0.8 ") && after.contains("172.30.0.9 "),
        "{after}"
    );
}
