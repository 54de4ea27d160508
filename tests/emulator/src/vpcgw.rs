//! Public Gateway v2 (reference §10): `/vpc-gw/v2/zones/{zone}`: gateways,
//! gateway networks, public IPs and the bastion.

use serde_json::{Value, json};

use crate::errors::{ApiResult, Reply, bare, invalid, not_found, precondition, transient};
use crate::input::{Body, page_of, sort_items, tags_match};
use crate::ipam::{self, Resource};
use crate::router::Req;
use crate::world::{Action, Ctx, World, region_of};

/// Nominal seconds (observed (recorded)).
pub const ALLOCATING_SECONDS: f64 = 5.0;
/// `configuring` → `running` after the allocation.
pub const FIRST_CONFIGURING_SECONDS: f64 = 2.0;
/// `configuring` → `running` after a bastion or SMTP change.
pub const CONFIGURING_SECONDS: f64 = 5.0;
pub const GN_CREATE_SECONDS: f64 = 15.0;
pub const GN_PATCH_SECONDS: f64 = 5.0;
pub const GN_DELETE_SECONDS: f64 = 5.0;
/// A gateway delete is effective at once (`deleting` is only in the answer).
pub const GW_DELETE_SECONDS: f64 = 0.0;
pub const GATEWAY_VERSION: &str = "0.7.8";

const TYPES: [(&str, u64); 3] = [("VPC-GW-S", 100), ("VPC-GW-M", 1000), ("VPC-GW-L", 2000)];

#[derive(Debug, Clone)]
pub struct GwIp {
    pub id: String,
    pub zone: String,
    pub project_id: String,
    pub organization_id: String,
    pub address: String,
    pub reverse: String,
    pub tags: Vec<String>,
    pub gateway_id: Option<String>,
    pub created_at: f64,
    pub updated_at: f64,
}

