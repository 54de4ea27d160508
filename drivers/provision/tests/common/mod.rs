//! What the provision tests share: an emulator, a real oned (OpenNebula's
//! own, built by `tests/oned/build.sh`, with our drivers installed by
//! `install.sh -d`: its `one_ipam` runs our IPAM driver for the public
//! ranges, as oneadmin, with oneadmin's Scaleway credentials), a recording
//! fake of the hosts, and a way to run `scaleway-provision` in-process.
//!
//! The tests that use it are privileged (oned runs as oneadmin): `sudo
//! .ci/run` runs them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)] // test code

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use opennebula::driver::{Env, Io};
use scaleway_emulator::{Emulator, Running};
use scaleway_provision::bootstrap::{Remote, RemoteOutput};
use test_support::TempDir;
use test_support::oned::{Options, RealOned};

mod one;
pub use one::text;

pub const PROJECT: &str = "564aa517-68b0-4fd7-8c8c-d21c4bcdcbd5";
pub const SECRET: &str = "5ec7e7aa-0000-4000-8000-5ec7e75ec7e7";

/// A fake host: its files and the commands it ran.
#[derive(Debug, Default, Clone)]
pub struct FakeHostState {
    pub files: BTreeMap<String, Vec<u8>>,
    pub commands: Vec<Vec<String>>,
    /// The cluster descriptions `evpn-config` got, in order.
    pub evpn: Vec<String>,
}

/// Hosts that answer like freshly installed Ubuntu servers, recording everything.
#[derive(Default)]
pub struct FakeHosts {
    pub hosts: Mutex<BTreeMap<Ipv4Addr, FakeHostState>>,
    /// Commands containing this word fail.
    pub fail_on: Mutex<Option<String>>,
    /// The hosts whose SSH keys were forgotten, in order.
    pub forgotten: Mutex<Vec<Ipv4Addr>>,
}

impl FakeHosts {
    pub fn host(&self, ip: Ipv4Addr) -> FakeHostState {
        self.hosts.lock().unwrap().get(&ip).cloned().unwrap_or_default()
    }
}

impl Remote for FakeHosts {
    fn run(&self, host: Ipv4Addr, argv: &[String], stdin: &[u8]) -> anyhow::Result<RemoteOutput> {
        let mut words: Vec<&str> = argv.iter().map(String::as_str).collect();
        if words.first() == Some(&"sudo") {
            words.remove(0);
            if words.first() == Some(&"-n") {
                words.remove(0);
            }
            if words.first() == Some(&"-u") {
                words.drain(..2);
            }
        }
        if let Some(bad) = self.fail_on.lock().unwrap().as_deref()
            && words.contains(&bad)
        {
            return Ok(RemoteOutput {
                success: false,
                stdout: String::new(),
                stderr: format!("{bad}: failed on purpose"),
            });
        }
        let mut all = self.hosts.lock().unwrap();
        let h = all.entry(host).or_default();
        h.commands.push(words.iter().map(|w| (*w).to_owned()).collect());
        let ok = |out: &str| {
            Ok(RemoteOutput {
                success: true,
                stdout: out.to_owned(),
                stderr: String::new(),
            })
        };
        match words.as_slice() {
            ["true"] => ok(""),
            ["ip", "-o", "route", "show", "default"] => ok("default via 62.210.0.1 dev eno1 proto static\n"),
            ["printenv", "SSH_CLIENT"] => ok("203.0.113.10 50022 22\n"),
            ["cat", path] => {
                let default = match *path {
                    "/etc/hosts" => "127.0.0.1 localhost\n::1 localhost ip6-localhost\n",
                    "/etc/frr/daemons" => "zebra=yes\nbgpd=no\nospfd=no\n",
                    _ => "",
                };
                let text = h
                    .files
                    .get(*path)
                    .map_or_else(|| default.to_owned(), |b| String::from_utf8_lossy(b).into_owned());
                ok(&text)
            }
            [.., "/dev/stdin", path] if words[0] == "install" => {
                h.files.insert((*path).to_owned(), stdin.to_vec());
                ok("")
            }
            [.., "evpn-config", "-"] => {
                h.evpn.push(String::from_utf8_lossy(stdin).into_owned());
                ok("")
            }
            _ => ok(""),
        }
    }

