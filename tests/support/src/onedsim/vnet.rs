//! Virtual networks: `one.vn.allocate`, `info`, `update`, `delete` and the
//! pool (their ranges are in `ranges`).
//!
//! Every operation that runs a driver holds `Shared::drivers` for its whole
//! length (oned's `one_ipam -t 1`) and the state lock only around its reads
//! and writes, never while a driver runs.

use std::collections::{BTreeMap, BTreeSet};

use opennebula::template::Template;

use super::ar::{ADDRESS_SKELETON, Ar, request};
use super::model::{self, OWNER, PERMISSIONS, ids_xml, leaf};
use super::params::{Params, Reply};
use super::rpc::{ACTION, Answer, INTERNAL};
use super::{ArView, Shared, VnetView, driver, lock, ranges};

pub(crate) const READY: i64 = 1;
pub(crate) const LOCK_CREATE: i64 = 2;
pub(crate) const LOCK_DELETE: i64 = 3;
pub(crate) const ERROR: i64 = 5;
pub(crate) const UPDATE_FAILURE: i64 = 6;

pub(crate) fn state_name(state: i64) -> &'static str {
    [
        "INIT",
        "READY",
        "LOCK_CREATE",
        "LOCK_DELETE",
        "DONE",
        "ERROR",
        "UPDATE_FAILURE",
    ]
    .get(state as usize)
    .copied()
    .unwrap_or("UNKNOWN")
}

/// A virtual network.
pub(crate) struct Vnet {
    pub id: i64,
    pub name: String,
    pub state: i64,
    pub prev_state: i64,
    pub clusters: BTreeSet<i64>,
    pub bridge: String,
    pub bridge_type: String,
    pub vn_mad: String,
    pub phydev: String,
    pub vlan_id: String,
    pub outer_vlan_id: String,
    pub vlan_auto: bool,
    pub outer_auto: bool,
    pub template: Template,
    pub ars: BTreeMap<i64, Ar>,
    pub next_ar: i64,
}

impl Vnet {
    fn used(&self) -> u64 {
        self.ars.values().map(Ar::used).sum()
    }

    fn set_state(&mut self, state: i64) {
        self.prev_state = std::mem::replace(&mut self.state, state);
    }

    /// oned's `set_template_error_message`: `ERROR = [ MESSAGE, TIMESTAMP ]`.
    fn set_error(&mut self, message: &str) {
        self.set_state(ERROR);
        model::take(&mut self.template, "ERROR");
        self.template.vector(
            "ERROR",
            [
                ("MESSAGE", message.to_owned()),
                ("TIMESTAMP", model::ctime(model::now())),
            ],
        );
    }

    /// The body of `one.vn.info` (`extended`, with leases) or of the pool
    /// (the stored ranges).
    pub fn xml(&self, extended: bool) -> String {
        let or_empty = |name: &str, v: &str| {
            if v.is_empty() {
                format!("<{name}/>")
            } else {
                leaf(name, v)
            }
        };
        let ars: String = self
            .ars
            .values()
            .map(|a| if extended { a.extended_xml() } else { a.vector_xml() })
            .collect();
        let ar_pool = if ars.is_empty() {
            "<AR_POOL/>".to_owned()
        } else {
            format!("<AR_POOL>{ars}</AR_POOL>")
        };
        let updated: BTreeSet<i64> = self.ars.values().flat_map(|a| a.leases.values().copied()).collect();
        format!(
            "<VNET><ID>{}</ID>{OWNER}{}{PERMISSIONS}{}{}{}<STATE>{}</STATE><PREV_STATE>{}</PREV_STATE>\
             <PARENT_NETWORK_ID/>{}{}{}{}<VLAN_ID_AUTOMATIC>{}</VLAN_ID_AUTOMATIC>\
             <OUTER_VLAN_ID_AUTOMATIC>{}</OUTER_VLAN_ID_AUTOMATIC><USED_LEASES>{}</USED_LEASES><VROUTERS/>\
             {}<OUTDATED_VMS/><UPDATING_VMS/><ERROR_VMS/>{}{ar_pool}</VNET>",
            self.id,
            leaf("NAME", &self.name),
            ids_xml("CLUSTERS", &self.clusters),
            leaf("BRIDGE", &self.bridge),
            leaf("BRIDGE_TYPE", &self.bridge_type),
            self.state,
            self.prev_state,
            or_empty("VN_MAD", &self.vn_mad),
            or_empty("PHYDEV", &self.phydev),
            or_empty("VLAN_ID", &self.vlan_id),
            or_empty("OUTER_VLAN_ID", &self.outer_vlan_id),
            u8::from(self.vlan_auto),
            u8::from(self.outer_auto),
            self.used(),
            ids_xml("UPDATED_VMS", &updated),
            model::template_xml("TEMPLATE", &self.template),
        )
    }

