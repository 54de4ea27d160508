//! A NIC's rules as the nftables rules of its two chains (one per
//! direction), rule form by rule form as OpenNebula's iptables driver
//! writes them (`security_groups_iptables.rb`):
//!
//! | OpenNebula | iptables/ipset | here |
//! |---|---|---|
//! | protocol | `-p P -j RETURN` (ICMP: IPv4 only, ICMPV6: IPv6 only) | `meta l4proto P return` (`return` alone for ALL) |
//! | portrange | `-p P -m multiport --dports R -j RETURN` | `P dport { R } return` |
//! | icmp_type | `-p icmp --icmp-type T -j RETURN` (any code) | `icmp type T return` |
//! | icmpv6_type | `-p icmpv6 --icmpv6-type T -j RETURN` | `icmpv6 type T return` |
//! | net | set `hash:net` of the ranges, `--match-set S src` (inbound) / `dst` | `ip saddr { ranges } ...` / `daddr` |
//! | net_portrange | set `hash:net,port` of `net,P:port` | `ip saddr { ranges } P dport { R } return` |
//! | net_icmp_type | set `hash:net,port` of `net,icmp:T/C` for each code C OpenNebula knows of T (`0` when it knows none) | `ip saddr { ranges } icmp type T icmp code { C } return` |
//! | net_icmpv6_type | the same with `icmpv6` | the same with `icmpv6` |
//!
//! Around the rules, as OpenNebula's `nic_pre`/`nic_post`: replies of
//! established connections (and related ICMP errors) first, the neighbour
//! discovery a VM needs (inbound: router advertisement, solicitation,
//! advertisement, redirect; outbound: router solicitation, neighbour
//! solicitation and advertisement; a rule per type, no anonymous set), and
//! `drop` last. A rule that lets a
//! packet through returns to the table's base chain, where the other end's
//! chain (another VM on the host) still judges it.

use crate::rule::{AddrRange, Direction, Protocol, Rule, Target};

/// ICMP codes OpenNebula knows for a type (IANA), used by its
/// `net_icmp_type` rules.
pub fn icmp_codes(t: u8) -> &'static [u8] {
    match t {
        3 => &[0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15],
        5 => &[0, 1, 2, 3],
        9 => &[0, 16],
        11 => &[0, 1],
        12 => &[0, 1, 2],
        _ => &[0],
    }
}

/// The same for ICMPv6 (`net_icmpv6_type`).
pub fn icmpv6_codes(t: u8) -> &'static [u8] {
    match t {
        1 => &[0, 1, 2, 3, 4, 5, 6, 7],
        3 => &[0, 1],
        4 => &[0, 1, 2, 3],
        138 => &[0, 1, 255],
        139 | 140 => &[0, 1, 2],
        _ => &[0],
    }
}

fn list<T: ToString>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(ToString::to_string).collect();
    format!("{{ {} }}", items.join(", "))
}

/// The nft rules (each ending in `return`) for one security group rule.
pub fn rule_lines(rule: &Rule) -> Vec<String> {
    let net = matches!(rule.target, Target::Ranges(_));
    let mut tail = String::new();
    match rule.protocol {
        Protocol::All => {}
        Protocol::Tcp | Protocol::Udp if !rule.ports.is_empty() => {
            let p = if rule.protocol == Protocol::Tcp { "tcp" } else { "udp" };
            tail.push_str(&format!("{p} dport {} ", list(&rule.ports)));
        }
        Protocol::Tcp => tail.push_str("meta l4proto tcp "),
        Protocol::Udp => tail.push_str("meta l4proto udp "),
        Protocol::Icmp => match rule.icmp_type {
            None => tail.push_str("meta l4proto icmp "),
            Some(t) if net => tail.push_str(&format!("icmp type {t} icmp code {} ", list(icmp_codes(t)))),
            Some(t) => tail.push_str(&format!("icmp type {t} ")),
        },
        Protocol::Icmpv6 => match rule.icmp_type {
            None => tail.push_str("meta l4proto ipv6-icmp "),
            Some(t) if net => tail.push_str(&format!("icmpv6 type {t} icmpv6 code {} ", list(icmpv6_codes(t)))),
            Some(t) => tail.push_str(&format!("icmpv6 type {t} ")),
        },
        Protocol::Ipsec => tail.push_str("meta l4proto esp "),
    }
    tail.push_str("return");
    let key = match rule.direction {
        Direction::Inbound => "saddr",
        Direction::Outbound => "daddr",
    };
    match &rule.target {
        Target::Any => vec![tail],
        Target::Ranges(ranges) => {
            let v4: Vec<&AddrRange> = ranges.iter().filter(|r| matches!(r, AddrRange::V4 { .. })).collect();
            let v6: Vec<&AddrRange> = ranges.iter().filter(|r| matches!(r, AddrRange::V6 { .. })).collect();
            // ICMP is IPv4's and ICMPv6 IPv6's (OpenNebula puts their ranges
            // in a set of that family only).
            let (v4, v6) = match rule.protocol {
                Protocol::Icmp => (v4, Vec::new()),
                Protocol::Icmpv6 => (Vec::new(), v6),
                _ => (v4, v6),
            };
            let mut out = Vec::new();
            if !v4.is_empty() {
                out.push(format!("ip {key} {} {tail}", list(&v4)));
            }
            if !v6.is_empty() {
                out.push(format!("ip6 {key} {} {tail}", list(&v6)));
            }
            out
        }
    }
}

/// Whether `rules` let everything through in `direction` (a rule of every
/// protocol from or to every address, as group 0's): the chain of that
/// direction would only ever return, so the drivers make none (the NIC's
/// element in their verdict map `continue`s instead).
pub fn open(rules: &[Rule], direction: Direction) -> bool {
    rules
        .iter()
        .any(|r| r.direction == direction && r.protocol == Protocol::All && r.target == Target::Any)
}

