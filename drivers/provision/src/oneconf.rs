//! Registering our drivers in OpenNebula's configuration: pure edits of
//! `oned.conf` and `vmm_execrc` text, which `install.sh` applies (with a
//! backup) or prints. Each edit is idempotent, adds nothing twice, and is
//! reversible: what we add carries a marker comment, or is a token we can
//! take out again.
//!
//! - `IPAM_MAD`: `scaleway_fip` in the `-i` list of `ARGUMENTS` (a stock
//!   `scaleway` entry is left alone);
//! - `VN_MAD_CONF` for `scaleway` and `scaleway_evpn` (`BRIDGE_TYPE = "linux"`);
//! - `INHERIT_VNET_ATTR`: `EXTERNAL_IP`, `GATEWAY` and `GATEWAY6` (the public
//!   NICs need them from their range), `GUEST_MTU` (the private NICs);
//! - `VM_RESTRICTED_ATTR`: `NIC/EXTERNAL_IP`, so that only administrators can
//!   write a flexible IP address into a NIC;
//! - `VNET_RESTRICTED_ATTR`: the range attributes our drivers trust
//!   ([`TRUSTED_RANGE_ATTRIBUTES`], on networks and ranges; `GATEWAY` and
//!   `GATEWAY6` on ranges), so that only administrators can write them;
//! - `vmm_execrc`: `scaleway-post scaleway-clean` in `VNMAD_LOCAL_ACTIONS`,
//!   so those run on the frontend.

use anyhow::{Result, anyhow, bail};
use opennebula::template::{Template, Value};

/// Marks the lines we add.
pub const MARKER: &str = "# one-scaleway";

/// An edited file and what changed, one line per change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub text: String,
    pub changes: Vec<String>,
}

fn singles<'a>(t: &'a Template, name: &str) -> Vec<&'a str> {
    t.attributes
        .iter()
        .filter_map(|(n, v)| match v {
            Value::Single(s) if n == name => Some(s.as_str()),
            _ => None,
        })
        .collect()
}

fn has_vn_mad(t: &Template, driver: &str) -> bool {
    t.attributes.iter().any(|(n, v)| {
        n == "VN_MAD_CONF" && matches!(v, Value::Vector(pairs) if pairs.iter().any(|(k, v)| k == "NAME" && v == driver))
    })
}

/// The network and range attributes our drivers act on (which flexible IP,
/// where, with whose credentials, which private block): restricted to
/// administrators in `oned.conf` (`VNET_RESTRICTED_ATTR`, on the network
/// and on its ranges).
pub const TRUSTED_RANGE_ATTRIBUTES: [&str; 8] = [
    "SCALEWAY_IP_ID",
    "EXTERNAL_IP",
    "SCALEWAY_ZONE",
    "SCALEWAY_PROFILE",
    "SCALEWAY_IP_TYPE",
    "SCALEWAY_PROVISION",
    "PROVISION_ID",
    "PRIVATE_CIDR",
];

/// Our IPAM driver's name. Not `scaleway`: OpenNebula 7.0's packages own
/// `remotes/ipam/scaleway_fip/` and list `scaleway` in the stock `-i` list, which
/// an uninstall must leave in place.
pub const IPAM_DRIVER: &str = "scaleway_fip";

/// The `-i` list in an `ARGUMENTS` value, with [`IPAM_DRIVER`] added or removed.
fn edit_ipam_arguments(arguments: &str, add: bool) -> Option<String> {
    let tokens: Vec<&str> = arguments.split_whitespace().collect();
    let i = tokens.iter().position(|t| *t == "-i")?;
    let list = tokens.get(i + 1)?;
    let mut names: Vec<&str> = list.split(',').filter(|n| !n.is_empty()).collect();
    let present = names.contains(&IPAM_DRIVER);
    if add == present {
        return None;
    }
    if add {
        names.push(IPAM_DRIVER);
    } else {
        names.retain(|n| *n != IPAM_DRIVER);
    }
    let joined = names.join(",");
    let mut out: Vec<String> = tokens.iter().map(|t| (*t).to_owned()).collect();
    out[i + 1] = joined;
    Some(out.join(" "))
}

