//! What a real oned's VM driver (`one_vmm_exec`) sends our network drivers:
//! a VM with a public (`scaleway`) and a private (`scaleway_evpn`) NIC is
//! deployed, gets a NIC hot-attached and detached, is live-migrated and
//! terminated, through OpenNebula's CLI. The hosts are this machine and the
//! network actions are only recorded (this test changes no networking: the
//! sandbox runs them for real); every recorded document must read with our
//! parser, and `UPDATE_FIXTURES=1` keeps them as `tests/fixtures/vnm/`.
//!
//! Privileged (oneadmin, the build): run by `sudo .ci/run`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::BTreeMap;
use std::time::Duration;

use integration_tests::edge::*;
use opennebula::vm::Vm;
use opennebula::xml;
use test_support::oned::RealOned;
use test_support::{fixture_path, require_root};

/// `onevm recover --delete` while a live migration runs: oned's cleanup
/// runs `clean` twice, on both hosts' streams, with the same argument and
/// document; a frontend action cannot tell the source host from them.
#[test]
#[ignore = "privileged: runs a real oned as oneadmin (sudo .ci/run)"]
fn a_delete_during_a_migration() {
    require_root();
    let oned = start();
    let (h1, h2, ds) = hosts_and_datastore(&oned);
    let net = oned.create(
        "onevnet",
        &[],
        "NAME = \"private\"\nVN_MAD = \"scaleway_evpn\"\nPHYDEV = \"scwpriv0\"\n\
         AR = [ TYPE = \"IP4\", IP = \"10.200.0.10\", SIZE = \"20\" ]\n",
    );
    oned.wait_vnet_ready(net);
    let vm = oned.create(
        "onevm",
        &["--hold"],
        &format!("NAME = \"web\"\nCPU = \"0.1\"\nMEMORY = \"64\"\nNIC = [ NETWORK_ID = \"{net}\" ]\n"),
    );
    let vm_s = vm.to_string();
    oned.cli_ok("onevm", &["deploy", &vm_s, &h1.to_string(), &ds.to_string()]);
    wait_vm(&oned, vm, "deploy", running(1, "host-a"));
    let hold = oned.location.join("var/hold-migrate");
    std::fs::write(&hold, "").unwrap();
    oned.cli_ok("onevm", &["migrate", "--live", &vm_s, &h2.to_string()]);
    wait_vm(&oned, vm, "the migration to start", |vm| value(vm, "LCM_STATE") == "4");
    let before = oned.records().len();
    oned.cli_ok("onevm", &["recover", "--delete", &vm_s]);
    std::fs::remove_file(&hold).unwrap();
    wait_vm(&oned, vm, "the delete", |vm| value(vm, "STATE") == "6");
    // The VM is DONE before oned's cleanup has run: wait for both cleans.
    wait_cleans(&oned, before, 2);
    std::thread::sleep(Duration::from_secs(1));
    let cleans: Vec<(String, Vec<String>, String)> = oned.records()[before..]
        .iter()
        .filter(|r| r.call.ends_with("-clean"))
        .map(|r| {
            let doc = document(r);
            let read = Vm::from_element(&xml::parse(doc.as_bytes()).unwrap()).unwrap();
            (
                r.call.clone(),
                r.args.clone(),
                read.require_current_host().unwrap().hostname.to_string(),
            )
        })
        .collect();
    assert_eq!(
        cleans,
        [
            (
                "vnm-scaleway_evpn-clean".to_owned(),
                vec!["host-b".to_owned()],
                "host-b".to_owned()
            ),
            (
                "vnm-scaleway_evpn-clean".to_owned(),
                vec!["host-b".to_owned()],
                "host-b".to_owned()
            ),
        ],
        "what oned's cleanup sends during a migration"
    );
}

