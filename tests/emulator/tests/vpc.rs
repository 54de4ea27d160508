//! VPC v2, Public Gateway v2, IPAM v1 and IAM SSH keys through HTTP with a
//! manual clock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{Api, PROJECT, SSH_KEY};
use serde_json::{Value, json};

const VPC: &str = "/vpc/v2/regions/fr-par";
const GW: &str = "/vpc-gw/v2/zones/fr-par-1";
const IPAM: &str = "/ipam/v1/regions/fr-par";

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

#[test]
fn default_vpc_per_project_and_region_and_vpc_shapes() {
    let api = Api::new();
    let r = api
        .get(&format!("{VPC}/vpcs?is_default=true&project_id={PROJECT}"))
        .body;
    assert_eq!(r["total_count"], 1, "created on first use");
    let default = &r["vpcs"][0];
    assert_eq!(
        (default["name"].as_str(), default["is_default"].as_bool()),
        (Some("default"), Some(true))
    );
    assert!(
        default.get("transitivity_enabled").is_none(),
        "left out when false [rec]"
    );
    // The same call does not make a second one; another region has its own.
    assert_eq!(
        api.get(&format!("{VPC}/vpcs?is_default=true&project_id={PROJECT}"))
            .body["total_count"],
        1
    );
    let ams = api
        .get(&format!(
            "/vpc/v2/regions/nl-ams/vpcs?is_default=true&project_id={PROJECT}"
        ))
        .body;
    assert_ne!(ams["vpcs"][0]["id"], default["id"]);
    let r = api.post(
        &format!("{VPC}/vpcs"),
        json!({"name": "v", "project_id": PROJECT, "tags": [], "enable_routing": false, "enable_transitivity": true}),
    );
    assert_eq!(r.status, 200);
    let vpc = r.body;
    assert_eq!(vpc["routing_enabled"], true, "routing is always on [rec]");
    assert_eq!(vpc["transitivity_enabled"], true);
    assert_eq!(vpc["private_network_count"], 0);
    let plain = api
        .post(&format!("{VPC}/vpcs"), json!({"name": "w", "project_id": PROJECT}))
        .body;
    assert!(plain.get("transitivity_enabled").is_none());
    let r = api.patch(
        &format!("{VPC}/vpcs/{}", id(&vpc)),
        json!({"name": "v2", "tags": ["x"]}),
    );
    assert_eq!(
        (r.body["name"].as_str(), r.body["tags"].clone()),
        (Some("v2"), json!(["x"]))
    );
    assert_eq!(api.get(&format!("{VPC}/vpcs?name=v2")).body["total_count"], 1);
    assert_eq!(api.delete(&format!("{VPC}/vpcs/{}", id(&plain))).status, 204);
    let r = api.get(&format!("{VPC}/vpcs/{}", id(&plain)));
    assert_eq!(
        (r.status, r.body),
        (
            404,
            json!({"message":"resource is not found","resource":"vpc","resource_id":id(&plain),"type":"not_found"})
        )
    );
}