    fn forget(&self, host: Ipv4Addr) -> anyhow::Result<()> {
        self.forgotten.lock().unwrap().push(host);
        Ok(())
    }
}

/// The workspace's target folder (where `cargo test --workspace` builds every binary).
pub fn target_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

/// An emulator, a real oned running the real IPAM driver, and folders.
pub struct Bed {
    pub emu: Running,
    pub oned: RealOned,
    pub dir: TempDir,
    pub hosts: FakeHosts,
}

impl Bed {
    pub fn new(label: &str) -> Self {
        Self::with_speed(label, 0.005)
    }

    pub fn with_speed(label: &str, speed: f64) -> Self {
        test_support::require_root();
        let emu = Emulator::start(scaleway_emulator::Options {
            project_ids: vec![PROJECT.into()],
            speed,
            ..Default::default()
        })
        .unwrap();
        let dir = TempDir::new(label);
        let bindir = target_bin("scaleway-ipam").parent().unwrap().to_path_buf();
        // The hosts scaleway-provision registers are KVM hosts: their VM
        // driver is the test hypervisor (a VM "runs" without a hypervisor).
        let oned = RealOned::start(&Options {
            bindir: bindir.clone(),
            test_vmm: Some(bindir.join("one-scaleway-test-vmm")),
            kvm_is_test_vmm: true,
            env: vec![
                ("ONE_SCALEWAY_POLL_MS".into(), "20".into()),
                ("ONE_SCALEWAY_RETRY_BASE_MS".into(), "20".into()),
            ],
            ..Options::default()
        });
        // Where production keeps the IPAM driver's credentials: oneadmin's
        // Scaleway config file.
        oned.write_scaleway_config(&format!(
            "secret_key: {SECRET}\ndefault_project_id: {PROJECT}\ndefault_zone: fr-par-1\napi_url: {}\n",
            emu.url()
        ));
        Self {
            emu,
            oned,
            dir,
            hosts: FakeHosts::default(),
        }
    }

