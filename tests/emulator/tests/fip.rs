//! Flexible IP v1alpha1 through HTTP with a manual clock: create, list
//! filters, patch, delete, attach/detach, MAC addresses, error shapes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{Api, PROJECT, ZONE};
use serde_json::{Value, json};

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

fn denied() -> Value {
    json!({"details":[{"action":"read","resource":"flexible-ip"}],"message":"insufficient permissions","type":"permissions_denied"})
}

#[test]
fn create_get_patch_and_the_object_shape() {
    let api = Api::new();
    let fip = api.create_fip(ZONE, json!({"description": "d", "tags": ["x"]}));
    assert_eq!(fip["status"], "ready");
    assert_eq!(fip["server_id"], Value::Null);
    assert_eq!(fip["mac_address"], Value::Null);
    assert_eq!(fip["zone"], ZONE);
    assert_eq!(fip["project_id"], PROJECT);
    let ip = fip["ip_address"].as_str().unwrap();
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "bare IPv4: {ip}");
    assert_eq!(fip["reverse"], format!("{}.rev.poneytelecom.eu.", ip.replace('.', "-")));
    let keys: Vec<&String> = fip.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "created_at",
            "description",
            "id",
            "ip_address",
            "mac_address",
            "organization_id",
            "project_id",
            "reverse",
            "server_id",
            "status",
            "tags",
            "updated_at",
            "zone"
        ]
    );
    assert!(fip["created_at"].as_str().unwrap().ends_with('Z'));
    let path = format!("{}/{}", api.fips(ZONE), id(&fip));
    assert_eq!(api.get(&path).body, fip);
    let r = api.patch(&path, json!({"tags": ["y", "z"], "description": "new"}));
    assert_eq!(r.status, 200);
    assert_eq!(r.body["tags"], json!(["y", "z"]));
    assert_eq!(r.body["description"], "new");
    let r = api.patch(&path, json!({"description": "x".repeat(256)}));
    assert_eq!(r.status, 400);
    // IPv6: a /64 in CIDR form.
    let v6 = api.create_fip(ZONE, json!({"is_ipv6": true}));
    let addr = v6["ip_address"].as_str().unwrap();
    let (net, len) = addr.split_once('/').unwrap();
    assert_eq!(len, "64");
    assert!(net.parse::<std::net::Ipv6Addr>().is_ok(), "{addr}");
    // Another zone keeps its own FIPs.
    let ams = api.create_fip("nl-ams-1", json!({}));
    assert_eq!(ams["zone"], "nl-ams-1");
    assert_eq!(api.get(&format!("{}/{}", api.fips(ZONE), id(&ams))).status, 403);
}

#[test]
fn unknown_and_deleted_fips_answer_403_permissions_denied() {
    let api = Api::new();
    let unknown = format!("{}/{}", api.fips(ZONE), "2b7d7d38-98a3-45d9-8d1c-8a1f4b0b8d35");
    for r in [
        api.get(&unknown),
        api.patch(&unknown, json!({"tags": []})),
        api.delete(&unknown),
    ] {
        assert_eq!((r.status, r.body), (403, denied()));
    }
    let fip = api.create_fip(ZONE, json!({}));
    let path = format!("{}/{}", api.fips(ZONE), id(&fip));
    assert_eq!(api.delete(&path).status, 204);
    let r = api.get(&path);
    assert_eq!((r.status, r.body), (403, denied()));
    assert_eq!(api.delete(&path).status, 403);
}

