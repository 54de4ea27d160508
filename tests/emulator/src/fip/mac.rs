//! Virtual MAC addresses of flexible IPs: generate, duplicate, move,
//! delete, each through `updating` when the IP is attached.

use super::*;

pub(super) fn new_mac(w: &mut World, mac_type: &str, now: f64) -> Mac {
    let prefix = match mac_type {
        "vmware" => "00:50:56",
        "xen" => "00:16:3e",
        _ => "52:54:00",
    };
    let n = w.rng.next_u64();
    Mac {
        id: w.new_id(),
        mac_address: format!(
            "{prefix}:{:02x}:{:02x}:{:02x}",
            (n >> 16) & 0xff,
            (n >> 8) & 0xff,
            n & 0xff
        ),
        mac_type: mac_type.to_string(),
        status: "ready".into(),
        created_at: now,
        updated_at: now,
    }
}

/// Gives FIP `i` the MAC `mac`, going through `updating` when attached.
pub(super) fn put_mac(w: &mut World, ctx: &Ctx, i: usize, mut mac: Mac) {
    let id = w.fips[i].id.clone();
    if w.fips[i].status == "attached" {
        mac.status = "updating".into();
        w.fips[i].status = "updating".into();
        w.fips[i].mac = Some(mac);
        w.chain(
            ctx,
            &id,
            "status",
            vec![(
                ATTACH_SECONDS,
                Action::FipSet {
                    status: "attached".into(),
                    server: None,
                    mac: MacOp::Status("used".into()),
                },
            )],
        );
    } else {
        mac.status = "ready".into();
        w.fips[i].mac = Some(mac);
    }
    w.fips[i].updated_at = ctx.now;
}

pub(super) fn mac_precheck(w: &World, i: usize) -> Result<(), Reply> {
    let f = &w.fips[i];
    if f.transient() {
        return Err(transient("flexible_ip", &f.id, &f.status));
    }
    Ok(())
}

pub(super) fn mac_generate(w: &mut World, ctx: &Ctx, zone: &str, id: &str, r: &Req) -> ApiResult {
    let i = mac_index(w, zone, id)?;
    let mac_type = Body(r.body).required_str("mac_type")?;
    if !["kvm", "vmware", "xen"].contains(&mac_type.as_str()) {
        return Err(invalid("mac_type", "constraint", "must be one of kvm, vmware, xen"));
    }
    mac_precheck(w, i)?;
    if w.fips[i].mac.is_some() {
        return Err(invalid(
            "fip_id",
            "constraint",
            "the flexible IP already has a virtual MAC address",
        ));
    }
    let mac = new_mac(w, &mac_type, ctx.now);
    put_mac(w, ctx, i, mac);
    Ok(Reply::ok(w.fips[i].json(w)))
}

pub(super) fn mac_duplicate(w: &mut World, ctx: &Ctx, zone: &str, id: &str, r: &Req) -> ApiResult {
    let i = mac_index(w, zone, id)?;
    let src_id = Body(r.body).required_uuid("duplicate_from_fip_id")?;
    let s = mac_index(w, zone, &src_id)?;
    mac_precheck(w, i)?;
    mac_precheck(w, s)?;
    let Some(src_mac) = w.fips[s].mac.clone() else {
        return Err(invalid(
            "duplicate_from_fip_id",
            "constraint",
            "the source flexible IP has no virtual MAC address",
        ));
    };
    if w.fips[i].mac.is_some() {
        return Err(invalid(
            "fip_id",
            "constraint",
            "the flexible IP already has a virtual MAC address",
        ));
    }
    let same_server = w.fips[i].server_id.is_some() && w.fips[i].server_id == w.fips[s].server_id;
    if !same_server {
        return Err(invalid(
            "duplicate_from_fip_id",
            "constraint",
            "both flexible IPs must be attached to the same server",
        ));
    }
    let mut mac = src_mac;
    mac.id = w.new_id();
    mac.created_at = ctx.now;
    mac.updated_at = ctx.now;
    put_mac(w, ctx, i, mac);
    Ok(Reply::ok(w.fips[i].json(w)))
}

pub(super) fn mac_move(w: &mut World, ctx: &Ctx, zone: &str, id: &str, r: &Req) -> ApiResult {
    let i = mac_index(w, zone, id)?;
    let dst_id = Body(r.body).required_uuid("dst_fip_id")?;
    let d = mac_index(w, zone, &dst_id)?;
    mac_precheck(w, i)?;
    mac_precheck(w, d)?;
    let Some(mac) = w.fips[i].mac.clone() else {
        return Err(invalid(
            "fip_id",
            "constraint",
            "the flexible IP has no virtual MAC address",
        ));
    };
    if i != d {
        if w.fips[d].mac.is_some() {
            return Err(invalid(
                "dst_fip_id",
                "constraint",
                "the destination already has a virtual MAC address",
            ));
        }
        w.fips[i].mac = None;
        w.fips[i].updated_at = ctx.now;
        put_mac(w, ctx, d, mac);
    }
    Ok(Reply::ok(w.fips[i].json(w)))
}

pub(super) fn mac_delete(w: &mut World, ctx: &Ctx, zone: &str, id: &str) -> ApiResult {
    let i = mac_index(w, zone, id)?;
    mac_precheck(w, i)?;
    if w.fips[i].mac.is_none() {
        return Err(not_found("mac_address", id));
    }
    if w.fips[i].status == "attached" {
        w.fips[i].status = "updating".into();
        w.fips[i].updated_at = ctx.now;
        if let Some(m) = w.fips[i].mac.as_mut() {
            m.status = "deleting".into();
            m.updated_at = ctx.now;
        }
        w.chain(
            ctx,
            id,
            "status",
            vec![(
                ATTACH_SECONDS,
                Action::FipSet {
                    status: "attached".into(),
                    server: None,
                    mac: MacOp::Remove,
                },
            )],
        );
    } else {
        w.fips[i].mac = None;
        w.fips[i].updated_at = ctx.now;
    }
    Ok(Reply::no_content())
}
