//! A fake hypervisor for the host side of driver `scaleway`: the fake host
//! of `public_apply`, a lock and a record in a temporary folder, and VM
//! documents (shared by `host_actions.rs` and `host_tables.rs`).

#![allow(dead_code, clippy::unwrap_used)] // test code, each file uses a part

use std::path::PathBuf;
use std::time::Duration;

use opennebula::driver::{Level, Log, Output};
use opennebula::vm::Vm;
use public_apply::Host;
use public_apply::fake::FakeHost;
use public_apply::record::RecordFile;
use scaleway_vnm::host::{Settings, clean_host_with, pre_with, reconcile_with, update_sg_with};
use test_support::{TempDir, fixture};

/// One fake hypervisor: its kernel, its lock and record.
pub struct Hyper {
    pub fake: FakeHost,
    pub settings: Settings,
    _dir: TempDir,
}

impl Hyper {
    pub fn new() -> Self {
        let dir = TempDir::new("vnm-host");
        Self {
            fake: FakeHost::new(),
            settings: Settings {
                record: dir.path().join("state/vnm-public.json"),
                lock: dir.path().join("lock"),
                lock_timeout: Duration::from_secs(5),
                dry_run: false,
            },
            _dir: dir,
        }
    }

    pub fn host(&self) -> Host<'_> {
        Host {
            nft: &self.fake,
            ip: &self.fake,
            sysctl: &self.fake,
            helper: None,
        }
    }

    pub fn act(
        &self,
        f: impl FnOnce(&mut Log<'_>, Host<'_>, &Settings) -> anyhow::Result<Output>,
    ) -> (Result<String, String>, String) {
        let mut err = Vec::new();
        let result = {
            let mut log = Log::new(&mut err, Level::Debug, "scaleway-vnm scaleway test");
            f(&mut log, self.host(), &self.settings)
        };
        (
            result.map(|o| o.stdout).map_err(|e| format!("{e:#}")),
            String::from_utf8(err).unwrap(),
        )
    }

    pub fn pre(&self, vm: &Vm) -> (Result<String, String>, String) {
        self.act(|log, host, s| pre_with(vm, log, host, s))
    }

    pub fn clean(&self, vm: &Vm) -> (Result<String, String>, String) {
        self.act(|log, host, s| clean_host_with(vm, log, host, s))
    }

    pub fn update_sg(&self, vm: &Vm) -> (Result<String, String>, String) {
        self.act(|log, host, s| update_sg_with(vm, log, host, s))
    }

    pub fn reconcile(&self) -> (Result<String, String>, String) {
        self.act(reconcile_with)
    }

    pub fn record(&self) -> Vec<String> {
        RecordFile::new(&self.settings.record)
            .load()
            .unwrap()
            .endpoints
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    pub fn record_path(&self) -> PathBuf {
        self.settings.record.clone()
    }

    /// Every file of the record's folder and its content (nothing when
    /// there is no folder).
    pub fn record_files(&self) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &std::path::Path, out: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries {
                let path = e.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.insert(path.clone(), std::fs::read(&path).unwrap());
                }
            }
        }
        let mut out = std::collections::BTreeMap::new();
        walk(RecordFile::new(&self.settings.record).path(), &mut out);
        out
    }
}

pub fn parse_vm(xml: &str) -> Vm {
    Vm::from_element(&opennebula::xml::parse(xml.as_bytes()).unwrap()).unwrap()
}

/// VM `id` with IPv4 public NICs `(nic_id, n)`: private 172.30.0.(4n)/31,
/// flexible IP 198.51.100.n.
pub fn vm(id: u64, nics: &[(u32, u8)]) -> Vm {
    let body: String = nics
        .iter()
        .map(|&(nic_id, n)| {
            format!(
                "<NIC><NIC_ID>{nic_id}</NIC_ID><VN_MAD>scaleway</VN_MAD><BRIDGE>scwpub0</BRIDGE>\
                 <TARGET>one-{id}-{nic_id}</TARGET><MAC>02:00:00:00:{id:02x}:{nic_id:02x}</MAC><IP>172.30.0.{}</IP><GATEWAY>172.30.0.{}</GATEWAY><EXTERNAL_IP>198.51.100.{n}</EXTERNAL_IP></NIC>",
                4 * n,
                4 * n + 1
            )
        })
        .collect();
    parse_vm(&format!("<VM><ID>{id}</ID><TEMPLATE>{body}</TEMPLATE></VM>"))
}

pub fn fixture_vm(name: &str) -> Vm {
    parse_vm(&fixture(name))
}
