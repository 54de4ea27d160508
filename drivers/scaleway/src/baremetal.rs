//! Elastic Metal (`/baremetal/v1/zones/{zone}`) and its private network
//! attachments (`/baremetal/v3/zones/{zone}`).

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::client::{Client, Retry, query};
use crate::config::Zone;
use crate::error::Result;
use crate::status::status_enum;
use crate::wait::{Progress, WaitPolicy, wait_until};

status_enum!(
    /// An Elastic Metal server's status.
    ServerStatus { Unknown => "unknown", Delivering => "delivering", Ready => "ready", Stopping => "stopping",
                   Stopped => "stopped", Starting => "starting", Error => "error", Deleting => "deleting",
                   Locked => "locked", OutOfStock => "out_of_stock", Ordered => "ordered",
                   Resetting => "resetting", Migrating => "migrating" }
);

status_enum!(
    /// An OS installation's status.
    InstallStatus { Unknown => "unknown", ToInstall => "to_install", Installing => "installing",
                    Completed => "completed", Error => "error" }
);

status_enum!(
    /// An offer's stock.
    Stock { Empty => "empty", Low => "low", Available => "available" }
);

status_enum!(
    /// A server option's status.
    OptionStatus { Unknown => "option_status_unknown", Enable => "option_status_enable",
                   Enabling => "option_status_enabling", Disabling => "option_status_disabling",
                   Error => "option_status_error" }
);

status_enum!(
    /// A server-to-private-network attachment's status.
    PrivateNetworkStatus { Unknown => "unknown_status", Attaching => "attaching", Attached => "attached",
                           Error => "error", Detaching => "detaching", Locked => "locked" }
);

/// An option of an offer or a server (`Private Network`, bandwidth...).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct ServerOption {
    pub id: String,
    pub name: String,
    pub status: Option<OptionStatus>,
    pub manageable: bool,
    pub enabled: Option<bool>,
    pub private_network: Option<Value>,
}

/// An Elastic Metal offer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct Offer {
    pub id: String,
    pub name: String,
    pub zone: String,
    pub stock: Stock,
    pub enable: bool,
    pub subscription_period: String,
    pub quota_name: String,
    pub incompatible_os_ids: Vec<String>,
    pub options: Vec<ServerOption>,
}

/// An OS requirement (`ssh`, `user`, `password`...).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct OsRequirement {
    pub editable: bool,
    pub required: bool,
    pub default_value: Option<String>,
}

/// An installable OS.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct Os {
    pub id: String,
    pub name: String,
    pub version: String,
    pub enabled: bool,
    pub allowed: bool,
    pub cloud_init_supported: bool,
    pub ssh: OsRequirement,
    pub user: OsRequirement,
    pub password: OsRequirement,
    pub service_user: OsRequirement,
    pub service_password: OsRequirement,
}

/// A server's OS installation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct Install {
    pub os_id: String,
    pub hostname: String,
    pub ssh_key_ids: Vec<String>,
    pub status: InstallStatus,
    pub user: String,
}

/// A server's built-in public address.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct ServerIp {
    pub id: String,
    pub address: String,
    pub version: String,
}

/// An Elastic Metal server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct Server {
    pub id: String,
    pub organization_id: String,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub zone: String,
    pub status: ServerStatus,
    pub offer_id: String,
    pub offer_name: String,
    pub domain: String,
    pub ips: Vec<ServerIp>,
    pub install: Option<Install>,
    pub options: Vec<ServerOption>,
    pub created_at: String,
    pub updated_at: String,
}

impl Server {
    /// The built-in public IPv4 address, once delivered.
    pub fn public_ipv4(&self) -> Option<&str> {
        self.ips
            .iter()
            .find(|ip| ip.version == "IPv4")
            .map(|ip| ip.address.as_str())
    }
}

/// What to install on a new server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewInstall {
    pub os_id: String,
    pub hostname: String,
    pub ssh_key_ids: Vec<String>,
}

/// A server to order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewServer {
    pub project_id: String,
    pub offer_id: String,
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub install: Option<NewInstall>,
    pub option_ids: Vec<String>,
}

/// A server's attachment to a private network.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct ServerPrivateNetwork {
    pub id: String,
    pub project_id: String,
    pub server_id: String,
    pub private_network_id: String,
    pub vlan: Option<u32>,
    pub status: PrivateNetworkStatus,
    pub ipam_ip_ids: Vec<String>,
}

