//! The nf_tables netlink messages: what the kernel reads, built; what it
//! answers, read.

use super::decl::{Change, Expr, Rule, SetRef};
use super::encode as decl;
use super::{Data, Element, Elements, Family, Verdict};

// nfnetlink and nf_tables (linux/netfilter/nfnetlink.h, nf_tables.h).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWTABLE: u16 = 0;
/// A table's answer.
pub(super) const TABLE: u16 = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE;
const NFT_MSG_GETTABLE: u16 = 1;
const NFTA_TABLE_NAME: u16 = 1;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFTA_TABLE_USERDATA: u16 = 6;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFT_MSG_DELSETELEM: u16 = 14;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
pub(super) const NLMSG_ERROR: u16 = 2;
pub(super) const NLA_F_NESTED: u16 = 0x8000;
pub(super) const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
pub(super) const NFTA_SET_ELEM_LIST_SET: u16 = 2;
pub(super) const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
pub(super) const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
pub(super) const NFTA_SET_ELEM_FLAGS: u16 = 3;
pub(super) const NFTA_SET_ELEM_USERDATA: u16 = 6;
const NFTA_SET_ELEM_KEY_END: u16 = 10;
pub(super) const NFT_SET_ELEM_INTERVAL_END: u32 = 1;
/// An element's user data marking an interval open at the type's last
/// value (`NFTNL_UDATA_SET_ELEM_FLAGS`: `NFTNL_SET_ELEM_F_INTERVAL_OPEN`).
pub(super) const OPEN_INTERVAL: &[u8] = &[1, 4, 1, 0, 0, 0];
pub(super) const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

/// An attribute: length, type, payload, padded to 4 bytes.
pub(super) fn attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = u16::try_from(4 + payload.len()).unwrap_or(u16::MAX);
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// A NUL-terminated string attribute.
pub(super) fn string(buf: &mut Vec<u8>, kind: u16, s: &str) {
    let mut payload = s.as_bytes().to_vec();
    payload.push(0);
    attr(buf, kind, &payload);
}

