//! Elastic Metal v1 (reference §7): `/baremetal/v1/zones/{zone}`: the offer,
//! OS and option catalogues, and servers with their time-driven statuses.

use serde_json::{Map, Value, json};

use crate::errors::{ApiResult, Reply, bare, em_not_found, invalid, out_of_stock, precondition, transient};
use crate::input::{Body, page_of, sort_items, tags_match};
use crate::router::Req;
use crate::world::{Action, Ctx, World};

/// Nominal seconds of the server state machine (observed (recorded)).
pub const ORDERED_SECONDS: f64 = 5.0;
pub const DELIVERING_SECONDS: f64 = 2.0;
pub const TO_INSTALL_SECONDS: f64 = 25.0;
pub const INSTALLING_SECONDS: f64 = 330.0;
pub const REINSTALL_START_SECONDS: f64 = 20.0;
pub const STOP_SECONDS: f64 = 15.0;
pub const START_SECONDS: f64 = 15.0;
pub const REBOOT_STOPPING_SECONDS: f64 = 8.0;
pub const DELETE_SECONDS: f64 = 5.0;
pub const OPTION_SECONDS: f64 = 10.0;

const TRANSIENT: [&str; 7] = [
    "ordered",
    "delivering",
    "stopping",
    "starting",
    "deleting",
    "resetting",
    "migrating",
];

/// The fixed catalogue: real offers and OSes (ids are global, the zone is
/// filled in per request), each offer with an hourly and a monthly twin.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    pub offers: Vec<Value>,
    pub os: Vec<Value>,
    /// Options, as `GET /options` lists them.
    pub options: Vec<Value>,
}

const OPTION_META: [&str; 5] = ["enabled", "os_id", "price", "subscription_period", "id"];

