//! The real appliers inside a network namespace: `ip` applies a planned
//! segment exactly (planning again gives nothing), the kernel's view reads
//! back as planned, removal leaves the host as it was; the firewall table
//! is replaced as a whole and touches no other table; FRR's `vtysh -C`
//! accepts a rendered configuration and refuses a broken one.
//!
//! Privileged: root, iproute2, nftables and frr (`vtysh`). Everything
//! happens in the test's own namespace, deleted when the test ends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::time::Duration;

use host_tools::Tools;
use nix::sched::CloneFlags;
use opennebula::driver::Env;
use private_apply::apply::{Firewall, Frr, FrrCommand, FrrInstance, IpLinks, Links, NftFirewall, apply_links};
use private_plan::frr::{FrrHost, render};
use private_plan::plan::{Request, plan};
use private_plan::{Cluster, Segment, Vni, firewall};
use test_support::{NetNs, TempDir, require_root, run_ok};

#[path = "../../plan/tests/sg_example/mod.rs"]
mod sg_example;

/// Runs `f` on a thread inside namespace `ns` (the tools it runs inherit it).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let before = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
        assert_ne!(before, std::fs::read_link("/proc/thread-self/ns/net").unwrap());
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

fn host_ns() -> NetNs {
    let ns = NetNs::new("evapply");
    let n = ns.name();
    run_ok(
        &[
            "ip", "-n", n, "link", "add", "scwpriv0", "type", "veth", "peer", "name", "peer0",
        ],
        b"",
    );
    run_ok(&["ip", "-n", n, "addr", "add", "10.0.0.2/24", "dev", "scwpriv0"], b"");
    run_ok(&["ip", "-n", n, "link", "set", "scwpriv0", "up"], b"");
    ns
}

fn segment(vni: u32) -> Segment {
    let vni = Vni::new(vni).unwrap();
    Segment {
        vni,
        bridge: format!("onebr.{vni}"),
        vxlan: vni.vxlan_device(),
        underlay: "scwpriv0".into(),
        local: "10.0.0.2".parse().unwrap(),
        mtu: 1450,
    }
}

#[test]
#[ignore = "privileged: needs root, iproute2 and nftables; run by .ci/run"]
fn ip_applies_a_segment_exactly_and_removes_it() {
    require_root();
    let ns = host_ns();
    let name = ns.name().to_owned();
    in_ns(&name, || {
        let tools = Tools::direct(Duration::from_secs(10));
        let links = IpLinks { tools: &tools };
        let bare = links.observe().unwrap();
        let ensure = Request {
            ensure: vec![segment(100), segment(16_777_215)],
            ..Request::default()
        };
        let p = plan(&ensure, &bare).unwrap();
        apply_links(&links, &p).unwrap();
        let after = links.observe().unwrap();
        assert!(plan(&ensure, &after).unwrap().is_empty(), "applied exactly as planned");
        let v = &after.links["vxlan100"];
        let x = v.vxlan.as_ref().unwrap();
        assert_eq!(
            (x.id, x.port, x.learning, x.dev.as_deref()),
            (100, 4789, false, Some("scwpriv0"))
        );
        assert_eq!(
            (v.mtu, v.master.as_deref(), v.port_learning, v.up),
            (1450, Some("onebr.100"), Some(false), true)
        );
        assert_eq!(after.links["onebr.100"].mtu, 1450);
        // The bridge keeps its MTU when a port with a larger one comes.
        tools
            .run(
                "ip",
                &[
                    "link", "add", "tap0", "mtu", "9000", "type", "veth", "peer", "name", "tap1",
                ],
                b"",
            )
            .unwrap();
        tools
            .run("ip", &["link", "set", "tap0", "master", "onebr.100"], b"")
            .unwrap();
        assert_eq!(links.observe().unwrap().links["onebr.100"].mtu, 1450);
        tools.run("ip", &["link", "del", "tap0"], b"").unwrap();
        // A failing command: what the plan made before it is deleted again.
        let mut broken = plan(
            &Request {
                ensure: vec![segment(200)],
                ..Request::default()
            },
            &links.observe().unwrap(),
        )
        .unwrap();
        broken
            .ops
            .insert(4, private_plan::plan::LinkOp::SetUp("no-such-dev".into()));
        let e = apply_links(&links, &broken).unwrap_err().to_string();
        assert!(
            e.contains("(at `ip link set dev no-such-dev up`)") && e.contains("deleted again"),
            "{e}"
        );
        assert!(!links.observe().unwrap().links.contains_key("onebr.200"));
        let remove = Request {
            remove: vec![segment(100), segment(16_777_215)],
            owned_bridges: p.created_bridges.clone(),
            ..Request::default()
        };
        apply_links(&links, &plan(&remove, &links.observe().unwrap()).unwrap()).unwrap();
        assert_eq!(links.observe().unwrap(), bare, "the host as it was");
    });
}

