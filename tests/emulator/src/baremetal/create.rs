//! `POST /servers`: the install request checked as Scaleway checks it, the
//! server ordered.

use serde_json::{Map, Value, json};

use super::*;

/// Validates an `install` object against the catalogue and IAM keys.
pub(super) fn parse_install(w: &World, offer: &Value, v: &Value, prefix: &str) -> Result<Install, Reply> {
    let b = Body(v);
    let arg = |k: &str| format!("{prefix}{k}");
    let os_id = b
        .uuid("os_id")
        .map_err(|_| invalid(&arg("os_id"), "format", "must be a UUID"))?;
    let os_id = os_id.ok_or_else(|| invalid(&arg("os_id"), "required", "field is required"))?;
    let os = w
        .catalogue
        .os(&os_id)
        .ok_or_else(|| invalid(&arg("os_id"), "constraint", "unknown OS"))?;
    let incompatible = offer
        .get("incompatible_os_ids")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x == &json!(os_id)));
    if incompatible {
        return Err(invalid(
            &arg("os_id"),
            "constraint",
            "this OS is not compatible with the offer",
        ));
    }
    let hostname = b.str("hostname")?.unwrap_or_default();
    let ssh_key_ids = b.uuids("ssh_key_ids")?.unwrap_or_default();
    for k in &ssh_key_ids {
        if !w.ssh_keys.iter().any(|key| &key.id == k) {
            return Err(invalid(
                &arg("ssh_key_ids"),
                "constraint",
                &format!("unknown SSH key {k}"),
            ));
        }
    }
    let requirement = |field: &str| -> (bool, Option<String>) {
        let r = os.get(field);
        (
            r.and_then(|x| x.get("required"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
            r.and_then(|x| x.get("default_value"))
                .and_then(Value::as_str)
                .map(str::to_string),
        )
    };
    let (ssh_required, ssh_default) = requirement("ssh");
    if ssh_required && ssh_default.is_none() && ssh_key_ids.is_empty() {
        return Err(invalid(
            &arg("ssh_key_ids"),
            "required",
            "this OS needs at least one SSH key",
        ));
    }
    for (field, key) in [
        ("user", "user"),
        ("password", "password"),
        ("service_user", "service_user"),
    ] {
        let (required, default) = requirement(field);
        if required && default.is_none() && b.str(key)?.is_none() {
            return Err(invalid(&arg(key), "required", &format!("this OS needs {key}")));
        }
    }
    let user = b
        .str("user")?
        .or_else(|| requirement("user").1)
        .unwrap_or_else(|| "root".into());
    let service_user = b
        .str("service_user")?
        .or_else(|| requirement("service_user").1)
        .unwrap_or_default();
    let partitioning_schema = match b.object("partitioning_schema")? {
        Some(p) => p.clone(),
        None => partitioning_schema(offer),
    };
    Ok(Install {
        os_id,
        hostname,
        ssh_key_ids,
        status: "to_install".into(),
        user,
        service_user,
        partitioning_schema,
    })
}

pub(super) fn offer_option(offer: &Value, option_id: &str) -> Option<Value> {
    let o = offer
        .get("options")?
        .as_array()?
        .iter()
        .find(|o| s(o, "id") == option_id)?;
    let mut m = Map::new();
    if let Some(obj) = o.as_object() {
        for (k, v) in obj {
            if !["enabled", "os_id", "price", "subscription_period"].contains(&k.as_str()) {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    Some(Value::Object(m))
}

pub(super) fn has_cloud_init(offer: &Value) -> bool {
    offer
        .get("tags")
        .and_then(Value::as_array)
        .is_some_and(|t| t.iter().any(|x| x == "cloud-init"))
}

pub(super) const CLOUD_INIT_UNSUPPORTED: &str = "cloud-init is not supported on this offer";

pub(super) fn ip_pool(zone: &str) -> (&'static str, u64) {
    match zone {
        "fr-par-1" => ("62.210", 158),
        "fr-par-2" => ("195.154", 100),
        "nl-ams-1" => ("51.15", 1),
        "nl-ams-2" => ("51.158", 200),
        "pl-waw-2" => ("151.115", 200),
        _ => ("151.115", 220),
    }
}

pub(super) fn create(w: &mut World, ctx: &mut Ctx, zone: &str, r: &Req) -> ApiResult {
    let b = Body(r.body);
    let offer_id = b.required_uuid("offer_id")?;
    let offer = w
        .catalogue
        .offer(&offer_id)
        .cloned()
        .ok_or_else(|| invalid("offer_id", "constraint", "unknown offer"))?;
    let project_id = b.uuid("project_id")?;
    let organization_id = b.uuid("organization_id")?;
    let project_id = match (project_id, organization_id) {
        (Some(p), _) => p,
        (None, Some(o)) => o,
        (None, None) => {
            return Err(invalid(
                "project_id",
                "required",
                "project_id or organization_id is required",
            ));
        }
    };
    let name = b.str_max("name", 255)?.unwrap_or_default();
    let description = b.str_max("description", 255)?.unwrap_or_default();
    let tags = b.strs("tags")?.unwrap_or_default();
    let protected = b.bool("protected")?;
    let user_data = b.str("user_data")?;
    let option_ids = b.uuids("option_ids")?.unwrap_or_default();
    let install = match b.object("install")? {
        Some(v) => Some(parse_install(w, &offer, v, "install.")?),
        None => None,
    };
    let mut options = Vec::new();
    for o in &option_ids {
        let base = offer_option(&offer, o).ok_or_else(|| {
            invalid(
                "option_ids",
                "constraint",
                &format!("option {o} is not available on this offer"),
            )
        })?;
        options.push(ServerOption {
            base,
            status: "option_status_enabling".into(),
        });
    }
    if user_data.is_some() && !has_cloud_init(&offer) {
        return Err(bare(503, CLOUD_INIT_UNSUPPORTED));
    }
    let out_of_stock_status = ctx.out_of_stock_accept || stock_of(w, zone, &offer) == "empty";
    if out_of_stock_status && !ctx.out_of_stock_accept {
        return Err(out_of_stock(&s(&offer, "name")));
    }
    let now = ctx.now;
    let id = w.new_id();
    let n = w.counter(&format!("server:{zone}"));
    let (prefix, third) = ip_pool(zone);
    let ipv4 = (w.new_id(), format!("{prefix}.{}.{}", third + n / 250, 2 + n % 250));
    let ipv6 = (
        w.new_id(),
        format!(
            "2001:bc8:1201:{:x}:b683:51ff:fe0f:{:x}",
            0xa00 + n,
            w.rng.range(0x1000, 0xffff)
        ),
    );
    let m = w.rng.next_u64();
    let private_mac = format!(
        "B4:83:51:{:02X}:{:02X}:{:02X}",
        (m >> 16) & 0xff,
        (m >> 8) & 0xff,
        m & 0xff
    );
    let has_install = install.is_some();
    let status = if out_of_stock_status {
        "out_of_stock"
    } else if has_install {
        "ordered"
    } else {
        "delivering"
    };
    let server = Server {
        id: id.clone(),
        zone: zone.to_string(),
        organization_id: project_id.clone(),
        project_id,
        name,
        description,
        tags,
        created_at: now,
        updated_at: now,
        status: status.into(),
        offer_id,
        offer_name: s(&offer, "name"),
        install,
        options,
        protected: protected.unwrap_or(false),
        show_protected: protected.is_some() || user_data.is_some(),
        user_data,
        boot_type: "normal".into(),
        provisioned: false,
        installed: false,
        ipv4,
        ipv6,
        private_mac,
    };
    w.servers.push(server);
    if !out_of_stock_status {
        ctx.has_install = has_install;
        for o in &option_ids {
            w.chain(
                ctx,
                &id,
                &format!("option:{o}"),
                vec![(
                    OPTION_SECONDS,
                    Action::OptionStatus {
                        option_id: o.clone(),
                        status: "option_status_enable".into(),
                    },
                )],
            );
        }
        if has_install {
            w.chain(
                ctx,
                &id,
                "status",
                vec![(ORDERED_SECONDS, Action::ServerStatus("ready".into()))],
            );
            w.chain(
                ctx,
                &id,
                "install",
                vec![
                    (TO_INSTALL_SECONDS, Action::InstallStatus("installing".into())),
                    (
                        TO_INSTALL_SECONDS + INSTALLING_SECONDS,
                        Action::InstallStatus("completed".into()),
                    ),
                ],
            );
        } else {
            w.chain(
                ctx,
                &id,
                "status",
                vec![(DELIVERING_SECONDS, Action::ServerStatus("ready".into()))],
            );
        }
    }
    let i = w.servers.len() - 1;
    Ok(Reply::ok(w.servers[i].json(w, true)))
}
