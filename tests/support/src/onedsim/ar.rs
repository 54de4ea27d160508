//! Address ranges as oned keeps them (`AddressRange::from_attr`) and writes
//! them: in `one.vn.info` (extended, with leases), in the pool (the stored
//! template) and in IPAM driver messages.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};

use opennebula::xml;

use super::Lease;
use super::model::vector_xml;

/// oned's `MAC_PREFIX` default, `02:00`.
const MAC_PREFIX: u32 = 0x0200;

/// `PoolObjectSQL::VM`, packed with the VM id in `ALLOCATED`.
const VM_OBJECT: i64 = 0x0000_0010_0000_0000;

/// The empty lease skeleton oned sends with register/unregister requests.
pub(crate) const ADDRESS_SKELETON: &str = "<ADDRESS><MAC/><IP/><IP6_GLOBAL/><IP6_ULA/><IP6/><SIZE/></ADDRESS>";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ether,
    Ip4,
    Ip6,
    Ip4_6,
    Ip6Static,
    Ip4_6Static,
}

impl Kind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "ETHER" => Self::Ether,
            "IP4" => Self::Ip4,
            "IP6" => Self::Ip6,
            "IP4_6" => Self::Ip4_6,
            "IP6_STATIC" => Self::Ip6Static,
            "IP4_6_STATIC" => Self::Ip4_6Static,
            _ => return None,
        })
    }

    fn ipv4(self) -> bool {
        matches!(self, Self::Ip4 | Self::Ip4_6 | Self::Ip4_6Static)
    }

    /// Addresses from `GLOBAL_PREFIX`/`ULA_PREFIX` and the MAC (SLAAC).
    fn ipv6(self) -> bool {
        matches!(self, Self::Ip6 | Self::Ip4_6)
    }

    fn ipv6_static(self) -> bool {
        matches!(self, Self::Ip6Static | Self::Ip4_6Static)
    }
}

/// An address range.
#[derive(Debug, Clone)]
pub(crate) struct Ar {
    pub id: i64,
    /// The vector attribute (sorted as oned's `std::map`).
    pub attrs: BTreeMap<String, String>,
    kind: Kind,
    ip: u32,
    mac_hi: u32,
    mac_lo: u32,
    size: u64,
    global6: u64,
    ula6: u64,
    ip6: u128,
    /// Leased address index -> VM id.
    pub leases: BTreeMap<u64, i64>,
}

fn mac_to_s(hi: u32, lo: u32) -> String {
    let b = [
        (hi >> 8) & 0xff,
        hi & 0xff,
        lo >> 24,
        (lo >> 16) & 0xff,
        (lo >> 8) & 0xff,
        lo & 0xff,
    ];
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

fn mac_to_i(s: &str) -> Option<(u32, u32)> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut bytes = [0u32; 6];
    for (b, p) in bytes.iter_mut().zip(&parts) {
        *b = u32::from_str_radix(p.trim(), 16).ok().filter(|v| *v <= 0xff)?;
    }
    Some((
        (bytes[0] << 8) | bytes[1],
        (bytes[2] << 24) | (bytes[3] << 16) | (bytes[4] << 8) | bytes[5],
    ))
}

/// The upper 64 bits of an IPv6 prefix; `Some(0)` when empty.
fn prefix6(s: &str) -> Option<u64> {
    if s.is_empty() {
        return Some(0);
    }
    s.parse::<Ipv6Addr>().ok().map(|a| (u128::from(a) >> 64) as u64)
}

/// A pseudo-random MAC suffix (oned draws one for non-IPv4 ranges).
fn random_suffix() -> u32 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    t.rotate_left(13) ^ n.wrapping_mul(0x9e37_79b9) ^ std::process::id()
}

