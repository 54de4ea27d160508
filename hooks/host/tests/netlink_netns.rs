//! `host_tools::netlink` against the real kernel, inside a namespace made
//! for the test: what it reads is what `ip` shows, what it changes is what
//! `ip` would have made, single-entry reads find exactly the entry asked
//! for, and the kernel's refusals come back with its explanation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::net::IpAddr;
use std::time::Duration;

use host_tools::netlink::{EEXIST, MAIN_TABLE, Rtnl};
use nix::sched::CloneFlags;
use test_support::{NetNs, require_root};

/// Runs `f` with an rtnetlink socket inside namespace `ns`.
fn inside<T: Send + 'static>(ns: &NetNs, f: impl FnOnce(&mut Rtnl) -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{}", ns.name());
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
        let mut rtnl = Rtnl::open(Duration::from_secs(10)).unwrap();
        f(&mut rtnl)
    })
    .join()
    .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
#[ignore = "needs root: run with --include-ignored"]
fn changes_are_what_ip_would_make_and_reads_find_them() {
    require_root();
    let ns = NetNs::new("nl");
    ns.run_ok(
        &["ip", "link", "add", "uplink0", "type", "veth", "peer", "uplink1"],
        b"",
    );
    ns.run_ok(&["ip", "link", "set", "uplink0", "up"], b"");
    ns.run_ok(&["ip", "link", "set", "uplink1", "up"], b"");
    ns.run_ok(&["ip", "addr", "add", "10.20.0.5/24", "dev", "uplink0"], b"");
    let mac = [2, 0x5c, 0, 0, 0, 9];
    let br = inside(&ns, move |nl| {
        nl.add_bridge("scwpub0", mac).unwrap();
        let br = nl.link("scwpub0").unwrap().unwrap();
        assert_eq!(br.kind.as_deref(), Some("bridge"));
        assert!(!br.up);
        nl.set_up(br.index).unwrap();
        nl.route(true, ip("172.30.0.4"), 32, None, br.index).unwrap();
        nl.route(true, ip("2001:db8:1::"), 64, None, br.index).unwrap();
        nl.proxy(true, ip("172.30.0.5"), br.index).unwrap();
        nl.set_neighbour(ip("172.30.0.4"), br.index, [2, 0, 0, 0, 1, 0])
            .unwrap();
        br.index
    });
    // What ip shows.
    let link = ns.run_ok(&["ip", "-d", "-j", "link", "show", "scwpub0"], b"");
    assert!(link.contains("\"address\":\"02:5c:00:00:00:09\""), "{link}");
    assert!(
        link.contains("\"info_kind\":\"bridge\"") && link.contains("\"UP\""),
        "{link}"
    );
    // Routes as `ip route add` makes them (type, protocol, scope, metric).
    ns.run_ok(&["ip", "route", "add", "172.30.0.6/32", "dev", "scwpub0"], b"");
    ns.run_ok(&["ip", "route", "add", "2001:db8:2::/64", "dev", "scwpub0"], b"");
    let shown = |dst: &str| ns.run_ok(&["ip", "-d", "-j", "route", "show", "table", "all", dst], b"");
    let ours = shown("172.30.0.4/32");
    assert!(
        ours.contains("\"protocol\":\"boot\"") && ours.contains("\"scope\":\"link\""),
        "{ours}"
    );
    assert_eq!(ours, shown("172.30.0.6/32").replace("172.30.0.6", "172.30.0.4"));
    let ours6 = shown("2001:db8:1::/64");
    assert!(ours6.contains("\"protocol\":\"boot\""), "{ours6}");
    assert_eq!(ours6, shown("2001:db8:2::/64").replace("2001:db8:2::", "2001:db8:1::"));
    let proxy = ns.run_ok(&["ip", "-j", "neigh", "show", "proxy"], b"");
    assert!(proxy.contains("\"dst\":\"172.30.0.5\",\"dev\":\"scwpub0\""), "{proxy}");
    let neigh = ns.run_ok(&["ip", "-j", "neigh", "show", "dev", "scwpub0"], b"");
    assert!(
        neigh.contains("\"lladdr\":\"02:00:00:00:01:00\"") && neigh.contains("PERMANENT"),
        "{neigh}"
    );

    // Made by ip, read by us; single entries are exactly the one asked for.
    ns.run_ok(&["ip", "route", "add", "192.0.2.0/24", "via", "10.20.0.1"], b"");
    ns.run_ok(&["ip", "route", "add", "blackhole", "198.51.100.0/24"], b"");
    inside(&ns, move |nl| {
        let r = nl.route_match(ip("172.30.0.6")).unwrap().unwrap();
        assert_eq!(
            (r.dst, r.len, r.oif, r.table),
            (ip("172.30.0.6"), 32, Some(br), MAIN_TABLE)
        );
        // The table the lookup ended in is named.
        let r = nl.route_match(ip("192.0.2.7")).unwrap().unwrap();
        assert_eq!(r.table, MAIN_TABLE);
        assert_eq!((r.dst, r.len, r.gateway), (ip("192.0.2.0"), 24, Some(ip("10.20.0.1"))));
        // A lookup ending in a blackhole, or finding nothing (no default
        // route here), is refused.
        assert_eq!(nl.route_match(ip("198.51.100.1")).unwrap_err().errno, Some(22));
        assert_eq!(nl.route_match(ip("203.0.113.1")).unwrap_err().errno, Some(101));
        assert!(
            nl.routes(true)
                .unwrap()
                .iter()
                .any(|r| r.kind.as_deref() == Some("blackhole"))
        );
        let all = nl.routes(true).unwrap();
        assert!(all.iter().all(|r| r.table == MAIN_TABLE));
        assert_eq!(all.iter().filter(|r| r.oif == Some(br)).count(), 2, "{all:?}");
        assert_eq!(
            nl.routes(false).unwrap().iter().filter(|r| r.oif == Some(br)).count(),
            2
        );
        let n = nl.neighbour(ip("172.30.0.4"), br, false).unwrap().unwrap();
        assert_eq!((n.mac, n.permanent), (Some([2, 0, 0, 0, 1, 0]), true));
        assert_eq!(nl.neighbour(ip("172.30.0.5"), br, false).unwrap(), None);
        assert!(nl.neighbour(ip("172.30.0.5"), br, true).unwrap().is_some());
        assert_eq!(nl.neighbour(ip("172.30.0.4"), br, true).unwrap(), None);
        assert_eq!(nl.link("nosuch0").unwrap(), None);
        let addrs = nl.addresses(true).unwrap();
        assert!(
            addrs.iter().any(|a| a.addr == ip("10.20.0.5") && a.len == 24),
            "{addrs:?}"
        );
        assert!(nl.addresses(false).unwrap().iter().all(|a| a.addr.is_ipv6()));
    });

    // Ports: a link dump filtered by master.
    ns.run_ok(&["ip", "link", "add", "one-1-0", "type", "veth", "peer", "vm-1-0"], b"");
    ns.run_ok(&["ip", "link", "set", "one-1-0", "master", "scwpub0"], b"");
    inside(&ns, move |nl| {
        let ports = nl.links(Some(br)).unwrap();
        let names: Vec<&str> = ports.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["one-1-0"]);
        assert_eq!(ports[0].master, Some(br));
        assert!(nl.links(None).unwrap().len() >= 4);
    });

    // Refusals: errno and the kernel's own words.
    inside(&ns, move |nl| {
        let e = nl.route(true, ip("172.30.0.4"), 32, None, br).unwrap_err();
        assert_eq!(e.errno, Some(EEXIST), "{e}");
        assert!(e.message.starts_with("File exists"), "{e}");
        let e = nl
            .route(true, ip("172.30.0.9"), 32, Some(ip("10.99.0.1")), br)
            .unwrap_err();
        assert!(e.message.contains("Nexthop has invalid gateway"), "{e}");
        let e = nl.add_bridge("scwpub0", mac).unwrap_err();
        assert_eq!(e.errno, Some(EEXIST), "{e}");
    });

    // Removals leave nothing; removing again is refused as missing.
    inside(&ns, move |nl| {
        nl.delete_neighbour(ip("172.30.0.4"), br).unwrap();
        nl.proxy(false, ip("172.30.0.5"), br).unwrap();
        nl.route(false, ip("172.30.0.4"), 32, None, br).unwrap();
        nl.route(false, ip("2001:db8:1::"), 64, None, br).unwrap();
        assert!(
            nl.route(false, ip("172.30.0.4"), 32, None, br)
                .unwrap_err()
                .is_missing()
        );
        assert!(nl.proxy(false, ip("172.30.0.5"), br).unwrap_err().is_missing());
        nl.delete_link(br).unwrap();
        assert_eq!(nl.link("scwpub0").unwrap(), None);
    });
    assert_eq!(ns.run_ok(&["ip", "-j", "neigh", "show", "proxy"], b"").trim(), "[]");
    let left = ns.run_ok(&["ip", "-j", "route", "show", "172.30.0.4/32"], b"");
    assert_eq!(left.trim(), "[]");
}

