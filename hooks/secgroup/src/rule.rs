//! One security group rule as OpenNebula's own network drivers read it
//! (`src/vnm_mad/remotes/lib/security_groups.rb`), validated as oned
//! validates it (`SecurityGroup::is_valid`) before anything uses it.
//!
//! The eight rule types of OpenNebula come from which attributes are set:
//! without `IP` and `SIZE` a rule concerns every address (type 1
//! `protocol`, 2a `portrange` with `RANGE`, 2b/2c `icmp_type`/`icmpv6_type`);
//! with either of them it concerns the address ranges `IP`, `IP6_GLOBAL`,
//! `IP6_ULA` and `IP6` each followed by `SIZE` addresses (types 3, 4a, 4b,
//! 4c), and none when none of those is complete (OpenNebula then adds
//! nothing for the rule). oned expands a rule naming `NETWORK_ID` into one
//! rule per address range of that network before the driver sees it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use opennebula::attr::{Attributes, DocError};
use serde::{Deserialize, Serialize};

/// Which traffic a rule lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// To the VM.
    Inbound,
    /// From the VM.
    Outbound,
}

/// `PROTOCOL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    All,
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    /// ESP (OpenNebula's `IPSEC`).
    Ipsec,
}

/// Ports `first` to `last` (one port when equal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

/// Consecutive addresses `first` to `last` of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AddrRange {
    V4 { first: Ipv4Addr, last: Ipv4Addr },
    V6 { first: Ipv6Addr, last: Ipv6Addr },
}

/// The addresses a rule concerns (the source of inbound traffic, the
/// destination of outbound traffic).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// Every address.
    Any,
    /// These ranges (possibly none: then the rule lets nothing through).
    Ranges(Vec<AddrRange>),
}

/// One rule of a security group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// `SECURITY_GROUP_ID`.
    pub group: u32,
    pub direction: Direction,
    pub protocol: Protocol,
    /// `RANGE` (TCP and UDP only); empty: every port.
    pub ports: Vec<PortRange>,
    /// `ICMP_TYPE` (ICMP) or `ICMPV6_TYPE` (ICMPv6).
    pub icmp_type: Option<u8>,
    pub target: Target,
}

/// OpenNebula's multiport limit: 15 ports, a range counting for two.
pub const MAX_PORTS: usize = 15;

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4 { first, last } if first == last => write!(f, "{first}"),
            Self::V4 { first, last } => write!(f, "{first}-{last}"),
            Self::V6 { first, last } if first == last => write!(f, "{first}"),
            Self::V6 { first, last } => write!(f, "{first}-{last}"),
        }
    }
}

impl AddrRange {
    /// `size` addresses from `first`; `None` for none (`SIZE` 0), or when
    /// they would go past the family's last address.
    pub fn from_size(first: IpAddr, size: u64) -> Option<Self> {
        let span = size.checked_sub(1)?;
        match first {
            IpAddr::V4(a) => {
                let last = u64::from(u32::from(a)).checked_add(span)?;
                Some(Self::V4 {
                    first: a,
                    last: u32::try_from(last).ok()?.into(),
                })
            }
            IpAddr::V6(a) => Some(Self::V6 {
                first: a,
                last: u128::from(a).checked_add(u128::from(span))?.into(),
            }),
        }
    }
}

/// `RANGE` as OpenNebula accepts it: `22`, `80:90`, comma-separated, each
/// port at most 65535, at most [`MAX_PORTS`] ports (a range counts two).
pub fn parse_ports(path: &str, value: &str) -> Result<Vec<PortRange>, DocError> {
    let bad = |problem: String| DocError::new(path, problem);
    let port = |s: &str| -> Result<u16, DocError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!(
                "{value:?} is not a port list such as 22,80:90 (ports and first:last ranges, separated by commas)"
            )));
        }
        s.parse::<u16>()
            .map_err(|_| bad(format!("{value:?}: port {s} is out of bounds 0-65535")))
    };
    let mut out = Vec::new();
    let mut counted = 0;
    for item in value.split(',') {
        let range = match item.split_once(':') {
            Some((a, b)) => {
                let (first, last) = (port(a)?, port(b)?);
                if first > last {
                    return Err(bad(format!("{value:?}: range {item} begins after it ends")));
                }
                counted += 2;
                PortRange { first, last }
            }
            None => {
                let p = port(item)?;
                counted += 1;
                PortRange { first: p, last: p }
            }
        };
        if counted > MAX_PORTS {
            return Err(bad(format!(
                "{value:?}: not more than {MAX_PORTS} ports can be given in a rule (a range counts two)"
            )));
        }
        out.push(range);
    }
    Ok(out)
}

