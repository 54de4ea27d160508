//! Security groups on the public NICs of driver `scaleway`, with real
//! packets in namespaces (the lab of `host_netns.rs`): what each rule form
//! lets in and out, replies of established connections, group 0 (all
//! open) beside a restricted VM on one host, `update_sg` while a
//! connection runs, IPv6, `clean` and `reconcile`.
//!
//! Privileged: root, iproute2 and nftables.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod netns_lab;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netns_lab::*;
use opennebula::vm::Vm;
use scaleway_vnm::host;
use test_support::require_root;

const CLIENT2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);

/// One `SECURITY_GROUP_RULE` of group `group`.
fn rule(group: u32, attrs: &[(&str, &str)]) -> String {
    let mut body = format!("<SECURITY_GROUP_ID>{group}</SECURITY_GROUP_ID>");
    for (k, v) in attrs {
        body.push_str(&format!("<{k}>{v}</{k}>"));
    }
    format!("<SECURITY_GROUP_RULE>{body}</SECURITY_GROUP_RULE>")
}

/// VM `id` with public NIC 0 (addresses of n) in security group `group`,
/// and the document's rules.
fn vm_in(id: u64, n: u8, group: u32, rules: &[String]) -> Vm {
    let nic = nic_xml("NIC", id, 0, n, &format!("<SECURITY_GROUPS>{group}</SECURITY_GROUPS>"));
    parse_vm(&format!(
        "<VM><ID>{id}</ID><TEMPLATE>{nic}{}</TEMPLATE></VM>",
        rules.concat()
    ))
}

/// Group 0 as oned sends it: everything in and out.
fn group0() -> Vec<String> {
    vec![
        rule(0, &[("PROTOCOL", "ALL"), ("RULE_TYPE", "OUTBOUND")]),
        rule(0, &[("PROTOCOL", "ALL"), ("RULE_TYPE", "INBOUND")]),
    ]
}

/// Whether a TCP connection from `ns` to `to` reaches a listener in
/// `listen_ns` on `at` within a second.
fn tcp_ok(ns: &str, to: SocketAddr, listen_ns: &str, at: SocketAddr) -> bool {
    let listener = in_ns(listen_ns, move || TcpListener::bind(at).unwrap());
    listener.set_nonblocking(true).unwrap();
    let connected = in_ns(ns, move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(1)).is_ok()
    });
    let deadline = Instant::now() + Duration::from_millis(500);
    let accepted = loop {
        match listener.accept() {
            Ok(_) => break true,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break false,
        }
    };
    connected && accepted
}

/// The internet's packets to `fip` leave from `src` (203.0.113.10 or .11).
fn client_source(lab: &Lab, fip: Ipv4Addr, src: Ipv4Addr) {
    let via = lab.hosts[0].underlay.to_string();
    ip(
        &lab.inet(),
        &[
            "route",
            "replace",
            &format!("{fip}/32"),
            "via",
            &via,
            "src",
            &src.to_string(),
        ],
    );
}

/// Whether UDP datagrams from `ns` to `to` reach a socket in `listen_ns`
/// on `at`.
fn udp_ok(ns: &str, to: SocketAddr, listen_ns: &str, at: SocketAddr) -> bool {
    let listener = in_ns(listen_ns, move || UdpSocket::bind(at).unwrap());
    listener.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    in_ns(ns, move || {
        let s = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)).unwrap();
        for _ in 0..3 {
            let _ = s.send_to(b"one-scaleway sg", to);
            std::thread::sleep(Duration::from_millis(30));
        }
    });
    let mut buf = [0u8; 64];
    listener.recv_from(&mut buf).is_ok()
}

/// A connection from `ns` to `to` kept open, with the listener in
/// `listen_ns` on `at` collecting what arrives until the client closes.
fn open_connection(ns: &str, to: SocketAddr, listen_ns: &str, at: SocketAddr) -> (TcpStream, JoinHandle<String>) {
    let listener = in_ns(listen_ns, move || TcpListener::bind(at).unwrap());
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    });
    let client = in_ns(ns, move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(2)).unwrap()
    });
    (client, server)
}