/// Thousands of changes in a few writes: each one's result in order, a
/// refused one in the middle does not stop those after it, refusals that
/// fill whole writes and end the last one are each read, and the kernel
/// holds exactly what was acknowledged.
#[test]
#[ignore = "needs root: run with --include-ignored"]
fn a_batch_gives_each_change_its_own_result() {
    use host_tools::netlink::Change;
    require_root();
    let ns = NetNs::new("nlb");
    ns.run_ok(&["ip", "link", "add", "scwpub0", "type", "bridge"], b"");
    ns.run_ok(&["ip", "link", "set", "scwpub0", "up"], b"");
    ns.run_ok(&["ip", "route", "add", "172.30.4.0/32", "dev", "scwpub0"], b"");
    let results = inside(&ns, |nl| {
        let br = nl.link("scwpub0").unwrap().unwrap().index;
        // 3,000 changes: routes (one already there), proxy and neighbour entries.
        let changes: Vec<Change> = (0..1000u32)
            .flat_map(|n| {
                let a = IpAddr::from([172, 30, (n >> 8) as u8 + 1, n as u8]);
                let a = if n == 768 { ip("172.30.4.0") } else { a };
                [
                    Change::route(true, a, 32, None, br),
                    Change::proxy(true, a, br),
                    Change::neighbour(a, br, [2, 0, 0, 0, (n >> 8) as u8, n as u8]),
                ]
            })
            .chain((0..300).map(|_| Change::route(true, ip("172.30.4.0"), 32, None, br)))
            .collect();
        nl.apply_all(changes).unwrap()
    });
    assert_eq!(results.len(), 3300);
    let refused: Vec<usize> = (0..3300).filter(|&i| results[i].is_err()).collect();
    let expected: Vec<usize> = [3 * 768].into_iter().chain(3000..3300).collect();
    assert_eq!(refused, expected, "only the route already there");
    let e = results[3 * 768].clone().unwrap_err();
    assert_eq!(e.errno, Some(EEXIST), "{e}");
    let routes = ns.run_ok(&["ip", "route", "show", "dev", "scwpub0"], b"");
    assert_eq!(routes.lines().count(), 1000, "{routes}");
    let proxies = ns.run_ok(&["ip", "neigh", "show", "proxy"], b"");
    assert_eq!(proxies.lines().count(), 1000);
    let neigh = ns.run_ok(&["ip", "neigh", "show", "dev", "scwpub0", "nud", "permanent"], b"");
    assert_eq!(neigh.lines().count(), 1000);
}
