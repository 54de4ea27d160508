//! The provision commands: create, host add/delete, ip add/delete, delete.
//!
//! Each command follows the same pattern: under the provision's lock, read
//! the record, do each step only if its result is not recorded yet (and,
//! for Scaleway resources, not found by tag), record its result at once,
//! and go on. A command that was killed is finished by running it again;
//! an operation left pending must be finished before another starts.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use opennebula::oned::Oned;
use scaleway::Client;

use crate::bootstrap::{self, ClusterFacts, HostFacts, Phase as BootPhase, Remote};
use crate::check::Checked;
use crate::cloud::{self, Waits};
use crate::description::{Description, Hypervisor};
use crate::one::{self, One, Pool};
use crate::progress::Progress;
use crate::state::{HostRecord, Locked, Pending, Phase, ProvisionState};

/// Settings of the host bootstrap.
#[derive(Debug, Clone)]
pub struct BootstrapOptions {
    pub ssh_user: String,
    pub skip: Vec<BootPhase>,
    /// The frontend's public keys (one per line).
    pub authorized_keys: Vec<String>,
    /// The `scaleway-vnm` binary shipped to the hosts.
    pub vnm: PathBuf,
}

/// Everything a command works with.
pub struct Ctx<'a> {
    pub d: Description,
    pub client: Client,
    pub oned: Oned,
    pub remote: &'a dyn Remote,
    pub waits: Waits,
    pub progress: &'a dyn Progress,
    pub boot: BootstrapOptions,
    pub file: Locked,
}

type R<T> = Result<T, String>;

impl Ctx<'_> {
    fn save(&self, s: &ProvisionState) -> R<()> {
        self.file.save(s)
    }

    fn one(&self) -> One<'_> {
        One { oned: &self.oned }
    }

    fn say(&self, resource: &str, status: &str) {
        self.progress.report(resource, status);
    }

    /// Records `error` in the file and returns it.
    fn failed<T>(&self, s: &mut ProvisionState, error: String) -> R<T> {
        s.last_error = Some(error.clone());
        let _ = self.save(s);
        Err(error)
    }
}

fn host_name(d: &Description, index: u32) -> String {
    format!("{}-host{index}", d.name)
}

/// Creates (or finishes creating) the provision.
pub fn create(ctx: &Ctx<'_>, s: &mut ProvisionState, checked: &Checked) -> R<()> {
    match s.phase {
        Phase::Ready => return Ok(()),
        Phase::Deleting => {
            return Err(format!(
                "provision {} is being deleted: run `scaleway-provision delete {}` to finish",
                s.name, s.name
            ));
        }
        Phase::Creating => {}
    }
    if let Err(e) = create_steps(ctx, s, checked, ctx.d.public_ips) {
        return ctx.failed(
            s,
            format!("{e}\n(run the same create again to continue, or `scaleway-provision delete {}` to remove what was made)", s.name),
        );
    }
    s.phase = Phase::Ready;
    s.last_error = None;
    ctx.save(s)
}

/// `adopt`: finishes a rebuilt record as a rerun of `create` would; a
/// public network that exists gets no new range.
pub fn adopt(ctx: &Ctx<'_>, s: &mut ProvisionState, checked: &Checked, public_network_exists: bool) -> R<()> {
    let target = if public_network_exists { 0 } else { ctx.d.public_ips };
    if let Err(e) = create_steps(ctx, s, checked, target) {
        return ctx.failed(s, format!("{e}\n(run the same adopt again to continue)"));
    }
    s.phase = Phase::Ready;
    s.last_error = None;
    ctx.save(s)
}

