//! The network mode: the emulated resources become network namespaces, so
//! that a whole edge cluster can be rehearsed on one machine (root and
//! iproute2 needed).
//!
//! # Topology
//!
//! Every namespace name starts with the prefix (`--network PREFIX`, default
//! `scw`; letters and digits only, at most 12), so emulators with different
//! prefixes run side by side and nothing else is ever touched:
//!
//! ```text
//!  <p>-inet  "the internet": ip_forward on, rp_filter off
//!     lo: 192.0.2.1/32 (the outside client), 2001:db8::1/128, 169.254.0.1/32 (scope link)
//!     s-<8>: veth to each server; route <server IPv4>/32 dev s-<8> src 192.0.2.1;
//!            fe80::1/64, route <server IPv6>/128 dev s-<8> src 2001:db8::1;
//!            per attached flexible IP: <fip>/32 via <server IPv4> dev s-<8>
//!            (IPv6 flexible IPs: <fip>::/64 via <server IPv6>)
//!       |
//!  <p>-<8>   one per installed server (<8> = the first 8 hex digits of its id)
//!     eth0: <public IPv4>/32, <public IPv6>/128; default via 169.254.0.1 onlink,
//!           ::/0 via fe80::1
//!     scwpriv0, scwpriv1…: one per attached private network (MAC = the server's
//!           private MAC, MTU 1500, the mapping's IPAM addresses)
//!       |
//!  <p>-pn-<8>  one per private network: bridge br0, ports s-<8> (one per server)
//! ```
//!
//! Every namespace has `net.ipv4.ping_group_range = 0 2147483647` (ICMP
//! datagram sockets work for root) and, with IPv6, `accept_dad = 0`.
//!
//! # When
//!
//! - A server gets its namespace once its installation is `completed`; it
//!   loses it (veths explicitly deleted, then `ip netns del`) when it is
//!   `deleting` or reinstalled (`to_install`). Processes started inside a
//!   deleted namespace are not killed: they keep an unnamed, unplugged
//!   namespace until they end. Power (`stop`/`start`/`reboot`) is not
//!   modelled: the namespace stays.
//! - A flexible IP is routed to a server only while the API says `attached`
//!   (and the server has its namespace): the route is replaced when it moves
//!   (once `attached` to the new server) and deleted when it is `detaching`,
//!   `updating`, `ready` or deleted. The server does not own the address:
//!   its host side must DNAT it, or add it to a local interface.
//! - A private network has its namespace while it exists; a server's NIC on
//!   it exists while the mapping is `attached` (VLAN ids stay in the API:
//!   the veth carries untagged frames).
//! - Public gateways are not modelled (no namespace, no NAT): servers reach
//!   the internet through their own public address.
//!
//! Changes happen when the API's state changes: a background thread applies
//! what the account implies (it settles the clock every 50 ms, so
//! transitions show without requests), and every HTTP answer (and
//! [`crate::Running::advance`], `reset`, `network`) waits until the kernel
//! matches what that answer shows (up to 10 s), never holding the API's
//! lock while `ip` runs. A step that fails is reported under `errors` and
//! tried again after a second.
//!
//! `POST /_emulator/reset` deletes every namespace and builds an empty
//! internet again; stopping the emulator (drop, `stop`, SIGTERM/SIGINT of
//! the binary) deletes every namespace it created, by name, and only those.
//! A start refuses a prefix whose `<p>-inet` already exists (another
//! emulator, or a killed one: `scaleway-emulator cleanup --prefix P`).
//!
//! # Per-server folders
//!
//! Namespaces share the file system, so each server gets
//! `<state root>/<server id>/` (created with its namespace, removed with it)
//! with `state/` inside; without `host_fs`, `exec` sets
//! `ONE_SCALEWAY_STATE_DIR` to it and `ONE_SCALEWAY_HOST_LOCK` to
//! `<state root>/<server id>/host.lock`, so two "hosts" never share a record
//! or a lock (with `host_fs`, the drivers' default paths are the server's own). `<state root>/hosts.json` lists
//! the servers (id, name, namespace, addresses, folders) for `exec`. The
//! state root defaults to `/run/scaleway-emulator/<prefix>`. `/etc/netns`
//! is not used. With `frr`, the folder also holds `frr/` (the server's FRR
//! instance, [`frr`]); with `host_fs`, `fs/` (the server's own `/etc`,
//! `/var/lib`, `/var/tmp` and `/run`, [`hostfs`]).
//!
//! # `GET /_emulator/network`
//!
//! `{prefix, state_root, internet:{namespace, client_ipv4, client_ipv6,
//! next_hop_ipv4, next_hop_ipv6}, servers:[{server_id, name, zone,
//! namespace, uplink, ipv4, ipv6, dir, state_dir, fs, frr:{dir, pids},
//! private_nics:[{ifname, private_network_id, mapping_id, vlan, mac, mtu,
//! addresses, port, port_namespace}]}], private_networks:[{private_network_id, name,
//! namespace, bridge, subnets}], flexible_ips:[{flexible_ip_id,
//! destination, server_id, via, dev}], namespaces:[…], errors:[…],
//! generation, applied_generation}`: what the kernel has (after waiting for
//! it to match the API). Without the network mode: 404.

