//! Every fault kind, through real HTTP (raw sockets where the HTTP exchange
//! itself breaks), and the fault rule API (matching, counts, probability).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::{Duration, Instant};

use common::{Api, OFFER_B220E, OFFER_L420E_EMPTY, OS_UBUNTU_2204, PROJECT, TOKEN, ZONE, raw_exchange};
use serde_json::{Value, json};

fn fips_path() -> String {
    format!("/flexible-ip/v1alpha1/zones/{ZONE}/fips")
}

fn create_fip_request() -> String {
    let body = format!(r#"{{"project_id":"{PROJECT}"}}"#);
    format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        fips_path(),
        body.len()
    )
}

#[test]
fn rate_limits_look_like_the_real_gateway() {
    let api = Api::new();
    let rule = api.fault(json!({"kind": "rate_limit", "method": "GET", "path": "/flexible-ip/**", "times": 2}));
    assert_eq!(
        (rule["kind"].as_str(), rule["remaining"].as_u64()),
        (Some("rate_limit"), Some(2))
    );
    for _ in 0..2 {
        let r = api.get(&fips_path());
        assert_eq!(r.status, 429);
        assert!(r.raw.is_empty());
        assert!(r.headers.get("content-type").is_none(), "no Content-Type [rec]");
        assert_eq!(r.headers.get("x-envoy-ratelimited").unwrap(), "true");
        assert!(r.headers.get("retry-after").is_none());
        assert!(r.headers.get("x-request-id").is_some());
    }
    assert_eq!(api.get(&fips_path()).status, 200, "only the next 2 calls");
    api.fault(json!({"kind": "rate_limit_retry_after", "retry_after": 7}));
    let r = api.get(&fips_path());
    assert_eq!(
        (r.status, r.headers.get("retry-after").unwrap().to_str().unwrap()),
        (429, "7")
    );
    let faults = api.control("GET", "faults", None).body;
    assert_eq!(faults["faults"][0]["hits"], 2);
    assert_eq!(faults["faults"][0]["remaining"], 0);
    let calls = api.calls();
    assert_eq!(calls[0]["fault"], "rate_limit");
    assert_eq!(calls[0]["status"], 429);
    assert_eq!(calls[2]["fault"], Value::Null);
}

