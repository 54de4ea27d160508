//! Flexible IPs (`/flexible-ip/v1alpha1/zones/{zone}`).

use std::net::IpAddr;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::client::{Client, Retry};
use crate::config::Zone;
use crate::error::{ApiErrorKind, Error, Result};
use crate::status::status_enum;
use crate::wait::{Progress, WaitPolicy, wait_until};

status_enum!(
    /// A flexible IP's status.
    FipStatus { Unknown => "unknown", Ready => "ready", Updating => "updating", Attached => "attached",
                Error => "error", Detaching => "detaching", Locked => "locked" }
);

status_enum!(
    /// A virtual MAC's status.
    MacStatus { Unknown => "unknown", Ready => "ready", Updating => "updating", Used => "used",
                Error => "error", Deleting => "deleting" }
);

/// A virtual MAC address of a flexible IP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct MacAddress {
    pub id: String,
    pub mac_address: String,
    pub mac_type: String,
    pub status: MacStatus,
    pub zone: String,
}

/// A flexible IP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct FlexibleIp {
    pub id: String,
    pub organization_id: String,
    pub project_id: String,
    pub description: String,
    pub tags: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    pub status: FipStatus,
    /// Bare for IPv4 (`195.154.148.225`), CIDR for IPv6 (`2001:bc8:702:6b7::/64`).
    pub ip_address: String,
    pub mac_address: Option<MacAddress>,
    pub server_id: Option<String>,
    pub reverse: Option<String>,
    pub zone: String,
}

impl FlexibleIp {
    /// The address (for IPv6, the first address of the /64).
    pub fn address(&self) -> Option<IpAddr> {
        self.ip_address.split('/').next()?.parse().ok()
    }

    pub fn is_ipv6(&self) -> bool {
        self.ip_address.contains(':')
    }
}

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewFlexibleIp {
    pub project_id: String,
    pub description: String,
    pub tags: Vec<String>,
    pub server_id: Option<String>,
    pub is_ipv6: bool,
}

/// List filters (each is optional; tags match any of the given ones).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FipFilter {
    pub project_id: Option<String>,
    pub tags: Vec<String>,
    pub server_ids: Vec<String>,
    pub statuses: Vec<FipStatus>,
}

#[derive(Deserialize)]
struct FipList {
    #[serde(default)]
    flexible_ips: Vec<FlexibleIp>,
}

fn base(zone: &Zone) -> String {
    format!("/flexible-ip/v1alpha1/zones/{zone}")
}

impl Client {
    /// Lists every flexible IP matching the filter (all pages).
    pub fn list_fips(&self, zone: &Zone, filter: &FipFilter) -> Result<Vec<FlexibleIp>> {
        let mut q = Vec::new();
        if let Some(p) = &filter.project_id {
            q.push(("project_id".to_owned(), p.clone()));
        }
        q.extend(filter.tags.iter().map(|t| ("tags".to_owned(), t.clone())));
        q.extend(filter.server_ids.iter().map(|s| ("server_ids".to_owned(), s.clone())));
        q.extend(filter.statuses.iter().map(|s| ("status".to_owned(), s.to_string())));
        self.list_all(&format!("{}/fips", base(zone)), &q, "flexible_ips")
    }

    /// Creates a flexible IP, never twice: `unique_tag` (added to the tags)
    /// identifies this creation, so that after an ambiguous failure the IP is
    /// looked up by it instead of created again.
    pub fn create_fip(&self, zone: &Zone, new: &NewFlexibleIp, unique_tag: &str) -> Result<FlexibleIp> {
        let mut tags = new.tags.clone();
        if !tags.iter().any(|t| t == unique_tag) {
            tags.push(unique_tag.to_owned());
        }
        let body = json!({
            "project_id": new.project_id,
            "description": new.description,
            "tags": tags,
            "server_id": new.server_id,
            "is_ipv6": new.is_ipv6,
        });
        let path = format!("{}/fips", base(zone));
        self.create_reconciled(
            "a flexible IP",
            || self.call_json(&Method::POST, &path, &[], Some(&body), Retry::Create),
            || {
                let filter = FipFilter {
                    project_id: Some(new.project_id.clone()),
                    tags: vec![unique_tag.to_owned()],
                    ..FipFilter::default()
                };
                Ok(self
                    .list_fips(zone, &filter)?
                    .into_iter()
                    .find(|f| f.tags.iter().any(|t| t == unique_tag)))
            },
        )
    }

