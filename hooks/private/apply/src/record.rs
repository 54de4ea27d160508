//! The driver's record on a host (`vnm-evpn.json`): the cluster
//! description `evpn-config` applied, every segment with the NICs that use
//! it, and the VNIs the FRR configuration lists.
//!
//! The record is how `clean` knows that no VM uses a network any more (its
//! segment has no user left), how `pre` knows which VNIs FRR must list,
//! and what `reconcile` puts back after a reboot. It also holds each NIC's
//! security group rules on its port (`sg`): the tables are written from it.
//! It is read and replaced atomically, only under the host lock.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use host_tools::ApplyError;
use opennebula::attr::IfName;
use opennebula::store::{StateFile, VERSION, Versioned};
use serde::{Deserialize, Serialize};

use private_plan::cluster::Cluster;
use private_plan::net::Vni;
use private_plan::segment::{Segment, User};
use private_plan::sg::{Filters, PortFilter, free_id};

/// One segment and who uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentState {
    pub segment: Segment,
    /// The driver created the bridge (so it deletes it once unused).
    pub created_bridge: bool,
    pub users: BTreeSet<User>,
}

/// What `evpn-config` applied: the cluster description as given, and
/// this host's underlay address and device as found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    pub cluster: Cluster,
    /// This host's underlay address (`LOCAL`, or the `HOSTS` address it holds).
    pub local: Ipv4Addr,
    /// The device holding it (`UNDERLAY_DEVICE`, or the device found).
    pub device: String,
}

/// What the driver applied on this host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// What `evpn-config` applied.
    pub config: Option<HostConfig>,
    pub segments: BTreeMap<Vni, SegmentState>,
    /// The VNIs of the FRR configuration last applied (`None`: never applied).
    pub announced: Option<BTreeSet<Vni>>,
    /// Each NIC's security group rules on its port.
    pub filters: BTreeMap<User, PortFilter>,
}

impl Record {
    /// The VNIs FRR must list: every segment's, and the description's `VNIS`.
    pub fn wanted_vnis(&self) -> BTreeSet<Vni> {
        let mut vnis: BTreeSet<Vni> = self.segments.keys().copied().collect();
        if let Some(c) = &self.config {
            vnis.extend(c.cluster.vnis.iter().copied());
        }
        vnis
    }

    /// The NICs of VM `vm` the record holds, with their VNI.
    pub fn users_of(&self, vm: u64) -> Vec<(Vni, User)> {
        self.segments
            .iter()
            .flat_map(|(vni, s)| s.users.iter().filter(|u| u.vm == vm).map(|u| (*vni, *u)))
            .collect()
    }

    /// Forgets the users `which` selects (and their filters); segments left
    /// without users go.
    pub fn forget(&mut self, which: impl Fn(&User) -> bool) {
        for s in self.segments.values_mut() {
            s.users.retain(|u| !which(u));
        }
        self.segments.retain(|_, s| !s.users.is_empty());
        self.filters.retain(|u, _| !which(u));
    }

    /// Records `user`'s security group rules on its `port`; the port keeps
    /// its number, a new one gets the lowest free. A port another NIC holds
    /// is refused.
    pub fn set_filter(&mut self, user: User, port: &IfName, rules: Vec<secgroup::Rule>) -> Result<(), String> {
        if let Some((other, _)) = self
            .filters
            .iter()
            .find(|(u, f)| **u != user && f.port == port.as_str())
        {
            return Err(format!(
                "port {port} of {user} is recorded on this host as {other}'s: run `clean` for {other} first"
            ));
        }
        let id = match self.filters.get(&user) {
            Some(f) if f.port == port.as_str() => f.id,
            _ => {
                let used: BTreeSet<u16> = self
                    .filters
                    .iter()
                    .filter(|(u, _)| **u != user)
                    .map(|(_, f)| f.id)
                    .collect();
                free_id(&used).ok_or_else(|| format!("no port number is left on this host for {user}"))?
            }
        };
        self.filters.insert(
            user,
            PortFilter {
                vm: user.vm,
                nic_id: user.nic_id,
                port: port.as_str().to_owned(),
                id,
                rules,
            },
        );
        Ok(())
    }

    /// What the security group tables must hold.
    pub fn filter_tables(&self) -> Filters {
        Filters {
            ports: self.filters.values().cloned().collect(),
            vxlans: self.segments.values().map(|s| s.segment.vxlan.clone()).collect(),
        }
    }

