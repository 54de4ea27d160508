//! Privileged checks of the test bed itself: network namespaces, nftables
//! and FRR work on this machine, so the namespace tests of the network
//! drivers can rely on them. Run by `.ci/run` (`--include-ignored`, as
//! root); elsewhere they fail with a message saying how to run them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use test_support::{NetNs, TempDir, require_root, run_ok};

#[test]
#[ignore = "privileged: needs root, iproute2 and nftables; run by .ci/run"]
fn namespaces_and_nftables_work_and_stay_inside() {
    require_root();
    let ns = NetNs::new("smoke");
    ns.run_ok(&["ip", "link", "set", "lo", "up"], b"");
    ns.run_ok(&["ip", "link", "add", "oscw0", "type", "bridge"], b"");
    ns.run_ok(
        &["nft", "-f", "-"],
        b"table inet oscw_smoke {\n map dnat4 {\n  type ipv4_addr : ipv4_addr\n }\n}\n",
    );
    let inside = ns.run_ok(&["nft", "list", "tables"], b"");
    assert!(inside.contains("oscw_smoke"), "{inside}");
    let outside = run_ok(&["nft", "list", "tables"], b"");
    assert!(
        !outside.contains("oscw_smoke"),
        "the table must not leak into the root namespace"
    );
    let links = run_ok(&["ip", "-o", "link", "show"], b"");
    assert!(
        !links.contains("oscw0"),
        "the bridge must not leak into the root namespace"
    );
    let name = ns.name().to_owned();
    drop(ns);
    let left = run_ok(&["ip", "netns", "list"], b"");
    assert!(!left.contains(&name), "the namespace is deleted: {left}");
}

#[test]
#[ignore = "privileged: needs FRR's vtysh; run by .ci/run"]
fn frr_checks_configuration_files() {
    require_root();
    let dir = TempDir::new("frr");
    let good = dir.path().join("good.conf");
    std::fs::write(&good, "router bgp 65000\n bgp router-id 10.0.0.1\n address-family l2vpn evpn\n  advertise-all-vni\n exit-address-family\n").unwrap();
    run_ok(&["vtysh", "-C", "-f", good.to_str().unwrap()], b"");
    let bad = dir.path().join("bad.conf");
    std::fs::write(&bad, "router bgp 65000\n no-such-command here\n").unwrap();
    let ran = test_support::run_program(std::path::Path::new("vtysh"), &["-C", "-f", bad.to_str().unwrap()], b"");
    assert_ne!(ran.code, 0, "vtysh must reject a bad configuration");
}