fn create_steps(ctx: &Ctx<'_>, s: &mut ProvisionState, checked: &Checked, target: u32) -> R<()> {
    let d = &ctx.d;
    ctx.say("SSH keys", "registering");
    s.ssh_keys = cloud::ensure_ssh_keys(&ctx.client, s, &ctx.boot.authorized_keys)?;
    ctx.save(s)?;
    ctx.say("SSH keys", &format!("{} registered", s.ssh_keys.len()));
    if s.vpc.is_none() {
        ctx.say("VPC", "creating");
        s.vpc = Some(cloud::ensure_vpc(&ctx.client, &d.region, s)?);
        ctx.save(s)?;
    }
    ctx.say("VPC", s.vpc.as_deref().unwrap_or_default());
    let vpc = s.vpc.clone().unwrap_or_default();
    if s.private_network.is_none() {
        ctx.say("private network", "creating");
        s.private_network = Some(cloud::ensure_private_network(&ctx.client, d, s, &vpc)?);
        ctx.save(s)?;
    }
    ctx.say("private network", s.private_network.as_deref().unwrap_or_default());
    if s.next_host_index == 0 {
        s.hosts = (1..=d.hosts)
            .map(|i| HostRecord {
                index: i,
                name: host_name(d, i),
                ..HostRecord::default()
            })
            .collect();
        s.next_host_index = d.hosts + 1;
        ctx.save(s)?;
    }
    let indexes: Vec<u32> = s.hosts.iter().map(|h| h.index).collect();
    // The gateway and the servers, in parallel.
    let shared = Mutex::new(s.clone());
    let gateway = std::thread::scope(|scope| {
        let gw = scope.spawn(|| gateway_steps(ctx, &shared));
        let servers = servers_up(ctx, &shared, &indexes, checked);
        let gw = gw.join().unwrap_or_else(|_| Err("the gateway thread failed".into()));
        match (gw, servers) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(a), Err(b)) => Err(format!("{a}; {b}")),
            (Err(a), _) | (_, Err(a)) => Err(a),
        }
    });
    *s = shared.into_inner().map_err(|_| "a worker failed".to_owned())?;
    gateway?;
    bootstrap_hosts(ctx, s, &indexes, &[])?;
    register(ctx, s)?;
    converge_public_ranges(ctx, s, target)?;
    Ok(())
}

fn gateway_steps(ctx: &Ctx<'_>, shared: &Mutex<ProvisionState>) -> R<()> {
    let d = &ctx.d;
    let snapshot = lock(shared)?.clone();
    let pn = snapshot.private_network.clone().unwrap_or_default();
    ctx.say("public gateway", "creating");
    let gw = match snapshot.gateway.clone() {
        Some(g) => g,
        None => {
            let g = cloud::ensure_gateway(&ctx.client, d, &snapshot)?;
            // Recorded before waiting: a rerun finds it by id even while lists omit it.
            record(ctx, shared, |s| s.gateway = Some(g.clone()))?;
            g
        }
    };
    cloud::wait_gateway(&ctx.client, d, &gw, &ctx.waits)?;
    ctx.say("public gateway", &format!("{gw} running"));
    if snapshot.gateway_network.is_none() {
        ctx.say("gateway network", "connecting");
        let gn = cloud::ensure_gateway_network(&ctx.client, d, &gw, &pn, &ctx.waits)?;
        record(ctx, shared, |s| s.gateway_network = Some(gn.clone()))?;
    }
    ctx.say("gateway network", "ready (default route pushed)");
    Ok(())
}

fn lock(shared: &Mutex<ProvisionState>) -> R<std::sync::MutexGuard<'_, ProvisionState>> {
    shared.lock().map_err(|_| "a worker failed while recording".to_owned())
}

/// Applies `f` to the shared record and saves it.
fn record(ctx: &Ctx<'_>, shared: &Mutex<ProvisionState>, f: impl FnOnce(&mut ProvisionState)) -> R<()> {
    let mut s = lock(shared)?;
    f(&mut s);
    ctx.save(&s)
}

/// The servers of these hosts, in parallel, each recorded as soon as it is up.
fn servers_up(ctx: &Ctx<'_>, shared: &Mutex<ProvisionState>, indexes: &[u32], checked: &Checked) -> R<()> {
    let errors: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = indexes
            .iter()
            .map(|&i| scope.spawn(move || server_up(ctx, shared, i, checked)))
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap_or_else(|_| Err("a server thread failed".into())).err())
            .collect()
    });
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

fn server_up(ctx: &Ctx<'_>, shared: &Mutex<ProvisionState>, index: u32, checked: &Checked) -> R<()> {
    let (snapshot, host) = {
        let s = lock(shared)?;
        let h = s.host(index).cloned().ok_or_else(|| format!("no host {index}"))?;
        (s.clone(), h)
    };
    let label = format!("server {}", host.name);
    if host.private_ip.is_some() && host.public_ip.is_some() && host.server_id.is_some() {
        ctx.say(&label, "up");
        return Ok(());
    }
    let pn = snapshot.private_network.clone().unwrap_or_default();
    let up = cloud::ensure_server(
        &ctx.client,
        &ctx.d,
        &snapshot,
        &host,
        checked,
        &pn,
        &ctx.waits,
        &|status| ctx.say(&label, status),
        &|id| {
            let _ = record(ctx, shared, |s| {
                if let Some(h) = s.host_mut(index) {
                    h.server_id = Some(id.to_owned());
                }
            });
        },
    );
    let up = match up {
        Ok(up) => up,
        Err(e) => {
            ctx.say(&label, "failed");
            return Err(e);
        }
    };
    ctx.say(
        &label,
        &format!("up: {} public {} private {}", up.server_id, up.public_ip, up.private_ip),
    );
    record(ctx, shared, |s| {
        if let Some(h) = s.host_mut(index) {
            h.server_id = Some(up.server_id.clone());
            h.public_ip = Some(up.public_ip);
            h.private_ip = Some(up.private_ip);
            h.vlan = up.vlan;
        }
    })
}

