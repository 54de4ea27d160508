//! The network mode on a real kernel (privileged: root and iproute2): the
//! emulator builds namespaces for its servers, private networks and
//! flexible IPs, and these tests send real packets between them (ICMP echo
//! over datagram sockets and TCP, written here: no ping or nc needed).
//!
//! Each test runs its own emulator with its own prefix (`e<pid><letter>`)
//! and state root; nothing is created outside the namespaces the emulator
//! (or the test) makes, traffic only flows between their addresses, and the
//! emulator deletes them when dropped, failed test or not.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use common::{Api, OFFER_B220E, OPTION_PRIVATE_NETWORK, OS_UBUNTU_2204, PROJECT, ZONE};
use netns::{ip, namespaces_with, ping, tcp_source};
use nix::sys::signal::Signal;
use scaleway_emulator::Options;
use scaleway_emulator::network::{CLIENT_V4, CLIENT_V6, NetworkOptions};
use serde_json::{Value, json};
use test_support::{TempDir, require_root, run_ok};

const BIN: &str = env!("CARGO_BIN_EXE_scaleway-emulator");

// ---------------------------------------------------------------- the lab

/// An emulator in the network mode with its own prefix and state root.
struct Lab {
    api: Api,
    prefix: String,
    root: std::path::PathBuf,
    _dir: TempDir,
}

fn new_prefix() -> String {
    static N: AtomicU8 = AtomicU8::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("e{}{}", std::process::id() % 1_000_000, char::from(b'a' + n % 26))
}

impl Lab {
    fn new() -> Lab {
        Lab::with(false, false)
    }

    /// With FRR on the servers and/or their own files.
    fn with(frr: bool, host_fs: bool) -> Lab {
        require_root();
        let prefix = new_prefix();
        let dir = TempDir::new("emu-net");
        let root = dir.path().join("hosts");
        let api = Api::with(Options {
            speed: 1.0,
            manual_clock: true,
            seed: Some(11),
            network: Some(NetworkOptions {
                prefix: prefix.clone(),
                state_root: root.clone(),
                mtu: 1500,
                frr,
                host_fs,
            }),
            ..Options::default()
        });
        Lab {
            api,
            prefix,
            root,
            _dir: dir,
        }
    }

    fn inet(&self) -> String {
        format!("{}-inet", self.prefix)
    }

    fn ns(&self, server_id: &str) -> String {
        format!("{}-{}", self.prefix, &server_id[..8])
    }

    fn report(&self) -> Value {
        let r = self.api.control("GET", "network", None);
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["errors"], json!([]), "{:#}", r.body);
        r.body
    }

    /// A server with an install and the Private Network option (not installed yet).
    fn server(&self, name: &str) -> String {
        let key = self.api.create_ssh_key();
        let r = self.api.post(
            &format!("{}/servers", self.api.em(ZONE)),
            json!({"offer_id": OFFER_B220E, "project_id": PROJECT, "name": name, "description": "",
                   "option_ids": [OPTION_PRIVATE_NETWORK],
                   "install": {"os_id": OS_UBUNTU_2204, "hostname": name, "ssh_key_ids": [key]}}),
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["id"].as_str().unwrap().to_string()
    }

    fn public_ip(&self, server_id: &str) -> Ipv4Addr {
        let s = self.api.get(&format!("{}/servers/{server_id}", self.api.em(ZONE))).body;
        s["ips"][0]["address"].as_str().unwrap().parse().unwrap()
    }

    /// Until every pending install is `completed`.
    fn install(&self) {
        self.api.advance(400.0);
    }

    fn fip(&self, v6: bool) -> (String, String) {
        let f = self.api.create_fip(ZONE, json!({"is_ipv6": v6}));
        (
            f["id"].as_str().unwrap().to_string(),
            f["ip_address"].as_str().unwrap().to_string(),
        )
    }

    fn attach(&self, fip: &str, server: &str) {
        let r = self.api.post(
            &format!("{}/attach", self.api.fips(ZONE)),
            json!({"fips_ids": [fip], "server_id": server}),
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["flexible_ips"][0]["status"], "updating");
    }

    fn detach(&self, fip: &str) {
        let r = self
            .api
            .post(&format!("{}/detach", self.api.fips(ZONE)), json!({"fips_ids": [fip]}));
        assert_eq!(r.body["flexible_ips"][0]["status"], "detaching", "{:?}", r.body);
    }

    /// The internet's routes to the flexible IPs: (destination, via).
    fn fip_routes(&self) -> Vec<(String, String)> {
        self.report()["flexible_ips"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["destination"].as_str().unwrap().into(),
                    r["via"].as_str().unwrap().into(),
                )
            })
            .collect()
    }
}

