//! Real packets between the sandbox's namespaces, written here (no nc, no
//! ping, no shell): a thread that entered a namespace (`setns`) runs a TCP
//! service or a client. A service answers each connection, once the client
//! has sent everything, with `<name> <source address it saw> <bytes
//! received>`: who answered, from where the connection came, and whether
//! everything arrived.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use nix::sched::CloneFlags;

/// The port of every service.
pub const PORT: u16 = 8080;

/// Runs `f` on a new thread inside network namespace `ns`.
pub fn spawn_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<JoinHandle<anyhow::Result<T>>> {
    let path = format!("/run/netns/{ns}");
    std::thread::Builder::new()
        .name(format!("in-{ns}"))
        .spawn(move || {
            let file = std::fs::File::open(&path).with_context(|| format!("namespace {path}"))?;
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).with_context(|| format!("setns {path}"))?;
            f()
        })
        .context("cannot start a thread")
}

pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> anyhow::Result<T> + Send + 'static) -> anyhow::Result<T> {
    spawn_in(ns, f)?
        .join()
        .map_err(|_| anyhow!("the thread in namespace {ns} failed"))?
}

/// A TCP service in a namespace, stopped when dropped.
pub struct Service {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

fn serve(stream: TcpStream, peer: SocketAddr, name: &str) -> std::io::Result<()> {
    let mut s = stream;
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut got = 0usize;
    let mut buf = [0u8; 16384];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    writeln!(s, "{name} {} {got}", peer.ip())?;
    s.shutdown(Shutdown::Write)
}

impl Service {
    /// Listens on `bind` in `ns`, answering as `name`.
    pub fn start(ns: &str, name: &str, bind: SocketAddr) -> anyhow::Result<Service> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, wait) = std::sync::mpsc::channel();
        let (flag, name) = (stop.clone(), name.to_owned());
        let handle = spawn_in(ns, move || {
            let listener = TcpListener::bind(bind).with_context(|| format!("listening on {bind}"));
            let listener = match listener {
                Ok(l) => {
                    let _ = ready.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = ready.send(Err(format!("{e:#}")));
                    return Err(e);
                }
            };
            listener.set_nonblocking(true)?;
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, peer)) => {
                        let _ = serve(s, peer, &name);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            Ok(())
        })?;
        match wait.recv() {
            Ok(Ok(())) => Ok(Service {
                stop,
                handle: Some(handle),
            }),
            Ok(Err(e)) => bail!("a service in {ns}: {e}"),
            Err(_) => match handle_error(handle) {
                Some(e) => bail!("a service in {ns}: {e:#}"),
                None => bail!("the service thread in {ns} ended"),
            },
        }
    }
}

/// The error a thread ended with, if it ended with one.
fn handle_error(handle: JoinHandle<anyhow::Result<()>>) -> Option<anyhow::Error> {
    handle.join().ok().and_then(Result::err)
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A service's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub name: String,
    pub source: IpAddr,
    pub bytes: usize,
    /// How long until it answered (retries included).
    pub took: Duration,
}

fn ask_once(to: SocketAddr, payload: usize) -> anyhow::Result<String> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2)).with_context(|| format!("connect {to}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let chunk = vec![b'x'; 16384];
    let mut left = payload;
    while left > 0 {
        let n = left.min(chunk.len());
        s.write_all(&chunk[..n]).with_context(|| format!("sending to {to}"))?;
        left -= n;
    }
    s.shutdown(Shutdown::Write)?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .with_context(|| format!("reading {to}'s answer"))?;
    Ok(answer)
}

/// Connects from `ns` to `to` and sends `payload` bytes, trying again
/// until `limit` (routes, ARP and EVPN take a moment to settle).
pub fn ask(ns: &str, to: SocketAddr, payload: usize, limit: Duration) -> anyhow::Result<Answer> {
    let started = Instant::now();
    let mut last = anyhow!("no attempt");
    while started.elapsed() < limit {
        let text = in_ns(ns, move || ask_once(to, payload));
        match text {
            Ok(t) => {
                let words: Vec<&str> = t.split_whitespace().collect();
                let [name, source, bytes] = words.as_slice() else {
                    bail!("{to} answered {t:?}");
                };
                return Ok(Answer {
                    name: (*name).to_owned(),
                    source: source.parse().with_context(|| format!("{to} answered {t:?}"))?,
                    bytes: bytes.parse().with_context(|| format!("{to} answered {t:?}"))?,
                    took: started.elapsed(),
                });
            }
            Err(e) => {
                last = e;
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    Err(last.context(format!(
        "from namespace {ns}: no answer from {to} in {}s",
        limit.as_secs()
    )))
}

/// Every network namespace (`/run/netns`).
/// Whether namespace `ns` is ready to enter: `ip netns add` creates
/// `/run/netns/<ns>` first and mounts the namespace on it after, so a name
/// in the listing may still be an empty file for a moment.
pub fn mounted(ns: &str) -> bool {
    nix::sys::statfs::statfs(format!("/run/netns/{ns}").as_str())
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

pub fn namespaces() -> Vec<String> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::process::Command;

    /// A name listed in /run/netns before `ip netns add` has mounted the
    /// namespace on it (the moment the timing part once hit) is not ready, and
    /// a service started in it says why.
    #[test]
    #[ignore = "privileged: needs root and iproute2; run by .ci/run"]
    fn a_namespace_is_ready_once_mounted_and_a_service_says_why_it_cannot_start() {
        test_support::require_root();
        let name = format!("sbxu-{}", std::process::id());
        std::fs::create_dir_all("/run/netns").unwrap();
        let path = format!("/run/netns/{name}");
        std::fs::write(&path, "").unwrap();
        assert!(namespaces().contains(&name));
        assert!(!mounted(&name), "an empty file is not a namespace");
        let err = Service::start(&name, "x", (Ipv4Addr::LOCALHOST, 0).into())
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("setns"), "{err:#}");
        std::fs::remove_file(&path).unwrap();
        assert!(!mounted(&name));
        let ok = Command::new("ip").args(["netns", "add", &name]).status().unwrap();
        assert!(ok.success());
        let ready = mounted(&name);
        let service = Service::start(&name, "x", (Ipv4Addr::LOCALHOST, 0).into()).map(drop);
        let deleted = Command::new("ip").args(["netns", "del", &name]).status().unwrap();
        assert!(ready && deleted.success());
        service.unwrap();
        assert!(!mounted(&name));
    }
}
