//! The record of what the driver applied on this host: every public
//! endpoint with its owner (VM, NIC) and the bridges the driver created.
//!
//! The kernel forgets routes, proxy entries and nft elements at a reboot;
//! the record lets `reconcile` put them back, lets `clean` remove a VM's
//! endpoints even when the document it gets is not the one `pre` got, and
//! names the owner of an address in a conflict. It is a JSON file on one
//! line (`jq . FILE` indents it), read and replaced (temporary file, rename; no fsync: a host crash may
//! lose its last change, which the VM's next `pre` records again) only
//! under the host lock.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use opennebula::store::{StateFile, VERSION, Versioned};
use public_plan::endpoint::BridgeName;
use public_plan::filter::{NicFilter, nic_of};
use public_plan::{Endpoint, Owner, Port, Public};
use secgroup::Rule;
use serde::{Deserialize, Serialize};

use host_tools::run::ApplyError;

/// What the driver applied on this host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub endpoints: Vec<Endpoint>,
    /// Bridges the driver created (the only ones it may delete).
    pub bridges: BTreeSet<BridgeName>,
    /// The fingerprint of the tables' base (`public_plan::ops::base_fingerprint`)
    /// last declared or found intact on this host: while it is this
    /// version's, `pre` and `clean` trust the record for the tables'
    /// contents instead of listing them.
    pub base: Option<String>,
    /// The security group rules set on each NIC (restored by `reconcile`).
    pub filters: Vec<NicFilter>,
}

impl Record {
    /// The endpoints of VM `vm`.
    pub fn of_vm(&self, vm: u64) -> Vec<Endpoint> {
        self.endpoints.iter().filter(|e| e.owner.vm == vm).copied().collect()
    }

    /// Replaces the endpoints of the same owners, or adds them.
    pub fn put(&mut self, endpoints: &[Endpoint]) {
        self.forget(endpoints.iter().map(|e| e.owner));
        self.endpoints.extend_from_slice(endpoints);
        self.endpoints.sort_by_key(|e| e.owner);
    }

    /// Forgets the endpoints of these owners (and the rules of a NIC left
    /// without endpoint).
    pub fn forget(&mut self, owners: impl IntoIterator<Item = Owner>) {
        let owners: BTreeSet<Owner> = owners.into_iter().collect();
        self.endpoints.retain(|e| !owners.contains(&e.owner));
        let nics: BTreeSet<(u64, u32)> = self.endpoints.iter().map(nic_of).collect();
        self.filters.retain(|f| nics.contains(&(f.vm, f.nic_id)));
    }

    /// Replaces the rules of the same NICs, or adds them.
    pub fn put_filters(&mut self, filters: &[NicFilter]) {
        let nics: BTreeSet<(u64, u32)> = filters.iter().map(|n| (n.vm, n.nic_id)).collect();
        self.filters.retain(|f| !nics.contains(&(f.vm, f.nic_id)));
        self.filters.extend_from_slice(filters);
        self.filters.sort_by_key(|f| (f.vm, f.nic_id));
    }
}

#[derive(Serialize, Deserialize)]
struct FileV1 {
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base: Option<String>,
    #[serde(default)]
    bridges: Vec<String>,
    #[serde(default)]
    endpoints: Vec<EndpointV1>,
    /// Each NIC's rules: a rule set of `rule_sets` (or, in a record of an
    /// earlier version, the rules themselves).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    filters: Vec<FilterV1>,
    /// The distinct rule sets of the NICs (a host's NICs have a few between
    /// them: written and checked once each, not once per NIC).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rule_sets: Vec<Vec<Rule>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterV1 {
    vm: u64,
    nic_id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    set: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rules: Option<Vec<Rule>>,
}

impl Versioned for FileV1 {
    fn version(&self) -> u32 {
        self.version
    }
}

