//! Public gateways: create, update, delete, list, and their time-driven
//! statuses.

use super::*;

pub(super) fn check_range(range: &str, arg: &str) -> Result<(), Reply> {
    let ok = crate::ipam::parse_v4_cidr(range).is_some()
        || range
            .split_once('/')
            .is_some_and(|(a, p)| a.parse::<std::net::Ipv6Addr>().is_ok() && p.parse::<u8>().is_ok_and(|p| p <= 128));
    if ok {
        Ok(())
    } else {
        Err(invalid(arg, "format", &format!("{range:?} is not a CIDR range")))
    }
}

pub(super) fn create_gw(w: &mut World, ctx: &Ctx, zone: &str, r: &Req) -> ApiResult {
    let b = Body(r.body);
    let project_id = b.required_uuid("project_id")?;
    let name = b
        .str("name")?
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "public-gateway".into());
    let tags = b.strs("tags")?.unwrap_or_default();
    let kind = b.str("type")?.unwrap_or_else(|| "VPC-GW-S".into());
    let bandwidth = TYPES
        .iter()
        .find(|(n, _)| *n == kind)
        .map(|(_, b)| *b)
        .ok_or_else(|| invalid("type", "constraint", "unknown gateway type"))?;
    let smtp = b.bool("enable_smtp")?.unwrap_or(false);
    let bastion = b.bool("enable_bastion")?.unwrap_or(false);
    let port = b.u64("bastion_port")?.unwrap_or(61000);
    check_port(port)?;
    let id = w.new_id();
    let ip_id = match b.uuid("ip_id")? {
        Some(ip) => {
            let i = ip_index(w, zone, &ip)?;
            if w.gw_ips[i].gateway_id.is_some() {
                return Err(invalid("ip_id", "constraint", "the IP is already used by a gateway"));
            }
            ip
        }
        None => new_ip(w, ctx, zone, &project_id, Vec::new()),
    };
    if let Some(ip) = w.gw_ips.iter_mut().find(|i| i.id == ip_id) {
        ip.gateway_id = Some(id.clone());
    }
    w.gateways.push(Gateway {
        id: id.clone(),
        zone: zone.to_string(),
        organization_id: project_id.clone(),
        project_id,
        name,
        tags,
        kind,
        bandwidth,
        status: "allocating".into(),
        ip_id,
        created_at: ctx.now,
        updated_at: ctx.now,
        bastion_enabled: bastion,
        bastion_port: port,
        bastion_allowed_ips: vec!["0.0.0.0/0".into()],
        smtp_enabled: smtp,
        delete_ip: false,
    });
    w.chain(
        ctx,
        &id,
        "status",
        vec![
            (ALLOCATING_SECONDS, Action::GwStatus("configuring".into())),
            (
                ALLOCATING_SECONDS + FIRST_CONFIGURING_SECONDS,
                Action::GwStatus("running".into()),
            ),
        ],
    );
    let i = w.gateways.len() - 1;
    let mut v = w.gateways[i].json(w);
    // The create answer has no version yet [rec].
    if let Some(o) = v.as_object_mut() {
        o.remove("version");
    }
    Ok(Reply::ok(v))
}

pub(super) fn check_port(port: u64) -> Result<(), Reply> {
    if (1024..=59999).contains(&port) || port == 61000 {
        Ok(())
    } else {
        Err(invalid(
            "bastion_port",
            "constraint",
            "must be between 1024 and 59999, or 61000",
        ))
    }
}

pub(super) fn patch_gw(w: &mut World, ctx: &Ctx, zone: &str, id: &str, r: &Req) -> ApiResult {
    let i = gw_index(w, zone, id)?;
    let b = Body(r.body);
    let name = b.str("name")?;
    let tags = b.strs("tags")?;
    let bastion = b.bool("enable_bastion")?;
    let port = b.u64("bastion_port")?;
    let smtp = b.bool("enable_smtp")?;
    if let Some(p) = port {
        check_port(p)?;
    }
    let g = &w.gateways[i];
    let reconfigure = bastion.is_some_and(|x| x != g.bastion_enabled)
        || port.is_some_and(|x| x != g.bastion_port)
        || smtp.is_some_and(|x| x != g.smtp_enabled);
    if reconfigure && g.transient() {
        return Err(transient("gateway", id, &g.status.clone()));
    }
    let g = &mut w.gateways[i];
    if let Some(n) = name {
        g.name = n;
    }
    if let Some(t) = tags {
        g.tags = t;
    }
    if let Some(x) = bastion {
        g.bastion_enabled = x;
    }
    if let Some(x) = port {
        g.bastion_port = x;
    }
    if let Some(x) = smtp {
        g.smtp_enabled = x;
    }
    g.updated_at = ctx.now;
    // The answer still shows the old status; the next read shows
    // `configuring` [rec].
    let answer = w.gateways[i].json(w);
    if reconfigure {
        w.gateways[i].status = "configuring".into();
        w.chain(
            ctx,
            id,
            "status",
            vec![(CONFIGURING_SECONDS, Action::GwStatus("running".into()))],
        );
    }
    Ok(Reply::ok(answer))
}

