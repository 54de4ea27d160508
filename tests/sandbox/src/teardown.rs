//! Part 7: the VMs terminated, the networks and the provision deleted,
//! then nothing left: at Scaleway (the emulator), in oned, in the kernel,
//! in FRR, and on this machine. Also what runs after a failure or Ctrl-C.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};

use crate::checks::{nothing_of, vtysh};
use crate::ctl::{Ctl, ip};
use crate::netns::namespaces;
use crate::report::Report;
use crate::sandbox::{NAME, Sandbox, ZONE};

/// What this machine looked like before the sandbox (to show it is untouched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    tables: Vec<String>,
    links: Vec<String>,
    files: Vec<(String, bool)>,
    etc_hosts_blocks: usize,
}

const FILES: [&str; 6] = [
    "/usr/local/libexec/one-scaleway",
    "/etc/sysctl.d/60-one-scaleway.conf",
    "/etc/netplan/60-one-scaleway.yaml",
    "/etc/sudoers.d/one-scaleway",
    "/var/lib/one/scaleway",
    "/var/tmp/one/vnm/scaleway_evpn/scaleway-vnm",
];

impl Machine {
    /// The root namespace's nftables tables and links of ours, and the
    /// files a host bootstrap writes.
    pub fn observe(ctl: &Ctl, prefix: &str) -> Machine {
        let tables = ctl
            .run_ok(
                std::process::Command::new("nft").args(["list", "tables"]),
                b"",
                Duration::from_secs(30),
            )
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("one_scaleway"))
            .map(str::to_owned)
            .collect();
        let links = ip(ctl, &["-o", "link", "show"])
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_owned())
            .filter(|n| n.starts_with("one-") || n.starts_with(&format!("{prefix}-")))
            .collect();
        Machine {
            tables,
            links,
            files: FILES.iter().map(|f| ((*f).to_owned(), Path::new(f).exists())).collect(),
            etc_hosts_blocks: std::fs::read_to_string("/etc/hosts")
                .unwrap_or_default()
                .matches(&format!("one-scaleway provision {NAME} begin"))
                .count(),
        }
    }
}

/// Processes whose command line names `needle` (FRR daemons of the state root).
fn processes_naming(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) || name == std::process::id().to_string() {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(needle) {
            found.push(format!("{name}: {}", text.trim()));
        }
    }
    found
}

fn vms_gone(sb: &Sandbox, vni: u32) -> anyhow::Result<String> {
    let mut lines = Vec::new();
    for h in &sb.cluster.hosts {
        lines.push(nothing_of(sb, h, None, &[])?);
        let vnis: serde_json::Value = serde_json::from_str(&vtysh(sb, h, "show evpn vni json")?).unwrap_or_default();
        ensure!(
            vnis.get(vni.to_string()).is_none(),
            "{}'s FRR still has VNI {vni}: {vnis}",
            h.name
        );
    }
    let state = sb.emu()?.state();
    for f in state["flexible_ips"].as_array().cloned().unwrap_or_default() {
        ensure!(
            f["status"] == "ready",
            "flexible IP {} is {}",
            f["ip_address"],
            f["status"]
        );
    }
    let routes = sb.emu()?.network().context("no network report")?["flexible_ips"].clone();
    ensure!(
        routes.as_array().is_none_or(Vec::is_empty),
        "the internet still routes {routes}"
    );
    lines.push(format!(
        "FRR: no VNI {vni} left; flexible IPs detached (ready), no longer routed"
    ));
    Ok(lines.join("\n"))
}

/// oned has nothing of the provision: every pool is back to what a fresh
/// oned holds (cluster 0 "default", datastores 0 to 2).
fn oned_empty(sb: &Sandbox) -> anyhow::Result<String> {
    let mut left = Vec::new();
    for (program, keep) in [
        ("onehost", 0),
        ("onevnet", 0),
        ("onevntemplate", 0),
        ("onevm", 0),
        ("onedatastore", 3),
        ("onecluster", 1),
    ] {
        let text = sb.one(program, &["list", "--xml"])?;
        let pool = opennebula::xml::parse(text.as_bytes()).map_err(|e| anyhow::anyhow!("{program} list: {e}"))?;
        let ids: Vec<String> = pool
            .children
            .iter()
            .map(|o| crate::vms::value(o, "ID"))
            .filter(|id| id.parse::<u32>().map_or(true, |n| n >= keep))
            .collect();
        if !ids.is_empty() {
            left.push(format!("{program}: {}", ids.join(", ")));
        }
    }
    ensure!(left.is_empty(), "oned still has: {}", left.join("; "));
    Ok("no host, network, template, VM, datastore or cluster of the provision (onevm list shows none alive)".into())
}

