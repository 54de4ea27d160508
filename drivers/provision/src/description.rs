//! The provision description: what cluster to build, read from YAML (in the
//! spirit of oneprovision's templates) and validated as a whole before
//! anything is created. YAML that does not fit the structure is refused
//! with its line and column; then every problem of the values is reported,
//! each with its line, not only the first.
//!
//! ```yaml
//! name: edge-paris                 # the provision's name: tags and OpenNebula object names
//! description: Paris edge cluster  # free text (optional)
//! provider: paris                  # a provider (scaleway-provision provider list) ...
//! # connection:                    # ... or the connection itself
//! #   zone: fr-par-1
//! #   profile: edge-paris          # a profile of ~oneadmin/.config/scw/config.yaml
//! inputs:
//!   number_hosts: 2                # 1 to 20
//!   offer: EM-A116X-SSD            # an Elastic Metal offer of the zone (default: the provider's)
//!   subscription_period: hourly    # hourly or monthly (default: the provider's, else hourly)
//!   os: Ubuntu 24.04               # OS name and version prefix (default: the provider's)
//!   number_public_ips: 2           # 0 to 64 flexible IPs (address ranges of the public network)
//!   dns: [1.1.1.1, 9.9.9.9]        # resolvers given to the VMs (a list, or one string)
//!   private_cidr: 172.18.0.0/24    # the hosts' private network (a /16 to a /28, private space)
//!   public_ip_cidr: 172.30.0.0/16  # PRIVATE_CIDR of the public ranges (the VMs' /31s)
//!   hypervisor: kvm                # kvm or lxc
//!   cluster_name: edge-paris       # the OpenNebula cluster (default: the provision's name)
//!   opennebula_version: "7.0"      # the hosts' OpenNebula packages (7.0 or 7.4)
//! ```

use std::net::IpAddr;

use std::ops::RangeInclusive;

use anyhow::Result;
use ipnetwork::Ipv4Network;
use scaleway::yaml::{self, Spanned, at};
use scaleway::{Region, Zone};
use serde::Deserialize;

use crate::provider::{Defaults, Provider, RawConnection, check_profile, check_zone};

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
    /// Free text.
    pub description: String,
    /// The provider it names (none: an inline connection).
    pub provider: Option<String>,
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
    /// The hosts' OpenNebula packages (`7.0`).
    pub opennebula_version: String,
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

/// OpenNebula versions whose packages the hosts can get.
pub const OPENNEBULA_VERSIONS: [&str; 2] = ["7.0", "7.4"];

/// `dns`: a list, or one string of addresses separated by spaces.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawDns {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInputs {
    number_hosts: Option<Spanned<u32>>,
    offer: Option<Spanned<String>>,
    subscription_period: Option<Spanned<String>>,
    os: Option<Spanned<String>>,
    number_public_ips: Option<Spanned<u32>>,
    dns: Option<Spanned<RawDns>>,
    private_cidr: Option<Spanned<String>>,
    public_ip_cidr: Option<Spanned<String>>,
    hypervisor: Option<Spanned<String>>,
    cluster_name: Option<Spanned<String>>,
    opennebula_version: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDescription {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    provider: Option<Spanned<String>>,
    connection: Option<RawConnection>,
    #[serde(default)]
    inputs: RawInputs,
}

/// A value of the description, or the provider's default (`line` empty).
struct Input {
    value: String,
    line: String,
}

fn input(v: &Option<Spanned<String>>, default: Option<&String>) -> Option<Input> {
    match v {
        Some(s) => Some(Input {
            value: s.value.trim().to_owned(),
            line: at(s),
        }),
        None => default.map(|d| Input {
            value: d.clone(),
            line: "(provider default) ".into(),
        }),
    }
}

