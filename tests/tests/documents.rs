//! Golden tests: each fixture, decoded as a driver would decode it, gives
//! the typed values recorded in `tests/golden/documents/`. VM fixtures are
//! read both whole (as `update_nic` gets them) and reduced (as `pre`,
//! `post` and `clean` get them); both must give the same NICs and host.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::fmt::Write as _;

use integration_tests::{assert_golden, encode, fixture, fixtures_in, reduce_for_vnm};
use opennebula::ipam::IpamRequest;
use opennebula::message::{read_ipam_request, read_vm};
use opennebula::vm::{Nic, Vm};

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string)
}

fn summarize_nic(out: &mut String, nic: &Nic) {
    let _ = writeln!(
        out,
        "  {} {} kind={:?} network={}({}) ar={} bridge={} target={} mac={} ip={} ip6={} ip6_global={} ip6_ula={} \
         gateway={} gateway6={} mask={} external_ip={} vlan_id={} guest_mtu={} attach={} scaleway_ip_id={} zone={}",
        if nic.is_alias() { "NIC_ALIAS" } else { "NIC" },
        nic.nic_id,
        nic.kind,
        opt(&nic.network),
        opt(&nic.network_id),
        opt(&nic.ar_id),
        opt(&nic.bridge),
        opt(&nic.target),
        opt(&nic.mac),
        opt(&nic.ip),
        opt(&nic.ip6),
        opt(&nic.ip6_global),
        opt(&nic.ip6_ula),
        opt(&nic.gateway),
        opt(&nic.gateway6),
        opt(&nic.network_mask),
        opt(&nic.external_ip),
        opt(&nic.vlan_id),
        opt(&nic.guest_mtu),
        nic.attach,
        opt(&nic.scaleway_ip_id),
        opt(&nic.scaleway_zone),
    );
}

fn summarize_vm(vm: &Vm) -> String {
    let mut out = String::new();
    let host = vm.current_host().expect("a host");
    let _ = writeln!(
        out,
        "VM {} deploy_id={} host={} (hid {})",
        vm.id,
        opt(&vm.deploy_id),
        host.hostname,
        host.hid
    );
    for driver in ["scaleway", "scaleway_evpn"] {
        let nics = vm.nics_of(driver).expect("valid NICs");
        let _ = writeln!(out, "{driver}: {} NICs", nics.len());
        for nic in &nics {
            summarize_nic(&mut out, nic);
        }
    }
    let context = vm.context.as_ref().map_or(0, |c| c.len());
    let _ = writeln!(
        out,
        "context: {context} attributes; security group rules: {}",
        vm.security_group_rules.len()
    );
    // The rules each public NIC gets, as the driver reads them.
    if let Ok(selection) = public_plan::select(vm) {
        for f in &selection.filters {
            for r in &f.rules {
                let _ = writeln!(out, "  NIC {} rule: {r:?}", f.nic_id);
            }
        }
    }
    out
}

fn summarize_ipam(r: &IpamRequest) -> String {
    let mut out = String::new();
    let ar = &r.ar;
    let _ = writeln!(
        out,
        "AR id={} type={} ip={} mac={} size={} ipam_mad={}",
        opt(&ar.ar_id),
        opt(&ar.ar_type),
        opt(&ar.ip),
        opt(&ar.mac),
        opt(&ar.size),
        opt(&ar.ipam_mad)
    );
    for (name, value) in ar.attrs.iter() {
        let _ = writeln!(out, "  {name} = {value:?}");
    }
    match &r.address {
        None => out.push_str("no ADDRESS\n"),
        Some(a) if a.is_empty() => out.push_str("ADDRESS (empty)\n"),
        Some(a) => {
            let _ = writeln!(
                out,
                "ADDRESS ip={} mac={} ip6={} size={}",
                opt(&a.ip),
                opt(&a.mac),
                opt(&a.ip6),
                opt(&a.size)
            );
        }
    }
    out
}

