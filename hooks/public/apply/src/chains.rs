//! A security group's shared chain ([`NftOp::SetChain`]) as nf_tables
//! changes: its flush, then each rule `secgroup::render::chain` writes,
//! with the expressions nft 1.0.6 compiles that text to (`nft
//! --debug=netlink`), so that `reconcile` and a host's first VM of a group
//! start no `nft` process. Tested against the batch nft sent for a script
//! of every rule form (`chains/tests`), and in namespaces against the
//! tables nft makes of the same script (`tests/lower_netns.rs`).
//!
//! What nft does to a rule's text, done here the same way:
//! - a protocol match in an `inet` table first checks what it depends on
//!   (`meta nfproto` for an address or an ICMP type, `meta l4proto` for a
//!   port, an ICMP type), once;
//! - a list (`{ ... }`) of one item is no set: a value is compared, a
//!   range is two comparisons (`>=` first, `<=` last);
//! - a list of values is a constant anonymous set of them, in their order;
//!   a list holding a range an interval set: the intervals sorted and
//!   merged (overlapping or adjacent), each sent as its first value and
//!   the value after its last (flagged as an end), a zero end first when
//!   the first interval does not start at zero, and no end after an
//!   interval reaching the type's last value (marked open instead);
//! - an ICMP type compared then its code compared are one 2-byte
//!   comparison.

use host_tools::nftables::decl::{
    Anonymous, CT_STATE, Chain, CmpOp, Expr, Flush, Header, KeyType, Meta, REG_1, Rule, SetRef, types,
};
use host_tools::nftables::{Change, Family, Verdict, next_key};
use public_plan::filter::{FILTER_TABLE, FilterChain};
use secgroup::rule::{AddrRange, Protocol, Target};
use secgroup::{Direction, Rule as SgRule};

/// nft's type numbers of the keys our anonymous sets hold
/// (`datatype.h`: `inet_service`, `icmp_code`, `icmpv6_code`).
const INET_SERVICE: u32 = 13;
const ICMP_CODE: u32 = 32;
const ICMPV6_CODE: u32 = 33;

/// What nft keeps in an anonymous set for its listings: the key's byte
/// order (big endian), whether it merged the elements (an interval set),
/// and the field the key is (`typeof`: a payload expression, its protocol
/// description and field, nft's numbers), as it sent them.
fn udata(key: &Key, interval: bool) -> Vec<u8> {
    let mut u = vec![0, 4, 2, 0, 0, 0];
    if interval {
        u.extend([2, 4, 1, 0, 0, 0]);
    }
    u.extend([
        3, 0x14, 0, 4, 7, 0, 0, 0, 1, 0x0c, 0, 4, key.desc, 0, 0, 0, 1, 4, key.field, 0, 0, 0,
    ]);
    u
}

/// nft's protocol descriptions and fields (`proto.h`) of our sets' keys.
const DESC_ICMP: u8 = 4;
const DESC_UDP: u8 = 6;
const DESC_TCP: u8 = 8;
const DESC_IP: u8 = 12;
const DESC_IP6: u8 = 13;
const DESC_ICMPV6: u8 = 14;
/// `dport` of TCP and UDP, `code` of ICMP and ICMPv6.
const FIELD_DPORT: u8 = 2;
const FIELD_CODE: u8 = 2;

const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;

/// The ICMPv6 types of the neighbour discovery rules (`nd-...`).
fn nd_type(name: &str) -> Option<u8> {
    Some(match name {
        "nd-router-solicit" => 133,
        "nd-router-advert" => 134,
        "nd-neighbor-solicit" => 135,
        "nd-neighbor-advert" => 136,
        "nd-redirect" => 137,
        _ => return None,
    })
}

fn cmp(op: CmpOp, data: &[u8]) -> Expr {
    Expr::Cmp {
        reg: REG_1,
        op,
        data: data.to_vec(),
    }
}

fn meta(key: Meta, value: u8) -> [Expr; 2] {
    [Expr::Meta { key, dreg: REG_1 }, cmp(CmpOp::Eq, &[value])]
}

fn load(base: Header, offset: u32, len: u32) -> Expr {
    Expr::Payload {
        base,
        offset,
        len,
        dreg: REG_1,
    }
}

/// A set's key: its nft type and length, the protocol description and
/// field it is.
struct Key {
    kind: u32,
    len: u32,
    desc: u8,
    field: u8,
}

/// One item of a list: `first` to `last` (equal: a value), big-endian.
type Item = (Vec<u8>, Vec<u8>);

