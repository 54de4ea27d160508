//! The record's folder: round trips, damage, the earlier single file
//! moved in, and what an action on one VM reads and writes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::BTreeSet;

use public_plan::endpoint::BridgeName;
use public_plan::filter::NicFilter;
use public_plan::{Endpoint, Owner, Port, Public};
use secgroup::Rule;

use super::*;

/// What a record holds, its view aside.
fn whole_of(r: &Record) -> (Vec<Endpoint>, Vec<NicFilter>, BTreeSet<BridgeName>, Option<String>) {
    (
        r.endpoints.clone(),
        r.filters.clone(),
        r.bridges.clone(),
        r.base.clone(),
    )
}

fn whole(file: &RecordFile) -> (Vec<Endpoint>, Vec<NicFilter>, BTreeSet<BridgeName>, Option<String>) {
    whole_of(&file.load().unwrap())
}

fn endpoint(vm: u64, nic: u32, v6: bool) -> Endpoint {
    Endpoint {
        owner: Owner {
            vm,
            nic_id: nic,
            alias: (nic == 2).then_some((0, 0)),
        },
        bridge: BridgeName::parse("scwpub0").unwrap(),
        public: if v6 {
            Public::V6 {
                ip: "2001:db8:1::2".parse().unwrap(),
                gateway: "2001:db8:1::1".parse().unwrap(),
                prefix: "2001:db8:1::".parse().unwrap(),
            }
        } else {
            Public::V4 {
                ip: "172.30.0.4".parse().unwrap(),
                gateway: "172.30.0.5".parse().unwrap(),
                external: "51.15.0.1".parse().unwrap(),
            }
        },
        port: (vm != 7).then(|| Port {
            tap: BridgeName::parse(&format!("one-{vm}-{nic}")).unwrap(),
            mac: [2, 0, 0, 0, vm as u8, nic as u8],
        }),
    }
}

