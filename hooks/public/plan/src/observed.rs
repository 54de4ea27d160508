//! The host state a plan starts from, as `public_apply` observed it (plain data:
//! this crate never reads it itself).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use crate::endpoint::BridgeName;
use crate::guard::{GuardState, NeighState};
use crate::ops::SysctlKey;

/// Everything the planner looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub nat: NatState,
    /// The port guard's table.
    pub guard: GuardState,
    /// The security groups' table.
    pub filter: crate::filter::FilterState,
    /// Neighbour entries (address, device): those asked for, or more.
    pub neighbours: BTreeMap<(IpAddr, String), NeighState>,
    /// Every link, by name.
    pub links: BTreeMap<String, Link>,
    /// Routes of the main table, both families: those the
    /// [`crate::needs::Query`] asked for, or more.
    pub routes: Vec<ObservedRoute>,
    /// Proxy neighbour entries: (address, device), those asked for or more.
    pub proxies: BTreeSet<(IpAddr, String)>,
    /// The sysctls the query asked for;
    /// absent when the file does not exist (a device not created yet).
    pub sysctls: BTreeMap<SysctlKey, String>,
    /// The host's own addresses (`ip addr`), each with its subnet.
    pub addresses: Vec<HostAddress>,
}

/// One of the host's own addresses and the subnet it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddress {
    pub addr: IpAddr,
    pub len: u8,
    pub dev: String,
}

impl HostAddress {
    /// Whether `ip` is in this address's subnet.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && Self::base(ip, self.len) == self.network()
    }

    /// The subnet's first address.
    pub fn network(&self) -> IpAddr {
        Self::base(self.addr, self.len)
    }

    fn base(ip: IpAddr, len: u8) -> IpAddr {
        match ip {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len.min(128))).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }

    /// IPv6 link-local (every interface has one; no VM address is one).
    pub fn is_link_local(&self) -> bool {
        matches!(self.addr, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80)
    }
}

impl Observed {
    pub fn link(&self, name: BridgeName) -> Option<&Link> {
        self.links.get(name.as_str())
    }

    /// Names of the links enslaved to `bridge` (VM taps, veths...).
    pub fn ports(&self, bridge: BridgeName) -> Vec<&str> {
        self.links
            .iter()
            .filter(|(_, l)| l.master.as_deref() == Some(bridge.as_str()))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    pub fn has_proxy(&self, addr: IpAddr, dev: BridgeName) -> bool {
        self.proxies.contains(&(addr, dev.as_str().to_owned()))
    }
}

/// One link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Link {
    /// `bridge`, `veth`, ... (`None` for a physical device).
    pub kind: Option<String>,
    /// Administratively up.
    pub up: bool,
    /// The bridge it is a port of.
    pub master: Option<String>,
}

/// One route of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedRoute {
    pub dst: IpAddr,
    pub len: u8,
    pub dev: Option<String>,
    pub gateway: Option<IpAddr>,
    /// The route type when it is not `unicast` (`blackhole`, `local`...).
    pub kind: Option<String>,
}

/// Our nftables table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatState {
    pub table: bool,
    pub maps: BTreeMap<String, MapState>,
    pub chains: BTreeMap<String, ChainState>,
}

impl NatState {
    /// The element `key` of map `map`, if any.
    pub fn get(&self, map: &str, key: Ipv4Addr) -> Option<Ipv4Addr> {
        self.maps.get(map).and_then(|m| m.elements.get(&key).copied())
    }
}

/// One map of our table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapState {
    pub key_type: String,
    pub data_type: String,
    pub elements: BTreeMap<Ipv4Addr, Ipv4Addr>,
}

/// One chain of our table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainState {
    /// `nat`, `filter`... (`None` for a regular chain).
    pub kind: Option<String>,
    pub hook: Option<String>,
    pub prio: Option<i64>,
    pub rules: Vec<Rule>,
}

/// One rule, as far as we recognise it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `dnat to ip <field> map @<map>` (`snat: false`) or
    /// `snat to ip <field> map @<map>` (`snat: true`).
    NatMap { snat: bool, field: String, map: String },
    /// `secgroup::SKIP_PRIVATE`: bridged private traffic is accepted untouched.
    SkipPrivate,
    /// Anything else (its text, for messages).
    Other(String),
}

