//! The lab of the namespace tests of driver `scaleway`: an "internet"
//! router that routes the flexible IPs to the hosts over a fabric bridge,
//! hosts with the driver's bridge, VMs as namespaces with a veth on it, and
//! real traffic written here (ICMP echo, TCP, UDP). Shared by
//! `host_netns.rs` and `secgroup_netns.rs`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code, each file uses a part

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use host_tools::Tools;
use nix::sched::CloneFlags;
use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
use opennebula::driver::{Env, Level, Log, Output};
use opennebula::vm::Vm;
use public_apply::Host;
use public_apply::ip::IpNetlink;
use public_apply::nft::NftCommand;
use public_apply::sysctl::ProcSysctl;
use public_plan::Observed;
use scaleway_vnm::host;
use test_support::{NetNs, TempDir, run_ok};

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

// ---------------------------------------------------------------- namespaces

/// Runs `f` on a new thread inside namespace `ns` (checked not to be the
/// namespace the test started in).
pub fn spawn_in<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let before = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
        let after = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        assert_ne!(before, after, "the thread must have left the test's namespace");
        f()
    })
}

pub fn join<T>(h: JoinHandle<T>) -> T {
    h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    join(spawn_in(ns, f))
}

/// `ip -n <ns> args...`.
pub fn ip(ns: &str, args: &[&str]) {
    let mut all = vec!["ip", "-n", ns];
    all.extend_from_slice(args);
    run_ok(&all, b"");
}

pub fn sysctl(ns: &str, key: &str, value: &str) {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let value = value.to_owned();
    in_ns(ns, move || {
        std::fs::write(&path, format!("{value}\n")).unwrap_or_else(|e| panic!("{path}: {e}"));
    });
}

pub fn read_sysctl(ns: &str, path: &str) -> String {
    let path = format!("/proc/sys/{path}");
    in_ns(ns, move || std::fs::read_to_string(&path).unwrap().trim().to_owned())
}

// ---------------------------------------------------------------- traffic

/// One ICMP echo from namespace `ns` to `dst` (an ICMP datagram socket:
/// the namespace's ping_group_range lets root use it).
pub fn ping(ns: &str, dst: IpAddr) -> Option<Duration> {
    in_ns(ns, move || {
        let (family, protocol, request, reply) = match dst {
            IpAddr::V4(_) => (AddressFamily::Inet, SockProtocol::Icmp, 8u8, 0u8),
            IpAddr::V6(_) => (AddressFamily::Inet6, SockProtocol::IcmpV6, 128, 129),
        };
        let fd: OwnedFd = socket(family, SockType::Datagram, SockFlag::empty(), protocol).unwrap();
        let sock = UdpSocket::from(fd);
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let start = Instant::now();
        for seq in 1..=10u8 {
            let packet = [request, 0, 0, 0, 0, 0, 0, seq, b'o', b's', b'c', b'w'];
            if sock.send_to(&packet, SocketAddr::new(dst, 0)).is_err() {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            let mut buf = [0u8; 128];
            while let Ok(n) = sock.recv(&mut buf) {
                if n >= 8 && buf[0] == reply {
                    return Some(start.elapsed());
                }
            }
        }
        None
    })
}

/// A TCP listener in `ns` on `at`; the result is the peer address it saw
/// and the message it got.
pub fn listen(ns: &str, at: SocketAddr) -> JoinHandle<Result<(IpAddr, String), String>> {
    let (ready, wait) = mpsc::channel();
    let h = spawn_in(ns, move || {
        let listener = TcpListener::bind(at).map_err(|e| format!("bind {at}: {e}"));
        let listener = match listener {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(());
                return Err(e);
            }
        };
        listener.set_nonblocking(true).unwrap();
        let _ = ready.send(());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                    let mut text = String::new();
                    let _ = stream.read_to_string(&mut text);
                    return Ok((peer.ip(), text));
                }
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(format!("nothing reached {at}: {e}")),
            }
        }
    });
    wait.recv().unwrap();
    h
}

/// A TCP connection from `ns` to `to`: the listener in `listen_ns` on
/// `at` sees it coming from the returned address.
pub fn tcp(ns: &str, to: SocketAddr, listen_ns: &str, at: SocketAddr) -> Result<IpAddr, String> {
    let listener = listen(listen_ns, at);
    let sent = in_ns(ns, move || -> Result<(), String> {
        let mut s =
            TcpStream::connect_timeout(&to, Duration::from_secs(3)).map_err(|e| format!("connect {to}: {e}"))?;
        s.write_all(b"hello from one-scaleway").map_err(|e| e.to_string())
    });
    let got = join(listener);
    sent?;
    let (peer, text) = got?;
    assert_eq!(text, "hello from one-scaleway");
    Ok(peer)
}

