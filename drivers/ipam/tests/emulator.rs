//! The IPAM driver driven exactly as oned drives it (action file, request
//! id argument, base64 document on stdin) against the local emulator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use opennebula::template::Template;
use scaleway_emulator::{Emulator, Running};
use serde_json::{Value, json};
use test_support::{Ran, TempDir, encode, link_as, run_program_env};

const BIN: &str = env!("CARGO_BIN_EXE_scaleway-ipam");
const SECRET: &str = "5ec7e7aa-0000-4000-8000-5ec7e75ec7e7";
const PROJECT: &str = "564aa517-68b0-4fd7-8c8c-d21c4bcdcbd5";
const FIPS: &str = "/flexible-ip/v1alpha1/zones/fr-par-1/fips";

struct Bed {
    emu: Running,
    dir: TempDir,
    actions: PathBuf,
}

impl Bed {
    fn new() -> Self {
        let options = scaleway_emulator::Options {
            speed: 0.01,
            project_ids: vec![PROJECT.into()],
            ..Default::default()
        };
        let emu = Emulator::start(options).unwrap();
        let dir = TempDir::new("ipam-e2e");
        let actions = dir.path().join("remotes/ipam/scaleway_fip");
        for a in [
            "register_address_range",
            "unregister_address_range",
            "get_address",
            "allocate_address",
            "free_address",
        ] {
            link_as(Path::new(BIN), dir.path(), &format!("remotes/ipam/scaleway_fip/{a}"));
        }
        Bed { emu, dir, actions }
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("SCW_SECRET_KEY".into(), SECRET.into()),
            ("SCW_DEFAULT_PROJECT_ID".into(), PROJECT.into()),
            ("SCW_DEFAULT_ZONE".into(), "fr-par-1".into()),
            ("SCW_API_URL".into(), self.emu.url()),
            (
                "ONE_SCALEWAY_STATE_DIR".into(),
                self.dir.path().join("state").display().to_string(),
            ),
            ("ONE_SCALEWAY_POLL_MS".into(), "10".into()),
            ("ONE_SCALEWAY_RETRY_BASE_MS".into(), "10".into()),
            ("ONE_SCALEWAY_TIMEOUT".into(), "2".into()),
        ]
    }

    fn run(&self, action: &str, document: &str) -> Ran {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_program_env(&self.actions.join(action), &["1203"], &encode(document), &env)
    }

    fn state_file(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir.path().join("state/ipam-blocks.json")).unwrap()).unwrap()
    }

    fn fips(&self) -> Vec<Value> {
        self.emu.state()["flexible_ips"].as_array().cloned().unwrap_or_default()
    }
}

fn request(ar: &[(&str, &str)]) -> String {
    let attrs: String = ar.iter().map(|(k, v)| format!("<{k}><![CDATA[{v}]]></{k}>")).collect();
    format!("<IPAM_DRIVER_ACTION_DATA><AR>{attrs}</AR><ADDRESS><MAC/><IP/><SIZE/></ADDRESS></IPAM_DRIVER_ACTION_DATA>")
}

const NEW_RANGE: &[(&str, &str)] = &[("IPAM_MAD", "scaleway_fip"), ("SIZE", "1"), ("TYPE", "IP4")];

/// The AR answered by register, as a map.
fn answered(ran: &Ran) -> HashMap<String, String> {
    assert_eq!(ran.code, 0, "register failed: {}", ran.stderr);
    let t = Template::parse(&ran.stdout).unwrap();
    t.vector_named("AR").unwrap().iter().cloned().collect()
}

/// The registered AR as oned would send it back for unregister.
fn registered(ar: &HashMap<String, String>) -> String {
    let pairs: Vec<(&str, &str)> = ar.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    request(&pairs).replace("<ADDRESS><MAC/><IP/><SIZE/></ADDRESS>", "")
}