#[test]
fn server_errors_json_html_empty_and_permanent() {
    let api = Api::new();
    api.fault(json!({"kind": "internal_error"}));
    let r = api.get(&fips_path());
    assert_eq!((r.status, r.body.clone()), (500, json!({"message": "internal error"})));
    api.fault(json!({"kind": "upstream_error", "status": 502, "body": "html"}));
    let r = api.get(&fips_path());
    assert_eq!(r.status, 502);
    assert!(
        r.headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(String::from_utf8_lossy(&r.raw).contains("502 Bad Gateway"));
    assert_eq!(r.body, Value::Null, "not JSON");
    api.fault(json!({"kind": "upstream_error", "status": 503, "body": "empty"}));
    let r = api.get(&fips_path());
    assert_eq!((r.status, r.raw.len()), (503, 0));
    assert_eq!(r.headers.get("content-type").unwrap(), "text/plain");
    api.fault(json!({"kind": "unavailable", "message": "cloud-init is not supported on this offer", "times": 3}));
    for _ in 0..3 {
        let r = api.get(&fips_path());
        assert_eq!(
            (r.status, r.body.clone()),
            (503, json!({"message": "cloud-init is not supported on this offer"}))
        );
    }
    assert_eq!(api.get(&fips_path()).status, 200);
    assert_eq!(
        api.control("POST", "faults", Some(json!({"kind": "upstream_error", "status": 404})))
            .status,
        400
    );
}

#[test]
fn a_delay_hangs_past_a_client_timeout_then_answers() {
    let api = Api::new();
    api.fault(json!({"kind": "delay", "seconds": 1.5, "times": 2}));
    let short = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let err = short
        .get(format!("{}{}", api.base, fips_path()))
        .header("X-Auth-Token", TOKEN)
        .send();
    assert!(err.is_err_and(|e| e.is_timeout()), "the client times out");
    let started = Instant::now();
    let r = api.get(&fips_path());
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(api.calls().iter().filter(|c| c["fault"] == "delay").count(), 2);
}

#[test]
fn drop_closes_without_answering_and_does_nothing() {
    let api = Api::new();
    api.fault(json!({"kind": "drop", "method": "POST"}));
    let (bytes, closed) = raw_exchange(&api.base, &create_fip_request());
    assert!(closed && bytes.is_empty(), "{:?}", String::from_utf8_lossy(&bytes));
    assert_eq!(api.state()["counts"]["flexible_ips"], 0);
    let calls = api.calls();
    assert_eq!(
        (calls[0]["status"].clone(), calls[0]["fault"].as_str()),
        (Value::Null, Some("drop"))
    );
    // reqwest sees an error.
    api.fault(json!({"kind": "drop", "times": 3}));
    let r = api
        .client
        .get(format!("{}{}", api.base, fips_path()))
        .header("X-Auth-Token", TOKEN)
        .send();
    assert!(r.is_err());
}

#[test]
fn reset_mid_body_sends_part_of_a_performed_answer() {
    let api = Api::new();
    api.fault(json!({"kind": "reset_mid_body", "method": "POST", "path": "/flexible-ip/v1alpha1/zones/*/fips"}));
    let (bytes, closed) = raw_exchange(&api.base, &create_fip_request());
    let text = String::from_utf8_lossy(&bytes).to_string();
    assert!(closed);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(!body.is_empty() && body.len() < length, "{} of {length}", body.len());
    assert_eq!(api.state()["counts"]["flexible_ips"], 1, "the create happened");
    api.fault(json!({"kind": "reset_mid_body", "times": 3}));
    assert!(
        api.client
            .get(format!("{}{}", api.base, fips_path()))
            .header("X-Auth-Token", TOKEN)
            .send()
            .and_then(|r| r.bytes())
            .is_err()
    );
}

#[test]
fn commit_then_fail_makes_a_naive_retry_duplicate() {
    let api = Api::new();
    api.fault(json!({"kind": "commit_then_error", "method": "POST"}));
    let r = api.post(&fips_path(), json!({"project_id": PROJECT}));
    assert_eq!((r.status, r.body.clone()), (500, json!({"message": "internal error"})));
    assert_eq!(api.state()["counts"]["flexible_ips"], 1, "the FIP exists anyway");
    assert_eq!(api.post(&fips_path(), json!({"project_id": PROJECT})).status, 200);
    assert_eq!(api.state()["counts"]["flexible_ips"], 2, "the retry made a second one");
    api.fault(json!({"kind": "commit_then_drop", "method": "POST"}));
    let (bytes, closed) = raw_exchange(&api.base, &create_fip_request());
    assert!(closed && bytes.is_empty());
    assert_eq!(api.state()["counts"]["flexible_ips"], 3);
    // Also for servers.
    api.fault(json!({"kind": "commit_then_error", "status": 502, "path_prefix": "/baremetal/"}));
    let r = api.post(
        &format!("{}/servers", api.em(ZONE)),
        json!({"offer_id": OFFER_B220E, "project_id": PROJECT, "name": "s"}),
    );
    assert_eq!(r.status, 502);
    assert_eq!(api.state()["counts"]["servers"], 1);
}

#[test]
fn transient_state_quotas_and_out_of_stock() {
    let api = Api::new();
    let fip = api.create_fip(ZONE, json!({}));
    let id = fip["id"].as_str().unwrap();
    api.fault(json!({"kind": "transient_state", "path": "/flexible-ip/v1alpha1/zones/*/fips/*", "times": 2}));
    for _ in 0..2 {
        let r = api.delete(&format!("{}/{id}", fips_path()));
        assert_eq!(r.status, 409);
        assert_eq!(
            r.body,
            json!({"current_state":"updating","message":"resource is in a transient state","resource":"flexible_ip","resource_id":id,"type":"transient_state"})
        );
    }
    assert_eq!(
        api.delete(&format!("{}/{id}", fips_path())).status,
        204,
        "then it succeeds"
    );
    // A GN create names the gateway from the body by default.
    let gw = "9d9b5a0e-1c1f-4e55-9f7c-6b1c6e0a4f21";
    api.fault(json!({"kind": "transient_state", "method": "POST", "path_prefix": "/vpc-gw/"}));
    let r = api.post(
        "/vpc-gw/v2/zones/fr-par-1/gateway-networks",
        json!({"gateway_id": gw, "private_network_id": gw}),
    );
    assert_eq!(
        (r.body["resource"].as_str(), r.body["resource_id"].as_str()),
        (Some("gateway"), Some(gw))
    );
    assert_eq!(r.body["current_state"], "configuring");
    // Quotas: the offer's quota name for servers.
    api.fault(json!({"kind": "quotas_exceeded", "path": "/baremetal/v1/zones/*/servers", "quota": 2, "current": 2}));
    let r = api.post(
        &format!("{}/servers", api.em(ZONE)),
        json!({"offer_id": OFFER_B220E, "project_id": PROJECT}),
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.body["type"], "quotas_exceeded");
    assert_eq!(r.body["message"], "quota(s) exceeded for this resource");
    assert_eq!(
        r.body["details"][0],
        json!({"resource": "EM_B220E_NVMe", "quota": 2, "current": 2, "project_id": PROJECT})
    );
    api.fault(json!({"kind": "quotas_exceeded"}));
    let r = api.post(&fips_path(), json!({"project_id": PROJECT}));
    assert_eq!(
        (r.status, r.body["details"][0]["resource"].as_str()),
        (403, Some("flexible_ips"))
    );
    // Out of stock on any offer, as an error...
    api.fault(json!({"kind": "out_of_stock", "method": "POST"}));
    let r = api.post(
        &format!("{}/servers", api.em(ZONE)),
        json!({"offer_id": OFFER_B220E, "project_id": PROJECT}),
    );
    assert_eq!(
        (r.status, r.body),
        (
            503,
            json!({"message":"resource is out of stock","resource":"EM-B220E-NVME","type":"out_of_stock"})
        )
    );
    // ...or as an accepted order that sits at out_of_stock.
    api.fault(json!({"kind": "out_of_stock", "accept": true}));
    let r = api.post(
        &format!("{}/servers", api.em(ZONE)),
        json!({"offer_id": OFFER_L420E_EMPTY, "project_id": PROJECT}),
    );
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("out_of_stock")));
    api.advance(3600.0);
    let s = api
        .get(&format!("{}/servers/{}", api.em(ZONE), r.body["id"].as_str().unwrap()))
        .body;
    assert_eq!(s["status"], "out_of_stock");
    assert_eq!(api.state()["counts"]["servers"], 1);
}

