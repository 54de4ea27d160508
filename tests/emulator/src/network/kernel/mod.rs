//! The applier: brings the kernel from the topology it built last to the one
//! wanted, with `ip` (argument vectors, or `ip -n NS -batch -` whose lines
//! are built from parsed addresses and names of our own: never a shell), and
//! `/proc/sys` writes from a short-lived thread that entered the namespace.
//!
//! It only ever deletes namespaces it created (it keeps their names), and
//! deletes a veth explicitly before the namespace that holds it, so that
//! what the report says is what the kernel has, without waiting for the
//! kernel's asynchronous namespace cleanup.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sched::CloneFlags;
use serde_json::{Value, json};

use super::frr;
use super::hostfs;
use super::topology::{FipRoute, Host, Naming, PrivateNic, Segment, Topology};
use super::{CLIENT_V4, CLIENT_V6, LINK_V4, LINK_V6};

mod objects;

/// The kernel side as the applier built it.
#[derive(Debug, Default)]
pub struct Applied {
    pub epoch: u64,
    pub hosts: BTreeMap<String, Host>,
    pub segments: BTreeMap<String, Segment>,
    /// With the interface name given in the server's namespace.
    pub nics: BTreeMap<String, (PrivateNic, String)>,
    pub routes: BTreeMap<String, FipRoute>,
    /// Every namespace created and not deleted yet.
    pub namespaces: BTreeSet<String>,
}

pub struct Kernel {
    pub naming: Naming,
    pub state_root: PathBuf,
    pub applied: Applied,
    /// Start FRR in every server's namespace.
    pub frr: bool,
    /// Give every server its own `/etc` and `/var/tmp` (see `hostfs`).
    pub host_fs: bool,
    /// The running FRR instances, by server id.
    pub daemons: BTreeMap<String, frr::Instance>,
}

type Res = Result<(), String>;

/// Runs `ip ARGS...`.
pub fn ip(args: &[&str]) -> Res {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `ip -n NS -batch -` with these lines.
pub fn ip_batch(ns: &str, lines: &[String]) -> Res {
    if lines.is_empty() {
        return Ok(());
    }
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    let text = lines.join("\n") + "\n";
    if let Some(mut pipe) = child.stdin.take() {
        let _ = pipe.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| format!("ip -batch: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip -n {ns} -batch: {} (lines: {})",
            String::from_utf8_lossy(&out.stderr).trim(),
            lines.join("; ")
        ))
    }
}

/// Writes `/proc/sys/<key>` values inside namespace `ns`.
pub fn sysctls(ns: &str, values: &[(&str, &str)]) -> Res {
    let path = format!("/run/netns/{ns}");
    let values: Vec<(String, String)> = values
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    let worker = std::thread::spawn(move || -> Res {
        let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {path}: {e}"))?;
        for (k, v) in &values {
            let p = format!("/proc/sys/{k}");
            std::fs::write(&p, format!("{v}\n")).map_err(|e| format!("{p} = {v}: {e}"))?;
        }
        Ok(())
    });
    worker.join().map_err(|_| "the sysctl thread failed".to_string())?
}

/// The namespaces that exist (`/run/netns`).
pub fn existing_namespaces() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Whether the kernel has IPv6.
pub fn has_ipv6() -> bool {
    Path::new("/proc/sys/net/ipv6").exists()
}

/// Two hosts are built the same way (a rename changes nothing in the kernel).
fn same_host(a: &Host, b: &Host) -> bool {
    (&a.namespace, &a.uplink, a.ipv4, a.ipv6) == (&b.namespace, &b.uplink, b.ipv4, b.ipv6)
}

const PING_GROUP: (&str, &str) = ("net/ipv4/ping_group_range", "0 2147483647");

impl Kernel {
    pub fn new(naming: Naming, state_root: PathBuf) -> Self {
        Kernel {
            naming,
            state_root,
            applied: Applied::default(),
            frr: false,
            host_fs: false,
            daemons: BTreeMap::new(),
        }
    }

    fn v6_sysctls(&self) -> Vec<(&'static str, &'static str)> {
        if self.naming.ipv6 {
            vec![
                ("net/ipv6/conf/all/accept_dad", "0"),
                ("net/ipv6/conf/default/accept_dad", "0"),
            ]
        } else {
            Vec::new()
        }
    }

    /// `ip netns add`, recorded; then `lo` up and the sysctls.
    fn add_ns(&mut self, name: &str, extra: &[(&str, &str)]) -> Res {
        ip(&["netns", "add", name])?;
        self.applied.namespaces.insert(name.to_string());
        let mut all = vec![PING_GROUP];
        all.extend(self.v6_sysctls());
        all.extend_from_slice(extra);
        sysctls(name, &all)?;
        ip_batch(name, &["link set lo up".to_string()])
    }

    /// `ip netns del` of a namespace of ours.
    fn del_ns(&mut self, name: &str) -> Res {
        if !self.applied.namespaces.remove(name) {
            return Ok(());
        }
        ip(&["netns", "del", name])
    }

    /// The internet namespace: a router with the outside client's addresses.
    pub fn build_inet(&mut self) -> Res {
        let inet = self.naming.inet();
        let mut extra = vec![
            ("net/ipv4/ip_forward", "1"),
            ("net/ipv4/conf/all/rp_filter", "0"),
            ("net/ipv4/conf/default/rp_filter", "0"),
        ];
        if self.naming.ipv6 {
            extra.push(("net/ipv6/conf/all/forwarding", "1"));
        }
        self.add_ns(&inet, &extra)?;
        let mut lines = vec![
            format!("addr add {CLIENT_V4}/32 dev lo"),
            format!("addr add {LINK_V4}/32 dev lo scope link"),
        ];
        if self.naming.ipv6 {
            lines.push(format!("addr add {CLIENT_V6}/128 dev lo"));
        }
        ip_batch(&inet, &lines)
    }