#[test]
fn round_trips_and_refuses_damage() {
    let dir = test_support::TempDir::new("record");
    let file = RecordFile::new(dir.path().join("state/vnm-public.json"));
    assert_eq!(file.path(), dir.path().join("state/vnm-public"));
    assert_eq!(whole(&file), whole_of(&Record::default()));
    let mut record = Record::default();
    record.put(&[endpoint(42, 0, false), endpoint(42, 2, false), endpoint(7, 0, true)]);
    record.bridges.insert(BridgeName::parse("scwpub0").unwrap());
    file.save(&record).unwrap();
    assert_eq!(whole(&file), whole_of(&record));
    assert_eq!(record.of_vm(42).len(), 2);
    // Forgetting one endpoint of a record read: saved, it is gone.
    let mut read = file.load().unwrap();
    read.forget([endpoint(42, 0, false).owner]);
    file.save(&read).unwrap();
    assert_eq!(whole(&file), whole_of(&read));
    assert_eq!(read.of_vm(42).len(), 1);
    std::fs::write(file.path().join("vms-01.json"), r#"{"version": 1, "endpoints": [{"vm": 1, "nic_id": 0, "bridge": "a b", "ip": "1.2.3.4", "gateway": "1.2.3.5", "external_ip": "5.6.7.8"}]}"#).unwrap();
    let e = file.load().unwrap_err().to_string();
    assert!(
        e.contains("is damaged") && e.contains("bridge \"a b\"") && e.contains("vms-01.json"),
        "{e}"
    );
    std::fs::write(file.path().join("vms-01.json"), "{").unwrap();
    assert!(file.load().unwrap_err().to_string().contains("is damaged"));
}

/// NICs with the same rules: one rule set in a bucket. A bucket of the
/// earlier form (each NIC its rules) still loads.
#[test]
fn rule_sets_are_written_once() {
    let dir = test_support::TempDir::new("record");
    let file = RecordFile::new(dir.path().join("vnm-public.json"));
    let mut record = Record::default();
    // VMs 7 and 71 share a bucket (71 = 7 + 64).
    record.put(&[endpoint(42, 0, false), endpoint(7, 0, true), endpoint(71, 0, true)]);
    let nic = |vm, rules: Vec<Rule>| NicFilter { vm, nic_id: 0, rules };
    let mut closed = secgroup::default_rules();
    closed.remove(0);
    record.put_filters(&[
        nic(42, secgroup::default_rules()),
        nic(7, closed.clone()),
        nic(71, closed.clone()),
    ]);
    file.save(&record).unwrap();
    let text = std::fs::read_to_string(file.path().join("vms-07.json")).unwrap();
    assert_eq!(text.matches("\"direction\"").count(), 1, "{text}");
    assert_eq!(whole(&file), whole_of(&record));
    let earlier = r#"{"version": 1, "endpoints": [], "filters": [{"vm": 7, "nic_id": 0, "rules": [{"group": 0, "direction": "inbound", "protocol": "all", "ports": [], "icmp_type": null, "target": "any"}]}]}"#;
    std::fs::write(file.path().join("vms-07.json"), earlier).unwrap();
    assert_eq!(
        file.load().unwrap().filters,
        [nic(7, closed), nic(42, secgroup::default_rules())]
    );
    for damaged in [r#""set": 3"#, r#""set": 0, "rules": []"#] {
        let text = format!(r#"{{"version": 1, "filters": [{{"vm": 7, "nic_id": 0, {damaged}}}], "rule_sets": [[]]}}"#);
        std::fs::write(file.path().join("vms-07.json"), text).unwrap();
        let e = file.load().unwrap_err().to_string();
        assert!(e.contains("is damaged") && e.contains("VM 7 NIC 0"), "{e}");
    }
}

/// The single file of an earlier version is moved into the folder by the
/// first read, whole, and removed.
#[test]
fn the_earlier_single_file_is_moved_in() {
    let dir = test_support::TempDir::new("record");
    let path = dir.path().join("vnm-public.json");
    let legacy = r#"{"version":1,"base":"ba9ceab886bd4dc0","bridges":["scwpub0"],"endpoints":[{"vm":42,"nic_id":0,"bridge":"scwpub0","ip":"172.30.0.4","gateway":"172.30.0.5","external_ip":"51.15.0.1","port":"one-42-0","mac":"02:00:00:00:2a:00"}],"filters":[{"vm":42,"nic_id":0,"set":0}],"rule_sets":[[{"group":0,"direction":"inbound","protocol":"all","ports":[],"icmp_type":null,"target":"any"}]]}"#;
    std::fs::write(&path, legacy).unwrap();
    let file = RecordFile::new(&path);
    // A bucket a crashed move left behind, with a VM the file does not hold.
    std::fs::create_dir_all(file.path()).unwrap();
    std::fs::write(file.path().join("vms-09.json"), r#"{"version":1,"endpoints":[{"vm":9,"nic_id":0,"bridge":"scwpub0","ip":"172.30.9.4","gateway":"172.30.9.5","external_ip":"51.15.9.1"}]}"#).unwrap();
    let record = file.load_for(42, &[], &[]).unwrap();
    // Read only: a dry run moves nothing.
    assert!(path.exists());
    file.save(&record).unwrap();
    assert!(!path.exists());
    assert!(!file.path().join("vms-09.json").exists());
    assert_eq!(record.base.as_deref(), Some("ba9ceab886bd4dc0"));
    assert_eq!(record.of_vm(42), [endpoint(42, 0, false)]);
    assert_eq!(record.filters.len(), 1);
    assert!(record.bridges.contains(&BridgeName::parse("scwpub0").unwrap()));
    assert!(file.path().join("index").exists());
    assert_eq!(whole(&file), whole_of(&record));
}

/// The VMs a host has apart, as `pre` and `clean` see them.
fn host(file: &RecordFile, vms: impl IntoIterator<Item = u64>) {
    let mut record = Record::default();
    let endpoints: Vec<Endpoint> = vms.into_iter().map(other).collect();
    record.put(&endpoints);
    record.bridges.insert(BridgeName::parse("scwpub0").unwrap());
    file.save(&record).unwrap();
}

/// An endpoint of VM `vm` with addresses of its own.
fn other(vm: u64) -> Endpoint {
    let mut e = endpoint(vm, 0, false);
    let n = vm as u8;
    e.public = Public::V4 {
        ip: std::net::Ipv4Addr::new(172, 31, 1, n),
        gateway: std::net::Ipv4Addr::new(172, 31, 2, n),
        external: std::net::Ipv4Addr::new(51, 16, 0, n),
    };
    e
}

/// An action reads its VM's bucket only, knows its bridge is used by VMs
/// it did not read, and writes only what changed; a VM taking another's
/// flexible IP (a lease moved) reads every bucket.
#[test]
fn an_action_reads_what_concerns_its_vm() {
    let dir = test_support::TempDir::new("record");
    let file = RecordFile::new(dir.path().join("vnm-public.json"));
    host(&file, 100..140);
    let mine = endpoint(42, 0, false);
    let record = file.load_for(42, &[mine], &[]).unwrap();
    let vms: BTreeSet<u64> = record.endpoints.iter().map(|e| e.owner.vm).collect();
    // Bucket 42 holds VM 106 (42 + 64).
    assert_eq!(vms, BTreeSet::from([106]));
    assert_eq!(
        record.view.busy_bridges,
        BTreeSet::from([BridgeName::parse("scwpub0").unwrap()])
    );
    // Saving it as it was read writes nothing.
    let modified = |f: &str| std::fs::metadata(file.path().join(f)).unwrap().modified().unwrap();
    let before = (modified("vms-42.json"), modified("index"));
    file.save(&record).unwrap();
    assert_eq!((modified("vms-42.json"), modified("index")), before);
    // VM 42 recorded: its own next action reads its bucket only.
    let mut after = record.clone();
    after.put(&[mine]);
    file.save(&after).unwrap();
    let again = file.load_for(42, &[mine], &[]).unwrap();
    assert_eq!(again.of_vm(42), [mine]);
    assert_eq!(again.view.loaded.len(), 1);
    // VM 43 is handed VM 120's flexible IP: every bucket, VM 120 among them.
    let mut moved = endpoint(43, 0, false);
    moved.public = other(120).public;
    let all = file.load_for(43, &[moved], &[]).unwrap();
    assert_eq!(all.view.loaded.len(), 64);
    assert_eq!(all.of_vm(120).len(), 1);
    // The last VM on the bridge: not busy for it.
    let mut last = file.load().unwrap();
    let others: Vec<_> = last.endpoints.iter().map(|e| e.owner).filter(|o| o.vm != 42).collect();
    last.forget(others);
    file.save(&last).unwrap();
    assert!(file.load_for(42, &[mine], &[]).unwrap().view.busy_bridges.is_empty());
}

/// A count a crash left too high only makes the action read every bucket;
/// the index written again (`reconcile`) is exact.
#[test]
fn a_count_too_high_reads_more_and_reindexing_mends_it() {
    let dir = test_support::TempDir::new("record");
    let file = RecordFile::new(dir.path().join("vnm-public.json"));
    host(&file, [5, 6]);
    let index = super::index::Index::open(&file.path().join("index")).unwrap().unwrap();
    index.add("a-172.31.1.5").unwrap();
    index.add("b-scwpub0").unwrap();
    let record = file.load_for(5, &[], &[]).unwrap();
    assert_eq!(record.view.loaded.len(), 64, "a key of VM 5 counted twice");
    file.reindex(&file.load().unwrap()).unwrap();
    let record = file.load_for(5, &[], &[]).unwrap();
    assert_eq!(record.view.loaded.len(), 1);
    assert_eq!(record.view.busy_bridges.len(), 1, "VM 6 is on the bridge");
    let index = super::index::Index::open(&file.path().join("index")).unwrap().unwrap();
    assert_eq!(index.count("a-172.31.1.5").unwrap(), 1);
    assert_eq!(index.count("b-scwpub0").unwrap(), 2);
    // Exact already: written again in place, nothing changed.
    let path = file.path().join("index");
    let modified = || std::fs::metadata(&path).unwrap().modified().unwrap();
    let before = modified();
    std::thread::sleep(std::time::Duration::from_millis(20));
    file.reindex(&file.load().unwrap()).unwrap();
    assert_eq!(modified(), before, "an exact index is not written");
    // Counts missing (an index of nothing: holes where they should be, as
    // after a power loss): written in place.
    super::index::Index::build(&path, Vec::<(String, u16)>::new()).unwrap();
    assert_eq!(
        super::index::Index::open(&path)
            .unwrap()
            .unwrap()
            .count("b-scwpub0")
            .unwrap(),
        0
    );
    file.reindex(&file.load().unwrap()).unwrap();
    let index = super::index::Index::open(&path).unwrap().unwrap();
    assert_eq!(index.count("b-scwpub0").unwrap(), 2);
    assert_eq!(index.count("a-172.31.1.5").unwrap(), 1);
    // Not an index: built again.
    std::fs::write(&path, "not an index").unwrap();
    file.reindex(&file.load().unwrap()).unwrap();
    let index = super::index::Index::open(&path).unwrap().unwrap();
    assert_eq!(index.count("b-scwpub0").unwrap(), 2);
    // A damaged index: every bucket read, and the next save builds it again.
    std::fs::write(file.path().join("index"), "not an index").unwrap();
    let mut record = file.load_for(5, &[], &[]).unwrap();
    assert_eq!(record.view.loaded.len(), 64);
    record.forget([other(6).owner]);
    file.save(&record).unwrap();
    let index = super::index::Index::open(&file.path().join("index")).unwrap().unwrap();
    assert_eq!(index.count("b-scwpub0").unwrap(), 1);
}

/// An index of many keys (data in every page, compared a chunk at a
/// time): counters wrong anywhere, too high or too low, in the first and
/// the last pages too, are mended in place; the file is then what a build
/// of the same keys writes, byte for byte.
#[test]
fn a_large_index_is_mended_everywhere() {
    use super::index::Index;
    let dir = test_support::TempDir::new("index");
    let (path, built) = (dir.path().join("index"), dir.path().join("built"));
    let keys: Vec<(String, u16)> = (0..20_000u32).map(|i| (format!("a-{i}"), 1 + (i % 3) as u16)).collect();
    Index::build(&built, keys.clone()).unwrap();
    Index::build(&path, keys.clone()).unwrap();
    let bytes = |p: &std::path::Path| std::fs::read(p).unwrap();
    assert_eq!(bytes(&path), bytes(&built));
    let index = Index::open(&path).unwrap().unwrap();
    for k in ["a-7", "a-9000", "a-19999", "not-a-key"] {
        index.add(k).unwrap();
    }
    index.remove("a-12345").unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let len = file.metadata().unwrap().len();
    std::os::unix::fs::FileExt::write_all_at(&file, &[9, 9], 8).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[9, 9], len - 2).unwrap();
    assert_ne!(bytes(&path), bytes(&built));
    Index::rebuild(&path, keys.clone()).unwrap();
    assert_eq!(bytes(&path), bytes(&built));
    // Exact: compared whole, nothing written.
    let modified = || std::fs::metadata(&path).unwrap().modified().unwrap();
    let before = modified();
    std::thread::sleep(std::time::Duration::from_millis(20));
    Index::rebuild(&path, keys).unwrap();
    assert_eq!(modified(), before, "an exact index is not written");
}

/// The chains of a NIC's rules are keys: an action knows which of its
/// chains VMs it did not read use.
#[test]
fn chains_used_by_other_vms_are_known() {
    let dir = test_support::TempDir::new("record");
    let file = RecordFile::new(dir.path().join("vnm-public.json"));
    let mut closed = secgroup::default_rules();
    closed.remove(0);
    let nic = |vm| NicFilter {
        vm,
        nic_id: 0,
        rules: closed.clone(),
    };
    let mut record = Record::default();
    record.put(&[other(3)]);
    record.put_filters(&[nic(3)]);
    file.save(&record).unwrap();
    let chains: BTreeSet<_> = [secgroup::Direction::Inbound, secgroup::Direction::Outbound]
        .into_iter()
        .filter_map(|d| public_plan::filter::FilterChain::of(&closed, d))
        .collect();
    assert_eq!(chains.len(), 1);
    let seen = file.load_for(4, &[other(4)], &[nic(4)]).unwrap();
    assert_eq!(seen.view.outside_chains, chains);
    // VM 3's own action reads VM 3: nobody else uses it.
    assert!(file.load_for(3, &[], &[]).unwrap().view.outside_chains.is_empty());
}

#[test]
fn a_nics_rules_go_with_its_last_endpoint_and_are_replaced_whole() {
    // `group` tells the versions apart.
    let rules = |vm, nic_id, group| NicFilter {
        vm,
        nic_id,
        rules: vec![secgroup::Rule {
            group,
            direction: secgroup::Direction::Inbound,
            protocol: secgroup::Protocol::All,
            ports: Vec::new(),
            icmp_type: None,
            target: secgroup::Target::Any,
        }],
    };
    let mut record = Record::default();
    // NIC 0 of VM 42 has an alias (NIC 2, judged by NIC 0's rules).
    record.put(&[endpoint(42, 0, false), endpoint(42, 2, false), endpoint(7, 0, true)]);
    record.put_filters(&[rules(42, 0, 1), rules(7, 0, 1)]);
    record.put_filters(&[rules(42, 0, 2)]);
    assert_eq!(record.filters, [rules(7, 0, 1), rules(42, 0, 2)]);
    record.forget([endpoint(42, 0, false).owner]);
    assert_eq!(
        record.filters,
        [rules(7, 0, 1), rules(42, 0, 2)],
        "the alias still uses them"
    );
    record.forget([endpoint(42, 2, false).owner]);
    assert_eq!(record.filters, [rules(7, 0, 1)]);
    record.forget([endpoint(7, 0, true).owner]);
    assert!(record.filters.is_empty() && record.endpoints.is_empty());
}
