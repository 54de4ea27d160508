//! Networks and VMs as an administrator makes them, through OpenNebula's
//! CLI as oneadmin: oned leases the addresses, runs the network drivers
//! (`pre` on the host through its ssh stream, the public driver's `post` and
//! `clean` on the frontend, the private driver's on the host) around its VM
//! driver's actions, which libvirtd turns into namespaces and veths.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use opennebula::xml::Element;

use crate::netns::{PORT, Service};
use crate::sandbox::{Sandbox, VmState, id_of};

/// oned's VM states used here.
const ACTIVE: &str = "3";
const DONE: &str = "6";
const POWEROFF: &str = "8";
const LCM_RUNNING: &str = "3";

pub fn value(e: &Element, path: &str) -> String {
    e.at(path).map_or_else(String::new, |c| c.text.trim().to_owned())
}

fn ip(e: &Element, path: &str) -> anyhow::Result<Ipv4Addr> {
    value(e, path)
        .parse()
        .with_context(|| format!("{path} is not an IPv4 address: {:?}", value(e, path)))
}

/// The host a VM's last history record names.
fn current_host(vm: &Element) -> String {
    vm.at("HISTORY_RECORDS")
        .and_then(|h| h.children_named("HISTORY").last())
        .map_or_else(String::new, |h| value(h, "HOSTNAME"))
}

impl Sandbox {
    /// Waits (2 minutes at most) until VM `id` satisfies `done`; returns it.
    pub fn wait_vm(&self, id: u32, what: &str, done: impl Fn(&Element) -> bool) -> anyhow::Result<Element> {
        let started = Instant::now();
        loop {
            let vm = self.show("onevm", id)?;
            if done(&vm) {
                return Ok(vm);
            }
            // BOOT_FAILURE (36) to PROLOG_UNDEPLOY_FAILURE (47), but for
            // PROLOG_MIGRATE_POWEROFF (43) and PROLOG_MIGRATE_SUSPEND (45),
            // which are on their way: the action failed.
            let failed = value(&vm, "STATE") == ACTIVE
                && value(&vm, "LCM_STATE")
                    .parse::<u32>()
                    .is_ok_and(|s| (36..=47).contains(&s) && s != 43 && s != 45);
            if failed || started.elapsed() > Duration::from_secs(120) {
                let log = std::fs::read_to_string(self.oned()?.location.join(format!("var/vms/{id}/vm.log")))
                    .unwrap_or_default();
                bail!(
                    "VM {id}: no {what} ({}; state {}, lcm state {}):\n{}\n--- oned's processes still running\n{}",
                    if failed { "an action failed" } else { "2 minutes passed" },
                    value(&vm, "STATE"),
                    value(&vm, "LCM_STATE"),
                    tail(&log, 15),
                    self.oned_processes()
                );
            }
            self.ctl.sleep(Duration::from_millis(300))?;
        }
    }

    /// Waits until network `id` is READY.
    pub fn wait_vnet(&self, id: u32) -> anyhow::Result<Element> {
        let started = Instant::now();
        loop {
            let v = self.show("onevnet", id)?;
            match value(&v, "STATE").as_str() {
                "1" => return Ok(v),
                "0" | "2" if started.elapsed() < Duration::from_secs(60) => {
                    self.ctl.sleep(Duration::from_millis(200))?;
                }
                s => bail!(
                    "network {id} is in state {s}, not READY:\n{}",
                    self.oned()?.log_tail(20)
                ),
            }
        }
    }

    /// `onevntemplate instantiate` of the provision's template, as a user
    /// would: no `VLAN_ID` (the driver gives the network a VNI of its own).
    pub fn instantiate_private_network(&mut self) -> anyhow::Result<String> {
        let tpl = self.cluster.private_template.to_string();
        let name = format!("{}-net", crate::sandbox::NAME);
        let id = id_of(&self.one("onevntemplate", &["instantiate", &tpl, "--name", &name])?)?;
        self.private_vnet = Some(id);
        let v = self.wait_vnet(id)?;
        ensure!(
            value(&v, "VLAN_ID").is_empty() && value(&v, "TEMPLATE/VLAN_ID").is_empty(),
            "network {id} got a VLAN_ID"
        );
        let ar = v
            .at("AR_POOL")
            .and_then(|p| p.children_named("AR").next())
            .context("the private network has no address range")?;
        Ok(format!(
            "network {id} {name} from template {tpl}: VN_MAD {}, bridge {}, PHYDEV {}, no VLAN_ID (VNI {} = \
             1000000 + its id), range {} + {}",
            value(&v, "VN_MAD"),
            value(&v, "BRIDGE"),
            value(&v, "PHYDEV"),
            1_000_000 + id,
            value(ar, "IP"),
            value(ar, "SIZE")
        ))
    }