#[test]
fn ipam_requests_decode_to_golden_values() {
    for name in fixtures_in("ipam") {
        let request =
            read_ipam_request(&mut encode(&fixture(&name)).as_slice()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_golden(
            &format!("documents/{}.txt", name.replace('/', "-")),
            &summarize_ipam(&request),
        );
    }
}

#[test]
fn vm_documents_decode_to_golden_values_whole_and_reduced() {
    for name in fixtures_in("vm") {
        let full_text = fixture(&name);
        let full = read_vm(&mut encode(&full_text).as_slice()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let reduced = read_vm(&mut encode(&reduce_for_vnm(&full_text)).as_slice())
            .unwrap_or_else(|e| panic!("{name} reduced: {e}"));
        let summary = summarize_vm(&full);
        assert_eq!(
            summary,
            summarize_vm(&reduced),
            "{name}: the reduced document must read the same"
        );
        assert_golden(&format!("documents/{}.txt", name.replace('/', "-")), &summary);
    }
}

/// The documents a real oned's VM driver sent our network drivers
/// (`tests/fixtures/vnm/`, captured by `real_oned_vm.rs`): every one reads,
/// to the values kept in `tests/golden/documents/vnm-*.txt`.
#[test]
fn documents_captured_from_a_real_oned_decode_to_golden_values() {
    let names = fixtures_in("vnm");
    assert!(names.len() >= 18, "{names:?}");
    for name in names.iter().filter(|n| !n.contains("vnet_")) {
        let vm = read_vm(&mut encode(&fixture(name)).as_slice()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_golden(&format!("documents/{}.txt", name.replace('/', "-")), &summarize_vm(&vm));
    }
    // During a live migration every action's document names the
    // destination (the last history record), clean's included: the host
    // being cleaned (the source) comes only as clean's argument.
    for action in ["pre", "post", "clean"] {
        let vm = read_vm(&mut encode(&fixture(&format!("vnm/migrate-scaleway-{action}.xml"))).as_slice()).unwrap();
        assert_eq!(
            vm.require_current_host().unwrap().hostname.as_str(),
            "host-b",
            "{action}"
        );
    }
}

/// What the public driver's host side reads from a NIC (BRIDGE, IP,
/// GATEWAY, EXTERNAL_IP) reaches it from a real oned: GATEWAY and
/// EXTERNAL_IP through the stock INHERIT_VNET_ATTR (NETWORK_MASK and the
/// SCALEWAY_* attributes do not, and the driver does not need them).
#[test]
fn the_public_nic_of_a_real_document_plans() {
    for name in ["vnm/deploy-scaleway-pre.xml", "vnm/migrate-scaleway-pre.xml"] {
        let vm = read_vm(&mut encode(&fixture(name)).as_slice()).unwrap();
        let selected = public_plan::endpoint::select(&vm).unwrap_or_else(|e| panic!("{name}: {e}"));
        let shown: Vec<String> = selected.endpoints.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "VM 7 NIC 0: 62.210.16.2 <-> 172.30.0.2 (gateway 172.30.0.3) on scwpub0",
                "VM 7 NIC_ALIAS 2 (alias 0 of NIC 0): 62.210.16.3 <-> 172.30.0.4 (gateway 172.30.0.5) on scwpub0"
            ],
            "{name}"
        );
    }
    // A hot-attach touches the attached NIC only.
    let vm = read_vm(&mut encode(&fixture("vnm/nic_attach-scaleway-pre.xml")).as_slice()).unwrap();
    let shown: Vec<String> = public_plan::endpoint::select(&vm)
        .unwrap()
        .endpoints
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        shown,
        ["VM 7 NIC 3: 62.210.16.4 <-> 172.30.0.6 (gateway 172.30.0.7) on scwpub0"]
    );
}

/// oned gives a network of a custom VN_MAD no VLAN_ID (captured: the
/// private network instantiated from a template without one): the EVPN
/// driver's VNI is 1000000 + the network id.
#[test]
fn a_private_network_without_vlan_id_gets_its_vni_from_its_id() {
    let vm = read_vm(&mut encode(&fixture("vnm/deploy-scaleway_evpn-pre.xml")).as_slice()).unwrap();
    let nic = &vm.nics_of("scaleway_evpn").unwrap()[0];
    assert_eq!(nic.vlan_id, None, "oned sent no VLAN_ID");
    let selected = private_plan::segment::select(&vm).unwrap();
    assert_eq!(selected.requests[0].vni.get(), 1_000_000 + nic.network_id.unwrap());
}

#[test]
fn migration_targets_the_destination() {
    let full = read_vm(&mut encode(&fixture("vm/migrate.xml")).as_slice()).unwrap();
    assert_eq!(full.current_host().unwrap().hostname.as_str(), "host-b");
    let reduced = read_vm(&mut encode(&fixture("vnm/migrate-scaleway-pre.xml")).as_slice()).unwrap();
    assert_eq!(reduced.current_host().unwrap().hostname.as_str(), "host-b");
    assert_eq!(reduced.current_host().unwrap().hid, 1);
}

/// Hot attach: exactly the attached NIC carries ATTACH=YES.
#[test]
fn hot_attach_marks_one_nic() {
    let vm = read_vm(&mut encode(&fixture("vnm/nic_attach-scaleway-pre.xml")).as_slice()).unwrap();
    let attached: Vec<u32> = vm
        .nics_of("scaleway")
        .unwrap()
        .iter()
        .filter(|n| n.attach)
        .map(|n| n.nic_id)
        .collect();
    assert_eq!(attached, vec![3]);
}

/// Values with XML specials and multi-line scripts survive decoding.
#[test]
fn free_text_survives() {
    let vm = read_vm(&mut encode(&fixture("vm/deploy.xml")).as_slice()).unwrap();
    assert_eq!(vm.user_attribute("DESCRIPTION"), Some("web front, \"prod\" & <edge>"));
    let script = vm.context.as_ref().unwrap().get("START_SCRIPT").unwrap();
    assert_eq!(script, "#!/bin/sh\necho \"hello from the edge\" > /etc/motd\n");
}
