//! Flexible IP v1alpha1 (reference §6): `/flexible-ip/v1alpha1/zones/{zone}`.

use serde_json::{Value, json};

use crate::errors::{ApiResult, Reply, fip_denied, invalid, not_found, transient};
use crate::input::{Body, page_of, sort_items, tags_match};
use crate::router::Req;
use crate::world::{Action, Ctx, World};

mod attach;
mod mac;

pub use attach::{apply_set, server_deleted};
use attach::{attach, detach};
use mac::{mac_delete, mac_duplicate, mac_generate, mac_move};

/// Nominal seconds: attach (`updating` → `attached`), detach, delete of an
/// attached FIP, and the detach that follows a server deletion.
pub const ATTACH_SECONDS: f64 = 5.0;

pub const DETACH_SECONDS: f64 = 5.0;

pub const DELETE_DETACH_SECONDS: f64 = 5.0;

pub const SERVER_GONE_DETACH_SECONDS: f64 = 10.0;

#[derive(Debug, Clone)]
pub struct Mac {
    pub id: String,
    pub mac_address: String,
    pub mac_type: String,
    pub status: String,
    pub created_at: f64,
    pub updated_at: f64,
}

/// What a FIP step does to the MAC.
#[derive(Debug, Clone, PartialEq)]
pub enum MacOp {
    Keep,
    Status(String),
    Remove,
}

#[derive(Debug, Clone)]
pub struct Fip {
    pub id: String,
    pub zone: String,
    pub project_id: String,
    pub organization_id: String,
    pub description: String,
    pub tags: Vec<String>,
    pub created_at: f64,
    pub updated_at: f64,
    pub status: String,
    pub ip_address: String,
    pub reverse: String,
    pub server_id: Option<String>,
    pub mac: Option<Mac>,
    pub is_ipv6: bool,
}

impl Fip {
    pub fn json(&self, w: &World) -> Value {
        let mac = self.mac.as_ref().map(|m| {
            json!({
                "id": m.id,
                "mac_address": m.mac_address,
                "mac_type": m.mac_type,
                "status": m.status,
                "created_at": w.stamp(m.created_at),
                "updated_at": w.stamp(m.updated_at),
                "zone": self.zone,
            })
        });
        json!({
            "created_at": w.stamp(self.created_at),
            "description": self.description,
            "id": self.id,
            "ip_address": self.ip_address,
            "mac_address": mac,
            "organization_id": self.organization_id,
            "project_id": self.project_id,
            "reverse": self.reverse,
            "server_id": self.server_id,
            "status": self.status,
            "tags": self.tags,
            "updated_at": w.stamp(self.updated_at),
            "zone": self.zone,
        })
    }

    fn transient(&self) -> bool {
        matches!(self.status.as_str(), "updating" | "detaching")
    }
}

fn zone_prefix(zone: &str) -> (&'static str, u64) {
    match zone {
        "fr-par-1" => ("195.154", 128),
        "fr-par-2" => ("62.210", 16),
        "nl-ams-1" => ("51.159", 224),
        "nl-ams-2" => ("51.158", 96),
        "pl-waw-2" => ("151.115", 32),
        _ => ("151.115", 96),
    }
}

fn new_address(w: &mut World, zone: &str, v6: bool) -> (String, String) {
    if v6 {
        let n = w.counter(&format!("fip6:{zone}"));
        let site = match zone {
            "fr-par-1" => "702",
            "fr-par-2" => "1202",
            "nl-ams-1" => "1601",
            "nl-ams-2" => "1602",
            "pl-waw-2" => "2402",
            _ => "2403",
        };
        let addr = format!("2001:bc8:{site}:{:x}::", 0x600 + n);
        let reverse = format!("{}.rev.poneytelecom.eu.", addr.replace(':', "-"));
        (format!("{addr}/64"), reverse)
    } else {
        let n = w.counter(&format!("fip4:{zone}"));
        let (prefix, third) = zone_prefix(zone);
        let addr = format!("{prefix}.{}.{}", third + n / 250, 2 + n % 250);
        let reverse = format!("{}.rev.poneytelecom.eu.", addr.replace('.', "-"));
        (addr, reverse)
    }
}

