//! Links, addresses, routes and neighbour entries through rtnetlink, in
//! the driver's own process: one socket, one request at a time, the
//! kernel's answer (and its extended error message) read back. Reads need
//! no privilege; changes need `CAP_NET_ADMIN` (root, or the root helper).
//!
//! Single-entry reads keep an action's cost flat in the number of VMs on
//! the host: a link by name, a route by `fibmatch` lookup, a neighbour or
//! proxy entry by address and device (kernel 4.20 and later). Dumps
//! (every route of the main table, every neighbour entry) are for
//! `reconcile`; they are filtered by the kernel where it can (strict
//! checking: a link dump by master).

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::neighbour::{NeighbourFlags, NeighbourMessage, NeighbourState};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage as Msg};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

mod batch;
mod messages;

pub use batch::Change;
pub(crate) use messages::extack_message;
use messages::{address_entry, family, link_entry, neigh_entry, neigh_message, route_entry};

/// A failure: the kernel refused (`errno`), or the socket failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The kernel's errno, when it refused the request.
    pub errno: Option<i32>,
    /// What happened, with the kernel's own explanation when it gave one.
    pub message: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self {
            errno: None,
            message: format!("rtnetlink: {e}"),
        }
    }
}

/// `ENOENT`, `ESRCH`, `ENODEV`: what a read of a missing entry answers.
const MISSING: [i32; 3] = [2, 3, 19];
/// `EINTR`: a dump the kernel marked inconsistent (a change came during it).
const EINTR: i32 = 4;
/// How many times a dump is made before its inconsistency is an error.
const DUMP_TRIES: usize = 5;

/// Runs `dump` until it gives a consistent answer (an interrupted one is
/// made again), at most `tries` times.
fn consistent<T>(tries: usize, mut dump: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    for _ in 1..tries {
        match dump() {
            Err(e) if e.errno == Some(EINTR) => continue,
            done => return done,
        }
    }
    dump()
}

/// `EEXIST`.
pub const EEXIST: i32 = 17;

impl Error {
    /// The entry asked for does not exist.
    pub fn is_missing(&self) -> bool {
        self.errno.is_some_and(|e| MISSING.contains(&e))
    }
}

/// One link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEntry {
    pub index: u32,
    pub name: String,
    /// `bridge`, `vxlan`, ... (`None`: a device without a kind, a physical one).
    pub kind: Option<String>,
    /// Administratively up.
    pub up: bool,
    /// The index of the bridge (or bond...) it is a port of.
    pub master: Option<u32>,
}

/// One address of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressEntry {
    pub addr: IpAddr,
    pub len: u8,
    pub index: u32,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    pub dst: IpAddr,
    pub len: u8,
    pub table: u32,
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    /// The type when it is not `unicast` (`blackhole`, `local`...).
    pub kind: Option<String>,
}

/// One neighbour entry (or proxy entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighEntry {
    pub addr: IpAddr,
    pub index: u32,
    pub mac: Option<[u8; 6]>,
    pub permanent: bool,
}

/// A request's bytes (`NLM_F_REQUEST | flags`, sequence number `seq`),
/// appended to `buf`.
pub(super) fn serialize(msg: Msg, flags: u16, seq: u32, buf: &mut Vec<u8>) {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
    packet.finalize();
    let start = buf.len();
    buf.resize(start + packet.buffer_len(), 0);
    packet.serialize(&mut buf[start..]);
}

/// The kernel's refusal in an error message (`None`: an acknowledgement).
pub(super) fn refusal(e: &netlink_packet_core::ErrorMessage) -> Option<Error> {
    let errno = e.code?.get().abs();
    let text = io::Error::from_raw_os_error(errno).to_string();
    let text = text.split(" (os error").next().unwrap_or_default().to_owned();
    Some(Error {
        errno: Some(errno),
        message: match extack_message(&e.header) {
            Some(why) if !why.is_empty() => format!("{text}: {why}"),
            _ => text,
        },
    })
}

/// The main routing table.
pub const MAIN_TABLE: u32 = 254;

