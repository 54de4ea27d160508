//! OpenNebula's security groups for our network drivers (pure).
//!
//! oned puts every rule of every security group of a VM's NICs in the VM
//! document (`SECURITY_GROUP_RULE`, tagged with `SECURITY_GROUP_ID`), and
//! each NIC names its groups (`SECURITY_GROUPS="0,100"`). A NIC's filter is
//! the rules of its groups, in that order ([`nic_rules`]); a NIC without
//! `SECURITY_GROUPS` gets OpenNebula's default: everything in and out.
//! [`rule`] types and validates a rule as oned does; [`render`] writes the
//! nftables rules of a NIC's two chains, rule form by rule form as
//! OpenNebula's own iptables driver.

pub mod chain;
pub mod render;
pub mod rule;

use opennebula::attr::{Attributes, DocError};

pub use chain::Fingerprint;
pub use render::open;
pub use rule::{AddrRange, Direction, PortRange, Protocol, Rule, Target};

/// The packet mark bit of a frame bridged through a private network's VM
/// port or VXLAN device (`scaleway_evpn`'s security groups set it before
/// the `inet` hooks see the frame; see `private_plan::sg`).
pub const PRIVATE_BRIDGED: u32 = 0x8000_0000;

/// The first rule of the public driver's NAT and filter base chains:
/// bridged private traffic (whose addresses may be anything a tenant chose,
/// its public /31s included, once `br_netfilter` passes it to these hooks)
/// is none of theirs.
pub const SKIP_PRIVATE: &str = "meta mark & 0x80000000 == 0x80000000 accept";

/// The rules of a NIC (or of a NIC alias's parent NIC), in the order of
/// its `SECURITY_GROUPS`, from the VM document's rules. A group the
/// document holds no rule of lets nothing through (as in OpenNebula).
pub fn nic_rules(vm_rules: &[Attributes], nic: &Attributes) -> Result<Vec<Rule>, DocError> {
    let Some(groups) = nic.get("SECURITY_GROUPS").map(str::trim).filter(|g| !g.is_empty()) else {
        return Ok(default_rules());
    };
    let parsed: Vec<Rule> = vm_rules.iter().map(Rule::from_attrs).collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for g in groups.split(',') {
        let id: u32 = g.trim().parse().map_err(|_| {
            DocError::new(
                format!("{}/SECURITY_GROUPS", nic.path()),
                format!("{groups:?} is not a comma-separated list of security group IDs"),
            )
        })?;
        out.extend(parsed.iter().filter(|r| r.group == id).cloned());
    }
    Ok(out)
}

/// OpenNebula's default group 0 when a NIC names none: all in, all out.
pub fn default_rules() -> Vec<Rule> {
    [Direction::Outbound, Direction::Inbound]
        .into_iter()
        .map(|direction| Rule {
            group: 0,
            direction,
            protocol: Protocol::All,
            ports: Vec::new(),
            icmp_type: None,
            target: Target::Any,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(path: &str, pairs: &[(&str, &str)]) -> Attributes {
        Attributes::from_pairs(path, pairs.iter().copied())
    }

    #[test]
    fn a_nic_gets_the_rules_of_its_groups_in_order() {
        let rules = [
            attrs(
                "R#1",
                &[
                    ("PROTOCOL", "ALL"),
                    ("RULE_TYPE", "OUTBOUND"),
                    ("SECURITY_GROUP_ID", "0"),
                ],
            ),
            attrs(
                "R#2",
                &[
                    ("PROTOCOL", "TCP"),
                    ("RULE_TYPE", "INBOUND"),
                    ("RANGE", "443"),
                    ("SECURITY_GROUP_ID", "100"),
                ],
            ),
        ];
        let got = nic_rules(&rules, &attrs("NIC", &[("SECURITY_GROUPS", "100,0")])).unwrap();
        assert_eq!(got.iter().map(|r| r.group).collect::<Vec<_>>(), [100, 0]);
        // A group without rules in the document: nothing from it.
        assert!(
            nic_rules(&rules, &attrs("NIC", &[("SECURITY_GROUPS", "7")]))
                .unwrap()
                .is_empty()
        );
        // No SECURITY_GROUPS: OpenNebula's default.
        assert_eq!(nic_rules(&rules, &attrs("NIC", &[])).unwrap(), default_rules());
        let e = nic_rules(&rules, &attrs("NIC", &[("SECURITY_GROUPS", "0;1")])).unwrap_err();
        assert!(e.to_string().contains("NIC/SECURITY_GROUPS"), "{e}");
    }
}