#[test]
fn a_thousand_ranges_get_distinct_blocks_and_leave_nothing_behind() {
    let bed = Bed::new();
    let cidr = ("PRIVATE_CIDR", "10.77.0.0/20");
    let mut doc = NEW_RANGE.to_vec();
    doc.push(cidr);
    let started = std::time::Instant::now();
    let ars: Vec<HashMap<String, String>> = (0..1000)
        .map(|_| answered(&bed.run("register_address_range", &request(&doc))))
        .collect();
    eprintln!("1000 registrations: {:?}", started.elapsed());
    let net: ipnetwork::Ipv4Network = "10.77.0.0/20".parse().unwrap();
    let mut blocks = BTreeSet::new();
    let fips: HashMap<String, Value> = bed
        .fips()
        .into_iter()
        .map(|f| (f["id"].as_str().unwrap().to_owned(), f))
        .collect();
    assert_eq!(fips.len(), 1000);
    for ar in &ars {
        let ip: Ipv4Addr = ar["IP"].parse().unwrap();
        let gw: Ipv4Addr = ar["GATEWAY"].parse().unwrap();
        assert_eq!(u32::from(ip) & 1, 0);
        assert_eq!(u32::from(gw), u32::from(ip) + 1);
        assert!(net.contains(ip) && net.contains(gw), "{ip} inside PRIVATE_CIDR");
        assert!(blocks.insert(ip), "{ip} given twice");
        assert_eq!(
            (ar["TYPE"].as_str(), ar["SIZE"].as_str(), ar["IPAM_MAD"].as_str()),
            ("IP4", "1", "scaleway_fip")
        );
        assert_eq!(ar["NETWORK_MASK"], "255.255.255.254");
        assert_eq!(ar["SCALEWAY_ZONE"], "fr-par-1");
        let fip = &fips[&ar["SCALEWAY_IP_ID"]];
        assert_eq!(fip["ip_address"].as_str().unwrap(), ar["EXTERNAL_IP"]);
        let tags: Vec<&str> = fip["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert!(
            tags.contains(&"opennebula") && tags.contains(&"one-scaleway-ipam"),
            "{tags:?}"
        );
        assert!(
            tags.contains(&format!("one-scaleway-block={ip}/31").as_str()),
            "{tags:?}"
        );
        assert!(tags.iter().any(|t| t.starts_with("one-scaleway-token=")), "{tags:?}");
    }
    let started = std::time::Instant::now();
    for ar in &ars {
        let ran = bed.run("unregister_address_range", &registered(ar));
        assert_eq!(ran.code, 0, "{}", ran.stderr);
    }
    eprintln!("1000 unregistrations: {:?}", started.elapsed());
    assert_eq!(bed.fips().len(), 0, "no flexible IP of ours is left");
    assert_eq!(bed.state_file()["blocks"], json!({}), "every block is free");
}

/// oned replaces the user's range with the answer: what the user wrote and
/// the driver does not own (DNS, security groups, custom attributes) must
/// come back, while what the driver owns is the driver's, whatever the user
/// wrote there.
#[test]
fn the_answer_keeps_what_the_user_wrote() {
    let bed = Bed::new();
    let mut doc = NEW_RANGE.to_vec();
    doc.extend([
        ("DNS", "1.1.1.1 9.9.9.9"),
        ("SECURITY_GROUPS", "0,101"),
        ("DESCRIPTION", "web front"),
        ("MY_LABEL", "blue"),
        ("EXTERNAL_IP", "203.0.113.9"),
        ("SCALEWAY_IP_ID", "00000000-0000-4000-8000-000000000000"),
    ]);
    let ar = answered(&bed.run("register_address_range", &request(&doc)));
    assert_eq!(ar["DNS"], "1.1.1.1 9.9.9.9");
    assert_eq!(ar["SECURITY_GROUPS"], "0,101");
    assert_eq!(ar["DESCRIPTION"], "web front");
    assert_eq!(ar["MY_LABEL"], "blue");
    assert_eq!(ar["IPAM_MAD"], "scaleway_fip");
    let fip = &bed.fips()[0];
    assert_eq!(
        ar["EXTERNAL_IP"],
        fip["ip_address"].as_str().unwrap(),
        "ours, not the user's"
    );
    assert_eq!(
        ar["SCALEWAY_IP_ID"],
        fip["id"].as_str().unwrap(),
        "ours, not the user's"
    );
    let t = Template::parse(&bed.run("register_address_range", &request(&doc)).stdout).unwrap();
    let keys: Vec<&str> = t.vector_named("AR").unwrap().iter().map(|(k, _)| k.as_str()).collect();
    let mut unique = keys.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "no attribute twice: {keys:?}");
}

