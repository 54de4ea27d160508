//! IPAM v1 (reference §11): `/ipam/v1/regions/{region}`; also the address
//! allocator used by server mappings and gateway networks.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::{Value, json};

use crate::errors::{ApiResult, Reply, already_exists, bare, invalid, not_found, precondition};
use crate::input::{Body, page_of, sort_items, tags_match};
use crate::router::Req;
use crate::vpc::Pn;
use crate::world::{Ctx, World};

/// What an IP is attached to.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// `baremetal_private_nic`, `vpc_gateway_network`, ...
    pub kind: String,
    pub id: String,
    pub mac_address: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct IpamIp {
    pub id: String,
    pub region: String,
    pub project_id: String,
    /// CIDR form: `172.16.4.2/22`.
    pub address: String,
    pub is_ipv6: bool,
    pub subnet_id: String,
    pub pn_id: String,
    pub vpc_id: String,
    pub tags: Vec<String>,
    pub reverses: Vec<Value>,
    pub created_at: f64,
    pub updated_at: f64,
    pub resource: Option<Resource>,
}

impl IpamIp {
    pub fn json(&self, w: &World) -> Value {
        let resource = self
            .resource
            .as_ref()
            .map(|r| json!({"id": r.id, "mac_address": r.mac_address, "name": r.name, "type": r.kind}));
        json!({
            "address": self.address,
            "created_at": w.stamp(self.created_at),
            "id": self.id,
            "is_ipv6": self.is_ipv6,
            "project_id": self.project_id,
            "region": self.region,
            "resource": resource,
            "reverses": self.reverses,
            "source": {"subnet_id": self.subnet_id},
            "tags": self.tags,
            "updated_at": w.stamp(self.updated_at),
            "zone": null,
        })
    }

    fn bare_address(&self) -> &str {
        self.address.split('/').next().unwrap_or(&self.address)
    }
}

/// Parses `a.b.c.d/n` into (network, prefix).
pub fn parse_v4_cidr(s: &str) -> Option<(u32, u32)> {
    let (a, p) = s.split_once('/')?;
    let addr: Ipv4Addr = a.parse().ok()?;
    let prefix: u32 = p.parse().ok()?;
    if prefix > 32 {
        return None;
    }
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    Some((u32::from(addr) & mask, prefix))
}

fn parse_v6_cidr(s: &str) -> Option<(u128, u32)> {
    let (a, p) = s.split_once('/')?;
    let addr: Ipv6Addr = a.parse().ok()?;
    let prefix: u32 = p.parse().ok()?;
    if prefix > 128 {
        return None;
    }
    let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
    Some((u128::from(addr) & mask, prefix))
}

/// Books an address in `pn` (IPv4 from `.2` up, or a random IPv6 interface
/// id) and returns the new IP's id.
#[allow(clippy::too_many_arguments)]
pub fn book(
    w: &mut World,
    ctx: &Ctx,
    pn: &Pn,
    is_ipv6: bool,
    address: Option<&str>,
    project_id: &str,
    tags: Vec<String>,
    resource: Option<Resource>,
) -> Result<String, Reply> {
    let subnet = pn
        .subnets
        .iter()
        .find(|s| s.subnet.contains(':') == is_ipv6)
        .cloned()
        .ok_or_else(|| {
            invalid(
                "is_ipv6",
                "constraint",
                "the private network has no subnet of this family",
            )
        })?;
    let used: Vec<String> = w
        .ipam_ips
        .iter()
        .filter(|ip| ip.subnet_id == subnet.id)
        .map(|ip| ip.bare_address().to_string())
        .collect();
    let cidr = if is_ipv6 {
        let (net, prefix) =
            parse_v6_cidr(&subnet.subnet).ok_or_else(|| invalid("source", "constraint", "bad subnet"))?;
        let host = match address {
            Some(a) => {
                let ip: Ipv6Addr = a
                    .parse()
                    .map_err(|_| invalid("address", "format", "not an IPv6 address"))?;
                let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
                if u128::from(ip) & mask != net {
                    return Err(invalid(
                        "address",
                        "constraint",
                        "the address is not in the private network",
                    ));
                }
                ip
            }
            None => loop {
                let suffix = (u128::from(w.rng.next_u64()) | 0x1000) & !(u128::MAX << (128 - prefix.max(64)));
                let ip = Ipv6Addr::from(net | suffix);
                if !used.contains(&ip.to_string()) {
                    break ip;
                }
            },
        };
        if used.contains(&host.to_string()) {
            return Err(already_exists(
                "ip",
                &host.to_string(),
                "this address is already booked",
            ));
        }
        format!("{host}/{prefix}")
    } else {
        let (net, prefix) =
            parse_v4_cidr(&subnet.subnet).ok_or_else(|| invalid("source", "constraint", "bad subnet"))?;
        let size: u64 = 1u64 << (32 - prefix);
        let host = match address {
            Some(a) => {
                let ip: Ipv4Addr = a
                    .parse()
                    .map_err(|_| invalid("address", "format", "not an IPv4 address"))?;
                let off = u64::from(u32::from(ip).wrapping_sub(net));
                if off < 2 || off >= size.saturating_sub(1) {
                    return Err(invalid(
                        "address",
                        "constraint",
                        "the address is not usable in the private network",
                    ));
                }
                if used.contains(&ip.to_string()) {
                    return Err(already_exists("ip", &ip.to_string(), "this address is already booked"));
                }
                ip
            }
            None => (2..size.saturating_sub(1))
                .map(|off| Ipv4Addr::from(net.wrapping_add(off as u32)))
                .find(|ip| !used.contains(&ip.to_string()))
                .ok_or_else(|| invalid("source", "constraint", "the private network has no free address left"))?,
        };
        format!("{host}/{prefix}")
    };
    let id = w.new_id();
    w.ipam_ips.push(IpamIp {
        id: id.clone(),
        region: pn.region.clone(),
        project_id: project_id.to_string(),
        address: cidr,
        is_ipv6,
        subnet_id: subnet.id.clone(),
        pn_id: pn.id.clone(),
        vpc_id: pn.vpc_id.clone(),
        tags,
        reverses: Vec::new(),
        created_at: ctx.now,
        updated_at: ctx.now,
        resource,
    });
    Ok(id)
}

