//! The sandbox's checks: what each step must have made, seen from the
//! hosts (through the emulator's ssh alias), oned, the emulator, and real
//! packets between namespaces.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use scaleway_emulator::network::CLIENT_V4;
use serde_json::Value;

use crate::netns::{PORT, ask};
use crate::sandbox::{HostInfo, NAME, Sandbox};
use crate::vms::value;

/// Where `onehost sync` puts the drivers on a host.
pub const REMOTE_DIR: &str = "/var/tmp/one";

/// The sudoers rules the bootstrap installs on every host.
const SHIPPED_SUDOERS: &str = include_str!("../../../share/host/sudoers-one-scaleway");

/// What crosses the private network in a check (full-size frames: the
/// VMs' MTU must fit VXLAN on the underlay).
const PRIVATE_PAYLOAD: usize = 256 * 1024;

/// Objects with `"state": "Established"` anywhere in FRR's JSON.
pub fn established(v: &Value) -> usize {
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

pub fn bgp_sessions(sb: &Sandbox) -> anyhow::Result<String> {
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
pub fn bootstrap_files(sb: &Sandbox) -> anyhow::Result<String> {
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
            allowed.ok() && allowed.stdout.contains(ROOT_HELPER),
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

/// The drivers' root helper on every host, as shipped.
pub const ROOT_HELPER: &str = "/usr/local/libexec/one-scaleway/scaleway-vnm";

/// What oneadmin may not do on a host with the rules as shipped: each is
/// refused, by sudo or by the root helper, and changes nothing.
pub fn least_privilege(sb: &Sandbox) -> anyhow::Result<String> {
    let h = sb.cluster.hosts.first().context("no host")?;
    // (Sorted: reconcile replaces the evpn firewall table, which lists it last.)
    let tables = || -> anyhow::Result<Vec<String>> {
        let mut t: Vec<String> = sb
            .on_host(h, "nft", &["list", "tables"], b"")?
            .stdout
            .lines()
            .map(str::to_owned)
            .collect();
        t.sort();
        Ok(t)
    };
    let before = tables()?;
    let mut lines = Vec::new();
    // sudo itself: nothing but the helper, with its one argument.
    for argv in [
        &["ip", "netns", "exec", "x", "sh"][..],
        &["ip", "-batch", "-"],
        &["nft", "flush", "ruleset"],
        &["nft", "-f", "/etc/hostname"],
        &["sysctl", "-w", "kernel.domainname=one-scaleway"],
        &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
        &["sh", "-c", "id"],
        &[ROOT_HELPER, "--driver", "scaleway", "reconcile"],
        &[ROOT_HELPER, "root", "extra"],
    ] {
        let mut args = vec!["-n"];
        args.extend_from_slice(argv);
        let ran = sb.on_host_as("oneadmin", h, "sudo", &args, b"")?;
        ensure!(!ran.ok(), "oneadmin may run `sudo {}` on {}", args.join(" "), h.name);
        lines.push(format!("sudo {}: refused by sudo", args.join(" ")));
    }
    // The helper: only the drivers' typed changes, on the drivers' devices
    // (each refused for the reason given: a refusal for another reason,
    // such as a request of an older shape, would prove nothing).
    let apply = |ip_after: &str, sysctls: &str, nft: &str| {
        format!(
            r#"{{"scaleway": {{"apply": {{"ip_before": [], "sysctls": {sysctls}, "nft": {nft}, "ip_after": {ip_after}}}}}}}"#
        )
    };
    for (request, what, why) in [
        (
            apply(r#"[{"delete_link": "scwpriv0"}]"#, "[]", "[]"),
            "deleting the private network's interface",
            "scwpriv0 is not a bridge",
        ),
        (
            apply(
                r#"[{"delete_route": {"dst": "0.0.0.0", "len": 0, "via": null, "dev": "scwpriv0"}}]"#,
                "[]",
                "[]",
            ),
            "deleting the default route",
            "the driver routes only /32, /64 and /128",
        ),
        (
            apply("[]", r#"[{"key": "kernel/core_pattern", "value": "1"}]"#, "[]"),
            "a sysctl outside the driver's",
            "not a request of the drivers",
        ),
        (
            apply("[]", "[]", r#"{"script": "flush ruleset"}"#),
            "an nft script",
            "not a request of the drivers",
        ),
        (
            r#"{"scaleway_evpn": {"links": {"ops": [{"delete": "lo"}], "keep_going": false}}}"#.to_owned(),
            "deleting lo",
            "lo is not a bridge or a VXLAN device",
        ),
        (
            r#"{"scaleway_evpn": {"frr_check": {"path": "/etc/shadow"}}}"#.to_owned(),
            "reading a file",
            "not a request of the drivers",
        ),
        (
            "ip netns exec x sh".to_owned(),
            "a command line",
            "not a request of the drivers",
        ),
    ] {
        let ran = sb.on_host_as("oneadmin", h, "sudo", &["-n", ROOT_HELPER, "root"], request.as_bytes())?;
        ensure!(
            !ran.ok() && ran.stderr.contains("scaleway-vnm root: refused: ") && ran.stderr.contains(why),
            "the root helper on {} did not refuse {what} ({request}) for its reason ({why}): {}",
            h.name,
            ran.complaint()
        );
        lines.push(format!("root helper, {what}: {}", ran.stderr.trim()));
    }
    // The helper is root's: oneadmin cannot change it.
    let writable = sb.on_host_as("oneadmin", h, "test", &["-w", ROOT_HELPER], b"")?;
    ensure!(!writable.ok(), "oneadmin may write {ROOT_HELPER} on {}", h.name);
    let owner = sb.on_host(
        h,
        "stat",
        &["-c", "%U %a", ROOT_HELPER, "/usr/local/libexec/one-scaleway"],
        b"",
    )?;
    ensure!(
        owner.stdout.lines().all(|l| l == "root 755"),
        "{}: the root helper or its folder is not root's (0755): {}",
        h.name,
        owner.stdout
    );
    // Every host action the driver runs at boot works as oneadmin.
    for driver in ["scaleway", "scaleway_evpn"] {
        let vnm = format!("{REMOTE_DIR}/vnm/{driver}/scaleway-vnm");
        let ran = sb.on_host_as("oneadmin", h, &vnm, &["--driver", driver, "reconcile"], b"")?;
        ensure!(
            ran.ok(),
            "{driver} reconcile as oneadmin on {}: {}",
            h.name,
            ran.complaint()
        );
        lines.push(format!("{driver} reconcile as oneadmin: ok"));
    }
    let after = tables()?;
    ensure!(
        after == before,
        "{}'s nftables tables changed: {before:?} -> {after:?}",
        h.name
    );
    Ok(format!(
        "{}: {}",
        h.name,
        lines.join(
            "
"
        )
    ))
}

/// The host drivers' records (`/var/lib/one/scaleway`) are oneadmin's:
/// they ran as oneadmin, and every privileged command went through sudo.
pub fn drivers_as_oneadmin(sb: &Sandbox) -> anyhow::Result<String> {
    let mut lines = Vec::new();
    for h in &sb.cluster.hosts {
        let files = ["vnm-public/host.json", "vnm-evpn.json"].map(|f| format!("/var/lib/one/scaleway/{f}"));
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

/// Each VM's private NIC made its VNI known to FRR in place, through the
/// root helper (`pre` as oneadmin), never by the fallback full reload.
pub fn frr_in_place(sb: &Sandbox) -> anyhow::Result<String> {
    let mut lines = Vec::new();
    for vm in &sb.vms {
        let path = sb.oned()?.location.join(format!("var/vms/{}/vm.log", vm.id));
        let log = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        ensure!(
            !log.contains("could not be changed in place"),
            "VM {}: FRR's VNIs were reloaded whole:\n{log}",
            vm.id
        );
        let updated = log
            .lines()
            .find(|l| l.contains("FRR updated: VNIs listed"))
            .with_context(|| format!("VM {}: its pre did not list its VNI in FRR:\n{log}", vm.id))?;
        lines.push(format!("VM {}: {}", vm.id, updated.trim()));
    }
    Ok(lines.join("\n"))
}

pub fn public_ranges(sb: &Sandbox) -> anyhow::Result<String> {
    let id = sb.cluster.public_vnet;
    let vnet = sb.show("onevnet", id)?;
    let ars: Vec<_> = vnet
        .at("AR_POOL")
        .map(|p| p.children_named("AR").collect())
        .unwrap_or_default();
    ensure!(ars.len() == 2, "{} address ranges, not 2", ars.len());
    let fips = sb.emu()?.state()["flexible_ips"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut lines = vec![format!(
        "network {id} {} (VN_MAD {}, bridge {})",
        value(&vnet, "NAME"),
        value(&vnet, "VN_MAD"),
        value(&vnet, "BRIDGE")
    )];
    for ar in ars {
        let get = |k: &str| value(ar, k);
        let fip = fips
            .iter()
            .find(|f| f["id"] == get("SCALEWAY_IP_ID").as_str())
            .with_context(|| format!("range {}'s flexible IP is not at Scaleway", get("AR_ID")))?;
        ensure!(
            fip["ip_address"] == get("EXTERNAL_IP").as_str(),
            "range {}: {fip}",
            get("AR_ID")
        );
        lines.push(format!(
            "range {} (IPAM_MAD {}): flexible IP {} ({}), VM address {}/31 gateway {}",
            get("AR_ID"),
            get("IPAM_MAD"),
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
    let fip = vm.external_ip;
    let a = ask(
        &sb.inet(),
        SocketAddr::new(fip.into(), PORT),
        0,
        Duration::from_secs(20),
    )?;
    ensure!(a.name == vm.name, "{fip} reached {} instead of {}", a.name, vm.name);
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
    let fip = vm.external_ip;
    ensure!(
        a.source == IpAddr::V4(fip),
        "192.0.2.1 saw {} from {}, not from its flexible IP {fip}",
        vm.name,
        a.source
    );
    Ok(format!(
        "{} ({}) -> 192.0.2.1:{PORT}: seen from {} in {:.2}s",
        vm.name,
        vm.public_ip,
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
    let dst = SocketAddr::new(t.private_ip.into(), PORT);
    let a = ask(&f.ns, dst, PRIVATE_PAYLOAD, Duration::from_secs(45))?;
    ensure!(a.name == t.name, "{dst} reached {} instead of {}", a.name, t.name);
    ensure!(a.source == IpAddr::V4(f.private_ip), "{} saw {}", a.name, a.source);
    ensure!(
        a.bytes == PRIVATE_PAYLOAD,
        "{} of {PRIVATE_PAYLOAD} bytes arrived",
        a.bytes
    );
    let same = f.host == t.host;
    Ok(format!(
        "{} ({}, {}) -> {} ({}, {}): {} KiB in {:.2}s{}",
        f.name,
        f.private_ip,
        sb.host(f.host)?.name,
        t.name,
        t.private_ip,
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
        let dest = format!("{}/32", vm.external_ip);
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
pub fn nothing_of(sb: &Sandbox, h: &HostInfo, vm_id: Option<u32>, addresses: &[String]) -> anyhow::Result<String> {
    let names = links(sb, h)?;
    let mut left: Vec<String> = names
        .iter()
        .filter(|n| {
            vm_id.is_some_and(|id| n.starts_with(&format!("one-{id}-")))
                || (vm_id.is_none() && (n.starts_with("one-") || *n == "scwpub0" || n.starts_with("onebr")))
        })
        .cloned()
        .collect();
    left.extend(rules_naming(sb, h, addresses)?);
    ensure!(left.is_empty(), "{} still has: {}", h.name, left.join(", "));
    Ok(format!("{}: links {}", h.name, names.join(" ")))
}

/// Which of `addresses` host `h`'s nftables ruleset still names.
pub fn rules_naming(sb: &Sandbox, h: &HostInfo, addresses: &[String]) -> anyhow::Result<Vec<String>> {
    let ruleset = sb.on_host(h, "nft", &["list", "ruleset"], b"")?.stdout;
    Ok(addresses
        .iter()
        .filter(|a| ruleset.contains(a.as_str()))
        .map(|a| format!("nft: {a}"))
        .collect())
}
