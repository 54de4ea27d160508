//! The root helper's part for driver `scaleway`: the changes it accepts,
//! typed ([`Public`]), how they are checked, and how they run.
//!
//! The driver (as oneadmin) sends one request as JSON on the helper's
//! stdin; the helper (as root, through sudo) parses it into these types
//! (so only the driver's own kinds of change exist: no `netns exec`, no
//! other nftables table, no other sysctl), checks what the types cannot
//! (an `ip` change touches only bridges, or a bridge it creates; a sysctl
//! value is 0 or 1), renders it with the very functions the driver uses,
//! and runs the tool (or, for links, routes and neighbours, sends the
//! rtnetlink messages itself). What the tool printed and its exit status come back
//! unchanged, so the driver reads them as if it had run the tool itself.

use std::collections::BTreeMap;

use public_plan::guard::GUARD_TABLE;
use public_plan::ops::NFT_TABLE;
use public_plan::{IpOp, NftBatch, NftOp, SysctlKey};
use serde::{Deserialize, Serialize};

use host_tools::links::link_kinds_of;
use host_tools::netlink::Rtnl;
use host_tools::run::{ApplyError, Ran, Tools};

/// The tag of this driver's requests (`{"scaleway": {...}}`).
pub const TAG: &str = "scaleway";

/// One change (or read) that needs root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Public {
    /// These link, route and neighbour changes, in order, through
    /// rtnetlink (`keep_going`: every one tried, for undoing).
    Ip { ops: Vec<IpOp>, keep_going: bool },
    /// `nft -f -` of this batch (our two tables only, by construction).
    Nft { ops: Vec<NftOp> },
    /// `nft -j list table` of one of our tables.
    List { table: Table },
    /// A sysctl the driver sets, to 0 or 1.
    Sysctl { key: SysctlKey, value: String },
}

/// Our tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// `ip one_scaleway`.
    Nat,
    /// `bridge one_scaleway_guard`.
    Guard,
    /// `inet one_scaleway_sg`.
    Filter,
}

impl Table {
    /// Its family and name.
    pub fn name(self) -> (&'static str, &'static str) {
        match self {
            Self::Nat => ("ip", NFT_TABLE),
            Self::Guard => ("bridge", GUARD_TABLE),
            Self::Filter => ("inet", public_plan::filter::FILTER_TABLE),
        }
    }
}

impl Public {
    /// The request as the helper reads it.
    pub fn to_json(&self) -> String {
        let mut outer = serde_json::Map::new();
        outer.insert(TAG.to_owned(), serde_json::to_value(self).unwrap_or_default());
        serde_json::Value::Object(outer).to_string()
    }
}

/// Checks that `ops` touch only bridges: existing ones, or ones created
/// earlier in the same batch; a bridge is created only where no device is.
pub fn check_ip(ops: &[IpOp], kinds: &BTreeMap<String, Option<String>>) -> Result<(), String> {
    let mut created = Vec::new();
    for op in ops {
        let dev = match op {
            IpOp::AddBridge { name, .. } => {
                if kinds.contains_key(name.as_str()) {
                    return Err(format!("`ip {op}`: device {name} exists already"));
                }
                created.push(*name);
                continue;
            }
            IpOp::SetUp(b) | IpOp::DeleteLink(b) => *b,
            IpOp::AddRoute(r) | IpOp::DeleteRoute(r) => {
                if ![32, 64, 128].contains(&r.len) {
                    return Err(format!("`ip {op}`: the driver routes only /32, /64 and /128"));
                }
                r.dev
            }
            IpOp::AddProxy(p) | IpOp::DeleteProxy(p) => p.dev,
            IpOp::SetNeigh(n) | IpOp::DeleteNeigh(n) => n.dev,
        };
        let is_bridge = kinds.get(dev.as_str()).is_some_and(|k| k.as_deref() == Some("bridge"));
        if !is_bridge && !created.contains(&dev) {
            return Err(format!(
                "`ip {op}`: {dev} is not a bridge (the scaleway driver changes bridges only)"
            ));
        }
    }
    Ok(())
}

/// Checks a request against the host; `Err` says why it is refused.
fn check(request: &Public) -> Result<(), String> {
    match request {
        Public::Ip { ops, .. } => check_ip(ops, &link_kinds_of(ops.iter().map(IpOp::dev))?),
        Public::Sysctl { value, .. } if value != "0" && value != "1" => {
            Err(format!("sysctl value {value:?} is not 0 or 1"))
        }
        Public::Nft { ops } => ops.iter().try_for_each(|op| match op {
            NftOp::SetFilter { rules, .. } => rules
                .iter()
                .try_for_each(secgroup::Rule::check)
                .map_err(|e| format!("a security group rule: {e}")),
            _ => Ok(()),
        }),
        _ => Ok(()),
    }
}

/// What a change made in this process reports, as if a tool had run.
fn ran(success: bool, stdout: String, stderr: String) -> Ran {
    Ran {
        success,
        status: format!("exit status: {}", u8::from(!success)),
        stdout,
        stderr,
    }
}