impl GwIp {
    pub fn json(&self, w: &World) -> Value {
        json!({
            "address": self.address,
            "created_at": w.stamp(self.created_at),
            "gateway_id": self.gateway_id,
            "id": self.id,
            "organization_id": self.organization_id,
            "project_id": self.project_id,
            "reverse": self.reverse,
            "tags": self.tags,
            "updated_at": w.stamp(self.updated_at),
            "zone": self.zone,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Gateway {
    pub id: String,
    pub zone: String,
    pub project_id: String,
    pub organization_id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub kind: String,
    pub bandwidth: u64,
    pub status: String,
    pub ip_id: String,
    pub created_at: f64,
    pub updated_at: f64,
    pub bastion_enabled: bool,
    pub bastion_port: u64,
    pub bastion_allowed_ips: Vec<String>,
    pub smtp_enabled: bool,
    /// `delete_ip` of the pending delete.
    pub delete_ip: bool,
}

#[derive(Debug, Clone)]
pub struct Gn {
    pub id: String,
    pub zone: String,
    pub gateway_id: String,
    pub private_network_id: String,
    pub masquerade_enabled: bool,
    pub push_default_route: bool,
    pub ipam_ip_id: String,
    /// The IPAM IP was booked by the GN itself (released with it).
    pub auto_ip: bool,
    pub status: String,
    pub mac_address: String,
    pub created_at: f64,
    pub updated_at: f64,
}

impl Gn {
    pub fn json(&self, w: &World) -> Value {
        let mut v = json!({
            "created_at": w.stamp(self.created_at),
            "gateway_id": self.gateway_id,
            "id": self.id,
            "ipam_ip_id": self.ipam_ip_id,
            "masquerade_enabled": self.masquerade_enabled,
            "private_network_id": self.private_network_id,
            "push_default_route": self.push_default_route,
            "status": self.status,
            "updated_at": w.stamp(self.updated_at),
            "zone": self.zone,
        });
        // No MAC address yet while `created` [rec].
        if self.status != "created" {
            v["mac_address"] = json!(self.mac_address);
        }
        v
    }
}

impl Gateway {
    pub fn json(&self, w: &World) -> Value {
        let ip = w
            .gw_ips
            .iter()
            .find(|i| i.id == self.ip_id)
            .map(|i| i.json(w))
            .unwrap_or(Value::Null);
        let gns: Vec<Value> = w
            .gns
            .iter()
            .filter(|g| g.gateway_id == self.id)
            .map(|g| g.json(w))
            .collect();
        let mut v = json!({
            "bandwidth": self.bandwidth,
            "bastion_allowed_ips": self.bastion_allowed_ips,
            "bastion_enabled": self.bastion_enabled,
            "bastion_port": self.bastion_port,
            "created_at": w.stamp(self.created_at),
            "gateway_networks": gns,
            "id": self.id,
            "ipv4": ip,
            "is_legacy": false,
            "name": self.name,
            "organization_id": self.organization_id,
            "project_id": self.project_id,
            "smtp_enabled": self.smtp_enabled,
            "status": self.status,
            "tags": self.tags,
            "type": self.kind,
            "updated_at": w.stamp(self.updated_at),
            "zone": self.zone,
        });
        // No version until the gateway is allocated [rec].
        if self.status != "allocating" {
            v["version"] = json!(GATEWAY_VERSION);
        }
        v
    }

    fn transient(&self) -> bool {
        matches!(
            self.status.as_str(),
            "allocating" | "configuring" | "stopping" | "deleting"
        )
    }
}

fn new_ip(w: &mut World, ctx: &Ctx, zone: &str, project_id: &str, tags: Vec<String>) -> String {
    let n = w.counter(&format!("gwip:{zone}"));
    let third = match zone {
        z if z.starts_with("fr-par") => 164,
        z if z.starts_with("nl-ams") => 122,
        z if z.starts_with("pl-waw") => 180,
        _ => 200,
    };
    let (a, b, c, d) = (163, 172, third + n / 250, 2 + n % 250);
    let address = format!("{a}.{b}.{c}.{d}");
    let id = w.new_id();
    w.gw_ips.push(GwIp {
        id: id.clone(),
        zone: zone.to_string(),
        organization_id: project_id.to_string(),
        project_id: project_id.to_string(),
        address,
        reverse: format!("{d}-{c}-{b}-{a}.instances.scw.cloud"),
        tags,
        gateway_id: None,
        created_at: ctx.now,
        updated_at: ctx.now,
    });
    id
}

fn gw_index(w: &mut World, zone: &str, id: &str) -> Result<usize, Reply> {
    if !crate::util::is_uuid(id) {
        return Err(invalid("gateway_id", "format", &format!("{id:?} is not a UUID")));
    }
    if w.hidden_read(id) {
        return Err(not_found("gateway", id));
    }
    w.gateways
        .iter()
        .position(|g| g.id == id && g.zone == zone)
        .ok_or_else(|| not_found("gateway", id))
}

fn gn_index(w: &mut World, zone: &str, id: &str) -> Result<usize, Reply> {
    if !crate::util::is_uuid(id) {
        return Err(invalid(
            "gateway_network_id",
            "format",
            &format!("{id:?} is not a UUID"),
        ));
    }
    if w.hidden_read(id) {
        return Err(not_found("gateway_network", id));
    }
    w.gns
        .iter()
        .position(|g| g.id == id && g.zone == zone)
        .ok_or_else(|| not_found("gateway_network", id))
}

fn ip_index(w: &mut World, zone: &str, id: &str) -> Result<usize, Reply> {
    if !crate::util::is_uuid(id) {
        return Err(invalid("ip_id", "format", &format!("{id:?} is not a UUID")));
    }
    if w.hidden_read(id) {
        return Err(not_found("ip", id));
    }
    w.gw_ips
        .iter()
        .position(|i| i.id == id && i.zone == zone)
        .ok_or_else(|| not_found("ip", id))
}

pub fn route(w: &mut World, ctx: &mut Ctx, zone: &str, r: &Req) -> ApiResult {
    let rest: Vec<&str> = r.rest.iter().map(String::as_str).collect();
    match (r.method, rest.as_slice()) {
        ("GET", ["gateway-types"]) => {
            let types: Vec<Value> = TYPES
                .iter()
                .map(|(n, b)| json!({"name": n, "bandwidth": b, "zone": zone}))
                .collect();
            Ok(Reply::ok(json!({ "types": types })))
        }
        ("POST", ["gateways"]) => create_gw(w, ctx, zone, r),
        ("GET", ["gateways"]) => list_gws(w, ctx, zone, r),
        ("GET", ["gateways", id]) => {
            let i = gw_index(w, zone, id)?;
            Ok(Reply::ok(w.gateways[i].json(w)))
        }
        ("PATCH", ["gateways", id]) => patch_gw(w, ctx, zone, id, r),
        ("DELETE", ["gateways", id]) => delete_gw(w, ctx, zone, id, r),
        ("POST", ["gateways", id, "refresh-ssh-keys"]) => {
            let i = gw_index(w, zone, id)?;
            if w.gateways[i].transient() {
                return Err(transient("gateway", id, &w.gateways[i].status.clone()));
            }
            Ok(Reply::ok(w.gateways[i].json(w)))
        }
        ("POST", ["gateways", id, "bastion-allowed-ips"]) => {
            let i = gw_index(w, zone, id)?;
            let range = Body(r.body).required_str("ip_range")?;
            check_range(&range, "ip_range")?;
            if !w.gateways[i].bastion_allowed_ips.contains(&range) {
                w.gateways[i].bastion_allowed_ips.push(range);
            }
            w.gateways[i].updated_at = ctx.now;
            Ok(Reply::ok(json!({"ip_ranges": w.gateways[i].bastion_allowed_ips})))
        }
        ("PUT", ["gateways", id, "bastion-allowed-ips"]) => {
            let i = gw_index(w, zone, id)?;
            let ranges = Body(r.body).strs("ip_ranges")?.unwrap_or_default();
            for range in &ranges {
                check_range(range, "ip_ranges")?;
            }
            w.gateways[i].bastion_allowed_ips = ranges;
            w.gateways[i].updated_at = ctx.now;
            Ok(Reply::ok(json!({"ip_ranges": w.gateways[i].bastion_allowed_ips})))
        }
        ("DELETE", ["gateways", id, "bastion-allowed-ips", range]) => {
            let i = gw_index(w, zone, id)?;
            let before = w.gateways[i].bastion_allowed_ips.len();
            w.gateways[i].bastion_allowed_ips.retain(|x| x != range);
            if w.gateways[i].bastion_allowed_ips.len() == before {
                return Err(not_found("ip_range", range));
            }
            Ok(Reply::no_content())
        }
        ("POST", ["gateway-networks"]) => create_gn(w, ctx, zone, r),
        ("GET", ["gateway-networks"]) => list_gns(w, ctx, zone, r),
        ("GET", ["gateway-networks", id]) => {
            let i = gn_index(w, zone, id)?;
            Ok(Reply::ok(w.gns[i].json(w)))
        }
        ("PATCH", ["gateway-networks", id]) => patch_gn(w, ctx, zone, id, r),
        ("DELETE", ["gateway-networks", id]) => delete_gn(w, ctx, zone, id),
        ("POST", ["ips"]) => {
            let b = Body(r.body);
            let project_id = b.required_uuid("project_id")?;
            let tags = b.strs("tags")?.unwrap_or_default();
            let id = new_ip(w, ctx, zone, &project_id, tags);
            let i = ip_index(w, zone, &id)?;
            Ok(Reply::ok(w.gw_ips[i].json(w)))
        }
        ("GET", ["ips"]) => list_ips(w, ctx, zone, r),
        ("GET", ["ips", id]) => {
            let i = ip_index(w, zone, id)?;
            Ok(Reply::ok(w.gw_ips[i].json(w)))
        }
        ("PATCH", ["ips", id]) => {
            let i = ip_index(w, zone, id)?;
            let b = Body(r.body);
            let tags = b.strs("tags")?;
            let reverse = b.str("reverse")?;
            let ip = &mut w.gw_ips[i];
            if let Some(t) = tags {
                ip.tags = t;
            }
            if let Some(rv) = reverse {
                ip.reverse = rv;
            }
            ip.updated_at = ctx.now;
            Ok(Reply::ok(w.gw_ips[i].json(w)))
        }
        ("DELETE", ["ips", id]) => {
            let i = ip_index(w, zone, id)?;
            if let Some(g) = &w.gw_ips[i].gateway_id {
                return Err(precondition(
                    "resource_still_in_use",
                    &format!("the IP is used by gateway {g}"),
                ));
            }
            w.gw_ips.remove(i);
            Ok(Reply::no_content())
        }
        _ => Err(bare(404, "Not Found")),
    }
}

fn check_range(range: &str, arg: &str) -> Result<(), Reply> {
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

fn create_gw(w: &mut World, ctx: &Ctx, zone: &str, r: &Req) -> ApiResult {
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

fn check_port(port: u64) -> Result<(), Reply> {
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

fn patch_gw(w: &mut World, ctx: &Ctx, zone: &str, id: &str, r: &Req) -> ApiResult {
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

fn delete_gw(w: &mut World, ctx: &Ctx, zone: &str, id: &str, r: &Req) -> ApiResult {
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

fn list_gws(w: &mut World, ctx: &Ctx, zone: &str, r: &Req) -> ApiResult {
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

fn create_gn(w: &mut World, ctx: &Ctx, zone: &str, r: &Req) -> ApiResult {
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

fn attach_ip(w: &mut World, ctx: &Ctx, ip_id: &str, pn_id: &str, resource: Resource) -> Result<(), Reply> {
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

fn patch_gn(w: &mut World, ctx: &Ctx, zone: &str, id: &str, r: &Req) -> ApiResult {
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

fn delete_gn(w: &mut World, ctx: &Ctx, zone: &str, id: &str) -> ApiResult {
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

fn list_gns(w: &mut World, ctx: &Ctx, zone: &str, r: &Req) -> ApiResult {
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

fn list_ips(w: &mut World, ctx: &Ctx, zone: &str, r: &Req) -> ApiResult {
    let q = r.query;
    let order = q.order_by(
        &[
            "created_at_asc",
            "created_at_desc",
            "address_asc",
            "address_desc",
            "reverse_asc",
            "reverse_desc",
        ],
        "created_at_asc",
    )?;
    let project = q.uuid("project_id")?;
    let org = q.uuid("organization_id")?;
    let tags = q.all("tags");
    let is_free = q.bool("is_free")?;
    let reverse = q.text("reverse");
    q.paging()?;
    let mut items: Vec<Value> = w
        .gw_ips
        .iter()
        .filter(|i| i.zone == zone)
        .filter(|i| project.as_ref().is_none_or(|p| &i.project_id == p))
        .filter(|i| org.as_ref().is_none_or(|o| &i.organization_id == o))
        .filter(|i| tags_match(&i.tags, &tags))
        .filter(|i| is_free.is_none_or(|f| i.gateway_id.is_none() == f))
        .filter(|i| reverse.as_ref().is_none_or(|rv| i.reverse.contains(rv.as_str())))
        .map(|i| i.json(w))
        .collect();
    items = w.filter_hidden(items);
    sort_items(&mut items, &order);
    page_of(items, q, "ips", ctx.total_count_delta)
}