/// Adds (or with `add = false` removes) our registration in `oned.conf`.
pub fn edit_oned_conf(text: &str, add: bool) -> Result<Edit> {
    let parsed = Template::parse(text).map_err(|e| anyhow!("oned.conf: {e}; edit it by hand (see the README)"))?;
    let mut out = text.to_owned();
    let mut changes = Vec::new();
    // IPAM_MAD ARGUMENTS: edit in place, keeping the file's layout.
    let ipam = parsed
        .vector_named("IPAM_MAD")
        .ok_or_else(|| anyhow!("oned.conf has no IPAM_MAD section"))?;
    let arguments = ipam
        .iter()
        .find(|(k, _)| k == "ARGUMENTS")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| anyhow!("IPAM_MAD has no ARGUMENTS"))?;
    match edit_ipam_arguments(arguments, add) {
        Some(edited) => {
            let quoted = format!("\"{arguments}\"");
            if out.matches(&quoted).count() != 1 {
                bail!("oned.conf: cannot find IPAM_MAD's ARGUMENTS {quoted} exactly once; edit it by hand");
            }
            out = out.replacen(&quoted, &format!("\"{edited}\""), 1);
            changes.push(format!("IPAM_MAD ARGUMENTS: \"{arguments}\" -> \"{edited}\""));
        }
        None if add && !arguments.split_whitespace().any(|t| t == "-i") => {
            changes.push("IPAM_MAD ARGUMENTS has no -i list: every IPAM driver is allowed, nothing to add".into());
        }
        None => {}
    }
    let ours = |block: &str| format!("{MARKER}\n{block}\n");
    let mut additions: Vec<(String, String)> = Vec::new();
    for driver in ["scaleway", "scaleway_evpn"] {
        if !has_vn_mad(&parsed, driver) {
            additions.push((
                format!("VN_MAD_CONF for {driver}"),
                ours(&format!(
                    "VN_MAD_CONF = [\n    NAME = \"{driver}\",\n    BRIDGE_TYPE = \"linux\"\n]"
                )),
            ));
        }
    }
    let mut singles_to_add: Vec<(&str, String)> = Vec::new();
    for (name, value) in [
        ("INHERIT_VNET_ATTR", "EXTERNAL_IP"),
        ("INHERIT_VNET_ATTR", "GATEWAY"),
        // IPv6 public ranges: the host answers for the VM's IPv6 gateway.
        ("INHERIT_VNET_ATTR", "GATEWAY6"),
        // The private network's guest MTU (a real oned does not copy it to
        // the NIC otherwise): libvirt gives it to the guest, and the EVPN
        // driver checks it fits the VXLAN underlay.
        ("INHERIT_VNET_ATTR", "GUEST_MTU"),
        ("VM_RESTRICTED_ATTR", "NIC/EXTERNAL_IP"),
    ] {
        singles_to_add.push((name, value.to_owned()));
    }
    // The attributes our drivers trust on a network and its ranges: only
    // administrators may write them (a user who owns a network, a
    // reservation for instance, must not point a range at another flexible
    // IP or address). GATEWAY and GATEWAY6 only on ranges: users' own
    // networks of other drivers keep theirs.
    for attr in TRUSTED_RANGE_ATTRIBUTES {
        singles_to_add.push(("VNET_RESTRICTED_ATTR", attr.to_string()));
        singles_to_add.push(("VNET_RESTRICTED_ATTR", format!("AR/{attr}")));
    }
    for attr in ["GATEWAY", "GATEWAY6"] {
        singles_to_add.push(("VNET_RESTRICTED_ATTR", format!("AR/{attr}")));
    }
    for (name, value) in singles_to_add {
        if !singles(&parsed, name).contains(&value.as_str()) {
            additions.push((format!("{name} = \"{value}\""), ours(&format!("{name} = \"{value}\""))));
        }
    }
    if add {
        for (what, block) in additions {
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&block);
            changes.push(format!("added {what}"));
        }
    } else {
        // Remove our marked blocks: the marker line and the attribute after it.
        let mut kept = String::new();
        let mut lines = out.lines().peekable();
        while let Some(line) = lines.next() {
            if line == MARKER {
                let mut depth = 0i32;
                let mut removed = String::new();
                for next in lines.by_ref() {
                    depth += next.matches('[').count() as i32 - next.matches(']').count() as i32;
                    removed.push_str(next.trim());
                    if depth <= 0 {
                        break;
                    }
                }
                changes.push(format!("removed {removed}"));
                continue;
            }
            kept.push_str(line);
            kept.push('\n');
        }
        out = kept;
    }
    Ok(Edit { text: out, changes })
}

