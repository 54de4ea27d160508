//! The link plan: from the segments wanted and unwanted, and the links the
//! host has, the `ip` commands that make the host right (pure).
//!
//! For a new segment:
//!
//! ```text
//! link add name onebr.100 type bridge
//! link set dev onebr.100 mtu 1450              (set by hand: the bridge keeps it whatever its ports)
//! link set dev onebr.100 addrgenmode none      (no IPv6 link-local address of the host in the tenant segment)
//! link add name vxlan100 mtu 1450 type vxlan id 100 local 10.0.0.2 dstport 4789 nolearning dev scwpriv0
//! link set dev vxlan100 addrgenmode none
//! link set dev vxlan100 master onebr.100
//! link set dev vxlan100 type bridge_slave learning off   (MACs behind it come from EVPN, not from flooding)
//! link set dev vxlan100 up
//! link set dev onebr.100 up
//! ```
//!
//! What exists already and is right is left as it is (a second plan is
//! empty); a setting that drifted is set again; a VXLAN device of the
//! driver's with other settings (the host's underlay address changed) is
//! re-created. Something the driver did not make and cannot use (another
//! device carrying the VNI, another VNI on the bridge, a link of that name
//! that is not a bridge) is refused before anything changes. Removing a
//! segment deletes its VXLAN device, and its bridge when the driver
//! created it and nothing else is plugged into it.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;

use crate::VXLAN_PORT;
use crate::net::Vni;
use crate::observed::{Link, Observed, Vxlan};
use crate::segment::{Segment, SegmentError};

/// One `ip` command (one `ip -batch -` line). Every name in it is a
/// validated interface name, every other argument a number, an address or
/// a keyword: none holds a space or a quote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LinkOp {
    AddBridge {
        name: String,
    },
    AddVxlan {
        name: String,
        vni: Vni,
        local: Ipv4Addr,
        dev: String,
        mtu: u32,
    },
    NoAddrGen(String),
    SetMtu {
        name: String,
        mtu: u32,
    },
    SetMaster {
        port: String,
        bridge: String,
    },
    PortLearningOff(String),
    SetUp(String),
    Delete(String),
}

impl LinkOp {
    /// The argument vector after `ip`.
    pub fn args(&self) -> Vec<String> {
        let s = |v: &[&str]| v.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
        match self {
            Self::AddBridge { name } => s(&["link", "add", "name", name, "type", "bridge"]),
            Self::AddVxlan {
                name,
                vni,
                local,
                dev,
                mtu,
            } => s(&[
                "link",
                "add",
                "name",
                name,
                "mtu",
                &mtu.to_string(),
                "type",
                "vxlan",
                "id",
                &vni.to_string(),
                "local",
                &local.to_string(),
                "dstport",
                &VXLAN_PORT.to_string(),
                "nolearning",
                "dev",
                dev,
            ]),
            Self::NoAddrGen(name) => s(&["link", "set", "dev", name, "addrgenmode", "none"]),
            Self::SetMtu { name, mtu } => s(&["link", "set", "dev", name, "mtu", &mtu.to_string()]),
            Self::SetMaster { port, bridge } => s(&["link", "set", "dev", port, "master", bridge]),
            Self::PortLearningOff(name) => s(&["link", "set", "dev", name, "type", "bridge_slave", "learning", "off"]),
            Self::SetUp(name) => s(&["link", "set", "dev", name, "up"]),
            Self::Delete(name) => s(&["link", "del", "dev", name]),
        }
    }

    /// What undoes this change when a later step fails.
    pub fn undo(&self) -> Option<LinkOp> {
        match self {
            Self::AddBridge { name } | Self::AddVxlan { name, .. } => Some(Self::Delete(name.clone())),
            _ => None,
        }
    }
}

impl fmt::Display for LinkOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.args().join(" "))
    }
}

/// What to plan for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Segments that must be in place.
    pub ensure: Vec<Segment>,
    /// Segments nobody uses any more.
    pub remove: Vec<Segment>,
    /// Bridges the driver created: the only ones it deletes.
    pub owned_bridges: BTreeSet<String>,
    /// VXLAN devices the driver set up before: it may re-create them.
    pub owned_vxlans: BTreeSet<String>,
}

/// The plan: `ip` commands in order, and what they do to the driver's
/// bookkeeping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkPlan {
    pub ops: Vec<LinkOp>,
    pub created_bridges: BTreeSet<String>,
    pub deleted_bridges: BTreeSet<String>,
    /// Things worth a warning (a bridge kept because something else is plugged in).
    pub notes: Vec<String>,
}

impl LinkPlan {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl fmt::Display for LinkPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for op in &self.ops {
            writeln!(f, "ip {op}")?;
        }
        for note in &self.notes {
            writeln!(f, "# note: {note}")?;
        }
        Ok(())
    }
}

fn refuse<T>(message: String) -> Result<T, SegmentError> {
    Err(SegmentError(message))
}

