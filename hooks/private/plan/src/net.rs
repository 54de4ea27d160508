//! IPv4 networks (`10.0.0.0/24`) and VXLAN network identifiers.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: an address whose host bits are zero, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    len: u8,
}

impl Ipv4Net {
    /// The network `addr/len`; refused when `len` > 32 or host bits are set
    /// (`10.0.0.5/24` is written `10.0.0.0/24`).
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Self, String> {
        if len > 32 {
            return Err(format!("{addr}/{len}: a prefix length is at most 32"));
        }
        let net = Self { addr, len };
        let network = Ipv4Addr::from(u32::from(addr) & net.mask());
        if network != addr {
            return Err(format!(
                "{addr}/{len} has host bits set (the network is {network}/{len})"
            ));
        }
        Ok(net)
    }

    fn mask(&self) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0)
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `ip` lies in the network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl TryFrom<String> for Ipv4Net {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Ipv4Net> for String {
    fn from(n: Ipv4Net) -> String {
        n.to_string()
    }
}

impl FromStr for Ipv4Net {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a network (address/prefix length, like 10.0.0.0/24)"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not a network: {addr:?} is not an IPv4 address"))?;
        let len: u8 = len
            .parse()
            .map_err(|_| format!("{s:?} is not a network: {len:?} is not a prefix length"))?;
        Self::new(addr, len)
    }
}

/// The largest VXLAN network identifier (24 bits).
pub const VNI_MAX: u32 = 16_777_215;

/// A VXLAN network identifier, 1 to 16777215: the network's `VLAN_ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Vni(u32);

/// Where the VNIs of networks without a `VLAN_ID` start: oned gives a
/// custom `VN_MAD` no automatic `VLAN_ID` (`VirtualNetworkPool::set_vlan_id`
/// does only for its own drivers), so such a network's VNI is this base plus
/// its network id: unique among the networks of one oned, the same on every
/// host, and known without asking oned. A `VLAN_ID` given by hand must stay
/// below it.
pub const AUTO_VNI_BASE: u32 = 1_000_000;

impl TryFrom<u32> for Vni {
    type Error = String;

    fn try_from(n: u32) -> Result<Self, String> {
        Self::new(n)
    }
}

impl From<Vni> for u32 {
    fn from(v: Vni) -> u32 {
        v.0
    }
}

impl Vni {
    /// The VNI of a network: its `VLAN_ID` when it has one (below
    /// [`AUTO_VNI_BASE`]), else [`AUTO_VNI_BASE`] + its network id.
    pub fn of_network(vlan_id: Option<u32>, network_id: u32) -> Result<Self, String> {
        match vlan_id {
            Some(v) if v >= AUTO_VNI_BASE => Err(format!(
                "{v} is reserved for networks without a VLAN_ID (VNIs from {AUTO_VNI_BASE} are {AUTO_VNI_BASE} + \
                 the network's id): choose a VLAN_ID below {AUTO_VNI_BASE}, or none"
            )),
            Some(v) => Self::new(v),
            None => AUTO_VNI_BASE
                .checked_add(network_id)
                .ok_or_else(|| format!("network id {network_id} is too large for an automatic VNI"))
                .and_then(Self::new),
        }
    }

    pub fn new(n: u32) -> Result<Self, String> {
        if (1..=VNI_MAX).contains(&n) {
            Ok(Self(n))
        } else {
            Err(format!("{n} is not a VXLAN network identifier (1 to {VNI_MAX})"))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// The name of the VXLAN device the driver makes for this VNI:
    /// `vxlan<VNI>` (at most 13 bytes, whatever the VNI: a valid interface
    /// name).
    pub fn vxlan_device(self) -> String {
        format!("vxlan{}", self.0)
    }
}

impl fmt::Display for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Vni {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let n: u32 = s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a VXLAN network identifier (1 to {VNI_MAX})"))?;
        Self::new(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let n: Ipv4Net = "10.0.0.0/24".parse().unwrap();
        assert!(n.contains("10.0.0.254".parse().unwrap()));
        assert!(!n.contains("10.0.1.1".parse().unwrap()));
        assert_eq!(n.to_string(), "10.0.0.0/24");
        let all: Ipv4Net = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        let one: Ipv4Net = "10.0.0.2/32".parse().unwrap();
        assert!(one.contains("10.0.0.2".parse().unwrap()) && !one.contains("10.0.0.3".parse().unwrap()));
        for bad in ["10.0.0.5/24", "10.0.0.0/33", "10.0.0.0", "10.0.0/24", "10.0.0.0/x"] {
            assert!(bad.parse::<Ipv4Net>().is_err(), "{bad}");
        }
        assert!(
            "10.0.0.5/24"
                .parse::<Ipv4Net>()
                .unwrap_err()
                .contains("the network is 10.0.0.0/24")
        );
    }

    #[test]
    fn vnis() {
        assert_eq!("100".parse::<Vni>().unwrap().vxlan_device(), "vxlan100");
        assert_eq!(Vni::new(VNI_MAX).unwrap().vxlan_device(), "vxlan16777215");
        assert!(Vni::new(0).is_err() && Vni::new(VNI_MAX + 1).is_err());
        assert!("x".parse::<Vni>().is_err());
    }
}
