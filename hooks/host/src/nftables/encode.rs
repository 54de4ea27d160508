//! The attributes of declarations ([`super::decl`]): sets, chains, rules
//! and their expressions, in the order nft 1.0.6 writes them.

use super::decl::{Anonymous, Chain, Expr, KeyType, REG_VERDICT, Rule, SetRef, set_flags};
use super::wire::{
    NFT_SET_ELEM_INTERVAL_END, NFTA_DATA_VALUE, NFTA_SET_ELEM_FLAGS, NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_LIST_ELEMENTS,
    NFTA_SET_ELEM_USERDATA, OPEN_INTERVAL, attr, comment, nest, string,
};

/// The name nft gives an anonymous set (the kernel numbers it).
pub(super) const ANONYMOUS: &str = "__set%d";

// nf_tables attributes (linux/netfilter/nf_tables.h).
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DATA_TYPE: u16 = 6;
const NFTA_SET_DATA_LEN: u16 = 7;
const NFTA_SET_DESC: u16 = 9;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_USERDATA: u16 = 13;
const NFTA_SET_DESC_SIZE: u16 = 1;
const NFTA_SET_DESC_CONCAT: u16 = 2;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_FIELD_LEN: u16 = 1;
const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NF_ACCEPT: u32 = 1;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;

fn u32_attr(buf: &mut Vec<u8>, kind: u16, v: u32) {
    attr(buf, kind, &v.to_be_bytes());
}

