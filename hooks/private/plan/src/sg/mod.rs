//! Security groups of the private NICs, enforced on the host.
//!
//! OpenNebula's own drivers filter a bridged VM by its port (iptables'
//! `physdev` match on the tap). nftables has no such match in the `inet`
//! family, and connection tracking in the `bridge` family needs
//! `nf_conntrack_bridge`, which not every kernel has. So the port travels
//! in the packet mark, from a `bridge` table to an `inet` table:
//!
//! - `table bridge one_scaleway_evpn_ports`: at `prerouting`, a frame from
//!   a VM's port gets mark `0x8000_0000 | id << 16` and a frame from one of
//!   our VXLAN devices `0x8000_0000` (map `marks`); at `forward`, a frame
//!   to a VM's port gets that port's `id` in the low bits (map `ports`, one
//!   small chain per port). `id` is the port's number on this host (1 to
//!   32767, kept in the host record).
//! - `table inet one_scaleway_evpn_sg`: bridged IPv4 and IPv6 reach the
//!   `inet` hooks through `br_netfilter` (`bridge-nf-call-iptables` and
//!   `-ip6tables`, which the driver makes sure are on, loading the module
//!   when needed), with connection tracking. At `forward`, the sender's
//!   `-out` chain by the mark's high half (map `from_vm`), then the
//!   receiver's `-in` chain by its low half (map `to_vm`); at `input`, what
//!   a VM sends to the host itself, through its `-out` chain. The chains
//!   hold the NIC's rules as OpenNebula's iptables driver applies them
//!   (`secgroup::render`), exactly as the public driver's, and are shared
//!   by every port whose rules are the same (`sg-<fingerprint>-in` and
//!   `-out`, `secgroup::chain`: a chain per rule set, not per port); a
//!   direction the rules leave wide open (group 0's) has no chain, its
//!   element `continue`s (`secgroup::open`).
//!
//! So a VM's rules follow its port whatever addresses it uses (a NIC alias
//! shares its parent's port and rules, as in OpenNebula), two private
//! networks with the same addresses do not mix, and a VM in another
//! tenant's group on the same host is judged by its own chains only.
//! Frames of other bridges and ports are not touched. The marks stay on
//! the frames of our ports and VXLAN devices (the VXLAN packet of a VM's
//! frame leaves with it; nothing of ours routes by mark).
//!
//! Both tables are written from the host record in one transaction, so no
//! NIC is ever open or half-filtered: `pre`, `clean` and `update_sg` change
//! only what differs from the record before ([`Filters::update_script`]: a
//! new port's chains and elements added, a gone port's deleted, changed
//! rules rewritten; nothing at all when nothing differs; measured: adding
//! costs the kernel about 5 ms, a transaction that deletes or rewrites
//! anything, whole tables included, about 20 ms), falling back to
//! replacing them whole ([`Filters::script`]) when the kernel's tables are
//! not what the record says; `evpn-config` and `reconcile` replace them
//! whole.

use std::collections::BTreeSet;

use opennebula::attr::IfName;
use secgroup::Rule;
use serde::{Deserialize, Serialize};

mod script;

/// The marking table (family `bridge`).
pub const PORTS_TABLE: &str = "one_scaleway_evpn_ports";
/// Its comment.
pub const PORTS_COMMENT: &str = "one-scaleway: the VMs' private ports carried in the packet mark for their security groups (OpenNebula VN_MAD \
     scaleway_evpn)";
/// The filtering table (family `inet`).
pub const FILTER_TABLE: &str = "one_scaleway_evpn_sg";
/// Its comment.
pub const FILTER_COMMENT: &str =
    "one-scaleway: OpenNebula security groups of the VMs' private NICs (OpenNebula VN_MAD scaleway_evpn)";
/// The mark bit of a frame of ours (the public driver's chains leave such
/// frames alone).
pub const OURS: u32 = secgroup::PRIVATE_BRIDGED;
/// The largest port number.
pub const MAX_ID: u16 = 0x7fff;

/// The security group rules of one private NIC, on its port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortFilter {
    pub vm: u64,
    pub nic_id: u32,
    /// The VM's port on the bridge (the NIC's `TARGET`).
    pub port: String,
    /// The port's number on this host (1 to [`MAX_ID`]).
    pub id: u16,
    pub rules: Vec<Rule>,
}

/// Everything both tables hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    pub ports: Vec<PortFilter>,
    /// Our VXLAN devices (their frames are marked as ours).
    pub vxlans: Vec<String>,
}

/// The mark of a frame from port `id`.
pub fn from_mark(id: u16) -> u32 {
    OURS | (u32::from(id) << 16)
}

/// The mark's low half for a frame to port `id` (with [`OURS`]).
pub fn to_mark(id: u16) -> u32 {
    OURS | u32::from(id)
}

