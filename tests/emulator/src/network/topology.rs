//! What the network mode must build, as a pure function of the emulated
//! account ([`Topology::of`]): one namespace per installed server, one per
//! private network, the private NICs of attached mappings, and the routes of
//! attached flexible IPs. The applier (`kernel`) turns differences between
//! two topologies into `ip` commands.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use crate::world::World;

/// How names and optional parts are chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// Namespace name prefix (letters and digits, checked by `NetworkOptions`).
    pub prefix: String,
    /// MTU of the private NICs.
    pub mtu: u32,
    /// IPv6 is configured (the kernel has it).
    pub ipv6: bool,
}

impl Naming {
    /// `<prefix>-inet`.
    pub fn inet(&self) -> String {
        format!("{}-inet", self.prefix)
    }

    /// `<prefix>-<first 8 hex digits of the server id>`.
    pub fn server_ns(&self, server_id: &str) -> String {
        format!("{}-{}", self.prefix, short(server_id))
    }

    /// `<prefix>-pn-<first 8 hex digits of the private network id>`.
    pub fn pn_ns(&self, pn_id: &str) -> String {
        format!("{}-pn-{}", self.prefix, short(pn_id))
    }
}

/// The first 8 characters of an id (a UUID's first group), lower case.
pub fn short(id: &str) -> String {
    id.chars().take(8).collect::<String>().to_ascii_lowercase()
}

/// The internet-side veth of a server (in `<prefix>-inet`), and the
/// private-network-side veth of its private NIC (in `<prefix>-pn-…`).
pub fn port_name(server_id: &str) -> String {
    format!("s-{}", short(server_id))
}

/// An installed server: its namespace and public addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Host {
    pub server_id: String,
    pub name: String,
    pub zone: String,
    pub namespace: String,
    /// The veth in the internet namespace whose peer is the server's `eth0`.
    pub uplink: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
}

/// A private network's namespace, with its bridge `br0`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    pub private_network_id: String,
    pub name: String,
    pub namespace: String,
    pub subnets: Vec<String>,
}

/// An attached server ↔ private network mapping: a veth from the server's
/// namespace into the private network's bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrivateNic {
    pub server_id: String,
    pub private_network_id: String,
    /// The mapping (`server_private_network`) id.
    pub mapping_id: String,
    /// Only in the API: the veth carries untagged frames.
    pub vlan: u64,
    /// The server's private MAC address (the IPAM resource's).
    pub mac: String,
    pub mtu: u32,
    /// The mapping's IPAM addresses, in CIDR form (the private network's prefix length).
    pub addresses: Vec<String>,
    /// The veth's name in the private network's namespace.
    pub port: String,
}

/// An attached flexible IP, routed by the internet to its server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FipRoute {
    pub flexible_ip_id: String,
    /// `a.b.c.d/32` or `xxxx::/64`.
    pub destination: String,
    pub server_id: String,
    /// The server's own public address of the same family.
    pub via: IpAddr,
    pub dev: String,
}

/// Everything the network mode maintains, besides the internet namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Topology {
    /// Bumped by a reset: everything is built again from scratch.
    pub epoch: u64,
    pub hosts: BTreeMap<String, Host>,
    pub segments: BTreeMap<String, Segment>,
    /// Keyed by `<server id>/<private network id>`.
    pub nics: BTreeMap<String, PrivateNic>,
    /// Keyed by destination.
    pub routes: BTreeMap<String, FipRoute>,
}

/// The key of a private NIC.
pub fn nic_key(server_id: &str, pn_id: &str) -> String {
    format!("{server_id}/{pn_id}")
}

