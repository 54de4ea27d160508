//! The lab of the namespace tests of driver `scaleway_evpn`: hosts on an
//! underlay bridge ("the Scaleway private network", 10.0.0.0/24, device
//! `scwpriv0` as the fixtures' PHYDEV), one FRR instance (zebra + bgpd,
//! Debian's package) per host namespace with its own socket/config/run
//! folder under a temporary folder, started empty and configured by
//! `evpn-config`; VMs as namespaces plugged into the bridges `pre` makes;
//! real traffic written here. The namespace helpers are `netns_lab`'s.
//! Shared by `evpn_netns.rs` and `evpn_secgroup_netns.rs`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code, each file uses a part

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
use opennebula::driver::{Env, Level, Log, Output};
use opennebula::vm::Vm;
use scaleway_vnm::private;
use test_support::{NetNs, TempDir, run_ok};

pub use crate::netns_lab::{in_ns, ip, join, spawn_in, sysctl};

/// The sysctl `key` (dotted) in namespace `ns`.
pub fn read_sysctl(ns: &str, key: &str) -> String {
    crate::netns_lab::read_sysctl(ns, &key.replace('.', "/"))
}

// ---------------------------------------------------------------- traffic

/// ICMP echo from namespace `ns` to `dst`, `tries` requests 200 ms apart
/// (an ICMP datagram socket: the namespace's ping_group_range allows it).
pub fn ping_tries(ns: &str, dst: Ipv4Addr, tries: u8) -> Option<Duration> {
    in_ns(ns, move || {
        let fd: OwnedFd = socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::empty(),
            SockProtocol::Icmp,
        )
        .unwrap();
        let sock = UdpSocket::from(fd);
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let start = Instant::now();
        for seq in 1..=tries {
            let packet = [8u8, 0, 0, 0, 0, 0, 0, seq, b'o', b's', b'c', b'w'];
            if sock.send_to(&packet, SocketAddr::new(IpAddr::V4(dst), 0)).is_err() {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            let mut buf = [0u8; 128];
            while let Ok(n) = sock.recv(&mut buf) {
                if n >= 8 && buf[0] == 0 {
                    return Some(start.elapsed());
                }
            }
        }
        None
    })
}

pub fn ping(ns: &str, dst: Ipv4Addr) -> bool {
    ping_tries(ns, dst, 10).is_some()
}

/// Pings until it answers or `limit` passes; the time it took.
pub fn ping_until(ns: &str, dst: Ipv4Addr, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ping_tries(ns, dst, 1).is_some() {
            return Some(start.elapsed());
        }
    }
    None
}

/// Sends `size` bytes over TCP from VM `from` to VM `to` listening on
/// `at`; returns how many arrived. With the VMs' MTU at the segment's,
/// every full-size frame must cross VXLAN (nothing on layer 2 would tell
/// TCP if they did not: the transfer would stall).
pub fn tcp_transfer(from: &str, to: &str, at: Ipv4Addr, size: usize) -> Result<usize, String> {
    let addr = SocketAddr::new(IpAddr::V4(at), 9000);
    let (ready, wait) = mpsc::channel();
    let listener = spawn_in(to, move || -> Result<usize, String> {
        let l = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"));
        let _ = ready.send(());
        let (mut s, _) = l?.accept().map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)
            .map_err(|e| format!("read: {e} after {} bytes", buf.len()))?;
        Ok(buf.len())
    });
    wait.recv().unwrap();
    let sent = in_ns(from, move || -> Result<(), String> {
        let mut s =
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&vec![b'x'; size]).map_err(|e| format!("write: {e}"))?;
        s.shutdown(std::net::Shutdown::Write).map_err(|e| e.to_string())
    });
    let got = join(listener);
    sent?;
    got
}

