//! IAM v1alpha1 SSH keys (reference §12): `/iam/v1alpha1/ssh-keys`.

use serde_json::{Value, json};

use crate::errors::{ApiResult, Reply, already_exists, bare, invalid, not_found};
use crate::input::{Body, page_of, sort_items};
use crate::router::Req;
use crate::util::md5;
use crate::world::{Ctx, World};

#[derive(Debug, Clone)]
pub struct SshKey {
    pub id: String,
    pub name: String,
    pub public_key: String,
    pub fingerprint: String,
    pub created_at: f64,
    pub updated_at: f64,
    pub organization_id: String,
    pub project_id: String,
    pub disabled: bool,
}

impl SshKey {
    pub fn json(&self, w: &World) -> Value {
        json!({
            "created_at": w.stamp(self.created_at),
            "disabled": self.disabled,
            "fingerprint": self.fingerprint,
            "id": self.id,
            "name": self.name,
            "organization_id": self.organization_id,
            "project_id": self.project_id,
            "public_key": self.public_key,
            "updated_at": w.stamp(self.updated_at),
        })
    }
}

const KEY_TYPES: [&str; 6] = [
    "ssh-rsa",
    "ssh-dss",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
];

/// Reads one SSH wire-format string (u32 length + bytes).
fn wire_string(blob: &[u8], pos: &mut usize) -> Option<Vec<u8>> {
    let len_bytes = blob.get(*pos..*pos + 4)?;
    let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
    let data = blob.get(*pos + 4..*pos + 4 + len)?.to_vec();
    *pos += 4 + len;
    Some(data)
}