/// An rtnetlink socket.
pub struct Rtnl {
    socket: Socket,
    seq: u32,
    /// Where the kernel's answers are read ([`ANSWER`] bytes).
    answer: Vec<u8>,
}

/// The largest answer the kernel sends: a dump's part is at most 32 KiB,
/// so one read of this size takes any answer whole (instead of a read
/// that peeks at its size first: two system calls per answer).
const ANSWER: usize = 64 * 1024;

/// Links are asked for without their counters (what a read never uses,
/// and most of the kernel's work for each link).
fn skip_stats() -> LinkAttribute {
    LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats])
}

impl Rtnl {
    /// A socket with strict checking (the kernel filters dumps and refuses
    /// what it does not understand), extended acknowledgements, and
    /// `timeout` on every answer.
    pub fn open(timeout: Duration) -> Result<Self, Error> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        socket.set_netlink_get_strict_chk(true)?;
        socket.set_ext_ack(true)?;
        socket.set_cap_ack(true)?;
        let tv = nix::sys::time::TimeVal::new(
            i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            i64::from(timeout.subsec_micros()),
        );
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReceiveTimeout, &tv)
            .map_err(io::Error::from)?;
        Ok(Self {
            socket,
            seq: 0,
            answer: Vec::with_capacity(ANSWER),
        })
    }

    /// The messages of the kernel's next answer (one read).
    pub(super) fn receive(&mut self) -> Result<Vec<NetlinkMessage<Msg>>, Error> {
        self.answer.clear();
        let len = self.socket.recv(&mut self.answer, nix::libc::MSG_TRUNC)?;
        if len > self.answer.len() {
            return Err(Error {
                errno: None,
                message: format!("rtnetlink: an answer of {len} bytes, larger than {ANSWER}"),
            });
        }
        let mut rest = self.answer.as_slice();
        let mut out = Vec::new();
        while !rest.is_empty() {
            let answer = NetlinkMessage::<Msg>::deserialize(rest).map_err(|e| Error {
                errno: None,
                message: format!("rtnetlink: cannot read the kernel's answer: {e}"),
            })?;
            let len = usize::try_from(answer.header.length).unwrap_or(usize::MAX);
            rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
            if len == 0 {
                break;
            }
            out.push(answer);
        }
        Ok(out)
    }

    /// Sends `msg` with `flags` and reads the answers: every message of a
    /// dump, the one answer of a get, nothing for an acknowledged change.
    fn exchange(&mut self, msg: Msg, flags: u16) -> Result<Vec<Msg>, Error> {
        let seq = self.next_seq();
        let mut buf = Vec::new();
        serialize(msg, flags, seq, &mut buf);
        self.socket.send(&buf, 0)?;
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            for answer in self.receive()? {
                if answer.header.sequence_number != self.seq {
                    continue;
                }
                interrupted |= answer.header.flags & NLM_F_DUMP_INTR != 0;
                match answer.payload {
                    NetlinkPayload::Done(_) if interrupted => {
                        return Err(Error {
                            errno: Some(EINTR),
                            message: "rtnetlink: the table changed during the dump (NLM_F_DUMP_INTR)".into(),
                        });
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => return refusal(&e).map_or(Ok(out), Err),
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if flags & (NLM_F_DUMP | NLM_F_ACK) == 0 {
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The next sequence number.
    pub(super) fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Every entry of a dump, consistent: made again when the kernel says
    /// a change came during it (entries may then be missing or twice).
    /// The kernel marks its link and address dumps so (route dumps resume
    /// by key); not its neighbour dumps (measured: a neighbour dump under a
    /// stream of changes missed an entry, unmarked), so the drivers read
    /// neighbour entries one at a time (a dump of them is for diagnostics
    /// and tests).
    fn dump(&mut self, msg: &Msg) -> Result<Vec<Msg>, Error> {
        consistent(DUMP_TRIES, || self.exchange(msg.clone(), NLM_F_DUMP))
    }

    /// A get: its one answer, or `None` when the entry does not exist.
    fn get(&mut self, msg: Msg) -> Result<Option<Msg>, Error> {
        match self.exchange(msg, 0) {
            Ok(mut m) => Ok(m.pop()),
            Err(e) if e.is_missing() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A change, acknowledged.
    fn change(&mut self, msg: Msg, flags: u16) -> Result<(), Error> {
        self.exchange(msg, NLM_F_ACK | flags).map(drop)
    }

    /// The link named `name`.
    pub fn link(&mut self, name: &str) -> Result<Option<LinkEntry>, Error> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        m.attributes.push(skip_stats());
        Ok(match self.get(Msg::GetLink(m))? {
            Some(Msg::NewLink(l)) => Some(link_entry(&l)),
            _ => None,
        })
    }

    /// The link with index `index`.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<LinkEntry>, Error> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(skip_stats());
        Ok(match self.get(Msg::GetLink(m))? {
            Some(Msg::NewLink(l)) => Some(link_entry(&l)),
            _ => None,
        })
    }

    /// Every link, or (filtered by the kernel) the ports of `master`.
    pub fn links(&mut self, master: Option<u32>) -> Result<Vec<LinkEntry>, Error> {
        let mut m = LinkMessage::default();
        m.attributes.push(skip_stats());
        if let Some(master) = master {
            m.attributes.push(LinkAttribute::Controller(master));
        }
        Ok(self
            .dump(&Msg::GetLink(m))?
            .iter()
            .filter_map(|m| match m {
                Msg::NewLink(l) => Some(link_entry(l)),
                _ => None,
            })
            .filter(|l| master.is_none() || l.master == master)
            .collect())
    }

    /// The host's addresses of one family.
    pub fn addresses(&mut self, ipv4: bool) -> Result<Vec<AddressEntry>, Error> {
        let mut m = AddressMessage::default();
        m.header.family = if ipv4 {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        Ok(self
            .dump(&Msg::GetAddress(m))?
            .iter()
            .filter_map(|m| match m {
                Msg::NewAddress(a) => address_entry(a),
                _ => None,
            })
            .collect())
    }

    /// The route the kernel's lookup of `dst` matches (`ip route get
    /// fibmatch`). The kernel refuses (with an errno) when nothing matches
    /// (`ENETUNREACH`) or the lookup ends in a route that is not a
    /// destination (a blackhole: `EINVAL`; unreachable, prohibit).
    pub fn route_match(&mut self, dst: IpAddr) -> Result<Option<RouteEntry>, Error> {
        let mut m = RouteMessage::default();
        m.header.address_family = family(dst);
        m.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
        // IPv4 names the table the lookup ended in only when asked
        // (LookupTable; else it says "main" whatever the table); IPv6 always
        // does, and refuses the flag.
        m.header.flags = if dst.is_ipv4() {
            RouteFlags::FibMatch | RouteFlags::LookupTable
        } else {
            RouteFlags::FibMatch
        };
        m.attributes.push(RouteAttribute::Destination(RouteAddress::from(dst)));
        Ok(match self.exchange(Msg::GetRoute(m), 0)?.pop() {
            Some(Msg::NewRoute(r)) => route_entry(&r),
            _ => None,
        })
    }

    /// Every route of the main table, of one family.
    pub fn routes(&mut self, ipv4: bool) -> Result<Vec<RouteEntry>, Error> {
        let mut m = RouteMessage::default();
        m.header.address_family = if ipv4 {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.attributes.push(RouteAttribute::Table(MAIN_TABLE));
        Ok(self
            .dump(&Msg::GetRoute(m))?
            .iter()
            .filter_map(|m| match m {
                Msg::NewRoute(r) => route_entry(r),
                _ => None,
            })
            .filter(|r| r.table == MAIN_TABLE)
            .collect())
    }

    /// The neighbour entry (or, `proxy`, the proxy entry) of `addr` on
    /// link `index`.
    pub fn neighbour(&mut self, addr: IpAddr, index: u32, proxy: bool) -> Result<Option<NeighEntry>, Error> {
        let mut m = neigh_message(addr, index, proxy);
        m.header.state = NeighbourState::None;
        Ok(match self.get(Msg::GetNeighbour(m))? {
            Some(Msg::NewNeighbour(n)) => neigh_entry(&n),
            _ => None,
        })
    }

    /// Every neighbour entry (or, `proxy`, proxy entry) of one family; as
    /// `ip neigh show`, not those in state `none` or `noarp` (kept by the
    /// kernel for a while after traffic, meaning no address).
    pub fn neighbours(&mut self, ipv4: bool, proxy: bool) -> Result<Vec<NeighEntry>, Error> {
        let mut m = NeighbourMessage::default();
        m.header.family = if ipv4 {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        if proxy {
            m.header.flags = NeighbourFlags::Proxy;
        }
        Ok(self
            .dump(&Msg::GetNeighbour(m))?
            .iter()
            .filter_map(|m| match m {
                Msg::NewNeighbour(n)
                    if n.header.flags.contains(NeighbourFlags::Proxy) == proxy
                        && (proxy || !matches!(n.header.state, NeighbourState::None | NeighbourState::Noarp)) =>
                {
                    neigh_entry(n)
                }
                _ => None,
            })
            .collect())
    }

    /// `ip link add name NAME address MAC type bridge`.
    pub fn add_bridge(&mut self, name: &str, mac: [u8; 6]) -> Result<(), Error> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]));
        self.change(Msg::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
    }

    /// `ip link set dev INDEX up`.
    pub fn set_up(&mut self, index: u32) -> Result<(), Error> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        self.change(Msg::SetLink(m), 0)
    }

    /// `ip link del dev INDEX`.
    pub fn delete_link(&mut self, index: u32) -> Result<(), Error> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.change(Msg::DelLink(m), 0)
    }

    /// `ip route add|del DST/LEN [via VIA] dev INDEX` in the main table
    /// ([`Change::route`]).
    pub fn route(&mut self, add: bool, dst: IpAddr, len: u8, via: Option<IpAddr>, index: u32) -> Result<(), Error> {
        self.apply(Change::route(add, dst, len, via, index))
    }

    /// `ip neigh add|del proxy ADDR dev INDEX`.
    pub fn proxy(&mut self, add: bool, addr: IpAddr, index: u32) -> Result<(), Error> {
        self.apply(Change::proxy(add, addr, index))
    }

    /// `ip neigh replace ADDR lladdr MAC dev INDEX nud permanent`.
    pub fn set_neighbour(&mut self, addr: IpAddr, index: u32, mac: [u8; 6]) -> Result<(), Error> {
        self.apply(Change::neighbour(addr, index, mac))
    }

    /// `ip neigh del ADDR dev INDEX`.
    pub fn delete_neighbour(&mut self, addr: IpAddr, index: u32) -> Result<(), Error> {
        self.apply(Change::delete_neighbour(addr, index))
    }

    /// One change, acknowledged.
    pub fn apply(&mut self, c: Change) -> Result<(), Error> {
        self.change(c.msg, c.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An interrupted dump is made again, at most `tries` times; another
    /// failure is not.
    #[test]
    fn an_interrupted_dump_is_made_again() {
        let intr = || Error {
            errno: Some(EINTR),
            message: "interrupted".into(),
        };
        let mut calls = 0;
        let r = consistent(5, || {
            calls += 1;
            if calls < 3 { Err(intr()) } else { Ok(calls) }
        });
        assert_eq!((r, calls), (Ok(3), 3));
        let mut calls = 0;
        let r: Result<(), Error> = consistent(5, || {
            calls += 1;
            Err(intr())
        });
        assert_eq!((r.unwrap_err().errno, calls), (Some(EINTR), 5));
        let mut calls = 0;
        let r: Result<(), Error> = consistent(5, || {
            calls += 1;
            Err(Error {
                errno: Some(1),
                message: "refused".into(),
            })
        });
        assert_eq!((r.unwrap_err().errno, calls), (Some(1), 1));
    }
}