/// Register 1 compared with a list of `items` (as nft compiles `{ ... }`).
fn list(key: &Key, items: &[Item]) -> Vec<Expr> {
    if let [(first, last)] = items {
        return if first == last {
            vec![cmp(CmpOp::Eq, first)]
        } else {
            vec![cmp(CmpOp::Gte, first), cmp(CmpOp::Lte, last)]
        };
    }
    let interval = items.iter().any(|(f, l)| f != l);
    let mut elements = Vec::new();
    let mut open_end = false;
    if interval {
        let mut sorted = items.to_vec();
        sorted.sort();
        let mut merged: Vec<Item> = Vec::new();
        for (f, l) in sorted {
            match merged.last_mut() {
                Some((_, last)) if next_key(last).is_none_or(|n| f <= n) => {
                    if l > *last {
                        *last = l;
                    }
                }
                _ => merged.push((f, l)),
            }
        }
        if merged.first().is_some_and(|(f, _)| f.iter().any(|b| *b != 0)) {
            elements.push((vec![0; key.len as usize], true));
        }
        for (f, l) in merged {
            elements.push((f, false));
            match next_key(&l) {
                Some(end) => elements.push((end, true)),
                None => open_end = true,
            }
        }
    } else {
        elements = items.iter().map(|(f, _)| (f.clone(), false)).collect();
    }
    vec![Expr::Lookup {
        reg: REG_1,
        set: SetRef::Anonymous(Anonymous {
            key: KeyType::new(key.kind, key.len),
            interval,
            udata: udata(key, interval),
            elements,
            open_end,
        }),
        dreg: None,
        invert: false,
    }]
}

/// The expressions of the protocol part of a rule (`tail` in
/// `secgroup::render::rule_lines`); `family`: the address family an
/// address match before it checked (`None`: none did).
fn protocol(rule: &SgRule, family: Option<u8>) -> Vec<Expr> {
    let net = matches!(rule.target, Target::Ranges(_));
    let ports = || -> Vec<Item> {
        rule.ports
            .iter()
            .map(|p| (p.first.to_be_bytes().to_vec(), p.last.to_be_bytes().to_vec()))
            .collect()
    };
    let icmp = |nfproto: u8, l4proto: u8, t: Option<u8>, codes: &[u8], code_kind: u32, desc: u8| {
        let mut out = Vec::new();
        let Some(t) = t else {
            return meta(Meta::L4proto, l4proto).to_vec();
        };
        if family.is_none() {
            out.extend(meta(Meta::Nfproto, nfproto));
        }
        out.extend(meta(Meta::L4proto, l4proto));
        match (net, codes) {
            (false, _) => out.extend([load(Header::Transport, 0, 1), cmp(CmpOp::Eq, &[t])]),
            (true, [c]) => out.extend([load(Header::Transport, 0, 2), cmp(CmpOp::Eq, &[t, *c])]),
            (true, codes) => {
                out.extend([load(Header::Transport, 0, 1), cmp(CmpOp::Eq, &[t])]);
                out.push(load(Header::Transport, 1, 1));
                let items: Vec<Item> = codes.iter().map(|c| (vec![*c], vec![*c])).collect();
                let key = Key {
                    kind: code_kind,
                    len: 1,
                    desc,
                    field: FIELD_CODE,
                };
                out.extend(list(&key, &items));
            }
        }
        out
    };
    let mut out = match rule.protocol {
        Protocol::All => Vec::new(),
        Protocol::Tcp | Protocol::Udp => {
            let (p, desc) = if rule.protocol == Protocol::Tcp {
                (6, DESC_TCP)
            } else {
                (17, DESC_UDP)
            };
            let mut out = meta(Meta::L4proto, p).to_vec();
            if !rule.ports.is_empty() {
                out.push(load(Header::Transport, 2, 2));
                let service = Key {
                    kind: INET_SERVICE,
                    len: 2,
                    desc,
                    field: FIELD_DPORT,
                };
                out.extend(list(&service, &ports()));
            }
            out
        }
        Protocol::Icmp => {
            let codes = rule.icmp_type.map(secgroup::render::icmp_codes).unwrap_or_default();
            icmp(NFPROTO_IPV4, 1, rule.icmp_type, codes, ICMP_CODE, DESC_ICMP)
        }
        Protocol::Icmpv6 => {
            let codes = rule.icmp_type.map(secgroup::render::icmpv6_codes).unwrap_or_default();
            icmp(NFPROTO_IPV6, 58, rule.icmp_type, codes, ICMPV6_CODE, DESC_ICMPV6)
        }
        Protocol::Ipsec => meta(Meta::L4proto, 50).to_vec(),
    };
    out.push(Expr::Verdict(Verdict::Return));
    out
}