#[test]
fn private_networks_get_automatic_subnets_and_cannot_be_deleted_in_use() {
    let api = Api::new();
    let vpc = api
        .post(&format!("{VPC}/vpcs"), json!({"name": "v", "project_id": PROJECT}))
        .body;
    let pn = api
        .post(
            &format!("{VPC}/private-networks"),
            json!({"name": "a", "project_id": PROJECT, "tags": [], "subnets": null, "vpc_id": id(&vpc), "default_route_propagation_enabled": false}),
        )
        .body;
    let subnets: Vec<&str> = pn["subnets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subnet"].as_str().unwrap())
        .collect();
    assert_eq!(subnets.len(), 2, "{subnets:?}");
    assert!(
        subnets[0].ends_with("/22") && subnets[0].starts_with("172.16."),
        "{subnets:?}"
    );
    assert!(
        subnets[1].ends_with("::/64") && subnets[1].starts_with("fd"),
        "{subnets:?}"
    );
    assert_eq!(pn["dhcp_enabled"], true);
    assert_eq!(pn["subnets"][0]["vpc_id"], vpc["id"]);
    assert_eq!(pn["subnets"][0]["private_network_id"], pn["id"]);
    // An explicit subnet still gets an IPv6 /64; a second auto one does not overlap.
    let b = api
        .post(
            &format!("{VPC}/private-networks"),
            json!({"name": "b", "project_id": PROJECT, "subnets": ["172.16.64.0/22"], "vpc_id": id(&vpc)}),
        )
        .body;
    assert_eq!(b["subnets"][0]["subnet"], "172.16.64.0/22");
    assert_eq!(b["subnets"].as_array().unwrap().len(), 2);
    let c = api
        .post(
            &format!("{VPC}/private-networks"),
            json!({"name": "c", "project_id": PROJECT, "vpc_id": id(&vpc)}),
        )
        .body;
    assert_ne!(c["subnets"][0]["subnet"], pn["subnets"][0]["subnet"]);
    let overlap = api.post(
        &format!("{VPC}/private-networks"),
        json!({"name": "d", "project_id": PROJECT, "subnets": ["172.16.65.0/24"], "vpc_id": id(&vpc)}),
    );
    assert_eq!(overlap.status, 400);
    let bad = api.post(
        &format!("{VPC}/private-networks"),
        json!({"name": "d", "project_id": PROJECT, "subnets": ["x"]}),
    );
    assert_eq!(bad.status, 400);
    assert_eq!(
        api.get(&format!("{VPC}/vpcs/{}", id(&vpc))).body["private_network_count"],
        3
    );
    // Without vpc_id: the project's default VPC.
    let d = api
        .post(
            &format!("{VPC}/private-networks"),
            json!({"name": "e", "project_id": PROJECT}),
        )
        .body;
    let default = api
        .get(&format!("{VPC}/vpcs?is_default=true&project_id={PROJECT}"))
        .body;
    assert_eq!(d["vpc_id"], default["vpcs"][0]["id"]);
    // Filters.
    assert_eq!(
        api.get(&format!("{VPC}/private-networks?vpc_id={}", id(&vpc))).body["total_count"],
        3
    );
    let ids = format!("private_network_ids={}&private_network_ids={}", id(&pn), id(&b));
    assert_eq!(api.get(&format!("{VPC}/private-networks?{ids}")).body["total_count"], 2);
    // A VPC with PNs cannot go.
    let r = api.delete(&format!("{VPC}/vpcs/{}", id(&vpc)));
    assert_eq!((r.status, r.body["type"].as_str()), (412, Some("precondition_failed")));
    // A gateway network keeps its PN.
    let gw = api
        .post(
            &format!("{GW}/gateways"),
            json!({"project_id": PROJECT, "name": "g", "type": "VPC-GW-S"}),
        )
        .body;
    api.advance(7.0);
    let gn = api.post(
        &format!("{GW}/gateway-networks"),
        json!({"gateway_id": id(&gw), "private_network_id": id(&b)}),
    );
    assert_eq!(gn.status, 200, "{:?}", gn.body);
    let r = api.delete(&format!("{VPC}/private-networks/{}", id(&b)));
    assert_eq!(r.status, 412);
    assert_eq!(
        r.body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["help_message", "message", "precondition", "type"]
    );
    assert_eq!(r.body["message"], "precondition is not respected");
    assert_eq!(r.body["precondition"], "resource_still_in_use");
    // A free PN goes, then 404 not_found private_network.
    assert_eq!(api.delete(&format!("{VPC}/private-networks/{}", id(&c))).status, 204);
    let r = api.get(&format!("{VPC}/private-networks/{}", id(&c)));
    assert_eq!((r.status, r.body["resource"].as_str()), (404, Some("private_network")));
}

