//! Benchmark 2: Scaleway calls per VM lifecycle step, counted by the
//! emulator, for a VM with one and with four public NICs, beside the
//! minimum a perfect implementation needs. The frontend actions are the
//! release binaries run as oned runs them, against onedsim (which runs the
//! real IPAM driver for the leases) and the emulator at speed 0: every wait
//! is satisfied by its first read, so the counts are the implementation's
//! floor (at real speed a wait adds one read per poll interval).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::anyhow;
use opennebula::oned::Param;
use serde_json::Value;

use crate::cloud::{self, PublicNic, World, b64, vm_document};
use crate::table::Row;
use crate::util::{self, Bins};

const B: &str = "2 Scaleway calls";

/// The lifecycle steps: (name, what OpenNebula runs).
const STEPS: [(&str, &str); 5] = [
    ("deploy", "IPAM get_address per NIC, pre (host), post"),
    ("stop", "clean (host part over SSH, then detach)"),
    ("resume", "pre (host), post"),
    ("migrate", "pre (destination), clean source, post destination"),
    ("terminate", "clean, IPAM free_address per NIC"),
];

/// The fewest Scaleway calls a perfect implementation needs for a step
/// with `n` public NICs, and why.
///
/// Scaleway attaches or detaches several flexible IPs in one call only
/// when they share one MAC address (the API refuses the others: "several
/// flexible IPs can only be attached or detached together when they share
/// one MAC address"); a VM's public NICs each have their own IP and MAC, so
/// each needs its own attach or detach call.
///
/// - deploy, resume: n reads (each flexible IP's state decides: attach, or
///   move it from another server, or wait for a transition) + n attach
///   calls + 1 read confirming `attached` (`GET /fips?server_ids=S` lists
///   them all, one page up to 100 IPs) = 2n + 1 (3 for one NIC);
/// - stop, terminate: 1 read of the server's IPs (`GET /fips?server_ids=S`:
///   which of the VM's IPs are on it) + n detach calls + 1 read confirming
///   they are `ready` (a next attach fails while `detaching`) = n + 2; the
///   IPAM actions need none (the range keeps its flexible IP);
/// - migrate: stop on the source + deploy on the destination = 3n + 3 (the
///   pre is on the host, without Scaleway).
fn minimum(step: &str, n: usize) -> usize {
    match step {
        "deploy" | "resume" => 2 * n + 1,
        "migrate" => 3 * n + 3,
        _ => n + 2,
    }
}

pub fn legend() -> Vec<String> {
    vec![
        "2: Scaleway calls counted by the emulator (speed 0: each wait reads once) for one VM's lifecycle, release \
         binaries as oned runs them; baseline = the minimum for a perfect implementation: deploy/resume 2n+1 (one read \
         per IP, one attach call per IP since Scaleway attaches several IPs at once only when they share a MAC \
         address, one read by server confirming), stop/terminate n+2 (one read of the server's IPs, one detach call \
         per IP, one confirming read; IPAM needs none), migrate 3n+3 (stop on the source + deploy on the \
         destination); n = public NICs"
            .into(),
    ]
}

/// `3 (2 GET, 1 attach)`.
fn describe(calls: &[Value]) -> String {
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for c in calls {
        let method = c["method"].as_str().unwrap_or("?");
        let path = c["path"].as_str().unwrap_or("");
        let kind = if method == "GET" {
            "read".to_owned()
        } else {
            let last = path.rsplit('/').next().unwrap_or("");
            if method == "POST" {
                last.to_owned()
            } else {
                format!("{} {last}", method.to_ascii_lowercase())
            }
        };
        *kinds.entry(kind).or_insert(0) += 1;
    }
    let parts: Vec<String> = kinds.iter().map(|(k, v)| format!("{v} {k}")).collect();
    if parts.is_empty() {
        "0".into()
    } else {
        format!("{} ({})", calls.len(), parts.join(", "))
    }
}

pub fn run(bins: &Bins) -> Vec<Row> {
    match lifecycle(bins) {
        Ok(rows) => rows,
        Err(e) => vec![Row::failed(B, "lifecycle", &format!("{e:#}"))],
    }
}

