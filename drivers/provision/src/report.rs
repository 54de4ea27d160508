//! What the commands print: the text summaries, and the JSON documents of
//! `--json` (one stable shape per kind, documented in the README under
//! "JSON output"; fields are only ever added, with `"format": 1`).

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::one;
use crate::provider::Provider;
use crate::state::{Pending, ProvisionState};

/// The version of every JSON document printed.
pub const FORMAT: u32 = 1;

/// The summary printed after a command: what the provision has, with ids and addresses.
pub fn summary(s: &ProvisionState, ranges: Option<&[one::PublicRange]>) -> String {
    let mut out = format!("provision {} ({}): {}\n", s.name, s.id, s.phase.as_str());
    let row = |out: &mut String, k: &str, v: String| out.push_str(&format!("  {k:<19}{v}\n"));
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let id = |o: Option<i64>| o.map_or_else(|| "-".into(), |i| i.to_string());
    row(&mut out, "VPC", opt(&s.vpc));
    row(&mut out, "private network", opt(&s.private_network));
    row(&mut out, "public gateway", opt(&s.gateway));
    for h in &s.hosts {
        row(
            &mut out,
            &format!("host {}", h.index),
            format!(
                "{}  server {}  public {}  private {}  OpenNebula host {}",
                h.name,
                opt(&h.server_id),
                h.public_ip.map_or_else(|| "-".into(), |i: Ipv4Addr| i.to_string()),
                h.private_ip.map_or_else(|| "-".into(), |i: Ipv4Addr| i.to_string()),
                id(h.one_id)
            ),
        );
    }
    row(&mut out, "OpenNebula cluster", id(s.one.cluster));
    row(
        &mut out,
        "datastores",
        format!(
            "image {}, system {}",
            id(s.one.image_datastore),
            id(s.one.system_datastore)
        ),
    );
    row(&mut out, "public network", id(s.one.public_network));
    if let Some(ranges) = ranges {
        for r in ranges {
            row(
                &mut out,
                &format!("  range {}", r.ar_id),
                format!(
                    "flexible IP {}  VM address {}{}",
                    r.external_ip.clone().unwrap_or_else(|| "-".into()),
                    r.ip.clone().unwrap_or_else(|| "-".into()),
                    if r.used_leases > 0 { "  (in use)" } else { "" }
                ),
            );
        }
    }
    row(&mut out, "private template", id(s.one.private_template));
    if let Some(p) = &s.pending {
        row(&mut out, "unfinished", format!("{p:?}"));
    }
    if let Some(e) = &s.last_error {
        row(&mut out, "last error", e.lines().next().unwrap_or_default().to_owned());
    }
    out
}

fn pending_name(p: &Pending) -> &'static str {
    match p {
        Pending::HostAdd { .. } => "host_add",
        Pending::HostDelete { .. } => "host_delete",
        Pending::IpAdd { .. } => "ip_add",
    }
}

/// A provision as one JSON object. `ranges` is `None` when oned could not
/// be asked (then `public_ips` is `null`).
pub fn provision_json(s: &ProvisionState, ranges: Option<&[one::PublicRange]>) -> Value {
    let ip = |a: Option<Ipv4Addr>| a.map(|a| a.to_string());
    json!({
        "name": s.name,
        "id": s.id,
        "phase": s.phase.as_str(),
        "provider": s.provider,
        "zone": s.zone,
        "hypervisor": s.hypervisor,
        "opennebula_version": s.opennebula_version,
        "created_at": s.created_at,
        "unfinished": s.pending.as_ref().map(pending_name),
        "last_error": s.last_error,
        "scaleway": {
            "project_id": s.project_id,
            "vpc": s.vpc,
            "private_network": s.private_network,
            "public_gateway": s.gateway,
            "gateway_network": s.gateway_network,
            "ssh_keys": s.ssh_keys.iter().map(|k| json!({"id": k.id, "name": k.name, "ours": k.ours})).collect::<Vec<_>>(),
        },
        "hosts": s.hosts.iter().map(|h| json!({
            "index": h.index,
            "name": h.name,
            "server_id": h.server_id,
            "public_ip": ip(h.public_ip),
            "private_ip": ip(h.private_ip),
            "vlan": h.vlan,
            "bootstrapped": h.bootstrapped,
            "opennebula_host": h.one_id,
        })).collect::<Vec<_>>(),
        "opennebula": {
            "cluster": s.one.cluster,
            "image_datastore": s.one.image_datastore,
            "system_datastore": s.one.system_datastore,
            "public_network": s.one.public_network,
            "private_template": s.one.private_template,
        },
        "public_ips": ranges.map(|rs| rs.iter().map(|r| json!({
            "address_range": r.ar_id,
            "flexible_ip": r.external_ip,
            "vm_address": r.ip,
            "in_use": r.used_leases > 0,
        })).collect::<Vec<_>>()),
    })
}

/// A document: `{"format": 1, <key>: value}`, pretty, with a final newline.
pub fn document(key: &str, value: Value) -> String {
    let mut doc = serde_json::Map::new();
    doc.insert("format".into(), json!(FORMAT));
    doc.insert(key.into(), value);
    let mut text = serde_json::to_string_pretty(&Value::Object(doc)).unwrap_or_default();
    text.push('\n');
    text
}

/// A line of `list`.
pub fn list_entry(s: &ProvisionState) -> Value {
    json!({
        "name": s.name,
        "id": s.id,
        "phase": s.phase.as_str(),
        "provider": s.provider,
        "zone": s.zone,
        "hosts": s.hosts.len(),
        "created_at": s.created_at,
        "unfinished": s.pending.as_ref().map(pending_name),
    })
}

/// A provider as one JSON object.
pub fn provider_json(id: i64, p: &Provider) -> Value {
    json!({
        "id": id,
        "name": p.name,
        "description": p.description,
        "zone": p.zone,
        "profile": p.profile,
        "defaults": {
            "offer": p.defaults.offer,
            "os": p.defaults.os,
            "subscription_period": p.defaults.subscription_period,
        },
    })
}

/// A provider as text.
pub fn provider_text(id: i64, p: &Provider) -> String {
    let row = |k: &str, v: &str| format!("  {k:<22}{v}\n");
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let mut out = format!("provider {} (document {id})\n", p.name);
    out += &row(
        "description",
        if p.description.is_empty() { "-" } else { &p.description },
    );
    out += &row("zone", &p.zone);
    out += &row("credentials profile", &opt(&p.profile));
    out += &row("default offer", &opt(&p.defaults.offer));
    out += &row("default OS", &opt(&p.defaults.os));
    out += &row("default billing", &opt(&p.defaults.subscription_period));
    out
}
