//! Elastic Metal v1 and v3 through HTTP with a manual clock: catalogue,
//! server state machines, options, errors, private network mappings.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{
    Api, OFFER_A116X, OFFER_B220E, OFFER_L110X_NO_CLOUD_INIT, OFFER_L420E_EMPTY, OPTION_PRIVATE_NETWORK, OS_PROXMOX,
    OS_UBUNTU_2204, PROJECT, ZONE,
};
use serde_json::{Value, json};

#[test]
fn offers_have_hourly_and_monthly_twins_stock_and_options() {
    let api = Api::new();
    let em = api.em(ZONE);
    let hourly = api
        .get(&format!("{em}/offers?subscription_period=unknown_subscription_period"))
        .body;
    let offers = hourly["offers"].as_array().unwrap();
    assert_eq!(hourly["total_count"], 5);
    assert!(
        offers
            .iter()
            .all(|o| o["subscription_period"] == "hourly" && o["zone"] == ZONE)
    );
    let monthly = api.get(&format!("{em}/offers?subscription_period=monthly")).body;
    assert_eq!(monthly["total_count"], 5);
    let b220 = offers.iter().find(|o| o["name"] == "EM-B220E-NVME").unwrap();
    let twin = monthly["offers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "EM-B220E-NVME")
        .unwrap();
    assert_eq!(b220["monthly_offer_id"], twin["id"]);
    assert_ne!(b220["id"], twin["id"]);
    assert_eq!(twin["price_per_hour"], Value::Null);
    assert!(twin["price_per_month"].is_object());
    let stocks: Vec<&str> = offers.iter().map(|o| o["stock"].as_str().unwrap()).collect();
    assert!(
        stocks.contains(&"empty") && stocks.contains(&"low") && stocks.contains(&"available"),
        "{stocks:?}"
    );
    let pn = b220["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "Private Network")
        .unwrap();
    assert_eq!(pn["id"], OPTION_PRIVATE_NETWORK);
    assert!(pn["private_network"]["bandwidth_in_bps"].is_u64());
    let a116 = api.get(&format!("{em}/offers/{OFFER_A116X}")).body;
    assert!(
        a116["incompatible_os_ids"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == OS_PROXMOX)
    );
    let named = api.get(&format!("{em}/offers?name=EM-A116X-SSD")).body;
    assert_eq!(named["total_count"], 1);
    assert_eq!(
        api.get(&format!("{em}/offers/3f0a460c-46aa-4b9e-a39a-083688d08b6a"))
            .status,
        404
    );
    assert_eq!(api.get(&format!("{em}/offers?subscription_period=yearly")).status, 400);
    // OS list, and without the OSes an offer cannot take.
    let all = api.get(&format!("{em}/os")).body;
    let n = all["total_count"].as_u64().unwrap();
    assert!(n >= 3);
    let os = all["os"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == OS_UBUNTU_2204)
        .unwrap();
    for k in ["ssh", "user", "password", "service_user", "service_password"] {
        assert!(
            os[k].get("required").is_some() && os[k].get("default_value").is_some(),
            "{k}"
        );
    }
    let for_a116 = api.get(&format!("{em}/os?offer_id={OFFER_A116X}")).body;
    assert!(for_a116["total_count"].as_u64().unwrap() < n);
    assert!(!for_a116["os"].as_array().unwrap().iter().any(|o| o["id"] == OS_PROXMOX));
    assert_eq!(api.get(&format!("{em}/os/{OS_UBUNTU_2204}")).body["name"], "Ubuntu");
    // Options catalogue.
    let opts = api
        .get(&format!("{em}/options?offer_id={OFFER_B220E}&name=Private%20Network"))
        .body;
    assert_eq!(opts["options"][0]["id"], OPTION_PRIVATE_NETWORK);
    let schema = api.get(&format!(
        "{em}/partitioning-schemas/default?offer_id={OFFER_B220E}&os_id={OS_UBUNTU_2204}"
    ));
    assert_eq!(schema.status, 200);
    assert!(schema.body["disks"].is_array());
}

fn server_path(api: &Api, id: &str) -> String {
    format!("{}/servers/{id}", api.em(ZONE))
}

#[test]
fn a_server_with_install_goes_ordered_ready_and_installs() {
    let api = Api::new();
    let key = api.create_ssh_key();
    let r = api.post(
        &format!("{}/servers", api.em(ZONE)),
        json!({
            "offer_id": OFFER_B220E, "project_id": PROJECT, "name": "n1", "description": "", "tags": ["t"],
            "install": {"os_id": OS_UBUNTU_2204, "hostname": "n1", "ssh_key_ids": [key],
                        "user": null, "password": null, "service_user": null, "service_password": null,
                        "partitioning_schema": null},
            "option_ids": null, "protected": false,
        }),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let s = r.body;
    assert_eq!(s["status"], "ordered");
    assert_eq!(s["install"]["status"], "to_install");
    assert_eq!(s["install"]["user"], "ubuntu");
    assert_eq!(s["ips"], json!([]), "empty in the create answer [rec]");
    assert_eq!(s["domain"], "");
    assert_eq!(s["protected"], false);
    assert_eq!(s["user_data"], Value::Null);
    assert_eq!(s["rescue_server"], Value::Null);
    assert_eq!(s["offer_name"], "EM-B220E-NVME");
    let id = s["id"].as_str().unwrap().to_string();
    let path = server_path(&api, &id);
    let g = api.get(&path).body;
    assert_eq!(g["ips"].as_array().unwrap().len(), 2);
    assert_eq!(g["ips"][0]["version"], "IPv4");
    assert_eq!(g["ips"][1]["version"], "IPv6");
    // Install, stop and delete are refused while ordered.
    for (m, p) in [("POST", format!("{path}/stop")), ("DELETE", path.clone())] {
        let r = api.send(m, &p, Some(&json!({})), Some(common::TOKEN));
        assert_eq!(
            (r.status, r.body["current_state"].as_str()),
            (409, Some("ordered")),
            "{m} {p}"
        );
    }
    api.advance(5.0);
    let g = api.get(&path).body;
    assert_eq!(
        (g["status"].as_str(), g["install"]["status"].as_str()),
        (Some("ready"), Some("to_install"))
    );
    api.advance(20.0);
    let g = api.get(&path).body;
    assert_eq!(g["install"]["status"], "installing");
    assert_eq!(g["domain"], format!("{id}.{ZONE}.baremetal.scw.cloud"));
    assert_eq!(g["ping_status"], "ping_status_up");
    api.advance(329.0);
    assert_eq!(api.get(&path).body["install"]["status"], "installing");
    api.advance(1.0);
    let g = api.get(&path).body;
    assert_eq!(g["install"]["status"], "completed");
    assert_eq!(g["ips"][0]["reverse_status"], "active");
    // Listing and filters.
    let list = api
        .get(&format!("{}/servers?tags=t&status=ready&name=n", api.em(ZONE)))
        .body;
    assert_eq!(list["total_count"], 1);
    assert_eq!(
        api.get(&format!("{}/servers?status=stopped", api.em(ZONE))).body["total_count"],
        0
    );
    // Patch.
    let r = api.patch(&path, json!({"name": "n2", "tags": ["a", "b"]}));
    assert_eq!(
        (r.body["name"].as_str(), r.body["tags"].clone()),
        (Some("n2"), json!(["a", "b"]))
    );
    // Delete: 200 deleting, then 404 {"message":"Not Found"}.
    let r = api.delete(&path);
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("deleting")));
    api.advance(4.9);
    assert_eq!(api.get(&path).body["status"], "deleting");
    api.advance(0.1);
    let r = api.get(&path);
    assert_eq!((r.status, r.body), (404, json!({"message": "Not Found"})));
    assert_eq!(api.delete(&path).status, 404);
    assert_eq!(api.state()["counts"]["servers"], 0);
}

#[test]
fn a_server_without_install_is_delivered_and_omits_protected_and_user_data() {
    let api = Api::new();
    let r = api.post(
        &format!("{}/servers", api.em(ZONE)),
        json!({"offer_id": OFFER_B220E, "project_id": PROJECT, "name": "bare", "description": "", "tags": [], "option_ids": null}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "delivering");
    assert_eq!(r.body["install"], Value::Null);
    assert!(
        r.body.get("protected").is_none() && r.body.get("user_data").is_none(),
        "[rec]: {:?}",
        r.body
    );
    let path = server_path(&api, r.body["id"].as_str().unwrap());
    api.advance(2.0);
    assert_eq!(api.get(&path).body["status"], "ready");
    // Install later: to_install → installing → completed, server stays ready.
    let key = api.create_ssh_key();
    let r = api.post(
        &format!("{path}/install"),
        json!({"os_id": OS_UBUNTU_2204, "hostname": "h", "ssh_key_ids": [key]}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (r.body["status"].as_str(), r.body["install"]["status"].as_str()),
        (Some("ready"), Some("to_install"))
    );
    let again = api.post(
        &format!("{path}/install"),
        json!({"os_id": OS_UBUNTU_2204, "hostname": "h", "ssh_key_ids": [key]}),
    );
    assert_eq!(
        (again.status, again.body["current_state"].as_str()),
        (409, Some("to_install"))
    );
    api.advance(20.0);
    assert_eq!(api.get(&path).body["install"]["status"], "installing");
    api.advance(330.0);
    assert_eq!(api.get(&path).body["install"]["status"], "completed");
}

#[test]
fn stop_start_and_reboot() {
    let api = Api::new();
    let id = api.create_server(ZONE, false);
    let path = server_path(&api, &id);
    api.advance(2.0);
    assert_eq!(
        api.post(&format!("{path}/start"), json!({})).status,
        400,
        "already running"
    );
    let r = api.post(&format!("{path}/stop"), json!({}));
    assert_eq!(r.body["status"], "stopping");
    assert_eq!(api.post(&format!("{path}/stop"), json!({})).status, 409);
    api.advance(15.0);
    assert_eq!(api.get(&path).body["status"], "stopped");
    assert_eq!(api.post(&format!("{path}/start"), json!({})).body["status"], "starting");
    api.advance(15.0);
    assert_eq!(api.get(&path).body["status"], "ready");
    assert_eq!(
        api.post(&format!("{path}/reboot"), json!({"boot_type": "normal"})).body["status"],
        "stopping"
    );
    api.advance(8.0);
    assert_eq!(api.get(&path).body["status"], "starting");
    api.advance(15.0);
    assert_eq!(api.get(&path).body["status"], "ready");
}

#[test]
fn create_errors() {
    let api = Api::new();
    let servers = format!("{}/servers", api.em(ZONE));
    let key = api.create_ssh_key();
    let install = json!({"os_id": OS_UBUNTU_2204, "hostname": "h", "ssh_key_ids": [key]});
    // cloud-init on an offer without it: the real non-standard 503.
    let r = api.post(
        &servers,
        json!({"offer_id": OFFER_L110X_NO_CLOUD_INIT, "project_id": PROJECT, "name": "x", "install": install, "user_data": "I2Nsb3VkLWNvbmZpZwo="}),
    );
    assert_eq!(
        (r.status, r.body.clone()),
        (503, json!({"message": "cloud-init is not supported on this offer"}))
    );
    // The same offer without user_data is fine.
    let ok = api.post(
        &servers,
        json!({"offer_id": OFFER_L110X_NO_CLOUD_INIT, "project_id": PROJECT, "name": "x"}),
    );
    assert_eq!(ok.status, 200);
    // An offer out of stock.
    let r = api.post(
        &servers,
        json!({"offer_id": OFFER_L420E_EMPTY, "project_id": PROJECT, "name": "x"}),
    );
    assert_eq!(r.status, 503);
    assert_eq!(r.body["type"], "out_of_stock");
    assert_eq!(r.body["resource"], "EM-L420E-NVME");
    // Unknown offer, unknown OS, incompatible OS, unknown SSH key, missing key.
    let bad = [
        (
            json!({"offer_id": "8b0c9d6e-2f1a-4c3b-9d8e-7f6a5b4c3d2e", "project_id": PROJECT}),
            "offer_id",
        ),
        (
            json!({"offer_id": OFFER_B220E, "project_id": PROJECT, "install": {"os_id": "8b0c9d6e-2f1a-4c3b-9d8e-7f6a5b4c3d2e", "ssh_key_ids": [key]}}),
            "install.os_id",
        ),
        (
            json!({"offer_id": OFFER_A116X, "project_id": PROJECT, "install": {"os_id": OS_PROXMOX, "ssh_key_ids": [key]}}),
            "install.os_id",
        ),
        (
            json!({"offer_id": OFFER_B220E, "project_id": PROJECT, "install": {"os_id": OS_UBUNTU_2204, "ssh_key_ids": ["8b0c9d6e-2f1a-4c3b-9d8e-7f6a5b4c3d2e"]}}),
            "install.ssh_key_ids",
        ),
        (
            json!({"offer_id": OFFER_B220E, "project_id": PROJECT, "install": {"os_id": OS_UBUNTU_2204, "ssh_key_ids": []}}),
            "install.ssh_key_ids",
        ),
        (json!({"offer_id": OFFER_B220E}), "project_id"),
        (json!({"offer_id": "nope", "project_id": PROJECT}), "offer_id"),
        (
            json!({"offer_id": OFFER_B220E, "project_id": PROJECT, "option_ids": ["8b0c9d6e-2f1a-4c3b-9d8e-7f6a5b4c3d2e"]}),
            "option_ids",
        ),
    ];
    for (body, arg) in bad {
        let r = api.post(&servers, body.clone());
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert_eq!(r.body["type"], "invalid_arguments");
        assert_eq!(r.body["details"][0]["argument_name"], arg, "{body}");
    }
    // Protected servers cannot be deleted.
    let r = api.post(
        &servers,
        json!({"offer_id": OFFER_B220E, "project_id": PROJECT, "name": "p", "protected": true}),
    );
    let path = server_path(&api, r.body["id"].as_str().unwrap());
    api.advance(2.0);
    let r = api.delete(&path);
    assert_eq!((r.status, r.body["type"].as_str()), (412, Some("precondition_failed")));
}

#[test]
fn options_are_enabled_then_private_networks_are_attached() {
    let api = Api::new();
    let id = api.create_server(ZONE, false);
    let path = server_path(&api, &id);
    api.advance(2.0);
    // A private network in the zone's region.
    let pn = api.post(
        "/vpc/v2/regions/fr-par/private-networks",
        json!({"name": "pn", "project_id": PROJECT}),
    );
    let pn_id = pn.body["id"].as_str().unwrap().to_string();
    let spns = format!("/baremetal/v3/zones/{ZONE}/servers/{id}/private-networks");
    let want = json!({"per_private_network_ipam_ip_ids": {pn_id.clone(): []}});
    // Without the Private Network option: refused.
    assert_eq!(api.put(&spns, want.clone()).status, 400);
    let r = api.post(&format!("{path}/options/{OPTION_PRIVATE_NETWORK}"), json!({}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let opt = &r.body["options"][0];
    assert_eq!(opt["status"], "option_status_enabling");
    assert_eq!(opt["expires_at"], Value::Null);
    assert!(opt["private_network"].is_object());
    assert_eq!(
        api.post(&format!("{path}/options/{OPTION_PRIVATE_NETWORK}"), json!({}))
            .status,
        400
    );
    // The mapping: attaching with a VLAN and two IPAM IPs.
    let r = api.put(&spns, want.clone());
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(
        r.body.get("total_count").is_none(),
        "the PUT answer has no total_count [rec]"
    );
    let m = &r.body["server_private_networks"][0];
    assert_eq!(m["status"], "attaching");
    assert!(m["vlan"].as_u64().unwrap() >= 1000);
    assert_eq!(m["ipam_ip_ids"].as_array().unwrap().len(), 2);
    let mapping = m["id"].as_str().unwrap().to_string();
    api.advance(10.0);
    let g = api.get(&path).body;
    assert_eq!(g["options"][0]["status"], "option_status_enable");
    assert!(
        g["tags"].as_array().unwrap().iter().any(|t| t == "PrivateNetwork"),
        "[rec]: {:?}",
        g["tags"]
    );
    api.advance(5.0);
    let list = api
        .get(&format!(
            "/baremetal/v3/zones/{ZONE}/server-private-networks?server_id={id}"
        ))
        .body;
    assert_eq!(list["total_count"], 1);
    assert_eq!(list["server_private_networks"][0]["status"], "attached");
    // The private IPs, from IPAM.
    let ips = api
        .get(&format!(
            "/ipam/v1/regions/fr-par/ips?resource_type=baremetal_private_nic&resource_id={mapping}&private_network_id={pn_id}"
        ))
        .body;
    assert_eq!(ips["total_count"], 2, "{ips:?}");
    let v4 = ips["ips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["is_ipv6"] == false)
        .unwrap();
    assert!(v4["address"].as_str().unwrap().ends_with(".2/22"), "{v4:?}");
    assert_eq!(v4["resource"]["type"], "baremetal_private_nic");
    assert_eq!(v4["resource"]["name"], "node");
    // The PN cannot be deleted while the server is in it.
    let r = api.delete(&format!("/vpc/v2/regions/fr-par/private-networks/{pn_id}"));
    assert_eq!(
        (r.status, r.body["precondition"].as_str()),
        (412, Some("resource_still_in_use"))
    );
    // PUT {} detaches: detaching (IPs released at once [rec]), then gone.
    let r = api.put(&spns, json!({"per_private_network_ipam_ip_ids": {}}));
    assert_eq!(r.body["server_private_networks"][0]["status"], "detaching");
    assert_eq!(r.body["server_private_networks"][0]["ipam_ip_ids"], json!([]));
    api.advance(10.0);
    let list = api
        .get(&format!(
            "/baremetal/v3/zones/{ZONE}/server-private-networks?server_id={id}"
        ))
        .body;
    assert_eq!(list["total_count"], 0);
    assert_eq!(api.get("/ipam/v1/regions/fr-par/ips").body["total_count"], 0);
    // POST one, DELETE one.
    let r = api.post(&spns, json!({"private_network_id": pn_id}));
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("attaching")));
    assert_eq!(api.delete(&format!("{spns}/{pn_id}")).status, 409, "attaching");
    api.advance(15.0);
    assert_eq!(api.delete(&format!("{spns}/{pn_id}")).status, 204);
    api.advance(10.0);
    assert_eq!(
        api.delete(&format!("/vpc/v2/regions/fr-par/private-networks/{pn_id}"))
            .status,
        204
    );
    // Deleting the option.
    let r = api.delete(&format!("{path}/options/{OPTION_PRIVATE_NETWORK}"));
    assert_eq!(r.body["options"][0]["status"], "option_status_disabling");
    api.advance(10.0);
    assert_eq!(api.get(&path).body["options"], json!([]));
}

#[test]
fn deleting_a_server_removes_its_mappings_and_private_ips() {
    let api = Api::new();
    let key = api.create_ssh_key();
    let r = api.post(
        &format!("{}/servers", api.em(ZONE)),
        json!({"offer_id": OFFER_B220E, "project_id": PROJECT, "name": "n", "option_ids": [OPTION_PRIVATE_NETWORK],
               "install": {"os_id": OS_UBUNTU_2204, "hostname": "n", "ssh_key_ids": [key]}}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["options"][0]["status"], "option_status_enabling");
    let id = r.body["id"].as_str().unwrap().to_string();
    api.advance(5.0);
    let pn = api.post(
        "/vpc/v2/regions/fr-par/private-networks",
        json!({"name": "pn", "project_id": PROJECT}),
    );
    let pn_id = pn.body["id"].as_str().unwrap().to_string();
    let spns = format!("/baremetal/v3/zones/{ZONE}/servers/{id}/private-networks");
    assert_eq!(
        api.put(&spns, json!({"per_private_network_ipam_ip_ids": {pn_id.clone(): []}}))
            .status,
        200
    );
    api.advance(15.0);
    let r = api.delete(&server_path(&api, &id));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["options"][0]["status"], "option_status_enable",
        "the answer shows the old status [rec]"
    );
    assert_eq!(
        api.get(&server_path(&api, &id)).body["options"][0]["status"],
        "option_status_disabling"
    );
    api.advance(5.0);
    let state = api.state();
    assert_eq!(state["counts"]["servers"], 0);
    assert_eq!(state["counts"]["server_private_networks"], 0);
    assert_eq!(state["counts"]["ipam_ips"], 0);
}