    /// Replaces the installed `vnm/<driver>/vnet_create` of both our
    /// network drivers with one that fails (`#!/bin/false`).
    pub fn fail_vnet_create(&self) {
        for driver in ["scaleway", "scaleway_evpn"] {
            let path = self.oned.location.join(format!("var/remotes/vnm/{driver}/vnet_create"));
            std::fs::remove_file(&path).unwrap();
            std::fs::write(&path, "#!/bin/false\n").unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
    }

    /// oned's XML-RPC endpoint and oneadmin's credentials file.
    fn oned_env(&self) -> Vec<(String, String)> {
        self.oned
            .env()
            .iter()
            .filter(|(k, _)| k == "ONE_XMLRPC" || k == "ONE_AUTH")
            .cloned()
            .collect()
    }

    pub fn env(&self) -> Vec<(String, String)> {
        let d = self.dir.path();
        vec![
            ("SCW_SECRET_KEY".into(), SECRET.into()),
            ("SCW_DEFAULT_PROJECT_ID".into(), PROJECT.into()),
            ("SCW_API_URL".into(), self.emu.url()),
            ("SCW_CONFIG_PATH".into(), "/nonexistent/config.yaml".into()),
            ("ONE_SCALEWAY_STATE_DIR".into(), d.join("state").display().to_string()),
            ("ONE_SCALEWAY_POLL_MS".into(), "20".into()),
            ("ONE_SCALEWAY_RETRY_BASE_MS".into(), "20".into()),
            ("ONE_SCALEWAY_WAIT".into(), "60".into()),
            ("HOME".into(), d.join("home").display().to_string()),
        ]
        .into_iter()
        .chain(self.oned_env())
        .collect()
    }

    /// A description file with `hosts` hosts and `ips` public IPs.
    pub fn description(&self, name: &str, hosts: u32, ips: u32) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "name: {name}\nconnection:\n  zone: fr-par-1\ninputs:\n  number_hosts: {hosts}\n  offer: EM-A116X-SSD\n  \
                 os: Ubuntu 24.04\n  number_public_ips: {ips}\n  dns: 1.1.1.1\n"
            ),
        )
        .unwrap();
        path
    }

    /// Runs `scaleway-provision ARGS` in-process with the fake hosts.
    pub fn run(&self, args: &[&str]) -> (u8, String, String) {
        self.run_env(args, &[])
    }

    /// [`Bed::run`] with some variables of the environment replaced (another
    /// frontend: another `ONE_SCALEWAY_STATE_DIR`).
    pub fn run_env(&self, args: &[&str], overrides: &[(&str, &str)]) -> (u8, String, String) {
        let key = test_support::fixture_path("provision/oneadmin.pub");
        let vnm = self.dir.path().join("scaleway-vnm");
        if !vnm.exists() {
            std::fs::write(&vnm, b"\x7fELF fake scaleway-vnm").unwrap();
        }
        let mut argv: Vec<std::ffi::OsString> = vec!["scaleway-provision".into()];
        argv.extend(args.iter().map(Into::into));
        let takes_access = matches!(
            args,
            ["create" | "adopt" | "configure", ..] | ["host", "add" | "configure" | "delete", ..]
        );
        if takes_access {
            argv.extend([
                "--ssh-key".into(),
                key.into_os_string(),
                "--vnm".into(),
                vnm.into_os_string(),
            ]);
        }
        let env = Env::from_pairs(self.env().into_iter().map(|(k, v)| {
            let v = overrides
                .iter()
                .find(|(o, _)| *o == k)
                .map_or(v, |(_, o)| (*o).to_owned());
            (k, v)
        }));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let io = Io {
            stdin: &mut &b""[..],
            stdout: &mut out,
            stderr: &mut err,
        };
        let code = scaleway_provision::main_with_remote(argv, &env, io, Some(&self.hosts));
        (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "{args:?} failed:\n{err}\n{out}");
        out
    }

    /// The resources of a kind in the emulator's state.
    pub fn resources(&self, kind: &str) -> Vec<serde_json::Value> {
        self.emu.state()[kind].as_array().cloned().unwrap_or_default()
    }

    /// The provision's record.
    pub fn record(&self, name: &str) -> Option<scaleway_provision::state::ProvisionState> {
        scaleway_provision::state::Store::new(&self.dir.path().join("state"))
            .read(name)
            .unwrap()
    }
}

/// Finds arrays named `kind` anywhere in the emulator's state.
pub fn find_kind(v: &serde_json::Value, kind: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    match v {
        serde_json::Value::Object(map) => {
            for (k, x) in map {
                if k == kind {
                    match x {
                        serde_json::Value::Array(items) => out.extend(items.iter().cloned()),
                        serde_json::Value::Object(m) => out.extend(m.values().cloned()),
                        _ => {}
                    }
                } else {
                    out.extend(find_kind(x, kind));
                }
            }
        }
        serde_json::Value::Array(items) => {
            for x in items {
                out.extend(find_kind(x, kind));
            }
        }
        _ => {}
    }
    out
}

