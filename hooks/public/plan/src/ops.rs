//! The changes a plan is made of, typed, and their text: `ip` argument
//! vectors (one `ip` command each, what the rtnetlink change does), sysctl writes and the `nft -f -`
//! script. Every kernel object name comes from the constants here.

use std::fmt;

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};

use crate::endpoint::{BridgeName, mac_text};
use crate::guard::{GuardElem, Neigh};

/// Our nftables table (family `ip`).
pub const NFT_TABLE: &str = "one_scaleway";
/// Map flexible IP -> private IP, used by the prerouting rule.
pub const NFT_DNAT_MAP: &str = "dnat_map";
/// Map private IP -> flexible IP, used by the postrouting rule.
pub const NFT_SNAT_MAP: &str = "snat_map";
/// Our two base chains.
pub const NFT_PREROUTING: &str = "prerouting";
pub const NFT_POSTROUTING: &str = "postrouting";
/// The table's comment, so an administrator knows whose it is.
pub const NFT_COMMENT: &str = "one-scaleway: 1:1 NAT of flexible IPs (OpenNebula VN_MAD scaleway)";

/// A sysctl, as its path under `/proc/sys` (`net/ipv4/conf/onebr.100/forwarding`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SysctlKey(String);

impl TryFrom<String> for SysctlKey {
    type Error = String;

    /// One of the keys the driver writes, nothing else: `net/ipv4/ip_forward`,
    /// `net/ipv6/conf/all/forwarding`, or a per-device key
    /// (`net/ipv4/conf/D/forwarding`, `net/ipv4/neigh/D/proxy_delay`,
    /// `net/ipv6/neigh/D/proxy_delay`, `net/ipv6/conf/D/{disable_ipv6,
    /// forwarding,proxy_ndp}`) of a valid interface name `D`.
    fn try_from(path: String) -> Result<Self, String> {
        let parts: Vec<&str> = path.split('/').collect();
        let device = |d: &str| BridgeName::parse(d).is_ok() && d != "all" && d != "default";
        let ok = match parts.as_slice() {
            ["net", "ipv4", "ip_forward"] | ["net", "ipv6", "conf", "all", "forwarding"] => true,
            ["net", "ipv4", "conf", d, "forwarding"]
            | ["net", "ipv4" | "ipv6", "neigh", d, "proxy_delay"]
            | ["net", "ipv6", "conf", d, "disable_ipv6" | "forwarding" | "proxy_ndp"] => device(d),
            _ => false,
        };
        if ok {
            Ok(Self(path))
        } else {
            Err(format!("{path:?} is not a sysctl the scaleway driver sets"))
        }
    }
}

impl From<SysctlKey> for String {
    fn from(k: SysctlKey) -> String {
        k.0
    }
}

impl SysctlKey {
    /// From path components; a component holds no `/` (interface names never do).
    pub fn new(parts: &[&str]) -> Self {
        Self(parts.join("/"))
    }

    pub fn ip_forward() -> Self {
        Self::new(&["net", "ipv4", "ip_forward"])
    }

    pub fn ipv4_forwarding(dev: BridgeName) -> Self {
        Self::new(&["net", "ipv4", "conf", dev.as_str(), "forwarding"])
    }

    pub fn proxy_delay(dev: BridgeName) -> Self {
        Self::new(&["net", "ipv4", "neigh", dev.as_str(), "proxy_delay"])
    }

    pub fn proxy_delay6(dev: BridgeName) -> Self {
        Self::new(&["net", "ipv6", "neigh", dev.as_str(), "proxy_delay"])
    }

    pub fn ipv6_forwarding_all() -> Self {
        Self::new(&["net", "ipv6", "conf", "all", "forwarding"])
    }

    pub fn ipv6_disabled(dev: BridgeName) -> Self {
        Self::new(&["net", "ipv6", "conf", dev.as_str(), "disable_ipv6"])
    }

    pub fn proxy_ndp(dev: BridgeName) -> Self {
        Self::new(&["net", "ipv6", "conf", dev.as_str(), "proxy_ndp"])
    }

    /// The path below `/proc/sys`.
    pub fn path(&self) -> &str {
        &self.0
    }

    /// Whether the key belongs to `dev` (exists only while the device does).
    pub fn is_of_device(&self, dev: BridgeName) -> bool {
        self.0.split('/').nth(3) == Some(dev.as_str())
    }
}

