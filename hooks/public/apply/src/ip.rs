//! Links, the host's addresses, routes and proxy and neighbour entries
//! through rtnetlink, in the driver's process ([`host_tools::netlink`]): read
//! one entry at a time for what a query names (a link by name, a route by
//! lookup, an entry by address and bridge), or whole for `reconcile`;
//! changed in order, as root, or through the root helper when not root.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use host_tools::netlink::{self, Change, Rtnl};
use public_plan::endpoint::BridgeName;
use public_plan::guard::NeighState;
use public_plan::observed::{HostAddress, Link, ObservedRoute};
use public_plan::{IpOp, Query};

use host_tools::run::{ApplyError, Tools};

/// What the kernel shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpState {
    pub links: BTreeMap<String, Link>,
    /// Main table only.
    pub routes: Vec<ObservedRoute>,
    pub proxies: BTreeSet<(IpAddr, String)>,
    /// Neighbour entries (not proxies): (address, device).
    pub neighbours: BTreeMap<(IpAddr, String), NeighState>,
    /// The host's own addresses.
    pub addresses: Vec<HostAddress>,
}

/// Links, routes and neighbour entries.
pub trait Ip {
    /// The links, routes (main table), proxy and neighbour entries and
    /// addresses `query` asks for (or more).
    fn observe(&self, query: &Query) -> Result<IpState, ApplyError>;
    /// Applies the changes in order, stopping at the first failure (the
    /// error's `failed_line` says which, 1-based), or with `keep_going`
    /// trying every one (for undoing).
    fn apply(&self, ops: &[IpOp], keep_going: bool) -> Result<(), ApplyError>;
}

/// The real kernel, through rtnetlink (changes need root: as oneadmin the
/// root helper applies them, [`crate::apply`]).
pub struct IpNetlink<'a> {
    pub tools: &'a Tools,
}

fn read_error(e: &netlink::Error) -> ApplyError {
    ApplyError::new(format!(
        "cannot read the host's links, routes or neighbour entries: {e}"
    ))
}

/// Names and indexes of links, asked once each.
struct Names {
    rtnl: Rtnl,
    names: BTreeMap<u32, Option<String>>,
}

impl Names {
    fn name(&mut self, index: u32) -> Result<Option<String>, netlink::Error> {
        if let Some(n) = self.names.get(&index) {
            return Ok(n.clone());
        }
        let name = self.rtnl.link_by_index(index)?.map(|l| l.name);
        self.names.insert(index, name.clone());
        Ok(name)
    }
}

fn link(l: &netlink::LinkEntry, master: Option<String>) -> Link {
    Link {
        kind: l.kind.clone(),
        up: l.up,
        master,
    }
}

fn route(r: &netlink::RouteEntry, dev: Option<String>) -> ObservedRoute {
    ObservedRoute {
        dst: r.dst,
        len: r.len,
        dev,
        gateway: r.gateway,
        kind: r.kind.clone(),
    }
}

/// Past this many entries of a kind, one dump reads them (one request
/// each costs more: `reconcile` asks for thousands).
const DUMP_FROM: usize = 32;