impl Catalogue {
    pub fn load() -> Self {
        let raw: Value = serde_json::from_str(include_str!("catalogue.json")).unwrap_or(Value::Null);
        let hourly: Vec<Value> = raw.get("offers").and_then(Value::as_array).cloned().unwrap_or_default();
        let os: Vec<Value> = raw.get("os").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut offers = Vec::new();
        for h in &hourly {
            offers.push(h.clone());
            let mut m = h.clone();
            if let Some(obj) = m.as_object_mut() {
                let monthly_id = obj.get("monthly_offer_id").cloned().unwrap_or(Value::Null);
                let hour = obj.get("price_per_hour").cloned().unwrap_or(Value::Null);
                let nanos_total = hour.get("units").and_then(Value::as_u64).unwrap_or(0) * 1_000_000_000
                    + hour.get("nanos").and_then(Value::as_u64).unwrap_or(0);
                // About 730 hours a month, at a monthly discount.
                let month = nanos_total * 600;
                obj.insert("id".into(), monthly_id);
                obj.insert("monthly_offer_id".into(), Value::Null);
                obj.insert("subscription_period".into(), json!("monthly"));
                obj.insert("price_per_hour".into(), Value::Null);
                obj.insert(
                    "price_per_month".into(),
                    json!({"currency_code": "EUR", "units": month / 1_000_000_000, "nanos": month % 1_000_000_000}),
                );
                if let Some(opts) = obj.get_mut("options").and_then(Value::as_array_mut) {
                    for o in opts {
                        o["subscription_period"] = json!("monthly");
                    }
                }
            }
            offers.push(m);
        }
        let mut options: Vec<Value> = Vec::new();
        for h in &hourly {
            for o in h.get("options").and_then(Value::as_array).into_iter().flatten() {
                let id = o.get("id").cloned().unwrap_or(Value::Null);
                if options.iter().any(|x| x.get("id") == Some(&id)) {
                    continue;
                }
                let mut m = Map::new();
                m.insert("id".into(), id);
                if let Some(obj) = o.as_object() {
                    for (k, v) in obj {
                        if !OPTION_META.contains(&k.as_str()) && k != "id" {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                }
                options.push(Value::Object(m));
            }
        }
        options.sort_by_key(|o| o.get("id").and_then(Value::as_str).unwrap_or("").to_string());
        Catalogue { offers, os, options }
    }

    pub fn offer(&self, id: &str) -> Option<&Value> {
        self.offers
            .iter()
            .find(|o| o.get("id").and_then(Value::as_str) == Some(id))
    }

    pub fn offer_by_name(&self, name: &str) -> Vec<&Value> {
        self.offers
            .iter()
            .filter(|o| o.get("name").and_then(Value::as_str) == Some(name))
            .collect()
    }

    pub fn os(&self, id: &str) -> Option<&Value> {
        self.os.iter().find(|o| o.get("id").and_then(Value::as_str) == Some(id))
    }

    pub fn option(&self, id: &str) -> Option<&Value> {
        self.options
            .iter()
            .find(|o| o.get("id").and_then(Value::as_str) == Some(id))
    }
}

fn s(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("").to_string()
}

/// The stock of an offer in a zone (overrides from the control API first).
pub fn stock_of(w: &World, zone: &str, offer: &Value) -> String {
    let id = s(offer, "id");
    w.stock
        .get(&(zone.to_string(), id))
        .cloned()
        .unwrap_or_else(|| s(offer, "stock"))
}

fn offer_json(w: &World, zone: &str, offer: &Value) -> Value {
    let mut o = offer.clone();
    o["zone"] = json!(zone);
    o["stock"] = json!(stock_of(w, zone, offer));
    o
}

fn with_zone(v: &Value, zone: &str) -> Value {
    let mut o = v.clone();
    o["zone"] = json!(zone);
    o
}

/// A default partitioning schema for an offer's disks (RAID 1 over the
/// first two disks when there are two or more).
pub fn partitioning_schema(offer: &Value) -> Value {
    const UEFI: u64 = 536_870_912;
    const SWAP: u64 = 4_294_967_296;
    const BOOT: u64 = 536_870_912;
    let disks: Vec<(String, u64)> = offer
        .get("disks")
        .and_then(Value::as_array)
        .map(|d| {
            d.iter()
                .map(|x| (s(x, "type"), x.get("capacity").and_then(Value::as_u64).unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    let dev = |i: usize, kind: &str| -> (String, String) {
        if kind.eq_ignore_ascii_case("nvme") {
            (format!("/dev/nvme{i}n1"), format!("/dev/nvme{i}n1p"))
        } else {
            let letter = (b'a' + (i as u8 % 26)) as char;
            (format!("/dev/sd{letter}"), format!("/dev/sd{letter}"))
        }
    };
    let part = |label: &str, number: u64, size: u64| json!({"label": label, "number": number, "size": size, "use_all_available_space": false});
    if disks.len() >= 2 {
        let (d0, p0) = dev(0, &disks[0].0);
        let (d1, p1) = dev(1, &disks[1].0);
        let cap = disks[0].1.min(disks[1].1);
        let root = cap.saturating_sub(UEFI + SWAP + BOOT + 1_400_832);
        json!({
            "disks": [
                {"device": d0, "partitions": [part("uefi", 1, UEFI), part("swap", 2, SWAP), part("boot", 3, BOOT), part("root", 4, root)]},
                {"device": d1, "partitions": [part("swap", 1, SWAP), part("boot", 2, BOOT), part("root", 3, root)]},
            ],
            "filesystems": [
                {"device": format!("{p0}1"), "format": "fat32", "mountpoint": "/boot/efi"},
                {"device": "/dev/md0", "format": "ext4", "mountpoint": "/boot"},
                {"device": "/dev/md1", "format": "ext4", "mountpoint": "/"},
            ],
            "raids": [
                {"devices": [format!("{p0}3"), format!("{p1}2")], "level": "raid_level_1", "name": "/dev/md0"},
                {"devices": [format!("{p0}4"), format!("{p1}3")], "level": "raid_level_1", "name": "/dev/md1"},
            ],
            "zfs": {"pools": []},
        })
    } else {
        let (kind, cap) = disks.first().cloned().unwrap_or_else(|| ("SSD".into(), 0));
        let (d0, p0) = dev(0, &kind);
        let root = cap.saturating_sub(UEFI + SWAP + BOOT + 1_400_832);
        json!({
            "disks": [{"device": d0, "partitions": [part("uefi", 1, UEFI), part("swap", 2, SWAP), part("boot", 3, BOOT), part("root", 4, root)]}],
            "filesystems": [
                {"device": format!("{p0}1"), "format": "fat32", "mountpoint": "/boot/efi"},
                {"device": format!("{p0}3"), "format": "ext4", "mountpoint": "/boot"},
                {"device": format!("{p0}4"), "format": "ext4", "mountpoint": "/"},
            ],
            "raids": [],
            "zfs": {"pools": []},
        })
    }
}

#[derive(Debug, Clone)]
pub struct Install {
    pub os_id: String,
    pub hostname: String,
    pub ssh_key_ids: Vec<String>,
    pub status: String,
    pub user: String,
    pub service_user: String,
    pub partitioning_schema: Value,
}

#[derive(Debug, Clone)]
pub struct ServerOption {
    /// `{id, name, manageable, <kind>: {...}}` from the catalogue.
    pub base: Value,
    pub status: String,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub id: String,
    pub zone: String,
    pub project_id: String,
    pub organization_id: String,
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub created_at: f64,
    pub updated_at: f64,
    pub status: String,
    pub offer_id: String,
    pub offer_name: String,
    pub install: Option<Install>,
    pub options: Vec<ServerOption>,
    pub protected: bool,
    pub user_data: Option<String>,
    /// The API omits `protected` and `user_data` for servers created
    /// without either of them (recorded); set once one is given.
    pub show_protected: bool,
    pub boot_type: String,
    /// Set once an installation started: domain, reverse DNS and ping.
    pub provisioned: bool,
    pub installed: bool,
    pub ipv4: (String, String),
    pub ipv6: (String, String),
    /// MAC address of the private NIC (IPAM resources).
    pub private_mac: String,
}

impl Server {
    pub fn domain(&self) -> String {
        format!("{}.{}.baremetal.scw.cloud", self.id, self.zone)
    }

    /// The JSON object; `fresh` is the answer to the create call, whose
    /// `ips` are still empty (recorded).
    pub fn json(&self, w: &World, fresh: bool) -> Value {
        let domain = if self.provisioned { self.domain() } else { String::new() };
        let reverse_status = match (self.provisioned, self.installed) {
            (false, _) => "unknown",
            (true, false) => "pending",
            (true, true) => "active",
        };
        let ip = |(id, addr): &(String, String), version: &str| {
            json!({
                "address": addr,
                "id": id,
                "reverse": domain,
                "reverse_status": reverse_status,
                "reverse_status_message": "",
                "version": version,
            })
        };
        let ips = if fresh {
            json!([])
        } else {
            json!([ip(&self.ipv4, "IPv4"), ip(&self.ipv6, "IPv6")])
        };
        let install = self.install.as_ref().map(|i| {
            json!({
                "hostname": i.hostname,
                "os_id": i.os_id,
                "partitioning_schema": i.partitioning_schema,
                "service_url": "",
                "service_user": i.service_user,
                "ssh_key_ids": i.ssh_key_ids,
                "status": i.status,
                "user": i.user,
            })
        });
        let options: Vec<Value> = self
            .options
            .iter()
            .map(|o| {
                let mut v = o.base.clone();
                v["status"] = json!(o.status);
                v["expires_at"] = Value::Null;
                v
            })
            .collect();
        let mut v = json!({
            "boot_type": self.boot_type,
            "created_at": w.stamp(self.created_at),
            "description": self.description,
            "domain": domain,
            "id": self.id,
            "install": install,
            "ips": ips,
            "name": self.name,
            "offer_id": self.offer_id,
            "offer_name": self.offer_name,
            "options": options,
            "organization_id": self.organization_id,
            "ping_status": if self.provisioned { "ping_status_up" } else { "ping_status_unknown" },
            "project_id": self.project_id,
            "rescue_server": null,
            "status": self.status,
            "tags": self.tags,
            "updated_at": w.stamp(self.updated_at),
            "zone": self.zone,
        });
        if self.show_protected {
            v["protected"] = json!(self.protected);
            v["user_data"] = json!(self.user_data);
        }
        v
    }
}

fn server_index(w: &mut World, zone: &str, id: &str) -> Result<usize, Reply> {
    if !crate::util::is_uuid(id) {
        return Err(invalid("server_id", "format", &format!("{id:?} is not a UUID")));
    }
    if w.hidden_read(id) {
        return Err(em_not_found());
    }
    w.servers
        .iter()
        .position(|s| s.id == id && s.zone == zone)
        .ok_or_else(em_not_found)
}

pub fn route(w: &mut World, ctx: &mut Ctx, zone: &str, r: &Req) -> ApiResult {
    let rest: Vec<&str> = r.rest.iter().map(String::as_str).collect();
    match (r.method, rest.as_slice()) {
        ("GET", ["offers"]) => list_offers(w, zone, r),
        ("GET", ["offers", id]) => match w.catalogue.offer(id) {
            Some(o) => Ok(Reply::ok(offer_json(w, zone, o))),
            None => Err(em_not_found()),
        },
        ("GET", ["os"]) => list_os(w, zone, r),
        ("GET", ["os", id]) => match w.catalogue.os(id) {
            Some(o) => Ok(Reply::ok(with_zone(o, zone))),
            None => Err(em_not_found()),
        },
        ("GET", ["options"]) => list_options(w, r),
        ("GET", ["options", id]) => match w.catalogue.option(id) {
            Some(o) => Ok(Reply::ok(o.clone())),
            None => Err(em_not_found()),
        },
        ("GET", ["partitioning-schemas", "default"]) => default_schema(w, r),
        ("GET", ["servers"]) => list_servers(w, ctx, zone, r),
        ("POST", ["servers"]) => create(w, ctx, zone, r),
        ("GET", ["servers", id]) => {
            let i = server_index(w, zone, id)?;
            Ok(Reply::ok(w.servers[i].json(w, false)))
        }
        ("PATCH", ["servers", id]) => patch(w, ctx, zone, id, r),
        ("DELETE", ["servers", id]) => delete(w, ctx, zone, id),
        ("POST", ["servers", id, "install"]) => install(w, ctx, zone, id, r),
        ("POST", ["servers", id, "start"]) => power(w, ctx, zone, id, "start"),
        ("POST", ["servers", id, "stop"]) => power(w, ctx, zone, id, "stop"),
        ("POST", ["servers", id, "reboot"]) => power(w, ctx, zone, id, "reboot"),
        ("POST", ["servers", id, "options", option_id]) => add_option(w, ctx, zone, id, option_id),
        ("DELETE", ["servers", id, "options", option_id]) => delete_option(w, ctx, zone, id, option_id),
        ("GET", ["servers", id, "events"]) => {
            server_index(w, zone, id)?;
            page_of(Vec::new(), r.query, "events", 0)
        }
        _ => Err(bare(404, "Not Found")),
    }
}

fn list_offers(w: &mut World, zone: &str, r: &Req) -> ApiResult {
    let q = r.query;
    q.paging()?;
    let period = match q.text("subscription_period").as_deref() {
        None | Some("unknown_subscription_period") | Some("hourly") => "hourly",
        Some("monthly") => "monthly",
        Some(other) => {
            return Err(invalid(
                "subscription_period",
                "constraint",
                &format!("{other:?} must be one of unknown_subscription_period, hourly, monthly"),
            ));
        }
    };
    let name = q.text("name");
    let items: Vec<Value> = w
        .catalogue
        .offers
        .iter()
        .filter(|o| s(o, "subscription_period") == period)
        .filter(|o| name.as_ref().is_none_or(|n| &s(o, "name") == n))
        .map(|o| offer_json(w, zone, o))
        .collect();
    page_of(items, q, "offers", 0)
}

fn list_os(w: &mut World, zone: &str, r: &Req) -> ApiResult {
    let q = r.query;
    q.paging()?;
    let incompatible: Vec<String> = match q.uuid("offer_id")? {
        None => Vec::new(),
        Some(id) => match w.catalogue.offer(&id) {
            Some(o) => o
                .get("incompatible_os_ids")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default(),
            None => return Err(invalid("offer_id", "constraint", "unknown offer")),
        },
    };
    let items: Vec<Value> = w
        .catalogue
        .os
        .iter()
        .filter(|o| !incompatible.contains(&s(o, "id")))
        .map(|o| with_zone(o, zone))
        .collect();
    page_of(items, q, "os", 0)
}

fn list_options(w: &mut World, r: &Req) -> ApiResult {
    let q = r.query;
    q.paging()?;
    let allowed: Option<Vec<String>> = match q.uuid("offer_id")? {
        None => None,
        Some(id) => match w.catalogue.offer(&id) {
            Some(o) => Some(
                o.get("options")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(|x| s(x, "id")).collect())
                    .unwrap_or_default(),
            ),
            None => return Err(invalid("offer_id", "constraint", "unknown offer")),
        },
    };
    let name = q.text("name");
    let items: Vec<Value> = w
        .catalogue
        .options
        .iter()
        .filter(|o| allowed.as_ref().is_none_or(|a| a.contains(&s(o, "id"))))
        .filter(|o| name.as_ref().is_none_or(|n| &s(o, "name") == n))
        .cloned()
        .collect();
    page_of(items, q, "options", 0)
}

fn default_schema(w: &World, r: &Req) -> ApiResult {
    let offer_id = r
        .query
        .uuid("offer_id")?
        .ok_or_else(|| invalid("offer_id", "required", "field is required"))?;
    let os_id = r
        .query
        .uuid("os_id")?
        .ok_or_else(|| invalid("os_id", "required", "field is required"))?;
    let offer = w
        .catalogue
        .offer(&offer_id)
        .ok_or_else(|| invalid("offer_id", "constraint", "unknown offer"))?;
    w.catalogue
        .os(&os_id)
        .ok_or_else(|| invalid("os_id", "constraint", "unknown OS"))?;
    Ok(Reply::ok(partitioning_schema(offer)))
}

fn list_servers(w: &mut World, ctx: &Ctx, zone: &str, r: &Req) -> ApiResult {
    let q = r.query;
    let order = q.order_by(&["created_at_asc", "created_at_desc"], "created_at_asc")?;
    let tags = q.all("tags");
    let statuses = q.all("status");
    let name = q.text("name");
    let project = q.uuid("project_id")?;
    let org = q.uuid("organization_id")?;
    let option = q.uuid("option_id")?;
    q.paging()?;
    let mut items: Vec<Value> = w
        .servers
        .iter()
        .filter(|s| s.zone == zone)
        .filter(|s| tags_match(&s.tags, &tags))
        .filter(|s| statuses.is_empty() || statuses.contains(&s.status))
        .filter(|s| name.as_ref().is_none_or(|n| s.name.contains(n.as_str())))
        .filter(|s| project.as_ref().is_none_or(|p| &s.project_id == p))
        .filter(|s| org.as_ref().is_none_or(|o| &s.organization_id == o))
        .filter(|s| {
            option
                .as_ref()
                .is_none_or(|o| s.options.iter().any(|x| &self::s(&x.base, "id") == o))
        })
        .map(|s| s.json(w, false))
        .collect();
    items = w.filter_hidden(items);
    sort_items(&mut items, &order);
    page_of(items, q, "servers", ctx.total_count_delta)
}

/// Validates an `install` object against the catalogue and IAM keys.
fn parse_install(w: &World, offer: &Value, v: &Value, prefix: &str) -> Result<Install, Reply> {
    let b = Body(v);
    let arg = |k: &str| format!("{prefix}{k}");
    let os_id = b
        .uuid("os_id")
        .map_err(|_| invalid(&arg("os_id"), "format", "must be a UUID"))?;
    let os_id = os_id.ok_or_else(|| invalid(&arg("os_id"), "required", "field is required"))?;
    let os = w
        .catalogue
        .os(&os_id)
        .ok_or_else(|| invalid(&arg("os_id"), "constraint", "unknown OS"))?;
    let incompatible = offer
        .get("incompatible_os_ids")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x == &json!(os_id)));
    if incompatible {
        return Err(invalid(
            &arg("os_id"),
            "constraint",
            "this OS is not compatible with the offer",
        ));
    }
    let hostname = b.str("hostname")?.unwrap_or_default();
    let ssh_key_ids = b.uuids("ssh_key_ids")?.unwrap_or_default();
    for k in &ssh_key_ids {
        if !w.ssh_keys.iter().any(|key| &key.id == k) {
            return Err(invalid(
                &arg("ssh_key_ids"),
                "constraint",
                &format!("unknown SSH key {k}"),
            ));
        }
    }
    let requirement = |field: &str| -> (bool, Option<String>) {
        let r = os.get(field);
        (
            r.and_then(|x| x.get("required"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
            r.and_then(|x| x.get("default_value"))
                .and_then(Value::as_str)
                .map(str::to_string),
        )
    };
    let (ssh_required, ssh_default) = requirement("ssh");
    if ssh_required && ssh_default.is_none() && ssh_key_ids.is_empty() {
        return Err(invalid(
            &arg("ssh_key_ids"),
            "required",
            "this OS needs at least one SSH key",
        ));
    }
    for (field, key) in [
        ("user", "user"),
        ("password", "password"),
        ("service_user", "service_user"),
    ] {
        let (required, default) = requirement(field);
        if required && default.is_none() && b.str(key)?.is_none() {
            return Err(invalid(&arg(key), "required", &format!("this OS needs {key}")));
        }
    }
    let user = b
        .str("user")?
        .or_else(|| requirement("user").1)
        .unwrap_or_else(|| "root".into());
    let service_user = b
        .str("service_user")?
        .or_else(|| requirement("service_user").1)
        .unwrap_or_default();
    let partitioning_schema = match b.object("partitioning_schema")? {
        Some(p) => p.clone(),
        None => partitioning_schema(offer),
    };
    Ok(Install {
        os_id,
        hostname,
        ssh_key_ids,
        status: "to_install".into(),
        user,
        service_user,
        partitioning_schema,
    })
}

fn offer_option(offer: &Value, option_id: &str) -> Option<Value> {
    let o = offer
        .get("options")?
        .as_array()?
        .iter()
        .find(|o| s(o, "id") == option_id)?;
    let mut m = Map::new();
    if let Some(obj) = o.as_object() {
        for (k, v) in obj {
            if !["enabled", "os_id", "price", "subscription_period"].contains(&k.as_str()) {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    Some(Value::Object(m))
}

fn has_cloud_init(offer: &Value) -> bool {
    offer
        .get("tags")
        .and_then(Value::as_array)
        .is_some_and(|t| t.iter().any(|x| x == "cloud-init"))
}

const CLOUD_INIT_UNSUPPORTED: &str = "cloud-init is not supported on this offer";

fn ip_pool(zone: &str) -> (&'static str, u64) {
    match zone {
        "fr-par-1" => ("62.210", 158),
        "fr-par-2" => ("195.154", 100),
        "nl-ams-1" => ("51.15", 1),
        "nl-ams-2" => ("51.158", 200),
        "pl-waw-2" => ("151.115", 200),
        _ => ("151.115", 220),
    }
}

fn create(w: &mut World, ctx: &mut Ctx, zone: &str, r: &Req) -> ApiResult {
    let b = Body(r.body);
    let offer_id = b.required_uuid("offer_id")?;
    let offer = w
        .catalogue
        .offer(&offer_id)
        .cloned()
        .ok_or_else(|| invalid("offer_id", "constraint", "unknown offer"))?;
    let project_id = b.uuid("project_id")?;
    let organization_id = b.uuid("organization_id")?;
    let project_id = match (project_id, organization_id) {
        (Some(p), _) => p,
        (None, Some(o)) => o,
        (None, None) => {
            return Err(invalid(
                "project_id",
                "required",
                "project_id or organization_id is required",
            ));
        }
    };
    let name = b.str_max("name", 255)?.unwrap_or_default();
    let description = b.str_max("description", 255)?.unwrap_or_default();
    let tags = b.strs("tags")?.unwrap_or_default();
    let protected = b.bool("protected")?;
    let user_data = b.str("user_data")?;
    let option_ids = b.uuids("option_ids")?.unwrap_or_default();
    let install = match b.object("install")? {
        Some(v) => Some(parse_install(w, &offer, v, "install.")?),
        None => None,
    };
    let mut options = Vec::new();
    for o in &option_ids {
        let base = offer_option(&offer, o).ok_or_else(|| {
            invalid(
                "option_ids",
                "constraint",
                &format!("option {o} is not available on this offer"),
            )
        })?;
        options.push(ServerOption {
            base,
            status: "option_status_enabling".into(),
        });
    }
    if user_data.is_some() && !has_cloud_init(&offer) {
        return Err(bare(503, CLOUD_INIT_UNSUPPORTED));
    }
    let out_of_stock_status = ctx.out_of_stock_accept || stock_of(w, zone, &offer) == "empty";
    if out_of_stock_status && !ctx.out_of_stock_accept {
        return Err(out_of_stock(&s(&offer, "name")));
    }
    let now = ctx.now;
    let id = w.new_id();
    let n = w.counter(&format!("server:{zone}"));
    let (prefix, third) = ip_pool(zone);
    let ipv4 = (w.new_id(), format!("{prefix}.{}.{}", third + n / 250, 2 + n % 250));
    let ipv6 = (
        w.new_id(),
        format!(
            "2001:bc8:1201:{:x}:b683:51ff:fe0f:{:x}",
            0xa00 + n,
            w.rng.range(0x1000, 0xffff)
        ),
    );
    let m = w.rng.next_u64();
    let private_mac = format!(
        "B4:83:51:{:02X}:{:02X}:{:02X}",
        (m >> 16) & 0xff,
        (m >> 8) & 0xff,
        m & 0xff
    );
    let has_install = install.is_some();
    let status = if out_of_stock_status {
        "out_of_stock"
    } else if has_install {
        "ordered"
    } else {
        "delivering"
    };
    let server = Server {
        id: id.clone(),
        zone: zone.to_string(),
        organization_id: project_id.clone(),
        project_id,
        name,
        description,
        tags,
        created_at: now,
        updated_at: now,
        status: status.into(),
        offer_id,
        offer_name: s(&offer, "name"),
        install,
        options,
        protected: protected.unwrap_or(false),
        show_protected: protected.is_some() || user_data.is_some(),
        user_data,
        boot_type: "normal".into(),
        provisioned: false,
        installed: false,
        ipv4,
        ipv6,
        private_mac,
    };
    w.servers.push(server);
    if !out_of_stock_status {
        ctx.has_install = has_install;
        for o in &option_ids {
            w.chain(
                ctx,
                &id,
                &format!("option:{o}"),
                vec![(
                    OPTION_SECONDS,
                    Action::OptionStatus {
                        option_id: o.clone(),
                        status: "option_status_enable".into(),
                    },
                )],
            );
        }
        if has_install {
            w.chain(
                ctx,
                &id,
                "status",
                vec![(ORDERED_SECONDS, Action::ServerStatus("ready".into()))],
            );
            w.chain(
                ctx,
                &id,
                "install",
                vec![
                    (TO_INSTALL_SECONDS, Action::InstallStatus("installing".into())),
                    (
                        TO_INSTALL_SECONDS + INSTALLING_SECONDS,
                        Action::InstallStatus("completed".into()),
                    ),
                ],
            );
        } else {
            w.chain(
                ctx,
                &id,
                "status",
                vec![(DELIVERING_SECONDS, Action::ServerStatus("ready".into()))],
            );
        }
    }
    let i = w.servers.len() - 1;
    Ok(Reply::ok(w.servers[i].json(w, true)))
}

fn patch(w: &mut World, ctx: &Ctx, zone: &str, id: &str, r: &Req) -> ApiResult {
    let i = server_index(w, zone, id)?;
    let b = Body(r.body);
    let name = b.str_max("name", 255)?;
    let description = b.str_max("description", 255)?;
    let tags = b.strs("tags")?;
    let protected = b.bool("protected")?;
    let user_data = b.str("user_data")?;
    if user_data.is_some() {
        let offer = w
            .catalogue
            .offer(&w.servers[i].offer_id)
            .cloned()
            .unwrap_or(Value::Null);
        if !has_cloud_init(&offer) {
            return Err(bare(503, CLOUD_INIT_UNSUPPORTED));
        }
    }
    let srv = &mut w.servers[i];
    if let Some(n) = name {
        srv.name = n;
    }
    if let Some(d) = description {
        srv.description = d;
    }
    if let Some(t) = tags {
        srv.tags = t;
    }
    if let Some(p) = protected {
        srv.protected = p;
        srv.show_protected = true;
    }
    if let Some(u) = user_data {
        srv.user_data = Some(u);
        srv.show_protected = true;
    }
    srv.updated_at = ctx.now;
    Ok(Reply::ok(w.servers[i].json(w, false)))
}

fn check_not_transient(srv: &Server) -> Result<(), Reply> {
    if TRANSIENT.contains(&srv.status.as_str()) {
        return Err(transient("server", &srv.id, &srv.status));
    }
    Ok(())
}

fn delete(w: &mut World, ctx: &Ctx, zone: &str, id: &str) -> ApiResult {
    let i = server_index(w, zone, id)?;
    check_not_transient(&w.servers[i])?;
    if w.servers[i].protected {
        return Err(precondition(
            "protected_resource",
            "the server is protected; unprotect it first",
        ));
    }
    let now = ctx.now;
    let srv = &mut w.servers[i];
    srv.status = "deleting".into();
    srv.updated_at = now;
    // The answer still shows the options enabled; the next read shows them
    // `option_status_disabling` [rec].
    let answer = w.servers[i].json(w, false);
    for o in &mut w.servers[i].options {
        o.status = "option_status_disabling".into();
    }
    w.cancel(id, None);
    w.chain(ctx, id, "status", vec![(DELETE_SECONDS, Action::ServerRemove)]);
    crate::fip::server_deleted(w, ctx, id);
    crate::bmpn::server_deleted(w, ctx, id);
    Ok(Reply::ok(answer))
}

/// Removes a server for good, with its private network mappings.
pub fn remove(w: &mut World, id: &str) {
    w.cancel(id, None);
    w.servers.retain(|s| s.id != id);
    let spns: Vec<String> = w
        .spns
        .iter()
        .filter(|m| m.server_id == id)
        .map(|m| m.id.clone())
        .collect();
    for m in spns {
        crate::bmpn::remove(w, &m);
    }
}

fn install(w: &mut World, ctx: &mut Ctx, zone: &str, id: &str, r: &Req) -> ApiResult {
    let i = server_index(w, zone, id)?;
    check_not_transient(&w.servers[i])?;
    if let Some(inst) = &w.servers[i].install
        && matches!(inst.status.as_str(), "to_install" | "installing")
    {
        return Err(transient("server", id, &inst.status));
    }
    if !matches!(w.servers[i].status.as_str(), "ready" | "stopped") {
        return Err(invalid(
            "server_id",
            "constraint",
            "the server must be ready or stopped to install it",
        ));
    }
    let offer = w
        .catalogue
        .offer(&w.servers[i].offer_id)
        .cloned()
        .unwrap_or(Value::Null);
    let inst = parse_install(w, &offer, r.body, "")?;
    let srv = &mut w.servers[i];
    srv.install = Some(inst);
    srv.installed = false;
    srv.updated_at = ctx.now;
    ctx.has_install = true;
    w.chain(
        ctx,
        id,
        "install",
        vec![
            (REINSTALL_START_SECONDS, Action::InstallStatus("installing".into())),
            (
                REINSTALL_START_SECONDS + INSTALLING_SECONDS,
                Action::InstallStatus("completed".into()),
            ),
        ],
    );
    Ok(Reply::ok(w.servers[i].json(w, false)))
}

fn power(w: &mut World, ctx: &Ctx, zone: &str, id: &str, action: &str) -> ApiResult {
    let i = server_index(w, zone, id)?;
    check_not_transient(&w.servers[i])?;
    let status = w.servers[i].status.clone();
    let (now_status, steps) = match (action, status.as_str()) {
        ("stop", "ready") => ("stopping", vec![(STOP_SECONDS, Action::ServerStatus("stopped".into()))]),
        ("start", "stopped") => ("starting", vec![(START_SECONDS, Action::ServerStatus("ready".into()))]),
        ("reboot", "ready") => (
            "stopping",
            vec![
                (REBOOT_STOPPING_SECONDS, Action::ServerStatus("starting".into())),
                (
                    REBOOT_STOPPING_SECONDS + START_SECONDS,
                    Action::ServerStatus("ready".into()),
                ),
            ],
        ),
        _ => {
            return Err(invalid(
                "server_id",
                "constraint",
                &format!("cannot {action} a server in status {status}"),
            ));
        }
    };
    let srv = &mut w.servers[i];
    srv.status = now_status.into();
    srv.updated_at = ctx.now;
    w.chain(ctx, id, "status", steps);
    Ok(Reply::ok(w.servers[i].json(w, false)))
}

fn add_option(w: &mut World, ctx: &Ctx, zone: &str, id: &str, option_id: &str) -> ApiResult {
    let i = server_index(w, zone, id)?;
    check_not_transient(&w.servers[i])?;
    let offer = w
        .catalogue
        .offer(&w.servers[i].offer_id)
        .cloned()
        .unwrap_or(Value::Null);
    let base = offer_option(&offer, option_id).ok_or_else(|| {
        invalid(
            "option_id",
            "constraint",
            "this option is not available on the server's offer",
        )
    })?;
    if w.servers[i].options.iter().any(|o| s(&o.base, "id") == option_id) {
        return Err(invalid(
            "option_id",
            "constraint",
            "this option is already enabled on the server",
        ));
    }
    w.servers[i].options.push(ServerOption {
        base,
        status: "option_status_enabling".into(),
    });
    w.servers[i].updated_at = ctx.now;
    w.chain(
        ctx,
        id,
        &format!("option:{option_id}"),
        vec![(
            OPTION_SECONDS,
            Action::OptionStatus {
                option_id: option_id.to_string(),
                status: "option_status_enable".into(),
            },
        )],
    );
    Ok(Reply::ok(w.servers[i].json(w, false)))
}

fn delete_option(w: &mut World, ctx: &Ctx, zone: &str, id: &str, option_id: &str) -> ApiResult {
    let i = server_index(w, zone, id)?;
    check_not_transient(&w.servers[i])?;
    let Some(o) = w.servers[i].options.iter_mut().find(|o| s(&o.base, "id") == option_id) else {
        return Err(invalid(
            "option_id",
            "constraint",
            "this option is not enabled on the server",
        ));
    };
    o.status = "option_status_disabling".into();
    w.servers[i].updated_at = ctx.now;
    w.chain(
        ctx,
        id,
        &format!("option:{option_id}"),
        vec![(
            OPTION_SECONDS,
            Action::OptionRemove {
                option_id: option_id.to_string(),
            },
        )],
    );
    Ok(Reply::ok(w.servers[i].json(w, false)))
}

pub fn apply_status(w: &mut World, id: &str, at: f64, status: String) {
    if let Some(srv) = w.servers.iter_mut().find(|s| s.id == id) {
        srv.status = status;
        srv.updated_at = at;
    }
}

pub fn apply_install(w: &mut World, id: &str, at: f64, status: String) {
    if let Some(srv) = w.servers.iter_mut().find(|s| s.id == id)
        && let Some(inst) = srv.install.as_mut()
    {
        match status.as_str() {
            "installing" => srv.provisioned = true,
            "completed" => srv.installed = true,
            _ => {}
        }
        inst.status = status;
        srv.updated_at = at;
    }
}

/// The tag the API adds to a server once its Private Network option is on (recorded).
pub const PRIVATE_NETWORK_TAG: &str = "PrivateNetwork";

pub fn apply_option(w: &mut World, id: &str, option_id: &str, at: f64, status: Option<String>) {
    if let Some(srv) = w.servers.iter_mut().find(|s| s.id == id) {
        match status {
            Some(st) => {
                if let Some(o) = srv.options.iter_mut().find(|o| s(&o.base, "id") == option_id) {
                    if st == "option_status_enable"
                        && o.base.get("private_network").is_some()
                        && !srv.tags.iter().any(|t| t == PRIVATE_NETWORK_TAG)
                    {
                        srv.tags.push(PRIVATE_NETWORK_TAG.into());
                    }
                    o.status = st;
                }
            }
            None => srv.options.retain(|o| s(&o.base, "id") != option_id),
        }
        srv.updated_at = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_has_twins_and_options() {
        let c = Catalogue::load();
        assert_eq!(c.offers.len(), 10);
        let names: Vec<&Value> = c.offer_by_name("EM-B220E-NVME");
        assert_eq!(names.len(), 2);
        assert!(c.offer("206ea234-9097-4ae1-af68-6d2be09f47ed").is_some());
        assert!(
            c.offer("8852ff25-c867-4d58-a1f8-40b9968119b7").is_some(),
            "monthly twin"
        );
        assert!(c.os("96e5f0f2-d216-4de2-8a15-68730d877885").is_some());
        let pn = c.option("cd4158d7-2d65-49be-8803-c4b8ab6f760c");
        assert_eq!(
            pn.and_then(|o| o.get("name")).and_then(Value::as_str),
            Some("Private Network")
        );
        assert!(c.options.iter().all(|o| o.get("price").is_none()));
    }

    #[test]
    fn schemas() {
        let c = Catalogue::load();
        let offer = c
            .offer("206ea234-9097-4ae1-af68-6d2be09f47ed")
            .cloned()
            .unwrap_or_default();
        let schema = partitioning_schema(&offer);
        assert_eq!(schema["disks"][0]["device"], "/dev/nvme0n1");
        assert_eq!(schema["raids"][1]["devices"][0], "/dev/nvme0n1p4");
        let single = partitioning_schema(&json!({"disks": [{"type": "SSD", "capacity": 10_000_000_000u64}]}));
        assert_eq!(single["filesystems"][2]["device"], "/dev/sda4");
    }
}
