//! Elastic Metal ↔ Private Network v3 (reference §8):
//! `/baremetal/v3/zones/{zone}`.

use serde_json::{Value, json};

use crate::errors::{ApiResult, Reply, bare, em_not_found, invalid, not_found, transient};
use crate::input::{Body, page_of, sort_items};
use crate::ipam::{self, Resource};
use crate::router::Req;
use crate::world::{Action, Ctx, World, region_of};

/// Nominal seconds: `attaching` → `attached`, `detaching` → gone.
pub const ATTACH_SECONDS: f64 = 15.0;
pub const DETACH_SECONDS: f64 = 10.0;

#[derive(Debug, Clone)]
pub struct Spn {
    pub id: String,
    pub zone: String,
    pub project_id: String,
    pub server_id: String,
    pub private_network_id: String,
    pub vlan: u64,
    pub status: String,
    pub created_at: f64,
    pub updated_at: f64,
    pub ipam_ip_ids: Vec<String>,
    /// IPs booked by the mapping itself (released with it).
    pub auto_ips: Vec<String>,
}

impl Spn {
    pub fn json(&self, w: &World) -> Value {
        json!({
            "created_at": w.stamp(self.created_at),
            "id": self.id,
            "ipam_ip_ids": self.ipam_ip_ids,
            "private_network_id": self.private_network_id,
            "project_id": self.project_id,
            "server_id": self.server_id,
            "status": self.status,
            "updated_at": w.stamp(self.updated_at),
            "vlan": self.vlan,
        })
    }
}

pub fn route(w: &mut World, ctx: &mut Ctx, zone: &str, r: &Req) -> ApiResult {
    let rest: Vec<&str> = r.rest.iter().map(String::as_str).collect();
    match (r.method, rest.as_slice()) {
        ("GET", ["server-private-networks"]) => list(w, ctx, zone, r),
        ("PUT", ["servers", sid, "private-networks"]) => set_all(w, ctx, zone, sid, r),
        ("POST", ["servers", sid, "private-networks"]) => add_one(w, ctx, zone, sid, r),
        ("DELETE", ["servers", sid, "private-networks", pn]) => delete(w, ctx, zone, sid, pn),
        _ => Err(bare(404, "Not Found")),
    }
}

fn server_ready(w: &World, zone: &str, sid: &str) -> Result<usize, Reply> {
    if !crate::util::is_uuid(sid) {
        return Err(invalid("server_id", "format", &format!("{sid:?} is not a UUID")));
    }
    let i = w
        .servers
        .iter()
        .position(|s| s.id == sid && s.zone == zone)
        .ok_or_else(em_not_found)?;
    let srv = &w.servers[i];
    if matches!(
        srv.status.as_str(),
        "ordered" | "delivering" | "deleting" | "stopping" | "starting"
    ) {
        return Err(transient("server", sid, &srv.status));
    }
    let has_option = srv.options.iter().any(|o| o.base.get("private_network").is_some());
    if !has_option {
        return Err(invalid(
            "server_id",
            "constraint",
            "the Private Network option must be added to the server before it joins a private network",
        ));
    }
    Ok(i)
}

