//! A hostile VM beside another on one host, with real packets from inside
//! its namespace (what a guest's root can do): it sends with its
//! neighbour's address, announces its neighbour's address and gateway as
//! its own (gratuitous ARP), and takes its neighbour's MAC. Each attempt
//! must fail, and the neighbour's traffic must stay intact. The thief is
//! put back as it was afterwards.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use scaleway_emulator::network::CLIENT_V4;
use serde_json::Value;

use crate::checks::{inbound, outbound};
use crate::netns::in_ns;
use crate::sandbox::Sandbox;

/// The port the internet's client listens on for the spoofed datagrams.
const UDP_PORT: u16 = 8099;

fn ip_json(sb: &Sandbox, ns: &str, args: &[&str]) -> anyhow::Result<Value> {
    let mut all = vec!["-n", ns, "-j"];
    all.extend_from_slice(args);
    let out = sb
        .ctl
        .run_ok(Command::new("ip").args(&all), b"", Duration::from_secs(30))?;
    serde_json::from_str(&out).with_context(|| format!("ip {all:?} printed {out:?}"))
}

fn ip(sb: &Sandbox, ns: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    sb.ctl
        .run_ok(Command::new("ip").args(&all), b"", Duration::from_secs(30))?;
    Ok(())
}

/// The VM's interface holding `addr`, and its MAC.
fn interface_of(sb: &Sandbox, ns: &str, addr: Ipv4Addr) -> anyhow::Result<(String, String)> {
    let links = ip_json(sb, ns, &["addr", "show"])?;
    for l in links.as_array().into_iter().flatten() {
        let has = l.get("addr_info").and_then(Value::as_array).is_some_and(|a| {
            a.iter()
                .any(|x| x.get("local").and_then(Value::as_str) == Some(&addr.to_string()))
        });
        if has {
            let name = l.get("ifname").and_then(Value::as_str).context("no ifname")?;
            let mac = l.get("address").and_then(Value::as_str).context("no MAC")?;
            return Ok((name.to_owned(), mac.to_owned()));
        }
    }
    bail!("no interface of {ns} holds {addr}")
}

/// The MAC `ns` holds for `addr` (and whether the entry is permanent).
fn neighbour(sb: &Sandbox, ns: &str, addr: Ipv4Addr) -> anyhow::Result<Option<(String, bool)>> {
    let v = ip_json(sb, ns, &["neigh", "show", &addr.to_string()])?;
    Ok(v.as_array().and_then(|a| a.first()).and_then(|n| {
        let mac = n.get("lladdr")?.as_str()?.to_owned();
        let permanent = n
            .get("state")
            .and_then(Value::as_array)
            .is_some_and(|s| s.iter().any(|x| x.as_str() == Some("PERMANENT")));
        Some((mac, permanent))
    }))
}

