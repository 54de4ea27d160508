//! The cluster description `scaleway-vnm evpn-config` reads: who the hosts
//! are on the underlay network and which of them reflect BGP routes.
//!
//! It is written in OpenNebula's template syntax (`#` starts a comment):
//!
//! ```text
//! AS              = 65000                             # the cluster's private AS number (iBGP)
//! UNDERLAY        = 10.0.0.0/24                       # the private network between the hosts
//! HOSTS           = "10.0.0.2 10.0.0.3 10.0.0.4"      # every host's underlay address, in a fixed order
//! REFLECTORS      = 2                                 # the first N hosts are route reflectors (default 2)
//! LOCAL           = 10.0.0.3                          # optional: this host (default: the HOSTS address it holds)
//! UNDERLAY_DEVICE = scwpriv0                          # optional: the underlay device (default: PHYDEV, else the device holding LOCAL)
//! VNIS            = "100 200"                         # optional: VNIs announced even before a VM uses them
//! ```
//!
//! The same file can be given to every host (each finds itself in `HOSTS`);
//! adding or removing a host means running `evpn-config` again on every
//! host with the new list. Every host address must lie in `UNDERLAY`: the
//! BGP sessions and the VXLAN traffic never leave that network.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;

use opennebula::attr::IfName;
use opennebula::template::{Template, Value};

use crate::net::{Ipv4Net, Vni};

/// Route reflectors when `REFLECTORS` is not given: two, so one can fail.
pub const DEFAULT_REFLECTORS: usize = 2;

/// What is wrong with a cluster description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterError(pub String);

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClusterError {}

fn error<T>(message: impl Into<String>) -> Result<T, ClusterError> {
    Err(ClusterError(message.into()))
}

/// The BGP role of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Peers with every other host; reflects the clients' routes.
    Reflector,
    /// Peers with the reflectors only.
    Client,
}

/// A validated cluster description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// The AS number every host uses (the sessions are iBGP).
    pub asn: u32,
    /// The underlay network: every host address, every peer, every VXLAN
    /// packet accepted.
    pub underlay: Ipv4Net,
    /// Every host's underlay address, in order (distinct).
    pub hosts: Vec<Ipv4Addr>,
    /// How many of the first hosts are route reflectors (at least 1; more
    /// than there are hosts means every host).
    pub reflectors: usize,
    /// This host, when the description says so.
    pub local: Option<Ipv4Addr>,
    /// The underlay device, when the description says so.
    pub underlay_device: Option<IfName>,
    /// VNIs announced whatever the VMs on this host use.
    pub vnis: BTreeSet<Vni>,
}

/// The attributes a description may hold.
const KEYS: [&str; 7] = [
    "AS",
    "UNDERLAY",
    "HOSTS",
    "REFLECTORS",
    "LOCAL",
    "UNDERLAY_DEVICE",
    "VNIS",
];

fn list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
}

