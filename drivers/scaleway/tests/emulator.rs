//! The client against the local emulator: happy paths, every error shape,
//! retries on each fault kind (counting the calls), no duplicate after an
//! ambiguous create, waiters that time out cleanly, pagination, and the
//! secret key kept out of every message.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scaleway::baremetal::{NewServer, ServerFilter};
use scaleway::flexible_ip::{FipFilter, FipStatus, NewFlexibleIp};
use scaleway::{ApiErrorKind, Client, Error, Options, RetryPolicy, WaitPolicy, Zone};
use scaleway_emulator::{Emulator, Running};
use serde_json::{Value, json};

const SECRET: &str = "5ec7e7aa-0000-4000-8000-5ec7e75ec7e7";
const PROJECT: &str = "564aa517-68b0-4fd7-8c8c-d21c4bcdcbd5";

fn emulator() -> Running {
    let options = scaleway_emulator::Options {
        speed: 0.01,
        project_ids: vec![PROJECT.into()],
        ..Default::default()
    };
    Emulator::start(options).unwrap()
}

fn options() -> Options {
    Options {
        request_timeout: Duration::from_millis(1500),
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            max_elapsed: Duration::from_secs(20),
        },
        ..Options::default()
    }
}

fn client_with(emu: &Running, secret: &str, notes: &Arc<Mutex<Vec<String>>>) -> Client {
    let env = |k: &str| -> Option<String> {
        match k {
            "SCW_SECRET_KEY" => Some(secret.to_owned()),
            "SCW_DEFAULT_PROJECT_ID" => Some(PROJECT.to_owned()),
            "SCW_DEFAULT_ZONE" => Some("fr-par-1".to_owned()),
            "SCW_API_URL" => Some(emu.url()),
            "SCW_CONFIG_PATH" => Some("/nonexistent/config.yaml".to_owned()),
            _ => None,
        }
    };
    let credentials = scaleway::resolve(&env, None).unwrap();
    let sink = notes.clone();
    Client::new(credentials, options())
        .unwrap()
        .with_notifier(Arc::new(move |line: &str| {
            sink.lock().unwrap().push(line.to_owned());
        }))
}

fn client(emu: &Running) -> (Client, Arc<Mutex<Vec<String>>>) {
    let notes = Arc::new(Mutex::new(Vec::new()));
    (client_with(emu, SECRET, &notes), notes)
}

fn zone() -> Zone {
    Zone::new("fr-par-1").unwrap()
}

fn wait() -> WaitPolicy {
    WaitPolicy::new(Duration::from_millis(10), Duration::from_secs(10))
}

fn new_fip(tag: &str) -> NewFlexibleIp {
    NewFlexibleIp {
        project_id: PROJECT.into(),
        description: "test".into(),
        tags: vec![tag.into()],
        ..Default::default()
    }
}

fn fault(emu: &Running, rule: &Value) {
    emu.add_fault(rule).unwrap();
}

/// Calls the emulator saw for `method` on paths starting with `prefix`.
fn calls(emu: &Running, method: &str, prefix: &str) -> usize {
    emu.calls()
        .iter()
        .filter(|c| c["method"] == method && c["path"].as_str().is_some_and(|p| p.starts_with(prefix)))
        .count()
}

fn count_fips(emu: &Running) -> usize {
    emu.state()["flexible_ips"].as_array().map_or(0, Vec::len)
}

const FIPS: &str = "/flexible-ip/v1alpha1/zones/fr-par-1/fips";

