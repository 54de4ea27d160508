//! The OpenNebula side of a provision: the templates of its objects (pure)
//! and their registration through oned's XML-RPC API.
//!
//! Every object is looked up by name before it is allocated, so a command
//! killed between an allocation and its record finds the object again
//! instead of making a second one; an object of that name that does not
//! carry this provision's id (`PROVISION/ID`) is never adopted.

use opennebula::oned::{Oned, OnedError, Param};
use opennebula::template::Template;
use opennebula::xml::Element;

use crate::description::{Description, Hypervisor};
use crate::state::{HostRecord, ProvisionState};

/// The bridge of the public network on every host.
pub const PUBLIC_BRIDGE: &str = "scwpub0";
/// The VMs' private network template's default range.
pub const PRIVATE_VNET_FIRST: &str = "10.200.0.10";
pub const PRIVATE_VNET_SIZE: &str = "240";

/// Names of the provision's OpenNebula objects.
pub fn image_datastore_name(d: &Description) -> String {
    format!("{}-image", d.name)
}
pub fn system_datastore_name(d: &Description) -> String {
    format!("{}-system", d.name)
}
pub fn public_network_name(d: &Description) -> String {
    format!("{}-public", d.name)
}
pub fn private_template_name(d: &Description) -> String {
    format!("{}-private", d.name)
}

/// `IM_MAD`/`VM_MAD` of the hosts.
pub fn drivers(d: &Description) -> &'static str {
    match d.hypervisor {
        Hypervisor::Kvm => "kvm",
        Hypervisor::Lxc => "lxc",
    }
}

fn provision_vector(s: &ProvisionState) -> Vec<(&'static str, String)> {
    vec![("ID", s.id.clone()), ("NAME", s.name.clone())]
}

/// What is added to a host's template.
pub fn host_template(d: &Description, s: &ProvisionState, h: &HostRecord) -> Template {
    let mut pairs = vec![
        (
            "DEPLOY_ID",
            format!("{}/{}", d.zone, h.server_id.clone().unwrap_or_default()),
        ),
        ("ID", s.id.clone()),
        ("NAME", s.name.clone()),
        ("HOSTNAME", h.name.clone()),
        ("PRIVATE_IP", h.private_ip.map(|i| i.to_string()).unwrap_or_default()),
        ("SCALEWAY_ZONE", d.zone.to_string()),
    ];
    if let Some(p) = &d.profile {
        pairs.push(("SCALEWAY_PROFILE", p.clone()));
    }
    let mut t = Template::new();
    t.vector("PROVISION", pairs);
    t
}

/// The cluster's template additions.
pub fn cluster_template(s: &ProvisionState) -> Template {
    let mut t = Template::new();
    t.vector("PROVISION", provision_vector(s));
    t
}

/// The image datastore: files copied to the hosts over SSH.
pub fn image_datastore(d: &Description, s: &ProvisionState) -> Template {
    let mut t = Template::new();
    t.single("NAME", &image_datastore_name(d))
        .single("TYPE", "IMAGE_DS")
        .single("DS_MAD", "fs")
        .single("TM_MAD", "ssh")
        .single("SAFE_DIRS", "/var/tmp")
        .vector("PROVISION", provision_vector(s));
    t
}

/// The system datastore: SSH transfer, the first host keeps a replica of the images.
pub fn system_datastore(d: &Description, s: &ProvisionState) -> Template {
    let mut t = Template::new();
    t.single("NAME", &system_datastore_name(d))
        .single("TYPE", "SYSTEM_DS")
        .single("TM_MAD", "ssh");
    if let Some(first) = s.hosts.iter().find_map(|h| h.public_ip) {
        t.single("REPLICA_HOST", &first.to_string());
    }
    t.vector("PROVISION", provision_vector(s));
    t
}

/// The public network, without ranges (they are added one by one).
pub fn public_network(d: &Description, s: &ProvisionState) -> Template {
    let dns: Vec<String> = d.dns.iter().map(ToString::to_string).collect();
    let mut t = Template::new();
    t.single("NAME", &public_network_name(d))
        .single("DESCRIPTION", &format!("Scaleway flexible IPs of provision {}", d.name))
        .single("VN_MAD", "scaleway")
        .single("BRIDGE", PUBLIC_BRIDGE)
        .single("DNS", &dns.join(" "))
        .vector("PROVISION", provision_vector(s));
    t
}

/// One public range: one flexible IP, registered by the `scaleway_fip` IPAM driver.
pub fn public_range(d: &Description, s: &ProvisionState) -> Template {
    let mut pairs = vec![
        ("IPAM_MAD", crate::oneconf::IPAM_DRIVER.to_owned()),
        ("SIZE", "1".to_owned()),
        ("PRIVATE_CIDR", d.public_ip_cidr.to_string()),
        ("SCALEWAY_ZONE", d.zone.to_string()),
        ("SCALEWAY_PROVISION", s.id.clone()),
    ];
    if let Some(p) = &d.profile {
        pairs.push(("SCALEWAY_PROFILE", p.clone()));
    }
    let mut t = Template::new();
    t.vector("AR", pairs);
    t
}