#[test]
#[ignore = "privileged: needs root, iproute2 and nftables; run by .ci/run"]
fn each_rule_form_lets_in_and_out_only_what_it_says() {
    require_root();
    let lab = Lab::new(1);
    let a = &lab.hosts[0];
    let inet = lab.inet();
    ip(&inet, &["addr", "add", &format!("{CLIENT2}/32"), "dev", "lo"]);
    let restricted = [
        rule(
            100,
            &[("PROTOCOL", "TCP"), ("RULE_TYPE", "INBOUND"), ("RANGE", "22,8000:8010")],
        ),
        rule(100, &[("PROTOCOL", "UDP"), ("RULE_TYPE", "INBOUND"), ("RANGE", "5353")]),
        rule(
            100,
            &[("PROTOCOL", "ICMP"), ("RULE_TYPE", "INBOUND"), ("ICMP_TYPE", "8")],
        ),
        rule(
            100,
            &[
                ("PROTOCOL", "TCP"),
                ("RULE_TYPE", "INBOUND"),
                ("RANGE", "9000"),
                ("IP", &CLIENT2.to_string()),
                ("SIZE", "1"),
            ],
        ),
        rule(100, &[("PROTOCOL", "TCP"), ("RULE_TYPE", "OUTBOUND"), ("RANGE", "443")]),
    ];
    let doc1 = vm_in(1, 1, 100, &restricted);
    let doc2 = vm_in(2, 2, 0, &group0());
    let (vm1, vm2) = (vm_ns("vm1"), vm_ns("vm2"));
    a.pre(&doc1);
    a.pre(&doc2);
    plug(&lab, 0, &vm1, "one-1-0", 0, 1);
    plug(&lab, 0, &vm2, "one-2-0", 0, 2);
    lab.route_fip(fip(1), 0);
    lab.route_fip(fip(2), 0);
    let (v1, v2) = (vm1.name().to_owned(), vm2.name().to_owned());
    let check = |what: &str| {
        // Inbound, from the internet: ports and ranges, UDP, ICMP type, a
        // source range.
        assert!(
            tcp_ok(&inet, sa(fip(1), 8005), &v1, sa(private(1), 8005)),
            "{what}: TCP 8005 in"
        );
        assert!(
            tcp_ok(&inet, sa(fip(1), 22), &v1, sa(private(1), 22)),
            "{what}: TCP 22 in"
        );
        assert!(
            !tcp_ok(&inet, sa(fip(1), 8093), &v1, sa(private(1), 8093)),
            "{what}: TCP 8093 refused"
        );
        assert!(
            udp_ok(&inet, sa(fip(1), 5353), &v1, sa(private(1), 5353)),
            "{what}: UDP 5353 in"
        );
        assert!(
            !udp_ok(&inet, sa(fip(1), 5354), &v1, sa(private(1), 5354)),
            "{what}: UDP 5354 refused"
        );
        assert!(ping(&inet, fip(1).into()).is_some(), "{what}: ICMP echo in");
        assert!(
            !tcp_ok(&inet, sa(fip(1), 9000), &v1, sa(private(1), 9000)),
            "{what}: TCP 9000 refused from 203.0.113.10"
        );
        client_source(&lab, fip(1), CLIENT2);
        assert!(
            tcp_ok(&inet, sa(fip(1), 9000), &v1, sa(private(1), 9000)),
            "{what}: TCP 9000 in from 203.0.113.11"
        );
        assert!(
            !tcp_ok(&inet, sa(fip(1), 8093), &v1, sa(private(1), 8093)),
            "{what}: TCP 8093 refused from 203.0.113.11 as well"
        );
        client_source(&lab, fip(1), CLIENT);
        // Outbound: only TCP 443, whose replies come back although nothing
        // inbound allows them.
        let client: IpAddr = "203.0.113.10".parse().unwrap();
        assert!(
            tcp_ok(&v1, sa(client, 443), &inet, sa(client, 443)),
            "{what}: TCP 443 out"
        );
        assert!(
            !tcp_ok(&v1, sa(client, 8080), &inet, sa(client, 8080)),
            "{what}: TCP 8080 out refused"
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
            "{what}: VM 2 -> VM 1 8093"
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
    // clean takes VM 1's chains and addresses away, VM 2's stay.
    a.clean(&doc1);
    let table = a.ns.run_ok(&["nft", "list", "table", "inet", "one_scaleway_sg"], b"");
    assert!(!table.contains("nic-1-0") && table.contains("nic-2-0-in"), "{table}");
    assert!(
        tcp_ok(&inet, sa(fip(2), 8093), &v2, sa(private(2), 8093)),
        "VM 2 after VM 1's clean"
    );
}

#[test]
#[ignore = "privileged: needs root, iproute2 and nftables; run by .ci/run"]
fn update_sg_replaces_the_rules_and_keeps_established_connections() {
    require_root();
    let lab = Lab::new(1);
    let a = &lab.hosts[0];
    let inet = lab.inet();
    let allow = |port: &str| {
        vec![rule(
            100,
            &[("PROTOCOL", "TCP"), ("RULE_TYPE", "INBOUND"), ("RANGE", port)],
        )]
    };
    let vm1 = vm_ns("vm1");
    a.pre(&vm_in(1, 1, 100, &allow("8005")));
    plug(&lab, 0, &vm1, "one-1-0", 0, 1);
    lab.route_fip(fip(1), 0);
    let v1 = vm1.name().to_owned();
    let (mut conn, server) = open_connection(&inet, sa(fip(1), 8005), &v1, sa(private(1), 8005));
    conn.write_all(b"before ").unwrap();
    // The group now allows 8006 only: oned calls update_sg with the VM's
    // document carrying the new rules.
    let (r, log) = a.act(&vm_in(1, 1, 100, &allow("8006")), host::update_sg);
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
        tcp_ok(&inet, sa(fip(1), 8006), &v1, sa(private(1), 8006)),
        "8006 allowed now"
    );
    // The same rules again: nothing changes.
    let (r, log) = a.act(&vm_in(1, 1, 100, &allow("8006")), host::update_sg);
    r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(log.contains("VM 1: its security groups are in place"), "{log}");
    // A VM that does not run here: nothing.
    let (r, log) = a.act(&vm_in(9, 9, 100, &allow("8006")), host::update_sg);
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
    let nic = "<NIC><NIC_ID>0</NIC_ID><VN_MAD>scaleway</VN_MAD><BRIDGE>scwpub0</BRIDGE>\
               <TARGET>one-1-0</TARGET><MAC>02:00:00:00:01:00</MAC><IP6>2001:db8:5:1::2</IP6>\
               <GATEWAY6>2001:db8:5:1::1</GATEWAY6><EXTERNAL_IP>2001:db8:5:1::</EXTERNAL_IP>\
               <SECURITY_GROUPS>100</SECURITY_GROUPS></NIC>";
    let rules = [
        rule(100, &[("PROTOCOL", "TCP"), ("RULE_TYPE", "INBOUND"), ("RANGE", "8005")]),
        rule(
            100,
            &[("PROTOCOL", "ICMPV6"), ("RULE_TYPE", "INBOUND"), ("ICMPV6_TYPE", "128")],
        ),
    ];
    let doc = parse_vm(&format!(
        "<VM><ID>1</ID><TEMPLATE>{nic}{}</TEMPLATE></VM>",
        rules.concat()
    ));
    let vm1 = vm_ns("vm1");
    a.pre(&doc);
    a.plug(&vm1, "one-1-0", 0, &[("2001:db8:5:1::2/64", None)]);
    ip(vm1.name(), &["-6", "route", "add", "default", "via", "2001:db8:5:1::1"]);
    ip(
        &inet,
        &[
            "-6",
            "route",
            "add",
            "2001:db8:5:1::/64",
            "via",
            "fd00:1::2",
            "src",
            "2001:db8:ffff::10",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !a
        .ns
        .run_ok(&["ip", "-6", "addr", "show", "dev", "scwpub0", "tentative"], b"")
        .trim()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the bridge's link-local address stays tentative"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let vm: IpAddr = "2001:db8:5:1::2".parse().unwrap();
    let v1 = vm1.name().to_owned();
    assert!(ping(&inet, vm).is_some(), "ICMPv6 echo in");
    assert!(
        tcp_ok(&inet, SocketAddr::new(vm, 8005), &v1, SocketAddr::new(vm, 8005)),
        "TCP 8005 in"
    );
    assert!(
        !tcp_ok(&inet, SocketAddr::new(vm, 8093), &v1, SocketAddr::new(vm, 8093)),
        "TCP 8093 refused"
    );
    // Outbound: nothing allowed (no outbound rule).
    let client: IpAddr = "2001:db8:ffff::10".parse().unwrap();
    assert!(
        !tcp_ok(&v1, SocketAddr::new(client, 8080), &inet, SocketAddr::new(client, 8080)),
        "TCP out refused"
    );
}
