//! A 3-host edge cluster's whole life against the emulator and a real oned
//! (whose `one_ipam` runs our IPAM driver for the public ranges):
//! create, create again, host add, host delete, ip add, ip delete, delete,
//! asserting Scaleway's resources, OpenNebula's objects and what each host
//! was given after every step, and nothing left at the end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{Bed, check_cluster, path_of, text};

#[test]
#[ignore = "privileged: runs a real oned as oneadmin (sudo .ci/run)"]
fn a_three_host_cluster_from_create_to_delete() {
    let bed = Bed::new("lifecycle");
    let file = bed.description("edge", 3, 2);
    let out = bed.ok(&["create", path_of(&file)]);
    assert!(out.contains("provision edge ("), "{out}");
    check_cluster(&bed, "edge", true, 3, 2);
    // A host as scaleway-provision registers it, as oned shows it: the
    // fixture of the unit tests that read hosts (UPDATE_FIXTURES=1).
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        let id = bed.record("edge").unwrap().hosts[0].one_id.unwrap();
        let host = bed.oned.info_text("host", u32::try_from(id).unwrap());
        std::fs::write(test_support::fixture_path("host/host.xml"), host).unwrap();
    }
    // The full bootstrap ran on every host: packages, keys, services, firewall, EVPN.
    let s = bed.record("edge").unwrap();
    for h in &s.hosts {
        let host = bed.hosts.host(h.public_ip.unwrap());
        let ran: Vec<String> = host.commands.iter().map(|c| c.join(" ")).collect();
        for expected in [
            "apt-get install",
            "visudo -c -q -f /etc/sudoers.d/one-scaleway.new",
            "systemctl enable --now frr.service",
            "nft -f /dev/stdin",
            "evpn-config -",
        ] {
            assert!(ran.iter().any(|c| c.contains(expected)), "{expected} not in {ran:#?}");
        }
        let keys = String::from_utf8(host.files["/var/lib/one/.ssh/authorized_keys"].clone()).unwrap();
        assert!(keys.starts_with("ssh-ed25519 AAAAC3"), "{keys}");
        let netplan = String::from_utf8(host.files["/etc/netplan/60-one-scaleway.yaml"].clone()).unwrap();
        assert!(netplan.contains("link: eno1"), "{netplan}");
        assert!(netplan.contains(&format!("id: {}", h.vlan.unwrap())), "{netplan}");
        let fw = host.commands.iter().position(|c| c.join(" ") == "nft -f /dev/stdin");
        assert!(fw.is_some());
    }

    // Again: nothing new anywhere.
    let calls_before = bed.emu.calls().len();
    let out = bed.ok(&["create", path_of(&file)]);
    assert!(out.contains("already exists"), "{out}");
    check_cluster(&bed, "edge", true, 3, 2);
    assert!(
        bed.emu.calls()[calls_before..].iter().all(|c| c["method"] == "GET"),
        "a second create changes nothing"
    );

    // host add 1: a fourth server; every host learns about it.
    bed.ok(&["host", "add", "edge", "1"]);
    check_cluster(&bed, "edge", true, 4, 2);
    let s = bed.record("edge").unwrap();
    assert_eq!(s.hosts.last().unwrap().name, "edge-host4");

    // host delete: by name, the first host: the next one keeps the system datastore's replica.
    let first = s.hosts[0].clone();
    bed.ok(&["host", "delete", "edge", "edge-host1"]);
    check_cluster(&bed, "edge", true, 3, 2);
    let s = bed.record("edge").unwrap();
    let system = bed
        .datastores()
        .into_iter()
        .find(|d| text(d, "NAME") == "edge-system")
        .unwrap();
    let replica = system
        .at("TEMPLATE")
        .and_then(|t| t.children_named("REPLICA_HOST").last())
        .map(|r| r.text.clone());
    assert_eq!(
        replica,
        Some(s.hosts[0].public_ip.unwrap().to_string()),
        "{}",
        system.to_xml()
    );
    assert_ne!(s.hosts[0].name, first.name);
    assert_eq!(
        *bed.hosts.forgotten.lock().unwrap(),
        [first.public_ip.unwrap()],
        "the deleted host's SSH key is forgotten"
    );
    // host delete: by OpenNebula id; the server is really deleted; the others forget it.
    let victim = s.hosts[0].clone();
    let out = bed.ok(&["host", "delete", "edge", &victim.one_id.unwrap().to_string()]);
    assert!(out.contains("edge-host2"), "{out}");
    check_cluster(&bed, "edge", true, 2, 2);
    assert!(
        bed.resources("servers")
            .iter()
            .all(|x| x["id"].as_str() != victim.server_id.as_deref()),
        "the server is gone"
    );

    // ip add / ip delete
    bed.ok(&["ip", "add", "edge", "2"]);
    check_cluster(&bed, "edge", true, 2, 4);
    let (_, ars) = bed.vnet_named("edge-public").unwrap();
    let gone = ars[0].clone();
    bed.ok(&["ip", "delete", "edge", &gone["AR_ID"]]);
    check_cluster(&bed, "edge", true, 2, 3);
    assert!(
        bed.resources("flexible_ips")
            .iter()
            .all(|f| f["ip_address"].as_str() != Some(gone["EXTERNAL_IP"].as_str())),
        "its flexible IP was released"
    );

    let shown = bed.ok(&["show", "edge"]);
    assert!(shown.contains("edge-host4") && shown.contains("flexible IP"), "{shown}");
    let listed = bed.ok(&["list"]);
    assert!(
        listed.starts_with("edge  p") && listed.contains("ready  fr-par-1  2 host(s)"),
        "{listed}"
    );

    // delete refuses while a VM runs (deployed by oned on a host of the cluster)
    let host_id = bed.record("edge").unwrap().hosts[0].one_id.unwrap();
    let (vm, ds) = bed.run_vm("edge", host_id);
    let (code, _, err) = bed.run(&["delete", "edge"]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("runs VM(s) {vm}")), "{err}");
    bed.terminate_vm(vm, ds);

    let out = bed.ok(&["delete", "edge"]);
    assert!(out.contains("nothing tagged with it is left"), "{out}");
    let state = bed.emu.state();
    assert_eq!(state["empty"], true, "{:#}", state["counts"]);
    assert!(bed.hosts().is_empty());
    assert!(bed.vnets().is_empty());
    assert!(bed.vntemplates().is_empty());
    assert!(bed.clusters().iter().all(|c| text(c, "NAME") != "edge"));
    assert!(bed.datastores().iter().all(|d| !text(d, "NAME").starts_with("edge-")));
    assert!(bed.record("edge").is_none());
    // Deleting what is gone is done.
    bed.ok(&["delete", "edge"]);
}

/// A network oned puts in ERROR (its driver's `vnet_create` failed) stops
/// `create` with what to do, instead of adding ranges to a broken network.
#[test]
#[ignore = "privileged: runs a real oned as oneadmin (sudo .ci/run)"]
fn a_network_in_error_stops_create_and_says_what_to_do() {
    let bed = Bed::new("vnet-error");
    bed.fail_vnet_create();
    let file = bed.description("edge", 1, 1);
    let (code, _, err) = bed.run(&["create", path_of(&file)]);
    assert_ne!(code, 0);
    assert!(
        err.contains("is in state 5 (5 = ERROR") && err.contains("onevnet delete"),
        "{err}"
    );
    assert!(
        bed.vnets()
            .iter()
            .all(|v| v.at("AR_POOL").is_none_or(|p| p.children_named("AR").count() == 0)),
        "no range was added to the broken network"
    );
}