/// Releases the IPs in `auto` and detaches any other IP from `resource_id`.
pub fn release_for(w: &mut World, resource_id: &str, auto: &[String]) {
    w.ipam_ips.retain(|ip| !auto.contains(&ip.id));
    for ip in &mut w.ipam_ips {
        if ip.resource.as_ref().is_some_and(|r| r.id == resource_id) {
            ip.resource = None;
        }
    }
}

pub fn route(w: &mut World, ctx: &mut Ctx, region: &str, r: &Req) -> ApiResult {
    let rest: Vec<&str> = r.rest.iter().map(String::as_str).collect();
    match (r.method, rest.as_slice()) {
        ("POST", ["ips"]) => create(w, ctx, region, r),
        ("GET", ["ips"]) => list(w, ctx, region, r),
        ("GET", ["ips", id]) => {
            let i = index(w, region, id)?;
            Ok(Reply::ok(w.ipam_ips[i].json(w)))
        }
        ("PATCH", ["ips", id]) => {
            let i = index(w, region, id)?;
            let b = Body(r.body);
            let tags = b.strs("tags")?;
            let reverses = match r.body.get("reverses") {
                Some(Value::Array(a)) => Some(a.clone()),
                _ => None,
            };
            let ip = &mut w.ipam_ips[i];
            if let Some(t) = tags {
                ip.tags = t;
            }
            if let Some(rv) = reverses {
                ip.reverses = rv;
            }
            ip.updated_at = ctx.now;
            Ok(Reply::ok(w.ipam_ips[i].json(w)))
        }
        ("DELETE", ["ips", id]) => {
            let i = index(w, region, id)?;
            if let Some(res) = &w.ipam_ips[i].resource {
                return Err(precondition(
                    "resource_still_in_use",
                    &format!("the IP is attached to {} {}", res.kind, res.id),
                ));
            }
            w.ipam_ips.remove(i);
            Ok(Reply::no_content())
        }
        _ => Err(bare(404, "Not Found")),
    }
}

fn index(w: &mut World, region: &str, id: &str) -> Result<usize, Reply> {
    if !crate::util::is_uuid(id) {
        return Err(invalid("ip_id", "format", &format!("{id:?} is not a UUID")));
    }
    if w.hidden_read(id) {
        return Err(not_found("ip", id));
    }
    w.ipam_ips
        .iter()
        .position(|ip| ip.id == id && ip.region == region)
        .ok_or_else(|| not_found("ip", id))
}

