//! The oned stand-in's IPAM driver hook, with the real `scaleway` IPAM
//! driver against the Scaleway emulator, and with fake drivers for the
//! failures oned must handle.
//!
//! This test has its own `main` (`harness = false` in Cargo.toml): the
//! stand-in runs drivers as oned does, as programs, and this binary is
//! those programs too. Linked as `.../ipam/scaleway_fip/<action>` it is
//! `scaleway-ipam` (its library's `main_with`), as `.../ipam/fake/<action>`
//! or `.../vnm/fakevnm/<action>` a fake driver (`fake.rs`). Under any other
//! name it runs the tests below one after the other (`runner.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod fake;
mod runner;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use opennebula::driver::{Env, Io};
use opennebula::oned::{Oned, Param};
use opennebula::xml::{self, Element};
use scaleway_emulator::{Emulator, Running};
use serde_json::{Value, json};
use test_support::onedsim::{Config, OnedSim, schema};
use test_support::{TempDir, fixture, link_as};

const IPAM_ACTIONS: [&str; 5] = [
    "register_address_range",
    "unregister_address_range",
    "get_address",
    "allocate_address",
    "free_address",
];
const VNM_ACTIONS: [&str; 2] = ["vnet_create", "vnet_delete"];

const SECRET: &str = "5ec7e7aa-0000-4000-8000-5ec7e75ec7e7";
const PROJECT: &str = "564aa517-68b0-4fd7-8c8c-d21c4bcdcbd5";

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let exe = PathBuf::from(argv.first().cloned().unwrap_or_default());
    let name = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let (action, driver) = (name(Some(&exe)), name(exe.parent()));
    if IPAM_ACTIONS.contains(&action.as_str()) || VNM_ACTIONS.contains(&action.as_str()) {
        return if driver == "scaleway_fip" {
            let io = Io {
                stdin: &mut std::io::stdin().lock(),
                stdout: &mut std::io::stdout().lock(),
                stderr: &mut std::io::stderr().lock(),
            };
            ExitCode::from(scaleway_ipam::main_with(argv, &Env::from_process(), io))
        } else {
            let argument = argv.get(1).map(|a| a.to_string_lossy().into_owned());
            fake::main(&action, &argument.unwrap_or_default())
        };
    }
    runner::run(TESTS)
}

// ----------------------------------------------------------------------------
// The test bed
// ----------------------------------------------------------------------------

struct Bed {
    sim: OnedSim,
    /// The drivers, removed with the bed.
    _dir: TempDir,
    oned: Oned,
}

/// The drivers folder: this binary linked as every action of every driver.
fn drivers() -> TempDir {
    let dir = TempDir::new("onedsim-ipam");
    let exe = std::env::current_exe().unwrap();
    for driver in ["scaleway_fip", "fake"] {
        for action in IPAM_ACTIONS {
            link_as(&exe, dir.path(), &format!("ipam/{driver}/{action}"));
        }
    }
    for action in VNM_ACTIONS {
        link_as(&exe, dir.path(), &format!("vnm/fakevnm/{action}"));
    }
    std::fs::write(dir.path().join("one_auth"), "oneadmin:opennebula\n").unwrap();
    dir
}

fn bed(change: impl FnOnce(&mut Config, &Path)) -> Bed {
    let dir = drivers();
    let mut config = Config {
        ipam_dir: Some(dir.path().join("ipam")),
        driver_timeout: Duration::from_secs(30),
        ..Config::default()
    };
    change(&mut config, dir.path());
    let sim = OnedSim::start(config).unwrap();
    let oned = Oned::new(&sim.url(), "oneadmin:opennebula".into()).unwrap();
    Bed { sim, _dir: dir, oned }
}

fn emulator() -> Running {
    Emulator::start(scaleway_emulator::Options {
        speed: 0.01,
        project_ids: vec![PROJECT.into()],
        ..Default::default()
    })
    .unwrap()
}