/// The security group tables: written whole, updated in place (the same
/// ruleset as written whole: a port added, one gone, one whose rules
/// changed, a VXLAN device added; the base chains never re-created), an
/// update over tables that are not what the record says falls back to
/// writing them whole, another table untouched, and no port removes both
/// tables.
#[test]
#[ignore = "privileged: needs root, iproute2 and nftables; run by .ci/run"]
fn the_security_group_tables_are_updated_in_place_or_replaced() {
    use sg_example::{filters, port};
    require_root();
    let ns = host_ns();
    let n = ns.name().to_owned();
    let nft = |args: &[&str]| {
        let mut all = vec!["ip", "netns", "exec", &n, "nft"];
        all.extend_from_slice(args);
        run_ok(&all, b"")
    };
    // The listing, its lines sorted (chains list in the order they were made).
    let listing = || {
        let mut lines: Vec<String> = nft(&["list", "ruleset"]).lines().map(str::to_owned).collect();
        lines.sort();
        lines.join("\n")
    };
    nft(&["add", "table", "ip", "someone_else"]);
    let one = filters(vec![port(7, 1, 1, false), port(9, 0, 3, false)], &["vxlan100"]);
    let two = filters(
        vec![port(7, 1, 1, true), port(8, 0, 2, false)],
        &["vxlan100", "vxlan200"],
    );
    let apply = |f: &private_plan::sg::Filters, before: Option<&private_plan::sg::Filters>| {
        let (f, before) = (f.clone(), before.cloned());
        in_ns(&n, move || {
            let tools = Tools::direct(Duration::from_secs(10));
            NftFirewall { tools: &tools }.filters(&f, before.as_ref())
        })
    };
    // From no port (what the first pre on a host does).
    apply(&one, Some(&private_plan::sg::Filters::default())).unwrap();
    let handle = nft(&["-a", "list", "chain", "bridge", "one_scaleway_evpn_ports", "prerouting"]);
    apply(&two, Some(&one)).unwrap();
    let updated = listing();
    assert!(!updated.contains("port-3"), "{updated}");
    // Port 8 is in group 0 (open both ways: no chain); port 7's inbound
    // closed (the chain of its rules, its element re-pointed), its
    // outbound still open: one chain in the table.
    let chain = secgroup::chain::name(
        secgroup::Fingerprint::of(&port(7, 1, 1, true).rules, secgroup::Direction::Inbound),
        secgroup::Direction::Inbound,
    );
    assert!(
        updated.contains("port-2") && updated.contains("\"vxlan200\""),
        "{updated}"
    );
    assert!(
        updated.contains(&format!("chain {chain} {{")) && updated.matches("chain sg-").count() == 1,
        "{updated}"
    );
    assert_eq!(
        nft(&["-a", "list", "chain", "bridge", "one_scaleway_evpn_ports", "prerouting"])
            .lines()
            .next(),
        handle.lines().next(),
        "the base chain was kept"
    );
    apply(&two, None).unwrap();
    assert_eq!(listing(), updated, "in place = whole");
    // Someone deleted a chain: the next update that touches it fails, and
    // the tables are written whole.
    apply(&one, None).unwrap();
    let whole_one = listing();
    apply(&two, Some(&one)).unwrap();
    nft(&[
        "delete",
        "element",
        "bridge",
        "one_scaleway_evpn_ports",
        "ports",
        "{",
        "\"one-8-0\"",
        "}",
    ]);
    nft(&["delete", "chain", "bridge", "one_scaleway_evpn_ports", "port-2"]);
    apply(&one, Some(&two)).unwrap();
    assert_eq!(listing(), whole_one, "written whole after the failed update");
    // Nothing differs: nothing is run (the tables are not even read).
    apply(&one, Some(&one)).unwrap();
    // No port: both tables go, the other table stays.
    apply(&private_plan::sg::Filters::default(), Some(&two)).unwrap();
    assert_eq!(nft(&["list", "tables"]).trim(), "table ip someone_else");
}

