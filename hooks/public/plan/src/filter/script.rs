//! The security groups' table in `nft -f -` scripts, and on the
//! simulated host.

use std::collections::{BTreeMap, BTreeSet};

use secgroup::Direction;

use super::{
    BASE, FILTER_COMMENT, FILTER_TABLE, FilterAddr, FilterChain, FilterState, FilterTarget, MAPS, map, rule_tag,
};
use crate::ops::NftOp;

/// The filters' part of an `nft -f -` script: the base (when declared),
/// the chains the batch sets or deletes (declared before the maps: nft
/// 1.0.6 refuses an element jumping to a chain declared after its interval
/// map in one transaction), their rules (`flush` then the rules, the last
/// one tagged with their fingerprint), the deletions (an element added then
/// deleted, a chain flushed then deleted: a missing one is no error), then
/// the additions (to chains that must exist: an element never jumps to a
/// chain this batch did not fill or find).
pub fn render(ops: &[NftOp], out: &mut String) {
    let t = format!("inet {FILTER_TABLE}");
    let ensure = ops.contains(&NftOp::EnsureFilters);
    if ensure {
        out.push_str(&format!("add table {t} {{ comment \"{FILTER_COMMENT}\"; }}\n"));
    }
    let declared: BTreeSet<String> = ops
        .iter()
        .filter_map(|o| match o {
            NftOp::SetChain { direction, rules } => FilterChain::of(rules, *direction).map(FilterChain::name),
            NftOp::DeleteChain(c) => Some(c.name()),
            _ => None,
        })
        .collect();
    for c in &declared {
        out.push_str(&format!("add chain {t} {c}\n"));
    }
    if ensure {
        for (name, decl) in MAPS {
            out.push_str(&format!("add map {t} {name} {{ {decl} }}\n"));
        }
        for (name, rules) in BASE {
            out.push_str(&format!(
                "add chain {t} {name} {{ type filter hook {name} priority filter; policy accept; }}\n"
            ));
            out.push_str(&format!("flush chain {t} {name}\n"));
            for (n, r) in rules.iter().enumerate() {
                out.push_str(&format!("add rule {t} {name} {r} comment \"{}\"\n", rule_tag(name, n)));
            }
        }
    }
    for op in ops {
        if let NftOp::SetChain { direction, rules } = op
            && let Some(FilterChain::Shared { fingerprint, .. }) = FilterChain::of(rules, *direction)
        {
            let c = secgroup::chain::name(fingerprint, *direction);
            out.push_str(&format!("flush chain {t} {c}\n"));
            let lines = secgroup::render::chain(rules, *direction);
            let last = lines.len().saturating_sub(1);
            for (i, line) in lines.iter().enumerate() {
                if i == last {
                    let tag = secgroup::chain::tag(fingerprint);
                    out.push_str(&format!("add rule {t} {c} {line} comment \"{tag}\"\n"));
                } else {
                    out.push_str(&format!("add rule {t} {c} {line}\n"));
                }
            }
        }
    }
    // Elements grouped one line per map and kind (one command, one kernel
    // message for many: `reconcile` writes thousands). A deletion is an
    // addition then a deletion of the same element: idempotent, and
    // refused when the key goes elsewhere.
    // `added`: the additions' elements, else the deletions'.
    let grouped = |added: bool| {
        let mut maps: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for op in ops {
            if let (
                NftOp::AddFilterAddr {
                    addr,
                    direction,
                    target,
                }
                | NftOp::DeleteFilterAddr {
                    addr,
                    direction,
                    target,
                },
                true,
            ) = (op, added == matches!(op, NftOp::AddFilterAddr { .. }))
            {
                maps.entry(map(*addr, *direction))
                    .or_default()
                    .push(format!("{addr} : {}", target.verdict()));
            }
        }
        maps
    };
    let deleted = grouped(false);
    for (m, items) in &deleted {
        let items = items.join(", ");
        out.push_str(&format!(
            "add element {t} {m} {{ {items} }}\ndelete element {t} {m} {{ {items} }}\n"
        ));
    }
    for op in ops {
        if let NftOp::DeleteChain(c) = op {
            let c = c.name();
            out.push_str(&format!("flush chain {t} {c}\ndelete chain {t} {c}\n"));
        }
    }
    let added = grouped(true);
    for (m, items) in &added {
        out.push_str(&format!("add element {t} {m} {{ {} }}\n", items.join(", ")));
    }
}

