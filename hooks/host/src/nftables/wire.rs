//! The nf_tables netlink messages: what the kernel reads, built; what it
//! answers, read.

use super::{Change, Data};

// nfnetlink and nf_tables (linux/netfilter/nfnetlink.h, nf_tables.h).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWTABLE: u16 = 0;
/// A table's answer.
pub(super) const TABLE: u16 = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE;
const NFT_MSG_GETTABLE: u16 = 1;
const NFTA_TABLE_NAME: u16 = 1;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_CREATE: u16 = 0x400;
pub(super) const NLMSG_ERROR: u16 = 2;
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