/// The expressions of each line `secgroup::render::rule_lines` writes for
/// `rule`, in its order.
fn rule_exprs(rule: &SgRule) -> Vec<Vec<Expr>> {
    let Target::Ranges(ranges) = &rule.target else {
        return vec![protocol(rule, None)];
    };
    // The source address of inbound traffic, the destination of outbound
    // (nft's fields: `saddr` 11 and `daddr` 12 of IPv4, 8 and 9 of IPv6).
    let ((v4_at, v4_field), (v6_at, v6_field)) = match rule.direction {
        Direction::Inbound => ((12, 11), (8, 8)),
        Direction::Outbound => ((16, 12), (24, 9)),
    };
    let v4: Vec<Item> = ranges
        .iter()
        .filter_map(|r| match r {
            AddrRange::V4 { first, last } => Some((first.octets().to_vec(), last.octets().to_vec())),
            AddrRange::V6 { .. } => None,
        })
        .collect();
    let v6: Vec<Item> = ranges
        .iter()
        .filter_map(|r| match r {
            AddrRange::V6 { first, last } => Some((first.octets().to_vec(), last.octets().to_vec())),
            AddrRange::V4 { .. } => None,
        })
        .collect();
    let (v4, v6) = match rule.protocol {
        Protocol::Icmp => (v4, Vec::new()),
        Protocol::Icmpv6 => (Vec::new(), v6),
        _ => (v4, v6),
    };
    let mut out = Vec::new();
    for (items, nfproto, at, key) in [
        (
            v4,
            NFPROTO_IPV4,
            v4_at,
            Key {
                kind: types::IPV4_ADDR,
                len: 4,
                desc: DESC_IP,
                field: v4_field,
            },
        ),
        (
            v6,
            NFPROTO_IPV6,
            v6_at,
            Key {
                kind: types::IPV6_ADDR,
                len: 16,
                desc: DESC_IP6,
                field: v6_field,
            },
        ),
    ] {
        if items.is_empty() {
            continue;
        }
        let mut exprs = meta(Meta::Nfproto, nfproto).to_vec();
        exprs.push(load(Header::Network, at, key.len));
        exprs.extend(list(&key, &items));
        exprs.extend(protocol(rule, Some(nfproto)));
        out.push(exprs);
    }
    out
}

/// The expressions of a line of the chain around the group's rules
/// (`None`: not one of those).
fn frame_exprs(line: &str) -> Option<Vec<Expr>> {
    if line == "ct state established,related return" {
        return Some(vec![
            Expr::Ct {
                key: CT_STATE,
                dreg: REG_1,
            },
            Expr::Bitwise {
                reg: REG_1,
                mask: 6u32.to_ne_bytes().to_vec(),
                xor: vec![0; 4],
                op: false,
            },
            cmp(CmpOp::Neq, &[0; 4]),
            Expr::Verdict(Verdict::Return),
        ]);
    }
    if line == "drop" {
        return Some(vec![Expr::Verdict(Verdict::Drop)]);
    }
    let t = nd_type(line.strip_prefix("icmpv6 type ")?.strip_suffix(" return")?)?;
    let mut out = meta(Meta::Nfproto, NFPROTO_IPV6).to_vec();
    out.extend(meta(Meta::L4proto, 58));
    out.extend([load(Header::Transport, 0, 1), cmp(CmpOp::Eq, &[t])]);
    out.push(Expr::Verdict(Verdict::Return));
    Some(out)
}

/// The changes of `SetChain { direction, rules }` after the chain's
/// declaration: its flush, then its rules (the last tagged with its
/// fingerprint), as `public_plan::filter::script::render` writes them.
/// `None` when the rules leave `direction` open (no chain), or a line is
/// one this module does not know (the transaction then goes to `nft -f`).
pub fn set_chain(direction: Direction, rules: &[SgRule]) -> Option<Vec<Change>> {
    let Some(FilterChain::Shared { fingerprint, .. }) = FilterChain::of(rules, direction) else {
        return None;
    };
    let (family, table) = (Family::Inet, FILTER_TABLE);
    let name = secgroup::chain::name(fingerprint, direction);
    // The group's lines with their expressions, each once (as `chain`).
    let mut compiled: Vec<(String, Vec<Expr>)> = Vec::new();
    for r in rules.iter().filter(|r| r.direction == direction) {
        let lines = secgroup::render::rule_lines(r);
        let exprs = rule_exprs(r);
        if lines.len() != exprs.len() {
            return None;
        }
        for (line, e) in lines.into_iter().zip(exprs) {
            if compiled.iter().all(|(l, _)| *l != line) {
                compiled.push((line, e));
            }
        }
    }
    let lines = secgroup::render::chain(rules, direction);
    let last = lines.len().saturating_sub(1);
    let mut out = vec![Change::Flush(Flush {
        family,
        table: table.into(),
        chain: name.clone(),
    })];
    for (i, line) in lines.into_iter().enumerate() {
        let exprs = match compiled.iter().find(|(l, _)| *l == line) {
            Some((_, e)) => e.clone(),
            None => frame_exprs(&line)?,
        };
        out.push(Change::Rule(Rule {
            family,
            table: table.into(),
            chain: name.clone(),
            exprs,
            comment: (i == last).then(|| secgroup::chain::tag(fingerprint)),
            text: line,
        }));
    }
    Some(out)
}

/// A chain's declaration (regular: no hook).
pub fn declare(name: &str) -> Change {
    Change::Chain(Chain {
        family: Family::Inet,
        table: FILTER_TABLE.into(),
        name: name.into(),
        hook: None,
        text: String::new(),
    })
}

#[cfg(test)]
mod tests;
