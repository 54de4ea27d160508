//! The frontend half of driver `scaleway` (`post`, `clean`) against the
//! emulator and a stub oned, with a recording stand-in for SSH.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opennebula::attr::HostName;
use opennebula::driver::{Env, Io, Level, Log};
use opennebula::vm::Vm;
use scaleway::baremetal::NewServer;
use scaleway::flexible_ip::{FlexibleIp, NewFlexibleIp};
use scaleway::{Client, Options, RetryPolicy, WaitPolicy, Zone};
use scaleway_emulator::{Emulator, Running};
use scaleway_vnm::frontend::{self, HostRunner};
use serde_json::json;
use test_support::{StubOned, TempDir};

const SECRET: &str = "5ec7e7aa-0000-4000-8000-5ec7e75ec7e7";
const PROJECT: &str = "564aa517-68b0-4fd7-8c8c-d21c4bcdcbd5";

struct Recorder(Mutex<Vec<(String, String)>>);

impl HostRunner for Recorder {
    fn run(&self, host: &HostName, action: &str, _stdin: &[u8]) -> anyhow::Result<()> {
        self.0.lock().unwrap().push((host.to_string(), action.to_owned()));
        Ok(())
    }
}

struct Bed {
    emu: Running,
    client: Client,
    servers: [String; 2],
    fips: Vec<FlexibleIp>,
    _oned: StubOned,
    _dir: TempDir,
    env: Env,
    /// What the stub oned answers for `one.vm.info 42` (no history at first).
    vm_info: Arc<Mutex<String>>,
    /// What the stub oned answers for `one.vn.info 5`.
    vnet_info: Arc<Mutex<opennebula::xml::Element>>,
}

impl Bed {
    /// Edits range `ar` of network 5 as a user who could write its
    /// attributes would: `SCALEWAY_IP_ID` and `EXTERNAL_IP` name `fip`.
    fn point_range_at(&self, ar: usize, fip: &FlexibleIp) {
        let mut vnet = self.vnet_info.lock().unwrap();
        let pool = vnet.children.iter_mut().find(|c| c.name == "AR_POOL").unwrap();
        let range = &mut pool.children[ar];
        set(range, &["SCALEWAY_IP_ID"], Some(&fip.id));
        set(range, &["EXTERNAL_IP"], Some(&fip.ip_address));
    }
}

fn zone() -> Zone {
    Zone::new("fr-par-1").unwrap()
}

fn wait() -> WaitPolicy {
    WaitPolicy::new(Duration::from_millis(10), Duration::from_secs(10))
}