/// The filters' part of a transaction on the simulated table (nft's
/// rules: anything in a missing table fails, an element jumping to a
/// missing chain fails, a key mapped elsewhere fails, a chain still jumped
/// to cannot be deleted).
pub fn simulate(s: &mut FilterState, ops: &[NftOp]) -> Result<(), String> {
    let missing = || "Error: Could not process rule: No such file or directory".to_owned();
    let mut next = s.clone();
    if ops.contains(&NftOp::EnsureFilters) {
        next.table = true;
        for (name, decl) in MAPS {
            let t = if decl.contains("ipv4") {
                "ipv4_addr"
            } else {
                "ipv6_addr"
            };
            next.maps
                .insert(name.to_owned(), (t.to_owned(), decl.contains("interval")));
        }
        for (name, rules) in BASE {
            next.chains.insert(
                name.to_owned(),
                (
                    Some(name.to_owned()),
                    (0..rules.len()).map(|n| Some(rule_tag(name, n))).collect(),
                ),
            );
        }
    }
    let touches = ops
        .iter()
        .any(|o| !matches!(o, NftOp::EnsureFilters) && is_filter_op(o));
    if touches && !next.table {
        return Err(missing());
    }
    for op in ops {
        match op {
            NftOp::SetChain { direction, rules } => {
                if let Some(FilterChain::Shared { fingerprint, .. }) = FilterChain::of(rules, *direction) {
                    let n = secgroup::render::chain(rules, *direction).len();
                    let mut tags = vec![None; n.saturating_sub(1)];
                    tags.push(Some(secgroup::chain::tag(fingerprint)));
                    next.chains
                        .insert(secgroup::chain::name(fingerprint, *direction), (None, tags));
                }
            }
            NftOp::DeleteChain(c) => {
                next.chains.entry(c.name()).or_default();
            }
            _ => {}
        }
    }
    for op in ops {
        if let NftOp::DeleteFilterAddr {
            addr,
            direction,
            target,
        } = *op
        {
            element(&mut next, addr, direction, target, false)?;
        }
    }
    for op in ops {
        if let NftOp::DeleteChain(c) = op {
            let c = c.name();
            if next.elements.values().any(|m| m.values().any(|v| *v == c)) {
                return Err("Error: Could not process rule: Device or resource busy".into());
            }
            next.chains.remove(&c);
        }
    }
    for op in ops {
        if let NftOp::AddFilterAddr {
            addr,
            direction,
            target,
        } = *op
        {
            element(&mut next, addr, direction, target, true)?;
        }
    }
    *s = next;
    Ok(())
}

/// Adds (`add`) or deletes the element of `addr` going to `target` in
/// `direction`'s map, as nft does: a chain jumped to must exist, and a key
/// going elsewhere fails. (A deletion is rendered as an addition then a
/// deletion.)
fn element(s: &mut FilterState, addr: FilterAddr, d: Direction, target: FilterTarget, add: bool) -> Result<(), String> {
    let c = target.listed();
    if matches!(target, FilterTarget::Chain(_)) && !s.chains.contains_key(&c) {
        return Err("Error: Could not process rule: No such file or directory".into());
    }
    let m = s.elements.entry(map(addr, d).to_owned()).or_default();
    match m.get(&addr) {
        Some(other) if *other != c => return Err("Error: Could not process rule: File exists".into()),
        _ if add => {
            m.insert(addr, c);
        }
        _ => {
            m.remove(&addr);
        }
    }
    Ok(())
}

/// Whether an op is one of the filters'.
pub fn is_filter_op(op: &NftOp) -> bool {
    matches!(
        op,
        NftOp::EnsureFilters
            | NftOp::SetChain { .. }
            | NftOp::DeleteChain(_)
            | NftOp::AddFilterAddr { .. }
            | NftOp::DeleteFilterAddr { .. }
    )
}