/// The real driver's environment (credentials from the environment unless
/// `with_credentials` is false: then from oned's provision documents).
fn scaleway_env(emu: &Running, dir: &Path, with_credentials: bool) -> Vec<(String, String)> {
    let mut env = vec![
        ("SCW_API_URL".to_owned(), emu.url()),
        ("ONE_AUTH".into(), dir.join("one_auth").display().to_string()),
        ("ONE_SCALEWAY_STATE_DIR".into(), dir.join("state").display().to_string()),
        ("ONE_SCALEWAY_POLL_MS".into(), "10".into()),
        ("ONE_SCALEWAY_RETRY_BASE_MS".into(), "10".into()),
        ("ONE_SCALEWAY_TIMEOUT".into(), "5".into()),
    ];
    if with_credentials {
        env.extend([
            ("SCW_SECRET_KEY".to_owned(), SECRET.to_owned()),
            ("SCW_DEFAULT_PROJECT_ID".into(), PROJECT.into()),
            ("SCW_DEFAULT_ZONE".into(), "fr-par-1".into()),
        ]);
    }
    env
}

fn fips(emu: &Running) -> Vec<Value> {
    emu.state()["flexible_ips"].as_array().cloned().unwrap_or_default()
}

fn s(v: &str) -> Param {
    Param::Str(v.to_owned())
}

fn i(v: i64) -> Param {
    Param::Int(v)
}

impl Bed {
    fn id(&self, method: &str, params: &[Param]) -> i64 {
        let body = self
            .oned
            .call(method, params)
            .unwrap_or_else(|e| panic!("{method} {params:?}: {e}"));
        body.parse().unwrap()
    }

    fn error(&self, method: &str, params: &[Param]) -> String {
        match self.oned.call(method, params) {
            Ok(b) => panic!("{method} {params:?} succeeded: {b}"),
            Err(e) => e.0.split_once(": ").map_or(e.0.clone(), |(_, m)| m.to_owned()),
        }
    }

    fn raw_vnet(&self, id: i64) -> String {
        self.oned.call("one.vn.info", &[i(id), Param::Bool(false)]).unwrap()
    }

    fn vnet(&self, id: i64) -> Element {
        xml::parse(self.raw_vnet(id).as_bytes()).unwrap()
    }

    fn actions(&self) -> Vec<String> {
        self.sim.driver_runs().into_iter().map(|r| r.action).collect()
    }

    /// Every message sent to a driver is a valid IPAM request (or a VNET).
    fn check_messages(&self) {
        for run in self.sim.driver_runs() {
            let check = if run.message.starts_with("<VNET>") {
                schema::validate(&run.message)
            } else {
                schema::validate_ipam_request(&run.message)
            };
            check.unwrap_or_else(|e| panic!("{}: {e}\n{}", run.action, run.message));
        }
    }
}

fn text<'a>(e: &'a Element, path: &str) -> &'a str {
    e.at(path).map_or("", |x| x.text.as_str())
}

/// `one.vn.info` checked against upstream's vnet.xsd, once the range
/// attributes it does not list are removed: it lists none of the custom
/// attributes (IPAM_MAD, EXTERNAL_IP, ...) oned keeps and shows in ranges.
fn check_vnet_schema(body: &str) {
    const LISTED: [&str; 21] = [
        "AR_ID",
        "GLOBAL_PREFIX",
        "IP",
        "MAC",
        "PARENT_NETWORK_AR_ID",
        "SIZE",
        "TYPE",
        "ULA_PREFIX",
        "VN_MAD",
        "MAC_END",
        "IP_END",
        "IP6_ULA",
        "IP6_ULA_END",
        "IP6_GLOBAL",
        "IP6_GLOBAL_END",
        "IP6",
        "IP6_END",
        "PORT_START",
        "PORT_SIZE",
        "USED_LEASES",
        "LEASES",
    ];
    let mut vnet = xml::parse(body.as_bytes()).unwrap();
    for pool in vnet.children.iter_mut().filter(|c| c.name == "AR_POOL") {
        for ar in &mut pool.children {
            ar.children.retain(|c| LISTED.contains(&c.name.as_str()));
        }
    }
    schema::validate(&vnet.to_xml()).unwrap_or_else(|e| panic!("{e}\n{body}"));
}

// ----------------------------------------------------------------------------
// With the real driver and the emulator
// ----------------------------------------------------------------------------