/// Creates a mapping of server `si` to `pn_id` with the given IPAM IPs (or
/// fresh IPv4 and IPv6 ones when empty).
fn attach(w: &mut World, ctx: &Ctx, zone: &str, si: usize, pn_id: &str, ipam_ids: &[String]) -> Result<String, Reply> {
    let region = region_of(zone);
    let pn = w
        .pns
        .iter()
        .find(|p| p.id == pn_id && p.region == region)
        .cloned()
        .ok_or_else(|| not_found("private_network", pn_id))?;
    for id in ipam_ids {
        let ip = w
            .ipam_ips
            .iter()
            .find(|x| &x.id == id)
            .ok_or_else(|| not_found("ip", id))?;
        if ip.pn_id != pn.id {
            return Err(invalid(
                "ipam_ip_ids",
                "constraint",
                &format!("IP {id} is not in private network {pn_id}"),
            ));
        }
        if ip.resource.is_some() {
            return Err(invalid(
                "ipam_ip_ids",
                "constraint",
                &format!("IP {id} is already attached"),
            ));
        }
    }
    let id = w.new_id();
    let srv = w.servers[si].clone();
    let resource = Resource {
        kind: "baremetal_private_nic".into(),
        id: id.clone(),
        mac_address: Some(srv.private_mac.clone()),
        name: Some(srv.name.clone()),
    };
    let (ipam_ip_ids, auto_ips) = if ipam_ids.is_empty() {
        let v4 = ipam::book(
            w,
            ctx,
            &pn,
            false,
            None,
            &srv.project_id,
            Vec::new(),
            Some(resource.clone()),
        )?;
        let v6 = ipam::book(w, ctx, &pn, true, None, &srv.project_id, Vec::new(), Some(resource))?;
        (vec![v4.clone(), v6.clone()], vec![v4, v6])
    } else {
        for ip in &mut w.ipam_ips {
            if ipam_ids.contains(&ip.id) {
                ip.resource = Some(resource.clone());
                ip.updated_at = ctx.now;
            }
        }
        (ipam_ids.to_vec(), Vec::new())
    };
    let vlan = w.rng.range(1000, 3999);
    w.spns.push(Spn {
        id: id.clone(),
        zone: zone.to_string(),
        project_id: srv.project_id,
        server_id: srv.id,
        private_network_id: pn.id,
        vlan,
        status: "attaching".into(),
        created_at: ctx.now,
        updated_at: ctx.now,
        ipam_ip_ids,
        auto_ips,
    });
    w.chain(
        ctx,
        &id,
        "status",
        vec![(ATTACH_SECONDS, Action::SpnStatus("attached".into()))],
    );
    Ok(id)
}

/// `detaching`: the IPs are released at once (`ipam_ip_ids` empties (recorded)).
fn start_detach(w: &mut World, ctx: &Ctx, id: &str) {
    let mut released = None;
    if let Some(m) = w.spns.iter_mut().find(|m| m.id == id) {
        m.status = "detaching".into();
        m.updated_at = ctx.now;
        m.ipam_ip_ids.clear();
        released = Some(std::mem::take(&mut m.auto_ips));
    }
    if let Some(auto) = released {
        ipam::release_for(w, id, &auto);
    }
    w.chain(ctx, id, "status", vec![(DETACH_SECONDS, Action::SpnRemove)]);
}

fn set_all(w: &mut World, ctx: &Ctx, zone: &str, sid: &str, r: &Req) -> ApiResult {
    let si = server_ready(w, zone, sid)?;
    let map = Body(r.body)
        .object("per_private_network_ipam_ip_ids")?
        .cloned()
        .unwrap_or(json!({}));
    let mut wanted: Vec<(String, Vec<String>)> = Vec::new();
    for (pn, ids) in map.as_object().into_iter().flatten() {
        if !crate::util::is_uuid(pn) {
            return Err(invalid(
                "per_private_network_ipam_ip_ids",
                "format",
                &format!("{pn:?} is not a UUID"),
            ));
        }
        let ids: Vec<String> = match ids {
            Value::Null => Vec::new(),
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_ascii_lowercase)
                .collect(),
            _ => {
                return Err(invalid(
                    "per_private_network_ipam_ip_ids",
                    "format",
                    "values must be arrays of UUIDs",
                ));
            }
        };
        wanted.push((pn.to_ascii_lowercase(), ids));
    }
    let current: Vec<(String, String, String)> = w
        .spns
        .iter()
        .filter(|m| m.server_id == sid)
        .map(|m| (m.id.clone(), m.private_network_id.clone(), m.status.clone()))
        .collect();
    for (pn, ids) in &wanted {
        let existing = current.iter().find(|(_, p, st)| p == pn && st != "detaching");
        if existing.is_none() {
            attach(w, ctx, zone, si, pn, ids)?;
        }
    }
    for (id, pn, status) in &current {
        if status != "detaching" && !wanted.iter().any(|(p, _)| p == pn) {
            start_detach(w, ctx, id);
        }
    }
    let items: Vec<Value> = w
        .spns
        .iter()
        .filter(|m| m.server_id == sid)
        .map(|m| m.json(w))
        .collect();
    Ok(Reply::ok(json!({ "server_private_networks": items })))
}

