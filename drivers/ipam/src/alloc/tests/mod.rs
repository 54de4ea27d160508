use super::*;

#[test]
fn private_cidr_validation() {
    let cases = [
        ("172.30.0.0/16", Ok(32766)),
        ("10.0.0.0/29", Ok(2)),
        ("100.64.0.0/10", Ok((1 << 21) - 2)),
        ("172.30.0.0/30", Err("too small")),
        ("172.30.0.1/16", Err("has host bits set: did you mean 172.30.0.0/16?")),
        ("51.15.0.0/16", Err("is not private address space")),
        ("172.30.0.0", Err("needs a prefix length")),
        ("172.30.0.0/33", Err("is not an IPv4 network")),
        ("fd00::/64", Err("is not an IPv4 network")),
        ("172.30.0.0/16; reboot", Err("is not an IPv4 network")),
    ];
    for (text, expected) in cases {
        match (PrivateCidr::parse(text), expected) {
            (Ok(c), Ok(n)) => assert_eq!(c.capacity(), n, "{text}"),
            (Err(e), Err(want)) => assert!(e.contains(want) && e.contains("PRIVATE_CIDR"), "{text}: {e}"),
            (got, want) => panic!("{text}: got {got:?}, wanted {want:?}"),
        }
    }
}

#[test]
fn allocation_skips_the_edges_and_taken_blocks() {
    let cidr = PrivateCidr::parse("192.168.7.0/29").unwrap();
    let mut taken = BTreeSet::new();
    let first = cidr.first_free(&taken).unwrap();
    assert_eq!(
        (first.vm, first.gateway),
        (Ipv4Addr::new(192, 168, 7, 2), Ipv4Addr::new(192, 168, 7, 3))
    );
    taken.insert(first);
    let second = cidr.first_free(&taken).unwrap();
    assert_eq!(second.cidr(), "192.168.7.4/31");
    taken.insert(second);
    assert_eq!(cidr.first_free(&taken), None, "the /29 is exhausted");
    assert!(!cidr.holds(Block::containing(Ipv4Addr::new(192, 168, 7, 0))));
    assert!(!cidr.holds(Block::containing(Ipv4Addr::new(192, 168, 7, 7))));
    assert!(cidr.holds(second));
}

#[test]
fn blocks_parse_and_print() {
    let b = Block::parse("172.30.12.4/31").unwrap();
    assert_eq!(
        (b.vm.to_string(), b.gateway.to_string()),
        ("172.30.12.4".into(), "172.30.12.5".into())
    );
    assert_eq!(Block::parse("172.30.12.5/31"), None, "odd base");
    assert_eq!(Block::parse("172.30.12.4/30"), None);
}

fn alloc(token: &str) -> Allocation {
    Allocation {
        phase: Phase::Pending,
        token: token.into(),
        zone: "fr-par-1".into(),
        fip_id: None,
        external_ip: None,
        since: 0,
        owner: None,
    }
}

#[test]
fn the_store_round_trips_and_rebuilds_when_missing() {
    let dir = test_support::TempDir::new("ipam-store");
    let store = Store::new(dir.path().join("state/ipam.json"));
    let cidr = PrivateCidr::parse(DEFAULT_PRIVATE_CIDR).unwrap();
    let mut rebuilt = false;
    let block = store
        .update::<_, String>(
            || {
                rebuilt = true;
                Ok(State::default())
            },
            |s| {
                let b = cidr.first_free(&s.taken()).ok_or("full")?;
                s.blocks.insert(b, alloc("t1"));
                Ok(b)
            },
        )
        .unwrap();
    assert!(rebuilt);
    let again = store
        .update::<_, String>(|| panic!("the file exists"), |s| Ok(s.by_token("t1").map(|(b, _)| b)))
        .unwrap();
    assert_eq!(again, Some(block));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(store.path()).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_failed_update_changes_nothing() {
    let dir = test_support::TempDir::new("ipam-store-fail");
    let store = Store::new(dir.path().join("ipam.json"));
    store
        .update::<_, String>(
            || Ok(State::default()),
            |s| {
                s.blocks.insert(Block::parse("172.30.0.2/31").unwrap(), alloc("t1"));
                Ok(())
            },
        )
        .unwrap();
    let err = store.update::<(), String>(
        || Ok(State::default()),
        |s| {
            s.blocks.clear();
            Err("boom".into())
        },
    );
    assert_eq!(err, Err("boom".into()));
    let n = store
        .update::<_, String>(|| Ok(State::default()), |s| Ok(s.blocks.len()))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn a_damaged_file_is_refused_with_advice() {
    let dir = test_support::TempDir::new("ipam-store-bad");
    let store = Store::new(dir.path().join("ipam.json"));
    std::fs::write(store.path(), "{not json").unwrap();
    let err = store
        .update::<(), String>(|| Ok(State::default()), |_| Ok(()))
        .unwrap_err();
    assert!(err.contains("is damaged") && err.contains("rebuild-state"), "{err}");
}

#[test]
fn owners_are_alive_until_they_are_not() {
    let me = Owner::me().unwrap();
    assert!(me.is_alive());
    assert!(
        !Owner {
            started: me.started + 1,
            ..me
        }
        .is_alive(),
        "a reused pid is another process"
    );
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    assert!(!Owner { pid, started: 0 }.is_alive());
}

/// Many processes at once never share a block.
#[test]
fn concurrent_allocations_are_distinct() {
    let dir = test_support::TempDir::new("ipam-store-concurrent");
    let path = dir.path().join("ipam.json");
    let cidr = PrivateCidr::parse("10.9.0.0/24").unwrap();
    let threads: Vec<_> = (0..20)
        .map(|i| {
            let store = Store::new(path.clone());
            std::thread::spawn(move || {
                store
                    .update::<_, String>(
                        || Ok(State::default()),
                        |s| {
                            let b = cidr.first_free(&s.taken()).ok_or("full")?;
                            s.blocks.insert(b, alloc(&format!("t{i}")));
                            Ok(b)
                        },
                    )
                    .unwrap()
            })
        })
        .collect();
    let blocks: BTreeSet<Block> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(blocks.len(), 20);
}