pub(super) fn delete_gw(w: &mut World, ctx: &Ctx, zone: &str, id: &str, r: &Req) -> ApiResult {
    let i = gw_index(w, zone, id)?;
    let delete_ip = r.query.bool("delete_ip")?.unwrap_or(false);
    if w.gateways[i].transient() {
        return Err(transient("gateway", id, &w.gateways[i].status.clone()));
    }
    if w.gns.iter().any(|g| g.gateway_id == id) {
        return Err(precondition(
            "resource_still_in_use",
            "the gateway still has gateway networks",
        ));
    }
    let g = &mut w.gateways[i];
    g.status = "deleting".into();
    g.delete_ip = delete_ip;
    g.updated_at = ctx.now;
    w.chain(ctx, id, "status", vec![(GW_DELETE_SECONDS, Action::GwRemove)]);
    Ok(Reply::ok(w.gateways[i].json(w)))
}

pub fn remove_gateway(w: &mut World, id: &str) {
    w.cancel(id, None);
    let Some(i) = w.gateways.iter().position(|g| g.id == id) else {
        return;
    };
    let g = w.gateways.remove(i);
    if g.delete_ip {
        w.gw_ips.retain(|ip| ip.id != g.ip_id);
    } else if let Some(ip) = w.gw_ips.iter_mut().find(|ip| ip.id == g.ip_id) {
        ip.gateway_id = None;
    }
    let gns: Vec<String> = w
        .gns
        .iter()
        .filter(|n| n.gateway_id == id)
        .map(|n| n.id.clone())
        .collect();
    for n in gns {
        remove_gn(w, &n);
    }
}

pub fn apply_gw_status(w: &mut World, id: &str, at: f64, status: String) {
    if let Some(g) = w.gateways.iter_mut().find(|g| g.id == id) {
        g.status = status;
        g.updated_at = at;
    }
}

pub(super) fn list_gws(w: &mut World, ctx: &Ctx, zone: &str, r: &Req) -> ApiResult {
    let q = r.query;
    let order = q.order_by(
        &[
            "created_at_asc",
            "created_at_desc",
            "name_asc",
            "name_desc",
            "type_asc",
            "type_desc",
            "status_asc",
            "status_desc",
        ],
        "created_at_asc",
    )?;
    let project = q.uuid("project_id")?;
    let org = q.uuid("organization_id")?;
    let name = q.text("name");
    let tags = q.all("tags");
    let types = q.all("types");
    let statuses = q.all("status");
    let pns = q.uuids("private_network_ids")?;
    q.paging()?;
    let mut items: Vec<Value> = w
        .gateways
        .iter()
        .filter(|g| g.zone == zone)
        .filter(|g| project.as_ref().is_none_or(|p| &g.project_id == p))
        .filter(|g| org.as_ref().is_none_or(|o| &g.organization_id == o))
        .filter(|g| name.as_ref().is_none_or(|n| g.name.contains(n.as_str())))
        .filter(|g| tags_match(&g.tags, &tags))
        .filter(|g| types.is_empty() || types.contains(&g.kind))
        .filter(|g| statuses.is_empty() || statuses.contains(&g.status))
        .filter(|g| {
            pns.is_empty()
                || w.gns
                    .iter()
                    .any(|n| n.gateway_id == g.id && pns.contains(&n.private_network_id))
        })
        .map(|g| g.json(w))
        .collect();
    items = w.filter_hidden(items);
    sort_items(&mut items, &order);
    page_of(items, q, "gateways", ctx.total_count_delta)
}