#[derive(Serialize, Deserialize)]
struct EndpointV1 {
    vm: u64,
    nic_id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alias_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent_id: Option<u32>,
    bridge: String,
    ip: IpAddr,
    gateway: IpAddr,
    /// The flexible IP (IPv4) or the first address of the flexible /64 (IPv6).
    external_ip: IpAddr,
    /// The VM's port (tap) and MAC the guard lets through (absent in
    /// records written before the port guard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
}

impl EndpointV1 {
    fn from(e: &Endpoint) -> Self {
        let (ip, gateway, external_ip) = match e.public {
            Public::V4 { ip, gateway, external } => (IpAddr::V4(ip), IpAddr::V4(gateway), IpAddr::V4(external)),
            Public::V6 { ip, gateway, prefix } => (IpAddr::V6(ip), IpAddr::V6(gateway), IpAddr::V6(prefix)),
        };
        Self {
            vm: e.owner.vm,
            nic_id: e.owner.nic_id,
            alias_id: e.owner.alias.map(|a| a.0),
            parent_id: e.owner.alias.map(|a| a.1),
            bridge: e.bridge.to_string(),
            ip,
            gateway,
            external_ip,
            port: e.port.map(|p| p.tap.to_string()),
            mac: e.port.map(|p| p.mac_text()),
        }
    }

    fn to_endpoint(&self) -> Result<Endpoint, String> {
        let who = format!("VM {} NIC {}", self.vm, self.nic_id);
        let bridge = BridgeName::parse(&self.bridge).map_err(|e| format!("{who}: bridge {:?}: {e}", self.bridge))?;
        let public = match (self.ip, self.gateway, self.external_ip) {
            (IpAddr::V4(ip), IpAddr::V4(gateway), IpAddr::V4(external)) => Public::V4 { ip, gateway, external },
            (IpAddr::V6(ip), IpAddr::V6(gateway), IpAddr::V6(prefix)) => Public::V6 { ip, gateway, prefix },
            _ => return Err(format!("{who}: mixes IPv4 and IPv6 addresses")),
        };
        let alias = match (self.alias_id, self.parent_id) {
            (Some(a), Some(p)) => Some((a, p)),
            (None, None) => None,
            _ => return Err(format!("{who}: alias_id and parent_id go together")),
        };
        let port = match (&self.port, &self.mac) {
            (Some(tap), Some(mac)) => Some(Port {
                tap: BridgeName::parse(tap).map_err(|e| format!("{who}: port {tap:?}: {e}"))?,
                mac: <opennebula::attr::MacAddr as opennebula::attr::FromAttr>::from_attr(mac)
                    .map_err(|_| format!("{who}: mac {mac:?} is not a MAC address"))?
                    .0,
            }),
            (None, None) => None,
            _ => return Err(format!("{who}: port and mac go together")),
        };
        Ok(Endpoint {
            owner: Owner {
                vm: self.vm,
                nic_id: self.nic_id,
                alias,
            },
            bridge,
            public,
            port,
        })
    }
}

/// The record's file ([`opennebula::store::StateFile`]).
#[derive(Debug, Clone)]
pub struct RecordFile {
    file: StateFile,
}