    pub fn view(&self) -> VnetView {
        VnetView {
            id: self.id,
            name: self.name.clone(),
            state: self.state,
            vn_mad: self.vn_mad.clone(),
            bridge: self.bridge.clone(),
            clusters: self.clusters.iter().copied().collect(),
            template: self.template.clone(),
            ars: self
                .ars
                .values()
                .map(|a| ArView {
                    id: a.id,
                    attrs: a.attrs.clone(),
                    leases: a.leases.iter().map(|(i, vm)| a.lease_view(*i, *vm)).collect(),
                })
                .collect(),
        }
    }

    /// Re-adds the attributes oned keeps in both the object and its template.
    fn sync_template(&mut self) {
        let t = &mut self.template;
        model::set(t, "VN_MAD", &self.vn_mad);
        model::set(t, "PHYDEV", &self.phydev);
        model::set(t, "BRIDGE", &self.bridge);
        model::set(t, "BRIDGE_TYPE", &self.bridge_type);
        if !self.vlan_id.is_empty() && !self.vlan_auto {
            model::set(t, "VLAN_ID", &self.vlan_id);
        }
        if !self.outer_vlan_id.is_empty() && !self.outer_auto {
            model::set(t, "OUTER_VLAN_ID", &self.outer_vlan_id);
        }
    }
}

fn yes(v: Option<String>) -> bool {
    v.is_some_and(|v| v.eq_ignore_ascii_case("yes") || v == "1" || v.eq_ignore_ascii_case("true"))
}

fn default_bridge_type(vn_mad: &str) -> &'static str {
    match vn_mad {
        "ovswitch" | "ovswitch_vxlan" => "openvswitch",
        "vcenter" => "vcenter_port_groups",
        _ => "linux",
    }
}

/// Runs the network driver's `vnet_create`/`vnet_delete` when a `vnm_dir`
/// is configured: its stdout on success, its error otherwise.
fn vnm_action(shared: &Shared, id: i64, action: &str) -> Result<String, String> {
    let Some(dir) = &shared.config.vnm_dir else {
        return Ok(String::new());
    };
    let (mad, message) = {
        let st = lock(&shared.state);
        let v = st.vnets.get(&id).ok_or("the network is gone")?;
        (v.vn_mad.clone(), v.xml(false))
    };
    let ran = driver::run(shared, Some(dir), &mad, action, &id.to_string(), &message);
    if ran.ok() { Ok(ran.stdout) } else { Err(ran.error()) }
}

pub(crate) fn pool_info(shared: &Shared, p: &Params<'_>) -> Reply {
    let st = lock(&shared.state);
    let mut body = String::new();
    for v in st.vnets.values() {
        if p.in_pool(v.id)? {
            body.push_str(&v.xml(false));
        }
    }
    Ok(Answer::Str(format!("<VNET_POOL>{body}</VNET_POOL>")))
}

pub(crate) fn info(shared: &Shared, p: &Params<'_>) -> Reply {
    let id = p.int(0)?;
    let st = lock(&shared.state);
    let v = st.vnets.get(&id).ok_or_else(|| p.no_exists("virtual network", id))?;
    Ok(Answer::Str(v.xml(true)))
}