/// The lowest port number not in `used`.
pub fn free_id(used: &BTreeSet<u16>) -> Option<u16> {
    (1..=MAX_ID).find(|i| !used.contains(i))
}

fn name_ok(what: &str, name: &str) -> Result<(), String> {
    name.parse::<IfName>()
        .map(|_| ())
        .map_err(|e| format!("{what} {name:?} is not an interface name: {}", e.problem))
}

impl Filters {
    /// Whether the tables can be written as they are: interface names,
    /// numbers and rules valid, no port, number or NIC twice.
    pub fn check(&self) -> Result<(), String> {
        let mut ports = BTreeSet::new();
        let mut ids = BTreeSet::new();
        let mut nics = BTreeSet::new();
        for p in &self.ports {
            name_ok("port", &p.port)?;
            if p.id == 0 || p.id > MAX_ID {
                return Err(format!("port number {} is not between 1 and {MAX_ID}", p.id));
            }
            if !ports.insert(p.port.as_str()) {
                return Err(format!("port {} is named twice", p.port));
            }
            if !ids.insert(p.id) {
                return Err(format!("port number {} is given twice", p.id));
            }
            if !nics.insert((p.vm, p.nic_id)) {
                return Err(format!("VM {} NIC {} is named twice", p.vm, p.nic_id));
            }
            p.rules
                .iter()
                .try_for_each(Rule::check)
                .map_err(|e| format!("VM {} NIC {}: a security group rule: {e}", p.vm, p.nic_id))?;
        }
        for v in &self.vxlans {
            name_ok("VXLAN device", v)?;
            if ports.contains(v.as_str()) {
                return Err(format!("{v} is both a VM's port and a VXLAN device"));
            }
        }
        Ok(())
    }
}

/// `br_netfilter`'s switches: bridged IPv4 and IPv6 through the `inet` hooks.
pub const BRIDGE_NF_KEYS: [&str; 2] = ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables"];

#[cfg(test)]
mod tests {
    use super::*;
    use secgroup::{Direction, PortRange, Protocol, Target};

    fn rule(direction: Direction, protocol: Protocol, ports: &[(u16, u16)]) -> Rule {
        Rule {
            group: 100,
            direction,
            protocol,
            ports: ports.iter().map(|&(first, last)| PortRange { first, last }).collect(),
            icmp_type: None,
            target: Target::Any,
        }
    }

    fn filters() -> Filters {
        Filters {
            ports: vec![
                PortFilter {
                    vm: 7,
                    nic_id: 1,
                    port: "one-7-1".into(),
                    id: 1,
                    rules: vec![
                        rule(Direction::Inbound, Protocol::Tcp, &[(22, 22), (8000, 8080)]),
                        rule(Direction::Outbound, Protocol::All, &[]),
                    ],
                },
                PortFilter {
                    vm: 8,
                    nic_id: 0,
                    port: "one-8-0".into(),
                    id: 2,
                    rules: secgroup::default_rules(),
                },
            ],
            vxlans: vec!["vxlan100".into()],
        }
    }

    #[test]
    fn marks_carry_the_port() {
        assert_eq!(from_mark(1), 0x8001_0000);
        assert_eq!(to_mark(MAX_ID), 0x8000_7fff);
        assert_eq!(free_id(&BTreeSet::from([1, 2, 4])), Some(3));
        assert_eq!(free_id(&(1..=MAX_ID).collect()), None);
    }

    #[test]
    fn checks_names_numbers_and_rules() {
        assert_eq!(filters().check(), Ok(()));
        let bad = |f: fn(&mut Filters), why: &str| {
            let mut x = filters();
            f(&mut x);
            let e = x.check().unwrap_err();
            assert!(e.contains(why), "{e}");
        };
        bad(|f| f.ports[0].port = "a b".into(), "not an interface name");
        bad(|f| f.ports[0].port = "one-8-0".into(), "named twice");
        bad(|f| f.ports[1].id = 1, "given twice");
        bad(|f| f.ports[1].id = 0, "not between");
        bad(|f| f.ports[1].id = 0x8000, "not between");
        bad(
            |f| {
                f.ports[1].vm = 7;
                f.ports[1].nic_id = 1;
            },
            "VM 7 NIC 1",
        );
        bad(|f| f.vxlans.push("one-7-1".into()), "both");
        bad(|f| f.vxlans.push("x;y".into()), "VXLAN device");
        bad(
            |f| f.ports[0].rules[0].ports[0] = PortRange { first: 90, last: 80 },
            "rule",
        );
    }

    #[test]
    fn no_port_removes_both_tables() {
        assert_eq!(
            Filters::default().script(),
            "table bridge one_scaleway_evpn_ports\ndelete table bridge one_scaleway_evpn_ports\n\
             table inet one_scaleway_evpn_sg\ndelete table inet one_scaleway_evpn_sg\n"
        );
    }
}