impl Ar {
    /// Validates a range as `AddressRange::from_attr` does, with oned's
    /// messages, and completes it (`AR_ID`, a generated `MAC`).
    pub fn from_attrs(id: i64, mut attrs: BTreeMap<String, String>) -> Result<Self, String> {
        let value = |attrs: &BTreeMap<String, String>, k: &str| attrs.get(k).cloned().unwrap_or_default();
        let kind = Kind::parse(&value(&attrs, "TYPE")).ok_or("Unknown or missing address range TYPE.")?;
        let mut ip = 0;
        if kind.ipv4() {
            ip = value(&attrs, "IP")
                .parse::<Ipv4Addr>()
                .map(u32::from)
                .map_err(|_| "Wrong or empty IP attribute")?;
        } else {
            attrs.remove("IP");
        }
        let (mut global6, mut ula6) = (0, 0);
        if kind.ipv6() {
            global6 = prefix6(&value(&attrs, "GLOBAL_PREFIX")).ok_or("Wrong format for IP6 global address prefix")?;
            ula6 = prefix6(&value(&attrs, "ULA_PREFIX")).ok_or("Wrong format for IP6 unique local address prefix")?;
        } else {
            attrs.remove("GLOBAL_PREFIX");
            attrs.remove("ULA_PREFIX");
        }
        let mut ip6 = 0;
        if kind.ipv6_static() {
            ip6 = value(&attrs, "IP6")
                .parse::<Ipv6Addr>()
                .map(u128::from)
                .map_err(|_| "Wrong or empty IP6 attribute")?;
            let pl: u32 = value(&attrs, "PREFIX_LENGTH")
                .trim()
                .parse()
                .map_err(|_| "Wrong or empty PREFIX_LENGTH")?;
            if value(&attrs, "SIZE").is_empty() {
                let all = if pl <= 64 {
                    u64::MAX
                } else {
                    1u64 << (128 - pl.min(127))
                };
                let mask = if pl <= 64 { all } else { all - 1 };
                attrs.insert("SIZE".into(), (all - ((ip6 as u64) & mask)).to_string());
            }
        } else {
            attrs.remove("IP6");
        }
        let mac = value(&attrs, "MAC");
        let (mac_hi, mac_lo) = if mac.is_empty() {
            let lo = if kind.ipv4() { ip } else { random_suffix() };
            attrs.insert("MAC".into(), mac_to_s(MAC_PREFIX, lo));
            (MAC_PREFIX, lo)
        } else {
            mac_to_i(&mac).ok_or("Wrong format for MAC attribute")?
        };
        let size: u64 = value(&attrs, "SIZE")
            .trim()
            .parse()
            .map_err(|_| "Wrong SIZE for address range")?;
        attrs.insert("AR_ID".into(), id.to_string());
        for internal in [
            "ALLOCATED",
            "USED_LEASES",
            "LEASES",
            "PARENT_NETWORK_AR_ID",
            "PARENT_NETWORK",
        ] {
            attrs.remove(internal);
        }
        Ok(Self {
            id,
            attrs,
            kind,
            ip,
            mac_hi,
            mac_lo,
            size,
            global6,
            ula6,
            ip6,
            leases: BTreeMap::new(),
        })
    }

    /// The range's IPAM driver, if it has one (`internal` is oned's own).
    pub fn ipam_mad(&self) -> Option<&str> {
        self.attrs
            .get("IPAM_MAD")
            .map(String::as_str)
            .filter(|m| !m.is_empty() && *m != "internal")
    }

    pub fn used(&self) -> u64 {
        self.leases.len() as u64
    }

    fn mac_at(&self, index: u64) -> String {
        mac_to_s(self.mac_hi, self.mac_lo.wrapping_add(index as u32))
    }

    fn ip_at(&self, index: u64) -> String {
        Ipv4Addr::from(self.ip.wrapping_add(index as u32)).to_string()
    }

    fn ip6_static_at(&self, index: u64) -> String {
        Ipv6Addr::from(self.ip6.wrapping_add(u128::from(index))).to_string()
    }

    /// SLAAC address of a prefix for the MAC at `index` (`ip6_to_s`).
    fn slaac(&self, prefix: u64, index: u64) -> String {
        let lo = self.mac_lo.wrapping_add(index as u32);
        let eui_hi = ((self.mac_hi ^ 0x0200) << 16) + ((lo & 0xff00_0000) >> 16) + 0xff;
        let eui_lo = 0xfe00_0000 + (lo & 0x00ff_ffff);
        Ipv6Addr::from((u128::from(prefix) << 64) | (u128::from(eui_hi) << 32) | u128::from(eui_lo)).to_string()
    }

    /// The computed attributes after the stored ones, and `USED_LEASES`.
    fn computed_xml(&self) -> String {
        let last = self.size.saturating_sub(1);
        let mut out = format!("<MAC_END>{}</MAC_END>", self.mac_at(last));
        if self.kind.ipv4() {
            out.push_str(&format!("<IP_END>{}</IP_END>", self.ip_at(last)));
        }
        if self.kind.ipv6() {
            for (name, prefix) in [("IP6_ULA", self.ula6), ("IP6_GLOBAL", self.global6)] {
                if prefix != 0 {
                    out.push_str(&format!(
                        "<{name}>{}</{name}><{name}_END>{}</{name}_END>",
                        self.slaac(prefix, 0),
                        self.slaac(prefix, last)
                    ));
                }
            }
        }
        if self.kind.ipv6_static() {
            out.push_str(&format!("<IP6_END>{}</IP6_END>", self.ip6_static_at(last)));
        }
        out.push_str(&format!("<USED_LEASES>{}</USED_LEASES>", self.used()));
        out
    }

