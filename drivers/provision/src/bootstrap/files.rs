//! The files a host gets, rendered (pure): the cluster description for
//! `evpn-config`, the host firewall, the private VLAN's netplan file, the
//! sysctls, and the edits of FRR's `daemons` and `/etc/hosts`.

use super::*;

/// The EVPN cluster description every host gets (`evpn-config -`: on stdin).
pub fn evpn_description(cluster: &ClusterFacts) -> String {
    let hosts: Vec<String> = cluster.hosts.iter().map(|h| h.private_ip.to_string()).collect();
    format!(
        "# one-scaleway provision {}: written by scaleway-provision, again whenever a host joins or leaves\n\
         AS              = {EVPN_AS}\nUNDERLAY        = {}\nHOSTS           = \"{}\"\nREFLECTORS      = {}\n\
         UNDERLAY_DEVICE = {PRIVATE_DEVICE}\n",
        cluster.provision,
        cluster.private_cidr,
        hosts.join(" "),
        cluster.hosts.len().min(2),
    )
}

/// The host firewall (one atomic nft batch): SSH from anywhere, BGP, VXLAN,
/// libvirt and migration from the private network, VNC from the frontend.
pub fn firewall(cluster: &ClusterFacts) -> String {
    let mut s = String::from(
        "table inet one_scaleway_host {}\ndelete table inet one_scaleway_host\ntable inet one_scaleway_host {\n  \
         chain input {\n    type filter hook input priority filter; policy drop;\n    \
         ct state established,related accept\n    ct state invalid drop\n    iif \"lo\" accept\n    \
         meta l4proto { icmp, ipv6-icmp } accept\n    udp dport { 67, 68, 546 } accept\n    tcp dport 22 accept\n",
    );
    let _ = writeln!(
        s,
        "    ip saddr {} tcp dport {{ 179, 16509, 16514, 49152-49215 }} accept",
        cluster.private_cidr
    );
    let _ = writeln!(s, "    ip saddr {} udp dport 4789 accept", cluster.private_cidr);
    match cluster.frontend {
        Some(IpAddr::V4(a)) => {
            let _ = writeln!(s, "    ip saddr {a} tcp dport 5900-65535 accept");
        }
        Some(IpAddr::V6(a)) => {
            let _ = writeln!(s, "    ip6 saddr {a} tcp dport 5900-65535 accept");
        }
        None => {}
    }
    s.push_str("  }\n}\n");
    s
}

pub(super) fn netplan(host: &HostFacts, prefix: u8, uplink: &str, vlan: Option<u32>) -> String {
    let vlan = vlan.map_or_else(|| "<VLAN id>".to_owned(), |v| v.to_string());
    format!(
        "# one-scaleway: the Scaleway private network (VLAN {vlan} of {uplink})\nnetwork:\n  version: 2\n  \
         vlans:\n    {PRIVATE_DEVICE}:\n      id: {vlan}\n      link: {uplink}\n      addresses: [{}/{prefix}]\n",
        host.private_ip
    )
}

pub(super) const SYSCTL: &str = "# one-scaleway: VMs' public traffic is routed and NATed by the host\n\
                      net.ipv4.ip_forward = 1\nnet.ipv6.conf.all.forwarding = 1\nnet.ipv6.conf.all.accept_ra = 2\n";

/// A folder of oneadmin's alone (0700).
pub(super) fn oneadmin_folder(path: &str) -> Action {
    Action::Run {
        argv: argv(&["install", "-d", "-o", "oneadmin", "-g", "oneadmin", "-m", "0700", path]),
        stdin: None,
    }
}

/// `bgpd=yes` in FRR's daemons file.
pub fn edit_frr_daemons(text: &str) -> String {
    let mut found = false;
    let mut out: Vec<String> = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("bgpd=") {
                found = true;
                "bgpd=yes".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    if !found {
        out.push("bgpd=yes".into());
    }
    out.join("\n") + "\n"
}

/// Our block of `/etc/hosts`, replaced (or appended) between marker lines.
pub fn edit_hosts(text: &str, marker: &str, entries: &[(Ipv4Addr, String)]) -> String {
    let begin = format!("# {marker} begin");
    let end = format!("# {marker} end");
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line == begin {
            inside = true;
        } else if line == end {
            inside = false;
        } else if !inside {
            out.push(line.to_owned());
        }
    }
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    if !entries.is_empty() {
        out.push(begin);
        out.extend(entries.iter().map(|(ip, name)| format!("{ip} {name}")));
        out.push(end);
    }
    out.join("\n") + "\n"
}
