//! The root helper's part for driver `scaleway`: the changes it accepts,
//! typed ([`Public`]), how they are checked, and how they run.
//!
//! The driver (as oneadmin) sends one request as JSON on the helper's
//! stdin: a plan's changes (one per action), or the listing of one of our
//! tables. The helper (as root, through sudo) parses it into these types
//! (so only the driver's own kinds of change exist: no `netns exec`, no
//! other nftables table, no other sysctl), checks what the types cannot
//! (an `ip` change touches only bridges, or a bridge it creates; a sysctl
//! value is 0 or 1; security group rules), and applies it with the very
//! functions the driver uses as root ([`crate::apply`]: rtnetlink, the
//! sysctl files, one `nft -f -`). What failed, and whether the kernel
//! refused the nft transaction, come back on stderr and stdout.

use std::collections::BTreeMap;

use public_plan::guard::GUARD_TABLE;
use public_plan::ops::NFT_TABLE;
use public_plan::{IpOp, NftBatch, NftOp, Plan, SysctlKey, SysctlWrite};
use serde::{Deserialize, Serialize};

use host_tools::links::link_kinds_of;
use host_tools::run::{ApplyError, Ran, Tools};

/// The tag of this driver's requests (`{"scaleway": {...}}`).
pub const TAG: &str = "scaleway";

/// One change (or read) that needs root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Public {
    /// A plan's changes, applied by the helper as the driver applies them
    /// as root ([`crate::apply`]: in order, the additions undone when a
    /// later step fails): one request, one `sudo`, per action.
    Apply {
        ip_before: Vec<IpOp>,
        sysctls: Vec<SysctlSetting>,
        nft: Vec<NftOp>,
        ip_after: Vec<IpOp>,
    },
    /// `nft -j list table` of one of our tables.
    List { table: Table },
}

/// A sysctl the driver sets, to 0 or 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SysctlSetting {
    pub key: SysctlKey,
    pub value: String,
}

/// What the helper prints on stdout when applying failed.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Failed {
    /// The kernel refused the nft transaction.
    pub nft_refused: bool,
}

