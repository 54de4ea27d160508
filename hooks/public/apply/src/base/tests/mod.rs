//! The base as nft sends it. `nft-1.0.6-base.bin` is the batch nft 1.0.6
//! sent for `base.nft` (the script `NftBatch::render` writes for the three
//! base operations), captured in a fresh network namespace with
//! `strace -f -e trace=sendmsg -e write=3 nft -f base.nft` (the dump of
//! its one `sendmsg`).

#![allow(clippy::unwrap_used)] // test code

use host_tools::nftables::encode;
use public_plan::{NftBatch, NftOp};

use super::*;

const NFT: &[u8] = include_bytes!("nft-1.0.6-base.bin");

/// The messages of a batch: (header, payload).
fn split(mut buf: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let len = u32::from_ne_bytes(buf[..4].try_into().unwrap()) as usize;
        out.push((buf[..16].to_vec(), buf[16..len].to_vec()));
        buf = &buf[len.next_multiple_of(4)..];
    }
    out
}

fn all() -> Vec<Change> {
    [nat().unwrap(), guard().unwrap(), filters().unwrap()].concat()
}

#[test]
fn the_base_is_the_batch_nft_sends() {
    let (ours, owners) = encode(&all(), 0);
    let (ours, nft) = (split(&ours), split(NFT));
    assert_eq!(ours.len(), nft.len());
    assert_eq!(owners.len() + 2, nft.len());
    let last = ours.len() - 2;
    for (i, ((oh, op), (nh, np))) in ours.iter().zip(&nft).enumerate() {
        let mut oh = oh.clone();
        if i == last {
            // Ours asks for an acknowledgement of its last message.
            let flags = u16::from_ne_bytes([oh[6], oh[7]]);
            assert_eq!(flags & 4, 4);
            oh[6..8].copy_from_slice(&(flags & !4).to_ne_bytes());
        }
        assert_eq!(&oh, nh, "message {i}'s header");
        assert_eq!(
            op,
            np,
            "message {i} ({})",
            all()[owners[i.saturating_sub(1).min(owners.len() - 1)]]
        );
    }
}

#[test]
fn the_changes_read_as_the_script() {
    let script: String = all().iter().map(|c| format!("{c}\n")).collect();
    let batch = NftBatch {
        ops: vec![NftOp::EnsureBase, NftOp::EnsureGuard, NftOp::EnsureFilters],
    };
    assert_eq!(script, batch.render());
    assert_eq!(script, include_str!("base.nft"));
}

#[test]
fn an_unknown_rule_is_not_lowered() {
    assert!(exprs("ip saddr 10.0.0.1 accept").is_none());
}