impl Topology {
    /// What the account implies now.
    pub fn of(w: &World, naming: &Naming, epoch: u64) -> Topology {
        let mut t = Topology {
            epoch,
            ..Topology::default()
        };
        for s in &w.servers {
            let installed = s.install.as_ref().is_some_and(|i| i.status == "completed");
            if !installed || s.status == "deleting" || !crate::util::is_uuid(&s.id) {
                continue;
            }
            let Ok(ipv4) = s.ipv4.1.parse::<Ipv4Addr>() else {
                continue;
            };
            let ipv6 = if naming.ipv6 { s.ipv6.1.parse().ok() } else { None };
            t.hosts.insert(
                s.id.clone(),
                Host {
                    server_id: s.id.clone(),
                    name: s.name.clone(),
                    zone: s.zone.clone(),
                    namespace: naming.server_ns(&s.id),
                    uplink: port_name(&s.id),
                    ipv4,
                    ipv6,
                },
            );
        }
        for pn in &w.pns {
            if !crate::util::is_uuid(&pn.id) {
                continue;
            }
            t.segments.insert(
                pn.id.clone(),
                Segment {
                    private_network_id: pn.id.clone(),
                    name: pn.name.clone(),
                    namespace: naming.pn_ns(&pn.id),
                    subnets: pn.subnets.iter().map(|s| s.subnet.clone()).collect(),
                },
            );
        }
        for m in &w.spns {
            if m.status != "attached"
                || !t.hosts.contains_key(&m.server_id)
                || !t.segments.contains_key(&m.private_network_id)
            {
                continue;
            }
            let addresses: Vec<String> = m
                .ipam_ip_ids
                .iter()
                .filter_map(|id| w.ipam_ips.iter().find(|ip| &ip.id == id))
                .filter(|ip| naming.ipv6 || !ip.is_ipv6)
                .filter(|ip| valid_cidr(&ip.address))
                .map(|ip| ip.address.clone())
                .collect();
            let mac = w
                .servers
                .iter()
                .find(|s| s.id == m.server_id)
                .map(|s| s.private_mac.to_ascii_lowercase())
                .filter(|mac| valid_mac(mac))
                .unwrap_or_default();
            t.nics.insert(
                nic_key(&m.server_id, &m.private_network_id),
                PrivateNic {
                    server_id: m.server_id.clone(),
                    private_network_id: m.private_network_id.clone(),
                    mapping_id: m.id.clone(),
                    vlan: m.vlan,
                    mac,
                    mtu: naming.mtu,
                    addresses,
                    port: port_name(&m.server_id),
                },
            );
        }
        for f in &w.fips {
            let Some(server_id) = f.server_id.as_ref() else {
                continue;
            };
            let Some(host) = t.hosts.get(server_id) else {
                continue;
            };
            if f.status != "attached" {
                continue;
            }
            let (destination, via) = if f.is_ipv6 {
                match (host.ipv6, valid_cidr(&f.ip_address)) {
                    (Some(v6), true) => (f.ip_address.clone(), IpAddr::V6(v6)),
                    _ => continue,
                }
            } else {
                match f.ip_address.parse::<Ipv4Addr>() {
                    Ok(a) => (format!("{a}/32"), IpAddr::V4(host.ipv4)),
                    Err(_) => continue,
                }
            };
            t.routes.insert(
                destination.clone(),
                FipRoute {
                    flexible_ip_id: f.id.clone(),
                    destination,
                    server_id: server_id.clone(),
                    via,
                    dev: host.uplink.clone(),
                },
            );
        }
        t
    }
}

