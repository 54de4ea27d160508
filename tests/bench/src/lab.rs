//! Hypervisors as network namespaces, each with its own FRR (zebra + bgpd,
//! Debian's package) reached only through its own socket folder, on an
//! underlay bridge (the Scaleway private network, `scwpriv0`,
//! 10.0.0.0/24): the approach of `hooks/vnm/tests/evpn_netns.rs`. FRR is
//! stopped by PID (SIGTERM, then SIGKILL) and every namespace deleted when
//! the lab is dropped, whatever happened.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};

use crate::measure::SYSTEM_PATH;
use crate::util::{self, NetNs, TempDir};

/// Whether FRR's daemons and frr-reload.py are installed.
pub fn frr_installed() -> bool {
    Path::new("/usr/lib/frr/zebra").is_file()
        && Path::new("/usr/lib/frr/bgpd").is_file()
        && Path::new(crate::shim::FRR_RELOAD).is_file()
        && util::have("vtysh")
}

/// One FRR instance inside a namespace (the emulator's, which starts the
/// daemons with a clean signal state and stops them by PID).
pub struct Frr {
    /// Stops the daemons (by PID) when dropped.
    _daemons: scaleway_emulator::network::frr::Instance,
    pub dir: TempDir,
}

impl Frr {
    pub fn start(ns: &str) -> anyhow::Result<Self> {
        let dir = TempDir::new("frr")?;
        let daemons = scaleway_emulator::network::frr::Instance::start(ns, dir.path())
            .map_err(|e| anyhow::anyhow!("cannot start FRR in {ns}: {e}"))?;
        Ok(Self { _daemons: daemons, dir })
    }

    pub fn vtysh(&self, command: &str) -> anyhow::Result<String> {
        let d = self.dir.path().display().to_string();
        util::run_ok(&["vtysh", "--vty_socket", &d, "-c", command], b"")
    }
}

/// A hypervisor: namespace, underlay address, FRR, the driver's state.
pub struct Host {
    pub underlay: Ipv4Addr,
    pub frr: Frr,
    pub state: TempDir,
    pub ns: NetNs,
}

impl Host {
    /// A host with `scwpriv0` at `underlay`/24: a veth to the fabric's
    /// bridge, or a veth pair of its own without a fabric.
    pub fn new(label: &str, underlay: Ipv4Addr, fabric: Option<&NetNs>) -> anyhow::Result<Self> {
        let ns = NetNs::new(label)?;
        let h = ns.name().to_owned();
        match fabric {
            Some(f) => {
                let port = format!("p-{label}");
                ns.ip(&[
                    "link",
                    "add",
                    "scwpriv0",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &port,
                    "netns",
                    f.name(),
                ])?;
                f.ip(&["link", "set", &port, "master", "br-ul", "up"])?;
            }
            None => {
                // No dummy devices on every kernel: a veth pair inside the host.
                ns.ip(&["link", "add", "scwpriv0", "type", "veth", "peer", "name", "scwpriv0p"])?;
                ns.ip(&["link", "set", "scwpriv0p", "up"])?;
            }
        }
        ns.ip(&["link", "set", "scwpriv0", "up"])?;
        ns.ip(&["addr", "add", &format!("{underlay}/24"), "dev", "scwpriv0"])?;
        let state = TempDir::new("evpn-state")?;
        let frr = Frr::start(&h)?;
        Ok(Self {
            underlay,
            frr,
            state,
            ns,
        })
    }