/// Reads and validates a description. `provider` finds a provider by name
/// (`Ok(None)`: there is none). All problems are returned together.
pub fn parse(text: &str, provider: &dyn Fn(&str) -> Result<Option<Provider>>) -> Result<Description, Vec<String>> {
    let raw: RawDescription = yaml::from_str(text).map_err(|e| vec![format!("the description does not read: {e}")])?;
    let mut errors = Vec::new();
    let name = raw.name.value.clone();
    if !is_name(&name) {
        errors.push(format!(
            "{}name {name:?}: 1 to 40 lower-case letters, digits and '-', starting with a letter",
            at(&raw.name)
        ));
    }
    // The connection: inline, or a provider's.
    let (zone_text, profile, defaults, provider_name) = match (&raw.connection, &raw.provider) {
        (Some(c), None) => (
            Some((c.zone.value.clone(), at(&c.zone))),
            c.profile.as_ref().map(|p| (p.value.clone(), at(p))),
            Defaults::default(),
            None,
        ),
        (None, Some(p)) => match provider(&p.value) {
            Ok(Some(found)) => (
                Some((found.zone.clone(), format!("(provider {}) ", found.name))),
                found
                    .profile
                    .clone()
                    .map(|v| (v, format!("(provider {}) ", found.name))),
                found.defaults.clone(),
                Some(found.name.clone()),
            ),
            Ok(None) => {
                errors.push(format!(
                    "{}provider {:?}: no such provider (scaleway-provision provider list)",
                    at(p),
                    p.value
                ));
                (None, None, Defaults::default(), None)
            }
            Err(e) => {
                errors.push(format!("{}provider {:?}: {e}", at(p), p.value));
                (None, None, Defaults::default(), None)
            }
        },
        (Some(_), Some(p)) => {
            errors.push(format!("{}give either provider or connection, not both", at(p)));
            (None, None, Defaults::default(), None)
        }
        (None, None) => {
            errors.push("provider (or connection) is missing".into());
            (None, None, Defaults::default(), None)
        }
    };
    let zone = zone_text.and_then(|(z, line)| match check_zone(&z) {
        Ok(z) => Some(z),
        Err(e) => {
            errors.push(format!("{line}connection {e}"));
            None
        }
    });
    if let Some((p, line)) = &profile
        && let Err(e) = check_profile(p)
    {
        errors.push(format!("{line}connection {e}"));
    }
    let profile = profile.map(|(p, _)| p);
    let inputs = &raw.inputs;

    let mut number = |key: &str, v: &Option<Spanned<u32>>, default: Option<u32>, range: RangeInclusive<u32>| -> u32 {
        match v {
            None => default.unwrap_or_else(|| {
                errors.push(format!("inputs {key} is missing"));
                0
            }),
            Some(n) if range.contains(&n.value) => n.value,
            Some(n) => {
                errors.push(format!(
                    "{}inputs {key}: a whole number from {} to {}",
                    at(n),
                    range.start(),
                    range.end()
                ));
                0
            }
        }
    };
    let hosts = number("number_hosts", &inputs.number_hosts, None, 1..=MAX_HOSTS);
    let public_ips = number(
        "number_public_ips",
        &inputs.number_public_ips,
        Some(0),
        0..=MAX_PUBLIC_IPS,
    );

    let offer = match input(&inputs.offer, defaults.offer.as_ref()) {
        None => {
            errors.push("inputs offer is missing (and the provider has no default offer)".into());
            String::new()
        }
        Some(Input { value, line }) => {
            if !(value.starts_with("EM-")
                && value.len() <= 40
                && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            {
                errors.push(format!(
                    "{line}inputs offer {value:?}: an Elastic Metal offer name like EM-A116X-SSD"
                ));
            }
            value
        }
    };
    let period = match input(&inputs.subscription_period, defaults.subscription_period.as_ref()) {
        None => Period::Hourly,
        Some(i) if i.value == "hourly" => Period::Hourly,
        Some(i) if i.value == "monthly" => Period::Monthly,
        Some(Input { value, line }) => {
            errors.push(format!("{line}inputs subscription_period {value:?}: hourly or monthly"));
            Period::Hourly
        }
    };
    let os = match input(&inputs.os, defaults.os.as_ref()) {
        None => {
            errors.push("inputs os is missing (and the provider has no default OS)".into());
            (String::new(), String::new())
        }
        Some(Input { value, line }) => match value.split_once(' ') {
            Some((n, v)) if !n.is_empty() && !v.trim().is_empty() => (n.to_owned(), v.trim().to_owned()),
            _ => {
                errors.push(format!(
                    "{line}inputs os {value:?}: an OS name and version, like \"Ubuntu 24.04\""
                ));
                (String::new(), String::new())
            }
        },
    };
    let dns: Vec<IpAddr> = match &inputs.dns {
        None => vec![IpAddr::from([1, 1, 1, 1])],
        Some(list) => {
            let words: Vec<String> = match &list.value {
                RawDns::One(s) => s.split_whitespace().map(str::to_owned).collect(),
                RawDns::Many(v) => v.clone(),
            };
            if words.is_empty() {
                errors.push(format!("{}inputs dns: at least one address", at(list)));
            }
            words
                .iter()
                .filter_map(|a| match a.trim().parse() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        errors.push(format!("{}inputs dns {a:?}: not an IP address", at(list)));
                        None
                    }
                })
                .collect()
        }
    };
    let mut cidr = |key: &str, v: &Option<Spanned<String>>, default: &str, prefixes: RangeInclusive<u8>| {
        let (text, line) = v.as_ref().map_or((default.to_owned(), String::new()), |s| {
            (s.value.trim().to_owned(), at(s))
        });
        let problem = match text.parse::<Ipv4Network>() {
            Ok(net) if net.ip() != net.network() => Some(format!(
                "host bits set (did you mean {}/{}?)",
                net.network(),
                net.prefix()
            )),
            Ok(net) if !prefixes.contains(&net.prefix()) => {
                Some(format!("a /{} to a /{}", prefixes.start(), prefixes.end()))
            }
            Ok(net) if !private(net) => Some("not private address space".into()),
            Ok(net) => return Some(net),
            Err(_) => Some("not an IPv4 network like 172.18.0.0/24".into()),
        };
        if let Some(p) = problem {
            errors.push(format!("{line}inputs {key} {text}: {p}"));
        }
        None
    };
    let private_cidr = cidr("private_cidr", &inputs.private_cidr, "172.18.0.0/24", 16..=28);
    let public_ip_cidr = cidr("public_ip_cidr", &inputs.public_ip_cidr, "172.30.0.0/16", 8..=29);
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
    let hypervisor = match &inputs.hypervisor {
        None => Hypervisor::Kvm,
        Some(h) if h.value == "kvm" => Hypervisor::Kvm,
        Some(h) if h.value == "lxc" => Hypervisor::Lxc,
        Some(h) => {
            errors.push(format!("{}inputs hypervisor {:?}: kvm or lxc", at(h), h.value));
            Hypervisor::Kvm
        }
    };
    let cluster_name = match &inputs.cluster_name {
        None => name.clone(),
        Some(c) => {
            if c.value.is_empty()
                || !c
                    .value
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
            {
                errors.push(format!(
                    "{}inputs cluster_name {:?}: letters, digits, '-', '_' and '.' only",
                    at(c),
                    c.value
                ));
            }
            c.value.clone()
        }
    };
    let opennebula_version = match &inputs.opennebula_version {
        None => OPENNEBULA_VERSIONS[0].to_owned(),
        Some(v) if OPENNEBULA_VERSIONS.contains(&v.value.as_str()) => v.value.clone(),
        Some(v) => {
            errors.push(format!(
                "{}inputs opennebula_version {:?}: one of {} (quote it: \"7.0\")",
                at(v),
                v.value,
                OPENNEBULA_VERSIONS.join(", ")
            ));
            String::new()
        }
    };
    match (errors.is_empty(), zone, private_cidr, public_ip_cidr) {
        (true, Some(zone), Some(private_cidr), Some(public_ip_cidr)) => Ok(Description {
            name,
            description: raw.description.trim().to_owned(),
            provider: provider_name,
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
            opennebula_version,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests;