impl Public {
    /// The request applying `plan`.
    pub fn apply(plan: &Plan) -> Self {
        Self::Apply {
            ip_before: plan.ip_before.clone(),
            sysctls: plan
                .sysctls
                .iter()
                .map(|s| SysctlSetting {
                    key: s.key.clone(),
                    value: s.value.to_owned(),
                })
                .collect(),
            nft: plan.nft.ops.clone(),
            ip_after: plan.ip_after.clone(),
        }
    }
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
    let Public::Apply {
        ip_before,
        sysctls,
        nft,
        ip_after,
    } = request
    else {
        return Ok(());
    };
    let ip: Vec<IpOp> = ip_before.iter().chain(ip_after).copied().collect();
    check_ip(&ip, &link_kinds_of(ip.iter().map(IpOp::dev))?)?;
    if let Some(s) = sysctls.iter().find(|s| s.value != "0" && s.value != "1") {
        return Err(format!("sysctl value {:?} is not 0 or 1", s.value));
    }
    nft.iter().try_for_each(|op| match op {
        NftOp::SetChain { rules, .. } => rules
            .iter()
            .try_for_each(secgroup::Rule::check)
            .map_err(|e| format!("a security group rule: {e}")),
        _ => Ok(()),
    })
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
    let done = match request {
        Public::Apply {
            ip_before,
            sysctls,
            nft,
            ip_after,
        } => {
            let plan = Plan {
                ip_before: ip_before.clone(),
                sysctls: sysctls
                    .iter()
                    .map(|s| SysctlWrite {
                        key: s.key.clone(),
                        value: if s.value == "1" { "1" } else { "0" },
                    })
                    .collect(),
                nft: NftBatch { ops: nft.clone() },
                ip_after: ip_after.clone(),
                ..Plan::default()
            };
            let (n, i, s) = (
                crate::nft::NftCommand { tools },
                crate::ip::IpNetlink { tools },
                crate::sysctl::ProcSysctl::new(tools),
            );
            let host = crate::Host {
                nft: &n,
                ip: &i,
                sysctl: &s,
                helper: None,
            };
            match crate::apply(host, &plan) {
                Ok(()) => ran(true, String::new(), String::new()),
                Err(e) => ran(
                    false,
                    serde_json::to_string(&Failed {
                        nft_refused: e.nft_refused,
                    })
                    .unwrap_or_default(),
                    e.message,
                ),
            }
        }
        Public::List { table } => {
            let (family, name) = table.name();
            tools.run("nft", &["-j", "list", "table", family, name], b"")?
        }
    };
    Ok(Ok(done))
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
        let r = Public::Apply {
            ip_before: vec![
                IpOp::AddBridge {
                    name: b,
                    mac: [2, 0x5c, 0, 0, 0, 1],
                },
                IpOp::SetUp(b),
            ],
            sysctls: vec![SysctlSetting {
                key: SysctlKey::ip_forward(),
                value: "1".into(),
            }],
            nft: vec![NftOp::EnsureBase],
            ip_after: Vec::new(),
        };
        let json = r.to_json();
        assert!(json.starts_with("{\"scaleway\":{\"apply\":"), "{json}");
        let inner: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::from_value::<Public>(inner["scaleway"].clone()).unwrap(), r);
    }

    #[test]
    fn only_the_drivers_changes_exist() {
        // No such request: a shell, a file, another table, another sysctl.
        let apply = |ip: &str, sysctls: &str, nft: &str| {
            format!(r#"{{"apply": {{"ip_before": {ip}, "sysctls": {sysctls}, "nft": {nft}, "ip_after": []}}}}"#)
        };
        for bad in [
            r#"{"exec": {"argv": ["sh"]}}"#.to_owned(),
            apply(r#"[{"netns_exec": "sh"}]"#, "[]", "[]"),
            apply("[]", "[]", r#"[{"flush_ruleset": null}]"#),
            apply("[]", "[]", r#"{"script": "flush ruleset"}"#),
            r#"{"list": {"table": "raw"}}"#.to_owned(),
            apply("[]", r#"[{"key": "kernel/core_pattern", "value": "1"}]"#, "[]"),
            apply("[]", r#"[{"key": "net/ipv4/conf/all/rp_filter", "value": "0"}]"#, "[]"),
            apply(
                "[]",
                r#"[{"key": "net/ipv4/conf/../../kernel/x/forwarding", "value": "1"}]"#,
                "[]",
            ),
            apply(r#"[{"set_up": "a b"}]"#, "[]", "[]"),
            r#"{"apply": {"ip_before": [], "sysctls": [], "nft": [], "ip_after": [], "extra": 1}}"#.to_owned(),
            // The requests of earlier versions are no more.
            r#"{"ip": {"ops": [], "keep_going": false}}"#.to_owned(),
            r#"{"sysctl": {"key": "net/ipv4/conf/scwpub0/forwarding", "value": "1"}}"#.to_owned(),
        ] {
            assert!(parse(&bad).is_err(), "{bad} was accepted");
        }
        let ok = apply(
            "[]",
            r#"[{"key": "net/ipv4/conf/scwpub0/forwarding", "value": "1"}]"#,
            "[]",
        );
        assert!(parse(&ok).is_ok(), "{ok}");
        // A value other than 0 or 1 parses, and is refused.
        let two = parse(&apply("[]", r#"[{"key": "net/ipv4/ip_forward", "value": "2"}]"#, "[]")).unwrap();
        assert_eq!(check(&two), Err("sysctl value \"2\" is not 0 or 1".to_owned()));
    }

    #[test]
    fn security_group_rules_are_checked() {
        let mut rule = secgroup::default_rules().remove(0);
        let request = |rule: secgroup::Rule| Public::Apply {
            ip_before: Vec::new(),
            sysctls: Vec::new(),
            nft: vec![NftOp::SetChain {
                direction: secgroup::Direction::Inbound,
                rules: vec![rule],
            }],
            ip_after: Vec::new(),
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
