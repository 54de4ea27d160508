//! `host add`, `configure`, `host delete`: hosts joining and leaving the
//! cluster, and the servers they leave behind deleted.

use super::*;
use anyhow::{Result, anyhow, bail};

/// `host add N`.
pub fn host_add(ctx: &Ctx<'_>, s: &mut ProvisionState, n: u32, checked: &Checked) -> Result<Vec<u32>> {
    ready(s)?;
    let indexes = match &s.pending {
        Some(Pending::HostAdd { indexes }) => indexes.clone(),
        Some(other) => return Err(pending_error(s, other)),
        None => {
            if s.hosts.len() + n as usize > crate::description::MAX_HOSTS as usize {
                bail!(
                    "a provision has at most {} hosts ({} now)",
                    crate::description::MAX_HOSTS,
                    s.hosts.len()
                );
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
    let run = |s: &mut ProvisionState| -> Result<()> {
        s.ssh_keys = cloud::ensure_ssh_keys(&ctx.client, s, &ctx.boot.authorized_keys)?;
        ctx.save(s)?;
        let shared = Mutex::new(s.clone());
        let r = servers_up(ctx, &shared, &indexes, checked);
        *s = shared.into_inner().map_err(|_| anyhow!("a worker failed"))?;
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
        return ctx.failed(s, format!("{e:#}\n(run the same host add again to continue)"));
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
pub fn configure(ctx: &Ctx<'_>, s: &mut ProvisionState, args: &[String]) -> Result<Vec<String>> {
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
        bail!("provision {} has no hosts", s.name);
    }
    for &i in &indexes {
        if let Some(h) = s.host_mut(i) {
            h.bootstrapped = false;
        }
    }
    ctx.save(s)?;
    if let Err(e) = bootstrap_hosts(ctx, s, &indexes, &[]) {
        return ctx.failed(s, format!("{e:#}\n(run the same configure again to finish)"));
    }
    s.last_error = None;
    ctx.save(s)?;
    Ok(indexes
        .iter()
        .filter_map(|&i| s.host(i).map(|h| h.name.clone()))
        .collect())
}

/// `host delete ID...`.
pub fn host_delete(ctx: &Ctx<'_>, s: &mut ProvisionState, args: &[String], force: bool) -> Result<Vec<String>> {
    ready(s)?;
    let indexes = match &s.pending {
        Some(Pending::HostDelete { indexes }) => indexes.clone(),
        Some(other) => return Err(pending_error(s, other)),
        None => {
            let indexes = resolve_hosts(s, args)?;
            if indexes.len() >= s.hosts.len() {
                bail!(
                    "that would leave provision {} without hosts: delete the provision instead",
                    s.name
                );
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
    let run = |s: &mut ProvisionState| -> Result<()> {
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
        return ctx.failed(s, format!("{e:#}\n(run the same host delete again to continue)"));
    }
    s.pending = None;
    s.last_error = None;
    ctx.save(s)?;
    Ok(names)
}

pub(super) fn check_no_vms(ctx: &Ctx<'_>, s: &ProvisionState, indexes: &[u32], force: bool) -> Result<()> {
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
        Err(anyhow!(
            "{}: migrate or terminate them first, or use --force",
            busy.join("; ")
        ))
    }
}

/// Deletes these hosts' servers in parallel and waits until they are gone.
pub(super) fn delete_servers(ctx: &Ctx<'_>, s: &ProvisionState, indexes: &[u32]) -> Result<()> {
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
pub(super) fn forget_hosts<'h>(ctx: &Ctx<'_>, hosts: impl Iterator<Item = &'h crate::state::HostRecord>) {
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

pub(super) fn delete_server_ids(ctx: &Ctx<'_>, servers: &[(String, String)]) -> Result<()> {
    in_parallel(servers, "server", |(name, id)| {
        let label = format!("server {name}");
        ctx.say(&label, "deleting");
        let r = cloud::delete_server(&ctx.client, &ctx.d.zone, id, &ctx.waits);
        ctx.say(&label, if r.is_ok() { "deleted" } else { "delete failed" });
        r
    })
}
