//! OpenNebula attributes as real types.
//!
//! Every OpenNebula value is a string. We convert the ones we use into real
//! types (addresses, integers, interface names, ...) at the edge, and every
//! failure names the attribute by its path and shows the offending value
//! (escaped and shortened, so an error is always one readable line).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::xml::Element;

/// Longest value accepted for an attribute converted into a typed value.
/// Addresses, identifiers and names are all far shorter.
pub const MAX_TYPED_VALUE: usize = 255;

/// A problem with a document: where (`VM/TEMPLATE/NIC[NIC_ID=0]/IP`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocError {
    pub path: String,
    pub problem: String,
}

impl DocError {
    pub fn new(path: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            problem: problem.into(),
        }
    }

    pub fn missing(path: impl Into<String>) -> Self {
        Self::new(path, "is missing")
    }
}

impl fmt::Display for DocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.path, self.problem)
    }
}

impl std::error::Error for DocError {}

/// Shows a value inside an error message: quoted, control characters
/// escaped, at most 64 characters.
pub fn show(value: &str) -> String {
    const SHOWN: usize = 64;
    let mut out = String::from("\"");
    for (i, c) in value.chars().enumerate() {
        if i == SHOWN {
            out.push_str(&format!("...\" ({} bytes)", value.len()));
            return out;
        }
        out.extend(c.escape_debug());
    }
    out.push('"');
    out
}

/// A type an attribute value converts into.
pub trait FromAttr: Sized {
    /// What a valid value is, for error messages ("an IPv4 address").
    const EXPECTED: &'static str;
    /// Converts a non-empty value; the error says what is wrong beyond
    /// "not {EXPECTED}" when there is more to say.
    fn from_attr(value: &str) -> Result<Self, String>;
}

/// Converts one value, with an error naming `path`.
pub fn parse_value<T: FromAttr>(path: &str, value: &str) -> Result<T, DocError> {
    if value.len() > MAX_TYPED_VALUE {
        return Err(DocError::new(
            path,
            format!(
                "is too long ({} bytes; {} has at most {MAX_TYPED_VALUE})",
                value.len(),
                T::EXPECTED
            ),
        ));
    }
    T::from_attr(value).map_err(|why| {
        let mut problem = format!("= {} is not {}", show(value), T::EXPECTED);
        if !why.is_empty() {
            problem.push_str(": ");
            problem.push_str(&why);
        }
        DocError::new(path, problem)
    })
}

macro_rules! from_str_attr {
    ($($t:ty => $expected:expr),* $(,)?) => {$(
        impl FromAttr for $t {
            const EXPECTED: &'static str = $expected;
            fn from_attr(value: &str) -> Result<Self, String> {
                <$t>::from_str(value).map_err(|_| String::new())
            }
        }
    )*};
}

from_str_attr! {
    Ipv4Addr => "an IPv4 address",
    Ipv6Addr => "an IPv6 address",
    IpAddr => "an IP address",
    u8 => "a whole number from 0 to 255",
    u16 => "a whole number from 0 to 65535",
    u32 => "a whole number from 0 to 4294967295",
    u64 => "a non-negative whole number",
    i64 => "a whole number",
}

/// OpenNebula's booleans: `YES` or `NO`, in any case.
impl FromAttr for bool {
    const EXPECTED: &'static str = "YES or NO";
    fn from_attr(value: &str) -> Result<Self, String> {
        if value.eq_ignore_ascii_case("yes") {
            Ok(true)
        } else if value.eq_ignore_ascii_case("no") {
            Ok(false)
        } else {
            Err(String::new())
        }
    }
}

/// Names we accept hold letters, digits, `-`, `_` and `.`: nothing a shell,
/// `ip`, `nft` or an URL path would read specially.
fn check_name_chars(value: &str) -> Result<(), String> {
    match value
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
    {
        Some(c) => Err(format!(
            "{} is not allowed (letters, digits, '-', '_' and '.' only)",
            show(&c.to_string())
        )),
        None => Ok(()),
    }
}

