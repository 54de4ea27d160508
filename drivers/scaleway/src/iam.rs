//! IAM SSH keys (`/iam/v1alpha1/ssh-keys`, global). Keys have no tags:
//! ours are found by name and project.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::client::{Client, Retry, query};
use crate::error::Result;

const BASE: &str = "/iam/v1alpha1/ssh-keys";

/// An SSH key registered in a project.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct SshKey {
    pub id: String,
    pub name: String,
    /// Stored without the trailing comment.
    pub public_key: String,
    pub fingerprint: String,
    pub project_id: String,
    pub disabled: bool,
}

/// The part of a public key that identifies it: type and base64, no comment.
pub fn key_identity(public_key: &str) -> String {
    public_key.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

impl Client {
    /// Every SSH key of a project.
    pub fn list_ssh_keys(&self, project_id: &str) -> Result<Vec<SshKey>> {
        self.list_all(BASE, &query(&[("project_id", project_id)]), "ssh_keys")
    }

    /// Registers a key unless the project already has the same key (compared
    /// without comments), never twice.
    pub fn ensure_ssh_key(&self, project_id: &str, name: &str, public_key: &str) -> Result<SshKey> {
        let identity = key_identity(public_key);
        let find = || {
            Ok(self
                .list_ssh_keys(project_id)?
                .into_iter()
                .find(|k| key_identity(&k.public_key) == identity))
        };
        if let Some(existing) = find()? {
            return Ok(existing);
        }
        let body = json!({ "name": name, "public_key": public_key, "project_id": project_id });
        self.create_reconciled(
            &format!("SSH key {name}"),
            || self.call_json(&Method::POST, BASE, &[], Some(&body), Retry::Create),
            find,
        )
    }

    /// Deletes a key; `Ok(false)` when already gone.
    pub fn delete_ssh_key(&self, id: &str) -> Result<bool> {
        self.delete_gone_ok(&format!("{BASE}/{id}"))
    }
}
