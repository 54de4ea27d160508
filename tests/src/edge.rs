//! The edge cluster the real-oned VM tests play on: a real oned whose
//! network actions are recorded (not run), two hosts of the test
//! hypervisor, the public networks (IPv4, IPv6) and the private network as
//! the provision makes them, and helpers to follow a VM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test infrastructure

use std::time::{Duration, Instant};

use opennebula::xml::Element;
use test_support::oned::{Options, RealOned, Record, TEST_VMM};

/// A real oned whose network actions are only recorded, the hosts being
/// this machine and the test hypervisor their VM driver.
pub fn start() -> RealOned {
    let bin = crate::real::bindir();
    RealOned::start(&Options {
        bindir: bin.clone(),
        recorder: Some(bin.join("one-scaleway-recorder")),
        record_only: vec!["vnm".into()],
        local_hosts: Some(bin.join("one-scaleway-local-ssh")),
        test_vmm: Some(bin.join("one-scaleway-test-vmm")),
        env: vec![
            ("ONE_SCALEWAY_POLL_MS".into(), "20".into()),
            ("ONE_SCALEWAY_RETRY_BASE_MS".into(), "20".into()),
        ],
        ..Options::default()
    })
}

/// Waits until the VM satisfies `done` (the CLI returns before oned acts).
pub fn wait_vm(oned: &RealOned, id: u32, what: &str, done: impl Fn(&Element) -> bool) {
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

/// The text at `path` (empty when absent).
pub fn value<'a>(vm: &'a Element, path: &str) -> &'a str {
    vm.at(path).map_or("", |e| e.text.as_str())
}

