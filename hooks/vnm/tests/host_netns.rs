//! The host side of driver `scaleway` on real kernels, inside network
//! namespaces: the topology of the lab's `02-elastic.sh` (an "internet"
//! router that routes the flexible IPs to the hosts over a fabric bridge,
//! hosts with the driver's bridge, VMs as namespaces with a veth on it), the
//! driver's functions called from a thread that entered the host's
//! namespace (the `ip`/`nft` they run inherit it), and real traffic: ICMP
//! echo and TCP written here (no ping or nc needed).
//!
//! Privileged: root, iproute2 and nftables. Nothing is created outside the
//! test's own namespaces, traffic only flows between their addresses, and
//! every namespace is deleted when its test ends, failed or not.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use opennebula::driver::{Level, Log};
use scaleway_vnm::host;
use std::collections::BTreeSet;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use test_support::{TempDir, require_root, run_ok, set_attribute};

mod netns_lab;

use netns_lab::*;

// ---------------------------------------------------------------- tests

#[test]
#[ignore = "privileged: needs root, iproute2 and nftables; run by .ci/run"]
fn flexible_ips_carry_traffic_both_ways_across_and_within_hosts() {
    require_root();
    let lab = Lab::new(2);
    let (a, b) = (&lab.hosts[0], &lab.hosts[1]);
    let inet = lab.inet();
    let (vm1, vm2, vm3) = (vm_ns("vm1"), vm_ns("vm2"), vm_ns("vm3"));
    a.pre(&vm(1, &[(0, 1)]));
    a.pre(&vm(2, &[(0, 2)]));
    b.pre(&vm(3, &[(0, 3)]));
    // The bridge's MAC is fixed: ports coming and going never change the
    // address the VMs' ARP caches hold for their gateway.
    let mac = || a.ns.run_ok(&["cat", "/sys/class/net/scwpub0/address"], b"");
    let before = mac();
    plug(&lab, 0, &vm1, "one-1-0", 0, 1);
    plug(&lab, 0, &vm2, "one-2-0", 0, 2);
    plug(&lab, 1, &vm3, "one-3-0", 0, 3);
    assert_eq!(mac(), before);
    assert!(before.starts_with("02:5c:"), "{before}");
    lab.route_fip(fip(1), 0);
    lab.route_fip(fip(2), 0);
    lab.route_fip(fip(3), 1);
    // The host answers at once for the VM's gateway (proxy_delay = 0).
    assert_eq!(read_sysctl(a.ns.name(), "net/ipv4/neigh/scwpub0/proxy_delay"), "0");
    assert_eq!(read_sysctl(a.ns.name(), "net/ipv4/ip_forward"), "1");
    assert_eq!(read_sysctl(a.ns.name(), "net/ipv4/conf/scwpub0/forwarding"), "1");
    let first = ping(&inet, fip(1).into()).expect("internet -> 198.51.100.1 (vm1 through host A)");
    eprintln!("first ping internet -> vm1: {first:?}");
    assert!(
        ping(&inet, fip(3).into()).is_some(),
        "internet -> 198.51.100.3 (vm3 through host B)"
    );
    assert!(ping(vm1.name(), CLIENT.into()).is_some(), "vm1 -> internet");
    // Inbound: the VM sees the real client.
    let seen = tcp(&inet, sa(fip(1), 8080), vm1.name(), sa(private(1), 8080)).unwrap();
    assert_eq!(seen, IpAddr::V4(CLIENT));
    // Outbound: the internet sees the flexible IP.
    let seen = tcp(vm1.name(), sa(CLIENT, 8081), &inet, sa(CLIENT, 8081)).unwrap();
    assert_eq!(seen, IpAddr::V4(fip(1)));
    let seen = tcp(vm3.name(), sa(CLIENT, 8082), &inet, sa(CLIENT, 8082)).unwrap();
    assert_eq!(seen, IpAddr::V4(fip(3)));
    // VM to VM through the public IPs: on one host (hairpin) and across hosts.
    let seen = tcp(vm1.name(), sa(fip(2), 8083), vm2.name(), sa(private(2), 8083)).unwrap();
    assert_eq!(seen, IpAddr::V4(fip(1)), "hairpin on host A");
    let seen = tcp(vm1.name(), sa(fip(3), 8084), vm3.name(), sa(private(3), 8084)).unwrap();
    assert_eq!(seen, IpAddr::V4(fip(1)), "host A to host B");
    // Two constant rules, one element per address and direction.
    let text = nft_text(a);
    assert_eq!(text.matches("dnat to ip daddr map @dnat_map").count(), 1, "{text}");
    assert_eq!(text.matches("snat to ip saddr map @snat_map").count(), 1, "{text}");
}

