//! Core behaviour through real HTTP: authentication, request ids, error
//! shapes, localities, pagination, repeated query keys, 200/204, the HTTP
//! layer (keep-alive, close, chunked bodies) and the control API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Api, PROJECT, TOKEN, ZONE};
use scaleway_emulator::Options;
use serde_json::json;

#[test]
fn authentication_is_required_and_denied_with_the_exact_body() {
    let api = Api::new();
    let path = api.fips(ZONE);
    for token in [None, Some("not-a-uuid"), Some("")] {
        let r = api.send("GET", &path, None, token);
        assert_eq!(r.status, 401, "{token:?}");
        assert_eq!(
            String::from_utf8(r.raw).unwrap(),
            r#"{"type":"denied_authentication","method":"api_key","reason":"not_found","message":"authentication is denied"}"#
        );
        assert!(r.headers.get("x-request-id").is_some());
    }
    assert_eq!(api.get(&path).status, 200, "any UUID is a key");
    // With an explicit list, other UUIDs are refused.
    let key = "7d0c3b0a-2b5e-4a47-9b4f-2a9c0d8e6f11";
    let strict = Api::with(Options {
        secret_keys: vec![key.into()],
        manual_clock: true,
        speed: 1.0,
        ..Options::default()
    });
    assert_eq!(strict.get(&path).status, 401);
    assert_eq!(strict.send("GET", &path, None, Some(key)).status, 200);
    // Control endpoints need no key.
    assert_eq!(strict.control("GET", "state", None).status, 200);
}

#[test]
fn every_answer_has_a_request_id_and_json_errors() {
    let api = Api::new();
    let mut ids = Vec::new();
    for (method, path, status) in [
        ("GET", "/nope".to_string(), 404),
        ("GET", "/flexible-ip/v1alpha1/zones/xx-nop-9/fips".into(), 400),
        ("GET", "/vpc/v2/regions/fr-nop/vpcs".into(), 400),
        ("PUT", api.fips(ZONE), 405),
        ("GET", format!("{}/not-a-uuid", api.fips(ZONE)), 400),
        ("GET", "/_emulator/state".into(), 200),
        ("GET", "/_emulator/nothing".into(), 404),
    ] {
        let r = api.send(method, &path, None, Some(TOKEN));
        assert_eq!(r.status, status, "{method} {path}: {:?}", r.body);
        let id = r
            .headers
            .get("x-request-id")
            .expect("X-Request-Id")
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(id.len(), 36);
        ids.push(id);
        assert!(r.body.get("message").is_some() || status == 200, "{:?}", r.body);
        assert_eq!(r.headers.get("content-type").unwrap(), "application/json");
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 7, "request ids are unique");
    // An unknown zone is a 400 invalid_arguments with details.
    let r = api.get("/flexible-ip/v1alpha1/zones/fr-par-9/fips");
    assert_eq!(r.body["type"], "invalid_arguments");
    assert_eq!(r.body["message"], "invalid argument(s)");
    assert_eq!(r.body["details"][0]["argument_name"], "zone");
    assert_eq!(r.body["details"][0]["reason"], "constraint");
    assert!(
        r.body["details"][0]["help_message"]
            .as_str()
            .unwrap()
            .contains("fr-par-1")
    );
    // A gateway zone that EM lacks is fine for the gateway API only.
    assert_eq!(api.get("/vpc-gw/v2/zones/it-mil-1/gateways").status, 200);
    assert_eq!(api.get("/baremetal/v1/zones/it-mil-1/servers").status, 400);
    // A body that is not JSON.
    let r = api.send("POST", &api.fips(ZONE), Some(&json!("x")), Some(TOKEN));
    assert_eq!(r.status, 400);
    let raw = api
        .client
        .post(format!("{}{}", api.base, api.fips(ZONE)))
        .header("X-Auth-Token", TOKEN)
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    // A required field.
    let r = api.post(&api.fips(ZONE), json!({"description": "x"}));
    assert_eq!(r.status, 400);
    assert_eq!(r.body["details"][0]["argument_name"], "project_id");
    assert_eq!(r.body["details"][0]["reason"], "required");
    // A wrong type.
    let r = api.post(&api.fips(ZONE), json!({"project_id": PROJECT, "tags": "a"}));
    assert_eq!(
        (r.status, r.body["details"][0]["reason"].as_str()),
        (400, Some("format"))
    );
}

