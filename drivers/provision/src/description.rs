//! The provision description: what cluster to build, read from YAML (in the
//! spirit of oneprovision's templates) and validated as a whole before
//! anything is created. Every problem is reported, not only the first.
//!
//! ```yaml
//! name: edge-paris                 # the provision's name: tags and OpenNebula object names
//! provider: fr-par-1               # a provider file (share/scaleway/providers/<name>.yaml) ...
//! # connection:                    # ... or the connection itself
//! #   zone: fr-par-1
//! #   profile: edge-paris          # a profile of ~oneadmin/.config/scw/config.yaml
//! inputs:
//!   number_hosts: 2                # 1 to 20
//!   offer: EM-A116X-SSD            # an Elastic Metal offer of the zone
//!   subscription_period: hourly    # hourly or monthly
//!   os: Ubuntu 24.04               # OS name and version prefix, as Scaleway lists them
//!   number_public_ips: 2           # 0 to 64 flexible IPs (address ranges of the public network)
//!   dns: 1.1.1.1 9.9.9.9           # resolvers given to the VMs
//!   private_cidr: 172.18.0.0/24    # the hosts' private network (a /16 to a /28, private space)
//!   public_ip_cidr: 172.30.0.0/16  # PRIVATE_CIDR of the public ranges (the VMs' /31s)
//!   hypervisor: kvm                # kvm or lxc
//!   cluster_name: edge-paris       # the OpenNebula cluster (default: the provision's name)
//! ```

use std::net::IpAddr;

use ipnetwork::Ipv4Network;
use scaleway::yaml::{Node, parse_tree};
use scaleway::{Region, Zone};

/// Hypervisor of the hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hypervisor {
    Kvm,
    Lxc,
}

/// Billing period of the servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Hourly,
    Monthly,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hourly => "hourly",
            Self::Monthly => "monthly",
        }
    }
}

/// A validated provision description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    pub name: String,
    pub zone: Zone,
    pub region: Region,
    pub profile: Option<String>,
    pub hosts: u32,
    pub offer: String,
    pub period: Period,
    /// OS name and version prefix (`Ubuntu`, `24.04`).
    pub os: (String, String),
    pub public_ips: u32,
    pub dns: Vec<IpAddr>,
    pub private_cidr: Ipv4Network,
    pub public_ip_cidr: Ipv4Network,
    pub hypervisor: Hypervisor,
    pub cluster_name: String,
}

/// Bounds of the inputs.
pub const MAX_HOSTS: u32 = 20;
pub const MAX_PUBLIC_IPS: u32 = 64;

/// Zones where Elastic Metal and flexible IPs both exist.
pub const ZONES: [&str; 6] = ["fr-par-1", "fr-par-2", "nl-ams-1", "nl-ams-2", "pl-waw-2", "pl-waw-3"];

fn is_name(s: &str) -> bool {
    (1..=40).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
}

fn private(net: Ipv4Network) -> bool {
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"]
        .iter()
        .filter_map(|s| s.parse::<Ipv4Network>().ok())
        .any(|space| space.is_supernet_of(net))
}