    /// `onevm create --hold` with a public and a private NIC, then `onevm
    /// deploy` on host `host`: oned runs `pre`, the VM driver (libvirtd
    /// plugs it), `post`. The VM's service listens once it runs.
    pub fn deploy(&mut self, name: &str, host: usize) -> anyhow::Result<String> {
        let private = self.private_vnet.context("no private network")?;
        let oned = self.oned()?;
        let file = oned.template_file(
            &format!("{name}.tmpl"),
            &format!(
                "NAME = \"{name}\"\nCPU = \"0.1\"\nMEMORY = \"64\"\nNIC = [ NETWORK_ID = \"{}\" ]\n\
                 NIC = [ NETWORK_ID = \"{private}\" ]\n",
                self.cluster.public_vnet
            ),
        );
        let id = id_of(&self.one("onevm", &["create", "--hold", &file])?)?;
        let h = self.host(host)?.clone();
        let ds = self.cluster.system_ds.to_string();
        self.one("onevm", &["deploy", &id.to_string(), &h.one_id.to_string(), &ds])?;
        let hostname = h.public_ip.to_string();
        let vm = self.wait_vm(id, "RUNNING", |vm| {
            value(vm, "STATE") == ACTIVE && value(vm, "LCM_STATE") == LCM_RUNNING && current_host(vm) == hostname
        })?;
        let nics: Vec<&Element> = vm
            .at("TEMPLATE")
            .map(|t| t.children_named("NIC").collect())
            .unwrap_or_default();
        let [public, private_nic] = nics.as_slice() else {
            bail!("VM {id} has {} NICs, not 2", nics.len());
        };
        let ns = format!("{}-vm{id}", self.opts.prefix);
        ensure!(
            crate::netns::namespaces().contains(&ns),
            "VM {id} runs but libvirtd made no namespace {ns}"
        );
        let service = Service::start(&ns, name, (Ipv4Addr::UNSPECIFIED, PORT).into())?;
        let state = VmState {
            id,
            name: name.to_owned(),
            ns: ns.clone(),
            host,
            public_ip: ip(public, "IP")?,
            external_ip: ip(public, "EXTERNAL_IP")?,
            private_ip: ip(private_nic, "IP")?,
            service: Some(service),
        };
        let details = format!(
            "VM {id} {name} (namespace {ns}) on {}: public {} via {} = flexible IP {}; private {} on {} (MTU \
             from GUEST_MTU)",
            h.name,
            state.public_ip,
            value(public, "GATEWAY"),
            state.external_ip,
            state.private_ip,
            value(private_nic, "BRIDGE"),
        );
        self.vms.push(state);
        Ok(format!("{details}\nlibvirtd: {}", self.plumbing(id)))
    }

    /// `onevm migrate --live` of VM `index` to host `dest`: oned runs `pre`
    /// on the destination, the migration (libvirtd moves the host ends),
    /// `clean` for the source and `post`.
    pub fn migrate(&mut self, index: usize, dest: usize) -> anyhow::Result<String> {
        let vm = self.vms.get(index).context("no such VM")?;
        let (id, src) = (vm.id, vm.host);
        let d = self.host(dest)?.clone();
        self.one("onevm", &["migrate", "--live", &id.to_string(), &d.one_id.to_string()])?;
        let hostname = d.public_ip.to_string();
        self.wait_vm(id, "RUNNING on the destination", |vm| {
            value(vm, "STATE") == ACTIVE && value(vm, "LCM_STATE") == LCM_RUNNING && current_host(vm) == hostname
        })?;
        if let Some(vm) = self.vms.get_mut(index) {
            vm.host = dest;
        }
        Ok(format!(
            "VM {id}: {} -> {} (oned's order: pre on the destination, migrate, clean for the source, post)\n\
             libvirtd: {}",
            self.host(src)?.name,
            d.name,
            self.plumbing(id)
        ))
    }

    /// Moves VM `index` to host `dest` as its hypervisor allows: a live
    /// migration on KVM; on LXC (OpenNebula has no live migration for
    /// containers, and its cold migration copies the VM's folder with an
    /// `ssh` from host to host, which the emulated hosts do not have) a new
    /// container of the same name on `dest` replaces it.
    pub fn move_vm(&mut self, index: usize, dest: usize) -> anyhow::Result<String> {
        match self.opts.hypervisor {
            crate::sandbox::Hypervisor::Kvm => self.migrate(index, dest),
            crate::sandbox::Hypervisor::Lxc => self.replace(index, dest),
        }
    }

