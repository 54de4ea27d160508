//! Security groups on the private NICs of driver `scaleway_evpn`, with real
//! packets in namespaces (the lab of `evpn_netns.rs`: two hosts, FRR,
//! VXLAN): what each rule form lets in and out, from a VM on the same host
//! (bridged) and from one on the other host (VXLAN); source ranges; replies
//! of established connections; IPv6; group 0 beside a restricted VM on one
//! host; `update_sg` while a connection runs; `clean`, `reconcile`, and
//! `br_netfilter` switched off by hand; the public driver's NAT on the same
//! host leaving bridged private traffic alone. The VM documents are the ones a
//! real oned sent for a group with every rule form
//! (`tests/fixtures/vnm/secgroup-scaleway_evpn-*.xml`, from
//! `real_oned_secgroups.rs`), with the NIC's port and groups chosen.
//!
//! Privileged: root, iproute2, nftables, frr and frr-pythontools.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod evpn_lab;
mod netns_lab;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use evpn_lab::*;
use netns_lab::{open_connection, sa, tcp_ok, tcp_soon, udp_ok};
use opennebula::vm::Vm;
use public_plan::ops::NftOp;
use scaleway_vnm::private;
use test_support::{NetNs, fixture, require_root, set_attribute};

/// The captured document `name` as VM `id` whose private NIC 1 (network 2:
/// VNI 1000002, bridge onebr2) has port `one-<id>-1` and `groups`.
fn captured(name: &str, id: u64, groups: &str) -> Vm {
    let mut doc = set_attribute(&fixture(name), "VM", "", "", "ID", Some(&id.to_string()));
    for (attr, value) in [
        ("TARGET", format!("one-{id}-1")),
        ("SECURITY_GROUPS", groups.to_owned()),
    ] {
        doc = set_attribute(&doc, "NIC", "NIC_ID", "1", attr, Some(&value));
    }
    parse_vm(&doc)
}

/// VM `n`'s addresses: 192.168.10.n, 10.200.0.1n (inside the range the
/// group's `NETWORK_ID` rule names: 10.200.0.10 to .209), fd00:10::n.
fn v4(n: u8) -> Ipv4Addr {
    addr(n)
}

fn in_range(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, 0, 10 + n)
}

fn v6(n: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, u16::from(n))
}

/// Plugs VM `n` (namespace `vm`) into onebr2 on `h` with all its addresses.
fn plug(h: &Hyper, vm: &NetNs, id: u64, n: u8) {
    h.plug(vm, &format!("one-{id}-1"), "onebr2", &mac(n), v4(n), 1450);
    ip(
        vm.name(),
        &["addr", "add", &format!("{}/24", in_range(n)), "dev", "eth0"],
    );
    ip(
        vm.name(),
        &["-6", "addr", "add", &format!("{}/64", v6(n)), "dev", "eth0", "nodad"],
    );
}

fn tables(h: &Hyper) -> String {
    h.ns.run_ok(&["nft", "list", "tables"], b"")
}