#[test]
fn list_filters_tags_or_status_server_ids_and_project() {
    let api = Api::new();
    let server = api.create_server(ZONE, false);
    api.advance(2.0);
    let a = api.create_fip(ZONE, json!({"tags": ["a"]}));
    let b = api.create_fip(ZONE, json!({"tags": ["b"], "server_id": server}));
    let other = "6c0a3c5b-8a4e-4b3e-a1d2-3c4d5e6f7a8b";
    api.create_fip(ZONE, json!({"tags": ["c"], "project_id": other}));
    let list = |q: &str| {
        let r = api.get(&format!("{}?{q}", api.fips(ZONE)));
        assert_eq!(r.status, 200, "{q}: {:?}", r.body);
        r.body["flexible_ips"]
            .as_array()
            .unwrap()
            .iter()
            .map(id)
            .collect::<Vec<_>>()
    };
    assert_eq!(list("tags=a&tags=b"), vec![id(&a), id(&b)]);
    assert_eq!(list("status=updating"), vec![id(&b)]);
    assert_eq!(list("status=ready&status=updating").len(), 3);
    assert_eq!(
        list(&format!("server_ids={server}")),
        Vec::<String>::new(),
        "server_id is set only at attached"
    );
    api.advance(5.0);
    assert_eq!(list(&format!("server_ids={server}")), vec![id(&b)]);
    assert_eq!(list(&format!("project_id={other}")).len(), 1);
    assert_eq!(list(&format!("project_id={PROJECT}")).len(), 2);
    assert_eq!(api.get(&format!("{}?server_ids=nope", api.fips(ZONE))).status, 400);
}

#[test]
fn attach_and_detach_go_through_updating_and_detaching() {
    let api = Api::new();
    let server = api.create_server(ZONE, false);
    api.advance(2.0);
    let fip = api.create_fip(ZONE, json!({}));
    let path = format!("{}/{}", api.fips(ZONE), id(&fip));
    let r = api.post(
        &format!("{}/attach", api.fips(ZONE)),
        json!({"fips_ids": [id(&fip)], "server_id": server}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["total_count"], 1);
    assert_eq!(r.body["flexible_ips"][0]["status"], "updating");
    assert_eq!(r.body["flexible_ips"][0]["server_id"], Value::Null);
    api.advance(4.9);
    let g = api.get(&path).body;
    assert_eq!(
        (g["status"].as_str(), &g["server_id"]),
        (Some("updating"), &Value::Null)
    );
    // Acting on an updating FIP is a 409 naming it.
    let r = api.delete(&path);
    assert_eq!(r.status, 409);
    assert_eq!(r.body["type"], "transient_state");
    assert_eq!(r.body["resource_id"], id(&fip));
    assert_eq!(r.body["current_state"], "updating");
    api.advance(0.1);
    let g = api.get(&path).body;
    assert_eq!(
        (g["status"].as_str(), g["server_id"].as_str()),
        (Some("attached"), Some(server.as_str()))
    );
    // Attaching again to the same server is a no-op.
    let r = api.post(
        &format!("{}/attach", api.fips(ZONE)),
        json!({"fips_ids": [id(&fip)], "server_id": server}),
    );
    assert_eq!(r.body["flexible_ips"][0]["status"], "attached");
    // Detach: detaching with the server kept, then ready without it.
    let r = api.post(&format!("{}/detach", api.fips(ZONE)), json!({"fips_ids": [id(&fip)]}));
    assert_eq!(r.status, 200);
    assert_eq!(r.body["flexible_ips"][0]["status"], "detaching");
    assert_eq!(r.body["flexible_ips"][0]["server_id"], server);
    api.advance(5.0);
    let g = api.get(&path).body;
    assert_eq!((g["status"].as_str(), &g["server_id"]), (Some("ready"), &Value::Null));
    // Detaching a ready FIP is a 200 no-op.
    let r = api.post(&format!("{}/detach", api.fips(ZONE)), json!({"fips_ids": [id(&fip)]}));
    assert_eq!(
        (r.status, r.body["flexible_ips"][0]["status"].as_str()),
        (200, Some("ready"))
    );
    // Empty fips_ids.
    let r = api.post(&format!("{}/detach", api.fips(ZONE)), json!({"fips_ids": []}));
    assert_eq!(
        (r.status, r.body["details"][0]["argument_name"].as_str()),
        (400, Some("fips_ids"))
    );
    let r = api.post(&format!("{}/attach", api.fips(ZONE)), json!({"fips_ids": [id(&fip)]}));
    assert_eq!(r.status, 400);
}

#[test]
fn attach_errors_unknown_server_and_other_zone() {
    let api = Api::new();
    let fip = api.create_fip(ZONE, json!({}));
    let unknown = "0a2d6cc3-6e0c-4f5b-b7f2-1d3c5e7f9a0b";
    let r = api.post(
        &format!("{}/attach", api.fips(ZONE)),
        json!({"fips_ids": [id(&fip)], "server_id": unknown}),
    );
    assert_eq!(r.status, 404, "{:?}", r.body);
    assert_eq!(r.body["type"], "not_found");
    assert_eq!(r.body["resource_id"], unknown);
    let far = api.create_server("fr-par-2", false);
    let r = api.post(
        &format!("{}/attach", api.fips(ZONE)),
        json!({"fips_ids": [id(&fip)], "server_id": far}),
    );
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.body["type"], "invalid_arguments");
    assert_eq!(r.body["details"][0]["argument_name"], "server_id");
    // The same at create time.
    let r = api.post(&api.fips(ZONE), json!({"project_id": PROJECT, "server_id": far}));
    assert_eq!(r.status, 400);
    let r = api.post(&api.fips(ZONE), json!({"project_id": PROJECT, "server_id": unknown}));
    assert_eq!(r.status, 404);
    // An unknown FIP in a batch.
    let server = api.create_server(ZONE, false);
    let r = api.post(
        &format!("{}/attach", api.fips(ZONE)),
        json!({"fips_ids": [unknown], "server_id": server}),
    );
    assert_eq!(r.status, 403);
    // Several FIPs need one MAC group.
    let other = api.create_fip(ZONE, json!({}));
    let r = api.post(
        &format!("{}/attach", api.fips(ZONE)),
        json!({"fips_ids": [id(&fip), id(&other)], "server_id": server}),
    );
    assert_eq!(r.status, 400, "{:?}", r.body);
}