fn find(w: &World, zone: &str, id: &str) -> Option<usize> {
    w.fips.iter().position(|f| f.id == id && f.zone == zone)
}

/// The FIP at `id` in `zone`, or the 403 the API gives for unknown ones.
fn get_index(w: &mut World, zone: &str, id: &str, action: &str) -> Result<usize, Reply> {
    if !crate::util::is_uuid(id) {
        return Err(invalid("fip_id", "format", &format!("{id:?} is not a UUID")));
    }
    if w.hidden_read(id) {
        return Err(fip_denied(action));
    }
    find(w, zone, id).ok_or_else(|| fip_denied(action))
}

/// The MAC endpoints answer a 404 for an unknown FIP (recorded).
fn mac_index(w: &World, zone: &str, id: &str) -> Result<usize, Reply> {
    find(w, zone, id).ok_or_else(|| not_found("flexible_ips", id))
}

/// Checks that `server_id` is an EM server in `zone`: 404 if unknown, 400 if
/// it lives in another zone.
fn check_server(w: &World, zone: &str, server_id: &str) -> Result<(), Reply> {
    match w.servers.iter().find(|s| s.id == server_id) {
        None => Err(not_found("server", server_id)),
        Some(s) if s.zone != zone => Err(invalid(
            "server_id",
            "constraint",
            &format!(
                "server {server_id} is in zone {}, flexible IPs of zone {zone} cannot be attached to it",
                s.zone
            ),
        )),
        Some(s) if s.status == "deleting" => Err(transient("server", server_id, "deleting")),
        Some(_) => Ok(()),
    }
}

pub fn route(w: &mut World, ctx: &mut Ctx, zone: &str, r: &Req) -> ApiResult {
    let rest: Vec<&str> = r.rest.iter().map(String::as_str).collect();
    match (r.method, rest.as_slice()) {
        ("POST", ["fips"]) => create(w, ctx, zone, r),
        ("GET", ["fips"]) => list(w, ctx, zone, r),
        ("POST", ["fips", "attach"]) => attach(w, ctx, zone, r),
        ("POST", ["fips", "detach"]) => detach(w, ctx, zone, r),
        ("GET", ["fips", id]) => {
            let i = get_index(w, zone, id, "read")?;
            Ok(Reply::ok(w.fips[i].json(w)))
        }
        ("PATCH", ["fips", id]) => patch(w, ctx, zone, id, r),
        ("DELETE", ["fips", id]) => delete(w, ctx, zone, id),
        ("POST", ["fips", id, "mac"]) => mac_generate(w, ctx, zone, id, r),
        ("DELETE", ["fips", id, "mac"]) => mac_delete(w, ctx, zone, id),
        ("POST", ["fips", id, "mac", "duplicate"]) => mac_duplicate(w, ctx, zone, id, r),
        ("POST", ["fips", id, "mac", "move"]) => mac_move(w, ctx, zone, id, r),
        (_, ["fips"]) | (_, ["fips", _]) | (_, ["fips", _, "mac"]) | (_, ["fips", _, "mac", _]) => {
            Err(crate::errors::bare(405, "Method Not Allowed"))
        }
        _ => Err(crate::errors::bare(404, "Not Found")),
    }
}