const PUBLIC: &str = "NAME = \"edge-public\"\nVN_MAD = \"scaleway\"\nBRIDGE = \"scwpub0\"\n";
const RANGE: &str =
    "AR = [ IPAM_MAD = \"scaleway_fip\", TYPE = \"IP4\", SIZE = \"1\", PRIVATE_CIDR = \"10.77.0.0/20\" ]";

fn the_real_driver_registers_leases_and_unregisters() {
    let emu = emulator();
    let bed = bed(|c, dir| c.driver_env = scaleway_env(&emu, dir, true));
    let vnet = bed.id("one.vn.allocate", &[s(PUBLIC), i(-1)]);
    bed.id("one.vn.add_ar", &[i(vnet), s(RANGE)]);
    let v = bed.vnet(vnet);
    let ar = v.at("AR_POOL/AR").unwrap();
    let fip = &fips(&emu)[0];
    assert_eq!(text(ar, "EXTERNAL_IP"), fip["ip_address"].as_str().unwrap());
    assert_eq!(text(ar, "SCALEWAY_IP_ID"), fip["id"].as_str().unwrap());
    assert_eq!(
        (text(ar, "AR_ID"), text(ar, "PRIVATE_CIDR"), text(ar, "IPAM_MAD")),
        ("0", "10.77.0.0/20", "scaleway_fip")
    );
    let ip: std::net::Ipv4Addr = text(ar, "IP").parse().unwrap();
    let o = ip.octets();
    assert_eq!(
        text(ar, "MAC"),
        format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
    );
    check_vnet_schema(&bed.raw_vnet(vnet));

    let lease = bed.sim.lease(vnet, 0, 42).unwrap();
    assert_eq!(lease.ip, Some(ip.to_string()));
    assert_eq!(text(&bed.vnet(vnet), "AR_POOL/AR/USED_LEASES"), "1");
    check_vnet_schema(&bed.raw_vnet(vnet));
    assert_eq!(
        bed.error("one.vn.rm_ar", &[i(vnet), i(0)]),
        "[one.vn.rm_ar] Address Range has leases in use (error code 8192)"
    );
    let second = bed.sim.lease(vnet, 0, 43).unwrap_err();
    assert!(
        second.contains("already leased"),
        "the driver refuses a second lease: {second}"
    );
    bed.sim.release(vnet, 0, &lease.mac).unwrap();
    bed.id("one.vn.rm_ar", &[i(vnet), i(0)]);
    assert!(fips(&emu).is_empty(), "unregistered: {:?}", fips(&emu));
    assert_eq!(
        bed.actions(),
        [
            "scaleway_fip/register_address_range",
            "scaleway_fip/get_address",
            "scaleway_fip/get_address",
            "scaleway_fip/free_address",
            "scaleway_fip/unregister_address_range"
        ]
    );
    bed.check_messages();
}

fn a_new_network_s_ranges_are_registered_and_its_deletion_unregisters_them() {
    let emu = emulator();
    let bed = bed(|c, dir| c.driver_env = scaleway_env(&emu, dir, true));
    let template = "NAME = \"edge-public\"\nVN_MAD = \"scaleway\"\nIPAM_MAD = \"scaleway_fip\"\n\
        AR = [ TYPE = \"IP4\", SIZE = \"1\", PRIVATE_CIDR = \"10.77.0.0/20\" ]\n\
        AR = [ TYPE = \"IP4\", SIZE = \"1\", PRIVATE_CIDR = \"10.77.0.0/20\" ]\n";
    let vnet = bed.id("one.vn.allocate", &[s(template), i(-1)]);
    let v = bed.vnet(vnet);
    assert_eq!(text(&v, "STATE"), "1");
    let ars: Vec<&Element> = v.at("AR_POOL").unwrap().children_named("AR").collect();
    assert_eq!(ars.len(), 2);
    assert!(
        ars.iter().all(|a| text(a, "IPAM_MAD") == "scaleway_fip"),
        "inherited from the network"
    );
    assert_eq!(fips(&emu).len(), 2);
    assert_eq!(bed.id("one.vn.delete", &[i(vnet)]), vnet);
    assert!(bed.sim.vnets().is_empty());
    assert!(fips(&emu).is_empty());
    assert_eq!(
        bed.actions(),
        [
            "scaleway_fip/register_address_range",
            "scaleway_fip/register_address_range",
            "scaleway_fip/unregister_address_range",
            "scaleway_fip/unregister_address_range"
        ]
    );
    bed.check_messages();
}

