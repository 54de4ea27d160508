//! Pure planners for the host side of the public network driver `scaleway`.
//!
//! A VM reaches the internet through a Scaleway flexible IP that is routed
//! to its hypervisor. On the host, each public NIC (or NIC alias) of driver
//! `scaleway` needs:
//!
//! - the NIC's bridge (`BRIDGE`, no uplink, up), created with a stable MAC
//!   address so the VMs' ARP caches survive ports coming and going;
//! - a route to the VM's private address through the bridge (`IP/32`), and a
//!   proxy neighbour entry answering for the VM's gateway (`GATEWAY`) on the
//!   bridge, with `net.ipv4.neigh.<bridge>.proxy_delay = 0` (otherwise the
//!   first ARP answer waits up to 0.8 s) and forwarding on;
//! - the 1:1 NAT between the flexible IP (`EXTERNAL_IP`) and the private IP:
//!   one element in each of the two maps of our one nftables table
//!   (`table ip one_scaleway`, two constant rules), so adding or removing the
//!   Nth address is one `nft -f -` transaction whose cost does not grow
//!   with N.
//!
//! - the port guard ([`guard`]): only the VM's own MAC and addresses leave
//!   its port on the bridge, nothing goes from one VM's port to another's,
//!   and the host's neighbour entries for VM addresses are permanent;
//! - the NIC's security groups ([`filter`]): OpenNebula's rules, enforced
//!   on the host in two chains of the NIC's own.
//!
//! IPv6 NICs (`IP6`, `GATEWAY6`, an IPv6 `EXTERNAL_IP` naming the /64 routed
//! to the VM) are routed, not NATed: the /64 (and the VM's `IP6`/128 when it
//! lies outside the /64) goes to the bridge, and the host answers neighbour
//! solicitations for `GATEWAY6` (proxy NDP).
//!
//! The crate is pure: [`plan::plan`] takes the wanted endpoints and the host
//! state observed beforehand ([`observed::Observed`]) and returns a
//! [`plan::Plan`] (no process, no file, no socket here; `public_apply` observes
//! and applies). Applying a plan twice is a no-op because the second plan
//! is empty; a conflicting mapping is refused before anything changes.

mod conflict;
pub mod endpoint;
pub mod filter;
pub mod guard;
pub mod model;
pub mod needs;
pub mod observed;
pub mod ops;
pub mod plan;

pub use endpoint::{Endpoint, Owner, Port, Public, Selection, select};
pub use needs::{Query, query};
pub use observed::{Observed, simulate};
pub use ops::{IpOp, NftBatch, NftOp, Proxy, Route, SysctlKey, SysctlWrite};
pub use plan::{Plan, PlanError, Request, plan, tables_ok_after};

/// The driver (`VN_MAD`) whose NICs we plan for.
pub const VN_MAD: &str = "scaleway";