/// A Linux network interface name (bridge, tap, VXLAN device): 1 to 15
/// bytes of letters, digits, `-`, `_` and `.`, not starting with `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfName(String);

impl FromAttr for IfName {
    const EXPECTED: &'static str = "a network interface name";
    fn from_attr(value: &str) -> Result<Self, String> {
        if value.len() > 15 {
            return Err(format!("{} bytes, Linux allows at most 15", value.len()));
        }
        if value == "." || value == ".." || value.starts_with('-') {
            return Err("reserved name".to_owned());
        }
        check_name_chars(value)?;
        Ok(Self(value.to_owned()))
    }
}

/// A host name as OpenNebula knows a host (and as we pass it to `ssh`): DNS
/// labels of letters, digits, `-` and `_` joined by dots, or an IP address.
/// Never starts with `-`, so it can never be read as an option.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName(String);

impl FromAttr for HostName {
    const EXPECTED: &'static str = "a host name";
    fn from_attr(value: &str) -> Result<Self, String> {
        if value.parse::<IpAddr>().is_ok() {
            return Ok(Self(value.to_owned()));
        }
        if value.len() > 253 {
            return Err(format!("{} bytes, DNS allows at most 253", value.len()));
        }
        check_name_chars(value)?;
        for label in value.split('.') {
            if label.is_empty() || label.len() > 63 || label.starts_with('-') {
                return Err(format!("bad label {}", show(label)));
            }
        }
        Ok(Self(value.to_owned()))
    }
}

/// A plain identifier: driver names, profile names, zones, libvirt domain
/// names. 1 to 128 bytes of letters, digits, `-`, `_` and `.`, starting with
/// a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(String);

impl FromAttr for Token {
    const EXPECTED: &'static str = "a name";
    fn from_attr(value: &str) -> Result<Self, String> {
        if value.len() > 128 {
            return Err(format!("{} bytes, at most 128", value.len()));
        }
        if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err("it must start with a letter or a digit".to_owned());
        }
        check_name_chars(value)?;
        Ok(Self(value.to_owned()))
    }
}

/// A UUID in its canonical text form (Scaleway resource ids), kept lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid(String);

impl FromAttr for Uuid {
    const EXPECTED: &'static str = "a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)";
    fn from_attr(value: &str) -> Result<Self, String> {
        // The canonical (hyphenated) form: the only one of 36 characters.
        if value.len() == 36 && uuid::Uuid::try_parse(value).is_ok() {
            Ok(Self(value.to_ascii_lowercase()))
        } else {
            Err(String::new())
        }
    }
}

/// An Ethernet MAC address (`02:00:ac:10:00:01`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl FromAttr for MacAddr {
    const EXPECTED: &'static str = "a MAC address (six ':'-separated hex bytes)";
    fn from_attr(value: &str) -> Result<Self, String> {
        let mut bytes = [0u8; 6];
        let mut parts = value.split(':');
        for b in &mut bytes {
            let part = parts.next().ok_or_else(String::new)?;
            if part.len() != 2 {
                return Err(String::new());
            }
            *b = u8::from_str_radix(part, 16).map_err(|_| String::new())?;
        }
        if parts.next().is_some() {
            return Err(String::new());
        }
        Ok(Self(bytes))
    }
}

macro_rules! string_newtype {
    ($($t:ty),*) => {$(
        impl $t {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl FromStr for $t {
            type Err = DocError;
            fn from_str(s: &str) -> Result<Self, DocError> {
                parse_value(stringify!($t), s)
            }
        }
    )*};
}

string_newtype!(IfName, HostName, Token, Uuid);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A flat vector attribute (`NIC`, `AR`, `CONTEXT`...): simple attributes in
/// document order, every one of them kept, custom ones included.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    path: String,
    items: Vec<(String, String)>,
}

