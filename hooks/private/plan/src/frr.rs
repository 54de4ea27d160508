//! The FRR configuration of a host, rendered from the cluster description
//! and what the host says (pure).
//!
//! Every host is in one iBGP AS and carries only the `l2vpn evpn` address
//! family. The first `REFLECTORS` hosts are route reflectors: they peer
//! with every other host (the other reflectors as plain iBGP peers, the
//! rest as their clients); a client peers with the reflectors only. Peers
//! are listed one by one (no `bgp listen range`: a neighbour that is not in
//! the description is never accepted), all on the underlay network, with
//! fast timers so a lost peer is noticed in seconds and a refused first
//! connection is retried after 5 s (whatever FRR's defaults profile).
//!
//! Under `address-family l2vpn evpn`, `advertise-all-vni` announces the
//! VNIs of the host's VXLAN devices, and each VNI is listed again with
//! `vni N`: FRR 10.6 no longer detects them otherwise (OpenNebula issue
//! 7589).
//!
//! The file is the whole FRR configuration of the host and is applied with
//! `frr-reload.py`, which turns the running configuration into this one
//! line by line (`evpn-config`, `reconcile`); when only the host's VNIs
//! change (`pre`, `clean`), [`vni_commands`] changes those lines in place. Two lines are there to keep it from changing what it
//! should not:
//!
//! - `hostname`: FRR uses the OS hostname whatever its configuration says,
//!   so the rendered name is the OS hostname, and reloads never try to
//!   change it (FRRouting/frr#7583);
//! - `no ip forwarding` / `no ipv6 forwarding`: FRR shows them when
//!   forwarding is off, and `frr-reload.py` would turn forwarding *on* to
//!   match a file without them. They are rendered exactly when forwarding
//!   is off, so reloads leave the host's forwarding as it is.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::Ipv4Addr;

use crate::cluster::{Cluster, ClusterError, Role};
use crate::net::Vni;

/// The peer group of the route reflectors.
pub const REFLECTORS_GROUP: &str = "reflectors";
/// The peer group of a reflector's clients.
pub const CLIENTS_GROUP: &str = "clients";
/// BGP keepalive and hold time (seconds).
pub const TIMERS: (u32, u32) = (3, 9);
/// Seconds before a refused or failed connection is tried again.
pub const CONNECT_RETRY: u32 = 5;
/// Milliseconds bgpd waits to group a new peer's first updates (FRR's
/// default is 1000): a host joining the cluster gets the routes sooner.
pub const COALESCE_MS: u32 = 100;

/// What the host says, for its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrrHost {
    /// This host's underlay address: router id, update source.
    pub local: Ipv4Addr,
    /// The OS hostname.
    pub hostname: String,
    /// `net.ipv4.ip_forward`.
    pub ip_forwarding: bool,
    /// `net.ipv6.conf.all.forwarding`.
    pub ipv6_forwarding: bool,
    /// The VNIs to list explicitly.
    pub vnis: BTreeSet<Vni>,
}

/// A hostname FRR accepts on a `hostname` line (one word).
fn check_hostname(name: &str) -> Result<(), ClusterError> {
    let ok =
        !name.is_empty() && name.len() <= 253 && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ClusterError(format!(
            "the host's name {name:?} cannot be written in an FRR configuration (letters, digits, '-', '_' and '.')"
        )))
    }
}

fn group(out: &mut String, name: &str, asn: u32, local: Ipv4Addr) {
    let _ = writeln!(out, " neighbor {name} peer-group");
    let _ = writeln!(out, " neighbor {name} remote-as {asn}");
    let _ = writeln!(out, " neighbor {name} update-source {local}");
    let _ = writeln!(out, " neighbor {name} timers {} {}", TIMERS.0, TIMERS.1);
    let _ = writeln!(out, " neighbor {name} timers connect {CONNECT_RETRY}");
}

