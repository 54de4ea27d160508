//! Elements of existing nftables sets and maps added and deleted through
//! nf_tables netlink, from the driver's own process: the messages `nft -f`
//! sends for `add element` and `delete element` (the same attributes, byte
//! for byte, as nft 1.0.6's: `tests/mod.rs`), in one batch that the kernel
//! applies all or nothing. What declares tables, chains or rules stays an
//! `nft -f -` transaction; this is for the changes most actions make, a
//! VM's elements, without an `nft` process (about 4 ms of the 7 ms a `pre`
//! took); and whether a table exists ([`Nftables::has_table`]: what a
//! listing of a missing table would start an `nft` process to learn).
//! Needs `CAP_NET_ADMIN` (root, or the root helper).
//!
//! Every message asks for an acknowledgement: the batch succeeded when the
//! kernel acknowledged every message, and its first refusal (with the
//! kernel's explanation) names the change it refused.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use crate::netlink::{Error, extack_message};

/// A table's family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ip,
    Bridge,
    Inet,
}

impl Family {
    /// `NFPROTO_*`.
    fn code(self) -> u8 {
        match self {
            Self::Inet => 1,
            Self::Ip => 2,
            Self::Bridge => 7,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Bridge => "bridge",
            Self::Inet => "inet",
        }
    }
}

/// The bytes of a key (or of a map's value) in nft's layout: each part in
/// network order, padded to 4 bytes (a concatenation's parts each start on
/// a register), with its text as nft writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Value {
    bytes: Vec<u8>,
    text: Vec<String>,
}

/// `IFNAMSIZ`: an interface name's bytes in a key, NUL-padded.
const IFNAMSIZ: usize = 16;

impl Value {
    fn part(mut self, bytes: &[u8], text: String) -> Self {
        self.bytes.extend_from_slice(bytes);
        self.bytes.resize(self.bytes.len().next_multiple_of(4), 0);
        self.text.push(text);
        self
    }

    /// An interface name (`ifname`): at most 15 bytes (longer is cut, as
    /// the kernel's names are), NUL-padded to 16.
    pub fn ifname(self, name: &str) -> Self {
        let mut bytes = [0u8; IFNAMSIZ];
        let len = name.len().min(IFNAMSIZ - 1);
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        self.part(&bytes, format!("\"{}\"", &name[..len]))
    }

    /// A MAC address (`ether_addr`).
    pub fn ether(self, mac: [u8; 6]) -> Self {
        let text = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        self.part(&mac, text)
    }

    /// An IPv4 address (`ipv4_addr`).
    pub fn ipv4(self, a: Ipv4Addr) -> Self {
        self.part(&a.octets(), a.to_string())
    }

    /// An IPv6 address (`ipv6_addr`).
    pub fn ipv6(self, a: Ipv6Addr) -> Self {
        self.part(&a.octets(), a.to_string())
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text.join(" . "))
    }
}

/// A verdict map's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    Accept,
    Drop,
    Return,
    Jump(String),
    Goto(String),
}

impl Verdict {
    /// `NFTA_VERDICT_CODE` and `NFTA_VERDICT_CHAIN`.
    fn code(&self) -> (i32, Option<&str>) {
        match self {
            Self::Continue => (-1, None),
            Self::Accept => (1, None),
            Self::Drop => (0, None),
            Self::Return => (-5, None),
            Self::Jump(c) => (-3, Some(c)),
            Self::Goto(c) => (-4, Some(c)),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Continue => f.write_str("continue"),
            Self::Accept => f.write_str("accept"),
            Self::Drop => f.write_str("drop"),
            Self::Return => f.write_str("return"),
            Self::Jump(c) => write!(f, "jump {c}"),
            Self::Goto(c) => write!(f, "goto {c}"),
        }
    }
}

/// What an element maps its key to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// A set's element.
    None,
    Value(Value),
    Verdict(Verdict),
}

/// One element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub key: Value,
    pub data: Data,
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.data {
            Data::None => write!(f, "{}", self.key),
            Data::Value(v) => write!(f, "{} : {v}", self.key),
            Data::Verdict(v) => write!(f, "{} : {v}", self.key),
        }
    }
}

/// `add element` or `delete element` of elements of one set: one message.
/// A deletion names its elements by key (their values are in its text
/// only, as nft sends them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub add: bool,
    pub family: Family,
    pub table: String,
    pub set: String,
    pub elements: Vec<Element>,
}

/// As `nft -f` reads it.
impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.elements.iter().map(ToString::to_string).collect();
        write!(
            f,
            "{} element {} {} {} {{ {} }}",
            if self.add { "add" } else { "delete" },
            self.family.name(),
            self.table,
            self.set,
            items.join(", ")
        )
    }
}

// nfnetlink and nf_tables (linux/netfilter/nfnetlink.h, nf_tables.h).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFTA_TABLE_NAME: u16 = 1;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

