//! The base of our three tables (their declarations and rules: what
//! `NftOp::EnsureBase`, `EnsureGuard` and `EnsureFilters` render) as
//! nf_tables netlink changes ([`host_tools::nftables::decl`]): what nft
//! 1.0.6 sends for the same script, message for message (`tests/mod.rs`
//! compares them with the bytes nft sent), so a `reconcile` or a host's
//! first `pre` needs no `nft` process.
//!
//! Each rule's expressions are what nft compiles its text to (`nft
//! --debug=netlink`); a rule text not known here makes the lowering fail
//! (`rule` returns `None`), and the transaction goes to `nft -f -` whole.

use host_tools::nftables::Family;
use host_tools::nftables::decl::{Chain, Change, Flush, Hook, KeyType, Rule, Set, Table, hooks, set_flags, types};
use public_plan::filter::{self, FILTER_COMMENT, FILTER_TABLE};
use public_plan::guard::{self, GUARD_COMMENT, GUARD_TABLE};
use public_plan::ops::{NFT_COMMENT, NFT_DNAT_MAP, NFT_POSTROUTING, NFT_PREROUTING, NFT_SNAT_MAP, NFT_TABLE};

/// nft's user data of a set (type `ipv4_addr`, maps to addresses or
/// verdicts, `ifname`, and concatenations), as nft 1.0.6 writes it: the
/// key's byte order, for a map the value's, and for a concatenation or a
/// `typeof` set the expressions nft lists it with.
const UDATA_NAT_MAP: &[u8] = b"\x00\x04\x02\x00\x00\x00\x01\x04\x02\x00\x00\x00\x06\x04\x00\x00\x00\x00";
const UDATA_VERDICT_MAP: &[u8] = b"\x00\x04\x02\x00\x00\x00\x01\x04\x00\x00\x00\x00\x06\x04\x00\x00\x00\x00";
const UDATA_IFNAME: &[u8] = b"\x00\x04\x01\x00\x00\x00";
const UDATA_CONCAT: &[u8] = b"\x00\x04\x00\x00\x00\x00\x03\x08\x00\x04\x0d\x00\x00\x00\x01\x00";
const UDATA_ND6: &[u8] = b"\x00\x04\x00\x00\x00\x00\x03\x40\x00\x04\x0d\x00\x00\x00\x01\x38\x00\x0e\x00\x04\x09\x00\x00\x00\x01\x06\x00\x04\x06\x00\x00\x00\x01\x26\x00\x04\x07\x00\x00\x00\x01\x1e\x00\x04\x00\x00\x00\x00\x01\x04\x00\x00\x00\x00\x02\x04\x03\x00\x00\x00\x03\x04\x40\x00\x00\x00\x04\x04\x80\x00\x00\x00";
/// Of the anonymous sets: IPv6 prefixes, ICMPv6 types, Ethernet types.
const UDATA_ANON_IPV6: &[u8] =
    b"\x00\x04\x02\x00\x00\x00\x02\x04\x01\x00\x00\x00\x03\x14\x00\x04\x07\x00\x00\x00\x01\x0c\x00\x04\x0d\x00\x00\x00\x01\x04\x08\x00\x00\x00";
const UDATA_ANON_ICMPV6: &[u8] =
    b"\x00\x04\x02\x00\x00\x00\x03\x14\x00\x04\x07\x00\x00\x00\x01\x0c\x00\x04\x0e\x00\x00\x00\x01\x04\x01\x00\x00\x00";
const UDATA_ANON_ETHER: &[u8] =
    b"\x00\x04\x02\x00\x00\x00\x03\x14\x00\x04\x07\x00\x00\x00\x01\x0c\x00\x04\x11\x00\x00\x00\x01\x04\x03\x00\x00\x00";

fn table(family: Family, name: &str, comment: &str) -> Change {
    Change::Table(Table {
        family,
        name: name.into(),
        comment: comment.into(),
    })
}

/// A base chain (policy accept), flushed: the changes before its rules.
fn base_chain(
    family: Family,
    table: &str,
    name: &str,
    kind: &str,
    hook: u32,
    priority: i32,
    prio: &str,
) -> [Change; 2] {
    [
        Change::Chain(Chain {
            family,
            table: table.into(),
            name: name.into(),
            hook: Some(Hook {
                kind: kind.into(),
                number: hook,
                priority,
            }),
            text: format!("type {kind} hook {} priority {prio}; policy accept;", hook_name(hook)),
        }),
        Change::Flush(Flush {
            family,
            table: table.into(),
            chain: name.into(),
        }),
    ]
}

fn hook_name(hook: u32) -> &'static str {
    match hook {
        hooks::PREROUTING => "prerouting",
        hooks::INPUT => "input",
        hooks::FORWARD => "forward",
        hooks::OUTPUT => "output",
        _ => "postrouting",
    }
}

/// A set or map: its name and declaration (as the plan's constants have
/// them), its flags, key, value and nft's user data.
fn set(
    family: Family,
    table: &str,
    (name, decl): (&str, &str),
    flags: u32,
    key: KeyType,
    data: Option<KeyType>,
    udata: &[u8],
) -> Change {
    Change::Set(Set {
        family,
        table: table.into(),
        name: name.into(),
        flags,
        key,
        data,
        udata: udata.to_vec(),
        text: decl.into(),
    })
}