#[test]
fn gateways_allocate_configure_and_run_and_gateway_networks_follow() {
    let api = Api::new();
    let pn = api
        .post(
            &format!("{VPC}/private-networks"),
            json!({"name": "p", "project_id": PROJECT, "subnets": ["172.16.64.0/22"]}),
        )
        .body;
    let r = api.post(
        &format!("{GW}/gateways"),
        json!({"project_id": PROJECT, "name": "g", "tags": [], "type": "VPC-GW-S", "enable_smtp": false, "enable_bastion": false}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let gw = r.body;
    assert_eq!(gw["status"], "allocating");
    assert!(gw.get("version").is_none(), "no version yet [rec]");
    assert_eq!(gw["bastion_port"], 61000);
    assert_eq!(gw["bastion_allowed_ips"], json!(["0.0.0.0/0"]));
    assert_eq!(gw["ipv4"]["gateway_id"], gw["id"]);
    let path = format!("{GW}/gateways/{}", id(&gw));
    // A GN while the gateway is not running: 409 naming the gateway.
    let gn_body = json!({"gateway_id": id(&gw), "private_network_id": id(&pn), "enable_masquerade": true, "push_default_route": true});
    let r = api.post(&format!("{GW}/gateway-networks"), gn_body.clone());
    assert_eq!(r.status, 409);
    assert_eq!(
        r.body,
        json!({"current_state":"allocating","message":"resource is in a transient state","resource":"gateway","resource_id":id(&gw),"type":"transient_state"})
    );
    api.advance(5.0);
    let g = api.get(&path).body;
    assert_eq!(g["status"], "configuring");
    assert_eq!(g["version"], "0.7.8");
    api.advance(2.0);
    assert_eq!(api.get(&path).body["status"], "running");
    // GN create: GN created (no MAC yet), gateway configuring; 15 s later ready/running.
    let r = api.post(&format!("{GW}/gateway-networks"), gn_body.clone());
    assert_eq!(r.status, 200, "{:?}", r.body);
    let gn = r.body;
    assert_eq!(gn["status"], "created");
    assert!(gn.get("mac_address").is_none(), "[rec]");
    assert!(gn["ipam_ip_id"].is_string());
    let g = api.get(&path).body;
    assert_eq!(g["status"], "configuring");
    assert_eq!(g["gateway_networks"][0]["id"], gn["id"]);
    // A second GN while configuring: 409 naming the gateway (not the GN).
    let pn2 = api
        .post(
            &format!("{VPC}/private-networks"),
            json!({"name": "q", "project_id": PROJECT}),
        )
        .body;
    let r = api.post(
        &format!("{GW}/gateway-networks"),
        json!({"gateway_id": id(&gw), "private_network_id": id(&pn2)}),
    );
    assert_eq!(
        (r.status, r.body["resource"].as_str(), r.body["current_state"].as_str()),
        (409, Some("gateway"), Some("configuring"))
    );
    assert_eq!(r.body["resource_id"], gw["id"]);
    api.advance(15.0);
    let gn_path = format!("{GW}/gateway-networks/{}", id(&gn));
    let g = api.get(&gn_path).body;
    assert_eq!(g["status"], "ready");
    assert!(g["mac_address"].is_string());
    assert_eq!(api.get(&path).body["status"], "running");
    // The GN's IP in IPAM.
    let ips = api
        .get(&format!(
            "{IPAM}/ips?resource_id={}&resource_type=vpc_gateway_network",
            id(&gn)
        ))
        .body;
    assert_eq!(ips["total_count"], 1);
    assert_eq!(ips["ips"][0]["address"], "172.16.64.2/22");
    assert_eq!(ips["ips"][0]["id"], gn["ipam_ip_id"]);
    // Book a fixed IP and move the GN onto it: configuring → ready.
    let booked = api
        .post(&format!("{IPAM}/ips"), json!({"project_id": PROJECT, "source": {"private_network_id": id(&pn)}, "is_ipv6": false, "address": "172.16.64.7", "tags": []}))
        .body;
    assert_eq!(booked["address"], "172.16.64.7/22");
    assert_eq!(booked["resource"], Value::Null);
    assert_eq!(booked["zone"], Value::Null);
    assert!(booked["source"]["subnet_id"].is_string());
    let r = api.patch(&gn_path, json!({"push_default_route": true, "ipam_ip_id": id(&booked)}));
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("configuring")));
    assert_eq!(api.patch(&gn_path, json!({})).status, 409);
    api.advance(5.0);
    assert_eq!(api.get(&gn_path).body["status"], "ready");
    let b = api.get(&format!("{IPAM}/ips/{}", id(&booked))).body;
    assert_eq!(b["resource"]["type"], "vpc_gateway_network");
    assert_eq!(b["resource"]["mac_address"], Value::Null, "[rec]");
    assert_eq!(
        api.get(&format!("{IPAM}/ips/{}", gn["ipam_ip_id"].as_str().unwrap()))
            .status,
        404,
        "the auto IP was released"
    );
    // The booked IP cannot be released while in use.
    assert_eq!(api.delete(&format!("{IPAM}/ips/{}", id(&booked))).status, 412);
    // The gateway cannot go while it has a GN.
    assert_eq!(api.delete(&format!("{path}?delete_ip=false")).status, 412);
    // GN delete: detaching, then 404 not_found gateway_network.
    let r = api.delete(&gn_path);
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("detaching")));
    api.advance(5.0);
    let r = api.get(&gn_path);
    assert_eq!((r.status, r.body["resource"].as_str()), (404, Some("gateway_network")));
    assert_eq!(api.get(&path).body["gateway_networks"], json!([]));
    assert_eq!(api.delete(&format!("{IPAM}/ips/{}", id(&booked))).status, 204);
    // Gateway delete: deleting in the answer, then 404 at once; the IP stays without delete_ip.
    let r = api.delete(&format!("{path}?delete_ip=false"));
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("deleting")));
    let r = api.get(&path);
    assert_eq!((r.status, r.body["resource"].as_str()), (404, Some("gateway")));
    let ips = api.get(&format!("{GW}/ips?is_free=true")).body;
    assert_eq!(ips["total_count"], 1);
    assert_eq!(ips["ips"][0]["gateway_id"], Value::Null);
    // A gateway on that free IP, deleted with its IP.
    let ip_id = ips["ips"][0]["id"].as_str().unwrap().to_string();
    let gw2 = api
        .post(
            &format!("{GW}/gateways"),
            json!({"project_id": PROJECT, "name": "g2", "ip_id": ip_id}),
        )
        .body;
    assert_eq!(gw2["ipv4"]["id"], ip_id.as_str());
    api.advance(7.0);
    // A boolean as Go's ParseBool reads it (the real API is written in Go):
    // `True` is true; `yes` is refused.
    assert_eq!(
        api.delete(&format!("{GW}/gateways/{}?delete_ip=yes", id(&gw2))).status,
        400
    );
    assert_eq!(
        api.delete(&format!("{GW}/gateways/{}?delete_ip=True", id(&gw2))).status,
        200
    );
    assert_eq!(api.get(&format!("{GW}/ips")).body["total_count"], 0);
}