/// `one.vn.allocate(template, cluster)`. Like oned 7 the network is
/// created first (LOCK_CREATE), then `vnet_create`, then its ranges one by
/// one; a failure leaves it in ERROR, and the call still answers its id.
pub(crate) fn allocate(shared: &Shared, p: &Params<'_>) -> Reply {
    let mut template = p.template(0)?;
    let _drivers = lock(&shared.drivers);
    let id = {
        let mut guard = lock(&shared.state);
        let st = &mut *guard;
        let cid = p.cluster(st, 1)?;
        let name = model::take(&mut template, "NAME").unwrap_or_default();
        if let Some(v) = st.vnets.values().find(|v| v.name == name) {
            return Err(p.fail(INTERNAL, &format!("NAME is already taken by NET {}.", v.id)));
        }
        if name.is_empty() {
            return Err(p.fail(INTERNAL, "No NAME in template for Virtual Network."));
        }
        if let Some(e) = model::name_error(&name) {
            return Err(p.fail(INTERNAL, &e));
        }
        let vn_mad = model::take(&mut template, "VN_MAD").unwrap_or_default();
        if vn_mad.is_empty() {
            return Err(p.fail(INTERNAL, "No VN_MAD in template for Virtual Network."));
        }
        let id = st.next_vnet;
        let vlan_id = model::get(&template, "VLAN_ID").unwrap_or_default().to_owned();
        let outer_vlan_id = model::get(&template, "OUTER_VLAN_ID").unwrap_or_default().to_owned();
        let vlan_auto = vlan_id.is_empty() && yes(model::take(&mut template, "AUTOMATIC_VLAN_ID"));
        let outer_auto = outer_vlan_id.is_empty() && yes(model::take(&mut template, "AUTOMATIC_OUTER_VLAN_ID"));
        let bridge_type = model::take(&mut template, "BRIDGE_TYPE")
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| default_bridge_type(&vn_mad).to_owned());
        let mut bridge = model::take(&mut template, "BRIDGE").unwrap_or_default();
        if bridge.is_empty() && bridge_type != "none" {
            bridge = if vlan_id.is_empty() {
                format!("onebr{id}")
            } else {
                format!("onebr.{vlan_id}")
            };
        }
        let mut groups: BTreeSet<i64> = model::take(&mut template, "SECURITY_GROUPS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|g| g.trim().parse().ok())
            .collect();
        groups.insert(0);
        let groups: Vec<String> = groups.iter().map(i64::to_string).collect();
        template.single("SECURITY_GROUPS", &groups.join(","));
        let mut v = Vnet {
            id,
            name,
            state: LOCK_CREATE,
            prev_state: LOCK_CREATE,
            clusters: [cid].into(),
            bridge,
            bridge_type,
            phydev: model::take(&mut template, "PHYDEV").unwrap_or_default(),
            vn_mad,
            vlan_id,
            outer_vlan_id,
            vlan_auto,
            outer_auto,
            template,
            ars: BTreeMap::new(),
            next_ar: 0,
        };
        v.sync_template();
        st.next_vnet += 1;
        st.vnets.insert(id, v);
        if let Some(c) = st.clusters.get_mut(&cid) {
            c.vnets.insert(id);
        }
        id
    };
    let created = vnm_action(shared, id, "vnet_create");
    let ars = {
        let mut st = lock(&shared.state);
        let Some(v) = st.vnets.get_mut(&id) else {
            return Ok(Answer::Int(id));
        };
        match created {
            Ok(stdout) => {
                if let Ok(extra) = model::parse_template(&stdout) {
                    model::update(&mut v.template, extra, true);
                }
                model::take_vectors(&mut v.template, "AR")
            }
            Err(e) => {
                v.set_error(&e);
                return Ok(Answer::Int(id));
            }
        }
    };
    let mut failure = None;
    for pairs in &ars {
        if let Err(e) = ranges::add_range(shared, id, pairs) {
            failure = Some(e);
            break;
        }
    }
    if let Some(v) = lock(&shared.state).vnets.get_mut(&id) {
        match failure {
            Some(e) => v.set_error(&e),
            None => v.set_state(READY),
        }
    }
    Ok(Answer::Int(id))
}

