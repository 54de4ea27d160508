//! Security groups on the public NICs of driver `scaleway`, with real
//! packets in namespaces (the lab of `host_netns.rs`): what each rule form
//! lets in and out, replies of established connections, group 0 (all
//! open) beside a restricted VM on one host, `update_sg` while a
//! connection runs, IPv6, `clean` and `reconcile`. The VM documents are
//! the ones a real oned sent for a group with every rule form
//! (`tests/fixtures/vnm/secgroup-*.xml`, from `real_oned_secgroups.rs`),
//! with the NIC's addresses changed to the lab's and its groups chosen.
//!
//! Privileged: root, iproute2 and nftables.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod netns_lab;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use netns_lab::*;
use opennebula::vm::Vm;
use scaleway_vnm::host;
use test_support::{fixture, require_root, set_attribute};

/// A source outside the rules' source range 203.0.113.0/24.
const OUTSIDER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);

/// The captured document `name` as VM `id` whose public NIC 0 has the
/// lab's addresses of `n` (its tap and MAC the lab's) and `groups`.
fn captured(name: &str, id: u64, n: u8, groups: &str) -> Vm {
    let tap = format!("one-{id}-0");
    let mut doc = set_attribute(&fixture(name), "VM", "", "", "ID", Some(&id.to_string()));
    for (attr, value) in [
        ("IP", private(n).to_string()),
        ("GATEWAY", gateway(n).to_string()),
        ("EXTERNAL_IP", fip(n).to_string()),
        ("MAC", mac_of_tap(&tap)),
        ("TARGET", tap),
        ("SECURITY_GROUPS", groups.to_owned()),
    ] {
        doc = set_attribute(&doc, "NIC", "NIC_ID", "0", attr, Some(&value));
    }
    parse_vm(&doc)
}