#[test]
fn gateway_patch_bastion_and_types() {
    let api = Api::new();
    let gw = api
        .post(
            &format!("{GW}/gateways"),
            json!({"project_id": PROJECT, "name": "b", "type": "VPC-GW-S", "enable_bastion": true}),
        )
        .body;
    let path = format!("{GW}/gateways/{}", id(&gw));
    assert_eq!(gw["bastion_enabled"], true);
    api.advance(7.0);
    // A name change keeps running; a bastion change goes through configuring
    // (the answer still says running [rec]).
    let r = api.patch(&path, json!({"name": "b2", "tags": ["t"]}));
    assert_eq!(r.body["status"], "running");
    assert_eq!(api.get(&path).body["status"], "running");
    let r = api.patch(&path, json!({"enable_bastion": true, "bastion_port": 59999}));
    assert_eq!(
        (r.body["status"].as_str(), r.body["bastion_port"].as_u64()),
        (Some("running"), Some(59999))
    );
    assert_eq!(api.get(&path).body["status"], "configuring");
    assert_eq!(api.patch(&path, json!({"enable_smtp": true})).status, 409);
    api.advance(5.0);
    assert_eq!(api.get(&path).body["status"], "running");
    assert_eq!(api.patch(&path, json!({"bastion_port": 60500})).status, 400);
    // Bastion allowed IPs.
    let r = api.put(
        &format!("{path}/bastion-allowed-ips"),
        json!({"ip_ranges": ["10.0.0.0/8"]}),
    );
    assert_eq!(r.body, json!({"ip_ranges": ["10.0.0.0/8"]}));
    let r = api.post(
        &format!("{path}/bastion-allowed-ips"),
        json!({"ip_range": "192.0.2.0/24"}),
    );
    assert_eq!(r.body["ip_ranges"].as_array().unwrap().len(), 2);
    assert_eq!(
        api.delete(&format!("{path}/bastion-allowed-ips/10.0.0.0%2F8")).status,
        204
    );
    assert_eq!(api.get(&path).body["bastion_allowed_ips"], json!(["192.0.2.0/24"]));
    assert_eq!(
        api.put(&format!("{path}/bastion-allowed-ips"), json!({"ip_ranges": ["nope"]}))
            .status,
        400
    );
    assert_eq!(api.post(&format!("{path}/refresh-ssh-keys"), json!({})).status, 200);
    let types = api.get(&format!("{GW}/gateway-types")).body;
    assert!(
        types["types"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "VPC-GW-S")
    );
    assert_eq!(api.get(&format!("{GW}/gateways?tags=t")).body["total_count"], 1);
    assert_eq!(
        api.post(
            &format!("{GW}/gateways"),
            json!({"project_id": PROJECT, "type": "VPC-GW-XXL"})
        )
        .status,
        400
    );
}