impl Rule {
    /// Reads one `SECURITY_GROUP_RULE` of a VM document.
    pub fn from_attrs(a: &Attributes) -> Result<Self, DocError> {
        let path = |name: &str| format!("{}/{name}", a.path());
        let text = |name: &str| a.get(name).map(str::trim).filter(|v| !v.is_empty());
        let group = a.require::<u32>("SECURITY_GROUP_ID")?;
        let protocol = match text("PROTOCOL").map(str::to_ascii_uppercase).as_deref() {
            Some("ALL") => Protocol::All,
            Some("TCP") => Protocol::Tcp,
            Some("UDP") => Protocol::Udp,
            Some("ICMP") => Protocol::Icmp,
            Some("ICMPV6") => Protocol::Icmpv6,
            Some("IPSEC") => Protocol::Ipsec,
            Some(other) => {
                return Err(DocError::new(
                    path("PROTOCOL"),
                    format!("{other:?} is not one of ALL, TCP, UDP, ICMP, ICMPV6, IPSEC"),
                ));
            }
            None => return Err(DocError::missing(path("PROTOCOL"))),
        };
        let direction = match text("RULE_TYPE").map(str::to_ascii_uppercase).as_deref() {
            Some("INBOUND") => Direction::Inbound,
            Some("OUTBOUND") => Direction::Outbound,
            Some(other) => {
                return Err(DocError::new(
                    path("RULE_TYPE"),
                    format!("{other:?} is not INBOUND or OUTBOUND"),
                ));
            }
            None => return Err(DocError::missing(path("RULE_TYPE"))),
        };
        let ports = match text("RANGE") {
            None => Vec::new(),
            Some(_) if !matches!(protocol, Protocol::Tcp | Protocol::Udp) => {
                return Err(DocError::new(path("RANGE"), "is supported only for TCP and UDP"));
            }
            Some(v) => parse_ports(&path("RANGE"), v)?,
        };
        let icmp = |name: &str, for_protocol: Protocol| -> Result<Option<u8>, DocError> {
            match text(name) {
                None => Ok(None),
                Some(_) if protocol != for_protocol => Err(DocError::new(
                    path(name),
                    format!("is supported only for protocol {}", name.trim_end_matches("_TYPE")),
                )),
                Some(v) => v
                    .parse::<u8>()
                    .map(Some)
                    .map_err(|_| DocError::new(path(name), format!("{v:?} is not an ICMP type (0 to 255)"))),
            }
        };
        let icmp_type = match (
            icmp("ICMP_TYPE", Protocol::Icmp)?,
            icmp("ICMPV6_TYPE", Protocol::Icmpv6)?,
        ) {
            (Some(t), None) | (None, Some(t)) => Some(t),
            _ => None,
        };
        let size = a.parse::<u64>("SIZE")?;
        let first = a.parse::<IpAddr>("IP")?;
        let target = if first.is_none() && size.is_none() {
            Target::Any
        } else {
            let mut ranges = Vec::new();
            let starts = [
                first,
                a.parse::<Ipv6Addr>("IP6_GLOBAL")?.map(IpAddr::V6),
                a.parse::<Ipv6Addr>("IP6_ULA")?.map(IpAddr::V6),
                a.parse::<Ipv6Addr>("IP6")?.map(IpAddr::V6),
            ];
            for start in starts.into_iter().flatten() {
                let Some(size) = size else { continue };
                if size == 0 {
                    continue;
                }
                ranges.push(AddrRange::from_size(start, size).ok_or_else(|| {
                    DocError::new(
                        path("SIZE"),
                        format!("{size} addresses from {start} go past the last address"),
                    )
                })?);
            }
            Target::Ranges(ranges)
        };
        Ok(Self {
            group,
            direction,
            protocol,
            ports,
            icmp_type,
            target,
        })
    }

