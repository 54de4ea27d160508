//! The chains as nft sends them. `nft-1.0.6-chains.bin` is the batch nft
//! 1.0.6 sent for `chains.nft` (the script `NftBatch::render` writes for
//! the security groups' base and the two chains of `every_form()`: each
//! rule form OpenNebula has, in both directions, with the lists nft folds,
//! merges and ends open), captured in a fresh network namespace with
//! `strace -f -e trace=sendmsg -e write=3 nft -f chains.nft` (the dump of
//! its one `sendmsg`).

#![allow(clippy::unwrap_used)] // test code

use host_tools::nftables::encode;
use public_plan::{NftBatch, NftOp};
use secgroup::{AddrRange, Direction, PortRange, Protocol, Rule, Target};

const NFT: &[u8] = include_bytes!("nft-1.0.6-chains.bin");

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

fn ports(list: &[(u16, u16)]) -> Vec<PortRange> {
    list.iter().map(|&(first, last)| PortRange { first, last }).collect()
}

fn v4(first: &str, last: &str) -> AddrRange {
    AddrRange::V4 {
        first: first.parse().unwrap(),
        last: last.parse().unwrap(),
    }
}

fn v6(first: &str, last: &str) -> AddrRange {
    AddrRange::V6 {
        first: first.parse().unwrap(),
        last: last.parse().unwrap(),
    }
}

/// Every rule form, in both directions.
pub(crate) fn every_form() -> Vec<Rule> {
    let mut out = Vec::new();
    for d in [Direction::Inbound, Direction::Outbound] {
        let net = |ranges: Vec<AddrRange>| Target::Ranges(ranges);
        let tcp = |p: &[(u16, u16)]| Rule {
            ports: ports(p),
            ..r(d, Protocol::Tcp)
        };
        let udp = |p: &[(u16, u16)]| Rule {
            ports: ports(p),
            ..r(d, Protocol::Udp)
        };
        let icmp = |t: Option<u8>, target: Target| Rule {
            icmp_type: t,
            target,
            ..r(d, Protocol::Icmp)
        };
        let icmpv6 = |t: Option<u8>, target: Target| Rule {
            icmp_type: t,
            target,
            ..r(d, Protocol::Icmpv6)
        };
        out.extend([
            // Ports: a set with a range, one port, one range, values only,
            // overlapping and adjacent ranges, a range from 0, a range to
            // the last port.
            tcp(&[(80, 80), (443, 443), (8000, 8010)]),
            udp(&[(53, 53)]),
            tcp(&[(1024, 65535)]),
            tcp(&[(22, 22), (25, 25), (22, 22)]),
            udp(&[(20, 30), (31, 40), (25, 25), (100, 110), (105, 120)]),
            tcp(&[(0, 10), (3000, 3000)]),
            udp(&[(5000, 5000), (6000, 65535)]),
            r(d, Protocol::Tcp),
            r(d, Protocol::Udp),
            r(d, Protocol::Ipsec),
            icmp(None, Target::Any),
            icmp(Some(8), Target::Any),
            icmpv6(None, Target::Any),
            icmpv6(Some(128), Target::Any),
            // Addresses: one, one range, values, ranges (from 0, to the
            // last address), both families.
            Rule {
                target: net(vec![v4("10.0.0.1", "10.0.0.1")]),
                ..r(d, Protocol::All)
            },
            Rule {
                target: net(vec![v4("203.0.113.0", "203.0.113.255")]),
                ports: ports(&[(22, 22)]),
                ..r(d, Protocol::Tcp)
            },
            Rule {
                target: net(vec![v4("10.0.0.1", "10.0.0.1"), v4("10.0.0.9", "10.0.0.9")]),
                ..r(d, Protocol::Udp)
            },
            Rule {
                target: net(vec![
                    v4("0.0.0.0", "0.255.255.255"),
                    v4("192.168.0.1", "192.168.0.1"),
                    v4("224.0.0.0", "255.255.255.255"),
                    v6("2001:db8::", "2001:db8::ff"),
                    v6("2001:db8:1::1", "2001:db8:1::1"),
                ]),
                ..r(d, Protocol::Ipsec)
            },
            Rule {
                target: net(vec![v6("2001:db8::1", "2001:db8::1")]),
                ports: ports(&[(443, 443), (8443, 8443)]),
                ..r(d, Protocol::Tcp)
            },
            Rule {
                target: net(vec![v6("2001:db8::", "2001:db8::ffff:ffff")]),
                ..r(d, Protocol::All)
            },
            // ICMP types from addresses: a code set, one code (type and
            // code compared as one), ICMPv6 alike.
            icmp(Some(3), net(vec![v4("203.0.113.0", "203.0.113.255")])),
            icmp(
                Some(8),
                net(vec![
                    v4("203.0.113.0", "203.0.113.255"),
                    v6("2001:db8::", "2001:db8::1"),
                ]),
            ),
            icmpv6(Some(1), net(vec![v6("2001:db8::1", "2001:db8::1")])),
            icmpv6(
                Some(128),
                net(vec![
                    v6("2001:db8::", "2001:db8::ff"),
                    v6("2001:db8:2::", "2001:db8:2::ff"),
                ]),
            ),
            // No address of the rule's family: no line.
            icmp(Some(0), net(vec![v6("2001:db8::1", "2001:db8::1")])),
        ]);
    }
    out
}

fn batch() -> NftBatch {
    let rules = every_form();
    NftBatch {
        ops: vec![
            NftOp::EnsureFilters,
            NftOp::SetChain {
                direction: Direction::Inbound,
                rules: rules.clone(),
            },
            NftOp::SetChain {
                direction: Direction::Outbound,
                rules,
            },
        ],
    }
}

#[test]
fn the_script_is_the_fixture() {
    let script = batch().render();
    if std::env::var_os("UPDATE_FIXTURE").is_some() {
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/src/chains/tests/chains.nft"),
            &script,
        )
        .unwrap();
    }
    assert_eq!(script, include_str!("chains.nft"));
}

#[test]
fn the_chains_are_the_batch_nft_sends() {
    let changes = crate::lower::changes(&batch()).unwrap();
    let (ours, owners) = encode(&changes, 0);
    test_support::netlink::assert_batch_eq(&ours, NFT, |i| {
        changes[owners[i.saturating_sub(1).min(owners.len() - 1)]].to_string()
    });
}

#[test]
fn the_changes_read_as_the_script() {
    let changes = crate::lower::changes(&batch()).unwrap();
    let script: String = changes.iter().map(|c| format!("{c}\n")).collect();
    assert_eq!(script, include_str!("chains.nft"));
}
