//! A 3-host edge cluster's whole life against the emulator and the oned
//! stand-in (which runs the real IPAM driver for the public ranges):
//! create, create again, host add, host delete, ip add, ip delete, delete,
//! asserting Scaleway's resources, OpenNebula's objects and what each host
//! was given after every step, and nothing left at the end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{Bed, check_cluster, path_of};

#[test]
fn a_three_host_cluster_from_create_to_delete() {
    let bed = Bed::new("lifecycle");
    let file = bed.description("edge", 3, 2);
    let out = bed.ok(&["create", path_of(&file)]);
    assert!(out.contains("provision edge ("), "{out}");
    check_cluster(&bed, "edge", true, 3, 2);
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
        .oned
        .datastores()
        .into_iter()
        .find(|d| d.name == "edge-system")
        .unwrap();
    let replica = system
        .template
        .attributes
        .iter()
        .rev()
        .find(|(n, _)| n == "REPLICA_HOST")
        .map(|(_, v)| v.clone());
    assert_eq!(
        replica,
        Some(opennebula::template::Value::Single(
            s.hosts[0].public_ip.unwrap().to_string()
        )),
        "{system:#?}"
    );
    assert_ne!(s.hosts[0].name, first.name);
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
    let vnet = bed.oned.vnets().into_iter().find(|v| v.name == "edge-public").unwrap();
    let gone = vnet.ars[0].clone();
    bed.ok(&["ip", "delete", "edge", &gone.id.to_string()]);
    check_cluster(&bed, "edge", true, 2, 3);
    assert!(
        bed.resources("flexible_ips")
            .iter()
            .all(|f| f["ip_address"].as_str() != Some(gone.attrs["EXTERNAL_IP"].as_str())),
        "its flexible IP was released"
    );

    let shown = bed.ok(&["show", "edge"]);
    assert!(shown.contains("edge-host4") && shown.contains("flexible IP"), "{shown}");
    let listed = bed.ok(&["list"]);
    assert!(
        listed.starts_with("edge  p") && listed.contains("ready  2 host(s)"),
        "{listed}"
    );

    // delete refuses while a VM runs, unless forced
    let host_id = bed.record("edge").unwrap().hosts[0].one_id.unwrap();
    bed.oned.set_host_vms(host_id, &[42]).unwrap();
    let (code, _, err) = bed.run(&["delete", "edge"]);
    assert_eq!(code, 1);
    assert!(err.contains("runs VM(s) 42"), "{err}");
    bed.oned.set_host_vms(host_id, &[]).unwrap();

    let out = bed.ok(&["delete", "edge"]);
    assert!(out.contains("nothing tagged with it is left"), "{out}");
    let state = bed.emu.state();
    assert_eq!(state["empty"], true, "{:#}", state["counts"]);
    assert!(bed.oned.hosts().is_empty());
    assert!(bed.oned.vnets().is_empty());
    assert!(bed.oned.vntemplates().is_empty());
    assert!(bed.oned.clusters().iter().all(|c| c.name != "edge"));
    assert!(bed.oned.datastores().iter().all(|d| !d.name.starts_with("edge-")));
    assert!(bed.record("edge").is_none());
    // Deleting what is gone is done.
    bed.ok(&["delete", "edge"]);
}

/// A network oned puts in ERROR (its driver's `vnet_create` failed) stops
/// `create` with what to do, instead of adding ranges to a broken network.
#[test]
fn a_network_in_error_stops_create_and_says_what_to_do() {
    let vnm = test_support::TempDir::new("vnm-failing");
    for driver in ["scaleway", "scaleway_evpn"] {
        std::fs::create_dir_all(vnm.path().join(driver)).unwrap();
        std::os::unix::fs::symlink("/bin/false", vnm.path().join(driver).join("vnet_create")).unwrap();
    }
    let bed = Bed::with_vnm("vnet-error", vnm.path().to_path_buf());
    let file = bed.description("edge", 1, 1);
    let (code, _, err) = bed.run(&["create", path_of(&file)]);
    assert_ne!(code, 0);
    assert!(
        err.contains("is in state 5 (5 = ERROR") && err.contains("onevnet delete"),
        "{err}"
    );
    assert!(
        bed.oned.vnets().iter().all(|v| v.ars.is_empty()),
        "no range was added to the broken network"
    );
}
