//! The sandbox's "libvirtd": what plugs the VMs. oned's VM driver for the
//! hosts (`kvm`, run by OpenNebula's `one_vmm_exec` with the test
//! hypervisor's actions, `one-scaleway-test-vmm`) runs on the frontend as
//! oneadmin and hands each action to this server, over a Unix socket only
//! oneadmin may use, as the real driver asks libvirt (a root daemon) to do
//! the plumbing. A VM is a network namespace (`<prefix>-vm<id>`) whose NICs
//! are veths: the host end (the NIC's `TARGET`) on the NIC's bridge in the
//! host's namespace, the guest end `eth<NIC_ID>` configured as
//! OpenNebula's contextualization would (IP, `NETWORK_MASK`, `GATEWAY`,
//! `GUEST_MTU`, looked up on the NIC, then its address range, then its
//! network). Everything is read from oned (`one.vm.info`, `one.vn.info`),
//! never shaped here.
//!
//! Actions: `deploy` and `restore` (again after a poweroff: the namespace
//! is made anew), `shutdown`, `cancel` and `save` (the namespace goes),
//! `migrate` (the host ends move to the destination's bridges; the VM's
//! namespace, its processes and sockets, stay, as a migrated VM keeps
//! running), `attach_nic` and `detach_nic` (the NIC marked `ATTACH`);
//! the others change nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, anyhow, bail, ensure};
use opennebula::oned::{Oned, Param};
use opennebula::xml::Element;

use crate::ctl::{Ctl, ip};
use crate::netns::namespaces;

/// What the server knows and made.
#[derive(Debug, Default)]
pub struct State {
    /// oned's host name (the public address) -> the host's namespace.
    pub hosts: BTreeMap<String, String>,
    /// The VM namespaces that exist now.
    pub namespaces: BTreeSet<String>,
    /// Every action handled, in order (`deploy 3 62.210.158.2: ok`).
    pub log: Vec<String>,
}

struct Ctx {
    ctl: Ctl,
    prefix: String,
    oned: Oned,
    state: Arc<Mutex<State>>,
}