    /// Gets a flexible IP (an error if it is gone).
    pub fn get_fip(&self, zone: &Zone, id: &str) -> Result<FlexibleIp> {
        self.get(&format!("{}/fips/{id}", base(zone)), &[])
    }

    /// Gets a flexible IP, or `None` if it is gone. Scaleway answers a
    /// deleted flexible IP with 403 `permissions_denied`, which is also what
    /// a real permission problem looks like: after a 403 the project's list
    /// is read: an IP absent from it is gone, one present is taken from it.
    pub fn find_fip(&self, zone: &Zone, id: &str, project_id: &str) -> Result<Option<FlexibleIp>> {
        match self.get_fip(zone, id) {
            Ok(fip) => Ok(Some(fip)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(Error::Api(api)) if api.is_fip_permissions_denied() => {
                let filter = FipFilter {
                    project_id: Some(project_id.to_owned()),
                    ..FipFilter::default()
                };
                // Listed: the GET's 403 was the API's eventual consistency (a
                // fresh IP, or one just changed); the list's entry is current.
                // A real permission problem fails the list as well.
                Ok(self.list_fips(zone, &filter)?.into_iter().find(|f| f.id == id))
            }
            Err(e) => Err(e),
        }
    }

    /// Finds a flexible IP by address (the API has no such filter: the
    /// project's whole list is read and matched here).
    pub fn find_fip_by_address(&self, zone: &Zone, project_id: &str, address: IpAddr) -> Result<Option<FlexibleIp>> {
        let filter = FipFilter {
            project_id: Some(project_id.to_owned()),
            ..FipFilter::default()
        };
        Ok(self
            .list_fips(zone, &filter)?
            .into_iter()
            .find(|f| f.address() == Some(address)))
    }

    /// Attaches flexible IPs to a server (asynchronous: they go `updating`).
    /// A 409 `transient_state` (an IP still moving) waits for the IPs to
    /// settle, then tries again.
    pub fn attach_fips(&self, zone: &Zone, fip_ids: &[&str], server_id: &str) -> Result<Vec<FlexibleIp>> {
        let body = json!({ "fips_ids": fip_ids, "server_id": server_id });
        self.fips_action(zone, "attach", fip_ids, &body)
    }

    fn fips_action(
        &self,
        zone: &Zone,
        action: &str,
        fip_ids: &[&str],
        body: &serde_json::Value,
    ) -> Result<Vec<FlexibleIp>> {
        let path = format!("{}/fips/{action}", base(zone));
        let mut tries = 0;
        loop {
            tries += 1;
            match self.call_json::<FipList>(&Method::POST, &path, &[], Some(body), Retry::Idempotent) {
                Ok(list) => return Ok(list.flexible_ips),
                Err(Error::Api(api)) if matches!(api.kind, ApiErrorKind::TransientState { .. }) && tries < 5 => {
                    self.notify(&format!(
                        "{action} of flexible IP(s) {}: {api}; waiting for them to settle",
                        fip_ids.join(", ")
                    ));
                    for id in fip_ids {
                        self.wait_fip_settled(
                            zone,
                            id,
                            WaitPolicy::new(self.backoff(1), std::time::Duration::from_secs(20)),
                        )?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Detaches flexible IPs (asynchronous: they go `detaching`; a `ready`
    /// one stays `ready`).
    pub fn detach_fips(&self, zone: &Zone, fip_ids: &[&str]) -> Result<Vec<FlexibleIp>> {
        let body = json!({ "fips_ids": fip_ids });
        self.fips_action(zone, "detach", fip_ids, &body)
    }

    /// Replaces a flexible IP's tags.
    pub fn set_fip_tags(&self, zone: &Zone, id: &str, tags: &[String]) -> Result<FlexibleIp> {
        let body = json!({ "tags": tags });
        self.call_json(
            &Method::PATCH,
            &format!("{}/fips/{id}", base(zone)),
            &[],
            Some(&body),
            Retry::Idempotent,
        )
    }

    /// Deletes a flexible IP. `Ok(false)` when it was already gone (404, or
    /// the 403 of a deleted IP, confirmed by the project's list).
    pub fn delete_fip(&self, zone: &Zone, id: &str, project_id: &str) -> Result<bool> {
        match self.call(
            &Method::DELETE,
            &format!("{}/fips/{id}", base(zone)),
            &[],
            None,
            Retry::Idempotent,
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(Error::Api(api)) if api.is_fip_permissions_denied() => match self.find_fip(zone, id, project_id)? {
                None => Ok(false),
                Some(_) => Err(Error::Api(api)),
            },
            Err(e) => Err(e),
        }
    }

    /// Waits until the flexible IP is `attached` to `server_id`.
    pub fn wait_fip_attached(&self, zone: &Zone, id: &str, server_id: &str, policy: WaitPolicy) -> Result<FlexibleIp> {
        wait_until(
            "flexible IP",
            id,
            &format!("attached to server {server_id}"),
            policy,
            || self.get_fip(zone, id),
            |f| match &f.status {
                FipStatus::Attached if f.server_id.as_deref() == Some(server_id) => Progress::Done,
                FipStatus::Updating | FipStatus::Detaching => Progress::Pending,
                // attached elsewhere, ready, error, locked: it will not get there by itself
                _ => Progress::Failed,
            },
            describe_fip,
        )
    }

    /// Waits until every one of `ids` is attached to `server_id`, reading
    /// the project's list once per poll (one page per 100 IPs) instead of
    /// each IP.
    pub fn wait_fips_attached(
        &self,
        zone: &Zone,
        project_id: &str,
        ids: &[&str],
        server_id: &str,
        policy: WaitPolicy,
    ) -> Result<()> {
        self.wait_fips(
            zone,
            project_id,
            ids,
            &format!("attached to server {server_id}"),
            policy,
            |f| match &f.status {
                FipStatus::Attached if f.server_id.as_deref() == Some(server_id) => Progress::Done,
                FipStatus::Updating | FipStatus::Detaching => Progress::Pending,
                _ => Progress::Failed,
            },
        )
    }

    /// Waits until every one of `ids` is `ready` (detached), one list per poll.
    pub fn wait_fips_ready(&self, zone: &Zone, project_id: &str, ids: &[&str], policy: WaitPolicy) -> Result<()> {
        self.wait_fips(zone, project_id, ids, "ready (detached)", policy, |f| match f.status {
            FipStatus::Ready => Progress::Done,
            FipStatus::Updating | FipStatus::Detaching | FipStatus::Attached => Progress::Pending,
            _ => Progress::Failed,
        })
    }

    fn wait_fips(
        &self,
        zone: &Zone,
        project_id: &str,
        ids: &[&str],
        wanted: &str,
        policy: WaitPolicy,
        judge: impl Fn(&FlexibleIp) -> Progress,
    ) -> Result<()> {
        let filter = FipFilter {
            project_id: Some(project_id.to_owned()),
            ..FipFilter::default()
        };
        wait_until(
            "flexible IPs",
            &ids.join(", "),
            wanted,
            policy,
            || self.list_fips(zone, &filter),
            |list| {
                let mut progress = Progress::Done;
                for id in ids {
                    // Missing from the list: not there yet (eventual consistency).
                    match list.iter().find(|f| f.id == *id).map_or(Progress::Pending, &judge) {
                        Progress::Failed => return Progress::Failed,
                        Progress::Pending => progress = Progress::Pending,
                        Progress::Done => {}
                    }
                }
                progress
            },
            |list| {
                ids.iter()
                    .map(|id| {
                        list.iter()
                            .find(|f| f.id == *id)
                            .map_or(format!("{id} not listed"), |f| format!("{id} {}", describe_fip(f)))
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            },
        )
        .map(drop)
    }

    /// Waits until the flexible IP is out of its transient states
    /// (`updating`, `detaching`): `ready` or `attached`.
    pub fn wait_fip_settled(&self, zone: &Zone, id: &str, policy: WaitPolicy) -> Result<FlexibleIp> {
        wait_until(
            "flexible IP",
            id,
            "ready or attached",
            policy,
            || self.get_fip(zone, id),
            |f| match f.status {
                FipStatus::Ready | FipStatus::Attached => Progress::Done,
                FipStatus::Updating | FipStatus::Detaching => Progress::Pending,
                _ => Progress::Failed,
            },
            describe_fip,
        )
    }

    /// Waits until the flexible IP is `ready` (detached).
    pub fn wait_fip_ready(&self, zone: &Zone, id: &str, policy: WaitPolicy) -> Result<FlexibleIp> {
        wait_until(
            "flexible IP",
            id,
            "ready (detached)",
            policy,
            || self.get_fip(zone, id),
            |f| match f.status {
                FipStatus::Ready => Progress::Done,
                FipStatus::Updating | FipStatus::Detaching | FipStatus::Attached => Progress::Pending,
                _ => Progress::Failed,
            },
            describe_fip,
        )
    }
}

fn describe_fip(f: &FlexibleIp) -> String {
    match &f.server_id {
        Some(server) => format!("{} (server {server})", f.status),
        None => f.status.to_string(),
    }
}