/// One datagram from `from` in `ns` to the internet's client: the source
/// it saw, if anything arrived.
fn datagram(sb: &Sandbox, ns: &str, from: Ipv4Addr) -> anyhow::Result<Option<IpAddr>> {
    let to = SocketAddr::new(CLIENT_V4.into(), UDP_PORT);
    let listener = in_ns(&sb.inet(), move || Ok(UdpSocket::bind(to)?))?;
    listener.set_read_timeout(Some(Duration::from_millis(1500)))?;
    in_ns(ns, move || {
        let s = UdpSocket::bind(SocketAddr::new(from.into(), 0)).with_context(|| format!("bind {from}"))?;
        for _ in 0..3 {
            let _ = s.send_to(b"one-scaleway: a hostile VM", to);
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    })?;
    let mut buf = [0u8; 64];
    Ok(listener.recv_from(&mut buf).ok().map(|(_, peer)| peer.ip()))
}

/// Announces the thief's addresses from `mac` (with `arp_notify`, a MAC
/// change sends a gratuitous ARP for every address of the interface).
fn announce(sb: &Sandbox, ns: &str, dev: &str, mac: &str) -> anyhow::Result<()> {
    let path = format!("/proc/sys/net/ipv4/conf/{dev}/arp_notify");
    in_ns(ns, move || Ok(std::fs::write(&path, "1\n")?))?;
    ip(sb, ns, &["link", "set", dev, "address", "02:00:00:00:ff:ff"])?;
    ip(sb, ns, &["link", "set", dev, "address", mac])?;
    std::thread::sleep(Duration::from_millis(300));
    Ok(())
}

/// VM `thief` attacks VM `victim` (both on one host).
pub fn attempt(sb: &Sandbox, thief: usize, victim: usize) -> anyhow::Result<String> {
    let (t, v) = (
        sb.vms.get(thief).context("no thief VM")?,
        sb.vms.get(victim).context("no victim VM")?,
    );
    ensure!(t.host == v.host, "{} and {} are not on one host", t.name, v.name);
    let host = sb.host(v.host)?;
    let (tdev, tmac) = interface_of(sb, &t.ns, t.public_ip)?;
    let (vdev, vmac) = interface_of(sb, &v.ns, v.public_ip)?;
    let gateway = Ipv4Addr::from(u32::from(v.public_ip) ^ 1);
    let bridge = ip_json(sb, &host.namespace, &["link", "show", "dev", "scwpub0"])?;
    let bridge_mac = bridge
        .get(0)
        .and_then(|l| l.get("address"))
        .and_then(Value::as_str)
        .context("the host has no scwpub0")?
        .to_owned();
    let victim_ok = |what: &str| -> anyhow::Result<()> {
        let gw = neighbour(sb, &v.ns, gateway)?;
        ensure!(
            gw.as_ref().is_none_or(|(mac, _)| *mac == bridge_mac),
            "after {what}: {}'s entry for its gateway {gateway} is {gw:?}, not the host's {bridge_mac}",
            v.name
        );
        let entry = neighbour(sb, &host.namespace, v.public_ip)?;
        ensure!(
            entry == Some((vmac.clone(), true)),
            "after {what}: the host's entry for {} is {entry:?}, not {}'s MAC {vmac} (permanent)",
            v.public_ip,
            v.name
        );
        inbound(sb, victim).with_context(|| format!("after {what}: {}'s inbound traffic", v.name))?;
        Ok(())
    };
    let mut lines = Vec::new();

    // 1. The victim's address as source (the SNAT map would make it the
    // victim's flexible IP).
    ip(
        sb,
        &t.ns,
        &["addr", "add", &format!("{}/32", v.public_ip), "dev", &tdev, "nodad"],
    )?;
    let seen = datagram(sb, &t.ns, v.public_ip)?;
    ensure!(
        seen.is_none(),
        "{} sent as {}: the internet saw {seen:?}",
        t.name,
        v.public_ip
    );
    lines.push(format!(
        "{} -> 192.0.2.1 from {}'s address {}: nothing arrived",
        t.name, v.name, v.public_ip
    ));
    // 2. Gratuitous ARP for the victim's address and its gateway.
    ip(
        sb,
        &t.ns,
        &["addr", "add", &format!("{gateway}/32"), "dev", &tdev, "nodad"],
    )?;
    announce(sb, &t.ns, &tdev, &tmac)?;
    victim_ok("gratuitous ARP for its address and gateway")?;
    lines.push(format!(
        "{} announced {} and {gateway} (gratuitous ARP): {} still resolves its gateway to the host, the host \
         {} to {}'s MAC (permanent), the internet still reaches {}",
        t.name, v.public_ip, v.name, v.public_ip, v.name, v.name
    ));
    // 3. The victim's MAC.
    announce(sb, &t.ns, &tdev, &vmac)?;
    let _ = datagram(sb, &t.ns, t.public_ip)?;
    let learned = sb
        .ctl
        .run_ok(
            Command::new("bridge").args(["-n", &host.namespace, "-j", "fdb", "show", "br", "scwpub0"]),
            b"",
            Duration::from_secs(30),
        )
        .context("bridge fdb show")?;
    let entries: Value = serde_json::from_str(&learned).context("bridge -j fdb show")?;
    let port_of = |mac: &str| -> Option<String> {
        entries.as_array().into_iter().flatten().find_map(|e| {
            (e.get("mac").and_then(Value::as_str) == Some(mac) && e.get("vlan").is_none())
                .then(|| e.get("ifname").and_then(Value::as_str).map(str::to_owned))
                .flatten()
        })
    };
    let (port, thief_port) = (port_of(&vmac), port_of(&tmac));
    ensure!(
        port.is_none() || port != thief_port,
        "the bridge learned {}'s MAC {vmac} on {}'s port {port:?}",
        v.name,
        t.name
    );
    victim_ok("the thief took its MAC")?;
    lines.push(format!(
        "{} took {}'s MAC {vmac} ({vdev}): the bridge has it on {}, the internet still reaches {}",
        t.name,
        v.name,
        port.as_deref().unwrap_or("no port"),
        v.name
    ));
    // The thief as it was.
    announce(sb, &t.ns, &tdev, &tmac)?;
    for a in [v.public_ip, gateway] {
        ip(sb, &t.ns, &["addr", "del", &format!("{a}/32"), "dev", &tdev])?;
    }
    outbound(sb, thief).with_context(|| format!("{} put back", t.name))?;
    Ok(lines.join("\n"))
}