/// The host after `plan` is applied to `before`, with the kernel's rules
/// (adding a route that exists fails, deleting a missing one fails; nft
/// elements are added and deleted idempotently, a key mapped elsewhere
/// fails the transaction): what the fake host of `public_apply` and the tests
/// build on.
pub fn simulate(before: &Observed, plan: &crate::plan::Plan) -> Result<Observed, String> {
    let mut after = before.clone();
    for op in &plan.ip_before {
        simulate_ip(&mut after, op)?;
    }
    for s in &plan.sysctls {
        after.sysctls.insert(s.key.clone(), s.value.to_owned());
    }
    simulate_nft(&mut after.nat, &mut after.guard, &mut after.filter, &plan.nft)?;
    for op in &plan.ip_after {
        simulate_ip(&mut after, op)?;
    }
    Ok(after)
}

/// One `ip` command on the simulated host.
pub fn simulate_ip(host: &mut Observed, op: &crate::ops::IpOp) -> Result<(), String> {
    use crate::ops::IpOp;
    match *op {
        IpOp::AddBridge { name, .. } => {
            if host.links.contains_key(name.as_str()) {
                return Err("RTNETLINK answers: File exists".into());
            }
            host.links.insert(
                name.as_str().to_owned(),
                Link {
                    kind: Some("bridge".into()),
                    up: false,
                    master: None,
                },
            );
        }
        IpOp::SetUp(name) => {
            host.links
                .get_mut(name.as_str())
                .ok_or_else(|| format!("Cannot find device \"{name}\""))?
                .up = true;
        }
        IpOp::DeleteLink(name) => {
            host.links
                .remove(name.as_str())
                .ok_or_else(|| format!("Cannot find device \"{name}\""))?;
            let dev = Some(name.as_str().to_owned());
            host.routes.retain(|r| r.dev != dev);
            host.proxies.retain(|(_, d)| d != name.as_str());
            host.neighbours.retain(|(_, d), _| d != name.as_str());
            host.sysctls.retain(|k, _| !k.is_of_device(name));
            for l in host.links.values_mut() {
                if l.master.as_deref() == Some(name.as_str()) {
                    l.master = None;
                }
            }
        }
        IpOp::AddRoute(r) => {
            let link = host
                .links
                .get(r.dev.as_str())
                .ok_or_else(|| format!("Cannot find device \"{}\"", r.dev))?;
            if !link.up {
                return Err("Error: Device for nexthop is not up.".into());
            }
            if host.routes.iter().any(|x| x.dst == r.dst && x.len == r.len) {
                return Err("RTNETLINK answers: File exists".into());
            }
            if let Some(via) = r.via
                && !host.routes.iter().any(|x| x.dst == via)
            {
                return Err("Error: Nexthop has invalid gateway.".into());
            }
            host.routes.push(ObservedRoute {
                dst: r.dst,
                len: r.len,
                dev: Some(r.dev.as_str().to_owned()),
                gateway: r.via,
                kind: None,
            });
        }
        IpOp::DeleteRoute(r) => {
            let before = host.routes.len();
            host.routes
                .retain(|x| !(x.dst == r.dst && x.len == r.len && x.dev.as_deref() == Some(r.dev.as_str())));
            if host.routes.len() == before {
                return Err("RTNETLINK answers: No such process".into());
            }
        }
        IpOp::AddProxy(p) => {
            if !host.links.contains_key(p.dev.as_str()) {
                return Err(format!("Cannot find device \"{}\"", p.dev));
            }
            // The kernel accepts a proxy entry that exists.
            host.proxies.insert((p.addr, p.dev.as_str().to_owned()));
        }
        IpOp::DeleteProxy(p) => {
            if !host.proxies.remove(&(p.addr, p.dev.as_str().to_owned())) {
                return Err("RTNETLINK answers: No such file or directory".into());
            }
        }
        IpOp::SetNeigh(n) => {
            if !host.links.contains_key(n.dev.as_str()) {
                return Err(format!("Cannot find device \"{}\"", n.dev));
            }
            host.neighbours.insert(
                (n.addr, n.dev.as_str().to_owned()),
                NeighState {
                    mac: Some(n.mac),
                    permanent: true,
                },
            );
        }
        IpOp::DeleteNeigh(n) => {
            if host.neighbours.remove(&(n.addr, n.dev.as_str().to_owned())).is_none() {
                return Err("RTNETLINK answers: No such file or directory".into());
            }
        }
    }
    Ok(())
}

