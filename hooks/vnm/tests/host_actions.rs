//! The host side of driver `scaleway` (`pre`, the host part of `clean`,
//! `reconcile`) on the fake host of `public_apply`: which NICs are touched, the
//! record, conflicts, dry runs, failures. Fast, no root.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod fake_hyper;

use std::path::PathBuf;

use fake_hyper::{Hyper, fixture_vm, parse_vm, vm};
use scaleway_vnm::host::Settings;
use test_support::fixture;

#[test]
fn pre_twice_is_pre_once() {
    let h = Hyper::new();
    let (r, log) = h.pre(&vm(1, &[(0, 1)]));
    assert_eq!(r, Ok(String::new()), "{log}");
    assert!(
        log.contains("INFO: scaleway-vnm scaleway test: VM 1: set up VM 1 NIC 0: 198.51.100.1 <-> 172.30.0.4"),
        "{log}"
    );
    let kernel = h.fake.kernel();
    h.fake.take_calls();
    let (r, log) = h.pre(&vm(1, &[(0, 1)]));
    assert_eq!(r, Ok(String::new()));
    assert!(log.contains("VM 1: already in place"), "{log}");
    assert_eq!(h.fake.kernel(), kernel);
    // The tables are not listed (the record says what they hold); the
    // VM's elements are added again, a no-op for elements that exist; its
    // security group (the default one: open both ways, so no chain and
    // `continue` elements), recorded with the same rules, is not touched.
    assert_eq!(
        h.fake.take_calls(),
        [
            "netlink read",
            "nft -f - <<< add element ip one_scaleway dnat_map { 198.51.100.1 : 172.30.0.4 }; add element ip \
             one_scaleway snat_map { 172.30.0.4 : 198.51.100.1 }; add element bridge one_scaleway_guard ports { \
             \"one-1-0\" }; add element bridge one_scaleway_guard macs { \"one-1-0\" . 02:00:00:00:01:00 }; add \
             element bridge one_scaleway_guard addr4 { \"one-1-0\" . 172.30.0.4 }; add element inet one_scaleway_sg \
             in4 { 172.30.0.4 : continue }; add element inet one_scaleway_sg out4 { 172.30.0.4 : continue }"
        ]
    );
    assert_eq!(
        h.record(),
        ["VM 1 NIC 0: 198.51.100.1 <-> 172.30.0.4 (gateway 172.30.0.5) on scwpub0"]
    );
}

#[test]
fn a_conflict_is_refused_and_changes_nothing() {
    let h = Hyper::new();
    h.pre(&vm(1, &[(0, 1)])).0.unwrap();
    let kernel = h.fake.kernel();
    let record = h.record_files();
    assert!(!record.is_empty());
    // VM 2 is handed VM 1's flexible IP with another private block.
    let thief = parse_vm(
        "<VM><ID>2</ID><TEMPLATE><NIC><NIC_ID>0</NIC_ID><VN_MAD>scaleway</VN_MAD><BRIDGE>scwpub0</BRIDGE>\
         <TARGET>one-2-0</TARGET><MAC>02:00:00:00:02:00</MAC><IP>172.30.0.8</IP><GATEWAY>172.30.0.9</GATEWAY><EXTERNAL_IP>198.51.100.1</EXTERNAL_IP></NIC></TEMPLATE></VM>",
    );
    let (r, _) = h.pre(&thief);
    let e = r.unwrap_err();
    assert!(
        e.contains("VM 2: cannot set up its public NICs on this host")
            && e.contains("flexible IP 198.51.100.1 is already mapped to 172.30.0.4 (VM 1 NIC 0)")
            && e.contains("for VM 2 NIC 0"),
        "{e}"
    );
    assert_eq!(h.fake.kernel(), kernel);
    assert_eq!(h.record_files(), record);
}

#[test]
fn clean_removes_this_vm_only_and_twice_is_fine() {
    let h = Hyper::new();
    for id in 1..=3u8 {
        h.pre(&vm(u64::from(id), &[(0, id)])).0.unwrap();
        h.fake.plug(&format!("one-{id}-0"), "scwpub0");
    }
    let others = |k: &public_plan::Observed| (k.nat.maps["dnat_map"].elements.len(), k.routes.len(), k.proxies.len());
    h.fake.unplug("one-2-0");
    let (r, log) = h.clean(&vm(2, &[(0, 2)]));
    assert_eq!(r, Ok(String::new()), "{log}");
    assert!(log.contains("VM 2: removed VM 2 NIC 0"), "{log}");
    assert_eq!(others(&h.fake.kernel()), (2, 2, 2));
    assert_eq!(h.record().len(), 2);
    let (r, log) = h.clean(&vm(2, &[(0, 2)]));
    assert_eq!(r, Ok(String::new()));
    assert!(log.contains("VM 2: nothing of it left on this host"), "{log}");
    // The last two go; the bridge goes with the last one once its tap is gone.
    h.fake.unplug("one-1-0");
    h.fake.unplug("one-3-0");
    h.clean(&vm(1, &[(0, 1)])).0.unwrap();
    let (_, log) = h.clean(&vm(3, &[(0, 3)]));
    assert!(log.contains("bridge scwpub0 deleted"), "{log}");
    let k = h.fake.kernel();
    assert!(k.links.is_empty() && k.routes.is_empty() && k.proxies.is_empty());
    assert!(k.nat.maps["dnat_map"].elements.is_empty() && k.nat.maps["snat_map"].elements.is_empty());
    assert!(h.record().is_empty());
}

