//! Attaching and detaching flexible IPs (several at once, as Scaleway's
//! `attach`/`detach` take a list), and what a server's deletion does to
//! them.

use super::*;

pub fn apply_set(w: &mut World, id: &str, at: f64, status: String, server: Option<Option<String>>, mac: MacOp) {
    if let Some(f) = w.fips.iter_mut().find(|f| f.id == id) {
        f.status = status;
        f.updated_at = at;
        if let Some(s) = server {
            f.server_id = s;
        }
        match mac {
            MacOp::Keep => {}
            MacOp::Remove => f.mac = None,
            MacOp::Status(s) => {
                if let Some(m) = f.mac.as_mut() {
                    m.status = s;
                    m.updated_at = at;
                }
            }
        }
    }
}

pub(super) fn fips_arg(w: &mut World, zone: &str, r: &Req) -> Result<Vec<usize>, Reply> {
    let ids = Body(r.body).uuids("fips_ids")?.unwrap_or_default();
    if ids.is_empty() {
        return Err(invalid("fips_ids", "required", "at least one flexible IP is required"));
    }
    let mut idx = Vec::new();
    for id in &ids {
        let i = get_index(w, zone, id, "read")?;
        if w.fips[i].transient() {
            return Err(transient("flexible_ip", id, &w.fips[i].status.clone()));
        }
        if !idx.contains(&i) {
            idx.push(i);
        }
    }
    if idx.len() > 1 {
        let macs: Vec<Option<String>> = idx
            .iter()
            .map(|&i| w.fips[i].mac.as_ref().map(|m| m.mac_address.clone()))
            .collect();
        let first = &macs[0];
        if first.is_none() || macs.iter().any(|m| m != first) {
            return Err(invalid(
                "fips_ids",
                "constraint",
                "several flexible IPs can only be attached or detached together when they share one MAC address",
            ));
        }
    }
    Ok(idx)
}

pub(super) fn batch_reply(w: &World, idx: &[usize]) -> ApiResult {
    let items: Vec<Value> = idx.iter().map(|&i| w.fips[i].json(w)).collect();
    Ok(Reply::ok(json!({"total_count": items.len(), "flexible_ips": items})))
}

pub(super) fn attach(w: &mut World, ctx: &Ctx, zone: &str, r: &Req) -> ApiResult {
    let server_id = Body(r.body).required_uuid("server_id")?;
    let idx = fips_arg(w, zone, r)?;
    check_server(w, zone, &server_id)?;
    for &i in &idx {
        if w.fips[i].status == "attached" && w.fips[i].server_id.as_deref() == Some(server_id.as_str()) {
            continue;
        }
        let id = w.fips[i].id.clone();
        let has_mac = w.fips[i].mac.is_some();
        w.fips[i].status = "updating".into();
        w.fips[i].updated_at = ctx.now;
        if let Some(m) = w.fips[i].mac.as_mut() {
            m.status = "updating".into();
            m.updated_at = ctx.now;
        }
        let mac = if has_mac {
            MacOp::Status("used".into())
        } else {
            MacOp::Keep
        };
        w.chain(
            ctx,
            &id,
            "status",
            vec![(
                ATTACH_SECONDS,
                Action::FipSet {
                    status: "attached".into(),
                    server: Some(Some(server_id.clone())),
                    mac,
                },
            )],
        );
    }
    batch_reply(w, &idx)
}

/// Starts detaching FIP `i` (`detaching`, server kept) for `seconds`.
pub fn start_detach(w: &mut World, ctx: &Ctx, i: usize, seconds: f64) {
    let id = w.fips[i].id.clone();
    let has_mac = w.fips[i].mac.is_some();
    w.fips[i].status = "detaching".into();
    w.fips[i].updated_at = ctx.now;
    let mac = if has_mac {
        MacOp::Status("ready".into())
    } else {
        MacOp::Keep
    };
    w.chain(
        ctx,
        &id,
        "status",
        vec![(
            seconds,
            Action::FipSet {
                status: "ready".into(),
                server: Some(None),
                mac,
            },
        )],
    );
}

pub(super) fn detach(w: &mut World, ctx: &Ctx, zone: &str, r: &Req) -> ApiResult {
    let idx = fips_arg(w, zone, r)?;
    for &i in &idx {
        if w.fips[i].status == "attached" {
            start_detach(w, ctx, i, DETACH_SECONDS);
        }
    }
    batch_reply(w, &idx)
}

/// Called when a server is deleted: its FIPs go `detaching` → `ready`.
pub fn server_deleted(w: &mut World, ctx: &Ctx, server_id: &str) {
    let targets: Vec<usize> = w
        .fips
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            f.server_id.as_deref() == Some(server_id)
                || w.events.iter().any(|e| {
                    e.id == f.id && matches!(&e.action, Action::FipSet { server: Some(Some(s)), .. } if s == server_id)
                })
        })
        .map(|(i, _)| i)
        .collect();
    // A plain context: a fault rule on the server delete must not bend these.
    let plain = Ctx::new(ctx.now);
    for i in targets {
        if w.fips[i].server_id.is_some() {
            start_detach(w, &plain, i, SERVER_GONE_DETACH_SECONDS);
        } else {
            // Attach still pending: it never completes.
            let id = w.fips[i].id.clone();
            w.cancel(&id, None);
            w.fips[i].status = "ready".into();
            w.fips[i].updated_at = ctx.now;
        }
    }
}
