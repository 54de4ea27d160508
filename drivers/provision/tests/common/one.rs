//! What the real oned holds, read as the provision tests check it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use opennebula::xml::Element;

use super::Bed;

/// The text at `path` below `e` ("" when absent).
pub fn text<'a>(e: &'a Element, path: &str) -> &'a str {
    e.at(path).map_or("", |c| c.text.as_str())
}

/// The address ranges of a network: each one's leaf attributes (`AR_ID`,
/// `IP`, `EXTERNAL_IP`, ...).
type Ars = Vec<BTreeMap<String, String>>;

impl Bed {
    pub fn hosts(&self) -> Vec<Element> {
        self.oned.pool("hostpool")
    }

    pub fn clusters(&self) -> Vec<Element> {
        self.oned.pool("clusterpool")
    }

    pub fn datastores(&self) -> Vec<Element> {
        self.oned.pool("datastorepool")
    }

    pub fn vnets(&self) -> Vec<Element> {
        self.oned.pool("vnpool")
    }

    pub fn vntemplates(&self) -> Vec<Element> {
        self.oned.pool("vntemplatepool")
    }

    /// The network named `name`, with its address ranges (the pool's
    /// listing has no leases; `one.vn.info` has them all).
    pub fn vnet_named(&self, name: &str) -> Option<(Element, Ars)> {
        let id: u64 = self
            .vnets()
            .into_iter()
            .find(|v| text(v, "NAME") == name)
            .map(|v| text(&v, "ID").parse().unwrap())?;
        let vnet = self.oned.api().vnet(id).unwrap();
        let ars = test_support::oned::ranges(&vnet);
        Some((vnet, ars))
    }

    /// A VM deployed by oned on host `host` of cluster `cluster` (a VM
    /// without disks or NICs, on a system datastore without transfers that
    /// is added to the cluster for it): `(vm, datastore)`.
    pub fn run_vm(&self, cluster: &str, host: i64) -> (u32, u32) {
        let ds = self.oned.create(
            "onedatastore",
            &["--cluster", cluster],
            "NAME = \"vm-test-system\"\nTYPE = \"SYSTEM_DS\"\nTM_MAD = \"dummy\"\n",
        );
        let vm = self
            .oned
            .create("onevm", &["--hold"], "NAME = \"web\"\nCPU = \"0.1\"\nMEMORY = \"64\"\n");
        self.oned.cli_ok(
            "onevm",
            &["deploy", &vm.to_string(), &host.to_string(), &ds.to_string()],
        );
        self.wait_vm(vm, "RUNNING", |vm| {
            text(vm, "STATE") == "3" && text(vm, "LCM_STATE") == "3"
        });
        (vm, ds)
    }

    /// Terminates a VM of [`Bed::run_vm`] and removes its datastore.
    pub fn terminate_vm(&self, vm: u32, ds: u32) {
        self.oned.cli_ok("onevm", &["terminate", "--hard", &vm.to_string()]);
        self.wait_vm(vm, "DONE", |vm| text(vm, "STATE") == "6");
        self.oned.cli_ok("onedatastore", &["delete", &ds.to_string()]);
    }

    fn wait_vm(&self, id: u32, what: &str, done: impl Fn(&Element) -> bool) {
        let started = Instant::now();
        loop {
            let vm = self.oned.show("onevm", id);
            if done(&vm) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "VM {id} is not {what} after 60 s:\n{}",
                vm.to_xml()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
