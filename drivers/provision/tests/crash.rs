//! `scaleway-provision` killed (SIGKILL) at several points of create and
//! delete, then run again: it converges, with no duplicate server, IP or
//! network and nothing leaked. Scaleway faults during create give a clear
//! error and leave a state that `delete` cleans completely.
//!
//! The hosts are reached through `ONE_SCALEWAY_SSH=/bin/true` here (every
//! remote command "succeeds"); what the hosts are given is checked by
//! lifecycle.rs with a recording fake.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{Bed, check_cluster, path_of, tagged, text};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_scaleway-provision");

fn command(bed: &Bed, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args);
    if matches!(args, ["create", ..] | ["host", ..]) {
        let vnm = bed.dir.path().join("scaleway-vnm");
        std::fs::write(&vnm, b"fake").unwrap();
        c.args([
            "--ssh-key",
            path_of(&test_support::fixture_path("provision/oneadmin.pub")),
        ]);
        c.args(["--vnm", path_of(&vnm)]);
    }
    c.env_clear();
    c.envs(bed.env());
    c.env("PATH", std::env::var("PATH").unwrap_or_default());
    c.env("ONE_SCALEWAY_SSH", "/bin/true");
    c
}

/// Runs to the end; returns (success, stdout, stderr).
fn run(bed: &Bed, args: &[&str]) -> (bool, String, String) {
    let out = command(bed, args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts the command and SIGKILLs it as soon as a progress line contains
/// `marker`. Returns whether the marker was seen before the command ended.
fn kill_at(bed: &Bed, args: &[&str], marker: &str) -> bool {
    let mut child = command(bed, args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = false;
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if line.contains(marker) {
            let _ = child.kill();
            seen = true;
            break;
        }
    }
    let status = child.wait().unwrap();
    if seen {
        eprintln!("killed at {marker:?} ({status})");
    }
    seen
}

fn assert_nothing_left(bed: &Bed) {
    let state = bed.emu.state();
    assert_eq!(state["empty"], true, "left at Scaleway: {:#}", state["counts"]);
    assert!(bed.hosts().is_empty(), "{:#?}", bed.hosts());
    assert!(bed.vnets().is_empty());
    assert!(bed.vntemplates().is_empty());
    assert!(
        bed.datastores()
            .iter()
            .all(|d| text(d, "ID").parse::<u32>().unwrap() < 100),
        "{:#?}",
        bed.datastores()
    );
}

#[test]
#[ignore = "privileged: runs a real oned as oneadmin (sudo .ci/run)"]
fn killed_during_create_then_rerun_converges_without_duplicates() {
    let bed = Bed::new("crash-create");
    let file = bed.description("edge", 3, 2);
    let file = path_of(&file);
    // Each marker is a point create passes; after each kill the next run goes further.
    let markers = [
        "SSH keys: registering",
        "private network: creating",
        "server edge-host2: ordering",
        "server edge-host1: installing",
        "public gateway: creating",
        "server edge-host3: attaching to the private network",
        "host edge-host1: bootstrapped",
        "OpenNebula cluster: registering",
        "host edge-host2: OpenNebula host",
        "OpenNebula networks: registered",
        "public IPs: 1 of 2",
    ];
    let mut kills = 0;
    for marker in markers {
        if kill_at(&bed, &["create", file], marker) {
            kills += 1;
        }
    }
    assert!(kills >= 6, "only {kills} kill points were reached");
    let (ok, out, err) = run(&bed, &["create", file]);
    assert!(ok, "{err}");
    assert!(out.contains("provision edge"), "{out}");
    check_cluster(&bed, "edge", false, 3, 2);
    // No more than one of anything was ever created.
    let creates = |path: &str| {
        bed.emu
            .calls()
            .iter()
            .filter(|c| c["method"] == "POST" && c["path"].as_str().is_some_and(|p| p.ends_with(path)))
            .filter(|c| c["status"].as_u64().is_some_and(|s| s < 300))
            .count()
    };
    assert_eq!(creates("/servers"), 3);
    assert_eq!(creates("/vpcs"), 1);
    assert_eq!(creates("/private-networks"), 1);
    assert_eq!(creates("/gateways"), 1);
    assert_eq!(creates("/fips"), 2);

    // Killed during delete, again and again: the last run finishes, nothing is left.
    let markers = [
        "address range",
        "OpenNebula objects: removed",
        "server edge-host1: deleting",
        "public gateway: deleting",
        "private network: deleting",
    ];
    for marker in markers {
        kill_at(&bed, &["delete", "edge"], marker);
    }
    let (ok, out, err) = run(&bed, &["delete", "edge"]);
    assert!(ok, "{err}");
    assert!(out.contains("deleted"), "{out}");
    assert_nothing_left(&bed);
}

/// A fault during create: a clear error; then `delete` leaves nothing.
fn fault_then_delete(label: &str, rule: &serde_json::Value, expected: &str) {
    let bed = Bed::new(label);
    let file = bed.description("edge", 2, 1);
    bed.emu.add_fault(rule).unwrap();
    let (ok, _, err) = run(&bed, &["create", path_of(&file)]);
    assert!(!ok, "create went through {rule}");
    assert!(err.contains(expected), "{expected:?} not in:\n{err}");
    assert!(
        err.lines().any(|l| l.contains("scaleway-provision delete edge")),
        "the error says how to clean up:\n{err}"
    );
    let s = bed.record("edge").unwrap();
    assert!(s.last_error.is_some());
    let (ok, _, err) = run(&bed, &["delete", "edge"]);
    assert!(ok, "{err}");
    assert_nothing_left(&bed);
}

#[test]
#[ignore = "privileged: runs a real oned as oneadmin (sudo .ci/run)"]
fn out_of_stock_during_create() {
    fault_then_delete(
        "fault-stock",
        &json!({"kind": "out_of_stock", "method": "POST", "path": "/baremetal/v1/zones/*/servers"}),
        "out of stock",
    );
}

#[test]
#[ignore = "privileged: runs a real oned as oneadmin (sudo .ci/run)"]
fn quota_during_create() {
    fault_then_delete(
        "fault-quota",
        &json!({"kind": "quotas_exceeded", "method": "POST", "path_prefix": "/flexible-ip/"}),
        "quota",
    );
}

#[test]
#[ignore = "privileged: runs a real oned as oneadmin (sudo .ci/run)"]
fn install_failure_during_create() {
    fault_then_delete(
        "fault-install",
        &json!({"kind": "transition_error", "method": "POST", "path": "/baremetal/v1/zones/*/servers"}),
        "install",
    );
}

#[test]
#[ignore = "privileged: runs a real oned as oneadmin (sudo .ci/run)"]
fn transient_faults_are_absorbed() {
    let bed = Bed::new("fault-transient");
    let file = bed.description("edge", 2, 1);
    for rule in [
        json!({"kind": "rate_limit", "probability": 0.1}),
        json!({"kind": "internal_error", "method": "POST", "times": 2}),
        json!({"kind": "commit_then_error", "method": "POST", "path": "/baremetal/v1/zones/*/servers", "times": 1}),
        json!({"kind": "upstream_error", "method": "GET", "times": 1}),
        json!({"kind": "drop", "method": "GET", "path_prefix": "/vpc/", "times": 1}),
        json!({"kind": "reset_mid_body", "method": "GET", "path_prefix": "/baremetal/", "times": 1}),
    ] {
        bed.emu.add_fault(&rule).unwrap();
    }
    let started = Instant::now();
    let (ok, _, err) = run(&bed, &["create", path_of(&file)]);
    assert!(ok, "{err}");
    eprintln!("create through faults: {:?}", started.elapsed());
    check_cluster(&bed, "edge", false, 2, 1);
    let tag = common::provision_tag(&bed, "edge");
    assert_eq!(tagged(&bed.resources("servers"), &tag), 2, "no duplicate server");
    bed.emu.clear_faults();
    let (ok, _, err) = run(&bed, &["delete", "edge"]);
    assert!(ok, "{err}");
    assert_nothing_left(&bed);
}

#[test]
#[ignore = "privileged: runs a real oned as oneadmin (sudo .ci/run)"]
fn timeouts_during_create() {
    let bed = Bed::new("fault-timeout");
    let file = bed.description("edge", 1, 1);
    bed.emu
        .add_fault(&json!({"kind": "delay", "seconds": 3, "method": "GET", "times": 2}))
        .unwrap();
    let mut c = command(&bed, &["create", path_of(&file)]);
    c.env("ONE_SCALEWAY_TIMEOUT", "1");
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (ok, _, err) = run(&bed, &["delete", "edge"]);
    assert!(ok, "{err}");
    assert_nothing_left(&bed);
}

/// Every fault kind of the emulator, once, on each API the provision uses,
/// during create: create either succeeds or fails with a clear error; then
/// `delete` (after a second create where the first failed) leaves nothing.
#[test]
#[ignore = "privileged: runs a real oned as oneadmin (sudo .ci/run)"]
fn fault_matrix_of_create_and_delete() {
    let kinds = [
        json!({"kind": "rate_limit"}),
        json!({"kind": "rate_limit_retry_after", "retry_after": 0}),
        json!({"kind": "internal_error"}),
        json!({"kind": "upstream_error"}),
        json!({"kind": "unavailable", "message": "maintenance"}),
        json!({"kind": "delay", "seconds": 1}),
        json!({"kind": "drop"}),
        json!({"kind": "reset_mid_body"}),
        json!({"kind": "transient_state", "method": "POST"}),
        json!({"kind": "quotas_exceeded", "method": "POST"}),
        json!({"kind": "commit_then_error", "method": "POST"}),
        json!({"kind": "commit_then_drop", "method": "POST"}),
        json!({"kind": "eventual_consistency", "method": "POST"}),
        json!({"kind": "total_count_delta"}),
    ];
    let apis = ["/baremetal/", "/vpc/", "/vpc-gw/", "/iam/", "/flexible-ip/", "/ipam/"];
    // Each kind on one API in turn, so every API meets several kinds; then
    // the kinds that hurt creates most, on the other APIs that create.
    let mut cases: Vec<(serde_json::Value, &str)> = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), apis[i % apis.len()]))
        .collect();
    for api in ["/vpc/", "/vpc-gw/", "/iam/"] {
        cases.push((json!({"kind": "eventual_consistency", "method": "POST"}), api));
    }
    for api in ["/baremetal/", "/vpc-gw/"] {
        cases.push((json!({"kind": "commit_then_drop", "method": "POST"}), api));
        cases.push((json!({"kind": "commit_then_error", "method": "POST"}), api));
    }
    let bed = Bed::new("fault-matrix");
    let file = bed.description("edge", 1, 1);
    let file = path_of(&file);
    let mut outcomes = Vec::new();
    for (kind, api) in &cases {
        let mut rule = kind.clone();
        rule["path_prefix"] = json!(api);
        bed.emu.add_fault(&rule).unwrap();
        let (ok, _, err) = run(&bed, &["create", file]);
        bed.emu.clear_faults();
        eprintln!("{rule}: create {}", if ok { "ok" } else { "failed" });
        if !ok {
            let first = err
                .lines()
                .find(|l| !l.starts_with("20") && !l.starts_with("ERROR:"))
                .unwrap_or("");
            assert!(!first.is_empty(), "{rule}: no error line\n{err}");
            // The fault is gone: the same create finishes what was started.
            let (again, _, err2) = run(&bed, &["create", file]);
            assert!(again, "{rule}: create after the fault\n{err2}");
        }
        check_cluster(&bed, "edge", false, 1, 1);
        bed.emu.add_fault(&rule).unwrap();
        let (deleted, _, _) = run(&bed, &["delete", "edge"]);
        bed.emu.clear_faults();
        if !deleted {
            let (again, _, err2) = run(&bed, &["delete", "edge"]);
            assert!(again, "{rule}: delete after the fault\n{err2}");
        }
        assert_nothing_left(&bed);
        outcomes.push(format!(
            "{} on {api}: create {}, delete {}",
            kind["kind"].as_str().unwrap(),
            if ok { "ok" } else { "failed cleanly, rerun finished it" },
            if deleted {
                "ok"
            } else {
                "failed cleanly, rerun finished it"
            }
        ));
    }
    eprintln!("{}", outcomes.join("\n"));
}
