//! What leaving a host takes: the kernel objects of the endpoints that go,
//! those another endpoint still needs kept.

use super::*;

/// Removes what `request.remove` had and no other endpoint needs.
pub(super) fn plan_removal(request: &Request, observed: &Observed, p: &mut Plan) {
    if request.remove.is_empty() {
        return;
    }
    let mut still_routes = BTreeSet::new();
    let mut still_proxies = BTreeSet::new();
    let mut still_external = BTreeSet::new();
    let mut still_private = BTreeSet::new();
    let mut still_bridges = request.busy_bridges.clone();
    for e in request.ensure.iter().chain(&request.keep) {
        still_bridges.insert(e.bridge);
        let o = objects(e);
        still_routes.extend(o.routes);
        still_proxies.extend(o.proxies);
        if let Some((external, ip)) = o.nat {
            still_external.insert(external);
            still_private.insert(ip);
        }
    }
    let keep = Index::of(&request.keep);
    let mut routes = Ordered::new();
    let mut proxies = Ordered::new();
    let mut bridges = Ordered::new();
    for e in &request.remove {
        bridges.push(e.bridge);
        let o = objects(e);
        // Routes through the VM's address go before the route to it.
        for r in o.routes.into_iter().rev() {
            let present = observed.routes.iter().any(|x| {
                x.dst == r.dst
                    && x.len == r.len
                    && x.dev.as_deref() == Some(r.dev.as_str())
                    && x.gateway == r.via
                    && x.kind.is_none()
            });
            if present && !still_routes.contains(&r) {
                routes.push(r);
            }
        }
        for x in o.proxies {
            if observed.has_proxy(x.addr, x.dev) && !still_proxies.contains(&x) {
                proxies.push(x);
            }
        }
        if let Some((external, ip)) = o.nat {
            match observed.nat.get(NFT_DNAT_MAP, external) {
                Some(v) if v == ip && !still_external.contains(&external) => {
                    p.nft.ops.push(NftOp::DeleteDnat { external, ip });
                }
                Some(v) if v != ip => p.notes.push(format!(
                    "left {NFT_DNAT_MAP} element {external} : {v} alone: it maps {external} to another private IP ({}), not {ip} of {}",
                    holder(keep.owner_of_private(v)),
                    e.owner
                )),
                _ => {}
            }
            match observed.nat.get(NFT_SNAT_MAP, ip) {
                Some(v) if v == external && !still_private.contains(&ip) => {
                    p.nft.ops.push(NftOp::DeleteSnat { ip, external });
                }
                Some(v) if v != external => p.notes.push(format!(
                    "left {NFT_SNAT_MAP} element {ip} : {v} alone: it translates {ip} to another flexible IP ({}), not {external} of {}",
                    holder(keep.owner_of_external(v)),
                    e.owner
                )),
                _ => {}
            }
        }
    }
    p.ip_after.extend(routes.items.into_iter().map(IpOp::DeleteRoute));
    p.ip_after.extend(proxies.items.into_iter().map(IpOp::DeleteProxy));
    for b in bridges.items {
        if !request.owned_bridges.contains(&b) || still_bridges.contains(&b) {
            continue;
        }
        match observed.link(b) {
            None => p.bridges_deleted.push(b),
            Some(l) if l.kind.as_deref() != Some("bridge") => p.bridges_deleted.push(b),
            Some(_) => {
                let ports = observed.ports(b);
                if ports.is_empty() {
                    p.ip_after.push(IpOp::DeleteLink(b));
                    p.bridges_deleted.push(b);
                } else {
                    p.notes.push(format!(
                        "keeping bridge {b}: no public NIC of ours uses it any more, but it still has ports ({})",
                        ports.join(", ")
                    ));
                }
            }
        }
    }
}
