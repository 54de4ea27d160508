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
//! line by line. Two lines are there to keep it from changing what it
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

#[cfg(test)]
mod tests {
    use super::*;

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