    /// Records `user` on `segment`. A VNI already on another bridge, or a
    /// bridge already carrying another VNI, is refused naming who uses it.
    /// The same VNI and bridge with other settings (MTU, underlay) takes
    /// the new ones.
    pub fn use_segment(&mut self, user: User, segment: &Segment) -> Result<(), String> {
        let users = |s: &SegmentState| s.users.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        if let Some(s) = self.segments.get(&segment.vni)
            && s.segment.bridge != segment.bridge
        {
            return Err(format!(
                "VNI {} is on bridge {} on this host (used by {}); {user} asks for bridge {}",
                segment.vni,
                s.segment.bridge,
                users(s),
                segment.bridge
            ));
        }
        if let Some((vni, s)) = self
            .segments
            .iter()
            .find(|(vni, s)| **vni != segment.vni && s.segment.bridge == segment.bridge)
        {
            return Err(format!(
                "bridge {} carries VNI {vni} on this host (used by {}); {user} asks for VNI {} on it",
                segment.bridge,
                users(s),
                segment.vni
            ));
        }
        let state = self.segments.entry(segment.vni).or_insert_with(|| SegmentState {
            segment: segment.clone(),
            created_bridge: false,
            users: BTreeSet::new(),
        });
        state.segment = segment.clone();
        state.users.insert(user);
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct FileV1 {
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config: Option<ConfigV1>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    announced: Option<Vec<u32>>,
    #[serde(default)]
    segments: Vec<SegmentV1>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    filters: Vec<PortFilter>,
}

impl Versioned for FileV1 {
    fn version(&self) -> u32 {
        self.version
    }
}

#[derive(Serialize, Deserialize)]
struct ConfigV1 {
    cluster: ClusterV1,
    local: Ipv4Addr,
    device: String,
}

impl ConfigV1 {
    fn from(c: &HostConfig) -> Self {
        Self {
            cluster: ClusterV1::from(&c.cluster),
            local: c.local,
            device: c.device.clone(),
        }
    }

    fn to_config(&self) -> Result<HostConfig, String> {
        let cluster = self.cluster.to_cluster()?;
        if !cluster.hosts.contains(&self.local) {
            return Err(format!(
                "this host's address {} is not one of the cluster's hosts",
                self.local
            ));
        }
        Ok(HostConfig {
            cluster,
            local: self.local,
            device: name("underlay device", &self.device)?,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct ClusterV1 {
    #[serde(rename = "as")]
    asn: u32,
    underlay: String,
    hosts: Vec<Ipv4Addr>,
    reflectors: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    local: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    underlay_device: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    vnis: Vec<u32>,
}

#[derive(Serialize, Deserialize)]
struct UserV1 {
    vm: u64,
    nic_id: u32,
}

#[derive(Serialize, Deserialize)]
struct SegmentV1 {
    vni: u32,
    bridge: String,
    underlay: String,
    local: Ipv4Addr,
    mtu: u32,
    created_bridge: bool,
    users: Vec<UserV1>,
}

fn name(what: &str, n: &str) -> Result<String, String> {
    n.parse::<IfName>()
        .map(|i| i.as_str().to_owned())
        .map_err(|e| format!("{what} {n:?}: {e}"))
}

impl ClusterV1 {
    fn from(c: &Cluster) -> Self {
        Self {
            asn: c.asn,
            underlay: c.underlay.to_string(),
            hosts: c.hosts.clone(),
            reflectors: c.reflectors,
            local: c.local,
            underlay_device: c.underlay_device.as_ref().map(ToString::to_string),
            vnis: c.vnis.iter().map(|v| v.get()).collect(),
        }
    }

    fn to_cluster(&self) -> Result<Cluster, String> {
        let cluster = Cluster {
            asn: self.asn,
            underlay: self.underlay.parse().map_err(|e| format!("cluster underlay: {e}"))?,
            hosts: self.hosts.clone(),
            reflectors: self.reflectors,
            local: self.local,
            underlay_device: match &self.underlay_device {
                Some(d) => Some(d.parse().map_err(|e| format!("cluster underlay device: {e}"))?),
                None => None,
            },
            vnis: self
                .vnis
                .iter()
                .map(|v| Vni::new(*v))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("cluster VNIs: {e}"))?,
        };
        cluster.validate().map_err(|e| format!("cluster: {e}"))?;
        Ok(cluster)
    }
}

impl SegmentV1 {
    fn from(s: &SegmentState) -> Self {
        Self {
            vni: s.segment.vni.get(),
            bridge: s.segment.bridge.clone(),
            underlay: s.segment.underlay.clone(),
            local: s.segment.local,
            mtu: s.segment.mtu,
            created_bridge: s.created_bridge,
            users: s
                .users
                .iter()
                .map(|u| UserV1 {
                    vm: u.vm,
                    nic_id: u.nic_id,
                })
                .collect(),
        }
    }

    fn to_state(&self) -> Result<SegmentState, String> {
        let vni = Vni::new(self.vni).map_err(|e| format!("segment: {e}"))?;
        Ok(SegmentState {
            segment: Segment {
                vni,
                bridge: name("segment bridge", &self.bridge)?,
                vxlan: vni.vxlan_device(),
                underlay: name("segment underlay", &self.underlay)?,
                local: self.local,
                mtu: self.mtu,
            },
            created_bridge: self.created_bridge,
            users: self
                .users
                .iter()
                .map(|u| User {
                    vm: u.vm,
                    nic_id: u.nic_id,
                })
                .collect(),
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
                "move it aside, run `scaleway-vnm --driver scaleway_evpn evpn-config` again, and the next pre of \
                 each VM records it again",
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
        let mut record = Record {
            config: file
                .config
                .as_ref()
                .map(ConfigV1::to_config)
                .transpose()
                .map_err(damaged)?,
            segments: BTreeMap::new(),
            announced: match file.announced {
                Some(v) => Some(v.into_iter().map(Vni::new).collect::<Result<_, _>>().map_err(damaged)?),
                None => None,
            },
            filters: BTreeMap::new(),
        };
        for s in &file.segments {
            let state = s.to_state().map_err(damaged)?;
            record.segments.insert(state.segment.vni, state);
        }
        for f in file.filters {
            let user = User {
                vm: f.vm,
                nic_id: f.nic_id,
            };
            if !record.segments.values().any(|s| s.users.contains(&user)) {
                return Err(damaged(format!("the filter of {user} belongs to no segment")));
            }
            record.filters.insert(user, f);
        }
        record.filter_tables().check().map_err(damaged)?;
        Ok(record)
    }

    /// Replaces the file atomically. Call it under the host lock.
    pub fn save(&self, record: &Record) -> Result<(), ApplyError> {
        Ok(self.file.save(&FileV1 {
            version: VERSION,
            config: record.config.as_ref().map(ConfigV1::from),
            announced: record.announced.as_ref().map(|a| a.iter().map(|v| v.get()).collect()),
            segments: record.segments.values().map(SegmentV1::from).collect(),
            filters: record.filters.values().cloned().collect(),
        })?)
    }
}

#[cfg(test)]
mod tests;
