//! Address ranges of networks: `one.vn.add_ar`, `rm_ar`, `update_ar`,
//! their IPAM driver runs, and leases.

use std::collections::BTreeMap;

use super::ar::{ADDRESS_SKELETON, Ar, request};
use super::model;
use super::params::{Params, Reply};
use super::rpc::{ACTION, Answer, INTERNAL};
use super::vnet::{READY, UPDATE_FAILURE, Vnet, state_name};
use super::{Lease, Shared, driver, lock};

/// The argument of an IPAM driver run: a new request id.
pub(crate) fn request_id(shared: &Shared) -> String {
    shared
        .next_request
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .to_string()
}

/// Adds one range to a network as `VirtualNetwork::add_ar` does: the
/// network's `IPAM_MAD` for a range without one, the driver's
/// registration merged over the range, then oned's checks.
pub(crate) fn add_range(shared: &Shared, id: i64, pairs: &[(String, String)]) -> Result<i64, String> {
    let mut attrs: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in pairs {
        attrs.entry(k.to_ascii_uppercase()).or_insert_with(|| v.clone());
    }
    let ar_id = {
        let mut st = lock(&shared.state);
        let v = st.vnets.get_mut(&id).ok_or("the network is gone")?;
        if attrs.get("IPAM_MAD").is_none_or(String::is_empty)
            && let Some(mad) = model::get(&v.template, "IPAM_MAD").filter(|m| !m.is_empty())
        {
            attrs.insert("IPAM_MAD".into(), mad.to_owned());
        }
        v.next_ar += 1;
        v.next_ar - 1
    };
    let release_id = |shared: &Shared| {
        if let Some(v) = lock(&shared.state).vnets.get_mut(&id) {
            v.next_ar -= 1;
        }
    };
    let mad = attrs
        .get("IPAM_MAD")
        .filter(|m| !m.is_empty() && m.as_str() != "internal")
        .cloned();
    if let Some(mad) = mad {
        let pairs: Vec<(String, String)> = attrs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let message = request(&model::vector_xml("AR", &pairs), ADDRESS_SKELETON);
        let ran = driver::run(
            shared,
            shared.config.ipam_dir.as_deref(),
            &mad,
            "register_address_range",
            &request_id(shared),
            &message,
        );
        let answer = if ran.ok() {
            driver::answer_vector(&ran.stdout, "AR")
        } else {
            Err(ran.error())
        };
        match answer {
            // `vattr->replace(new_ar->value())`: the answer over the request.
            Ok(answered) => attrs.extend(answered.into_iter().map(|(k, v)| (k.to_ascii_uppercase(), v))),
            Err(e) => {
                release_id(shared);
                return Err(e);
            }
        }
    }
    match Ar::from_attrs(ar_id, attrs) {
        Ok(ar) => {
            let mut st = lock(&shared.state);
            let v = st.vnets.get_mut(&id).ok_or("the network is gone")?;
            v.ars.insert(ar_id, ar);
            Ok(ar_id)
        }
        Err(e) => {
            release_id(shared);
            Err(e)
        }
    }
}

/// The network of an operation that needs it READY (or UPDATE_FAILURE).
pub(crate) fn ready<'a>(st: &'a mut model::State, p: &Params<'_>, id: i64, what: &str) -> Result<&'a mut Vnet, Answer> {
    let v = st
        .vnets
        .get_mut(&id)
        .ok_or_else(|| p.no_exists("virtual network", id))?;
    if v.state != READY && v.state != UPDATE_FAILURE {
        return Err(p.fail(
            ACTION,
            &format!("{what}Virtual Network is in wrong state: {}", state_name(v.state)),
        ));
    }
    Ok(v)
}

/// `one.vn.add_ar(id, template)`: the first `AR` of the template.
pub(crate) fn add_ar(shared: &Shared, p: &Params<'_>) -> Reply {
    let (id, mut template) = (p.int(0)?, p.template(1)?);
    let _drivers = lock(&shared.drivers);
    ready(&mut lock(&shared.state), p, id, "Could not add Address Range, ")?;
    let Some(pairs) = model::take_vectors(&mut template, "AR").into_iter().next() else {
        return Err(p.fail(INTERNAL, "Wrong AR definition. AR vector attribute is missing."));
    };
    add_range(shared, id, &pairs).map_err(|e| p.fail(INTERNAL, &e))?;
    Ok(Answer::Int(id))
}

/// `one.vn.rm_ar(id, ar_id[, force])`.
pub(crate) fn rm_ar(shared: &Shared, p: &Params<'_>) -> Reply {
    let (id, ar_id, force) = (p.int(0)?, p.int(1)?, p.bool_or(2, false)?);
    let _drivers = lock(&shared.drivers);
    let unregister = {
        let mut st = lock(&shared.state);
        let v = ready(&mut st, p, id, "Could not remove Adress Range, ")?;
        let ar = v
            .ars
            .get(&ar_id)
            .ok_or_else(|| p.fail(INTERNAL, "Address Range does not exist"))?;
        if !force && ar.used() > 0 {
            return Err(p.fail(INTERNAL, "Address Range has leases in use"));
        }
        ar.ipam_mad()
            .map(|mad| (mad.to_owned(), request(&ar.request_xml(), ADDRESS_SKELETON)))
    };
    if let Some((mad, message)) = unregister {
        let ipam_dir = shared.config.ipam_dir.as_deref();
        let ran = driver::run(
            shared,
            ipam_dir,
            &mad,
            "unregister_address_range",
            &request_id(shared),
            &message,
        );
        if !ran.ok() && !force {
            return Err(p.fail(INTERNAL, &ran.error()));
        }
    }
    if let Some(v) = lock(&shared.state).vnets.get_mut(&id) {
        v.ars.remove(&ar_id);
    }
    Ok(Answer::Int(id))
}

