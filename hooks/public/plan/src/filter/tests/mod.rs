use super::*;
use crate::endpoint::{BridgeName, Owner, Port};
use crate::plan::{Plan, Request};

fn endpoint(vm: u64, nic_id: u32, alias: Option<(u32, u32)>, n: u8) -> Endpoint {
    Endpoint {
        owner: Owner { vm, nic_id, alias },
        bridge: BridgeName::parse("scwpub0").unwrap(),
        public: Public::V4 {
            ip: [172, 30, 0, 4 * n].into(),
            gateway: [172, 30, 0, 4 * n + 1].into(),
            external: [198, 51, 100, n].into(),
        },
        port: Some(Port {
            tap: BridgeName::parse(&format!("one-{vm}-0")).unwrap(),
            mac: [2, 0, 0, 0, 0, n],
        }),
    }
}

/// Inbound TCP to one port (a chain), outbound everything (open: no
/// chain, the elements `continue`).
fn rules(inbound_port: u16) -> Vec<Rule> {
    let mut rules = secgroup::default_rules();
    rules[1].protocol = secgroup::Protocol::Tcp;
    rules[1].ports = vec![secgroup::PortRange {
        first: inbound_port,
        last: inbound_port,
    }];
    rules
}

fn filter(vm: u64, nic_id: u32, inbound_port: u16) -> NicFilter {
    NicFilter {
        vm,
        nic_id,
        rules: rules(inbound_port),
    }
}

fn ops(request: &Request, observed: &FilterState) -> Vec<NftOp> {
    let mut p = Plan::default();
    plan(request, observed, &mut p);
    p.nft.ops
}

/// Plans, checks the plan against the simulated kernel, returns the ops.
fn apply(request: &Request, host: &mut FilterState) -> Vec<NftOp> {
    let planned = ops(request, host);
    simulate(host, &planned).unwrap_or_else(|e| panic!("{e}: {planned:?}"));
    planned
}

fn add(n: u8, direction: Direction, target: FilterTarget) -> NftOp {
    NftOp::AddFilterAddr {
        addr: FilterAddr::V4([172, 30, 0, 4 * n].into()),
        direction,
        target,
    }
}

fn delete(n: u8, direction: Direction, target: FilterTarget) -> NftOp {
    NftOp::DeleteFilterAddr {
        addr: FilterAddr::V4([172, 30, 0, 4 * n].into()),
        direction,
        target,
    }
}

fn shared(port: u16) -> FilterChain {
    FilterChain::of(&rules(port), IN).unwrap()
}

fn set(port: u16) -> NftOp {
    NftOp::SetChain {
        direction: IN,
        rules: rules(port),
    }
}

fn sg_chains(s: &FilterState) -> Vec<&str> {
    s.chains
        .keys()
        .map(String::as_str)
        .filter(|c| FilterChain::parse(c).is_some())
        .collect()
}

const IN: Direction = Direction::Inbound;
const OUT: Direction = Direction::Outbound;
const ON: FilterTarget = FilterTarget::Continue;

#[test]
fn names_say_which_chain() {
    let c = shared(22);
    assert_eq!(FilterChain::parse(&c.name()), Some(c));
    let old = FilterChain::Nic {
        vm: 7,
        nic_id: 0,
        direction: OUT,
    };
    assert_eq!(old.name(), "nic-7-0-out");
    assert_eq!(FilterChain::parse("nic-7-0-out"), Some(old));
    for base in ["forward", "input", "nic-7-in", "sg-12-in"] {
        assert_eq!(FilterChain::parse(base), None, "{base}");
    }
    assert_eq!(FilterTarget::parse(CONTINUE), Some(ON));
    assert_eq!(FilterTarget::Chain(c).verdict(), format!("jump {}", c.name()));
    assert_eq!(FilterChain::of(&secgroup::default_rules(), IN), None);
}