fn len(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A set's attributes (`id`: the batch's ID for it; `size`: an anonymous
/// set's number of elements).
#[allow(clippy::too_many_arguments)]
pub(super) fn set(
    buf: &mut Vec<u8>,
    table: &str,
    name: &str,
    flags: u32,
    key: &KeyType,
    data: Option<&KeyType>,
    id: u32,
    size: Option<u32>,
    udata: &[u8],
) {
    string(buf, NFTA_SET_TABLE, table);
    string(buf, NFTA_SET_NAME, name);
    u32_attr(buf, NFTA_SET_FLAGS, flags);
    u32_attr(buf, NFTA_SET_KEY_TYPE, key.kind);
    u32_attr(buf, NFTA_SET_KEY_LEN, key.len);
    if let Some(d) = data {
        u32_attr(buf, NFTA_SET_DATA_TYPE, d.kind);
        u32_attr(buf, NFTA_SET_DATA_LEN, d.len);
    }
    u32_attr(buf, NFTA_SET_ID, id);
    if size.is_some() || !key.parts.is_empty() {
        nest(buf, NFTA_SET_DESC, |buf| {
            if let Some(n) = size {
                u32_attr(buf, NFTA_SET_DESC_SIZE, n);
            }
            if !key.parts.is_empty() {
                nest(buf, NFTA_SET_DESC_CONCAT, |buf| {
                    for p in &key.parts {
                        nest(buf, NFTA_LIST_ELEM, |buf| u32_attr(buf, NFTA_SET_FIELD_LEN, *p));
                    }
                });
            }
        });
    }
    if !udata.is_empty() {
        attr(buf, NFTA_SET_USERDATA, udata);
    }
}

/// An anonymous set's declaration.
pub(super) fn anonymous(buf: &mut Vec<u8>, table: &str, a: &Anonymous, id: u32) {
    let flags = set_flags::CONSTANT | set_flags::ANONYMOUS | if a.interval { set_flags::INTERVAL } else { 0 };
    set(
        buf,
        table,
        ANONYMOUS,
        flags,
        &a.key,
        None,
        id,
        // nft counts the end an open interval does not send.
        Some(len(a.elements.len() + usize::from(a.open_end))),
        &a.udata,
    );
}

/// An anonymous set's elements.
pub(super) fn anonymous_elements(buf: &mut Vec<u8>, table: &str, a: &Anonymous, id: u32) {
    string(buf, super::wire::NFTA_SET_ELEM_LIST_TABLE, table);
    string(buf, super::wire::NFTA_SET_ELEM_LIST_SET, ANONYMOUS);
    u32_attr(buf, NFTA_SET_ELEM_LIST_SET_ID, id);
    nest(buf, NFTA_SET_ELEM_LIST_ELEMENTS, |buf| {
        let last = a.elements.len();
        for ((key, end), n) in a.elements.iter().zip(1u16..) {
            nest(buf, n, |buf| {
                if *end {
                    u32_attr(buf, NFTA_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
                }
                nest(buf, NFTA_SET_ELEM_KEY, |buf| attr(buf, NFTA_DATA_VALUE, key));
                if a.open_end && usize::from(n) == last {
                    attr(buf, NFTA_SET_ELEM_USERDATA, OPEN_INTERVAL);
                }
            });
        }
    });
}

/// A chain's attributes.
pub(super) fn chain(buf: &mut Vec<u8>, c: &Chain) {
    string(buf, NFTA_CHAIN_TABLE, &c.table);
    string(buf, NFTA_CHAIN_NAME, &c.name);
    if let Some(h) = &c.hook {
        string(buf, NFTA_CHAIN_TYPE, &h.kind);
        u32_attr(buf, NFTA_CHAIN_POLICY, NF_ACCEPT);
        nest(buf, NFTA_CHAIN_HOOK, |buf| {
            u32_attr(buf, NFTA_HOOK_HOOKNUM, h.number);
            attr(buf, NFTA_HOOK_PRIORITY, &h.priority.to_be_bytes());
        });
    }
}

/// A rule's attributes; `ids`: the set ID of each lookup, in order.
pub(super) fn rule(buf: &mut Vec<u8>, r: &Rule, ids: &[Option<u32>]) {
    string(buf, NFTA_RULE_TABLE, &r.table);
    string(buf, NFTA_RULE_CHAIN, &r.chain);
    let mut ids = ids.iter();
    nest(buf, NFTA_RULE_EXPRESSIONS, |buf| {
        for e in &r.exprs {
            let id = match e {
                Expr::Lookup { .. } => ids.next().copied().flatten(),
                _ => None,
            };
            nest(buf, NFTA_LIST_ELEM, |buf| expr(buf, e, id));
        }
    });
    if let Some(c) = &r.comment {
        attr(buf, NFTA_RULE_USERDATA, &comment(c));
    }
}

/// One expression: its name and data.
fn expr(buf: &mut Vec<u8>, e: &Expr, set_id: Option<u32>) {
    let name = match e {
        Expr::Meta { .. } => "meta",
        Expr::Payload { .. } => "payload",
        Expr::Bitwise { .. } => "bitwise",
        Expr::Cmp { .. } => "cmp",
        Expr::Ct { .. } => "ct",
        Expr::Lookup { .. } => "lookup",
        Expr::Verdict(_) => "immediate",
        Expr::Nat { .. } => "nat",
    };
    string(buf, NFTA_EXPR_NAME, name);
    nest(buf, NFTA_EXPR_DATA, |buf| match e {
        Expr::Meta { key, dreg } => {
            u32_attr(buf, 2, *key as u32);
            u32_attr(buf, 1, *dreg);
        }
        Expr::Payload {
            base,
            offset,
            len,
            dreg,
        } => {
            u32_attr(buf, 1, *dreg);
            u32_attr(buf, 2, *base as u32);
            u32_attr(buf, 3, *offset);
            u32_attr(buf, 4, *len);
        }
        Expr::Bitwise { reg, mask, xor, op } => {
            u32_attr(buf, 1, *reg);
            u32_attr(buf, 2, *reg);
            if *op {
                // NFT_BITWISE_BOOL: (reg & mask) ^ xor.
                u32_attr(buf, 6, 0);
            }
            u32_attr(buf, 3, len(mask.len()));
            nest(buf, 4, |buf| attr(buf, NFTA_DATA_VALUE, mask));
            nest(buf, 5, |buf| attr(buf, NFTA_DATA_VALUE, xor));
        }
        Expr::Cmp { reg, op, data } => {
            u32_attr(buf, 1, *reg);
            u32_attr(buf, 2, *op as u32);
            nest(buf, 3, |buf| attr(buf, NFTA_DATA_VALUE, data));
        }
        Expr::Ct { key, dreg } => {
            u32_attr(buf, 2, *key);
            u32_attr(buf, 1, *dreg);
        }
        Expr::Lookup { reg, set, dreg, invert } => {
            u32_attr(buf, 2, *reg);
            if let Some(d) = dreg {
                u32_attr(buf, 3, *d);
            }
            string(
                buf,
                1,
                match set {
                    SetRef::Named(n) => n,
                    SetRef::Anonymous(_) => ANONYMOUS,
                },
            );
            if let Some(id) = set_id {
                u32_attr(buf, 4, id);
            }
            if *invert {
                // NFT_LOOKUP_F_INV.
                u32_attr(buf, 5, 1);
            }
        }
        Expr::Verdict(v) => {
            u32_attr(buf, 1, REG_VERDICT);
            nest(buf, 2, |buf| super::wire::verdict(buf, v));
        }
        Expr::Nat { dnat, reg } => {
            u32_attr(buf, 1, u32::from(*dnat));
            // NFPROTO_IPV4.
            u32_attr(buf, 2, 2);
            u32_attr(buf, 3, *reg);
        }
    });
}
