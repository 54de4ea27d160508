//! The root helper's part for driver `scaleway_evpn`: the changes it
//! accepts, typed ([`Private`]), how they are checked, and how they run
//! (see `public_apply::root` for the helper's contract).
//!
//! FRR's configuration comes inside the request: the helper writes it to
//! a file of its own (root's, mode 0600, under `/run/one-scaleway`) and
//! checks or reloads that, so no file oneadmin can write or link is ever
//! read as root.

use std::collections::BTreeMap;
use std::path::Path;

use host_tools::{ApplyError, Tools, run::Ran};
use opennebula::attr::IfName;
use serde::{Deserialize, Serialize};

use crate::apply::DEFAULT_FRR_RELOAD;
use private_plan::firewall::Rules;
use private_plan::plan::LinkOp;
use private_plan::sg::Filters;

/// The tag of this driver's requests (`{"scaleway_evpn": {...}}`).
pub const TAG: &str = "scaleway_evpn";

/// The helper's folder for FRR configurations.
pub const RUN_DIR: &str = "/run/one-scaleway";

/// Longest FRR configuration accepted (a cluster of a thousand VNIs is far below).
const MAX_CONFIG: usize = 4 << 20;

/// One change that needs root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Private {
    /// `ip [-force] -batch -` of these commands.
    Links { ops: Vec<LinkOp>, keep_going: bool },
    /// Our firewall table (`table inet one_scaleway_evpn`) made exactly this.
    Firewall { rules: Rules },
    /// Our security group tables made exactly this (`br_netfilter` on
    /// first): in place from `before`, or whole.
    Filters { filters: Filters, before: Option<Filters> },
    /// `vtysh -C -f` of this configuration.
    FrrCheck { config: String },
    /// `frr-reload.py --reload --stdout` of this configuration.
    FrrReload { config: String },
    /// `vtysh` adding and removing VNIs under `router bgp asn` (see
    /// [`private_plan::frr::vni_commands`]).
    FrrVnis { asn: u32, add: Vec<u32>, remove: Vec<u32> },
}

/// Most VNIs one change may name.
const MAX_VNIS: usize = 4096;

/// The typed VNIs of a request, or why not.
pub fn vnis_of(numbers: &[u32]) -> Result<std::collections::BTreeSet<private_plan::net::Vni>, String> {
    if numbers.len() > MAX_VNIS {
        return Err(format!("{} VNIs in one change (at most {MAX_VNIS})", numbers.len()));
    }
    numbers.iter().map(|n| private_plan::net::Vni::try_from(*n)).collect()
}

impl Private {
    /// The request as the helper reads it.
    pub fn to_json(&self) -> String {
        let mut outer = serde_json::Map::new();
        outer.insert(TAG.to_owned(), serde_json::to_value(self).unwrap_or_default());
        serde_json::Value::Object(outer).to_string()
    }
}

fn name_ok(name: &str) -> Result<(), String> {
    name.parse::<IfName>()
        .map(|_| ())
        .map_err(|e| format!("{name:?} is not an interface name: {}", e.problem))
}

/// Checks that `ops` touch only bridges and VXLAN devices (existing ones,
/// or ones the batch creates where no device is); the VXLAN's underlay
/// device is only named.
pub fn check_links(ops: &[LinkOp], kinds: &BTreeMap<String, Option<String>>) -> Result<(), String> {
    let mut created: Vec<&str> = Vec::new();
    for op in ops {
        let touched: Vec<&str> = match op {
            LinkOp::AddBridge { name } | LinkOp::AddVxlan { name, .. } => {
                name_ok(name)?;
                if let LinkOp::AddVxlan { dev, .. } = op {
                    name_ok(dev)?;
                    if !kinds.contains_key(dev.as_str()) {
                        return Err(format!("`ip {}`: no device {dev}", op.args().join(" ")));
                    }
                }
                if kinds.contains_key(name.as_str()) {
                    return Err(format!("`ip {}`: device {name} exists already", op.args().join(" ")));
                }
                created.push(name);
                continue;
            }
            LinkOp::NoAddrGen(n) | LinkOp::PortLearningOff(n) | LinkOp::SetUp(n) | LinkOp::Delete(n) => vec![n],
            LinkOp::SetMtu { name, .. } => vec![name],
            LinkOp::SetMaster { port, bridge } => vec![port, bridge],
        };
        for dev in touched {
            name_ok(dev)?;
            let ours = kinds
                .get(dev)
                .is_some_and(|k| matches!(k.as_deref(), Some("bridge" | "vxlan")));
            if !ours && !created.contains(&dev) {
                return Err(format!(
                    "`ip {}`: {dev} is not a bridge or a VXLAN device (the scaleway_evpn driver changes no other)",
                    op.args().join(" ")
                ));
            }
        }
    }
    Ok(())
}

