//! Changes of routes and neighbour entries, one at a time or many in one
//! write: the kernel takes the messages of a write in order, each on its
//! own and each acknowledged, so `reconcile`'s thousands of changes cost a
//! few system calls instead of two each.

use std::collections::BTreeMap;
use std::net::IpAddr;

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage as Msg;
use netlink_packet_route::neighbour::NeighbourAttribute;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};

use super::messages::{family, neigh_message};
use super::{Error, Rtnl, refusal, serialize};

/// A change to send: [`Rtnl::apply`] or, with others, [`Rtnl::apply_all`].
#[derive(Debug, Clone)]
pub struct Change {
    pub(super) msg: Msg,
    pub(super) flags: u16,
}

/// The changes one write carries at most: the answers to a write are read
/// before the next, and the kernel counts each acknowledgement against the
/// socket's receive buffer at about 1 KiB (its default, 208 KiB, overflows
/// at a few hundred: "No buffer space available").
const WRITE: usize = 128;

impl Change {
    /// `ip route add|del DST/LEN [via VIA] dev INDEX` in the main table,
    /// as `ip` makes it (protocol boot; scope link without a gateway).
    pub fn route(add: bool, dst: IpAddr, len: u8, via: Option<IpAddr>, index: u32) -> Self {
        let mut m = RouteMessage::default();
        m.header.address_family = family(dst);
        m.header.destination_prefix_length = len;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        if add {
            m.header.protocol = RouteProtocol::Boot;
            m.header.kind = RouteType::Unicast;
            m.header.scope = if dst.is_ipv4() && via.is_none() {
                RouteScope::Link
            } else {
                RouteScope::Universe
            };
        } else if dst.is_ipv4() {
            m.header.scope = RouteScope::NoWhere;
        }
        m.attributes.push(RouteAttribute::Destination(RouteAddress::from(dst)));
        if let Some(via) = via {
            m.attributes.push(RouteAttribute::Gateway(RouteAddress::from(via)));
        }
        m.attributes.push(RouteAttribute::Oif(index));
        if add {
            Self {
                msg: Msg::NewRoute(m),
                flags: NLM_F_CREATE | NLM_F_EXCL,
            }
        } else {
            Self {
                msg: Msg::DelRoute(m),
                flags: 0,
            }
        }
    }

    /// `ip neigh add|del proxy ADDR dev INDEX`.
    pub fn proxy(add: bool, addr: IpAddr, index: u32) -> Self {
        let m = neigh_message(addr, index, true);
        if add {
            Self {
                msg: Msg::NewNeighbour(m),
                flags: NLM_F_CREATE | NLM_F_EXCL,
            }
        } else {
            Self {
                msg: Msg::DelNeighbour(m),
                flags: 0,
            }
        }
    }

    /// `ip neigh replace ADDR lladdr MAC dev INDEX nud permanent`.
    pub fn neighbour(addr: IpAddr, index: u32, mac: [u8; 6]) -> Self {
        let mut m = neigh_message(addr, index, false);
        m.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        Self {
            msg: Msg::NewNeighbour(m),
            flags: NLM_F_CREATE | NLM_F_REPLACE,
        }
    }

    /// `ip neigh del ADDR dev INDEX`.
    pub fn delete_neighbour(addr: IpAddr, index: u32) -> Self {
        Self {
            msg: Msg::DelNeighbour(neigh_message(addr, index, false)),
            flags: 0,
        }
    }
}

impl Rtnl {
    /// Sends `changes` in as few writes as they fit in, and reads every
    /// acknowledgement: each change's result, in order (a refused change
    /// does not stop the ones after it: the kernel goes on). `Err` only
    /// when the socket itself fails (the results are then unknown).
    pub fn apply_all(&mut self, changes: Vec<Change>) -> Result<Vec<Result<(), Error>>, Error> {
        let mut results = Vec::with_capacity(changes.len());
        let mut changes = changes.into_iter().peekable();
        while changes.peek().is_some() {
            let mut buf = Vec::new();
            // Sequence number -> position in this write.
            let mut pending = BTreeMap::new();
            while pending.len() < WRITE
                && let Some(c) = changes.next()
            {
                let seq = self.next_seq();
                pending.insert(seq, pending.len());
                serialize(c.msg, NLM_F_ACK | c.flags, seq, &mut buf);
            }
            let mut answers: Vec<Option<Result<(), Error>>> = vec![None; pending.len()];
            self.socket.send(&buf, 0)?;
            while answers.iter().any(Option::is_none) {
                for answer in self.receive()? {
                    if let (Some(&at), NetlinkPayload::Error(e)) =
                        (pending.get(&answer.header.sequence_number), &answer.payload)
                        && let Some(slot) = answers.get_mut(at)
                    {
                        *slot = Some(refusal(e).map_or(Ok(()), Err));
                    }
                }
            }
            results.extend(answers.into_iter().flatten());
        }
        Ok(results)
    }
}