#[test]
fn concurrent_registrations_get_distinct_blocks() {
    let bed = Bed::new();
    let outputs: Vec<Ran> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|_| s.spawn(|| bed.run("register_address_range", &request(NEW_RANGE))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ips: BTreeSet<String> = outputs.iter().map(|r| answered(r)["IP"].clone()).collect();
    assert_eq!(ips.len(), 20);
    assert_eq!(bed.fips().len(), 20);
}

#[test]
fn unregistering_what_is_gone_succeeds_and_an_attached_ip_is_detached_first() {
    let bed = Bed::new();
    let ar = answered(&bed.run("register_address_range", &request(NEW_RANGE)));
    // delete it behind our back: unregister still succeeds
    let client_del = bed.emu.state();
    assert_eq!(client_del["flexible_ips"].as_array().unwrap().len(), 1);
    let first = bed.run("unregister_address_range", &registered(&ar));
    assert_eq!(first.code, 0, "{}", first.stderr);
    let again = bed.run("unregister_address_range", &registered(&ar));
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("already gone"), "{}", again.stderr);
}

/// A range whose `SCALEWAY_IP_ID` and `EXTERNAL_IP` name a flexible IP
/// that is not its own (another range's, or one OpenNebula does not
/// manage) is refused: nothing is detached or deleted at Scaleway.
#[test]
fn unregistering_a_range_that_names_a_flexible_ip_not_its_own_is_refused() {
    let bed = Bed::new();
    let a = answered(&bed.run("register_address_range", &request(NEW_RANGE)));
    let b = answered(&bed.run("register_address_range", &request(NEW_RANGE)));
    let env = bed.env();
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let client = scaleway::Client::new(scaleway::resolve(&get, None).unwrap(), scaleway::Options::default()).unwrap();
    let zone = scaleway::Zone::new("fr-par-1").unwrap();
    let new = scaleway::flexible_ip::NewFlexibleIp {
        project_id: PROJECT.into(),
        tags: vec!["customer-web".into()],
        ..Default::default()
    };
    let foreign = client.create_fip(&zone, &new, "t-foreign").unwrap();
    for (what, id, address, refusal) in [
        (
            "another range's",
            b["SCALEWAY_IP_ID"].clone(),
            b["EXTERNAL_IP"].clone(),
            "belongs to private block",
        ),
        (
            "not ours",
            foreign.id.clone(),
            foreign.ip_address.clone(),
            "is not tagged one-scaleway-ipam",
        ),
    ] {
        let mut edited = a.clone();
        edited.insert("SCALEWAY_IP_ID".into(), id);
        edited.insert("EXTERNAL_IP".into(), address);
        bed.emu.clear_calls();
        let ran = bed.run("unregister_address_range", &registered(&edited));
        assert_eq!(ran.code, 1, "{what}: {}", ran.stderr);
        assert!(
            ran.stderr.contains(refusal) && ran.stderr.contains("nothing was changed at Scaleway"),
            "{what}: {}",
            ran.stderr
        );
        assert!(
            bed.emu.calls().iter().all(|c| c["method"] == "GET"),
            "{what}: {:#?}",
            bed.emu.calls()
        );
    }
    assert_eq!(bed.fips().len(), 3, "every flexible IP is still there");
    for ar in [&a, &b] {
        let ran = bed.run("unregister_address_range", &registered(ar));
        assert_eq!(ran.code, 0, "{}", ran.stderr);
    }
    assert_eq!(bed.fips().len(), 1, "only the foreign one is left");
}

#[test]
fn ipv6_ranges_route_the_flexible_prefix() {
    let bed = Bed::new();
    let mut doc = NEW_RANGE.to_vec();
    doc.push(("SCALEWAY_IP_TYPE", "ipv6"));
    let ar = answered(&bed.run("register_address_range", &request(&doc)));
    assert_eq!(ar["TYPE"], "IP6_STATIC");
    assert_eq!(ar["PREFIX_LENGTH"], "64");
    let prefix: std::net::Ipv6Addr = ar["EXTERNAL_IP"].parse().expect("EXTERNAL_IP is an address, no /64");
    assert_eq!(
        u128::from(prefix) & ((1u128 << 64) - 1),
        0,
        "the first address of the /64"
    );
    let ip6: std::net::Ipv6Addr = ar["IP6"].parse().unwrap();
    assert_eq!(u128::from(ip6), u128::from(prefix) | 2);
    assert!(!ar.contains_key("IP"), "no private IPv4 block for an IPv6 range");
    let ran = bed.run("unregister_address_range", &registered(&ar));
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(bed.fips().is_empty());
}

