//! The catalogues: offers (with their stock), OS images, options, and the
//! default partitioning schema.

use serde_json::{Map, Value, json};

use super::*;

/// The fixed catalogue: real offers and OSes (ids are global, the zone is
/// filled in per request), each offer with an hourly and a monthly twin.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    pub offers: Vec<Value>,
    pub os: Vec<Value>,
    /// Options, as `GET /options` lists them.
    pub options: Vec<Value>,
}

pub(super) const OPTION_META: [&str; 5] = ["enabled", "os_id", "price", "subscription_period", "id"];

impl Catalogue {
    pub fn load() -> Self {
        let raw: Value = serde_json::from_str(include_str!("../catalogue.json")).unwrap_or(Value::Null);
        let hourly: Vec<Value> = raw.get("offers").and_then(Value::as_array).cloned().unwrap_or_default();
        let os: Vec<Value> = raw.get("os").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut offers = Vec::new();
        for h in &hourly {
            offers.push(h.clone());
            let mut m = h.clone();
            if let Some(obj) = m.as_object_mut() {
                let monthly_id = obj.get("monthly_offer_id").cloned().unwrap_or(Value::Null);
                let hour = obj.get("price_per_hour").cloned().unwrap_or(Value::Null);
                let nanos_total = hour.get("units").and_then(Value::as_u64).unwrap_or(0) * 1_000_000_000
                    + hour.get("nanos").and_then(Value::as_u64).unwrap_or(0);
                // About 730 hours a month, at a monthly discount.
                let month = nanos_total * 600;
                obj.insert("id".into(), monthly_id);
                obj.insert("monthly_offer_id".into(), Value::Null);
                obj.insert("subscription_period".into(), json!("monthly"));
                obj.insert("price_per_hour".into(), Value::Null);
                obj.insert(
                    "price_per_month".into(),
                    json!({"currency_code": "EUR", "units": month / 1_000_000_000, "nanos": month % 1_000_000_000}),
                );
                if let Some(opts) = obj.get_mut("options").and_then(Value::as_array_mut) {
                    for o in opts {
                        o["subscription_period"] = json!("monthly");
                    }
                }
            }
            offers.push(m);
        }
        let mut options: Vec<Value> = Vec::new();
        for h in &hourly {
            for o in h.get("options").and_then(Value::as_array).into_iter().flatten() {
                let id = o.get("id").cloned().unwrap_or(Value::Null);
                if options.iter().any(|x| x.get("id") == Some(&id)) {
                    continue;
                }
                let mut m = Map::new();
                m.insert("id".into(), id);
                if let Some(obj) = o.as_object() {
                    for (k, v) in obj {
                        if !OPTION_META.contains(&k.as_str()) && k != "id" {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                }
                options.push(Value::Object(m));
            }
        }
        options.sort_by_key(|o| o.get("id").and_then(Value::as_str).unwrap_or("").to_string());
        Catalogue { offers, os, options }
    }

    pub fn offer(&self, id: &str) -> Option<&Value> {
        self.offers
            .iter()
            .find(|o| o.get("id").and_then(Value::as_str) == Some(id))
    }

    pub fn offer_by_name(&self, name: &str) -> Vec<&Value> {
        self.offers
            .iter()
            .filter(|o| o.get("name").and_then(Value::as_str) == Some(name))
            .collect()
    }

    pub fn os(&self, id: &str) -> Option<&Value> {
        self.os.iter().find(|o| o.get("id").and_then(Value::as_str) == Some(id))
    }

    pub fn option(&self, id: &str) -> Option<&Value> {
        self.options
            .iter()
            .find(|o| o.get("id").and_then(Value::as_str) == Some(id))
    }
}

/// The stock of an offer in a zone (overrides from the control API first).
pub fn stock_of(w: &World, zone: &str, offer: &Value) -> String {
    let id = s(offer, "id");
    w.stock
        .get(&(zone.to_string(), id))
        .cloned()
        .unwrap_or_else(|| s(offer, "stock"))
}

pub(super) fn offer_json(w: &World, zone: &str, offer: &Value) -> Value {
    let mut o = offer.clone();
    o["zone"] = json!(zone);
    o["stock"] = json!(stock_of(w, zone, offer));
    o
}

pub(super) fn with_zone(v: &Value, zone: &str) -> Value {
    let mut o = v.clone();
    o["zone"] = json!(zone);
    o
}

/// A default partitioning schema for an offer's disks (RAID 1 over the
/// first two disks when there are two or more).
pub fn partitioning_schema(offer: &Value) -> Value {
    const UEFI: u64 = 536_870_912;
    const SWAP: u64 = 4_294_967_296;
    const BOOT: u64 = 536_870_912;
    let disks: Vec<(String, u64)> = offer
        .get("disks")
        .and_then(Value::as_array)
        .map(|d| {
            d.iter()
                .map(|x| (s(x, "type"), x.get("capacity").and_then(Value::as_u64).unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    let dev = |i: usize, kind: &str| -> (String, String) {
        if kind.eq_ignore_ascii_case("nvme") {
            (format!("/dev/nvme{i}n1"), format!("/dev/nvme{i}n1p"))
        } else {
            let letter = (b'a' + (i as u8 % 26)) as char;
            (format!("/dev/sd{letter}"), format!("/dev/sd{letter}"))
        }
    };
    let part = |label: &str, number: u64, size: u64| json!({"label": label, "number": number, "size": size, "use_all_available_space": false});
    if disks.len() >= 2 {
        let (d0, p0) = dev(0, &disks[0].0);
        let (d1, p1) = dev(1, &disks[1].0);
        let cap = disks[0].1.min(disks[1].1);
        let root = cap.saturating_sub(UEFI + SWAP + BOOT + 1_400_832);
        json!({
            "disks": [
                {"device": d0, "partitions": [part("uefi", 1, UEFI), part("swap", 2, SWAP), part("boot", 3, BOOT), part("root", 4, root)]},
                {"device": d1, "partitions": [part("swap", 1, SWAP), part("boot", 2, BOOT), part("root", 3, root)]},
            ],
            "filesystems": [
                {"device": format!("{p0}1"), "format": "fat32", "mountpoint": "/boot/efi"},
                {"device": "/dev/md0", "format": "ext4", "mountpoint": "/boot"},
                {"device": "/dev/md1", "format": "ext4", "mountpoint": "/"},
            ],
            "raids": [
                {"devices": [format!("{p0}3"), format!("{p1}2")], "level": "raid_level_1", "name": "/dev/md0"},
                {"devices": [format!("{p0}4"), format!("{p1}3")], "level": "raid_level_1", "name": "/dev/md1"},
            ],
            "zfs": {"pools": []},
        })
    } else {
        let (kind, cap) = disks.first().cloned().unwrap_or_else(|| ("SSD".into(), 0));
        let (d0, p0) = dev(0, &kind);
        let root = cap.saturating_sub(UEFI + SWAP + BOOT + 1_400_832);
        json!({
            "disks": [{"device": d0, "partitions": [part("uefi", 1, UEFI), part("swap", 2, SWAP), part("boot", 3, BOOT), part("root", 4, root)]}],
            "filesystems": [
                {"device": format!("{p0}1"), "format": "fat32", "mountpoint": "/boot/efi"},
                {"device": format!("{p0}3"), "format": "ext4", "mountpoint": "/boot"},
                {"device": format!("{p0}4"), "format": "ext4", "mountpoint": "/"},
            ],
            "raids": [],
            "zfs": {"pools": []},
        })
    }
}

pub(super) fn list_offers(w: &mut World, zone: &str, r: &Req) -> ApiResult {
    let q = r.query;
    q.paging()?;
    let period = match q.text("subscription_period").as_deref() {
        None | Some("unknown_subscription_period") | Some("hourly") => "hourly",
        Some("monthly") => "monthly",
        Some(other) => {
            return Err(invalid(
                "subscription_period",
                "constraint",
                &format!("{other:?} must be one of unknown_subscription_period, hourly, monthly"),
            ));
        }
    };
    let name = q.text("name");
    let items: Vec<Value> = w
        .catalogue
        .offers
        .iter()
        .filter(|o| s(o, "subscription_period") == period)
        .filter(|o| name.as_ref().is_none_or(|n| &s(o, "name") == n))
        .map(|o| offer_json(w, zone, o))
        .collect();
    page_of(items, q, "offers", 0)
}

pub(super) fn list_os(w: &mut World, zone: &str, r: &Req) -> ApiResult {
    let q = r.query;
    q.paging()?;
    let incompatible: Vec<String> = match q.uuid("offer_id")? {
        None => Vec::new(),
        Some(id) => match w.catalogue.offer(&id) {
            Some(o) => o
                .get("incompatible_os_ids")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default(),
            None => return Err(invalid("offer_id", "constraint", "unknown offer")),
        },
    };
    let items: Vec<Value> = w
        .catalogue
        .os
        .iter()
        .filter(|o| !incompatible.contains(&s(o, "id")))
        .map(|o| with_zone(o, zone))
        .collect();
    page_of(items, q, "os", 0)
}

pub(super) fn list_options(w: &mut World, r: &Req) -> ApiResult {
    let q = r.query;
    q.paging()?;
    let allowed: Option<Vec<String>> = match q.uuid("offer_id")? {
        None => None,
        Some(id) => match w.catalogue.offer(&id) {
            Some(o) => Some(
                o.get("options")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(|x| s(x, "id")).collect())
                    .unwrap_or_default(),
            ),
            None => return Err(invalid("offer_id", "constraint", "unknown offer")),
        },
    };
    let name = q.text("name");
    let items: Vec<Value> = w
        .catalogue
        .options
        .iter()
        .filter(|o| allowed.as_ref().is_none_or(|a| a.contains(&s(o, "id"))))
        .filter(|o| name.as_ref().is_none_or(|n| &s(o, "name") == n))
        .cloned()
        .collect();
    page_of(items, q, "options", 0)
}

pub(super) fn default_schema(w: &World, r: &Req) -> ApiResult {
    let offer_id = r
        .query
        .uuid("offer_id")?
        .ok_or_else(|| invalid("offer_id", "required", "field is required"))?;
    let os_id = r
        .query
        .uuid("os_id")?
        .ok_or_else(|| invalid("os_id", "required", "field is required"))?;
    let offer = w
        .catalogue
        .offer(&offer_id)
        .ok_or_else(|| invalid("offer_id", "constraint", "unknown offer"))?;
    w.catalogue
        .os(&os_id)
        .ok_or_else(|| invalid("os_id", "constraint", "unknown OS"))?;
    Ok(Reply::ok(partitioning_schema(offer)))
}