pub mod exec;
pub mod frr;
pub mod hostfs;
pub mod kernel;
pub mod topology;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::Shared;
use crate::world::World;
use kernel::Kernel;
use topology::{Naming, Topology};

/// The outside client of the internet namespace (TEST-NET-1).
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The outside client's IPv6 address (documentation prefix).
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// The servers' IPv4 next hop (on the internet's `lo`, reached on-link).
pub const LINK_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 1);
/// The servers' IPv6 next hop (on every internet-side veth).
pub const LINK_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// The default prefix.
pub const DEFAULT_PREFIX: &str = "scw";
/// The index of hosts, in the state root.
pub const INDEX_FILE: &str = "hosts.json";

const TICK: Duration = Duration::from_millis(50);
const RETRY: Duration = Duration::from_secs(1);
const WAIT: Duration = Duration::from_secs(10);

/// How the network mode is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkOptions {
    /// Namespace name prefix: 1 to 12 lower-case letters and digits, a letter first.
    pub prefix: String,
    /// Per-server folders and `hosts.json`.
    pub state_root: PathBuf,
    /// MTU of the private NICs.
    pub mtu: u32,
    /// Start FRR (zebra and bgpd) in every server's namespace (see [`frr`]).
    pub frr: bool,
    /// Give every server its own `/etc` and `/var/tmp` for what `exec` and
    /// the ssh alias run there (see [`hostfs`]).
    pub host_fs: bool,
}

impl NetworkOptions {
    /// The defaults for a prefix (state root `/run/scaleway-emulator/<prefix>`).
    pub fn with_prefix(prefix: &str) -> Self {
        NetworkOptions {
            prefix: prefix.to_string(),
            state_root: default_state_root(prefix),
            mtu: 1500,
            frr: false,
            host_fs: false,
        }
    }

    pub fn check(&self) -> Result<(), String> {
        check_prefix(&self.prefix)?;
        if !(576..=9000).contains(&self.mtu) {
            return Err(format!("bad MTU {}: 576 to 9000", self.mtu));
        }
        if !self.state_root.is_absolute() {
            return Err(format!("the state root {} must be absolute", self.state_root.display()));
        }
        Ok(())
    }
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions::with_prefix(DEFAULT_PREFIX)
    }
}

/// Where the default state roots live.
pub const DEFAULT_STATE_PARENT: &str = "/run/scaleway-emulator";

/// `/run/scaleway-emulator/<prefix>`.
pub fn default_state_root(prefix: &str) -> PathBuf {
    PathBuf::from(DEFAULT_STATE_PARENT).join(prefix)
}

pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let ok = (1..=12).contains(&prefix.len())
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad network prefix {prefix:?}: 1 to 12 lower-case letters and digits, a letter first"
        ))
    }
}

struct State {
    desired: Topology,
    generation: u64,
    applied_generation: u64,
    errors: Vec<String>,
    report: Value,
    stop: bool,
}