/// RUNNING (ACTIVE/RUNNING) with `nics` NICs on `host`.
pub fn running(nics: usize, host: &'static str) -> impl Fn(&Element) -> bool {
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
pub fn document(r: &Record) -> String {
    let text = String::from_utf8(r.stdin.clone()).unwrap();
    let trimmed = text.trim();
    if trimmed.starts_with('<') {
        return trimmed.to_owned();
    }
    String::from_utf8(opennebula::base64::decode(trimmed.as_bytes()).unwrap()).unwrap()
}

/// Waits (30 s at most) until `count` clean calls were recorded since
/// record `from`: oned may call a VM DONE before its cleanup has run.
pub fn wait_cleans(oned: &RealOned, from: usize, count: usize) {
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
pub fn hosts_and_datastore(oned: &RealOned) -> (u32, u32, u32) {
    let h1 = oned.create_host("host-a");
    let h2 = oned.create_host("host-b");
    let ds = oned.create(
        "onedatastore",
        &[],
        "NAME = \"sys\"\nTYPE = \"SYSTEM_DS\"\nTM_MAD = \"dummy\"\n",
    );
    (h1, h2, ds)
}

/// The objects of [`edge_cluster`].
pub struct Edge {
    pub hosts: [u32; 2],
    pub ds: u32,
    pub public: u32,
    pub public6: u32,
    pub private: u32,
}

/// The cluster `edge` as the provision registers it: two hosts, a system
/// datastore, the public networks `edge-public` (3 IPv4 ranges of our IPAM
/// driver) and `edge-public6` (one IPv6 range), and `web-private` from the
/// private network template.
pub fn edge_cluster(oned: &RealOned) -> Edge {
    let cluster = test_support::oned::id_of(&oned.cli_ok("onecluster", &["create", "edge"]));
    let host = |name: &str| {
        test_support::oned::id_of(&oned.cli_ok(
            "onehost",
            &["create", name, "--im", "dummy", "--vm", TEST_VMM, "--cluster", "edge"],
        ))
    };
    let hosts = [host("host-a"), host("host-b")];
    let ds = oned.create(
        "onedatastore",
        &["--cluster", "edge"],
        "NAME = \"edge-system\"\nTYPE = \"SYSTEM_DS\"\nTM_MAD = \"dummy\"\n",
    );
    let range = "AR = [ IPAM_MAD = \"scaleway_fip\", SIZE = \"1\", PRIVATE_CIDR = \"172.30.0.0/16\", \
                 SCALEWAY_ZONE = \"fr-par-2\", SCALEWAY_PROFILE = \"edge-paris\" ]\n";
    let public = oned.create(
        "onevnet",
        &["--cluster", "edge"],
        &format!(
            "NAME = \"edge-public\"\nVN_MAD = \"scaleway\"\nBRIDGE = \"scwpub0\"\nDNS = \"1.1.1.1\"\n{}",
            range.repeat(3)
        ),
    );
    let public6 = oned.create(
        "onevnet",
        &["--cluster", "edge"],
        "NAME = \"edge-public6\"\nVN_MAD = \"scaleway\"\nBRIDGE = \"scwpub0\"\n\
         AR = [ IPAM_MAD = \"scaleway_fip\", TYPE = \"IP6_STATIC\", SIZE = \"1\", SCALEWAY_IP_TYPE = \"ipv6\", \
                SCALEWAY_ZONE = \"fr-par-2\", SCALEWAY_PROFILE = \"edge-paris\" ]\n",
    );
    let template = oned.create(
        "onevntemplate",
        &[],
        &format!(
            "NAME = \"edge-private\"\nVN_MAD = \"scaleway_evpn\"\nPHYDEV = \"scwpriv0\"\nGUEST_MTU = \"1450\"\n\
             DNS = \"1.1.1.1\"\nNETWORK_ADDRESS = \"10.200.0.0\"\nNETWORK_MASK = \"255.255.255.0\"\n\
             AR = [ TYPE = \"IP4\", IP = \"10.200.0.10\", SIZE = \"200\" ]\nCLUSTER_IDS = \"{cluster}\"\n"
        ),
    );
    let printed = oned.cli_ok(
        "onevntemplate",
        &["instantiate", &template.to_string(), "--name", "web-private"],
    );
    let private = test_support::oned::id_of(printed.trim().trim_start_matches("VN"));
    for net in [public, public6, private] {
        oned.wait_vnet_ready(net);
    }
    Edge {
        hosts,
        ds,
        public,
        public6,
        private,
    }
}

/// What a user puts in a VM template beyond its NICs: contextualization
/// (free text with XML specials and a multi-line script) and a description.
pub const VM_EXTRAS: &str = "CPU = \"0.1\"\nMEMORY = \"64\"\n\
    CONTEXT = [ NETWORK = \"YES\", SSH_PUBLIC_KEY = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9uZS1zY2FsZXdheS10ZXN0LWtleS0wMDAwMDA alice@laptop\",\n\
      START_SCRIPT = \"#!/bin/sh\necho \\\"hello from the edge\\\" > /etc/motd\n\" ]\n\
    DESCRIPTION = \"web front, \\\"prod\\\" & <edge>\"\n";

/// Creates `count` held VMs and deletes them, so that the next VM's id is
/// not 0 (an id equal to every other first id would hide a mix-up).
pub fn skip_vm_ids(oned: &RealOned, count: u32) {
    let file = oned.template_file("skip.tmpl", "NAME = \"skip\"\nCPU = \"0.1\"\nMEMORY = \"64\"\n");
    oned.cli_ok("onevm", &["create", "--hold", "--multiple", &count.to_string(), &file]);
    oned.cli_ok("onevm", &["recover", "--delete", &format!("0..{}", count - 1)]);
}

/// A held VM named `name` with an IPv6 public NIC on `edge-public6` (its
/// address named: oned cannot lease it by itself) whose other attributes
/// are `nic`, and the rest of its template `more`.
pub fn ipv6_vm(oned: &RealOned, edge: &Edge, name: &str, nic: &str, more: &str) -> u32 {
    let ip6 = oned
        .show("onevnet", edge.public6)
        .at("AR_POOL/AR/IP6")
        .map(|e| e.text.clone())
        .unwrap();
    oned.create(
        "onevm",
        &["--hold"],
        &format!(
            "NAME = \"{name}\"\n{VM_EXTRAS}NIC = [ NETWORK_ID = \"{}\", IP6 = \"{ip6}\"{nic} ]\n{more}",
            edge.public6
        ),
    )
}
