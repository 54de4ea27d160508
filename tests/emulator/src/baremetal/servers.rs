//! A server's life after its creation: list, update, install, power
//! actions, options, delete.

use serde_json::Value;

use super::*;

pub(super) fn list_servers(w: &mut World, ctx: &Ctx, zone: &str, r: &Req) -> ApiResult {
    let q = r.query;
    let order = q.order_by(&["created_at_asc", "created_at_desc"], "created_at_asc")?;
    let tags = q.all("tags");
    let statuses = q.all("status");
    let name = q.text("name");
    let project = q.uuid("project_id")?;
    let org = q.uuid("organization_id")?;
    let option = q.uuid("option_id")?;
    q.paging()?;
    let mut items: Vec<Value> = w
        .servers
        .iter()
        .filter(|s| s.zone == zone)
        .filter(|s| tags_match(&s.tags, &tags))
        .filter(|s| statuses.is_empty() || statuses.contains(&s.status))
        .filter(|s| name.as_ref().is_none_or(|n| s.name.contains(n.as_str())))
        .filter(|s| project.as_ref().is_none_or(|p| &s.project_id == p))
        .filter(|s| org.as_ref().is_none_or(|o| &s.organization_id == o))
        .filter(|s| {
            option
                .as_ref()
                .is_none_or(|o| s.options.iter().any(|x| &super::s(&x.base, "id") == o))
        })
        .map(|s| s.json(w, false))
        .collect();
    items = w.filter_hidden(items);
    sort_items(&mut items, &order);
    page_of(items, q, "servers", ctx.total_count_delta)
}

pub(super) fn patch(w: &mut World, ctx: &Ctx, zone: &str, id: &str, r: &Req) -> ApiResult {
    let i = server_index(w, zone, id)?;
    let b = Body(r.body);
    let name = b.str_max("name", 255)?;
    let description = b.str_max("description", 255)?;
    let tags = b.strs("tags")?;
    let protected = b.bool("protected")?;
    let user_data = b.str("user_data")?;
    if user_data.is_some() {
        let offer = w
            .catalogue
            .offer(&w.servers[i].offer_id)
            .cloned()
            .unwrap_or(Value::Null);
        if !has_cloud_init(&offer) {
            return Err(bare(503, CLOUD_INIT_UNSUPPORTED));
        }
    }
    let srv = &mut w.servers[i];
    if let Some(n) = name {
        srv.name = n;
    }
    if let Some(d) = description {
        srv.description = d;
    }
    if let Some(t) = tags {
        srv.tags = t;
    }
    if let Some(p) = protected {
        srv.protected = p;
        srv.show_protected = true;
    }
    if let Some(u) = user_data {
        srv.user_data = Some(u);
        srv.show_protected = true;
    }
    srv.updated_at = ctx.now;
    Ok(Reply::ok(w.servers[i].json(w, false)))
}

pub(super) fn check_not_transient(srv: &Server) -> Result<(), Reply> {
    if TRANSIENT.contains(&srv.status.as_str()) {
        return Err(transient("server", &srv.id, &srv.status));
    }
    Ok(())
}

pub(super) fn delete(w: &mut World, ctx: &Ctx, zone: &str, id: &str) -> ApiResult {
    let i = server_index(w, zone, id)?;
    check_not_transient(&w.servers[i])?;
    if w.servers[i].protected {
        return Err(precondition(
            "protected_resource",
            "the server is protected; unprotect it first",
        ));
    }
    let now = ctx.now;
    let srv = &mut w.servers[i];
    srv.status = "deleting".into();
    srv.updated_at = now;
    // The answer still shows the options enabled; the next read shows them
    // `option_status_disabling` [rec].
    let answer = w.servers[i].json(w, false);
    for o in &mut w.servers[i].options {
        o.status = "option_status_disabling".into();
    }
    w.cancel(id, None);
    w.chain(ctx, id, "status", vec![(DELETE_SECONDS, Action::ServerRemove)]);
    crate::fip::server_deleted(w, ctx, id);
    crate::bmpn::server_deleted(w, ctx, id);
    Ok(Reply::ok(answer))
}

/// Removes a server for good, with its private network mappings.
pub fn remove(w: &mut World, id: &str) {
    w.cancel(id, None);
    w.servers.retain(|s| s.id != id);
    let spns: Vec<String> = w
        .spns
        .iter()
        .filter(|m| m.server_id == id)
        .map(|m| m.id.clone())
        .collect();
    for m in spns {
        crate::bmpn::remove(w, &m);
    }
}