// ---------------------------------------------------------------- tests

#[test]
#[ignore = "privileged: needs root and iproute2; run by .ci/run"]
fn an_installed_server_is_a_namespace_on_the_internet() {
    let lab = Lab::new();
    let r = lab.report();
    assert_eq!(r["namespaces"], json!([lab.inet()]));
    assert_eq!(r["internet"]["client_ipv4"], "192.0.2.1");
    let id = lab.server("h1");
    lab.api.advance(30.0);
    assert_eq!(
        lab.api.get(&format!("{}/servers/{id}", lab.api.em(ZONE))).body["install"]["status"],
        "installing"
    );
    assert_eq!(
        namespaces_with(&lab.prefix),
        vec![lab.inet()],
        "no namespace before the install completes"
    );
    lab.install();
    let ns = lab.ns(&id);
    assert_eq!(namespaces_with(&lab.prefix), vec![ns.clone(), lab.inet()]);
    let public = lab.public_ip(&id);
    let server = &lab.report()["servers"][0];
    assert_eq!(
        (server["server_id"].as_str(), server["namespace"].as_str()),
        (Some(id.as_str()), Some(ns.as_str()))
    );
    assert_eq!(server["ipv4"], public.to_string());
    assert!(ip(&ns, &["-o", "addr", "show", "dev", "eth0"]).contains(&format!("inet {public}/32")));
    assert!(lab.root.join(&id).join("state").is_dir(), "the server's own folder");
    // Out to the internet's client, from its public address; and back in.
    assert!(ping(&ns, None, CLIENT_V4.into()), "server -> 192.0.2.1");
    assert_eq!(
        tcp_source(&ns, &lab.inet(), SocketAddr::new(CLIENT_V4.into(), 8080)),
        Ok(IpAddr::V4(public))
    );
    assert!(
        ping(&lab.inet(), Some(CLIENT_V4.into()), public.into()),
        "client -> server"
    );
    assert_eq!(
        tcp_source(&lab.inet(), &ns, SocketAddr::new(public.into(), 22)),
        Ok(IpAddr::V4(CLIENT_V4)),
        "the server sees the client's address"
    );
    let v6: IpAddr = server["ipv6"].as_str().unwrap().parse().unwrap();
    assert!(ping(&ns, None, CLIENT_V6.into()), "server -> 2001:db8::1");
    assert!(
        ping(&lab.inet(), Some(CLIENT_V6.into()), v6),
        "client -> server over IPv6"
    );
}