#[test]
fn flexible_ip_lifecycle_with_a_server() {
    let emu = emulator();
    let (c, _) = client(&emu);
    let offer = c
        .find_offer(&zone(), "EM-A116X-SSD", "hourly")
        .unwrap()
        .expect("the catalogue has it");
    let server = c
        .create_server(
            &zone(),
            &NewServer {
                project_id: PROJECT.into(),
                offer_id: offer.id,
                name: "edge-host1".into(),
                ..Default::default()
            },
            "one-scaleway-token=s1",
        )
        .unwrap();
    let server = c.wait_server_ready(&zone(), &server.id, wait()).unwrap();
    assert!(
        c.list_servers(
            &zone(),
            &ServerFilter {
                tags: vec!["one-scaleway-token=s1".into()],
                ..Default::default()
            }
        )
        .unwrap()
        .len()
            == 1
    );

    let fip = c
        .create_fip(&zone(), &new_fip("lifecycle"), "one-scaleway-token=f1")
        .unwrap();
    assert_eq!(fip.status, FipStatus::Ready);
    assert!(fip.tags.contains(&"one-scaleway-token=f1".to_owned()));
    assert!(fip.address().is_some());
    c.attach_fips(&zone(), &[&fip.id], &server.id).unwrap();
    let attached = c.wait_fip_attached(&zone(), &fip.id, &server.id, wait()).unwrap();
    assert_eq!(attached.server_id.as_deref(), Some(server.id.as_str()));
    let by_server = c
        .list_fips(
            &zone(),
            &FipFilter {
                server_ids: vec![server.id.clone()],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(by_server.len(), 1);
    c.detach_fips(&zone(), &[&fip.id]).unwrap();
    let ready = c.wait_fip_ready(&zone(), &fip.id, wait()).unwrap();
    assert_eq!(ready.server_id, None);
    assert!(c.delete_fip(&zone(), &fip.id, PROJECT).unwrap());
    // Gone: the 403 Scaleway answers is confirmed by the project's list.
    assert_eq!(c.find_fip(&zone(), &fip.id, PROJECT).unwrap(), None);
    assert!(
        !c.delete_fip(&zone(), &fip.id, PROJECT).unwrap(),
        "deleting what is gone succeeds"
    );
    assert!(c.delete_server(&zone(), &server.id).unwrap());
    c.wait_server_gone(&zone(), &server.id, wait()).unwrap();
    assert_eq!(c.find_server(&zone(), &server.id).unwrap(), None);
    assert!(!c.delete_server(&zone(), &server.id).unwrap());
}

#[test]
fn lists_paginate_to_the_end() {
    let emu = emulator();
    let (c, _) = client(&emu);
    for i in 0..230 {
        c.create_fip(&zone(), &new_fip("many"), &format!("one-scaleway-token=p{i}"))
            .unwrap();
    }
    emu.clear_calls();
    let all = c
        .list_fips(
            &zone(),
            &FipFilter {
                tags: vec!["many".into()],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(all.len(), 230);
    let ids: std::collections::HashSet<_> = all.iter().map(|f| f.id.clone()).collect();
    assert_eq!(ids.len(), 230, "no duplicates");
    assert_eq!(calls(&emu, "GET", FIPS), 3, "pages of 100: 100 + 100 + 30");
    assert!(
        emu.calls()
            .iter()
            .all(|c| c["query"].as_str().unwrap_or("").contains("page_size=100"))
    );
}

#[test]
fn error_shapes_are_typed() {
    let emu = Emulator::start(scaleway_emulator::Options {
        speed: 0.01,
        secret_keys: vec![SECRET.into()],
        project_ids: vec![PROJECT.into()],
        ..Default::default()
    })
    .unwrap();
    let (c, _) = client(&emu);
    // unknown server: the bare {"message":"Not Found"}
    let err = c
        .get_server(&zone(), "11111111-2222-4333-8444-555555555555")
        .unwrap_err();
    let api = err.api().unwrap();
    assert_eq!(
        (api.status, &api.kind),
        (404, &ApiErrorKind::Other { error_type: None })
    );
    assert!(err.is_not_found());
    // unknown flexible IP: 403 permissions_denied, which find_fip turns into "gone"
    let err = c.get_fip(&zone(), "11111111-2222-4333-8444-555555555555").unwrap_err();
    assert!(err.api().unwrap().is_fip_permissions_denied(), "{err}");
    assert_eq!(
        c.find_fip(&zone(), "11111111-2222-4333-8444-555555555555", PROJECT)
            .unwrap(),
        None
    );
    // invalid arguments
    let err = c
        .attach_fips(&zone(), &[], "11111111-2222-4333-8444-555555555555")
        .unwrap_err();
    assert!(
        matches!(err.api().unwrap().kind, ApiErrorKind::InvalidArguments { .. }),
        "{err}"
    );
    // a wrong key: denied_authentication, never retried
    let notes = Arc::new(Mutex::new(Vec::new()));
    let wrong = client_with(&emu, "99999999-9999-4999-8999-999999999999", &notes);
    emu.clear_calls();
    let err = wrong.list_fips(&zone(), &FipFilter::default()).unwrap_err();
    assert!(
        matches!(err.api().unwrap().kind, ApiErrorKind::DeniedAuthentication { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("check the secret key"), "{err}");
    assert_eq!(emu.calls().len(), 1);
}

/// A read is retried on every transport fault kind, and the number of
/// calls is exactly faults + 1.
#[test]
fn reads_are_retried_on_every_transient_fault() {
    let emu = emulator();
    let (c, notes) = client(&emu);
    let fip = c
        .create_fip(&zone(), &new_fip("retry"), "one-scaleway-token=r")
        .unwrap();
    let path = format!("{FIPS}/{}", fip.id);
    let kinds = [
        json!({"kind": "rate_limit", "times": 2}),
        json!({"kind": "rate_limit_retry_after", "retry_after": 1, "times": 1}),
        json!({"kind": "internal_error", "times": 2}),
        json!({"kind": "upstream_error", "status": 502, "body": "html", "times": 1}),
        json!({"kind": "upstream_error", "status": 503, "body": "empty", "times": 1}),
        json!({"kind": "drop", "times": 2}),
        json!({"kind": "reset_mid_body", "times": 1}),
        json!({"kind": "delay", "seconds": 2.5, "times": 1}),
    ];
    for mut rule in kinds {
        let times = rule["times"].as_u64().unwrap() as usize;
        rule["method"] = json!("GET");
        rule["path"] = json!(path);
        emu.clear_calls();
        fault(&emu, &rule);
        let started = Instant::now();
        let got = c.get_fip(&zone(), &fip.id).unwrap_or_else(|e| panic!("{rule}: {e}"));
        assert_eq!(got.id, fip.id);
        if let Some(delay) = rule["seconds"].as_f64() {
            // The delayed call is logged when the emulator finishes it.
            std::thread::sleep(Duration::from_secs_f64(delay + 0.3).saturating_sub(started.elapsed()));
        }
        assert_eq!(calls(&emu, "GET", &path), times + 1, "{rule}");
        if rule["kind"] == "rate_limit_retry_after" {
            assert!(
                started.elapsed() >= Duration::from_millis(50),
                "Retry-After is honoured (capped by max_delay)"
            );
        }
    }
    assert!(
        notes.lock().unwrap().iter().any(|n| n.contains("retrying")),
        "retries are reported"
    );
}

/// A permanent failure stops after the policy's attempts, with a clear error.
#[test]
fn retries_are_bounded() {
    let emu = emulator();
    let (c, _) = client(&emu);
    fault(
        &emu,
        &json!({"kind": "unavailable", "message": "cloud-init is not supported on this offer", "method": "GET", "path_prefix": FIPS, "probability": 1.0}),
    );
    let err = c.list_fips(&zone(), &FipFilter::default()).unwrap_err();
    assert_eq!(calls(&emu, "GET", FIPS), 4, "max_attempts");
    assert!(
        err.to_string()
            .contains("503: cloud-init is not supported on this offer"),
        "{err}"
    );
}

/// An ambiguous create is reconciled by its unique tag: exactly one flexible
/// IP exists afterwards, whatever the fault.
#[test]
fn creates_are_never_duplicated() {
    let cases = [
        json!({"kind": "commit_then_error", "status": 500}),
        json!({"kind": "commit_then_error", "status": 502}),
        json!({"kind": "commit_then_drop"}),
        json!({"kind": "internal_error"}),
        json!({"kind": "drop"}),
        json!({"kind": "reset_mid_body"}),
        json!({"kind": "delay", "seconds": 2.5}),
        json!({"kind": "rate_limit", "times": 2}),
    ];
    for (i, mut rule) in cases.into_iter().enumerate() {
        let emu = emulator();
        let (c, _) = client(&emu);
        rule["method"] = json!("POST");
        rule["path"] = json!(FIPS);
        fault(&emu, &rule);
        let fip = c
            .create_fip(&zone(), &new_fip("dup"), &format!("one-scaleway-token=d{i}"))
            .unwrap_or_else(|e| panic!("{rule}: {e}"));
        assert_eq!(count_fips(&emu), 1, "{rule}: exactly one flexible IP");
        assert_eq!(emu.state()["flexible_ips"][0]["id"], json!(fip.id), "{rule}");
    }
}

/// Even when the list lags behind the create, the look-ups wait it out.
#[test]
fn reconciliation_survives_eventual_consistency() {
    let emu = emulator();
    let (c, _) = client(&emu);
    fault(
        &emu,
        &json!({"kind": "commit_then_error", "method": "POST", "path": FIPS}),
    );
    fault(
        &emu,
        &json!({"kind": "eventual_consistency", "reads": 2, "method": "POST", "path": FIPS}),
    );
    c.create_fip(&zone(), &new_fip("lag"), "one-scaleway-token=lag")
        .unwrap();
    assert_eq!(count_fips(&emu), 1);
}

/// Capacity errors are not retried and say what to do.
#[test]
fn capacity_errors_are_reported() {
    let emu = emulator();
    let (c, _) = client(&emu);
    fault(
        &emu,
        &json!({"kind": "quotas_exceeded", "resource": "flexible_ips", "quota": 5, "current": 5, "method": "POST", "path": FIPS}),
    );
    let err = c
        .create_fip(&zone(), &new_fip("q"), "one-scaleway-token=q")
        .unwrap_err();
    assert!(
        err.to_string().contains("raise the quota") && err.to_string().contains("flexible_ips: 5 of 5"),
        "{err}"
    );
    assert_eq!(calls(&emu, "POST", FIPS), 1);
    assert_eq!(count_fips(&emu), 0);
}

/// A transition that never ends makes the waiter give up, naming the state.
#[test]
fn waiters_time_out_cleanly() {
    let emu = emulator();
    let (c, _) = client(&emu);
    let offer = c.find_offer(&zone(), "EM-A116X-SSD", "hourly").unwrap().unwrap();
    let server = c
        .create_server(
            &zone(),
            &NewServer {
                project_id: PROJECT.into(),
                offer_id: offer.id,
                name: "s".into(),
                ..Default::default()
            },
            "one-scaleway-token=w",
        )
        .unwrap();
    c.wait_server_ready(&zone(), &server.id, wait()).unwrap();
    let fip = c
        .create_fip(&zone(), &new_fip("stuck"), "one-scaleway-token=stuck")
        .unwrap();
    fault(
        &emu,
        &json!({"kind": "stuck", "method": "POST", "path": format!("{FIPS}/attach")}),
    );
    c.attach_fips(&zone(), &[&fip.id], &server.id).unwrap();
    let policy = WaitPolicy::new(Duration::from_millis(20), Duration::from_millis(400));
    let started = Instant::now();
    let err = c.wait_fip_attached(&zone(), &fip.id, &server.id, policy).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(err, Error::WaitTimeout { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "gave up waiting for Scaleway flexible IP {}: still updating",
            fip.id
        )),
        "{err}"
    );
}

/// The secret key appears in no log line, error message, debug output or
/// panic text, whatever goes wrong.
#[test]
fn the_secret_key_never_shows() {
    let emu = Emulator::start(scaleway_emulator::Options {
        speed: 0.01,
        secret_keys: vec![SECRET.into()],
        project_ids: vec![PROJECT.into()],
        ..Default::default()
    })
    .unwrap();
    let (c, notes) = client(&emu);
    let mut texts: Vec<String> = vec![format!("{c:?}"), format!("{:?}", c.credentials())];
    for rule in [
        json!({"kind": "internal_error", "probability": 1.0}),
        json!({"kind": "drop", "probability": 1.0}),
        json!({"kind": "rate_limit", "probability": 1.0}),
        json!({"kind": "delay", "seconds": 2.0, "probability": 1.0}),
    ] {
        emu.clear_faults();
        fault(&emu, &rule);
        let err = c.list_fips(&zone(), &FipFilter::default()).unwrap_err();
        texts.push(err.to_string());
        texts.push(format!("{err:?}"));
        let panic = std::panic::catch_unwind(|| -> () { panic!("{err}") }).unwrap_err();
        texts.push(panic.downcast_ref::<String>().cloned().unwrap_or_default());
    }
    emu.clear_faults();
    let notes2 = Arc::new(Mutex::new(Vec::new()));
    let wrong = client_with(&emu, "77777777-7777-4777-8777-777777777777", &notes2);
    let err = wrong
        .get_fip(&zone(), "11111111-2222-4333-8444-555555555555")
        .unwrap_err();
    texts.push(err.to_string());
    texts.push(format!("{err:?}"));
    texts.extend(notes.lock().unwrap().iter().cloned());
    assert!(texts.len() > 10);
    for t in &texts {
        assert!(
            !t.contains(SECRET) && !t.contains("77777777-7777"),
            "the secret leaked: {t}"
        );
    }
}

/// The edge cluster's provisioning order and teardown (reference section
/// 14), through every API of the client.
#[test]
fn edge_cluster_resources_end_to_end() {
    let emu = emulator();
    let (c, _) = client(&emu);
    let region = scaleway::Region::new("fr-par").unwrap();
    let tag = vec!["one-provision=17".to_owned()];
    let key = c
        .ensure_ssh_key(
            PROJECT,
            "one-provision-17",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM7HUxRyQtB2rnlhQUcbDGCZcTJg7OvoznOiyC9W6IxH oneadmin@frontend",
        )
        .unwrap();
    let again = c
        .ensure_ssh_key(
            PROJECT,
            "other-name",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM7HUxRyQtB2rnlhQUcbDGCZcTJg7OvoznOiyC9W6IxH",
        )
        .unwrap();
    assert_eq!(again.id, key.id, "the same key (comment aside) is not registered twice");
    let vpc = c
        .create_vpc(&region, PROJECT, "edge-17", &tag, "one-scaleway-token=vpc")
        .unwrap();
    let pn = c
        .create_private_network(
            &region,
            PROJECT,
            &vpc.id,
            "edge-17",
            "172.18.0.0/24",
            &tag,
            "one-scaleway-token=pn",
        )
        .unwrap();
    assert!(
        pn.subnets.iter().any(|s| s.subnet == "172.18.0.0/24"),
        "{:?}",
        pn.subnets
    );
    let gw = c
        .create_gateway(&zone(), PROJECT, "edge-17", "VPC-GW-S", &tag, "one-scaleway-token=gw")
        .unwrap();
    c.wait_gateway_running(&zone(), &gw.id, wait()).unwrap();
    let gn = c.create_gateway_network(&zone(), &gw.id, &pn.id, wait()).unwrap();
    let gn = c.wait_gateway_network_ready(&zone(), &gn.id, wait()).unwrap();
    assert!(gn.push_default_route);

    let offer = c.find_offer(&zone(), "EM-A116X-SSD", "hourly").unwrap().unwrap();
    let os = c.list_os(&zone(), Some(&offer.id)).unwrap();
    let ubuntu = os
        .iter()
        .find(|o| o.name == "Ubuntu" && o.version.starts_with("24.04") && !offer.incompatible_os_ids.contains(&o.id))
        .expect("Ubuntu 24.04 for this offer");
    let pn_option = offer
        .options
        .iter()
        .find(|o| o.name == "Private Network")
        .expect("the Private Network option");
    let server = c
        .create_server(
            &zone(),
            &NewServer {
                project_id: PROJECT.into(),
                offer_id: offer.id.clone(),
                name: "edge-host1".into(),
                tags: tag.clone(),
                install: Some(scaleway::baremetal::NewInstall {
                    os_id: ubuntu.id.clone(),
                    hostname: "edge-host1".into(),
                    ssh_key_ids: vec![key.id.clone()],
                }),
                ..Default::default()
            },
            "one-scaleway-token=host1",
        )
        .unwrap();
    let installed = c
        .wait_server_installed(
            &zone(),
            &server.id,
            WaitPolicy::new(Duration::from_millis(20), Duration::from_secs(30)),
        )
        .unwrap();
    assert!(installed.public_ipv4().is_some());
    c.add_server_option(&zone(), &server.id, &pn_option.id).unwrap();
    c.set_server_private_networks(&zone(), &server.id, &[&pn.id]).unwrap();
    let mappings = c.wait_server_private_networks(&zone(), &server.id, wait()).unwrap();
    assert_eq!(mappings.len(), 1);
    assert!(mappings[0].vlan.is_some());
    let ips = c.list_ipam_ips_of(&region, &mappings[0].id).unwrap();
    assert!(
        ips.iter().any(|ip| !ip.is_ipv6 && ip.address.starts_with("172.18.0.")),
        "{ips:?}"
    );

    // teardown, in the reference's order; what is gone counts as done
    c.set_server_private_networks(&zone(), &server.id, &[]).unwrap();
    assert!(c.delete_server(&zone(), &server.id).unwrap());
    c.wait_server_gone(&zone(), &server.id, wait()).unwrap();
    assert!(c.delete_gateway_network(&zone(), &gn.id).unwrap());
    let gn_gone = WaitPolicy::new(Duration::from_millis(20), Duration::from_secs(10));
    scaleway::wait::wait_until(
        "gateway network",
        &gn.id,
        "deleted",
        gn_gone,
        || match c.get_gateway_network(&zone(), &gn.id) {
            Err(e) if e.is_not_found() => Ok(None),
            other => other.map(Some),
        },
        |g| {
            if g.is_none() {
                scaleway::wait::Progress::Done
            } else {
                scaleway::wait::Progress::Pending
            }
        },
        |g| g.as_ref().map_or("gone".into(), |g| g.status.to_string()),
    )
    .unwrap();
    c.wait_gateway_running(&zone(), &gw.id, wait()).unwrap();
    assert!(c.delete_gateway(&zone(), &gw.id, true).unwrap());
    let deleted_pn = scaleway::wait::wait_until(
        "private network",
        &pn.id,
        "deleted",
        gn_gone,
        || match c.delete_private_network(&region, &pn.id) {
            Err(Error::Api(api)) if matches!(api.kind, ApiErrorKind::PreconditionFailed { .. }) => Ok(false),
            other => other.map(|_| true),
        },
        |done| {
            if *done {
                scaleway::wait::Progress::Done
            } else {
                scaleway::wait::Progress::Pending
            }
        },
        |_| "in use".into(),
    );
    deleted_pn.unwrap();
    assert!(c.delete_vpc(&region, &vpc.id).unwrap());
    assert!(c.delete_ssh_key(&key.id).unwrap());
    assert!(!c.delete_ssh_key(&key.id).unwrap());
    let state = emu.state();
    assert_eq!(state["empty"], json!(true), "nothing left: {}", state["counts"]);
}

/// A redirect is not followed: the secret key (X-Auth-Token) never goes
/// where a redirect points, and the call fails.
#[test]
fn a_redirect_is_not_followed() {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    // Where the redirect points: records whatever reaches it.
    let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
    let elsewhere_addr = elsewhere.local_addr().unwrap();
    elsewhere.set_nonblocking(true).unwrap();
    // The "API": answers every request with a redirect.
    let api = TcpListener::bind("127.0.0.1:0").unwrap();
    let api_url = format!("http://{}", api.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let mut served = 0;
        api.set_nonblocking(true).unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(2) {
            if let Ok((mut s, _)) = api.accept() {
                s.set_nonblocking(false).unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let answer = format!(
                    "HTTP/1.1 302 Found\r\nLocation: http://{elsewhere_addr}/stolen\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                s.write_all(answer.as_bytes()).unwrap();
                served += 1;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        served
    });
    let env = |k: &str| -> Option<String> {
        match k {
            "SCW_SECRET_KEY" => Some(SECRET.to_owned()),
            "SCW_DEFAULT_PROJECT_ID" => Some(PROJECT.to_owned()),
            "SCW_API_URL" => Some(api_url.clone()),
            "SCW_CONFIG_PATH" => Some("/nonexistent/config.yaml".to_owned()),
            _ => None,
        }
    };
    let client = Client::new(scaleway::resolve(&env, None).unwrap(), options()).unwrap();
    let result = client.get_fip(&Zone::new("fr-par-1").unwrap(), "0b0d7a9e-6a7b-4c3e-9d8e-1f2a3b4c5d6e");
    assert!(result.is_err(), "{result:?}");
    assert!(server.join().unwrap() >= 1, "the API was asked");
    assert!(elsewhere.accept().is_err(), "nothing reached where the redirect points");
}
