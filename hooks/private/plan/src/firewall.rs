//! The driver's firewall: BGP (TCP 179) and VXLAN (UDP 4789) reach the
//! host only from the underlay network, through the underlay device. One
//! nftables table of its own, `table inet one_scaleway_evpn`, replaced as a
//! whole in one transaction; no other table is touched.
//!
//! The chain accepts by default: it only drops BGP and VXLAN packets that
//! do not come from the underlay (another table may still drop more).
//! Outgoing BGP sessions are not affected: their answers go to the host's
//! ephemeral port, not to 179.

use std::fmt::Write;

use crate::net::Ipv4Net;
use crate::{BGP_PORT, VXLAN_PORT};

/// Our table (family `inet`).
pub const NFT_TABLE: &str = "one_scaleway_evpn";
/// Its comment, so an administrator knows whose it is.
pub const NFT_COMMENT: &str =
    "one-scaleway: BGP-EVPN and VXLAN accepted only from the underlay network (OpenNebula VN_MAD scaleway_evpn)";

/// What our table must be: the underlay's rules, or no table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Rules {
    /// BGP and VXLAN accepted only from `underlay` through `device`.
    Underlay { underlay: Ipv4Net, device: String },
    /// The table removed.
    Absent,
}

impl Rules {
    /// Its `nft -f -` script.
    pub fn script(&self) -> String {
        match self {
            Self::Underlay { underlay, device } => render(*underlay, device),
            Self::Absent => render_removal(),
        }
    }
}

/// The `nft -f -` script that makes our table exactly this (created if
/// missing, its old content dropped, in the same transaction).
pub fn render(underlay: Ipv4Net, device: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "table inet {NFT_TABLE}");
    let _ = writeln!(out, "delete table inet {NFT_TABLE}");
    let _ = writeln!(out, "table inet {NFT_TABLE} {{");
    let _ = writeln!(out, "\tcomment \"{NFT_COMMENT}\"");
    out.push_str("\tchain input {\n");
    out.push_str("\t\ttype filter hook input priority filter; policy accept;\n");
    for (proto, port) in [("tcp", BGP_PORT), ("udp", VXLAN_PORT)] {
        let _ = writeln!(
            out,
            "\t\tiifname \"{device}\" ip saddr {underlay} {proto} dport {port} accept"
        );
        let _ = writeln!(out, "\t\t{proto} dport {port} drop");
    }
    out.push_str("\t}\n}\n");
    out
}

/// The script that removes our table (nothing when it is absent).
pub fn render_removal() -> String {
    format!("table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n")
}