#[test]
#[ignore = "privileged: needs root, iproute2, nftables, frr and frr-pythontools; run by .ci/run"]
fn private_nics_are_filtered_by_their_groups_on_their_port() {
    require_root();
    let lab = Lab::new(2, 1);
    lab.configure();
    let (a, b) = (&lab.hosts[0], &lab.hosts[1]);
    // br_netfilter off by hand: pre switches it on again.
    sysctl(a.ns.name(), "net.bridge.bridge-nf-call-iptables", "0");
    // Group 100 of the captured document: TCP 80, 443, 8000-8010, UDP 53,
    // ICMP echo, ICMPv6 echo, TCP 22 from 203.0.113.0/24, all from the
    // private network's range, IPsec in; TCP 443 and all to 10.0.0.0/16
    // out. Its network's group 0 left out (an administrator takes it off
    // the network). VM 22 beside it and VM 23 on the other host in group 0.
    let doc21 = captured("vnm/secgroup-scaleway_evpn-pre.xml", 21, "100");
    let doc22 = captured("vnm/secgroup-scaleway_evpn-pre.xml", 22, "0");
    let doc23 = captured("vnm/secgroup-scaleway_evpn-pre.xml", 23, "0");
    let (vm1, vm2, vm3) = (vm_ns("vm21"), vm_ns("vm22"), vm_ns("vm23"));
    a.pre(&doc21);
    a.pre(&doc22);
    b.pre(&doc23);
    assert_eq!(read_sysctl(a.ns.name(), "net.bridge.bridge-nf-call-iptables"), "1");
    plug(a, &vm1, 21, 1);
    plug(a, &vm2, 22, 2);
    plug(b, &vm3, 23, 3);
    let (v1, v2, v3) = (vm1.name().to_owned(), vm2.name().to_owned(), vm3.name().to_owned());
    assert!(
        ping_until(&v3, v4(2), Duration::from_secs(20)).is_some(),
        "VM 23 reaches VM 22 across hosts\n{}",
        lab.diagnose()
    );
    let to1 = |port| sa(v4(1), port);
    let check = |what: &str| {
        for (from, name) in [(&v2, "VM 22 (same host)"), (&v3, "VM 23 (other host)")] {
            for port in [80, 443, 8005] {
                assert!(
                    tcp_soon(from, to1(port), &v1, to1(port)),
                    "{what}: {name} TCP {port} in"
                );
            }
            for port in [81, 8011, 22] {
                assert!(
                    !tcp_ok(from, to1(port), &v1, to1(port)),
                    "{what}: {name} TCP {port} refused"
                );
            }
            assert!(udp_ok(from, to1(53), &v1, to1(53)), "{what}: {name} UDP 53 in");
            assert!(!udp_ok(from, to1(54), &v1, to1(54)), "{what}: {name} UDP 54 refused");
            assert!(ping_tries(from, v4(1), 3).is_some(), "{what}: {name} ICMP echo in");
            // IPv6: the same port rules.
            let to6 = |port| SocketAddr::new(IpAddr::V6(v6(1)), port);
            assert!(
                tcp_soon(from, to6(80), &v1, to6(80)),
                "{what}: {name} TCP 80 in over IPv6"
            );
            assert!(
                !tcp_ok(from, to6(81), &v1, to6(81)),
                "{what}: {name} TCP 81 refused over IPv6"
            );
        }
        // A source range: everything from the private network's range
        // (VM 22 speaking from 10.200.0.12), only the ports from elsewhere.
        let ranged = sa(in_range(1), 81);
        assert!(tcp_ok(&v2, ranged, &v1, ranged), "{what}: TCP 81 from 10.200.0.12 in");
        // Outbound: TCP 443 anywhere, the rest refused; replies of the
        // connections VM 21 accepted went out above.
        assert!(
            tcp_ok(&v1, sa(v4(2), 443), &v2, sa(v4(2), 443)),
            "{what}: VM 21 TCP 443 out"
        );
        assert!(
            !tcp_ok(&v1, sa(v4(2), 80), &v2, sa(v4(2), 80)),
            "{what}: VM 21 TCP 80 out refused"
        );
        assert!(
            !udp_ok(&v1, sa(v4(3), 53), &v3, sa(v4(3), 53)),
            "{what}: VM 21 UDP out refused"
        );
        // Group 0 beside it: VM 22 and VM 23 take everything.
        assert!(
            tcp_ok(&v3, sa(v4(2), 81), &v2, sa(v4(2), 81)),
            "{what}: VM 23 -> VM 22 TCP 81"
        );
        assert!(
            tcp_ok(&v2, sa(v4(3), 81), &v3, sa(v4(3), 81)),
            "{what}: VM 22 -> VM 23 TCP 81"
        );
    };
    check("after pre");
    // The public driver's NAT on the same host maps VM 22's address to a
    // flexible IP (the public /31s and a tenant's private network may
    // overlap): bridged private traffic passes it untouched.
    let fip: Ipv4Addr = "198.51.100.7".parse().unwrap();
    let nat = public_plan::ops::NftBatch {
        ops: vec![
            NftOp::EnsureBase,
            NftOp::AddDnat {
                external: fip,
                ip: v4(2),
            },
            NftOp::AddSnat {
                ip: v4(2),
                external: fip,
            },
        ],
    };
    a.ns.run_ok(&["nft", "-f", "-"], nat.render().as_bytes());
    assert_eq!(
        netns_lab::tcp(&v2, to1(80), &v1, to1(80)),
        Ok(IpAddr::V4(v4(2))),
        "VM 21 sees VM 22's own address, not the flexible IP"
    );
    a.ns.run_ok(&["nft", "delete", "table", "ip", public_plan::ops::NFT_TABLE], b"");
    // The host loses its tables (a reboot): reconcile puts them back from
    // the host record.
    let before = ruleset(a);
    for (family, table) in [("bridge", "one_scaleway_evpn_ports"), ("inet", "one_scaleway_evpn_sg")] {
        a.ns.run_ok(&["nft", "delete", "table", family, table], b"");
    }
    assert!(tcp_ok(&v2, to1(81), &v1, to1(81)), "open without the tables");
    let (r, log) = a.run(private::reconcile);
    r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_eq!(ruleset(a), before);
    check("after reconcile");

    // update_sg while a connection runs: the group now allows TCP 8080 in
    // only (the document oned sent with update_sg).
    let (mut conn, server) = open_connection(&v3, to1(8005), &v1, to1(8005));
    conn.write_all(b"before ").unwrap();
    let update = captured("vnm/secgroup-scaleway_evpn-update_sg.xml", 21, "100");
    let (r, log) = a.run(move |log, env| private::update_sg(&update, log, env));
    r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(
        log.contains("VM 21: security groups set on VM 21 NIC 1 (1 rule)"),
        "{log}"
    );
    conn.write_all(b"after").unwrap();
    drop(conn);
    assert_eq!(join(server), "before after", "the running connection goes on");
    assert!(!tcp_ok(&v3, to1(8005), &v1, to1(8005)), "8005 refused now");
    assert!(tcp_ok(&v3, to1(8080), &v1, to1(8080)), "8080 allowed now");
    assert!(tcp_ok(&v3, sa(v4(2), 8005), &v2, sa(v4(2), 8005)), "VM 22 untouched");
    // A VM that does not run here: nothing.
    let elsewhere = captured("vnm/secgroup-scaleway_evpn-update_sg.xml", 23, "0");
    let (r, log) = a.run(move |log, env| private::update_sg(&elsewhere, log, env));
    r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(log.contains("VM 23: no private NIC of it on this host"), "{log}");

    let table = || {
        a.ns.run_ok(&["nft", "list", "table", "inet", "one_scaleway_evpn_sg"], b"")
    };
    let chains = |t: &str| t.matches("\tchain sg-").count();
    let alone = chains(&table());
    // VM 22 (group 0: open both ways, no chain) into VM 21's rules: VM 21's
    // chains, shared, its elements re-pointed to them.
    let same = captured("vnm/secgroup-scaleway_evpn-update_sg.xml", 22, "100");
    let (r, log) = a.run(move |log, env| private::update_sg(&same, log, env));
    r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    let t = table();
    assert!(alone == 2 && chains(&t) == alone, "{t}");
    assert!(
        !tcp_ok(&v3, sa(v4(2), 8005), &v2, sa(v4(2), 8005)),
        "VM 22: 8005 refused"
    );
    assert!(
        tcp_ok(&v3, sa(v4(2), 8080), &v2, sa(v4(2), 8080)),
        "VM 22: 8080 allowed"
    );
    // Into group 100 (chains of its own rules made, its elements re-pointed
    // in one transaction), and back to group 0 (the other way).
    for (groups, open) in [("100", false), ("0", true)] {
        let doc = captured("vnm/secgroup-scaleway_evpn-pre.xml", 22, groups);
        let (r, log) = a.run(move |log, env| private::update_sg(&doc, log, env));
        r.unwrap_or_else(|e| panic!("{e}\n{log}"));
        assert_eq!(
            tcp_ok(&v3, sa(v4(2), 8093), &v2, sa(v4(2), 8093)),
            open,
            "VM 22 in group {groups}: TCP 8093"
        );
        assert!(
            tcp_ok(&v3, sa(v4(2), 8005), &v2, sa(v4(2), 8005)),
            "VM 22 in group {groups}: TCP 8005"
        );
        let t = table();
        assert_eq!(chains(&t), if open { alone } else { alone + 2 }, "{t}");
    }

    // clean: VM 21's chains and port go, VM 22's stay; the last VM's clean
    // removes both tables.
    a.unplug("one-21-1");
    a.clean(&doc21);
    let t = table();
    assert!(chains(&t) == 0 && t.contains(": continue"), "{t}");
    let ports =
        a.ns.run_ok(&["nft", "list", "table", "bridge", "one_scaleway_evpn_ports"], b"");
    assert!(!ports.contains("one-21-1") && ports.contains("one-22-1"), "{ports}");
    assert!(
        tcp_ok(&v3, sa(v4(2), 81), &v2, sa(v4(2), 81)),
        "VM 22 after VM 21's clean"
    );
    a.unplug("one-22-1");
    a.clean(&doc22);
    assert_eq!(
        tables(a).trim(),
        "table inet one_scaleway_evpn",
        "only the firewall is left"
    );
    assert!(tables(b).contains("one_scaleway_evpn_sg"), "B keeps VM 23's");
}
