//! What one public NIC needs on the host, read from the typed NIC.
//!
//! Every value that reaches the kernel comes from here: addresses are typed
//! by `opennebula::vm::Nic` already, and [`Endpoint::from_nic`] checks that
//! they fit together (the gateway is the other half of the VM's /31, the
//! flexible IP is of the NIC's family, nothing is a loopback, multicast or
//! unspecified address).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use opennebula::attr::IfName;
use opennebula::vm::{Nic, NicKind, Vm};

use crate::VN_MAD;
use crate::plan::PlanError;

/// Who an endpoint belongs to: a VM's NIC or NIC alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner {
    pub vm: u64,
    pub nic_id: u32,
    /// `(ALIAS_ID, PARENT_ID)` for a NIC alias.
    pub alias: Option<(u32, u32)>,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.alias {
            None => write!(f, "VM {} NIC {}", self.vm, self.nic_id),
            Some((alias, parent)) => write!(
                f,
                "VM {} NIC_ALIAS {} (alias {alias} of NIC {parent})",
                self.vm, self.nic_id
            ),
        }
    }
}

/// The addresses of one public NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Public {
    /// A flexible IPv4, NATed 1:1 to the VM's private address; the VM's
    /// gateway is the other half of its /31, answered by proxy ARP.
    V4 {
        ip: Ipv4Addr,
        gateway: Ipv4Addr,
        external: Ipv4Addr,
    },
    /// A flexible IPv6 /64 (`prefix` is its first address), routed to the
    /// VM; the VM's gateway is answered by proxy NDP.
    V6 {
        ip: Ipv6Addr,
        gateway: Ipv6Addr,
        prefix: Ipv6Addr,
    },
}

impl Public {
    /// Whether `ip` lies in the /64 (IPv6 only).
    pub fn ip_in_prefix(ip: Ipv6Addr, prefix: Ipv6Addr) -> bool {
        u128::from(ip) >> 64 == u128::from(prefix) >> 64
    }
}

/// The VM's port on the bridge that an endpoint's traffic comes through:
/// the NIC's tap (`TARGET`) and MAC address; for a NIC alias, those of
/// its parent NIC (the guest puts the alias's address on the parent's
/// interface). The port guard lets only this MAC and the endpoint's
/// addresses leave the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    /// The tap's name (an interface name, kept `Copy` like a bridge's).
    pub tap: BridgeName,
    pub mac: [u8; 6],
}

impl Port {
    /// The MAC address as `ip` and `nft` write it.
    pub fn mac_text(&self) -> String {
        mac_text(self.mac)
    }
}

/// `02:00:ac:1e:00:02`.
pub fn mac_text(mac: [u8; 6]) -> String {
    opennebula::hex::mac(mac)
}

/// One public NIC (or NIC alias) as the host sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub owner: Owner,
    pub bridge: BridgeName,
    pub public: Public,
    /// The port its traffic comes through (`None` only for an endpoint
    /// recorded by a version of the driver that did not guard ports).
    pub port: Option<Port>,
}

/// A bridge name (an `IfName`, kept `Copy` for the planner's tables).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BridgeName {
    len: u8,
    bytes: [u8; 15],
}

impl BridgeName {
    /// From a validated interface name (at most 15 bytes of `[A-Za-z0-9._-]`).
    pub fn new(name: &IfName) -> Self {
        let mut bytes = [0u8; 15];
        let src = name.as_str().as_bytes();
        let len = src.len().min(15);
        bytes[..len].copy_from_slice(&src[..len]);
        Self { len: len as u8, bytes }
    }

    /// Parses and validates a name (as `IfName` does).
    pub fn parse(text: &str) -> Result<Self, String> {
        let name: IfName = text.parse().map_err(|e: opennebula::attr::DocError| e.problem)?;
        Ok(Self::new(&name))
    }

    pub fn as_str(&self) -> &str {
        // Built from an `IfName`, which is ASCII.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl TryFrom<String> for BridgeName {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).map_err(|e| format!("{s:?}: {e}"))
    }
}

impl From<BridgeName> for String {
    fn from(b: BridgeName) -> String {
        b.as_str().to_owned()
    }
}

impl fmt::Display for BridgeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for BridgeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.public {
            Public::V4 { ip, gateway, external } => write!(
                f,
                "{}: {external} <-> {ip} (gateway {gateway}) on {}",
                self.owner, self.bridge
            ),
            Public::V6 { ip, gateway, prefix } => write!(
                f,
                "{}: {prefix}/64 -> {ip} (gateway {gateway}) on {}",
                self.owner, self.bridge
            ),
        }
    }
}

