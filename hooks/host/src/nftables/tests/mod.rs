//! The messages are nft's: each element form we send, against the bytes
//! nft 1.0.6 sent for it (`strace -e trace=sendmsg -s 4096 -v nft -f FILE`
//! on our tables, the `NFTA_SET_ELEM_LIST_ELEMENTS` attribute of each
//! message, its 4-byte header included).

#![allow(clippy::unwrap_used)] // test code

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn change(add: bool, family: Family, table: &str, set: &str, elements: Vec<Element>) -> Elements {
    Elements {
        add,
        family,
        table: table.into(),
        set: set.into(),
        elements,
    }
}

fn nat(add: bool, pairs: &[(&str, &str)]) -> Elements {
    let elements = pairs
        .iter()
        .map(|(k, v)| Element::new(Value::default().ipv4(v4(k)), Data::Value(Value::default().ipv4(v4(v)))))
        .collect();
    change(add, Family::Ip, "one_scaleway", "dnat_map", elements)
}

fn guard(add: bool, set: &str, key: Value) -> Elements {
    change(
        add,
        Family::Bridge,
        "one_scaleway_guard",
        set,
        vec![Element::new(key, Data::None)],
    )
}

fn filter(addr: &str, verdict: Verdict) -> Elements {
    let e = Element::new(Value::default().ipv4(v4(addr)), Data::Verdict(verdict));
    change(true, Family::Inet, "one_scaleway_sg", "in4", vec![e])
}

/// What nft sent, as strace printed it (the header, then the payload).
fn sent(len: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = len.to_ne_bytes().to_vec();
    out.extend_from_slice(&(0x8003u16).to_ne_bytes());
    out.extend_from_slice(payload);
    out
}

const PORT: &[u8] = b"one-2-0\x00\x00\x00\x00\x00\x00\x00\x00\x00";

#[test]
fn every_element_form_is_what_nft_sends() {
    let port = || Value::default().ifname("one-2-0");
    let mac = [0x02, 0x00, 0xac, 0x14, 0x00, 0x02];
    let cases: Vec<(Elements, Vec<u8>)> = vec![
        (
            nat(true, &[("198.18.0.1", "172.20.0.2")]),
            sent(32, b"\x1c\x00\x01\x80\x0c\x00\x01\x80\x08\x00\x01\x00\xc6\x12\x00\x01\x0c\x00\x02\x80\x08\x00\x01\x00\xac\x14\x00\x02"),
        ),
        (
            nat(true, &[("198.18.0.7", "172.20.0.2"), ("198.18.0.3", "172.20.0.4")]),
            sent(
                60,
                b"\x1c\x00\x01\x80\x0c\x00\x01\x80\x08\x00\x01\x00\xc6\x12\x00\x07\x0c\x00\x02\x80\x08\x00\x01\x00\xac\x14\x00\x02\x1c\x00\x02\x80\x0c\x00\x01\x80\x08\x00\x01\x00\xc6\x12\x00\x03\x0c\x00\x02\x80\x08\x00\x01\x00\xac\x14\x00\x04",
            ),
        ),
        (
            nat(false, &[("198.18.0.1", "172.20.0.2")]),
            sent(20, b"\x10\x00\x01\x80\x0c\x00\x01\x80\x08\x00\x01\x00\xc6\x12\x00\x01"),
        ),
        (
            guard(true, "ports", port()),
            sent(32, &[b"\x1c\x00\x01\x80\x18\x00\x01\x80\x14\x00\x01\x00", PORT].concat()),
        ),
        (
            guard(true, "macs", port().ether(mac)),
            sent(
                40,
                &[b"\x24\x00\x01\x80\x20\x00\x01\x80\x1c\x00\x01\x00", PORT, b"\x02\x00\xac\x14\x00\x02\x00\x00"].concat(),
            ),
        ),
        (
            guard(false, "macs", port().ether(mac)),
            sent(
                40,
                &[b"\x24\x00\x01\x80\x20\x00\x01\x80\x1c\x00\x01\x00", PORT, b"\x02\x00\xac\x14\x00\x02\x00\x00"].concat(),
            ),
        ),
        (
            guard(true, "addr4", port().ipv4(v4("172.20.0.2"))),
            sent(
                36,
                &[b"\x20\x00\x01\x80\x1c\x00\x01\x80\x18\x00\x01\x00", PORT, b"\xac\x14\x00\x02"].concat(),
            ),
        ),
        (
            filter("172.20.0.2", Verdict::Continue),
            sent(36, b"\x20\x00\x01\x80\x0c\x00\x01\x80\x08\x00\x01\x00\xac\x14\x00\x02\x10\x00\x02\x80\x0c\x00\x02\x80\x08\x00\x01\x00\xff\xff\xff\xff"),
        ),
        (
            filter("172.20.0.9", Verdict::Jump("sg-x-in".into())),
            sent(48, b"\x2c\x00\x01\x80\x0c\x00\x01\x80\x08\x00\x01\x00\xac\x14\x00\x09\x1c\x00\x02\x80\x18\x00\x02\x80\x08\x00\x01\x00\xff\xff\xff\xfd\x0c\x00\x02\x00sg-x-in\x00"),
        ),
    ];
    for (c, want) in cases {
        assert_eq!(element_lists(&c), [want], "{c}");
    }
}