#[test]
fn clean_of_a_vm_never_deployed_here_changes_nothing() {
    let h = Hyper::new();
    h.pre(&vm(1, &[(0, 1)])).0.unwrap();
    let kernel = h.fake.kernel();
    let (r, log) = h.clean(&vm(9, &[(0, 9)]));
    assert_eq!(r, Ok(String::new()), "{log}");
    assert_eq!(h.fake.kernel(), kernel);
}

#[test]
fn hot_attach_and_detach_touch_one_nic() {
    let h = Hyper::new();
    h.pre(&fixture_vm("vnm/deploy-scaleway-pre.xml")).0.unwrap();
    h.fake.plug("one-7-0", "scwpub0");
    assert_eq!(h.record().len(), 2);
    let attach = fixture_vm("vnm/nic_attach-scaleway-pre.xml");
    h.fake.take_calls();
    let (r, log) = h.pre(&attach);
    assert_eq!(r, Ok(String::new()), "{log}");
    let calls = h.fake.take_calls().join("\n");
    assert!(calls.contains("route add 172.30.0.6/32 dev scwpub0"), "{calls}");
    assert!(
        !calls.contains("172.30.0.2/") && !calls.contains("172.30.0.4/"),
        "{calls}"
    );
    assert_eq!(h.record().len(), 3);
    // detach_nic: clean, NIC 3 still ATTACH=YES.
    let (r, log) = h.clean(&fixture_vm("vnm/nic_detach-scaleway-clean.xml"));
    assert_eq!(r, Ok(String::new()), "{log}");
    let calls = h.fake.take_calls().join("\n");
    assert!(calls.contains("route del 172.30.0.6/32 dev scwpub0"), "{calls}");
    assert!(
        !calls.contains("172.30.0.2/") && !calls.contains("172.30.0.4/"),
        "{calls}"
    );
    let record = h.record();
    assert_eq!(record.len(), 2, "{record:?}");
    assert!(
        record[0].starts_with("VM 7 NIC 0:") && record[1].starts_with("VM 7 NIC_ALIAS 2"),
        "{record:?}"
    );
    // Detaching another driver's NIC touches none of ours.
    let evpn = fixture("vnm/deploy-scaleway-pre.xml").replace(
        "<VN_MAD><![CDATA[scaleway_evpn]]></VN_MAD>",
        "<VN_MAD><![CDATA[scaleway_evpn]]></VN_MAD><ATTACH>YES</ATTACH>",
    );
    assert!(evpn.contains("<ATTACH>YES</ATTACH>"));
    let (r, _) = h.clean(&parse_vm(&evpn));
    assert_eq!(r, Ok(String::new()));
    assert!(h.fake.take_calls().is_empty());
    assert_eq!(h.record().len(), 2);
}

#[test]
fn migration_moves_the_state_between_hosts() {
    let (a, b) = (Hyper::new(), Hyper::new());
    // Migration: pre on the destination first, then clean on the source
    // (oned's documents name the destination in both).
    a.pre(&fixture_vm("vnm/deploy-scaleway-pre.xml")).0.unwrap();
    b.pre(&fixture_vm("vnm/migrate-scaleway-pre.xml")).0.unwrap();
    a.clean(&fixture_vm("vnm/migrate-scaleway-clean.xml")).0.unwrap();
    let ka = a.fake.kernel();
    assert!(ka.routes.is_empty() && ka.proxies.is_empty() && ka.nat.maps["dnat_map"].elements.is_empty());
    assert!(ka.links.is_empty(), "the source's bridge goes with its last NIC");
    assert_eq!(b.fake.kernel().nat.maps["dnat_map"].elements.len(), 2);
    assert_eq!(b.record().len(), 2);
    assert!(a.record().is_empty());
}