    /// What [`Rule::from_attrs`] guarantees, for a rule that arrives in
    /// another form (the root helper's request, the host record).
    pub fn check(&self) -> Result<(), String> {
        if !self.ports.is_empty() && !matches!(self.protocol, Protocol::Tcp | Protocol::Udp) {
            return Err("ports are supported only for TCP and UDP".into());
        }
        let counted: usize = self.ports.iter().map(|p| if p.first == p.last { 1 } else { 2 }).sum();
        if counted > MAX_PORTS || self.ports.iter().any(|p| p.first > p.last) {
            return Err("a port list longer than 15 or a range that begins after it ends".into());
        }
        if self.icmp_type.is_some() && !matches!(self.protocol, Protocol::Icmp | Protocol::Icmpv6) {
            return Err("an ICMP type is supported only for ICMP and ICMPv6".into());
        }
        if let Target::Ranges(ranges) = &self.target {
            let backwards = ranges.iter().any(|r| match r {
                AddrRange::V4 { first, last } => first > last,
                AddrRange::V6 { first, last } => first > last,
            });
            if backwards {
                return Err("an address range that begins after it ends".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pairs: &[(&str, &str)]) -> Result<Rule, String> {
        let mut all = vec![("SECURITY_GROUP_ID", "100")];
        all.extend_from_slice(pairs);
        Rule::from_attrs(&Attributes::from_pairs("SECURITY_GROUP_RULE#1", all)).map_err(|e| e.to_string())
    }

    #[test]
    fn the_eight_rule_types() {
        let r = rule(&[("PROTOCOL", "all"), ("RULE_TYPE", "inbound")]).unwrap();
        assert_eq!(
            (r.protocol, r.direction, &r.target),
            (Protocol::All, Direction::Inbound, &Target::Any)
        );
        let r = rule(&[("PROTOCOL", "TCP"), ("RULE_TYPE", "OUTBOUND"), ("RANGE", "22,80:90")]).unwrap();
        assert_eq!(
            r.ports,
            [PortRange { first: 22, last: 22 }, PortRange { first: 80, last: 90 }]
        );
        let r = rule(&[("PROTOCOL", "ICMP"), ("RULE_TYPE", "INBOUND"), ("ICMP_TYPE", "8")]).unwrap();
        assert_eq!(r.icmp_type, Some(8));
        let r = rule(&[("PROTOCOL", "ICMPV6"), ("RULE_TYPE", "INBOUND"), ("ICMPV6_TYPE", "128")]).unwrap();
        assert_eq!(r.icmp_type, Some(128));
        let r = rule(&[
            ("PROTOCOL", "UDP"),
            ("RULE_TYPE", "INBOUND"),
            ("IP", "10.0.0.250"),
            ("SIZE", "10"),
            ("RANGE", "53"),
        ])
        .unwrap();
        assert_eq!(r.target.to_string_for_tests(), "10.0.0.250-10.0.1.3");
        // An address range of a network (NETWORK_ID expanded by oned): IPv4
        // and its IPv6 prefixes, each SIZE long.
        let r = rule(&[
            ("PROTOCOL", "ALL"),
            ("RULE_TYPE", "INBOUND"),
            ("NETWORK_ID", "3"),
            ("AR_ID", "0"),
            ("TYPE", "IP4_6"),
            ("IP", "10.1.0.1"),
            ("SIZE", "2"),
            ("IP6_GLOBAL", "2001:db8::1"),
        ])
        .unwrap();
        assert_eq!(
            r.target.to_string_for_tests(),
            "10.1.0.1-10.1.0.2 2001:db8::1-2001:db8::2"
        );
        // SIZE without an address: no address at all (OpenNebula adds nothing).
        let r = rule(&[("PROTOCOL", "TCP"), ("RULE_TYPE", "INBOUND"), ("SIZE", "4")]).unwrap();
        assert_eq!(r.target, Target::Ranges(Vec::new()));
    }

    #[test]
    fn what_oned_refuses_is_refused_here_too() {
        for (pairs, expected) in [
            (
                vec![("PROTOCOL", "GRE"), ("RULE_TYPE", "INBOUND")],
                "PROTOCOL \"GRE\" is not one of",
            ),
            (
                vec![("PROTOCOL", "TCP"), ("RULE_TYPE", "SIDEWAYS")],
                "RULE_TYPE \"SIDEWAYS\"",
            ),
            (vec![("RULE_TYPE", "INBOUND")], "PROTOCOL"),
            (
                vec![("PROTOCOL", "ICMP"), ("RULE_TYPE", "INBOUND"), ("RANGE", "22")],
                "RANGE is supported only for TCP and UDP",
            ),
            (
                vec![("PROTOCOL", "TCP"), ("RULE_TYPE", "INBOUND"), ("RANGE", "22;rm")],
                "is not a port list",
            ),
            (
                vec![("PROTOCOL", "TCP"), ("RULE_TYPE", "INBOUND"), ("RANGE", "70000")],
                "out of bounds",
            ),
            (
                vec![("PROTOCOL", "TCP"), ("RULE_TYPE", "INBOUND"), ("RANGE", "90:80")],
                "begins after it ends",
            ),
            (
                vec![
                    ("PROTOCOL", "TCP"),
                    ("RULE_TYPE", "INBOUND"),
                    ("RANGE", "1:2,3:4,5:6,7:8,9:10,11:12,13:14,15:16"),
                ],
                "not more than 15 ports",
            ),
            (
                vec![("PROTOCOL", "TCP"), ("RULE_TYPE", "INBOUND"), ("ICMP_TYPE", "8")],
                "ICMP_TYPE is supported only for protocol ICMP",
            ),
            (
                vec![("PROTOCOL", "ICMP"), ("RULE_TYPE", "INBOUND"), ("ICMP_TYPE", "300")],
                "not an ICMP type",
            ),
            (
                vec![
                    ("PROTOCOL", "ALL"),
                    ("RULE_TYPE", "INBOUND"),
                    ("IP", "10.0.0.1; drop"),
                    ("SIZE", "1"),
                ],
                "IP",
            ),
            (
                vec![
                    ("PROTOCOL", "ALL"),
                    ("RULE_TYPE", "INBOUND"),
                    ("IP", "255.255.255.255"),
                    ("SIZE", "2"),
                ],
                "go past the last address",
            ),
        ] {
            let e = rule(&pairs).unwrap_err();
            assert!(
                e.contains(expected) && e.contains("SECURITY_GROUP_RULE#1"),
                "{pairs:?}: {e}"
            );
        }
        // Fifteen ports exactly are fine.
        rule(&[
            ("PROTOCOL", "TCP"),
            ("RULE_TYPE", "INBOUND"),
            ("RANGE", "1:2,3:4,5:6,7:8,9:10,11:12,13:14,15"),
        ])
        .unwrap();
    }

    #[test]
    fn a_rule_in_another_form_is_checked() {
        let mut r = rule(&[("PROTOCOL", "TCP"), ("RULE_TYPE", "INBOUND"), ("RANGE", "22")]).unwrap();
        assert_eq!(r.check(), Ok(()));
        r.protocol = Protocol::Icmp;
        assert!(r.check().is_err());
        let json = serde_json::to_string(&rule(&[("PROTOCOL", "ALL"), ("RULE_TYPE", "INBOUND")]).unwrap()).unwrap();
        assert!(serde_json::from_str::<Rule>(&json.replace("\"group\"", "\"gruop\"")).is_err());
    }

    impl Target {
        fn to_string_for_tests(&self) -> String {
            match self {
                Self::Any => "any".into(),
                Self::Ranges(r) => r.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
            }
        }
    }
}