/// NICs with the same rules share one chain: made with the first, kept
/// while any NIC jumps to it, deleted with the last.
#[test]
fn nics_of_one_rule_set_share_a_chain() {
    let (a, b) = (endpoint(7, 0, None, 1), endpoint(8, 0, None, 2));
    let mut host = FilterState::default();
    let first = Request {
        ensure: vec![a],
        filters: vec![filter(7, 0, 22)],
        ..Request::default()
    };
    assert_eq!(
        apply(&first, &mut host),
        [
            NftOp::EnsureFilters,
            set(22),
            add(1, IN, FilterTarget::Chain(shared(22))),
            add(1, OUT, ON)
        ]
    );
    // The second NIC of the group: its elements only.
    let second = Request {
        ensure: vec![b],
        keep: vec![a],
        filters: vec![filter(8, 0, 22)],
        ..Request::default()
    };
    assert_eq!(
        apply(&second, &mut host),
        [add(2, IN, FilterTarget::Chain(shared(22))), add(2, OUT, ON)]
    );
    assert_eq!(
        host,
        FilterState::model(&[filter(7, 0, 22), filter(8, 0, 22)], [&a, &b])
    );
    assert_eq!(sg_chains(&host).len(), 1);
    assert!(ops(&second, &host).is_empty());
    // The first goes: its elements; the chain stays for the second.
    let clean_a = Request {
        remove: vec![a],
        keep: vec![b],
        ..Request::default()
    };
    assert_eq!(
        apply(&clean_a, &mut host),
        [delete(1, IN, FilterTarget::Chain(shared(22))), delete(1, OUT, ON)]
    );
    // The last goes: the chain with it.
    let clean_b = Request {
        remove: vec![b],
        ..Request::default()
    };
    let planned = apply(&clean_b, &mut host);
    assert_eq!(planned[2], NftOp::DeleteChain(shared(22)), "{planned:?}");
    assert!(sg_chains(&host).is_empty());
    assert!(ops(&clean_b, &host).is_empty());
}

/// A plan from the record's model sees only the NICs it touches: a chain
/// the record says another NIC jumps to stays.
#[test]
fn a_chain_other_recorded_nics_use_stays() {
    let (a, b) = (endpoint(7, 0, None, 1), endpoint(8, 0, None, 2));
    let recorded = [filter(7, 0, 22), filter(8, 0, 22), filter(9, 0, 443)];
    let model = FilterState::model(&recorded[..1], [&a]);
    let touched = BTreeSet::from([(7, 0)]);
    let candidates = BTreeSet::from([shared(22)]);
    let in_use = chains_in_use(&recorded, &touched, &candidates);
    assert_eq!(in_use, candidates);
    assert!(chains_in_use(&recorded[..1], &touched, &candidates).is_empty());
    let clean = Request {
        remove: vec![a],
        keep: vec![b],
        ..Request::default()
    };
    assert!(ops(&clean, &model).contains(&NftOp::DeleteChain(shared(22))));
    let model = FilterState {
        used_elsewhere: in_use,
        ..model
    };
    assert!(!ops(&clean, &model).iter().any(|o| matches!(o, NftOp::DeleteChain(_))));
}

/// New rules (`update_sg`): the NIC's elements re-pointed to the chain of
/// its new rules, made in that transaction, the old one deleted when no
/// NIC is left on it, in both directions of opening and closing.
#[test]
fn new_rules_move_the_elements_to_their_chain() {
    let nic = endpoint(7, 0, None, 1);
    let open_both = NicFilter {
        vm: 7,
        nic_id: 0,
        rules: secgroup::default_rules(),
    };
    let from_to = [
        (filter(7, 0, 22), filter(7, 0, 443)),
        (filter(7, 0, 22), open_both.clone()),
        (open_both.clone(), filter(7, 0, 22)),
    ];
    for (from, to) in from_to {
        let mut host = FilterState::model(std::slice::from_ref(&from), [&nic]);
        let request = Request {
            ensure: vec![nic],
            filters: vec![to.clone()],
            ..Request::default()
        };
        let planned = apply(&request, &mut host);
        assert_eq!(
            host,
            FilterState::model(std::slice::from_ref(&to), [&nic]),
            "{planned:?}"
        );
        let target = |f: &NicFilter| FilterTarget::of(&f.rules, IN);
        let mut expected = Vec::new();
        if let FilterTarget::Chain(_) = target(&to) {
            expected.push(NftOp::SetChain {
                direction: IN,
                rules: to.rules.clone(),
            });
        }
        expected.push(delete(1, IN, target(&from)));
        if let FilterTarget::Chain(c) = target(&from) {
            expected.push(NftOp::DeleteChain(c));
        }
        expected.push(add(1, IN, target(&to)));
        assert_eq!(planned, expected);
    }
}