fn emulator_empty(sb: &Sandbox) -> anyhow::Result<String> {
    let state = sb.emu()?.state();
    ensure!(
        state["empty"] == true,
        "resources left at Scaleway: {}",
        state["counts"]
    );
    Ok(format!("every count is 0: {}", state["counts"]))
}

/// After everything stopped: namespaces, FRR processes, this machine.
pub fn nothing_left(sb: &Sandbox, before: &Machine) -> anyhow::Result<String> {
    let prefix = format!("{}-", sb.opts.prefix);
    let ns: Vec<String> = namespaces().into_iter().filter(|n| n.starts_with(&prefix)).collect();
    ensure!(ns.is_empty(), "namespaces left: {}", ns.join(", "));
    let alive: Vec<u64> = sb
        .frr_pids
        .iter()
        .copied()
        .filter(|p| Path::new(&format!("/proc/{p}")).exists())
        .collect();
    ensure!(alive.is_empty(), "FRR daemons still running: {alive:?}");
    let root = sb.paths.state_root.display().to_string();
    let procs = processes_naming(&root);
    ensure!(
        procs.is_empty(),
        "processes of the sandbox still running:\n{}",
        procs.join("\n")
    );
    ensure!(!sb.paths.state_root.exists(), "{root} is still there");
    let after = Machine::observe(&sb.ctl, &sb.opts.prefix);
    ensure!(
        after == *before,
        "this machine changed:\nbefore: {before:?}\nafter:  {after:?}"
    );
    Ok(format!(
        "no {prefix}* namespace, no FRR daemon of the sandbox running, {root} gone; this machine: same nftables \
         tables ({}), no link of ours, /etc/hosts, /etc/sysctl.d, /etc/sudoers.d, /var/lib/one and /var/tmp/one \
         untouched",
        if after.tables.is_empty() {
            "none of ours".to_owned()
        } else {
            after.tables.join(", ")
        }
    ))
}

/// Part 6, after a story that passed.
pub fn run(sb: &mut Sandbox, rep: &mut Report, before: &Machine) -> anyhow::Result<()> {
    rep.part("7. teardown: nothing left");
    while let Some(name) = sb.vms.first().map(|v| v.name.clone()) {
        rep.step(&format!("onevm terminate {name}"), false, || Ok(((), sb.terminate(0)?)))?;
    }
    let vni = 1_000_000 + sb.private_vnet.context("no private network")?;
    rep.step(
        "hosts: no VM networking left (links, nftables, FRR), flexible IPs detached",
        true,
        || Ok(((), vms_gone(sb, vni)?)),
    )?;
    rep.step("onevnet delete the private network", false, || {
        let id = sb.private_vnet.take().context("no private network")?;
        sb.one("onevnet", &["delete", &id.to_string()])?;
        Ok(((), format!("network {id} deleted (vnet_delete ran)")))
    })?;
    rep.step("scaleway-provision delete (as oneadmin)", false, || {
        let ran = sb.provision(&["delete", NAME], Duration::from_secs(1800))?;
        if !ran.ok() {
            sb.note_emulator_calls();
        }
        ensure!(ran.ok(), "scaleway-provision delete failed:\n{}", ran.complaint());
        Ok(((), ran.stdout.trim().to_owned()))
    })?;
    rep.step(
        "scaleway-provision provider delete (no provision uses it now)",
        false,
        || {
            let ran = sb.provision(&["provider", "delete", ZONE], Duration::from_secs(120))?;
            ensure!(
                ran.ok(),
                "scaleway-provision provider delete failed:\n{}",
                ran.complaint()
            );
            Ok(((), ran.stdout.trim().to_owned()))
        },
    )?;
    rep.step("nothing left at Scaleway (the emulator is empty)", true, || {
        Ok(((), emulator_empty(sb)?))
    })?;
    rep.step("nothing left in oned", true, || Ok(((), oned_empty(sb)?)))?;
    rep.step("stop oned, libvirtd and the emulator", false, || {
        Ok(((), sb.hard_cleanup().join("\n")))
    })?;
    rep.step("nothing left in the kernel, in FRR, on this machine", true, || {
        Ok(((), nothing_left(sb, before)?))
    })?;
    Ok(())
}

/// After a failure or Ctrl-C: everything removed by name and PID, then checked.
pub fn abort(sb: &mut Sandbox, rep: &mut Report, before: &Machine) {
    rep.part("cleanup (after a failure or an interruption)");
    sb.ctl.resume();
    let _ = rep.step("remove everything the sandbox made", false, || {
        Ok(((), sb.hard_cleanup().join("\n")))
    });
    let _ = rep.step("nothing left in the kernel, in FRR, on this machine", true, || {
        Ok(((), nothing_left(sb, before)?))
    });
}
