//! VPC v2 (reference §9): `/vpc/v2/regions/{region}`: VPCs (one default VPC
//! per project and region) and private networks with automatic subnets.

use serde_json::{Value, json};

use crate::errors::{ApiResult, Reply, bare, invalid, not_found, precondition};
use crate::input::{Body, page_of, sort_items, tags_match};
use crate::ipam::parse_v4_cidr;
use crate::router::Req;
use crate::world::{Ctx, World};

#[derive(Debug, Clone)]
pub struct Vpc {
    pub id: String,
    pub region: String,
    pub project_id: String,
    pub organization_id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub is_default: bool,
    pub created_at: f64,
    pub updated_at: f64,
    pub routing_enabled: bool,
    pub custom_routes_propagation_enabled: bool,
    pub transitivity_enabled: bool,
    /// The ULA /48 its private networks take their /64 from (`fd64:badd:7710`).
    pub v6_prefix: String,
}

#[derive(Debug, Clone)]
pub struct Subnet {
    pub id: String,
    /// CIDR.
    pub subnet: String,
    pub created_at: f64,
    pub updated_at: f64,
}

#[derive(Debug, Clone)]
pub struct Pn {
    pub id: String,
    pub region: String,
    pub project_id: String,
    pub organization_id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub vpc_id: String,
    pub created_at: f64,
    pub updated_at: f64,
    pub dhcp_enabled: bool,
    pub default_route_propagation_enabled: bool,
    pub subnets: Vec<Subnet>,
}

impl Vpc {
    pub fn json(&self, w: &World) -> Value {
        let count = w.pns.iter().filter(|p| p.vpc_id == self.id).count();
        let mut v = json!({
            "created_at": w.stamp(self.created_at),
            "custom_routes_propagation_enabled": self.custom_routes_propagation_enabled,
            "id": self.id,
            "is_default": self.is_default,
            "name": self.name,
            "organization_id": self.organization_id,
            "private_network_count": count,
            "project_id": self.project_id,
            "region": self.region,
            "routing_enabled": self.routing_enabled,
            "tags": self.tags,
            "updated_at": w.stamp(self.updated_at),
        });
        // The API leaves this field out unless it is true [rec].
        if self.transitivity_enabled {
            v["transitivity_enabled"] = json!(true);
        }
        v
    }
}

impl Pn {
    pub fn json(&self, w: &World) -> Value {
        let subnets: Vec<Value> = self
            .subnets
            .iter()
            .map(|s| {
                json!({
                    "created_at": w.stamp(s.created_at),
                    "id": s.id,
                    "private_network_id": self.id,
                    "project_id": self.project_id,
                    "subnet": s.subnet,
                    "updated_at": w.stamp(s.updated_at),
                    "vpc_id": self.vpc_id,
                })
            })
            .collect();
        json!({
            "created_at": w.stamp(self.created_at),
            "default_route_propagation_enabled": self.default_route_propagation_enabled,
            "dhcp_enabled": self.dhcp_enabled,
            "id": self.id,
            "name": self.name,
            "organization_id": self.organization_id,
            "project_id": self.project_id,
            "region": self.region,
            "subnets": subnets,
            "tags": self.tags,
            "updated_at": w.stamp(self.updated_at),
            "vpc_id": self.vpc_id,
        })
    }
}

fn new_v6_prefix(w: &mut World) -> String {
    let n = w.rng.next_u64();
    format!("fd{:02x}:{:x}:{:x}", (n >> 40) & 0xff, (n >> 16) & 0xffff, n & 0xffff)
}

/// The default VPC of `project` in `region`, created if missing.
pub fn ensure_default_vpc(w: &mut World, project: &str, region: &str) -> String {
    if let Some(v) = w
        .vpcs
        .iter()
        .find(|v| v.is_default && v.project_id == project && v.region == region)
    {
        return v.id.clone();
    }
    let id = w.new_id();
    let now = w.now();
    let v6_prefix = new_v6_prefix(w);
    w.vpcs.push(Vpc {
        id: id.clone(),
        region: region.to_string(),
        project_id: project.to_string(),
        organization_id: project.to_string(),
        name: "default".into(),
        tags: vec!["default".into()],
        is_default: true,
        created_at: now,
        updated_at: now,
        routing_enabled: false,
        custom_routes_propagation_enabled: false,
        transitivity_enabled: false,
        v6_prefix,
    });
    id
}