/// sysctl(8)'s spelling: dots between components, a dot inside a
/// component (`onebr.100`) written `/`.
impl fmt::Display for SysctlKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.split('/').map(|p| p.replace('.', "/")).collect();
        f.write_str(&parts.join("."))
    }
}

/// Sets a sysctl (and reads it back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlWrite {
    pub key: SysctlKey,
    pub value: &'static str,
}

impl fmt::Display for SysctlWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}", self.key, self.value)
    }
}

/// A route through the bridge (main table): on-link, or via the VM's
/// address (an IPv6 /64 routed to a VM whose address lies outside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub dst: IpAddr,
    pub len: u8,
    pub via: Option<IpAddr>,
    pub dev: BridgeName,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.dst, self.len)?;
        if let Some(via) = self.via {
            write!(f, " via {via}")?;
        }
        write!(f, " dev {}", self.dev)
    }
}

/// A proxy neighbour entry: the host answers ARP (IPv4) or neighbour
/// solicitations (IPv6) for `addr` on `dev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proxy {
    pub addr: IpAddr,
    pub dev: BridgeName,
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} dev {}", self.addr, self.dev)
    }
}

/// One `ip` command (also what the root helper accepts, as JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum IpOp {
    /// `link add name B address M type bridge`: a bridge with no uplink and
    /// a fixed MAC address, so the VMs' ARP caches for their gateway stay
    /// right when ports come and go, and across a re-creation.
    AddBridge {
        name: BridgeName,
        mac: [u8; 6],
    },
    /// `link set dev B up`.
    SetUp(BridgeName),
    /// `link del dev B`.
    DeleteLink(BridgeName),
    AddRoute(Route),
    DeleteRoute(Route),
    AddProxy(Proxy),
    DeleteProxy(Proxy),
    /// `neigh replace A lladdr M dev B nud permanent`: the host's entry for
    /// a VM address is the VM's MAC, whatever the bridge hears.
    SetNeigh(Neigh),
    /// `neigh del A dev B`.
    DeleteNeigh(Neigh),
}

impl IpOp {
    /// The argument vector after `ip` of the same change (for the dry run
    /// and messages: every argument is an address, a keyword or a validated
    /// interface name, none holds a space or a quote).
    pub fn args(&self) -> Vec<String> {
        let s = |v: &[&str]| v.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
        match self {
            Self::AddBridge { name, mac } => {
                let mac = mac_text(*mac);
                s(&["link", "add", "name", name.as_str(), "address", &mac, "type", "bridge"])
            }
            Self::SetUp(name) => s(&["link", "set", "dev", name.as_str(), "up"]),
            Self::DeleteLink(name) => s(&["link", "del", "dev", name.as_str()]),
            Self::AddRoute(r) | Self::DeleteRoute(r) => {
                let verb = if matches!(self, Self::AddRoute(_)) {
                    "add"
                } else {
                    "del"
                };
                let dst = format!("{}/{}", r.dst, r.len);
                let mut args = s(&["route", verb, &dst]);
                if let Some(via) = r.via {
                    args.extend(["via".to_owned(), via.to_string()]);
                }
                args.extend(["dev".to_owned(), r.dev.as_str().to_owned()]);
                args
            }
            Self::AddProxy(p) | Self::DeleteProxy(p) => {
                let verb = if matches!(self, Self::AddProxy(_)) {
                    "add"
                } else {
                    "del"
                };
                let addr = p.addr.to_string();
                s(&["neigh", verb, "proxy", &addr, "dev", p.dev.as_str()])
            }
            Self::SetNeigh(n) => {
                let (addr, mac) = (n.addr.to_string(), mac_text(n.mac));
                s(&[
                    "neigh",
                    "replace",
                    &addr,
                    "lladdr",
                    &mac,
                    "dev",
                    n.dev.as_str(),
                    "nud",
                    "permanent",
                ])
            }
            Self::DeleteNeigh(n) => s(&["neigh", "del", &n.addr.to_string(), "dev", n.dev.as_str()]),
        }
    }

    /// The device it touches (or creates).
    pub fn dev(&self) -> &str {
        match self {
            Self::AddBridge { name, .. } | Self::SetUp(name) | Self::DeleteLink(name) => name.as_str(),
            Self::AddRoute(r) | Self::DeleteRoute(r) => r.dev.as_str(),
            Self::AddProxy(p) | Self::DeleteProxy(p) => p.dev.as_str(),
            Self::SetNeigh(n) | Self::DeleteNeigh(n) => n.dev.as_str(),
        }
    }