#[test]
#[ignore = "privileged: needs root, iproute2 and nftables; run by .ci/run"]
fn the_firewall_table_is_replaced_whole_and_alone() {
    require_root();
    let ns = host_ns();
    let n = ns.name().to_owned();
    run_ok(
        &["ip", "netns", "exec", &n, "nft", "add", "table", "ip", "someone_else"],
        b"",
    );
    in_ns(&n, || {
        let tools = Tools::direct(Duration::from_secs(10));
        let fw = NftFirewall { tools: &tools };
        fw.apply(&firewall::Rules::Underlay {
            underlay: "10.0.0.0/24".parse().unwrap(),
            device: "eth7".into(),
        })
        .unwrap();
        fw.apply(&firewall::Rules::Underlay {
            underlay: "10.0.0.0/24".parse().unwrap(),
            device: "scwpriv0".into(),
        })
        .unwrap();
        fw.apply(&firewall::Rules::Underlay {
            underlay: "10.0.0.0/24".parse().unwrap(),
            device: "scwpriv0".into(),
        })
        .unwrap();
    });
    let listed = run_ok(&["ip", "netns", "exec", &n, "nft", "list", "ruleset"], b"");
    assert!(listed.contains("table ip someone_else"), "{listed}");
    assert_eq!(
        listed.matches("tcp dport 179").count(),
        2,
        "replaced, not added to: {listed}"
    );
    assert!(!listed.contains("eth7"), "{listed}");
    in_ns(&n, || {
        let tools = Tools::direct(Duration::from_secs(10));
        let fw = NftFirewall { tools: &tools };
        fw.apply(&firewall::Rules::Absent).unwrap();
        fw.apply(&firewall::Rules::Absent).unwrap();
    });
    let listed = run_ok(&["ip", "netns", "exec", &n, "nft", "list", "ruleset"], b"");
    assert_eq!(listed.trim(), "table ip someone_else {\n}");
}

#[test]
#[ignore = "needs FRR's vtysh (Debian package frr); run by .ci/run"]
fn vtysh_checks_the_rendered_configuration() {
    let dir = TempDir::new("evpn-check");
    let tools = Tools::direct(Duration::from_secs(10));
    let frr = FrrCommand {
        tools: &tools,
        instance: FrrInstance::from_env(&Env::default()).unwrap(),
    };
    let cluster = Cluster::parse("AS = 65000\nUNDERLAY = 10.0.0.0/24\nHOSTS = \"10.0.0.2 10.0.0.3\"").unwrap();
    let text = render(
        &cluster,
        &FrrHost {
            local: "10.0.0.3".parse().unwrap(),
            hostname: "edge-host2".into(),
            ip_forwarding: false,
            ipv6_forwarding: false,
            vnis: [Vni::new(100).unwrap()].into(),
        },
    )
    .unwrap();
    let good = dir.path().join("good.conf");
    std::fs::write(&good, &text).unwrap();
    frr.check(&good).unwrap();
    let bad = dir.path().join("bad.conf");
    std::fs::write(
        &bad,
        text.replace(" neighbor reflectors activate", " neighbor reflectors activ8"),
    )
    .unwrap();
    let e = frr.check(&bad).unwrap_err().to_string();
    assert!(
        e.contains("FRR refuses the rendered configuration") && e.contains("activ8"),
        "{e}"
    );
}