impl Attributes {
    /// Reads the children of `element`, which must all be simple attributes
    /// with distinct names. `path` names the element in errors.
    pub fn from_element(element: &Element, path: &str) -> Result<Self, DocError> {
        let mut items: Vec<(String, String)> = Vec::with_capacity(element.children.len());
        for child in &element.children {
            if !child.is_leaf() {
                return Err(DocError::new(
                    format!("{path}/{}", child.name),
                    "has nested elements, but OpenNebula vector attributes hold only simple values",
                ));
            }
            if items.iter().any(|(name, _)| *name == child.name) {
                return Err(DocError::new(format!("{path}/{}", child.name), "is given twice"));
            }
            items.push((child.name.clone(), child.text.clone()));
        }
        Ok(Self {
            path: path.to_owned(),
            items,
        })
    }

    /// Builds attributes from pairs (tests and our own outputs).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(path: &str, pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self {
            path: path.to_owned(),
            items: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        }
    }

    /// Where these attributes are, for error messages.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Renames the path used in error messages.
    pub fn set_path(&mut self, path: String) {
        self.path = path;
    }

    /// The raw value, if present (possibly empty).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.items.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every attribute, in document order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.items.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The typed value of an optional attribute. Absent and empty are both `None`
    /// (OpenNebula writes empty elements for unset values).
    pub fn parse<T: FromAttr>(&self, name: &str) -> Result<Option<T>, DocError> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(value) => parse_value(&format!("{}/{name}", self.path), value).map(Some),
        }
    }

    /// The typed value of a required attribute.
    pub fn require<T: FromAttr>(&self, name: &str) -> Result<T, DocError> {
        self.parse(name)?
            .ok_or_else(|| DocError::missing(format!("{}/{name}", self.path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Attributes {
        Attributes::from_pairs("AR", pairs.iter().copied())
    }

    #[test]
    fn typed_values_parse() {
        let a = attrs(&[
            ("IP", "10.0.0.1"),
            ("IP6", "2001:db8::1"),
            ("SIZE", "1"),
            ("ATTACH", "yes"),
            ("BRIDGE", "br0"),
            ("MAC", "02:00:0A:00:00:01"),
            ("ID", "3F2504E0-4F89-11D3-9A0C-0305E82C3301"),
            ("HOST", "node-1.example.com"),
            ("EMPTY", ""),
        ]);
        assert_eq!(a.require::<Ipv4Addr>("IP").unwrap(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(a.require::<Ipv6Addr>("IP6").unwrap().to_string(), "2001:db8::1");
        assert_eq!(a.require::<u32>("SIZE").unwrap(), 1);
        assert!(a.require::<bool>("ATTACH").unwrap());
        assert_eq!(a.require::<IfName>("BRIDGE").unwrap().as_str(), "br0");
        assert_eq!(a.require::<MacAddr>("MAC").unwrap().to_string(), "02:00:0a:00:00:01");
        assert_eq!(
            a.require::<Uuid>("ID").unwrap().as_str(),
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
        );
        assert_eq!(a.require::<HostName>("HOST").unwrap().as_str(), "node-1.example.com");
        assert_eq!(a.parse::<u32>("EMPTY").unwrap(), None);
        assert_eq!(a.parse::<u32>("ABSENT").unwrap(), None);
    }

    /// Table of bad values: each must be refused with an error that names
    /// the attribute and says what was expected.
    #[test]
    fn bad_values_are_named() {
        struct Case {
            value: &'static str,
            check: fn(&Attributes) -> Result<(), DocError>,
            expected: &'static str,
        }
        fn ip4(a: &Attributes) -> Result<(), DocError> {
            a.require::<Ipv4Addr>("V").map(drop)
        }
        fn num(a: &Attributes) -> Result<(), DocError> {
            a.require::<u32>("V").map(drop)
        }
        fn ifname(a: &Attributes) -> Result<(), DocError> {
            a.require::<IfName>("V").map(drop)
        }
        fn host(a: &Attributes) -> Result<(), DocError> {
            a.require::<HostName>("V").map(drop)
        }
        fn token(a: &Attributes) -> Result<(), DocError> {
            a.require::<Token>("V").map(drop)
        }
        fn uuid(a: &Attributes) -> Result<(), DocError> {
            a.require::<Uuid>("V").map(drop)
        }
        fn mac(a: &Attributes) -> Result<(), DocError> {
            a.require::<MacAddr>("V").map(drop)
        }
        fn yes(a: &Attributes) -> Result<(), DocError> {
            a.require::<bool>("V").map(drop)
        }
        let long = Box::leak("1".repeat(300).into_boxed_str());
        let cases = [
            Case {
                value: "10.0.0.x",
                check: ip4,
                expected: r#"AR/V = "10.0.0.x" is not an IPv4 address"#,
            },
            Case {
                value: "010.0.0.1",
                check: ip4,
                expected: "is not an IPv4 address",
            },
            Case {
                value: "10.0.0.1/24",
                check: ip4,
                expected: "is not an IPv4 address",
            },
            Case {
                value: "-1",
                check: num,
                expected: "is not a whole number from 0 to 4294967295",
            },
            Case {
                value: "4294967296",
                check: num,
                expected: "is not a whole number",
            },
            Case {
                value: long,
                check: num,
                expected: "is too long (300 bytes",
            },
            Case {
                value: "br0; rm -rf /",
                check: ifname,
                expected: r#"AR/V = "br0; rm -rf /" is not a network interface name: ";" is not allowed"#,
            },
            Case {
                value: "br0$(id)",
                check: ifname,
                expected: r#""$" is not allowed"#,
            },
            Case {
                value: "a-very-long-bridge-name",
                check: ifname,
                expected: "Linux allows at most 15",
            },
            Case {
                value: "-oProxyCommand=x",
                check: host,
                expected: "is not a host name",
            },
            Case {
                value: "node1`id`",
                check: host,
                expected: "\"`\" is not allowed",
            },
            Case {
                value: "a..b",
                check: host,
                expected: "bad label",
            },
            Case {
                value: "line\nbreak",
                check: token,
                expected: r#""line\nbreak" is not a name: "\n" is not allowed"#,
            },
            Case {
                value: "tab\there",
                check: token,
                expected: r#""\t" is not allowed"#,
            },
            Case {
                value: "not-a-uuid",
                check: uuid,
                expected: "is not a UUID",
            },
            Case {
                value: "02:00:0a:00:00",
                check: mac,
                expected: "is not a MAC address",
            },
            Case {
                value: "02:00:0a:00:00:01:02",
                check: mac,
                expected: "is not a MAC address",
            },
            Case {
                value: "maybe",
                check: yes,
                expected: "is not YES or NO",
            },
        ];
        for case in cases {
            let err = (case.check)(&attrs(&[("V", case.value)])).unwrap_err().to_string();
            assert!(
                err.contains(case.expected),
                "{:?}: {err:?} should contain {:?}",
                case.value,
                case.expected
            );
            assert!(!err.contains('\n'), "{err:?} must be one line");
        }
    }

    #[test]
    fn missing_is_named() {
        assert_eq!(
            attrs(&[]).require::<u32>("SIZE").unwrap_err().to_string(),
            "AR/SIZE is missing"
        );
    }

    #[test]
    fn show_escapes_and_shortens() {
        assert_eq!(show("a\"b\n"), r#""a\"b\n""#);
        let shown = show(&"x".repeat(100));
        assert!(shown.ends_with("...\" (100 bytes)"), "{shown}");
    }

    #[test]
    fn flat_vectors_refuse_nesting_and_duplicates() {
        let nested = crate::xml::parse(b"<NIC><IP>1</IP><X><Y>1</Y></X></NIC>").unwrap();
        assert_eq!(
            Attributes::from_element(&nested, "NIC").unwrap_err().to_string(),
            "NIC/X has nested elements, but OpenNebula vector attributes hold only simple values"
        );
        let twice = crate::xml::parse(b"<NIC><IP>1</IP><IP>2</IP></NIC>").unwrap();
        assert_eq!(
            Attributes::from_element(&twice, "NIC").unwrap_err().to_string(),
            "NIC/IP is given twice"
        );
    }
}