/// Whether a TCP connection from `ns` to `to` reaches a listener in
/// `listen_ns` on `at` within a second.
pub fn tcp_ok(ns: &str, to: SocketAddr, listen_ns: &str, at: SocketAddr) -> bool {
    let listener = in_ns(listen_ns, move || TcpListener::bind(at).unwrap());
    listener.set_nonblocking(true).unwrap();
    let connected = in_ns(ns, move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(1)).is_ok()
    });
    let deadline = Instant::now() + Duration::from_millis(500);
    let accepted = loop {
        match listener.accept() {
            Ok(_) => break true,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break false,
        }
    };
    connected && accepted
}

/// `tcp_ok`, tried for up to 5 s: the first connection after the VM is
/// plugged may wait for neighbour discovery (IPv6 addresses are tentative
/// for a moment) longer than one attempt allows.
pub fn tcp_soon(ns: &str, to: SocketAddr, listen_ns: &str, at: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if tcp_ok(ns, to, listen_ns, at) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
    }
}

/// Whether UDP datagrams from `ns` to `to` reach a socket in `listen_ns`
/// on `at`.
pub fn udp_ok(ns: &str, to: SocketAddr, listen_ns: &str, at: SocketAddr) -> bool {
    let listener = in_ns(listen_ns, move || UdpSocket::bind(at).unwrap());
    listener.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    in_ns(ns, move || {
        let s = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)).unwrap();
        for _ in 0..3 {
            let _ = s.send_to(b"one-scaleway sg", to);
            std::thread::sleep(Duration::from_millis(30));
        }
    });
    let mut buf = [0u8; 64];
    listener.recv_from(&mut buf).is_ok()
}

/// A connection from `ns` to `to` kept open, with the listener in
/// `listen_ns` on `at` collecting what arrives until the client closes.
pub fn open_connection(ns: &str, to: SocketAddr, listen_ns: &str, at: SocketAddr) -> (TcpStream, JoinHandle<String>) {
    let listener = in_ns(listen_ns, move || TcpListener::bind(at).unwrap());
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    });
    let client = in_ns(ns, move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(2)).unwrap()
    });
    (client, server)
}

pub fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

// ---------------------------------------------------------------- topology

/// One hypervisor: its namespace, its underlay address, its lock and record.
pub struct Hyper {
    pub ns: NetNs,
    pub underlay: Ipv4Addr,
    pub env: Env,
    pub _dir: TempDir,
}

impl Hyper {
    pub fn name(&self) -> String {
        self.ns.name().to_owned()
    }

