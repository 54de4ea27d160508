//! Public Gateway v2 (`/vpc-gw/v2/zones/{zone}`).

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::client::{Client, Retry, query};
use crate::config::Zone;
use crate::error::{ApiErrorKind, Error, Result};
use crate::status::status_enum;
use crate::wait::{Progress, WaitPolicy, wait_until};

status_enum!(
    /// A public gateway's status.
    GatewayStatus { Unknown => "unknown_status", Stopped => "stopped", Allocating => "allocating",
                    Configuring => "configuring", Running => "running", Stopping => "stopping",
                    Failed => "failed", Deleting => "deleting", Locked => "locked" }
);

status_enum!(
    /// A gateway network's status.
    GatewayNetworkStatus { Unknown => "unknown_status", Created => "created", Attaching => "attaching",
                           Configuring => "configuring", Ready => "ready", Detaching => "detaching" }
);

/// A gateway's public IP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct GatewayIp {
    pub id: String,
    pub address: String,
    pub gateway_id: Option<String>,
}

/// A gateway network (a gateway's leg in a private network).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct GatewayNetwork {
    pub id: String,
    pub gateway_id: String,
    pub private_network_id: String,
    pub status: GatewayNetworkStatus,
    pub push_default_route: bool,
    pub masquerade_enabled: bool,
    pub ipam_ip_id: Option<String>,
    pub zone: String,
}

/// A public gateway.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct Gateway {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub tags: Vec<String>,
    pub zone: String,
    pub status: GatewayStatus,
    #[serde(rename = "type")]
    pub gateway_type: String,
    pub ipv4: Option<GatewayIp>,
    pub gateway_networks: Vec<GatewayNetwork>,
    pub bastion_enabled: bool,
    pub bastion_port: u16,
}

fn base(zone: &Zone) -> String {
    format!("/vpc-gw/v2/zones/{zone}")
}

impl Client {
    /// Lists gateways of a project carrying `tag`.
    pub fn list_gateways(&self, zone: &Zone, project_id: &str, tag: Option<&str>) -> Result<Vec<Gateway>> {
        let mut q = query(&[("project_id", project_id)]);
        q.extend(tag.map(|t| ("tags".to_owned(), t.to_owned())));
        self.list_all(&format!("{}/gateways", base(zone)), &q, "gateways")
    }

    /// Creates a public gateway with the bastion on, never twice.
    pub fn create_gateway(
        &self,
        zone: &Zone,
        project_id: &str,
        name: &str,
        gateway_type: &str,
        tags: &[String],
        unique_tag: &str,
    ) -> Result<Gateway> {
        let mut tags = tags.to_vec();
        tags.push(unique_tag.to_owned());
        let body = json!({
            "project_id": project_id, "name": name, "tags": tags, "type": gateway_type,
            "enable_bastion": true, "enable_smtp": false,
        });
        let path = format!("{}/gateways", base(zone));
        self.create_reconciled(
            &format!("public gateway {name}"),
            || self.call_json(&Method::POST, &path, &[], Some(&body), Retry::Create),
            || {
                Ok(self
                    .list_gateways(zone, project_id, Some(unique_tag))?
                    .into_iter()
                    .next())
            },
        )
    }

    pub fn get_gateway(&self, zone: &Zone, id: &str) -> Result<Gateway> {
        self.get(&format!("{}/gateways/{id}", base(zone)), &[])
    }

    /// Deletes a gateway (and its IP when `delete_ip`); `Ok(false)` when already gone.
    pub fn delete_gateway(&self, zone: &Zone, id: &str, delete_ip: bool) -> Result<bool> {
        let path = format!("{}/gateways/{id}", base(zone));
        match self.call(
            &Method::DELETE,
            &path,
            &query(&[("delete_ip", delete_ip)]),
            None,
            Retry::Idempotent,
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until the gateway is `running`.
    pub fn wait_gateway_running(&self, zone: &Zone, id: &str, policy: WaitPolicy) -> Result<Gateway> {
        wait_until(
            "public gateway",
            id,
            "running",
            policy,
            || self.get_gateway(zone, id),
            |g| match g.status {
                GatewayStatus::Running => Progress::Done,
                GatewayStatus::Allocating | GatewayStatus::Configuring | GatewayStatus::Stopping => Progress::Pending,
                _ => Progress::Failed,
            },
            |g| g.status.to_string(),
        )
    }

    /// Connects a gateway to a private network (default route pushed,
    /// masquerade on), never twice. A 409 `transient_state` (the gateway is
    /// still configuring) waits for the gateway, then tries again.
    pub fn create_gateway_network(
        &self,
        zone: &Zone,
        gateway_id: &str,
        private_network_id: &str,
        policy: WaitPolicy,
    ) -> Result<GatewayNetwork> {
        let body = json!({
            "gateway_id": gateway_id, "private_network_id": private_network_id,
            "push_default_route": true, "enable_masquerade": true,
        });
        let path = format!("{}/gateway-networks", base(zone));
        let find = || {
            let q = query(&[("gateway_ids", gateway_id), ("private_network_ids", private_network_id)]);
            Ok(self
                .list_all::<GatewayNetwork>(&path, &q, "gateway_networks")?
                .into_iter()
                .next())
        };
        for _ in 0..5 {
            match self.create_reconciled(
                "gateway network",
                || self.call_json(&Method::POST, &path, &[], Some(&body), Retry::Create),
                find,
            ) {
                Err(Error::Api(api)) if matches!(api.kind, ApiErrorKind::TransientState { .. }) => {
                    self.wait_gateway_running(zone, gateway_id, policy)?;
                }
                other => return other,
            }
        }
        Err(Error::Refused(format!(
            "public gateway {gateway_id} stayed busy: could not connect it to private network {private_network_id}"
        )))
    }

    pub fn get_gateway_network(&self, zone: &Zone, id: &str) -> Result<GatewayNetwork> {
        self.get(&format!("{}/gateway-networks/{id}", base(zone)), &[])
    }

    /// Waits until the gateway network is `ready`.
    pub fn wait_gateway_network_ready(&self, zone: &Zone, id: &str, policy: WaitPolicy) -> Result<GatewayNetwork> {
        wait_until(
            "gateway network",
            id,
            "ready",
            policy,
            || self.get_gateway_network(zone, id),
            |g| match g.status {
                GatewayNetworkStatus::Ready => Progress::Done,
                GatewayNetworkStatus::Detaching | GatewayNetworkStatus::Unknown | GatewayNetworkStatus::Other(_) => {
                    Progress::Failed
                }
                _ => Progress::Pending,
            },
            |g| g.status.to_string(),
        )
    }

    /// Deletes a gateway network; `Ok(false)` when already gone.
    pub fn delete_gateway_network(&self, zone: &Zone, id: &str) -> Result<bool> {
        self.delete_gone_ok(&format!("{}/gateway-networks/{id}", base(zone)))
    }
}
