//! Host actions against a fake: `ip`, `nft`, `sysctl`, `vtysh` and
//! `frr-reload.py` are the bench's record/replay stand-ins (see `shim`);
//! what the drivers do through netlink (links, routes, neighbour entries,
//! the public driver's nftables elements) reaches the namespace's kernel.
//!
//! In a namespace made for it, a first VM is set up for real (so the host
//! is in its steady state: bridge, sysctls, FRR configured), then the
//! measured action of a second VM runs once for real with the stand-ins
//! recording. Every measured run then replays that tape: the driver
//! validates, locks, reads its record, observes (replayed), plans, applies
//! (replayed) and saves its record, and the kernel and FRR do nothing. The
//! driver's record (and FRR file) is put back before each run, so every run
//! does the same work.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cloud::{PublicNic, b64, vm_document};
use crate::lab::{self, Host};
use crate::measure::{self, Measured, Reset, Run, SYSTEM_PATH};
use crate::shim;
use crate::util::{self, Bins, TempDir};

/// The stand-ins' folder (links named after the tools).
fn shims(bins: &Bins, dir: &Path) -> anyhow::Result<PathBuf> {
    let d = dir.join("shims");
    for t in shim::TOOLS {
        util::link_as(&bins.me, &d, t)?;
    }
    Ok(d)
}

fn mode(shims: &Path, mode: &str, tape: &Path, claims: &Path) -> Vec<(String, String)> {
    vec![
        ("PATH".into(), format!("{}:{SYSTEM_PATH}", shims.display())),
        (shim::MODE_ENV.into(), mode.into()),
        (shim::TAPE_ENV.into(), tape.display().to_string()),
        (shim::CLAIMS_ENV.into(), claims.display().to_string()),
        (shim::REAL_PATH_ENV.into(), SYSTEM_PATH.into()),
    ]
}

/// A public NIC with made-up addresses (VM `i`).
fn nic(i: u8) -> PublicNic {
    PublicNic {
        nic_id: 0,
        vnet: 5,
        ar_id: i64::from(i),
        ip: format!("172.30.0.{}", 2 * i),
        gateway: format!("172.30.0.{}", 2 * i + 1),
        external: format!("198.51.100.{i}"),
    }
}

/// Measured replays of one action: (label, measurement).
pub type Results = Vec<(String, Measured)>;

/// `pre` and `clean_host` of driver `scaleway`, `runs` times each.
pub fn public(bins: &Bins, runs: usize) -> anyhow::Result<Results> {
    let ns = util::NetNs::new("fake")?;
    let dir = TempDir::new("replay")?;
    let links = dir.join("remotes");
    crate::cloud::link_actions(bins, &links)?;
    let shims = shims(bins, dir.path())?;
    let state = dir.join("state");
    // The host record: a folder (`public_apply::record`).
    let record = state.join("vnm-public");
    let base = vec![
        ("ONE_SCALEWAY_STATE_DIR".to_owned(), state.display().to_string()),
        (
            "ONE_SCALEWAY_HOST_LOCK".into(),
            dir.join("host.lock").display().to_string(),
        ),
        ("ONE_SCALEWAY_SUDO".into(), "never".into()),
    ];
    let doc = |i: u8| vm_document(u64::from(i), &[nic(i)], None, "edge-host1", 3).map(|d| b64(&d));
    let (vm1, vm2) = (doc(1)?, doc(2)?);
    let (pre, clean) = (links.join("vnm/scaleway/pre"), links.join("vnm/scaleway/clean_host"));
    let real = |program: &Path, stdin: &str, extra: &[(String, String)]| -> anyhow::Result<()> {
        let mut cmd = std::process::Command::new(program);
        cmd.env_clear()
            .env("PATH", SYSTEM_PATH)
            .envs(base.iter().cloned())
            .envs(extra.iter().cloned());
        let stdin = stdin.as_bytes().to_vec();
        let limit = std::time::Duration::from_secs(60);
        util::in_ns(ns.name(), move || util::run(&mut cmd, &stdin, limit))??.check(&program.display().to_string())?;
        Ok(())
    };
    let claims = dir.join("claims");
    std::fs::create_dir_all(&claims)?;
    real(&pre, &vm1, &[])?;
    let (snap_a, snap_b) = (dir.join("record-a"), dir.join("record-b"));
    util::copy_over(&record, &snap_a).context("the record after VM 1")?;
    let (tape_pre, tape_clean) = (dir.join("tape-pre.jsonl"), dir.join("tape-clean.jsonl"));
    // In the steady state neither action may run a tool (the VM's nftables
    // elements and its links, routes and neighbours go through netlink):
    // their tapes may stay empty.
    for tape in [&tape_pre, &tape_clean] {
        std::fs::write(tape, "")?;
    }
    real(&pre, &vm2, &mode(&shims, "record", &tape_pre, &claims))?;
    util::copy_over(&record, &snap_b)?;
    real(&clean, &vm2, &mode(&shims, "record", &tape_clean, &claims))?;
    let mut results = Vec::new();
    for (label, program, tape, snap) in [
        ("scaleway-vnm scaleway pre", &pre, &tape_pre, &snap_a),
        ("scaleway-vnm scaleway clean_host", &clean, &tape_clean, &snap_b),
    ] {
        let mut env = base.clone();
        env.extend(mode(&shims, "replay", tape, &claims));
        let run = Run::new(program, &[], vm2.clone(), &env).reset(vec![
            Reset::Copy(snap.clone(), record.clone()),
            Reset::Clear(claims.clone()),
        ]);
        let m = measure::measure(&bins.me, &vec![run; runs], Some(ns.name()), false)?;
        results.push((label.to_owned(), m));
    }
    // The stand-in alone, replaying the first call of pre (`ip` observing).
    let tape = std::fs::read_to_string(&tape_pre)?;
    if let Some(first) = tape
        .lines()
        .next()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        let tool = first["tool"].as_str().unwrap_or("ip").to_owned();
        let args: Vec<String> = first["args"]
            .as_array()
            .map(|a| a.iter().map(|x| x.as_str().unwrap_or("").to_owned()).collect())
            .unwrap_or_default();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stdin = first["stdin"].as_str().unwrap_or("").to_owned();
        let env = mode(&shims, "replay", &tape_pre, &claims);
        let run = Run::new(&shims.join(&tool), &args, stdin, &env).reset(vec![Reset::Clear(claims.clone())]);
        if let Ok(m) = measure::measure(&bins.me, &vec![run; runs], Some(ns.name()), false) {
            results.push((format!("(tool stand-in: replaying `{tool}`)"), m));
        }
    }
    Ok(results)
}

