//! The tags that mark a flexible IP as ours, and what they say.
//!
//! Every flexible IP we create carries:
//! - `opennebula` and `one-scaleway-ipam`: ours (what `gc` and a state
//!   rebuild look for);
//! - `one-scaleway-token=<uuid>`: this registration, unique (how an
//!   ambiguous create is reconciled instead of repeated);
//! - `one-scaleway-block=<a.b.c.d/31>`: the private block it was given (IPv4
//!   ranges; IPv6 ranges have none);
//! - `one-provision=<id>` when the range belongs to a oneprovision provision
//!   (`PROVISION_ID`), `one-scaleway-provision=<id>` when it belongs to a
//!   `scaleway-provision` one (`SCALEWAY_PROVISION`).

pub const OURS: &str = "one-scaleway-ipam";
pub const OPENNEBULA: &str = "opennebula";
pub const TOKEN: &str = "one-scaleway-token=";
pub const BLOCK: &str = "one-scaleway-block=";
pub const PROVISION: &str = "one-provision=";
pub const SCALEWAY_PROVISION: &str = "one-scaleway-provision=";

/// The tags of a new flexible IP.
pub fn for_range(token: &str, block: &str, provision: Option<&str>, scaleway_provision: Option<&str>) -> Vec<String> {
    let mut tags = vec![OPENNEBULA.to_owned(), OURS.to_owned(), format!("{TOKEN}{token}")];
    if !block.is_empty() {
        tags.push(format!("{BLOCK}{block}"));
    }
    if let Some(p) = provision {
        tags.push(format!("{PROVISION}{p}"));
    }
    if let Some(p) = scaleway_provision {
        tags.push(format!("{SCALEWAY_PROVISION}{p}"));
    }
    tags
}

/// The value of the `prefix`-tag, if present.
pub fn value<'a>(tags: &'a [String], prefix: &str) -> Option<&'a str> {
    tags.iter().find_map(|t| t.strip_prefix(prefix))
}

/// Whether the tags mark one of our flexible IPs.
pub fn is_ours(tags: &[String]) -> bool {
    tags.iter().any(|t| t == OURS)
}

/// A new random registration token (a UUID v4 from the kernel's CSPRNG).
pub fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        let tags = for_range("t-1", "172.30.0.2/31", Some("17"), Some("p0a"));
        assert!(is_ours(&tags));
        assert_eq!(value(&tags, TOKEN), Some("t-1"));
        assert_eq!(value(&tags, BLOCK), Some("172.30.0.2/31"));
        assert_eq!(value(&tags, PROVISION), Some("17"));
        assert_eq!(value(&tags, SCALEWAY_PROVISION), Some("p0a"));
        assert!(!is_ours(&["opennebula".to_owned()]));
    }

    #[test]
    fn tokens_are_uuids_and_differ() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert!(scaleway::secret::is_uuid(&a), "{a}");
        assert_eq!(&a[14..15], "4");
    }
}