/// Server list filters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerFilter {
    pub project_id: Option<String>,
    pub tags: Vec<String>,
    pub name: Option<String>,
}

fn v1(zone: &Zone) -> String {
    format!("/baremetal/v1/zones/{zone}")
}

fn v3(zone: &Zone) -> String {
    format!("/baremetal/v3/zones/{zone}")
}

impl Client {
    /// Every offer of the zone (optionally of one billing period).
    pub fn list_offers(&self, zone: &Zone, subscription_period: Option<&str>) -> Result<Vec<Offer>> {
        let q = subscription_period
            .map(|p| query(&[("subscription_period", p)]))
            .unwrap_or_default();
        self.list_all(&format!("{}/offers", v1(zone)), &q, "offers")
    }

    /// The offer with this exact name and period (names exist once per period).
    pub fn find_offer(&self, zone: &Zone, name: &str, subscription_period: &str) -> Result<Option<Offer>> {
        Ok(self
            .list_offers(zone, Some(subscription_period))?
            .into_iter()
            .find(|o| o.name == name))
    }

    /// Every OS of the zone (optionally the ones for an offer).
    pub fn list_os(&self, zone: &Zone, offer_id: Option<&str>) -> Result<Vec<Os>> {
        let q = offer_id.map(|o| query(&[("offer_id", o)])).unwrap_or_default();
        self.list_all(&format!("{}/os", v1(zone)), &q, "os")
    }

    /// Lists servers (all pages).
    pub fn list_servers(&self, zone: &Zone, filter: &ServerFilter) -> Result<Vec<Server>> {
        let mut q = Vec::new();
        if let Some(p) = &filter.project_id {
            q.push(("project_id".to_owned(), p.clone()));
        }
        if let Some(n) = &filter.name {
            q.push(("name".to_owned(), n.clone()));
        }
        q.extend(filter.tags.iter().map(|t| ("tags".to_owned(), t.clone())));
        self.list_all(&format!("{}/servers", v1(zone)), &q, "servers")
    }

    /// Orders a server, never twice: `unique_tag` (added to the tags)
    /// identifies this order, so that after an ambiguous failure the server
    /// is looked up by it instead of ordered again.
    pub fn create_server(&self, zone: &Zone, new: &NewServer, unique_tag: &str) -> Result<Server> {
        let mut tags = new.tags.clone();
        if !tags.iter().any(|t| t == unique_tag) {
            tags.push(unique_tag.to_owned());
        }
        let install = new
            .install
            .as_ref()
            .map(|i| json!({ "os_id": i.os_id, "hostname": i.hostname, "ssh_key_ids": i.ssh_key_ids }));
        let body = json!({
            "offer_id": new.offer_id,
            "project_id": new.project_id,
            "name": new.name,
            "description": new.description,
            "tags": tags,
            "install": install,
            "option_ids": new.option_ids,
        });
        let path = format!("{}/servers", v1(zone));
        self.create_reconciled(
            &format!("server {}", new.name),
            || self.call_json(&Method::POST, &path, &[], Some(&body), Retry::Create),
            || {
                let filter = ServerFilter {
                    project_id: Some(new.project_id.clone()),
                    tags: vec![unique_tag.to_owned()],
                    name: None,
                };
                Ok(self
                    .list_servers(zone, &filter)?
                    .into_iter()
                    .find(|s| s.tags.iter().any(|t| t == unique_tag)))
            },
        )
    }

    pub fn get_server(&self, zone: &Zone, id: &str) -> Result<Server> {
        self.get(&format!("{}/servers/{id}", v1(zone)), &[])
    }

