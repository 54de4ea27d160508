//! The control API under `/_emulator/` (no authentication). See the crate
//! documentation for the request and response shapes.

use serde_json::{Value, json};

use crate::errors::{Reply, invalid};
use crate::faults::Rule;
use crate::http::{Request, Response};
use crate::server::{Shared, to_response};
use crate::world::{EM_ZONES, World};

pub fn handle(shared: &Shared, req: &Request) -> Response {
    let mut w = shared.lock();
    let now = w.now();
    w.settle(now);
    let segs = req.segments();
    let rest: Vec<&str> = segs.iter().skip(1).map(String::as_str).collect();
    let body: Value = if req.body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => return to_response(&invalid("body", "format", &format!("the body is not JSON: {e}"))),
        }
    };
    let reply = match (req.method.as_str(), rest.as_slice()) {
        ("GET", []) => Reply::ok(json!({
            "endpoints": [
                "GET /_emulator/state",
                "GET|DELETE /_emulator/calls",
                "GET|POST|DELETE /_emulator/faults",
                "DELETE /_emulator/faults/{id}",
                "GET|POST /_emulator/clock",
                "GET|PUT /_emulator/speed",
                "GET|POST /_emulator/projects",
                "PUT /_emulator/stock",
                "POST /_emulator/reset",
                "GET /_emulator/network",
            ]
        })),
        ("GET", ["state"]) => Reply::ok(state(&w)),
        ("GET", ["calls"]) => {
            let calls: Vec<Value> = w.calls.iter().map(|c| c.json()).collect();
            Reply::ok(json!({"total_count": calls.len(), "calls": calls}))
        }
        ("DELETE", ["calls"]) => {
            w.calls.clear();
            Reply::no_content()
        }
        ("GET", ["faults"]) => Reply::ok(faults_json(&w)),
        ("POST", ["faults"]) => {
            let id = w.new_id();
            match Rule::parse(&body, id) {
                Ok(rule) => {
                    let v = rule.json();
                    w.faults.push(rule);
                    Reply::ok(v)
                }
                Err(e) => e,
            }
        }
        ("DELETE", ["faults"]) => {
            w.faults.clear();
            Reply::no_content()
        }
        ("DELETE", ["faults", id]) => {
            let before = w.faults.len();
            w.faults.retain(|r| r.id != *id);
            if w.faults.len() == before {
                crate::errors::not_found("fault", id)
            } else {
                Reply::no_content()
            }
        }
        ("GET", ["clock"]) => Reply::ok(clock_json(&w)),
        ("POST", ["clock"]) => clock(&mut w, &body),
        ("GET", ["speed"]) => Reply::ok(json!({ "speed": w.speed })),
        ("PUT", ["speed"]) => match body.get("speed").and_then(Value::as_f64) {
            Some(s) if s >= 0.0 && s.is_finite() => {
                w.speed = s;
                Reply::ok(json!({ "speed": s }))
            }
            _ => invalid("speed", "constraint", "a number >= 0 is required"),
        },
        ("GET", ["projects"]) => Reply::ok(json!({ "projects": w.projects })),
        ("POST", ["projects"]) => match body.get("project_id").and_then(Value::as_str) {
            Some(p) if crate::util::is_uuid(p) => {
                let p = p.to_ascii_lowercase();
                w.register_project(&p);
                let vpcs: Vec<Value> = w
                    .vpcs
                    .iter()
                    .filter(|v| v.is_default && v.project_id == p)
                    .map(|v| v.json(&w))
                    .collect();
                Reply::ok(json!({"project_id": p, "default_vpcs": vpcs}))
            }
            _ => invalid("project_id", "format", "a UUID is required"),
        },
        ("PUT", ["stock"]) => stock(&mut w, &body),
        ("POST", ["reset"]) => {
            w.reset();
            if let Some(net) = &shared.network {
                net.bump_epoch();
            }
            Reply::no_content()
        }
        _ => crate::errors::bare(404, "Not Found"),
    };
    to_response(&reply)
}

fn faults_json(w: &World) -> Value {
    let rules: Vec<Value> = w.faults.iter().map(Rule::json).collect();
    json!({ "faults": rules })
}

fn clock_json(w: &World) -> Value {
    json!({
        "now_seconds": w.now(),
        "mode": if w.clock.is_manual() { "manual" } else { "real" },
        "speed": w.speed,
        "wall": w.stamp(w.now()),
        "pending_transitions": w.events.len(),
    })
}