fn hypervisor_package(d: &Description) -> &'static str {
    match d.hypervisor {
        Hypervisor::Kvm => "opennebula-node-kvm",
        Hypervisor::Lxc => "opennebula-node-lxc",
    }
}

fn facts(h: &HostRecord) -> R<HostFacts> {
    Ok(HostFacts {
        name: h.name.clone(),
        public_ip: h
            .public_ip
            .ok_or_else(|| format!("host {} has no public address yet", h.name))?,
        private_ip: h
            .private_ip
            .ok_or_else(|| format!("host {} has no private address yet", h.name))?,
        vlan: h.vlan,
        uplink: None,
    })
}

/// The cluster facts of the current hosts.
pub fn cluster_facts(d: &Description, s: &ProvisionState, boot: &BootstrapOptions) -> R<ClusterFacts> {
    Ok(ClusterFacts {
        provision: s.name.clone(),
        hypervisor_package: hypervisor_package(d).to_owned(),
        ubuntu: d.os.1.clone(),
        opennebula_version: d.opennebula_version.clone(),
        private_cidr: d.private_cidr,
        hosts: s.hosts.iter().map(facts).collect::<R<Vec<_>>>()?,
        authorized_keys: boot.authorized_keys.iter().map(|k| format!("{k}\n")).collect(),
        frontend: None,
        skip: boot.skip.clone(),
        ssh_user: boot.ssh_user.clone(),
    })
}

/// Waits until SSH answers on a new server, then learns what the plan needs
/// (the default-route device, the frontend's address as the host sees it).
fn observe(ctx: &Ctx<'_>, host: &mut HostFacts, frontend: &mut Option<std::net::IpAddr>) -> R<()> {
    let label = format!("host {}", host.name);
    let started = Instant::now();
    // An installed server answers SSH within moments; a failure that lasts
    // is a configuration problem the message below names.
    let deadline = ctx.waits.short.timeout;
    loop {
        match ctx.remote.run(host.public_ip, &["true".to_owned()], &[]) {
            Ok(out) if out.success => break,
            Ok(out) if started.elapsed() >= deadline => {
                return Err(format!("{label}: SSH does not answer: {}", out.stderr.trim()));
            }
            Err(e) if started.elapsed() >= deadline => return Err(format!("{label}: SSH does not answer: {e}")),
            _ => {
                ctx.say(&label, "waiting for SSH");
                std::thread::sleep(ctx.waits.short.interval);
            }
        }
    }
    if let Ok(out) = ctx.remote.run(
        host.public_ip,
        &["ip", "-o", "route", "show", "default"].map(str::to_owned),
        &[],
    ) {
        host.uplink = out
            .stdout
            .split_whitespace()
            .skip_while(|w| *w != "dev")
            .nth(1)
            .filter(|w| w.len() <= 15 && bootstrap::safe_word(w))
            .map(str::to_owned);
    }
    if frontend.is_none()
        && let Ok(out) = ctx
            .remote
            .run(host.public_ip, &["printenv", "SSH_CLIENT"].map(str::to_owned), &[])
    {
        *frontend = out.stdout.split_whitespace().next().and_then(|a| a.parse().ok());
    }
    Ok(())
}