#[test]
#[ignore = "privileged: needs root, iproute2 and nftables; run by .ci/run"]
fn each_rule_form_lets_in_and_out_only_what_it_says() {
    require_root();
    let lab = Lab::new(1);
    let a = &lab.hosts[0];
    let inet = lab.inet();
    ip(&inet, &["addr", "add", &format!("{OUTSIDER}/32"), "dev", "lo"]);
    // Group 100 of the captured document: TCP 80, 443, 8000-8010, UDP 53,
    // ICMP echo, TCP 22 from 203.0.113.0/24, all from the private network's
    // range, IPsec in; TCP 443 and all to 10.0.0.0/16 out. Its network's
    // group 0 left out (an administrator takes it off the network), and a
    // second VM in group 0 only.
    let doc1 = captured("vnm/secgroup-scaleway-pre.xml", 1, 1, "100");
    let doc2 = captured("vnm/secgroup-scaleway-pre.xml", 2, 2, "0");
    let (vm1, vm2) = (vm_ns("vm1"), vm_ns("vm2"));
    a.pre(&doc1);
    a.pre(&doc2);
    plug(&lab, 0, &vm1, "one-1-0", 0, 1);
    plug(&lab, 0, &vm2, "one-2-0", 0, 2);
    lab.route_fip(fip(1), 0);
    lab.route_fip(fip(2), 0);
    let (v1, v2) = (vm1.name().to_owned(), vm2.name().to_owned());
    let client: IpAddr = CLIENT.into();
    let underlay: IpAddr = "10.0.0.1".parse().unwrap();
    let check = |what: &str| {
        // Inbound, from the internet: ports and ranges, UDP, ICMP type.
        for port in [80, 443, 8005] {
            assert!(
                tcp_soon(&inet, sa(fip(1), port), &v1, sa(private(1), port)),
                "{what}: TCP {port} in"
            );
        }
        assert!(
            !tcp_ok(&inet, sa(fip(1), 8093), &v1, sa(private(1), 8093)),
            "{what}: TCP 8093 refused"
        );
        assert!(
            udp_ok(&inet, sa(fip(1), 53), &v1, sa(private(1), 53)),
            "{what}: UDP 53 in"
        );
        assert!(
            !udp_ok(&inet, sa(fip(1), 5353), &v1, sa(private(1), 5353)),
            "{what}: UDP 5353 refused"
        );
        assert!(ping(&inet, fip(1).into()).is_some(), "{what}: ICMP echo in");
        // A source range: TCP 22 from 203.0.113.0/24 only.
        assert!(
            tcp_ok(&inet, sa(fip(1), 22), &v1, sa(private(1), 22)),
            "{what}: TCP 22 from 203.0.113.10"
        );
        lab.route_fip_from(fip(1), 0, OUTSIDER);
        assert!(
            !tcp_ok(&inet, sa(fip(1), 22), &v1, sa(private(1), 22)),
            "{what}: TCP 22 from {OUTSIDER} refused"
        );
        assert!(
            tcp_ok(&inet, sa(fip(1), 8005), &v1, sa(private(1), 8005)),
            "{what}: TCP 8005 from {OUTSIDER}"
        );
        lab.route_fip_from(fip(1), 0, CLIENT);
        // Outbound: TCP 443 anywhere and everything to 10.0.0.0/16; the
        // replies come back although nothing inbound allows them.
        assert!(
            tcp_ok(&v1, sa(client, 443), &inet, sa(client, 443)),
            "{what}: TCP 443 out"
        );
        assert!(
            !tcp_ok(&v1, sa(client, 8080), &inet, sa(client, 8080)),
            "{what}: TCP 8080 out refused"
        );
        assert!(
            tcp_ok(&v1, sa(underlay, 8080), &inet, sa(underlay, 8080)),
            "{what}: TCP 8080 to 10.0.0.1 out"
        );
        // VM 2 on the same host, in group 0: everything, both ways.
        assert!(
            tcp_ok(&inet, sa(fip(2), 8093), &v2, sa(private(2), 8093)),
            "{what}: VM 2 in"
        );
        assert!(
            tcp_ok(&v2, sa(client, 8080), &inet, sa(client, 8080)),
            "{what}: VM 2 out"
        );
        // VM 2 to VM 1's flexible IP on the same host: VM 1's inbound rules.
        assert!(
            tcp_ok(&v2, sa(fip(1), 8005), &v1, sa(private(1), 8005)),
            "{what}: VM 2 -> VM 1 8005"
        );
        assert!(
            !tcp_ok(&v2, sa(fip(1), 8093), &v1, sa(private(1), 8093)),
            "{what}: VM 2 -> VM 1 8093 refused"
        );
    };
    check("after pre");
    // The host loses its state (a reboot without the VMs' pre): reconcile
    // puts the filters back from the host record.
    for table in ["inet one_scaleway_sg", "ip one_scaleway", "bridge one_scaleway_guard"] {
        let mut args = vec!["nft", "delete", "table"];
        args.extend(table.split(' '));
        a.ns.run_ok(&args, b"");
    }
    let (r, log) = a.reconcile();
    r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    check("after reconcile");
    let table = || a.ns.run_ok(&["nft", "list", "table", "inet", "one_scaleway_sg"], b"");
    let chains = |t: &str| t.matches("\tchain sg-").count();
    // Group 100's two chains; group 0 lets everything through both ways:
    // no chain, VM 2's addresses `continue`.
    let t = table();
    assert!(chains(&t) == 2 && !t.contains("nic-"), "{t}");
    assert!(t.contains(&format!("{} : continue", private(2))), "{t}");
    // VM 2 into group 100 (its addresses re-pointed in one transaction):
    // VM 1's chains, shared.
    let in_group = |groups| {
        let doc = captured("vnm/secgroup-scaleway-pre.xml", 2, 2, groups);
        let (r, log) = a.act(&doc, host::update_sg);
        r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    };
    let vm2_filtered = |what: &str, filtered: bool| {
        assert_eq!(
            tcp_ok(&inet, sa(fip(2), 8093), &v2, sa(private(2), 8093)),
            !filtered,
            "{what}: VM 2's TCP 8093"
        );
        assert!(
            tcp_soon(&inet, sa(fip(2), 8005), &v2, sa(private(2), 8005)),
            "{what}: VM 2's TCP 8005"
        );
    };
    in_group("100");
    vm2_filtered("VM 2 in group 100", true);
    let t = table();
    assert!(chains(&t) == 2 && !t.contains(": continue"), "{t}");
    // clean takes VM 1's addresses away; the chains stay for VM 2.
    a.clean(&doc1);
    let t = table();
    assert!(chains(&t) == 2 && !t.contains(&private(1).to_string()), "{t}");
    vm2_filtered("after VM 1's clean", true);
    // VM 2 back to group 0: the chains go with their last NIC.
    in_group("0");
    vm2_filtered("VM 2 back in group 0", false);
    let t = table();
    assert!(
        chains(&t) == 0 && t.contains(&format!("{} : continue", private(2))),
        "{t}"
    );
}

