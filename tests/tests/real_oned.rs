//! OpenNebula itself in the loop: a real oned, built from OpenNebula's source
//! (`tests/oned/build.sh`), with our drivers installed by `install.sh -d` on
//! its stock configuration, runs our IPAM driver through its own `one_ipam`,
//! as oneadmin, driven through OpenNebula's CLI as an administrator would.
//! Every document oned sends is recorded; `UPDATE_FIXTURES=1` keeps them as
//! the fixtures of `tests/fixtures/ipam/` (the unit and golden tests read them).
//!
//! Privileged (oneadmin, the build): run by `sudo .ci/run`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use integration_tests::real::{PROJECT, SECRET, bindir, emulator, start_oned};
use opennebula::oned::{ONEFORM_PROVIDER, ONEFORM_PROVISION, ONEPROVISION_PROVIDER, ONEPROVISION_PROVISION, Param};
use opennebula::xml::{self, Element};
use scaleway_emulator::Running;
use test_support::oned::{Options, RealOned, Record, id_of, ranges as ars};
use test_support::{fixture_path, require_root};

/// Writes a template file oneadmin can read; returns its path.
fn template_file(oned: &RealOned, name: &str, text: &str) -> String {
    let path = oned.home().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn vnet(oned: &RealOned, id: u32) -> Element {
    xml::parse(oned.cli_ok("onevnet", &["show", &id.to_string(), "--xml"]).as_bytes()).unwrap()
}

fn text<'a>(e: &'a Element, path: &str) -> &'a str {
    e.at(path).map_or("", |c| c.text.as_str())
}

fn fips(emu: &Running) -> Vec<serde_json::Value> {
    emu.state()["flexible_ips"].as_array().cloned().unwrap_or_default()
}

/// The decoded document of a recorded IPAM call.
fn document(r: &Record) -> String {
    let text = String::from_utf8(r.stdin.clone()).unwrap();
    let bytes =
        opennebula::base64::decode(text.trim().as_bytes()).unwrap_or_else(|e| panic!("{}: not base64: {e}", r.call));
    String::from_utf8(bytes).unwrap()
}