/// An attribute: length, type, payload, padded to 4 bytes.
fn attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = u16::try_from(4 + payload.len()).unwrap_or(u16::MAX);
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// A NUL-terminated string attribute.
fn string(buf: &mut Vec<u8>, kind: u16, s: &str) {
    let mut payload = s.as_bytes().to_vec();
    payload.push(0);
    attr(buf, kind, &payload);
}

/// A nested attribute holding what `fill` writes.
fn nest(buf: &mut Vec<u8>, kind: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    fill(buf);
    let len = u16::try_from(buf.len() - start).unwrap_or(u16::MAX);
    buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    buf[start + 2..start + 4].copy_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
}

/// One message: header, `nfgenmsg`, then what `fill` writes.
fn message(
    buf: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    fill: impl FnOnce(&mut Vec<u8>),
) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&[family, 0]);
    buf.extend_from_slice(&res_id.to_be_bytes());
    fill(buf);
    let len = u32::try_from(buf.len() - start).unwrap_or(u32::MAX);
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// The `NFTA_SET_ELEM_LIST_ELEMENTS` of `change` (what nft 1.0.6 sends:
/// keys, and for an addition to a map its values).
pub fn elements(change: &Change) -> Vec<u8> {
    let mut buf = Vec::new();
    nest(&mut buf, NFTA_SET_ELEM_LIST_ELEMENTS, |buf| {
        // nft numbers the list's entries (the kernel reads them in order,
        // whatever their type).
        for (e, n) in change.elements.iter().zip(1u16..) {
            nest(buf, n, |buf| {
                nest(buf, NFTA_SET_ELEM_KEY, |buf| attr(buf, NFTA_DATA_VALUE, &e.key.bytes));
                match (&e.data, change.add) {
                    (Data::Value(v), true) => {
                        nest(buf, NFTA_SET_ELEM_DATA, |buf| attr(buf, NFTA_DATA_VALUE, &v.bytes));
                    }
                    (Data::Verdict(v), true) => nest(buf, NFTA_SET_ELEM_DATA, |buf| {
                        nest(buf, NFTA_DATA_VERDICT, |buf| {
                            let (code, chain) = v.code();
                            attr(buf, NFTA_VERDICT_CODE, &code.to_be_bytes());
                            if let Some(c) = chain {
                                string(buf, NFTA_VERDICT_CHAIN, c);
                            }
                        });
                    }),
                    _ => {}
                }
            });
        }
    });
    buf
}

/// The batch of `changes`: begin (sequence number `seq`), one message per
/// change (`seq + 1`, ...; each acknowledged), end.
pub fn encode(changes: &[Change], seq: u32) -> Vec<u8> {
    let mut buf = Vec::new();
    message(&mut buf, NFNL_MSG_BATCH_BEGIN, 0, seq, 0, NFNL_SUBSYS_NFTABLES, |_| {});
    let mut n = seq;
    for c in changes {
        n = n.wrapping_add(1);
        let (kind, flags) = if c.add {
            (NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_ACK)
        } else {
            (NFT_MSG_DELSETELEM, NLM_F_ACK)
        };
        message(
            &mut buf,
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            flags,
            n,
            c.family.code(),
            0,
            |buf| {
                string(buf, NFTA_SET_ELEM_LIST_TABLE, &c.table);
                string(buf, NFTA_SET_ELEM_LIST_SET, &c.set);
                buf.extend_from_slice(&elements(c));
            },
        );
    }
    message(
        &mut buf,
        NFNL_MSG_BATCH_END,
        0,
        n.wrapping_add(1),
        0,
        NFNL_SUBSYS_NFTABLES,
        |_| {},
    );
    buf
}

/// The largest batch sent in one write (the socket's send buffer is
/// larger; a bigger change is for `nft -f`).
pub const MAX_BATCH: usize = 64 * 1024;

/// An nf_tables netlink socket.
pub struct Nftables {
    socket: Socket,
    seq: u32,
}

