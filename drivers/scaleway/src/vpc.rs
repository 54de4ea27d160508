//! VPC v2 (`/vpc/v2/regions/{region}`): VPCs and private networks, and the
//! IPAM addresses in them (`/ipam/v1/regions/{region}`).

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::client::{Client, Retry, query};
use crate::config::Region;
use crate::error::Result;

/// A VPC.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct Vpc {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub region: String,
    pub tags: Vec<String>,
    pub is_default: bool,
    pub routing_enabled: bool,
    pub private_network_count: u32,
}

/// A subnet of a private network.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct Subnet {
    pub id: String,
    /// CIDR (`172.16.64.0/22`).
    pub subnet: String,
    pub private_network_id: String,
    pub vpc_id: String,
}

/// A private network.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct PrivateNetwork {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub region: String,
    pub tags: Vec<String>,
    pub vpc_id: String,
    pub dhcp_enabled: bool,
    pub subnets: Vec<Subnet>,
}

/// An address booked in IPAM.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct IpamIp {
    pub id: String,
    /// CIDR (`172.16.4.2/22`).
    pub address: String,
    pub project_id: String,
    pub is_ipv6: bool,
    pub region: String,
    pub tags: Vec<String>,
    pub resource: Option<Value>,
    pub source: Value,
}

fn base(region: &Region) -> String {
    format!("/vpc/v2/regions/{region}")
}

impl Client {
    /// Lists VPCs of a project carrying `tag` (all of them with `None`).
    pub fn list_vpcs(&self, region: &Region, project_id: &str, tag: Option<&str>) -> Result<Vec<Vpc>> {
        let mut q = query(&[("project_id", project_id)]);
        q.extend(tag.map(|t| ("tags".to_owned(), t.to_owned())));
        self.list_all(&format!("{}/vpcs", base(region)), &q, "vpcs")
    }

    /// Creates a VPC, never twice (see [`Client::create_fip`] for `unique_tag`).
    pub fn create_vpc(
        &self,
        region: &Region,
        project_id: &str,
        name: &str,
        tags: &[String],
        unique_tag: &str,
    ) -> Result<Vpc> {
        let mut tags = tags.to_vec();
        tags.push(unique_tag.to_owned());
        let body = json!({ "name": name, "project_id": project_id, "tags": tags, "enable_routing": true });
        let path = format!("{}/vpcs", base(region));
        self.create_reconciled(
            &format!("VPC {name}"),
            || self.call_json(&Method::POST, &path, &[], Some(&body), Retry::Create),
            || Ok(self.list_vpcs(region, project_id, Some(unique_tag))?.into_iter().next()),
        )
    }

    /// Deletes a VPC; `Ok(false)` when it was already gone.
    pub fn delete_vpc(&self, region: &Region, id: &str) -> Result<bool> {
        self.delete_gone_ok(&format!("{}/vpcs/{id}", base(region)))
    }

    /// Lists private networks of a project carrying `tag`.
    pub fn list_private_networks(
        &self,
        region: &Region,
        project_id: &str,
        tag: Option<&str>,
    ) -> Result<Vec<PrivateNetwork>> {
        let mut q = query(&[("project_id", project_id)]);
        q.extend(tag.map(|t| ("tags".to_owned(), t.to_owned())));
        self.list_all(&format!("{}/private-networks", base(region)), &q, "private_networks")
    }

    /// Creates a private network with an IPv4 subnet, never twice.
    #[allow(clippy::too_many_arguments)]
    pub fn create_private_network(
        &self,
        region: &Region,
        project_id: &str,
        vpc_id: &str,
        name: &str,
        subnet: &str,
        tags: &[String],
        unique_tag: &str,
    ) -> Result<PrivateNetwork> {
        let mut tags = tags.to_vec();
        tags.push(unique_tag.to_owned());
        let body =
            json!({ "name": name, "project_id": project_id, "vpc_id": vpc_id, "subnets": [subnet], "tags": tags });
        let path = format!("{}/private-networks", base(region));
        self.create_reconciled(
            &format!("private network {name}"),
            || self.call_json(&Method::POST, &path, &[], Some(&body), Retry::Create),
            || {
                Ok(self
                    .list_private_networks(region, project_id, Some(unique_tag))?
                    .into_iter()
                    .next())
            },
        )
    }

    pub fn get_private_network(&self, region: &Region, id: &str) -> Result<PrivateNetwork> {
        self.get(&format!("{}/private-networks/{id}", base(region)), &[])
    }

    /// Deletes a private network; `Ok(false)` when it was already gone. A
    /// network still in use answers 412 `precondition_failed`.
    pub fn delete_private_network(&self, region: &Region, id: &str) -> Result<bool> {
        self.delete_gone_ok(&format!("{}/private-networks/{id}", base(region)))
    }

    /// IPAM addresses attached to a resource (a server's private NIC, a gateway network...).
    pub fn list_ipam_ips_of(&self, region: &Region, resource_id: &str) -> Result<Vec<IpamIp>> {
        let q = query(&[("resource_id", resource_id)]);
        self.list_all(&format!("/ipam/v1/regions/{region}/ips"), &q, "ips")
    }

    /// DELETE where "already gone" (404) is success; `Ok(false)` then.
    pub fn delete_gone_ok(&self, path: &str) -> Result<bool> {
        match self.call(&Method::DELETE, path, &[], None, Retry::Idempotent) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
}