/// An edge cluster as `scaleway-provision` makes one, in cluster `edge`:
/// hosts `host-a` and `host-b` of the test hypervisor, a system datastore
/// without transfers, the public network (three flexible IPs registered by
/// our IPAM driver), a public IPv6 network (one flexible /64), and the
/// private network template instantiated by a user without a `VLAN_ID`.
#[test]
#[ignore = "privileged: runs a real oned as oneadmin (sudo .ci/run)"]
fn network_drivers_under_a_real_vm_driver() {
    require_root();
    let emu = integration_tests::real::emulator();
    let oned = start();
    integration_tests::real::scaleway_credentials(&oned, &emu);
    let edge = edge_cluster(&oned);
    let (public, private) = (edge.public, edge.private);
    skip_vm_ids(&oned, 7);
    // A public NIC, a private NIC and a public alias of the first NIC.
    let vm = oned.create(
        "onevm",
        &["--hold"],
        &format!(
            "NAME = \"web\"\n{VM_EXTRAS}\
             NIC = [ NETWORK_ID = \"{public}\", NAME = \"public\" ]\nNIC = [ NETWORK_ID = \"{private}\" ]\n\
             NIC_ALIAS = [ NETWORK_ID = \"{public}\", PARENT = \"public\" ]\n"
        ),
    );
    let [h1, h2] = edge.hosts;
    let (vm_s, h1_s, h2_s, ds_s) = (vm.to_string(), h1.to_string(), h2.to_string(), edge.ds.to_string());
    let mut marks: Vec<(usize, &str)> = Vec::new();
    let mut mark = |oned: &RealOned, event: &'static str| marks.push((oned.records().len(), event));
    // Whole documents as oned answers `one.vm.info` and `one.vn.info`.
    let mut shown: BTreeMap<String, String> = BTreeMap::new();

    oned.cli_ok("onevm", &["deploy", &vm_s, &h1_s, &ds_s]);
    wait_vm(&oned, vm, "deploy", running(2, "host-a"));
    mark(&oned, "deploy");
    shown.insert("vm/deploy".into(), oned.info_text("vm", vm));
    shown.insert("vnet/public".into(), oned.info_text("vn", public));
    shown.insert("vnet/private".into(), oned.info_text("vn", private));
    oned.cli_ok("onevm", &["nic-attach", &vm_s, "--network", &public.to_string()]);
    wait_vm(&oned, vm, "nic-attach", running(3, "host-a"));
    mark(&oned, "nic_attach");
    let nics: Vec<String> = oned
        .show("onevm", vm)
        .at("TEMPLATE")
        .unwrap()
        .children_named("NIC")
        .map(|n| n.child("NIC_ID").map_or("", |i| i.text.as_str()).to_owned())
        .collect();
    oned.cli_ok("onevm", &["nic-detach", &vm_s, &nics[2]]);
    wait_vm(&oned, vm, "nic-detach", running(2, "host-a"));
    mark(&oned, "nic_detach");
    // The migration is held in the VM driver long enough to see the VM
    // document oned has during it.
    let hold = oned.location.join("var/hold-migrate");
    std::fs::write(&hold, "").unwrap();
    oned.cli_ok("onevm", &["migrate", "--live", &vm_s, &h2_s]);
    wait_vm(&oned, vm, "the migration to start", |vm| value(vm, "LCM_STATE") == "4");
    shown.insert("vm/migrate".into(), oned.info_text("vm", vm));
    std::fs::remove_file(&hold).unwrap();
    wait_vm(&oned, vm, "live migration", running(2, "host-b"));
    mark(&oned, "migrate");

    // An IPv6 public NIC with an IPv4 public alias.
    let vm6 = ipv6_vm(
        &oned,
        &edge,
        "web6",
        ", NAME = \"public\"",
        &format!("NIC_ALIAS = [ NETWORK_ID = \"{public}\", PARENT = \"public\" ]\n"),
    );
    let before6 = oned.records().len();
    oned.cli_ok("onevm", &["deploy", &vm6.to_string(), &h1_s, &ds_s]);
    wait_vm(&oned, vm6, "deploy", running(1, "host-a"));
    shown.insert("vm/ipv6".into(), oned.info_text("vm", vm6));
    let pre6 = oned.records()[before6..]
        .iter()
        .find(|r| r.call == "vnm-scaleway-pre")
        .map(document)
        .expect("scaleway pre of the IPv6 VM");
    oned.cli_ok("onevm", &["terminate", "--hard", &vm6.to_string()]);
    wait_vm(&oned, vm6, "terminate", |vm| value(vm, "STATE") == "6");
    wait_cleans(&oned, before6, 1);
    let after6 = oned.records().len();

    let after_migrate = oned.records().len();
    oned.cli_ok("onevm", &["terminate", "--hard", &vm_s]);
    wait_vm(&oned, vm, "terminate", |vm| value(vm, "STATE") == "6");
    // Both drivers' clean, however oned orders DONE and its cleanup.
    wait_cleans(&oned, after_migrate, 2);
    mark(&oned, "terminate");

    // Every network action oned ran, by event, with the documents it sent.
    let records = oned.records();
    let mut calls: Vec<String> = Vec::new();
    let mut fixtures: BTreeMap<String, String> = BTreeMap::new();
    let mut from = 0;
    for (to, event) in &marks {
        for (i, r) in records.iter().enumerate().take(*to).skip(from) {
            if (before6..after6).contains(&i) {
                continue; // the IPv6 VM's life
            }
            let Some(call) = r.call.strip_prefix("vnm-") else {
                continue;
            };
            let doc = document(r);
            if call.ends_with("vnet_create") || call.ends_with("vnet_delete") {
                // A VNET document (the network being created or deleted).
                let parsed = xml::parse(doc.as_bytes()).unwrap_or_else(|e| panic!("{call}: {e}\n{doc}"));
                assert_eq!(parsed.name, "VNET", "{call}");
                fixtures.entry(call.to_owned()).or_insert(doc);
                continue;
            }
            calls.push(format!("{event}: {call} {}", r.args.join(" ")));
            let parsed = xml::parse(doc.as_bytes()).unwrap_or_else(|e| panic!("{call}: {e}\n{doc}"));
            let read = Vm::from_element(&parsed).unwrap_or_else(|e| panic!("{event} {call}: {e}\n{doc}"));
            let host = read
                .require_current_host()
                .unwrap_or_else(|e| panic!("{event} {call}: {e}\n{doc}"));
            assert!(
                ["host-a", "host-b"].contains(&host.hostname.as_str()),
                "{event} {call}: {host:?}"
            );
            for driver in ["scaleway", "scaleway_evpn"] {
                read.nics_of(driver)
                    .unwrap_or_else(|e| panic!("{event} {call}: {e}\n{doc}"));
            }
            fixtures.entry(format!("{event}-{call}")).or_insert(doc);
        }
        from = *to;
    }
    // What oned ran, in order (frontend or host as vmm_execrc says; the
    // arguments are the deploy id and the host).
    let expected = [
        "deploy: scaleway-pre ",
        "deploy: scaleway_evpn-pre ",
        "deploy: scaleway-post one-VM host-a",
        "deploy: scaleway_evpn-post one-VM host-a",
    ];
    let calls_shown: Vec<String> = calls
        .iter()
        .map(|c| c.replace(&format!("one-{vm}"), "one-VM"))
        .collect();
    for e in expected {
        assert!(
            calls_shown.iter().any(|c| c.starts_with(e.trim_end())),
            "{e:?} not in {calls_shown:#?}"
        );
    }
    for event in ["nic_attach", "nic_detach", "migrate", "terminate"] {
        assert!(
            calls_shown.iter().any(|c| c.starts_with(event)),
            "no network action at {event}: {calls_shown:#?}"
        );
    }
    // The private NIC's VNI: the network got no VLAN_ID from oned, so the
    // driver's VNI is 1000000 + its id, and it has a bridge.
    // The IPv6 VM: its public NIC is IPv6, its alias IPv4.
    let read6 = Vm::from_element(&xml::parse(pre6.as_bytes()).unwrap()).unwrap();
    let nics6 = read6.nics_of("scaleway").unwrap();
    assert_eq!(nics6.len(), 2, "{pre6}");
    assert!(nics6[0].ip6.is_some() && nics6[1].ip.is_some(), "{pre6}");
    fixtures.insert("ipv6-scaleway-pre".into(), pre6);
    let pre = fixtures
        .get("deploy-scaleway_evpn-pre")
        .expect("scaleway_evpn pre at deploy");
    let read = Vm::from_element(&xml::parse(pre.as_bytes()).unwrap()).unwrap();
    let selected = private_plan::segment::select(&read).unwrap_or_else(|e| panic!("{e}\n{pre}"));
    assert_eq!(selected.requests.len(), 1);
    assert_eq!(selected.requests[0].vni.get(), 1_000_000 + private, "{pre}");
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        let dir = fixture_path("vnm");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, doc) in &fixtures {
            std::fs::write(dir.join(format!("{name}.xml")), doc).unwrap();
        }
        std::fs::write(dir.join("calls.txt"), calls_shown.join("\n") + "\n").unwrap();
        for (name, doc) in &shown {
            std::fs::write(fixture_path(&format!("{name}.xml")), doc).unwrap();
        }
    }
}