/// Writes `config` to the helper's own file (root's, 0600).
fn config_file(config: &str) -> Result<std::path::PathBuf, ApplyError> {
    let dir = Path::new(RUN_DIR);
    std::fs::create_dir_all(dir).map_err(|e| ApplyError::new(format!("cannot create {RUN_DIR}: {e}")))?;
    std::fs::set_permissions(
        dir,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o700),
    )
    .map_err(|e| ApplyError::new(format!("cannot restrict {RUN_DIR}: {e}")))?;
    let path = dir.join("frr-evpn.conf");
    opennebula::fsutil::write_atomic(&path, config.as_bytes(), 0o600)
        .map_err(|e| ApplyError::new(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

/// Checks and runs `request` (as root): what the tool printed and its
/// status, or why the request is refused.
pub fn execute(request: &Private, tools: &Tools) -> Result<Result<Ran, String>, ApplyError> {
    let ran = match request {
        Private::Links { ops, keep_going } => {
            if let Err(why) = host_tools::links::link_kinds().and_then(|k| check_links(ops, &k)) {
                return Ok(Err(why));
            }
            let script: String = ops.iter().map(|o| format!("{}\n", o.args().join(" "))).collect();
            let flags: &[&str] = if *keep_going {
                &["-force", "-batch", "-"]
            } else {
                &["-batch", "-"]
            };
            tools.run("ip", flags, script.as_bytes())?
        }
        Private::Firewall { rules } => {
            if let Rules::Underlay { device, .. } = rules
                && let Err(why) = name_ok(device)
            {
                return Ok(Err(why));
            }
            tools.run("nft", &["-f", "-"], rules.script().as_bytes())?
        }
        Private::Filters { filters, before } => {
            if let Err(why) = filters
                .check()
                .and_then(|()| before.as_ref().map_or(Ok(()), Filters::check))
            {
                return Ok(Err(why));
            }
            crate::filters::apply(tools, filters, before.as_ref())?
        }
        Private::FrrVnis { asn, add, remove } => {
            let (add, remove) = match (vnis_of(add), vnis_of(remove)) {
                (Ok(a), Ok(r)) if *asn > 0 => (a, r),
                (Err(why), _) | (_, Err(why)) => return Ok(Err(why)),
                _ => return Ok(Err("AS 0 is not an AS number".into())),
            };
            let words = private_plan::frr::vni_commands(*asn, &add, &remove);
            let args: Vec<&str> = words.iter().map(String::as_str).collect();
            let mut ran = tools.run("vtysh", &args, b"")?;
            if let Some(refused) = private_plan::frr::vtysh_refused(&ran.stdout, &ran.stderr) {
                ran.success = false;
                ran.stderr.push_str(&refused);
            }
            ran
        }
        Private::FrrCheck { config } | Private::FrrReload { config } => {
            if config.len() > MAX_CONFIG {
                return Ok(Err(format!(
                    "an FRR configuration of {} bytes is too long",
                    config.len()
                )));
            }
            let path = config_file(config)?;
            let file = path.display().to_string();
            let ran = if matches!(request, Private::FrrCheck { .. }) {
                tools.run("vtysh", &["-C", "-f", &file], b"")?
            } else {
                tools.run(DEFAULT_FRR_RELOAD, &["--reload", "--stdout", &file], b"")?
            };
            let _ = std::fs::remove_file(&path);
            ran
        }
    };
    Ok(Ok(ran))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds() -> BTreeMap<String, Option<String>> {
        BTreeMap::from([
            ("eth0".to_owned(), None),
            ("scwpriv0".to_owned(), Some("vlan".to_owned())),
            ("onebr2".to_owned(), Some("bridge".to_owned())),
            ("vxlan1000002".to_owned(), Some("vxlan".to_owned())),
        ])
    }

    #[test]
    fn vni_changes_are_typed() {
        assert_eq!(vnis_of(&[7, 1_000_002]).unwrap().len(), 2);
        assert!(vnis_of(&[0]).is_err());
        assert!(vnis_of(&[1 << 24]).is_err());
        assert!(vnis_of(&vec![5; MAX_VNIS + 1]).is_err());
        let json = Private::FrrVnis {
            asn: 65000,
            add: vec![7],
            remove: vec![],
        }
        .to_json();
        assert_eq!(
            json,
            r#"{"scaleway_evpn":{"frr_vnis":{"add":[7],"asn":65000,"remove":[]}}}"#
        );
    }

    #[test]
    fn links_touch_bridges_and_vxlans_only() {
        let s = |v: &str| v.to_owned();
        assert!(check_links(&[LinkOp::Delete(s("eth0"))], &kinds()).is_err());
        assert!(
            check_links(
                &[LinkOp::SetMtu {
                    name: s("scwpriv0"),
                    mtu: 100
                }],
                &kinds()
            )
            .is_err()
        );
        assert!(
            check_links(
                &[LinkOp::SetMaster {
                    port: s("eth0"),
                    bridge: s("onebr2")
                }],
                &kinds()
            )
            .is_err()
        );
        assert!(check_links(&[LinkOp::SetUp(s("a b"))], &kinds()).is_err());
        assert!(check_links(&[LinkOp::AddBridge { name: s("eth0") }], &kinds()).is_err());
        let ok = [
            LinkOp::AddBridge { name: s("onebr3") },
            LinkOp::SetUp(s("onebr3")),
            LinkOp::SetMaster {
                port: s("vxlan1000002"),
                bridge: s("onebr3"),
            },
            LinkOp::Delete(s("onebr2")),
        ];
        assert_eq!(check_links(&ok, &kinds()), Ok(()));
    }

    /// A security group request the helper would render wrongly is refused
    /// before anything runs: a port name that is not an interface name, a
    /// number given twice, a rule that is not one oned accepts; in `before` too.
    #[test]
    fn bad_security_group_requests_are_refused_before_running() {
        let port = |name: &str, id: u16| private_plan::sg::PortFilter {
            vm: u64::from(id),
            nic_id: 0,
            port: name.into(),
            id,
            rules: secgroup::default_rules(),
        };
        let filters = |ports| private_plan::sg::Filters {
            ports,
            vxlans: vec!["vxlan7".into()],
        };
        let mut bad_rule = port("one-3-0", 3);
        bad_rule.rules[0].ports = vec![secgroup::PortRange { first: 9, last: 1 }];
        let tools = Tools::direct(std::time::Duration::from_secs(5));
        for (request, why) in [
            (
                Private::Filters {
                    filters: filters(vec![port("one-1-0;x", 1)]),
                    before: None,
                },
                "not an interface name",
            ),
            (
                Private::Filters {
                    filters: filters(vec![port("one-1-0", 1), port("one-2-0", 1)]),
                    before: None,
                },
                "given twice",
            ),
            (
                Private::Filters {
                    filters: filters(vec![bad_rule]),
                    before: None,
                },
                "security group rule",
            ),
            (
                Private::Filters {
                    filters: filters(vec![port("one-1-0", 1)]),
                    before: Some(filters(vec![port("-x", 1)])),
                },
                "not an interface name",
            ),
        ] {
            let refused = execute(&request, &tools).unwrap().unwrap_err();
            assert!(refused.contains(why), "{refused}");
            assert_eq!(tools.spawned(), 0, "nothing ran");
        }
    }

    #[test]
    fn only_the_drivers_changes_exist() {
        for bad in [
            r#"{"firewall": {"script": "flush ruleset"}}"#,
            r#"{"firewall": {"rules": {"underlay": {"underlay": "10.0.0.5/24", "device": "scwpriv0"}}}}"#,
            r#"{"frr_check": {"path": "/etc/shadow"}}"#,
            r#"{"links": {"ops": [{"netns_exec": "sh"}], "keep_going": false}}"#,
        ] {
            assert!(serde_json::from_str::<Private>(bad).is_err(), "{bad} was accepted");
        }
        let r = Private::Firewall { rules: Rules::Absent };
        assert_eq!(r.to_json(), r#"{"scaleway_evpn":{"firewall":{"rules":"absent"}}}"#);
    }
}