pub(super) fn install(w: &mut World, ctx: &mut Ctx, zone: &str, id: &str, r: &Req) -> ApiResult {
    let i = server_index(w, zone, id)?;
    check_not_transient(&w.servers[i])?;
    if let Some(inst) = &w.servers[i].install
        && matches!(inst.status.as_str(), "to_install" | "installing")
    {
        return Err(transient("server", id, &inst.status));
    }
    if !matches!(w.servers[i].status.as_str(), "ready" | "stopped") {
        return Err(invalid(
            "server_id",
            "constraint",
            "the server must be ready or stopped to install it",
        ));
    }
    let offer = w
        .catalogue
        .offer(&w.servers[i].offer_id)
        .cloned()
        .unwrap_or(Value::Null);
    let inst = parse_install(w, &offer, r.body, "")?;
    let srv = &mut w.servers[i];
    srv.install = Some(inst);
    srv.installed = false;
    srv.updated_at = ctx.now;
    ctx.has_install = true;
    w.chain(
        ctx,
        id,
        "install",
        vec![
            (REINSTALL_START_SECONDS, Action::InstallStatus("installing".into())),
            (
                REINSTALL_START_SECONDS + INSTALLING_SECONDS,
                Action::InstallStatus("completed".into()),
            ),
        ],
    );
    Ok(Reply::ok(w.servers[i].json(w, false)))
}

pub(super) fn power(w: &mut World, ctx: &Ctx, zone: &str, id: &str, action: &str) -> ApiResult {
    let i = server_index(w, zone, id)?;
    check_not_transient(&w.servers[i])?;
    let status = w.servers[i].status.clone();
    let (now_status, steps) = match (action, status.as_str()) {
        ("stop", "ready") => ("stopping", vec![(STOP_SECONDS, Action::ServerStatus("stopped".into()))]),
        ("start", "stopped") => ("starting", vec![(START_SECONDS, Action::ServerStatus("ready".into()))]),
        ("reboot", "ready") => (
            "stopping",
            vec![
                (REBOOT_STOPPING_SECONDS, Action::ServerStatus("starting".into())),
                (
                    REBOOT_STOPPING_SECONDS + START_SECONDS,
                    Action::ServerStatus("ready".into()),
                ),
            ],
        ),
        _ => {
            return Err(invalid(
                "server_id",
                "constraint",
                &format!("cannot {action} a server in status {status}"),
            ));
        }
    };
    let srv = &mut w.servers[i];
    srv.status = now_status.into();
    srv.updated_at = ctx.now;
    w.chain(ctx, id, "status", steps);
    Ok(Reply::ok(w.servers[i].json(w, false)))
}

pub(super) fn add_option(w: &mut World, ctx: &Ctx, zone: &str, id: &str, option_id: &str) -> ApiResult {
    let i = server_index(w, zone, id)?;
    check_not_transient(&w.servers[i])?;
    let offer = w
        .catalogue
        .offer(&w.servers[i].offer_id)
        .cloned()
        .unwrap_or(Value::Null);
    let base = offer_option(&offer, option_id).ok_or_else(|| {
        invalid(
            "option_id",
            "constraint",
            "this option is not available on the server's offer",
        )
    })?;
    if w.servers[i].options.iter().any(|o| s(&o.base, "id") == option_id) {
        return Err(invalid(
            "option_id",
            "constraint",
            "this option is already enabled on the server",
        ));
    }
    w.servers[i].options.push(ServerOption {
        base,
        status: "option_status_enabling".into(),
    });
    w.servers[i].updated_at = ctx.now;
    w.chain(
        ctx,
        id,
        &format!("option:{option_id}"),
        vec![(
            OPTION_SECONDS,
            Action::OptionStatus {
                option_id: option_id.to_string(),
                status: "option_status_enable".into(),
            },
        )],
    );
    Ok(Reply::ok(w.servers[i].json(w, false)))
}

pub(super) fn delete_option(w: &mut World, ctx: &Ctx, zone: &str, id: &str, option_id: &str) -> ApiResult {
    let i = server_index(w, zone, id)?;
    check_not_transient(&w.servers[i])?;
    let Some(o) = w.servers[i].options.iter_mut().find(|o| s(&o.base, "id") == option_id) else {
        return Err(invalid(
            "option_id",
            "constraint",
            "this option is not enabled on the server",
        ));
    };
    o.status = "option_status_disabling".into();
    w.servers[i].updated_at = ctx.now;
    w.chain(
        ctx,
        id,
        &format!("option:{option_id}"),
        vec![(
            OPTION_SECONDS,
            Action::OptionRemove {
                option_id: option_id.to_string(),
            },
        )],
    );
    Ok(Reply::ok(w.servers[i].json(w, false)))
}
