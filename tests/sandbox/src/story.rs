//! The story, as an OpenNebula administrator plays it against a real oned:
//! a provisioned 2-host edge cluster, its networks, two VMs, real packets,
//! a poweroff and resume, a live migration. Each step is printed with its
//! timing; the first failure ends the story.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, anyhow, ensure};
use scaleway_emulator::network::CLIENT_V4;
use serde_json::Value;

use crate::checks::{
    REMOTE_DIR, bgp_sessions, bootstrap_files, drivers_as_oneadmin, fip_routes, inbound, nothing_of, outbound, private,
    public_ranges,
};
use crate::netns::{PORT, Service};
use crate::report::Report;
use crate::sandbox::{HostInfo, Sandbox, ZONE};
use crate::vms::value;

fn ip4(v: &Value, what: &str) -> anyhow::Result<Ipv4Addr> {
    v.as_str()
        .with_context(|| format!("no {what}"))?
        .parse()
        .with_context(|| format!("{what} is not an IPv4 address"))
}

fn text(v: &Value, what: &str) -> anyhow::Result<String> {
    Ok(v.as_str().with_context(|| format!("no {what}"))?.to_owned())
}

impl Sandbox {
    pub fn host(&self, index: usize) -> anyhow::Result<&HostInfo> {
        self.cluster
            .hosts
            .get(index)
            .with_context(|| format!("no host {index}"))
    }
}

/// Learns the cluster again after hosts came or went (`expected` hosts):
/// the hosts, the drivers on the new ones, where each VM runs.
pub fn rediscover(sb: &mut Sandbox, expected: usize) -> anyhow::Result<String> {
    let found = discover(sb, expected)?;
    sync_hosts(sb)?;
    for i in 0..sb.vms.len() {
        let id = sb.vms[i].id;
        let vm = sb.show("onevm", id)?;
        let name = vm
            .at("HISTORY_RECORDS")
            .and_then(|h| h.children_named("HISTORY").last())
            .map_or_else(String::new, |h| value(h, "HOSTNAME"));
        let index = sb
            .cluster
            .hosts
            .iter()
            .position(|h| h.public_ip.to_string() == name)
            .with_context(|| format!("VM {id} runs on {name}, which is not a host of the provision"))?;
        sb.vms[i].host = index;
    }
    Ok(found)
}

