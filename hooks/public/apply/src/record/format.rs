//! The record's files as JSON: the form of every file (`FileV1`: a
//! bucket of VMs, `host.json`, or the single file of earlier versions),
//! endpoints and rule sets written and checked.

use std::collections::HashMap;
use std::net::IpAddr;

use opennebula::store::{VERSION, Versioned};
use public_plan::endpoint::BridgeName;
use public_plan::filter::NicFilter;
use public_plan::{Endpoint, Owner, Port, Public};
use secgroup::Rule;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub(super) struct FileV1 {
    pub(super) version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) base: Option<String>,
    #[serde(default)]
    pub(super) bridges: Vec<String>,
    #[serde(default)]
    pub(super) endpoints: Vec<EndpointV1>,
    /// Each NIC's rules: a rule set of `rule_sets` (or, in a record of an
    /// earlier version, the rules themselves).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) filters: Vec<FilterV1>,
    /// The distinct rule sets of the NICs (a host's NICs have a few between
    /// them: written and checked once each, not once per NIC).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) rule_sets: Vec<Vec<Rule>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilterV1 {
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
pub(super) struct EndpointV1 {
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
    pub(super) fn from(e: &Endpoint) -> Self {
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

    pub(super) fn to_endpoint(&self) -> Result<Endpoint, String> {
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

/// The endpoints and rules of `file`; `damaged` names what is wrong.
pub(super) fn decode(
    file: FileV1,
    damaged: &dyn Fn(String) -> String,
) -> Result<(Vec<Endpoint>, Vec<NicFilter>), String> {
    let check = |rules: &[Rule], whose: &dyn Fn() -> String| {
        rules
            .iter()
            .try_for_each(Rule::check)
            .map_err(|e| damaged(format!("{}: a security group rule: {e}", whose())))
    };
    for (n, set) in file.rule_sets.iter().enumerate() {
        check(set, &|| format!("rule set {n}"))?;
    }
    let mut filters = Vec::new();
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
        filters.push(NicFilter {
            vm: f.vm,
            nic_id: f.nic_id,
            rules,
        });
    }
    let endpoints = file
        .endpoints
        .iter()
        .map(|e| e.to_endpoint().map_err(damaged))
        .collect::<Result<_, _>>()?;
    Ok((endpoints, filters))
}

/// The owned bridges of `file` (`host.json`, or a record of an earlier
/// version).
pub(super) fn bridges(file: &FileV1, damaged: &dyn Fn(String) -> String) -> Result<Vec<BridgeName>, String> {
    file.bridges
        .iter()
        .map(|b| BridgeName::parse(b).map_err(|e| damaged(format!("bridge {b:?}: {e}"))))
        .collect()
}

/// `endpoints` and `filters` as a file, each distinct rule set written once.
pub(super) fn encode<'a>(
    endpoints: impl IntoIterator<Item = &'a Endpoint>,
    filters: impl IntoIterator<Item = &'a NicFilter>,
) -> FileV1 {
    let mut sets: HashMap<&[Rule], usize> = HashMap::new();
    let mut rule_sets = Vec::new();
    let filters = filters
        .into_iter()
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
    FileV1 {
        version: VERSION,
        base: None,
        bridges: Vec::new(),
        endpoints: endpoints.into_iter().map(EndpointV1::from).collect(),
        filters,
        rule_sets,
    }
}
