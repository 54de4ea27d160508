//! Chains shared by rule set.
//!
//! A NIC's chain of one direction holds nothing of the NIC: only the nft
//! rules its security group rules render ([`crate::render::chain`]). So
//! every NIC whose rules render the same chain jumps to one chain, named
//! after what it holds: `sg-<fingerprint>-in` or `-out`, the fingerprint
//! being the first 128 bits of the SHA-256 of the chain's rules. A host's
//! number of chains is its number of distinct rule sets (a few), not its
//! number of NICs, and `nft`, which reads every chain before each
//! transaction, stays as fast with a thousand NICs of one group as with
//! one. The hash must resist collisions: a tenant whose rules collided
//! with another tenant's would be judged by that tenant's chain, or judge
//! that tenant's VMs by its own.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::render::chain;
use crate::rule::{Direction, Rule};

/// What a shared chain holds, in 128 bits (32 hex digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint([u8; 16]);

impl Fingerprint {
    /// The fingerprint of the chain of `direction` for `rules`.
    pub fn of(rules: &[Rule], direction: Direction) -> Self {
        let mut h = Sha256::new();
        h.update(suffix(direction).as_bytes());
        for line in chain(rules, direction) {
            h.update(b"\n");
            h.update(line.as_bytes());
        }
        let digest = h.finalize();
        let mut out = [0; 16];
        out.copy_from_slice(&digest[..16]);
        Self(out)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        opennebula::hex::write(f, &self.0)
    }
}

impl FromStr for Fingerprint {
    type Err = String;

    /// 32 lowercase hex digits, as [`fmt::Display`] writes them.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not 32 lowercase hex digits");
        if s.len() != 32 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad());
        }
        let mut out = [0; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self(out))
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// The fingerprints of rule sets, each computed once (a host's NICs have a
/// few rule sets between them; a fingerprint renders and hashes a chain).
#[derive(Debug, Default)]
pub struct Fingerprints<'a>(HashMap<&'a [Rule], [Option<Fingerprint>; 2]>);

impl<'a> Fingerprints<'a> {
    /// The chains of a NIC with `rules`, inbound then outbound (`None`: the
    /// rules leave that direction open, [`crate::open`]: no chain).
    pub fn of(&mut self, rules: &'a [Rule]) -> [Option<Fingerprint>; 2] {
        *self.0.entry(rules).or_insert_with(|| {
            [Direction::Inbound, Direction::Outbound]
                .map(|d| (!crate::open(rules, d)).then(|| Fingerprint::of(rules, d)))
        })
    }
}

fn suffix(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => "in",
        Direction::Outbound => "out",
    }
}

/// The name of the shared chain `fingerprint` of `direction`.
pub fn name(fingerprint: Fingerprint, direction: Direction) -> String {
    format!("sg-{fingerprint}-{}", suffix(direction))
}

/// The fingerprint and direction a shared chain's name says.
pub fn parse_name(name: &str) -> Option<(Fingerprint, Direction)> {
    let rest = name.strip_prefix("sg-")?;
    let (fp, d) = rest.split_once('-')?;
    let d = match d {
        "in" => Direction::Inbound,
        "out" => Direction::Outbound,
        _ => return None,
    };
    Some((fp.parse().ok()?, d))
}

/// The comment on the last rule (`drop`) of a shared chain: a listing
/// tells a chain filled by the driver from one declared and left empty
/// (or flushed by hand).
pub fn tag(fingerprint: Fingerprint) -> String {
    format!("one-scaleway sg rules {fingerprint}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{PortRange, Protocol};

    fn ssh() -> Vec<Rule> {
        let mut rules = crate::default_rules();
        rules[1].protocol = Protocol::Tcp;
        rules[1].ports = vec![PortRange { first: 22, last: 22 }];
        rules
    }

    #[test]
    fn the_name_is_what_the_chain_holds() {
        let (a, b) = (ssh(), ssh());
        let fa = Fingerprint::of(&a, Direction::Inbound);
        assert_eq!(fa, Fingerprint::of(&b, Direction::Inbound));
        // The same rules from another group, or twice: the same chain.
        let mut other_group = ssh();
        other_group[1].group = 100;
        other_group.push(other_group[1].clone());
        assert_eq!(Fingerprint::of(&other_group, Direction::Inbound), fa);
        // Another port, or the other direction: another chain.
        let mut https = ssh();
        https[1].ports[0] = PortRange { first: 443, last: 443 };
        assert_ne!(Fingerprint::of(&https, Direction::Inbound), fa);
        assert_ne!(Fingerprint::of(&a, Direction::Outbound), fa);
        let n = name(fa, Direction::Inbound);
        assert!(
            n.starts_with("sg-") && n.ends_with("-in") && n.len() == 3 + 32 + 3,
            "{n}"
        );
        assert_eq!(parse_name(&n), Some((fa, Direction::Inbound)));
        assert_eq!(
            parse_name(&name(fa, Direction::Outbound)),
            Some((fa, Direction::Outbound))
        );
        for bad in ["nic-7-0-in", "sg-00-in", &n.to_uppercase(), &n.replace("-in", "-up")] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
        let json = serde_json::to_string(&fa).unwrap();
        assert_eq!(serde_json::from_str::<Fingerprint>(&json).unwrap(), fa);
        assert!(serde_json::from_str::<Fingerprint>("\"zz\"").is_err());
    }
}
