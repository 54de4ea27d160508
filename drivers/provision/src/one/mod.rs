//! The OpenNebula side of a provision: the templates of its objects (pure)
//! and their registration through oned's XML-RPC API.
//!
//! Every object is looked up by name before it is allocated, so a command
//! killed between an allocation and its record finds the object again
//! instead of making a second one; an object of that name that does not
//! carry this provision's id (`PROVISION/ID`) is never adopted.

use std::time::{Duration, Instant};

use anyhow::{Error, Result, anyhow, bail};
use opennebula::oned::{Oned, OnedError, Param};
use opennebula::template::Template;
use opennebula::xml::Element;

use crate::description::Description;
use crate::state::{HostRecord, ProvisionState};

mod templates;
pub use templates::*;

/// How long a network's driver may take to create or delete it.
const VNET_WAIT: Duration = Duration::from_secs(120);

/// An object of a pool: id, name, and the provision it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub id: i64,
    pub name: String,
    pub provision: Option<String>,
    pub element: Element,
}

/// A pool of oned objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    Cluster,
    Host,
    Datastore,
    Vnet,
    VnTemplate,
}

impl Pool {
    fn info(self) -> (&'static str, Vec<Param>, &'static str) {
        let all = || vec![Param::Int(-2), Param::Int(-1), Param::Int(-1)];
        match self {
            Self::Cluster => ("one.clusterpool.info", Vec::new(), "CLUSTER"),
            Self::Host => ("one.hostpool.info", Vec::new(), "HOST"),
            Self::Datastore => ("one.datastorepool.info", Vec::new(), "DATASTORE"),
            Self::Vnet => ("one.vnpool.info", all(), "VNET"),
            Self::VnTemplate => ("one.vntemplatepool.info", all(), "VNTEMPLATE"),
        }
    }

    pub fn what(self) -> &'static str {
        match self {
            Self::Cluster => "cluster",
            Self::Host => "host",
            Self::Datastore => "datastore",
            Self::Vnet => "virtual network",
            Self::VnTemplate => "virtual network template",
        }
    }

    fn delete_method(self) -> &'static str {
        match self {
            Self::Cluster => "one.cluster.delete",
            Self::Host => "one.host.delete",
            Self::Datastore => "one.datastore.delete",
            Self::Vnet => "one.vn.delete",
            Self::VnTemplate => "one.vntemplate.delete",
        }
    }
}

/// Registration through oned.
pub struct One<'a> {
    pub oned: &'a Oned,
}

fn found(e: Element) -> Option<Found> {
    let id = e.child("ID")?.text.trim().parse().ok()?;
    let name = e.child("NAME")?.text.clone();
    let provision = e.at("TEMPLATE/PROVISION/ID").map(|p| p.text.clone());
    Some(Found {
        id,
        name,
        provision,
        element: e,
    })
}