/// A nested attribute holding what `fill` writes.
pub(super) fn nest(buf: &mut Vec<u8>, kind: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    fill(buf);
    // Callers keep a nest under 64 KiB ([`ELEMENTS_MAX`]); a larger one
    // would be cut here.
    debug_assert!(buf.len() - start <= usize::from(u16::MAX));
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

/// The most bytes of one message's `NFTA_SET_ELEM_LIST_ELEMENTS`: an
/// attribute's length is 16 bits, so a change of many elements is several
/// messages (as nft sends them too).
const ELEMENTS_MAX: usize = 60 * 1024;

/// One entry of an element list, as sent ([`Element`]'s intervals).
enum Entry<'a> {
    /// A key, or (of a set of concatenations) an interval with its last key.
    Whole(&'a Element),
    /// An interval's first key (`open`: it runs to the type's last value).
    Start(&'a Element, bool),
    /// The key after an interval's last.
    End(Vec<u8>),
}

/// The entries of `change`'s elements, as nft sends them.
fn entries(change: &Elements) -> Vec<Entry<'_>> {
    let mut elements: Vec<&Element> = change.elements.iter().collect();
    let split = |e: &Element| e.key_end.is_some() && !e.key.concatenated();
    if change.add && elements.iter().any(|e| split(e)) {
        elements.sort_by(|a, b| a.key.bytes().cmp(b.key.bytes()));
    }
    let mut out = Vec::with_capacity(elements.len());
    for e in elements {
        match &e.key_end {
            Some(last) if split(e) => match super::next_key(last.bytes()) {
                Some(end) => out.extend([Entry::Start(e, false), Entry::End(end)]),
                None => out.push(Entry::Start(e, true)),
            },
            _ => out.push(Entry::Whole(e)),
        }
    }
    out
}

/// One entry of a list (number `n`: nft numbers the list's entries, the
/// kernel reads them in order whatever their type).
fn element(buf: &mut Vec<u8>, entry: &Entry<'_>, add: bool, n: u16) {
    nest(buf, n, |buf| {
        let (e, open) = match entry {
            Entry::End(key) => {
                attr(buf, NFTA_SET_ELEM_FLAGS, &NFT_SET_ELEM_INTERVAL_END.to_be_bytes());
                nest(buf, NFTA_SET_ELEM_KEY, |buf| attr(buf, NFTA_DATA_VALUE, key));
                return;
            }
            Entry::Whole(e) => (e, false),
            Entry::Start(e, open) => (e, *open),
        };
        nest(buf, NFTA_SET_ELEM_KEY, |buf| attr(buf, NFTA_DATA_VALUE, e.key.bytes()));
        if let (Some(last), Entry::Whole(_)) = (&e.key_end, entry) {
            nest(buf, NFTA_SET_ELEM_KEY_END, |buf| {
                attr(buf, NFTA_DATA_VALUE, last.bytes());
            });
        }
        match (&e.data, add) {
            (Data::Value(v), true) => {
                nest(buf, NFTA_SET_ELEM_DATA, |buf| attr(buf, NFTA_DATA_VALUE, v.bytes()));
            }
            (Data::Verdict(v), true) => nest(buf, NFTA_SET_ELEM_DATA, |buf| verdict(buf, v)),
            _ => {}
        }
        if open {
            attr(buf, NFTA_SET_ELEM_USERDATA, OPEN_INTERVAL);
        }
    });
}

/// The `NFTA_SET_ELEM_LIST_ELEMENTS` of `change`, one per message (what
/// nft 1.0.6 sends: keys, and for an addition to a map its values; a
/// list holds at most [`ELEMENTS_MAX`] bytes).
pub fn element_lists(change: &Elements) -> Vec<Vec<u8>> {
    let mut lists: Vec<Vec<u8>> = Vec::new();
    let mut entries: Vec<u8> = Vec::new();
    let mut n: u16 = 0;
    let wrap = |entries: &[u8]| {
        let mut list = Vec::new();
        nest(&mut list, NFTA_SET_ELEM_LIST_ELEMENTS, |buf| {
            buf.extend_from_slice(entries);
        });
        list
    };
    for e in &self::entries(change) {
        let mut one = Vec::new();
        element(&mut one, e, change.add, n.saturating_add(1));
        if n == u16::MAX || (n > 0 && entries.len() + one.len() > ELEMENTS_MAX) {
            lists.push(wrap(&entries));
            entries.clear();
            one.clear();
            element(&mut one, e, change.add, 1);
            n = 0;
        }
        entries.extend_from_slice(&one);
        n += 1;
    }
    lists.push(wrap(&entries));
    lists
}

/// The batch of `changes`: begin (sequence number `seq`), the messages of
/// each change (`seq + 1`, ...; each acknowledged), end; and which change
/// each message belongs to (a rule with an anonymous set is three).
pub fn encode(changes: &[Change], seq: u32) -> (Vec<u8>, Vec<usize>) {
    let mut buf = Vec::new();
    message(&mut buf, NFNL_MSG_BATCH_BEGIN, 0, seq, 0, NFNL_SUBSYS_NFTABLES, |_| {});
    // Set IDs as nft gives them: the named sets' first, in order, then
    // the anonymous ones'.
    let sets: Vec<_> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Set(s) => Some((s.family, s.table.clone(), s.name.clone())),
            _ => None,
        })
        .zip(1u32..)
        .map(|((f, t, n), id)| (f, t, n, id))
        .collect();
    let mut batch = Batch {
        buf,
        seq,
        owners: Vec::new(),
        next_id: u32::try_from(sets.len()).unwrap_or(u32::MAX).saturating_add(1),
        sets,
        last: None,
    };
    for (i, c) in changes.iter().enumerate() {
        batch.change(i, c);
    }
    let Batch {
        mut buf,
        seq,
        owners,
        last,
        ..
    } = batch;
    // Only the last message asks for an acknowledgement: the kernel
    // answers every refused one anyway, in order, so that one ends the
    // answers (one per message would be thousands for `reconcile`).
    if let Some(at) = last {
        let flags = u16::from_ne_bytes([buf[at + 6], buf[at + 7]]) | NLM_F_ACK;
        buf[at + 6..at + 8].copy_from_slice(&flags.to_ne_bytes());
    }
    message(
        &mut buf,
        NFNL_MSG_BATCH_END,
        0,
        seq.wrapping_add(1),
        0,
        NFNL_SUBSYS_NFTABLES,
        |_| {},
    );
    (buf, owners)
}

/// A batch being written.
struct Batch {
    buf: Vec<u8>,
    /// The last message's sequence number.
    seq: u32,
    /// Each message's change.
    owners: Vec<usize>,
    /// The named sets the batch declares, with their IDs (a lookup names
    /// the set and its ID, as nft's do).
    sets: Vec<(Family, String, String, u32)>,
    /// The next anonymous set's ID.
    next_id: u32,
    /// Where the last message starts.
    last: Option<usize>,
}

impl Batch {
    /// One message of change `owner`.
    fn message(&mut self, owner: usize, kind: u16, flags: u16, family: Family, fill: impl FnOnce(&mut Vec<u8>)) {
        self.seq = self.seq.wrapping_add(1);
        self.owners.push(owner);
        self.last = Some(self.buf.len());
        message(
            &mut self.buf,
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            flags,
            self.seq,
            family.code(),
            0,
            fill,
        );
    }

    /// The ID of the named set `name` the batch declares.
    fn set_id(&self, family: Family, table: &str, name: &str) -> Option<u32> {
        self.sets
            .iter()
            .find(|(f, t, n, _)| *f == family && t == table && n == name)
            .map(|s| s.3)
    }

