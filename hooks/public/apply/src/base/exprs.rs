//! Our base rules' expressions: what nft 1.0.6 compiles each rule's text
//! to (`nft --debug=netlink -f`), one rule text at a time.

use host_tools::nftables::Verdict;
use host_tools::nftables::decl::{
    Anonymous, CmpOp, Expr, Header, KeyType, Meta, REG_1, REG_2, REG_VERDICT, SetRef, types,
};

use super::{UDATA_ANON_ETHER, UDATA_ANON_ICMPV6, UDATA_ANON_IPV6};

fn meta(key: Meta, dreg: u32) -> Expr {
    Expr::Meta { key, dreg }
}

fn load(base: Header, offset: u32, len: u32, dreg: u32) -> Expr {
    Expr::Payload {
        base,
        offset,
        len,
        dreg,
    }
}

fn eq(data: &[u8]) -> Expr {
    Expr::Cmp {
        reg: REG_1,
        op: CmpOp::Eq,
        data: data.to_vec(),
    }
}

fn ne(data: &[u8]) -> Expr {
    Expr::Cmp {
        reg: REG_1,
        op: CmpOp::Neq,
        data: data.to_vec(),
    }
}

fn and(mask: &[u8]) -> Expr {
    Expr::Bitwise {
        reg: REG_1,
        mask: mask.to_vec(),
        xor: vec![0; mask.len()],
        op: true,
    }
}

/// Register 1 in the named set (`invert`: not in it).
fn lookup(set: &str, invert: bool) -> Expr {
    Expr::Lookup {
        reg: REG_1,
        set: SetRef::Named(set.into()),
        dreg: None,
        invert,
    }
}

/// Register 1 mapped by the named map into `dreg`.
fn map(set: &str, dreg: u32) -> Expr {
    Expr::Lookup {
        reg: REG_1,
        set: SetRef::Named(set.into()),
        dreg: Some(dreg),
        invert: false,
    }
}

/// Register 1 in an anonymous set of `len`-byte keys.
fn anonymous(kind: u32, len: u32, interval: bool, udata: &[u8], elements: &[(&[u8], bool)], invert: bool) -> Expr {
    Expr::Lookup {
        reg: REG_1,
        set: SetRef::Anonymous(Anonymous {
            key: KeyType::new(kind, len),
            interval,
            udata: udata.to_vec(),
            elements: elements.iter().map(|(k, end)| (k.to_vec(), *end)).collect(),
            open_end: false,
        }),
        dreg: None,
        invert,
    }
}

fn verdict(v: Verdict) -> Expr {
    Expr::Verdict(v)
}

const ETHER_IP: &[u8] = &[0x08, 0x00];
const ETHER_ARP: &[u8] = &[0x08, 0x06];
const ETHER_IP6: &[u8] = &[0x86, 0xdd];
/// `NFPROTO_IPV4`, `NFPROTO_IPV6`.
const NFPROTO_IPV4: &[u8] = &[2];
const NFPROTO_IPV6: &[u8] = &[10];
const ICMPV6: &[u8] = &[58];

/// `meta mark & 0x80000000 == 0x80000000` (the mark is in host order).
fn private_mark() -> [Expr; 3] {
    let bit = 0x8000_0000u32.to_ne_bytes();
    [meta(Meta::Mark, REG_1), and(&bit), eq(&bit)]
}

/// An interface name then `len` bytes at `offset` of `base`, not in `set`.
fn pair_not_in(name: Meta, base: Header, offset: u32, len: u32, set: &str) -> [Expr; 3] {
    [meta(name, REG_1), load(base, offset, len, REG_2), lookup(set, true)]
}

/// `ip6 saddr != { ::, fe80::/10 }`: the interval set of nft's ends.
fn ip6_unspecified_or_link_local() -> Expr {
    let mut one = [0u8; 16];
    one[15] = 1;
    let mut fe80 = [0u8; 16];
    fe80[..2].copy_from_slice(&[0xfe, 0x80]);
    let mut fec0 = [0u8; 16];
    fec0[..2].copy_from_slice(&[0xfe, 0xc0]);
    anonymous(
        types::IPV6_ADDR,
        16,
        true,
        UDATA_ANON_IPV6,
        &[(&[0; 16], false), (&one, true), (&fe80, false), (&fec0, true)],
        true,
    )
}

/// An ICMPv6 packet (on a bridge: Ethernet type, then the protocol).
fn icmpv6() -> [Expr; 4] {
    [
        load(Header::Link, 12, 2, REG_1),
        eq(ETHER_IP6),
        meta(Meta::L4proto, REG_1),
        eq(ICMPV6),
    ]
}

/// `<nfproto> <addr at offset> vmap @map`.
fn vmap(nfproto: &[u8], offset: u32, len: u32, set: &str) -> Vec<Expr> {
    vec![
        meta(Meta::Nfproto, REG_1),
        eq(nfproto),
        load(Header::Network, offset, len, REG_1),
        map(set, REG_VERDICT),
    ]
}

