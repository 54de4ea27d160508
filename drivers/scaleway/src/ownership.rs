//! Which flexible IPs are ours, and whether one is the very flexible IP an
//! OpenNebula address range names.
//!
//! Every flexible IP the IPAM driver creates carries:
//! - `opennebula` and `one-scaleway-ipam`: ours (what `gc` and a state
//!   rebuild look for);
//! - `one-scaleway-token=<uuid>`: its registration, unique (how an
//!   ambiguous create is reconciled instead of repeated);
//! - `one-scaleway-block=<a.b.c.d/31>`: the private block its range was
//!   given (IPv4 ranges; IPv6 ranges have none);
//! - `one-provision=<id>` when the range belongs to a oneprovision provision
//!   (`PROVISION_ID`), `one-scaleway-provision=<id>` when it belongs to a
//!   `scaleway-provision` one (`SCALEWAY_PROVISION`).
//!
//! A range's attributes are data a user may have written: before a flexible
//! IP is attached, moved, detached or deleted because a range names it,
//! [`check`] proves it is ours and that range's.

use std::net::{IpAddr, Ipv4Addr};

use crate::flexible_ip::FlexibleIp;

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

/// What an address range says about its flexible IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<'a> {
    /// The range's `SCALEWAY_IP_ID`.
    pub fip_id: &'a str,
    /// The range's `EXTERNAL_IP`, when it has one.
    pub external: Option<IpAddr>,
    /// The range's `IP` (IPv4 ranges): the VM's half of its private /31.
    pub private: Option<Ipv4Addr>,
}

/// Whether `fip` is the flexible IP `claim` names and ours: tagged
/// `one-scaleway-ipam`, at the range's `EXTERNAL_IP`, and for an IPv4 range
/// tagged with the range's private /31. `Err` says which proof is missing.
pub fn check(fip: &FlexibleIp, claim: &Claim<'_>) -> Result<(), String> {
    let shown = format!("flexible IP {} ({})", fip.ip_address, fip.id);
    if fip.id != claim.fip_id {
        return Err(format!("{shown} is not {}, the one the range names", claim.fip_id));
    }
    if !is_ours(&fip.tags) {
        return Err(format!(
            "{shown} is not tagged {OURS}: OpenNebula's scaleway_fip driver did not create it"
        ));
    }
    if let Some(external) = claim.external
        && fip.address() != Some(external)
    {
        return Err(format!("{shown} is not the range's EXTERNAL_IP {external}"));
    }
    if let Some(private) = claim.private {
        let base = Ipv4Addr::from(u32::from(private) & !1);
        let tagged = value(&fip.tags, BLOCK);
        if tagged != Some(format!("{base}/31").as_str()) {
            return Err(format!(
                "{shown} belongs to private block {}, not to the range's {base}/31",
                tagged.unwrap_or("(none)")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fip(id: &str, address: &str, tags: &[&str]) -> FlexibleIp {
        FlexibleIp {
            id: id.into(),
            ip_address: address.into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            ..FlexibleIp::default()
        }
    }

    const ID: &str = "b13935e9-c931-4f3c-affb-220533968b46";

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
    fn only_our_ip_of_this_very_range_passes() {
        let ours = fip(
            ID,
            "62.210.16.2",
            &[OPENNEBULA, OURS, "one-scaleway-block=172.30.0.2/31"],
        );
        let claim = Claim {
            fip_id: ID,
            external: Some("62.210.16.2".parse().unwrap()),
            private: Some("172.30.0.2".parse().unwrap()),
        };
        assert_eq!(check(&ours, &claim), Ok(()));
        // The gateway half of the /31 is the same block; no EXTERNAL_IP: not checked.
        let gateway = Claim {
            private: Some("172.30.0.3".parse().unwrap()),
            external: None,
            ..claim
        };
        assert_eq!(check(&ours, &gateway), Ok(()));
        let cases: [(&str, FlexibleIp, Claim<'_>, &str); 5] = [
            (
                "another id",
                fip("0b0d7a9e-6a7b-4c3e-9d8e-1f2a3b4c5d6e", "62.210.16.2", &[OURS]),
                claim,
                "is not b13935e9",
            ),
            (
                "not ours",
                fip(ID, "62.210.16.2", &[OPENNEBULA, "one-scaleway-block=172.30.0.2/31"]),
                claim,
                "is not tagged one-scaleway-ipam",
            ),
            (
                "another address",
                fip(ID, "62.210.16.9", &[OURS, "one-scaleway-block=172.30.0.2/31"]),
                claim,
                "is not the range's EXTERNAL_IP 62.210.16.2",
            ),
            (
                "another range's block",
                fip(ID, "62.210.16.2", &[OURS, "one-scaleway-block=172.30.0.4/31"]),
                claim,
                "belongs to private block 172.30.0.4/31, not to the range's 172.30.0.2/31",
            ),
            (
                "no block",
                fip(ID, "62.210.16.2", &[OURS]),
                claim,
                "belongs to private block (none)",
            ),
        ];
        for (what, f, c, expected) in cases {
            let e = check(&f, &c).unwrap_err();
            assert!(e.contains(expected), "{what}: {e}");
        }
    }

    #[test]
    fn an_ipv6_range_is_checked_by_its_prefix() {
        let ours = fip(ID, "2001:bc8:1202:600::/64", &[OPENNEBULA, OURS]);
        let claim = Claim {
            fip_id: ID,
            external: Some("2001:bc8:1202:600::".parse().unwrap()),
            private: None,
        };
        assert_eq!(check(&ours, &claim), Ok(()));
        let other = Claim {
            external: Some("2001:bc8:1202:700::".parse().unwrap()),
            ..claim
        };
        assert!(check(&ours, &other).is_err());
    }
}