pub fn route(w: &mut World, ctx: &mut Ctx, region: &str, r: &Req) -> ApiResult {
    let rest: Vec<&str> = r.rest.iter().map(String::as_str).collect();
    match (r.method, rest.as_slice()) {
        ("POST", ["vpcs"]) => create_vpc(w, ctx, region, r),
        ("GET", ["vpcs"]) => list_vpcs(w, ctx, region, r),
        ("GET", ["vpcs", id]) => {
            let i = vpc_index(w, region, id)?;
            Ok(Reply::ok(w.vpcs[i].json(w)))
        }
        ("PATCH", ["vpcs", id]) => {
            let i = vpc_index(w, region, id)?;
            let b = Body(r.body);
            let name = b.str("name")?;
            let tags = b.strs("tags")?;
            let v = &mut w.vpcs[i];
            if let Some(n) = name {
                v.name = n;
            }
            if let Some(t) = tags {
                v.tags = t;
            }
            v.updated_at = ctx.now;
            Ok(Reply::ok(w.vpcs[i].json(w)))
        }
        ("DELETE", ["vpcs", id]) => {
            let i = vpc_index(w, region, id)?;
            if w.pns.iter().any(|p| p.vpc_id == *id) {
                return Err(precondition(
                    "resource_still_in_use",
                    "the VPC still has private networks",
                ));
            }
            w.vpcs.remove(i);
            Ok(Reply::no_content())
        }
        ("POST", ["vpcs", id, "enable-routing"]) => {
            let i = vpc_index(w, region, id)?;
            w.vpcs[i].routing_enabled = true;
            w.vpcs[i].updated_at = ctx.now;
            Ok(Reply::ok(w.vpcs[i].json(w)))
        }
        ("POST", ["private-networks"]) => create_pn(w, ctx, region, r),
        ("GET", ["private-networks"]) => list_pns(w, ctx, region, r),
        ("GET", ["private-networks", id]) => {
            let i = pn_index(w, region, id)?;
            Ok(Reply::ok(w.pns[i].json(w)))
        }
        ("PATCH", ["private-networks", id]) => {
            let i = pn_index(w, region, id)?;
            let b = Body(r.body);
            let name = b.str("name")?;
            let tags = b.strs("tags")?;
            let drp = b.bool("default_route_propagation_enabled")?;
            let p = &mut w.pns[i];
            if let Some(n) = name {
                p.name = n;
            }
            if let Some(t) = tags {
                p.tags = t;
            }
            if let Some(d) = drp {
                p.default_route_propagation_enabled = d;
            }
            p.updated_at = ctx.now;
            Ok(Reply::ok(w.pns[i].json(w)))
        }
        ("DELETE", ["private-networks", id]) => delete_pn(w, region, id),
        ("POST", ["private-networks", id, "enable-dhcp"]) => {
            let i = pn_index(w, region, id)?;
            w.pns[i].dhcp_enabled = true;
            w.pns[i].updated_at = ctx.now;
            Ok(Reply::ok(w.pns[i].json(w)))
        }
        _ => Err(bare(404, "Not Found")),
    }
}

fn vpc_index(w: &mut World, region: &str, id: &str) -> Result<usize, Reply> {
    if !crate::util::is_uuid(id) {
        return Err(invalid("vpc_id", "format", &format!("{id:?} is not a UUID")));
    }
    if w.hidden_read(id) {
        return Err(not_found("vpc", id));
    }
    w.vpcs
        .iter()
        .position(|v| v.id == id && v.region == region)
        .ok_or_else(|| not_found("vpc", id))
}

fn pn_index(w: &mut World, region: &str, id: &str) -> Result<usize, Reply> {
    if !crate::util::is_uuid(id) {
        return Err(invalid(
            "private_network_id",
            "format",
            &format!("{id:?} is not a UUID"),
        ));
    }
    if w.hidden_read(id) {
        return Err(not_found("private_network", id));
    }
    w.pns
        .iter()
        .position(|p| p.id == id && p.region == region)
        .ok_or_else(|| not_found("private_network", id))
}

