use super::*;

fn segment(vni: u32, bridge: &str) -> Segment {
    Segment {
        vni: Vni::new(vni).unwrap(),
        bridge: bridge.into(),
        vxlan: format!("vxlan{vni}"),
        underlay: "scwpriv0".into(),
        local: "10.0.0.2".parse().unwrap(),
        mtu: 1450,
    }
}

fn host() -> Observed {
    let mut o = Observed::default();
    o.links.insert(
        "scwpriv0".into(),
        Link {
            up: true,
            ipv4: vec!["10.0.0.2".parse().unwrap()],
            ..Link::default()
        },
    );
    o
}

fn ensure(segments: &[Segment]) -> Request {
    Request {
        ensure: segments.to_vec(),
        owned_vxlans: segments.iter().map(|s| s.vxlan.clone()).collect(),
        ..Request::default()
    }
}

fn text(p: &LinkPlan) -> String {
    p.to_string()
}

#[test]
fn a_new_segment_then_nothing() {
    let mut o = host();
    let s = segment(100, "onebr.100");
    let p = plan(&ensure(std::slice::from_ref(&s)), &o).unwrap();
    assert_eq!(
        text(&p),
        "ip link add name onebr.100 type bridge\n\
         ip link set dev onebr.100 mtu 1450\n\
         ip link set dev onebr.100 addrgenmode none\n\
         ip link add name vxlan100 mtu 1450 type vxlan id 100 local 10.0.0.2 dstport 4789 nolearning dev scwpriv0\n\
         ip link set dev vxlan100 addrgenmode none\n\
         ip link set dev vxlan100 master onebr.100\n\
         ip link set dev vxlan100 type bridge_slave learning off\n\
         ip link set dev vxlan100 up\n\
         ip link set dev onebr.100 up\n"
    );
    assert_eq!(p.created_bridges.len(), 1);
    simulate(&mut o, &p.ops).unwrap();
    assert!(plan(&ensure(&[s]), &o).unwrap().is_empty());
}

#[test]
fn drift_is_repaired_and_changed_settings_re_create() {
    let mut o = host();
    let s = segment(100, "onebr.100");
    let p = plan(&ensure(std::slice::from_ref(&s)), &o).unwrap();
    simulate(&mut o, &p.ops).unwrap();
    let vx = o.links.get_mut("vxlan100").unwrap();
    vx.up = false;
    vx.port_learning = Some(true);
    vx.mtu = 1500;
    let p = plan(&ensure(std::slice::from_ref(&s)), &o).unwrap();
    assert_eq!(
        text(&p),
        "ip link set dev vxlan100 mtu 1450\n\
         ip link set dev vxlan100 type bridge_slave learning off\n\
         ip link set dev vxlan100 up\n"
    );
    simulate(&mut o, &p.ops).unwrap();
    let moved = Segment {
        local: "10.0.0.9".parse().unwrap(),
        ..s.clone()
    };
    let p = plan(&ensure(std::slice::from_ref(&moved)), &o).unwrap();
    assert!(
        text(&p).starts_with("ip link del dev vxlan100\nip link add name vxlan100"),
        "{p}"
    );
    assert!(
        p.notes[0].contains("vxlan100 re-created (it had id 100, local 10.0.0.2"),
        "{p}"
    );
    // Not the driver's: refused.
    let mut foreign = ensure(&[moved]);
    foreign.owned_vxlans.clear();
    let e = plan(&foreign, &o).unwrap_err().to_string();
    assert!(e.contains("vxlan100 exists on this host with other settings"), "{e}");
}

#[test]
fn conflicts_are_refused() {
    let mut o = host();
    let p = plan(&ensure(&[segment(100, "onebr.100")]), &o).unwrap();
    simulate(&mut o, &p.ops).unwrap();
    o.links.insert(
        "notabridge".into(),
        Link {
            kind: Some("veth".into()),
            ..Link::default()
        },
    );
    let mut other = o.clone();
    other.links.insert(
        "scwpriv0.200".into(),
        Link {
            kind: Some("vxlan".into()),
            vxlan: Some(Vxlan {
                id: 200,
                local: None,
                port: 4789,
                learning: true,
                dev: None,
            }),
            ..Link::default()
        },
    );
    let cases = [
        (
            segment(300, "notabridge"),
            "notabridge exists on this host and is veth, not a bridge",
        ),
        (
            segment(300, "onebr.100"),
            "bridge onebr.100 already carries vxlan100 (VNI 100)",
        ),
        (segment(200, "onebr.200"), "VNI 200 is already carried by scwpriv0.200"),
    ];
    for (s, expected) in cases {
        let e = plan(&ensure(&[s]), &other).unwrap_err().to_string();
        assert!(e.contains(expected), "{e}");
    }
}

#[test]
fn removal_deletes_what_the_driver_made_and_only_when_unused() {
    let mut o = host();
    let s = segment(100, "onebr.100");
    let p = plan(&ensure(std::slice::from_ref(&s)), &o).unwrap();
    simulate(&mut o, &p.ops).unwrap();
    o.links.insert(
        "one-7-0".into(),
        Link {
            kind: Some("tun".into()),
            master: Some("onebr.100".into()),
            ..Link::default()
        },
    );
    let remove = Request {
        remove: vec![s.clone()],
        owned_bridges: p.created_bridges.clone(),
        ..Request::default()
    };
    let p = plan(&remove, &o).unwrap();
    assert_eq!(
        text(&p),
        "ip link del dev vxlan100\n# note: bridge onebr.100 is kept: no VM of the driver uses VNI 100 any more, but one-7-0 is still plugged into it\n"
    );
    o.links.remove("one-7-0");
    let p = plan(&remove, &o).unwrap();
    assert_eq!(text(&p), "ip link del dev vxlan100\nip link del dev onebr.100\n");
    simulate(&mut o, &p.ops).unwrap();
    assert_eq!(o, host());
    assert!(
        plan(&remove, &o).unwrap().is_empty(),
        "removing what is gone plans nothing"
    );
    // A bridge the driver did not create stays.
    let mut o = host();
    o.links.insert(
        "onebr.100".into(),
        Link {
            kind: Some("bridge".into()),
            mtu: 1450,
            up: true,
            ..Link::default()
        },
    );
    let p = plan(&ensure(std::slice::from_ref(&s)), &o).unwrap();
    assert!(p.created_bridges.is_empty());
    simulate(&mut o, &p.ops).unwrap();
    let p = plan(
        &Request {
            remove: vec![s],
            ..Request::default()
        },
        &o,
    )
    .unwrap();
    assert_eq!(text(&p), "ip link del dev vxlan100\n");
}