/// Every fault kind on every Scaleway call of register and unregister:
/// the action succeeds or fails with a clear message, and no flexible IP is
/// left that no range owns.
/// oned drops an IPAM answer after 90 s: an action ends within its budget
/// (ONE_SCALEWAY_IPAM_BUDGET, 60 s by default), failing with nothing left
/// behind, whatever Scaleway does: endless 429s (which the retries would
/// otherwise wait out for a minute here) or an answer that never comes (a
/// request would otherwise wait its 30 s timeout).
#[test]
fn every_action_ends_within_its_budget() {
    for (what, rule) in [
        (
            "429s",
            json!({"kind": "rate_limit", "probability": 1.0, "method": "POST", "path": FIPS}),
        ),
        (
            "a slow API",
            json!({"kind": "delay", "seconds": 20.0, "probability": 1.0, "method": "GET", "path": FIPS}),
        ),
    ] {
        let bed = Bed::new();
        bed.emu.add_fault(&rule).unwrap();
        let mut env = bed.env();
        env.retain(|(k, _)| !k.starts_with("ONE_SCALEWAY_RETRY") && k != "ONE_SCALEWAY_TIMEOUT");
        env.extend([
            ("ONE_SCALEWAY_IPAM_BUDGET".to_owned(), "3".to_owned()),
            ("ONE_SCALEWAY_RETRY_BASE_MS".to_owned(), "2000".to_owned()),
            ("ONE_SCALEWAY_TIMEOUT".to_owned(), "30".to_owned()),
        ]);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let started = std::time::Instant::now();
        let ran = run_program_env(
            &bed.actions.join("register_address_range"),
            &["1"],
            &encode(&request(NEW_RANGE)),
            &env,
        );
        let took = started.elapsed();
        bed.emu.clear_faults();
        assert_ne!(ran.code, 0, "{what}: {ran:?}");
        assert_eq!(ran.error_lines().len(), 1, "{what}: {}", ran.stderr);
        assert!(
            took < std::time::Duration::from_secs(6),
            "{what}: took {took:?}, budget 3 s"
        );
        assert!(bed.fips().is_empty(), "{what}: {:?}", bed.fips());
    }
}

#[test]
fn faults_never_leak_a_flexible_ip() {
    let kinds = [
        json!({"kind": "rate_limit", "times": 2}),
        json!({"kind": "internal_error", "times": 1}),
        json!({"kind": "upstream_error", "status": 502, "times": 1}),
        json!({"kind": "delay", "seconds": 2.5, "times": 1}),
        json!({"kind": "reset_mid_body", "times": 1}),
        json!({"kind": "drop", "times": 1}),
        json!({"kind": "commit_then_error", "times": 1}),
        json!({"kind": "commit_then_drop", "times": 1}),
        json!({"kind": "internal_error", "probability": 1.0}),
    ];
    let routes = [
        ("POST", FIPS.to_owned()),
        ("GET", FIPS.to_owned()),
        ("GET", format!("{FIPS}/*")),
        ("DELETE", format!("{FIPS}/*")),
    ];
    for (method, path) in &routes {
        for kind in &kinds {
            let bed = Bed::new();
            let mut rule = kind.clone();
            rule["method"] = json!(method);
            rule["path"] = json!(path);
            // register under the fault
            bed.emu.add_fault(&rule).unwrap();
            let reg = bed.run("register_address_range", &request(NEW_RANGE));
            bed.emu.clear_faults();
            let what = format!("register with {rule}");
            if reg.code != 0 {
                assert_eq!(reg.stdout, "", "{what}");
                assert_eq!(reg.error_lines().len(), 1, "{what}: {}", reg.stderr);
                assert!(
                    bed.fips().is_empty(),
                    "{what}: a failed registration leaves no flexible IP: {:?}",
                    bed.fips()
                );
                continue;
            }
            let ar = answered(&reg);
            assert_eq!(bed.fips().len(), 1, "{what}: exactly one flexible IP");
            // unregister under the same fault
            bed.emu.add_fault(&rule).unwrap();
            let unreg = bed.run("unregister_address_range", &registered(&ar));
            bed.emu.clear_faults();
            let what = format!("unregister with {rule}");
            if unreg.code != 0 {
                assert_eq!(unreg.error_lines().len(), 1, "{what}: {}", unreg.stderr);
                // oned keeps the range: retrying must finish the job.
                let retry = bed.run("unregister_address_range", &registered(&ar));
                assert_eq!(retry.code, 0, "{what}, retried: {}", retry.stderr);
            }
            assert!(bed.fips().is_empty(), "{what}: the flexible IP is gone");
        }
    }
}

