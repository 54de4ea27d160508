//! The keys and values of set and map elements ([`Value`]): their bytes
//! as the kernel reads them, and their text as nft writes it.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The bytes of a key (or of a map's value) in nft's layout: each part in
/// network order, padded to 4 bytes (a concatenation's parts each start on
/// a register), and what each part is, for its text as nft writes it
/// (written when shown, not when made: `reconcile` makes a few for every
/// NIC of the host). Held inline: at most [`VALUE_MAX`] bytes, as the
/// kernel's (`NFT_DATA_VALUE_MAXLEN`); a longer one is marked and refused by
/// [`Nftables::apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value {
    bytes: [u8; VALUE_MAX],
    len: u8,
    kinds: [Kind; VALUE_MAX / 4],
    parts: u8,
    overlong: bool,
}

/// The longest value the kernel takes (`NFT_DATA_VALUE_MAXLEN`).
pub const VALUE_MAX: usize = 64;

/// What a part of a [`Value`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ifname,
    Ether,
    Ipv4,
    Ipv6,
    /// 16 bytes of a header (`@th,64,128`), written in hexadecimal.
    Raw128,
}

impl Kind {
    /// Its bytes in the value, before padding.
    fn len(self) -> usize {
        match self {
            Self::Ifname | Self::Ipv6 | Self::Raw128 => 16,
            Self::Ether => 6,
            Self::Ipv4 => 4,
        }
    }
}

impl Default for Value {
    fn default() -> Self {
        Self {
            bytes: [0; VALUE_MAX],
            len: 0,
            kinds: [Kind::Ipv4; VALUE_MAX / 4],
            parts: 0,
            overlong: false,
        }
    }
}

/// `IFNAMSIZ`: an interface name's bytes in a key, NUL-padded.
const IFNAMSIZ: usize = 16;

impl Value {
    fn part(mut self, kind: Kind, bytes: &[u8]) -> Self {
        let at = usize::from(self.len);
        let end = at + bytes.len().next_multiple_of(4);
        if self.overlong || end > VALUE_MAX {
            self.overlong = true;
            return self;
        }
        self.bytes[at..at + bytes.len()].copy_from_slice(bytes);
        self.len = u8::try_from(end).unwrap_or(u8::MAX);
        self.kinds[usize::from(self.parts)] = kind;
        self.parts += 1;
        self
    }

    /// An interface name (`ifname`): at most 15 bytes (longer is cut, as
    /// the kernel's names are), NUL-padded to 16.
    pub fn ifname(self, name: &str) -> Self {
        let mut bytes = [0u8; IFNAMSIZ];
        let len = name.len().min(IFNAMSIZ - 1);
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        self.part(Kind::Ifname, &bytes)
    }

    /// A MAC address (`ether_addr`).
    pub fn ether(self, mac: [u8; 6]) -> Self {
        self.part(Kind::Ether, &mac)
    }

    /// An IPv4 address (`ipv4_addr`).
    pub fn ipv4(self, a: Ipv4Addr) -> Self {
        self.part(Kind::Ipv4, &a.octets())
    }

    /// An IPv6 address (`ipv6_addr`).
    pub fn ipv6(self, a: Ipv6Addr) -> Self {
        self.part(Kind::Ipv6, &a.octets())
    }

    /// 16 bytes of a header, as a number (`@th,64,128`).
    pub fn raw128(self, v: u128) -> Self {
        self.part(Kind::Raw128, &v.to_be_bytes())
    }

    /// Its bytes, as sent.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Whether it is a concatenation (of more than one part).
    pub fn concatenated(&self) -> bool {
        self.parts > 1
    }

    /// Whether parts were left out of it: longer than [`VALUE_MAX`].
    pub fn overlong(&self) -> bool {
        self.overlong
    }
}

impl Value {
    /// Its parts: (kind, bytes).
    fn parts(&self) -> impl Iterator<Item = (Kind, &[u8])> {
        let mut at = 0;
        self.kinds[..usize::from(self.parts)].iter().map(move |kind| {
            let b = &self.bytes[at..at + kind.len()];
            at += kind.len().next_multiple_of(4);
            (*kind, b)
        })
    }

    /// The interval from this value to `last` (the same parts, only the
    /// last one differing) as nft writes it: the parts before the last,
    /// then the last's range (an address prefix `a/len`; a header's bytes
    /// `0xA-0xB`).
    pub fn range_text(&self, last: &Value) -> String {
        let mut out = String::new();
        let (first_parts, last_parts): (Vec<_>, Vec<_>) = (self.parts().collect(), last.parts().collect());
        for (i, (kind, b)) in first_parts.iter().enumerate() {
            if i > 0 {
                out.push_str(" . ");
            }
            let end = last_parts.get(i).map_or(*b, |(_, e)| *e);
            let last = i + 1 == first_parts.len();
            if !last || end == *b && !matches!(kind, Kind::Raw128 | Kind::Ipv6) {
                out.push_str(&part_text(*kind, b));
                continue;
            }
            match prefix_len(b, end).filter(|_| *kind != Kind::Raw128) {
                Some(len) => out.push_str(&format!("{}/{len}", part_text(*kind, b))),
                None => out.push_str(&format!("{}-{}", part_text(*kind, b), part_text(*kind, end))),
            }
        }
        out
    }
}

/// The key after `key`, as a big-endian number (`None`: `key` is the
/// type's last value).
pub fn next_key(key: &[u8]) -> Option<Vec<u8>> {
    let mut out = key.to_vec();
    for b in out.iter_mut().rev() {
        if *b == u8::MAX {
            *b = 0;
        } else {
            *b += 1;
            return Some(out);
        }
    }
    None
}

/// The length of the prefix `first`..=`last` is (`None`: not a prefix).
fn prefix_len(first: &[u8], last: &[u8]) -> Option<u32> {
    let bits = 8 * u32::try_from(first.len()).unwrap_or(u32::MAX);
    let num = |x: &[u8]| x.iter().fold(0u128, |n, b| (n << 8) | u128::from(*b));
    let (a, b) = (num(first), num(last));
    let host = a ^ b;
    let k = 128 - host.leading_zeros();
    let ones = if k == 0 { 0 } else { u128::MAX >> (128 - k) };
    (host == ones && a & host == 0 && k <= bits).then(|| bits - k)
}

/// One part's text as nft writes it.
fn part_text(kind: Kind, b: &[u8]) -> String {
    match kind {
        Kind::Ifname => {
            let name = b.split(|c| *c == 0).next().unwrap_or_default();
            format!("\"{}\"", String::from_utf8_lossy(name))
        }
        Kind::Ether => {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(b);
            opennebula::hex::mac(mac)
        }
        Kind::Ipv4 => {
            let mut a = [0u8; 4];
            a.copy_from_slice(b);
            Ipv4Addr::from(a).to_string()
        }
        Kind::Ipv6 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            Ipv6Addr::from(a).to_string()
        }
        Kind::Raw128 => {
            let mut out = String::from("0x");
            opennebula::hex::push(&mut out, b);
            out
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (kind, b)) in self.parts().enumerate() {
            if i > 0 {
                f.write_str(" . ")?;
            }
            f.write_str(&part_text(kind, b))?;
        }
        if self.overlong {
            f.write_str(" . (longer than 64 bytes)")?;
        }
        Ok(())
    }
}
