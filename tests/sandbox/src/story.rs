//! The story, as OpenNebula would play it: a provisioned 2-host edge
//! cluster, its networks, two VMs, real packets, a live migration. Each
//! step is printed with its timing; the first failure ends the story.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use scaleway_emulator::network::CLIENT_V4;
use serde_json::Value;

use crate::netns::{PORT, Service, ask};
use crate::report::Report;
use crate::sandbox::{HostInfo, NAME, Sandbox};
use crate::vms::{REMOTE_DIR, VNI};

/// The sudoers rules the bootstrap installs on every host.
const SHIPPED_SUDOERS: &str = include_str!("../../../share/host/sudoers-one-scaleway");

/// What crosses the private network in a check (full-size frames: the
/// VMs' MTU must fit VXLAN on the underlay).
const PRIVATE_PAYLOAD: usize = 256 * 1024;

fn ip4(v: &Value, what: &str) -> anyhow::Result<Ipv4Addr> {
    v.as_str()
        .with_context(|| format!("no {what}"))?
        .parse()
        .with_context(|| format!("{what} is not an IPv4 address"))
}

fn text(v: &Value, what: &str) -> anyhow::Result<String> {
    Ok(v.as_str().with_context(|| format!("no {what}"))?.to_owned())
}

/// Learns the cluster from the provision's record, oned and the emulator.
fn discover(sb: &mut Sandbox) -> anyhow::Result<String> {
    let rec = sb.record()?;
    ensure!(rec["phase"] == "ready", "the provision is {} (not ready)", rec["phase"]);
    let one = &rec["one"];
    let int = |k: &str| {
        one[k]
            .as_i64()
            .with_context(|| format!("the record has no OpenNebula {k}"))
    };
    sb.cluster.cluster_id = int("cluster")?;
    sb.cluster.public_vnet = int("public_network")?;
    sb.cluster.private_template = int("private_template")?;
    let report = sb.emu()?.network().context("the emulator has no network mode")?;
    let servers = report["servers"].as_array().cloned().unwrap_or_default();
    let oned_hosts = sb.oned()?.hosts();
    let mut lines = Vec::new();
    sb.cluster.hosts.clear();
    sb.frr_pids.clear();
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
        sb.frr_pids.extend(&pids);
        let info = HostInfo {
            name: text(&h["name"], "host name")?,
            one_id: h["one_id"].as_i64().context("a host is not registered in oned")?,
            public_ip: ip4(&h["public_ip"], "public address")?,
            private_ip: ip4(&h["private_ip"], "private address")?,
            server_id,
            namespace: text(&s["namespace"], "namespace")?,
        };
        let oh = oned_hosts
            .iter()
            .find(|o| o.id == info.one_id)
            .with_context(|| format!("oned has no host {}", info.one_id))?;
        ensure!(
            oh.name == info.public_ip.to_string(),
            "oned host {} is named {}",
            oh.id,
            oh.name
        );
        lines.push(format!(
            "{}: server {} = namespace {}, public {}, private {} (scwpriv0), oned host {} \"{}\", FRR pids {:?}",
            info.name, info.server_id, info.namespace, info.public_ip, info.private_ip, oh.id, oh.name, pids
        ));
        sb.cluster.hosts.push(info);
    }
    ensure!(sb.cluster.hosts.len() == 2, "{} hosts, not 2", sb.cluster.hosts.len());
    Ok(lines.join("\n"))
}

/// Objects with `"state": "Established"` anywhere in FRR's JSON.
fn established(v: &Value) -> usize {
    match v {
        Value::Object(m) => {
            usize::from(m.get("state").and_then(Value::as_str) == Some("Established"))
                + m.values().map(established).sum::<usize>()
        }
        Value::Array(a) => a.iter().map(established).sum(),
        _ => 0,
    }
}

/// `vtysh -c COMMAND` against a host's FRR, on the host.
pub fn vtysh(sb: &Sandbox, h: &HostInfo, command: &str) -> anyhow::Result<String> {
    let ran = sb.on_host(h, "vtysh", &["-c", command], b"")?;
    ensure!(ran.ok(), "vtysh -c {command:?} on {}: {}", h.name, ran.complaint());
    Ok(ran.stdout)
}