/// Reads what `query` asks for.
pub fn observe_netlink(rtnl: Rtnl, query: &Query) -> Result<IpState, netlink::Error> {
    let mut n = Names {
        rtnl,
        names: BTreeMap::new(),
    };
    let mut state = IpState::default();
    // Links: by name, the ports of a bridge the plan may delete; or all.
    let mut entries = Vec::new();
    if query.all {
        entries = n.rtnl.links(None)?;
    } else {
        for name in &query.links {
            if let Some(l) = n.rtnl.link(name.as_str())? {
                let ports = if query.ports.contains(name) {
                    n.rtnl.links(Some(l.index))?
                } else {
                    Vec::new()
                };
                entries.push(l);
                entries.extend(ports);
            }
        }
    }
    for l in &entries {
        n.names.insert(l.index, Some(l.name.clone()));
    }
    for l in &entries {
        let master = match l.master {
            Some(m) => n.name(m)?,
            None => None,
        };
        state.links.insert(l.name.clone(), link(l, master));
    }
    // The host's addresses, of the families asked for.
    for (ipv4, wanted) in [(true, query.addresses.0), (false, query.addresses.1)] {
        if wanted {
            for a in n.rtnl.addresses(ipv4)? {
                if let Some(dev) = n.name(a.index)? {
                    state.addresses.push(HostAddress {
                        addr: a.addr,
                        len: a.len,
                        dev,
                    });
                }
            }
        }
    }
    // Routes: the one the kernel's lookup matches, when it is the prefix
    // asked for or less specific and in the main table; else (a more
    // specific route, a policy rule's table, a lookup that ends in a
    // blackhole or finds nothing) the main table of that family.
    let mut dumped = BTreeSet::new();
    let mut routes = Vec::new();
    if query.all {
        for ipv4 in [true, false] {
            routes.extend(n.rtnl.routes(ipv4)?);
        }
    } else {
        // Many routes of a family (`reconcile`): its main table in one dump.
        for ipv4 in [true, false] {
            if query.routes.iter().filter(|(d, _)| d.is_ipv4() == ipv4).count() > DUMP_FROM {
                routes.extend(n.rtnl.routes(ipv4)?);
                dumped.insert(ipv4);
            }
        }
        for &(dst, len) in &query.routes {
            if dumped.contains(&dst.is_ipv4()) {
                continue;
            }
            let found = match n.rtnl.route_match(dst) {
                Ok(found) => found,
                Err(e) if e.errno.is_some() => None,
                Err(e) => return Err(e),
            };
            match found {
                Some(r) if r.len == len && r.dst == dst && r.table == netlink::MAIN_TABLE => routes.push(r),
                Some(r) if r.len < len && r.table == netlink::MAIN_TABLE => {}
                _ => {
                    routes.retain(|r: &netlink::RouteEntry| r.dst.is_ipv4() != dst.is_ipv4());
                    routes.extend(n.rtnl.routes(dst.is_ipv4())?);
                    dumped.insert(dst.is_ipv4());
                }
            }
        }
    }
    for r in &routes {
        let dev = match r.oif {
            Some(i) => n.name(i)?,
            None => None,
        };
        state.routes.push(route(r, dev));
    }
    // Proxy and neighbour entries: by address and bridge; or all.
    if query.all {
        for ipv4 in [true, false] {
            for p in n.rtnl.neighbours(ipv4, true)? {
                if let Some(dev) = n.name(p.index)? {
                    state.proxies.insert((p.addr, dev));
                }
            }
            for e in n.rtnl.neighbours(ipv4, false)? {
                if let Some(dev) = n.name(e.index)? {
                    state.neighbours.insert((e.addr, dev), neigh_state(&e));
                }
            }
        }
        return Ok(state);
    }
    let index = |state: &IpState, n: &mut Names, dev: &str| -> Result<Option<u32>, netlink::Error> {
        if !state.links.contains_key(dev) {
            return Ok(None);
        }
        Ok(n.rtnl.link(dev)?.map(|l| l.index))
    };
    let mut indexes: BTreeMap<String, Option<u32>> = BTreeMap::new();
    for (proxy, set) in [(true, &query.proxies), (false, &query.neighbours)] {
        // Many entries (`reconcile`): each family's in one dump, those
        // asked for kept.
        if set.len() > DUMP_FROM {
            for ipv4 in [true, false] {
                if !set.iter().any(|(a, _)| a.is_ipv4() == ipv4) {
                    continue;
                }
                for e in n.rtnl.neighbours(ipv4, proxy)? {
                    let Some(dev) = n.name(e.index)? else { continue };
                    let asked = BridgeName::parse(&dev).is_ok_and(|b| set.contains(&(e.addr, b)));
                    if !asked {
                        continue;
                    }
                    let key = (e.addr, dev);
                    if proxy {
                        state.proxies.insert(key);
                    } else {
                        state.neighbours.insert(key, neigh_state(&e));
                    }
                }
            }
            continue;
        }
        for (addr, dev) in set {
            let i = match indexes.get(dev.as_str()) {
                Some(i) => *i,
                None => {
                    let i = index(&state, &mut n, dev.as_str())?;
                    indexes.insert(dev.as_str().to_owned(), i);
                    i
                }
            };
            let Some(i) = i else { continue };
            if let Some(e) = n.rtnl.neighbour(*addr, i, proxy)? {
                let key = (*addr, dev.as_str().to_owned());
                if proxy {
                    state.proxies.insert(key);
                } else {
                    state.neighbours.insert(key, neigh_state(&e));
                }
            }
        }
    }
    Ok(state)
}