/// If the answer cannot reach oned, the flexible IP and the block are released.
#[test]
fn an_undeliverable_answer_releases_everything() {
    let bed = Bed::new();
    struct Closed;
    impl std::io::Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let env = opennebula::driver::Env::from_pairs(bed.env());
    let mut err = Vec::new();
    let doc = encode(&request(NEW_RANGE));
    let io = opennebula::driver::Io {
        stdin: &mut doc.as_slice(),
        stdout: &mut Closed,
        stderr: &mut err,
    };
    let argv = vec![
        "/var/lib/one/remotes/ipam/scaleway_fip/register_address_range".into(),
        "7".into(),
    ];
    let code = scaleway_ipam::main_with(argv, &env, io);
    let err = String::from_utf8(err).unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the action was undone"), "{err}");
    assert!(bed.fips().is_empty(), "{:?}", bed.fips());
    assert_eq!(bed.state_file()["blocks"], json!({}));
}

#[test]
fn gc_finds_and_deletes_orphans_and_the_state_rebuilds_from_tags() {
    let bed = Bed::new();
    let kept = answered(&bed.run("register_address_range", &request(NEW_RANGE)));
    let orphan = answered(&bed.run("register_address_range", &request(NEW_RANGE)));
    // Lose the state file: the next registration rebuilds it from the tags and reuses no block.
    std::fs::remove_file(bed.dir.path().join("state/ipam-blocks.json")).unwrap();
    let third = answered(&bed.run("register_address_range", &request(NEW_RANGE)));
    let ips: BTreeSet<&str> = [&kept, &orphan, &third].iter().map(|a| a["IP"].as_str()).collect();
    assert_eq!(ips.len(), 3, "the rebuilt state knew the blocks in use");
    // Make one an orphan: its block forgotten by the state.
    let mut state = bed.state_file();
    state["blocks"]
        .as_object_mut()
        .unwrap()
        .remove(&format!("{}/31", orphan["IP"]));
    std::fs::write(bed.dir.path().join("state/ipam-blocks.json"), state.to_string()).unwrap();
    let env = bed.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let list = run_program_env(Path::new(BIN), &["gc"], b"", &env);
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert!(list.stdout.contains(&orphan["SCALEWAY_IP_ID"]), "{}", list.stdout);
    assert!(!list.stdout.contains(&kept["SCALEWAY_IP_ID"]), "{}", list.stdout);
    assert_eq!(bed.fips().len(), 3, "gc alone deletes nothing");
    let delete = run_program_env(Path::new(BIN), &["gc", "--delete"], b"", &env);
    assert_eq!(delete.code, 0, "{}", delete.stderr);
    assert_eq!(bed.fips().len(), 2);
    let rebuilt = run_program_env(Path::new(BIN), &["rebuild-state"], b"", &env);
    assert_eq!(rebuilt.code, 0, "{}", rebuilt.stderr);
    assert!(rebuilt.stdout.starts_with("2 private blocks"), "{}", rebuilt.stdout);
}