fn lifecycle(bins: &Bins) -> anyhow::Result<Vec<Row>> {
    let world = World::start(bins, 0.0, 2)?;
    let hosts = world.hosts.clone();
    let [(hid1, host1, _), (hid2, host2, _)] = <[_; 2]>::try_from(hosts).map_err(|_| anyhow!("two hosts"))?;
    let range = "AR = [ IPAM_MAD = \"scaleway_fip\", TYPE = \"IP4\", SIZE = \"1\", PRIVATE_CIDR = \"10.77.0.0/16\" ]\n";
    let template = format!(
        "NAME = \"edge-public\"\nVN_MAD = \"scaleway\"\nBRIDGE = \"scwpub0\"\n{}",
        range.repeat(4)
    );
    let vnet = world.id("one.vn.allocate", &[cloud::s(&template), Param::Int(-1)])?;
    let ranges = world.ranges(vnet)?;
    if ranges.len() != 4 {
        return Err(anyhow!("the network has {} ranges, not 4", ranges.len()));
    }
    let env = world.frontend_env();
    let run = |action: &str, args: &[&str], doc: &str| -> anyhow::Result<()> {
        let mut cmd = std::process::Command::new(world.action(&format!("vnm/scaleway/{action}")));
        cmd.env_clear()
            .env("PATH", crate::measure::SYSTEM_PATH)
            .envs(env.iter().cloned())
            .args(args);
        util::run(&mut cmd, b64(doc).as_bytes(), Duration::from_secs(60))?.check(action)?;
        Ok(())
    };
    let mut rows = Vec::new();
    for n in [1usize, 4] {
        let vm = 200 + n as u64;
        let nics: Vec<PublicNic> = ranges
            .iter()
            .take(n)
            .enumerate()
            .map(|(i, r)| PublicNic::of_range(u32::try_from(i).unwrap_or(0), vnet, r))
            .collect::<anyhow::Result<_>>()?;
        let on1 = vm_document(vm, &nics, None, &host1, hid1)?;
        let on2 = vm_document(vm, &nics, None, &host2, hid2)?;
        let deploy_id = format!("one-{vm}");
        let mut macs = Vec::new();
        let (mut total, mut total_min) = (0usize, 0usize);
        for (step, what) in STEPS {
            world.emu.clear_calls();
            match step {
                "deploy" => {
                    for nic in &nics {
                        let lease = world
                            .oned
                            .lease(vnet, nic.ar_id, i64::try_from(vm).unwrap_or(0))
                            .map_err(|e| anyhow!("lease: {e}"))?;
                        macs.push((nic.ar_id, lease.mac));
                    }
                    run("post", &[&deploy_id, &host1], &on1)?;
                }
                "stop" => run("clean", &[&host1], &on1)?,
                "resume" => run("post", &[&deploy_id, &host1], &on1)?,
                "migrate" => {
                    run("clean", &[&host1], &on2)?;
                    run("post", &[&deploy_id, &host2], &on2)?;
                }
                _ => {
                    run("clean", &[&host2], &on2)?;
                    for (ar, mac) in macs.drain(..) {
                        world
                            .oned
                            .release(vnet, ar, &mac)
                            .map_err(|e| anyhow!("release: {e}"))?;
                    }
                }
            }
            let calls = world.emu.calls();
            let min = minimum(step, n);
            total += calls.len();
            total_min += min;
            let param = format!("{step}, {n} NIC{}: {what}", if n == 1 { "" } else { "s" });
            rows.push(Row::new(B, param, describe(&calls), min.to_string()).ratio(calls.len() as f64, min as f64));
        }
        rows.push(
            Row::new(
                B,
                format!("whole lifecycle, {n} NIC{}", if n == 1 { "" } else { "s" }),
                total.to_string(),
                total_min.to_string(),
            )
            .ratio(total as f64, total_min as f64),
        );
    }
    let attached = world.emu.state()["flexible_ips"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|f| !f["server_id"].is_null()).count());
    if attached != 0 {
        return Err(anyhow!("{attached} flexible IPs still attached after terminate"));
    }
    Ok(rows)
}