/// `pre` and `clean` of driver `scaleway_evpn` (a VNI new on the host:
/// VXLAN device, bridge, FRR's `vni` line), `runs` times each.
pub fn private(bins: &Bins, runs: usize) -> anyhow::Result<Results> {
    let dir = TempDir::new("replay-evpn")?;
    let host = Host::new("evfake", Ipv4Addr::new(10, 0, 0, 2), None)?;
    let links = dir.join("remotes");
    crate::cloud::link_actions(bins, &links)?;
    let shims = shims(bins, dir.path())?;
    let desc = lab::description(dir.path(), &[host.underlay], 1)?;
    let desc_arg = desc.display().to_string();
    host.run(
        &bins.vnm,
        &["--driver", "scaleway_evpn", "evpn-config", &desc_arg],
        "",
        &[],
    )?;
    let doc = |id: u64, vni: u32| vm_document(id, &[], Some(vni), "edge-host1", 3).map(|d| b64(&d));
    let (vm1, vm2) = (doc(1, 100)?, doc(2, 200)?);
    let (pre, clean) = (
        links.join("vnm/scaleway_evpn/pre"),
        links.join("vnm/scaleway_evpn/clean"),
    );
    host.run(&pre, &[], &vm1, &[])?;
    let state = host.state.join("state");
    let files = ["vnm-evpn.json", "frr-evpn.conf"];
    let snapshot = |tag: &str| -> anyhow::Result<Vec<Reset>> {
        let mut resets = Vec::new();
        for f in files {
            let snap = dir.join(&format!("{tag}-{f}"));
            std::fs::copy(state.join(f), &snap).with_context(|| format!("{f} after the first VM"))?;
            resets.push(Reset::Copy(snap, state.join(f)));
        }
        Ok(resets)
    };
    let claims = dir.join("claims");
    std::fs::create_dir_all(&claims)?;
    let reload = shims.join("frr-reload.py");
    let with_reload = |mut env: Vec<(String, String)>| {
        env.push(("ONE_SCALEWAY_FRR_RELOAD".into(), reload.display().to_string()));
        env
    };
    let snap_a = snapshot("a")?;
    let (tape_pre, tape_clean) = (dir.join("tape-pre.jsonl"), dir.join("tape-clean.jsonl"));
    host.run(
        &pre,
        &[],
        &vm2,
        &with_reload(mode(&shims, "record", &tape_pre, &claims)),
    )?;
    let snap_b = snapshot("b")?;
    host.run(
        &clean,
        &[],
        &vm2,
        &with_reload(mode(&shims, "record", &tape_clean, &claims)),
    )?;
    let mut results = Vec::new();
    for (label, program, tape, snap) in [
        ("scaleway-vnm scaleway_evpn pre (new VNI)", &pre, &tape_pre, &snap_a),
        (
            "scaleway-vnm scaleway_evpn clean (last VM of the VNI)",
            &clean,
            &tape_clean,
            &snap_b,
        ),
    ] {
        let mut env = host.env(Some(&reload));
        env.extend(mode(&shims, "replay", tape, &claims));
        let mut reset = snap.clone();
        reset.push(Reset::Clear(claims.clone()));
        let run = Run::new(program, &[], vm2.clone(), &env).reset(reset);
        let m = measure::measure(&bins.me, &vec![run; runs], Some(host.ns.name()), false)?;
        results.push((label.to_owned(), m));
    }
    Ok(results)
}