/// `address/prefix` of either family (what goes into an `ip` command).
pub fn valid_cidr(s: &str) -> bool {
    let Some((a, p)) = s.split_once('/') else {
        return false;
    };
    match (a.parse::<IpAddr>(), p.parse::<u8>()) {
        (Ok(IpAddr::V4(_)), Ok(p)) => p <= 32,
        (Ok(IpAddr::V6(_)), Ok(p)) => p <= 128,
        _ => false,
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn valid_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baremetal::{Install, Server};
    use crate::bmpn::Spn;
    use crate::fip::Fip;
    use crate::ipam::IpamIp;
    use crate::vpc::{Pn, Subnet};
    use serde_json::Value;

    const S1: &str = "11111111-aaaa-4aaa-8aaa-aaaaaaaaaaaa";
    const S2: &str = "22222222-bbbb-4bbb-8bbb-bbbbbbbbbbbb";
    const PN: &str = "33333333-cccc-4ccc-8ccc-cccccccccccc";

    fn naming() -> Naming {
        Naming {
            prefix: "scw".into(),
            mtu: 1500,
            ipv6: true,
        }
    }

    fn server(id: &str, n: u8, install: &str) -> Server {
        Server {
            id: id.into(),
            zone: "fr-par-1".into(),
            project_id: String::new(),
            organization_id: String::new(),
            name: format!("host{n}"),
            description: String::new(),
            tags: vec![],
            created_at: 0.0,
            updated_at: 0.0,
            status: "ready".into(),
            offer_id: String::new(),
            offer_name: String::new(),
            install: Some(Install {
                os_id: String::new(),
                hostname: String::new(),
                ssh_key_ids: vec![],
                status: install.into(),
                user: String::new(),
                service_user: String::new(),
                partitioning_schema: Value::Null,
            }),
            options: vec![],
            protected: false,
            user_data: None,
            show_protected: false,
            boot_type: String::new(),
            provisioned: true,
            installed: install == "completed",
            ipv4: (String::new(), format!("62.210.158.{n}")),
            ipv6: (String::new(), format!("2001:bc8:1201:a00::{n}")),
            private_mac: "B4:83:51:00:00:01".into(),
        }
    }

    fn fip(id: &str, addr: &str, status: &str, server: Option<&str>, v6: bool) -> Fip {
        Fip {
            id: id.into(),
            zone: "fr-par-1".into(),
            project_id: String::new(),
            organization_id: String::new(),
            description: String::new(),
            tags: vec![],
            created_at: 0.0,
            updated_at: 0.0,
            status: status.into(),
            ip_address: addr.into(),
            reverse: String::new(),
            server_id: server.map(str::to_string),
            mac: None,
            is_ipv6: v6,
        }
    }

    fn world() -> World {
        let mut w = World::new(1.0, true, Some(1), vec![]);
        w.servers.push(server(S1, 2, "completed"));
        w.servers.push(server(S2, 3, "installing"));
        w.pns.push(Pn {
            id: PN.into(),
            region: "fr-par".into(),
            project_id: String::new(),
            organization_id: String::new(),
            name: "pn".into(),
            tags: vec![],
            vpc_id: String::new(),
            created_at: 0.0,
            updated_at: 0.0,
            dhcp_enabled: true,
            default_route_propagation_enabled: false,
            subnets: vec![Subnet {
                id: "sub".into(),
                subnet: "172.16.4.0/22".into(),
                created_at: 0.0,
                updated_at: 0.0,
            }],
        });
        w.ipam_ips.push(IpamIp {
            id: "ip1".into(),
            region: "fr-par".into(),
            project_id: String::new(),
            address: "172.16.4.2/22".into(),
            is_ipv6: false,
            subnet_id: "sub".into(),
            pn_id: PN.into(),
            vpc_id: String::new(),
            tags: vec![],
            reverses: vec![],
            created_at: 0.0,
            updated_at: 0.0,
            resource: None,
        });
        w.spns.push(Spn {
            id: "m1".into(),
            zone: "fr-par-1".into(),
            project_id: String::new(),
            server_id: S1.into(),
            private_network_id: PN.into(),
            vlan: 1234,
            status: "attached".into(),
            created_at: 0.0,
            updated_at: 0.0,
            ipam_ip_ids: vec!["ip1".into()],
            auto_ips: vec![],
        });
        w.fips.push(fip("f1", "195.154.128.2", "attached", Some(S1), false));
        w.fips.push(fip("f2", "195.154.128.3", "updating", Some(S1), false));
        w.fips.push(fip("f3", "195.154.128.4", "attached", Some(S2), false));
        w.fips
            .push(fip("f4", "2001:bc8:702:600::/64", "attached", Some(S1), true));
        w
    }

    #[test]
    fn only_installed_servers_attached_mappings_and_attached_fips() {
        let t = Topology::of(&world(), &naming(), 7);
        assert_eq!(t.epoch, 7);
        assert_eq!(t.hosts.keys().collect::<Vec<_>>(), vec![S1], "S2 is still installing");
        let h = &t.hosts[S1];
        assert_eq!(
            (h.namespace.as_str(), h.uplink.as_str()),
            ("scw-11111111", "s-11111111")
        );
        assert_eq!(h.ipv4, Ipv4Addr::new(62, 210, 158, 2));
        assert_eq!(t.segments[PN].namespace, "scw-pn-33333333");
        let nic = &t.nics[&nic_key(S1, PN)];
        assert_eq!(nic.addresses, vec!["172.16.4.2/22"]);
        assert_eq!(nic.mac, "b4:83:51:00:00:01");
        assert_eq!(
            t.routes.keys().collect::<Vec<_>>(),
            vec!["195.154.128.2/32", "2001:bc8:702:600::/64"],
            "updating FIPs and FIPs of servers without a namespace are not routed"
        );
        assert_eq!(t.routes["195.154.128.2/32"].via, IpAddr::V4(h.ipv4));
        assert_eq!(
            t.routes["2001:bc8:702:600::/64"].via.to_string(),
            "2001:bc8:1201:a00::2"
        );
    }

    #[test]
    fn deleting_servers_and_detaching_mappings_leave() {
        let mut w = world();
        w.spns[0].status = "detaching".into();
        let t = Topology::of(&w, &naming(), 0);
        assert!(t.nics.is_empty());
        w.servers[0].status = "deleting".into();
        let t = Topology::of(&w, &naming(), 0);
        assert!(t.hosts.is_empty() && t.routes.is_empty());
        assert_eq!(t.segments.len(), 1, "the private network stays");
        let no6 = Naming {
            ipv6: false,
            ..naming()
        };
        let t = Topology::of(&world(), &no6, 0);
        assert_eq!(t.hosts[S1].ipv6, None);
        assert_eq!(t.routes.len(), 1);
    }

    #[test]
    fn validators() {
        assert!(valid_cidr("172.16.4.2/22") && valid_cidr("fd00::2/64"));
        assert!(!valid_cidr("172.16.4.2") && !valid_cidr("172.16.4.2/33") && !valid_cidr("x/1"));
        assert!(valid_mac("b4:83:51:00:00:01") && !valid_mac("b4:83:51:00:00") && !valid_mac("b4:83:51:00:00:0g"));
    }
}