/// Adds (or removes) `scaleway-post scaleway-clean` in `VNMAD_LOCAL_ACTIONS`.
pub fn edit_vmm_execrc(text: &str, add: bool) -> Result<Edit> {
    const OURS: [&str; 2] = ["scaleway-post", "scaleway-clean"];
    let mut changes = Vec::new();
    let mut found = false;
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("VNMAD_LOCAL_ACTIONS=") {
            found = true;
            let value = rest.trim().trim_matches('"');
            let mut tokens: Vec<&str> = value.split_whitespace().collect();
            let before = tokens.join(" ");
            if add {
                for t in OURS {
                    if !tokens.contains(&t) {
                        tokens.push(t);
                    }
                }
            } else {
                tokens.retain(|t| !OURS.contains(t));
            }
            let after = tokens.join(" ");
            if after != before {
                changes.push(format!("VNMAD_LOCAL_ACTIONS: \"{before}\" -> \"{after}\""));
            }
            out.push_str(&format!("VNMAD_LOCAL_ACTIONS=\"{after}\"\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !found && add {
        out.push_str(&format!("{MARKER}\nVNMAD_LOCAL_ACTIONS=\"{}\"\n", OURS.join(" ")));
        changes.push(format!("added VNMAD_LOCAL_ACTIONS=\"{}\"", OURS.join(" ")));
    }
    Ok(Edit { text: out, changes })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONED: &str = "# OpenNebula configuration\n\
        LOG = [\n  SYSTEM = \"file\",\n  DEBUG_LEVEL = 3\n]\n\
        IPAM_MAD = [\n    EXECUTABLE = \"one_ipam\",\n    ARGUMENTS  = \"-t 1 -i dummy,aws,equinix,vultr\"\n]\n\
        VN_MAD_CONF = [\n    NAME = \"bridge\",\n    BRIDGE_TYPE = \"linux\"\n]\n\
        INHERIT_VNET_ATTR       = \"VLAN_TAGGED_ID\"\nINHERIT_VNET_ATTR       = \"GATEWAY\"\n\
        VM_RESTRICTED_ATTR = \"NIC/MAC\"\n";

    /// OpenNebula 7.0's stock list already names `scaleway` (its packaged
    /// Ruby driver): ours is added beside it and the stock entry outlives
    /// an uninstall.
    #[test]
    fn a_stock_scaleway_entry_is_left_in_place() {
        let stock = ONED.replace("-i dummy,aws,equinix,vultr", "-i dummy,aws,equinix,vultr,scaleway");
        let added = edit_oned_conf(&stock, true).unwrap();
        assert!(
            added
                .text
                .contains("-i dummy,aws,equinix,vultr,scaleway,scaleway_fip\""),
            "{}",
            added.text
        );
        let removed = edit_oned_conf(&added.text, false).unwrap();
        assert_eq!(removed.text, stock);
    }

    #[test]
    fn registration_is_added_once_and_removed_exactly() {
        let added = edit_oned_conf(ONED, true).unwrap();
        assert!(
            added
                .text
                .contains("ARGUMENTS  = \"-t 1 -i dummy,aws,equinix,vultr,scaleway_fip\""),
            "{}",
            added.text
        );
        assert!(added.text.contains("NAME = \"scaleway_evpn\""));
        assert!(added.text.contains("INHERIT_VNET_ATTR = \"EXTERNAL_IP\""));
        assert!(
            !added.text.contains("INHERIT_VNET_ATTR = \"GATEWAY\""),
            "GATEWAY was already there"
        );
        assert!(added.text.contains("VM_RESTRICTED_ATTR = \"NIC/EXTERNAL_IP\""));
        assert!(added.text.contains("INHERIT_VNET_ATTR = \"GATEWAY6\""));
        assert!(added.text.contains("INHERIT_VNET_ATTR = \"GUEST_MTU\""));
        for restricted in [
            "SCALEWAY_IP_ID",
            "AR/SCALEWAY_IP_ID",
            "EXTERNAL_IP",
            "AR/EXTERNAL_IP",
            "AR/GATEWAY",
        ] {
            assert!(
                added.text.contains(&format!("VNET_RESTRICTED_ATTR = \"{restricted}\"")),
                "{restricted}"
            );
        }
        assert!(
            !added.text.contains("VNET_RESTRICTED_ATTR = \"GATEWAY\""),
            "users' own networks keep theirs"
        );
        assert_eq!(
            added.changes.len(),
            7 + 2 * TRUSTED_RANGE_ATTRIBUTES.len() + 2,
            "{:?}",
            added.changes
        );
        let again = edit_oned_conf(&added.text, true).unwrap();
        assert_eq!(again.text, added.text, "idempotent");
        assert!(again.changes.is_empty(), "{:?}", again.changes);
        let removed = edit_oned_conf(&added.text, false).unwrap();
        assert_eq!(removed.text, ONED, "uninstall restores the file");
    }

    #[test]
    fn vmm_execrc_local_actions() {
        let rc = "# vmm_execrc\nLIBVIRT_URI=qemu:///system\nVNMAD_LOCAL_ACTIONS=\"elastic-post elastic-clean\"\n";
        let added = edit_vmm_execrc(rc, true).unwrap();
        assert!(
            added
                .text
                .contains("VNMAD_LOCAL_ACTIONS=\"elastic-post elastic-clean scaleway-post scaleway-clean\"")
        );
        assert_eq!(edit_vmm_execrc(&added.text, true).unwrap().text, added.text);
        assert_eq!(edit_vmm_execrc(&added.text, false).unwrap().text, rc);
        let bare = edit_vmm_execrc("A=1\n", true).unwrap();
        assert!(
            bare.text
                .ends_with("VNMAD_LOCAL_ACTIONS=\"scaleway-post scaleway-clean\"\n")
        );
    }

    #[test]
    fn unusable_files_are_refused() {
        assert!(
            edit_oned_conf("LOG = [ SYSTEM = \"file\" ]\n", true)
                .unwrap_err()
                .to_string()
                .contains("no IPAM_MAD")
        );
        assert!(
            edit_oned_conf("IPAM_MAD = [ EXECUTABLE = \"one_ipam\" ]\n", true)
                .unwrap_err()
                .to_string()
                .contains("no ARGUMENTS")
        );
        assert!(
            edit_oned_conf("IPAM_MAD = [ ARGUMENTS = \"x\"\n", true)
                .unwrap_err()
                .to_string()
                .contains("edit it by hand")
        );
    }
}