/// `one.vn.update_ar(id, template)`: the range's attributes replaced, oned's
/// fixed ones (TYPE, addresses, IPAM_MAD, AR_ID) kept.
pub(crate) fn update_ar(shared: &Shared, p: &Params<'_>) -> Reply {
    let (id, mut template) = (p.int(0)?, p.template(1)?);
    let Some(pairs) = model::take_vectors(&mut template, "AR").into_iter().next() else {
        return Err(p.fail(INTERNAL, "Wrong AR definition. AR vector attribute is missing."));
    };
    let mut attrs: BTreeMap<String, String> = pairs.into_iter().collect();
    let ar_id: i64 = attrs
        .get("AR_ID")
        .and_then(|a| a.trim().parse().ok())
        .ok_or_else(|| p.fail(INTERNAL, "AR/AR_ID attribute is missing."))?;
    let mut st = lock(&shared.state);
    let v = st
        .vnets
        .get_mut(&id)
        .ok_or_else(|| p.no_exists("virtual network", id))?;
    let old = v
        .ars
        .get(&ar_id)
        .ok_or_else(|| p.fail(INTERNAL, &format!("Address Range with ID {ar_id} was not found.")))?;
    for fixed in ["TYPE", "MAC", "IPAM_MAD", "IP", "IP6", "AR_ID", "PREFIX_LENGTH"] {
        match old.attrs.get(fixed) {
            Some(value) => attrs.insert(fixed.into(), value.clone()),
            None => attrs.remove(fixed),
        };
    }
    if attrs.get("SIZE").is_none_or(String::is_empty)
        && let Some(size) = old.attrs.get("SIZE")
    {
        attrs.insert("SIZE".into(), size.clone());
    }
    let mut new = Ar::from_attrs(ar_id, attrs).map_err(|e| p.fail(INTERNAL, &e))?;
    for (index, vm) in &old.leases {
        if new.index_of_mac(&old.lease_view(*index, *vm).mac) != Some(*index) {
            return Err(p.fail(
                INTERNAL,
                "New SIZE cannot be applied. There are used leases that would fall outside the range.",
            ));
        }
        new.set_lease(*index, Some(*vm));
    }
    v.ars.insert(ar_id, new);
    Ok(Answer::Int(id))
}

/// A network's range, for the lease methods.
fn range(st: &mut model::State, vnet_id: i64, ar_id: i64) -> Result<&mut Ar, String> {
    st.vnets
        .get_mut(&vnet_id)
        .ok_or_else(|| format!("no virtual network {vnet_id}"))?
        .ars
        .get_mut(&ar_id)
        .ok_or_else(|| format!("virtual network {vnet_id} has no address range {ar_id}"))
}

/// See [`super::OnedSim::lease`].
pub(crate) fn lease(shared: &Shared, vnet_id: i64, ar_id: i64, vm: i64) -> Result<Lease, String> {
    let _drivers = lock(&shared.drivers);
    let ask = {
        let mut st = lock(&shared.state);
        let ar = range(&mut st, vnet_id, ar_id)?;
        match ar.ipam_mad() {
            Some(mad) => (
                mad.to_owned(),
                request(&ar.request_xml(), "<ADDRESS><SIZE>1</SIZE></ADDRESS>"),
            ),
            None => {
                let index = ar
                    .first_free()
                    .ok_or_else(|| format!("address range {ar_id} has no free address"))?;
                ar.set_lease(index, Some(vm));
                return Ok(ar.lease_view(index, vm));
            }
        }
    };
    let ipam_dir = shared.config.ipam_dir.as_deref();
    let ran = driver::run(shared, ipam_dir, &ask.0, "get_address", &request_id(shared), &ask.1);
    if !ran.ok() {
        return Err(ran.error());
    }
    let address: BTreeMap<String, String> = driver::answer_vector(&ran.stdout, "ADDRESS")?.into_iter().collect();
    let ip = address
        .get("IP")
        .or_else(|| address.get("IP6"))
        .cloned()
        .unwrap_or_default();
    let mut st = lock(&shared.state);
    let ar = range(&mut st, vnet_id, ar_id)?;
    let index = ar
        .index_of_ip(&ip)
        .ok_or_else(|| format!("Address returned by IPAM is not valid: {ip}"))?;
    if ar.leases.contains_key(&index) {
        return Err("Address returned by IPAM are not within AR or in use".into());
    }
    ar.set_lease(index, Some(vm));
    Ok(ar.lease_view(index, vm))
}

/// See [`super::OnedSim::release`].
pub(crate) fn release(shared: &Shared, vnet_id: i64, ar_id: i64, mac: &str) -> Result<(), String> {
    let _drivers = lock(&shared.drivers);
    let (index, tell) = {
        let mut st = lock(&shared.state);
        let ar = range(&mut st, vnet_id, ar_id)?;
        let index = ar
            .index_of_mac(mac)
            .filter(|i| ar.leases.contains_key(i))
            .ok_or_else(|| format!("address range {ar_id} has no lease with MAC {mac}"))?;
        let tell = ar
            .ipam_mad()
            .map(|mad| (mad.to_owned(), request(&ar.request_xml(), &ar.address_xml(index, 1))));
        (index, tell)
    };
    if let Some((mad, message)) = tell {
        let ipam_dir = shared.config.ipam_dir.as_deref();
        let ran = driver::run(shared, ipam_dir, &mad, "free_address", &request_id(shared), &message);
        if !ran.ok() {
            return Err(ran.error());
        }
    }
    let mut st = lock(&shared.state);
    range(&mut st, vnet_id, ar_id)?.set_lease(index, None);
    Ok(())
}