/// Bootstraps the new hosts (`full`), and refreshes the others (hosts file,
/// EVPN) when the set of hosts changed.
fn bootstrap_hosts(ctx: &Ctx<'_>, s: &mut ProvisionState, new: &[u32], refresh_others: &[u32]) -> R<()> {
    let vnm = if ctx.boot.skip.contains(&BootPhase::Evpn) {
        Vec::new()
    } else {
        std::fs::read(&ctx.boot.vnm).map_err(|e| {
            format!(
                "cannot read {} (the scaleway-vnm the hosts get; install.sh puts it there, or give --vnm): {e}",
                ctx.boot.vnm.display()
            )
        })?
    };
    let mut cluster = cluster_facts(&ctx.d, s, &ctx.boot)?;
    let todo: Vec<(HostFacts, bool)> = s
        .hosts
        .iter()
        .filter(|h| (new.contains(&h.index) && !h.bootstrapped) || refresh_others.contains(&h.index))
        .map(|h| facts(h).map(|f| (f, !h.bootstrapped)))
        .collect::<R<_>>()?;
    let mut frontend = None;
    let mut observed = Vec::new();
    for (mut f, full) in todo {
        if full {
            observe(ctx, &mut f, &mut frontend)?;
        }
        observed.push((f, full));
    }
    cluster.frontend = frontend;
    // The reflectors (first hosts) first, then the others in parallel.
    let cluster = &cluster;
    let vnm = &vnm;
    let results: Vec<(String, R<()>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = observed
            .iter()
            .map(|(f, full)| {
                scope.spawn(move || {
                    let label = format!("host {}", f.name);
                    let steps = bootstrap::plan(cluster, f, *full);
                    let r = bootstrap::execute(ctx.remote, f, &steps, &ctx.boot.ssh_user, vnm, &|st| {
                        ctx.say(&label, st);
                    });
                    ctx.say(&label, if r.is_ok() { "bootstrapped" } else { "bootstrap failed" });
                    (f.name.clone(), r)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| (String::new(), Err("a bootstrap thread failed".into())))
            })
            .collect()
    });
    let mut errors = Vec::new();
    for (name, r) in results {
        match r {
            Ok(()) => {
                if let Some(h) = s.hosts.iter_mut().find(|h| h.name == name) {
                    h.bootstrapped = true;
                }
            }
            Err(e) => errors.push(format!("host {name}: {e}")),
        }
    }
    ctx.save(s)?;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Registers the OpenNebula objects that are not registered yet.
fn register(ctx: &Ctx<'_>, s: &mut ProvisionState) -> R<()> {
    let d = &ctx.d;
    let one = ctx.one();
    ctx.say("OpenNebula cluster", "registering");
    let cluster = one.ensure_cluster(&d.cluster_name, s)?;
    s.one.cluster = Some(cluster);
    ctx.save(s)?;
    ctx.say("OpenNebula cluster", &format!("{} ({cluster})", d.cluster_name));
    register_hosts(ctx, s)?;
    type Slot = fn(&mut ProvisionState) -> &mut Option<i64>;
    type Render = fn(&Description, &ProvisionState) -> opennebula::template::Template;
    let objects: [(Pool, String, Render, Option<i64>, Slot); 4] = [
        (
            Pool::Datastore,
            one::image_datastore_name(d),
            one::image_datastore,
            Some(cluster),
            |s| &mut s.one.image_datastore,
        ),
        (
            Pool::Datastore,
            one::system_datastore_name(d),
            one::system_datastore,
            Some(cluster),
            |s| &mut s.one.system_datastore,
        ),
        (
            Pool::Vnet,
            one::public_network_name(d),
            one::public_network,
            Some(cluster),
            |s| &mut s.one.public_network,
        ),
        (
            Pool::VnTemplate,
            one::private_template_name(d),
            one::private_template,
            None,
            |s| &mut s.one.private_template,
        ),
    ];
    for (pool, name, render, in_cluster, slot) in objects {
        if slot(s).is_none() {
            let id = one.ensure_object(pool, &name, &render(d, s), in_cluster, s)?;
            *slot(s) = Some(id);
            ctx.save(s)?;
            ctx.say(&format!("OpenNebula {}", pool.what()), &format!("{name} ({id})"));
        }
    }
    ctx.say("OpenNebula networks", "registered");
    Ok(())
}

fn register_hosts(ctx: &Ctx<'_>, s: &mut ProvisionState) -> R<()> {
    let cluster = s.one.cluster.ok_or("the cluster is not registered")?;
    for i in 0..s.hosts.len() {
        let h = s.hosts[i].clone();
        if h.one_id.is_some() {
            continue;
        }
        let id = ctx.one().ensure_host(&ctx.d, s, &h, cluster)?;
        s.hosts[i].one_id = Some(id);
        ctx.save(s)?;
        ctx.say(&format!("host {}", h.name), &format!("OpenNebula host {id}"));
    }
    Ok(())
}

/// Adds public ranges (one flexible IP each) until the network has `target`.
fn converge_public_ranges(ctx: &Ctx<'_>, s: &ProvisionState, target: u32) -> R<()> {
    let vnet = s.one.public_network.ok_or("the public network is not registered")?;
    let one = ctx.one();
    loop {
        let have = one.public_ranges(vnet, &s.id)?.len();
        let have = u32::try_from(have).unwrap_or(u32::MAX);
        ctx.say("public IPs", &format!("{have} of {target}"));
        if have >= target {
            return Ok(());
        }
        one.add_range(vnet, &one::public_range(&ctx.d, s))
            .map_err(|e| format!("adding a public IP to network {vnet}: {e}"))?;
    }
}

/// `host add N`.
pub fn host_add(ctx: &Ctx<'_>, s: &mut ProvisionState, n: u32, checked: &Checked) -> R<Vec<u32>> {
    ready(s)?;
    let indexes = match &s.pending {
        Some(Pending::HostAdd { indexes }) => indexes.clone(),
        Some(other) => return Err(pending_error(s, other)),
        None => {
            if s.hosts.len() + n as usize > crate::description::MAX_HOSTS as usize {
                return Err(format!(
                    "a provision has at most {} hosts ({} now)",
                    crate::description::MAX_HOSTS,
                    s.hosts.len()
                ));
            }
            let first = s.next_host_index.max(1);
            let indexes: Vec<u32> = (first..first + n).collect();
            for &i in &indexes {
                s.hosts.push(HostRecord {
                    index: i,
                    name: host_name(&ctx.d, i),
                    ..HostRecord::default()
                });
            }
            s.next_host_index = first + n;
            s.pending = Some(Pending::HostAdd {
                indexes: indexes.clone(),
            });
            ctx.save(s)?;
            indexes
        }
    };
    let run = |s: &mut ProvisionState| -> R<()> {
        s.ssh_keys = cloud::ensure_ssh_keys(&ctx.client, s, &ctx.boot.authorized_keys)?;
        ctx.save(s)?;
        let shared = Mutex::new(s.clone());
        let r = servers_up(ctx, &shared, &indexes, checked);
        *s = shared.into_inner().map_err(|_| "a worker failed".to_owned())?;
        r?;
        let others: Vec<u32> = s
            .hosts
            .iter()
            .map(|h| h.index)
            .filter(|i| !indexes.contains(i))
            .collect();
        bootstrap_hosts(ctx, s, &indexes, &others)?;
        register_hosts(ctx, s)
    };
    if let Err(e) = run(s) {
        return ctx.failed(s, format!("{e}\n(run the same host add again to continue)"));
    }
    s.pending = None;
    s.last_error = None;
    ctx.save(s)?;
    Ok(indexes)
}

/// Runs the whole bootstrap of the given hosts again (all when `args` is
/// empty): packages, access (keys, root helper, sudoers), services,
/// network, EVPN. Each step is idempotent, so running it on a configured
/// host changes nothing but what drifted or what a newer one-scaleway
/// ships. A host is marked not bootstrapped until its run succeeds: a
/// failed or killed `configure` is finished by running it again.
pub fn configure(ctx: &Ctx<'_>, s: &mut ProvisionState, args: &[String]) -> R<Vec<String>> {
    ready(s)?;
    if let Some(p) = &s.pending {
        return Err(pending_error(s, p));
    }
    let indexes = if args.is_empty() {
        s.hosts.iter().map(|h| h.index).collect()
    } else {
        resolve_hosts(s, args)?
    };
    if indexes.is_empty() {
        return Err(format!("provision {} has no hosts", s.name));
    }
    for &i in &indexes {
        if let Some(h) = s.host_mut(i) {
            h.bootstrapped = false;
        }
    }
    ctx.save(s)?;
    if let Err(e) = bootstrap_hosts(ctx, s, &indexes, &[]) {
        return ctx.failed(s, format!("{e}\n(run the same configure again to finish)"));
    }
    s.last_error = None;
    ctx.save(s)?;
    Ok(indexes
        .iter()
        .filter_map(|&i| s.host(i).map(|h| h.name.clone()))
        .collect())
}

fn ready(s: &ProvisionState) -> R<()> {
    match s.phase {
        Phase::Ready => Ok(()),
        Phase::Creating => Err(format!(
            "provision {} is not created yet: run `scaleway-provision create` again to finish it",
            s.name
        )),
        Phase::Deleting => Err(format!(
            "provision {} is being deleted: run `scaleway-provision delete {}` to finish",
            s.name, s.name
        )),
    }
}

fn pending_error(s: &ProvisionState, p: &Pending) -> String {
    let what = match p {
        Pending::HostAdd { indexes } => format!("host add {}", indexes.len()),
        Pending::HostDelete { indexes } => format!(
            "host delete {}",
            indexes
                .iter()
                .filter_map(|i| s.host(*i).map(|h| h.name.clone()))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Pending::IpAdd { .. } => "ip add".to_owned(),
    };
    format!(
        "provision {} has an unfinished `{what}`: run that command again first",
        s.name
    )
}

/// Resolves host arguments: OpenNebula host ids, host names (public
/// addresses) or our names (`<provision>-host<N>`).
pub fn resolve_hosts(s: &ProvisionState, args: &[String]) -> R<Vec<u32>> {
    args.iter()
        .map(|a| {
            s.hosts
                .iter()
                .find(|h| {
                    h.name == *a
                        || h.public_ip.is_some_and(|ip| ip.to_string() == *a)
                        || h.one_id.is_some_and(|id| id.to_string() == *a)
                })
                .map(|h| h.index)
                .ok_or_else(|| {
                    format!(
                        "{a}: not a host of provision {} (give an OpenNebula host id, its name or {}-hostN)",
                        s.name, s.name
                    )
                })
        })
        .collect()
}

/// `host delete ID...`.
pub fn host_delete(ctx: &Ctx<'_>, s: &mut ProvisionState, args: &[String], force: bool) -> R<Vec<String>> {
    ready(s)?;
    let indexes = match &s.pending {
        Some(Pending::HostDelete { indexes }) => indexes.clone(),
        Some(other) => return Err(pending_error(s, other)),
        None => {
            let indexes = resolve_hosts(s, args)?;
            if indexes.len() >= s.hosts.len() {
                return Err(format!(
                    "that would leave provision {} without hosts: delete the provision instead",
                    s.name
                ));
            }
            check_no_vms(ctx, s, &indexes, force)?;
            s.pending = Some(Pending::HostDelete {
                indexes: indexes.clone(),
            });
            ctx.save(s)?;
            indexes
        }
    };
    let names: Vec<String> = indexes
        .iter()
        .filter_map(|i| s.host(*i).map(|h| h.name.clone()))
        .collect();
    let run = |s: &mut ProvisionState| -> R<()> {
        for &i in &indexes {
            if let Some(id) = s.host(i).and_then(|h| h.one_id) {
                ctx.one().delete(Pool::Host, id)?;
                if let Some(h) = s.host_mut(i) {
                    h.one_id = None;
                }
                ctx.save(s)?;
            }
        }
        delete_servers(ctx, s, &indexes)?;
        s.hosts.retain(|h| !indexes.contains(&h.index));
        ctx.save(s)?;
        // The first host keeps the system datastore's replica.
        if let (Some(ds), Some(first)) = (s.one.system_datastore, s.hosts.iter().find_map(|h| h.public_ip)) {
            ctx.one().set_replica_host(ds, &first.to_string())?;
        }
        let rest: Vec<u32> = s.hosts.iter().map(|h| h.index).collect();
        bootstrap_hosts(ctx, s, &[], &rest)
    };
    if let Err(e) = run(s) {
        return ctx.failed(s, format!("{e}\n(run the same host delete again to continue)"));
    }
    s.pending = None;
    s.last_error = None;
    ctx.save(s)?;
    Ok(names)
}

fn check_no_vms(ctx: &Ctx<'_>, s: &ProvisionState, indexes: &[u32], force: bool) -> R<()> {
    if force {
        return Ok(());
    }
    let mut busy = Vec::new();
    for h in s.hosts.iter().filter(|h| indexes.contains(&h.index)) {
        if let Some(id) = h.one_id {
            let vms = ctx.one().host_vms(id)?;
            if !vms.is_empty() {
                busy.push(format!(
                    "host {} ({id}) runs VM(s) {}",
                    h.name,
                    vms.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    if busy.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}: migrate or terminate them first, or use --force",
            busy.join("; ")
        ))
    }
}

/// Deletes these hosts' servers in parallel and waits until they are gone.
fn delete_servers(ctx: &Ctx<'_>, s: &ProvisionState, indexes: &[u32]) -> R<()> {
    let servers: Vec<(String, String)> = s
        .hosts
        .iter()
        .filter(|h| indexes.contains(&h.index))
        .filter_map(|h| h.server_id.clone().map(|id| (h.name.clone(), id)))
        .collect();
    delete_server_ids(ctx, &servers)?;
    forget_hosts(ctx, s.hosts.iter().filter(|h| indexes.contains(&h.index)));
    Ok(())
}

/// Forgets the deleted hosts' SSH keys (a failure is only a warning).
fn forget_hosts<'h>(ctx: &Ctx<'_>, hosts: impl Iterator<Item = &'h crate::state::HostRecord>) {
    for h in hosts {
        if let Some(ip) = h.public_ip
            && let Err(e) = ctx.remote.forget(ip)
        {
            ctx.say(
                &format!("host {}", h.name),
                &format!("WARN: its SSH host key stays known: {e}"),
            );
        }
    }
}

fn delete_server_ids(ctx: &Ctx<'_>, servers: &[(String, String)]) -> R<()> {
    let errors: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = servers
            .iter()
            .map(|(name, id)| {
                scope.spawn(move || {
                    let label = format!("server {name}");
                    ctx.say(&label, "deleting");
                    let r = cloud::delete_server(&ctx.client, &ctx.d.zone, id, &ctx.waits);
                    ctx.say(&label, if r.is_ok() { "deleted" } else { "delete failed" });
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap_or_else(|_| Err("a server thread failed".into())).err())
            .collect()
    });
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// `ip add N`: N more flexible IPs in the public network.
pub fn ip_add(ctx: &Ctx<'_>, s: &mut ProvisionState, n: u32) -> R<u32> {
    ready(s)?;
    let vnet = s.one.public_network.ok_or("the provision has no public network")?;
    let target = match &s.pending {
        Some(Pending::IpAdd { target }) => *target,
        Some(other) => return Err(pending_error(s, other)),
        None => {
            let have = u32::try_from(ctx.one().public_ranges(vnet, &s.id)?.len()).unwrap_or(u32::MAX);
            let target = have.saturating_add(n);
            if target > crate::description::MAX_PUBLIC_IPS {
                return Err(format!(
                    "a provision has at most {} public IPs ({have} now)",
                    crate::description::MAX_PUBLIC_IPS
                ));
            }
            s.pending = Some(Pending::IpAdd { target });
            ctx.save(s)?;
            target
        }
    };
    if let Err(e) = converge_public_ranges(ctx, s, target) {
        return ctx.failed(s, format!("{e}\n(run the same ip add again to continue)"));
    }
    s.pending = None;
    s.last_error = None;
    ctx.save(s)?;
    Ok(target)
}

/// `ip delete AR...`: removes public ranges (their flexible IPs are released).
pub fn ip_delete(ctx: &Ctx<'_>, s: &mut ProvisionState, ars: &[i64]) -> R<()> {
    ready(s)?;
    if let Some(p) = &s.pending {
        return Err(pending_error(s, p));
    }
    let vnet = s.one.public_network.ok_or("the provision has no public network")?;
    let ranges = ctx.one().public_ranges(vnet, &s.id)?;
    for ar in ars {
        match ranges.iter().find(|r| r.ar_id == *ar) {
            // Already removed (a run killed half-way): done.
            None => {}
            Some(r) if r.used_leases > 0 => {
                return Err(format!(
                    "address range {ar} ({}) is in use by a VM: release it first",
                    r.external_ip.clone().unwrap_or_default()
                ));
            }
            Some(_) => {}
        }
    }
    for ar in ars {
        if ranges.iter().any(|r| r.ar_id == *ar) {
            ctx.say(&format!("address range {ar}"), "removing");
            ctx.one()
                .remove_range(vnet, *ar)
                .map_err(|e| format!("removing address range {ar} of network {vnet}: {e}"))?;
        }
    }
    Ok(())
}

/// `delete`: everything, in reverse order, then checks that nothing tagged
/// with the provision is left at Scaleway.
pub fn delete(ctx: &Ctx<'_>, s: &mut ProvisionState, force: bool) -> R<()> {
    if s.phase != Phase::Deleting {
        let all: Vec<u32> = s.hosts.iter().map(|h| h.index).collect();
        check_no_vms(ctx, s, &all, force)?;
        s.phase = Phase::Deleting;
        ctx.save(s)?;
    }
    if let Err(e) = delete_steps(ctx, s) {
        return ctx.failed(s, format!("{e}\n(run the same delete again to continue)"));
    }
    ctx.file.remove()
}

fn delete_steps(ctx: &Ctx<'_>, s: &mut ProvisionState) -> R<()> {
    let one = ctx.one();
    if let Some(id) = s.one.private_template {
        one.delete(Pool::VnTemplate, id)?;
        s.one.private_template = None;
        ctx.save(s)?;
    }
    if let Some(id) = s.one.public_network {
        if one
            .list(Pool::Vnet)
            .map_err(|e| e.to_string())?
            .iter()
            .any(|v| v.id == id)
        {
            for r in one.public_ranges(id, &s.id)? {
                ctx.say(&format!("address range {}", r.ar_id), "removing");
                one.remove_range(id, r.ar_id)
                    .map_err(|e| format!("removing address range {} of network {id}: {e}", r.ar_id))?;
            }
        }
        one.delete(Pool::Vnet, id)?;
        s.one.public_network = None;
        ctx.save(s)?;
    }
    for ds in [s.one.system_datastore, s.one.image_datastore].into_iter().flatten() {
        one.delete(Pool::Datastore, ds)?;
    }
    s.one.system_datastore = None;
    s.one.image_datastore = None;
    ctx.save(s)?;
    for i in 0..s.hosts.len() {
        if let Some(id) = s.hosts[i].one_id {
            one.delete(Pool::Host, id)?;
            s.hosts[i].one_id = None;
            ctx.save(s)?;
        }
    }
    if let Some(id) = s.one.cluster {
        one.delete(Pool::Cluster, id)?;
        s.one.cluster = None;
        ctx.save(s)?;
    }
    ctx.say("OpenNebula objects", "removed");
    // Scaleway: by tag, so that resources a killed run never recorded go too.
    sweep(ctx, s)?;
    let left = cloud::leftovers(&ctx.client, &ctx.d, s)?;
    if left.is_empty() {
        ctx.say("Scaleway", "nothing tagged with the provision is left");
        Ok(())
    } else {
        Err(format!(
            "still at Scaleway after the delete: {}",
            left.iter()
                .map(|l| format!("{} {} ({})", l.kind, l.id, l.name))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Deletes every Scaleway resource tagged with the provision, in reverse order.
fn sweep(ctx: &Ctx<'_>, s: &mut ProvisionState) -> R<()> {
    let d = &ctx.d;
    let left = cloud::leftovers(&ctx.client, d, s)?;
    // What the tags show, and what the record holds (a resource just created
    // can be missing from lists for a moment).
    let (vpc, pn, gw) = (s.vpc.clone(), s.private_network.clone(), s.gateway.clone());
    let of = |kind: &str| -> Vec<String> {
        let recorded = match kind {
            "VPC" => vpc.clone(),
            "private network" => pn.clone(),
            "public gateway" => gw.clone(),
            _ => None,
        };
        let mut ids: Vec<String> = left.iter().filter(|l| l.kind == kind).map(|l| l.id.clone()).collect();
        ids.extend(recorded.filter(|r| !ids.contains(r)));
        ids
    };
    for fip in of("flexible IP") {
        // The IPAM driver releases the flexible IPs of removed ranges; one
        // left here belonged to a range oned no longer has.
        ctx.say(
            &format!("flexible IP {fip}"),
            "deleting (left behind by its address range)",
        );
        ctx.client
            .delete_fip(&d.zone, &fip, &s.project_id)
            .map_err(|e| format!("deleting flexible IP {fip}: {e}"))?;
    }
    let mut servers: Vec<(String, String)> = left
        .iter()
        .filter(|l| l.kind == "server")
        .map(|l| (l.name.clone(), l.id.clone()))
        .collect();
    for h in &s.hosts {
        if let Some(id) = &h.server_id
            && !servers.iter().any(|(_, x)| x == id)
        {
            servers.push((h.name.clone(), id.clone()));
        }
    }
    delete_server_ids(ctx, &servers)?;
    forget_hosts(ctx, s.hosts.iter());
    for h in &mut s.hosts {
        h.server_id = None;
    }
    ctx.save(s)?;
    for gw in of("public gateway") {
        ctx.say("public gateway", "deleting");
        if let Ok(g) = ctx.client.get_gateway(&d.zone, &gw) {
            for gn in g.gateway_networks {
                cloud::delete_gateway_network(&ctx.client, &d.zone, &gn.id, &ctx.waits)?;
            }
        } else if let Some(gn) = &s.gateway_network {
            cloud::delete_gateway_network(&ctx.client, &d.zone, gn, &ctx.waits)?;
        }
        cloud::delete_gateway(&ctx.client, &d.zone, &gw, &ctx.waits)?;
    }
    s.gateway = None;
    s.gateway_network = None;
    ctx.save(s)?;
    for pn in of("private network") {
        ctx.say("private network", "deleting");
        cloud::delete_private_network(&ctx.client, &d.region, &pn, &ctx.waits)?;
    }
    s.private_network = None;
    ctx.save(s)?;
    for vpc in of("VPC") {
        ctx.say("VPC", "deleting");
        cloud::delete_vpc(&ctx.client, &d.region, &vpc, &ctx.waits)?;
    }
    s.vpc = None;
    ctx.save(s)?;
    let mut keys = of("SSH key");
    for k in s.ssh_keys.iter().filter(|k| k.ours) {
        if !keys.contains(&k.id) {
            keys.push(k.id.clone());
        }
    }
    for key in keys {
        ctx.client
            .delete_ssh_key(&key)
            .map_err(|e| format!("deleting SSH key {key}: {e}"))?;
    }
    s.ssh_keys.clear();
    ctx.save(s)?;
    Ok(())
}