    /// Runs one of the driver's functions inside the host; returns its
    /// stdout (or error) and its log.
    pub fn act(
        &self,
        vm: &Vm,
        f: fn(&Vm, &mut Log<'_>, &Env) -> anyhow::Result<Output>,
    ) -> (Result<String, String>, String) {
        let (vm, env) = (vm.clone(), self.env.clone());
        in_ns(self.ns.name(), move || {
            let mut err = Vec::new();
            let r = {
                let mut log = Log::new(&mut err, Level::Debug, "scaleway-vnm scaleway test");
                f(&vm, &mut log, &env)
            };
            (
                r.map(|o| o.stdout).map_err(|e| format!("{e:#}")),
                String::from_utf8(err).unwrap(),
            )
        })
    }

    pub fn pre(&self, vm: &Vm) -> String {
        let (r, log) = self.act(vm, host::pre);
        r.unwrap_or_else(|e| panic!("pre of VM {} failed: {e}\n{log}", vm.id));
        log
    }

    pub fn clean(&self, vm: &Vm) -> String {
        let (r, log) = self.act(vm, host::clean_host);
        r.unwrap_or_else(|e| panic!("clean of VM {} failed: {e}\n{log}", vm.id));
        log
    }

    pub fn reconcile(&self) -> (Result<String, String>, String) {
        let env = self.env.clone();
        in_ns(self.ns.name(), move || {
            let mut err = Vec::new();
            let r = {
                let mut log = Log::new(&mut err, Level::Debug, "scaleway-vnm scaleway reconcile");
                host::reconcile(&mut log, &env)
            };
            (
                r.map(|o| o.stdout).map_err(|e| format!("{e:#}")),
                String::from_utf8(err).unwrap(),
            )
        })
    }

    /// The host's state as the driver's own observer reads it.
    pub fn state(&self) -> Observed {
        in_ns(self.ns.name(), || {
            let tools = Tools::direct(Duration::from_secs(10));
            let (nft, ip, sysctl) = (
                NftCommand { tools: &tools },
                IpNetlink { tools: &tools },
                ProcSysctl::new(&tools),
            );
            let host = Host {
                nft: &nft,
                ip: &ip,
                sysctl: &sysctl,
                helper: None,
            };
            public_apply::observe(host, &public_plan::Query::all()).unwrap()
        })
    }

    /// The VM's tap on the bridge, as libvirt makes it once `pre` is done:
    /// a veth `tap` in the host, `eth<index>` in the VM.
    pub fn plug(&self, vm: &NetNs, tap: &str, index: u8, addrs: &[(&str, Option<&str>)]) {
        let (host, vmn) = (self.name(), vm.name().to_owned());
        let eth = format!("eth{index}");
        ip(
            &host,
            &["link", "add", tap, "type", "veth", "peer", "name", &eth, "netns", &vmn],
        );
        ip(&host, &["link", "set", tap, "master", "scwpub0", "up"]);
        ip(&vmn, &["link", "set", &eth, "address", &mac_of_tap(tap), "up"]);
        for (addr, gateway) in addrs {
            ip(&vmn, &["addr", "add", addr, "dev", &eth, "nodad"]);
            if let Some(g) = gateway {
                ip(&vmn, &["route", "add", "default", "via", g]);
            }
        }
    }

    /// Waits until the bridge's IPv6 link-local address is usable: it is
    /// tentative for a second after the bridge gets its carrier (a VM's
    /// tap), and the host cannot resolve the VM's address before that.
    pub fn wait_bridge_ipv6(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self
            .ns
            .run_ok(&["ip", "-6", "addr", "show", "dev", "scwpub0", "tentative"], b"")
            .trim()
            .is_empty()
        {
            assert!(
                Instant::now() < deadline,
                "the bridge's link-local address stays tentative"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn unplug(&self, tap: &str) {
        ip(&self.name(), &["link", "del", tap]);
    }
}

/// The MAC of the NIC whose tap is `one-<vm>-<nic>`: 02:00:00:00:<vm>:<nic>.
pub fn mac_of_tap(tap: &str) -> String {
    let parts: Vec<u8> = tap.split('-').skip(1).map(|p| p.parse().unwrap()).collect();
    format!("02:00:00:00:{:02x}:{:02x}", parts[0], parts[1])
}

/// The internet router, the fabric, and the hosts.
pub struct Lab {
    pub internet: NetNs,
    pub hosts: Vec<Hyper>,
    pub _fabric: NetNs,
}

/// A VM namespace (lo up, ping allowed).
pub fn vm_ns(label: &str) -> NetNs {
    let ns = NetNs::new(label);
    ip(ns.name(), &["link", "set", "lo", "up"]);
    sysctl(ns.name(), "net.ipv4.ping_group_range", "0 2147483647");
    ns
}

impl Lab {
    pub fn new(hosts: u8) -> Self {
        let fabric = NetNs::new("fab");
        let internet = vm_ns("inet");
        let (f, i) = (fabric.name().to_owned(), internet.name().to_owned());
        ip(&f, &["link", "add", "name", "br-ul", "type", "bridge"]);
        ip(&f, &["link", "set", "br-ul", "up"]);
        let attach = |ns: &str, port: &str| {
            ip(
                ns,
                &["link", "add", "ul0", "type", "veth", "peer", "name", port, "netns", &f],
            );
            ip(&f, &["link", "set", port, "master", "br-ul", "up"]);
            ip(ns, &["link", "set", "ul0", "up"]);
        };
        attach(&i, "p-inet");
        ip(&i, &["addr", "add", "10.0.0.1/24", "dev", "ul0"]);
        ip(&i, &["addr", "add", "fd00:1::1/64", "dev", "ul0", "nodad"]);
        ip(&i, &["addr", "add", "203.0.113.10/32", "dev", "lo"]);
        ip(&i, &["addr", "add", "2001:db8:ffff::10/128", "dev", "lo"]);
        sysctl(&i, "net.ipv4.ip_forward", "1");
        sysctl(&i, "net.ipv6.conf.all.forwarding", "1");
        let mut list = Vec::new();
        for n in 0..hosts {
            let ns = NetNs::new(&format!("h{n}"));
            let h = ns.name().to_owned();
            attach(&h, &format!("p-h{n}"));
            let underlay = Ipv4Addr::new(10, 0, 0, 2 + n);
            ip(&h, &["link", "set", "lo", "up"]);
            ip(&h, &["addr", "add", &format!("{underlay}/24"), "dev", "ul0"]);
            ip(
                &h,
                &["addr", "add", &format!("fd00:1::{}/64", 2 + n), "dev", "ul0", "nodad"],
            );
            ip(&h, &["route", "add", "default", "via", "10.0.0.1"]);
            ip(&h, &["-6", "route", "add", "default", "via", "fd00:1::1"]);
            // Strict reverse-path filtering, as a hardened hypervisor has it.
            sysctl(&h, "net.ipv4.conf.all.rp_filter", "1");
            sysctl(&h, "net.ipv4.conf.default.rp_filter", "1");
            let dir = TempDir::new("vnm-netns");
            let env = Env::from_pairs([
                ("ONE_SCALEWAY_STATE_DIR", dir.path().join("state").to_str().unwrap()),
                ("ONE_SCALEWAY_HOST_LOCK", dir.path().join("host.lock").to_str().unwrap()),
                ("ONE_SCALEWAY_SUDO", "never"),
            ]);
            list.push(Hyper {
                ns,
                underlay,
                env,
                _dir: dir,
            });
        }
        Self {
            internet,
            hosts: list,
            _fabric: fabric,
        }
    }

    pub fn inet(&self) -> String {
        self.internet.name().to_owned()
    }

    /// Scaleway routes the flexible IP to host `h` (the client's packets
    /// leave from 203.0.113.10).
    pub fn route_fip(&self, fip: Ipv4Addr, h: usize) {
        self.route_fip_from(fip, h, CLIENT);
    }

    /// [`Lab::route_fip`], the client's packets leaving from `src` (an
    /// address of the internet's `lo`).
    pub fn route_fip_from(&self, fip: Ipv4Addr, h: usize, src: Ipv4Addr) {
        let via = self.hosts[h].underlay.to_string();
        ip(
            &self.inet(),
            &[
                "route",
                "replace",
                &format!("{fip}/32"),
                "via",
                &via,
                "src",
                &src.to_string(),
            ],
        );
    }
}

// ---------------------------------------------------------------- VMs

pub fn parse_vm(xml: &str) -> Vm {
    Vm::from_element(&opennebula::xml::parse(xml.as_bytes()).unwrap()).unwrap()
}

/// Public NIC n: private 172.30.0.(4n)/31, gateway .(4n+1), flexible IP 198.51.100.n.
pub fn fip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, n)
}

pub fn private(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 30, 0, 4 * n)
}

pub fn gateway(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 30, 0, 4 * n + 1)
}

