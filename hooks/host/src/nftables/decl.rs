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

/// `NFT_CMP_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq = 0,
    Neq = 1,
    Lte = 3,
    Gte = 5,
}

/// `NFT_CT_STATE`.
pub const CT_STATE: u32 = 0;

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
    /// The last element starts an interval to the type's last value (it
    /// has no end element; nft marks it open, for its listings).
    pub open_end: bool,
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
    /// `reg = (reg & mask) ^ xor`. `op`: whether the message names the
    /// operation (nft 1.0.6 does for a mask written `&`, not for a test of
    /// flags, `ct state established,related`).
    Bitwise {
        reg: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
        op: bool,
    },
    /// `reg <op> data`.
    Cmp {
        reg: u32,
        op: CmpOp,
        data: Vec<u8>,
    },
    /// A connection tracking key (`NFT_CT_*`) into `dreg`.
    Ct {
        key: u32,
        dreg: u32,
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