#[test]
fn ipam_books_lists_and_releases() {
    let api = Api::new();
    let pn = api
        .post(
            &format!("{VPC}/private-networks"),
            json!({"name": "p", "project_id": PROJECT}),
        )
        .body;
    let src = json!({"private_network_id": id(&pn)});
    let a = api
        .post(
            &format!("{IPAM}/ips"),
            json!({"project_id": PROJECT, "source": src, "tags": ["x"]}),
        )
        .body;
    assert_eq!(a["address"], "172.16.0.2/22");
    let b = api
        .post(&format!("{IPAM}/ips"), json!({"project_id": PROJECT, "source": src}))
        .body;
    assert_eq!(b["address"], "172.16.0.3/22");
    let v6 = api
        .post(
            &format!("{IPAM}/ips"),
            json!({"project_id": PROJECT, "source": src, "is_ipv6": true}),
        )
        .body;
    assert!(v6["address"].as_str().unwrap().ends_with("/64"), "{v6:?}");
    let dup = api.post(
        &format!("{IPAM}/ips"),
        json!({"project_id": PROJECT, "source": src, "address": "172.16.0.2"}),
    );
    assert_eq!((dup.status, dup.body["type"].as_str()), (409, Some("already_exists")));
    let outside = api.post(
        &format!("{IPAM}/ips"),
        json!({"project_id": PROJECT, "source": src, "address": "10.0.0.9"}),
    );
    assert_eq!(outside.status, 400);
    let by_subnet = api.post(
        &format!("{IPAM}/ips"),
        json!({"project_id": PROJECT, "source": {"subnet_id": pn["subnets"][0]["id"]}, "address": "172.16.1.1"}),
    );
    assert_eq!(by_subnet.status, 200, "{:?}", by_subnet.body);
    let unknown = api.post(
        &format!("{IPAM}/ips"),
        json!({"project_id": PROJECT, "source": {"private_network_id": "6f9d3c2b-1a0e-4d5c-8b7a-9e8d7c6b5a49"}}),
    );
    assert_eq!(unknown.status, 404);
    // Lists: newest first by default.
    let list = api.get(&format!("{IPAM}/ips?private_network_id={}", id(&pn))).body;
    assert_eq!(list["total_count"], 4);
    assert_eq!(list["ips"][0]["id"], by_subnet.body["id"]);
    assert_eq!(api.get(&format!("{IPAM}/ips?tags=x")).body["total_count"], 1);
    assert_eq!(api.get(&format!("{IPAM}/ips?is_ipv6=true")).body["total_count"], 1);
    assert_eq!(api.get(&format!("{IPAM}/ips?attached=false")).body["total_count"], 4);
    let r = api.patch(&format!("{IPAM}/ips/{}", id(&a)), json!({"tags": ["y"]}));
    assert_eq!(r.body["tags"], json!(["y"]));
    let r = api.send(
        "DELETE",
        &format!("{IPAM}/ips/{}", id(&a)),
        Some(&json!({})),
        Some(common::TOKEN),
    );
    assert_eq!(r.status, 204);
    let r = api.get(&format!("{IPAM}/ips/{}", id(&a)));
    assert_eq!(
        (r.status, r.body),
        (
            404,
            json!({"message":"resource is not found","resource":"ip","resource_id":id(&a),"type":"not_found"})
        )
    );
}