fn bgp_sessions(sb: &Sandbox) -> anyhow::Result<String> {
    let started = Instant::now();
    loop {
        let mut counts = Vec::new();
        for h in &sb.cluster.hosts {
            let out = vtysh(sb, h, "show bgp l2vpn evpn summary json")?;
            let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
            counts.push((h.name.clone(), established(&v)));
        }
        if counts.iter().all(|(_, n)| *n >= 1) {
            return Ok(counts
                .iter()
                .map(|(h, n)| {
                    format!(
                        "{h}: {n} BGP EVPN session(s) established after {:.1}s",
                        started.elapsed().as_secs_f64()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"));
        }
        if started.elapsed() > Duration::from_secs(90) {
            bail!("BGP EVPN sessions not established after 90 s: {counts:?}");
        }
        sb.ctl.sleep(Duration::from_millis(500))?;
    }
}

/// The bootstrap wrote each host's own /etc (and /var/tmp), not this machine's.
fn bootstrap_files(sb: &Sandbox) -> anyhow::Result<String> {
    let marker = format!("one-scaleway provision {NAME}");
    let mut lines = Vec::new();
    for h in &sb.cluster.hosts {
        let hosts = sb.on_host(h, "cat", &["/etc/hosts"], b"")?.stdout;
        ensure!(
            hosts.contains(&marker),
            "{}'s /etc/hosts has no block of the provision",
            h.name
        );
        let vnm = format!("{REMOTE_DIR}/vnm/scaleway_evpn/scaleway-vnm");
        ensure!(
            sb.on_host(h, "test", &["-x", &vnm], b"")?.ok(),
            "{} has no {vnm}",
            h.name
        );
        // The access phase: oneadmin may run the drivers' tools through sudo,
        // with the rules we ship, exactly (the drivers run as oneadmin).
        let rules = sb.on_host(h, "cat", &["/etc/sudoers.d/one-scaleway"], b"")?.stdout;
        ensure!(
            rules == SHIPPED_SUDOERS,
            "{}'s /etc/sudoers.d/one-scaleway is not share/host/sudoers-one-scaleway:\n{rules}",
            h.name
        );
        let allowed = sb.on_host_as("oneadmin", h, "sudo", &["-n", "-l"], b"")?;
        ensure!(
            allowed.ok() && allowed.stdout.contains("/usr/sbin/nft"),
            "oneadmin on {} may not run the drivers' tools through sudo: {}",
            h.name,
            allowed.complaint()
        );
        let fw = sb.on_host(h, "nft", &["list", "tables"], b"")?.stdout;
        ensure!(
            fw.contains("one_scaleway_host"),
            "{} has no host firewall: {fw}",
            h.name
        );
        lines.push(format!(
            "{}: sudoers rules as shipped (oneadmin: sudo -l lists them), /etc/hosts block, /etc/sysctl.d, {vnm}, \
             nft tables {}",
            h.name,
            fw.split_whitespace()
                .filter(|w| w.starts_with("one_"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let here = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    ensure!(!here.contains(&marker), "this machine's /etc/hosts was edited");
    lines.push("this machine's /etc and /var/tmp: untouched (each host has its own)".into());
    Ok(lines.join("\n"))
}

/// The host drivers' records (`/var/lib/one/scaleway`) are oneadmin's:
/// they ran as oneadmin, and every privileged command went through sudo.
fn drivers_as_oneadmin(sb: &Sandbox) -> anyhow::Result<String> {
    let mut lines = Vec::new();
    for h in &sb.cluster.hosts {
        let files = ["vnm-public.json", "vnm-evpn.json"].map(|f| format!("/var/lib/one/scaleway/{f}"));
        let ran = sb.on_host(h, "stat", &["-c", "%U %n", &files[0], &files[1]], b"")?;
        ensure!(ran.ok(), "{}: {}", h.name, ran.complaint());
        ensure!(
            ran.stdout.lines().all(|l| l.starts_with("oneadmin ")),
            "{}: the drivers' records are not oneadmin's:\n{}",
            h.name,
            ran.stdout
        );
        lines.push(format!("{}: {}", h.name, ran.stdout.trim().replace('\n', ", ")));
    }
    Ok(lines.join("\n"))
}

/// `onehost sync`: the drivers go to every host's `/var/tmp/one`.
fn sync_hosts(sb: &Sandbox) -> anyhow::Result<String> {
    let src = format!("{}/.", sb.paths.remotes.display());
    for h in &sb.cluster.hosts {
        for (program, args) in [
            ("mkdir", vec!["-p", REMOTE_DIR]),
            ("cp", vec!["-r", &src, REMOTE_DIR]),
            ("chown", vec!["-R", "oneadmin:oneadmin", REMOTE_DIR]),
        ] {
            let ran = sb.on_host(h, program, &args, b"")?;
            ensure!(ran.ok(), "{program} on {}: {}", h.name, ran.complaint());
        }
    }
    Ok(format!("{} -> {REMOTE_DIR} on every host", sb.paths.remotes.display()))
}

fn public_ranges(sb: &Sandbox) -> anyhow::Result<String> {
    let vnet = sb
        .oned()?
        .vnets()
        .into_iter()
        .find(|v| v.id == sb.cluster.public_vnet)
        .context("no public network in oned")?;
    ensure!(vnet.ars.len() == 2, "{} address ranges, not 2", vnet.ars.len());
    let fips = sb.emu()?.state()["flexible_ips"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut lines = vec![format!(
        "network {} {} (VN_MAD {}, bridge {})",
        vnet.id, vnet.name, vnet.vn_mad, vnet.bridge
    )];
    for ar in &vnet.ars {
        let get = |k: &str| ar.attrs.get(k).cloned().unwrap_or_default();
        let fip = fips
            .iter()
            .find(|f| f["id"] == get("SCALEWAY_IP_ID").as_str())
            .with_context(|| format!("range {}'s flexible IP is not at Scaleway", ar.id))?;
        ensure!(
            fip["ip_address"] == get("EXTERNAL_IP").as_str(),
            "range {}: {fip}",
            ar.id
        );
        lines.push(format!(
            "range {}: flexible IP {} ({}), VM address {}/31 gateway {}",
            ar.id,
            get("EXTERNAL_IP"),
            fip["status"].as_str().unwrap_or("?"),
            get("IP"),
            get("GATEWAY")
        ));
    }
    Ok(lines.join("\n"))
}

/// The internet's client reaches VM `i` on its flexible IP.
pub fn inbound(sb: &Sandbox, i: usize) -> anyhow::Result<String> {
    let vm = sb.vms.get(i).context("no such VM")?;
    let fip = vm.spec.public.external_ip;
    let a = ask(
        &sb.inet(),
        SocketAddr::new(fip.into(), PORT),
        0,
        Duration::from_secs(20),
    )?;
    ensure!(
        a.name == vm.spec.name,
        "{fip} reached {} instead of {}",
        a.name,
        vm.spec.name
    );
    ensure!(
        a.source == IpAddr::V4(CLIENT_V4),
        "{} saw the connection from {}",
        a.name,
        a.source
    );
    Ok(format!(
        "192.0.2.1 -> {fip}:{PORT}: answered by {} on {} (it saw 192.0.2.1) in {:.2}s",
        a.name,
        sb.host(vm.host)?.name,
        a.took.as_secs_f64()
    ))
}

/// VM `i` reaches the internet's client, seen with its flexible IP.
pub fn outbound(sb: &Sandbox, i: usize) -> anyhow::Result<String> {
    let vm = sb.vms.get(i).context("no such VM")?;
    let a = ask(
        &vm.ns,
        SocketAddr::new(CLIENT_V4.into(), PORT),
        0,
        Duration::from_secs(20),
    )?;
    let fip = vm.spec.public.external_ip;
    ensure!(
        a.source == IpAddr::V4(fip),
        "192.0.2.1 saw {} from {}, not from its flexible IP {fip}",
        vm.spec.name,
        a.source
    );
    Ok(format!(
        "{} ({}) -> 192.0.2.1:{PORT}: seen from {} in {:.2}s",
        vm.spec.name,
        vm.spec.public.ip,
        a.source,
        a.took.as_secs_f64()
    ))
}

/// VM `from` reaches VM `to` on the private network (256 KiB sent).
pub fn private(sb: &Sandbox, from: usize, to: usize) -> anyhow::Result<String> {
    let (f, t) = (
        sb.vms.get(from).context("no such VM")?,
        sb.vms.get(to).context("no such VM")?,
    );
    let dst = SocketAddr::new(t.spec.private.ip.into(), PORT);
    let a = ask(&f.ns, dst, PRIVATE_PAYLOAD, Duration::from_secs(45))?;
    ensure!(
        a.name == t.spec.name,
        "{dst} reached {} instead of {}",
        a.name,
        t.spec.name
    );
    ensure!(a.source == IpAddr::V4(f.spec.private.ip), "{} saw {}", a.name, a.source);
    ensure!(
        a.bytes == PRIVATE_PAYLOAD,
        "{} of {PRIVATE_PAYLOAD} bytes arrived",
        a.bytes
    );
    let same = f.host == t.host;
    Ok(format!(
        "{} ({}, {}) -> {} ({}, {}): {} KiB in {:.2}s{}",
        f.spec.name,
        f.spec.private.ip,
        sb.host(f.host)?.name,
        t.spec.name,
        t.spec.private.ip,
        sb.host(t.host)?.name,
        a.bytes / 1024,
        a.took.as_secs_f64(),
        if same {
            " (same host: through the bridge)"
        } else {
            " (across hosts: VXLAN, EVPN)"
        }
    ))
}

/// The internet routes each VM's flexible IP to its host's server.
pub fn fip_routes(sb: &Sandbox) -> anyhow::Result<String> {
    let report = sb.emu()?.network().context("no network report")?;
    let routes = report["flexible_ips"].as_array().cloned().unwrap_or_default();
    let mut lines = Vec::new();
    for vm in &sb.vms {
        let dest = format!("{}/32", vm.spec.public.external_ip);
        let host = sb.host(vm.host)?;
        let r = routes
            .iter()
            .find(|r| r["destination"] == dest.as_str())
            .with_context(|| format!("the internet has no route to {dest}"))?;
        ensure!(
            r["server_id"] == host.server_id.as_str(),
            "{dest} is routed to server {}, not {}'s",
            r["server_id"],
            host.name
        );
        lines.push(format!(
            "{dest} via {} ({})",
            r["via"].as_str().unwrap_or("?"),
            host.name
        ));
    }
    Ok(lines.join("\n"))
}

/// A host's link names.
pub fn links(sb: &Sandbox, h: &HostInfo) -> anyhow::Result<Vec<String>> {
    let out = crate::ctl::ip(&sb.ctl, &["-n", &h.namespace, "-o", "link", "show"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect())
}

/// Nothing of VM `vm_id` (`addresses`) is left on host `h`.
pub fn nothing_of(sb: &Sandbox, h: &HostInfo, vm_id: Option<u64>, addresses: &[String]) -> anyhow::Result<String> {
    let names = links(sb, h)?;
    let mut left: Vec<String> = names
        .iter()
        .filter(|n| {
            vm_id.is_some_and(|id| n.starts_with(&format!("one-{id}-")))
                || (vm_id.is_none() && (n.starts_with("one-") || *n == "scwpub0" || n.starts_with("onebr")))
        })
        .cloned()
        .collect();
    let ruleset = sb.on_host(h, "nft", &["list", "ruleset"], b"")?.stdout;
    left.extend(
        addresses
            .iter()
            .filter(|a| ruleset.contains(a.as_str()))
            .map(|a| format!("nft: {a}")),
    );
    ensure!(left.is_empty(), "{} still has: {}", h.name, left.join(", "));
    Ok(format!("{}: links {}", h.name, names.join(" ")))
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
    rep.step("start the oned stand-in", false, || Ok(((), sb.start_oned()?)))?;
    let inet = sb.inet();
    sb.inet_service = Some(rep.step("the internet's client 192.0.2.1 listens", false, || {
        Ok((
            Service::start(&inet, "internet", SocketAddr::new(CLIENT_V4.into(), PORT))?,
            String::new(),
        ))
    })?);

    rep.part("1. provision a 2-host edge cluster with 2 public IPs");
    rep.step(
        "scaleway-provision create (installed binary, hosts over the ssh alias)",
        false,
        || {
            let key = sb.paths.key.display().to_string();
            let vnm = sb
                .paths
                .remotes
                .join("vnm/scaleway_evpn/scaleway-vnm")
                .display()
                .to_string();
            let file = sb.paths.description.display().to_string();
            let args = [
                "create",
                &file,
                "--ssh-user",
                "root",
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
            Ok(((), ran.stdout.trim().to_owned()))
        },
    )?;
    rep.step("hosts: emulated servers with FRR, registered in oned", true, || {
        Ok(((), discover(sb)?))
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

    rep.part("2. networks");
    rep.step(
        "public network: the IPAM driver registered the flexible IPs",
        true,
        || Ok(((), public_ranges(sb)?)),
    )?;
    rep.step(
        &format!("private network from the provision's template (VLAN_ID {VNI})"),
        false,
        || Ok(((), sb.allocate_private_network()?)),
    )?;

    rep.part("3. deploy VMs (a public and a private NIC each)");
    let public_ars: Vec<i64> = sb
        .oned()?
        .vnets()
        .into_iter()
        .find(|v| v.id == sb.cluster.public_vnet)
        .map(|v| v.ars.iter().map(|a| a.id).collect())
        .unwrap_or_default();
    for (i, ar) in public_ars.iter().take(2).enumerate() {
        let host_name = sb.host(i)?.name.clone();
        let id = i as u64 + 1;
        rep.step(&format!("deploy vm{id} on {host_name}"), false, || {
            Ok(((), sb.deploy(id, i, *ar)?))
        })?;
    }
    ensure!(sb.vms.len() == 2, "2 VMs were not deployed");
    rep.step(
        "the host drivers ran as oneadmin (through sudo, with the shipped rules)",
        true,
        || Ok(((), drivers_as_oneadmin(sb)?)),
    )?;

    rep.part("4. real packets");
    for i in 0..2 {
        let n = i + 1;
        rep.step(&format!("the internet reaches vm{n} on its flexible IP"), true, || {
            Ok(((), inbound(sb, i)?))
        })?;
        rep.step(
            &format!("vm{n} reaches the internet from its flexible IP"),
            true,
            || Ok(((), outbound(sb, i)?)),
        )?;
    }
    rep.step("vm1 -> vm2 on the private network (VXLAN/EVPN)", true, || {
        Ok(((), private(sb, 0, 1)?))
    })?;
    rep.step("vm2 -> vm1 on the private network (VXLAN/EVPN)", true, || {
        Ok(((), private(sb, 1, 0)?))
    })?;
    rep.step("Scaleway routes each flexible IP to its VM's server", true, || {
        Ok(((), fip_routes(sb)?))
    })?;

    rep.part("5. live migration of vm1");
    let (h1, h2) = (sb.host(0)?.name.clone(), sb.host(1)?.name.clone());
    rep.step(&format!("live-migrate vm1 from {h1} to {h2}"), false, || {
        Ok(((), sb.migrate(0, 1)?))
    })?;
    rep.step(
        "the internet reaches vm1 on its flexible IP, on its new host",
        true,
        || Ok(((), format!("{}\n{}", inbound(sb, 0)?, fip_routes(sb)?))),
    )?;
    rep.step(
        "vm1 reaches the internet from its flexible IP, from its new host",
        true,
        || Ok(((), outbound(sb, 0)?)),
    )?;
    rep.step("vm1 <-> vm2 on the private network", true, || {
        Ok(((), format!("{}\n{}", private(sb, 0, 1)?, private(sb, 1, 0)?)))
    })?;
    rep.step(&format!("{h1} keeps nothing of vm1"), true, || {
        let vm = sb.vms.first().context("no vm1")?;
        let addresses = vec![vm.spec.public.external_ip.to_string(), vm.spec.public.ip.to_string()];
        let h = sb.host(0)?.clone();
        Ok(((), nothing_of(sb, &h, Some(vm.spec.id), &addresses)?))
    })?;
    if sb.opts.keep {
        keep(sb, rep)?;
    }
    Ok(())
}

/// `--keep`: the sandbox stays up until Ctrl-C, with commands to look around.
fn keep(sb: &Sandbox, rep: &Report) -> anyhow::Result<()> {
    let p = &sb.opts.prefix;
    let emu = sb.emu()?.url();
    let bin = sb.paths.emulator.display();
    let h = sb.host(1)?;
    let vm1 = sb.vms.first().ok_or_else(|| anyhow!("no vm1"))?;
    rep.part("--keep: the sandbox is up; look around (as root, from another terminal)");
    for line in [
        format!("ip netns list | grep '^{p}-'                      # the hosts, VMs, private network, internet"),
        format!(
            "ip netns exec {p}-vm1 ip addr; ip netns exec {p}-vm1 ip route    # vm1 (now on {})",
            h.name
        ),
        format!("ip netns exec {p}-inet ip route                       # the internet: flexible IPs -> servers"),
        format!("{bin} exec --prefix {p} {} -- nft list ruleset", h.public_ip),
        format!("{bin} exec --prefix {p} {} -- ip -d link show", h.public_ip),
        format!(
            "{bin} exec --prefix {p} {} -- vtysh -c 'show bgp l2vpn evpn'",
            h.public_ip
        ),
        format!("curl -s {emu}/_emulator/state          # every Scaleway resource"),
        format!("curl -s {emu}/_emulator/network        # namespaces and routes"),
        format!(
            "vm1: public {} = flexible IP {}, private {}",
            vm1.spec.public.ip, vm1.spec.public.external_ip, vm1.spec.private.ip
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