    /// Brings the kernel to `want`; returns what failed (tried again later).
    pub fn apply(&mut self, want: &Topology) -> Vec<String> {
        let mut errors = Vec::new();
        let mut note = |r: Res| {
            if let Err(e) = r {
                errors.push(e);
            }
        };
        if want.epoch != self.applied.epoch {
            self.teardown(false);
            self.applied.epoch = want.epoch;
        }
        if !self.applied.namespaces.contains(&self.naming.inet()) {
            note(self.build_inet());
        }
        // Removals first: routes, NICs, hosts, segments.
        let gone: Vec<String> = self
            .applied
            .routes
            .keys()
            .filter(|k| !want.routes.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            note(self.remove_route(&k));
        }
        let gone: Vec<String> = self
            .applied
            .nics
            .iter()
            .filter(|(k, (n, _))| want.nics.get(*k) != Some(n))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            note(self.remove_nic(&k));
        }
        let gone: Vec<String> = self
            .applied
            .hosts
            .iter()
            .filter(|(k, h)| want.hosts.get(*k).is_none_or(|w| !same_host(w, h)))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            note(self.remove_host(&k));
        }
        let gone: Vec<String> = self
            .applied
            .segments
            .iter()
            .filter(|(k, s)| want.segments.get(*k).is_none_or(|w| w.namespace != s.namespace))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            note(self.remove_segment(&k));
        }
        // Additions (and renames): hosts, segments, NICs, routes.
        for (k, h) in &want.hosts {
            match self.applied.hosts.get_mut(k) {
                Some(had) => had.clone_from(h),
                None => note(self.add_host(h)),
            }
        }
        for (k, s) in &want.segments {
            match self.applied.segments.get_mut(k) {
                Some(had) => had.clone_from(s),
                None => note(self.add_segment(s)),
            }
        }
        for (k, n) in &want.nics {
            if !self.applied.nics.contains_key(k) {
                note(self.add_nic(k, n));
            }
        }
        for (k, r) in &want.routes {
            if self.applied.routes.get(k) == Some(r) {
                continue;
            }
            if self.applied.hosts.contains_key(&r.server_id) {
                note(self.add_route(k, r));
            } else {
                // Attached to a server without a namespace: routed nowhere.
                note(self.remove_route(k));
            }
        }
        note(self.write_index());
        errors
    }

    /// Deletes every namespace of ours and the hosts' folders; with
    /// `everything`, also the index.
    pub fn teardown(&mut self, everything: bool) {
        for d in self.daemons.values_mut() {
            d.signal();
        }
        for d in self.daemons.values_mut() {
            d.wait();
        }
        self.daemons.clear();
        let hosts: Vec<String> = self.applied.hosts.keys().cloned().collect();
        for h in hosts {
            let dir = self.host_dir(&h);
            let _ = std::fs::remove_dir_all(dir);
        }
        let names: Vec<String> = self.applied.namespaces.iter().cloned().collect();
        for n in names {
            let _ = self.del_ns(&n);
        }
        self.applied = Applied {
            epoch: self.applied.epoch,
            ..Applied::default()
        };
        if everything {
            let _ = std::fs::remove_file(self.state_root.join(super::INDEX_FILE));
            let _ = std::fs::remove_file(self.state_root.join(format!("{}.tmp", super::INDEX_FILE)));
            // Only if empty: the folder may hold what others put there.
            let _ = std::fs::remove_dir(&self.state_root);
            if let Some(parent) = self.state_root.parent()
                && parent == Path::new(super::DEFAULT_STATE_PARENT)
            {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }

    /// `<state root>/hosts.json`: how `exec` finds a server's namespace.
    fn write_index(&self) -> Res {
        let index = json!({
            "prefix": self.naming.prefix,
            "internet": self.naming.inet(),
            "servers": self.applied.hosts.values().map(|h| self.host_json(h)).collect::<Vec<Value>>(),
        });
        let path = self.state_root.join(super::INDEX_FILE);
        let tmp = self.state_root.join(format!("{}.tmp", super::INDEX_FILE));
        let text = serde_json::to_string_pretty(&index).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A host as the index and the report show it.
    pub fn host_json(&self, h: &Host) -> Value {
        let dir = self.host_dir(&h.server_id);
        let nics: Vec<Value> = self
            .applied
            .nics
            .values()
            .filter(|(n, _)| n.server_id == h.server_id)
            .map(|(n, ifname)| {
                json!({
                    "ifname": ifname,
                    "private_network_id": n.private_network_id,
                    "mapping_id": n.mapping_id,
                    "vlan": n.vlan,
                    "mac": n.mac,
                    "mtu": n.mtu,
                    "addresses": n.addresses,
                    "port": n.port,
                    "port_namespace": self.applied.segments.get(&n.private_network_id).map(|s| s.namespace.clone()),
                })
            })
            .collect();
        json!({
            "server_id": h.server_id,
            "name": h.name,
            "zone": h.zone,
            "namespace": h.namespace,
            "uplink": h.uplink,
            "ipv4": h.ipv4,
            "ipv6": h.ipv6,
            "dir": dir,
            "state_dir": dir.join("state"),
            "fs": self.host_fs.then(|| dir.join("fs")),
            "frr": self.daemons.get(&h.server_id).map(|d| json!({"dir": d.dir, "pids": d.pids()})),
            "private_nics": nics,
        })
    }
}