#[test]
#[ignore = "privileged: runs a real oned as oneadmin (sudo .ci/run)"]
fn ipam_driver_under_a_real_oned() {
    require_root();
    let emu = emulator();
    let oned = start_oned(&emu);

    // A public network as an administrator writes it, with the user's own
    // attributes on the range: oned replaces the range with our answer.
    let net = template_file(
        &oned,
        "public.tmpl",
        "NAME = \"edge-public\"\nVN_MAD = \"scaleway\"\nBRIDGE = \"scwpub0\"\n\
         AR = [ IPAM_MAD = \"scaleway_fip\", TYPE = \"IP4\", SIZE = \"1\", SCALEWAY_PROFILE = \"edge-paris\",\n\
                SCALEWAY_ZONE = \"fr-par-2\", SCALEWAY_IP_TYPE = \"ipv4\", PRIVATE_CIDR = \"172.30.12.0/22\",\n\
                DNS = \"1.1.1.1\", MY_LABEL = \"blue\" ]\n",
    );
    let id = id_of(&oned.cli_ok("onevnet", &["create", &net]));
    let v = oned.wait_vnet_ready(id);
    let ranges = ars(&v);
    assert_eq!(ranges.len(), 1, "{}", v.to_xml());
    let ar = &ranges[0];
    assert_eq!(ar["IPAM_MAD"], "scaleway_fip", "still driver-managed");
    assert_eq!(ar["DNS"], "1.1.1.1", "the user's DNS survives the answer");
    assert_eq!(ar["MY_LABEL"], "blue", "custom attributes survive the answer");
    let live = fips(&emu);
    assert_eq!(live.len(), 1);
    assert_eq!(ar["EXTERNAL_IP"], live[0]["ip_address"].as_str().unwrap());
    assert_eq!(ar["SCALEWAY_IP_ID"], live[0]["id"].as_str().unwrap());

    // addar is synchronous.
    let more = template_file(
        &oned,
        "ar.tmpl",
        "AR = [ IPAM_MAD = \"scaleway_fip\", TYPE = \"IP4\", SIZE = \"1\", SCALEWAY_PROFILE = \"edge-paris\",\n\
                PRIVATE_CIDR = \"172.30.12.0/22\" ]\n",
    );
    oned.cli_ok("onevnet", &["addar", &id.to_string(), &more]);
    assert_eq!(ars(&vnet(&oned, id)).len(), 2);
    assert_eq!(fips(&emu).len(), 2);

    // Leases: a VM asking for any address (get_address), an address put on
    // hold (allocate_address) and released (free_address).
    let second = &ars(&vnet(&oned, id))[1];
    let vm = template_file(
        &oned,
        "vm.tmpl",
        &format!("NAME = \"lease\"\nCPU = \"0.1\"\nMEMORY = \"64\"\nNIC = [ NETWORK_ID = \"{id}\" ]\n"),
    );
    let vm_id = id_of(&oned.cli_ok("onevm", &["create", "--hold", &vm]));
    let shown = xml::parse(oned.cli_ok("onevm", &["show", &vm_id.to_string(), "--xml"]).as_bytes()).unwrap();
    assert_eq!(
        text(&shown, "TEMPLATE/NIC/IP"),
        ranges[0]["IP"],
        "the first range's address"
    );
    oned.cli_ok("onevnet", &["hold", &id.to_string(), &second["IP"]]);
    oned.cli_ok("onevnet", &["release", &id.to_string(), &second["IP"]]);
    oned.cli_ok("onevm", &["recover", "--delete", &vm_id.to_string()]);

    // oned gives up on an answer after 90 s: a registration it dropped leaves
    // a flexible IP our state calls active. gc asks oned's ranges, so it is
    // found (once older than the grace period), and only it.
    let ipam = oned.location.join("var/remotes/ipam/scaleway_fip");
    let register = ipam.join("register_address_range").display().to_string();
    let mut dropped = oned.as_oneadmin(&register, &["99"]);
    dropped
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = dropped.spawn().unwrap();
    let doc = test_support::encode(&test_support::fixture("ipam/register_address_range.xml"));
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &doc).unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let ours: Vec<String> = ars(&vnet(&oned, id))
        .iter()
        .map(|a| a["SCALEWAY_IP_ID"].clone())
        .collect();
    let orphan: Vec<String> = fips(&emu)
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .filter(|f| !ours.contains(f))
        .collect();
    assert_eq!(orphan.len(), 1, "the dropped registration's IP");
    let gc = |grace: &str, delete: bool| {
        let binary = ipam.join("scaleway-ipam").display().to_string();
        // The dropped range used the edge-paris profile (zone fr-par-2).
        let mut args = vec!["gc", "--profile", "edge-paris"];
        if delete {
            args.push("--delete");
        }
        let out = oned
            .as_oneadmin(&binary, &args)
            .env("ONE_SCALEWAY_GC_GRACE", grace)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(gc("300", false), "", "too young to be judged");
    let listed = gc("0", false);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.starts_with(&format!("orphan {}", orphan[0])), "{listed}");
    assert!(gc("0", true).contains(&format!("deleted {}", orphan[0])));
    assert_eq!(fips(&emu).len(), 2, "the ranges' IPs are kept");

    // rmar releases that range's flexible IP; deleting the network the rest.
    oned.cli_ok("onevnet", &["rmar", &id.to_string(), &second["AR_ID"]]);
    assert_eq!(fips(&emu).len(), 1);
    oned.cli_ok("onevnet", &["delete", &id.to_string()]);
    let started = Instant::now();
    while !fips(&emu).is_empty() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        fips(&emu).is_empty(),
        "nothing left at Scaleway: {:?}\n{}",
        fips(&emu),
        oned.log_tail(30)
    );

    // Every IPAM action ran, and every document oned sent reads.
    let records = oned.records();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for r in &records {
        // (gc, run by hand above, is not an action oned runs.)
        let Some(action) = r.call.strip_prefix("ipam-scaleway_fip-").filter(|a| *a != "gc") else {
            continue;
        };
        let doc = document(r);
        opennebula::ipam::IpamRequest::from_element(&xml::parse(doc.as_bytes()).unwrap())
            .unwrap_or_else(|e| panic!("{action}: {e}\n{doc}"));
        // The first call of each action is the fixture (the register of a
        // network created with its range; unregister after rmar).
        seen.entry(action.to_owned()).or_insert(doc);
    }
    let actions: Vec<&str> = seen.keys().map(String::as_str).collect();
    assert_eq!(
        actions,
        [
            "allocate_address",
            "free_address",
            "get_address",
            "register_address_range",
            "unregister_address_range"
        ],
        "{:?}",
        records.iter().map(|r| &r.call).collect::<Vec<_>>()
    );
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        for (action, doc) in &seen {
            std::fs::write(fixture_path(&format!("ipam/{action}.xml")), doc).unwrap();
        }
    }
}

