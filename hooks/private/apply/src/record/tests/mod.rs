use super::*;

fn segment(vni: u32, bridge: &str) -> Segment {
    let vni = Vni::new(vni).unwrap();
    Segment {
        vni,
        bridge: bridge.into(),
        vxlan: vni.vxlan_device(),
        underlay: "scwpriv0".into(),
        local: "10.0.0.2".parse().unwrap(),
        mtu: 1450,
    }
}

fn user(vm: u64, nic_id: u32) -> User {
    User { vm, nic_id }
}

#[test]
fn users_and_conflicts() {
    let mut r = Record::default();
    r.use_segment(user(1, 0), &segment(100, "onebr.100")).unwrap();
    r.use_segment(user(2, 1), &segment(100, "onebr.100")).unwrap();
    r.use_segment(user(2, 2), &segment(200, "onebr.200")).unwrap();
    let e = r.use_segment(user(3, 0), &segment(100, "other")).unwrap_err();
    assert_eq!(
        e,
        "VNI 100 is on bridge onebr.100 on this host (used by VM 1 NIC 0, VM 2 NIC 1); VM 3 NIC 0 asks for bridge other"
    );
    let e = r.use_segment(user(3, 0), &segment(300, "onebr.200")).unwrap_err();
    assert!(
        e.starts_with("bridge onebr.200 carries VNI 200 on this host (used by VM 2 NIC 2)"),
        "{e}"
    );
    assert_eq!(r.users_of(2).len(), 2);
    let port = |n: &str| n.parse::<IfName>().unwrap();
    r.set_filter(user(1, 0), &port("one-1-0"), Vec::new()).unwrap();
    r.set_filter(user(2, 1), &port("one-2-1"), Vec::new()).unwrap();
    r.set_filter(user(2, 2), &port("one-2-2"), Vec::new()).unwrap();
    let e = r.set_filter(user(3, 0), &port("one-2-2"), Vec::new()).unwrap_err();
    assert!(e.contains("recorded on this host as VM 2 NIC 2's"), "{e}");
    let ids = |r: &Record| r.filters.values().map(|f| f.id).collect::<Vec<_>>();
    assert_eq!(ids(&r), [1, 2, 3]);
    r.set_filter(user(2, 1), &port("one-2-1"), secgroup::default_rules())
        .unwrap();
    assert_eq!(ids(&r), [1, 2, 3], "a NIC keeps its port number");
    r.forget(|u| u.vm == 2);
    assert_eq!(ids(&r), [1]);
    r.set_filter(user(4, 0), &port("one-4-0"), Vec::new()).unwrap();
    assert_eq!(ids(&r), [1, 2], "the lowest free number");
    r.forget(|u| u.vm == 4);
    assert_eq!(r.segments.len(), 1, "VNI 200 had only VM 2");
    assert_eq!(r.segments[&Vni::new(100).unwrap()].users.len(), 1);
    assert_eq!(r.wanted_vnis().len(), 1);
}

#[test]
fn round_trips_and_refuses_damage() {
    let dir = test_support::TempDir::new("evpn-record");
    let file = RecordFile::new(dir.path().join("state/vnm-evpn.json"));
    assert_eq!(file.load().unwrap(), Record::default());
    let mut record = Record {
        config: Some(HostConfig {
            cluster: Cluster::parse(
                "AS = 65000\nUNDERLAY = 10.0.0.0/24\nHOSTS = \"10.0.0.2 10.0.0.3\"\nLOCAL = 10.0.0.2\nVNIS = 7",
            )
            .unwrap(),
            local: "10.0.0.2".parse().unwrap(),
            device: "scwpriv0".into(),
        }),
        announced: Some([Vni::new(100).unwrap()].into()),
        ..Record::default()
    };
    record.use_segment(user(42, 1), &segment(100, "onebr.100")).unwrap();
    record.segments.values_mut().for_each(|s| s.created_bridge = true);
    let port: IfName = "one-42-1".parse().unwrap();
    record
        .set_filter(user(42, 1), &port, secgroup::default_rules())
        .unwrap();
    file.save(&record).unwrap();
    assert_eq!(file.load().unwrap(), record);
    let text = std::fs::read_to_string(file.path()).unwrap();
    assert!(text.contains("\"as\":65000"), "{text}");
    std::fs::write(file.path(), r#"{"version": 1, "segments": [{"vni": 0, "bridge": "b", "underlay": "u", "local": "10.0.0.2", "mtu": 1450, "created_bridge": true, "users": []}]}"#).unwrap();
    let e = file.load().unwrap_err().to_string();
    assert!(e.contains("is damaged (segment: 0 is not a VXLAN"), "{e}");
    std::fs::write(file.path(), r#"{"version": 2}"#).unwrap();
    assert!(file.load().unwrap_err().to_string().contains("version 2 is not 1"));
    std::fs::write(file.path(), "{").unwrap();
    assert!(file.load().unwrap_err().to_string().contains("is damaged"));
}
