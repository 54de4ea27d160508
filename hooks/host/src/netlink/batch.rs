//! Changes of routes and neighbour entries, one at a time or many in one
//! write: the kernel takes the messages of a write in order, each on its
//! own, answering each refused one and the last (which alone asks for an
//! acknowledgement), so `reconcile`'s thousands of changes cost a few
//! system calls instead of two each.

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
/// before the next, and the kernel counts each answer (a refusal, when all
/// are refused) against the socket's receive buffer at about 1 KiB (its
/// default, 208 KiB, overflows at a few hundred: "No buffer space
/// available").
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
            let write: Vec<Change> = changes.by_ref().take(WRITE).collect();
            let mut buf = Vec::new();
            // Sequence number -> position in this write. Only the last
            // change asks for an acknowledgement: the kernel answers each
            // refused one anyway, in order, before it (one read for the
            // write instead of one per change).
            let mut pending = BTreeMap::new();
            let last = write.len().saturating_sub(1);
            let mut last_seq = 0;
            for (i, c) in write.into_iter().enumerate() {
                let seq = self.next_seq();
                pending.insert(seq, i);
                let ack = if i == last { NLM_F_ACK } else { 0 };
                serialize(c.msg, ack | c.flags, seq, &mut buf);
                last_seq = seq;
            }
            let mut answers: Vec<Result<(), Error>> = vec![Ok(()); pending.len()];
            self.socket.send(&buf, 0)?;
            let mut done = false;
            while !done {
                for answer in self.receive()? {
                    if let (Some(&at), NetlinkPayload::Error(e)) =
                        (pending.get(&answer.header.sequence_number), &answer.payload)
                    {
                        if let (Some(slot), Some(refused)) = (answers.get_mut(at), refusal(e)) {
                            *slot = Err(refused);
                        }
                        done |= answer.header.sequence_number == last_seq;
                    }
                }
            }
            results.extend(answers);
        }
        Ok(results)
    }
}