/// A document as OpenNebula's provisioning tools make it: `one.document.allocate`
/// of a template holding the tool's JSON; returns its id.
fn allocate_document(oned: &RealOned, doc_type: i64, name: &str, attribute: &str, json: &str) -> u64 {
    let mut t = opennebula::template::Template::new();
    t.single("NAME", name).single(attribute, json);
    let id = oned
        .api()
        .call_id(
            "one.document.allocate",
            &[Param::Str(t.render().unwrap()), Param::Int(doc_type)],
        )
        .unwrap();
    u64::try_from(id).unwrap()
}

/// Ranges made by oneprovision (6.x) or OneForm (7.2+) carry only
/// PROVISION_ID: the driver reads the provider's connection from oned, in
/// both tools' document shapes. The documents oned returns are kept as
/// `tests/fixtures/document/` (`UPDATE_FIXTURES=1`).
#[test]
#[ignore = "privileged: runs a real oned as oneadmin (sudo .ci/run)"]
fn provision_credentials_under_a_real_oned() {
    require_root();
    let emu = emulator();
    let oned = RealOned::start(&Options {
        bindir: bindir(),
        // The connection names no endpoint: the emulator's comes from the environment.
        env: vec![("SCW_API_URL".into(), emu.url())],
        ..Options::default()
    });
    let connection =
        |zone: &str| format!("{{\"secret_key\":\"{SECRET}\",\"project_id\":\"{PROJECT}\",\"zone\":\"{zone}\"}}");
    let form_provider = allocate_document(
        &oned,
        ONEFORM_PROVIDER,
        "scaleway-paris",
        "PROVIDER_BODY",
        &format!(
            "{{\"connection\":{},\"registration_time\":1796500000}}",
            connection("fr-par-1")
        ),
    );
    let form_provision = allocate_document(
        &oned,
        ONEFORM_PROVISION,
        "edge-form",
        "PROVISION_BODY",
        &format!("{{\"provider_id\":{form_provider},\"name\":\"edge-form\"}}"),
    );
    let old_provider = allocate_document(
        &oned,
        ONEPROVISION_PROVIDER,
        "scaleway-fr-par-2",
        "PROVISION_BODY",
        &format!(
            "{{\"connection\":{},\"registration_time\":1796500000}}",
            connection("fr-par-2")
        ),
    );
    let old_provision = allocate_document(
        &oned,
        ONEPROVISION_PROVISION,
        "edge-paris",
        "BODY",
        "{\"name\":\"edge-paris\",\"provider\":\"scaleway-fr-par-2\",\"state\":3}",
    );
    let net = oned.template_file(
        "public.tmpl",
        &format!(
            "NAME = \"edge-public\"\nVN_MAD = \"scaleway\"\nBRIDGE = \"scwpub0\"\n\
             AR = [ IPAM_MAD = \"scaleway_fip\", TYPE = \"IP4\", SIZE = \"1\", PROVISION_ID = \"{form_provision}\" ]\n\
             AR = [ IPAM_MAD = \"scaleway_fip\", TYPE = \"IP4\", SIZE = \"1\", PROVISION_ID = \"{old_provision}\" ]\n"
        ),
    );
    let id = id_of(&oned.cli_ok("onevnet", &["create", &net]));
    let v = oned.wait_vnet_ready(id);
    let zones: Vec<String> = ars(&v).iter().map(|a| a["SCALEWAY_ZONE"].clone()).collect();
    assert_eq!(zones, ["fr-par-1", "fr-par-2"], "each provider's zone");
    let mut live: Vec<String> = fips(&emu)
        .iter()
        .map(|f| f["zone"].as_str().unwrap().to_owned())
        .collect();
    live.sort();
    assert_eq!(live, ["fr-par-1", "fr-par-2"]);
    oned.cli_ok("onevnet", &["delete", &id.to_string()]);
    let started = Instant::now();
    while !fips(&emu).is_empty() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(fips(&emu).is_empty(), "{:?}", fips(&emu));
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        for (name, doc) in [
            ("oneform-provider", form_provider),
            ("oneform-provision", form_provision),
            ("oneprovision-provider", old_provider),
            ("oneprovision-provision", old_provision),
        ] {
            let text = oned
                .api()
                .call("one.document.info", &[Param::Int(doc as i64), Param::Bool(true)])
                .unwrap();
            std::fs::write(fixture_path(&format!("document/{name}.xml")), text).unwrap();
        }
    }
}