/// Learns the cluster from the provision's record, oned and the emulator;
/// tells libvirtd where each host is.
fn discover(sb: &mut Sandbox, expected: usize) -> anyhow::Result<String> {
    let rec = sb.record()?;
    ensure!(rec["phase"] == "ready", "the provision is {} (not ready)", rec["phase"]);
    let one = &rec["one"];
    let int = |k: &str| -> anyhow::Result<u32> {
        let v = one[k]
            .as_i64()
            .with_context(|| format!("the record has no OpenNebula {k}"))?;
        Ok(u32::try_from(v)?)
    };
    sb.cluster.cluster_id = int("cluster")?;
    sb.cluster.public_vnet = int("public_network")?;
    sb.cluster.private_template = int("private_template")?;
    sb.cluster.system_ds = int("system_datastore")?;
    let report = sb.emu()?.network().context("the emulator has no network mode")?;
    let servers = report["servers"].as_array().cloned().unwrap_or_default();
    let mut lines = Vec::new();
    sb.cluster.hosts.clear();
    for h in rec["hosts"].as_array().context("the record has no hosts")? {
        let server_id = text(&h["server_id"], "server id")?;
        let s = servers
            .iter()
            .find(|s| s["server_id"] == server_id.as_str())
            .with_context(|| format!("server {server_id} has no namespace in the emulator"))?;
        let pids: Vec<u64> = s["frr"]["pids"]
            .as_array()
            .map(|p| p.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        ensure!(
            pids.len() == 2,
            "server {server_id} runs no FRR (zebra, bgpd): {}",
            s["frr"]
        );
        for p in &pids {
            if !sb.frr_pids.contains(p) {
                sb.frr_pids.push(*p);
            }
        }
        let one_id = h["one_id"].as_i64().context("a host is not registered in oned")?;
        let info = HostInfo {
            name: text(&h["name"], "host name")?,
            one_id: u32::try_from(one_id)?,
            public_ip: ip4(&h["public_ip"], "public address")?,
            private_ip: ip4(&h["private_ip"], "private address")?,
            server_id,
            namespace: text(&s["namespace"], "namespace")?,
        };
        let oh = sb.show("onehost", info.one_id)?;
        ensure!(
            value(&oh, "NAME") == info.public_ip.to_string(),
            "oned host {} is named {}",
            info.one_id,
            value(&oh, "NAME")
        );
        lines.push(format!(
            "{}: server {} = namespace {}, public {}, private {} (scwpriv0), oned host {} \"{}\" (IM_MAD {}, \
             VM_MAD {}, cluster {}), FRR pids {:?}",
            info.name,
            info.server_id,
            info.namespace,
            info.public_ip,
            info.private_ip,
            info.one_id,
            value(&oh, "NAME"),
            value(&oh, "IM_MAD"),
            value(&oh, "VM_MAD"),
            value(&oh, "CLUSTER"),
            pids
        ));
        sb.cluster.hosts.push(info);
    }
    ensure!(
        sb.cluster.hosts.len() == expected,
        "{} hosts, not {expected}",
        sb.cluster.hosts.len()
    );
    let places: Vec<(String, String)> = sb
        .cluster
        .hosts
        .iter()
        .map(|h| (h.public_ip.to_string(), h.namespace.clone()))
        .collect();
    sb.libvirt
        .as_ref()
        .context("libvirtd is not running")?
        .set_hosts(&places);
    Ok(lines.join("\n"))
}

/// oned's view of the hosts. Their monitoring is not emulated (the `kvm`
/// monitoring runs on the frontend and its client finds no monitord
/// configuration there): they end in ERROR, which does not keep oned from
/// deploying or migrating VMs on them; a host in ERROR or OFFLINE after the
/// story would be a finding, so the state is shown.
fn host_states(sb: &Sandbox) -> anyhow::Result<String> {
    let mut lines = Vec::new();
    for h in &sb.cluster.hosts {
        let oh = sb.show("onehost", h.one_id)?;
        lines.push(format!(
            "host {} {}: state {} (0 INIT, 2 MONITORED, 3 ERROR), IM_MAD {}, VM_MAD {}",
            h.one_id,
            h.name,
            value(&oh, "STATE"),
            value(&oh, "IM_MAD"),
            value(&oh, "VM_MAD")
        ));
    }
    Ok(lines.join("\n"))
}

/// `onehost sync`: the drivers go to every host's `/var/tmp/one`,
/// oneadmin's (copied here by root through the alias: OpenNebula's own
/// sync needs scp or rsync over a real ssh).
fn sync_hosts(sb: &Sandbox) -> anyhow::Result<String> {
    let remotes = sb.oned()?.location.join("var/remotes");
    let src = format!("{}/.", remotes.display());
    for h in &sb.cluster.hosts {
        for (program, args) in [
            ("mkdir", vec!["-p", REMOTE_DIR]),
            ("cp", vec!["-rL", &src, REMOTE_DIR]),
            ("chown", vec!["-R", "oneadmin:oneadmin", REMOTE_DIR]),
        ] {
            let ran = sb.on_host(h, program, &args, b"")?;
            ensure!(ran.ok(), "{program} on {}: {}", h.name, ran.complaint());
        }
    }
    Ok(format!("{} -> {REMOTE_DIR} on every host", remotes.display()))
}

/// `scaleway-provision provider create` of the provider file install.sh
/// put in place, as an administrator does first; then `provider list --json`.
fn provider(sb: &Sandbox) -> anyhow::Result<String> {
    let file = sb
        .oned()?
        .location
        .join(format!("share/scaleway/providers/{ZONE}.yaml"))
        .display()
        .to_string();
    let ran = sb.provision(&["provider", "create", &file], Duration::from_secs(120))?;
    ensure!(
        ran.ok(),
        "scaleway-provision provider create failed:\n{}",
        ran.complaint()
    );
    let listed = sb.provision(&["provider", "list", "--json"], Duration::from_secs(60))?;
    ensure!(listed.ok(), "provider list --json failed:\n{}", listed.complaint());
    let doc: serde_json::Value =
        serde_json::from_str(&listed.stdout).with_context(|| format!("provider list --json: {}", listed.stdout))?;
    let p = &doc["providers"][0];
    ensure!(
        p["name"] == ZONE && p["zone"] == ZONE && p["defaults"]["offer"] == "EM-A116X-SSD",
        "provider list --json: {doc}"
    );
    Ok(format!(
        "{} (provider {} in oned, document {})",
        ran.stdout.trim(),
        p["name"],
        p["id"]
    ))
}

/// `scaleway-provision create --json` as oneadmin, hosts bootstrapped over the alias.
fn create(sb: &Sandbox) -> anyhow::Result<String> {
    let key = sb.paths.key.display().to_string();
    let vnm = sb
        .oned()?
        .location
        .join("var/remotes/vnm/scaleway_evpn/scaleway-vnm")
        .display()
        .to_string();
    let file = sb.paths.description.display().to_string();
    let args = [
        "create",
        &file,
        "--json",
        "--ssh-user",
        "ubuntu",
        "--skip",
        "packages,services",
        "--ssh-key",
        &key,
        "--vnm",
        &vnm,
    ];
    let ran = sb.provision(&args, Duration::from_secs(1800))?;
    if !ran.ok() {
        sb.note_emulator_calls();
    }
    ensure!(ran.ok(), "scaleway-provision create failed:\n{}", ran.complaint());
    let doc: serde_json::Value =
        serde_json::from_str(&ran.stdout).with_context(|| format!("create --json printed: {}", ran.stdout))?;
    let p = &doc["provision"];
    let hosts = p["hosts"].as_array().map_or(0, Vec::len);
    let ips = p["public_ips"].as_array().map_or(0, Vec::len);
    ensure!(
        p["phase"] == "ready" && p["provider"] == ZONE && hosts == 2 && ips == 2,
        "create --json: {doc}"
    );
    Ok(format!(
        "provision {} ({}) ready: {hosts} hosts, {ips} public IPs, cluster {} (create --json)",
        p["name"], p["id"], p["opennebula"]["cluster"]
    ))
}

/// Parts 1 to 5. Returns when a step fails.
pub fn run(sb: &mut Sandbox, rep: &mut Report) -> anyhow::Result<()> {
    rep.part("setup");
    rep.step("work folder, ssh alias, description", false, || Ok(((), sb.prepare()?)))?;
    rep.step(
        "start the Scaleway emulator (network mode, FRR on every server)",
        false,
        || Ok(((), sb.start_emulator()?)),
    )?;
    rep.step(
        "start oned (OpenNebula built from source, our build installed by install.sh -d)",
        false,
        || Ok(((), sb.start_oned()?)),
    )?;
    let inet = sb.inet();
    sb.inet_service = Some(rep.step("the internet's client 192.0.2.1 listens", false, || {
        Ok((
            Service::start(&inet, "internet", SocketAddr::new(CLIENT_V4.into(), PORT))?,
            String::new(),
        ))
    })?);

    rep.part("1. provision a 2-host edge cluster with 2 public IPs");
    rep.step(
        "scaleway-provision provider create (the shipped provider file, kept in oned)",
        false,
        || Ok(((), provider(sb)?)),
    )?;
    rep.step(
        "scaleway-provision create (as oneadmin; hosts bootstrapped over ssh)",
        false,
        || Ok(((), create(sb)?)),
    )?;
    rep.step("hosts: emulated servers with FRR, registered in oned", true, || {
        Ok(((), discover(sb, 2)?))
    })?;
    rep.step("the bootstrap configured each host (its own /etc)", true, || {
        Ok(((), bootstrap_files(sb)?))
    })?;
    rep.step("EVPN: BGP sessions between the hosts", true, || {
        Ok(((), bgp_sessions(sb)?))
    })?;
    rep.step(
        "onehost sync: drivers copied to every host's /var/tmp/one",
        false,
        || Ok(((), sync_hosts(sb)?)),
    )?;
    rep.step("oned's view of the hosts", false, || Ok(((), host_states(sb)?)))?;

    rep.part("2. networks");
    rep.step(
        "public network: the IPAM driver registered the flexible IPs",
        true,
        || Ok(((), public_ranges(sb)?)),
    )?;
    rep.step(
        "onevntemplate instantiate: a private network without VLAN_ID",
        false,
        || Ok(((), sb.instantiate_private_network()?)),
    )?;

    rep.part("3. VMs (a public and a private NIC each), deployed by oned");
    for i in 0..2 {
        let name = format!("vm{}", i + 1);
        let host_name = sb.host(i)?.name.clone();
        rep.step(&format!("onevm create + deploy {name} on {host_name}"), false, || {
            Ok(((), sb.deploy(&name, i)?))
        })?;
    }
    rep.step(
        "the host drivers ran as oneadmin (through sudo, with the shipped rules)",
        true,
        || Ok(((), drivers_as_oneadmin(sb)?)),
    )?;
    rep.step(
        "FRR's VNIs changed in place by pre, through the root helper (no full reload)",
        true,
        || Ok(((), crate::checks::frr_in_place(sb)?)),
    )?;
    rep.step(
        "oneadmin can do nothing else as root (sudo and the root helper refuse)",
        true,
        || Ok(((), crate::checks::least_privilege(sb)?)),
    )?;
    packets(sb, rep, "")?;

    rep.part("4. poweroff and resume vm2");
    rep.step("onevm poweroff, onevm resume vm2", false, || {
        Ok(((), sb.poweroff_resume(1)?))
    })?;
    packets(sb, rep, " (after the resume)")?;

    let (h1, h2) = (sb.host(0)?.name.clone(), sb.host(1)?.name.clone());
    let how = moving(sb);
    rep.part(&format!("5. vm1 moves to {h2} ({how})"));
    rep.step(&format!("{how} vm1 from {h1} to {h2}"), false, || {
        Ok(((), sb.move_vm(0, 1)?))
    })?;
    packets(sb, rep, " (after the move)")?;
    rep.step(&format!("{h1} keeps nothing of vm1"), true, || {
        let vm = sb.vms.first().context("no vm1")?;
        let addresses = vec![vm.external_ip.to_string(), vm.public_ip.to_string()];
        let h = sb.host(0)?.clone();
        Ok(((), nothing_of(sb, &h, Some(vm.id), &addresses)?))
    })?;
    rep.step(
        &format!("a hostile vm2 beside vm1 on {h2}: spoofing fails, vm1's traffic intact"),
        true,
        || Ok(((), crate::hostile::attempt(sb, 1, 0)?)),
    )?;
    rep.step(
        "onesecgroup update 0 (TCP 22 only in): oned's update_sg closes vm1 to the internet and to vm2",
        true,
        || Ok(((), crate::secgroups::restrict(sb, 0, 1)?)),
    )?;
    rep.step(
        "onesecgroup update 0 (all open again): the internet and vm2 reach vm1",
        true,
        || Ok(((), crate::secgroups::reopen(sb, 0, 1)?)),
    )?;
    crate::day2::run(sb, rep)?;
    if sb.opts.timing {
        crate::timing::run(sb, rep)?;
    }
    if sb.opts.keep {
        keep(sb, rep)?;
    }
    Ok(())
}

/// How a VM moves between hosts on this hypervisor.
pub fn moving(sb: &Sandbox) -> &'static str {
    match sb.opts.hypervisor {
        crate::sandbox::Hypervisor::Kvm => "onevm migrate --live",
        crate::sandbox::Hypervisor::Lxc => "onevm terminate + create (LXC: no live migration)",
    }
}