#[test]
#[ignore = "privileged: needs root, iproute2 and nftables; run by .ci/run"]
fn pre_twice_is_once_and_conflicts_change_nothing() {
    require_root();
    let lab = Lab::new(1);
    let a = &lab.hosts[0];
    let vm1 = vm(1, &[(0, 1)]);
    a.pre(&vm1);
    let (state, nft) = (a.state(), nft_text(a));
    let log = a.pre(&vm1);
    assert!(log.contains("VM 1: already in place"), "{log}");
    assert_eq!((a.state(), nft_text(a)), (state.clone(), nft.clone()));
    // Another VM claims VM 1's flexible IP, or its private address.
    let claims = [
        (
            nic_xml("NIC", 9, 0, 2, "").replace("198.51.100.2", "198.51.100.1"),
            "flexible IP 198.51.100.1 is already mapped to 172.30.0.4 (VM 1 NIC 0)",
        ),
        (
            nic_xml("NIC", 9, 0, 1, "").replace("198.51.100.1", "198.51.100.9"),
            "private IP 172.30.0.4 is already mapped to flexible IP 198.51.100.1 (VM 1 NIC 0)",
        ),
    ];
    for (nic, expected) in claims {
        let thief = parse_vm(&format!("<VM><ID>9</ID><TEMPLATE>{nic}</TEMPLATE></VM>"));
        let (r, _) = a.act(&thief, host::pre);
        let e = r.unwrap_err();
        assert!(e.contains(expected) && e.contains("for VM 9 NIC 0"), "{e}");
        assert_eq!(
            (a.state(), nft_text(a)),
            (state.clone(), nft.clone()),
            "a refused pre changes nothing"
        );
    }
    // A VM address inside the host's own network (its underlay 10.0.0.0/24):
    // its /32 route and proxy ARP would take the host's own traffic.
    let inside = parse_vm(&format!(
        "<VM><ID>8</ID><TEMPLATE>{}</TEMPLATE></VM>",
        nic_xml("NIC", 8, 0, 8, "")
            .replace(&private(8).to_string(), "10.0.0.50")
            .replace(&gateway(8).to_string(), "10.0.0.51")
    ));
    let (r, _) = a.act(&inside, host::pre);
    let e = r.unwrap_err();
    assert!(
        e.contains("address 10.0.0.50 is inside this host's own network 10.0.0.0/24"),
        "{e}"
    );
    assert_eq!(
        (a.state(), nft_text(a)),
        (state.clone(), nft.clone()),
        "a refused pre changes nothing"
    );
    // A mapping set by hand is not the driver's to take over either.
    a.ns.run_ok(
        &[
            "nft",
            "add",
            "element",
            "ip",
            "one_scaleway",
            "dnat_map",
            "{ 198.51.100.7 : 172.30.0.99 }",
        ],
        b"",
    );
    let (r, _) = a.act(&vm(7, &[(0, 7)]), host::pre);
    let e = r.unwrap_err();
    assert!(
        e.contains("198.51.100.7 is already mapped to 172.30.0.99 on this host (not in the driver's record"),
        "{e}"
    );
    assert!(
        !a.state().routes.iter().any(|r| r.dst == IpAddr::V4(private(7))),
        "nothing of VM 7 applied"
    );
}

#[test]
#[ignore = "privileged: needs root, iproute2 and nftables; run by .ci/run"]
fn clean_removes_exactly_one_vm() {
    require_root();
    let lab = Lab::new(1);
    let a = &lab.hosts[0];
    let inet = lab.inet();
    let (vm1, vm2) = (vm_ns("vm1"), vm_ns("vm2"));
    a.pre(&vm(1, &[(0, 1)]));
    a.pre(&vm(2, &[(0, 2)]));
    plug(&lab, 0, &vm1, "one-1-0", 0, 1);
    plug(&lab, 0, &vm2, "one-2-0", 0, 2);
    lab.route_fip(fip(1), 0);
    lab.route_fip(fip(2), 0);
    assert!(ping(&inet, fip(2).into()).is_some());
    let before = a.state();
    // VM 2 is shut down: its tap goes, then clean.
    a.unplug("one-2-0");
    let log = a.clean(&vm(2, &[(0, 2)]));
    assert!(log.contains("VM 2: removed VM 2 NIC 0"), "{log}");
    let after = a.state();
    assert_eq!(nic_state(&after, 2), ABSENT);
    assert_eq!(nic_state(&after, 1), nic_state(&before, 1));
    assert_eq!(nic_state(&after, 1), present(1));
    assert!(ping(&inet, fip(2).into()).is_none(), "198.51.100.2 no longer answers");
    assert_eq!(
        tcp(&inet, sa(fip(1), 8085), vm1.name(), sa(private(1), 8085)).unwrap(),
        IpAddr::V4(CLIENT)
    );
    // Removing what is absent succeeds.
    let log = a.clean(&vm(2, &[(0, 2)]));
    assert!(log.contains("VM 2: nothing of it left on this host"), "{log}");
    // The last VM: nothing of ours remains, the bridge goes.
    a.unplug("one-1-0");
    a.clean(&vm(1, &[(0, 1)]));
    let s = a.state();
    assert!(s.nat.maps["dnat_map"].elements.is_empty() && s.nat.maps["snat_map"].elements.is_empty());
    assert!(
        !s.routes.iter().any(|r| r.dev.as_deref() == Some("scwpub0")),
        "{:?}",
        s.routes
    );
    assert!(s.proxies.is_empty(), "{:?}", s.proxies);
    assert!(!s.links.contains_key("scwpub0"));
}

