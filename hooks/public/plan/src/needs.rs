//! What endpoints need on the host, and what to observe before planning.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use crate::endpoint::{BridgeName, Endpoint, Public};
use crate::ops::{Proxy, Route, SysctlKey, SysctlWrite};
use crate::plan::Request;

/// The kernel objects one endpoint needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Objects {
    pub routes: Vec<Route>,
    pub proxies: Vec<Proxy>,
    pub sysctls: Vec<SysctlWrite>,
    /// `(flexible IP, private IP)` for an IPv4 endpoint.
    pub nat: Option<(Ipv4Addr, Ipv4Addr)>,
}

/// What `e` needs on the host (besides its bridge).
pub fn objects(e: &Endpoint) -> Objects {
    let dev = e.bridge;
    match e.public {
        Public::V4 { ip, gateway, external } => Objects {
            routes: vec![Route {
                dst: IpAddr::V4(ip),
                len: 32,
                via: None,
                dev,
            }],
            proxies: vec![Proxy {
                addr: IpAddr::V4(gateway),
                dev,
            }],
            sysctls: vec![
                SysctlWrite {
                    key: SysctlKey::ip_forward(),
                    value: "1",
                },
                SysctlWrite {
                    key: SysctlKey::ipv4_forwarding(dev),
                    value: "1",
                },
                SysctlWrite {
                    key: SysctlKey::proxy_delay(dev),
                    value: "0",
                },
            ],
            nat: Some((external, ip)),
        },
        Public::V6 { ip, gateway, prefix } => {
            // The VM's address in the /64 (as the scaleway IPAM hands out):
            // the /64 is on the bridge. Outside it: the VM's address is on
            // the bridge and the /64 is routed through it.
            let routes = if Public::ip_in_prefix(ip, prefix) {
                vec![Route {
                    dst: IpAddr::V6(prefix),
                    len: 64,
                    via: None,
                    dev,
                }]
            } else {
                vec![
                    Route {
                        dst: IpAddr::V6(ip),
                        len: 128,
                        via: None,
                        dev,
                    },
                    Route {
                        dst: IpAddr::V6(prefix),
                        len: 64,
                        via: Some(IpAddr::V6(ip)),
                        dev,
                    },
                ]
            };
            Objects {
                routes,
                proxies: vec![Proxy {
                    addr: IpAddr::V6(gateway),
                    dev,
                }],
                sysctls: vec![
                    SysctlWrite {
                        key: SysctlKey::ipv6_forwarding_all(),
                        value: "1",
                    },
                    SysctlWrite {
                        key: SysctlKey::ipv6_disabled(dev),
                        value: "0",
                    },
                    SysctlWrite {
                        key: SysctlKey::new(&["net", "ipv6", "conf", dev.as_str(), "forwarding"]),
                        value: "1",
                    },
                    SysctlWrite {
                        key: SysctlKey::proxy_ndp(dev),
                        value: "1",
                    },
                    // Proxied answers to multicast solicitations wait up to
                    // proxy_delay (0.8 s by default), as for ARP.
                    SysctlWrite {
                        key: SysctlKey::proxy_delay6(dev),
                        value: "0",
                    },
                ],
                nat: None,
            }
        }
    }
}

/// The sysctls to observe before planning for `endpoints`.
pub fn sysctl_keys<'a>(endpoints: impl IntoIterator<Item = &'a Endpoint>) -> BTreeSet<SysctlKey> {
    endpoints
        .into_iter()
        .flat_map(|e| objects(e).sysctls.into_iter().map(|s| s.key))
        .collect()
}

/// What to observe before planning a request: the links (by name), routes
/// (by prefix), proxy and neighbour entries (by address and bridge) its
/// endpoints concern, the ports of a bridge it may delete, the host's own
/// addresses (of the families of the endpoints to ensure) and the sysctls
/// of the endpoints to ensure; or, with `all`, everything. Asking only for
/// what the plan looks at keeps a host's observation from growing with the
/// number of VMs it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub all: bool,
    pub links: BTreeSet<BridgeName>,
    /// Bridges the plan may delete: their ports are read.
    pub ports: BTreeSet<BridgeName>,
    pub routes: BTreeSet<(IpAddr, u8)>,
    pub proxies: BTreeSet<(IpAddr, BridgeName)>,
    /// Neighbour entries (not proxies).
    pub neighbours: BTreeSet<(IpAddr, BridgeName)>,
    /// The host's own addresses: (IPv4, IPv6).
    pub addresses: (bool, bool),
    pub sysctls: BTreeSet<SysctlKey>,
}

impl Query {
    /// Everything (diagnostics, tests).
    pub fn all() -> Self {
        Self {
            all: true,
            addresses: (true, true),
            ..Self::default()
        }
    }
}

/// What [`crate::plan::plan`] needs observed for `request`.
pub fn query(request: &Request) -> Query {
    let mut q = Query {
        sysctls: sysctl_keys(&request.ensure),
        ..Query::default()
    };
    for e in &request.ensure {
        match e.public {
            Public::V4 { .. } => q.addresses.0 = true,
            Public::V6 { .. } => q.addresses.1 = true,
        }
    }
    for e in request.ensure.iter().chain(&request.remove) {
        let o = objects(e);
        q.links.insert(e.bridge);
        q.routes.extend(o.routes.iter().map(|r| (r.dst, r.len)));
        q.proxies.extend(o.proxies.iter().map(|p| (p.addr, p.dev)));
        q.neighbours.extend(crate::guard::neighbour(e).map(|n| (n.addr, n.dev)));
    }
    // A bridge of ours that no endpoint keeps may be deleted: its ports say
    // whether it can be.
    for e in &request.remove {
        let used = request.busy_bridges.contains(&e.bridge)
            || request.keep.iter().chain(&request.ensure).any(|k| k.bridge == e.bridge);
        if request.owned_bridges.contains(&e.bridge) && !used {
            q.ports.insert(e.bridge);
        }
    }
    q
}
