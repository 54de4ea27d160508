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
mod tests;