#[test]
#[ignore = "privileged: needs root, iproute2 and nftables; run by .ci/run"]
fn hot_attach_and_detach_touch_only_that_nic() {
    require_root();
    let lab = Lab::new(1);
    let a = &lab.hosts[0];
    let inet = lab.inet();
    let vm1 = vm_ns("vm1");
    a.pre(&vm(1, &[(0, 1)]));
    plug(&lab, 0, &vm1, "one-1-0", 0, 1);
    lab.route_fip(fip(1), 0);
    lab.route_fip(fip(4), 0);
    let nic0 = nic_state(&a.state(), 1);
    // attach_nic: NIC 1 has ATTACH=YES.
    let attached = parse_vm(&format!(
        "<VM><ID>1</ID><TEMPLATE>{}{}</TEMPLATE></VM>",
        nic_xml("NIC", 1, 0, 1, ""),
        nic_xml("NIC", 1, 1, 4, "<ATTACH>YES</ATTACH>")
    ));
    let log = a.pre(&attached);
    assert!(
        log.contains("VM 1: set up VM 1 NIC 1") && !log.contains("NIC 0:"),
        "{log}"
    );
    plug(&lab, 0, &vm1, "one-1-1", 1, 4);
    assert_eq!(nic_state(&a.state(), 4), present(4));
    assert_eq!(nic_state(&a.state(), 1), nic0);
    assert_eq!(
        tcp(&inet, sa(fip(4), 8086), vm1.name(), sa(private(4), 8086)).unwrap(),
        IpAddr::V4(CLIENT)
    );
    // detach_nic: the same document.
    a.unplug("one-1-1");
    let log = a.clean(&attached);
    assert!(log.contains("VM 1: removed VM 1 NIC 1"), "{log}");
    let s = a.state();
    assert_eq!(nic_state(&s, 4), ABSENT);
    assert_eq!(nic_state(&s, 1), nic0);
    assert!(s.links.contains_key("scwpub0"), "NIC 0 still uses the bridge");
    assert_eq!(
        tcp(&inet, sa(fip(1), 8087), vm1.name(), sa(private(1), 8087)).unwrap(),
        IpAddr::V4(CLIENT)
    );
}

#[test]
#[ignore = "privileged: needs root, iproute2 and nftables; run by .ci/run"]
fn nic_aliases_get_their_own_flexible_ip() {
    require_root();
    let lab = Lab::new(1);
    let a = &lab.hosts[0];
    let inet = lab.inet();
    let vm1 = vm_ns("vm1");
    let doc = parse_vm(&format!(
        "<VM><ID>1</ID><TEMPLATE>{}{}</TEMPLATE></VM>",
        nic_xml("NIC", 1, 0, 1, ""),
        nic_xml(
            "NIC_ALIAS",
            1,
            1,
            5,
            "<ALIAS_ID>0</ALIAS_ID><PARENT>NIC0</PARENT><PARENT_ID>0</PARENT_ID>"
        )
    ));
    a.pre(&doc);
    a.plug(
        &vm1,
        "one-1-0",
        0,
        &[("172.30.0.4/31", Some("172.30.0.5")), ("172.30.0.20/31", None)],
    );
    lab.route_fip(fip(1), 0);
    lab.route_fip(fip(5), 0);
    assert_eq!(
        tcp(&inet, sa(fip(5), 8088), vm1.name(), sa(private(5), 8088)).unwrap(),
        IpAddr::V4(CLIENT)
    );
    assert_eq!(
        tcp(&inet, sa(fip(1), 8089), vm1.name(), sa(private(1), 8089)).unwrap(),
        IpAddr::V4(CLIENT)
    );
    a.unplug("one-1-0");
    a.clean(&doc);
    let s = a.state();
    assert_eq!((nic_state(&s, 1), nic_state(&s, 5)), (ABSENT, ABSENT));
}

#[test]
#[ignore = "privileged: needs root, iproute2 and nftables; run by .ci/run"]
fn migration_traffic_follows_the_vm() {
    require_root();
    let lab = Lab::new(2);
    let (a, b) = (&lab.hosts[0], &lab.hosts[1]);
    let inet = lab.inet();
    let vm1 = vm_ns("vm1");
    let doc = vm(1, &[(0, 1)]);
    a.pre(&doc);
    plug(&lab, 0, &vm1, "one-1-0", 0, 1);
    lab.route_fip(fip(1), 0);
    assert_eq!(
        tcp(&inet, sa(fip(1), 8090), vm1.name(), sa(private(1), 8090)).unwrap(),
        IpAddr::V4(CLIENT)
    );
    // Migration: pre on the destination, the VM moves, the flexible IP is
    // moved to the destination, clean on the source.
    b.pre(&doc);
    a.unplug("one-1-0");
    plug(&lab, 1, &vm1, "one-1-0", 0, 1);
    lab.route_fip(fip(1), 1);
    a.clean(&doc);
    assert_eq!(
        tcp(&inet, sa(fip(1), 8091), vm1.name(), sa(private(1), 8091)).unwrap(),
        IpAddr::V4(CLIENT)
    );
    assert_eq!(
        tcp(vm1.name(), sa(CLIENT, 8092), &inet, sa(CLIENT, 8092)).unwrap(),
        IpAddr::V4(fip(1))
    );
    let s = a.state();
    assert_eq!(nic_state(&s, 1), ABSENT);
    assert!(!s.links.contains_key("scwpub0"), "the source's bridge is gone");
    assert_eq!(nic_state(&b.state(), 1), present(1));
}

