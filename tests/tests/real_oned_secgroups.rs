//! Security groups as a real oned hands them to our network drivers: a
//! group with every rule form OpenNebula has (ports and ranges, UDP, ICMP
//! and ICMPv6 types, a source range, a whole network, IPsec, outbound
//! rules), a VM whose public NIC and private NIC are in it, deployed; then
//! the group's rules change (`onesecgroup update`) and oned runs `update_sg`
//! of both drivers on the VM's host. The documents oned sent must give each
//! NIC the rules the group says, as our drivers read them; `UPDATE_FIXTURES=1` keeps them as
//! `tests/fixtures/vnm/secgroup-*.xml` (the namespace tests' documents).
//!
//! Privileged (oneadmin, the build): run by `sudo .ci/run`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::time::{Duration, Instant};

use integration_tests::edge::{VM_EXTRAS, document, edge_cluster, ipv6_vm, running, skip_vm_ids, start, wait_vm};
use opennebula::vm::Vm;
use opennebula::xml;
use secgroup::{AddrRange, Direction, PortRange, Protocol, Rule, Target};
use test_support::oned::RealOned;
use test_support::{fixture_path, require_root};

/// The rules of the VM's public NIC 0 in a recorded document.
fn nic0_rules(doc: &str) -> Vec<Rule> {
    let vm = Vm::from_element(&xml::parse(doc.as_bytes()).unwrap()).unwrap();
    let selection = public_plan::select(&vm).unwrap_or_else(|e| panic!("{e}\n{doc}"));
    selection
        .filters
        .into_iter()
        .find(|f| f.nic_id == 0)
        .unwrap_or_else(|| panic!("no filter for NIC 0\n{doc}"))
        .rules
}

/// The rules of the VM's private NIC 1 in a recorded document (and its port).
fn nic1_rules(doc: &str) -> Vec<Rule> {
    let vm = Vm::from_element(&xml::parse(doc.as_bytes()).unwrap()).unwrap();
    let selection = private_plan::segment::select(&vm).unwrap_or_else(|e| panic!("{e}\n{doc}"));
    let nic = selection
        .requests
        .into_iter()
        .find(|r| r.user.nic_id == 1)
        .unwrap_or_else(|| panic!("no private NIC 1\n{doc}"));
    assert_eq!(nic.port.as_str(), format!("one-{}-1", vm.id), "{doc}");
    nic.rules
}

