//! Building and reading the rtnetlink messages of [`super::Rtnl`].

use std::net::IpAddr;

use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};

use super::{AddressEntry, LinkEntry, NeighEntry, RouteEntry};

pub(super) fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn route_address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// The kernel's extended error message, from an error's payload: the
/// request's header (capped: the socket asks for it alone), then
/// attributes; `NLMSGERR_ATTR_MSG` (1) is a string.
pub(crate) fn extack_message(payload: &[u8]) -> Option<String> {
    let mut rest = payload.get(16..)?;
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            return None;
        }
        if kind == 1 {
            let text = rest.get(4..len)?;
            let text = text.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    None
}

pub(super) fn neigh_message(addr: IpAddr, index: u32, proxy: bool) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = family(addr);
    m.header.ifindex = index;
    m.header.state = NeighbourState::Permanent;
    if proxy {
        m.header.flags = NeighbourFlags::Proxy;
    }
    m.attributes.push(NeighbourAttribute::Destination(match addr {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }));
    m
}

pub(super) fn link_entry(l: &LinkMessage) -> LinkEntry {
    let mut e = LinkEntry {
        index: l.header.index,
        name: String::new(),
        kind: None,
        up: l.header.flags.contains(LinkFlags::Up),
        master: None,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => e.name.clone_from(n),
            LinkAttribute::Controller(m) => e.master = Some(*m),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        e.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    e
}

pub(super) fn address_entry(a: &AddressMessage) -> Option<AddressEntry> {
    let mut local = None;
    let mut address = None;
    for attr in &a.attributes {
        match attr {
            AddressAttribute::Local(l) => local = Some(*l),
            AddressAttribute::Address(l) => address = Some(*l),
            _ => {}
        }
    }
    Some(AddressEntry {
        addr: local.or(address)?,
        len: a.header.prefix_len,
        index: a.header.index,
    })
}

pub(super) fn route_entry(r: &RouteMessage) -> Option<RouteEntry> {
    let mut e = RouteEntry {
        dst: match r.header.address_family {
            AddressFamily::Inet => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            AddressFamily::Inet6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            _ => return None,
        },
        len: r.header.destination_prefix_length,
        table: u32::from(r.header.table),
        oif: None,
        gateway: None,
        kind: match r.header.kind {
            RouteType::Unicast => None,
            other => Some(format!("{other:?}").to_ascii_lowercase()),
        },
    };
    for a in &r.attributes {
        match a {
            RouteAttribute::Destination(d) => e.dst = route_address(d)?,
            RouteAttribute::Gateway(g) => e.gateway = route_address(g),
            RouteAttribute::Oif(i) => e.oif = Some(*i),
            RouteAttribute::Table(t) => e.table = *t,
            _ => {}
        }
    }
    Some(e)
}

pub(super) fn neigh_entry(n: &NeighbourMessage) -> Option<NeighEntry> {
    let mut addr = None;
    let mut mac = None;
    for a in &n.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => addr = Some(IpAddr::V4(*a)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => addr = Some(IpAddr::V6(*a)),
            NeighbourAttribute::LinkLayerAddress(m) => mac = <[u8; 6]>::try_from(m.as_slice()).ok(),
            _ => {}
        }
    }
    Some(NeighEntry {
        addr: addr?,
        index: n.header.ifindex,
        mac,
        permanent: n.header.state == NeighbourState::Permanent,
    })
}