fn create_vpc(w: &mut World, ctx: &Ctx, region: &str, r: &Req) -> ApiResult {
    let b = Body(r.body);
    let project_id = b.required_uuid("project_id")?;
    let name = b.str("name")?.filter(|n| !n.is_empty()).unwrap_or_else(|| "vpc".into());
    let tags = b.strs("tags")?.unwrap_or_default();
    // enable_routing:false still gives routing_enabled:true [rec].
    b.bool("enable_routing")?;
    let transitivity = b.bool("enable_transitivity")?.unwrap_or(false);
    ensure_default_vpc(w, &project_id, region);
    let id = w.new_id();
    let v6_prefix = new_v6_prefix(w);
    w.vpcs.push(Vpc {
        id,
        region: region.to_string(),
        organization_id: project_id.clone(),
        project_id,
        name,
        tags,
        is_default: false,
        created_at: ctx.now,
        updated_at: ctx.now,
        routing_enabled: true,
        custom_routes_propagation_enabled: true,
        transitivity_enabled: transitivity,
        v6_prefix,
    });
    let i = w.vpcs.len() - 1;
    Ok(Reply::ok(w.vpcs[i].json(w)))
}

fn list_vpcs(w: &mut World, ctx: &Ctx, region: &str, r: &Req) -> ApiResult {
    let q = r.query;
    let order = q.order_by(
        &["created_at_asc", "created_at_desc", "name_asc", "name_desc"],
        "created_at_asc",
    )?;
    let name = q.text("name");
    let tags = q.all("tags");
    let project = q.uuid("project_id")?;
    let org = q.uuid("organization_id")?;
    let is_default = q.bool("is_default")?;
    let routing = q.bool("routing_enabled")?;
    q.paging()?;
    if let Some(p) = &project {
        ensure_default_vpc(w, p, region);
    }
    let mut items: Vec<Value> = w
        .vpcs
        .iter()
        .filter(|v| v.region == region)
        .filter(|v| name.as_ref().is_none_or(|n| v.name.contains(n.as_str())))
        .filter(|v| tags_match(&v.tags, &tags))
        .filter(|v| project.as_ref().is_none_or(|p| &v.project_id == p))
        .filter(|v| org.as_ref().is_none_or(|o| &v.organization_id == o))
        .filter(|v| is_default.is_none_or(|d| v.is_default == d))
        .filter(|v| routing.is_none_or(|d| v.routing_enabled == d))
        .map(|v| v.json(w))
        .collect();
    items = w.filter_hidden(items);
    sort_items(&mut items, &order);
    page_of(items, q, "vpcs", ctx.total_count_delta)
}

fn overlaps(a: (u32, u32), b: (u32, u32)) -> bool {
    let end = |(n, p): (u32, u32)| u64::from(n) + (1u64 << (32 - p)) - 1;
    u64::from(a.0) <= end(b) && u64::from(b.0) <= end(a)
}