#[test]
fn reconcile_puts_everything_back_after_a_reboot() {
    let h = Hyper::new();
    h.pre(&vm(1, &[(0, 1), (1, 2)])).0.unwrap();
    h.pre(&fixture_vm("vnm/ipv6-scaleway-pre.xml")).0.unwrap();
    let running = h.fake.kernel();
    let (r, _) = h.reconcile();
    assert_eq!(r.unwrap(), "reconciled 4 public NICs of 2 VMs: already in place\n");
    h.fake.reboot();
    h.fake.take_calls();
    let (r, log) = h.reconcile();
    assert!(r.unwrap().starts_with("reconciled 4 public NICs of 2 VMs: "), "{log}");
    assert_eq!(h.fake.kernel(), running);
    let nft: Vec<String> = h
        .fake
        .take_calls()
        .into_iter()
        .filter(|c| c.starts_with("nft -f"))
        .collect();
    assert_eq!(nft.len(), 1, "one transaction: {nft:?}");
}

#[test]
fn reconcile_with_nothing_recorded() {
    let h = Hyper::new();
    let (r, _) = h.reconcile();
    assert_eq!(r.unwrap(), "reconciled 0 public NICs: nothing recorded\n");
    assert!(h.fake.take_calls().is_empty());
}

#[test]
fn a_vm_that_lost_a_nic_while_away_is_tidied_by_its_next_pre() {
    let h = Hyper::new();
    h.pre(&vm(1, &[(0, 1), (1, 2)])).0.unwrap();
    // The VM comes back (resume) without NIC 1.
    let (r, log) = h.pre(&vm(1, &[(0, 1)]));
    assert_eq!(r, Ok(String::new()), "{log}");
    assert!(log.contains("VM 1: removed what it no longer has: VM 1 NIC 1"), "{log}");
    let k = h.fake.kernel();
    assert_eq!(k.nat.maps["dnat_map"].elements.len(), 1);
    assert_eq!(k.routes.len(), 1);
    assert_eq!(h.record().len(), 1);
}

#[test]
fn a_re_addressed_nic_keeps_its_flexible_ip() {
    let h = Hyper::new();
    h.pre(&vm(1, &[(0, 1)])).0.unwrap();
    // NIC 0 now has another private block, with the same flexible IP.
    let moved = parse_vm(
        "<VM><ID>1</ID><TEMPLATE><NIC><NIC_ID>0</NIC_ID><VN_MAD>scaleway</VN_MAD><BRIDGE>scwpub0</BRIDGE>\
         <TARGET>one-1-0</TARGET><MAC>02:00:00:00:01:00</MAC><IP>172.30.0.40</IP><GATEWAY>172.30.0.41</GATEWAY><EXTERNAL_IP>198.51.100.1</EXTERNAL_IP></NIC></TEMPLATE></VM>",
    );
    let (r, log) = h.pre(&moved);
    assert_eq!(r, Ok(String::new()), "{log}");
    let k = h.fake.kernel();
    let ext = "198.51.100.1".parse().unwrap();
    assert_eq!(k.nat.get("dnat_map", ext), Some("172.30.0.40".parse().unwrap()));
    assert_eq!(k.nat.maps["snat_map"].elements.len(), 1);
    let routes: Vec<String> = k.routes.iter().map(|r| r.dst.to_string()).collect();
    assert_eq!(routes, ["172.30.0.40"]);
    assert_eq!(
        h.record(),
        ["VM 1 NIC 0: 198.51.100.1 <-> 172.30.0.40 (gateway 172.30.0.41) on scwpub0"]
    );
}

#[test]
fn an_address_range_leased_again_moves_to_its_new_vm() {
    let h = Hyper::new();
    h.pre(&vm(1, &[(0, 1)])).0.unwrap();
    // VM 1 went away without a clean here; VM 2 gets the same lease.
    let (r, log) = h.pre(&vm(2, &[(0, 1)]));
    assert_eq!(r, Ok(String::new()), "{log}");
    assert!(
        log.contains("was recorded for VM 1 NIC 0, which never cleaned it up on this host"),
        "{log}"
    );
    assert_eq!(
        h.record(),
        ["VM 2 NIC 0: 198.51.100.1 <-> 172.30.0.4 (gateway 172.30.0.5) on scwpub0"]
    );
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let mut h = Hyper::new();
    h.settings.dry_run = true;
    let (r, _) = h.pre(&vm(1, &[(0, 1)]));
    let text = r.unwrap();
    assert!(text.contains("route add 172.30.0.4/32 dev scwpub0"), "{text}");
    assert!(
        text.contains("add element ip one_scaleway dnat_map { 198.51.100.1 : 172.30.0.4 }"),
        "{text}"
    );
    assert_eq!(h.fake.kernel(), public_plan::Observed::default());
    assert!(h.record_files().is_empty());
}