fn mpint_bits(m: &[u8]) -> usize {
    let m: Vec<u8> = m.iter().copied().skip_while(|b| *b == 0).collect();
    match m.first() {
        None => 0,
        Some(first) => (m.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

/// Parses an OpenSSH public key line: returns the normalised key (type and
/// base64, comment dropped) and its fingerprint as the API shows it.
pub fn parse_public_key(line: &str) -> Result<(String, String), String> {
    let mut parts = line.split_whitespace();
    let kind = parts.next().ok_or("the key is empty")?;
    let b64 = parts.next().ok_or("the key has no base64 part")?;
    if !KEY_TYPES.contains(&kind) {
        return Err(format!("unsupported key type {kind:?}"));
    }
    let blob = opennebula::base64::decode(b64.as_bytes()).map_err(|_| "the key is not valid base64".to_string())?;
    let mut pos = 0;
    let inner = wire_string(&blob, &mut pos).ok_or("the key blob is truncated")?;
    if inner != kind.as_bytes() {
        return Err("the key blob does not match its type".into());
    }
    let bits = match kind {
        "ssh-ed25519" => 256,
        "ssh-rsa" => {
            let _e = wire_string(&blob, &mut pos).ok_or("the RSA key is truncated")?;
            let n = wire_string(&blob, &mut pos).ok_or("the RSA key is truncated")?;
            mpint_bits(&n)
        }
        "ssh-dss" => {
            let p = wire_string(&blob, &mut pos).ok_or("the DSA key is truncated")?;
            mpint_bits(&p)
        }
        "ecdsa-sha2-nistp256" => 256,
        "ecdsa-sha2-nistp384" => 384,
        _ => 521,
    };
    let digest = md5(&blob);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok((
        format!("{kind} {b64}"),
        format!("{bits} MD5:{} ({kind})", hex.join(":")),
    ))
}

pub fn route(w: &mut World, ctx: &mut Ctx, r: &Req) -> ApiResult {
    let rest: Vec<&str> = r.rest.iter().map(String::as_str).collect();
    match (r.method, rest.as_slice()) {
        ("POST", ["ssh-keys"]) => create(w, ctx, r),
        ("GET", ["ssh-keys"]) => list(w, ctx, r),
        ("GET", ["ssh-keys", id]) => {
            let i = index(w, id)?;
            Ok(Reply::ok(w.ssh_keys[i].json(w)))
        }
        ("PATCH", ["ssh-keys", id]) => {
            let i = index(w, id)?;
            let b = Body(r.body);
            let name = b.str_max("name", 1000)?;
            let disabled = b.bool("disabled")?;
            let k = &mut w.ssh_keys[i];
            if let Some(n) = name {
                k.name = n;
            }
            if let Some(d) = disabled {
                k.disabled = d;
            }
            k.updated_at = ctx.now;
            Ok(Reply::ok(w.ssh_keys[i].json(w)))
        }
        ("DELETE", ["ssh-keys", id]) => {
            let i = index(w, id)?;
            w.ssh_keys.remove(i);
            Ok(Reply::no_content())
        }
        _ => Err(bare(404, "Not Found")),
    }
}

fn index(w: &mut World, id: &str) -> Result<usize, Reply> {
    if !crate::util::is_uuid(id) {
        return Err(invalid("ssh_key_id", "format", &format!("{id:?} is not a UUID")));
    }
    if w.hidden_read(id) {
        return Err(not_found("ssh_key", id));
    }
    w.ssh_keys
        .iter()
        .position(|k| k.id == id)
        .ok_or_else(|| not_found("ssh_key", id))
}

fn create(w: &mut World, ctx: &Ctx, r: &Req) -> ApiResult {
    let b = Body(r.body);
    let project_id = match (b.uuid("project_id")?, b.uuid("organization_id")?) {
        (Some(p), _) => p,
        (None, Some(o)) => o,
        (None, None) => return Err(invalid("project_id", "required", "field is required")),
    };
    let name = b.str_max("name", 1000)?.unwrap_or_default();
    let line = b.required_str("public_key")?;
    if line.len() > 65000 {
        return Err(invalid("public_key", "constraint", "must be at most 65000 characters"));
    }
    let (public_key, fingerprint) = parse_public_key(&line).map_err(|e| invalid("public_key", "format", &e))?;
    if let Some(k) = w
        .ssh_keys
        .iter()
        .find(|k| k.project_id == project_id && k.public_key == public_key)
    {
        return Err(already_exists(
            "ssh_key",
            &k.id,
            "this public key is already registered in the project",
        ));
    }
    let id = w.new_id();
    w.ssh_keys.push(SshKey {
        id,
        name,
        public_key,
        fingerprint,
        created_at: ctx.now,
        updated_at: ctx.now,
        organization_id: project_id.clone(),
        project_id,
        disabled: false,
    });
    let i = w.ssh_keys.len() - 1;
    Ok(Reply::ok(w.ssh_keys[i].json(w)))
}

fn list(w: &mut World, ctx: &Ctx, r: &Req) -> ApiResult {
    let q = r.query;
    let order = q.order_by(
        &[
            "created_at_asc",
            "created_at_desc",
            "updated_at_asc",
            "updated_at_desc",
            "name_asc",
            "name_desc",
        ],
        "created_at_asc",
    )?;
    let project = q.uuid("project_id")?;
    let org = q.uuid("organization_id")?;
    let name = q.text("name");
    let disabled = q.bool("disabled")?;
    q.paging()?;
    let mut items: Vec<Value> = w
        .ssh_keys
        .iter()
        .filter(|k| project.as_ref().is_none_or(|p| &k.project_id == p))
        .filter(|k| org.as_ref().is_none_or(|o| &k.organization_id == o))
        .filter(|k| name.as_ref().is_none_or(|n| k.name.contains(n.as_str())))
        .filter(|k| disabled.is_none_or(|d| k.disabled == d))
        .map(|k| k.json(w))
        .collect();
    items = w.filter_hidden(items);
    sort_items(&mut items, &order);
    page_of(items, q, "ssh_keys", ctx.total_count_delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_the_recording() {
        // From iam--ssh-key-basic: the API strips the comment and shows this fingerprint.
        let (key, fp) = parse_public_key(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICJEoOOgQBLJPs4g/XcPTKT82NywNPpxeuA20FlOPlpO opensource@scaleway.com",
        )
        .unwrap_or_default();
        assert_eq!(
            key,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICJEoOOgQBLJPs4g/XcPTKT82NywNPpxeuA20FlOPlpO"
        );
        assert_eq!(
            fp,
            "256 MD5:6b:cd:72:8a:ae:45:24:4b:2b:72:f6:d0:6a:8d:16:06 (ssh-ed25519)"
        );
    }

    #[test]
    fn bad_keys() {
        assert!(parse_public_key("ssh-foo AAAA").is_err());
        assert!(parse_public_key("ssh-ed25519 !!!").is_err());
        assert!(
            parse_public_key("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAICJEoOOgQBLJPs4g/XcPTKT82NywNPpxeuA20FlOPlpO").is_err()
        );
    }
}