/// Two hosts (servers), three flexible IPs registered as ranges 0..2 of network 5.
fn bed() -> Bed {
    let emu = Emulator::start(scaleway_emulator::Options {
        speed: 0.01,
        project_ids: vec![PROJECT.into()],
        ..Default::default()
    })
    .unwrap();
    let env_pairs = |url: String| {
        vec![
            ("SCW_SECRET_KEY".to_owned(), SECRET.to_owned()),
            ("SCW_DEFAULT_PROJECT_ID".to_owned(), PROJECT.to_owned()),
            ("SCW_DEFAULT_ZONE".to_owned(), "fr-par-1".to_owned()),
            ("SCW_API_URL".to_owned(), url),
            ("SCW_CONFIG_PATH".to_owned(), "/nonexistent/config.yaml".to_owned()),
            ("ONE_SCALEWAY_POLL_MS".to_owned(), "10".to_owned()),
            ("ONE_SCALEWAY_RETRY_BASE_MS".to_owned(), "5".to_owned()),
            ("ONE_SCALEWAY_WAIT".to_owned(), "5".to_owned()),
        ]
    };
    let pairs = env_pairs(emu.url());
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let credentials = scaleway::resolve(&get, None).unwrap();
    let options = Options {
        retry: RetryPolicy {
            base_delay: Duration::from_millis(5),
            ..RetryPolicy::default()
        },
        ..Options::default()
    };
    let client = Client::new(credentials, options).unwrap();
    let offer = client.find_offer(&zone(), "EM-A116X-SSD", "hourly").unwrap().unwrap();
    let servers = ["edge-host1", "edge-host2"].map(|name| {
        let s = client
            .create_server(
                &zone(),
                &NewServer {
                    project_id: PROJECT.into(),
                    offer_id: offer.id.clone(),
                    name: name.into(),
                    ..Default::default()
                },
                &format!("t-{name}"),
            )
            .unwrap();
        client.wait_server_ready(&zone(), &s.id, wait()).unwrap().id
    });
    let fips: Vec<FlexibleIp> = (0..3)
        .map(|i| {
            let new = NewFlexibleIp {
                project_id: PROJECT.into(),
                // As the IPAM driver tags them: ours, and the private /31 of their range.
                tags: scaleway::ownership::for_range(
                    &format!("r{i}"),
                    &format!("172.30.0.{}/31", 2 + 2 * i),
                    None,
                    None,
                ),
                ..Default::default()
            };
            client
                .create_fip(&zone(), &new, &format!("one-scaleway-token=r{i}"))
                .unwrap()
        })
        .collect();
    // The network and hosts as a real oned answers them (captured), with
    // this bed's ids, servers and flexible IPs.
    let mut vnet = parse(&test_support::fixture("vnet/public.xml"));
    set(&mut vnet, &["ID"], Some("5"));
    let ars = vnet.children.iter_mut().find(|c| c.name == "AR_POOL").unwrap();
    for (ar, f) in ars.children.iter_mut().zip(&fips) {
        set(ar, &["EXTERNAL_IP"], Some(&f.ip_address.to_string()));
        set(ar, &["SCALEWAY_IP_ID"], Some(&f.id.to_string()));
        set(ar, &["SCALEWAY_ZONE"], Some("fr-par-1"));
        set(ar, &["SCALEWAY_PROFILE"], None);
        set(ar, &["LEASES", "LEASE", "VM"], Some("42"));
    }
    let vnet_info = Arc::new(Mutex::new(vnet));
    let vnet_answer = Arc::clone(&vnet_info);
    let host = |id: u32, name: &str, server: &str| {
        let mut h = parse(&test_support::fixture("host/host.xml"));
        set(&mut h, &["ID"], Some(&id.to_string()));
        set(&mut h, &["NAME"], Some(name));
        set(
            &mut h,
            &["TEMPLATE", "PROVISION", "DEPLOY_ID"],
            Some(&format!("fr-par-1/{server}")),
        );
        h.to_xml()
    };
    let hosts = [host(3, "edge-host1", &servers[0]), host(4, "edge-host2", &servers[1])];
    let vm_info = Arc::new(Mutex::new("<VM><ID>42</ID></VM>".to_owned()));
    let vm_answer = Arc::clone(&vm_info);
    let oned = StubOned::start(
        move |method, params| match (method, params.first().map(String::as_str)) {
            ("one.vm.info", Some("42")) => Ok(vm_answer.lock().unwrap().clone()),
            ("one.vn.info", Some("5")) => Ok(vnet_answer.lock().unwrap().to_xml()),
            ("one.host.info", Some("3")) => Ok(hosts[0].clone()),
            ("one.host.info", Some("4")) => Ok(hosts[1].clone()),
            ("one.hostpool.info", _) => Ok(format!("<HOST_POOL>{}{}</HOST_POOL>", hosts[0], hosts[1])),
            (m, p) => Err((format!("[{m}] {p:?} not in the stub"), 1)),
        },
    );
    let dir = TempDir::new("vnm-frontend");
    let auth = dir.path().join("one_auth");
    std::fs::write(&auth, "oneadmin:pw\n").unwrap();
    let mut all = env_pairs(emu.url());
    all.push(("ONE_XMLRPC".into(), oned.url.clone()));
    all.push(("ONE_AUTH".into(), auth.display().to_string()));
    Bed {
        emu,
        client,
        servers,
        fips,
        _oned: oned,
        _dir: dir,
        env: Env::from_pairs(all),
        vm_info,
        vnet_info,
    }
}

fn parse(doc: &str) -> opennebula::xml::Element {
    opennebula::xml::parse(doc.as_bytes()).unwrap()
}