impl One<'_> {
    /// Every object of a pool.
    pub fn list(&self, pool: Pool) -> Result<Vec<Found>, OnedError> {
        let (method, params, tag) = pool.info();
        let body = self.oned.call_xml(method, &params)?;
        Ok(body
            .children
            .into_iter()
            .filter(|e| e.name == tag)
            .filter_map(found)
            .collect())
    }

    pub fn by_name(&self, pool: Pool, name: &str) -> Result<Option<Found>, OnedError> {
        Ok(self.list(pool)?.into_iter().find(|f| f.name == name))
    }

    /// The object named `name` if it is this provision's; an error if that
    /// name belongs to something else.
    fn ours(&self, pool: Pool, name: &str, provision: &str) -> Result<Option<i64>> {
        match self.by_name(pool, name).map_err(Error::msg)? {
            None => Ok(None),
            Some(f) if f.provision.as_deref() == Some(provision) => Ok(Some(f.id)),
            Some(f) => Err(anyhow!(
                "OpenNebula already has a {} named {name} (id {}) that is not of this provision: \
                 rename or delete it, or give the provision another name",
                pool.what(),
                f.id
            )),
        }
    }

    /// The cluster (created, or found by name).
    pub fn ensure_cluster(&self, name: &str, s: &ProvisionState) -> Result<i64> {
        let err = |e: OnedError| Error::msg(e);
        let id = match self.by_name(Pool::Cluster, name).map_err(err)? {
            Some(f) if f.provision.as_deref() == Some(s.id.as_str()) => return Ok(f.id),
            // Allocated by a run killed before it could mark it: empty and unmarked.
            Some(f) if f.provision.is_none() && s.one.cluster.is_none() && cluster_is_empty(&f.element) => f.id,
            Some(f) => {
                bail!(
                    "OpenNebula already has a cluster named {name} (id {}) that is not of this provision: \
                     choose another cluster_name",
                    f.id
                );
            }
            None => self
                .oned
                .call_id("one.cluster.allocate", &[Param::Str(name.to_owned())])
                .map_err(err)?,
        };
        self.oned
            .call(
                "one.cluster.update",
                &[Param::Int(id), Param::Str(text(&cluster_template(s))?), Param::Int(1)],
            )
            .map_err(err)?;
        Ok(id)
    }

    /// A host (created or found by name), with its PROVISION attributes.
    pub fn ensure_host(&self, d: &Description, s: &ProvisionState, h: &HostRecord, cluster: i64) -> Result<i64> {
        let err = |e: OnedError| Error::msg(e);
        let name = h
            .public_ip
            .map(|i| i.to_string())
            .ok_or_else(|| anyhow!("host {} has no public address yet", h.name))?;
        let id = match self.by_name(Pool::Host, &name).map_err(err)? {
            // A host named after our server's own address is ours, marked or not.
            Some(f) if f.provision.is_none() || f.provision.as_deref() == Some(s.id.as_str()) => f.id,
            Some(f) => {
                bail!(
                    "OpenNebula already has a host named {name} (id {}) of another provision",
                    f.id
                );
            }
            None => self
                .oned
                .call_id(
                    "one.host.allocate",
                    &[
                        Param::Str(name.clone()),
                        Param::Str(drivers(d).to_owned()),
                        Param::Str(drivers(d).to_owned()),
                        Param::Int(cluster),
                    ],
                )
                .map_err(err)?,
        };
        self.oned
            .call(
                "one.host.update",
                &[
                    Param::Int(id),
                    Param::Str(text(&host_template(d, s, h))?),
                    Param::Int(1),
                ],
            )
            .map_err(err)?;
        Ok(id)
    }

    /// A datastore, virtual network or template allocated from `t` (named by its NAME).
    pub fn ensure_object(
        &self,
        pool: Pool,
        name: &str,
        t: &Template,
        cluster: Option<i64>,
        s: &ProvisionState,
    ) -> Result<i64> {
        if let Some(id) = self.ours(pool, name, &s.id)? {
            if pool == Pool::Vnet {
                self.wait_vnet_ready(id)?;
            }
            return Ok(id);
        }
        let mut params = vec![Param::Str(text(t)?)];
        let method = match pool {
            Pool::Datastore => "one.datastore.allocate",
            Pool::Vnet => "one.vn.allocate",
            Pool::VnTemplate => "one.vntemplate.allocate",
            Pool::Cluster | Pool::Host => {
                bail!("{} is not allocated from a template", pool.what());
            }
        };
        if let Some(c) = cluster {
            params.push(Param::Int(c));
        }
        let id = self.oned.call_id(method, &params).map_err(Error::msg)?;
        if pool == Pool::Vnet {
            self.wait_vnet_ready(id)?;
        }
        Ok(id)
    }

    /// Waits until network `id` is READY: oned answers `one.vn.allocate` at
    /// once and runs the network driver's `vnet_create` after (the network
    /// is INIT, then LOCK_CREATE), and refuses address ranges until then.
    pub fn wait_vnet_ready(&self, id: i64) -> Result<()> {
        let started = Instant::now();
        loop {
            let v = self
                .oned
                .call_xml("one.vn.info", &[Param::Int(id), Param::Bool(false)])
                .map_err(Error::msg)?;
            let state = v.child("STATE").map(|e| e.text.trim().to_owned()).unwrap_or_default();
            match state.as_str() {
                // READY (a stand-in without states is ready too)
                "1" | "" => return Ok(()),
                // INIT, LOCK_CREATE
                "0" | "2" if started.elapsed() < VNET_WAIT => std::thread::sleep(Duration::from_millis(200)),
                "0" | "2" => {
                    bail!(
                        "network {id} is not ready after {} s (its VN_MAD's vnet_create still runs): see oned.log, \
                         then run the command again",
                        VNET_WAIT.as_secs()
                    );
                }
                other => {
                    bail!(
                        "network {id} is in state {other} (5 = ERROR: its VN_MAD's vnet_create failed): see oned.log, \
                         delete it (onevnet delete {id}) and run the command again"
                    );
                }
            }
        }
    }

    /// Deletes an object; one already gone is fine. A network is gone only
    /// once its driver's `vnet_delete` ran (oned keeps it LOCK_DELETE until
    /// then, and its cluster cannot be deleted before): waits for that.
    pub fn delete(&self, pool: Pool, id: i64) -> Result<()> {
        let exists = |me: &Self| -> Result<bool> { Ok(me.list(pool).map_err(Error::msg)?.iter().any(|f| f.id == id)) };
        if !exists(self)? {
            return Ok(());
        }
        self.oned
            .call(pool.delete_method(), &[Param::Int(id)])
            .map_err(Error::msg)?;
        let started = Instant::now();
        while pool == Pool::Vnet && exists(self)? {
            if started.elapsed() > VNET_WAIT {
                bail!(
                    "network {id} is still there {} s after its deletion (its VN_MAD's vnet_delete): see oned.log",
                    VNET_WAIT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// The public ranges of this provision in a network: (AR id, flexible IP, its id).
    pub fn public_ranges(&self, vnet: i64, provision: &str) -> Result<Vec<PublicRange>> {
        let v = self
            .oned
            .call_xml("one.vn.info", &[Param::Int(vnet), Param::Bool(false)])
            .map_err(Error::msg)?;
        let Some(pool) = v.child("AR_POOL") else {
            return Ok(Vec::new());
        };
        let text = |ar: &Element, k: &str| ar.child(k).map(|e| e.text.clone());
        Ok(pool
            .children_named("AR")
            .filter(|ar| text(ar, "SCALEWAY_PROVISION").as_deref() == Some(provision))
            .filter_map(|ar| {
                Some(PublicRange {
                    ar_id: text(ar, "AR_ID")?.parse().ok()?,
                    external_ip: text(ar, "EXTERNAL_IP"),
                    ip: text(ar, "IP").or_else(|| text(ar, "IP6")),
                    used_leases: text(ar, "USED_LEASES").and_then(|u| u.parse().ok()).unwrap_or(0),
                })
            })
            .collect())
    }

    /// Points the system datastore's replica at `host` (the first host).
    pub fn set_replica_host(&self, datastore: i64, host: &str) -> Result<()> {
        let mut t = Template::new();
        t.single("REPLICA_HOST", host);
        self.oned
            .call(
                "one.datastore.update",
                &[Param::Int(datastore), Param::Str(text(&t)?), Param::Int(1)],
            )
            .map(|_| ())
            .map_err(Error::msg)
    }

    pub fn add_range(&self, vnet: i64, t: &Template) -> Result<()> {
        self.oned
            .call("one.vn.add_ar", &[Param::Int(vnet), Param::Str(text(t)?)])
            .map(|_| ())
            .map_err(Error::msg)
    }

    pub fn remove_range(&self, vnet: i64, ar: i64) -> Result<()> {
        self.oned
            .call("one.vn.rm_ar", &[Param::Int(vnet), Param::Int(ar)])
            .map(|_| ())
            .map_err(Error::msg)
    }

    /// The VMs on a host (`HOST/VMS/ID`).
    pub fn host_vms(&self, host: i64) -> Result<Vec<i64>> {
        match self
            .oned
            .call_xml("one.host.info", &[Param::Int(host), Param::Bool(false)])
        {
            Ok(h) => Ok(h
                .child("VMS")
                .map(|v| {
                    v.children_named("ID")
                        .filter_map(|i| i.text.trim().parse().ok())
                        .collect()
                })
                .unwrap_or_default()),
            // oned: "[one.host.info] Error getting host [N]." (NO_EXISTS, 1024): gone, so no VMs.
            Err(e) if e.0.contains("Error getting host") => Ok(Vec::new()),
            Err(e) => Err(Error::msg(e)),
        }
    }
}

/// A public range of the provision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicRange {
    pub ar_id: i64,
    pub external_ip: Option<String>,
    pub ip: Option<String>,
    pub used_leases: u64,
}

fn cluster_is_empty(c: &Element) -> bool {
    ["HOSTS", "DATASTORES", "VNETS"]
        .iter()
        .all(|k| c.child(k).is_none_or(|e| e.children.is_empty()))
}