/// A rule of ours, when its text is one we know how to send.
fn rule(family: Family, table: &str, chain: &str, text: &str, comment: Option<String>) -> Option<Change> {
    Some(Change::Rule(Rule {
        family,
        table: table.into(),
        chain: chain.into(),
        exprs: exprs(text)?,
        comment,
        text: text.into(),
    }))
}

/// `NftOp::EnsureBase`: the NAT table.
pub fn nat() -> Option<Vec<Change>> {
    let f = Family::Ip;
    let mut out = vec![table(f, NFT_TABLE, NFT_COMMENT)];
    let v4 = || KeyType::new(types::IPV4_ADDR, 4);
    for map in [NFT_DNAT_MAP, NFT_SNAT_MAP] {
        out.push(set(
            f,
            NFT_TABLE,
            (map, "type ipv4_addr : ipv4_addr;"),
            set_flags::MAP,
            v4(),
            Some(v4()),
            UDATA_NAT_MAP,
        ));
    }
    for (chain, hook, priority, prio, text) in [
        (
            NFT_PREROUTING,
            hooks::PREROUTING,
            -100,
            "dstnat",
            format!("dnat to ip daddr map @{NFT_DNAT_MAP}"),
        ),
        (
            NFT_POSTROUTING,
            hooks::POSTROUTING,
            100,
            "srcnat",
            format!("snat to ip saddr map @{NFT_SNAT_MAP}"),
        ),
    ] {
        out.extend(base_chain(f, NFT_TABLE, chain, "nat", hook, priority, prio));
        out.push(rule(f, NFT_TABLE, chain, secgroup::SKIP_PRIVATE, None)?);
        out.push(rule(f, NFT_TABLE, chain, &text, None)?);
    }
    Some(out)
}

/// `NftOp::EnsureGuard`: the guard's table.
pub fn guard() -> Option<Vec<Change>> {
    let f = Family::Bridge;
    let mut out = vec![table(f, GUARD_TABLE, GUARD_COMMENT)];
    for (name, decl) in guard::SETS {
        let (flags, key, udata) = match name {
            "ports" => (0, KeyType::new(types::IFNAME, 16), UDATA_IFNAME),
            "macs" => (0, concat(types::ETHER_ADDR, 8), UDATA_CONCAT),
            "addr4" => (0, concat(types::IPV4_ADDR, 4), UDATA_CONCAT),
            "addr6" => (interval_concat(), parts(concat(types::IPV6_ADDR, 16)), UDATA_CONCAT),
            "nd6" => (interval_concat(), parts(concat(types::INTEGER, 16)), UDATA_ND6),
            _ => return None,
        };
        out.push(set(f, GUARD_TABLE, (name, decl), flags, key, None, udata));
    }
    for (name, hook, prio, rules) in guard::CHAINS {
        let number = match hook {
            "prerouting" => hooks::PREROUTING,
            "forward" => hooks::FORWARD,
            "output" => hooks::OUTPUT,
            _ => return None,
        };
        let priority = i32::try_from(prio).ok()?;
        out.extend(base_chain(
            f,
            GUARD_TABLE,
            name,
            "filter",
            number,
            priority,
            &prio.to_string(),
        ));
        for (n, text) in rules.iter().enumerate() {
            out.push(rule(f, GUARD_TABLE, name, text, Some(guard::rule_tag(name, n)))?);
        }
    }
    Some(out)
}

/// `NftOp::EnsureFilters`: the security groups' table.
pub fn filters() -> Option<Vec<Change>> {
    let mut out = vec![filter_table()];
    out.extend(filter_base()?);
    Some(out)
}

/// The security groups' table, declared (before the chains of rules a
/// batch declares, in the script).
pub fn filter_table() -> Change {
    table(Family::Inet, FILTER_TABLE, FILTER_COMMENT)
}

/// The security groups' table's maps and base chains.
pub fn filter_base() -> Option<Vec<Change>> {
    let f = Family::Inet;
    let mut out = Vec::new();
    for (name, decl) in filter::MAPS {
        let (flags, key) = if decl.contains("ipv6_addr") {
            (set_flags::MAP | set_flags::INTERVAL, KeyType::new(types::IPV6_ADDR, 16))
        } else {
            (set_flags::MAP, KeyType::new(types::IPV4_ADDR, 4))
        };
        let verdict = KeyType::new(types::VERDICT, 0);
        out.push(set(
            f,
            FILTER_TABLE,
            (name, decl),
            flags,
            key,
            Some(verdict),
            UDATA_VERDICT_MAP,
        ));
    }
    for (name, rules) in filter::BASE {
        let number = match name {
            "forward" => hooks::FORWARD,
            "input" => hooks::INPUT,
            _ => return None,
        };
        out.extend(base_chain(f, FILTER_TABLE, name, "filter", number, 0, "filter"));
        for (n, text) in rules.iter().enumerate() {
            out.push(rule(f, FILTER_TABLE, name, text, Some(filter::rule_tag(name, n)))?);
        }
    }
    Some(out)
}

/// `ifname . <type>`, the second part `len` bytes (a register's multiple).
fn concat(kind: u32, len: u32) -> KeyType {
    KeyType::new(types::concat(&[types::IFNAME, kind]), 16 + len)
}

/// A concatenation's parts' lengths (an interval set's key needs them).
fn parts(mut key: KeyType) -> KeyType {
    key.parts = vec![16, key.len - 16];
    key
}

fn interval_concat() -> u32 {
    set_flags::INTERVAL | set_flags::CONCAT
}

mod exprs;
use exprs::exprs;

#[cfg(test)]
mod tests;
