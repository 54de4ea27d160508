//! The host side of the private network driver `scaleway_evpn`, its pure
//! part (planners and renderers): VXLAN
//! segments whose remote endpoints and MAC addresses are learnt through
//! BGP-EVPN (FRR) between the hosts of an edge cluster, not by flooding.
//!
//! Each private network is a VXLAN segment: VNI = the network's `VLAN_ID`.
//! On a host with a VM on the network, the segment is a VXLAN device
//! `vxlan<VNI>` (learning off, UDP port 4789, the host's underlay address
//! as source) plugged into the network's bridge, both with the underlay's
//! MTU minus the 50 bytes of VXLAN. FRR (zebra + bgpd) on every host
//! announces the host's VNIs and local MACs as EVPN routes (type 3: "this
//! host is on VNI N"; type 2: "MAC M is behind this host") and turns the
//! others' into forwarding entries on the VXLAN devices (`extern_learn`).
//!
//! Pure parts (no process, no file, no socket):
//!
//! - [`cluster`]: the cluster description (AS, underlay network, hosts,
//!   route reflectors) and its validation;
//! - [`segment`]: the NICs' requests ([`segment::select`]) and the segment
//!   each needs on the host ([`segment::resolve`]: underlay device, MTUs);
//! - [`plan`]: the `ip` commands that make the host's links right
//!   ([`plan::plan`]), and a simulation of them;
//! - [`frr`]: the host's FRR configuration ([`frr::render`]);
//! - [`firewall`]: the nftables table that accepts BGP and VXLAN only from
//!   the underlay ([`firewall::render`]);
//! - [`observed`]: reading `ip -d -j addr show`.
//! - [`sg`]: the VMs' security groups on their private ports (a `bridge`
//!   table carrying the port in the packet mark, an `inet` table of chains).
//!
//! Their side effects are `private_apply`'s.

pub mod cluster;
pub mod firewall;
pub mod frr;
pub mod net;
pub mod observed;
pub mod plan;
pub mod segment;
pub mod sg;

pub use cluster::{Cluster, ClusterError, Role};
pub use net::{Ipv4Net, Vni};
pub use segment::{NicRequest, Segment, SegmentError, Selection, User};

/// The driver (`VN_MAD`) whose NICs we set up.
pub const VN_MAD: &str = "scaleway_evpn";
/// The IANA VXLAN port (Linux uses 8472 when none is given).
pub const VXLAN_PORT: u16 = 4789;
/// BGP.
pub const BGP_PORT: u16 = 179;
/// What VXLAN adds to a frame over IPv4: outer IPv4 (20), UDP (8), VXLAN
/// (8) and the inner Ethernet header (14).
pub const VXLAN_OVERHEAD: u32 = 50;