#[test]
#[ignore = "privileged: needs root and iproute2; run by .ci/run"]
fn a_flexible_ip_is_routed_to_its_server_only_while_attached() {
    let lab = Lab::new();
    let (a, b) = (lab.server("a"), lab.server("b"));
    lab.install();
    let (ns_a, ns_b) = (lab.ns(&a), lab.ns(&b));
    let (ip_a, ip_b) = (lab.public_ip(&a), lab.public_ip(&b));
    let (fip_id, fip) = lab.fip(false);
    let fip_addr: IpAddr = fip.parse().unwrap();
    // The host side would DNAT the address; here server A simply owns it.
    ip(&ns_a, &["addr", "add", &format!("{fip}/32"), "dev", "lo"]);
    let client = Some(IpAddr::V4(CLIENT_V4));
    assert!(!ping(&lab.inet(), client, fip_addr), "not attached: not routed");
    lab.attach(&fip_id, &a);
    assert_eq!(lab.fip_routes(), vec![], "updating: not routed yet");
    assert!(!ping(&lab.inet(), client, fip_addr));
    lab.api.advance(5.0);
    assert_eq!(
        lab.api.get(&format!("{}/{fip_id}", lab.api.fips(ZONE))).body["status"],
        "attached"
    );
    assert_eq!(lab.fip_routes(), vec![(format!("{fip}/32"), ip_a.to_string())]);
    assert!(
        ip(&lab.inet(), &["route", "show", &format!("{fip}/32")]).contains(&format!("via {ip_a} dev s-{}", &a[..8])),
        "the next hop is the server's own address"
    );
    assert!(ping(&lab.inet(), client, fip_addr), "client -> flexible IP on A");
    assert_eq!(
        tcp_source(&lab.inet(), &ns_a, SocketAddr::new(fip_addr, 443)),
        Ok(IpAddr::V4(CLIENT_V4))
    );
    // Detached: no longer routed, from the moment the API says `detaching`.
    lab.detach(&fip_id);
    assert_eq!(lab.fip_routes(), vec![]);
    assert!(!ping(&lab.inet(), client, fip_addr), "detaching: no longer routed");
    lab.api.advance(5.0);
    assert!(
        ip(&lab.inet(), &["route", "show", &format!("{fip}/32")])
            .trim()
            .is_empty()
    );
    // Moved: follows B once `attached` there.
    lab.attach(&fip_id, &a);
    lab.api.advance(5.0);
    assert!(ping(&lab.inet(), client, fip_addr));
    ip(&ns_a, &["addr", "del", &format!("{fip}/32"), "dev", "lo"]);
    ip(&ns_b, &["addr", "add", &format!("{fip}/32"), "dev", "lo"]);
    lab.attach(&fip_id, &b);
    assert_eq!(lab.fip_routes(), vec![], "updating on the way to B");
    lab.api.advance(5.0);
    assert_eq!(lab.fip_routes(), vec![(format!("{fip}/32"), ip_b.to_string())]);
    assert!(ping(&lab.inet(), client, fip_addr), "client -> flexible IP on B");
    // IPv6: the /64 goes to the server's IPv6 address.
    let (v6_id, v6) = lab.fip(true);
    let v6_host: IpAddr = format!("{}1", v6.trim_end_matches("/64")).parse().unwrap();
    ip(&ns_b, &["addr", "add", &format!("{v6_host}/128"), "dev", "lo"]);
    lab.attach(&v6_id, &b);
    lab.api.advance(5.0);
    let b6 = lab.report()["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["server_id"] == b.as_str())
        .unwrap()["ipv6"]
        .clone();
    assert!(
        lab.fip_routes()
            .contains(&(v6.clone(), b6.as_str().unwrap().to_string()))
    );
    assert!(
        ping(&lab.inet(), Some(CLIENT_V6.into()), v6_host),
        "client -> {v6_host} on B"
    );
    // Deleted: detaching at once, then gone.
    assert_eq!(lab.api.delete(&format!("{}/{fip_id}", lab.api.fips(ZONE))).status, 204);
    assert_eq!(lab.fip_routes(), vec![(v6.clone(), b6.as_str().unwrap().to_string())]);
    assert!(!ping(&lab.inet(), client, fip_addr));
}

/// Attaches `server` to `pn` and returns the mapping's IPv4 address (CIDR).
fn join_private_network(lab: &Lab, server: &str, pn: &str) -> String {
    let path = format!("/baremetal/v3/zones/{ZONE}/servers/{server}/private-networks");
    let r = lab.api.post(&path, json!({"private_network_id": pn}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let ips = r.body["ipam_ip_ids"].as_array().unwrap().clone();
    ips.iter()
        .map(|id| {
            lab.api
                .get(&format!("/ipam/v1/regions/fr-par/ips/{}", id.as_str().unwrap()))
                .body
        })
        .find(|ip| ip["is_ipv6"] == false)
        .unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
#[ignore = "privileged: needs root and iproute2; run by .ci/run"]
fn servers_on_one_private_network_reach_each_other() {
    let lab = Lab::new();
    let (a, b) = (lab.server("a"), lab.server("b"));
    lab.install();
    let pn = lab.api.post(
        "/vpc/v2/regions/fr-par/private-networks",
        json!({"name": "cluster", "project_id": PROJECT}),
    );
    let pn_id = pn.body["id"].as_str().unwrap().to_string();
    let pn_ns = format!("{}-pn-{}", lab.prefix, &pn_id[..8]);
    assert!(namespaces_with(&lab.prefix).contains(&pn_ns));
    let addr_a = join_private_network(&lab, &a, &pn_id);
    let addr_b = join_private_network(&lab, &b, &pn_id);
    assert!(
        !ip(&lab.ns(&a), &["-o", "link"]).contains("scwpriv0"),
        "attaching: no NIC yet"
    );
    lab.api.advance(15.0);
    let nic = &lab.report()["servers"][0]["private_nics"][0];
    assert_eq!(
        (nic["ifname"].as_str(), nic["mtu"].as_u64()),
        (Some("scwpriv0"), Some(1500))
    );
    let link = ip(&lab.ns(&a), &["-o", "link", "show", "dev", "scwpriv0"]);
    assert!(link.contains("mtu 1500"), "{link}");
    assert!(ip(&lab.ns(&a), &["-o", "addr", "show", "dev", "scwpriv0"]).contains(&format!("inet {addr_a}")));
    let b_private: IpAddr = addr_b.split('/').next().unwrap().parse().unwrap();
    let a_private: IpAddr = addr_a.split('/').next().unwrap().parse().unwrap();
    assert!(ping(&lab.ns(&a), None, b_private), "a -> b over the private network");
    assert_eq!(
        tcp_source(&lab.ns(&b), &lab.ns(&a), SocketAddr::new(a_private, 179)),
        Ok(b_private)
    );
    // Detached: the NIC goes.
    let r = lab.api.delete(&format!(
        "/baremetal/v3/zones/{ZONE}/servers/{b}/private-networks/{pn_id}"
    ));
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert!(!ip(&lab.ns(&b), &["-o", "link"]).contains("scwpriv0"));
    assert!(!ping(&lab.ns(&a), None, b_private));
}

#[test]
#[ignore = "privileged: needs root and iproute2; run by .ci/run"]
fn deleted_reinstalled_reset_and_dropped_leave_nothing() {
    let lab = Lab::new();
    let (a, b) = (lab.server("a"), lab.server("b"));
    lab.install();
    assert_eq!(namespaces_with(&lab.prefix).len(), 3);
    // Deleted: gone with its folder as soon as it is `deleting`.
    let r = lab.api.delete(&format!("{}/servers/{a}", lab.api.em(ZONE)));
    assert_eq!(r.body["status"], "deleting");
    assert!(!namespaces_with(&lab.prefix).contains(&lab.ns(&a)));
    assert!(!lab.root.join(&a).exists());
    // Reinstalled: gone, then back once installed.
    let key = lab.api.create_ssh_key();
    let r = lab.api.post(
        &format!("{}/servers/{b}/install", lab.api.em(ZONE)),
        json!({"os_id": OS_UBUNTU_2204, "hostname": "b", "ssh_key_ids": [key]}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(namespaces_with(&lab.prefix), vec![lab.inet()]);
    lab.install();
    assert_eq!(namespaces_with(&lab.prefix), vec![lab.ns(&b), lab.inet()]);
    // Reset: everything is built again (an empty internet).
    ip(&lab.inet(), &["route", "add", "203.0.113.0/24", "dev", "lo"]);
    assert_eq!(lab.api.control("POST", "reset", None).status, 204);
    assert_eq!(namespaces_with(&lab.prefix), vec![lab.inet()]);
    assert!(
        !ip(&lab.inet(), &["route"]).contains("203.0.113.0/24"),
        "a fresh internet"
    );
    let c = lab.server("c");
    lab.install();
    assert_eq!(namespaces_with(&lab.prefix), vec![lab.ns(&c), lab.inet()]);
    // Dropped: nothing is left.
    let (prefix, root) = (lab.prefix.clone(), lab.root.clone());
    drop(lab);
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
    assert!(!root.exists(), "the state root is removed");
}

#[test]
#[ignore = "privileged: needs root and iproute2; run by .ci/run"]
fn the_same_prefix_twice_is_refused() {
    let lab = Lab::new();
    let again = scaleway_emulator::Emulator::start(Options {
        network: Some(NetworkOptions::with_prefix(&lab.prefix)),
        ..Options::default()
    });
    let err = again.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("exists"), "{err}");
    assert_eq!(
        namespaces_with(&lab.prefix),
        vec![lab.inet()],
        "the first one is untouched"
    );
}

/// Runs the binary (or a link to it) and returns (exit code, stdout, stderr).
fn run_bin(program: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
#[ignore = "privileged: needs root and iproute2; run by .ci/run"]
fn exec_and_the_ssh_alias_run_on_a_server() {
    let lab = Lab::new();
    let id = lab.server("h1");
    lab.install();
    let public = lab.public_ip(&id).to_string();
    let root = lab.root.to_str().unwrap().to_string();
    let bin = Path::new(BIN);
    let exec = |target: &str, command: &[&str]| {
        let mut args = vec!["exec", "--prefix", &lab.prefix, "--state-root", &root, target, "--"];
        args.extend_from_slice(command);
        run_bin(bin, &args, &[])
    };
    let (code, out, err) = exec(&public, &["ip", "-o", "-4", "addr", "show", "dev", "eth0"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("inet {public}/32")), "{out}");
    for target in [id.as_str(), "h1"] {
        let (code, out, _) = exec(target, &["printenv", "ONE_SCALEWAY_STATE_DIR"]);
        assert_eq!((code, out.trim()), (0, format!("{root}/{id}/state").as_str()));
    }
    assert_eq!(exec(&public, &["sh", "-c", "exit 7"]).0, 7, "the exit code passes");
    let (code, _, err) = exec("62.210.1.1", &["true"]);
    assert_eq!(code, 1);
    assert!(err.contains("no server"), "{err}");
    let (code, out, _) = exec("internet", &["ip", "-o", "addr", "show", "dev", "lo"]);
    assert!(code == 0 && out.contains("192.0.2.1/32"), "{out}");
    // The ssh alias: options ignored, user@host, the command as a vector,
    // stdin passed, a fresh environment.
    let dir = TempDir::new("emu-ssh");
    let ssh = dir.path().join("scaleway-emulator-ssh");
    std::os::unix::fs::symlink(bin, &ssh).unwrap();
    let mut child = Command::new(&ssh)
        .args([
            "-o",
            "BatchMode=yes",
            "-T",
            "-p",
            "22",
            &format!("root@{public}"),
            "sh",
            "-c",
            "cat; printenv SCW_SECRET_KEY ONE_SCALEWAY_HOST_LOCK",
        ])
        .env("SCALEWAY_EMULATOR_PREFIX", &lab.prefix)
        .env("SCALEWAY_EMULATOR_STATE_ROOT", &root)
        .env("SCW_SECRET_KEY", "not for hosts")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"from stdin\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("from stdin\n{root}/{id}/host.lock\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, _, err) = run_bin(&ssh, &["-Z", "host", "true"], &[]);
    assert!(code == 255 && err.contains("-Z"), "{err}");
}

#[test]
#[ignore = "privileged: needs root and iproute2; run by .ci/run"]
fn the_binary_cleans_up_on_sigterm_and_cleanup_removes_leftovers() {
    require_root();
    let prefix = new_prefix();
    let dir = TempDir::new("emu-bin");
    let root = dir.path().join("hosts");
    let mut child = Command::new(BIN)
        .args([
            "--network",
            &prefix,
            "--state-root",
            root.to_str().unwrap(),
            "--manual-clock",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on http://127.0.0.1:"), "{line}");
    assert_eq!(namespaces_with(&prefix), vec![format!("{prefix}-inet")]);
    let url = line.trim().trim_start_matches("listening on http://").to_string();
    let mut s = TcpStream::connect(&url).unwrap();
    write!(
        s,
        "GET /_emulator/network HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains(&format!("\"{prefix}-inet\"")),
        "{answer}"
    );
    run_ok(&["kill", "-TERM", &child.id().to_string()], b"");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
    assert!(!root.exists());
    // Leftovers of a killed emulator (made by hand here), and one that is not its.
    for n in ["inet", "0123abcd", "pn-0123abcd", "other"] {
        run_ok(&["ip", "netns", "add", &format!("{prefix}-{n}")], b"");
    }
    let (code, out, err) = run_bin(
        Path::new(BIN),
        &["cleanup", "--prefix", &prefix, "--state-root", root.to_str().unwrap()],
        &[],
    );
    let other = format!("{prefix}-other");
    let left = namespaces_with(&prefix);
    let _ = Command::new("ip").args(["netns", "del", &other]).status();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert_eq!(left, vec![other], "only the emulator's names");
}

#[test]
#[ignore = "privileged: needs root, iproute2 and frr; run by .ci/run"]
fn servers_run_their_own_frr_and_files() {
    // As in the binary and the sandbox, the stop signals are blocked in the
    // threads that start FRR: the daemons must not inherit that.
    let mut stop = nix::sys::signal::SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        stop.add(sig);
    }
    stop.thread_block().unwrap();
    let lab = Lab::with(true, true);
    let id = lab.server("h1");
    lab.install();
    let public = lab.public_ip(&id).to_string();
    let root = lab.root.to_str().unwrap().to_string();
    let exec = |command: &[&str]| {
        let mut args = vec!["exec", "--prefix", &lab.prefix, "--state-root", &root, &public, "--"];
        args.extend_from_slice(command);
        run_bin(Path::new(BIN), &args, &[])
    };
    // FRR: zebra and bgpd in the server's namespace, named by the env file.
    let frr = lab.report()["servers"][0]["frr"].clone();
    let dir = frr["dir"].as_str().unwrap().to_string();
    assert_eq!(dir, format!("{root}/{id}/frr"));
    let pids: Vec<u64> = frr["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    for pid in &pids {
        let ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
        let server_ns = std::fs::metadata(format!("/run/netns/{}", lab.ns(&id))).unwrap();
        assert!(
            ns.to_string_lossy()
                .contains(&std::os::unix::fs::MetadataExt::ino(&server_ns).to_string())
        );
    }
    for pid in &pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(
            status.contains("SigBlk:\t0000000000000000"),
            "FRR daemon {pid} blocks signals:\n{status}"
        );
    }
    // With its own files, FRR is at its default place (/run/frr) and no
    // setting names it or the drivers' folders.
    let (code, out, _) = exec(&["printenv", "ONE_SCALEWAY_FRR_DIR", "ONE_SCALEWAY_STATE_DIR"]);
    assert_eq!((code, out.as_str()), (1, ""), "no settings");
    let (code, out, err) = exec(&["vtysh", "-c", "show daemons"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("zebra") && out.contains("bgpd"), "{out}");
    // Its own /etc and /var/lib (overlays), /var/tmp and /run: the machine's are untouched.
    let name = format!("one-scaleway-emulator-test-{}", std::process::id());
    let (code, out, err) = exec(&[
        "sh",
        "-c",
        &format!(
            "echo on-the-server > /etc/{name} && cat /etc/{name} /etc/hostname >/dev/null && echo tmp > /var/tmp/{name} \
             && mkdir /var/lib/{name} && echo lock > /run/lock/{name} && test -S /run/frr/zebra.vty && grep -c . /etc/passwd"
        ),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.trim().parse::<u32>().unwrap() > 0,
        "the machine's /etc shows through: {out}"
    );
    assert!(
        !Path::new(&format!("/etc/{name}")).exists(),
        "the machine's /etc is untouched"
    );
    let fs = lab.root.join(&id).join("fs");
    for machine in ["/var/tmp", "/var/lib", "/run/lock"] {
        assert!(
            !Path::new(&format!("{machine}/{name}")).exists(),
            "the machine's {machine} is untouched"
        );
    }
    assert!(fs.join("var-lib").join(&name).is_dir() && fs.join("run/lock").join(&name).is_file());
    // The ssh alias logs in as the user it is given (here `nobody`), also
    // through a setuid-root copy run by that user (as a test oned has it).
    let bin_dir = TempDir::new("emu-setuid");
    let setuid = bin_dir.path().join("scaleway-emulator-ssh");
    std::fs::copy(BIN, &setuid).unwrap();
    std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&setuid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let env = [
        ("SCALEWAY_EMULATOR_PREFIX", lab.prefix.as_str()),
        ("SCALEWAY_EMULATOR_STATE_ROOT", root.as_str()),
    ];
    let who = format!("nobody@{public}");
    // As sshd does, the alias has the login user's shell run the command
    // line: nobody's (nologin) refuses it; on this server nobody gets /bin/sh.
    let (code, _, _) = run_bin(&setuid, &[&who, "id", "-un"], &env);
    assert_ne!(code, 0, "a nologin account runs no remote command");
    let (code, _, err) = exec(&["usermod", "-s", "/bin/sh", "nobody"]);
    assert_eq!(code, 0, "{err}");
    // The image's user, as on Scaleway's Ubuntu images: ubuntu, passwordless sudo,
    // on this server only.
    let (code, out, err) = run_bin(
        &setuid,
        &[&format!("ubuntu@{public}"), "--", "'sudo'", "'-n'", "'id'", "'-u'"],
        &env,
    );
    assert_eq!((code, out.trim()), (0, "0"), "{err}");
    // The line is the shell's to split: what a caller quotes arrives as one word.
    let (code, out, err) = run_bin(
        &setuid,
        &[
            &format!("root@{public}"),
            "--",
            "'printf'",
            "'%s|'",
            "'a b'",
            r"'it'\''s'",
            "'$HOME'",
        ],
        &env,
    );
    assert_eq!((code, out.as_str()), (0, "a b|it's|$HOME|"), "{err}");
    let (code, out, err) = run_bin(&setuid, &[&who, "id", "-un"], &env);
    assert_eq!((code, out.trim()), (0, "nobody"), "{err}");
    let as_nobody = |args: &[&str]| {
        let mut all = vec![
            "--reuid",
            "nobody",
            "--regid",
            "nogroup",
            "--clear-groups",
            "--",
            setuid.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        run_bin(Path::new("setpriv"), &all, &env)
    };
    let (code, out, err) = as_nobody(&[&public, "id", "-un"]);
    assert_eq!((code, out.trim()), (0, "nobody"), "the caller's name by default: {err}");
    let (code, out, err) = as_nobody(&[&format!("root@{public}"), "id", "-u"]);
    assert_eq!(
        (code, out.trim()),
        (0, "0"),
        "a root login, as a frontend key authorized for root: {err}"
    );
    let (code, _, err) = as_nobody(&["enter-host-fs", "--", "id", "-u"]);
    assert!(
        code == 2 && err.contains("internal"),
        "the copy's internal step is root's only: {err}"
    );
    let (code, _, err) = as_nobody(&[&format!("no-such-user@{public}"), "true"]);
    assert!(code != 0 && err.contains("no user no-such-user"), "{err}");
    assert_eq!(
        std::fs::read_to_string(fs.join("etc").join(&name)).unwrap(),
        "on-the-server\n"
    );
    assert_eq!(
        std::fs::read_to_string(fs.join("var-tmp").join(&name)).unwrap(),
        "tmp\n"
    );
    // Deleted: the daemons are stopped (SIGTERM suffices) and the folder goes.
    let started = Instant::now();
    let r = lab.api.delete(&format!("{}/servers/{id}", lab.api.em(ZONE)));
    assert_eq!(r.body["status"], "deleting");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "FRR took {:?} to stop",
        started.elapsed()
    );
    for pid in &pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "FRR daemon {pid} still runs"
        );
    }
    assert!(!lab.root.join(&id).exists());
}