fn neigh_state(e: &netlink::NeighEntry) -> NeighState {
    NeighState {
        mac: e.mac,
        permanent: e.permanent,
    }
}

/// Applies `ops` in order through `rtnl` (as root): `Err` names the first
/// failure and its 1-based position; with `keep_going` every op is tried.
/// A run of route and neighbour changes goes in one batch (one write for
/// many: `reconcile` makes thousands); when one of them fails and not
/// `keep_going`, the ones after it in the batch are undone, so only the
/// changes before the failure stay made, as when they go one by one.
pub fn apply_netlink(rtnl: &mut Rtnl, ops: &[IpOp], keep_going: bool) -> Result<(), ApplyError> {
    // Each device's index, asked once (a link created or deleted is asked again).
    let mut indexes: BTreeMap<String, u32> = BTreeMap::new();
    let mut first: Option<ApplyError> = None;
    let mut i = 0;
    while i < ops.len() {
        let run = ops[i..].iter().take_while(|o| batched(o)).count().max(1);
        let outcome = if run > 1 {
            batch(rtnl, &mut indexes, &ops[i..i + run])
        } else {
            if matches!(ops[i], IpOp::AddBridge { .. } | IpOp::DeleteLink(_)) {
                indexes.remove(ops[i].dev());
            }
            vec![apply_one(rtnl, &mut indexes, &ops[i]).map_err(|e| e.to_string())]
        };
        if let Some(k) = outcome.iter().position(Result::is_err) {
            let op = &ops[i + k];
            let e = ApplyError {
                message: format!("`ip {op}` failed: {}", outcome[k].clone().err().unwrap_or_default()),
                failed_line: Some(i + k + 1),
                nft_refused: false,
            };
            if !keep_going {
                let made = ops[i + k + 1..i + run]
                    .iter()
                    .zip(&outcome[k + 1..])
                    .filter(|(_, r)| r.is_ok())
                    .map(|(op, _)| op);
                let undo: Vec<IpOp> = made.rev().filter_map(IpOp::undo).collect();
                for op in &undo {
                    let _ = apply_one(rtnl, &mut indexes, op);
                }
                return Err(e);
            }
            first.get_or_insert(e);
        }
        i += run;
    }
    first.map_or(Ok(()), Err)
}

/// Route and neighbour changes: what goes in a batch.
fn batched(op: &IpOp) -> bool {
    !matches!(op, IpOp::AddBridge { .. } | IpOp::SetUp(_) | IpOp::DeleteLink(_))
}

/// Route and neighbour changes in one batch: each one's result.
fn batch(rtnl: &mut Rtnl, indexes: &mut BTreeMap<String, u32>, ops: &[IpOp]) -> Vec<Result<(), String>> {
    let mut out: Vec<Result<(), String>> = vec![Ok(()); ops.len()];
    let mut changes = Vec::new();
    let mut sent = Vec::new();
    for (k, op) in ops.iter().enumerate() {
        match index(rtnl, indexes, op.dev()) {
            Ok(i) => {
                changes.extend(change(op, i));
                sent.push(k);
            }
            Err(e) => out[k] = Err(e.to_string()),
        }
    }
    match rtnl.apply_all(changes) {
        Ok(results) => {
            for (k, r) in sent.into_iter().zip(results) {
                out[k] = r.map_err(|e| e.to_string());
            }
        }
        // The socket failed: what the kernel made of the batch is unknown.
        Err(e) => {
            for k in sent {
                out[k] = Err(format!("{e} (a batch of changes; run the action again)"));
            }
        }
    }
    out
}