impl Cluster {
    /// Reads and validates a description (template syntax).
    pub fn parse(text: &str) -> Result<Self, ClusterError> {
        let template = Template::parse(text).map_err(|e| ClusterError(e.to_string()))?;
        let mut values: Vec<(String, String)> = Vec::new();
        for (name, value) in template.attributes {
            let name = name.to_ascii_uppercase();
            let Value::Single(value) = value else {
                return error(format!("{name} must be a single value, not a vector"));
            };
            if !KEYS.contains(&name.as_str()) {
                return error(format!(
                    "{name} is not an attribute of a cluster description (expected: {})",
                    KEYS.join(", ")
                ));
            }
            if values.iter().any(|(n, _)| *n == name) {
                return error(format!("{name} is given twice"));
            }
            values.push((name, value.trim().to_owned()));
        }
        let get = |name: &str| values.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let require = |name: &str| match get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => error(format!("{name} is missing")),
        };
        let asn = require("AS")?;
        let asn: u32 = asn
            .parse()
            .map_err(|_| ClusterError(format!("AS = {asn:?} is not an AS number")))?;
        let underlay: Ipv4Net = require("UNDERLAY")?
            .parse()
            .map_err(|e| ClusterError(format!("UNDERLAY: {e}")))?;
        let hosts = list(require("HOSTS")?)
            .map(|h| {
                h.parse::<Ipv4Addr>()
                    .map_err(|_| ClusterError(format!("HOSTS: {h:?} is not an IPv4 address")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let reflectors = match get("REFLECTORS").filter(|v| !v.is_empty()) {
            None => DEFAULT_REFLECTORS,
            Some(n) => n
                .parse()
                .map_err(|_| ClusterError(format!("REFLECTORS = {n:?} is not a number")))?,
        };
        let local = match get("LOCAL").filter(|v| !v.is_empty()) {
            None => None,
            Some(l) => Some(
                l.parse::<Ipv4Addr>()
                    .map_err(|_| ClusterError(format!("LOCAL = {l:?} is not an IPv4 address")))?,
            ),
        };
        let underlay_device = match get("UNDERLAY_DEVICE").filter(|v| !v.is_empty()) {
            None => None,
            Some(d) => Some(
                d.parse::<IfName>()
                    .map_err(|e| ClusterError(format!("UNDERLAY_DEVICE: {e}")))?,
            ),
        };
        let vnis = list(get("VNIS").unwrap_or(""))
            .map(|v| v.parse::<Vni>().map_err(|e| ClusterError(format!("VNIS: {e}"))))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let cluster = Self {
            asn,
            underlay,
            hosts,
            reflectors,
            local,
            underlay_device,
            vnis,
        };
        cluster.validate()?;
        Ok(cluster)
    }

    /// Checks what [`Cluster::parse`] checks, for a description built by hand.
    pub fn validate(&self) -> Result<(), ClusterError> {
        // 23456 is AS_TRANS, which no AS may use.
        if self.asn == 0 || self.asn == 23456 {
            return error(format!("AS = {} is not an AS number a network may use", self.asn));
        }
        if self.hosts.is_empty() {
            return error("HOSTS is empty: list every host's underlay address");
        }
        let mut seen = BTreeSet::new();
        for h in &self.hosts {
            if !seen.insert(*h) {
                return error(format!("HOSTS lists {h} twice"));
            }
            if !self.underlay.contains(*h) {
                return error(format!(
                    "HOSTS: {h} is not in the underlay network {} (BGP and VXLAN stay on the underlay)",
                    self.underlay
                ));
            }
            if h.is_unspecified() || h.is_broadcast() || h.is_multicast() || h.is_loopback() {
                return error(format!("HOSTS: {h} cannot be a host's underlay address"));
            }
        }
        if self.reflectors == 0 {
            return error("REFLECTORS = 0: at least one host must be a route reflector");
        }
        if let Some(local) = self.local
            && !self.hosts.contains(&local)
        {
            return error(format!("LOCAL = {local} is not one of HOSTS"));
        }
        Ok(())
    }

    /// The route reflectors: the first `reflectors` hosts.
    pub fn reflector_addresses(&self) -> &[Ipv4Addr] {
        &self.hosts[..self.reflectors.min(self.hosts.len())]
    }

    /// The role of host `ip` (`None` when it is not in the cluster).
    pub fn role_of(&self, ip: Ipv4Addr) -> Option<Role> {
        if self.reflector_addresses().contains(&ip) {
            Some(Role::Reflector)
        } else if self.hosts.contains(&ip) {
            Some(Role::Client)
        } else {
            None
        }
    }

    /// The description in template syntax (what [`Cluster::parse`] reads back).
    pub fn to_template(&self) -> String {
        let join = |items: Vec<String>| items.join(" ");
        let mut out = format!(
            "AS = {}\nUNDERLAY = {}\nHOSTS = \"{}\"\nREFLECTORS = {}\n",
            self.asn,
            self.underlay,
            join(self.hosts.iter().map(ToString::to_string).collect()),
            self.reflectors
        );
        if let Some(local) = self.local {
            out.push_str(&format!("LOCAL = {local}\n"));
        }
        if let Some(dev) = &self.underlay_device {
            out.push_str(&format!("UNDERLAY_DEVICE = {dev}\n"));
        }
        if !self.vnis.is_empty() {
            out.push_str(&format!(
                "VNIS = \"{}\"\n",
                join(self.vnis.iter().map(ToString::to_string).collect())
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: &str = "# the edge cluster\nAS = 65000\nUNDERLAY = 10.0.0.0/24\n\
                         HOSTS = \"10.0.0.2 10.0.0.3, 10.0.0.4\"  # in order\n";

    #[test]
    fn reads_a_description_with_defaults() {
        let c = Cluster::parse(THREE).unwrap();
        assert_eq!(c.asn, 65000);
        assert_eq!(c.hosts.len(), 3);
        assert_eq!(c.reflectors, DEFAULT_REFLECTORS);
        assert_eq!(c.reflector_addresses().len(), 2);
        assert_eq!(c.role_of("10.0.0.3".parse().unwrap()), Some(Role::Reflector));
        assert_eq!(c.role_of("10.0.0.4".parse().unwrap()), Some(Role::Client));
        assert_eq!(c.role_of("10.0.0.9".parse().unwrap()), None);
        assert_eq!(Cluster::parse(&c.to_template()).unwrap(), c);
        let full = format!("{THREE}REFLECTORS = 5\nLOCAL = 10.0.0.4\nUNDERLAY_DEVICE = scwpriv0\nvnis = \"200 100\"\n");
        let c = Cluster::parse(&full).unwrap();
        assert_eq!(
            c.reflector_addresses().len(),
            3,
            "more reflectors than hosts: all of them"
        );
        assert_eq!(c.local, Some("10.0.0.4".parse().unwrap()));
        assert_eq!(c.underlay_device.as_ref().map(IfName::as_str), Some("scwpriv0"));
        assert_eq!(c.vnis.iter().map(|v| v.get()).collect::<Vec<_>>(), [100, 200]);
        assert_eq!(Cluster::parse(&c.to_template()).unwrap(), c);
    }

    #[test]
    fn refuses_bad_descriptions_naming_the_attribute() {
        let cases = [
            ("UNDERLAY = 10.0.0.0/24\nHOSTS = 10.0.0.2", "AS is missing"),
            (
                "AS = 0\nUNDERLAY = 10.0.0.0/24\nHOSTS = 10.0.0.2",
                "AS = 0 is not an AS number",
            ),
            ("AS = x\nUNDERLAY = 10.0.0.0/24\nHOSTS = 10.0.0.2", "AS = \"x\""),
            (
                "AS = 1\nUNDERLAY = 10.0.0.1/24\nHOSTS = 10.0.0.2",
                "UNDERLAY: 10.0.0.1/24 has host bits set",
            ),
            ("AS = 1\nUNDERLAY = 10.0.0.0/24\nHOSTS = \"\"", "HOSTS is missing"),
            (
                "AS = 1\nUNDERLAY = 10.0.0.0/24\nHOSTS = \"10.0.0.2 10.0.0.2\"",
                "HOSTS lists 10.0.0.2 twice",
            ),
            (
                "AS = 1\nUNDERLAY = 10.0.0.0/24\nHOSTS = 10.0.1.2",
                "10.0.1.2 is not in the underlay network 10.0.0.0/24",
            ),
            (
                "AS = 1\nUNDERLAY = 10.0.0.0/24\nHOSTS = host1",
                "HOSTS: \"host1\" is not an IPv4 address",
            ),
            (
                "AS = 1\nUNDERLAY = 10.0.0.0/24\nHOSTS = 10.0.0.2\nREFLECTORS = 0",
                "REFLECTORS = 0",
            ),
            (
                "AS = 1\nUNDERLAY = 10.0.0.0/24\nHOSTS = 10.0.0.2\nLOCAL = 10.0.0.3",
                "LOCAL = 10.0.0.3 is not one of HOSTS",
            ),
            (
                "AS = 1\nUNDERLAY = 10.0.0.0/24\nHOSTS = 10.0.0.2\nVNIS = 0",
                "VNIS: 0 is not a VXLAN",
            ),
            (
                "AS = 1\nUNDERLAY = 10.0.0.0/24\nHOSTS = 10.0.0.2\nUNDERLAY_DEVICE = \"a b\"",
                "UNDERLAY_DEVICE",
            ),
            (
                "AS = 1\nUNDERLAY = 10.0.0.0/24\nHOSTS = 10.0.0.2\nHOST = 10.0.0.3",
                "HOST is not an attribute",
            ),
            (
                "AS = 1\nAS = 2\nUNDERLAY = 10.0.0.0/24\nHOSTS = 10.0.0.2",
                "AS is given twice",
            ),
            ("AS = [ X = 1 ]", "AS must be a single value"),
            ("AS = \"1", "template syntax error"),
        ];
        for (text, expected) in cases {
            let e = Cluster::parse(text).unwrap_err().to_string();
            assert!(e.contains(expected), "{text:?}: {e:?} should contain {expected:?}");
        }
    }
}