pub fn tagged(items: &[serde_json::Value], tag: &str) -> usize {
    items
        .iter()
        .filter(|i| {
            i["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|x| x.as_str() == Some(tag)))
        })
        .count()
}

pub fn path_of(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn provision_tag(bed: &Bed, name: &str) -> String {
    format!("one-scaleway-provision={}", bed.record(name).unwrap().id)
}

/// The hosts' private addresses in the EVPN description each host got last.
pub fn evpn_hosts(bed: &Bed, public: Ipv4Addr) -> String {
    let h = bed.hosts.host(public);
    let last = h.evpn.last().cloned().unwrap_or_default();
    last.lines()
        .find_map(|l| l.strip_prefix("HOSTS           = "))
        .unwrap_or("")
        .trim_matches('"')
        .to_owned()
}

/// Asserts the provision's resources at Scaleway and in OpenNebula; with
/// `fake_hosts`, also what each host was given.
pub fn check_cluster(bed: &Bed, name: &str, fake_hosts: bool, hosts: usize, ips: usize) {
    let s = bed.record(name).unwrap();
    let tag = provision_tag(bed, name);
    assert_eq!(s.hosts.len(), hosts);
    let servers = bed.resources("servers");
    assert_eq!(tagged(&servers, &tag), hosts, "servers: {servers:#?}");
    assert_eq!(tagged(&bed.resources("vpcs"), &tag), 1);
    assert_eq!(tagged(&bed.resources("private_networks"), &tag), 1);
    assert_eq!(tagged(&bed.resources("gateways"), &tag), 1);
    assert_eq!(bed.resources("gateway_networks").len(), 1);
    assert_eq!(tagged(&bed.resources("flexible_ips"), &tag), ips);
    // OpenNebula
    let one_hosts = bed.hosts();
    assert_eq!(one_hosts.len(), hosts, "{one_hosts:#?}");
    let cluster = bed.clusters().into_iter().find(|c| text(c, "NAME") == name).unwrap();
    let cluster_id = text(&cluster, "ID").to_owned();
    for h in &s.hosts {
        let oh = one_hosts
            .iter()
            .find(|o| Some(text(o, "ID")) == h.one_id.map(|i| i.to_string()).as_deref())
            .unwrap();
        assert_eq!(text(oh, "NAME"), h.public_ip.unwrap().to_string());
        assert_eq!((text(oh, "IM_MAD"), text(oh, "VM_MAD")), ("kvm", "kvm"));
        assert_eq!(text(oh, "CLUSTER_ID"), cluster_id);
        assert_eq!(
            text(oh, "TEMPLATE/PROVISION/DEPLOY_ID"),
            format!("fr-par-1/{}", h.server_id.as_deref().unwrap())
        );
        assert_eq!(text(oh, "TEMPLATE/PROVISION/ID"), s.id.as_str());
        if !fake_hosts {
            continue;
        }
        // Every host was told about every host, in the same order.
        let expected: Vec<String> = s.hosts.iter().map(|x| x.private_ip.unwrap().to_string()).collect();
        assert_eq!(
            evpn_hosts(bed, h.public_ip.unwrap()),
            expected.join(" "),
            "evpn of {}",
            h.name
        );
        let etc_hosts = String::from_utf8(
            bed.hosts
                .host(h.public_ip.unwrap())
                .files
                .get("/etc/hosts")
                .cloned()
                .unwrap_or_default(),
        )
        .unwrap();
        for x in &s.hosts {
            assert!(
                etc_hosts.contains(&format!("{} {}", x.private_ip.unwrap(), x.name)),
                "{etc_hosts}"
            );
        }
        assert_eq!(etc_hosts.matches(&format!("{name}-host")).count(), hosts, "{etc_hosts}");
    }
    let ds = bed.datastores();
    for n in [format!("{name}-image"), format!("{name}-system")] {
        let d = ds
            .iter()
            .find(|d| text(d, "NAME") == n)
            .unwrap_or_else(|| panic!("{n} in {ds:#?}"));
        assert!(
            d.at("CLUSTERS")
                .is_some_and(|c| c.children_named("ID").any(|i| i.text == cluster_id)),
            "{}",
            d.to_xml()
        );
    }
    let (vnet, ars) = bed.vnet_named(&format!("{name}-public")).unwrap();
    assert_eq!((text(&vnet, "VN_MAD"), text(&vnet, "BRIDGE")), ("scaleway", "scwpub0"));
    assert_eq!(ars.len(), ips, "{}", vnet.to_xml());
    let fips: Vec<String> = bed
        .resources("flexible_ips")
        .iter()
        .map(|f| f["ip_address"].as_str().unwrap().to_owned())
        .collect();
    for ar in &ars {
        assert!(fips.contains(&ar["EXTERNAL_IP"]), "{ar:?} not in {fips:?}");
        assert_eq!(ar["SCALEWAY_PROVISION"], s.id);
    }
    let tpl = bed
        .vntemplates()
        .into_iter()
        .find(|t| text(t, "NAME") == format!("{name}-private"))
        .unwrap();
    assert_eq!(text(&tpl, "TEMPLATE/VN_MAD"), "scaleway_evpn", "{}", tpl.to_xml());
    assert_eq!(text(&tpl, "TEMPLATE/PHYDEV"), "scwpriv0", "{}", tpl.to_xml());
}