    fn change(&mut self, i: usize, c: &Change) {
        match c {
            Change::Elements(e) => {
                let kind = if e.add { NFT_MSG_NEWSETELEM } else { NFT_MSG_DELSETELEM };
                let flags = if e.add { NLM_F_CREATE } else { 0 };
                for list in element_lists(e) {
                    self.message(i, kind, flags, e.family, |buf| {
                        string(buf, NFTA_SET_ELEM_LIST_TABLE, &e.table);
                        string(buf, NFTA_SET_ELEM_LIST_SET, &e.set);
                        buf.extend_from_slice(&list);
                    });
                }
            }
            Change::Table(t) => self.message(i, NFT_MSG_NEWTABLE, 0, t.family, |buf| {
                string(buf, NFTA_TABLE_NAME, &t.name);
                attr(buf, NFTA_TABLE_FLAGS, &0u32.to_be_bytes());
                attr(buf, NFTA_TABLE_USERDATA, &comment(&t.comment));
            }),
            Change::Set(s) => {
                let id = self.set_id(s.family, &s.table, &s.name).unwrap_or_default();
                self.message(i, NFT_MSG_NEWSET, NLM_F_CREATE, s.family, |buf| {
                    decl::set(
                        buf,
                        &s.table,
                        &s.name,
                        s.flags,
                        &s.key,
                        s.data.as_ref(),
                        id,
                        None,
                        &s.udata,
                    );
                });
            }
            Change::Chain(c) => self.message(i, NFT_MSG_NEWCHAIN, NLM_F_CREATE, c.family, |buf| {
                decl::chain(buf, c);
            }),
            Change::Flush(c) => self.message(i, NFT_MSG_DELRULE, 0, c.family, |buf| {
                string(buf, NFTA_RULE_TABLE, &c.table);
                string(buf, NFTA_RULE_CHAIN, &c.chain);
            }),
            Change::DeleteChain(c) => self.message(i, NFT_MSG_DELCHAIN, 0, c.family, |buf| {
                string(buf, NFTA_CHAIN_TABLE, &c.table);
                string(buf, NFTA_CHAIN_NAME, &c.chain);
            }),
            Change::Rule(r) => self.rule(i, r),
        }
    }

    /// A rule: first the anonymous sets it looks up, each declared and
    /// filled; then the rule.
    fn rule(&mut self, i: usize, r: &Rule) {
        let mut ids = Vec::new();
        for e in &r.exprs {
            let Expr::Lookup { set, .. } = e else { continue };
            let id = match set {
                SetRef::Named(name) => self.set_id(r.family, &r.table, name),
                SetRef::Anonymous(a) => {
                    let id = self.next_id;
                    self.next_id = id.saturating_add(1);
                    self.message(i, NFT_MSG_NEWSET, NLM_F_CREATE, r.family, |buf| {
                        decl::anonymous(buf, &r.table, a, id);
                    });
                    self.message(i, NFT_MSG_NEWSETELEM, NLM_F_CREATE, r.family, |buf| {
                        decl::anonymous_elements(buf, &r.table, a, id);
                    });
                    Some(id)
                }
            };
            ids.push(id);
        }
        self.message(i, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, r.family, |buf| {
            decl::rule(buf, r, &ids);
        });
    }
}

/// The messages in `buf`: (sequence number, type, what follows the header).
pub(super) fn messages(buf: &[u8]) -> Vec<(u32, u16, &[u8])> {
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
pub(super) fn error(body: &[u8]) -> Option<(i32, &[u8])> {
    let code = i32::from_ne_bytes(body.get(..4)?.try_into().ok()?);
    Some((code.saturating_abs(), &body[4..]))
}

/// The acknowledgements and errors in `buf`: (sequence number, errno,
/// what follows the errno).
pub(super) fn answers(buf: &[u8]) -> Vec<(u32, i32, &[u8])> {
    messages(buf)
        .into_iter()
        .filter(|(_, kind, _)| *kind == NLMSG_ERROR)
        .filter_map(|(seq, _, body)| error(body).map(|(errno, rest)| (seq, errno, rest)))
        .collect()
}

/// A request for table `name` of family `family`.
pub(super) fn encode_get_table(family: u8, name: &str, seq: u32) -> Vec<u8> {
    let mut buf = Vec::new();
    message(
        &mut buf,
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE,
        0,
        seq,
        family,
        0,
        |buf| {
            string(buf, NFTA_TABLE_NAME, name);
        },
    );
    buf
}

/// A comment in nft's user data: type 0, its length, the text and a NUL.
pub(super) fn comment(text: &str) -> Vec<u8> {
    let mut out = vec![0, u8::try_from(text.len() + 1).unwrap_or(u8::MAX)];
    out.extend_from_slice(text.as_bytes());
    out.push(0);
    out
}

/// A verdict's `NFTA_DATA_VERDICT`.
pub(super) fn verdict(buf: &mut Vec<u8>, v: &Verdict) {
    nest(buf, NFTA_DATA_VERDICT, |buf| {
        let (code, chain) = v.code();
        attr(buf, NFTA_VERDICT_CODE, &code.to_be_bytes());
        if let Some(c) = chain {
            string(buf, NFTA_VERDICT_CHAIN, c);
        }
    });
}