/// The private network template (VXLAN with BGP-EVPN between the hosts).
pub fn private_template(d: &Description, s: &ProvisionState) -> Template {
    let dns: Vec<String> = d.dns.iter().map(ToString::to_string).collect();
    let mut t = Template::new();
    t.single("NAME", &private_template_name(d))
        .single(
            "DESCRIPTION",
            &format!("Private network between the VMs of provision {}", d.name),
        )
        .single("VN_MAD", "scaleway_evpn")
        .single("PHYDEV", crate::bootstrap::PRIVATE_DEVICE)
        .single("GUEST_MTU", "1450")
        .single("DNS", &dns.join(" "))
        .single("NETWORK_ADDRESS", "10.200.0.0")
        .single("NETWORK_MASK", "255.255.255.0")
        .vector(
            "AR",
            [("TYPE", "IP4"), ("IP", PRIVATE_VNET_FIRST), ("SIZE", PRIVATE_VNET_SIZE)],
        );
    if let Some(c) = s.one.cluster {
        t.single("CLUSTER_IDS", &c.to_string());
    }
    t.vector("PROVISION", provision_vector(s));
    t
}

/// Renders a template, or says which value cannot be written.
pub fn text(t: &Template) -> Result<String, String> {
    t.render().map_err(|e| e.to_string())
}

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
    fn ours(&self, pool: Pool, name: &str, provision: &str) -> Result<Option<i64>, String> {
        match self.by_name(pool, name).map_err(|e| e.to_string())? {
            None => Ok(None),
            Some(f) if f.provision.as_deref() == Some(provision) => Ok(Some(f.id)),
            Some(f) => Err(format!(
                "OpenNebula already has a {} named {name} (id {}) that is not of this provision: \
                 rename or delete it, or give the provision another name",
                pool.what(),
                f.id
            )),
        }
    }

    /// The cluster (created, or found by name).
    pub fn ensure_cluster(&self, name: &str, s: &ProvisionState) -> Result<i64, String> {
        let err = |e: OnedError| e.to_string();
        let id = match self.by_name(Pool::Cluster, name).map_err(err)? {
            Some(f) if f.provision.as_deref() == Some(s.id.as_str()) => return Ok(f.id),
            // Allocated by a run killed before it could mark it: empty and unmarked.
            Some(f) if f.provision.is_none() && s.one.cluster.is_none() && cluster_is_empty(&f.element) => f.id,
            Some(f) => {
                return Err(format!(
                    "OpenNebula already has a cluster named {name} (id {}) that is not of this provision: \
                     choose another cluster_name",
                    f.id
                ));
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
    pub fn ensure_host(
        &self,
        d: &Description,
        s: &ProvisionState,
        h: &HostRecord,
        cluster: i64,
    ) -> Result<i64, String> {
        let err = |e: OnedError| e.to_string();
        let name = h
            .public_ip
            .map(|i| i.to_string())
            .ok_or_else(|| format!("host {} has no public address yet", h.name))?;
        let id = match self.by_name(Pool::Host, &name).map_err(err)? {
            // A host named after our server's own address is ours, marked or not.
            Some(f) if f.provision.is_none() || f.provision.as_deref() == Some(s.id.as_str()) => f.id,
            Some(f) => {
                return Err(format!(
                    "OpenNebula already has a host named {name} (id {}) of another provision",
                    f.id
                ));
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
    ) -> Result<i64, String> {
        if let Some(id) = self.ours(pool, name, &s.id)? {
            return Ok(id);
        }
        let mut params = vec![Param::Str(text(t)?)];
        let method = match pool {
            Pool::Datastore => "one.datastore.allocate",
            Pool::Vnet => "one.vn.allocate",
            Pool::VnTemplate => "one.vntemplate.allocate",
            Pool::Cluster | Pool::Host => return Err(format!("{} is not allocated from a template", pool.what())),
        };
        if let Some(c) = cluster {
            params.push(Param::Int(c));
        }
        self.oned.call_id(method, &params).map_err(|e| e.to_string())
    }

    /// Deletes an object; one already gone is fine.
    pub fn delete(&self, pool: Pool, id: i64) -> Result<(), String> {
        let exists = self.list(pool).map_err(|e| e.to_string())?.iter().any(|f| f.id == id);
        if !exists {
            return Ok(());
        }
        self.oned
            .call(pool.delete_method(), &[Param::Int(id)])
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The public ranges of this provision in a network: (AR id, flexible IP, its id).
    pub fn public_ranges(&self, vnet: i64, provision: &str) -> Result<Vec<PublicRange>, String> {
        let v = self
            .oned
            .call_xml("one.vn.info", &[Param::Int(vnet), Param::Bool(false)])
            .map_err(|e| e.to_string())?;
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
    pub fn set_replica_host(&self, datastore: i64, host: &str) -> Result<(), String> {
        let mut t = Template::new();
        t.single("REPLICA_HOST", host);
        self.oned
            .call(
                "one.datastore.update",
                &[Param::Int(datastore), Param::Str(text(&t)?), Param::Int(1)],
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    pub fn add_range(&self, vnet: i64, t: &Template) -> Result<(), String> {
        self.oned
            .call("one.vn.add_ar", &[Param::Int(vnet), Param::Str(text(t)?)])
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    pub fn remove_range(&self, vnet: i64, ar: i64) -> Result<(), String> {
        self.oned
            .call("one.vn.rm_ar", &[Param::Int(vnet), Param::Int(ar)])
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The VMs on a host (`HOST/VMS/ID`).
    pub fn host_vms(&self, host: i64) -> Result<Vec<i64>, String> {
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
            Err(e) => Err(e.to_string()),
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
