//! The XML-RPC methods (networks are in `vnet` and `ranges`): dispatch,
//! oned's checks and messages.

use std::collections::BTreeSet;

use super::model::{self, Cluster, Datastore, Host, State, VnTemplate};
use super::params::{Params, Reply};
use super::rpc::{ACTION, AUTHENTICATION, Answer, Arg, FAULT_NO_SUCH_METHOD, INTERNAL, Request};
use super::{Shared, document, lock, ranges, vnet};

type Handler = fn(&Shared, &Params<'_>) -> Reply;

pub(crate) fn handler(method: &str) -> Option<Handler> {
    Some(match method {
        "one.clusterpool.info" => |s, _| {
            Ok(pool(s, "CLUSTER_POOL", |st| {
                st.clusters.values().map(Cluster::xml).collect()
            }))
        },
        "one.cluster.allocate" => cluster_allocate,
        "one.cluster.info" => cluster_info,
        "one.cluster.update" => cluster_update,
        "one.cluster.delete" => cluster_delete,
        "one.cluster.addhost" => |s, p| membership(s, p, Member::Host, true),
        "one.cluster.delhost" => |s, p| membership(s, p, Member::Host, false),
        "one.cluster.adddatastore" => |s, p| membership(s, p, Member::Datastore, true),
        "one.cluster.deldatastore" => |s, p| membership(s, p, Member::Datastore, false),
        "one.cluster.addvnet" => |s, p| membership(s, p, Member::Vnet, true),
        "one.cluster.delvnet" => |s, p| membership(s, p, Member::Vnet, false),
        "one.hostpool.info" => |s, _| {
            Ok(pool(s, "HOST_POOL", |st| {
                st.hosts
                    .values()
                    .map(|h| h.xml(&st.cluster_name(h.cluster_id)))
                    .collect()
            }))
        },
        "one.host.allocate" => host_allocate,
        "one.host.info" => host_info,
        "one.host.update" => host_update,
        "one.host.delete" => host_delete,
        "one.host.status" => host_status,
        "one.datastorepool.info" => |s, _| {
            Ok(pool(s, "DATASTORE_POOL", |st| {
                st.datastores.values().map(Datastore::xml).collect()
            }))
        },
        "one.datastore.allocate" => datastore_allocate,
        "one.datastore.info" => datastore_info,
        "one.datastore.update" => datastore_update,
        "one.datastore.delete" => datastore_delete,
        "one.vntemplatepool.info" => vntemplate_pool,
        "one.vntemplate.allocate" => vntemplate_allocate,
        "one.vntemplate.info" => vntemplate_info,
        "one.vntemplate.update" => vntemplate_update,
        "one.vntemplate.delete" => vntemplate_delete,
        "one.documentpool.info" => document::pool,
        "one.document.info" => document::info,
        "one.document.allocate" => document::allocate,
        "one.document.update" => document::update,
        "one.document.delete" => document::delete,
        "one.document.lock" => document::lock,
        "one.document.unlock" => document::unlock,
        "one.vnpool.info" => vnet::pool_info,
        "one.vn.allocate" => vnet::allocate,
        "one.vn.info" => vnet::info,
        "one.vn.update" => vnet::update,
        "one.vn.delete" => vnet::delete,
        "one.vn.add_ar" => ranges::add_ar,
        "one.vn.rm_ar" => ranges::rm_ar,
        "one.vn.update_ar" => ranges::update_ar,
        _ => return None,
    })
}

/// Records a call and answers it.
pub(crate) fn handle(shared: &Shared, request: &Request) -> Answer {
    let method = request.method.as_str();
    let call = (
        method.to_owned(),
        request.args.iter().map(Arg::text).collect::<Vec<_>>(),
    );
    lock(&shared.calls).push(call.clone());
    let Some(handler) = handler(method) else {
        lock(&shared.unknown).push(call);
        return Answer::Fault {
            code: FAULT_NO_SUCH_METHOD,
            message: format!("Method '{method}' not defined"),
        };
    };
    let p = Params {
        method,
        args: &request.args,
    };
    if !request.session.as_deref().is_some_and(|s| s.contains(':')) {
        return p.fail(AUTHENTICATION, "User couldn't be authenticated, aborting call.");
    }
    {
        let mut failures = lock(&shared.failures);
        if let Some(n) = failures.get_mut(method)
            && *n > 0
        {
            *n -= 1;
            return p.fail(INTERNAL, "Cannot process request, oned cluster in election mode");
        }
    }
    match handler(shared, &p) {
        Ok(a) | Err(a) => a,
    }
}

fn pool(shared: &Shared, root: &str, bodies: impl FnOnce(&State) -> Vec<String>) -> Answer {
    let state = lock(&shared.state);
    Answer::Str(format!("<{root}>{}</{root}>", bodies(&state).concat()))
}

// ----------------------------------------------------------------------------
// Clusters
// ----------------------------------------------------------------------------

fn cluster_allocate(shared: &Shared, p: &Params<'_>) -> Reply {
    let name = p.str(0)?;
    let mut st = lock(&shared.state);
    if let Some(e) = model::name_error(name) {
        return Err(p.fail(INTERNAL, &e));
    }
    if let Some(c) = st.clusters.values().find(|c| c.name == name) {
        return Err(p.fail(INTERNAL, &format!("NAME is already taken by CLUSTER {}.", c.id)));
    }
    let id = st.next_cluster;
    st.next_cluster += 1;
    let mut template = opennebula::template::Template::new();
    template.single("RESERVED_CPU", "").single("RESERVED_MEM", "");
    st.clusters.insert(
        id,
        Cluster {
            id,
            name: name.to_owned(),
            hosts: BTreeSet::new(),
            datastores: BTreeSet::new(),
            vnets: BTreeSet::new(),
            template,
        },
    );
    Ok(Answer::Int(id))
}

fn cluster_info(shared: &Shared, p: &Params<'_>) -> Reply {
    let id = p.int(0)?;
    let st = lock(&shared.state);
    let c = st.clusters.get(&id).ok_or_else(|| p.no_exists("cluster", id))?;
    Ok(Answer::Str(c.xml()))
}

fn cluster_update(shared: &Shared, p: &Params<'_>) -> Reply {
    let (id, new, append) = (p.int(0)?, p.template(1)?, p.append(2)?);
    let mut st = lock(&shared.state);
    let c = st.clusters.get_mut(&id).ok_or_else(|| p.no_exists("cluster", id))?;
    model::update(&mut c.template, new, append);
    Ok(Answer::Int(id))
}

fn cluster_delete(shared: &Shared, p: &Params<'_>) -> Reply {
    let id = p.int(0)?;
    let mut st = lock(&shared.state);
    let c = st.clusters.get(&id).ok_or_else(|| p.no_exists("cluster", id))?;
    let refuse = |why: String| Err(p.fail(ACTION, &format!("Cannot delete cluster. {why}")));
    if id < 100 {
        return refuse("System Clusters (ID < 100) cannot be deleted.".into());
    }
    for (what, n) in [
        ("hosts", c.hosts.len()),
        ("datastores", c.datastores.len()),
        ("vnets", c.vnets.len()),
    ] {
        if n > 0 {
            return refuse(format!("Cluster {id} is not empty, it contains {n} {what}."));
        }
    }
    st.clusters.remove(&id);
    Ok(Answer::Int(id))
}

#[derive(Clone, Copy)]
enum Member {
    Host,
    Datastore,
    Vnet,
}

/// `one.cluster.add*`/`del*`: a host is in exactly one cluster (removing
/// it moves it to the default cluster); datastores and networks in any.
fn membership(shared: &Shared, p: &Params<'_>, kind: Member, add: bool) -> Reply {
    let (cid, oid) = (p.int(0)?, p.int(1)?);
    let mut guard = lock(&shared.state);
    let st = &mut *guard;
    if !st.clusters.contains_key(&cid) {
        return Err(p.no_exists("cluster", cid));
    }
    match kind {
        Member::Host => {
            let host = st.hosts.get_mut(&oid).ok_or_else(|| p.no_exists("host", oid))?;
            let target = if add { cid } else { 0 };
            if !add && host.cluster_id != cid {
                return Ok(Answer::Int(cid));
            }
            let old = std::mem::replace(&mut host.cluster_id, target);
            if let Some(c) = st.clusters.get_mut(&old) {
                c.hosts.remove(&oid);
            }
            if let Some(c) = st.clusters.get_mut(&target) {
                c.hosts.insert(oid);
            }
        }
        Member::Datastore => {
            let ds = st
                .datastores
                .get_mut(&oid)
                .ok_or_else(|| p.no_exists("datastore", oid))?;
            let cluster = st.clusters.get_mut(&cid).ok_or_else(|| p.no_exists("cluster", cid))?;
            if add {
                ds.clusters.insert(cid);
                cluster.datastores.insert(oid);
            } else {
                ds.clusters.remove(&cid);
                cluster.datastores.remove(&oid);
            }
        }
        Member::Vnet => {
            let vn = st
                .vnets
                .get_mut(&oid)
                .ok_or_else(|| p.no_exists("virtual network", oid))?;
            let cluster = st.clusters.get_mut(&cid).ok_or_else(|| p.no_exists("cluster", cid))?;
            if add {
                vn.clusters.insert(cid);
                cluster.vnets.insert(oid);
            } else {
                vn.clusters.remove(&cid);
                cluster.vnets.remove(&oid);
            }
        }
    }
    Ok(Answer::Int(cid))
}

// ----------------------------------------------------------------------------
// Hosts
// ----------------------------------------------------------------------------

fn host_allocate(shared: &Shared, p: &Params<'_>) -> Reply {
    let (name, im_mad, vm_mad) = (p.str(0)?, p.str(1)?, p.str(2)?);
    let mut st = lock(&shared.state);
    let cid = p.cluster(&st, 3)?;
    if let Some(e) = model::name_error(name) {
        return Err(p.fail(INTERNAL, &e));
    }
    if im_mad.is_empty() {
        return Err(p.fail(INTERNAL, "IM_MAD_NAME cannot be empty."));
    }
    if vm_mad.is_empty() {
        return Err(p.fail(INTERNAL, "VMM_MAD_NAME cannot be empty."));
    }
    if let Some(h) = st.hosts.values().find(|h| h.name == name) {
        return Err(p.fail(INTERNAL, &format!("NAME is already taken by HOST {}.", h.id)));
    }
    let id = st.next_host;
    st.next_host += 1;
    let mut template = opennebula::template::Template::new();
    template.single("IM_MAD", im_mad).single("VM_MAD", vm_mad);
    st.hosts.insert(
        id,
        Host {
            id,
            name: name.to_owned(),
            im_mad: im_mad.to_owned(),
            vm_mad: vm_mad.to_owned(),
            cluster_id: cid,
            state: 0,
            prev_state: 0,
            vms: BTreeSet::new(),
            template,
        },
    );
    if let Some(c) = st.clusters.get_mut(&cid) {
        c.hosts.insert(id);
    }
    Ok(Answer::Int(id))
}

fn host_info(shared: &Shared, p: &Params<'_>) -> Reply {
    let id = p.int(0)?;
    let st = lock(&shared.state);
    let h = st.hosts.get(&id).ok_or_else(|| p.no_exists("host", id))?;
    Ok(Answer::Str(h.xml(&st.cluster_name(h.cluster_id))))
}

fn host_update(shared: &Shared, p: &Params<'_>) -> Reply {
    let (id, new, append) = (p.int(0)?, p.template(1)?, p.append(2)?);
    let mut st = lock(&shared.state);
    let h = st.hosts.get_mut(&id).ok_or_else(|| p.no_exists("host", id))?;
    model::update(&mut h.template, new, append);
    Ok(Answer::Int(id))
}

fn host_delete(shared: &Shared, p: &Params<'_>) -> Reply {
    let id = p.int(0)?;
    let mut st = lock(&shared.state);
    let h = st.hosts.get(&id).ok_or_else(|| p.no_exists("host", id))?;
    if !h.vms.is_empty() {
        return Err(p.fail(ACTION, "Cannot delete host. Can not remove a host with running VMs"));
    }
    let cid = h.cluster_id;
    st.hosts.remove(&id);
    if let Some(c) = st.clusters.get_mut(&cid) {
        c.hosts.remove(&id);
    }
    Ok(Answer::Int(id))
}

/// `one.host.status`: 0 enable (INIT), 1 disable, 2 offline.
fn host_status(shared: &Shared, p: &Params<'_>) -> Reply {
    let (id, status) = (p.int(0)?, p.int(1)?);
    let mut st = lock(&shared.state);
    let h = st.hosts.get_mut(&id).ok_or_else(|| p.no_exists("host", id))?;
    let new = match status {
        0 => 0,
        1 => 4,
        2 => 8,
        _ => return Err(p.fail(ACTION, "Wrong status code")),
    };
    h.prev_state = std::mem::replace(&mut h.state, new);
    Ok(Answer::Int(id))
}

// ----------------------------------------------------------------------------
// Datastores
// ----------------------------------------------------------------------------

fn datastore_allocate(shared: &Shared, p: &Params<'_>) -> Reply {
    let mut template = p.template(0)?;
    let mut st = lock(&shared.state);
    let cid = p.cluster(&st, 1)?;
    let name = model::take(&mut template, "NAME").unwrap_or_default();
    if let Some(e) = model::name_error(&name) {
        return Err(p.fail(INTERNAL, &e));
    }
    if let Some(d) = st.datastores.values().find(|d| d.name == name) {
        return Err(p.fail(INTERNAL, &format!("NAME is already taken by DATASTORE {}.", d.id)));
    }
    let type_name = model::get(&template, "TYPE").unwrap_or("IMAGE_DS").to_ascii_uppercase();
    let ds_type = model::DS_TYPES
        .iter()
        .position(|t| *t == type_name)
        .ok_or_else(|| p.fail(INTERNAL, &format!("Unknown datastore TYPE: {type_name}.")))?;
    let ds_mad = match model::get(&template, "DS_MAD") {
        Some(m) if !m.is_empty() => m.to_owned(),
        _ if type_name == "SYSTEM_DS" => "-".to_owned(),
        _ => return Err(p.fail(INTERNAL, "No DS_MAD in template.")),
    };
    let tm_mad = match model::get(&template, "TM_MAD") {
        Some(m) if !m.is_empty() => m.to_owned(),
        _ => return Err(p.fail(INTERNAL, "No TM_MAD in template.")),
    };
    model::set(&mut template, "DS_MAD", &ds_mad);
    model::set(&mut template, "TM_MAD", &tm_mad);
    model::set(&mut template, "TYPE", &type_name);
    let id = st.next_datastore;
    st.next_datastore += 1;
    st.datastores.insert(
        id,
        Datastore {
            id,
            name,
            ds_mad,
            tm_mad,
            ds_type: ds_type as i64,
            clusters: [cid].into(),
            template,
        },
    );
    if let Some(c) = st.clusters.get_mut(&cid) {
        c.datastores.insert(id);
    }
    Ok(Answer::Int(id))
}

fn datastore_info(shared: &Shared, p: &Params<'_>) -> Reply {
    let id = p.int(0)?;
    let st = lock(&shared.state);
    let d = st.datastores.get(&id).ok_or_else(|| p.no_exists("datastore", id))?;
    Ok(Answer::Str(d.xml()))
}

fn datastore_update(shared: &Shared, p: &Params<'_>) -> Reply {
    let (id, new, append) = (p.int(0)?, p.template(1)?, p.append(2)?);
    let mut st = lock(&shared.state);
    let d = st.datastores.get_mut(&id).ok_or_else(|| p.no_exists("datastore", id))?;
    model::update(&mut d.template, new, append);
    Ok(Answer::Int(id))
}

fn datastore_delete(shared: &Shared, p: &Params<'_>) -> Reply {
    let id = p.int(0)?;
    let mut st = lock(&shared.state);
    let d = st.datastores.remove(&id).ok_or_else(|| p.no_exists("datastore", id))?;
    for cid in d.clusters {
        if let Some(c) = st.clusters.get_mut(&cid) {
            c.datastores.remove(&id);
        }
    }
    Ok(Answer::Int(id))
}

// ----------------------------------------------------------------------------
// Virtual network templates and documents
// ----------------------------------------------------------------------------

fn vntemplate_pool(shared: &Shared, p: &Params<'_>) -> Reply {
    let st = lock(&shared.state);
    let mut body = String::new();
    for t in st.vntemplates.values() {
        if p.in_pool(t.id)? {
            body.push_str(&t.xml());
        }
    }
    Ok(Answer::Str(format!("<VNTEMPLATE_POOL>{body}</VNTEMPLATE_POOL>")))
}

fn vntemplate_allocate(shared: &Shared, p: &Params<'_>) -> Reply {
    let mut template = p.template(0)?;
    let mut st = lock(&shared.state);
    let name = model::take(&mut template, "NAME").unwrap_or_default();
    if let Some(e) = model::name_error(&name) {
        return Err(p.fail(INTERNAL, &e));
    }
    if let Some(t) = st.vntemplates.values().find(|t| t.name == name) {
        return Err(p.fail(INTERNAL, &format!("NAME is already taken by VN TEMPLATE {}.", t.id)));
    }
    let id = st.next_vntemplate;
    st.next_vntemplate += 1;
    st.vntemplates.insert(
        id,
        VnTemplate {
            id,
            name,
            regtime: model::now(),
            template,
        },
    );
    Ok(Answer::Int(id))
}

fn vntemplate_info(shared: &Shared, p: &Params<'_>) -> Reply {
    let id = p.int(0)?;
    let st = lock(&shared.state);
    let t = st
        .vntemplates
        .get(&id)
        .ok_or_else(|| p.no_exists("virtual network template", id))?;
    Ok(Answer::Str(t.xml()))
}

fn vntemplate_update(shared: &Shared, p: &Params<'_>) -> Reply {
    let (id, new, append) = (p.int(0)?, p.template(1)?, p.append(2)?);
    let mut st = lock(&shared.state);
    let t = st
        .vntemplates
        .get_mut(&id)
        .ok_or_else(|| p.no_exists("virtual network template", id))?;
    model::update(&mut t.template, new, append);
    Ok(Answer::Int(id))
}

fn vntemplate_delete(shared: &Shared, p: &Params<'_>) -> Reply {
    let id = p.int(0)?;
    let mut st = lock(&shared.state);
    st.vntemplates
        .remove(&id)
        .ok_or_else(|| p.no_exists("virtual network template", id))?;
    Ok(Answer::Int(id))
}
