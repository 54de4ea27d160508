//! Shared helpers of the emulator tests: an in-process emulator with a
//! frozen clock and a small JSON client over reqwest's blocking client.

#![allow(dead_code, clippy::needless_pass_by_value)] // test helpers take owned JSON for brevity

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use reqwest::blocking::Client;
use scaleway_emulator::{Emulator, Options, Running};
use serde_json::{Value, json};

pub const TOKEN: &str = "0b5f5a2e-0d38-4a39-a57b-0f1cf4c8d1aa";
pub const PROJECT: &str = "564aa517-68b0-4fd7-8c8c-d21c4bcdcbd5";
pub const ZONE: &str = "fr-par-1";
/// The catalogue's offers and OS ids (real ones).
pub const OFFER_B220E: &str = "206ea234-9097-4ae1-af68-6d2be09f47ed";
pub const OFFER_L110X_NO_CLOUD_INIT: &str = "a204136d-656b-44b7-9735-88ca2f62cb1f";
pub const OFFER_L420E_EMPTY: &str = "18137894-b9a7-4e7b-b026-518ab8a3e41e";
pub const OFFER_A116X: &str = "8779d2c1-cd10-4a34-a006-cb5b1fb5cbc7";
pub const OS_UBUNTU_2204: &str = "96e5f0f2-d216-4de2-8a15-68730d877885";
pub const OS_PROXMOX: &str = "a5c00c1b-95b1-4c08-8a33-79cc079f9dac";
pub const OPTION_PRIVATE_NETWORK: &str = "cd4158d7-2d65-49be-8803-c4b8ab6f760c";
pub const SSH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICJEoOOgQBLJPs4g/XcPTKT82NywNPpxeuA20FlOPlpO test@example";

/// An emulator at speed 1.0 with a frozen clock, and a client for it.
pub struct Api {
    pub emu: Running,
    pub client: Client,
    pub base: String,
}

/// A response: status, headers we care about, body (JSON or Null) and raw bytes.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub raw: Vec<u8>,
    pub headers: reqwest::header::HeaderMap,
}

impl Api {
    pub fn new() -> Api {
        Api::with(Options {
            speed: 1.0,
            manual_clock: true,
            seed: Some(42),
            ..Options::default()
        })
    }

    pub fn with(options: Options) -> Api {
        let emu = Emulator::start(options).expect("emulator starts");
        let client = Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        let base = emu.url();
        Api { emu, client, base }
    }

    pub fn send(&self, method: &str, path: &str, body: Option<&Value>, token: Option<&str>) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut rb = self.client.request(m, format!("{}{}", self.base, path));
        if let Some(t) = token {
            rb = rb.header("X-Auth-Token", t);
        }
        if let Some(b) = body {
            rb = rb.header("Content-Type", "application/json").body(b.to_string());
        }
        let r = rb.send().expect("request is answered");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let raw = r.bytes().expect("body").to_vec();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Resp {
            status,
            body,
            raw,
            headers,
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        self.send("GET", path, None, Some(TOKEN))
    }

    pub fn post(&self, path: &str, body: Value) -> Resp {
        self.send("POST", path, Some(&body), Some(TOKEN))
    }

    pub fn put(&self, path: &str, body: Value) -> Resp {
        self.send("PUT", path, Some(&body), Some(TOKEN))
    }

    pub fn patch(&self, path: &str, body: Value) -> Resp {
        self.send("PATCH", path, Some(&body), Some(TOKEN))
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, None, Some(TOKEN))
    }

    /// Control API calls (no token).
    pub fn control(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        self.send(method, &format!("/_emulator/{path}"), body.as_ref(), None)
    }

    pub fn advance(&self, seconds: f64) {
        let r = self.control("POST", "clock", Some(json!({ "advance_seconds": seconds })));
        assert_eq!(r.status, 200, "{:?}", r.body);
    }

    pub fn fault(&self, rule: Value) -> Value {
        let r = self.control("POST", "faults", Some(rule));
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body
    }

    pub fn state(&self) -> Value {
        self.control("GET", "state", None).body
    }

    pub fn calls(&self) -> Vec<Value> {
        self.control("GET", "calls", None).body["calls"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    // Resource helpers.

    pub fn fips(&self, zone: &str) -> String {
        format!("/flexible-ip/v1alpha1/zones/{zone}/fips")
    }

    pub fn em(&self, zone: &str) -> String {
        format!("/baremetal/v1/zones/{zone}")
    }

    pub fn create_fip(&self, zone: &str, body: Value) -> Value {
        let mut b = json!({"project_id": PROJECT, "description": "", "tags": [], "is_ipv6": false});
        merge(&mut b, body);
        let r = self.post(&self.fips(zone), b);
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body
    }

    pub fn create_ssh_key(&self) -> String {
        let r = self.post(
            "/iam/v1alpha1/ssh-keys",
            json!({"name": "k", "public_key": SSH_KEY, "project_id": PROJECT}),
        );
        match r.status {
            200 => r.body["id"].as_str().expect("id").to_string(),
            // Already registered: reuse it.
            409 => r.body["resource_id"].as_str().expect("resource_id").to_string(),
            _ => panic!("{:?}", r.body),
        }
    }

    /// A server with an install, advanced until `ready` (install still running).
    pub fn create_server(&self, zone: &str, install: bool) -> String {
        let mut body = json!({
            "offer_id": OFFER_B220E, "project_id": PROJECT, "name": "node", "description": "", "tags": ["t"],
        });
        if install {
            let key = self.create_ssh_key();
            body["install"] = json!({"os_id": OS_UBUNTU_2204, "hostname": "node", "ssh_key_ids": [key]});
        }
        let r = self.post(&format!("{}/servers", self.em(zone)), body);
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["id"].as_str().expect("id").to_string()
    }
}

/// Merges object `extra` into `base`.
pub fn merge(base: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
}

/// Sends raw bytes and reads until the server closes (or 5 s): for the
/// faults that break the HTTP exchange.
pub fn raw_exchange(base: &str, request: &str) -> (Vec<u8>, bool) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (out, closed)
}