/// Whether a TCP connection from namespace `ns` to `to` gets an answer
/// (accepted or refused) within a second; `false` when the SYN is dropped.
pub fn tcp_answers(ns: &str, to: SocketAddr) -> bool {
    in_ns(ns, move || {
        match TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
            Ok(_) => true,
            Err(e) => e.kind() != std::io::ErrorKind::TimedOut && e.kind() != std::io::ErrorKind::WouldBlock,
        }
    })
}

// ---------------------------------------------------------------- FRR

/// One FRR instance (zebra + bgpd) inside a host namespace, with its own
/// folder (sockets, pid files, logs, the configuration frr-reload writes):
/// the emulator's starter, which spawns the daemons with a clean signal
/// state and stops them by PID when dropped.
pub struct Frr {
    pub daemons: scaleway_emulator::network::frr::Instance,
    pub dir: TempDir,
}

impl Frr {
    pub fn start(ns: &str) -> Self {
        let dir = TempDir::new("evpn-frr");
        let daemons = scaleway_emulator::network::frr::Instance::start(ns, dir.path())
            .unwrap_or_else(|e| panic!("FRR in {ns}: {e}"));
        Self { daemons, dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn vtysh(&self, command: &str) -> String {
        let d = self.path().display().to_string();
        run_ok(&["vtysh", "--vty_socket", &d, "-c", command], b"")
    }

    pub fn logs(&self) -> String {
        let mut text = String::new();
        for f in ["zebra.out", "bgpd.out", "zebra.log", "bgpd.log"] {
            let t = std::fs::read_to_string(self.path().join(f)).unwrap_or_default();
            let tail: Vec<&str> = t.lines().rev().take(15).collect();
            text.push_str(&format!(
                "\n--- {f}\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        text
    }

    /// SIGTERM to every daemon: they withdraw their routes and close their
    /// sessions.
    pub fn signal(&mut self) {
        self.daemons.signal();
    }

    /// Waits for the daemons to exit (SIGKILL for one that does not).
    pub fn wait(&mut self) {
        self.daemons.wait();
    }
}

// ---------------------------------------------------------------- topology

/// One hypervisor: its namespace, underlay address, FRR, and the driver's
/// state folder and lock.
pub struct Hyper {
    pub underlay: Ipv4Addr,
    pub env: Env,
    pub frr: Frr,
    pub ns: NetNs,
    pub _dir: TempDir,
}

pub type Action = fn(&Vm, &mut Log<'_>, &Env) -> anyhow::Result<Output>;

impl Hyper {
    pub fn name(&self) -> String {
        self.ns.name().to_owned()
    }

    pub fn run(
        &self,
        f: impl FnOnce(&mut Log<'_>, &Env) -> anyhow::Result<Output> + Send + 'static,
    ) -> (Result<String, String>, String) {
        let env = self.env.clone();
        in_ns(self.ns.name(), move || {
            let mut err = Vec::new();
            let r = {
                let mut log = Log::new(&mut err, Level::Debug, "scaleway-vnm scaleway_evpn test");
                f(&mut log, &env)
            };
            (
                r.map(|o| o.stdout).map_err(|e| format!("{e:#}")),
                String::from_utf8(err).unwrap(),
            )
        })
    }

    pub fn act(&self, vm: &Vm, f: Action) -> String {
        let vm = vm.clone();
        let id = vm.id;
        let (r, log) = self.run(move |log, env| f(&vm, log, env));
        r.unwrap_or_else(|e| panic!("VM {id} on {}: {e}\n{log}", self.name()));
        log
    }

    pub fn pre(&self, vm: &Vm) -> String {
        self.act(vm, private::pre)
    }

    pub fn clean(&self, vm: &Vm) -> String {
        self.act(vm, private::clean)
    }

    pub fn evpn_config(&self, description: &Path) -> String {
        let args = vec![description.display().to_string()];
        let (r, log) = self.run(move |log, env| private::evpn_config(&args, None, log, env));
        r.unwrap_or_else(|e| panic!("evpn-config on {}: {e}\n{log}{}", self.name(), self.frr.logs()))
    }

    /// The links as the driver sees them (kinds, MTUs, ports, VXLAN settings).
    pub fn links(&self) -> private_plan::observed::Observed {
        private_plan::observed::parse_links(&self.ns.run_ok(&["ip", "-d", "-j", "addr", "show"], b"")).unwrap()
    }

    /// `ip -d link show` (for the VXLAN settings as iproute2 prints them).
    pub fn links_text(&self) -> String {
        self.ns.run_ok(&["ip", "-d", "link", "show"], b"")
    }

    pub fn has_link(&self, name: &str) -> bool {
        self.ns.run(&["ip", "link", "show", "dev", name], b"").code == 0
    }

    pub fn fdb(&self, dev: &str) -> String {
        self.ns.run_ok(&["bridge", "fdb", "show", "dev", dev], b"")
    }

    /// Plugs a VM into `bridge` as libvirt would after `pre`: a veth `tap`
    /// on the bridge, `eth0` in the VM with `mac`, `addr`/24 and `mtu`.
    pub fn plug(&self, vm: &NetNs, tap: &str, bridge: &str, mac: &str, addr: Ipv4Addr, mtu: u32) {
        let (host, v) = (self.name(), vm.name().to_owned());
        let mtu = mtu.to_string();
        ip(
            &host,
            &["link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", &v],
        );
        ip(&host, &["link", "set", tap, "mtu", &mtu, "master", bridge, "up"]);
        ip(&v, &["link", "set", "eth0", "address", mac, "mtu", &mtu, "up"]);
        ip(&v, &["addr", "add", &format!("{addr}/24"), "dev", "eth0", "nodad"]);
    }

    pub fn unplug(&self, tap: &str) {
        ip(&self.name(), &["link", "del", tap]);
    }

    pub fn diagnose(&self) -> String {
        format!(
            "--- {}: show bgp l2vpn evpn summary\n{}\n--- show evpn vni\n{}{}",
            self.name(),
            self.frr.vtysh("show bgp l2vpn evpn summary"),
            self.frr.vtysh("show evpn vni"),
            self.frr.logs()
        )
    }
}

/// Host `h`'s nftables ruleset, its lines sorted: the same tables compare
/// equal whatever order their chains were made in.
pub fn ruleset(h: &Hyper) -> String {
    let mut lines: Vec<String> =
        h.ns.run_ok(&["nft", "list", "ruleset"], b"")
            .lines()
            .map(str::to_owned)
            .collect();
    lines.sort();
    lines.join("\n")
}

/// The underlay fabric and the hosts, each running FRR (empty until
/// `evpn-config`).
pub struct Lab {
    pub hosts: Vec<Hyper>,
    pub description: PathBuf,
    pub fabric: NetNs,
    pub _dir: TempDir,
}

/// A VM namespace (lo up, ping allowed).
pub fn vm_ns(label: &str) -> NetNs {
    let ns = NetNs::new(label);
    ip(ns.name(), &["link", "set", "lo", "up"]);
    sysctl(ns.name(), "net.ipv4.ping_group_range", "0 2147483647");
    ns
}

/// Attaches namespace `ns` to the fabric with a veth `dev` (peer `port`).
pub fn attach(fabric: &str, ns: &str, dev: &str, port: &str) {
    ip(
        ns,
        &[
            "link", "add", dev, "type", "veth", "peer", "name", port, "netns", fabric,
        ],
    );
    ip(fabric, &["link", "set", port, "master", "br-ul", "up"]);
    ip(ns, &["link", "set", dev, "up"]);
}

impl Drop for Lab {
    /// Every host's FRR signalled at once, then waited for.
    fn drop(&mut self) {
        for h in &mut self.hosts {
            h.frr.signal();
        }
        for h in &mut self.hosts {
            h.frr.wait();
        }
    }
}

impl Lab {
    pub fn new(hosts: u8, reflectors: usize) -> Self {
        let fabric = NetNs::new("evfab");
        let f = fabric.name().to_owned();
        ip(&f, &["link", "add", "name", "br-ul", "type", "bridge"]);
        ip(&f, &["link", "set", "br-ul", "up"]);
        let dir = TempDir::new("evpn-lab");
        let mut list = Vec::new();
        for n in 0..hosts {
            let ns = NetNs::new(&format!("ev{n}"));
            let h = ns.name().to_owned();
            attach(&f, &h, "scwpriv0", &format!("p-h{n}"));
            let underlay = Ipv4Addr::new(10, 0, 0, 2 + n);
            ip(&h, &["link", "set", "lo", "up"]);
            ip(&h, &["addr", "add", &format!("{underlay}/24"), "dev", "scwpriv0"]);
            let state = TempDir::new("evpn-host");
            let frr = Frr::start(&h);
            let env = Env::from_pairs([
                (
                    "ONE_SCALEWAY_STATE_DIR",
                    state.path().join("state").display().to_string(),
                ),
                (
                    "ONE_SCALEWAY_HOST_LOCK",
                    state.path().join("host.lock").display().to_string(),
                ),
                ("ONE_SCALEWAY_SUDO", "never".to_owned()),
                ("ONE_SCALEWAY_FRR_DIR", frr.path().display().to_string()),
            ]);
            list.push(Hyper {
                underlay,
                env,
                frr,
                ns,
                _dir: state,
            });
        }
        let description = dir.path().join("cluster.conf");
        let addresses: Vec<String> = list.iter().map(|h| h.underlay.to_string()).collect();
        std::fs::write(
            &description,
            format!(
                "# the test cluster\nAS = 65000\nUNDERLAY = 10.0.0.0/24\nHOSTS = \"{}\"\nREFLECTORS = {reflectors}\n",
                addresses.join(" ")
            ),
        )
        .unwrap();
        Self {
            hosts: list,
            description,
            fabric,
            _dir: dir,
        }
    }

    /// `evpn-config` on every host, reflectors first (as the provision flow does).
    pub fn configure(&self) {
        for h in &self.hosts {
            let out = h.evpn_config(&self.description);
            assert!(out.starts_with(&format!("{} is a", h.underlay)), "{out}");
        }
    }

    pub fn diagnose(&self) -> String {
        self.hosts.iter().map(Hyper::diagnose).collect::<Vec<_>>().join("\n")
    }
}

// ---------------------------------------------------------------- VMs

pub fn parse_vm(xml: &str) -> Vm {
    Vm::from_element(&opennebula::xml::parse(xml.as_bytes()).unwrap()).unwrap()
}

/// VM `id` with one private NIC 0 on VNI `vni` (bridge onebr.<vni>), MAC `mac`.
/// VM `id` with NIC 0 on network `net`, as oned sends it for our driver
/// (no VLAN_ID: the VNI is 1000000 + `net`; the bridge `onebr<net>`).
pub fn vm(id: u64, net: u32, mac: &str) -> Vm {
    parse_vm(&format!(
        "<VM><ID>{id}</ID><TEMPLATE><NIC><NIC_ID>0</NIC_ID><VN_MAD>scaleway_evpn</VN_MAD><NETWORK_ID>{net}</NETWORK_ID>\
         <BRIDGE>onebr{net}</BRIDGE><PHYDEV>scwpriv0</PHYDEV><GUEST_MTU>1450</GUEST_MTU><MAC>{mac}</MAC>\
         <TARGET>one-{id}-0</TARGET></NIC></TEMPLATE></VM>"
    ))
}

pub fn mac(n: u8) -> String {
    format!("02:00:c0:a8:0a:{n:02x}")
}

pub fn addr(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 10, n)
}

/// Waits until `check` holds (or `limit` passes); the time it took.
pub fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if check() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