impl Nftables {
    /// A socket with extended acknowledgements and `timeout` on every answer.
    pub fn open(timeout: Duration) -> Result<Self, Error> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(io_error)?;
        socket.bind_auto().map_err(io_error)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(io_error)?;
        socket.set_ext_ack(true).map_err(io_error)?;
        socket.set_cap_ack(true).map_err(io_error)?;
        let tv = nix::sys::time::TimeVal::new(
            i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            i64::from(timeout.subsec_micros()),
        );
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReceiveTimeout, &tv)
            .map_err(|e| io_error(e.into()))?;
        Ok(Self { socket, seq: 0 })
    }

    /// Applies `changes` as one transaction: all, or (the kernel refused
    /// one) none, with the refused change and the kernel's reason.
    pub fn apply(&mut self, changes: &[Change]) -> Result<(), Error> {
        if changes.is_empty() {
            return Ok(());
        }
        let first = self.seq.wrapping_add(1);
        let batch = encode(changes, first);
        if batch.len() > MAX_BATCH {
            return Err(Error {
                errno: None,
                message: format!("nftables: a batch of {} bytes, larger than {MAX_BATCH}", batch.len()),
            });
        }
        self.seq = first
            .wrapping_add(u32::try_from(changes.len()).unwrap_or(u32::MAX))
            .wrapping_add(1);
        self.socket.send(&batch, 0).map_err(io_error)?;
        // The kernel processes the batch in the write: its answers (one
        // per message) are queued when it returns; read until one for every
        // change came.
        let mut answered = vec![false; changes.len()];
        let mut refused: Option<(usize, Error)> = None;
        let mut buf = Vec::with_capacity(8192);
        while answered.iter().any(|a| !a) {
            buf.clear();
            let flags = if refused.is_some() { nix::libc::MSG_DONTWAIT } else { 0 };
            match self.socket.recv(&mut buf, flags) {
                Ok(_) => {}
                Err(e) if refused.is_some() && e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(refused.map_or_else(|| io_error(e), |(_, r)| r)),
            }
            for (seq, errno, rest) in answers(&buf) {
                let Some(i) = seq.wrapping_sub(first).checked_sub(1).map(|i| i as usize) else {
                    continue;
                };
                if let Some(done) = answered.get_mut(i) {
                    *done = true;
                    if errno != 0 && refused.as_ref().is_none_or(|(k, _)| i < *k) {
                        refused = Some((i, refusal(errno, rest, &changes[i])));
                    }
                }
            }
        }
        refused.map_or(Ok(()), |(_, e)| Err(e))
    }
}

#[allow(clippy::needless_pass_by_value)]
fn io_error(e: io::Error) -> Error {
    Error {
        errno: None,
        message: format!("nftables netlink: {e}"),
    }
}

/// The messages in `buf`: (sequence number, type, what follows the header).
fn messages(buf: &[u8]) -> Vec<(u32, u16, &[u8])> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let seq = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if len < 16 || len > rest.len() {
            break;
        }
        out.push((seq, kind, &rest[16..len]));
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    out
}

/// An error message's errno (0: an acknowledgement) and what follows it.
fn error(body: &[u8]) -> Option<(i32, &[u8])> {
    let code = i32::from_ne_bytes(body.get(..4)?.try_into().ok()?);
    Some((code.saturating_abs(), &body[4..]))
}

impl Nftables {
    /// Whether the table `name` of `family` exists: one request (where
    /// listing a missing table would start an `nft` process to learn it).
    pub fn has_table(&mut self, family: Family, name: &str) -> Result<bool, Error> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut buf = Vec::new();
        message(
            &mut buf,
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE,
            0,
            seq,
            family.code(),
            0,
            |buf| string(buf, NFTA_TABLE_NAME, name),
        );
        self.socket.send(&buf, 0).map_err(io_error)?;
        let mut answer = Vec::with_capacity(8192);
        loop {
            answer.clear();
            self.socket.recv(&mut answer, 0).map_err(io_error)?;
            for (s, kind, body) in messages(&answer) {
                if s != seq {
                    continue;
                }
                if kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE {
                    return Ok(true);
                }
                if kind == NLMSG_ERROR {
                    return match error(body) {
                        Some((ENOENT, _)) => Ok(false),
                        Some((0, _)) => Ok(true),
                        Some((errno, rest)) => Err(Error {
                            errno: Some(errno),
                            message: format!(
                                "nftables netlink: cannot read table {} {name}: {}",
                                family.name(),
                                extack_message(rest).unwrap_or_else(|| io::Error::from_raw_os_error(errno).to_string())
                            ),
                        }),
                        None => Err(io_error(io::Error::other("a truncated answer"))),
                    };
                }
            }
        }
    }
}

/// `ENOENT`.
const ENOENT: i32 = 2;

/// The acknowledgements and errors in `buf`: (sequence number, errno,
/// what follows the errno).
fn answers(buf: &[u8]) -> Vec<(u32, i32, &[u8])> {
    messages(buf)
        .into_iter()
        .filter(|(_, kind, _)| *kind == NLMSG_ERROR)
        .filter_map(|(seq, _, body)| error(body).map(|(errno, rest)| (seq, errno, rest)))
        .collect()
}

/// The kernel's refusal of `change`.
fn refusal(errno: i32, payload: &[u8], change: &Change) -> Error {
    let text = io::Error::from_raw_os_error(errno).to_string();
    let text = text.split(" (os error").next().unwrap_or_default().to_owned();
    let why = extack_message(payload).filter(|w| !w.is_empty());
    Error {
        errno: Some(errno),
        message: match why {
            Some(why) => format!("the kernel refused `{change}`: {text}: {why}"),
            None => format!("the kernel refused `{change}`: {text}"),
        },
    }
}

#[cfg(test)]
mod tests;