/// Sets (or with `None` removes) the text at `path` below `e`, wherever the
/// path exists (every lease of a range, for instance).
fn set(e: &mut opennebula::xml::Element, path: &[&str], value: Option<&str>) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        match value {
            Some(v) => e
                .children
                .iter_mut()
                .filter(|c| c.name == *first)
                .for_each(|c| c.text = v.to_owned()),
            None => e.children.retain(|c| c.name != *first),
        }
        return;
    }
    for c in e.children.iter_mut().filter(|c| c.name == *first) {
        set(c, rest, value);
    }
}

/// A reduced VM document with public NICs for ranges `ars` (NIC ids 0..),
/// the last history record on `host` (HID).
fn vm(
    bed: &Bed,
    ars: &[usize],
    hid: u32,
    attach: Option<usize>,
    external_override: Option<&str>,
) -> (Vm, opennebula::xml::Element) {
    let nics: String = ars
        .iter()
        .enumerate()
        .map(|(n, &ar)| {
            let ip = 2 + 2 * ar;
            let external = external_override.map_or(bed.fips[ar].ip_address.clone(), str::to_owned);
            format!(
                "<NIC><NIC_ID>{n}</NIC_ID><AR_ID>{ar}</AR_ID><NETWORK_ID>5</NETWORK_ID><NETWORK>edge-public</NETWORK>\
                 <VN_MAD>scaleway</VN_MAD><BRIDGE>scwpub0</BRIDGE><IP>172.30.0.{ip}</IP><GATEWAY>172.30.0.{}</GATEWAY>\
                 <EXTERNAL_IP>{external}</EXTERNAL_IP>{}</NIC>",
                ip + 1,
                if attach == Some(n) { "<ATTACH>YES</ATTACH>" } else { "" }
            )
        })
        .collect();
    let name = if hid == 3 { "edge-host1" } else { "edge-host2" };
    let doc = format!(
        "<VM><ID>42</ID><DEPLOY_ID>one-42</DEPLOY_ID><TEMPLATE>{nics}</TEMPLATE><HISTORY_RECORDS><HISTORY>\
         <HOSTNAME>{name}</HOSTNAME><HID>{hid}</HID></HISTORY></HISTORY_RECORDS></VM>"
    );
    let element = opennebula::xml::parse(doc.as_bytes()).unwrap();
    (Vm::from_element(&element).unwrap(), element)
}