/// The first recorded call `call` from record `from` on, waiting 60 s.
fn recorded(oned: &RealOned, from: usize, call: &str) -> String {
    let started = Instant::now();
    loop {
        if let Some(r) = oned.records()[from..].iter().find(|r| r.call == call) {
            return document(r);
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no {call} in 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ports(list: &[(u16, u16)]) -> Vec<PortRange> {
    list.iter().map(|&(first, last)| PortRange { first, last }).collect()
}

#[test]
#[ignore = "privileged: runs a real oned as oneadmin (sudo .ci/run)"]
fn security_group_rules_reach_the_drivers_as_oned_writes_them() {
    require_root();
    let emu = integration_tests::real::emulator();
    let oned = start();
    integration_tests::real::scaleway_credentials(&oned, &emu);
    let edge = edge_cluster(&oned);
    let sg = oned.create(
        "onesecgroup",
        &[],
        &format!(
            "NAME = \"web\"\n\
             RULE = [ PROTOCOL = \"TCP\", RULE_TYPE = \"INBOUND\", RANGE = \"80,443,8000:8010\" ]\n\
             RULE = [ PROTOCOL = \"UDP\", RULE_TYPE = \"INBOUND\", RANGE = \"53\" ]\n\
             RULE = [ PROTOCOL = \"ICMP\", RULE_TYPE = \"INBOUND\", ICMP_TYPE = \"8\" ]\n\
             RULE = [ PROTOCOL = \"ICMPV6\", RULE_TYPE = \"INBOUND\", ICMPV6_TYPE = \"128\" ]\n\
             RULE = [ PROTOCOL = \"TCP\", RULE_TYPE = \"INBOUND\", RANGE = \"22\", IP = \"203.0.113.0\", SIZE = \"256\" ]\n\
             RULE = [ PROTOCOL = \"ALL\", RULE_TYPE = \"INBOUND\", NETWORK_ID = \"{}\" ]\n\
             RULE = [ PROTOCOL = \"IPSEC\", RULE_TYPE = \"INBOUND\" ]\n\
             RULE = [ PROTOCOL = \"TCP\", RULE_TYPE = \"OUTBOUND\", RANGE = \"443\" ]\n\
             RULE = [ PROTOCOL = \"ALL\", RULE_TYPE = \"OUTBOUND\", IP = \"10.0.0.0\", SIZE = \"65536\" ]\n",
            edge.private
        ),
    );
    skip_vm_ids(&oned, 3);
    let vm = oned.create(
        "onevm",
        &["--hold"],
        &format!(
            "NAME = \"web\"\n{VM_EXTRAS}\
             NIC = [ NETWORK_ID = \"{}\", NAME = \"public\", SECURITY_GROUPS = \"{sg}\" ]\n\
             NIC = [ NETWORK_ID = \"{}\", SECURITY_GROUPS = \"{sg}\" ]\n",
            edge.public, edge.private
        ),
    );
    let [h1, _] = edge.hosts;
    let before = oned.records().len();
    oned.cli_ok(
        "onevm",
        &["deploy", &vm.to_string(), &h1.to_string(), &edge.ds.to_string()],
    );
    wait_vm(&oned, vm, "deploy", running(2, "host-a"));
    let pre = recorded(&oned, before, "vnm-scaleway-pre");
    let rules = nic0_rules(&pre);
    let of = |group: u32| rules.iter().filter(|r| r.group == group).cloned().collect::<Vec<_>>();
    // The network's own group 0 (all open) comes with it, as OpenNebula
    // adds a network's groups to each of its NICs.
    assert_eq!(of(0), secgroup::default_rules(), "{pre}");
    let web = of(sg);
    let rule = |direction, protocol, ports_: &[(u16, u16)], icmp_type, target| Rule {
        group: sg,
        direction,
        protocol,
        ports: ports(ports_),
        icmp_type,
        target,
    };
    use Direction::{Inbound, Outbound};
    let expected = [
        rule(
            Inbound,
            Protocol::Tcp,
            &[(80, 80), (443, 443), (8000, 8010)],
            None,
            Target::Any,
        ),
        rule(Inbound, Protocol::Udp, &[(53, 53)], None, Target::Any),
        rule(Inbound, Protocol::Icmp, &[], Some(8), Target::Any),
        rule(Inbound, Protocol::Icmpv6, &[], Some(128), Target::Any),
        rule(
            Inbound,
            Protocol::Tcp,
            &[(22, 22)],
            None,
            Target::Ranges(vec![AddrRange::V4 {
                first: [203, 0, 113, 0].into(),
                last: [203, 0, 113, 255].into(),
            }]),
        ),
        // NETWORK_ID: oned wrote the private network's range (10.200.0.10, 200 addresses).
        rule(
            Inbound,
            Protocol::All,
            &[],
            None,
            Target::Ranges(vec![AddrRange::V4 {
                first: [10, 200, 0, 10].into(),
                last: [10, 200, 0, 209].into(),
            }]),
        ),
        rule(Inbound, Protocol::Ipsec, &[], None, Target::Any),
        rule(Outbound, Protocol::Tcp, &[(443, 443)], None, Target::Any),
        rule(
            Outbound,
            Protocol::All,
            &[],
            None,
            Target::Ranges(vec![AddrRange::V4 {
                first: [10, 0, 0, 0].into(),
                last: [10, 0, 255, 255].into(),
            }]),
        ),
    ];
    for e in &expected {
        assert!(web.contains(e), "{e:?} not in the NIC's rules {web:#?}\n{pre}");
    }
    assert_eq!(web.len(), expected.len(), "{web:#?}");
    // The private NIC, as scaleway_evpn's pre gets it: the same rules.
    let pre_private = recorded(&oned, before, "vnm-scaleway_evpn-pre");
    let private: Vec<Rule> = nic1_rules(&pre_private).into_iter().filter(|r| r.group == sg).collect();
    assert_eq!(private, web, "{pre_private}");

    // The group's rules change: oned runs update_sg for the VM, on its host.
    let from = oned.records().len();
    let file = oned.template_file(
        "web-8080.tmpl",
        "RULE = [ PROTOCOL = \"TCP\", RULE_TYPE = \"INBOUND\", RANGE = \"8080\" ]\n",
    );
    oned.cli_ok("onesecgroup", &["update", &sg.to_string(), &file]);
    let update = recorded(&oned, from, "vnm-scaleway-update_sg");
    let web: Vec<Rule> = nic0_rules(&update).into_iter().filter(|r| r.group == sg).collect();
    assert_eq!(
        web,
        [rule(Inbound, Protocol::Tcp, &[(8080, 8080)], None, Target::Any)],
        "{update}"
    );
    // oned runs update_sg of each driver of the VM's NICs.
    let update_private = recorded(&oned, from, "vnm-scaleway_evpn-update_sg");
    let private: Vec<Rule> = nic1_rules(&update_private)
        .into_iter()
        .filter(|r| r.group == sg)
        .collect();
    assert_eq!(private, web, "{update_private}");
    // An IPv6 public NIC in the group.
    let vm6 = ipv6_vm(&oned, &edge, "web6", &format!(", SECURITY_GROUPS = \"{sg}\""), "");
    let from = oned.records().len();
    oned.cli_ok(
        "onevm",
        &["deploy", &vm6.to_string(), &h1.to_string(), &edge.ds.to_string()],
    );
    wait_vm(&oned, vm6, "deploy", running(1, "host-a"));
    let pre6 = recorded(&oned, from, "vnm-scaleway-pre");
    let web6: Vec<Rule> = nic0_rules(&pre6).into_iter().filter(|r| r.group == sg).collect();
    assert_eq!(
        web6,
        [rule(Inbound, Protocol::Tcp, &[(8080, 8080)], None, Target::Any)],
        "{pre6}"
    );
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        for (name, doc) in [
            ("secgroup-scaleway-pre", &pre),
            ("secgroup-scaleway-update_sg", &update),
            ("secgroup-scaleway_evpn-pre", &pre_private),
            ("secgroup-scaleway_evpn-update_sg", &update_private),
            ("secgroup6-scaleway-pre", &pre6),
        ] {
            std::fs::write(fixture_path(&format!("vnm/{name}.xml")), doc).unwrap();
        }
    }
    for id in [vm, vm6] {
        oned.cli_ok("onevm", &["terminate", "--hard", &id.to_string()]);
        wait_vm(&oned, id, "terminate", |v| {
            integration_tests::edge::value(v, "STATE") == "6"
        });
    }
}
