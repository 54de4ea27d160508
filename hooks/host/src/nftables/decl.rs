//! Declarations: tables, sets and maps, chains and their rules, as the
//! nf_tables messages `nft -f` sends for them (the attributes of nft
//! 1.0.6, in its order). A rule is a list of expressions ([`Expr`]), the
//! form nft compiles its text to (`nft --debug=netlink`); the caller keeps
//! the text, for messages and dry runs.

use std::fmt;

use super::{Family, Verdict};

/// `NFT_REG_VERDICT`, `NFT_REG_1`, `NFT_REG_2`: the registers our rules use
/// (a concatenation's second part starts in `REG_2`, after a 16-byte
/// interface name).
pub const REG_VERDICT: u32 = 0;
pub const REG_1: u32 = 1;
pub const REG_2: u32 = 2;

/// `add table`: created, or (it exists) its comment set again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub family: Family,
    pub name: String,
    pub comment: String,
}

/// What a set's key (or a map's value) holds: nft's type number and
/// length in bytes; for a concatenation, each part's length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyType {
    pub kind: u32,
    pub len: u32,
    pub parts: Vec<u32>,
}

impl KeyType {
    pub fn new(kind: u32, len: u32) -> Self {
        Self {
            kind,
            len,
            parts: Vec::new(),
        }
    }
}

/// nft's type numbers (`datatype.h`), and the concatenation of types.
pub mod types {
    pub const VERDICT: u32 = 0xffff_ff00;
    pub const IPV4_ADDR: u32 = 7;
    pub const IPV6_ADDR: u32 = 8;
    pub const ETHER_ADDR: u32 = 9;
    pub const ETHER_TYPE: u32 = 10;
    pub const ICMPV6_TYPE: u32 = 29;
    pub const IFNAME: u32 = 41;
    pub const INTEGER: u32 = 4;

    /// The type number of a concatenation of `parts`.
    pub fn concat(parts: &[u32]) -> u32 {
        parts.iter().fold(0, |t, p| (t << 6) | p)
    }
}

/// `NFT_SET_*` flags.
pub mod set_flags {
    pub const CONSTANT: u32 = 0x1;
    pub const ANONYMOUS: u32 = 0x2;
    pub const INTERVAL: u32 = 0x4;
    pub const MAP: u32 = 0x8;
    pub const CONCAT: u32 = 0x80;
}

/// `add set` / `add map`: created if missing. `udata` is what nft keeps
/// in the set for itself (key byte order, `typeof` expressions), so that
/// `nft list` shows it as it shows a set nft made; `text` is the
/// declaration between the braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub family: Family,
    pub table: String,
    pub name: String,
    pub flags: u32,
    pub key: KeyType,
    /// A map's value.
    pub data: Option<KeyType>,
    pub udata: Vec<u8>,
    pub text: String,
}

/// A base chain's hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// `filter`, `nat`.
    pub kind: String,
    /// `NF_INET_*` (`NF_BR_*` for a bridge: the same numbers).
    pub number: u32,
    pub priority: i32,
}

/// The hook numbers.
pub mod hooks {
    pub const PREROUTING: u32 = 0;
    pub const INPUT: u32 = 1;
    pub const FORWARD: u32 = 2;
    pub const OUTPUT: u32 = 3;
    pub const POSTROUTING: u32 = 4;
}

/// `add chain`: created if missing; a base chain (with a hook and policy
/// accept) or a regular one. `text` is the declaration between the braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub family: Family,
    pub table: String,
    pub name: String,
    pub hook: Option<Hook>,
    pub text: String,
}

/// `flush chain`: its rules deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flush {
    pub family: Family,
    pub table: String,
    pub chain: String,
}

/// `delete chain`: an empty chain nothing jumps to, deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteChain {
    pub family: Family,
    pub table: String,
    pub chain: String,
}

/// `add rule`: appended to its chain. `text` is the rule as nft reads it
/// (without its comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub family: Family,
    pub table: String,
    pub chain: String,
    pub exprs: Vec<Expr>,
    pub comment: Option<String>,
    pub text: String,
}

/// `NFT_META_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meta {
    Protocol = 1,
    Mark = 3,
    Iifname = 6,
    Oifname = 7,
    Nfproto = 15,
    L4proto = 16,
}

/// `NFT_PAYLOAD_*_HEADER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    Link = 0,
    Network = 1,
    Transport = 2,
}