/// The host's FRR configuration (`frr.conf`, integrated).
pub fn render(cluster: &Cluster, host: &FrrHost) -> Result<String, ClusterError> {
    cluster.validate()?;
    check_hostname(&host.hostname)?;
    let local = host.local;
    let Some(role) = cluster.role_of(local) else {
        return Err(ClusterError(format!(
            "this host's underlay address {local} is not one of HOSTS"
        )));
    };
    let reflectors: Vec<Ipv4Addr> = cluster
        .reflector_addresses()
        .iter()
        .copied()
        .filter(|r| *r != local)
        .collect();
    let clients: Vec<Ipv4Addr> = match role {
        Role::Reflector => cluster
            .hosts
            .iter()
            .copied()
            .filter(|h| cluster.role_of(*h) == Some(Role::Client))
            .collect(),
        Role::Client => Vec::new(),
    };
    let all = cluster
        .reflector_addresses()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let what = match role {
        Role::Reflector => format!("a route reflector (the reflectors: {all})"),
        Role::Client => format!("a client of the route reflectors {all}"),
    };
    let mut out = String::new();
    let _ = writeln!(out, "! FRR configuration of {local}, {what},");
    let _ = writeln!(
        out,
        "! in the BGP-EVPN of the edge cluster AS {} on underlay {} ({} hosts).",
        cluster.asn,
        cluster.underlay,
        cluster.hosts.len()
    );
    let _ = writeln!(
        out,
        "! Written by `scaleway-vnm evpn-config` (one-scaleway) and applied with frr-reload.py: change the"
    );
    let _ = writeln!(
        out,
        "! cluster description and run it again rather than editing this file."
    );
    out.push_str("!\n");
    let _ = writeln!(out, "hostname {}", host.hostname);
    if !host.ip_forwarding {
        out.push_str("no ip forwarding\n");
    }
    if !host.ipv6_forwarding {
        out.push_str("no ipv6 forwarding\n");
    }
    out.push_str("service integrated-vtysh-config\n!\n");
    let _ = writeln!(out, "router bgp {}", cluster.asn);
    let _ = writeln!(out, " bgp router-id {local}");
    out.push_str(" no bgp default ipv4-unicast\n");
    let _ = writeln!(out, " coalesce-time {COALESCE_MS}");
    if role == Role::Reflector {
        let _ = writeln!(out, " bgp cluster-id {local}");
    }
    if !reflectors.is_empty() {
        group(&mut out, REFLECTORS_GROUP, cluster.asn, local);
    }
    if !clients.is_empty() {
        group(&mut out, CLIENTS_GROUP, cluster.asn, local);
    }
    for r in &reflectors {
        let _ = writeln!(out, " neighbor {r} peer-group {REFLECTORS_GROUP}");
    }
    for c in &clients {
        let _ = writeln!(out, " neighbor {c} peer-group {CLIENTS_GROUP}");
    }
    out.push_str(" !\n address-family l2vpn evpn\n");
    if !reflectors.is_empty() {
        let _ = writeln!(out, "  neighbor {REFLECTORS_GROUP} activate");
    }
    if !clients.is_empty() {
        let _ = writeln!(out, "  neighbor {CLIENTS_GROUP} activate");
        let _ = writeln!(out, "  neighbor {CLIENTS_GROUP} route-reflector-client");
    }
    out.push_str("  advertise-all-vni\n");
    for vni in &host.vnis {
        let _ = writeln!(out, "  vni {vni}\n  exit-vni");
    }
    out.push_str(" exit-address-family\nexit\n!\n");
    Ok(out)
}

