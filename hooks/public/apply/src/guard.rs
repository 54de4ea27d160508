//! Reads the port guard's table from `nft -j list table bridge
//! one_scaleway_guard` (the shapes nftables 1.0 prints).

use std::net::{Ipv4Addr, Ipv6Addr};

use public_plan::endpoint::BridgeName;
use public_plan::guard::{GUARD_TABLE, GuardChain, GuardElem, GuardState};
use serde_json::Value;

use crate::listing::objects;

fn text(v: &Value) -> Option<&str> {
    v.as_str()
}

/// An IPv6 prefix: `"2001:db8::5"` (a /128) or `{"prefix": {"addr", "len"}}`.
fn prefix6(v: &Value) -> Option<(Ipv6Addr, u8)> {
    match v {
        Value::String(s) => Some((s.parse().ok()?, 128)),
        Value::Object(o) => {
            let p = o.get("prefix")?;
            let len = u8::try_from(p.get("len")?.as_u64()?).ok()?;
            Some((p.get("addr")?.as_str()?.parse().ok()?, len))
        }
        _ => None,
    }
}

fn hex128(v: &Value) -> Option<u128> {
    let s = v.as_str()?;
    u128::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
}

/// A raw 128-bit range that is a prefix: `{"range": ["0x…", "0x…"]}`, or
/// one value (a /128).
fn range6(v: &Value) -> Option<(Ipv6Addr, u8)> {
    let (lo, hi) = match v.get("range").and_then(Value::as_array).map(Vec::as_slice) {
        Some([lo, hi]) => (hex128(lo)?, hex128(hi)?),
        _ => {
            let one = hex128(v)?;
            (one, one)
        }
    };
    let span = hi.checked_sub(lo)?;
    let host_bits = 128 - span.leading_zeros();
    let len = u8::try_from(128 - host_bits).ok()?;
    let exact = span.checked_add(1).is_none_or(u128::is_power_of_two) && lo & span == 0;
    exact.then_some((Ipv6Addr::from(lo), len))
}

fn element(set: &str, v: &Value) -> Option<GuardElem> {
    let parts: Vec<&Value> = match v.get("concat").and_then(Value::as_array) {
        Some(a) => a.iter().collect(),
        None => vec![v],
    };
    let tap = BridgeName::parse(parts.first()?.as_str()?).ok()?;
    let rest = parts.get(1);
    Some(match set {
        "ports" => GuardElem::Port(tap),
        "macs" => GuardElem::Mac(tap, crate::ip::parse_mac(rest?.as_str()?)?),
        "addr4" => GuardElem::Addr4(tap, rest?.as_str()?.parse::<Ipv4Addr>().ok()?),
        "addr6" => {
            let (a, len) = prefix6(rest?)?;
            GuardElem::Addr6(tap, a, len)
        }
        "nd6" => {
            let (a, len) = range6(rest?)?;
            GuardElem::Nd6(tap, a, len)
        }
        _ => return None,
    })
}