/// NIC (or alias) `nic_id` of VM `vm` with the addresses of n; its tap
/// `one-<vm>-<nic_id>` and MAC as [`mac_of_tap`] says.
pub fn nic_xml(tag: &str, vm: u64, nic_id: u32, n: u8, extra: &str) -> String {
    format!(
        "<{tag}><NIC_ID>{nic_id}</NIC_ID><VN_MAD>scaleway</VN_MAD><BRIDGE>scwpub0</BRIDGE>\
         <TARGET>one-{vm}-{nic_id}</TARGET><MAC>{}</MAC><IP>{}</IP>\
         <GATEWAY>{}</GATEWAY><EXTERNAL_IP>{}</EXTERNAL_IP>{extra}</{tag}>",
        mac_of_tap(&format!("one-{vm}-{nic_id}")),
        private(n),
        gateway(n),
        fip(n)
    )
}

/// VM `id` with public NICs `(nic_id, n)`.
pub fn vm(id: u64, nics: &[(u32, u8)]) -> Vm {
    let body: String = nics.iter().map(|&(nic, n)| nic_xml("NIC", id, nic, n, "")).collect();
    parse_vm(&format!("<VM><ID>{id}</ID><TEMPLATE>{body}</TEMPLATE></VM>"))
}

/// Plugs VM NIC n into host `h` as `tap` / `eth<index>`.
pub fn plug(lab: &Lab, h: usize, vm: &NetNs, tap: &str, index: u8, n: u8) {
    let addr = format!("{}/31", private(n));
    let gw = gateway(n).to_string();
    lab.hosts[h].plug(vm, tap, index, &[(addr.as_str(), (index == 0).then_some(gw.as_str()))]);
}

/// What of NIC n is on the host: (dnat, snat, route, proxy entry).
pub fn nic_state(o: &Observed, n: u8) -> (Option<Ipv4Addr>, Option<Ipv4Addr>, bool, bool) {
    (
        o.nat.get("dnat_map", fip(n)),
        o.nat.get("snat_map", private(n)),
        o.routes
            .iter()
            .any(|r| r.dst == IpAddr::V4(private(n)) && r.len == 32 && r.dev.as_deref() == Some("scwpub0")),
        o.proxies.contains(&(IpAddr::V4(gateway(n)), "scwpub0".to_owned())),
    )
}

pub fn present(n: u8) -> (Option<Ipv4Addr>, Option<Ipv4Addr>, bool, bool) {
    (Some(private(n)), Some(fip(n)), true, true)
}

pub const ABSENT: (Option<Ipv4Addr>, Option<Ipv4Addr>, bool, bool) = (None, None, false, false);

pub fn nft_text(h: &Hyper) -> String {
    h.ns.run_ok(&["nft", "list", "table", "ip", "one_scaleway"], b"")
}