fn kind(l: &Link) -> &str {
    l.kind.as_deref().unwrap_or("a plain device")
}

/// Whether a VXLAN device has exactly the segment's settings.
fn vxlan_matches(v: &Vxlan, s: &Segment) -> bool {
    v.id == s.vni.get()
        && v.local == Some(s.local)
        && v.port == VXLAN_PORT
        && !v.learning
        && v.dev.as_deref() == Some(s.underlay.as_str())
}

fn describe(v: &Vxlan) -> String {
    format!(
        "id {}, local {}, port {}, learning {}, dev {}",
        v.id,
        v.local.map_or_else(|| "none".to_owned(), |a| a.to_string()),
        v.port,
        if v.learning { "on" } else { "off" },
        v.dev.as_deref().unwrap_or("none")
    )
}

/// Plans `request` against the links `observed`: removals first, then the
/// segments to ensure. Refuses, planning nothing, what the driver cannot
/// use.
pub fn plan(request: &Request, observed: &Observed) -> Result<LinkPlan, SegmentError> {
    let mut p = LinkPlan::default();
    let mut links = observed.links.clone();
    let kept_bridges: BTreeSet<&str> = request.ensure.iter().map(|s| s.bridge.as_str()).collect();
    let kept_vxlans: BTreeSet<&str> = request.ensure.iter().map(|s| s.vxlan.as_str()).collect();
    for r in &request.remove {
        if !kept_vxlans.contains(r.vxlan.as_str()) {
            match links.get(&r.vxlan) {
                Some(l) if l.vxlan.as_ref().is_some_and(|v| v.id == r.vni.get()) => {
                    p.ops.push(LinkOp::Delete(r.vxlan.clone()));
                    links.remove(&r.vxlan);
                }
                Some(l) => p.notes.push(format!(
                    "{} is {} that does not carry VNI {}: left alone",
                    r.vxlan,
                    kind(l),
                    r.vni
                )),
                None => {}
            }
        }
        if kept_bridges.contains(r.bridge.as_str()) || !request.owned_bridges.contains(&r.bridge) {
            continue;
        }
        let Some(b) = links.get(&r.bridge) else {
            continue;
        };
        if !b.is("bridge") {
            continue;
        }
        let ports: Vec<String> = links
            .iter()
            .filter(|(_, l)| l.master.as_deref() == Some(r.bridge.as_str()))
            .map(|(n, _)| n.clone())
            .collect();
        if ports.is_empty() {
            p.ops.push(LinkOp::Delete(r.bridge.clone()));
            p.deleted_bridges.insert(r.bridge.clone());
            links.remove(&r.bridge);
        } else {
            p.notes.push(format!(
                "bridge {} is kept: no VM of the driver uses VNI {} any more, but {} still plugged into it",
                r.bridge,
                r.vni,
                ports.join(", ") + if ports.len() == 1 { " is" } else { " are" }
            ));
        }
    }
    for s in &request.ensure {
        ensure(s, request, &links, &mut p)?;
    }
    Ok(p)
}