fn with_log<T>(f: impl FnOnce(&mut Log<'_>) -> T) -> (T, String) {
    let mut err = Vec::new();
    let out = {
        let mut log = Log::new(&mut err, Level::Debug, "test");
        f(&mut log)
    };
    (out, String::from_utf8(err).unwrap())
}

fn server_of_fip(bed: &Bed, i: usize) -> Option<String> {
    // An eventual_consistency fault hides the IP from the next few reads.
    for _ in 0..5 {
        if let Ok(f) = bed.client.get_fip(&zone(), &bed.fips[i].id) {
            return f.server_id;
        }
    }
    bed.client.get_fip(&zone(), &bed.fips[i].id).unwrap().server_id
}

fn attach_calls(bed: &Bed) -> usize {
    bed.emu
        .calls()
        .iter()
        .filter(|c| c["method"] == "POST" && c["path"].as_str().unwrap().ends_with("/fips/attach"))
        .count()
}

#[test]
fn post_attaches_every_public_ip_to_the_hosts_server_once() {
    let bed = bed();
    let (vm, _) = vm(&bed, &[0, 1], 3, None, None);
    let (result, log) = with_log(|log| frontend::post(&vm, log, &bed.env));
    result.unwrap();
    assert_eq!(
        server_of_fip(&bed, 0).as_deref(),
        Some(bed.servers[0].as_str()),
        "{log}"
    );
    assert_eq!(server_of_fip(&bed, 1).as_deref(), Some(bed.servers[0].as_str()));
    assert_eq!(server_of_fip(&bed, 2), None, "another range's IP is untouched");
    bed.emu.clear_calls();
    let (again, _) = with_log(|log| frontend::post(&vm, log, &bed.env));
    again.unwrap();
    assert_eq!(attach_calls(&bed), 0, "post twice = post once");
    assert!(
        bed.emu.calls().iter().all(|c| c["method"] == "GET"),
        "the second post only reads"
    );
}

/// OpenNebula passes the SOURCE host to post during a migration; the
/// flexible IP must go to the destination (the last history record).
#[test]
fn migration_moves_the_ip_to_the_destination() {
    let bed = bed();
    let (on_a, doc_a) = vm(&bed, &[0], 3, None, None);
    with_log(|log| frontend::post(&on_a, log, &bed.env)).0.unwrap();
    assert_eq!(server_of_fip(&bed, 0).as_deref(), Some(bed.servers[0].as_str()));
    // migrate: pre on B, clean on A (argv: the source), post on B
    let (on_b, _) = vm(&bed, &[0], 4, None, None);
    let recorder = Recorder(Mutex::new(Vec::new()));
    let (clean, log) = with_log(|log| frontend::clean(&on_b, &doc_a, &["edge-host1".into()], log, &bed.env, &recorder));
    clean.unwrap();
    assert_eq!(
        recorder.0.lock().unwrap().as_slice(),
        &[("edge-host1".to_owned(), "clean_host".to_owned())],
        "{log}"
    );
    assert_eq!(server_of_fip(&bed, 0), None, "detached from the source");
    let (post, log) = with_log(|log| frontend::post(&on_b, log, &bed.env));
    post.unwrap();
    assert_eq!(
        server_of_fip(&bed, 0).as_deref(),
        Some(bed.servers[1].as_str()),
        "{log}"
    );
}

/// `onevm recover --delete` during a live migration: oned runs clean twice
/// with the destination as argument and in the document (seen on a real
/// oned, tests/tests/real_oned_vm.rs). The source host, which still has the
/// VM's NAT and its flexible IP, is cleaned too, found in oned's history.
#[test]
fn a_delete_during_a_migration_cleans_the_source_too() {
    let bed = bed();
    let (on_a, _) = vm(&bed, &[0], 3, None, None);
    with_log(|log| frontend::post(&on_a, log, &bed.env)).0.unwrap();
    assert_eq!(server_of_fip(&bed, 0).as_deref(), Some(bed.servers[0].as_str()));
    *bed.vm_info.lock().unwrap() = "<VM><ID>42</ID><HISTORY_RECORDS>\
        <HISTORY><SEQ>0</SEQ><HOSTNAME>edge-host1</HOSTNAME><HID>3</HID></HISTORY>\
        <HISTORY><SEQ>1</SEQ><HOSTNAME>edge-host2</HOSTNAME><HID>4</HID></HISTORY></HISTORY_RECORDS></VM>"
        .to_owned();
    let (on_b, doc_b) = vm(&bed, &[0], 4, None, None);
    let recorder = Recorder(Mutex::new(Vec::new()));
    let (clean, log) = with_log(|log| frontend::clean(&on_b, &doc_b, &["edge-host2".into()], log, &bed.env, &recorder));
    clean.unwrap();
    assert_eq!(
        recorder.0.lock().unwrap().as_slice(),
        &[
            ("edge-host2".to_owned(), "clean_host".to_owned()),
            ("edge-host1".to_owned(), "clean_host".to_owned())
        ],
        "{log}"
    );
    assert_eq!(server_of_fip(&bed, 0), None, "detached from the source's server: {log}");
    // After a finished migration the same clean finds nothing on the source.
    let (again, log) = with_log(|log| frontend::clean(&on_b, &doc_b, &["edge-host2".into()], log, &bed.env, &recorder));
    again.unwrap();
    assert!(!log.contains("WARN"), "{log}");
}

/// A flexible IP found on another server (a crash, an interrupted
/// migration) is moved; clean of the old host then leaves it alone.
#[test]
fn an_ip_on_another_server_is_moved_and_clean_leaves_it() {
    let bed = bed();
    bed.client
        .attach_fips(&zone(), &[&bed.fips[0].id], &bed.servers[0])
        .unwrap();
    bed.client
        .wait_fip_attached(&zone(), &bed.fips[0].id, &bed.servers[0], wait())
        .unwrap();
    let (on_b, doc) = vm(&bed, &[0], 4, None, None);
    let (post, log) = with_log(|log| frontend::post(&on_b, log, &bed.env));
    post.unwrap();
    assert!(log.contains("moving it to server"), "{log}");
    assert_eq!(server_of_fip(&bed, 0).as_deref(), Some(bed.servers[1].as_str()));
    let recorder = Recorder(Mutex::new(Vec::new()));
    with_log(|log| frontend::clean(&on_b, &doc, &["edge-host1".into()], log, &bed.env, &recorder))
        .0
        .unwrap();
    assert_eq!(
        server_of_fip(&bed, 0).as_deref(),
        Some(bed.servers[1].as_str()),
        "still on the destination"
    );
}

/// A user who writes another range's address in EXTERNAL_IP gets nothing.
#[test]
fn a_claimed_ip_that_is_not_the_ranges_is_refused() {
    let bed = bed();
    let stolen = bed.fips[2].ip_address.clone();
    let (vm, _) = vm(&bed, &[0], 3, None, Some(&stolen));
    let (result, _) = with_log(|log| frontend::post(&vm, log, &bed.env));
    let err = format!("{:#}", result.unwrap_err());
    assert!(
        err.contains(&format!(
            "EXTERNAL_IP {stolen} is not the flexible IP of its address range"
        )),
        "{err}"
    );
    assert_eq!(server_of_fip(&bed, 0), None);
    assert_eq!(server_of_fip(&bed, 2), None);
    assert_eq!(attach_calls(&bed), 0);
}

/// A range whose `SCALEWAY_IP_ID` and `EXTERNAL_IP` were edited to name a
/// flexible IP that is not its own (one OpenNebula does not manage, or
/// another range's) is refused before anything is attached, moved or
/// detached: the flexible IP stays where it is.
#[test]
fn a_range_naming_a_flexible_ip_not_its_own_is_refused() {
    let bed = bed();
    let new = NewFlexibleIp {
        project_id: PROJECT.into(),
        tags: vec!["customer-web".into()],
        ..Default::default()
    };
    let foreign = bed.client.create_fip(&zone(), &new, "t-foreign").unwrap();
    bed.client
        .attach_fips(&zone(), &[&foreign.id], &bed.servers[1])
        .unwrap();
    bed.client.wait_fip_settled(&zone(), &foreign.id, wait()).unwrap();
    let others_range = bed.fips[1].clone();
    for (what, target, refusal) in [
        (
            "a flexible IP that is not ours",
            &foreign,
            "is not tagged one-scaleway-ipam",
        ),
        (
            "another range's flexible IP",
            &others_range,
            "belongs to private block 172.30.0.4/31",
        ),
    ] {
        bed.point_range_at(0, target);
        bed.emu.clear_calls();
        // The NIC inherits the edited EXTERNAL_IP from its range.
        let (vm, doc) = vm(&bed, &[0], 3, None, Some(&target.ip_address));
        let (result, _) = with_log(|log| frontend::post(&vm, log, &bed.env));
        let err = format!("{:#}", result.unwrap_err());
        assert!(
            err.contains(refusal) && err.contains("refusing to attach it"),
            "{what}: {err}"
        );
        // Nor is it detached by a clean on the host whose server has it.
        let (on_b, _) = vm_on(&bed, 4, &target.ip_address);
        let recorder = Recorder(Mutex::new(Vec::new()));
        let (clean, log) =
            with_log(|log| frontend::clean(&on_b, &doc, &["edge-host2".into()], log, &bed.env, &recorder));
        let err = format!("{:#}", clean.map(|_| ()).expect_err(&log));
        assert!(err.contains("refusing to detach it"), "{what}: {err}");
        assert!(
            bed.emu.calls().iter().all(|c| c["method"] == "GET"),
            "{what}: nothing changed at Scaleway"
        );
    }
    assert_eq!(
        bed.client.get_fip(&zone(), &foreign.id).unwrap().server_id.as_deref(),
        Some(bed.servers[1].as_str())
    );
}

/// [`vm`] of range 0 on host `hid`, claiming `external`.
fn vm_on(bed: &Bed, hid: u32, external: &str) -> (Vm, opennebula::xml::Element) {
    vm(bed, &[0], hid, None, Some(external))
}

/// One NIC of two fails: the first one's IP is detached again.
#[test]
fn a_failing_nic_rolls_back_the_others() {
    let bed = bed();
    bed.client.delete_fip(&zone(), &bed.fips[1].id, PROJECT).unwrap();
    let (vm, _) = vm(&bed, &[0, 1], 3, None, None);
    let (result, log) = with_log(|log| frontend::post(&vm, log, &bed.env));
    let err = format!("{:#}", result.unwrap_err());
    assert!(
        err.contains("cannot attach the flexible IP of NIC 1 on host edge-host1"),
        "{err}"
    );
    assert!(log.contains("rollback"), "{log}");
    bed.client.wait_fip_ready(&zone(), &bed.fips[0].id, wait()).unwrap();
    assert_eq!(server_of_fip(&bed, 0), None, "NIC 0's IP was detached again");
}

/// Hot attach: only the NIC with ATTACH=YES is touched.
#[test]
fn hot_attach_touches_only_that_nic() {
    let bed = bed();
    let (vm, _) = vm(&bed, &[0, 1], 3, Some(1), None);
    with_log(|log| frontend::post(&vm, log, &bed.env)).0.unwrap();
    assert_eq!(server_of_fip(&bed, 0), None);
    assert_eq!(server_of_fip(&bed, 1).as_deref(), Some(bed.servers[0].as_str()));
}

/// Transient Scaleway faults on the attach are retried; the result is the same.
#[test]
fn post_survives_transient_faults() {
    let bed = bed();
    for rule in [
        json!({"kind": "rate_limit", "method": "POST", "path_prefix": "/flexible-ip/", "times": 2}),
        json!({"kind": "internal_error", "method": "GET", "path_prefix": "/flexible-ip/", "times": 2}),
        json!({"kind": "drop", "method": "POST", "path_prefix": "/flexible-ip/", "times": 1}),
    ] {
        bed.emu.add_fault(&rule).unwrap();
    }
    let (vm, _) = vm(&bed, &[0, 1], 3, None, None);
    let (result, log) = with_log(|log| frontend::post(&vm, log, &bed.env));
    result.unwrap_or_else(|e| panic!("{e:#}\n{log}"));
    assert_eq!(server_of_fip(&bed, 0).as_deref(), Some(bed.servers[0].as_str()));
    assert_eq!(server_of_fip(&bed, 1).as_deref(), Some(bed.servers[0].as_str()));
}

/// The driver binary's `post` runs the same code path, from the action file.
#[test]
fn the_binary_runs_post() {
    let bed = bed();
    let (_, doc) = vm(&bed, &[0], 3, None, None);
    let encoded = opennebula::base64::encode(doc.to_xml().as_bytes());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let io = Io {
        stdin: &mut encoded.as_bytes(),
        stdout: &mut out,
        stderr: &mut err,
    };
    let argv = vec![
        "/var/lib/one/remotes/vnm/scaleway/post".into(),
        "one-42".into(),
        "edge-host1".into(),
    ];
    let code = scaleway_vnm::main_with(argv, &bed.env, io);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    assert_eq!(server_of_fip(&bed, 0).as_deref(), Some(bed.servers[0].as_str()));
}

/// update_nic: a defined no-op (nothing on the host depends on what it
/// changes). update_sg runs on the host (`host_actions.rs`, `host_netns.rs`).
#[test]
fn update_nic_changes_nothing() {
    let doc = test_support::encode(&test_support::fixture("vm/deploy.xml"));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let io = Io {
        stdin: &mut doc.as_slice(),
        stdout: &mut out,
        stderr: &mut err,
    };
    let argv = vec!["/var/tmp/one/vnm/scaleway/update_nic".into(), "one-7".into()];
    let code = scaleway_vnm::main_with(argv, &Env::default(), io);
    let err = String::from_utf8(err).unwrap();
    assert_eq!((code, out.as_slice(), err.as_str()), (0, &b""[..], ""), "{err}");
}

/// Every fault kind of the emulator on the flexible IP calls of `post` and
/// of `clean`: each run either succeeds or fails with one clear line; a
/// run without the fault afterwards converges (both IPs on the host's
/// server after post, none attached after clean), and no IP is ever
/// attached anywhere else.
#[test]
fn fault_matrix_of_post_and_clean() {
    let kinds = [
        json!({"kind": "rate_limit"}),
        json!({"kind": "rate_limit_retry_after", "retry_after": 0}),
        json!({"kind": "internal_error"}),
        json!({"kind": "upstream_error"}),
        json!({"kind": "unavailable", "message": "maintenance"}),
        json!({"kind": "delay", "seconds": 1}),
        json!({"kind": "drop"}),
        json!({"kind": "reset_mid_body"}),
        // Scaleway answers these to changes only (an IP busy moving, a resource just changed).
        json!({"kind": "transient_state", "method": "POST"}),
        json!({"kind": "quotas_exceeded"}),
        json!({"kind": "commit_then_error"}),
        json!({"kind": "commit_then_drop"}),
        json!({"kind": "eventual_consistency", "method": "POST"}),
        json!({"kind": "total_count_delta"}),
    ];
    let bed = bed();
    let (vm, doc) = vm(&bed, &[0, 1], 3, None, None);
    let recorder = Recorder(Mutex::new(Vec::new()));
    let mut outcomes = Vec::new();
    for kind in &kinds {
        for times in [1, 3] {
            let mut rule = kind.clone();
            rule["path_prefix"] = json!("/flexible-ip/");
            rule["times"] = json!(times);
            // post under the fault, then without it
            bed.emu.add_fault(&rule).unwrap();
            let (faulty, log) = with_log(|log| frontend::post(&vm, log, &bed.env));
            bed.emu.clear_faults();
            if let Err(e) = &faulty {
                let text = format!("{e:#}");
                assert!(!text.is_empty() && !text.contains('\n'), "{rule}: {text:?}");
            }
            for i in [0, 1] {
                let on = server_of_fip(&bed, i);
                assert!(
                    on.is_none() || on.as_deref() == Some(bed.servers[0].as_str()),
                    "{rule}: IP {i} on {on:?}\n{log}"
                );
            }
            let (ok, log) = with_log(|log| frontend::post(&vm, log, &bed.env));
            ok.unwrap_or_else(|e| panic!("{rule}: post after the fault: {e:#}\n{log}"));
            for i in [0, 1] {
                assert_eq!(
                    server_of_fip(&bed, i).as_deref(),
                    Some(bed.servers[0].as_str()),
                    "{rule}"
                );
            }
            // clean under the fault, then without it
            bed.emu.add_fault(&rule).unwrap();
            let (faulty_clean, _) =
                with_log(|log| frontend::clean(&vm, &doc, &["edge-host1".into()], log, &bed.env, &recorder));
            bed.emu.clear_faults();
            let (ok, log) =
                with_log(|log| frontend::clean(&vm, &doc, &["edge-host1".into()], log, &bed.env, &recorder));
            ok.unwrap_or_else(|e| panic!("{rule}: clean after the fault: {e:#}\n{log}"));
            for i in [0, 1] {
                assert_eq!(server_of_fip(&bed, i), None, "{rule}: IP {i} left attached");
            }
            outcomes.push(format!(
                "{} x{times}: post {}, clean {}",
                kind["kind"].as_str().unwrap(),
                if faulty.is_ok() { "ok" } else { "failed cleanly" },
                if faulty_clean.is_ok() { "ok" } else { "failed cleanly" }
            ));
        }
    }
    eprintln!("{}", outcomes.join("\n"));
    assert_eq!(server_of_fip(&bed, 2), None, "the third range's IP was never touched");
}

/// `post` and `clean` SIGKILLed while their attach or detach is in flight,
/// then run again by oned (a retry, or the next action): they converge.
#[test]
fn post_and_clean_killed_mid_way_converge_when_run_again() {
    use std::process::{Command, Stdio};
    let bed = bed();
    let (_, doc) = vm(&bed, &[0, 1], 3, None, None);
    let encoded = opennebula::base64::encode(doc.to_xml().as_bytes());
    let dir = TempDir::new("vnm-killed");
    let bin = env!("CARGO_BIN_EXE_scaleway-vnm");
    let post = test_support::link_as(std::path::Path::new(bin), dir.path(), "vnm/scaleway/post");
    let clean = test_support::link_as(std::path::Path::new(bin), dir.path(), "vnm/scaleway/clean");
    let run = |program: &std::path::Path, kill_after: Option<Duration>| {
        let mut c = Command::new(program);
        // oned: post <deploy id> <host>, clean <host>
        if program.ends_with("post") {
            c.args(["one-42", "edge-host1"]);
        } else {
            c.arg("edge-host1");
        }
        c.env_clear();
        for k in [
            "SCW_SECRET_KEY",
            "SCW_DEFAULT_PROJECT_ID",
            "SCW_DEFAULT_ZONE",
            "SCW_API_URL",
            "SCW_CONFIG_PATH",
            "ONE_SCALEWAY_POLL_MS",
            "ONE_SCALEWAY_RETRY_BASE_MS",
            "ONE_SCALEWAY_WAIT",
            "ONE_XMLRPC",
            "ONE_AUTH",
        ] {
            c.env(k, bed.env.get(k).unwrap());
        }
        c.env("ONE_SCALEWAY_SSH", "/bin/true");
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(encoded.as_bytes()).unwrap();
        }
        match kill_after {
            Some(d) => {
                std::thread::sleep(d);
                let _ = child.kill();
                child.wait().unwrap();
                None
            }
            None => Some(child.wait_with_output().unwrap()),
        }
    };
    for delay_ms in [50u64, 150, 300] {
        // The attach hangs (a slow answer) and the process is killed meanwhile.
        bed.emu
            .add_fault(&json!({"kind": "delay", "seconds": 1, "method": "POST", "path_prefix": "/flexible-ip/"}))
            .unwrap();
        run(&post, Some(Duration::from_millis(delay_ms)));
        bed.emu.clear_faults();
        let out = run(&post, None).unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        for i in [0, 1] {
            assert_eq!(server_of_fip(&bed, i).as_deref(), Some(bed.servers[0].as_str()));
        }
        bed.emu
            .add_fault(&json!({"kind": "delay", "seconds": 1, "method": "POST", "path_prefix": "/flexible-ip/"}))
            .unwrap();
        run(&clean, Some(Duration::from_millis(delay_ms)));
        bed.emu.clear_faults();
        let out = run(&clean, None).unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        for i in [0, 1] {
            assert_eq!(server_of_fip(&bed, i), None);
        }
    }
}