/// The network mode of a running emulator.
pub struct Network {
    options: NetworkOptions,
    naming: Naming,
    epoch: AtomicU64,
    state: Mutex<State>,
    changed: Condvar,
    kernel: Mutex<Option<Kernel>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Network {
    /// Builds the internet namespace (errors: not root, prefix in use, …).
    pub fn create(options: NetworkOptions) -> Result<Network, String> {
        options.check()?;
        let naming = Naming {
            prefix: options.prefix.clone(),
            mtu: options.mtu,
            ipv6: kernel::has_ipv6(),
        };
        let inet = naming.inet();
        if kernel::existing_namespaces().contains(&inet) {
            return Err(format!(
                "namespace {inet} exists: another emulator uses prefix {p:?}, or one was killed \
                 (scaleway-emulator cleanup --prefix {p} removes its namespaces)",
                p = options.prefix
            ));
        }
        let zebra = std::path::Path::new(frr::DAEMONS).join("zebra");
        if options.frr && !zebra.exists() {
            return Err(format!(
                "--frr: {} is missing (apt-get install frr frr-pythontools)",
                zebra.display()
            ));
        }
        std::fs::create_dir_all(&options.state_root)
            .map_err(|e| format!("cannot create {}: {e}", options.state_root.display()))?;
        let mut k = Kernel::new(naming.clone(), options.state_root.clone());
        k.frr = options.frr;
        k.host_fs = options.host_fs;
        if let Err(e) = k.build_inet() {
            k.teardown(true);
            return Err(format!("cannot build the network (root and iproute2 are needed): {e}"));
        }
        let errors = k.apply(&Topology::default());
        let net = Network {
            options,
            naming,
            epoch: AtomicU64::new(0),
            state: Mutex::new(State {
                desired: Topology::default(),
                generation: 0,
                applied_generation: 0,
                errors,
                report: Value::Null,
                stop: false,
            }),
            changed: Condvar::new(),
            kernel: Mutex::new(Some(k)),
            thread: Mutex::new(None),
        };
        net.refresh_report();
        Ok(net)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the thread that applies changes (it settles the world too).
    pub fn spawn(self: &Arc<Self>, shared: Arc<Shared>) {
        let net = Arc::clone(self);
        let handle = std::thread::spawn(move || net.run(&shared));
        *self.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
    }

    /// Records what the world implies now; returns its generation. Called
    /// with the world locked (world lock, then this one: never the reverse).
    pub fn publish(&self, w: &World) -> u64 {
        let t = Topology::of(w, &self.naming, self.epoch.load(Ordering::SeqCst));
        let mut st = self.lock();
        if t != st.desired {
            st.desired = t;
            st.generation += 1;
            self.changed.notify_all();
        }
        st.generation
    }

    /// Waits (up to 10 s) until generation `g` is applied.
    pub fn wait_applied(&self, g: u64) {
        let deadline = Instant::now() + WAIT;
        let mut st = self.lock();
        while st.applied_generation < g && !st.stop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            st = self
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// A reset: everything is built again.
    pub fn bump_epoch(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// The report of `GET /_emulator/network`.
    pub fn report(&self) -> Value {
        self.lock().report.clone()
    }

    fn refresh_report(&self) {
        let guard = self.kernel.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(k) = guard.as_ref() else { return };
        let a = &k.applied;
        let mut st = self.lock();
        st.report = json!({
            "prefix": self.options.prefix,
            "state_root": self.options.state_root,
            "internet": {
                "namespace": self.naming.inet(),
                "client_ipv4": CLIENT_V4,
                "client_ipv6": self.naming.ipv6.then_some(CLIENT_V6),
                "next_hop_ipv4": LINK_V4,
                "next_hop_ipv6": self.naming.ipv6.then_some(LINK_V6),
            },
            "servers": a.hosts.values().map(|h| k.host_json(h)).collect::<Vec<Value>>(),
            "private_networks": a.segments.values().map(|s| json!({
                "private_network_id": s.private_network_id,
                "name": s.name,
                "namespace": s.namespace,
                "bridge": "br0",
                "subnets": s.subnets,
            })).collect::<Vec<Value>>(),
            "flexible_ips": a.routes.values().collect::<Vec<_>>(),
            "namespaces": a.namespaces,
            "errors": st.errors,
            "generation": st.generation,
            "applied_generation": st.applied_generation,
        });
    }

    fn run(&self, shared: &Shared) {
        let mut applied = 0u64;
        let mut retry_at: Option<Instant> = None;
        loop {
            {
                let mut w = shared.lock();
                let now = w.now();
                w.settle(now);
                self.publish(&w);
            }
            let (want, g) = {
                let st = self.lock();
                if st.stop {
                    break;
                }
                (st.desired.clone(), st.generation)
            };
            if g != applied || retry_at.is_some_and(|t| Instant::now() >= t) {
                let errors = match self.kernel.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
                    Some(k) => k.apply(&want),
                    None => Vec::new(),
                };
                retry_at = (!errors.is_empty()).then(|| Instant::now() + RETRY);
                applied = g;
                {
                    let mut st = self.lock();
                    st.errors = errors;
                    st.applied_generation = g;
                }
                self.refresh_report();
                self.changed.notify_all();
            }
            let st = self.lock();
            if st.generation == applied && !st.stop {
                let _ = self.changed.wait_timeout(st, TICK);
            }
        }
    }

    /// Stops the thread and deletes every namespace of ours.
    pub fn shutdown(&self) {
        self.lock().stop = true;
        self.changed.notify_all();
        let handle = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        if let Some(mut k) = self.kernel.lock().unwrap_or_else(PoisonError::into_inner).take() {
            k.teardown(true);
        }
    }
}

/// Makes the kernel match the world as it is now (no-op without the
/// network mode). Never holds the world's lock while waiting.
pub fn sync(shared: &Shared) {
    let Some(net) = shared.network.as_ref() else {
        return;
    };
    let g = {
        let mut w = shared.lock();
        let now = w.now();
        w.settle(now);
        net.publish(&w)
    };
    net.wait_applied(g);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_options() {
        for ok in ["scw", "t1", "abcdefghijkl"] {
            assert!(check_prefix(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1a", "a-b", "Scw", "abcdefghijklm", "a b"] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
        let o = NetworkOptions::default();
        assert_eq!(o.state_root, PathBuf::from("/run/scaleway-emulator/scw"));
        assert!(o.check().is_ok());
        assert!(NetworkOptions { mtu: 100, ..o.clone() }.check().is_err());
        assert!(
            NetworkOptions {
                state_root: "rel".into(),
                ..o
            }
            .check()
            .is_err()
        );
    }
}