/// The expressions of a rule of ours (`None`: a text not known here).
pub(super) fn exprs(text: &str) -> Option<Vec<Expr>> {
    let drop = verdict(Verdict::Drop);
    let arp = [load(Header::Link, 12, 2, REG_1), eq(ETHER_ARP)];
    Some(match text {
        "meta mark & 0x80000000 == 0x80000000 accept" => [&private_mark()[..], &[verdict(Verdict::Accept)]].concat(),
        "dnat to ip daddr map @dnat_map" => vec![
            load(Header::Network, 16, 4, REG_1),
            map("dnat_map", REG_1),
            Expr::Nat { dnat: true, reg: REG_1 },
        ],
        "snat to ip saddr map @snat_map" => vec![
            load(Header::Network, 12, 4, REG_1),
            map("snat_map", REG_1),
            Expr::Nat {
                dnat: false,
                reg: REG_1,
            },
        ],
        "iifname != @ports accept" => vec![
            meta(Meta::Iifname, REG_1),
            lookup("ports", true),
            verdict(Verdict::Accept),
        ],
        "iifname . ether saddr != @macs drop" => {
            [&pair_not_in(Meta::Iifname, Header::Link, 6, 6, "macs")[..], &[drop]].concat()
        }
        "iifname . arp saddr ether != @macs drop" => [
            &arp[..],
            &pair_not_in(Meta::Iifname, Header::Network, 8, 6, "macs"),
            &[drop],
        ]
        .concat(),
        "arp saddr ip != 0.0.0.0 iifname . arp saddr ip != @addr4 drop" => [
            &arp[..],
            &[load(Header::Network, 14, 4, REG_1), ne(&[0; 4])],
            &pair_not_in(Meta::Iifname, Header::Network, 14, 4, "addr4"),
            &[drop],
        ]
        .concat(),
        "iifname . ip saddr != @addr4 drop" => [
            &[meta(Meta::Protocol, REG_1), eq(ETHER_IP)][..],
            &pair_not_in(Meta::Iifname, Header::Network, 12, 4, "addr4"),
            &[drop],
        ]
        .concat(),
        "ip6 saddr != { ::, fe80::/10 } iifname . ip6 saddr != @addr6 drop" => [
            &[
                meta(Meta::Protocol, REG_1),
                eq(ETHER_IP6),
                load(Header::Network, 8, 16, REG_1),
                ip6_unspecified_or_link_local(),
            ][..],
            &pair_not_in(Meta::Iifname, Header::Network, 8, 16, "addr6"),
            &[drop],
        ]
        .concat(),
        "icmpv6 type { nd-router-advert, nd-redirect } drop" => [
            &icmpv6()[..],
            &[
                load(Header::Transport, 0, 1, REG_1),
                anonymous(
                    types::ICMPV6_TYPE,
                    1,
                    false,
                    UDATA_ANON_ICMPV6,
                    &[(&[134], false), (&[137], false)],
                    false,
                ),
                drop,
            ],
        ]
        .concat(),
        "icmpv6 type nd-neighbor-advert @th,64,128 & 0xffc00000000000000000000000000000 != \
         0xfe800000000000000000000000000000 iifname . @th,64,128 != @nd6 drop" => {
            let mut mask = [0u8; 16];
            mask[..2].copy_from_slice(&[0xff, 0xc0]);
            let mut fe80 = [0u8; 16];
            fe80[..2].copy_from_slice(&[0xfe, 0x80]);
            [
                &icmpv6()[..],
                &[
                    load(Header::Transport, 0, 1, REG_1),
                    eq(&[136]),
                    load(Header::Transport, 8, 16, REG_1),
                    and(&mask),
                    ne(&fe80),
                ],
                &pair_not_in(Meta::Iifname, Header::Transport, 8, 16, "nd6"),
                &[drop],
            ]
            .concat()
        }
        "ether type != { ip, arp, ip6 } drop" => vec![
            load(Header::Link, 12, 2, REG_1),
            anonymous(
                types::ETHER_TYPE,
                2,
                false,
                UDATA_ANON_ETHER,
                &[(ETHER_IP, false), (ETHER_ARP, false), (ETHER_IP6, false)],
                true,
            ),
            drop,
        ],
        "iifname @ports oifname . ether daddr != @macs drop" => [
            &[meta(Meta::Iifname, REG_1), lookup("ports", false)][..],
            &pair_not_in(Meta::Oifname, Header::Link, 0, 6, "macs"),
            &[drop],
        ]
        .concat(),
        "oifname @ports ether daddr & 01:00:00:00:00:00 == 00:00:00:00:00:00 oifname . ether daddr != @macs drop" => [
            &[
                meta(Meta::Oifname, REG_1),
                lookup("ports", false),
                load(Header::Link, 0, 6, REG_1),
                and(&[1, 0, 0, 0, 0, 0]),
                eq(&[0; 6]),
            ][..],
            &pair_not_in(Meta::Oifname, Header::Link, 0, 6, "macs"),
            &[drop],
        ]
        .concat(),
        "ip saddr vmap @out4" => vmap(NFPROTO_IPV4, 12, 4, "out4"),
        "ip6 saddr vmap @out6" => vmap(NFPROTO_IPV6, 8, 16, "out6"),
        "ip daddr vmap @in4" => vmap(NFPROTO_IPV4, 16, 4, "in4"),
        "ip6 daddr vmap @in6" => vmap(NFPROTO_IPV6, 24, 16, "in6"),
        _ => return None,
    })
}