impl RecordFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            file: StateFile::new(
                path,
                0o644,
                "the driver's host record",
                "move it aside: the next pre of each VM records it again (reconcile then restores only what is \
                 recorded)",
            )
            .without_fsync()
            .compact(),
        }
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Reads the record (empty when the file does not exist). Call it under
    /// the host lock.
    pub fn load(&self) -> Result<Record, ApplyError> {
        let Some(file) = self.file.load::<FileV1>()? else {
            return Ok(Record::default());
        };
        let damaged = |problem: String| ApplyError::from(self.file.damaged(problem));
        let check = |rules: &[Rule], whose: &dyn Fn() -> String| {
            rules
                .iter()
                .try_for_each(Rule::check)
                .map_err(|e| damaged(format!("{}: a security group rule: {e}", whose())))
        };
        for (n, set) in file.rule_sets.iter().enumerate() {
            check(set, &|| format!("rule set {n}"))?;
        }
        let mut record = Record {
            base: file.base.clone(),
            ..Record::default()
        };
        for f in file.filters {
            let whose = || format!("VM {} NIC {}", f.vm, f.nic_id);
            let rules = match (f.set, f.rules) {
                (Some(n), None) => file
                    .rule_sets
                    .get(n)
                    .cloned()
                    .ok_or_else(|| damaged(format!("{}: rule set {n} is missing", whose())))?,
                (None, Some(rules)) => {
                    check(&rules, &whose)?;
                    rules
                }
                _ => return Err(damaged(format!("{}: one of set and rules is needed", whose()))),
            };
            record.filters.push(NicFilter {
                vm: f.vm,
                nic_id: f.nic_id,
                rules,
            });
        }
        for b in &file.bridges {
            record
                .bridges
                .insert(BridgeName::parse(b).map_err(|e| damaged(format!("bridge {b:?}: {e}")))?);
        }
        for e in &file.endpoints {
            record.endpoints.push(e.to_endpoint().map_err(damaged)?);
        }
        Ok(record)
    }

    /// Replaces the file atomically. Call it under the host lock.
    pub fn save(&self, record: &Record) -> Result<(), ApplyError> {
        let mut sets: HashMap<&[Rule], usize> = HashMap::new();
        let mut rule_sets = Vec::new();
        let filters = record
            .filters
            .iter()
            .map(|f| {
                let set = *sets.entry(&f.rules).or_insert_with(|| {
                    rule_sets.push(f.rules.clone());
                    rule_sets.len() - 1
                });
                FilterV1 {
                    vm: f.vm,
                    nic_id: f.nic_id,
                    set: Some(set),
                    rules: None,
                }
            })
            .collect();
        Ok(self.file.save(&FileV1 {
            version: VERSION,
            base: record.base.clone(),
            filters,
            rule_sets,
            bridges: record.bridges.iter().map(ToString::to_string).collect(),
            endpoints: record.endpoints.iter().map(EndpointV1::from).collect(),
        })?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(vm: u64, nic: u32, v6: bool) -> Endpoint {
        Endpoint {
            owner: Owner {
                vm,
                nic_id: nic,
                alias: (nic == 2).then_some((0, 0)),
            },
            bridge: BridgeName::parse("scwpub0").unwrap(),
            public: if v6 {
                Public::V6 {
                    ip: "2001:db8:1::2".parse().unwrap(),
                    gateway: "2001:db8:1::1".parse().unwrap(),
                    prefix: "2001:db8:1::".parse().unwrap(),
                }
            } else {
                Public::V4 {
                    ip: "172.30.0.4".parse().unwrap(),
                    gateway: "172.30.0.5".parse().unwrap(),
                    external: "51.15.0.1".parse().unwrap(),
                }
            },
            port: (vm != 7).then(|| Port {
                tap: BridgeName::parse(&format!("one-{vm}-{nic}")).unwrap(),
                mac: [2, 0, 0, 0, vm as u8, nic as u8],
            }),
        }
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let dir = test_support::TempDir::new("record");
        let file = RecordFile::new(dir.path().join("state/vnm-public.json"));
        assert_eq!(file.load().unwrap(), Record::default());
        let mut record = Record::default();
        record.put(&[endpoint(42, 0, false), endpoint(42, 2, false), endpoint(7, 0, true)]);
        record.bridges.insert(BridgeName::parse("scwpub0").unwrap());
        file.save(&record).unwrap();
        assert_eq!(file.load().unwrap(), record);
        assert_eq!(record.of_vm(42).len(), 2);
        record.forget([endpoint(42, 0, false).owner]);
        assert_eq!(record.of_vm(42).len(), 1);
        std::fs::write(file.path(), r#"{"version": 1, "endpoints": [{"vm": 1, "nic_id": 0, "bridge": "a b", "ip": "1.2.3.4", "gateway": "1.2.3.5", "external_ip": "5.6.7.8"}]}"#).unwrap();
        let e = file.load().unwrap_err().to_string();
        assert!(e.contains("is damaged") && e.contains("bridge \"a b\""), "{e}");
        std::fs::write(file.path(), "{").unwrap();
        assert!(file.load().unwrap_err().to_string().contains("is damaged"));
    }

    /// NICs with the same rules: one rule set in the file. A record of the
    /// earlier form (each NIC its rules) still loads.
    #[test]
    fn rule_sets_are_written_once() {
        let dir = test_support::TempDir::new("record");
        let file = RecordFile::new(dir.path().join("vnm-public.json"));
        let mut record = Record::default();
        record.put(&[endpoint(42, 0, false), endpoint(7, 0, true), endpoint(8, 0, true)]);
        let nic = |vm, rules: Vec<Rule>| NicFilter { vm, nic_id: 0, rules };
        let mut closed = secgroup::default_rules();
        closed.remove(0);
        record.put_filters(&[
            nic(42, secgroup::default_rules()),
            nic(7, closed.clone()),
            nic(8, secgroup::default_rules()),
        ]);
        file.save(&record).unwrap();
        let text = std::fs::read_to_string(file.path()).unwrap();
        assert_eq!(text.matches("\"direction\"").count(), 3, "{text}");
        assert_eq!(file.load().unwrap(), record);
        let earlier = r#"{"version": 1, "endpoints": [], "filters": [{"vm": 7, "nic_id": 0, "rules": [{"group": 0, "direction": "inbound", "protocol": "all", "ports": [], "icmp_type": null, "target": "any"}]}]}"#;
        std::fs::write(file.path(), earlier).unwrap();
        assert_eq!(file.load().unwrap().filters, [nic(7, closed)]);
        for damaged in [r#""set": 3"#, r#""set": 0, "rules": []"#] {
            let text =
                format!(r#"{{"version": 1, "filters": [{{"vm": 7, "nic_id": 0, {damaged}}}], "rule_sets": [[]]}}"#);
            std::fs::write(file.path(), text).unwrap();
            let e = file.load().unwrap_err().to_string();
            assert!(e.contains("is damaged") && e.contains("VM 7 NIC 0"), "{e}");
        }
    }

    #[test]
    fn a_nics_rules_go_with_its_last_endpoint_and_are_replaced_whole() {
        // `group` tells the versions apart.
        let rules = |vm, nic_id, group| NicFilter {
            vm,
            nic_id,
            rules: vec![secgroup::Rule {
                group,
                direction: secgroup::Direction::Inbound,
                protocol: secgroup::Protocol::All,
                ports: Vec::new(),
                icmp_type: None,
                target: secgroup::Target::Any,
            }],
        };
        let mut record = Record::default();
        // NIC 0 of VM 42 has an alias (NIC 2, judged by NIC 0's rules).
        record.put(&[endpoint(42, 0, false), endpoint(42, 2, false), endpoint(7, 0, true)]);
        record.put_filters(&[rules(42, 0, 1), rules(7, 0, 1)]);
        record.put_filters(&[rules(42, 0, 2)]);
        assert_eq!(record.filters, [rules(7, 0, 1), rules(42, 0, 2)]);
        record.forget([endpoint(42, 0, false).owner]);
        assert_eq!(
            record.filters,
            [rules(7, 0, 1), rules(42, 0, 2)],
            "the alias still uses them"
        );
        record.forget([endpoint(42, 2, false).owner]);
        assert_eq!(record.filters, [rules(7, 0, 1)]);
        record.forget([endpoint(7, 0, true).owner]);
        assert!(record.filters.is_empty() && record.endpoints.is_empty());
    }
}