fn add_one(w: &mut World, ctx: &Ctx, zone: &str, sid: &str, r: &Req) -> ApiResult {
    let si = server_ready(w, zone, sid)?;
    let b = Body(r.body);
    let pn = b.required_uuid("private_network_id")?;
    let ids = b.uuids("ipam_ip_ids")?.unwrap_or_default();
    if w.spns
        .iter()
        .any(|m| m.server_id == sid && m.private_network_id == pn && m.status != "detaching")
    {
        return Err(invalid(
            "private_network_id",
            "constraint",
            "the server is already in this private network",
        ));
    }
    let id = attach(w, ctx, zone, si, &pn, &ids)?;
    let m = w
        .spns
        .iter()
        .find(|m| m.id == id)
        .map(|m| m.json(w))
        .unwrap_or(Value::Null);
    Ok(Reply::ok(m))
}

fn delete(w: &mut World, ctx: &Ctx, zone: &str, sid: &str, pn: &str) -> ApiResult {
    if !w.servers.iter().any(|s| s.id == sid && s.zone == zone) {
        return Err(em_not_found());
    }
    let Some(id) = w
        .spns
        .iter()
        .find(|m| m.server_id == sid && m.private_network_id == pn)
        .map(|m| (m.id.clone(), m.status.clone()))
    else {
        return Err(not_found("server_private_network", pn));
    };
    if id.1 == "attaching" {
        return Err(transient("server_private_network", &id.0, "attaching"));
    }
    if id.1 != "detaching" {
        start_detach(w, ctx, &id.0);
    }
    Ok(Reply::no_content())
}

fn list(w: &mut World, ctx: &Ctx, zone: &str, r: &Req) -> ApiResult {
    let q = r.query;
    let order = q.order_by(
        &["created_at_asc", "created_at_desc", "updated_at_asc", "updated_at_desc"],
        "created_at_asc",
    )?;
    let server = q.uuid("server_id")?;
    let pn = q.uuid("private_network_id")?;
    let project = q.uuid("project_id")?;
    let org = q.uuid("organization_id")?;
    let ipam_ids = q.uuids("ipam_ip_ids")?;
    q.paging()?;
    let mut items: Vec<Value> = w
        .spns
        .iter()
        .filter(|m| m.zone == zone)
        .filter(|m| server.as_ref().is_none_or(|s| &m.server_id == s))
        .filter(|m| pn.as_ref().is_none_or(|p| &m.private_network_id == p))
        .filter(|m| project.as_ref().is_none_or(|p| &m.project_id == p))
        .filter(|m| org.as_ref().is_none_or(|o| &m.project_id == o))
        .filter(|m| ipam_ids.is_empty() || m.ipam_ip_ids.iter().any(|i| ipam_ids.contains(i)))
        .map(|m| m.json(w))
        .collect();
    items = w.filter_hidden(items);
    sort_items(&mut items, &order);
    page_of(items, q, "server_private_networks", ctx.total_count_delta)
}

pub fn apply_status(w: &mut World, id: &str, at: f64, status: String) {
    if let Some(m) = w.spns.iter_mut().find(|m| m.id == id) {
        m.status = status;
        m.updated_at = at;
    }
}

/// Removes a mapping: its own IPs are released, the others freed.
pub fn remove(w: &mut World, id: &str) {
    w.cancel(id, None);
    if let Some(i) = w.spns.iter().position(|m| m.id == id) {
        let m = w.spns.remove(i);
        ipam::release_for(w, &m.id, &m.auto_ips);
    }
}

/// Called when a server is deleted: its mappings start detaching.
pub fn server_deleted(w: &mut World, ctx: &Ctx, server_id: &str) {
    let plain = Ctx::new(ctx.now);
    let ids: Vec<String> = w
        .spns
        .iter()
        .filter(|m| m.server_id == server_id && m.status != "detaching")
        .map(|m| m.id.clone())
        .collect();
    for id in ids {
        start_detach(w, &plain, &id);
    }
}
