//! The hosts' setup: what each host is (observed over SSH) and its
//! bootstrap (`crate::bootstrap`'s plans run through the `Remote`).

use super::*;
use anyhow::{Result, anyhow, bail};

pub(super) fn hypervisor_package(d: &Description) -> &'static str {
    match d.hypervisor {
        Hypervisor::Kvm => "opennebula-node-kvm",
        Hypervisor::Lxc => "opennebula-node-lxc",
    }
}

pub(super) fn facts(h: &HostRecord) -> Result<HostFacts> {
    Ok(HostFacts {
        name: h.name.clone(),
        public_ip: h
            .public_ip
            .ok_or_else(|| anyhow!("host {} has no public address yet", h.name))?,
        private_ip: h
            .private_ip
            .ok_or_else(|| anyhow!("host {} has no private address yet", h.name))?,
        vlan: h.vlan,
        uplink: None,
    })
}

/// The cluster facts of the current hosts.
pub fn cluster_facts(d: &Description, s: &ProvisionState, boot: &BootstrapOptions) -> Result<ClusterFacts> {
    Ok(ClusterFacts {
        provision: s.name.clone(),
        hypervisor_package: hypervisor_package(d).to_owned(),
        ubuntu: d.os.1.clone(),
        opennebula_version: d.opennebula_version.clone(),
        private_cidr: d.private_cidr,
        hosts: s.hosts.iter().map(facts).collect::<Result<Vec<_>>>()?,
        authorized_keys: boot.authorized_keys.iter().map(|k| format!("{k}\n")).collect(),
        frontend: None,
        skip: boot.skip.clone(),
        ssh_user: boot.ssh_user.clone(),
    })
}

/// Waits until SSH answers on a new server, then learns what the plan needs
/// (the default-route device, the frontend's address as the host sees it).
pub(super) fn observe(ctx: &Ctx<'_>, host: &mut HostFacts, frontend: &mut Option<std::net::IpAddr>) -> Result<()> {
    let label = format!("host {}", host.name);
    let started = Instant::now();
    // An installed server answers SSH within moments; a failure that lasts
    // is a configuration problem the message below names.
    let deadline = ctx.waits.short.timeout;
    loop {
        match ctx.remote.run(host.public_ip, &["true".to_owned()], &[]) {
            Ok(out) if out.success => break,
            Ok(out) if started.elapsed() >= deadline => {
                bail!("{label}: SSH does not answer: {}", out.stderr.trim());
            }
            Err(e) if started.elapsed() >= deadline => {
                bail!("{label}: SSH does not answer: {e}");
            }
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
pub(super) fn bootstrap_hosts(
    ctx: &Ctx<'_>,
    s: &mut ProvisionState,
    new: &[u32],
    refresh_others: &[u32],
) -> Result<()> {
    let vnm = if ctx.boot.skip.contains(&BootPhase::Evpn) {
        Vec::new()
    } else {
        std::fs::read(&ctx.boot.vnm).map_err(|e| {
            anyhow!(
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
        .collect::<Result<_>>()?;
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
    let results: Vec<(String, Result<()>)> = std::thread::scope(|scope| {
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
                    .unwrap_or_else(|_| (String::new(), Err(anyhow!("a bootstrap thread failed"))))
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
        Err(anyhow!(errors.join("; ")))
    }
}