#[test]
fn changes_read_as_nft_scripts() {
    let port = Value::default().ifname("one-2-0");
    assert_eq!(
        nat(false, &[("198.18.0.1", "172.20.0.2"), ("198.18.0.3", "172.20.0.4")]).to_string(),
        "delete element ip one_scaleway dnat_map { 198.18.0.1 : 172.20.0.2, 198.18.0.3 : 172.20.0.4 }"
    );
    assert_eq!(
        guard(true, "macs", port.ether([2, 0, 0xac, 0x14, 0, 2])).to_string(),
        "add element bridge one_scaleway_guard macs { \"one-2-0\" . 02:00:ac:14:00:02 }"
    );
    assert_eq!(
        filter("172.20.0.9", Verdict::Jump("sg-1-in".into())).to_string(),
        "add element inet one_scaleway_sg in4 { 172.20.0.9 : jump sg-1-in }"
    );
    assert_eq!(
        Value::default()
            .ifname("one-2-0")
            .ipv6("2001:db8::1".parse().unwrap())
            .to_string(),
        "\"one-2-0\" . 2001:db8::1"
    );
}

/// An interval's text: a prefix as `a/len` (the whole space `::/0`, one
/// address `/128`), any other range `a-b`, a header's bytes always
/// `0xA-0xB`; the parts before the last as they are.
#[test]
fn intervals_read_as_nft_writes_them() {
    let v6 = |s: &str| Value::default().ipv6(s.parse().unwrap());
    let range = |a: Value, b: Value| {
        Element {
            key: a,
            key_end: Some(b),
            data: Data::None,
        }
        .to_string()
    };
    assert_eq!(range(v6("2001:db8::"), v6("2001:db8::ff")), "2001:db8::/120");
    assert_eq!(range(v6("::"), v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")), "::/0");
    assert_eq!(range(v6("2001:db8::7"), v6("2001:db8::7")), "2001:db8::7/128");
    assert_eq!(range(v6("2001:db8::1"), v6("2001:db8::5")), "2001:db8::1-2001:db8::5");
    let port = || Value::default().ifname("one-2-0");
    assert_eq!(
        range(port().raw128(0x20), port().raw128(0x2f)),
        "\"one-2-0\" . 0x00000000000000000000000000000020-0x0000000000000000000000000000002f"
    );
    assert_eq!(
        range(
            port().ipv6("2001:db8::".parse().unwrap()),
            port().ipv6("2001:db8::ffff".parse().unwrap())
        ),
        "\"one-2-0\" . 2001:db8::/112"
    );
}

/// A value longer than the kernel takes (64 bytes) is not cut: it is
/// marked, shown as such, and refused before anything is sent.
#[test]
fn an_overlong_value_is_refused_not_cut() {
    let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let fits = Value::default().ifname("one-2-0").ipv6(v6).ipv6(v6).ipv6(v6);
    assert_eq!(fits.bytes().len(), 64);
    assert!(!fits.overlong());
    let long = fits.ipv4(v4("172.20.0.1"));
    assert!(long.overlong());
    assert_eq!(long.bytes(), fits.bytes());
    assert!(long.to_string().ends_with("2001:db8::1 . (longer than 64 bytes)"));
    let e = Nftables::open(Duration::from_secs(1))
        .unwrap()
        .apply(&[guard(true, "addrs", long).into()])
        .unwrap_err();
    assert!(e.message.contains("longer than 64 bytes, not sent"), "{}", e.message);
}

/// The batch: begin, one message per change (its family, `NLM_F_CREATE`
/// for an addition), the last one acknowledged, end; sequence numbers
/// from `seq`.
#[test]
fn a_batch_is_begin_changes_end() {
    let changes = [
        nat(true, &[("198.18.0.1", "172.20.0.2")]).into(),
        guard(false, "ports", Value::default().ifname("one-2-0")).into(),
    ];
    let (buf, owners) = encode(&changes, 7);
    assert_eq!(owners, [0, 1]);
    let mut headers = Vec::new();
    let mut rest = buf.as_slice();
    while !rest.is_empty() {
        let len = u32::from_ne_bytes(rest[..4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(rest[4..6].try_into().unwrap());
        let flags = u16::from_ne_bytes(rest[6..8].try_into().unwrap());
        let seq = u32::from_ne_bytes(rest[8..12].try_into().unwrap());
        headers.push((kind, flags, seq, rest[16], u16::from_be_bytes([rest[18], rest[19]])));
        rest = &rest[len..];
    }
    assert_eq!(
        headers,
        [
            (16, 1, 7, 0, 10),
            ((10 << 8) | 12, 1 | 0x400, 8, 2, 0),
            ((10 << 8) | 14, 1 | 4, 9, 7, 0),
            (17, 1, 10, 0, 10),
        ]
    );
}

/// The kernel's answers: acknowledgements and refusals by sequence
/// number, with what follows the errno.
#[test]
fn answers_are_read_by_sequence_number() {
    let buf = [answer(8, 0), answer(9, -2)].concat();
    let got: Vec<(u32, i32, usize)> = answers(&buf).into_iter().map(|(s, e, r)| (s, e, r.len())).collect();
    assert_eq!(got, [(8, 0, 16), (9, 2, 16)]);
    let e = refusal(
        2,
        &[0; 16],
        &format!("`{}`", nat(true, &[("198.18.0.1", "172.20.0.2")])),
    );
    assert_eq!(
        e.message,
        "the kernel refused `add element ip one_scaleway dnat_map { 198.18.0.1 : 172.20.0.2 }`: No such file or directory"
    );
    assert_eq!(e.errno, Some(2));
}

/// An error message of sequence number `seq`.
fn answer(seq: u32, code: i32) -> Vec<u8> {
    let mut buf = Vec::new();
    buf.extend_from_slice(&36u32.to_ne_bytes());
    buf.extend_from_slice(&2u16.to_ne_bytes());
    buf.extend_from_slice(&0u16.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&code.to_ne_bytes());
    buf.extend_from_slice(&[0; 16]);
    buf
}

/// A batch is done when its last message is answered; the first refused
/// change is the one named (a message of a rule's anonymous set names the
/// rule); a refused begin or end is the batch's refusal at once (no answer
/// for its changes would come).
#[test]
fn answers_are_tallied() {
    let changes: [Change; 2] = [
        nat(true, &[("198.18.0.1", "172.20.0.2")]).into(),
        guard(true, "ports", Value::default().ifname("one-2-0")).into(),
    ];
    let owners = [0, 1, 1];
    let mut t = Tally::new(10, &changes, &owners);
    t.read(&answer(11, 0)).unwrap();
    assert!(!t.done());
    t.read(&[answer(13, 0), answer(99, -2)].concat()).unwrap();
    assert!(t.done() && t.refused.is_none());
    let mut t = Tally::new(10, &changes, &owners);
    t.read(&answer(12, -2)).unwrap();
    assert_eq!(t.refused.as_ref().map(|r| r.0), Some(1));
    assert!(!t.done());
    let mut t = Tally::new(10, &changes, &owners);
    t.read(&[answer(12, -17), answer(11, -2)].concat()).unwrap();
    let (i, e) = t.refused.unwrap();
    assert_eq!((i, e.errno), (0, Some(2)));
    assert!(e.message.contains("dnat_map"), "{e}");
    for refused in [10, 14] {
        let mut t = Tally::new(10, &changes, &owners);
        let e = t.read(&answer(refused, -95)).unwrap_err();
        assert!(e.message.starts_with("the kernel refused the nftables batch: "), "{e}");
    }
}

/// A chain declared, flushed and deleted: the batch nft 1.0.6 sent for
/// `add chain inet t c`, `flush chain inet t c`, `delete chain inet t c`
/// (`strace -e trace=sendmsg -e write=3`), but for the acknowledgement
/// ours asks of its last message.
#[test]
fn a_chain_deleted_is_what_nft_sends() {
    use super::decl::{Chain, DeleteChain, Flush};
    let (t, c) = ("t".to_owned(), "c".to_owned());
    let changes = [
        Change::Chain(Chain {
            family: Family::Inet,
            table: t.clone(),
            name: c.clone(),
            hook: None,
            text: String::new(),
        }),
        Change::Flush(Flush {
            family: Family::Inet,
            table: t.clone(),
            chain: c.clone(),
        }),
        Change::DeleteChain(DeleteChain {
            family: Family::Inet,
            table: t,
            chain: c,
        }),
    ];
    let nft: &[u8] = b"\x14\x00\x00\x00\x10\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x0a\x24\x00\x00\x00\x03\x0a\x01\x04\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x06\x00\x01\x00\x74\x00\x00\x00\x06\x00\x03\x00\x63\x00\x00\x00\x24\x00\x00\x00\x08\x0a\x01\x00\x02\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x06\x00\x01\x00\x74\x00\x00\x00\x06\x00\x02\x00\x63\x00\x00\x00\x24\x00\x00\x00\x05\x0a\x01\x00\x03\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x06\x00\x01\x00\x74\x00\x00\x00\x06\x00\x03\x00\x63\x00\x00\x00\x14\x00\x00\x00\x11\x00\x01\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x0a";
    let (mut ours, owners) = encode(&changes, 0);
    assert_eq!(owners, [0, 1, 2]);
    // The last change's flags: NLM_F_REQUEST | NLM_F_ACK.
    let last = 20 + 36 + 36;
    assert_eq!(u16::from_ne_bytes([ours[last + 6], ours[last + 7]]), 1 | 4);
    ours[last + 6..last + 8].copy_from_slice(&1u16.to_ne_bytes());
    assert_eq!(ours, nft);
    assert_eq!(changes[2].to_string(), "delete chain inet t c");
    assert_eq!(changes[0].to_string(), "add chain inet t c");
}

/// Many elements: several lists (messages), each under the 16-bit length
/// of an attribute, each numbered from 1, every element in one of them.
#[test]
fn many_elements_are_several_lists() {
    let elements: Vec<Element> = (0..5000u32)
        .map(|n| {
            Element::new(
                Value::default().ipv4(Ipv4Addr::from(n)),
                Data::Verdict(Verdict::Jump("sg-0123456789abcdef0123456789abcdef-in".into())),
            )
        })
        .collect();
    let lists = element_lists(&change(true, Family::Inet, "t", "in4", elements));
    assert!(lists.len() > 1);
    let mut total = 0;
    for list in &lists {
        let len = u16::from_ne_bytes([list[0], list[1]]) as usize;
        assert_eq!(len, list.len());
        assert!(len <= 60 * 1024 + 4);
        // The first entry is number 1.
        assert_eq!(u16::from_ne_bytes([list[6], list[7]]) & 0x7fff, 1);
        let mut rest = &list[4..];
        while !rest.is_empty() {
            let l = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
            total += 1;
            rest = &rest[l.next_multiple_of(4)..];
        }
    }
    assert_eq!(total, 5000);
}
