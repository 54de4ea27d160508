//! Public Gateway v2 (reference §10): `/vpc-gw/v2/zones/{zone}`: gateways,
//! gateway networks, public IPs and the bastion.

use serde_json::{Value, json};

use crate::errors::{ApiResult, Reply, bare, invalid, not_found, precondition, transient};
use crate::input::{Body, page_of, sort_items, tags_match};
use crate::ipam::{self, Resource};
use crate::router::Req;
use crate::world::{Action, Ctx, World, region_of};

mod gateways;
mod networks;

pub use gateways::{apply_gw_status, remove_gateway};
use gateways::{check_range, create_gw, delete_gw, list_gws, patch_gw};
pub use networks::{apply_gn_status, remove_gn};
use networks::{create_gn, delete_gn, list_gns, patch_gn};

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