#[test]
fn create_with_a_server_then_delete_while_attached() {
    let api = Api::new();
    let server = api.create_server(ZONE, true);
    api.advance(5.0);
    let fip = api.create_fip(ZONE, json!({"server_id": server}));
    assert_eq!(
        (fip["status"].as_str(), &fip["server_id"]),
        (Some("updating"), &Value::Null)
    );
    let path = format!("{}/{}", api.fips(ZONE), id(&fip));
    api.advance(5.0);
    assert_eq!(api.get(&path).body["status"], "attached");
    // Delete of an attached FIP: 204, detaching with the server, then gone.
    assert_eq!(api.delete(&path).status, 204);
    let g = api.get(&path).body;
    assert_eq!(
        (g["status"].as_str(), g["server_id"].as_str()),
        (Some("detaching"), Some(server.as_str()))
    );
    api.advance(5.0);
    assert_eq!(api.get(&path).status, 403);
    assert_eq!(api.state()["counts"]["flexible_ips"], 0);
}

#[test]
fn deleting_the_server_detaches_its_fips() {
    let api = Api::new();
    let server = api.create_server(ZONE, false);
    api.advance(2.0);
    let fip = api.create_fip(ZONE, json!({"server_id": server}));
    let pending = api.create_fip(ZONE, json!({}));
    api.advance(5.0);
    let path = format!("{}/{}", api.fips(ZONE), id(&fip));
    assert_eq!(api.get(&path).body["status"], "attached");
    api.post(
        &format!("{}/attach", api.fips(ZONE)),
        json!({"fips_ids": [id(&pending)], "server_id": server}),
    );
    let r = api.delete(&format!("{}/servers/{server}", api.em(ZONE)));
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("deleting")));
    let g = api.get(&path).body;
    assert_eq!(
        (g["status"].as_str(), g["server_id"].as_str()),
        (Some("detaching"), Some(server.as_str()))
    );
    let p = api.get(&format!("{}/{}", api.fips(ZONE), id(&pending))).body;
    assert_eq!(
        (p["status"].as_str(), &p["server_id"]),
        (Some("ready"), &Value::Null),
        "a pending attach is dropped"
    );
    api.advance(5.0);
    assert_eq!(api.get(&format!("{}/servers/{server}", api.em(ZONE))).status, 404);
    assert_eq!(api.get(&path).body["status"], "detaching");
    api.advance(5.0);
    let g = api.get(&path).body;
    assert_eq!((g["status"].as_str(), &g["server_id"]), (Some("ready"), &Value::Null));
}