fn bad(nic: &Nic, attribute: &str, problem: impl Into<String>) -> PlanError {
    PlanError::Nic {
        path: format!("{}/{attribute}", nic.attrs.path()),
        problem: problem.into(),
    }
}

fn missing(nic: &Nic, attribute: &str, why: &str) -> PlanError {
    bad(nic, attribute, format!("is missing: {why}"))
}

/// Refuses addresses that can never be a VM's, a gateway or a flexible IP.
fn check_v4(nic: &Nic, attribute: &str, a: Ipv4Addr) -> Result<(), PlanError> {
    let problem = if a.is_unspecified() {
        "is the unspecified address"
    } else if a.is_loopback() {
        "is a loopback address"
    } else if a.is_multicast() {
        "is a multicast address"
    } else if a.is_broadcast() {
        "is the broadcast address"
    } else if a.is_link_local() {
        "is a link-local address"
    } else {
        return Ok(());
    };
    Err(bad(nic, attribute, format!("= {a} {problem}")))
}

fn check_v6(nic: &Nic, attribute: &str, a: Ipv6Addr) -> Result<(), PlanError> {
    let problem = if a.is_unspecified() {
        "is the unspecified address"
    } else if a.is_loopback() {
        "is the loopback address"
    } else if a.is_multicast() {
        "is a multicast address"
    } else if a.is_unicast_link_local() {
        "is a link-local address"
    } else if a.to_ipv4_mapped().is_some() {
        "is an IPv4-mapped address"
    } else {
        return Ok(());
    };
    Err(bad(nic, attribute, format!("= {a} {problem}")))
}

/// The port of `nic`: its own `TARGET` and `MAC`, or for a NIC alias those
/// of its parent, which must be a NIC of driver `scaleway` on the same
/// bridge (`nics`: every NIC of the driver in the document).
fn port_of(nic: &Nic, nics: &[Nic]) -> Result<Port, PlanError> {
    let owner = match nic.kind {
        NicKind::Nic => nic,
        NicKind::Alias { parent_id, .. } => nics
            .iter()
            .find(|n| n.kind == NicKind::Nic && n.nic_id == parent_id)
            .filter(|p| p.bridge.is_some() && p.bridge == nic.bridge)
            .ok_or_else(|| {
                bad(
                    nic,
                    "PARENT_ID",
                    format!(
                        "= {parent_id} is not a NIC of network driver scaleway on bridge {}: a public NIC alias \
                         must be an alias of a public NIC (its traffic comes through the parent's port)",
                        nic.bridge.as_ref().map_or("(none)", |b| b.as_str())
                    ),
                )
            })?,
    };
    let why = "the driver lets only the NIC's own MAC and addresses leave its port on the bridge";
    let tap = owner.target.as_ref().ok_or_else(|| missing(owner, "TARGET", why))?;
    let mac = owner.mac.ok_or_else(|| missing(owner, "MAC", why))?;
    if mac.0[0] & 1 == 1 || mac.0 == [0; 6] {
        return Err(bad(
            owner,
            "MAC",
            format!("= {} is not a unicast address", mac_text(mac.0)),
        ));
    }
    Ok(Port {
        tap: BridgeName::new(tap),
        mac: mac.0,
    })
}