#[test]
fn creates_answer_200_and_deletes_204_with_an_empty_json_body() {
    let api = Api::new();
    let fip = api.create_fip(ZONE, json!({}));
    let id = fip["id"].as_str().unwrap();
    let r = api.delete(&format!("{}/{id}", api.fips(ZONE)));
    assert_eq!(r.status, 204);
    assert!(r.raw.is_empty());
    assert_eq!(r.headers.get("content-type").unwrap(), "application/json");
    assert_eq!(r.headers.get("content-length").unwrap(), "0");
}

#[test]
fn every_list_paginates_with_a_default_of_20_and_a_maximum_of_100() {
    let api = Api::new();
    for i in 0..45 {
        api.create_fip(ZONE, json!({"tags": [format!("n{i}"), "all"]}));
    }
    let path = api.fips(ZONE);
    let mut seen = Vec::new();
    for (page, expected) in [(1, 20), (2, 20), (3, 5), (4, 0)] {
        let r = api.get(&format!("{path}?page={page}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.body["total_count"], 45);
        let items = r.body["flexible_ips"].as_array().unwrap();
        assert_eq!(items.len(), expected, "page {page}");
        seen.extend(items.iter().map(|f| f["id"].as_str().unwrap().to_string()));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 45, "three pages hold every item once");
    let r = api.get(&format!("{path}?page_size=100"));
    assert_eq!(r.body["flexible_ips"].as_array().unwrap().len(), 45);
    let r = api.get(&format!("{path}?page_size=101"));
    assert_eq!(r.status, 400);
    assert_eq!(r.body["type"], "invalid_arguments");
    assert_eq!(r.body["details"][0]["argument_name"], "page_size");
    assert_eq!(r.body["details"][0]["reason"], "constraint");
    assert_eq!(api.get(&format!("{path}?page=0")).status, 400);
    assert_eq!(api.get(&format!("{path}?page_size=abc")).status, 400);
    // created_at_desc reverses the order.
    let asc = api.get(&format!("{path}?page_size=100&order_by=created_at_asc")).body;
    let desc = api.get(&format!("{path}?page_size=100&order_by=created_at_desc")).body;
    assert_eq!(asc["flexible_ips"][0]["id"], desc["flexible_ips"][44]["id"]);
    assert_eq!(api.get(&format!("{path}?order_by=bogus")).status, 400);
    // Other lists paginate too (IAM: 25 keys, 20 without page_size).
    for i in 0..25 {
        let key = format!("ssh-ed25519 {} k{i}", ed25519_key(i));
        let r = api.post(
            "/iam/v1alpha1/ssh-keys",
            json!({"name": format!("k{i}"), "public_key": key, "project_id": PROJECT}),
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let r = api.get("/iam/v1alpha1/ssh-keys");
    assert_eq!(
        (
            r.body["total_count"].as_u64(),
            r.body["ssh_keys"].as_array().unwrap().len()
        ),
        (Some(25), 20)
    );
}

/// A valid ed25519 public key blob (base64) whose last byte is `i`.
fn ed25519_key(i: u8) -> String {
    let mut blob = vec![0, 0, 0, 11];
    blob.extend_from_slice(b"ssh-ed25519");
    blob.extend_from_slice(&[0, 0, 0, 32]);
    blob.extend_from_slice(&[7u8; 31]);
    blob.push(i);
    opennebula::base64::encode(&blob)
}

#[test]
fn repeated_query_keys_are_arrays_and_values_are_percent_decoded() {
    let api = Api::new();
    api.create_fip(ZONE, json!({"tags": ["a b"]}));
    api.create_fip(ZONE, json!({"tags": ["c"]}));
    api.create_fip(ZONE, json!({"tags": ["d"]}));
    let path = api.fips(ZONE);
    let r = api.get(&format!("{path}?tags=a%20b&tags=c"));
    assert_eq!(r.body["total_count"], 2, "tags are ORed: {:?}", r.body);
    let r = api.get(&format!("{path}?tags=a+b"));
    assert_eq!(r.body["total_count"], 1);
    let r = api.get(&format!("{path}?tags=zzz"));
    assert_eq!(r.body["total_count"], 0);
}

fn raw(base: &str, bytes: &[u8], read_for: Duration) -> String {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(read_for)).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn http_keep_alive_close_and_chunked_bodies() {
    let api = Api::new();
    let body = format!(r#"{{"project_id":"{PROJECT}","tags":["k"]}}"#);
    // Two requests on one connection, the second asks to close.
    let req = format!(
        "POST /flexible-ip/v1alpha1/zones/fr-par-1/fips HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}GET /flexible-ip/v1alpha1/zones/fr-par-1/fips?tags=k HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {TOKEN}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let out = raw(&api.base, req.as_bytes(), Duration::from_secs(5));
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    assert!(out.contains("Connection: keep-alive"), "{out}");
    assert!(out.contains("Connection: close"), "{out}");
    assert!(out.contains("\"total_count\":1"), "{out}");
    // A chunked body.
    let chunked = format!(
        "POST /flexible-ip/v1alpha1/zones/fr-par-1/fips HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {TOKEN}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        10,
        &body[..10],
        body.len() - 10,
        &body[10..]
    );
    let out = raw(&api.base, chunked.as_bytes(), Duration::from_secs(5));
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    // Garbage gets a 400 and a closed connection.
    let out = raw(&api.base, b"NONSENSE\r\n\r\n", Duration::from_secs(5));
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    // The reqwest client reuses its connection across many calls.
    for _ in 0..20 {
        assert_eq!(api.get(&api.fips(ZONE)).status, 200);
    }
}

#[test]
fn control_api_state_calls_clock_speed_projects_stock_and_reset() {
    let api = Api::new();
    let state = api.state();
    assert_eq!(state["empty"], true);
    assert_eq!(state["counts"]["flexible_ips"], 0);
    let fip = api.create_fip(ZONE, json!({}));
    api.get(&format!("{}/{}", api.fips(ZONE), fip["id"].as_str().unwrap()));
    api.send("GET", &api.fips(ZONE), None, None);
    let state = api.state();
    assert_eq!(state["empty"], false);
    assert_eq!(state["flexible_ips"][0]["id"], fip["id"]);
    // Calls: method, path, status; control calls are not logged.
    let calls = api.calls();
    let summary: Vec<(String, u64)> = calls
        .iter()
        .map(|c| {
            (
                format!("{} {}", c["method"].as_str().unwrap(), c["path"].as_str().unwrap()),
                c["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(summary.len(), 3, "{summary:?}");
    assert_eq!(summary[0], (format!("POST {}", api.fips(ZONE)), 200));
    assert_eq!(summary[2].1, 401);
    assert_eq!(api.control("DELETE", "calls", None).status, 204);
    assert!(api.calls().is_empty());
    // Clock: frozen, moved by advance_seconds and advance_to.
    let c = api.control("GET", "clock", None).body;
    assert_eq!(c["mode"], "manual");
    let t0 = c["now_seconds"].as_f64().unwrap();
    let c = api.control("POST", "clock", Some(json!({"advance_seconds": 10}))).body;
    assert_eq!(c["now_seconds"].as_f64().unwrap(), t0 + 10.0);
    let c = api
        .control("POST", "clock", Some(json!({"advance_to": t0 + 30.0})))
        .body;
    assert_eq!(c["now_seconds"].as_f64().unwrap(), t0 + 30.0);
    let c = api.control("POST", "clock", Some(json!({"advance_to": 0}))).body;
    assert_eq!(
        c["now_seconds"].as_f64().unwrap(),
        t0 + 30.0,
        "the clock never goes back"
    );
    assert_eq!(
        api.control("POST", "clock", Some(json!({"advance_seconds": -1})))
            .status,
        400
    );
    let c = api.control("POST", "clock", Some(json!({"mode": "real"}))).body;
    assert_eq!(c["mode"], "real");
    api.control("POST", "clock", Some(json!({"mode": "manual"})));
    // Speed.
    assert_eq!(api.control("GET", "speed", None).body["speed"], 1.0);
    assert_eq!(
        api.control("PUT", "speed", Some(json!({"speed": 0.5}))).body["speed"],
        0.5
    );
    assert_eq!(api.control("PUT", "speed", Some(json!({"speed": -2}))).status, 400);
    // Projects: a default VPC in every region.
    let other = "2e7b4cf7-4aa9-498c-9123-6dd93838d950";
    let r = api.control("POST", "projects", Some(json!({"project_id": other})));
    assert_eq!(r.body["default_vpcs"].as_array().unwrap().len(), 4);
    assert_eq!(api.control("GET", "projects", None).body["projects"][0], other);
    assert_eq!(api.state()["default_vpcs"].as_array().unwrap().len(), 4);
    // Stock.
    let r = api.control(
        "PUT",
        "stock",
        Some(json!({"offer_name": "EM-B220E-NVME", "zone": ZONE, "stock": "empty"})),
    );
    assert_eq!(
        r.body["stock"].as_array().unwrap().len(),
        2,
        "hourly and monthly: {:?}",
        r.body
    );
    let offer = api
        .get(&format!("{}/offers/{}", api.em(ZONE), common::OFFER_B220E))
        .body;
    assert_eq!(offer["stock"], "empty");
    assert_eq!(
        api.control("PUT", "stock", Some(json!({"offer_name": "nope", "stock": "empty"})))
            .status,
        400
    );
    // Reset forgets resources but keeps projects.
    assert_eq!(api.control("POST", "reset", None).status, 204);
    let state = api.state();
    assert_eq!(state["empty"], true);
    assert_eq!(state["default_vpcs"].as_array().unwrap().len(), 4);
    // The index lists the endpoints.
    assert!(api.control("GET", "", None).body["endpoints"].as_array().unwrap().len() > 5);
}

#[test]
fn the_real_clock_runs_at_the_speed_factor() {
    let api = Api::with(Options {
        speed: 0.25,
        ..Options::default()
    });
    let server = api.create_server(ZONE, false);
    let path = format!("{}/servers/{server}", api.em(ZONE));
    assert_eq!(api.get(&path).body["status"], "delivering");
    // 2 s nominal at 0.25 is 0.5 s.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(api.get(&path).body["status"], "ready");
}

#[test]
fn library_helpers_drive_the_same_state() {
    let api = Api::new();
    api.emu.register_project(PROJECT);
    assert_eq!(api.emu.state()["default_vpcs"].as_array().unwrap().len(), 4);
    let fault = api
        .emu
        .add_fault(&json!({"kind": "internal_error", "path_prefix": "/flexible-ip/"}))
        .unwrap();
    assert_eq!(fault["kind"], "internal_error");
    assert!(api.emu.add_fault(&json!({"kind": "nope"})).is_err());
    assert_eq!(api.get(&api.fips(ZONE)).status, 500);
    assert_eq!(api.emu.calls().len(), 1);
    api.emu.clear_calls();
    api.emu.clear_faults();
    let t = api.emu.now();
    api.emu.advance(3.0);
    assert_eq!(api.emu.now(), t + 3.0);
    api.emu.set_speed(2.0);
    assert_eq!(api.control("GET", "speed", None).body["speed"], 2.0);
    api.emu.reset();
    assert!(api.emu.url().starts_with("http://127.0.0.1:"));
}
