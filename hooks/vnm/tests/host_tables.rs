//! How the host side of driver `scaleway` learns what our nft tables hold:
//! from the host record while its base fingerprint is this version's (no
//! listing, whose cost grows with the NICs on the host), and by listing
//! them when the kernel refuses the transaction planned from the record,
//! or when the record comes from another version. On the fake host.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod fake_hyper;

use fake_hyper::{Hyper, vm};
use public_apply::record::RecordFile;
use public_plan::ops::base_fingerprint;

fn listings(calls: &[String]) -> usize {
    calls.iter().filter(|c| c.starts_with("nft -j list")).count()
}

#[test]
fn the_record_stands_in_for_the_tables_until_the_kernel_disagrees() {
    let h = Hyper::new();
    // A new host: the tables are listed, their base declared, the
    // fingerprint recorded.
    h.pre(&vm(1, &[(0, 1)])).0.unwrap();
    assert_eq!(listings(&h.fake.take_calls()), 3);
    let record = RecordFile::new(h.record_path()).load().unwrap();
    assert_eq!(record.base, Some(base_fingerprint()));
    // Then nothing is listed: this VM's links, routes and neighbours read
    // and changed through rtnetlink (no process), one nft transaction.
    let before = h.fake.processes();
    let (r, log) = h.pre(&vm(2, &[(0, 2)]));
    assert_eq!(r, Ok(String::new()), "{log}");
    let calls = h.fake.take_calls();
    assert_eq!(listings(&calls), 0, "{calls:?}");
    assert_eq!(h.fake.processes() - before, 1, "{calls:?}");
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("netlink")).count(),
        2,
        "{calls:?}"
    );
    let (r, log) = h.clean(&vm(1, &[(0, 1)]));
    assert_eq!(r, Ok(String::new()), "{log}");
    assert_eq!(listings(&h.fake.take_calls()), 0);
    let running = h.fake.kernel();

    // The host reboots and nobody runs reconcile: the next pre's
    // transaction is refused (no table), so it lists the tables and puts
    // the VM back, base included.
    h.fake.reboot();
    let (r, log) = h.pre(&vm(2, &[(0, 2)]));
    assert_eq!(r, Ok(String::new()), "{log}");
    assert!(log.contains("our nft tables are not as the host record says"), "{log}");
    assert_eq!(listings(&h.fake.take_calls()), 3);
    assert_eq!(h.fake.kernel(), running);
    // And a clean on the rebooted host succeeds as well.
    h.fake.reboot();
    let (r, log) = h.clean(&vm(2, &[(0, 2)]));
    assert_eq!(r, Ok(String::new()), "{log}");
    assert!(h.record().is_empty());
}

#[test]
fn an_element_the_record_does_not_know_is_found_and_named() {
    let h = Hyper::new();
    h.pre(&vm(1, &[(0, 1)])).0.unwrap();
    // Someone maps VM 2's flexible IP by hand.
    let mut kernel = h.fake.kernel();
    kernel
        .nat
        .maps
        .get_mut("dnat_map")
        .unwrap()
        .elements
        .insert([198, 51, 100, 2].into(), [10, 9, 9, 9].into());
    h.fake.set_kernel(kernel.clone());
    h.fake.take_calls();
    let (r, log) = h.pre(&vm(2, &[(0, 2)]));
    let e = r.unwrap_err();
    assert!(
        e.contains(
            "flexible IP 198.51.100.2 is already mapped to 10.9.9.9 on this host (not in the driver's record: set \
             by hand or left over): refusing to map it to 172.30.0.8 for VM 2 NIC 0"
        ),
        "{e}\n{log}"
    );
    assert_eq!(listings(&h.fake.take_calls()), 3);
    assert_eq!(h.fake.kernel(), kernel, "nothing changed");
    assert_eq!(h.record().len(), 1);
}