fn clock(w: &mut World, body: &Value) -> Reply {
    match body.get("mode").and_then(Value::as_str) {
        None => {}
        Some("manual") => w.clock.set_manual(true),
        Some("real") => w.clock.set_manual(false),
        Some(_) => return invalid("mode", "constraint", "must be \"manual\" or \"real\""),
    }
    if let Some(v) = body.get("advance_seconds") {
        match v.as_f64() {
            Some(s) if s >= 0.0 && s.is_finite() => w.clock.advance(s),
            _ => return invalid("advance_seconds", "constraint", "a number >= 0 is required"),
        }
    }
    if let Some(v) = body.get("advance_to") {
        match v.as_f64() {
            Some(t) if t.is_finite() => {
                let now = w.now();
                if t > now {
                    w.clock.advance(t - now);
                }
            }
            _ => return invalid("advance_to", "constraint", "a number is required"),
        }
    }
    let now = w.now();
    w.settle(now);
    Reply::ok(clock_json(w))
}

fn stock(w: &mut World, body: &Value) -> Reply {
    let Some(level) = body.get("stock").and_then(Value::as_str) else {
        return invalid("stock", "required", "one of empty, low, available");
    };
    if !["empty", "low", "available"].contains(&level) {
        return invalid("stock", "constraint", "one of empty, low, available");
    }
    let offers: Vec<Value> = if let Some(id) = body.get("offer_id").and_then(Value::as_str) {
        w.catalogue.offer(id).into_iter().cloned().collect()
    } else if let Some(name) = body.get("offer_name").and_then(Value::as_str) {
        w.catalogue.offer_by_name(name).into_iter().cloned().collect()
    } else {
        return invalid("offer_id", "required", "offer_id or offer_name is required");
    };
    if offers.is_empty() {
        return invalid("offer_id", "constraint", "unknown offer");
    }
    let zones: Vec<String> = match body.get("zone").and_then(Value::as_str) {
        Some(z) if EM_ZONES.contains(&z) => vec![z.to_string()],
        Some(_) => return invalid("zone", "constraint", "unknown zone"),
        None => EM_ZONES.iter().map(|z| z.to_string()).collect(),
    };
    let mut changed = Vec::new();
    for o in &offers {
        let id = o.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        for z in &zones {
            w.stock.insert((z.clone(), id.clone()), level.to_string());
            changed.push(json!({"zone": z, "offer_id": id, "name": o.get("name"), "stock": level}));
        }
    }
    Reply::ok(json!({ "stock": changed }))
}

/// Every resource of every kind (after applying due transitions).
pub fn state(w: &World) -> Value {
    let fips: Vec<Value> = w.fips.iter().map(|x| x.json(w)).collect();
    let servers: Vec<Value> = w.servers.iter().map(|x| x.json(w, false)).collect();
    let spns: Vec<Value> = w.spns.iter().map(|x| x.json(w)).collect();
    let vpcs: Vec<Value> = w.vpcs.iter().filter(|v| !v.is_default).map(|x| x.json(w)).collect();
    let default_vpcs: Vec<Value> = w.vpcs.iter().filter(|v| v.is_default).map(|x| x.json(w)).collect();
    let pns: Vec<Value> = w.pns.iter().map(|x| x.json(w)).collect();
    let gateways: Vec<Value> = w.gateways.iter().map(|x| x.json(w)).collect();
    let gns: Vec<Value> = w.gns.iter().map(|x| x.json(w)).collect();
    let gw_ips: Vec<Value> = w.gw_ips.iter().map(|x| x.json(w)).collect();
    let ipam: Vec<Value> = w.ipam_ips.iter().map(|x| x.json(w)).collect();
    let keys: Vec<Value> = w.ssh_keys.iter().map(|x| x.json(w)).collect();
    let pending: Vec<Value> = w
        .events
        .iter()
        .map(|e| json!({"at": e.at, "resource_id": e.id, "lane": e.lane, "action": format!("{:?}", e.action)}))
        .collect();
    let counts = json!({
        "flexible_ips": fips.len(),
        "servers": servers.len(),
        "server_private_networks": spns.len(),
        "vpcs": vpcs.len(),
        "private_networks": pns.len(),
        "gateways": gateways.len(),
        "gateway_networks": gns.len(),
        "gateway_ips": gw_ips.len(),
        "ipam_ips": ipam.len(),
        "ssh_keys": keys.len(),
    });
    let empty = counts
        .as_object()
        .is_some_and(|m| m.values().all(|v| v.as_u64() == Some(0)));
    json!({
        "now_seconds": w.now(),
        "empty": empty,
        "counts": counts,
        "flexible_ips": fips,
        "servers": servers,
        "server_private_networks": spns,
        "vpcs": vpcs,
        "default_vpcs": default_vpcs,
        "private_networks": pns,
        "gateways": gateways,
        "gateway_networks": gns,
        "gateway_ips": gw_ips,
        "ipam_ips": ipam,
        "ssh_keys": keys,
        "pending_transitions": pending,
    })
}