fn create(w: &mut World, ctx: &mut Ctx, zone: &str, r: &Req) -> ApiResult {
    let b = Body(r.body);
    let project_id = b.required_uuid("project_id")?;
    let description = b.str_max("description", 255)?.unwrap_or_default();
    let tags = b.strs("tags")?.unwrap_or_default();
    let server_id = b.uuid("server_id")?;
    let reverse = b.str("reverse")?;
    let is_ipv6 = b.bool("is_ipv6")?.unwrap_or(false);
    if let Some(s) = &server_id {
        check_server(w, zone, s)?;
    }
    let now = ctx.now;
    let recycled = if ctx.recycle_fip {
        w.fip_graveyard
            .iter()
            .rposition(|f| f.zone == zone && f.is_ipv6 == is_ipv6)
            .map(|i| w.fip_graveyard.remove(i))
    } else {
        None
    };
    let (id, ip_address, default_reverse, created_at) = match recycled {
        Some(old) => (old.id, old.ip_address, old.reverse, old.created_at),
        None => {
            let (ip, rev) = new_address(w, zone, is_ipv6);
            (w.new_id(), ip, rev, now)
        }
    };
    let fip = Fip {
        id: id.clone(),
        zone: zone.to_string(),
        organization_id: project_id.clone(),
        project_id,
        description,
        tags,
        created_at,
        updated_at: now,
        status: if server_id.is_some() {
            "updating".into()
        } else {
            "ready".into()
        },
        ip_address,
        reverse: reverse.unwrap_or(default_reverse),
        server_id: None,
        mac: None,
        is_ipv6,
    };
    w.fips.push(fip);
    if let Some(s) = server_id {
        w.chain(
            ctx,
            &id,
            "status",
            vec![(
                ATTACH_SECONDS,
                Action::FipSet {
                    status: "attached".into(),
                    server: Some(Some(s)),
                    mac: MacOp::Keep,
                },
            )],
        );
    }
    let i = w.fips.len() - 1;
    Ok(Reply::ok(w.fips[i].json(w)))
}

fn list(w: &mut World, ctx: &Ctx, zone: &str, r: &Req) -> ApiResult {
    let q = r.query;
    let order = q.order_by(&["created_at_asc", "created_at_desc"], "created_at_asc")?;
    let tags = q.all("tags");
    let statuses = q.all("status");
    let server_ids = q.uuids("server_ids")?;
    let project = q.uuid("project_id")?;
    let org = q.uuid("organization_id")?;
    q.paging()?;
    let mut items: Vec<Value> = w
        .fips
        .iter()
        .filter(|f| f.zone == zone)
        .filter(|f| tags_match(&f.tags, &tags))
        .filter(|f| statuses.is_empty() || statuses.contains(&f.status))
        .filter(|f| server_ids.is_empty() || f.server_id.as_ref().is_some_and(|s| server_ids.contains(s)))
        .filter(|f| project.as_ref().is_none_or(|p| &f.project_id == p))
        .filter(|f| org.as_ref().is_none_or(|o| &f.organization_id == o))
        .map(|f| f.json(w))
        .collect();
    items = w.filter_hidden(items);
    sort_items(&mut items, &order);
    page_of(items, q, "flexible_ips", ctx.total_count_delta)
}

fn patch(w: &mut World, ctx: &Ctx, zone: &str, id: &str, r: &Req) -> ApiResult {
    let i = get_index(w, zone, id, "read")?;
    let b = Body(r.body);
    let description = b.str_max("description", 255)?;
    let tags = b.strs("tags")?;
    let reverse = b.str("reverse")?;
    let f = &mut w.fips[i];
    if let Some(d) = description {
        f.description = d;
    }
    if let Some(t) = tags {
        f.tags = t;
    }
    if let Some(rv) = reverse {
        f.reverse = rv;
    }
    f.updated_at = ctx.now;
    Ok(Reply::ok(w.fips[i].json(w)))
}

fn delete(w: &mut World, ctx: &Ctx, zone: &str, id: &str) -> ApiResult {
    let i = get_index(w, zone, id, "read")?;
    if w.fips[i].transient() {
        return Err(transient("flexible_ip", id, &w.fips[i].status.clone()));
    }
    if w.fips[i].status == "attached" {
        w.fips[i].status = "detaching".into();
        w.fips[i].updated_at = ctx.now;
        w.chain(ctx, id, "status", vec![(DELETE_DETACH_SECONDS, Action::FipRemove)]);
    } else {
        remove(w, id);
    }
    Ok(Reply::no_content())
}

/// Removes a FIP for good (it goes to the graveyard, for recycling).
pub fn remove(w: &mut World, id: &str) {
    w.cancel(id, None);
    if let Some(i) = w.fips.iter().position(|f| f.id == id) {
        let mut f = w.fips.remove(i);
        f.server_id = None;
        f.mac = None;
        f.status = "ready".into();
        w.fip_graveyard.push(f);
    }
}