/// Checks and runs `request` (as root): what the tool printed and its
/// status, or why the request is refused.
pub fn execute(request: &Public, tools: &Tools) -> Result<Result<Ran, String>, ApplyError> {
    if let Err(why) = check(request) {
        return Ok(Err(why));
    }
    let ran = match request {
        Public::Ip { ops, keep_going } => {
            let mut rtnl = Rtnl::open(tools.timeout()).map_err(|e| ApplyError::new(e.message))?;
            match crate::ip::apply_netlink(&mut rtnl, ops, *keep_going) {
                Ok(()) => ran(true, String::new(), String::new()),
                Err(e) => ran(
                    false,
                    serde_json::to_string(&crate::ip::Failed {
                        failed_line: e.failed_line,
                    })
                    .unwrap_or_default(),
                    e.message,
                ),
            }
        }
        Public::Nft { ops } => {
            let script = NftBatch { ops: ops.clone() }.render();
            tools.run("nft", &["-f", "-"], script.as_bytes())?
        }
        Public::List { table } => {
            let (family, name) = table.name();
            tools.run("nft", &["-j", "list", "table", family, name], b"")?
        }
        Public::Sysctl { key, value } => {
            let path = std::path::Path::new("/proc/sys").join(key.path());
            match std::fs::write(&path, format!("{value}\n")) {
                Ok(()) => ran(true, String::new(), String::new()),
                Err(e) => ran(false, String::new(), format!("cannot write {}: {e}", path.display())),
            }
        }
    };
    Ok(Ok(ran))
}

#[cfg(test)]
mod tests {
    use super::*;
    use public_plan::endpoint::BridgeName;

    fn kinds() -> BTreeMap<String, Option<String>> {
        BTreeMap::from([
            ("lo".to_owned(), None),
            ("eth0".to_owned(), None),
            ("scwpriv0".to_owned(), Some("vlan".to_owned())),
            ("scwpub0".to_owned(), Some("bridge".to_owned())),
        ])
    }

    fn parse(json: &str) -> Result<Public, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn requests_round_trip_through_json() {
        let b = BridgeName::parse("scwpub1").unwrap();
        let r = Public::Ip {
            ops: vec![
                IpOp::AddBridge {
                    name: b,
                    mac: [2, 0x5c, 0, 0, 0, 1],
                },
                IpOp::SetUp(b),
            ],
            keep_going: false,
        };
        let json = r.to_json();
        assert!(json.starts_with("{\"scaleway\":{\"ip\":"), "{json}");
        let inner: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::from_value::<Public>(inner["scaleway"].clone()).unwrap(), r);
    }

    #[test]
    fn only_the_drivers_changes_exist() {
        // No such request: a shell, a file, another table, another sysctl.
        for bad in [
            r#"{"exec": {"argv": ["sh"]}}"#,
            r#"{"ip": {"ops": [{"netns_exec": "sh"}], "keep_going": false}}"#,
            r#"{"nft": {"ops": [{"flush_ruleset": null}]}}"#,
            r#"{"nft": {"script": "flush ruleset"}}"#,
            r#"{"list": {"table": "raw"}}"#,
            r#"{"sysctl": {"key": "kernel/core_pattern", "value": "1"}}"#,
            r#"{"sysctl": {"key": "net/ipv4/conf/all/rp_filter", "value": "0"}}"#,
            r#"{"sysctl": {"key": "net/ipv4/conf/../../kernel/x/forwarding", "value": "1"}}"#,
            r#"{"ip": {"ops": [{"set_up": "a b"}], "keep_going": false}}"#,
            r#"{"ip": {"ops": [], "keep_going": false, "extra": 1}}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad} was accepted");
        }
        assert!(parse(r#"{"sysctl": {"key": "net/ipv4/conf/scwpub0/forwarding", "value": "1"}}"#).is_ok());
    }

    #[test]
    fn security_group_rules_are_checked() {
        let mut rule = secgroup::default_rules().remove(0);
        let request = |rule: secgroup::Rule| Public::Nft {
            ops: vec![NftOp::SetFilter {
                vm: 7,
                nic_id: 0,
                rules: vec![rule],
            }],
        };
        assert_eq!(check(&request(rule.clone())), Ok(()));
        // Ports on ICMP: no rule oned accepts, and none the driver sends.
        rule.protocol = secgroup::Protocol::Icmp;
        rule.ports = vec![secgroup::PortRange { first: 22, last: 22 }];
        let e = check(&request(rule)).unwrap_err();
        assert!(
            e.contains("a security group rule: ports are supported only for TCP and UDP"),
            "{e}"
        );
    }

    #[test]
    fn ip_changes_touch_bridges_only() {
        let b = |s: &str| BridgeName::parse(s).unwrap();
        let route = |dev: &str, len: u8| {
            IpOp::DeleteRoute(public_plan::Route {
                dst: "0.0.0.0".parse().unwrap(),
                len,
                via: None,
                dev: b(dev),
            })
        };
        assert!(
            check_ip(&[IpOp::DeleteLink(b("eth0"))], &kinds())
                .unwrap_err()
                .contains("eth0 is not a bridge")
        );
        assert!(check_ip(&[IpOp::DeleteLink(b("scwpriv0"))], &kinds()).is_err());
        assert!(check_ip(&[IpOp::SetUp(b("nosuch0"))], &kinds()).is_err());
        assert!(check_ip(&[route("eth0", 32)], &kinds()).is_err());
        assert!(
            check_ip(&[route("scwpub0", 0)], &kinds())
                .unwrap_err()
                .contains("only /32")
        );
        assert!(
            check_ip(
                &[IpOp::AddBridge {
                    name: b("eth0"),
                    mac: [2, 0, 0, 0, 0, 1]
                }],
                &kinds()
            )
            .is_err()
        );
        let new = b("scwpub1");
        let ok = [
            IpOp::AddBridge {
                name: new,
                mac: [2, 0, 0, 0, 0, 1],
            },
            IpOp::SetUp(new),
            route("scwpub1", 32),
            IpOp::DeleteLink(b("scwpub0")),
        ];
        assert_eq!(check_ip(&ok, &kinds()), Ok(()));
    }
}
