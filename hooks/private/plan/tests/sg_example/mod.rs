//! Security group tables for the tests: ports of VMs with a restricted
//! group or group 0. Shared by `golden.rs` and `apply_netns.rs`.

#![allow(dead_code)] // each file uses a part

use private_plan::sg::{Filters, PortFilter};
use secgroup::{Direction, PortRange, Protocol, Rule, Target};

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

/// A port of VM `vm` NIC `nic` numbered `id`: TCP 22 and 8000-8080 in and
/// everything out when `restricted`, else group 0.
pub fn port(vm: u64, nic: u32, id: u16, restricted: bool) -> PortFilter {
    PortFilter {
        vm,
        nic_id: nic,
        port: format!("one-{vm}-{nic}"),
        id,
        rules: if restricted {
            vec![
                rule(Direction::Inbound, Protocol::Tcp, &[(22, 22), (8000, 8080)]),
                rule(Direction::Outbound, Protocol::All, &[]),
            ]
        } else {
            secgroup::default_rules()
        },
    }
}

/// These ports and VXLAN devices.
pub fn filters(ports: Vec<PortFilter>, vxlans: &[&str]) -> Filters {
    let f = Filters {
        ports,
        vxlans: vxlans.iter().map(|v| (*v).to_owned()).collect(),
    };
    assert_eq!(f.check(), Ok(()));
    f
}