    /// The server, or `None` once it is gone (404).
    pub fn find_server(&self, zone: &Zone, id: &str) -> Result<Option<Server>> {
        match self.get_server(zone, id) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes a server; `Ok(false)` when it was already gone.
    pub fn delete_server(&self, zone: &Zone, id: &str) -> Result<bool> {
        match self.call(
            &Method::DELETE,
            &format!("{}/servers/{id}", v1(zone)),
            &[],
            None,
            Retry::Idempotent,
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds an option (such as `Private Network`) to a server.
    pub fn add_server_option(&self, zone: &Zone, server_id: &str, option_id: &str) -> Result<Server> {
        let path = format!("{}/servers/{server_id}/options/{option_id}", v1(zone));
        self.call_json(&Method::POST, &path, &[], Some(&json!({})), Retry::Idempotent)
    }

    /// Sets a server's private networks declaratively (v3 `PUT`): each
    /// network gets the next free addresses; an empty list detaches all.
    pub fn set_server_private_networks(
        &self,
        zone: &Zone,
        server_id: &str,
        private_network_ids: &[&str],
    ) -> Result<Vec<ServerPrivateNetwork>> {
        let map: serde_json::Map<String, Value> = private_network_ids
            .iter()
            .map(|id| ((*id).to_owned(), json!([])))
            .collect();
        let body = json!({ "per_private_network_ipam_ip_ids": map });
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            server_private_networks: Vec<ServerPrivateNetwork>,
        }
        let path = format!("{}/servers/{server_id}/private-networks", v3(zone));
        let answer: Answer = self.call_json(&Method::PUT, &path, &[], Some(&body), Retry::Idempotent)?;
        Ok(answer.server_private_networks)
    }

    /// A server's private network attachments.
    pub fn list_server_private_networks(&self, zone: &Zone, server_id: &str) -> Result<Vec<ServerPrivateNetwork>> {
        let q = query(&[("server_id", server_id)]);
        self.list_all(
            &format!("{}/server-private-networks", v3(zone)),
            &q,
            "server_private_networks",
        )
    }

    /// Waits until the server is `ready`.
    pub fn wait_server_ready(&self, zone: &Zone, id: &str, policy: WaitPolicy) -> Result<Server> {
        wait_until(
            "Elastic Metal server",
            id,
            "ready",
            policy,
            || self.get_server(zone, id),
            |s| match s.status {
                ServerStatus::Ready => Progress::Done,
                ServerStatus::Delivering
                | ServerStatus::Ordered
                | ServerStatus::Starting
                | ServerStatus::Stopping
                | ServerStatus::Resetting
                | ServerStatus::Migrating => Progress::Pending,
                _ => Progress::Failed,
            },
            |s| s.status.to_string(),
        )
    }

    /// Waits until the server's OS installation is `completed` (a `ready`
    /// server is not yet installed).
    pub fn wait_server_installed(&self, zone: &Zone, id: &str, policy: WaitPolicy) -> Result<Server> {
        wait_until(
            "Elastic Metal server",
            id,
            "installed",
            policy,
            || self.get_server(zone, id),
            |s| match s.install.as_ref().map(|i| &i.status) {
                Some(InstallStatus::Completed) => Progress::Done,
                Some(InstallStatus::ToInstall | InstallStatus::Installing) => Progress::Pending,
                _ if matches!(s.status, ServerStatus::Ordered | ServerStatus::Delivering) => Progress::Pending,
                _ => Progress::Failed,
            },
            |s| match &s.install {
                Some(i) => format!("{} (install {})", s.status, i.status),
                None => format!("{} (no install)", s.status),
            },
        )
    }

    /// Waits until the server is gone (GET answers 404).
    pub fn wait_server_gone(&self, zone: &Zone, id: &str, policy: WaitPolicy) -> Result<()> {
        wait_until(
            "Elastic Metal server",
            id,
            "deleted",
            policy,
            || self.find_server(zone, id),
            |s| match s {
                None => Progress::Done,
                Some(_) => Progress::Pending,
            },
            |s| s.as_ref().map_or_else(|| "gone".to_owned(), |s| s.status.to_string()),
        )
        .map(drop)
    }

    /// Waits until every private network attachment of the server is settled.
    pub fn wait_server_private_networks(
        &self,
        zone: &Zone,
        server_id: &str,
        policy: WaitPolicy,
    ) -> Result<Vec<ServerPrivateNetwork>> {
        wait_until(
            "Elastic Metal server private networks of",
            server_id,
            "attached",
            policy,
            || self.list_server_private_networks(zone, server_id),
            |list| {
                if list
                    .iter()
                    .any(|m| matches!(m.status, PrivateNetworkStatus::Error | PrivateNetworkStatus::Locked))
                {
                    Progress::Failed
                } else if list.iter().all(|m| m.status == PrivateNetworkStatus::Attached) {
                    Progress::Done
                } else {
                    Progress::Pending
                }
            },
            |list| {
                list.iter()
                    .map(|m| format!("{}:{}", m.private_network_id, m.status))
                    .collect::<Vec<_>>()
                    .join(",")
            },
        )
    }
}