    /// What undoes this change, when a later step of the same plan fails.
    pub fn undo(&self) -> Option<IpOp> {
        match *self {
            Self::AddBridge { name, .. } => Some(Self::DeleteLink(name)),
            Self::AddRoute(r) => Some(Self::DeleteRoute(r)),
            Self::AddProxy(p) => Some(Self::DeleteProxy(p)),
            Self::SetNeigh(n) => Some(Self::DeleteNeigh(n)),
            Self::SetUp(_)
            | Self::DeleteLink(_)
            | Self::DeleteRoute(_)
            | Self::DeleteProxy(_)
            | Self::DeleteNeigh(_) => None,
        }
    }
}

impl fmt::Display for IpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.args().join(" "))
    }
}

/// The stable MAC address of a bridge we create: locally administered,
/// unicast, from a hash of its name (the same after a reboot).
pub fn bridge_mac(name: BridgeName) -> [u8; 6] {
    // FNV-1a, 32 bits.
    let mut h: u32 = 0x811c_9dc5;
    for b in name.as_str().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let [a, b, c, d] = h.to_be_bytes();
    [0x02, 0x5c, a, b, c, d]
}

/// One change to our nftables tables (the NAT table `ip one_scaleway`,
/// the port guard `bridge one_scaleway_guard`, the security groups `inet
/// one_scaleway_sg`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum NftOp {
    /// Declares the table, both maps and both chains (`add` is a no-op for
    /// what exists) and sets each chain's one rule (`flush chain` + `add
    /// rule`, so it is never duplicated). Elements already in the maps stay.
    EnsureBase,
    AddDnat {
        external: Ipv4Addr,
        ip: Ipv4Addr,
    },
    AddSnat {
        ip: Ipv4Addr,
        external: Ipv4Addr,
    },
    /// Deletes the element `external : ip`, and only that one: rendered as
    /// `add` then `delete` in the same transaction, so a missing element is
    /// no error and an element mapping `external` elsewhere fails the
    /// transaction (nothing changes).
    DeleteDnat {
        external: Ipv4Addr,
        ip: Ipv4Addr,
    },
    /// Deletes the element `ip : external` (as [`NftOp::DeleteDnat`]).
    DeleteSnat {
        ip: Ipv4Addr,
        external: Ipv4Addr,
    },
    /// Declares the guard table, its sets and chains, and sets the chains'
    /// rules (`flush chain` + `add rule`); its elements stay.
    EnsureGuard,
    AddGuard(GuardElem),
    /// Deletes the element (rendered as `add` then `delete`: a missing
    /// element is no error).
    DeleteGuard(GuardElem),
    /// Declares the security groups' table, its maps and base chains.
    EnsureFilters,
    /// Declares the shared chain of `direction` for `rules`, and sets its
    /// rules (`flush` then the rules, the last one tagged): nothing when
    /// the rules leave that direction open ([`crate::filter::FilterChain`]).
    SetChain {
        direction: secgroup::Direction,
        rules: Vec<secgroup::Rule>,
    },
    /// Deletes one of our chains (nothing jumps to it any more).
    DeleteChain(crate::filter::FilterChain),
    /// Sends the traffic of a VM address in one direction to `target` (the
    /// chain of its NIC's rules, or on).
    AddFilterAddr {
        addr: crate::filter::FilterAddr,
        direction: secgroup::Direction,
        target: crate::filter::FilterTarget,
    },
    /// Takes a VM address out of one direction's map, where it goes to
    /// `target` (added then deleted: a missing one is no error).
    DeleteFilterAddr {
        addr: crate::filter::FilterAddr,
        direction: secgroup::Direction,
        target: crate::filter::FilterTarget,
    },
}

impl NftOp {
    /// [`NftOp::AddFilterAddr`] (`add`), or [`NftOp::DeleteFilterAddr`].
    pub fn filter_addr(
        add: bool,
        addr: crate::filter::FilterAddr,
        direction: secgroup::Direction,
        target: crate::filter::FilterTarget,
    ) -> Self {
        if add {
            Self::AddFilterAddr {
                addr,
                direction,
                target,
            }
        } else {
            Self::DeleteFilterAddr {
                addr,
                direction,
                target,
            }
        }
    }
}