#[test]
fn iam_ssh_keys() {
    let api = Api::new();
    let r = api.post(
        "/iam/v1alpha1/ssh-keys",
        json!({"name": "k", "public_key": SSH_KEY, "project_id": PROJECT}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let key = r.body;
    assert_eq!(
        key["public_key"], "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICJEoOOgQBLJPs4g/XcPTKT82NywNPpxeuA20FlOPlpO",
        "the comment is stripped [rec]"
    );
    assert_eq!(
        key["fingerprint"],
        "256 MD5:6b:cd:72:8a:ae:45:24:4b:2b:72:f6:d0:6a:8d:16:06 (ssh-ed25519)"
    );
    assert_eq!(key["disabled"], false);
    let dup = api.post(
        "/iam/v1alpha1/ssh-keys",
        json!({"name": "k2", "public_key": SSH_KEY, "project_id": PROJECT}),
    );
    assert_eq!((dup.status, dup.body["type"].as_str()), (409, Some("already_exists")));
    let bad = api.post(
        "/iam/v1alpha1/ssh-keys",
        json!({"name": "k", "public_key": "ssh-ed25519 nope", "project_id": PROJECT}),
    );
    assert_eq!(
        (bad.status, bad.body["details"][0]["argument_name"].as_str()),
        (400, Some("public_key"))
    );
    let path = format!("/iam/v1alpha1/ssh-keys/{}", id(&key));
    let r = api.patch(&path, json!({"name": "renamed", "disabled": true}));
    assert_eq!(
        (r.body["name"].as_str(), r.body["disabled"].as_bool()),
        (Some("renamed"), Some(true))
    );
    assert_eq!(
        api.get(&format!("/iam/v1alpha1/ssh-keys?project_id={PROJECT}&name=ren"))
            .body["total_count"],
        1
    );
    assert_eq!(api.get("/iam/v1alpha1/ssh-keys?disabled=false").body["total_count"], 0);
    assert_eq!(api.delete(&path).status, 204);
    let r = api.get(&path);
    assert_eq!(
        (r.status, r.body),
        (
            404,
            json!({"message":"resource is not found","resource":"ssh_key","resource_id":id(&key),"type":"not_found"})
        )
    );
}

#[test]
fn an_edge_cluster_lifecycle_leaves_nothing_behind() {
    let api = Api::new();
    let key = api.create_ssh_key();
    let vpc = api
        .post(&format!("{VPC}/vpcs"), json!({"name": "edge", "project_id": PROJECT}))
        .body;
    let pn = api
        .post(
            &format!("{VPC}/private-networks"),
            json!({"name": "edge", "project_id": PROJECT, "vpc_id": id(&vpc), "subnets": ["172.16.0.0/22"]}),
        )
        .body;
    let gw = api
        .post(
            &format!("{GW}/gateways"),
            json!({"project_id": PROJECT, "name": "edge", "enable_bastion": true}),
        )
        .body;
    api.advance(7.0);
    let gn = api
        .post(
            &format!("{GW}/gateway-networks"),
            json!({"gateway_id": id(&gw), "private_network_id": id(&pn), "push_default_route": true}),
        )
        .body;
    api.advance(15.0);
    let em = api.em("fr-par-1");
    let mut servers = Vec::new();
    for i in 0..2 {
        let s = api
            .post(
                &format!("{em}/servers"),
                json!({"offer_id": common::OFFER_B220E, "project_id": PROJECT, "name": format!("host{i}"), "tags": ["edge"],
                       "install": {"os_id": common::OS_UBUNTU_2204, "hostname": format!("host{i}"), "ssh_key_ids": [key]}}),
            )
            .body;
        servers.push(id(&s));
    }
    api.advance(355.0);
    for s in &servers {
        assert_eq!(
            api.get(&format!("{em}/servers/{s}")).body["install"]["status"],
            "completed"
        );
        let r = api.post(
            &format!("{em}/servers/{s}/options/{}", common::OPTION_PRIVATE_NETWORK),
            json!({}),
        );
        assert_eq!(r.status, 200);
        let r = api.put(
            &format!("/baremetal/v3/zones/fr-par-1/servers/{s}/private-networks"),
            json!({"per_private_network_ipam_ip_ids": {id(&pn): []}}),
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    api.advance(15.0);
    let fip = api.create_fip("fr-par-1", json!({"tags": ["edge"], "server_id": servers[0]}));
    api.advance(5.0);
    let ips = api.get(&format!(
        "{IPAM}/ips?private_network_id={}&resource_type=baremetal_private_nic&is_ipv6=false",
        id(&pn)
    ));
    assert_eq!(ips.body["total_count"], 2);
    let state = api.state();
    assert_eq!(
        state["counts"]["ipam_ips"], 5,
        "2 × (v4 + v6) for the hosts, 1 for the gateway network"
    );
    // Teardown in the documented order.
    let fip_path = format!("{}/{}", api.fips("fr-par-1"), id(&fip));
    api.post(
        &format!("{}/detach", api.fips("fr-par-1")),
        json!({"fips_ids": [id(&fip)]}),
    );
    api.advance(5.0);
    assert_eq!(api.delete(&fip_path).status, 204);
    for s in &servers {
        api.put(
            &format!("/baremetal/v3/zones/fr-par-1/servers/{s}/private-networks"),
            json!({"per_private_network_ipam_ip_ids": {}}),
        );
    }
    api.advance(10.0);
    for s in &servers {
        assert_eq!(api.delete(&format!("{em}/servers/{s}")).status, 200);
    }
    assert_eq!(api.delete(&format!("{GW}/gateway-networks/{}", id(&gn))).status, 200);
    api.advance(5.0);
    assert_eq!(
        api.delete(&format!("{GW}/gateways/{}?delete_ip=true", id(&gw))).status,
        200
    );
    assert_eq!(api.delete(&format!("{VPC}/private-networks/{}", id(&pn))).status, 204);
    assert_eq!(api.delete(&format!("{VPC}/vpcs/{}", id(&vpc))).status, 204);
    assert_eq!(api.delete(&format!("/iam/v1alpha1/ssh-keys/{key}")).status, 204);
    let state = api.state();
    assert_eq!(state["empty"], true, "{:#}", state["counts"]);
    assert_eq!(state["pending_transitions"], json!([]));
}