/// The `vtysh` arguments that add VNIs to, and remove them from, the
/// running configuration of `router bgp asn`, as the file [`render`]s them
/// (`vni N` / `exit-vni` under `address-family l2vpn evpn`): what `pre`
/// and `clean` change when only the host's VNIs change, without
/// `frr-reload.py` (which diffs the whole configuration). A line FRR
/// refuses is printed with `%` and fails the change.
pub fn vni_commands(asn: u32, add: &BTreeSet<Vni>, remove: &BTreeSet<Vni>) -> Vec<String> {
    // bgpd alone: the VNI lines are its. No `write memory` (frr-reload.py
    // writes FRR's own frr.conf after a reload): measured here, it holds
    // the new VNI's routes back about a second. FRR's frr.conf is written
    // by the full reloads (evpn-config, reconcile), and the reconcile unit
    // runs again whenever FRR restarts, so a restarted FRR gets the VNIs back.
    let mut words: Vec<String> = vec!["-d".into(), "bgpd".into()];
    let mut c = |line: String| {
        words.push("-c".into());
        words.push(line);
    };
    c("configure terminal".into());
    c(format!("router bgp {asn}"));
    c("address-family l2vpn evpn".into());
    for vni in add {
        c(format!("vni {vni}"));
        c("exit-vni".into());
    }
    for vni in remove.difference(add) {
        c(format!("no vni {vni}"));
    }
    c("end".into());
    words
}

/// Whether `vtysh`'s output says a line was refused.
pub fn vtysh_refused(stdout: &str, stderr: &str) -> Option<String> {
    let refused: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .map(str::trim)
        .filter(|l| l.starts_with('%'))
        .collect();
    (!refused.is_empty()).then(|| refused.join(" / "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vni_changes_are_the_lines_of_the_file() {
        let vnis = |v: &[u32]| v.iter().map(|n| Vni::try_from(*n).unwrap()).collect::<BTreeSet<_>>();
        let words = vni_commands(65000, &vnis(&[1000002, 7]), &vnis(&[1000001]));
        assert_eq!(words[..2], ["-d", "bgpd"]);
        let lines: Vec<&str> = words.iter().skip(3).step_by(2).map(String::as_str).collect();
        assert!(words.iter().skip(2).step_by(2).all(|w| w == "-c"));
        assert_eq!(
            lines,
            [
                "configure terminal",
                "router bgp 65000",
                "address-family l2vpn evpn",
                "vni 7",
                "exit-vni",
                "vni 1000002",
                "exit-vni",
                "no vni 1000001",
                "end"
            ]
        );
        // What render writes for the same VNIs.
        let c = Cluster::parse("AS = 65000\nUNDERLAY = 10.0.0.0/24\nHOSTS = 10.0.0.2").unwrap();
        let mut h = host("10.0.0.2");
        h.vnis = vnis(&[7, 1000002]);
        let text = render(&c, &h).unwrap();
        assert!(
            text.contains("  vni 7\n  exit-vni\n  vni 1000002\n  exit-vni\n"),
            "{text}"
        );
        assert_eq!(
            vtysh_refused("ok\n% Unknown command: vni x\n", ""),
            Some("% Unknown command: vni x".into())
        );
        assert_eq!(vtysh_refused("", ""), None);
    }

    fn host(local: &str) -> FrrHost {
        FrrHost {
            local: local.parse().unwrap(),
            hostname: "edge-host".into(),
            ip_forwarding: true,
            ipv6_forwarding: false,
            vnis: BTreeSet::new(),
        }
    }

    #[test]
    fn refuses_what_it_cannot_render() {
        let c = Cluster::parse("AS = 65000\nUNDERLAY = 10.0.0.0/24\nHOSTS = \"10.0.0.2 10.0.0.3\"").unwrap();
        let e = render(&c, &host("10.0.0.9")).unwrap_err().to_string();
        assert!(e.contains("10.0.0.9 is not one of HOSTS"), "{e}");
        let mut h = host("10.0.0.2");
        h.hostname = "bad name".into();
        assert!(render(&c, &h).unwrap_err().to_string().contains("\"bad name\""));
    }

    #[test]
    fn a_single_host_has_no_peer() {
        let c = Cluster::parse("AS = 65000\nUNDERLAY = 10.0.0.0/24\nHOSTS = 10.0.0.2").unwrap();
        let text = render(&c, &host("10.0.0.2")).unwrap();
        assert!(!text.contains("neighbor"), "{text}");
        assert!(text.contains("  advertise-all-vni\n"), "{text}");
    }
}