/// A fingerprint of the base of both tables (their declarations and
/// rules, as this version renders them). The host record keeps the
/// fingerprint of the base it last declared or found intact: while they
/// match, `pre` and `clean` trust the record for the tables' contents and
/// list nothing; when they differ (a new version of the driver), the next
/// action reads the tables and re-declares their base.
pub fn base_fingerprint() -> String {
    let base = NftBatch {
        ops: vec![NftOp::EnsureBase, NftOp::EnsureGuard, NftOp::EnsureFilters],
    }
    .render();
    // FNV-1a, 64 bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in base.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// One `nft -f -` transaction: all or nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NftBatch {
    pub ops: Vec<NftOp>,
}

impl NftBatch {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Declares both tables' base first (when the host's base may be an
    /// older version's), unless the batch already does.
    pub fn redeclare(&mut self) {
        for op in [NftOp::EnsureFilters, NftOp::EnsureGuard, NftOp::EnsureBase] {
            if !self.ops.contains(&op) {
                self.ops.insert(0, op);
            }
        }
    }

    /// Whether the batch declares the base of all our tables.
    pub fn declares_base(&self) -> bool {
        [NftOp::EnsureBase, NftOp::EnsureGuard, NftOp::EnsureFilters]
            .iter()
            .all(|op| self.ops.contains(op))
    }

    /// The `nft -f -` script: for the NAT table then the guard, the base
    /// first, then deletions, then additions (a re-mapped key is deleted
    /// before it is added), elements grouped one line per map or set and kind.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let t = format!("ip {NFT_TABLE}");
        if self.ops.contains(&NftOp::EnsureBase) {
            out.push_str(&format!("add table {t} {{ comment \"{NFT_COMMENT}\"; }}\n"));
            for map in [NFT_DNAT_MAP, NFT_SNAT_MAP] {
                out.push_str(&format!("add map {t} {map} {{ type ipv4_addr : ipv4_addr; }}\n"));
            }
            for (chain, hook, prio, rule) in [
                (
                    NFT_PREROUTING,
                    "prerouting",
                    "dstnat",
                    format!("dnat to ip daddr map @{NFT_DNAT_MAP}"),
                ),
                (
                    NFT_POSTROUTING,
                    "postrouting",
                    "srcnat",
                    format!("snat to ip saddr map @{NFT_SNAT_MAP}"),
                ),
            ] {
                out.push_str(&format!(
                    "add chain {t} {chain} {{ type nat hook {hook} priority {prio}; policy accept; }}\n"
                ));
                out.push_str(&format!("flush chain {t} {chain}\n"));
                out.push_str(&format!("add rule {t} {chain} {}\n", secgroup::SKIP_PRIVATE));
                out.push_str(&format!("add rule {t} {chain} {rule}\n"));
            }
        }
        let mut lines = |verbs: &[&str], map: &str, items: Vec<String>| {
            if !items.is_empty() {
                for verb in verbs {
                    out.push_str(&format!("{verb} element {t} {map} {{ {} }}\n", items.join(", ")));
                }
            }
        };
        let pick = |f: &dyn Fn(&NftOp) -> Option<String>| self.ops.iter().filter_map(f).collect::<Vec<_>>();
        // A deletion is an addition then a deletion of the same element:
        // idempotent, and refused when the key maps to something else.
        for (verbs, map, items) in [
            (
                &["add", "delete"][..],
                NFT_DNAT_MAP,
                pick(&|o| match o {
                    NftOp::DeleteDnat { external, ip } => Some(format!("{external} : {ip}")),
                    _ => None,
                }),
            ),
            (
                &["add", "delete"][..],
                NFT_SNAT_MAP,
                pick(&|o| match o {
                    NftOp::DeleteSnat { ip, external } => Some(format!("{ip} : {external}")),
                    _ => None,
                }),
            ),
            (
                &["add"][..],
                NFT_DNAT_MAP,
                pick(&|o| match o {
                    NftOp::AddDnat { external, ip } => Some(format!("{external} : {ip}")),
                    _ => None,
                }),
            ),
            (
                &["add"][..],
                NFT_SNAT_MAP,
                pick(&|o| match o {
                    NftOp::AddSnat { ip, external } => Some(format!("{ip} : {external}")),
                    _ => None,
                }),
            ),
        ] {
            lines(verbs, map, items);
        }
        crate::guard::render(&self.ops, &mut out);
        crate::filter::render(&self.ops, &mut out);
        out
    }
}

#[cfg(test)]
mod tests;
