//! Reads the security groups' table from `nft -j list table inet
//! one_scaleway_sg` (the shapes nftables 1.0 prints).

use std::net::{Ipv4Addr, Ipv6Addr};

use public_plan::filter::{CONTINUE, FILTER_TABLE, FilterAddr, FilterState};
use serde_json::Value;

use crate::listing::objects;

/// A map key: `"172.30.0.4"`, `"2001:db8::5"` (a /128), or
/// `{"prefix": {"addr", "len"}}`.
fn key(v: &Value) -> Option<FilterAddr> {
    match v {
        Value::String(s) => match s.parse::<Ipv4Addr>() {
            Ok(a) => Some(FilterAddr::V4(a)),
            Err(_) => Some(FilterAddr::V6(s.parse::<Ipv6Addr>().ok()?, 128)),
        },
        Value::Object(o) => {
            let p = o.get("prefix")?;
            let len = u8::try_from(p.get("len")?.as_u64()?).ok()?;
            Some(FilterAddr::V6(p.get("addr")?.as_str()?.parse().ok()?, len))
        }
        _ => None,
    }
}

/// A map element's verdict: the chain it jumps to, or `continue`.
fn target(v: &Value) -> Option<String> {
    if v.get(CONTINUE).is_some() {
        return Some(CONTINUE.to_owned());
    }
    v.get("jump")?.get("target")?.as_str().map(str::to_owned)
}

/// The table, from its listing. Elements that are not of a form the
/// driver writes are left out (the driver never deletes what it does not
/// recognise).
pub fn parse(json: &str) -> Result<FilterState, String> {
    let mut s = FilterState::default();
    for o in objects(json)? {
        match o.kind.as_str() {
            "table" => s.table |= o.text("name") == Some(FILTER_TABLE),
            "map" => {
                let name = o.name()?;
                let kind = o.text("type").unwrap_or_default().to_owned();
                s.maps.insert(name.to_owned(), (kind, o.has_flag("interval")));
                let elements = s.elements.entry(name.to_owned()).or_default();
                for e in o.elements() {
                    if let Some([k, v]) = e.as_array().map(Vec::as_slice)
                        && let Some(addr) = key(k.get("elem").and_then(|x| x.get("val")).unwrap_or(k))
                        && let Some(target) = target(v)
                    {
                        elements.insert(addr, target);
                    }
                }
            }
            "chain" => s.chains.entry(o.name()?.to_owned()).or_default().0 = o.text("hook").map(str::to_owned),
            "rule" => s
                .chains
                .entry(o.chain()?.to_owned())
                .or_default()
                .1
                .push(o.text("comment").map(str::to_owned)),
            _ => {}
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What nft 1.0.6 prints for the table with one NIC (rules shortened).
    const LISTED: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "inet", "name": "one_scaleway_sg", "handle": 9}}, {"map": {"family": "inet", "name": "in4", "table": "one_scaleway_sg", "type": "ipv4_addr", "handle": 3, "map": "verdict", "elem": [["172.30.0.4", {"jump": {"target": "nic-7-0-in"}}], ["172.30.0.6", {"continue": null}]]}}, {"map": {"family": "inet", "name": "in6", "table": "one_scaleway_sg", "type": "ipv6_addr", "handle": 5, "map": "verdict", "flags": ["interval"], "elem": [[{"prefix": {"addr": "2001:db8:1::", "len": 64}}, {"jump": {"target": "nic-7-0-in"}}]]}}, {"chain": {"family": "inet", "table": "one_scaleway_sg", "name": "nic-7-0-in", "handle": 1}}, {"chain": {"family": "inet", "table": "one_scaleway_sg", "name": "forward", "handle": 7, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}, {"rule": {"family": "inet", "table": "one_scaleway_sg", "chain": "nic-7-0-in", "handle": 12, "expr": [{"drop": null}], "comment": "one-scaleway sg rules 00ff"}}]}"#;

    #[test]
    fn reads_the_listed_table() {
        let s = parse(LISTED).unwrap();
        assert!(s.table);
        assert_eq!(
            s.target("in4", FilterAddr::V4("172.30.0.4".parse().unwrap())),
            Some("nic-7-0-in")
        );
        assert_eq!(
            s.target("in4", FilterAddr::V4("172.30.0.6".parse().unwrap())),
            Some(CONTINUE)
        );
        assert_eq!(
            s.target("in6", FilterAddr::V6("2001:db8:1::".parse().unwrap(), 64)),
            Some("nic-7-0-in")
        );
        assert_eq!(s.chain_tag("nic-7-0-in"), Some("one-scaleway sg rules 00ff"));
        assert_eq!(s.maps["in6"], ("ipv6_addr".to_owned(), true));
        assert_eq!(s.chains["forward"].0.as_deref(), Some("forward"));
        assert!(!s.base_ok(), "maps and base rules are missing");
        assert!(parse("{}").is_err());
    }
}
