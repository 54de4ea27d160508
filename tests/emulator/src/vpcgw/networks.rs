//! Gateway networks (a gateway on a private network): create (with the
//! IPAM address or a static one), update, delete, list, statuses.

use super::*;

pub(super) fn create_gn(w: &mut World, ctx: &Ctx, zone: &str, r: &Req) -> ApiResult {
    let b = Body(r.body);
    let gateway_id = b.required_uuid("gateway_id")?;
    let pn_id = b.required_uuid("private_network_id")?;
    let push = b.bool("push_default_route")?.unwrap_or(false);
    let masquerade = b.bool("enable_masquerade")?.unwrap_or(false) || push;
    let ipam_ip_id = b.uuid("ipam_ip_id")?;
    let gi = w
        .gateways
        .iter()
        .position(|g| g.id == gateway_id && g.zone == zone)
        .ok_or_else(|| not_found("gateway", &gateway_id))?;
    // The 409 names the gateway, not the gateway network [rec].
    if w.gateways[gi].status != "running" {
        return Err(transient("gateway", &gateway_id, &w.gateways[gi].status.clone()));
    }
    let region = region_of(zone);
    let pn = w
        .pns
        .iter()
        .find(|p| p.id == pn_id && p.region == region)
        .cloned()
        .ok_or_else(|| not_found("private_network", &pn_id))?;
    if w.gns
        .iter()
        .any(|g| g.gateway_id == gateway_id && g.private_network_id == pn_id)
    {
        return Err(invalid(
            "private_network_id",
            "constraint",
            "the gateway is already in this private network",
        ));
    }
    let id = w.new_id();
    let m = w.rng.next_u64();
    let mac = format!(
        "02:00:00:{:02X}:{:02X}:{:02X}",
        (m >> 16) & 0xff,
        (m >> 8) & 0xff,
        m & 0xff
    );
    let resource = Resource {
        kind: "vpc_gateway_network".into(),
        id: id.clone(),
        mac_address: Some(mac.clone()),
        name: Some(w.gateways[gi].name.clone()),
    };
    let project_id = w.gateways[gi].project_id.clone();
    let (ipam_ip_id, auto_ip) = match ipam_ip_id {
        Some(ip) => {
            // A booked IP's resource shows no MAC address [rec].
            attach_ip(
                w,
                ctx,
                &ip,
                &pn.id,
                Resource {
                    mac_address: None,
                    ..resource
                },
            )?;
            (ip, false)
        }
        None => (
            ipam::book(w, ctx, &pn, false, None, &project_id, Vec::new(), Some(resource))?,
            true,
        ),
    };
    w.gns.push(Gn {
        id: id.clone(),
        zone: zone.to_string(),
        gateway_id: gateway_id.clone(),
        private_network_id: pn_id,
        masquerade_enabled: masquerade,
        push_default_route: push,
        ipam_ip_id,
        auto_ip,
        status: "created".into(),
        mac_address: mac,
        created_at: ctx.now,
        updated_at: ctx.now,
    });
    w.gateways[gi].status = "configuring".into();
    w.gateways[gi].updated_at = ctx.now;
    w.chain(
        ctx,
        &id,
        "status",
        vec![(GN_CREATE_SECONDS, Action::GnStatus("ready".into()))],
    );
    // The gateway goes back to running whatever the fault on the GN.
    let plain = Ctx::new(ctx.now);
    w.chain(
        &plain,
        &gateway_id,
        "status",
        vec![(GN_CREATE_SECONDS, Action::GwStatus("running".into()))],
    );
    let i = w.gns.len() - 1;
    Ok(Reply::ok(w.gns[i].json(w)))
}

pub(super) fn attach_ip(w: &mut World, ctx: &Ctx, ip_id: &str, pn_id: &str, resource: Resource) -> Result<(), Reply> {
    let ip = w
        .ipam_ips
        .iter_mut()
        .find(|x| x.id == ip_id)
        .ok_or_else(|| not_found("ip", ip_id))?;
    if ip.pn_id != pn_id {
        return Err(invalid(
            "ipam_ip_id",
            "constraint",
            "the IP is not in the gateway network's private network",
        ));
    }
    if ip.resource.as_ref().is_some_and(|r| r.id != resource.id) {
        return Err(invalid("ipam_ip_id", "constraint", "the IP is already attached"));
    }
    ip.resource = Some(resource);
    ip.updated_at = ctx.now;
    Ok(())
}

