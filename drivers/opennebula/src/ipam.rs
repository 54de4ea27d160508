//! The document every IPAM action receives: `IPAM_DRIVER_ACTION_DATA`.
//!
//! ```xml
//! <IPAM_DRIVER_ACTION_DATA>
//!   <AR><TYPE>IP4</TYPE><IP>..</IP><SIZE>1</SIZE><IPAM_MAD>scaleway_fip</IPAM_MAD>...custom...</AR>
//!   <ADDRESS><IP>..</IP><MAC>..</MAC><SIZE>1</SIZE></ADDRESS>
//! </IPAM_DRIVER_ACTION_DATA>
//! ```
//!
//! `register_address_range` gets the AR the user wrote (custom attributes
//! included) and an empty `ADDRESS`; `unregister_address_range` the AR only;
//! `get_address` an `ADDRESS` with `SIZE`; `allocate_address`/`free_address`
//! an `ADDRESS` with the lease (`IP`/`MAC`/`IP6*`, `SIZE`).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::attr::{Attributes, DocError, FromAttr, MacAddr, Token};
use crate::xml::Element;

/// Name of the root element.
pub const ROOT: &str = "IPAM_DRIVER_ACTION_DATA";

/// An address range type (`AR/TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArType {
    Ip4,
    Ip6,
    Ip6Static,
    Ip4_6,
    Ip4_6Static,
    Ether,
}

impl ArType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ip4 => "IP4",
            Self::Ip6 => "IP6",
            Self::Ip6Static => "IP6_STATIC",
            Self::Ip4_6 => "IP4_6",
            Self::Ip4_6Static => "IP4_6_STATIC",
            Self::Ether => "ETHER",
        }
    }
}

impl fmt::Display for ArType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromAttr for ArType {
    const EXPECTED: &'static str = "an address range type (IP4, IP6, IP6_STATIC, IP4_6, IP4_6_STATIC or ETHER)";
    fn from_attr(value: &str) -> Result<Self, String> {
        [
            Self::Ip4,
            Self::Ip6,
            Self::Ip6Static,
            Self::Ip4_6,
            Self::Ip4_6Static,
            Self::Ether,
        ]
        .into_iter()
        .find(|t| t.as_str().eq_ignore_ascii_case(value))
        .ok_or_else(String::new)
    }
}

/// The address range, with the attributes OpenNebula defines typed and
/// every attribute (custom ones included) kept in [`AddressRange::attrs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRange {
    pub ar_id: Option<u32>,
    pub ar_type: Option<ArType>,
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<MacAddr>,
    pub size: Option<u64>,
    pub ipam_mad: Option<Token>,
    pub global_prefix: Option<Ipv6Addr>,
    pub ula_prefix: Option<Ipv6Addr>,
    pub ip6: Option<Ipv6Addr>,
    pub prefix_length: Option<u8>,
    pub attrs: Attributes,
}

impl AddressRange {
    fn from_element(e: &Element) -> Result<Self, DocError> {
        let attrs = Attributes::from_element(e, &format!("{ROOT}/AR"))?;
        Ok(Self {
            ar_id: attrs.parse("AR_ID")?,
            ar_type: attrs.parse("TYPE")?,
            ip: attrs.parse("IP")?,
            mac: attrs.parse("MAC")?,
            size: attrs.parse("SIZE")?,
            ipam_mad: attrs.parse("IPAM_MAD")?,
            global_prefix: attrs.parse("GLOBAL_PREFIX")?,
            ula_prefix: attrs.parse("ULA_PREFIX")?,
            ip6: attrs.parse("IP6")?,
            prefix_length: attrs.parse("PREFIX_LENGTH")?,
            attrs,
        })
    }
}

/// The `ADDRESS` part: what oned asks for (`get_address`) or the lease it
/// allocates or frees.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddressRequest {
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<MacAddr>,
    pub ip6: Option<Ipv6Addr>,
    pub ip6_global: Option<Ipv6Addr>,
    pub ip6_ula: Option<Ipv6Addr>,
    pub size: Option<u64>,
    pub attrs: Attributes,
}

impl AddressRequest {
    fn from_element(e: &Element) -> Result<Self, DocError> {
        let attrs = Attributes::from_element(e, &format!("{ROOT}/ADDRESS"))?;
        // oned 7.0-7.4 sends the literal `0` for the IPv6 addresses of
        // allocate_address and free_address (src/vnm/AddressRange.cc streams
        // a return code): no address given, the driver knows its range's.
        let ip6 = |name: &str| -> Result<Option<Ipv6Addr>, DocError> {
            match attrs.get(name) {
                Some("0") => Ok(None),
                _ => attrs.parse(name),
            }
        };
        Ok(Self {
            ip: attrs.parse("IP")?,
            mac: attrs.parse("MAC")?,
            ip6: ip6("IP6")?,
            ip6_global: ip6("IP6_GLOBAL")?,
            ip6_ula: ip6("IP6_ULA")?,
            size: attrs.parse("SIZE")?,
            attrs,
        })
    }

