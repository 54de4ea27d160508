//! Our nftables tables: read with `nft -j list table ...`, changed with
//! one transaction through nf_tables netlink from this process
//! ([`crate::lower`]; `nft -f -` of its script only for what that cannot
//! compile: nothing the planner makes today).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use public_plan::NftBatch;
use public_plan::guard::GuardState;
use public_plan::observed::{ChainState, MapState, NatState, Rule};
use public_plan::ops::NFT_TABLE;
use serde_json::Value;

use crate::listing::objects;
use crate::root::{Public, Table};
use host_tools::nftables::{Family as NfFamily, Nftables};
use host_tools::run::{ApplyError, Tools};

/// The nftables side effects.
pub trait Nft {
    /// Our table as it is (empty when it does not exist).
    fn observe(&self) -> Result<NatState, ApplyError>;
    /// The port guard's table (`nft -j list table bridge one_scaleway_guard`).
    fn observe_guard(&self) -> Result<GuardState, ApplyError>;
    /// The security groups' table (`nft -j list table inet one_scaleway_sg`).
    fn observe_filter(&self) -> Result<public_plan::filter::FilterState, ApplyError>;
    /// Applies the batch as one transaction.
    fn apply(&self, batch: &NftBatch) -> Result<(), ApplyError>;
}

/// The real `nft`.
pub struct NftCommand<'a> {
    pub tools: &'a Tools,
}

impl NftCommand<'_> {
    /// `nft -j list table FAMILY NAME` of one of our tables, read by
    /// `parse`; an absent table is the default state.
    fn list<T: Default>(&self, table: Table, parse: fn(&str) -> Result<T, String>) -> Result<T, ApplyError> {
        let (family, name) = table.name();
        // As root, a missing table (after a reboot: what `reconcile` finds)
        // is learnt without an `nft` process.
        if !self.tools.uses_sudo() {
            let nf = match table {
                Table::Nat => NfFamily::Ip,
                Table::Guard => NfFamily::Bridge,
                Table::Filter => NfFamily::Inet,
            };
            if let Ok(false) = Nftables::open(self.tools.timeout()).and_then(|mut n| n.has_table(nf, name)) {
                return Ok(T::default());
            }
        }
        let args = ["-j", "list", "table", family, name];
        let ran = self
            .tools
            .run_root("nft", &args, b"", || Public::List { table }.to_json())?;
        if !ran.success {
            if ran.stderr.contains("No such file or directory") {
                return Ok(T::default());
            }
            return Err(self.tools.failure("nft", &args, &ran));
        }
        parse(&ran.stdout).map_err(|e| {
            ApplyError::new(format!(
                "cannot read the output of `nft -j list table {family} {name}`: {e}"
            ))
        })
    }
}

impl Nft for NftCommand<'_> {
    fn observe(&self) -> Result<NatState, ApplyError> {
        self.list(Table::Nat, parse_table)
    }

    fn observe_guard(&self) -> Result<GuardState, ApplyError> {
        self.list(Table::Guard, crate::guard::parse)
    }

    fn observe_filter(&self) -> Result<public_plan::filter::FilterState, ApplyError> {
        self.list(Table::Filter, crate::filter::parse)
    }

    fn apply(&self, batch: &NftBatch) -> Result<(), ApplyError> {
        if batch.is_empty() {
            return Ok(());
        }
        // Through nf_tables netlink from this process, no `nft` process
        // (not through sudo: the root helper applies a plan itself, here),
        // in one transaction ([`crate::lower::changes`]).
        if !self.tools.uses_sudo()
            && let Some(changes) = crate::lower::changes(batch)
        {
            return Nftables::open(self.tools.timeout())
                .and_then(|mut n| n.apply(&changes))
                .map_err(|e| ApplyError::new(format!("{e} (nothing was changed: the transaction is all or nothing)")));
        }
        self.run_script(&batch.render())
    }
}

impl NftCommand<'_> {
    /// `script` as one `nft -f -` transaction.
    fn run_script(&self, script: &str) -> Result<(), ApplyError> {
        let args = ["-f", "-"];
        let ran = self.tools.run("nft", &args, script.as_bytes())?;
        if ran.success {
            Ok(())
        } else {
            let mut e = self.tools.failure("nft", &args, &ran);
            e.message
                .push_str(" (nothing was changed: the transaction is all or nothing)");
            Err(e)
        }
    }
}

fn text(v: &Value) -> Option<&str> {
    v.as_str()
}

/// An element key or value: an address, possibly wrapped (`{"elem": {"val": ...}}`).
fn address(v: &Value) -> Option<Ipv4Addr> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Object(o) => o.get("elem").and_then(|e| e.get("val")).and_then(address),
        _ => None,
    }
}

