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

fn all() -> Vec<Change> {
    [nat().unwrap(), guard().unwrap(), filters().unwrap()].concat()
}

#[test]
fn the_base_is_the_batch_nft_sends() {
    let changes = all();
    let (ours, owners) = encode(&changes, 0);
    assert_eq!(owners.len() + 2, test_support::netlink::messages(NFT).len());
    test_support::netlink::assert_batch_eq(&ours, NFT, |i| {
        changes[owners[i.saturating_sub(1).min(owners.len() - 1)]].to_string()
    });
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
