//! IPv6 elements (interval sets: the guard's `ifname . prefix` ranges, the
//! filters' prefix maps) as nft sends them. `nft-1.0.6-v6-add.bin` and
//! `nft-1.0.6-v6-delete.bin` are the batches nft 1.0.6 sent for
//! `v6-add.nft` then `v6-delete.nft` (each the script `NftBatch::render`
//! writes for `add()` and `delete()`), captured in one fresh network
//! namespace with `strace -f -e trace=sendmsg -e write=3 nft -f FILE` (the
//! dump of each one `sendmsg`).

use std::net::Ipv6Addr;

use test_support::netlink::{messages, unacked};

use super::*;

const ADD: &[u8] = include_bytes!("nft-1.0.6-v6-add.bin");
const DELETE: &[u8] = include_bytes!("nft-1.0.6-v6-delete.bin");

/// VMs with IPv6 prefixes: ordinary ones, one adjacent to another, one
/// whose range ends at the last address, and a host address (/128).
fn prefixes() -> Vec<(u32, Ipv6Addr, u8)> {
    [
        (1, "2001:db8:0:1::", 64),
        (2, "2001:db8:0:2::", 64),
        (3, "2001:db8::", 64),
        (4, "ffff:ffff:ffff:ffff::", 64),
        (5, "2001:db8:5::7", 128),
    ]
    .into_iter()
    .map(|(n, p, l)| (n, p.parse().unwrap(), l))
    .collect()
}

fn elements(add: bool) -> Vec<NftOp> {
    let mut ops = Vec::new();
    for (n, prefix, len) in prefixes() {
        let t = tap(n);
        for g in [GuardElem::Addr6(t, prefix, len), GuardElem::Nd6(t, prefix, len)] {
            ops.push(if add { NftOp::AddGuard(g) } else { NftOp::DeleteGuard(g) });
        }
        for direction in [Direction::Inbound, Direction::Outbound] {
            let (addr, target) = (
                FilterAddr::V6(prefix, len),
                if n % 2 == 0 {
                    shared(direction)
                } else {
                    FilterTarget::Continue
                },
            );
            ops.push(NftOp::filter_addr(add, addr, direction, target));
        }
    }
    ops
}

fn add() -> NftBatch {
    let mut ops = vec![NftOp::EnsureBase, NftOp::EnsureGuard, NftOp::EnsureFilters];
    for direction in [Direction::Inbound, Direction::Outbound] {
        ops.push(NftOp::SetChain {
            direction,
            rules: Vec::new(),
        });
    }
    ops.extend(elements(true));
    NftBatch { ops }
}

fn delete() -> NftBatch {
    NftBatch { ops: elements(false) }
}

#[test]
fn the_scripts_are_the_fixtures() {
    for (batch, file, text) in [
        (add(), "v6-add.nft", include_str!("v6-add.nft")),
        (delete(), "v6-delete.nft", include_str!("v6-delete.nft")),
    ] {
        let script = batch.render();
        if std::env::var_os("UPDATE_FIXTURE").is_some() {
            let path = format!("{}/src/lower/tests/{file}", env!("CARGO_MANIFEST_DIR"));
            std::fs::write(path, &script).unwrap();
        }
        assert_eq!(script, text);
    }
}

/// An element message's payload without the set's ID in the transaction
/// (`NFTA_SET_ELEM_LIST_SET_ID`: nft names an interval set by its ID as
/// well as by its name; the kernel finds it by name alike), and the set's
/// name.
fn without_set_id(p: &[u8]) -> (String, Vec<u8>) {
    let table_len = u16::from_ne_bytes([p[4], p[5]]) as usize;
    let at = 4 + table_len.next_multiple_of(4);
    let name_len = u16::from_ne_bytes([p[at], p[at + 1]]) as usize;
    let name = String::from_utf8_lossy(&p[at + 4..at + name_len]);
    let mut p = p.to_vec();
    let id = at + name_len.next_multiple_of(4);
    if u16::from_ne_bytes([p[id + 2], p[id + 3]]) == 4 {
        p.drain(id..id + 8);
    }
    (name.trim_end_matches('\0').to_owned(), p)
}

/// Element messages (`NFT_MSG_NEWSETELEM`, `NFT_MSG_DELSETELEM`) without
/// the set's ID.
fn comparable(m: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    m.into_iter()
        .map(|(h, p)| match u16::from_ne_bytes([h[4], h[5]]) {
            0x0a0c | 0x0a0e => {
                let p = without_set_id(&p).1;
                (h, p)
            }
            _ => (h, p),
        })
        .collect()
}

/// A deletion on a host that has the elements: the whole batch is nft's,
/// byte for byte (an interval as its first key and the key after its
/// last, in the script's order; the one reaching the last address open).
#[test]
fn a_deletion_is_the_batch_nft_sends() {
    let changes = changes(&delete()).unwrap();
    let (ours, _) = host_tools::nftables::encode(&changes, 0);
    let (ours, nft) = (comparable(unacked(messages(&ours))), comparable(messages(DELETE)));
    assert_eq!(ours.len(), nft.len());
    for (i, (o, n)) in ours.iter().zip(&nft).enumerate() {
        let at = o.1.iter().zip(&n.1).position(|(a, b)| a != b);
        assert!(
            o.1 == n.1,
            "message {i} ({} bytes, nft's {}) differs from byte {at:?}",
            o.1.len(),
            n.1.len()
        );
        // Headers: the lengths differ by the IDs taken out.
        assert_eq!(o.0[4..], n.0[4..], "message {i}'s header");
    }
}

/// An addition: each element message is nft's for the same line (nft
/// also sends an interval map's elements with the map's declaration when
/// both are in one transaction: the kernel takes them twice alike).
#[test]
fn an_addition_sends_the_elements_nft_sends() {
    // NFT_MSG_NEWSETELEM, and its set's name.
    let elements = |batch: &[u8]| -> Vec<(String, Vec<u8>)> {
        messages(batch)
            .into_iter()
            .filter(|(h, _)| u16::from_ne_bytes([h[4], h[5]]) == 0x0a0c)
            .map(|(_, p)| without_set_id(&p))
            .collect()
    };
    let changes = changes(&add()).unwrap();
    let (ours, _) = host_tools::nftables::encode(&changes, 0);
    let (ours, nft) = (elements(&ours), elements(ADD));
    for set in ["addr6", "nd6", "in6", "out6"] {
        let last = |l: &[(String, Vec<u8>)]| l.iter().rev().find(|(n, _)| n == set).unwrap().1.clone();
        let (o, n) = (last(&ours), last(&nft));
        let at = o.iter().zip(&n).position(|(a, b)| a != b);
        assert!(
            o == n,
            "{set}: {} bytes, nft's {}, differ from byte {at:?}",
            o.len(),
            n.len()
        );
    }
}

#[test]
fn the_changes_read_as_the_scripts() {
    for batch in [add(), delete()] {
        let text: String = changes(&batch).unwrap().iter().map(|c| format!("{c}\n")).collect();
        assert_eq!(text, batch.render());
    }
}