    /// Whether nothing is set (the skeleton sent with `register_address_range`).
    pub fn is_empty(&self) -> bool {
        self.attrs.iter().all(|(_, v)| v.is_empty())
    }
}

/// The whole IPAM request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamRequest {
    pub ar: AddressRange,
    pub address: Option<AddressRequest>,
}

impl IpamRequest {
    /// Reads the request from its document, validating every attribute
    /// OpenNebula defines.
    pub fn from_element(root: &Element) -> Result<Self, DocError> {
        if root.name != ROOT {
            return Err(DocError::new(
                format!("<{}>", root.name),
                format!("is not an IPAM request (the root element must be <{ROOT}>)"),
            ));
        }
        let ar = single(root, "AR")?.ok_or_else(|| DocError::missing(format!("{ROOT}/AR")))?;
        let address = single(root, "ADDRESS")?;
        Ok(Self {
            ar: AddressRange::from_element(ar)?,
            address: address.map(AddressRequest::from_element).transpose()?,
        })
    }
}

fn single<'a>(root: &'a Element, name: &'a str) -> Result<Option<&'a Element>, DocError> {
    let mut found = root.children_named(name);
    let first = found.next();
    if found.next().is_some() {
        return Err(DocError::new(format!("{ROOT}/{name}"), "is given twice"));
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml;

    fn request(doc: &str) -> Result<IpamRequest, DocError> {
        IpamRequest::from_element(&xml::parse(doc.as_bytes()).unwrap())
    }

    /// What oned 7.0-7.4 really sends for an IPv6 lease (upstream bug).
    #[test]
    fn the_literal_zero_of_ipv6_leases_is_no_address() {
        let r = request(
            "<IPAM_DRIVER_ACTION_DATA><AR><TYPE>IP6_STATIC</TYPE><IP6>2001:db8::2</IP6><SIZE>1</SIZE></AR>\
             <ADDRESS><MAC>02:00:00:00:00:01</MAC><IP6>0</IP6><IP6_GLOBAL>0</IP6_GLOBAL><IP6_ULA>0</IP6_ULA>\
             <SIZE>1</SIZE></ADDRESS></IPAM_DRIVER_ACTION_DATA>",
        )
        .unwrap();
        let a = r.address.unwrap();
        assert_eq!((a.ip6, a.ip6_global, a.ip6_ula), (None, None, None));
        assert!(
            request(
                "<IPAM_DRIVER_ACTION_DATA><AR><SIZE>1</SIZE></AR><ADDRESS><IP6>00</IP6></ADDRESS></IPAM_DRIVER_ACTION_DATA>"
            )
            .is_err(),
            "only the literal 0"
        );
    }

    #[test]
    fn reads_ar_with_custom_attributes() {
        let r = request(
            "<IPAM_DRIVER_ACTION_DATA><AR><TYPE>IP4</TYPE><IP>172.16.0.2</IP><SIZE>1</SIZE>\
             <IPAM_MAD>scaleway_fip</IPAM_MAD><PRIVATE_CIDR>172.16.0.0/16</PRIVATE_CIDR></AR>\
             <ADDRESS><MAC/><IP/><SIZE/></ADDRESS></IPAM_DRIVER_ACTION_DATA>",
        )
        .unwrap();
        assert_eq!(r.ar.ar_type, Some(ArType::Ip4));
        assert_eq!(r.ar.size, Some(1));
        assert_eq!(r.ar.ipam_mad.as_ref().map(Token::as_str), Some("scaleway_fip"));
        assert_eq!(r.ar.attrs.get("PRIVATE_CIDR"), Some("172.16.0.0/16"));
        assert!(r.address.unwrap().is_empty());
    }

    #[test]
    fn structural_errors() {
        let cases = [
            ("<VM><ID>1</ID></VM>", "<VM> is not an IPAM request"),
            ("<IPAM_DRIVER_ACTION_DATA/>", "IPAM_DRIVER_ACTION_DATA/AR is missing"),
            (
                "<IPAM_DRIVER_ACTION_DATA><AR/><AR/></IPAM_DRIVER_ACTION_DATA>",
                "AR is given twice",
            ),
            (
                "<IPAM_DRIVER_ACTION_DATA><AR><TYPE>IP5</TYPE></AR></IPAM_DRIVER_ACTION_DATA>",
                r#"IPAM_DRIVER_ACTION_DATA/AR/TYPE = "IP5" is not an address range type"#,
            ),
            (
                "<IPAM_DRIVER_ACTION_DATA><AR/><ADDRESS><SIZE>one</SIZE></ADDRESS></IPAM_DRIVER_ACTION_DATA>",
                r#"IPAM_DRIVER_ACTION_DATA/ADDRESS/SIZE = "one" is not a non-negative whole number"#,
            ),
        ];
        for (doc, expected) in cases {
            let err = request(doc).unwrap_err().to_string();
            assert!(err.contains(expected), "{doc}: {err:?}");
        }
    }
}