impl Endpoint {
    /// The endpoint of one typed NIC of driver `scaleway` of VM `vm`
    /// (`nics`: every NIC of the driver in the document, to find an
    /// alias's parent).
    pub fn from_nic(vm: u64, nic: &Nic, nics: &[Nic]) -> Result<Self, PlanError> {
        let owner = Owner {
            vm,
            nic_id: nic.nic_id,
            alias: match nic.kind {
                NicKind::Nic => None,
                NicKind::Alias {
                    alias_id, parent_id, ..
                } => Some((alias_id, parent_id)),
            },
        };
        let bridge = nic.bridge.as_ref().ok_or_else(|| {
            missing(
                nic,
                "BRIDGE",
                "the scaleway driver routes the NIC through a host bridge; set BRIDGE in the virtual network",
            )
        })?;
        let public = match (nic.ip, nic.ip6) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    nic,
                    "IP6",
                    "is set together with IP: a scaleway NIC is either IPv4 (one flexible IP) or IPv6 \
                     (one flexible /64), never both",
                ));
            }
            (Some(ip), None) => Self::v4(nic, ip)?,
            (None, Some(ip)) => Self::v6(nic, ip)?,
            (None, None) => {
                return Err(bad(
                    nic,
                    "IP",
                    "is missing (and so is IP6): the NIC has no address from its scaleway address range",
                ));
            }
        };
        Ok(Self {
            owner,
            bridge: BridgeName::new(bridge),
            public,
            port: Some(port_of(nic, nics)?),
        })
    }

    fn v4(nic: &Nic, ip: Ipv4Addr) -> Result<Public, PlanError> {
        let gateway = nic
            .gateway
            .ok_or_else(|| missing(nic, "GATEWAY", "the VM's gateway is the other half of its /31"))?;
        let external = match nic.external_ip {
            None => {
                return Err(missing(
                    nic,
                    "EXTERNAL_IP",
                    "the flexible IP of the address range is needed for the NAT",
                ));
            }
            Some(IpAddr::V6(a)) => {
                return Err(bad(
                    nic,
                    "EXTERNAL_IP",
                    format!("= {a} is an IPv6 address, but the NIC's IP {ip} is IPv4"),
                ));
            }
            Some(IpAddr::V4(a)) => a,
        };
        check_v4(nic, "IP", ip)?;
        check_v4(nic, "GATEWAY", gateway)?;
        check_v4(nic, "EXTERNAL_IP", external)?;
        let partner = Ipv4Addr::from(u32::from(ip) ^ 1);
        if gateway != partner {
            return Err(bad(
                nic,
                "GATEWAY",
                format!(
                    "= {gateway} is not the other address of IP {ip}'s /31 ({partner}): the scaleway \
                     driver answers only for that gateway"
                ),
            ));
        }
        if external == ip {
            return Err(bad(
                nic,
                "EXTERNAL_IP",
                format!("= {external} is the NIC's private IP too"),
            ));
        }
        Ok(Public::V4 { ip, gateway, external })
    }

    fn v6(nic: &Nic, ip: Ipv6Addr) -> Result<Public, PlanError> {
        let gateway = nic
            .gateway6
            .ok_or_else(|| missing(nic, "GATEWAY6", "the host answers for the VM's IPv6 gateway"))?;
        let prefix = match nic.external_ip {
            None => {
                return Err(missing(
                    nic,
                    "EXTERNAL_IP",
                    "the flexible IPv6 /64 of the address range is routed to the VM",
                ));
            }
            Some(IpAddr::V4(a)) => {
                return Err(bad(
                    nic,
                    "EXTERNAL_IP",
                    format!("= {a} is an IPv4 address, but the NIC's IP6 {ip} is IPv6"),
                ));
            }
            Some(IpAddr::V6(a)) => Ipv6Addr::from(u128::from(a) & !((1u128 << 64) - 1)),
        };
        check_v6(nic, "IP6", ip)?;
        check_v6(nic, "GATEWAY6", gateway)?;
        check_v6(nic, "EXTERNAL_IP", prefix)?;
        if gateway == ip {
            return Err(bad(nic, "GATEWAY6", format!("= {gateway} is the NIC's IP6 too")));
        }
        Ok(Public::V6 { ip, gateway, prefix })
    }
}

/// The endpoints one action works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The endpoints to act on, in document order.
    pub endpoints: Vec<Endpoint>,
    /// A NIC is being hot-attached or detached (some NIC of the VM, of any
    /// driver, has `ATTACH="YES"`): only our NICs with `ATTACH="YES"`, and
    /// the aliases of such a NIC, are selected; none of ours may be.
    pub hotplug: bool,
    /// The security group rules of the selected endpoints' NICs.
    pub filters: Vec<crate::filter::NicFilter>,
}

/// The endpoints an action works on: every NIC and NIC alias of driver
/// `scaleway`, or during a hot attach/detach only the NIC being attached or
/// detached (and its aliases). Every NIC of ours is validated.
pub fn select(vm: &Vm) -> Result<Selection, PlanError> {
    let hotplug = vm.is_hotplug();
    let all = vm.nics_of(VN_MAD).map_err(PlanError::Document)?;
    let endpoints = vm
        .touched_nics_of(VN_MAD)
        .map_err(PlanError::Document)?
        .iter()
        .map(|n| Endpoint::from_nic(vm.id, n, &all))
        .collect::<Result<Vec<_>, _>>()?;
    let filters = crate::filter::select(vm, &endpoints)?;
    Ok(Selection {
        endpoints,
        hotplug,
        filters,
    })
}

#[cfg(test)]
mod tests;