    fn stored_xml(&self) -> String {
        self.attrs
            .iter()
            .filter(|(k, _)| k.as_str() != "ALLOCATED")
            .map(|(k, v)| format!("<{k}>{}</{k}>", xml::escape(v)))
            .collect()
    }

    /// `AddressRange::to_xml(oss)`: the range in IPAM requests about an
    /// existing range (unregister from `one.vn.rm_ar`, leases).
    pub fn request_xml(&self) -> String {
        format!("<AR>{}{}</AR>", self.stored_xml(), self.computed_xml())
    }

    /// The range in `one.vn.info` (with its leases).
    pub fn extended_xml(&self) -> String {
        let leases = if self.leases.is_empty() {
            "<LEASES/>".to_owned()
        } else {
            let inner: String = self
                .leases
                .iter()
                .map(|(i, vm)| vector_xml("LEASE", &self.lease_pairs(*i, *vm)))
                .collect();
            format!("<LEASES>{inner}</LEASES>")
        };
        format!("<AR>{}{}{leases}</AR>", self.stored_xml(), self.computed_xml())
    }

    /// The stored vector attribute (pool bodies, and the unregister request
    /// of a network being deleted, which oned builds from it).
    pub fn vector_xml(&self) -> String {
        let pairs: Vec<(String, String)> = self.attrs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        vector_xml("AR", &pairs)
    }

    /// `AddressRange::addr_to_xml`: the `ADDRESS` of a lease.
    pub fn address_xml(&self, index: u64, size: u64) -> String {
        let mut out = format!("<ADDRESS><MAC>{}</MAC>", self.mac_at(index));
        if self.ip != 0 {
            out.push_str(&format!("<IP>{}</IP>", self.ip_at(index)));
        }
        if self.ula6 != 0 {
            out.push_str(&format!("<IP6_ULA>{}</IP6_ULA>", self.slaac(self.ula6, index)));
        }
        if self.global6 != 0 {
            out.push_str(&format!("<IP6_GLOBAL>{}</IP6_GLOBAL>", self.slaac(self.global6, index)));
        }
        if self.ip6 != 0 {
            out.push_str(&format!("<IP6>{}</IP6>", self.ip6_static_at(index)));
        }
        out.push_str(&format!("<SIZE>{size}</SIZE></ADDRESS>"));
        out
    }

    fn lease_pairs(&self, index: u64, vm: i64) -> Vec<(String, String)> {
        let mut pairs = vec![
            ("MAC".to_owned(), self.mac_at(index)),
            ("VM".to_owned(), vm.to_string()),
        ];
        if self.kind.ipv4() {
            pairs.push(("IP".into(), self.ip_at(index)));
        }
        if self.kind.ipv6() {
            pairs.push(("IP6_LINK".into(), self.slaac(0xfe80_0000_0000_0000, index)));
            for (name, prefix) in [("IP6_ULA", self.ula6), ("IP6_GLOBAL", self.global6)] {
                if prefix != 0 {
                    pairs.push((name.into(), self.slaac(prefix, index)));
                }
            }
        }
        if self.kind.ipv6_static() {
            pairs.push(("IP6".into(), self.ip6_static_at(index)));
        }
        pairs
    }

    pub fn lease_view(&self, index: u64, vm: i64) -> Lease {
        let pairs: BTreeMap<String, String> = self.lease_pairs(index, vm).into_iter().collect();
        Lease {
            ar_id: self.id,
            vm,
            ip: pairs.get("IP").cloned(),
            ip6: pairs.get("IP6").or_else(|| pairs.get("IP6_GLOBAL")).cloned(),
            mac: self.mac_at(index),
        }
    }

