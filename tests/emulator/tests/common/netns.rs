//! Packets between network namespaces for the network-mode tests: a thread
//! that entered a namespace, ICMP echo over datagram sockets, TCP with the
//! source address the listener saw, `ip -n`.

#![allow(dead_code)] // not every helper in every test

use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrIn6, bind, socket};
use test_support::run_ok;

/// Runs `f` on a thread that entered namespace `ns`.
pub fn spawn_in<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
        f()
    })
}

pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn_in(ns, f).join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// ICMP echo from `ns` (from address `from` when given) to `dst`: whether a
/// reply came within about a second.
pub fn ping(ns: &str, from: Option<IpAddr>, dst: IpAddr) -> bool {
    in_ns(ns, move || {
        let (family, protocol, request, reply) = match dst {
            IpAddr::V4(_) => (AddressFamily::Inet, SockProtocol::Icmp, 8u8, 0u8),
            IpAddr::V6(_) => (AddressFamily::Inet6, SockProtocol::IcmpV6, 128, 129),
        };
        let fd: OwnedFd = socket(family, SockType::Datagram, SockFlag::empty(), protocol).unwrap();
        match from {
            Some(IpAddr::V4(a)) => bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(a, 0))).unwrap(),
            Some(IpAddr::V6(a)) => bind(fd.as_raw_fd(), &SockaddrIn6::from(SocketAddrV6::new(a, 0, 0, 0))).unwrap(),
            None => {}
        }
        let sock = UdpSocket::from(fd);
        sock.set_read_timeout(Some(Duration::from_millis(150))).unwrap();
        for seq in 1..=6u8 {
            let packet = [request, 0, 0, 0, 0, 0, 0, seq, b'e', b'm', b'u'];
            if sock.send_to(&packet, SocketAddr::new(dst, 0)).is_err() {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            let mut buf = [0u8; 128];
            while let Ok(n) = sock.recv(&mut buf) {
                if n >= 8 && buf[0] == reply {
                    return true;
                }
            }
        }
        false
    })
}

/// A TCP connection from `ns` to `to`, accepted by a listener on `to` in
/// `listen_ns`: the source address the listener saw.
pub fn tcp_source(ns: &str, listen_ns: &str, to: SocketAddr) -> Result<IpAddr, String> {
    let (ready, wait) = mpsc::channel();
    let listener = spawn_in(listen_ns, move || -> Result<IpAddr, String> {
        let l = TcpListener::bind(to).map_err(|e| format!("bind {to}: {e}"));
        let _ = ready.send(());
        let l = l?;
        l.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match l.accept() {
                Ok((_, peer)) => return Ok(peer.ip()),
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(format!("nothing reached {to}: {e}")),
            }
        }
    });
    wait.recv().unwrap();
    let sent = in_ns(ns, move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(2))
            .map(drop)
            .map_err(|e| format!("connect {to}: {e}"))
    });
    let got = listener.join().unwrap();
    sent?;
    got
}

pub fn ip(ns: &str, args: &[&str]) -> String {
    let mut all = vec!["ip", "-n", ns];
    all.extend_from_slice(args);
    run_ok(&all, b"")
}

pub fn namespaces_with(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.retain(|n| n.starts_with(&format!("{prefix}-")));
    names.sort();
    names
}