#[test]
fn mac_addresses_generate_duplicate_move_and_delete() {
    let api = Api::new();
    let server = api.create_server(ZONE, false);
    api.advance(2.0);
    let a = api.create_fip(ZONE, json!({}));
    let b = api.create_fip(ZONE, json!({}));
    let pa = format!("{}/{}", api.fips(ZONE), id(&a));
    let pb = format!("{}/{}", api.fips(ZONE), id(&b));
    // On a ready FIP the MAC is ready at once.
    let r = api.post(&format!("{pa}/mac"), json!({"mac_type": "kvm"}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mac = r.body["mac_address"].clone();
    assert_eq!(mac["status"], "ready");
    assert_eq!(mac["mac_type"], "kvm");
    assert!(mac["mac_address"].as_str().unwrap().starts_with("52:54:00:"));
    for k in ["id", "created_at", "updated_at", "zone"] {
        assert!(mac.get(k).is_some(), "{k}");
    }
    assert_eq!(
        api.post(&format!("{pa}/mac"), json!({"mac_type": "kvm"})).status,
        400,
        "already has one"
    );
    assert_eq!(
        api.post(&format!("{pb}/mac"), json!({"mac_type": "hyperv"})).status,
        400
    );
    // Move it to b: a ends with null.
    let r = api.post(&format!("{pa}/mac/move"), json!({"dst_fip_id": id(&b)}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["mac_address"], Value::Null);
    assert_eq!(api.get(&pb).body["mac_address"]["mac_address"], mac["mac_address"]);
    // Attach both as one MAC group after duplicating: first attach b.
    api.post(
        &format!("{}/attach", api.fips(ZONE)),
        json!({"fips_ids": [id(&b)], "server_id": server}),
    );
    let g = api.get(&pb).body;
    assert_eq!(
        (g["status"].as_str(), g["mac_address"]["status"].as_str()),
        (Some("updating"), Some("updating"))
    );
    api.advance(5.0);
    let g = api.get(&pb).body;
    assert_eq!(
        (g["status"].as_str(), g["mac_address"]["status"].as_str()),
        (Some("attached"), Some("used"))
    );
    // Duplicate needs both on the same server.
    assert_eq!(
        api.post(&format!("{pa}/mac/duplicate"), json!({"duplicate_from_fip_id": id(&b)}))
            .status,
        400
    );
    api.post(
        &format!("{}/attach", api.fips(ZONE)),
        json!({"fips_ids": [id(&a)], "server_id": server}),
    );
    api.advance(5.0);
    let r = api.post(&format!("{pa}/mac/duplicate"), json!({"duplicate_from_fip_id": id(&b)}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["mac_address"]["mac_address"], mac["mac_address"]);
    assert_eq!(r.body["status"], "updating");
    api.advance(5.0);
    assert_eq!(api.get(&pa).body["mac_address"]["status"], "used");
    // One MAC group: both can be detached together.
    let r = api.post(
        &format!("{}/detach", api.fips(ZONE)),
        json!({"fips_ids": [id(&a), id(&b)]}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    api.advance(5.0);
    assert_eq!(api.get(&pa).body["mac_address"]["status"], "ready");
    // Delete the MAC.
    assert_eq!(api.delete(&format!("{pa}/mac")).status, 204);
    assert_eq!(api.get(&pa).body["mac_address"], Value::Null);
    // The MAC endpoints answer 404 flexible_ips for an unknown FIP [rec].
    let unknown = "6ad3d0f2-1b0e-4a32-8d1d-7f0e2c1b3a4d";
    let r = api.post(&format!("{}/{unknown}/mac", api.fips(ZONE)), json!({"mac_type": "kvm"}));
    assert_eq!((r.status, r.body["resource"].as_str()), (404, Some("flexible_ips")));
}