#[test]
#[ignore = "privileged: needs root, iproute2 and nftables; run by .ci/run"]
fn fifty_concurrent_actions_leave_an_exact_state() {
    require_root();
    let lab = Lab::new(1);
    let a = &lab.hosts[0];
    // 50 VMs at once: each pre, and the odd ones clean right after.
    let handles: Vec<_> = (1..=50u8)
        .map(|n| {
            let env = a.env.clone();
            spawn_in(a.ns.name(), move || {
                let doc = vm(u64::from(n), &[(0, n)]);
                let mut err = Vec::new();
                let mut log = Log::new(&mut err, Level::Info, "scaleway-vnm scaleway test");
                host::pre(&doc, &mut log, &env).map_err(|e| format!("pre {n}: {e:#}"))?;
                if n % 2 == 1 {
                    host::clean_host(&doc, &mut log, &env).map_err(|e| format!("clean {n}: {e:#}"))?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    let start = Instant::now();
    let failures: Vec<String> = handles.into_iter().filter_map(|h| join(h).err()).collect();
    eprintln!("50 pre + 25 clean at once: {:?}", start.elapsed());
    assert!(failures.is_empty(), "{failures:#?}");
    let s = a.state();
    let even: Vec<u8> = (1..=50).filter(|n| n % 2 == 0).collect();
    let dnat: Vec<(Ipv4Addr, Ipv4Addr)> = s.nat.maps["dnat_map"].elements.clone().into_iter().collect();
    let mut expected: Vec<(Ipv4Addr, Ipv4Addr)> = even.iter().map(|&n| (fip(n), private(n))).collect();
    expected.sort();
    assert_eq!(dnat, expected);
    let snat: BTreeSet<(Ipv4Addr, Ipv4Addr)> = s.nat.maps["snat_map"].elements.clone().into_iter().collect();
    assert_eq!(snat, even.iter().map(|&n| (private(n), fip(n))).collect());
    let routes: BTreeSet<IpAddr> = s
        .routes
        .iter()
        .filter(|r| r.dev.as_deref() == Some("scwpub0") && r.dst.is_ipv4())
        .map(|r| r.dst)
        .collect();
    assert_eq!(routes, even.iter().map(|&n| IpAddr::V4(private(n))).collect());
    let proxies: BTreeSet<IpAddr> = s.proxies.iter().map(|(a, _)| *a).collect();
    assert_eq!(proxies, even.iter().map(|&n| IpAddr::V4(gateway(n))).collect());
    let text = nft_text(a);
    assert_eq!(text.matches("map @").count(), 2, "two rules, whatever N is:\n{text}");
}

#[test]
#[ignore = "privileged: needs root, iproute2 and nftables; run by .ci/run"]
fn reconcile_restores_a_host_that_lost_its_state() {
    require_root();
    let lab = Lab::new(1);
    let a = &lab.hosts[0];
    let inet = lab.inet();
    let (vm1, vm2) = (vm_ns("vm1"), vm_ns("vm2"));
    a.pre(&vm(1, &[(0, 1)]));
    a.pre(&vm(2, &[(0, 2), (1, 3)]));
    plug(&lab, 0, &vm1, "one-1-0", 0, 1);
    plug(&lab, 0, &vm2, "one-2-0", 0, 2);
    for n in [1, 2] {
        lab.route_fip(fip(n), 0);
    }
    assert!(ping(&inet, fip(1).into()).is_some());
    let before = a.state();
    let mac = a.ns.run_ok(&["cat", "/sys/class/net/scwpub0/address"], b"");
    // What a reboot takes: our table, the bridge (and its routes and proxy
    // entries with it), forwarding.
    a.ns.run_ok(&["nft", "delete", "table", "ip", "one_scaleway"], b"");
    ip(&a.name(), &["link", "del", "scwpub0"]);
    sysctl(&a.name(), "net.ipv4.ip_forward", "0");
    assert!(ping(&inet, fip(1).into()).is_none());
    // Nobody runs reconcile, and VM 1 is resumed: its pre (which trusts
    // the host record for our tables) is refused by the kernel (no table),
    // reads the tables and puts VM 1 back, the guard's base included.
    a.ns.run_ok(&["nft", "delete", "table", "bridge", "one_scaleway_guard"], b"");
    let log = a.pre(&vm(1, &[(0, 1)]));
    assert!(log.contains("our nft tables are not as the host record says"), "{log}");
    ip(&a.name(), &["link", "set", "one-1-0", "master", "scwpub0", "up"]);
    assert!(ping(&inet, fip(1).into()).is_some(), "{log}");
    assert!(
        a.ns.run_ok(&["nft", "list", "table", "bridge", "one_scaleway_guard"], b"")
            .contains("\"one-1-0\" . 172.30.0.4")
    );
    let (r, log) = a.reconcile();
    let out = r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(out.starts_with("reconciled 3 public NICs of 2 VMs: "), "{out}");
    // The VMs' taps come back on the bridge (libvirt restarts them).
    for tap in ["one-1-0", "one-2-0"] {
        ip(&a.name(), &["link", "set", tap, "master", "scwpub0", "up"]);
    }
    let after = a.state();
    for n in [1, 2, 3] {
        assert_eq!(nic_state(&after, n), nic_state(&before, n));
        assert_eq!(nic_state(&after, n), present(n));
    }
    assert_eq!(
        a.ns.run_ok(&["cat", "/sys/class/net/scwpub0/address"], b""),
        mac,
        "the same bridge MAC"
    );
    assert_eq!(read_sysctl(a.ns.name(), "net/ipv4/ip_forward"), "1");
    assert_eq!(
        tcp(&inet, sa(fip(2), 8093), vm2.name(), sa(private(2), 8093)).unwrap(),
        IpAddr::V4(CLIENT)
    );
    assert!(ping(&inet, fip(1).into()).is_some());
    let (r, _) = a.reconcile();
    assert_eq!(r.unwrap(), "reconciled 3 public NICs of 2 VMs: already in place\n");
}

#[test]
#[ignore = "privileged: needs root, iproute2 and nftables; run by .ci/run"]
fn ipv6_prefixes_are_routed_to_the_vm() {
    require_root();
    let lab = Lab::new(1);
    let a = &lab.hosts[0];
    let inet = lab.inet();
    let client6: IpAddr = "2001:db8:ffff::10".parse().unwrap();
    // As the scaleway IPAM hands it out: IP6 = <prefix>::2/64, GATEWAY6 = <prefix>::1.
    let in_prefix = "<NIC><NIC_ID>0</NIC_ID><VN_MAD>scaleway</VN_MAD><BRIDGE>scwpub0</BRIDGE>\
                     <TARGET>one-1-0</TARGET><MAC>02:00:00:00:01:00</MAC><IP6>2001:db8:5:1::2</IP6>\
                     <GATEWAY6>2001:db8:5:1::1</GATEWAY6><EXTERNAL_IP>2001:db8:5:1::</EXTERNAL_IP></NIC>";
    // A private IP6 with the /64 routed through it (a range written by hand).
    let routed = "<NIC><NIC_ID>1</NIC_ID><VN_MAD>scaleway</VN_MAD><BRIDGE>scwpub0</BRIDGE>\
                  <TARGET>one-1-1</TARGET><MAC>02:00:00:00:01:01</MAC><IP6>fd5c:1::2</IP6>\
                  <GATEWAY6>fd5c:1::1</GATEWAY6><EXTERNAL_IP>2001:db8:6:1::</EXTERNAL_IP></NIC>";
    let doc = parse_vm(&format!("<VM><ID>1</ID><TEMPLATE>{in_prefix}{routed}</TEMPLATE></VM>"));
    let vm1 = vm_ns("vm1");
    a.pre(&doc);
    a.plug(&vm1, "one-1-0", 0, &[("2001:db8:5:1::2/64", None)]);
    a.plug(&vm1, "one-1-1", 1, &[("fd5c:1::2/126", None)]);
    ip(vm1.name(), &["-6", "route", "add", "default", "via", "2001:db8:5:1::1"]);
    ip(vm1.name(), &["addr", "add", "2001:db8:6:1::1/128", "dev", "lo"]);
    // The routed /64 answers through NIC 1, whose port it may leave by.
    ip(
        vm1.name(),
        &["-6", "rule", "add", "from", "2001:db8:6:1::/64", "table", "101"],
    );
    ip(
        vm1.name(),
        &[
            "-6",
            "route",
            "add",
            "default",
            "via",
            "fd5c:1::1",
            "dev",
            "eth1",
            "table",
            "101",
        ],
    );
    for prefix in ["2001:db8:5:1::/64", "2001:db8:6:1::/64"] {
        ip(
            &inet,
            &[
                "-6",
                "route",
                "add",
                prefix,
                "via",
                "fd00:1::2",
                "src",
                "2001:db8:ffff::10",
            ],
        );
    }
    assert_eq!(read_sysctl(a.ns.name(), "net/ipv6/conf/scwpub0/proxy_ndp"), "1");
    a.wait_bridge_ipv6();
    assert!(
        ping(&inet, "2001:db8:5:1::2".parse().unwrap()).is_some(),
        "internet -> VM (prefix on the bridge)"
    );
    assert!(
        ping(&inet, "2001:db8:6:1::1".parse().unwrap()).is_some(),
        "internet -> VM (prefix via its IP6)"
    );
    assert!(
        ping(vm1.name(), client6).is_some(),
        "VM -> internet through the proxied gateway"
    );
    let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap();
    let seen = tcp(
        &inet,
        SocketAddr::new(IpAddr::V6(v6("2001:db8:5:1::2")), 8094),
        vm1.name(),
        SocketAddr::new(IpAddr::V6(v6("2001:db8:5:1::2")), 8094),
    )
    .unwrap();
    assert_eq!(seen, client6, "no NAT");
    let seen = tcp(
        vm1.name(),
        SocketAddr::new(client6, 8095),
        &inet,
        SocketAddr::new(client6, 8095),
    )
    .unwrap();
    assert_eq!(seen, IpAddr::V6(v6("2001:db8:5:1::2")));
    a.unplug("one-1-0");
    a.unplug("one-1-1");
    a.clean(&doc);
    let s = a.state();
    assert!(
        !s.links.contains_key("scwpub0"),
        "the bridge went with the VM's last NIC"
    );
    assert!(
        s.routes.iter().all(|r| r.dev.as_deref() != Some("scwpub0")),
        "{:?}",
        s.routes
    );
    assert!(s.proxies.is_empty(), "{:?}", s.proxies);
}

/// The real binary, run inside the host as oned runs it (`.../vnm/scaleway/pre`
/// with the VM document in base64 on stdin), and `reconcile` by hand.
#[test]
#[ignore = "privileged: needs root, iproute2 and nftables; run by .ci/run"]
fn the_binary_runs_pre_clean_and_reconcile() {
    require_root();
    let lab = Lab::new(1);
    let a = &lab.hosts[0];
    let links = TempDir::new("vnm-bin");
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_scaleway-vnm"));
    let run = |argv0: &std::path::Path, args: &[&str], stdin: &[u8]| {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", a.ns.name()]).arg(argv0).args(args);
        cmd.env("ONE_SCALEWAY_LOG", "debug");
        for key in ["ONE_SCALEWAY_STATE_DIR", "ONE_SCALEWAY_HOST_LOCK", "ONE_SCALEWAY_SUDO"] {
            cmd.env(key, a.env.get(key).unwrap());
        }
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let doc = test_support::encode(&test_support::fixture("vnm/deploy-scaleway-pre.xml"));
    let pre = test_support::link_as(bin, links.path(), "vnm/scaleway/pre");
    let clean = test_support::link_as(bin, links.path(), "vnm/scaleway/clean_host");
    let (code, out, err) = run(&pre, &[], &doc);
    assert_eq!((code, out.as_str()), (Some(0), ""), "{err}");
    assert!(
        err.contains("INFO: scaleway-vnm scaleway pre: VM 7: set up VM 7 NIC 0: 62.210.16.2 <-> 172.30.0.2"),
        "{err}"
    );
    let s = a.state();
    assert_eq!(
        s.nat.get("dnat_map", "62.210.16.3".parse().unwrap()),
        Some("172.30.0.4".parse().unwrap())
    );
    a.ns.run_ok(&["nft", "delete", "table", "ip", "one_scaleway"], b"");
    let (code, out, err) = run(bin, &["--driver", "scaleway", "reconcile"], b"");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("reconciled 2 public NICs of 1 VM: "), "{out}");
    assert_eq!(a.state().nat, s.nat);
    let (code, _, err) = run(&clean, &["host-a"], &doc);
    assert_eq!(code, Some(0), "{err}");
    let s = a.state();
    assert!(s.nat.maps["dnat_map"].elements.is_empty() && s.proxies.is_empty());
    assert!(!s.links.contains_key("scwpub0"));
}

// ---------------------------------------------------------------- port guard

/// One UDP datagram from `from` (an address of namespace `ns`) to `to` (in
/// `listen_ns`): the source address the listener saw, if anything arrived.
fn udp_seen(ns: &str, from: SocketAddr, listen_ns: &str, to: SocketAddr) -> Option<IpAddr> {
    let listener = in_ns(listen_ns, move || UdpSocket::bind(to).unwrap());
    listener.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    in_ns(ns, move || {
        let s = UdpSocket::bind(from).unwrap_or_else(|e| panic!("bind {from}: {e}"));
        for _ in 0..3 {
            let _ = s.send_to(b"one-scaleway spoof", to);
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let mut buf = [0u8; 64];
    listener.recv_from(&mut buf).ok().map(|(_, peer)| peer.ip())
}

/// The MAC namespace `ns` holds for `addr` on `dev` (`None`: no entry).
fn neigh_mac(ns: &str, addr: Ipv4Addr, dev: &str) -> Option<String> {
    let out = run_ok(
        &["ip", "-n", ns, "-j", "neigh", "show", &addr.to_string(), "dev", dev],
        b"",
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array()?.first()?.get("lladdr")?.as_str().map(str::to_owned)
}

/// The thief announces `addrs` from `mac` (gratuitous ARP, as a hostile
/// guest can send at will: with `arp_notify`, every change of the
/// interface's MAC announces its addresses).
fn announce(thief: &str, addrs: &[Ipv4Addr], mac: &str) {
    sysctl(thief, "net.ipv4.conf.eth0.arp_notify", "1");
    for a in addrs {
        ip(thief, &["addr", "replace", &format!("{a}/32"), "dev", "eth0"]);
    }
    ip(thief, &["link", "set", "eth0", "address", "02:00:00:00:ff:ff"]);
    ip(thief, &["link", "set", "eth0", "address", mac]);
    std::thread::sleep(Duration::from_millis(300));
}

/// The port of the bridge where the bridge learned `mac`, if it did.
fn learned_on(host: &str, mac: &str) -> Option<String> {
    let out = run_ok(&["bridge", "-n", host, "-j", "fdb", "show", "br", "scwpub0"], b"");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array()?
        .iter()
        .find(|e| e.get("mac").and_then(|m| m.as_str()) == Some(mac) && e.get("vlan").is_none())
        .and_then(|e| e.get("ifname").and_then(|i| i.as_str()).map(str::to_owned))
}

#[test]
#[ignore = "privileged: needs root, iproute2 and nftables; run by .ci/run"]
fn a_hostile_vm_cannot_spoof_its_neighbour_or_take_its_traffic() {
    require_root();
    let lab = Lab::new(1);
    let a = &lab.hosts[0];
    let inet = lab.inet();
    let (victim, thief) = (vm_ns("victim"), vm_ns("thief"));
    a.pre(&vm(1, &[(0, 1)]));
    a.pre(&vm(2, &[(0, 2)]));
    plug(&lab, 0, &victim, "one-1-0", 0, 1);
    plug(&lab, 0, &thief, "one-2-0", 0, 2);
    lab.route_fip(fip(1), 0);
    lab.route_fip(fip(2), 0);
    let (v, t) = (victim.name().to_owned(), thief.name().to_owned());
    let bridge_mac =
        a.ns.run_ok(&["cat", "/sys/class/net/scwpub0/address"], b"")
            .trim()
            .to_owned();
    let victim_mac = mac_of_tap("one-1-0");
    // Before: both VMs reach the internet as themselves.
    assert_eq!(
        tcp(&inet, sa(fip(1), 8100), &v, sa(private(1), 8100)).unwrap(),
        IpAddr::V4(CLIENT)
    );
    assert_eq!(
        udp_seen(&t, sa(private(2), 0), &inet, sa(CLIENT, 8101)),
        Some(IpAddr::V4(fip(2)))
    );
    assert_eq!(neigh_mac(&v, gateway(1), "eth0").as_deref(), Some(bridge_mac.as_str()));
    let steal = |port: u16| -> Result<IpAddr, String> { tcp(&inet, sa(fip(1), port), &v, sa(private(1), port)) };

    // 1. Source spoofing: the thief sends with the victim's address (the
    // SNAT map would give it the victim's flexible IP).
    ip(
        &t,
        &["addr", "add", &format!("{}/32", private(1)), "dev", "eth0", "nodad"],
    );
    assert_eq!(
        udp_seen(&t, sa(private(1), 0), &inet, sa(CLIENT, 8102)),
        None,
        "a spoofed source leaves the host"
    );
    // 2. ARP spoofing: the thief announces the victim's address and the
    // victim's gateway as its own.
    announce(&t, &[private(1), gateway(1)], &mac_of_tap("one-2-0"));
    let host = a.state();
    let entry = host.neighbours.get(&(IpAddr::V4(private(1)), "scwpub0".to_owned()));
    assert!(
        entry.is_some_and(|n| n.permanent && n.mac.map(public_plan::endpoint::mac_text) == Some(victim_mac.clone())),
        "the host's entry for the victim moved: {entry:?}"
    );
    assert_eq!(
        neigh_mac(&v, gateway(1), "eth0").as_deref(),
        Some(bridge_mac.as_str()),
        "the victim's gateway entry was poisoned"
    );
    assert_eq!(
        steal(8103),
        Ok(IpAddr::V4(CLIENT)),
        "the victim's inbound traffic reaches the victim"
    );
    // 3. MAC spoofing: the thief takes the victim's MAC and sends.
    announce(&t, &[private(1)], &victim_mac);
    let _ = udp_seen(&t, sa(private(2), 0), &inet, sa(CLIENT, 8104));
    assert_ne!(
        learned_on(a.ns.name(), &victim_mac).as_deref(),
        Some("one-2-0"),
        "the bridge learned the victim's MAC on the thief's port"
    );
    assert_eq!(
        steal(8105),
        Ok(IpAddr::V4(CLIENT)),
        "the victim's inbound traffic reaches the victim"
    );
    assert_eq!(neigh_mac(&v, gateway(1), "eth0").as_deref(), Some(bridge_mac.as_str()));

    // The same attacks without the guard succeed (this test can fail).
    announce(&t, &[], &mac_of_tap("one-2-0"));
    a.ns.run_ok(&["nft", "delete", "table", "bridge", "one_scaleway_guard"], b"");
    assert_eq!(
        udp_seen(&t, sa(private(1), 0), &inet, sa(CLIENT, 8106)),
        Some(IpAddr::V4(fip(1))),
        "without the guard, the spoofed source goes out as the victim's flexible IP"
    );
    announce(&t, &[private(1), gateway(1)], &mac_of_tap("one-2-0"));
    assert_eq!(
        neigh_mac(&v, gateway(1), "eth0"),
        Some(mac_of_tap("one-2-0")),
        "without the guard, the victim's gateway entry is the thief's"
    );
    // reconcile puts the guard back; the attacks fail again.
    ip(&v, &["neigh", "del", &gateway(1).to_string(), "dev", "eth0"]);
    let (r, log) = a.reconcile();
    r.unwrap_or_else(|e| panic!("reconcile: {e}\n{log}"));
    assert_eq!(udp_seen(&t, sa(private(1), 0), &inet, sa(CLIENT, 8107)), None);
    assert_eq!(steal(8108), Ok(IpAddr::V4(CLIENT)));
    announce(&t, &[private(1), gateway(1)], &mac_of_tap("one-2-0"));
    assert_eq!(neigh_mac(&v, gateway(1), "eth0").as_deref(), Some(bridge_mac.as_str()));
    // clean removes exactly the VMs' guard elements.
    a.clean(&vm(2, &[(0, 2)]));
    let g = a.state().guard;
    let taps: BTreeSet<String> = g.elements.iter().map(|e| e.tap().to_string()).collect();
    assert_eq!(taps, BTreeSet::from(["one-1-0".to_owned()]));
    a.clean(&vm(1, &[(0, 1)]));
    assert!(a.state().guard.elements.is_empty());
    assert!(a.state().neighbours.keys().all(|(_, dev)| dev != "scwpub0"));
}

/// The MAC namespace `ns` holds for IPv6 `addr` on `dev`.
fn neigh6_mac(ns: &str, addr: &str, dev: &str) -> Option<String> {
    let out = run_ok(&["ip", "-n", ns, "-6", "-j", "neigh", "show", addr, "dev", dev], b"");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array()?.first()?.get("lladdr")?.as_str().map(str::to_owned)
}

#[test]
#[ignore = "privileged: needs root, iproute2 and nftables; run by .ci/run"]
fn a_hostile_vm_cannot_spoof_its_neighbour_over_ipv6() {
    require_root();
    let lab = Lab::new(1);
    let a = &lab.hosts[0];
    let inet = lab.inet();
    let client6: IpAddr = "2001:db8:ffff::10".parse().unwrap();
    // VM 8 of the captured IPv6 document (an IPv6 NIC with an IPv4 alias),
    // as VM 1 and VM 2 on their own /64s (prefix 5 and 6) and /31s.
    let as_vm = |vm: u64, p: u8| {
        let base = test_support::fixture("vnm/ipv6-scaleway-pre.xml");
        let id = vm.to_string();
        let nic = |doc: &str, attr: &str, value: &str| set_attribute(doc, "NIC", "NIC_ID", "0", attr, Some(value));
        let alias =
            |doc: &str, attr: &str, value: &str| set_attribute(doc, "NIC_ALIAS", "NIC_ID", "1", attr, Some(value));
        let mut doc = set_attribute(&base, "VM", "", "", "ID", Some(&id));
        for (attr, value) in [
            ("TARGET", format!("one-{vm}-0")),
            ("MAC", mac_of_tap(&format!("one-{vm}-0"))),
            ("IP6", format!("2001:db8:{p}:1::2")),
            ("GATEWAY6", format!("2001:db8:{p}:1::1")),
            ("EXTERNAL_IP", format!("2001:db8:{p}:1::")),
        ] {
            doc = nic(&doc, attr, &value);
        }
        for (attr, value) in [
            ("IP", private(10 + p).to_string()),
            ("GATEWAY", gateway(10 + p).to_string()),
            ("EXTERNAL_IP", fip(10 + p).to_string()),
        ] {
            doc = alias(&doc, attr, &value);
        }
        parse_vm(&doc)
    };
    let (victim, thief) = (vm_ns("victim6"), vm_ns("thief6"));
    let docs = [as_vm(1, 5), as_vm(2, 6)];
    for (doc, ns, p) in [(&docs[0], &victim, 5), (&docs[1], &thief, 6)] {
        a.pre(doc);
        let tap = format!("one-{}-0", doc.id);
        a.plug(ns, &tap, 0, &[(&format!("2001:db8:{p}:1::2/64"), None)]);
        ip(
            ns.name(),
            &["-6", "route", "add", "default", "via", &format!("2001:db8:{p}:1::1")],
        );
        let prefix = format!("2001:db8:{p}:1::/64");
        ip(
            &inet,
            &[
                "-6",
                "route",
                "add",
                &prefix,
                "via",
                "fd00:1::2",
                "src",
                "2001:db8:ffff::10",
            ],
        );
    }
    let (v, t) = (victim.name().to_owned(), thief.name().to_owned());
    let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
    let (victim_ip, victim_gw) = ("2001:db8:5:1::2", "2001:db8:5:1::1");
    // The bridge's link-local address leaves its tentative state first.
    std::thread::sleep(Duration::from_millis(1500));
    let seen = tcp(
        &inet,
        SocketAddr::new(v6(victim_ip), 8110),
        &v,
        SocketAddr::new(v6(victim_ip), 8110),
    );
    assert_eq!(seen, Ok(client6), "before: the internet reaches the victim");
    let bridge_mac = neigh6_mac(&v, victim_gw, "eth0").expect("the victim resolved its gateway");
    let thief_ip = v6("2001:db8:6:1::2");
    let own_source = udp_seen(&t, SocketAddr::new(thief_ip, 0), &inet, SocketAddr::new(client6, 8109));
    assert_eq!(
        own_source,
        Some(thief_ip),
        "before: the thief reaches the internet as itself"
    );
    // The thief claims the victim's address and gateway (unsolicited
    // neighbour advertisements on each MAC change) and sends as the victim.
    sysctl(&t, "net.ipv6.conf.eth0.ndisc_notify", "1");
    for addr in [victim_ip, victim_gw] {
        ip(
            &t,
            &["-6", "addr", "add", &format!("{addr}/128"), "dev", "eth0", "nodad"],
        );
    }
    let own = mac_of_tap("one-2-0");
    let renounce = || {
        ip(&t, &["link", "set", "eth0", "address", "02:00:00:00:ff:fe"]);
        ip(&t, &["link", "set", "eth0", "address", &own]);
        std::thread::sleep(Duration::from_millis(300));
    };
    renounce();
    let spoofed = |port: u16| {
        udp_seen(
            &t,
            SocketAddr::new(v6(victim_ip), 0),
            &inet,
            SocketAddr::new(client6, port),
        )
    };
    assert_eq!(spoofed(8111), None, "a spoofed IPv6 source leaves the host");
    assert_eq!(
        neigh6_mac(&v, victim_gw, "eth0"),
        Some(bridge_mac.clone()),
        "the victim's gateway entry moved"
    );
    let host = a.state();
    let entry = host.neighbours.get(&(v6(victim_ip), "scwpub0".to_owned()));
    assert!(
        entry.is_some_and(|n| n.permanent && n.mac.map(public_plan::endpoint::mac_text) == Some(mac_of_tap("one-1-0"))),
        "the host's entry for the victim moved: {entry:?}"
    );
    let seen = tcp(
        &inet,
        SocketAddr::new(v6(victim_ip), 8112),
        &v,
        SocketAddr::new(v6(victim_ip), 8112),
    );
    assert_eq!(seen, Ok(client6), "the victim's inbound traffic reaches the victim");
    // Without the guard the same attempts succeed (this test can fail).
    a.ns.run_ok(&["nft", "delete", "table", "bridge", "one_scaleway_guard"], b"");
    renounce();
    let poisoned = neigh6_mac(&v, victim_gw, "eth0");
    // (The MAC change flushed the thief's neighbours: it resolves its
    // gateway from its own address first, or the answer goes to the victim.)
    let own_source = udp_seen(&t, SocketAddr::new(thief_ip, 0), &inet, SocketAddr::new(client6, 8114));
    assert_eq!(own_source, Some(thief_ip));
    assert_eq!(
        spoofed(8113),
        Some(v6(victim_ip)),
        "without the guard, the spoofed source gets out"
    );
    assert_eq!(
        poisoned,
        Some(own),
        "without the guard, the victim's gateway entry is the thief's"
    );
    for doc in &docs {
        a.clean(doc);
    }
}