/// Reads and validates a description. `provider` returns the text of a
/// provider file by name. All problems are returned together.
pub fn parse(text: &str, provider: &dyn Fn(&str) -> Option<String>) -> Result<Description, Vec<String>> {
    let root = parse_tree(text).map_err(|e| vec![format!("the description is not YAML we read: {e}")])?;
    let mut errors = Vec::new();
    let scalar = |node: &Node, key: &str| node.get(key).and_then(Node::as_str).map(str::to_owned);
    let inputs = root.get("inputs").cloned().unwrap_or(Node::Map(Vec::new()));
    let input = |key: &str| scalar(&inputs, key);

    let name = scalar(&root, "name").unwrap_or_default();
    if !is_name(&name) {
        errors.push(format!(
            "name {name:?}: 1 to 40 lower-case letters, digits and '-', starting with a letter"
        ));
    }
    // The connection: inline, or from a provider file.
    let connection = match (root.get("connection"), scalar(&root, "provider")) {
        (Some(c), None) => Some(c.clone()),
        (None, Some(p)) => match provider(&p) {
            None => {
                errors.push(format!("provider {p:?}: no such provider file"));
                None
            }
            Some(text) => match parse_tree(&text) {
                Ok(file) => file.get("connection").cloned().or_else(|| {
                    errors.push(format!("provider {p:?}: no connection"));
                    None
                }),
                Err(e) => {
                    errors.push(format!("provider {p:?}: {e}"));
                    None
                }
            },
        },
        (Some(_), Some(_)) => {
            errors.push("give either provider or connection, not both".into());
            None
        }
        (None, None) => {
            errors.push("provider (or connection) is missing".into());
            None
        }
    };
    let connection = connection.unwrap_or(Node::Map(Vec::new()));
    let zone_text = scalar(&connection, "zone").unwrap_or_default();
    let zone = match Zone::new(&zone_text) {
        Ok(z) if ZONES.contains(&z.as_str()) => Some(z),
        Ok(z) => {
            errors.push(format!(
                "zone {z}: Elastic Metal with flexible IPs exists only in {}",
                ZONES.join(", ")
            ));
            None
        }
        Err(e) => {
            errors.push(format!("connection zone: {e}"));
            None
        }
    };
    let profile = scalar(&connection, "profile");
    if profile
        .as_deref()
        .is_some_and(|p| !p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
    {
        errors.push("connection profile: letters, digits, '-', '_' and '.' only".into());
    }

    let mut number = |key: &str, default: Option<u32>, range: std::ops::RangeInclusive<u32>| -> u32 {
        match input(key).map(|v| v.parse::<u32>()) {
            None => default.unwrap_or_else(|| {
                errors.push(format!("inputs {key} is missing"));
                0
            }),
            Some(Ok(n)) if range.contains(&n) => n,
            Some(_) => {
                errors.push(format!(
                    "inputs {key}: a whole number from {} to {}",
                    range.start(),
                    range.end()
                ));
                0
            }
        }
    };
    let hosts = number("number_hosts", None, 1..=MAX_HOSTS);
    let public_ips = number("number_public_ips", Some(0), 0..=MAX_PUBLIC_IPS);

    let offer = input("offer").unwrap_or_default();
    if !(offer.starts_with("EM-") && offer.len() <= 40 && offer.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        errors.push(format!(
            "inputs offer {offer:?}: an Elastic Metal offer name like EM-A116X-SSD"
        ));
    }
    let period = match input("subscription_period").as_deref() {
        None | Some("hourly") => Period::Hourly,
        Some("monthly") => Period::Monthly,
        Some(other) => {
            errors.push(format!("inputs subscription_period {other:?}: hourly or monthly"));
            Period::Hourly
        }
    };
    let os = match input("os").as_deref().map(str::trim).and_then(|o| o.split_once(' ')) {
        Some((n, v)) if !n.is_empty() && !v.trim().is_empty() => (n.to_owned(), v.trim().to_owned()),
        _ => {
            errors.push("inputs os: an OS name and version, like \"Ubuntu 24.04\"".into());
            (String::new(), String::new())
        }
    };
    let dns: Vec<IpAddr> = match input("dns") {
        None => vec![IpAddr::from([1, 1, 1, 1])],
        Some(list) => list
            .split_whitespace()
            .filter_map(|a| match a.parse() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    errors.push(format!("inputs dns {a:?}: not an IP address"));
                    None
                }
            })
            .collect(),
    };
    let mut cidr = |key: &str, default: &str, prefixes: std::ops::RangeInclusive<u8>| -> Option<Ipv4Network> {
        let text = input(key).unwrap_or_else(|| default.to_owned());
        match text.parse::<Ipv4Network>() {
            Ok(net) if net.ip() != net.network() => {
                errors.push(format!(
                    "inputs {key} {text}: host bits set (did you mean {}/{}?)",
                    net.network(),
                    net.prefix()
                ));
                None
            }
            Ok(net) if !prefixes.contains(&net.prefix()) => {
                errors.push(format!(
                    "inputs {key} {text}: a /{} to a /{}",
                    prefixes.start(),
                    prefixes.end()
                ));
                None
            }
            Ok(net) if !private(net) => {
                errors.push(format!("inputs {key} {text}: not private address space"));
                None
            }
            Ok(net) => Some(net),
            Err(_) => {
                errors.push(format!("inputs {key} {text:?}: not an IPv4 network like 172.18.0.0/24"));
                None
            }
        }
    };
    let private_cidr = cidr("private_cidr", "172.18.0.0/24", 16..=28);
    let public_ip_cidr = cidr("public_ip_cidr", "172.30.0.0/16", 8..=29);
    if let (Some(a), Some(b)) = (private_cidr, public_ip_cidr)
        && a.overlaps(b)
    {
        errors.push(format!("inputs private_cidr {a} and public_ip_cidr {b} overlap"));
    }
    if let Some(net) = private_cidr
        && u64::from(net.size()) < u64::from(hosts) + 10
    {
        errors.push(format!(
            "inputs private_cidr {net} is too small for {hosts} hosts and the gateway"
        ));
    }
    let hypervisor = match input("hypervisor").as_deref() {
        None | Some("kvm") => Hypervisor::Kvm,
        Some("lxc") => Hypervisor::Lxc,
        Some(other) => {
            errors.push(format!("inputs hypervisor {other:?}: kvm or lxc"));
            Hypervisor::Kvm
        }
    };
    let cluster_name = input("cluster_name").unwrap_or_else(|| name.clone());
    if !cluster_name.is_empty()
        && !cluster_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        errors.push(format!(
            "inputs cluster_name {cluster_name:?}: letters, digits, '-', '_' and '.' only"
        ));
    }
    let known = [
        "number_hosts",
        "offer",
        "subscription_period",
        "os",
        "number_public_ips",
        "dns",
        "private_cidr",
        "public_ip_cidr",
        "hypervisor",
        "cluster_name",
    ];
    if let Node::Map(entries) = &inputs {
        for (k, _) in entries.iter().filter(|(k, _)| !known.contains(&k.as_str())) {
            errors.push(format!("inputs {k}: unknown input (known: {})", known.join(", ")));
        }
    }
    match (errors.is_empty(), zone, private_cidr, public_ip_cidr) {
        (true, Some(zone), Some(private_cidr), Some(public_ip_cidr)) => Ok(Description {
            name,
            region: zone.region(),
            zone,
            profile,
            hosts,
            offer,
            period,
            os,
            public_ips,
            dns,
            private_cidr,
            public_ip_cidr,
            hypervisor,
            cluster_name,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "name: edge-paris\nprovider: fr-par-1\ninputs:\n  number_hosts: 3\n  offer: EM-A116X-SSD\n  \
                        os: Ubuntu 24.04\n  number_public_ips: 2\n  dns: 1.1.1.1 9.9.9.9\n";

    fn providers(name: &str) -> Option<String> {
        (name == "fr-par-1").then(|| "name: scaleway-fr-par-1\nconnection:\n  zone: fr-par-1\n".to_owned())
    }

    #[test]
    fn reads_a_description_with_defaults() {
        let d = parse(GOOD, &providers).unwrap();
        assert_eq!(
            (d.name.as_str(), d.zone.as_str(), d.region.as_str()),
            ("edge-paris", "fr-par-1", "fr-par")
        );
        assert_eq!(
            (d.hosts, d.public_ips, d.period, d.hypervisor),
            (3, 2, Period::Hourly, Hypervisor::Kvm)
        );
        assert_eq!(d.os, ("Ubuntu".to_owned(), "24.04".to_owned()));
        assert_eq!(d.dns.len(), 2);
        assert_eq!(d.private_cidr.to_string(), "172.18.0.0/24");
        assert_eq!(d.public_ip_cidr.to_string(), "172.30.0.0/16");
        assert_eq!(d.cluster_name, "edge-paris");
    }

    #[test]
    fn reports_every_problem_at_once() {
        let bad = "name: Edge Paris\nconnection:\n  zone: fr-par-3\ninputs:\n  number_hosts: 0\n  offer: big\n  \
                   os: Ubuntu\n  dns: 1.1.1.x\n  private_cidr: 172.30.1.0/24\n  hypervisor: xen\n  colour: blue\n";
        let errors = parse(bad, &providers).unwrap_err();
        for expected in [
            "name \"Edge Paris\"",
            "zone fr-par-3: Elastic Metal with flexible IPs exists only in",
            "inputs number_hosts: a whole number from 1 to 20",
            "inputs offer \"big\"",
            "inputs os: an OS name and version",
            "inputs dns \"1.1.1.x\"",
            "inputs private_cidr 172.30.1.0/24 and public_ip_cidr 172.30.0.0/16 overlap",
            "inputs hypervisor \"xen\"",
            "inputs colour: unknown input",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{expected:?} not in {errors:#?}"
            );
        }
    }

    #[test]
    fn provider_and_cidr_problems() {
        let cases = [
            (
                "name: a\nprovider: nowhere\ninputs:\n  number_hosts: 1\n  offer: EM-X\n  os: U 1\n",
                "provider \"nowhere\": no such provider file",
            ),
            (
                "name: a\ninputs:\n  number_hosts: 1\n  offer: EM-X\n  os: U 1\n",
                "provider (or connection) is missing",
            ),
            (
                "name: a\nprovider: fr-par-1\ninputs:\n  number_hosts: 1\n  offer: EM-X\n  os: U 1\n  private_cidr: 172.18.0.1/24\n",
                "host bits set (did you mean 172.18.0.0/24?)",
            ),
            (
                "name: a\nprovider: fr-par-1\ninputs:\n  number_hosts: 1\n  offer: EM-X\n  os: U 1\n  private_cidr: 8.8.8.0/24\n",
                "not private",
            ),
            (
                "name: a\nprovider: fr-par-1\ninputs:\n  number_hosts: 20\n  offer: EM-X\n  os: U 1\n  private_cidr: 10.0.0.0/28\n",
                "too small for 20 hosts",
            ),
            (
                "name: a\nprovider: fr-par-1\ninputs:\n  - x\n",
                "lists are not supported",
            ),
        ];
        for (text, expected) in cases {
            let errors = parse(text, &providers).unwrap_err();
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{expected:?} not in {errors:#?}"
            );
        }
    }
}