    /// The first free address (oned's internal allocation).
    pub fn first_free(&self) -> Option<u64> {
        let mut i = 0;
        while i < self.size {
            if !self.leases.contains_key(&i) {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    /// The index of an address answered by an IPAM driver, if inside the range.
    pub fn index_of_ip(&self, ip: &str) -> Option<u64> {
        let index = if self.kind.ipv4() {
            u64::from(u32::from(ip.parse::<Ipv4Addr>().ok()?).checked_sub(self.ip)?)
        } else if self.kind.ipv6_static() {
            u64::try_from(u128::from(ip.parse::<Ipv6Addr>().ok()?).checked_sub(self.ip6)?).ok()?
        } else {
            return None;
        };
        (index < self.size).then_some(index)
    }

    pub fn index_of_mac(&self, mac: &str) -> Option<u64> {
        let (hi, lo) = mac_to_i(mac)?;
        let index = u64::from(lo.checked_sub(self.mac_lo)?);
        (hi == self.mac_hi && index < self.size).then_some(index)
    }

    /// Records a lease or a release, with oned's `ALLOCATED` attribute.
    pub fn set_lease(&mut self, index: u64, vm: Option<i64>) {
        match vm {
            Some(vm) => self.leases.insert(index, vm),
            None => self.leases.remove(&index),
        };
        let allocated: String = self
            .leases
            .iter()
            .map(|(i, vm)| format!(" {i} {}", VM_OBJECT | vm))
            .collect();
        self.attrs.insert("ALLOCATED".into(), allocated);
    }
}

/// The `IPAM_DRIVER_ACTION_DATA` of a request.
pub(crate) fn request(ar_xml: &str, address_xml: &str) -> String {
    format!("<IPAM_DRIVER_ACTION_DATA>{ar_xml}{address_xml}</IPAM_DRIVER_ACTION_DATA>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn an_ip4_range_gets_oned_s_mac_and_ends() {
        let ar = Ar::from_attrs(0, attrs(&[("TYPE", "IP4"), ("IP", "172.30.12.4"), ("SIZE", "2")])).unwrap();
        assert_eq!(ar.attrs["MAC"], "02:00:ac:1e:0c:04");
        assert_eq!(
            ar.request_xml(),
            "<AR><AR_ID>0</AR_ID><IP>172.30.12.4</IP><MAC>02:00:ac:1e:0c:04</MAC><SIZE>2</SIZE><TYPE>IP4</TYPE>\
             <MAC_END>02:00:ac:1e:0c:05</MAC_END><IP_END>172.30.12.5</IP_END><USED_LEASES>0</USED_LEASES></AR>"
        );
        assert_eq!(ar.index_of_ip("172.30.12.5"), Some(1));
        assert_eq!(ar.index_of_ip("172.30.12.6"), None);
        assert_eq!(ar.index_of_mac("02:00:ac:1e:0c:05"), Some(1));
    }

    #[test]
    fn oned_s_refusals() {
        let cases: [(&[(&str, &str)], &str); 5] = [
            (&[("SIZE", "1")], "Unknown or missing address range TYPE."),
            (&[("TYPE", "IP4"), ("SIZE", "1")], "Wrong or empty IP attribute"),
            (
                &[("TYPE", "IP4"), ("IP", "10.0.0.1"), ("SIZE", "x")],
                "Wrong SIZE for address range",
            ),
            (
                &[("TYPE", "ETHER"), ("MAC", "zz"), ("SIZE", "1")],
                "Wrong format for MAC attribute",
            ),
            (
                &[("TYPE", "IP6_STATIC"), ("IP6", "2001:db8::2"), ("SIZE", "1")],
                "Wrong or empty PREFIX_LENGTH",
            ),
        ];
        for (a, expected) in cases {
            assert_eq!(Ar::from_attrs(0, attrs(a)).unwrap_err(), expected, "{a:?}");
        }
    }

    #[test]
    fn ipv6_ranges() {
        let ar = Ar::from_attrs(
            1,
            attrs(&[
                ("TYPE", "IP6_STATIC"),
                ("IP6", "2001:db8::2"),
                ("PREFIX_LENGTH", "64"),
                ("SIZE", "1"),
            ]),
        )
        .unwrap();
        assert!(ar.request_xml().contains("<IP6_END>2001:db8::2</IP6_END>"));
        assert_eq!(ar.index_of_ip("2001:db8::2"), Some(0));
        let slaac = Ar::from_attrs(
            2,
            attrs(&[
                ("TYPE", "IP6"),
                ("MAC", "02:00:0a:00:00:01"),
                ("GLOBAL_PREFIX", "2001:db8::"),
                ("SIZE", "4"),
            ]),
        )
        .unwrap();
        assert!(
            slaac
                .request_xml()
                .contains("<IP6_GLOBAL>2001:db8::aff:fe00:1</IP6_GLOBAL>"),
            "{}",
            slaac.request_xml()
        );
    }

    #[test]
    fn leases_show_in_allocated() {
        let mut ar = Ar::from_attrs(0, attrs(&[("TYPE", "IP4"), ("IP", "10.0.0.1"), ("SIZE", "4")])).unwrap();
        ar.set_lease(0, Some(5));
        assert_eq!(ar.attrs["ALLOCATED"], " 0 68719476741");
        assert_eq!(ar.first_free(), Some(1));
        assert!(ar.extended_xml().contains(
            "<LEASES><LEASE><IP><![CDATA[10.0.0.1]]></IP><MAC><![CDATA[02:00:0a:00:00:01]]></MAC><VM><![CDATA[5]]></VM></LEASE></LEASES>"
        ));
        ar.set_lease(0, None);
        assert_eq!(ar.attrs["ALLOCATED"], "");
        assert!(ar.vector_xml().contains("<ALLOCATED/>"));
    }
}