/// The table, from `nft -j list table bridge one_scaleway_guard`. Elements
/// that are not of a form the driver writes are left out (the driver never
/// deletes what it does not recognise).
pub fn parse(json: &str) -> Result<GuardState, String> {
    let mut g = GuardState::default();
    for o in objects(json)? {
        match o.kind.as_str() {
            "table" => g.table |= o.text("name") == Some(GUARD_TABLE),
            "set" => {
                let name = o.name()?;
                let types = match o.body.get("type") {
                    Some(Value::String(s)) => vec![s.clone()],
                    Some(Value::Array(a)) => a.iter().filter_map(text).map(str::to_owned).collect(),
                    _ => Vec::new(),
                };
                g.sets.insert(name.to_owned(), (types, o.has_flag("interval")));
                for e in o.elements() {
                    let e = e.get("elem").and_then(|x| x.get("val")).unwrap_or(e);
                    if let Some(el) = element(name, e) {
                        g.elements.insert(el);
                    }
                }
            }
            "chain" => {
                let chain = g.chains.entry(o.name()?.to_owned()).or_default();
                chain.hook = o.text("hook").map(str::to_owned);
                chain.prio = o.body.get("prio").and_then(Value::as_i64);
            }
            "rule" => g
                .chains
                .entry(o.chain()?.to_owned())
                .or_insert_with(GuardChain::default)
                .rules
                .push(o.text("comment").map(str::to_owned)),
            _ => {}
        }
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What nftables 1.0.6 prints for a table with one guarded port.
    const SHOWN: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "bridge", "name": "one_scaleway_guard", "handle": 1}}, {"set": {"family": "bridge", "name": "ports", "table": "one_scaleway_guard", "type": "ifname", "handle": 3, "elem": ["one-7-0"]}}, {"set": {"family": "bridge", "name": "macs", "table": "one_scaleway_guard", "type": ["ifname", "ether_addr"], "handle": 4, "elem": [{"concat": ["one-7-0", "02:00:ac:1e:00:02"]}]}}, {"set": {"family": "bridge", "name": "addr4", "table": "one_scaleway_guard", "type": ["ifname", "ipv4_addr"], "handle": 5, "elem": [{"concat": ["one-7-0", "172.30.0.2"]}]}}, {"set": {"family": "bridge", "name": "addr6", "table": "one_scaleway_guard", "type": ["ifname", "ipv6_addr"], "handle": 6, "flags": ["interval"], "elem": [{"concat": ["one-7-0", {"prefix": {"addr": "2001:db8:1::", "len": 64}}]}, {"concat": ["one-7-0", "2001:db8::5"]}]}}, {"set": {"family": "bridge", "name": "nd6", "table": "one_scaleway_guard", "type": ["ifname", "integer"], "handle": 7, "flags": ["interval"], "elem": [{"concat": ["one-7-0", {"range": ["0x20010db8000100000000000000000000", "0x20010db800010000ffffffffffffffff"]}]}]}}, {"chain": {"family": "bridge", "table": "one_scaleway_guard", "name": "forward", "handle": 2, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}, {"rule": {"family": "bridge", "table": "one_scaleway_guard", "chain": "forward", "handle": 9, "comment": "one-scaleway guard forward 0", "expr": []}}]}"#;

    #[test]
    fn reads_sets_elements_and_rule_tags() {
        let g = parse(SHOWN).unwrap();
        assert!(g.table);
        let tap = BridgeName::parse("one-7-0").unwrap();
        let shown: Vec<String> = g.elements.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "\"one-7-0\"",
                "\"one-7-0\" . 02:00:ac:1e:00:02",
                "\"one-7-0\" . 172.30.0.2",
                "\"one-7-0\" . 2001:db8::5/128",
                "\"one-7-0\" . 2001:db8:1::/64",
                "\"one-7-0\" . 0x20010db8000100000000000000000000-0x20010db800010000ffffffffffffffff",
            ]
        );
        assert!(
            g.elements
                .contains(&GuardElem::Nd6(tap, "2001:db8:1::".parse().unwrap(), 64)),
            "{:?}",
            g.elements
        );
        assert_eq!(
            g.sets["addr6"],
            (vec!["ifname".to_owned(), "ipv6_addr".to_owned()], true)
        );
        assert_eq!(
            g.chains["forward"].rules,
            [Some("one-scaleway guard forward 0".to_owned())]
        );
        assert_eq!(g.chains["forward"].prio, Some(0));
    }

    #[test]
    fn raw_ranges_are_prefixes_or_nothing() {
        let r = |lo: &str, hi: &str| range6(&serde_json::json!({ "range": [lo, hi] }));
        assert_eq!(
            r(
                "0x20010db8000000000000000000000005",
                "0x20010db8000000000000000000000005"
            ),
            Some(("2001:db8::5".parse().unwrap(), 128))
        );
        assert_eq!(
            r(
                "0x20010db8000000000000000000000004",
                "0x20010db8000000000000000000000006"
            ),
            None
        );
        assert_eq!(
            r("0x0", "0xffffffffffffffffffffffffffffffff"),
            Some(("::".parse().unwrap(), 0))
        );
    }
}
