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
use std::path::PathBuf;
use std::time::{Duration, Instant};

use opennebula::vm::Vm;
use opennebula::xml::{self, Element};
use test_support::oned::{Options, RealOned, Record};
use test_support::{fixture_path, require_root};

fn bindir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn start() -> RealOned {
    let bin = bindir();
    RealOned::start(&Options {
        bindir: bin.clone(),
        recorder: Some(bin.join("one-scaleway-recorder")),
        record_only: vec!["vnm".into()],
        local_hosts: Some(bin.join("one-scaleway-local-ssh")),
        test_vmm: Some(bin.join("one-scaleway-test-vmm")),
        ..Options::default()
    })
}

/// Waits until the VM satisfies `done` (the CLI returns before oned acts).
fn wait_vm(oned: &RealOned, id: u32, what: &str, done: impl Fn(&Element) -> bool) {
    let started = Instant::now();
    loop {
        let vm = oned.show("onevm", id);
        if done(&vm) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "VM {id}: waited 90 s for {what}:\n{}\n--- vm.log\n{}",
            vm.to_xml(),
            std::fs::read_to_string(oned.location.join(format!("var/vms/{id}/vm.log"))).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn value<'a>(vm: &'a Element, path: &str) -> &'a str {
    vm.at(path).map_or("", |e| e.text.as_str())
}

/// RUNNING (ACTIVE/RUNNING) with `nics` NICs on `host`.
fn running(nics: usize, host: &'static str) -> impl Fn(&Element) -> bool {
    move |vm| {
        value(vm, "STATE") == "3"
            && value(vm, "LCM_STATE") == "3"
            && vm
                .at("TEMPLATE")
                .is_some_and(|t| t.children_named("NIC").count() == nics)
            && vm
                .at("HISTORY_RECORDS")
                .and_then(|h| h.children_named("HISTORY").last())
                .is_some_and(|h| h.child("HOSTNAME").is_some_and(|n| n.text == host))
    }
}

/// The decoded VM document of a recorded network action (its stdin is the
/// base64 document, or for `update_nic` a plain one).
fn document(r: &Record) -> String {
    let text = String::from_utf8(r.stdin.clone()).unwrap();
    let trimmed = text.trim();
    if trimmed.starts_with('<') {
        return trimmed.to_owned();
    }
    String::from_utf8(opennebula::base64::decode(trimmed.as_bytes()).unwrap()).unwrap()
}