fn create(w: &mut World, ctx: &Ctx, region: &str, r: &Req) -> ApiResult {
    let b = Body(r.body);
    let project_id = b.required_uuid("project_id")?;
    let is_ipv6 = b.bool("is_ipv6")?.unwrap_or(false);
    let address = b.str("address")?;
    let tags = b.strs("tags")?.unwrap_or_default();
    let source = b
        .object("source")?
        .ok_or_else(|| invalid("source", "required", "field is required"))?;
    let sb = Body(source);
    let pn = if let Some(pn_id) = sb.uuid("private_network_id")? {
        w.pns
            .iter()
            .find(|p| p.id == pn_id && p.region == region)
            .cloned()
            .ok_or_else(|| not_found("private_network", &pn_id))?
    } else if let Some(subnet_id) = sb.uuid("subnet_id")? {
        w.pns
            .iter()
            .find(|p| p.region == region && p.subnets.iter().any(|s| s.id == subnet_id))
            .cloned()
            .ok_or_else(|| not_found("subnet", &subnet_id))?
    } else {
        return Err(invalid(
            "source",
            "constraint",
            "a private_network_id or subnet_id source is required",
        ));
    };
    if let Some(a) = &address
        && a.contains('/')
    {
        return Err(invalid("address", "format", "give the address without a mask"));
    }
    let id = book(w, ctx, &pn, is_ipv6, address.as_deref(), &project_id, tags, None)?;
    let ip = w
        .ipam_ips
        .iter()
        .find(|ip| ip.id == id)
        .map(|ip| ip.json(w))
        .unwrap_or(Value::Null);
    Ok(Reply::ok(ip))
}

fn list(w: &mut World, ctx: &Ctx, region: &str, r: &Req) -> ApiResult {
    let q = r.query;
    let order = q.order_by(
        &[
            "created_at_desc",
            "created_at_asc",
            "updated_at_desc",
            "updated_at_asc",
            "attached_desc",
            "attached_asc",
            "ip_address_desc",
            "ip_address_asc",
            "mac_address_desc",
            "mac_address_asc",
        ],
        "created_at_desc",
    )?;
    let project = q.uuid("project_id")?;
    let pn = q.uuid("private_network_id")?;
    let subnet = q.uuid("subnet_id")?;
    let vpc = q.uuid("vpc_id")?.or(q.uuid("source_vpc_id")?);
    let mut resource_ids = q.uuids("resource_ids")?;
    if let Some(id) = q.uuid("resource_id")? {
        resource_ids.push(id);
    }
    let mut resource_types = q.all("resource_types");
    if let Some(t) = q.text("resource_type") {
        resource_types.push(t);
    }
    let resource_name = q.text("resource_name");
    let mac = q.text("mac_address");
    let tags = q.all("tags");
    let is_ipv6 = q.bool("is_ipv6")?;
    let attached = q.bool("attached")?;
    let ip_ids = q.uuids("ip_ids")?;
    q.paging()?;
    let mut items: Vec<Value> = w
        .ipam_ips
        .iter()
        .filter(|ip| ip.region == region)
        .filter(|ip| project.as_ref().is_none_or(|p| &ip.project_id == p))
        .filter(|ip| pn.as_ref().is_none_or(|p| &ip.pn_id == p))
        .filter(|ip| subnet.as_ref().is_none_or(|s| &ip.subnet_id == s))
        .filter(|ip| vpc.as_ref().is_none_or(|v| &ip.vpc_id == v))
        .filter(|ip| resource_ids.is_empty() || ip.resource.as_ref().is_some_and(|r| resource_ids.contains(&r.id)))
        .filter(|ip| {
            resource_types.is_empty() || ip.resource.as_ref().is_some_and(|r| resource_types.contains(&r.kind))
        })
        .filter(|ip| {
            resource_name
                .as_ref()
                .is_none_or(|n| ip.resource.as_ref().is_some_and(|r| r.name.as_ref() == Some(n)))
        })
        .filter(|ip| {
            mac.as_ref().is_none_or(|m| {
                ip.resource
                    .as_ref()
                    .is_some_and(|r| r.mac_address.as_ref().is_some_and(|x| x.eq_ignore_ascii_case(m)))
            })
        })
        .filter(|ip| tags_match(&ip.tags, &tags))
        .filter(|ip| is_ipv6.is_none_or(|v| ip.is_ipv6 == v))
        .filter(|ip| attached.is_none_or(|a| ip.resource.is_some() == a))
        .filter(|ip| ip_ids.is_empty() || ip_ids.contains(&ip.id))
        .map(|ip| ip.json(w))
        .collect();
    items = w.filter_hidden(items);
    sort_items(&mut items, &order);
    page_of(items, q, "ips", ctx.total_count_delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        assert_eq!(
            parse_v4_cidr("172.16.4.0/22"),
            Some((u32::from(Ipv4Addr::new(172, 16, 4, 0)), 22))
        );
        assert_eq!(
            parse_v4_cidr("172.16.5.9/22").map(|x| x.0),
            Some(u32::from(Ipv4Addr::new(172, 16, 4, 0)))
        );
        assert!(parse_v4_cidr("172.16.4.0").is_none());
        assert!(parse_v6_cidr("fd64:badd:7710:7fba::/64").is_some());
    }
}