/// `one.vn.delete(id)`: every range unregistered in order (a failure stops
/// there, the ranges after it kept), then `vnet_delete`.
pub(crate) fn delete(shared: &Shared, p: &Params<'_>) -> Reply {
    let id = p.int(0)?;
    let refuse = |why: &str| p.fail(ACTION, &format!("Cannot delete virtual network. {why}"));
    let _drivers = lock(&shared.drivers);
    let ar_ids: Vec<i64> = {
        let st = lock(&shared.state);
        let v = st.vnets.get(&id).ok_or_else(|| p.no_exists("virtual network", id))?;
        if v.used() > 0 {
            return Err(refuse("Can not remove a virtual network with leases in use"));
        }
        if matches!(v.state, LOCK_CREATE | LOCK_DELETE | 4) {
            return Err(refuse(&format!(
                "Can not remove a Virtual Network, wrong state {}",
                state_name(v.state)
            )));
        }
        v.ars.keys().copied().collect()
    };
    for ar_id in ar_ids {
        let unregister = lock(&shared.state)
            .vnets
            .get(&id)
            .and_then(|v| v.ars.get(&ar_id))
            .and_then(|ar| {
                ar.ipam_mad()
                    .map(|m| (m.to_owned(), request(&ar.vector_xml(), ADDRESS_SKELETON)))
            });
        if let Some((mad, message)) = unregister {
            let ipam_dir = shared.config.ipam_dir.as_deref();
            let ran = driver::run(
                shared,
                ipam_dir,
                &mad,
                "unregister_address_range",
                &ranges::request_id(shared),
                &message,
            );
            if !ran.ok() {
                return Err(refuse(&ran.error()));
            }
        }
        if let Some(v) = lock(&shared.state).vnets.get_mut(&id) {
            v.ars.remove(&ar_id);
        }
    }
    if let Some(v) = lock(&shared.state).vnets.get_mut(&id) {
        v.set_state(LOCK_DELETE);
    }
    let deleted = vnm_action(shared, id, "vnet_delete");
    let mut guard = lock(&shared.state);
    let st = &mut *guard;
    match deleted {
        Err(e) => {
            if let Some(v) = st.vnets.get_mut(&id) {
                v.set_error(&e);
            }
        }
        Ok(_) => {
            if let Some(v) = st.vnets.remove(&id) {
                for cid in v.clusters {
                    if let Some(c) = st.clusters.get_mut(&cid) {
                        c.vnets.remove(&id);
                    }
                }
            }
        }
    }
    Ok(Answer::Int(id))
}

/// `one.vn.update(id, template, append)`.
pub(crate) fn update(shared: &Shared, p: &Params<'_>) -> Reply {
    let (id, mut new, append) = (p.int(0)?, p.template(1)?, p.append(2)?);
    model::take_vectors(&mut new, "AR");
    model::take(&mut new, "NAME");
    let mut st = lock(&shared.state);
    let v = st
        .vnets
        .get_mut(&id)
        .ok_or_else(|| p.no_exists("virtual network", id))?;
    model::update(&mut v.template, new, append);
    // `post_update_template`: the template's values become the object's.
    v.vn_mad = model::get(&v.template, "VN_MAD").unwrap_or_default().to_owned();
    v.phydev = model::get(&v.template, "PHYDEV").unwrap_or_default().to_owned();
    if let Some(b) = model::get(&v.template, "BRIDGE").filter(|b| !b.is_empty()) {
        v.bridge = b.to_owned();
    }
    if let Some(t) = model::get(&v.template, "BRIDGE_TYPE").filter(|t| !t.is_empty()) {
        v.bridge_type = t.to_owned();
    }
    v.sync_template();
    Ok(Answer::Int(id))
}