    /// `onevm terminate` of VM `index` (the VM driver's cancel, `clean`),
    /// then `onevm create` and `deploy` of a VM of the same name on `dest`
    /// (`pre`, the VM driver's deploy, `post`), at the same place in the list.
    pub fn replace(&mut self, index: usize, dest: usize) -> anyhow::Result<String> {
        let name = self.vms.get(index).context("no such VM")?.name.clone();
        let gone = self.terminate(index)?;
        let made = self.deploy(&name, dest)?;
        let vm = self.vms.pop().context("the new VM is not listed")?;
        self.vms.insert(index.min(self.vms.len()), vm);
        Ok(format!("{gone}\n{made}"))
    }

    /// `onevm poweroff` then `onevm resume` of VM `index`: the VM driver's
    /// shutdown (`clean`), then deploy again (`pre`, `post`).
    pub fn poweroff_resume(&mut self, index: usize) -> anyhow::Result<String> {
        let vm = self.vms.get_mut(index).context("no such VM")?;
        let (id, name, ns) = (vm.id, vm.name.clone(), vm.ns.clone());
        vm.service = None;
        self.one("onevm", &["poweroff", &id.to_string()])?;
        self.wait_vm(id, "POWEROFF", |vm| value(vm, "STATE") == POWEROFF)?;
        ensure!(
            !crate::netns::namespaces().contains(&ns),
            "VM {id} is powered off but its namespace is still there"
        );
        self.one("onevm", &["resume", &id.to_string()])?;
        self.wait_vm(id, "RUNNING again", |vm| {
            value(vm, "STATE") == ACTIVE && value(vm, "LCM_STATE") == LCM_RUNNING
        })?;
        let service = Service::start(&ns, &name, (Ipv4Addr::UNSPECIFIED, PORT).into())?;
        if let Some(vm) = self.vms.get_mut(index) {
            vm.service = Some(service);
        }
        Ok(format!("VM {id}: POWEROFF (namespace gone), then RUNNING again"))
    }

    /// `onevm terminate` of VM `index`; waits until oned is DONE with it and
    /// its host has nothing of it left (oned may say DONE before `clean` ran).
    pub fn terminate(&mut self, index: usize) -> anyhow::Result<String> {
        let vm = self.vms.get_mut(index).context("no such VM")?;
        vm.service = None;
        let (id, host) = (vm.id, vm.host);
        let addresses = vec![vm.external_ip.to_string(), vm.public_ip.to_string()];
        self.one("onevm", &["terminate", &id.to_string()])?;
        self.wait_vm(id, "DONE", |vm| value(vm, "STATE") == DONE)?;
        let h = self.host(host)?.clone();
        let started = Instant::now();
        let left = loop {
            match crate::checks::nothing_of(self, &h, Some(id), &addresses) {
                Ok(s) => break s,
                Err(e) if started.elapsed() > Duration::from_secs(60) => return Err(e),
                Err(_) => self.ctl.sleep(Duration::from_millis(300))?,
            }
        };
        self.vms.retain(|v| v.id != id);
        Ok(format!("VM {id}: DONE, its leases released; {left}"))
    }
}

impl Sandbox {
    /// The command lines of the processes oned started (its drivers and
    /// theirs) that run now, but for its long-lived drivers: what an
    /// action that does not end is waiting for.
    fn oned_processes(&self) -> String {
        let Some(oned) = &self.oned else {
            return String::new();
        };
        let marker = format!("ONE_LOCATION={}", oned.location.display());
        let mut lines = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            if !environ.split(|b| *b == 0).any(|v| v == marker.as_bytes()) {
                continue;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if !text.contains("one_") && !text.contains("bin/oned") && !text.contains("monitord") {
                lines.push(format!("{}: {}", entry.file_name().to_string_lossy(), text.trim()));
            }
        }
        lines.join("\n")
    }

    /// Every action libvirtd handled so far.
    pub fn libvirt_log(&self) -> Vec<String> {
        self.libvirt
            .as_ref()
            .map(crate::libvirt::Libvirt::log)
            .unwrap_or_default()
    }

    /// What libvirtd did for VM `id` so far.
    fn plumbing(&self, id: u32) -> String {
        self.libvirt.as_ref().map_or_else(String::new, |l| {
            l.log()
                .into_iter()
                .filter(|line| line.split_whitespace().rev().nth(2) == Some(&id.to_string()))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