/// The whole chain of one direction for a NIC with `rules` (the rules of
/// the other direction are skipped).
pub fn chain(rules: &[Rule], direction: Direction) -> Vec<String> {
    let mut out = vec!["ct state established,related return".to_owned()];
    let mut seen = std::collections::BTreeSet::new();
    for r in rules.iter().filter(|r| r.direction == direction) {
        for line in rule_lines(r) {
            // OpenNebula removes duplicate commands (`uniq!`).
            if seen.insert(line.clone()) {
                out.push(line);
            }
        }
    }
    out.extend(
        neighbour_discovery(direction)
            .iter()
            .map(|t| format!("icmpv6 type {t} return")),
    );
    out.push("drop".to_owned());
    out
}

/// The ICMPv6 neighbour discovery types a VM needs in `direction`, one rule
/// each: a set (`icmpv6 type { ... }`) would be an anonymous set of its
/// own in every NIC's chain, and `nft` reads every set of the ruleset
/// before each transaction, so a host's every action would grow with its
/// NICs.
fn neighbour_discovery(direction: Direction) -> &'static [&'static str] {
    match direction {
        Direction::Inbound => &[
            "nd-router-advert",
            "nd-neighbor-solicit",
            "nd-neighbor-advert",
            "nd-redirect",
        ],
        Direction::Outbound => &["nd-router-solicit", "nd-neighbor-solicit", "nd-neighbor-advert"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::PortRange;

    fn r(direction: Direction, protocol: Protocol) -> Rule {
        Rule {
            group: 100,
            direction,
            protocol,
            ports: Vec::new(),
            icmp_type: None,
            target: Target::Any,
        }
    }

    #[test]
    fn each_rule_form() {
        use Direction::{Inbound, Outbound};
        let net = Target::Ranges(vec![
            AddrRange::V4 {
                first: [10, 0, 0, 1].into(),
                last: [10, 0, 0, 8].into(),
            },
            AddrRange::V6 {
                first: "2001:db8::".parse().unwrap(),
                last: "2001:db8::ff".parse().unwrap(),
            },
        ]);
        let ports = vec![PortRange { first: 22, last: 22 }, PortRange { first: 80, last: 90 }];
        let cases: Vec<(Rule, Vec<&str>)> = vec![
            (r(Inbound, Protocol::All), vec!["return"]),
            (r(Inbound, Protocol::Tcp), vec!["meta l4proto tcp return"]),
            (r(Inbound, Protocol::Ipsec), vec!["meta l4proto esp return"]),
            (r(Inbound, Protocol::Icmpv6), vec!["meta l4proto ipv6-icmp return"]),
            (
                Rule {
                    ports: ports.clone(),
                    ..r(Inbound, Protocol::Udp)
                },
                vec!["udp dport { 22, 80-90 } return"],
            ),
            (
                Rule {
                    icmp_type: Some(8),
                    ..r(Inbound, Protocol::Icmp)
                },
                vec!["icmp type 8 return"],
            ),
            (
                Rule {
                    target: net.clone(),
                    ..r(Inbound, Protocol::All)
                },
                vec![
                    "ip saddr { 10.0.0.1-10.0.0.8 } return",
                    "ip6 saddr { 2001:db8::-2001:db8::ff } return",
                ],
            ),
            (
                Rule {
                    target: net.clone(),
                    ports: ports.clone(),
                    ..r(Outbound, Protocol::Tcp)
                },
                vec![
                    "ip daddr { 10.0.0.1-10.0.0.8 } tcp dport { 22, 80-90 } return",
                    "ip6 daddr { 2001:db8::-2001:db8::ff } tcp dport { 22, 80-90 } return",
                ],
            ),
            (
                Rule {
                    target: net.clone(),
                    icmp_type: Some(3),
                    ..r(Inbound, Protocol::Icmp)
                },
                vec![
                    "ip saddr { 10.0.0.1-10.0.0.8 } icmp type 3 icmp code { 0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15 } return",
                ],
            ),
            (
                Rule {
                    target: net,
                    icmp_type: Some(128),
                    ..r(Inbound, Protocol::Icmpv6)
                },
                vec!["ip6 saddr { 2001:db8::-2001:db8::ff } icmpv6 type 128 icmpv6 code { 0 } return"],
            ),
            (
                Rule {
                    target: Target::Ranges(Vec::new()),
                    ..r(Inbound, Protocol::All)
                },
                vec![],
            ),
        ];
        for (rule, expected) in cases {
            assert_eq!(rule_lines(&rule), expected, "{rule:?}");
        }
    }

    #[test]
    fn a_chain_is_replies_rules_neighbour_discovery_drop() {
        let rules = [
            r(Direction::Inbound, Protocol::Tcp),
            r(Direction::Inbound, Protocol::Tcp),
            r(Direction::Outbound, Protocol::All),
        ];
        assert_eq!(
            chain(&rules, Direction::Inbound),
            [
                "ct state established,related return",
                "meta l4proto tcp return",
                "icmpv6 type nd-router-advert return",
                "icmpv6 type nd-neighbor-solicit return",
                "icmpv6 type nd-neighbor-advert return",
                "icmpv6 type nd-redirect return",
                "drop"
            ]
        );
        assert_eq!(chain(&rules, Direction::Outbound)[1], "return");
        assert_eq!(
            chain(&[], Direction::Outbound)[1..],
            [
                "icmpv6 type nd-router-solicit return",
                "icmpv6 type nd-neighbor-solicit return",
                "icmpv6 type nd-neighbor-advert return",
                "drop"
            ],
            "no rule: only replies and ND"
        );
    }
}
