//! nftables changes sent through nf_tables netlink from the driver's own
//! process: elements of sets and maps added and deleted, and tables, sets,
//! chains and rules declared ([`decl`]): the messages `nft -f` sends for
//! them (the same attributes, byte for byte, as nft 1.0.6's: `tests/mod.rs`
//! and the public driver's `base` tests), in one batch that the kernel
//! applies all or nothing, without an `nft` process (about 4 ms of a `pre`,
//! a third of a `reconcile`); and whether a table exists
//! ([`Nftables::has_table`]: what a listing of a missing table would start
//! an `nft` process to learn). Needs `CAP_NET_ADMIN` (root, or the root
//! helper).
//!
//! The batch is one write, whatever its size; only its last message asks
//! for an acknowledgement: the kernel answers every refused message anyway,
//! in order, before it, so that answer ends the batch's, and its first
//! refusal (with the kernel's explanation) names the change it refused.

use std::fmt;
use std::io;
use std::time::Duration;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use crate::netlink::{Error, extack_message};

pub use value::{VALUE_MAX, Value, next_key};

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

/// One element: a key, or an interval of keys (of an interval set: from
/// `key` to `key_end`, both in it), and what it maps to.
///
/// An interval goes as nft sends it: in a set of concatenations, one
/// element with its last key (`NFTA_SET_ELEM_KEY_END`); in a set of single
/// values, its first key then the key after its last, flagged as an end
/// (none when the last is the type's last value: the first is marked open
/// instead); an addition's intervals in the order of their keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub key: Value,
    pub key_end: Option<Value>,
    pub data: Data,
}

impl Element {
    /// An element of one key.
    pub fn new(key: Value, data: Data) -> Self {
        Self {
            key,
            key_end: None,
            data,
        }
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key_end {
            Some(end) => f.write_str(&self.key.range_text(end))?,
            None => write!(f, "{}", self.key)?,
        }
        match &self.data {
            Data::None => Ok(()),
            Data::Value(v) => write!(f, " : {v}"),
            Data::Verdict(v) => write!(f, " : {v}"),
        }
    }
}

/// `add element` or `delete element` of elements of one set: one message.
/// A deletion names its elements by key (their values are in its text
/// only, as nft sends them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elements {
    pub add: bool,
    pub family: Family,
    pub table: String,
    pub set: String,
    pub elements: Vec<Element>,
}

/// As `nft -f` reads it.
impl fmt::Display for Elements {
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

pub mod decl;
mod encode;
mod value;
mod wire;

pub use decl::Change;

use wire::{NLMSG_ERROR, TABLE, answers, encode_get_table, error, messages};
pub use wire::{element_lists, encode};

/// The largest batch sent in one write (the socket's send buffer is made
/// as large): `reconcile` of 10,000 NICs writes about 3 MB.
pub const MAX_BATCH: usize = 64 << 20;

/// An nf_tables netlink socket.
pub struct Nftables {
    socket: Socket,
    seq: u32,
    /// The send buffer forced so far (0: the default).
    sndbuf: usize,
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
        Ok(Self {
            socket,
            seq: 0,
            sndbuf: 0,
        })
    }

    /// Applies `changes` as one transaction: all, or (the kernel refused
    /// one) none, with the refused change and the kernel's reason.
    pub fn apply(&mut self, changes: &[Change]) -> Result<(), Error> {
        if changes.is_empty() {
            return Ok(());
        }
        if let Some(e) = changes.iter().find_map(overlong) {
            return Err(Error {
                errno: None,
                message: format!("nftables: a value longer than {VALUE_MAX} bytes, not sent: {e}"),
            });
        }
        let first = self.seq.wrapping_add(1);
        let (batch, owners) = encode(changes, first);
        if batch.len() > MAX_BATCH {
            return Err(Error {
                errno: None,
                message: format!("nftables: a batch of {} bytes, larger than {MAX_BATCH}", batch.len()),
            });
        }
        self.seq = first
            .wrapping_add(u32::try_from(owners.len()).unwrap_or(u32::MAX))
            .wrapping_add(1);
        // The kernel reads a batch in one message, refused when larger than
        // the socket's send buffer (we have CAP_NET_ADMIN: forced).
        let size = batch.len().saturating_add(4096);
        if size > self.sndbuf {
            nix::sys::socket::setsockopt(&self.socket, nix::sys::socket::sockopt::SndBufForce, &size)
                .map_err(|e| io_error(e.into()))?;
            self.sndbuf = size;
        }
        self.socket.send(&batch, 0).map_err(io_error)?;
        // The kernel processes the batch in the write: its answers (an
        // error for each refused message, in order, then the last
        // message's acknowledgement) are queued when it returns; read
        // until the last message is answered, or the first refusal and
        // what is queued after it.
        let mut tally = Tally::new(first, changes, &owners);
        let mut buf = Vec::with_capacity(8192);
        while !tally.done() {
            buf.clear();
            let flags = if tally.refused.is_some() {
                nix::libc::MSG_DONTWAIT
            } else {
                0
            };
            match self.socket.recv(&mut buf, flags) {
                Ok(_) => tally.read(&buf)?,
                Err(e) if tally.refused.is_some() && e.kind() == io::ErrorKind::WouldBlock => break,
                // More answers than the socket holds: only refusals are
                // that many (a batch that passes has one answer).
                Err(e) if tally.refused.is_none() && e.raw_os_error() == Some(nix::libc::ENOBUFS) => {
                    return Err(Error {
                        errno: Some(nix::libc::ENOBUFS),
                        message: "the kernel refused the nftables batch (more refusals than could be read)".into(),
                    });
                }
                Err(e) => return Err(tally.refused.map_or_else(|| io_error(e), |(_, r)| r)),
            }
        }
        tally.refused.map_or(Ok(()), |(_, e)| Err(e))
    }
}