    /// The private driver's environment on this host (FRR through its own
    /// socket folder; `reload`: another frr-reload.py).
    pub fn env(&self, reload: Option<&Path>) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "ONE_SCALEWAY_STATE_DIR".to_owned(),
                self.state.join("state").display().to_string(),
            ),
            (
                "ONE_SCALEWAY_HOST_LOCK".into(),
                self.state.join("host.lock").display().to_string(),
            ),
            ("ONE_SCALEWAY_SUDO".into(), "never".into()),
            ("ONE_SCALEWAY_FRR_DIR".into(), self.frr.dir.path().display().to_string()),
            ("PATH".into(), SYSTEM_PATH.into()),
        ];
        if let Some(r) = reload {
            env.push(("ONE_SCALEWAY_FRR_RELOAD".into(), r.display().to_string()));
        }
        env
    }

    /// Runs `program args` inside the host with the driver's environment
    /// (plus `extra`), the document on stdin; fails unless it exits 0.
    pub fn run(
        &self,
        program: &Path,
        args: &[&str],
        stdin: &str,
        extra: &[(String, String)],
    ) -> anyhow::Result<util::Ran> {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .args(args)
            .envs(self.env(None))
            .envs(extra.iter().cloned());
        let stdin = stdin.as_bytes().to_vec();
        let what = format!("{} {args:?} on {}", program.display(), self.ns.name());
        util::in_ns(self.ns.name(), move || {
            util::run(&mut cmd, &stdin, Duration::from_secs(60))
        })??
        .check(&what)
    }

    /// Watches (every 5 ms, from another thread) until this host's VXLAN
    /// device of `vni` floods to `remote` (`remote`'s EVPN type-3 route for
    /// `vni` received and installed):
    /// the time since `since`, or `None` after `limit`.
    pub fn flood_ready(
        &self,
        vni: u32,
        remote: Ipv4Addr,
        since: Instant,
        limit: Duration,
    ) -> std::thread::JoinHandle<Option<Duration>> {
        let ns = self.ns.name().to_owned();
        std::thread::spawn(move || {
            let dev = format!("vxlan{vni}");
            let wanted = format!("00:00:00:00:00:00 dst {remote} ");
            while since.elapsed() < limit {
                let shown = util::run_ok(&["ip", "netns", "exec", &ns, "bridge", "fdb", "show", "dev", &dev], b"");
                if shown.is_ok_and(|t| t.lines().any(|l| l.starts_with(&wanted))) {
                    return Some(since.elapsed());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            None
        })
    }

    /// Whether this host's BGP session to `peer` is established.
    pub fn bgp_up(&self, peer: Ipv4Addr) -> bool {
        self.frr
            .vtysh(&format!("show bgp neighbors {peer} json"))
            .map(|o| {
                o.split_whitespace()
                    .collect::<String>()
                    .contains("\"bgpState\":\"Established\"")
            })
            .unwrap_or(false)
    }
}

/// Writes the cluster description `evpn-config` reads.
pub fn description(dir: &Path, hosts: &[Ipv4Addr], reflectors: usize) -> anyhow::Result<PathBuf> {
    let path = dir.join("cluster.conf");
    let list: Vec<String> = hosts.iter().map(ToString::to_string).collect();
    std::fs::write(
        &path,
        format!(
            "# the bench's cluster\nAS = 65000\nUNDERLAY = 10.0.0.0/24\nHOSTS = \"{}\"\nREFLECTORS = {reflectors}\n",
            list.join(" ")
        ),
    )?;
    Ok(path)
}

/// A VM: a namespace plugged into `bridge` of `host` through a veth
/// (`tap` on the host, `eth0` in the VM) with `addr`/24, MTU 1450.
pub struct VmNs {
    pub ns: NetNs,
}

impl VmNs {
    pub fn plug(host: &Host, tap: &str, bridge: &str, mac: &str, addr: Ipv4Addr) -> anyhow::Result<Self> {
        let ns = NetNs::new("vm")?;
        let v = ns.name().to_owned();
        host.ns
            .ip(&["link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", &v])?;
        host.ns
            .ip(&["link", "set", tap, "mtu", "1450", "master", bridge, "up"])?;
        ns.ip(&["link", "set", "eth0", "address", mac, "mtu", "1450", "up"])?;
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0", "nodad"])?;
        util::in_ns(&v, || {
            std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647\n")
        })??;
        Ok(Self { ns })
    }

    /// Sends ICMP echo requests to `dst` every 20 ms until one is answered
    /// or `limit` passes; the time from `since` to the first answer.
    pub fn first_reply(&self, dst: Ipv4Addr, since: Instant, limit: Duration) -> anyhow::Result<Option<Duration>> {
        util::in_ns(self.ns.name(), move || -> anyhow::Result<Option<Duration>> {
            let fd: OwnedFd = socket(
                AddressFamily::Inet,
                SockType::Datagram,
                SockFlag::empty(),
                SockProtocol::Icmp,
            )?;
            let sock = UdpSocket::from(fd);
            sock.set_read_timeout(Some(Duration::from_millis(20)))?;
            let mut seq: u16 = 0;
            while since.elapsed() < limit {
                seq = seq.wrapping_add(1);
                let s = seq.to_be_bytes();
                let packet = [8u8, 0, 0, 0, 0, 0, s[0], s[1], b'b', b'e', b'n', b'c', b'h'];
                if sock.send_to(&packet, SocketAddr::new(IpAddr::V4(dst), 0)).is_err() {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                let mut buf = [0u8; 128];
                while let Ok(n) = sock.recv(&mut buf) {
                    if n >= 8 && buf[0] == 0 {
                        return Ok(Some(since.elapsed()));
                    }
                }
            }
            Ok(None)
        })?
    }
}