/// The index of device `dev`, asked once.
fn index(rtnl: &mut Rtnl, indexes: &mut BTreeMap<String, u32>, dev: &str) -> Result<u32, netlink::Error> {
    if let Some(i) = indexes.get(dev) {
        return Ok(*i);
    }
    let i = rtnl.link(dev)?.map(|l| l.index).ok_or_else(|| netlink::Error {
        errno: Some(19),
        message: format!("Cannot find device \"{dev}\""),
    })?;
    indexes.insert(dev.to_owned(), i);
    Ok(i)
}

/// A route or neighbour change on the device with index `i` (`None`: a
/// link change).
fn change(op: &IpOp, i: u32) -> Option<Change> {
    Some(match *op {
        IpOp::AddRoute(r) | IpOp::DeleteRoute(r) => {
            Change::route(matches!(op, IpOp::AddRoute(_)), r.dst, r.len, r.via, i)
        }
        IpOp::AddProxy(p) | IpOp::DeleteProxy(p) => Change::proxy(matches!(op, IpOp::AddProxy(_)), p.addr, i),
        IpOp::SetNeigh(n) => Change::neighbour(n.addr, i, n.mac),
        IpOp::DeleteNeigh(n) => Change::delete_neighbour(n.addr, i),
        IpOp::AddBridge { .. } | IpOp::SetUp(_) | IpOp::DeleteLink(_) => return None,
    })
}

/// Runs `one` on each of `ops` in order (with its 0-based position),
/// stopping at the first failure or, with `keep_going`, trying every one:
/// the error names the first failed change and its 1-based position: the
/// fake host's way to apply a list of changes, reporting as
/// [`apply_netlink`] does.
pub fn in_order(
    ops: &[IpOp],
    keep_going: bool,
    mut one: impl FnMut(usize, &IpOp) -> Result<(), String>,
) -> Result<(), ApplyError> {
    let mut first: Option<ApplyError> = None;
    for (i, op) in ops.iter().enumerate() {
        if let Err(m) = one(i, op) {
            let e = ApplyError {
                message: format!("`ip {op}` failed: {m}"),
                failed_line: Some(i + 1),
                nft_refused: false,
            };
            if !keep_going {
                return Err(e);
            }
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

fn apply_one(rtnl: &mut Rtnl, indexes: &mut BTreeMap<String, u32>, op: &IpOp) -> Result<(), netlink::Error> {
    let i = match *op {
        IpOp::AddBridge { name, mac } => return rtnl.add_bridge(name.as_str(), mac),
        _ => index(rtnl, indexes, op.dev())?,
    };
    match (op, change(op, i)) {
        (_, Some(c)) => rtnl.apply(c),
        (IpOp::DeleteLink(_), None) => rtnl.delete_link(i),
        (_, None) => rtnl.set_up(i),
    }
}

/// `02:00:ac:1e:00:02` as bytes.
pub(crate) fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

impl Ip for IpNetlink<'_> {
    fn observe(&self, query: &Query) -> Result<IpState, ApplyError> {
        let rtnl = Rtnl::open(self.tools.timeout()).map_err(|e| read_error(&e))?;
        observe_netlink(rtnl, query).map_err(|e| read_error(&e))
    }

    fn apply(&self, ops: &[IpOp], keep_going: bool) -> Result<(), ApplyError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut rtnl = Rtnl::open(self.tools.timeout()).map_err(|e| ApplyError::new(e.message))?;
        apply_netlink(&mut rtnl, ops, keep_going).map_err(|mut e| {
            if e.message.contains("Operation not permitted") {
                e.message
                    .push_str(" (network changes need root: run the driver as root, or set ONE_SCALEWAY_SUDO=always)");
            }
            e
        })
    }
}