/// One `nft -f -` transaction on the simulated tables: all or nothing.
pub fn simulate_nft(
    nat: &mut NatState,
    guard: &mut GuardState,
    filter: &mut crate::filter::FilterState,
    batch: &crate::ops::NftBatch,
) -> Result<(), String> {
    use crate::ops::{NFT_DNAT_MAP, NFT_POSTROUTING, NFT_PREROUTING, NFT_SNAT_MAP, NftOp};
    let mut next = nat.clone();
    let mut next_guard = guard.clone();
    let mut next_filter = filter.clone();
    crate::guard::simulate(&mut next_guard, &batch.ops)?;
    crate::filter::simulate(&mut next_filter, &batch.ops)?;
    // The order nft applies the rendered script in: base, deletions, additions.
    let rank = |op: &NftOp| match op {
        NftOp::EnsureBase => 0,
        NftOp::DeleteDnat { .. } | NftOp::DeleteSnat { .. } => 1,
        _ => 2,
    };
    let mut ops = batch.ops.clone();
    ops.sort_by_key(rank);
    for op in ops {
        match op {
            NftOp::EnsureGuard
            | NftOp::AddGuard(_)
            | NftOp::DeleteGuard(_)
            | NftOp::EnsureFilters
            | NftOp::SetChain { .. }
            | NftOp::DeleteChain(_)
            | NftOp::AddFilterAddr { .. }
            | NftOp::DeleteFilterAddr { .. } => {}
            NftOp::EnsureBase => {
                next.table = true;
                for map in [NFT_DNAT_MAP, NFT_SNAT_MAP] {
                    next.maps.entry(map.to_owned()).or_insert_with(|| MapState {
                        key_type: "ipv4_addr".into(),
                        data_type: "ipv4_addr".into(),
                        elements: BTreeMap::new(),
                    });
                }
                for (chain, hook, prio, snat, field, map) in [
                    (NFT_PREROUTING, "prerouting", -100, false, "daddr", NFT_DNAT_MAP),
                    (NFT_POSTROUTING, "postrouting", 100, true, "saddr", NFT_SNAT_MAP),
                ] {
                    let c = next.chains.entry(chain.to_owned()).or_insert_with(|| ChainState {
                        kind: Some("nat".into()),
                        hook: Some(hook.into()),
                        prio: Some(prio),
                        rules: Vec::new(),
                    });
                    c.rules = vec![
                        Rule::SkipPrivate,
                        Rule::NatMap {
                            snat,
                            field: field.into(),
                            map: map.into(),
                        },
                    ];
                }
            }
            NftOp::AddDnat { external: k, ip: v } | NftOp::AddSnat { ip: k, external: v } => {
                let map = if matches!(op, NftOp::AddDnat { .. }) {
                    NFT_DNAT_MAP
                } else {
                    NFT_SNAT_MAP
                };
                let m = next.maps.get_mut(map).ok_or("Error: No such file or directory")?;
                match m.elements.get(&k) {
                    Some(old) if *old != v => return Err("Error: Could not process rule: File exists".into()),
                    _ => {
                        m.elements.insert(k, v);
                    }
                }
            }
            // Rendered as an addition then a deletion of the same element.
            NftOp::DeleteDnat { external: k, ip: v } | NftOp::DeleteSnat { ip: k, external: v } => {
                let map = if matches!(op, NftOp::DeleteDnat { .. }) {
                    NFT_DNAT_MAP
                } else {
                    NFT_SNAT_MAP
                };
                let m = next.maps.get_mut(map).ok_or("Error: No such file or directory")?;
                match m.elements.get(&k) {
                    Some(old) if *old != v => return Err("Error: Could not process rule: File exists".into()),
                    _ => {
                        m.elements.remove(&k);
                    }
                }
            }
        }
    }
    *nat = next;
    *guard = next_guard;
    *filter = next_filter;
    Ok(())
}