/// Real packets: the internet and each VM, the VMs on the private network.
fn packets(sb: &Sandbox, rep: &mut Report, when: &str) -> anyhow::Result<()> {
    for i in 0..sb.vms.len() {
        let n = i + 1;
        rep.step(
            &format!("the internet reaches vm{n} on its flexible IP{when}"),
            true,
            || Ok(((), inbound(sb, i)?)),
        )?;
        rep.step(
            &format!("vm{n} reaches the internet from its flexible IP{when}"),
            true,
            || Ok(((), outbound(sb, i)?)),
        )?;
    }
    rep.step(&format!("vm1 <-> vm2 on the private network{when}"), true, || {
        Ok(((), format!("{}\n{}", private(sb, 0, 1)?, private(sb, 1, 0)?)))
    })?;
    rep.step(
        &format!("Scaleway routes each flexible IP to its VM's server{when}"),
        true,
        || Ok(((), fip_routes(sb)?)),
    )?;
    Ok(())
}

/// `--keep`: the sandbox stays up until Ctrl-C, with commands to look around.
fn keep(sb: &Sandbox, rep: &Report) -> anyhow::Result<()> {
    let p = &sb.opts.prefix;
    let emu = sb.emu()?.url();
    let bin = sb.paths.bindir.join("scaleway-emulator");
    let bin = bin.display();
    let h = sb.host(1)?;
    let vm1 = sb.vms.first().ok_or_else(|| anyhow!("no vm1"))?;
    let oned = sb.oned()?;
    let env: Vec<String> = oned
        .env()
        .iter()
        .filter(|(k, _)| ["ONE_LOCATION", "ONE_AUTH", "ONE_XMLRPC"].contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    // oneadmin's environment, for docs/deployment.md's rehearsal: a shell as the administrator.
    let rc = sb.paths.work.join("oneadmin.rc");
    let mut text = String::from("# oneadmin's environment in the sandbox (docs/deployment.md)\n");
    for (k, v) in oned.env() {
        text.push_str(&format!("export {k}='{}'\n", v.replace('\'', "'\\''")));
    }
    text.push_str("cd \"$HOME\"\nPS1='oneadmin@sandbox:\\w\\$ '\n");
    std::fs::write(&rc, text).with_context(|| format!("cannot write {}", rc.display()))?;
    rep.part("--keep: the sandbox is up; look around (as root, from another terminal)");
    for line in [
        format!(
            "sudo -u oneadmin bash --rcfile {}   # a shell as oneadmin: scaleway-provision, onevm... (docs/deployment.md)",
            rc.display()
        ),
        format!(
            "sudo -u oneadmin env {} {}/bin/onevm list     # OpenNebula's CLI",
            env.join(" "),
            oned.location.display()
        ),
        format!("ip netns list | grep '^{p}-'                      # the hosts, VMs, private network, internet"),
        format!(
            "ip netns exec {p}-vm{} ip addr                     # vm1 (now on {})",
            vm1.id, h.name
        ),
        format!("ip netns exec {p}-inet ip route                       # the internet: flexible IPs -> servers"),
        format!("{bin} exec --prefix {p} {} -- nft list ruleset", h.public_ip),
        format!(
            "{bin} exec --prefix {p} {} -- vtysh -c 'show bgp l2vpn evpn'",
            h.public_ip
        ),
        format!("curl -s {emu}/_emulator/state          # every Scaleway resource"),
        format!(
            "vm1: public {} = flexible IP {}, private {}",
            vm1.public_ip, vm1.external_ip, vm1.private_ip
        ),
        "Press Ctrl-C to tear it all down (the teardown steps and their checks run then).".to_owned(),
    ] {
        rep.say(&format!("  {line}"));
    }
    while !sb.ctl.cancelled() {
        std::thread::sleep(Duration::from_millis(100));
    }
    sb.ctl.resume();
    Ok(())
}