/// An anonymous set, declared (constant) with the rule that looks it up:
/// its key type, and its elements' keys (for an interval set, each
/// interval as its start and the end after it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anonymous {
    pub key: KeyType,
    pub interval: bool,
    pub udata: Vec<u8>,
    /// Keys, each with whether it ends an interval.
    pub elements: Vec<(Vec<u8>, bool)>,
}

/// The set a lookup reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetRef {
    Named(String),
    Anonymous(Anonymous),
}

/// One expression of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Meta {
        key: Meta,
        dreg: u32,
    },
    Payload {
        base: Header,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    /// `reg = (reg & mask) ^ xor`.
    Bitwise {
        reg: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// `reg == data` (or `!=`).
    Cmp {
        reg: u32,
        equal: bool,
        data: Vec<u8>,
    },
    /// `reg` in the set (or not); a map's value into `dreg`.
    Lookup {
        reg: u32,
        set: SetRef,
        dreg: Option<u32>,
        invert: bool,
    },
    Verdict(Verdict),
    /// `dnat`/`snat` to the IPv4 address in `reg`.
    Nat {
        dnat: bool,
        reg: u32,
    },
}

/// One change of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Table(Table),
    Set(Set),
    Chain(Chain),
    Flush(Flush),
    DeleteChain(DeleteChain),
    Rule(Rule),
    Elements(super::Elements),
}

impl From<super::Elements> for Change {
    fn from(e: super::Elements) -> Self {
        Self::Elements(e)
    }
}

/// As `nft -f` reads it.
impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Table(t) => write!(
                f,
                "add table {} {} {{ comment \"{}\"; }}",
                t.family.name(),
                t.name,
                t.comment
            ),
            Self::Set(s) => write!(
                f,
                "add {} {} {} {} {{ {} }}",
                if s.data.is_some() { "map" } else { "set" },
                s.family.name(),
                s.table,
                s.name,
                s.text
            ),
            Self::Chain(c) if c.hook.is_some() => {
                write!(
                    f,
                    "add chain {} {} {} {{ {} }}",
                    c.family.name(),
                    c.table,
                    c.name,
                    c.text
                )
            }
            Self::Chain(c) => write!(f, "add chain {} {} {}", c.family.name(), c.table, c.name),
            Self::Flush(c) => write!(f, "flush chain {} {} {}", c.family.name(), c.table, c.chain),
            Self::DeleteChain(c) => write!(f, "delete chain {} {} {}", c.family.name(), c.table, c.chain),
            Self::Rule(r) => {
                write!(f, "add rule {} {} {} {}", r.family.name(), r.table, r.chain, r.text)?;
                match &r.comment {
                    Some(c) => write!(f, " comment \"{c}\""),
                    None => Ok(()),
                }
            }
            Self::Elements(e) => e.fmt(f),
        }
    }
}

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
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;
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

use super::wire::{NFTA_DATA_VALUE, NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_LIST_ELEMENTS, attr, comment, nest, string};

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
        Some(len(a.elements.len())),
        &a.udata,
    );
}

/// An anonymous set's elements.
pub(super) fn anonymous_elements(buf: &mut Vec<u8>, table: &str, a: &Anonymous, id: u32) {
    string(buf, super::wire::NFTA_SET_ELEM_LIST_TABLE, table);
    string(buf, super::wire::NFTA_SET_ELEM_LIST_SET, ANONYMOUS);
    u32_attr(buf, NFTA_SET_ELEM_LIST_SET_ID, id);
    nest(buf, NFTA_SET_ELEM_LIST_ELEMENTS, |buf| {
        for ((key, end), n) in a.elements.iter().zip(1u16..) {
            nest(buf, n, |buf| {
                if *end {
                    u32_attr(buf, NFTA_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
                }
                nest(buf, NFTA_SET_ELEM_KEY, |buf| attr(buf, NFTA_DATA_VALUE, key));
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
        Expr::Bitwise { reg, mask, xor } => {
            u32_attr(buf, 1, *reg);
            u32_attr(buf, 2, *reg);
            // NFT_BITWISE_BOOL: (reg & mask) ^ xor.
            u32_attr(buf, 6, 0);
            u32_attr(buf, 3, len(mask.len()));
            nest(buf, 4, |buf| attr(buf, NFTA_DATA_VALUE, mask));
            nest(buf, 5, |buf| attr(buf, NFTA_DATA_VALUE, xor));
        }
        Expr::Cmp { reg, equal, data } => {
            u32_attr(buf, 1, *reg);
            u32_attr(buf, 2, u32::from(!*equal));
            nest(buf, 3, |buf| attr(buf, NFTA_DATA_VALUE, data));
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