/// The driver reads the provision's credentials from the stand-in while
/// the call that runs it waits: no deadlock.
fn a_provision_range_reads_its_credentials_back_during_the_call() {
    let emu = emulator();
    let provider = fixture("document/oneprovision-provider.xml")
        .replace("5a4db0c5-0000-4000-8000-5ec7e75ec7e2", SECRET)
        .replace("5a4db0c5-0000-4000-8000-0000000000e2", PROJECT)
        .replace("\"zone\":\"fr-par-2\"", "\"zone\":\"fr-par-1\"");
    let bed = bed(|c, dir| {
        c.driver_env = scaleway_env(&emu, dir, false);
        c.documents = vec![fixture("document/oneprovision-provision.xml"), provider];
    });
    let vnet = bed.id("one.vn.allocate", &[s(PUBLIC), i(-1)]);
    let started = Instant::now();
    bed.id(
        "one.vn.add_ar",
        &[
            i(vnet),
            s("AR = [ IPAM_MAD = scaleway_fip, TYPE = IP4, SIZE = 1, PROVISION_ID = 3 ]"),
        ],
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    let methods: Vec<String> = bed.sim.calls().into_iter().map(|c| c.0).collect();
    assert_eq!(
        methods,
        [
            "one.vn.allocate",
            "one.vn.add_ar",
            "one.document.info",
            "one.documentpool.info",
            // the provider found by name is read again, decrypted
            "one.document.info"
        ]
    );
    let fip = &fips(&emu)[0];
    assert_eq!(fip["project_id"], PROJECT);
    assert!(fip["tags"].as_array().unwrap().contains(&json!("one-provision=3")));
    assert_eq!(text(&bed.vnet(vnet), "AR_POOL/AR/PROVISION_ID"), "3");
}

// ----------------------------------------------------------------------------
// With the fake drivers
// ----------------------------------------------------------------------------

const FAKE_NET: &str = "NAME = \"n\"\nVN_MAD = \"scaleway\"\n";

fn fake_range(extra: &str) -> String {
    format!("AR = [ IPAM_MAD = \"fake\", TYPE = \"IP4\", SIZE = \"1\"{extra} ]")
}

fn the_answer_is_merged_over_the_range_and_checked_like_oned() {
    let bed = bed(|_, _| ());
    let vnet = bed.id("one.vn.allocate", &[s(FAKE_NET), i(-1)]);
    bed.id(
        "one.vn.add_ar",
        &[i(vnet), s(&fake_range(", FAKE_OVERRIDE = request, KEPT = me"))],
    );
    let attrs = &bed.sim.vnets()[0].ars[0].attrs;
    let get = |k: &str| attrs.get(k).map(String::as_str);
    assert_eq!(
        (get("FAKE_ANSWERED"), get("FAKE_OVERRIDE"), get("KEPT"), get("IP")),
        (Some("yes"), Some("answer"), Some("me"), Some("10.9.0.2"))
    );
    assert_eq!(
        bed.error("one.vn.add_ar", &[i(vnet), s(&fake_range(", FAKE_REGISTER = bad"))]),
        "[one.vn.add_ar] Wrong or empty IP attribute (error code 8192)"
    );
    assert_eq!(bed.sim.vnets()[0].ars.len(), 1);
    assert!(
        !bed.actions().iter().any(|a| a.ends_with("unregister_address_range")),
        "like oned, a registered range that fails its checks is not unregistered"
    );
    let lease = bed.sim.lease(vnet, 0, 7).unwrap();
    assert_eq!(lease.ip.as_deref(), Some("10.9.0.2"));
    bed.sim.release(vnet, 0, &lease.mac).unwrap();
    bed.id("one.vn.rm_ar", &[i(vnet), i(0)]);
    bed.check_messages();
}

fn a_refused_registration_fails_add_ar_with_the_driver_s_line() {
    let bed = bed(|_, _| ());
    let vnet = bed.id("one.vn.allocate", &[s(FAKE_NET), i(-1)]);
    assert_eq!(
        bed.error("one.vn.add_ar", &[i(vnet), s(&fake_range(", FAKE_REGISTER = fail"))]),
        "[one.vn.add_ar] no flexible IP left in fr-par-1 (error code 8192)"
    );
    assert!(bed.sim.vnets()[0].ars.is_empty());
    bed.id("one.vn.add_ar", &[i(vnet), s(&fake_range(""))]);
    assert_eq!(bed.sim.vnets()[0].ars[0].id, 0, "the refused range took no id");
    assert!(
        bed.error(
            "one.vn.add_ar",
            &[i(vnet), s("AR = [ IPAM_MAD = nothere, TYPE = IP4, SIZE = 1 ]")]
        )
        .contains("ipam/nothere/register_address_range: No such file or directory")
    );
}

fn a_new_network_with_a_refused_range_is_left_in_error() {
    let bed = bed(|_, _| ());
    let template = format!(
        "{FAKE_NET}{}\n{}\n{}\n",
        fake_range(""),
        fake_range(", FAKE_REGISTER = fail"),
        fake_range("")
    );
    let vnet = bed.id("one.vn.allocate", &[s(&template), i(-1)]);
    let v = bed.vnet(vnet);
    assert_eq!(text(&v, "STATE"), "5", "ERROR");
    assert_eq!(text(&v, "TEMPLATE/ERROR/MESSAGE"), "no flexible IP left in fr-par-1");
    assert!(!text(&v, "TEMPLATE/ERROR/TIMESTAMP").is_empty());
    assert_eq!(
        v.at("AR_POOL").unwrap().children_named("AR").count(),
        1,
        "the range before is kept"
    );
    assert_eq!(
        bed.error("one.vn.add_ar", &[i(vnet), s(&fake_range(""))]),
        "[one.vn.add_ar] Could not add Address Range, Virtual Network is in wrong state: ERROR (error code 2048)"
    );
    assert_eq!(
        bed.id("one.vn.delete", &[i(vnet)]),
        vnet,
        "a network in ERROR can be deleted"
    );
}

fn a_refused_unregistration_keeps_the_range() {
    let bed = bed(|_, _| ());
    let vnet = bed.id("one.vn.allocate", &[s(FAKE_NET), i(-1)]);
    bed.id("one.vn.add_ar", &[i(vnet), s(&fake_range(""))]);
    bed.id("one.vn.add_ar", &[i(vnet), s(&fake_range(", FAKE_UNREGISTER = fail"))]);
    assert_eq!(
        bed.error("one.vn.rm_ar", &[i(vnet), i(1)]),
        "[one.vn.rm_ar] the flexible IP is locked (error code 8192)"
    );
    assert_eq!(bed.sim.vnets()[0].ars.len(), 2);
    assert_eq!(
        bed.error("one.vn.delete", &[i(vnet)]),
        "[one.vn.delete] Cannot delete virtual network. the flexible IP is locked (error code 2048)"
    );
    let left: Vec<i64> = bed.sim.vnets()[0].ars.iter().map(|a| a.id).collect();
    assert_eq!(
        left,
        [1],
        "the range unregistered before the failure is gone, the refused one stays"
    );
    bed.id("one.vn.rm_ar", &[i(vnet), i(1), Param::Bool(true)]);
    assert!(bed.sim.vnets()[0].ars.is_empty(), "force removes it anyway");
    bed.id("one.vn.delete", &[i(vnet)]);
    bed.check_messages();
}

fn calls_are_answered_while_a_driver_runs() {
    let bed = bed(|_, _| ());
    let vnet = bed.id("one.vn.allocate", &[s(FAKE_NET), i(-1)]);
    let url = bed.sim.url();
    let slow = std::thread::spawn(move || {
        let oned = Oned::new(&url, "oneadmin:x".into()).unwrap();
        oned.call("one.vn.add_ar", &[i(vnet), s(&fake_range(", FAKE_SLEEP_MS = 3000"))])
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let v = bed.vnet(vnet);
    bed.id("one.host.allocate", &[s("h"), s("kvm"), s("kvm"), i(-1)]);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(
        v.at("AR_POOL/AR").is_none(),
        "the range is not there before its registration ends"
    );
    assert!(!slow.is_finished());
    slow.join().unwrap().unwrap();
    assert_eq!(bed.sim.vnets()[0].ars.len(), 1);
}

fn a_driver_over_its_time_is_killed() {
    let bed = bed(|c, _| c.driver_timeout = Duration::from_millis(300));
    let vnet = bed.id("one.vn.allocate", &[s(FAKE_NET), i(-1)]);
    let started = Instant::now();
    assert_eq!(
        bed.error("one.vn.add_ar", &[i(vnet), s(&fake_range(", FAKE_SLEEP_MS = 5000"))]),
        "[one.vn.add_ar] Timeout executing register_address_range (error code 8192)"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(bed.sim.driver_runs()[0].code, None);
}

fn the_network_driver_creates_and_deletes_networks() {
    let bed = bed(|c, dir| c.vnm_dir = Some(dir.join("vnm")));
    let net = |name: &str, extra: &str| format!("NAME = {name}\nVN_MAD = fakevnm\n{extra}");
    let ok = bed.id("one.vn.allocate", &[s(&net("a", &fake_range(""))), i(-1)]);
    let v = bed.vnet(ok);
    assert_eq!((text(&v, "STATE"), text(&v, "TEMPLATE/CREATED_BY")), ("1", "fakevnm"));
    let failed = bed.id("one.vn.allocate", &[s(&net("b", "FAKE_VNET = fail\n")), i(-1)]);
    let v = bed.vnet(failed);
    assert_eq!(
        (text(&v, "STATE"), text(&v, "TEMPLATE/ERROR/MESSAGE")),
        ("5", "cannot create the network")
    );
    bed.id("one.vn.delete", &[i(ok)]);
    assert_eq!(
        bed.actions(),
        [
            "fakevnm/vnet_create",
            "fake/register_address_range",
            "fakevnm/vnet_create",
            "fake/unregister_address_range",
            "fakevnm/vnet_delete"
        ]
    );
    let create = &bed.sim.driver_runs()[0];
    assert_eq!(create.argument, ok.to_string());
    assert!(create.message.contains("<STATE>2</STATE>"), "sent in LOCK_CREATE");
    bed.check_messages();
}

// ----------------------------------------------------------------------------
// The tests, run by `runner`
// ----------------------------------------------------------------------------

const TESTS: &[(&str, fn())] = &[
    (
        "the_real_driver_registers_leases_and_unregisters",
        the_real_driver_registers_leases_and_unregisters,
    ),
    (
        "a_new_network_s_ranges_are_registered_and_its_deletion_unregisters_them",
        a_new_network_s_ranges_are_registered_and_its_deletion_unregisters_them,
    ),
    (
        "a_provision_range_reads_its_credentials_back_during_the_call",
        a_provision_range_reads_its_credentials_back_during_the_call,
    ),
    (
        "the_answer_is_merged_over_the_range_and_checked_like_oned",
        the_answer_is_merged_over_the_range_and_checked_like_oned,
    ),
    (
        "a_refused_registration_fails_add_ar_with_the_driver_s_line",
        a_refused_registration_fails_add_ar_with_the_driver_s_line,
    ),
    (
        "a_new_network_with_a_refused_range_is_left_in_error",
        a_new_network_with_a_refused_range_is_left_in_error,
    ),
    (
        "a_refused_unregistration_keeps_the_range",
        a_refused_unregistration_keeps_the_range,
    ),
    (
        "calls_are_answered_while_a_driver_runs",
        calls_are_answered_while_a_driver_runs,
    ),
    ("a_driver_over_its_time_is_killed", a_driver_over_its_time_is_killed),
    (
        "the_network_driver_creates_and_deletes_networks",
        the_network_driver_creates_and_deletes_networks,
    ),
];