fn create_pn(w: &mut World, ctx: &Ctx, region: &str, r: &Req) -> ApiResult {
    let b = Body(r.body);
    let project_id = b.required_uuid("project_id")?;
    let name = b
        .str("name")?
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "private-network".into());
    let tags = b.strs("tags")?.unwrap_or_default();
    let subnets = b.strs("subnets")?.unwrap_or_default();
    let drp = b.bool("default_route_propagation_enabled")?.unwrap_or(false);
    let vpc_id = match b.uuid("vpc_id")? {
        Some(v) => {
            if !w.vpcs.iter().any(|x| x.id == v && x.region == region) {
                return Err(not_found("vpc", &v));
            }
            v
        }
        None => ensure_default_vpc(w, &project_id, region),
    };
    // Existing IPv4 ranges in this VPC.
    let taken: Vec<(u32, u32)> = w
        .pns
        .iter()
        .filter(|p| p.vpc_id == vpc_id)
        .flat_map(|p| p.subnets.iter().filter_map(|s| parse_v4_cidr(&s.subnet)))
        .collect();
    let mut v4: Vec<String> = Vec::new();
    let mut mine: Vec<(u32, u32)> = Vec::new();
    for s in &subnets {
        if s.contains(':') {
            continue;
        }
        let Some(c) = parse_v4_cidr(s) else {
            return Err(invalid("subnets", "format", &format!("{s:?} is not an IPv4 CIDR")));
        };
        if !(8..=29).contains(&c.1) {
            return Err(invalid(
                "subnets",
                "constraint",
                &format!("{s:?}: the prefix must be between /8 and /29"),
            ));
        }
        if taken.iter().chain(mine.iter()).any(|t| overlaps(*t, c)) {
            return Err(invalid(
                "subnets",
                "constraint",
                &format!("{s:?} overlaps a subnet of the VPC"),
            ));
        }
        mine.push(c);
        v4.push(format!("{}/{}", std::net::Ipv4Addr::from(c.0), c.1));
    }
    if v4.is_empty() {
        // The next free 172.16.x.0/22.
        let base = u32::from(std::net::Ipv4Addr::new(172, 16, 0, 0));
        let pick = (0..1024u32)
            .map(|k| (base + k * 1024, 22))
            .find(|c| !taken.iter().any(|t| overlaps(*t, *c)))
            .ok_or_else(|| invalid("subnets", "constraint", "the VPC has no free /22 left"))?;
        v4.push(format!("{}/22", std::net::Ipv4Addr::from(pick.0)));
    }
    let prefix = w
        .vpcs
        .iter()
        .find(|v| v.id == vpc_id)
        .map(|v| v.v6_prefix.clone())
        .unwrap_or_default();
    let n = w.counter(&format!("pn6:{vpc_id}"));
    let v6 = format!("{prefix}:{:x}::/64", 0x7f00 + n);
    let now = ctx.now;
    let mut subnet_objs = Vec::new();
    for s in v4.into_iter().chain(std::iter::once(v6)) {
        subnet_objs.push(Subnet {
            id: w.new_id(),
            subnet: s,
            created_at: now,
            updated_at: now,
        });
    }
    let id = w.new_id();
    w.pns.push(Pn {
        id,
        region: region.to_string(),
        organization_id: project_id.clone(),
        project_id,
        name,
        tags,
        vpc_id,
        created_at: now,
        updated_at: now,
        dhcp_enabled: true,
        default_route_propagation_enabled: drp,
        subnets: subnet_objs,
    });
    let i = w.pns.len() - 1;
    Ok(Reply::ok(w.pns[i].json(w)))
}

fn list_pns(w: &mut World, ctx: &Ctx, region: &str, r: &Req) -> ApiResult {
    let q = r.query;
    let order = q.order_by(
        &["created_at_asc", "created_at_desc", "name_asc", "name_desc"],
        "created_at_asc",
    )?;
    let name = q.text("name");
    let tags = q.all("tags");
    let project = q.uuid("project_id")?;
    let org = q.uuid("organization_id")?;
    let ids = q.uuids("private_network_ids")?;
    let vpc = q.uuid("vpc_id")?;
    let dhcp = q.bool("dhcp_enabled")?;
    q.paging()?;
    let mut items: Vec<Value> = w
        .pns
        .iter()
        .filter(|p| p.region == region)
        .filter(|p| name.as_ref().is_none_or(|n| p.name.contains(n.as_str())))
        .filter(|p| tags_match(&p.tags, &tags))
        .filter(|p| project.as_ref().is_none_or(|x| &p.project_id == x))
        .filter(|p| org.as_ref().is_none_or(|x| &p.organization_id == x))
        .filter(|p| ids.is_empty() || ids.contains(&p.id))
        .filter(|p| vpc.as_ref().is_none_or(|x| &p.vpc_id == x))
        .filter(|p| dhcp.is_none_or(|d| p.dhcp_enabled == d))
        .map(|p| p.json(w))
        .collect();
    items = w.filter_hidden(items);
    sort_items(&mut items, &order);
    page_of(items, q, "private_networks", ctx.total_count_delta)
}

fn delete_pn(w: &mut World, region: &str, id: &str) -> ApiResult {
    let i = pn_index(w, region, id)?;
    let mappings = w.spns.iter().filter(|m| m.private_network_id == id).count();
    let gns = w.gns.iter().filter(|g| g.private_network_id == id).count();
    if mappings + gns > 0 {
        return Err(precondition(
            "resource_still_in_use",
            &format!(
                "the private network is still used by {mappings} server attachment(s) and {gns} gateway network(s)"
            ),
        ));
    }
    w.pns.remove(i);
    // Addresses booked in it go with it.
    w.ipam_ips.retain(|ip| ip.pn_id != id);
    Ok(Reply::no_content())
}