/// Faults that break the flexible IP itself at Scaleway (a transition stuck
/// for ever, or ending in `error` or `locked`): post fails with a clear
/// error naming the IP and what it waited for, never attaches elsewhere,
/// and clean still succeeds (a VM must always be removable).
#[test]
fn a_flexible_ip_broken_at_scaleway_fails_post_clearly() {
    for kind in ["stuck", "transition_error", "transition_locked"] {
        let bed = bed();
        let (vm, doc) = vm(&bed, &[0], 3, None, None);
        bed.emu
            .add_fault(&json!({"kind": kind, "method": "POST", "path_prefix": "/flexible-ip/", "times": 5}))
            .unwrap();
        let (faulty, log) = with_log(|log| frontend::post(&vm, log, &bed.env));
        let e = format!("{:#}", faulty.expect_err(kind));
        assert!(e.contains("flexible IP") && !e.contains('\n'), "{kind}: {e}\n{log}");
        let on = server_of_fip(&bed, 0);
        assert!(
            on.is_none() || on.as_deref() == Some(bed.servers[0].as_str()),
            "{kind}: {on:?}"
        );
        bed.emu.clear_faults();
        let recorder = Recorder(Mutex::new(Vec::new()));
        let (clean, log) = with_log(|log| frontend::clean(&vm, &doc, &["edge-host1".into()], log, &bed.env, &recorder));
        if let Err(e) = clean {
            let e = format!("{e:#}");
            assert!(!e.contains('\n'), "{kind}: clean: {e}\n{log}");
        }
        eprintln!("{kind}: post: {e}");
    }
}