/// The first element of `change` with a value longer than the kernel's.
fn overlong(change: &Change) -> Option<&Element> {
    let Change::Elements(e) = change else {
        return None;
    };
    e.elements.iter().find(|e| {
        e.key.overlong()
            || match &e.data {
                Data::Value(v) => v.overlong(),
                Data::None | Data::Verdict(_) => false,
            }
    })
}

/// The answers to a batch so far.
struct Tally<'a> {
    /// The batch's first sequence number (its begin).
    first: u32,
    changes: &'a [Change],
    /// Each message's change.
    owners: &'a [usize],
    /// The last message answered (only it asks for an acknowledgement).
    answered: bool,
    /// The first refused change.
    refused: Option<(usize, Error)>,
}

impl<'a> Tally<'a> {
    fn new(first: u32, changes: &'a [Change], owners: &'a [usize]) -> Self {
        Self {
            first,
            changes,
            owners,
            answered: false,
            refused: None,
        }
    }

    /// The last message answered: every answer came.
    fn done(&self) -> bool {
        self.answered
    }

    /// Takes the answers in `buf`; a refusal of the batch's begin or end
    /// (the kernel then reads none of its changes) is the error.
    fn read(&mut self, buf: &[u8]) -> Result<(), Error> {
        let last = u32::try_from(self.owners.len()).unwrap_or(u32::MAX).saturating_add(1);
        for (seq, errno, rest) in answers(buf) {
            let offset = seq.wrapping_sub(self.first);
            let message = offset.checked_sub(1).map(|i| i as usize);
            match message.filter(|i| *i < self.owners.len()) {
                Some(m) => {
                    self.answered |= m + 1 == self.owners.len();
                    let i = self.owners[m];
                    if errno != 0 && self.refused.as_ref().is_none_or(|(k, _)| i < *k) {
                        let what = format!("`{}`", self.changes[i]);
                        self.refused = Some((i, refusal(errno, rest, &what)));
                    }
                }
                None if errno != 0 && offset <= last => {
                    return Err(refusal(errno, rest, "the nftables batch"));
                }
                None => {}
            }
        }
        Ok(())
    }
}

#[allow(clippy::needless_pass_by_value)]
fn io_error(e: io::Error) -> Error {
    Error {
        errno: None,
        message: format!("nftables netlink: {e}"),
    }
}

impl Nftables {
    /// Whether the table `name` of `family` exists: one request (where
    /// listing a missing table would start an `nft` process to learn it).
    pub fn has_table(&mut self, family: Family, name: &str) -> Result<bool, Error> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let buf = encode_get_table(family.code(), name, seq);
        self.socket.send(&buf, 0).map_err(io_error)?;
        let mut answer = Vec::with_capacity(8192);
        loop {
            answer.clear();
            self.socket.recv(&mut answer, 0).map_err(io_error)?;
            for (s, kind, body) in messages(&answer) {
                if s != seq {
                    continue;
                }
                if kind == TABLE {
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

/// The kernel's refusal of `what` (a change, the batch).
fn refusal(errno: i32, payload: &[u8], what: &str) -> Error {
    let text = io::Error::from_raw_os_error(errno).to_string();
    let text = text.split(" (os error").next().unwrap_or_default().to_owned();
    let why = extack_message(payload).filter(|w| !w.is_empty());
    Error {
        errno: Some(errno),
        message: match why {
            Some(why) => format!("the kernel refused {what}: {text}: {why}"),
            None => format!("the kernel refused {what}: {text}"),
        },
    }
}

#[cfg(test)]
mod tests;