/// A host set up by a version that gave every NIC two chains of its own:
/// a NIC found so (a listing, after the model's transaction was refused)
/// has its elements re-pointed and its chains deleted in one transaction
/// nft accepts; `reconcile` collects every chain nothing jumps to.
#[test]
fn chains_an_earlier_version_made_go() {
    let (a, b) = (endpoint(7, 0, None, 1), endpoint(8, 0, None, 2));
    let mut old = FilterState::model(&[], []);
    let addr = |n: u8| FilterAddr::V4([172, 30, 0, 4 * n].into());
    for (vm, n) in [(7, 1), (8, 2)] {
        for (d, m) in [(IN, "in4"), (OUT, "out4")] {
            let c = FilterChain::Nic {
                vm,
                nic_id: 0,
                direction: d,
            };
            old.chains
                .insert(c.name(), (None, vec![Some("one-scaleway sg rules 00ff".into())]));
            old.elements.entry(m.into()).or_default().insert(addr(n), c.name());
        }
    }
    // An orphan of ours, and a chain of another program's.
    old.chains.insert(shared(443).name(), (None, vec![None]));
    old.chains.insert("theirs".into(), (None, vec![None]));
    let pre_a = Request {
        ensure: vec![a],
        keep: vec![b],
        filters: vec![filter(7, 0, 22)],
        ..Request::default()
    };
    let mut host = old.clone();
    apply(&pre_a, &mut host);
    assert!(!host.chains.contains_key("nic-7-0-in") && !host.chains.contains_key("nic-7-0-out"));
    assert!(host.chains.contains_key("nic-8-0-in") && host.chains.contains_key(&shared(443).name()));
    let reconcile = Request {
        ensure: vec![a, b],
        filters: vec![filter(7, 0, 22), filter(8, 0, 22)],
        collect_chains: true,
        ..Request::default()
    };
    let mut host = old;
    apply(&reconcile, &mut host);
    assert_eq!(sg_chains(&host), [shared(22).name()]);
    assert!(host.chains.contains_key("theirs"));
    assert!(ops(&reconcile, &host).is_empty());
}

/// A NIC alias is judged by its parent NIC's chains; when it goes, its
/// address only.
#[test]
fn an_alias_goes_with_its_address_only() {
    let (nic, alias) = (endpoint(7, 0, None, 1), endpoint(7, 2, Some((0, 0)), 2));
    let mut host = FilterState::model(&[filter(7, 0, 22)], [&nic, &alias]);
    let detach = Request {
        remove: vec![alias],
        keep: vec![nic],
        ..Request::default()
    };
    assert_eq!(
        apply(&detach, &mut host),
        [delete(2, IN, FilterTarget::Chain(shared(22))), delete(2, OUT, ON)]
    );
}

/// An address another endpoint that stays holds keeps its elements.
#[test]
fn an_address_another_endpoint_holds_stays() {
    let (gone, holder) = (endpoint(7, 0, None, 1), endpoint(8, 0, None, 1));
    let host = FilterState::model(&[filter(8, 0, 22)], [&holder]);
    let request = Request {
        remove: vec![gone],
        keep: vec![holder],
        ..Request::default()
    };
    assert!(ops(&request, &host).is_empty());
    let alone = Request {
        remove: vec![gone],
        ..Request::default()
    };
    let planned = ops(&alone, &host);
    assert_eq!(planned.len(), 3, "{planned:?}");
}

/// An unknown table (listed empty): the base is declared with the rest.
#[test]
fn the_base_comes_with_the_first_change() {
    let request = Request {
        ensure: vec![endpoint(7, 0, None, 1)],
        filters: vec![filter(7, 0, 22)],
        ..Request::default()
    };
    assert_eq!(ops(&request, &FilterState::default())[0], NftOp::EnsureFilters);
}