pub(super) fn patch_gn(w: &mut World, ctx: &Ctx, zone: &str, id: &str, r: &Req) -> ApiResult {
    let i = gn_index(w, zone, id)?;
    let b = Body(r.body);
    let masquerade = b.bool("enable_masquerade")?;
    let push = b.bool("push_default_route")?;
    let new_ip = b.uuid("ipam_ip_id")?;
    if w.gns[i].status != "ready" {
        return Err(transient("gateway_network", id, &w.gns[i].status.clone()));
    }
    if let Some(ip) = &new_ip
        && *ip != w.gns[i].ipam_ip_id
    {
        let gn = w.gns[i].clone();
        let name = w
            .gateways
            .iter()
            .find(|g| g.id == gn.gateway_id)
            .map(|g| g.name.clone());
        // A booked IP's resource shows no MAC address [rec].
        let resource = Resource {
            kind: "vpc_gateway_network".into(),
            id: gn.id.clone(),
            mac_address: None,
            name,
        };
        attach_ip(w, ctx, ip, &gn.private_network_id, resource)?;
        if gn.auto_ip {
            w.ipam_ips.retain(|x| x.id != gn.ipam_ip_id);
        } else if let Some(old) = w.ipam_ips.iter_mut().find(|x| x.id == gn.ipam_ip_id) {
            old.resource = None;
        }
        w.gns[i].ipam_ip_id = ip.clone();
        w.gns[i].auto_ip = false;
    }
    let gn = &mut w.gns[i];
    if let Some(p) = push {
        gn.push_default_route = p;
        if p {
            gn.masquerade_enabled = true;
        }
    }
    if let Some(m) = masquerade {
        gn.masquerade_enabled = m;
    }
    gn.status = "configuring".into();
    gn.updated_at = ctx.now;
    w.chain(
        ctx,
        id,
        "status",
        vec![(GN_PATCH_SECONDS, Action::GnStatus("ready".into()))],
    );
    Ok(Reply::ok(w.gns[i].json(w)))
}

pub(super) fn delete_gn(w: &mut World, ctx: &Ctx, zone: &str, id: &str) -> ApiResult {
    let i = gn_index(w, zone, id)?;
    if matches!(
        w.gns[i].status.as_str(),
        "created" | "attaching" | "configuring" | "detaching"
    ) {
        return Err(transient("gateway_network", id, &w.gns[i].status.clone()));
    }
    w.gns[i].status = "detaching".into();
    w.gns[i].updated_at = ctx.now;
    w.chain(ctx, id, "status", vec![(GN_DELETE_SECONDS, Action::GnRemove)]);
    Ok(Reply::ok(w.gns[i].json(w)))
}

pub fn remove_gn(w: &mut World, id: &str) {
    w.cancel(id, None);
    if let Some(i) = w.gns.iter().position(|g| g.id == id) {
        let gn = w.gns.remove(i);
        let auto: Vec<String> = if gn.auto_ip {
            vec![gn.ipam_ip_id.clone()]
        } else {
            Vec::new()
        };
        ipam::release_for(w, &gn.id, &auto);
    }
}

pub fn apply_gn_status(w: &mut World, id: &str, at: f64, status: String) {
    if let Some(g) = w.gns.iter_mut().find(|g| g.id == id) {
        g.status = status;
        g.updated_at = at;
    }
}

pub(super) fn list_gns(w: &mut World, ctx: &Ctx, zone: &str, r: &Req) -> ApiResult {
    let q = r.query;
    let order = q.order_by(
        &["created_at_asc", "created_at_desc", "status_asc", "status_desc"],
        "created_at_asc",
    )?;
    let gws = q.uuids("gateway_ids")?;
    let pns = q.uuids("private_network_ids")?;
    let statuses = q.all("status");
    let masq = q.bool("masquerade_enabled")?;
    q.paging()?;
    let mut items: Vec<Value> = w
        .gns
        .iter()
        .filter(|g| g.zone == zone)
        .filter(|g| gws.is_empty() || gws.contains(&g.gateway_id))
        .filter(|g| pns.is_empty() || pns.contains(&g.private_network_id))
        .filter(|g| statuses.is_empty() || statuses.contains(&g.status))
        .filter(|g| masq.is_none_or(|m| g.masquerade_enabled == m))
        .map(|g| g.json(w))
        .collect();
    items = w.filter_hidden(items);
    sort_items(&mut items, &order);
    page_of(items, q, "gateway_networks", ctx.total_count_delta)
}