#[test]
fn a_provision_range_takes_its_credentials_from_oned() {
    let bed = Bed::new();
    // Documents captured from a real oned (oneprovision 6.x shapes).
    let provider = test_support::fixture("document/oneprovision-provider.xml")
        .replace("5a4db0c5-0000-4000-8000-5ec7e75ec7e2", SECRET)
        .replace("5a4db0c5-0000-4000-8000-0000000000e2", PROJECT)
        .replace("\"zone\":\"fr-par-2\"", "\"zone\":\"fr-par-1\"");
    let oned =
        test_support::StubOned::start(
            move |method, params| match (method, params.first().map(String::as_str)) {
                ("one.document.info", Some("3")) => Ok(test_support::fixture("document/oneprovision-provision.xml")),
                ("one.document.info", Some("2")) => Ok(provider.clone()),
                ("one.documentpool.info", _) => Ok(format!("<DOCUMENT_POOL>{provider}</DOCUMENT_POOL>")),
                _ => Err(("not in the stub".into(), 1)),
            },
        );
    let auth = bed.dir.path().join("one_auth");
    std::fs::write(&auth, "oneadmin:opennebula\n").unwrap();
    let env: Vec<(String, String)> = vec![
        ("SCW_API_URL".into(), bed.emu.url()),
        ("ONE_XMLRPC".into(), oned.url.clone()),
        ("ONE_AUTH".into(), auth.display().to_string()),
        (
            "ONE_SCALEWAY_STATE_DIR".into(),
            bed.dir.path().join("state").display().to_string(),
        ),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut doc = NEW_RANGE.to_vec();
    doc.push(("PROVISION_ID", "3"));
    let ran = run_program_env(
        &bed.actions.join("register_address_range"),
        &["1"],
        &encode(&request(&doc)),
        &env,
    );
    let ar = answered(&ran);
    assert_eq!(ar["PROVISION_ID"], "3");
    let fip = &bed.fips()[0];
    assert_eq!(fip["project_id"], PROJECT);
    assert!(fip["tags"].as_array().unwrap().contains(&json!("one-provision=3")));
}

#[test]
fn an_exhausted_private_cidr_is_refused_and_leaks_nothing() {
    let bed = Bed::new();
    let mut doc = NEW_RANGE.to_vec();
    doc.push(("PRIVATE_CIDR", "192.168.50.0/29"));
    answered(&bed.run("register_address_range", &request(&doc)));
    answered(&bed.run("register_address_range", &request(&doc)));
    let third = bed.run("register_address_range", &request(&doc));
    assert_eq!(third.code, 1);
    assert_eq!(
        third.error_lines(),
        vec!["PRIVATE_CIDR 192.168.50.0/29 is exhausted (2 ranges): give this range a larger or another PRIVATE_CIDR"]
    );
    assert_eq!(bed.fips().len(), 2, "no flexible IP was created for the refused range");
    for (cidr, expected) in [
        ("192.168.50.0/30", "is too small"),
        ("192.168.50.1/29", "has host bits set"),
        ("8.8.8.0/24", "is not private"),
    ] {
        let mut doc = NEW_RANGE.to_vec();
        doc.push(("PRIVATE_CIDR", cidr));
        let ran = bed.run("register_address_range", &request(&doc));
        assert_eq!(ran.code, 1);
        assert!(ran.error_lines()[0].contains(expected), "{cidr}: {}", ran.stderr);
    }
    assert_eq!(bed.fips().len(), 2);
}

#[test]
fn leases_other_than_the_range_address_are_refused() {
    let bed = Bed::new();
    let ar = answered(&bed.run("register_address_range", &request(NEW_RANGE)));
    let with_address = |address: &str| registered(&ar).replace("</AR>", &format!("</AR><ADDRESS>{address}</ADDRESS>"));
    let ok = bed.run("get_address", &with_address("<SIZE>1</SIZE>"));
    assert_eq!(
        ok.stdout,
        format!("ADDRESS = [\n  IP = \"{}\",\n  SIZE = \"1\"\n]\n", ar["IP"])
    );
    let two = bed.run("get_address", &with_address("<SIZE>2</SIZE>"));
    assert_eq!(
        two.error_lines(),
        vec!["a scaleway range has exactly one address: cannot lease 2 addresses from it"]
    );
    let mine = bed.run(
        "allocate_address",
        &with_address(&format!("<IP>{}</IP><SIZE>1</SIZE>", ar["IP"])),
    );
    assert_eq!((mine.code, mine.stdout.as_str()), (0, ""));
    let other = bed.run("allocate_address", &with_address("<IP>10.9.9.9</IP><SIZE>1</SIZE>"));
    assert_eq!(other.code, 1);
    assert!(
        other.error_lines()[0].contains("10.9.9.9 is not in this range"),
        "{}",
        other.stderr
    );
    let used = registered(&ar).replace(
        "</AR>",
        "<USED_LEASES>1</USED_LEASES></AR><ADDRESS><SIZE>1</SIZE></ADDRESS>",
    );
    let busy = bed.run("get_address", &used);
    assert!(busy.error_lines()[0].contains("already leased"), "{}", busy.stderr);
}

/// Starts an action as oned does and SIGKILLs it after `after`.
fn killed(bed: &Bed, action: &str, document: &str, after: std::time::Duration) {
    use std::io::Write;
    let mut cmd = std::process::Command::new(bed.actions.join(action));
    cmd.arg("1203").env("SCW_CONFIG_PATH", "/nonexistent/config.yaml");
    for (k, v) in bed.env() {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&encode(document)).unwrap();
    std::thread::sleep(after);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// A registration killed while its create is in flight leaves a flexible IP
/// and a pending reservation; the next registration repairs both.
#[test]
fn a_registration_killed_mid_way_is_repaired_by_the_next_one() {
    let bed = Bed::new();
    for (kind, document) in [
        ("ipv4", request(NEW_RANGE)),
        ("ipv6", {
            let mut doc = NEW_RANGE.to_vec();
            doc.push(("SCALEWAY_IP_TYPE", "ipv6"));
            request(&doc)
        }),
    ] {
        bed.emu
            .add_fault(&json!({"kind": "delay", "seconds": 1.0, "method": "POST", "path": FIPS}))
            .unwrap();
        killed(
            &bed,
            "register_address_range",
            &document,
            std::time::Duration::from_millis(400),
        );
        std::thread::sleep(std::time::Duration::from_millis(900)); // the create lands after all
        assert_eq!(bed.fips().len(), 1, "{kind}: the killed registration's IP exists");
        let ar = answered(&bed.run("register_address_range", &document));
        let fips = bed.fips();
        assert_eq!(
            fips.len(),
            1,
            "{kind}: the crashed registration's IP was released: {fips:?}"
        );
        assert_eq!(fips[0]["id"].as_str(), Some(ar["SCALEWAY_IP_ID"].as_str()), "{kind}");
        let state = bed.state_file();
        let pending = state.to_string().matches("\"pending\"").count();
        assert_eq!(pending, 0, "{kind}: no reservation is left pending: {state}");
        assert_eq!(bed.run("unregister_address_range", &registered(&ar)).code, 0);
        assert!(bed.fips().is_empty(), "{kind}");
    }
}

/// An unregistration killed in flight is finished by running it again.
#[test]
fn an_unregistration_killed_mid_way_is_finished_by_the_next_one() {
    let bed = Bed::new();
    let ar = answered(&bed.run("register_address_range", &request(NEW_RANGE)));
    bed.emu
        .add_fault(&json!({"kind": "delay", "seconds": 1.0, "method": "GET", "path": format!("{FIPS}/*")}))
        .unwrap();
    killed(
        &bed,
        "unregister_address_range",
        &registered(&ar),
        std::time::Duration::from_millis(300),
    );
    let again = bed.run("unregister_address_range", &registered(&ar));
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(bed.fips().is_empty());
    assert_eq!(bed.state_file()["blocks"], json!({}));
}

/// gc leaves IPv6 ranges (which have no private block) alone.
#[test]
fn gc_keeps_ranges_without_a_block() {
    let bed = Bed::new();
    let mut doc = NEW_RANGE.to_vec();
    doc.push(("SCALEWAY_IP_TYPE", "ipv6"));
    let ar = answered(&bed.run("register_address_range", &request(&doc)));
    let env = bed.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let gc = run_program_env(Path::new(BIN), &["gc", "--delete"], b"", &env);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    assert_eq!(
        bed.fips().len(),
        1,
        "the IPv6 range's IP is not an orphan: {}",
        gc.stdout
    );
    // and the state rebuilt from tags knows it too
    std::fs::remove_file(bed.dir.path().join("state/ipam-blocks.json")).unwrap();
    let gc = run_program_env(Path::new(BIN), &["gc", "--delete"], b"", &env);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    assert_eq!(bed.fips().len(), 1, "{}", gc.stdout);
    assert_eq!(bed.run("unregister_address_range", &registered(&ar)).code, 0);
    assert!(bed.fips().is_empty());
}