fn create_installed(api: &Api) -> String {
    let key = api.create_ssh_key();
    let r = api.post(
        &format!("{}/servers", api.em(ZONE)),
        json!({"offer_id": OFFER_B220E, "project_id": PROJECT, "name": "s",
               "install": {"os_id": OS_UBUNTU_2204, "hostname": "s", "ssh_key_ids": [key]}}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

#[test]
fn stuck_error_and_locked_transitions() {
    let api = Api::new();
    // Stuck: the install never completes.
    api.fault(json!({"kind": "stuck", "method": "POST", "path": "/baremetal/v1/zones/*/servers"}));
    let stuck = create_installed(&api);
    api.advance(10_000.0);
    let s = api.get(&format!("{}/servers/{stuck}", api.em(ZONE))).body;
    assert_eq!(
        (s["status"].as_str(), s["install"]["status"].as_str()),
        (Some("ready"), Some("installing"))
    );
    // Error: the install ends in error.
    api.fault(json!({"kind": "transition_error", "method": "POST", "path": "/baremetal/v1/zones/*/servers"}));
    let failed = create_installed(&api);
    api.advance(400.0);
    let s = api.get(&format!("{}/servers/{failed}", api.em(ZONE))).body;
    assert_eq!(
        (s["status"].as_str(), s["install"]["status"].as_str()),
        (Some("ready"), Some("error"))
    );
    // Locked: the server ends locked.
    api.fault(json!({"kind": "transition_locked", "method": "POST", "path": "/baremetal/v1/zones/*/servers"}));
    let locked = create_installed(&api);
    api.advance(10.0);
    assert_eq!(
        api.get(&format!("{}/servers/{locked}", api.em(ZONE))).body["status"],
        "locked"
    );
    // A FIP attach that never ends, and one that ends in error.
    let server = api.create_server(ZONE, false);
    api.advance(2.0);
    api.fault(json!({"kind": "stuck", "path": "/flexible-ip/v1alpha1/zones/*/fips/attach"}));
    let a = api.create_fip(ZONE, json!({}));
    api.post(
        &format!("{}/attach", fips_path()),
        json!({"fips_ids": [a["id"]], "server_id": server}),
    );
    api.fault(json!({"kind": "transition_error", "method": "POST", "path": "/flexible-ip/v1alpha1/zones/*/fips"}));
    let b = api.create_fip(ZONE, json!({"server_id": server}));
    api.advance(600.0);
    let path = |v: &Value| format!("{}/{}", fips_path(), v["id"].as_str().unwrap());
    assert_eq!(api.get(&path(&a)).body["status"], "updating");
    assert_eq!(api.get(&path(&b)).body["status"], "error");
    // A gateway that fails, and a deletion that never finishes.
    api.fault(json!({"kind": "transition_error", "path": "/vpc-gw/v2/zones/*/gateways"}));
    let gw = api
        .post(
            "/vpc-gw/v2/zones/fr-par-1/gateways",
            json!({"project_id": PROJECT, "name": "g"}),
        )
        .body;
    api.advance(60.0);
    let gw_path = format!("/vpc-gw/v2/zones/fr-par-1/gateways/{}", gw["id"].as_str().unwrap());
    assert_eq!(api.get(&gw_path).body["status"], "failed");
    let ok = api.create_server(ZONE, false);
    api.advance(2.0);
    api.fault(json!({"kind": "stuck", "method": "DELETE"}));
    assert_eq!(api.delete(&format!("{}/servers/{ok}", api.em(ZONE))).status, 200);
    api.advance(600.0);
    assert_eq!(
        api.get(&format!("{}/servers/{ok}", api.em(ZONE))).body["status"],
        "deleting"
    );
}

#[test]
fn eventual_consistency_hides_new_resources_for_a_few_reads() {
    let api = Api::new();
    api.fault(json!({"kind": "eventual_consistency", "method": "POST", "path": "/flexible-ip/v1alpha1/zones/*/fips", "reads": 2}));
    let fip = api.create_fip(ZONE, json!({}));
    let path = format!("{}/{}", fips_path(), fip["id"].as_str().unwrap());
    assert_eq!(api.get(&path).status, 403);
    assert_eq!(
        api.get(&fips_path()).body["total_count"],
        0,
        "the list does not show it yet"
    );
    assert_eq!(api.get(&path).status, 200);
    assert_eq!(api.get(&fips_path()).body["total_count"], 1);
    // An EM server answers its own 404 shape meanwhile.
    api.fault(json!({"kind": "eventual_consistency", "path_prefix": "/baremetal/", "reads": 1}));
    let id = api.create_server(ZONE, false);
    let r = api.get(&format!("{}/servers/{id}", api.em(ZONE)));
    assert_eq!((r.status, r.body), (404, json!({"message": "Not Found"})));
    assert_eq!(api.get(&format!("{}/servers/{id}", api.em(ZONE))).status, 200);
}

#[test]
fn recycled_fips_come_back_with_their_id_address_and_created_at() {
    let api = Api::new();
    let old = api.create_fip(ZONE, json!({}));
    api.advance(100.0);
    assert_eq!(
        api.delete(&format!("{}/{}", fips_path(), old["id"].as_str().unwrap()))
            .status,
        204
    );
    api.advance(100.0);
    api.fault(json!({"kind": "recycle_fip", "probability": 1.0}));
    let new = api.create_fip(ZONE, json!({"tags": ["new"]}));
    assert_eq!(new["id"], old["id"]);
    assert_eq!(new["ip_address"], old["ip_address"]);
    assert_eq!(new["created_at"], old["created_at"]);
    assert_ne!(new["updated_at"], old["updated_at"]);
    assert_eq!(new["tags"], json!(["new"]));
    // Nothing left to recycle: a fresh one.
    let other = api.create_fip(ZONE, json!({}));
    assert_ne!(other["id"], old["id"]);
}

#[test]
fn total_count_can_drift_so_the_last_page_is_empty() {
    let api = Api::new();
    for _ in 0..3 {
        api.create_fip(ZONE, json!({}));
    }
    api.fault(json!({"kind": "total_count_delta", "delta": 1, "method": "GET", "times": 2}));
    let r = api.get(&format!("{}?page_size=3", fips_path()));
    assert_eq!(
        (
            r.body["total_count"].as_u64(),
            r.body["flexible_ips"].as_array().unwrap().len()
        ),
        (Some(4), 3)
    );
    let r = api.get(&format!("{}?page_size=3&page=2", fips_path()));
    assert_eq!(
        (
            r.body["total_count"].as_u64(),
            r.body["flexible_ips"].as_array().unwrap().len()
        ),
        (Some(4), 0)
    );
    assert_eq!(api.get(&fips_path()).body["total_count"], 3);
}

#[test]
fn rules_match_by_method_and_path_count_or_roll_and_can_be_removed() {
    let api = Api::new();
    let never = api.fault(json!({"kind": "internal_error", "probability": 0.0}));
    assert_eq!(never["remaining"], Value::Null);
    for _ in 0..5 {
        assert_eq!(api.get(&fips_path()).status, 200);
    }
    let always = api.fault(json!({"kind": "internal_error", "method": "DELETE", "probability": 1.0}));
    assert_eq!(api.get(&fips_path()).status, 200, "GET does not match");
    for _ in 0..3 {
        assert_eq!(
            api.delete(&format!("{}/{}", fips_path(), "0e4d9f52-6c71-4a7b-9a55-3b2f1e0d9c8b"))
                .status,
            500
        );
    }
    assert_eq!(
        api.control("DELETE", &format!("faults/{}", always["id"].as_str().unwrap()), None)
            .status,
        204
    );
    assert_eq!(
        api.control("DELETE", "faults/8e4d9f52-6c71-4a7b-9a55-3b2f1e0d9c8b", None)
            .status,
        404
    );
    // A probability in between, with a seeded generator: some but not all.
    api.fault(json!({"kind": "internal_error", "path": "/iam/v1alpha1/ssh-keys", "probability": 0.5}));
    let failures = (0..40)
        .filter(|_| api.get("/iam/v1alpha1/ssh-keys").status == 500)
        .count();
    assert!((5..35).contains(&failures), "{failures}");
    let list = api.control("GET", "faults", None).body;
    assert_eq!(list["faults"].as_array().unwrap().len(), 2);
    assert_eq!(list["faults"][1]["hits"].as_u64().unwrap() as usize, failures);
    assert_eq!(api.control("DELETE", "faults", None).status, 204);
    assert_eq!(api.control("GET", "faults", None).body["faults"], json!([]));
    for bad in [
        json!({"kind": "nope"}),
        json!({"kind": "drop", "probability": 3}),
        json!({"path": "/x"}),
    ] {
        assert_eq!(api.control("POST", "faults", Some(bad)).status, 400);
    }
}