#[test]
fn a_record_of_another_version_declares_the_base_again() {
    let h = Hyper::new();
    h.pre(&vm(1, &[(0, 1)])).0.unwrap();
    // The record an older version wrote (no fingerprint, or another one).
    for older in [None, Some("0123456789abcdef".to_owned())] {
        let file = RecordFile::new(h.record_path());
        let mut record = file.load().unwrap();
        record.base = older;
        file.save(&record).unwrap();
        h.fake.take_calls();
        let (r, log) = h.pre(&vm(1, &[(0, 1)]));
        assert_eq!(r, Ok(String::new()), "{log}");
        let calls = h.fake.take_calls();
        assert_eq!(listings(&calls), 3);
        let nft = calls.iter().find(|c| c.starts_with("nft -f")).unwrap();
        assert!(nft.contains("add table ip one_scaleway") && nft.contains("add table bridge one_scaleway_guard"));
        assert!(
            nft.contains("flush chain bridge one_scaleway_guard prerouting"),
            "{nft}"
        );
        assert_eq!(file.load().unwrap().base, Some(base_fingerprint()));
        // From then on, nothing is listed.
        h.pre(&vm(1, &[(0, 1)])).0.unwrap();
        assert_eq!(listings(&h.fake.take_calls()), 0);
    }
}

/// The captured document of a VM in security group 100 (its NIC's groups
/// chosen), on the fake host.
fn in_group(name: &str, groups: &str) -> opennebula::vm::Vm {
    let doc = test_support::set_attribute(
        &test_support::fixture(name),
        "NIC",
        "NIC_ID",
        "0",
        "SECURITY_GROUPS",
        Some(groups),
    );
    fake_hyper::parse_vm(&doc)
}

#[test]
fn update_sg_sets_only_the_chains_whose_rules_changed() {
    let h = Hyper::new();
    let pre = in_group("vnm/secgroup-scaleway-pre.xml", "100");
    let update = in_group("vnm/secgroup-scaleway-update_sg.xml", "100");
    // Not on this host yet: no tool runs.
    let (r, log) = h.update_sg(&update);
    assert_eq!(r, Ok(String::new()), "{log}");
    assert!(log.contains("VM 3: no public NIC of it on this host"), "{log}");
    assert!(h.fake.take_calls().is_empty());
    h.pre(&pre).0.unwrap();
    h.fake.take_calls();
    let chain = |rules: &[secgroup::Rule]| {
        public_plan::filter::FilterChain::of(rules, secgroup::Direction::Inbound)
            .unwrap()
            .name()
    };
    let old = chain(&RecordFile::new(h.record_path()).load().unwrap().filters[0].rules);
    // New rules: one transaction that fills the chain of the new rules,
    // moves the NIC's elements to it and deletes the old one (no other NIC
    // uses it), nothing listed, no ip change.
    let (r, log) = h.update_sg(&update);
    assert_eq!(r, Ok(String::new()), "{log}");
    assert!(log.contains("VM 3: security groups set on NIC 0 (1 rule)"), "{log}");
    let calls = h.fake.take_calls();
    let nft: Vec<&String> = calls.iter().filter(|c| c.starts_with("nft")).collect();
    assert_eq!(nft.len(), 1, "{calls:?}");
    let rules = RecordFile::new(h.record_path()).load().unwrap().filters;
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].rules.iter().filter(|r| r.group == 100).count(), 1);
    let new = chain(&rules[0].rules);
    for line in [
        format!("flush chain inet one_scaleway_sg {new}"),
        format!("jump {new}"),
        format!("flush chain inet one_scaleway_sg {old}; delete chain inet one_scaleway_sg {old}"),
    ] {
        assert!(nft[0].contains(&line), "{line} in {calls:?}");
    }
    assert!(nft[0].contains("tcp dport { 8080 } return"), "{calls:?}");
    assert!(!calls.iter().any(|c| c.starts_with("netlink change")), "{calls:?}");
    // The same rules again: the chains stay.
    let (r, log) = h.update_sg(&update);
    assert_eq!(r, Ok(String::new()), "{log}");
    assert!(log.contains("VM 3: its security groups are in place"), "{log}");
    assert!(!h.fake.take_calls().iter().any(|c| c.contains("flush chain")));
}
