//! `delete`: everything of the provision, in oned then at Scaleway, and a
//! sweep of what is tagged with it.

use super::*;
use anyhow::{Error, Result, anyhow};

/// `delete`: everything, in reverse order, then checks that nothing tagged
/// with the provision is left at Scaleway.
pub fn delete(ctx: &Ctx<'_>, s: &mut ProvisionState, force: bool) -> Result<()> {
    if s.phase != Phase::Deleting {
        let all: Vec<u32> = s.hosts.iter().map(|h| h.index).collect();
        check_no_vms(ctx, s, &all, force)?;
        s.phase = Phase::Deleting;
        ctx.save(s)?;
    }
    if let Err(e) = delete_steps(ctx, s) {
        return ctx.failed(s, format!("{e:#}\n(run the same delete again to continue)"));
    }
    ctx.file.remove()
}

pub(super) fn delete_steps(ctx: &Ctx<'_>, s: &mut ProvisionState) -> Result<()> {
    let one = ctx.one();
    if let Some(id) = s.one.private_template {
        one.delete(Pool::VnTemplate, id)?;
        s.one.private_template = None;
        ctx.save(s)?;
    }
    if let Some(id) = s.one.public_network {
        if one.list(Pool::Vnet).map_err(Error::msg)?.iter().any(|v| v.id == id) {
            for r in one.public_ranges(id, &s.id)? {
                ctx.say(&format!("address range {}", r.ar_id), "removing");
                one.remove_range(id, r.ar_id)
                    .map_err(|e| anyhow!("removing address range {} of network {id}: {e}", r.ar_id))?;
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
        Err(anyhow!(
            "still at Scaleway after the delete: {}",
            left.iter()
                .map(|l| format!("{} {} ({})", l.kind, l.id, l.name))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Deletes every Scaleway resource tagged with the provision, in reverse order.
pub(super) fn sweep(ctx: &Ctx<'_>, s: &mut ProvisionState) -> Result<()> {
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
            .map_err(|e| anyhow!("deleting flexible IP {fip}: {e}"))?;
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
            .map_err(|e| anyhow!("deleting SSH key {key}: {e}"))?;
    }
    s.ssh_keys.clear();
    ctx.save(s)?;
    Ok(())
}
