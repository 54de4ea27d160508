//! Elastic Metal v1 (reference §7): `/baremetal/v1/zones/{zone}`: the offer,
//! OS and option catalogues, and servers with their time-driven statuses.

use serde_json::{Value, json};

use crate::errors::{ApiResult, Reply, bare, em_not_found, invalid, out_of_stock, precondition, transient};
use crate::input::{Body, page_of, sort_items, tags_match};
use crate::router::Req;
use crate::world::{Action, Ctx, World};

mod catalogue;
mod create;
mod servers;

pub use catalogue::{Catalogue, partitioning_schema, stock_of};
use catalogue::{default_schema, list_offers, list_options, list_os, offer_json, with_zone};
use create::create;
use create::{CLOUD_INIT_UNSUPPORTED, has_cloud_init, offer_option, parse_install};
pub use servers::remove;
use servers::{add_option, delete, delete_option, install, list_servers, patch, power};

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

fn s(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("").to_string()
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