#[test]
#[ignore = "privileged: needs root, iproute2 and nftables; run by .ci/run"]
fn update_sg_replaces_the_rules_and_keeps_established_connections() {
    require_root();
    let lab = Lab::new(1);
    let a = &lab.hosts[0];
    let inet = lab.inet();
    let vm1 = vm_ns("vm1");
    a.pre(&captured("vnm/secgroup-scaleway-pre.xml", 1, 1, "100"));
    plug(&lab, 0, &vm1, "one-1-0", 0, 1);
    lab.route_fip(fip(1), 0);
    let v1 = vm1.name().to_owned();
    assert!(
        tcp_soon(&inet, sa(fip(1), 8005), &v1, sa(private(1), 8005)),
        "8005 allowed"
    );
    let (mut conn, server) = open_connection(&inet, sa(fip(1), 8005), &v1, sa(private(1), 8005));
    conn.write_all(b"before ").unwrap();
    // The group now allows TCP 8080 in only: the document oned sent with
    // update_sg.
    let update = captured("vnm/secgroup-scaleway-update_sg.xml", 1, 1, "100");
    let (r, log) = a.act(&update, host::update_sg);
    r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(log.contains("VM 1: security groups set on NIC 0 (1 rule)"), "{log}");
    conn.write_all(b"after").unwrap();
    drop(conn);
    assert_eq!(join(server), "before after", "the running connection goes on");
    assert!(
        !tcp_ok(&inet, sa(fip(1), 8005), &v1, sa(private(1), 8005)),
        "8005 refused now"
    );
    assert!(
        tcp_ok(&inet, sa(fip(1), 8080), &v1, sa(private(1), 8080)),
        "8080 allowed now"
    );
    // The same rules again: nothing changes.
    let (r, log) = a.act(&update, host::update_sg);
    r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(log.contains("VM 1: its security groups are in place"), "{log}");
    // A VM that does not run here: nothing.
    let (r, log) = a.act(
        &captured("vnm/secgroup-scaleway-update_sg.xml", 9, 9, "100"),
        host::update_sg,
    );
    r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(log.contains("VM 9: no public NIC of it on this host"), "{log}");
}

#[test]
#[ignore = "privileged: needs root, iproute2 and nftables; run by .ci/run"]
fn ipv6_traffic_is_filtered_too() {
    require_root();
    let lab = Lab::new(1);
    let a = &lab.hosts[0];
    let inet = lab.inet();
    // The IPv6 VM of the captured group (TCP 8080 in, nothing out), group
    // 0 left out; its tap and MAC the lab's.
    let mut doc = fixture("vnm/secgroup6-scaleway-pre.xml");
    for (attr, value) in [("SECURITY_GROUPS", "100"), ("MAC", "02:00:00:00:04:00")] {
        doc = set_attribute(&doc, "NIC", "NIC_ID", "0", attr, Some(value));
    }
    let doc = parse_vm(&doc);
    let nic = &doc.nics_of("scaleway").unwrap()[0];
    let (vm_ip, gw, prefix) = (nic.ip6.unwrap(), nic.gateway6.unwrap(), nic.external_ip.unwrap());
    let vm1 = vm_ns("vm1");
    a.pre(&doc);
    a.plug(&vm1, "one-4-0", 0, &[(&format!("{vm_ip}/64"), None)]);
    ip(vm1.name(), &["-6", "route", "add", "default", "via", &gw.to_string()]);
    ip(
        &inet,
        &[
            "-6",
            "route",
            "add",
            &format!("{prefix}/64"),
            "via",
            "fd00:1::2",
            "src",
            "2001:db8:ffff::10",
        ],
    );
    a.wait_bridge_ipv6();
    let vm = IpAddr::V6(vm_ip);
    let v1 = vm1.name().to_owned();
    assert!(
        tcp_soon(&inet, SocketAddr::new(vm, 8080), &v1, SocketAddr::new(vm, 8080)),
        "TCP 8080 in"
    );
    assert!(
        !tcp_ok(&inet, SocketAddr::new(vm, 8005), &v1, SocketAddr::new(vm, 8005)),
        "TCP 8005 refused"
    );
    assert!(ping(&inet, vm).is_none(), "ICMPv6 echo refused (no rule for it)");
    let client: IpAddr = "2001:db8:ffff::10".parse().unwrap();
    assert!(
        !tcp_ok(&v1, SocketAddr::new(client, 8080), &inet, SocketAddr::new(client, 8080)),
        "TCP out refused (no outbound rule)"
    );
    // The same VM in group 0 as well (as oned sent it): everything passes.
    let (r, log) = a.act(
        &parse_vm(&set_attribute(
            &fixture("vnm/secgroup6-scaleway-pre.xml"),
            "NIC",
            "NIC_ID",
            "0",
            "MAC",
            Some("02:00:00:00:04:00"),
        )),
        host::update_sg,
    );
    r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(ping(&inet, vm).is_some(), "ICMPv6 echo in with group 0");
    assert!(
        tcp_ok(&v1, SocketAddr::new(client, 8080), &inet, SocketAddr::new(client, 8080)),
        "TCP out with group 0"
    );
}