/// Waits (30 s at most) until `count` clean calls were recorded since
/// record `from`: oned may call a VM DONE before its cleanup has run.
fn wait_cleans(oned: &RealOned, from: usize, count: usize) {
    let started = Instant::now();
    while oned.records()[from..]
        .iter()
        .filter(|r| r.call.ends_with("-clean"))
        .count()
        < count
        && started.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Two hosts of the test hypervisor and a system datastore without
/// transfers (no ssh/scp for prolog/epilog): `(host-a, host-b, datastore)`.
fn hosts_and_datastore(oned: &RealOned) -> (u32, u32, u32) {
    let h1 = oned.create_host("host-a");
    let h2 = oned.create_host("host-b");
    let ds = oned.create(
        "onedatastore",
        &[],
        "NAME = \"sys\"\nTYPE = \"SYSTEM_DS\"\nTM_MAD = \"dummy\"\n",
    );
    (h1, h2, ds)
}

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

#[test]
#[ignore = "privileged: runs a real oned as oneadmin (sudo .ci/run)"]
fn network_drivers_under_a_real_vm_driver() {
    require_root();
    let oned = start();
    let (h1, h2, ds) = hosts_and_datastore(&oned);
    let public = oned.create(
        "onevnet",
        &[],
        "NAME = \"public\"\nVN_MAD = \"scaleway\"\nBRIDGE = \"scwpub0\"\n\
         AR = [ TYPE = \"IP4\", IP = \"172.30.0.2\", SIZE = \"1\", EXTERNAL_IP = \"51.15.0.9\",\n\
                GATEWAY = \"172.30.0.3\", NETWORK_MASK = \"255.255.255.254\",\n\
                SCALEWAY_IP_ID = \"0b0d7a9e-6a7b-4c3e-9d8e-1f2a3b4c5d6e\", SCALEWAY_ZONE = \"fr-par-1\" ]\n",
    );
    // The private network as the provision's template makes it (no
    // VLAN_ID: oned gives a custom VN_MAD none), instantiated by a user.
    let template = oned.create(
        "onevntemplate",
        &[],
        "NAME = \"edge-private\"\nVN_MAD = \"scaleway_evpn\"\nPHYDEV = \"scwpriv0\"\nGUEST_MTU = \"1450\"\n\
         NETWORK_ADDRESS = \"10.200.0.0\"\nNETWORK_MASK = \"255.255.255.0\"\n\
         AR = [ TYPE = \"IP4\", IP = \"10.200.0.10\", SIZE = \"200\" ]\n",
    );
    let printed = oned.cli_ok(
        "onevntemplate",
        &["instantiate", &template.to_string(), "--name", "private"],
    );
    let private = test_support::oned::id_of(printed.trim().trim_start_matches("VN"));
    oned.wait_vnet_ready(public);
    oned.wait_vnet_ready(private);
    let vm = oned.create(
        "onevm",
        &["--hold"],
        &format!(
            "NAME = \"web\"\nCPU = \"0.1\"\nMEMORY = \"64\"\n\
             NIC = [ NETWORK_ID = \"{public}\" ]\nNIC = [ NETWORK_ID = \"{private}\" ]\n"
        ),
    );
    let (vm_s, h1_s, h2_s, ds_s) = (vm.to_string(), h1.to_string(), h2.to_string(), ds.to_string());
    let mut marks: Vec<(usize, &str)> = Vec::new();
    let mut mark = |oned: &RealOned, event: &'static str| marks.push((oned.records().len(), event));

    oned.cli_ok("onevm", &["deploy", &vm_s, &h1_s, &ds_s]);
    wait_vm(&oned, vm, "deploy", running(2, "host-a"));
    mark(&oned, "deploy");
    oned.cli_ok("onevm", &["nic-attach", &vm_s, "--network", &private.to_string()]);
    wait_vm(&oned, vm, "nic-attach", running(3, "host-a"));
    mark(&oned, "nic_attach");
    let shown = oned.show("onevm", vm);
    let nics: Vec<&str> = shown
        .at("TEMPLATE")
        .unwrap()
        .children_named("NIC")
        .map(|n| n.child("NIC_ID").map_or("", |i| i.text.as_str()))
        .collect();
    oned.cli_ok("onevm", &["nic-detach", &vm_s, nics[2]]);
    wait_vm(&oned, vm, "nic-detach", running(2, "host-a"));
    mark(&oned, "nic_detach");
    oned.cli_ok("onevm", &["migrate", "--live", &vm_s, &h2_s]);
    wait_vm(&oned, vm, "live migration", running(2, "host-b"));
    mark(&oned, "migrate");
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
        for r in &records[from..*to] {
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
    let shown: Vec<String> = calls
        .iter()
        .map(|c| c.replace(&format!("one-{vm}"), "one-VM"))
        .collect();
    for e in expected {
        assert!(
            shown.iter().any(|c| c.starts_with(e.trim_end())),
            "{e:?} not in {shown:#?}"
        );
    }
    for event in ["nic_attach", "nic_detach", "migrate", "terminate"] {
        assert!(
            shown.iter().any(|c| c.starts_with(event)),
            "no network action at {event}: {shown:#?}"
        );
    }
    // The private NIC's VNI: the network got no VLAN_ID from oned, so the
    // driver's VNI is 1000000 + its id, and it has a bridge.
    let pre = fixtures
        .get("deploy-scaleway_evpn-pre")
        .expect("scaleway_evpn pre at deploy");
    let read = Vm::from_element(&xml::parse(pre.as_bytes()).unwrap()).unwrap();
    let selected = evpn::segment::select(&read).unwrap_or_else(|e| panic!("{e}\n{pre}"));
    assert_eq!(selected.requests.len(), 1);
    assert_eq!(selected.requests[0].vni.get(), 1_000_000 + private, "{pre}");
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        let dir = fixture_path("vnm");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, doc) in &fixtures {
            std::fs::write(dir.join(format!("{name}.xml")), doc).unwrap();
        }
        std::fs::write(dir.join("calls.txt"), shown.join("\n") + "\n").unwrap();
    }
}