/// IPv6 public ranges through a real oned: oned cannot lease automatically
/// from a driver-managed IP6_STATIC range (it reads only ADDRESS/IP from
/// get_address), so a NIC names the range's address with `IP6`; oned then
/// sends allocate_address and free_address with the literal `0` as IPv6
/// (upstream bug, 7.0-7.4), which the driver accepts; GATEWAY6 reaches the
/// NIC through the INHERIT_VNET_ATTR our install adds.
#[test]
#[ignore = "privileged: runs a real oned as oneadmin (sudo .ci/run)"]
fn ipv6_range_under_a_real_oned() {
    require_root();
    let emu = emulator();
    let oned = start_oned(&emu);
    let net = oned.template_file(
        "public6.tmpl",
        "NAME = \"edge-public6\"\nVN_MAD = \"scaleway\"\nBRIDGE = \"scwpub0\"\n\
         AR = [ IPAM_MAD = \"scaleway_fip\", TYPE = \"IP6_STATIC\", SIZE = \"1\", SCALEWAY_IP_TYPE = \"ipv6\" ]\n",
    );
    let id = id_of(&oned.cli_ok("onevnet", &["create", &net]));
    let v = oned.wait_vnet_ready(id);
    let ar = &ars(&v)[0];
    assert_eq!(ar["TYPE"], "IP6_STATIC", "{}", v.to_xml());
    let ip6 = ar["IP6"].clone();
    // Without IP6 the NIC gets no lease (oned's limit, documented).
    let automatic = oned.template_file(
        "vm6-auto.tmpl",
        &format!("NAME = \"auto\"\nCPU = \"0.1\"\nMEMORY = \"64\"\nNIC = [ NETWORK_ID = \"{id}\" ]\n"),
    );
    let refused = oned.cli("onevm", &["create", "--hold", &automatic]);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(
        refused.stdout.contains("Cannot get IP/MAC lease") || refused.stderr.contains("Cannot get IP/MAC lease"),
        "{refused:?}"
    );
    let named = oned.template_file(
        "vm6.tmpl",
        &format!("NAME = \"web6\"\nCPU = \"0.1\"\nMEMORY = \"64\"\nNIC = [ NETWORK_ID = \"{id}\", IP6 = \"{ip6}\" ]\n"),
    );
    let vm = id_of(&oned.cli_ok("onevm", &["create", "--hold", &named]));
    let shown = oned.show("onevm", vm);
    let nic = shown.at("TEMPLATE/NIC").unwrap();
    let get = |k: &str| nic.child(k).map_or("", |e| e.text.as_str()).to_owned();
    assert_eq!(get("IP6"), ip6);
    assert_eq!(get("GATEWAY6"), ar["GATEWAY6"], "inherited: {}", nic.to_xml());
    assert_eq!(get("EXTERNAL_IP"), ar["EXTERNAL_IP"]);
    oned.cli_ok("onevm", &["recover", "--delete", &vm.to_string()]);
    let started = Instant::now();
    while ars(&vnet(&oned, id))[0]["USED_LEASES"] != "0" && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(ars(&vnet(&oned, id))[0]["USED_LEASES"], "0", "the lease was freed");
    let calls: Vec<String> = oned.records().iter().map(|r| r.call.clone()).collect();
    assert!(calls.iter().any(|c| c.ends_with("allocate_address")), "{calls:?}");
    assert!(calls.iter().any(|c| c.ends_with("free_address")), "{calls:?}");
    let allocate = oned
        .records()
        .into_iter()
        .find(|r| r.call.ends_with("allocate_address"))
        .unwrap();
    assert!(
        document(&allocate).contains("<IP6>0</IP6>"),
        "oned's literal 0: {}",
        document(&allocate)
    );
    oned.cli_ok("onevnet", &["delete", &id.to_string()]);
    let started = Instant::now();
    while !fips(&emu).is_empty() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(fips(&emu).is_empty(), "{:?}", fips(&emu));
}