#[test]
fn a_failed_step_leaves_nothing_half_done_and_no_record() {
    let h = Hyper::new();
    h.fake
        .fail_next("nft", "Error: Could not process rule: No buffer space available");
    let (r, _) = h.pre(&vm(1, &[(0, 1)]));
    let e = r.unwrap_err();
    assert!(
        e.contains("No buffer space available") && e.contains("were undone"),
        "{e}"
    );
    let k = h.fake.kernel();
    assert!(
        k.links.is_empty() && k.routes.is_empty() && k.proxies.is_empty(),
        "{k:?}"
    );
    assert!(h.record_files().is_empty());
    h.pre(&vm(1, &[(0, 1)])).0.unwrap();
    assert_eq!(h.record().len(), 1);
}

#[test]
fn invalid_nics_are_refused_before_anything() {
    let h = Hyper::new();
    let bad = parse_vm(
        "<VM><ID>3</ID><TEMPLATE><NIC><NIC_ID>0</NIC_ID><VN_MAD>scaleway</VN_MAD><BRIDGE>scwpub0</BRIDGE>\
         <TARGET>one-3-0</TARGET><MAC>02:00:00:00:03:00</MAC><IP>172.30.0.4</IP><GATEWAY>172.30.0.5</GATEWAY></NIC></TEMPLATE></VM>",
    );
    let (r, _) = h.pre(&bad);
    assert!(
        r.unwrap_err()
            .contains("VM/TEMPLATE/NIC[NIC_ID=0]/EXTERNAL_IP is missing")
    );
    assert!(h.fake.calls().is_empty());
    assert!(!h.settings.lock.exists(), "refused before taking the lock");
    // clean still removes what the record holds for the VM.
    h.pre(&vm(3, &[(0, 1)])).0.unwrap();
    let (r, log) = h.clean(&bad);
    assert_eq!(r, Ok(String::new()), "{log}");
    assert!(log.contains("removing what the host record holds for the VM"), "{log}");
    assert!(h.fake.kernel().routes.is_empty());
}

#[test]
fn settings_come_from_the_environment() {
    use opennebula::driver::Env;
    let s = Settings::from_env(&Env::default()).unwrap();
    assert_eq!(s.record, PathBuf::from("/var/lib/one/scaleway/vnm-public.json"));
    assert_eq!(s.lock, PathBuf::from("/var/lib/one/scaleway/vnm.lock"));
    assert!(!s.dry_run);
    let s = Settings::from_env(&Env::from_pairs([
        ("ONE_SCALEWAY_STATE_DIR", "/tmp/x"),
        ("ONE_SCALEWAY_HOST_LOCK", "/tmp/x.lock"),
        ("ONE_SCALEWAY_DRY_RUN", "yes"),
    ]))
    .unwrap();
    assert_eq!(
        (s.record, s.lock, s.dry_run),
        (
            PathBuf::from("/tmp/x/vnm-public.json"),
            PathBuf::from("/tmp/x.lock"),
            true
        )
    );
    assert!(Settings::from_env(&Env::from_pairs([("ONE_SCALEWAY_DRY_RUN", "perhaps")])).is_err());
}

/// A host record of an earlier version (one file of every endpoint) is
/// moved into the record's folder by the next action that changes
/// something: its VMs are still known (a conflict with one is refused), and
/// the file is gone.
#[test]
fn the_single_record_file_of_an_earlier_version_is_moved_in() {
    let h = Hyper::new();
    h.pre(&vm(1, &[(0, 1)])).0.unwrap();
    let earlier = r#"{"version":1,"bridges":["scwpub0"],"endpoints":[{"vm":1,"nic_id":0,"bridge":"scwpub0","ip":"172.30.0.4","gateway":"172.30.0.5","external_ip":"198.51.100.1","port":"one-1-0","mac":"02:00:00:00:01:00"}]}"#;
    let folder = public_apply::record::RecordFile::new(h.record_path()).path().to_owned();
    std::fs::remove_dir_all(&folder).unwrap();
    std::fs::write(h.record_path(), earlier).unwrap();
    // A VM handed VM 1's flexible IP: refused, naming VM 1; nothing moved.
    let (r, _) = h.pre(&parse_vm(
        "<VM><ID>2</ID><TEMPLATE><NIC><NIC_ID>0</NIC_ID><VN_MAD>scaleway</VN_MAD><BRIDGE>scwpub0</BRIDGE>\
         <TARGET>one-2-0</TARGET><MAC>02:00:00:00:02:00</MAC><IP>172.30.0.8</IP><GATEWAY>172.30.0.9</GATEWAY><EXTERNAL_IP>198.51.100.1</EXTERNAL_IP></NIC></TEMPLATE></VM>",
    ));
    assert!(r.unwrap_err().contains("(VM 1 NIC 0)"));
    assert!(h.record_path().exists() && !folder.exists());
    h.pre(&vm(3, &[(0, 3)])).0.unwrap();
    assert!(!h.record_path().exists());
    assert_eq!(h.record().len(), 2);
    assert!(folder.join("index").exists() && folder.join("host.json").exists());
}
