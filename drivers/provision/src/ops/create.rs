//! `create` (and `adopt`'s rerun of it): SSH keys, VPC, private network,
//! gateway and servers (one thread each), the hosts' setup, and the
//! OpenNebula objects registered.

use super::*;
use anyhow::{Result, anyhow, bail};

/// Creates (or finishes creating) the provision.
pub fn create(ctx: &Ctx<'_>, s: &mut ProvisionState, checked: &Checked) -> Result<()> {
    match s.phase {
        Phase::Ready => return Ok(()),
        Phase::Deleting => {
            bail!(
                "provision {} is being deleted: run `scaleway-provision delete {}` to finish",
                s.name,
                s.name
            );
        }
        Phase::Creating => {}
    }
    if let Err(e) = create_steps(ctx, s, checked, ctx.d.public_ips) {
        return ctx.failed(
            s,
            format!("{e:#}\n(run the same create again to continue, or `scaleway-provision delete {}` to remove what was made)", s.name),
        );
    }
    s.phase = Phase::Ready;
    s.last_error = None;
    ctx.save(s)
}

/// `adopt`: finishes a rebuilt record as a rerun of `create` would; a
/// public network that exists gets no new range.
pub fn adopt(ctx: &Ctx<'_>, s: &mut ProvisionState, checked: &Checked, public_network_exists: bool) -> Result<()> {
    let target = if public_network_exists { 0 } else { ctx.d.public_ips };
    if let Err(e) = create_steps(ctx, s, checked, target) {
        return ctx.failed(s, format!("{e:#}\n(run the same adopt again to continue)"));
    }
    s.phase = Phase::Ready;
    s.last_error = None;
    ctx.save(s)
}

pub(super) fn create_steps(ctx: &Ctx<'_>, s: &mut ProvisionState, checked: &Checked, target: u32) -> Result<()> {
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
        let gw = gw.join().unwrap_or_else(|_| Err(anyhow!("the gateway thread failed")));
        match (gw, servers) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(a), Err(b)) => Err(anyhow!("{a}; {b}")),
            (Err(a), _) | (_, Err(a)) => Err(a),
        }
    });
    *s = shared.into_inner().map_err(|_| anyhow!("a worker failed"))?;
    gateway?;
    bootstrap_hosts(ctx, s, &indexes, &[])?;
    register(ctx, s)?;
    converge_public_ranges(ctx, s, target)?;
    Ok(())
}

pub(super) fn gateway_steps(ctx: &Ctx<'_>, shared: &Mutex<ProvisionState>) -> Result<()> {
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

/// The servers of these hosts, in parallel, each recorded as soon as it is up.
pub(super) fn servers_up(
    ctx: &Ctx<'_>,
    shared: &Mutex<ProvisionState>,
    indexes: &[u32],
    checked: &Checked,
) -> Result<()> {
    in_parallel(indexes, "server", |&i| server_up(ctx, shared, i, checked))
}

pub(super) fn server_up(ctx: &Ctx<'_>, shared: &Mutex<ProvisionState>, index: u32, checked: &Checked) -> Result<()> {
    let (snapshot, host) = {
        let s = lock(shared)?;
        let h = s.host(index).cloned().ok_or_else(|| anyhow!("no host {index}"))?;
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

/// Registers the OpenNebula objects that are not registered yet.
pub(super) fn register(ctx: &Ctx<'_>, s: &mut ProvisionState) -> Result<()> {
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

pub(super) fn register_hosts(ctx: &Ctx<'_>, s: &mut ProvisionState) -> Result<()> {
    let cluster = s.one.cluster.ok_or_else(|| anyhow!("the cluster is not registered"))?;
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
pub(super) fn converge_public_ranges(ctx: &Ctx<'_>, s: &ProvisionState, target: u32) -> Result<()> {
    let vnet = s
        .one
        .public_network
        .ok_or_else(|| anyhow!("the public network is not registered"))?;
    let one = ctx.one();
    loop {
        let have = one.public_ranges(vnet, &s.id)?.len();
        let have = u32::try_from(have).unwrap_or(u32::MAX);
        ctx.say("public IPs", &format!("{have} of {target}"));
        if have >= target {
            return Ok(());
        }
        one.add_range(vnet, &one::public_range(&ctx.d, s))
            .map_err(|e| anyhow!("adding a public IP to network {vnet}: {e}"))?;
    }
}