/// Recognises `dnat to ip daddr map @m` / `snat to ip saddr map @m`, and
/// `secgroup::SKIP_PRIVATE` (which nft 1.0.6 lists as a prefix match:
/// `meta mark 0x80000000/1 accept`).
fn rule(expr: &Value) -> Rule {
    let skip = serde_json::json!([
        {"match": {"op": "==", "left": {"meta": {"key": "mark"}},
                   "right": {"prefix": {"addr": secgroup::PRIVATE_BRIDGED, "len": 1}}}},
        {"accept": null}
    ]);
    if *expr == skip {
        return Rule::SkipPrivate;
    }
    let other = || Rule::Other(expr.to_string());
    let Some([statement]) = expr.as_array().map(Vec::as_slice) else {
        return other();
    };
    let Some(object) = statement.as_object() else {
        return other();
    };
    let (snat, body) = match (object.get("dnat"), object.get("snat")) {
        (Some(b), None) if object.len() == 1 => (false, b),
        (None, Some(b)) if object.len() == 1 => (true, b),
        _ => return other(),
    };
    let map = body.get("addr").and_then(|a| a.get("map"));
    let payload = map.and_then(|m| m.get("key")).and_then(|k| k.get("payload"));
    let field = payload.and_then(|p| p.get("field")).and_then(text);
    let protocol = payload.and_then(|p| p.get("protocol")).and_then(text);
    let data = map.and_then(|m| m.get("data")).and_then(text);
    match (protocol, field, data.and_then(|d| d.strip_prefix('@'))) {
        (Some("ip"), Some(field), Some(name)) => Rule::NatMap {
            snat,
            field: field.to_owned(),
            map: name.to_owned(),
        },
        _ => other(),
    }
}

/// Reads `nft -j list table ip one_scaleway`.
pub fn parse_table(json: &str) -> Result<NatState, String> {
    let mut nat = NatState::default();
    for o in objects(json)? {
        match o.kind.as_str() {
            "table" => nat.table |= o.text("name") == Some(NFT_TABLE),
            "map" => {
                let kind = |k: &str| match o.body.get(k) {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => String::new(),
                };
                let mut elements = BTreeMap::new();
                for e in o.elements() {
                    if let Some([k, v]) = e.as_array().map(Vec::as_slice)
                        && let (Some(k), Some(v)) = (address(k), address(v))
                    {
                        elements.insert(k, v);
                    }
                }
                nat.maps.insert(
                    o.name()?.to_owned(),
                    MapState {
                        key_type: kind("type"),
                        data_type: kind("map"),
                        elements,
                    },
                );
            }
            "chain" => {
                let chain = nat.chains.entry(o.name()?.to_owned()).or_default();
                chain.kind = o.text("type").map(str::to_owned);
                chain.hook = o.text("hook").map(str::to_owned);
                chain.prio = o.body.get("prio").and_then(Value::as_i64);
            }
            "rule" => {
                let rule = rule(o.body.get("expr").unwrap_or(&Value::Null));
                nat.chains
                    .entry(o.chain()?.to_owned())
                    .or_insert_with(ChainState::default)
                    .rules
                    .push(rule);
            }
            _ => {}
        }
    }
    Ok(nat)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What nft 1.0.6 prints for our table with one mapping (the
    /// postrouting chain without its first rule).
    const LISTED: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "one_scaleway", "handle": 1}}, {"map": {"family": "ip", "name": "dnat_map", "table": "one_scaleway", "type": "ipv4_addr", "handle": 3, "map": "ipv4_addr", "elem": [["198.51.100.10", "172.16.5.2"]]}}, {"map": {"family": "ip", "name": "snat_map", "table": "one_scaleway", "type": "ipv4_addr", "handle": 4, "map": "ipv4_addr", "elem": [["172.16.5.2", "198.51.100.10"]]}}, {"chain": {"family": "ip", "table": "one_scaleway", "name": "prerouting", "handle": 1, "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}}, {"chain": {"family": "ip", "table": "one_scaleway", "name": "postrouting", "handle": 2, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}, {"rule": {"family": "ip", "table": "one_scaleway", "chain": "prerouting", "handle": 7, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": {"prefix": {"addr": 2147483648, "len": 1}}}}, {"accept": null}]}}, {"rule": {"family": "ip", "table": "one_scaleway", "chain": "prerouting", "handle": 5, "expr": [{"dnat": {"addr": {"map": {"key": {"payload": {"protocol": "ip", "field": "daddr"}}, "data": "@dnat_map"}}}}]}}, {"rule": {"family": "ip", "table": "one_scaleway", "chain": "postrouting", "handle": 6, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"snat": {"addr": {"map": {"key": {"payload": {"protocol": "ip", "field": "saddr"}}, "data": "@snat_map"}}}}]}}]}"#;

    #[test]
    fn reads_the_listed_table() {
        let nat = parse_table(LISTED).unwrap();
        assert!(nat.table);
        let ip: Ipv4Addr = "172.16.5.2".parse().unwrap();
        assert_eq!(nat.get("dnat_map", "198.51.100.10".parse().unwrap()), Some(ip));
        assert_eq!(nat.get("snat_map", ip), Some("198.51.100.10".parse().unwrap()));
        assert_eq!(nat.maps["dnat_map"].key_type, "ipv4_addr");
        let pre = &nat.chains["prerouting"];
        assert_eq!(
            (pre.kind.as_deref(), pre.hook.as_deref(), pre.prio),
            (Some("nat"), Some("prerouting"), Some(-100))
        );
        assert_eq!(
            pre.rules,
            [
                Rule::SkipPrivate,
                Rule::NatMap {
                    snat: false,
                    field: "daddr".into(),
                    map: "dnat_map".into()
                }
            ]
        );
        // A rule with a counter is not ours.
        assert!(matches!(nat.chains["postrouting"].rules[..], [Rule::Other(_)]));
    }

    #[test]
    fn refuses_what_is_not_a_listing() {
        assert!(parse_table("{}").is_err());
        assert!(parse_table("not json").is_err());
        assert_eq!(parse_table(r#"{"nftables": []}"#).unwrap(), NatState::default());
    }
}