fn ensure(
    s: &Segment,
    request: &Request,
    links: &std::collections::BTreeMap<String, Link>,
    p: &mut LinkPlan,
) -> Result<(), SegmentError> {
    // Another device carrying the VNI: the kernel allows one per port.
    for (name, l) in links {
        if *name != s.vxlan
            && let Some(v) = &l.vxlan
            && v.id == s.vni.get()
            && v.port == VXLAN_PORT
        {
            return refuse(format!(
                "VNI {} is already carried by {name} on this host ({}), which is not the driver's",
                s.vni,
                describe(v)
            ));
        }
    }
    let bridge = links.get(&s.bridge);
    let new_bridge = match bridge {
        None => {
            p.ops.push(LinkOp::AddBridge { name: s.bridge.clone() });
            p.ops.push(LinkOp::SetMtu {
                name: s.bridge.clone(),
                mtu: s.mtu,
            });
            p.ops.push(LinkOp::NoAddrGen(s.bridge.clone()));
            p.created_bridges.insert(s.bridge.clone());
            true
        }
        Some(b) if !b.is("bridge") => {
            return refuse(format!(
                "{} exists on this host and is {}, not a bridge",
                s.bridge,
                kind(b)
            ));
        }
        Some(b) => {
            for (name, l) in links {
                if l.master.as_deref() == Some(s.bridge.as_str())
                    && *name != s.vxlan
                    && let Some(v) = &l.vxlan
                {
                    return refuse(format!(
                        "bridge {} already carries {name} (VNI {}): a bridge carries one VNI, and VNI {} needs its own",
                        s.bridge, v.id, s.vni
                    ));
                }
            }
            if b.mtu != s.mtu {
                p.ops.push(LinkOp::SetMtu {
                    name: s.bridge.clone(),
                    mtu: s.mtu,
                });
            }
            false
        }
    };
    let add = |p: &mut LinkPlan| {
        p.ops.push(LinkOp::AddVxlan {
            name: s.vxlan.clone(),
            vni: s.vni,
            local: s.local,
            dev: s.underlay.clone(),
            mtu: s.mtu,
        });
        p.ops.push(LinkOp::NoAddrGen(s.vxlan.clone()));
        p.ops.push(LinkOp::SetMaster {
            port: s.vxlan.clone(),
            bridge: s.bridge.clone(),
        });
        p.ops.push(LinkOp::PortLearningOff(s.vxlan.clone()));
        p.ops.push(LinkOp::SetUp(s.vxlan.clone()));
    };
    let owned = request.owned_vxlans.contains(&s.vxlan);
    match links.get(&s.vxlan) {
        None => add(p),
        Some(l) => {
            let Some(v) = &l.vxlan else {
                return refuse(format!(
                    "{} exists on this host and is {}, not a VXLAN device",
                    s.vxlan,
                    kind(l)
                ));
            };
            if !vxlan_matches(v, s) {
                if !owned {
                    return refuse(format!(
                        "{} exists on this host with other settings ({}) and is not the driver's; wanted: {s}",
                        s.vxlan,
                        describe(v)
                    ));
                }
                p.notes.push(format!("{} re-created (it had {})", s.vxlan, describe(v)));
                p.ops.push(LinkOp::Delete(s.vxlan.clone()));
                add(p);
            } else {
                if l.mtu != s.mtu {
                    p.ops.push(LinkOp::SetMtu {
                        name: s.vxlan.clone(),
                        mtu: s.mtu,
                    });
                }
                match l.master.as_deref() {
                    Some(m) if m == s.bridge => {}
                    Some(m) if !owned => {
                        return refuse(format!(
                            "{} is a port of bridge {m}, not of {}, and is not the driver's",
                            s.vxlan, s.bridge
                        ));
                    }
                    _ => p.ops.push(LinkOp::SetMaster {
                        port: s.vxlan.clone(),
                        bridge: s.bridge.clone(),
                    }),
                }
                if l.port_learning != Some(false) || l.master.as_deref() != Some(s.bridge.as_str()) {
                    p.ops.push(LinkOp::PortLearningOff(s.vxlan.clone()));
                }
                if !l.up {
                    p.ops.push(LinkOp::SetUp(s.vxlan.clone()));
                }
            }
        }
    }
    if new_bridge || bridge.is_some_and(|b| !b.up) {
        p.ops.push(LinkOp::SetUp(s.bridge.clone()));
    }
    Ok(())
}

/// Applies a plan to a simulated set of links, as the kernel would (for
/// tests and the fake host). Fails as `ip` would on a missing or existing
/// device.
pub fn simulate(observed: &mut Observed, ops: &[LinkOp]) -> Result<(), String> {
    for op in ops {
        let links = &mut observed.links;
        let missing = |name: &str| format!("Cannot find device \"{name}\"");
        match op {
            LinkOp::AddBridge { name } => {
                if links.contains_key(name) {
                    return Err("RTNETLINK answers: File exists".into());
                }
                links.insert(
                    name.clone(),
                    Link {
                        kind: Some("bridge".into()),
                        ..Link::default()
                    },
                );
            }
            LinkOp::AddVxlan {
                name,
                vni,
                local,
                dev,
                mtu,
            } => {
                if links.contains_key(name) {
                    return Err("RTNETLINK answers: File exists".into());
                }
                if !links.contains_key(dev) {
                    return Err(missing(dev));
                }
                links.insert(
                    name.clone(),
                    Link {
                        kind: Some("vxlan".into()),
                        mtu: *mtu,
                        vxlan: Some(Vxlan {
                            id: vni.get(),
                            local: Some(*local),
                            port: VXLAN_PORT,
                            learning: false,
                            dev: Some(dev.clone()),
                        }),
                        ..Link::default()
                    },
                );
            }
            LinkOp::NoAddrGen(name) => {
                links.get(name).ok_or_else(|| missing(name))?;
            }
            LinkOp::SetMtu { name, mtu } => links.get_mut(name).ok_or_else(|| missing(name))?.mtu = *mtu,
            LinkOp::SetMaster { port, bridge } => {
                if !links.get(bridge).is_some_and(|b| b.is("bridge")) {
                    return Err(missing(bridge));
                }
                let l = links.get_mut(port).ok_or_else(|| missing(port))?;
                l.master = Some(bridge.clone());
                l.port_learning = Some(true);
            }
            LinkOp::PortLearningOff(name) => {
                let l = links.get_mut(name).ok_or_else(|| missing(name))?;
                if l.master.is_none() {
                    return Err(format!("{name} is not a bridge port"));
                }
                l.port_learning = Some(false);
            }
            LinkOp::SetUp(name) => links.get_mut(name).ok_or_else(|| missing(name))?.up = true,
            LinkOp::Delete(name) => {
                links.remove(name).ok_or_else(|| missing(name))?;
                for l in links.values_mut() {
                    if l.master.as_deref() == Some(name.as_str()) {
                        l.master = None;
                        l.port_learning = None;
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