/// The server (stopped when dropped).
pub struct Libvirt {
    pub socket: PathBuf,
    pub state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Libvirt {
    /// Listens on `socket` (owned by `owner`, mode 0600).
    pub fn start(socket: &Path, owner: &str, ctl: Ctl, prefix: &str, oned: Oned) -> anyhow::Result<Libvirt> {
        let listener = UnixListener::bind(socket).with_context(|| format!("cannot listen on {}", socket.display()))?;
        let path = socket.display().to_string();
        ctl.run_ok(
            std::process::Command::new("chown").args([&format!("{owner}:{owner}"), &path]),
            b"",
            Duration::from_secs(10),
        )?;
        ctl.run_ok(
            std::process::Command::new("chmod").args(["0600", &path]),
            b"",
            Duration::from_secs(10),
        )?;
        listener.set_nonblocking(true)?;
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = Ctx {
            ctl,
            prefix: prefix.to_owned(),
            oned,
            state: state.clone(),
        };
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("libvirtd".into())
            .spawn(move || serve(&listener, &ctx, &flag))
            .context("cannot start the libvirtd thread")?;
        Ok(Libvirt {
            socket: socket.to_path_buf(),
            state,
            stop,
            thread: Some(thread),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells it where each host is.
    pub fn set_hosts(&self, hosts: &[(String, String)]) {
        self.lock().hosts = hosts.iter().cloned().collect();
    }

    /// The VM namespaces it made that exist now.
    pub fn namespaces(&self) -> Vec<String> {
        self.lock().namespaces.iter().cloned().collect()
    }

    /// Every action it handled.
    pub fn log(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    /// Forgets a namespace deleted by someone else (the hard cleanup).
    pub fn forget(&self, ns: &str) {
        self.lock().namespaces.remove(ns);
    }
}

impl Drop for Libvirt {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn serve(listener: &UnixListener, ctx: &Ctx, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => answer(stream, ctx),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                ctx.ctl.note(&format!("libvirtd: accept: {e}"));
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// One request: a line of tab-separated words; `ok` or `error <why>`.
fn answer(stream: UnixStream, ctx: &Ctx) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut line = String::new();
    let read = BufReader::new(&stream).read_line(&mut line);
    let words: Vec<String> = line.trim_end_matches('\n').split('\t').map(str::to_owned).collect();
    let result = read
        .map_err(|e| anyhow!("cannot read the request: {e}"))
        .and_then(|_| handle(ctx, &words));
    let shown = words.join(" ");
    let reply = match &result {
        Ok(()) => "ok\n".to_owned(),
        Err(e) => format!("error {}\n", format!("{e:#}").replace('\n', "; ")),
    };
    ctx.ctl.note(&format!("libvirtd: {shown}: {}", reply.trim_end()));
    ctx.state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .log
        .push(format!("{shown}: {}", reply.trim_end()));
    let mut stream = stream;
    let _ = stream.write_all(reply.as_bytes());
}

fn handle(ctx: &Ctx, words: &[String]) -> anyhow::Result<()> {
    let (action, args) = words.split_first().context("an empty request")?;
    // one_vmm_exec ends every local action's arguments with `<vm id> <host>`.
    let [.., id, host] = args else {
        bail!("{action}: expected `<arguments> <vm id> <host>`, got {args:?}");
    };
    let id: u64 = id.parse().with_context(|| format!("{action}: {id:?} is not a VM id"))?;
    match action.as_str() {
        "deploy" | "restore" => deploy(ctx, id, host),
        "shutdown" | "cancel" | "save" => destroy(ctx, id),
        // migrate <deploy id> <destination> <source> <vm id> <source>
        "migrate" => migrate(ctx, id, host, args.get(1).context("migrate: no destination")?),
        "attach_nic" => attach(ctx, id, host),
        "detach_nic" => detach(ctx, id),
        _ => Ok(()),
    }
}

fn vm_ns(ctx: &Ctx, id: u64) -> String {
    format!("{}-vm{id}", ctx.prefix)
}

fn host_ns(ctx: &Ctx, host: &str) -> anyhow::Result<String> {
    ctx.state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .hosts
        .get(host)
        .cloned()
        .with_context(|| format!("no emulated host is named {host}"))
}

fn text(e: &Element, path: &str) -> Option<String> {
    e.at(path).map(|c| c.text.trim().to_owned()).filter(|t| !t.is_empty())
}

/// A NIC as the guest configures it.
struct Nic {
    id: String,
    target: String,
    bridge: String,
    mac: String,
    ip: Ipv4Addr,
    prefix: u32,
    gateway: Option<Ipv4Addr>,
    mtu: u32,
    attach: bool,
}

/// Looks `name` up as contextualization does: the NIC, its address range, its network.
fn lookup(
    ctx: &Ctx,
    nic: &Element,
    vnets: &mut BTreeMap<String, Element>,
    name: &str,
) -> anyhow::Result<Option<String>> {
    if let Some(v) = text(nic, name) {
        return Ok(Some(v));
    }
    let Some(net) = text(nic, "NETWORK_ID") else {
        return Ok(None);
    };
    if !vnets.contains_key(&net) {
        let id: i64 = net.parse()?;
        let vnet = ctx
            .oned
            .call_xml("one.vn.info", &[Param::Int(id), Param::Bool(false)])
            .map_err(|e| anyhow!("{e}"))?;
        vnets.insert(net.clone(), vnet);
    }
    let vnet = &vnets[&net];
    let ar_id = text(nic, "AR_ID");
    let from_ar = vnet
        .at("AR_POOL")
        .into_iter()
        .flat_map(|p| p.children_named("AR"))
        .find(|ar| text(ar, "AR_ID") == ar_id)
        .and_then(|ar| text(ar, name));
    Ok(from_ar.or_else(|| text(vnet, &format!("TEMPLATE/{name}"))))
}

fn nics(ctx: &Ctx, id: u64) -> anyhow::Result<Vec<Nic>> {
    let vm = ctx
        .oned
        .call_xml("one.vm.info", &[Param::Int(i64::try_from(id)?), Param::Bool(false)])
        .map_err(|e| anyhow!("{e}"))?;
    let mut vnets = BTreeMap::new();
    let mut out = Vec::new();
    for nic in vm.at("TEMPLATE").into_iter().flat_map(|t| t.children_named("NIC")) {
        let need = |k: &str| text(nic, k).with_context(|| format!("VM {id}: a NIC has no {k}"));
        let mask: Ipv4Addr = lookup(ctx, nic, &mut vnets, "NETWORK_MASK")?
            .unwrap_or_else(|| "255.255.255.0".into())
            .parse()
            .context("NETWORK_MASK")?;
        let gateway = lookup(ctx, nic, &mut vnets, "GATEWAY")?
            .map(|g| g.parse::<Ipv4Addr>())
            .transpose()
            .context("GATEWAY")?;
        let mtu = lookup(ctx, nic, &mut vnets, "GUEST_MTU")?
            .map_or(Ok(1500), |m| m.parse::<u32>())
            .context("GUEST_MTU")?;
        out.push(Nic {
            id: need("NIC_ID")?,
            target: need("TARGET")?,
            bridge: need("BRIDGE")?,
            mac: need("MAC")?,
            ip: need("IP")?.parse().context("IP")?,
            prefix: u32::from(mask).count_ones(),
            gateway,
            mtu,
            attach: text(nic, "ATTACH").is_some_and(|a| a.eq_ignore_ascii_case("yes")),
        });
    }
    Ok(out)
}

/// The NIC's host end (in host namespace `host`) on its bridge, with its MTU, up.
fn on_bridge(c: &Ctl, host: &str, nic: &Nic) -> anyhow::Result<()> {
    let mtu = nic.mtu.to_string();
    ip(
        c,
        &[
            "-n",
            host,
            "link",
            "set",
            &nic.target,
            "mtu",
            &mtu,
            "master",
            &nic.bridge,
            "up",
        ],
    )?;
    Ok(())
}

/// One NIC plugged: the veth, its host end on the bridge, the guest's address.
fn plug(ctx: &Ctx, ns: &str, host: &str, nic: &Nic) -> anyhow::Result<()> {
    let c = &ctx.ctl;
    let inside = format!("eth{}", nic.id);
    let mtu = nic.mtu.to_string();
    ip(
        c,
        &[
            "-n",
            ns,
            "link",
            "add",
            &inside,
            "type",
            "veth",
            "peer",
            "name",
            &nic.target,
        ],
    )?;
    ip(c, &["-n", ns, "link", "set", &nic.target, "netns", host])?;
    on_bridge(c, host, nic)?;
    ip(
        c,
        &["-n", ns, "link", "set", &inside, "address", &nic.mac, "mtu", &mtu, "up"],
    )?;
    let addr = format!("{}/{}", nic.ip, nic.prefix);
    ip(c, &["-n", ns, "addr", "add", &addr, "dev", &inside, "nodad"])?;
    // The first NIC with a gateway gives the default route (as one-context does).
    if let Some(gw) = nic.gateway
        && ip(c, &["-n", ns, "route", "show", "default"])?.trim().is_empty()
    {
        let gw = gw.to_string();
        ip(c, &["-n", ns, "route", "add", "default", "via", &gw, "dev", &inside])?;
    }
    Ok(())
}

fn deploy(ctx: &Ctx, id: u64, host: &str) -> anyhow::Result<()> {
    let hns = host_ns(ctx, host)?;
    let ns = vm_ns(ctx, id);
    let nics = nics(ctx, id)?;
    if namespaces().contains(&ns) {
        ip(&ctx.ctl, &["netns", "del", &ns])?;
    }
    ip(&ctx.ctl, &["netns", "add", &ns])?;
    ctx.state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .namespaces
        .insert(ns.clone());
    ip(&ctx.ctl, &["-n", &ns, "link", "set", "lo", "up"])?;
    for nic in &nics {
        plug(ctx, &ns, &hns, nic)?;
    }
    Ok(())
}

fn destroy(ctx: &Ctx, id: u64) -> anyhow::Result<()> {
    let ns = vm_ns(ctx, id);
    if namespaces().contains(&ns) {
        ip(&ctx.ctl, &["netns", "del", &ns])?;
    }
    ctx.state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .namespaces
        .remove(&ns);
    Ok(())
}

fn migrate(ctx: &Ctx, id: u64, source: &str, dest: &str) -> anyhow::Result<()> {
    let (src, dst) = (host_ns(ctx, source)?, host_ns(ctx, dest)?);
    for nic in nics(ctx, id)? {
        ip(&ctx.ctl, &["-n", &src, "link", "set", &nic.target, "netns", &dst])?;
        on_bridge(&ctx.ctl, &dst, &nic)?;
    }
    Ok(())
}

fn attach(ctx: &Ctx, id: u64, host: &str) -> anyhow::Result<()> {
    let hns = host_ns(ctx, host)?;
    let all = nics(ctx, id)?;
    let nic = all.iter().find(|n| n.attach).context("no NIC is being attached")?;
    plug(ctx, &vm_ns(ctx, id), &hns, nic)
}

fn detach(ctx: &Ctx, id: u64) -> anyhow::Result<()> {
    let all = nics(ctx, id)?;
    let nic = all.iter().find(|n| n.attach).context("no NIC is being detached")?;
    let ns = vm_ns(ctx, id);
    ensure!(namespaces().contains(&ns), "VM {id} has no namespace");
    ip(&ctx.ctl, &["-n", &ns, "link", "del", &format!("eth{}", nic.id)])?;
    Ok(())
}
