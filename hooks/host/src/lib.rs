//! What both network drivers (`scaleway`, `scaleway_evpn`) use on a host.
//!
//! - [`run::Tools`]: runs `ip`, `nft` and `sysctl` from argument vectors
//!   (never a shell, [`opennebula::process`] underneath), as root directly or,
//!   as oneadmin, through `sudo -n` of the root helper with a typed request;
//!   every failure is an [`ApplyError`] that keeps the tool's stderr and says
//!   what to do;
//! - [`lock::HostLock`]: the host-wide lock that serialises every change a
//!   driver makes on the host ([`opennebula::store::FileLock`]);
//! - [`netlink::Rtnl`]: links, addresses, routes and neighbour entries read
//!   and changed in this process (rtnetlink), no `ip` process;
//! - [`nftables::Nftables`]: elements of existing nftables sets and maps
//!   added and deleted in this process (nf_tables netlink, one atomic
//!   batch), no `nft` process for what changes only elements;
//! - [`links::link_kinds`]: the kind of every link (the root helper's checks).

pub mod links;
pub mod lock;
pub mod netlink;
pub mod nftables;
pub mod run;
pub mod skeleton;

pub use run::{ApplyError, Tools};
