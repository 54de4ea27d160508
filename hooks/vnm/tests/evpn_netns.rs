//! The private driver `scaleway_evpn` on real kernels with real FRR, inside
//! network namespaces: hosts on an underlay bridge ("the Scaleway private
//! network", 10.0.0.0/24, device `scwpriv0` as the fixtures' PHYDEV), one
//! FRR instance (zebra + bgpd, Debian's package) per host namespace with its
//! own socket/config/run folder under a temporary folder, started empty and
//! configured by `evpn-config`; VMs as namespaces plugged into the bridges
//! `pre` makes; real traffic (ICMP echo and TCP written here).
//!
//! Privileged: root, iproute2, nftables, frr and frr-pythontools. Nothing
//! is created outside the tests' namespaces and temporary folders: FRR
//! instances are reached through their own sockets only (never the
//! system's), stopped by PID (SIGTERM, then SIGKILL) when their test ends,
//! failed or not; every namespace is deleted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod evpn_lab;
mod netns_lab;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use evpn_lab::*;
use scaleway_vnm::private;
use test_support::{NetNs, TempDir, require_root};

// ---------------------------------------------------------------- tests

/// Two hosts, one route reflector: two VNIs with the same subnet, VMs on
/// both hosts, MACs learnt through EVPN, isolation, full-size frames, the
/// firewall, idempotency, and `clean` removing what `pre` made when the
/// last VM leaves. Host B is driven by the real binary as oned runs it.
#[test]
#[ignore = "privileged: needs root, iproute2, nftables, frr and frr-pythontools; run by .ci/run"]
fn two_hosts_one_reflector_vnis_isolated_and_cleaned() {
    require_root();
    let total = Instant::now();
    let lab = Lab::new(2, 1);
    let (a, b) = (&lab.hosts[0], &lab.hosts[1]);
    let fwd_before: Vec<String> = [a, b]
        .iter()
        .map(|h| {
            format!(
                "{} {}",
                read_sysctl(h.ns.name(), "net.ipv4.ip_forward"),
                read_sysctl(h.ns.name(), "net.ipv6.conf.all.forwarding")
            )
        })
        .collect();
    let start = Instant::now();
    a.evpn_config(&lab.description);
    // Host B: the real binary, `evpn-config` by hand, `pre`/`clean` through the action files.
    let bin = Path::new(env!("CARGO_BIN_EXE_scaleway-vnm"));
    let links = TempDir::new("evpn-bin");
    let run_bin = |argv0: &Path, args: &[&str], stdin: &[u8]| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", b.ns.name()]).arg(argv0).args(args);
        cmd.env("ONE_SCALEWAY_LOG", "debug");
        for key in [
            "ONE_SCALEWAY_STATE_DIR",
            "ONE_SCALEWAY_HOST_LOCK",
            "ONE_SCALEWAY_SUDO",
            "ONE_SCALEWAY_FRR_DIR",
        ] {
            cmd.env(key, b.env.get(key).unwrap());
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        let (code, out, err) = (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert_eq!(code, Some(0), "{argv0:?} {args:?}: {out}{err}");
        (out, err)
    };
    let desc = lab.description.display().to_string();
    let (out, _) = run_bin(bin, &["--driver", "scaleway_evpn", "evpn-config", &desc], b"");
    assert!(
        out.starts_with("10.0.0.3 is a client of AS 65000 (reflectors 10.0.0.2), 1 BGP peer"),
        "{out}"
    );
    // VMs: VNI 1000002 and VNI 1000003, the same subnet on both.
    let (va100, va200, vb100, vb200) = (vm_ns("va100"), vm_ns("va200"), vm_ns("vb100"), vm_ns("vb200"));
    a.pre(&vm(1, 2, &mac(1)));
    a.pre(&vm(2, 3, &mac(11)));
    a.plug(&va100, "one-1-0", "onebr2", &mac(1), addr(1), 1450);
    a.plug(&va200, "one-2-0", "onebr3", &mac(11), addr(11), 1450);
    // VM 7 of the fixture on B (VNI 1000002, onebr2, PHYDEV scwpriv0, GUEST_MTU 1450).
    let pre = test_support::link_as(bin, links.path(), "vnm/scaleway_evpn/pre");
    let clean = test_support::link_as(bin, links.path(), "vnm/scaleway_evpn/clean");
    let deploy = test_support::fixture("vnm/deploy-scaleway_evpn-pre.xml");
    let (_, err) = run_bin(&pre, &[], &test_support::encode(&deploy));
    assert!(
        err.contains("INFO: scaleway-vnm scaleway_evpn pre: VM 7: set up VM 7 NIC 1: VNI 1000002"),
        "{err}"
    );
    b.pre(&vm(4, 3, &mac(12)));
    b.plug(&vb100, "one-7-1", "onebr2", "02:00:0a:c8:00:0a", addr(2), 1450);
    b.plug(&vb200, "one-4-0", "onebr3", &mac(12), addr(12), 1450);
    let converged = ping_until(va100.name(), addr(2), Duration::from_secs(30))
        .unwrap_or_else(|| panic!("VNI 1000002: A -> B never answered\n{}", lab.diagnose()));
    eprintln!(
        "2 hosts, 1 reflector: first VM ping {:?} after evpn-config started ({converged:?} of pinging)",
        start.elapsed()
    );
    let version = a.frr.vtysh("show version");
    eprintln!("FRR: {}", version.lines().next().unwrap_or(""));
    assert!(version.starts_with("FRRouting "), "{version}");
    assert!(ping(vb200.name(), addr(11)), "VNI 1000003: B -> A\n{}", lab.diagnose());
    // The devices, as the driver made them.
    let l = a.links_text();
    assert!(
        l.contains("vxlan id 1000002 local 10.0.0.2 dev scwpriv0 srcport 0 0 dstport 4789 nolearning"),
        "{l}"
    );
    let vx = a.ns.run_ok(&["ip", "-d", "link", "show", "dev", "vxlan1000002"], b"");
    assert!(
        vx.contains("mtu 1450") && vx.contains("master onebr2") && vx.contains("learning off"),
        "{vx}"
    );
    assert!(
        a.ns.run_ok(&["ip", "link", "show", "dev", "onebr2"], b"")
            .contains("mtu 1450")
    );
    // MACs learnt through EVPN (extern_learn), not by flooding, each VNI its own.
    let learnt = wait_for(Duration::from_secs(10), || {
        a.fdb("vxlan1000002")
            .contains("02:00:0a:c8:00:0a dst 10.0.0.3 self extern_learn")
            && b.fdb("vxlan1000002")
                .contains(&format!("{} dst 10.0.0.2 self extern_learn", mac(1)))
    });
    assert!(learnt.is_some(), "{}\n{}", a.fdb("vxlan1000002"), lab.diagnose());
    assert!(
        a.fdb("vxlan1000002")
            .contains("00:00:00:00:00:00 dst 10.0.0.3 self permanent"),
        "flood list from type-3 routes"
    );
    assert!(
        !a.fdb("vxlan1000002").contains(&mac(12)),
        "VNI 1000003's MAC stays out of VNI 1000002"
    );
    // Isolation: the same subnet on the other VNI does not answer.
    assert!(
        ping_tries(va100.name(), addr(12), 3).is_none(),
        "VNI 1000002 reached VNI 1000003"
    );
    assert!(
        ping_tries(vb200.name(), addr(1), 3).is_none(),
        "VNI 1000003 reached VNI 1000002"
    );
    // Full-size frames (MTU 1450 in the VMs) cross VXLAN over a 1500 underlay.
    assert_eq!(tcp_transfer(va100.name(), vb100.name(), addr(2), 300_000), Ok(300_000));
    // FRR lists the VNIs, forwarding is as it was, FRR's running configuration is the file.
    let running = a.frr.vtysh("show running-config");
    assert!(running.contains("  advertise-all-vni\n"), "{running}");
    for vni in [1_000_002, 1_000_003] {
        assert!(running.contains(&format!("  vni {vni}\n  exit-vni\n")), "{running}");
    }
    for (h, before) in [a, b].iter().zip(&fwd_before) {
        let now = format!(
            "{} {}",
            read_sysctl(h.ns.name(), "net.ipv4.ip_forward"),
            read_sysctl(h.ns.name(), "net.ipv6.conf.all.forwarding")
        );
        assert_eq!(&now, before, "reloads keep the forwarding sysctls");
    }
    // The firewall and the security groups (group 0 here: all open): our
    // tables only; BGP from outside the underlay is dropped.
    let tables = a.ns.run_ok(&["nft", "list", "tables"], b"");
    assert_eq!(
        tables.trim(),
        "table inet one_scaleway_evpn\ntable bridge one_scaleway_evpn_ports\ntable inet one_scaleway_evpn_sg"
    );
    let (inside, outside) = (NetNs::new("evin"), NetNs::new("evout"));
    attach(lab.fabric.name(), inside.name(), "eth0", "p-in");
    attach(lab.fabric.name(), outside.name(), "eth0", "p-out");
    ip(inside.name(), &["addr", "add", "10.0.0.99/24", "dev", "eth0"]);
    ip(outside.name(), &["addr", "add", "10.0.1.9/24", "dev", "eth0"]);
    ip(outside.name(), &["route", "add", "10.0.0.0/24", "dev", "eth0"]);
    ip(&a.name(), &["route", "add", "10.0.1.0/24", "dev", "scwpriv0"]);
    let bgp_a = SocketAddr::new(IpAddr::V4(a.underlay), 179);
    assert!(
        tcp_answers(inside.name(), bgp_a),
        "BGP from the underlay gets an answer"
    );
    assert!(
        !tcp_answers(outside.name(), bgp_a),
        "BGP from outside the underlay is dropped"
    );
    // What a reboot takes (our table, the devices) comes back with reconcile;
    // libvirt plugs the VM's tap again.
    let before = (a.links(), ruleset(a));
    for (family, table) in [
        ("inet", "one_scaleway_evpn"),
        ("bridge", "one_scaleway_evpn_ports"),
        ("inet", "one_scaleway_evpn_sg"),
    ] {
        a.ns.run_ok(&["nft", "delete", "table", family, table], b"");
    }
    ip(&a.name(), &["link", "del", "vxlan1000003"]);
    ip(&a.name(), &["link", "del", "onebr3"]);
    assert!(ping_tries(vb200.name(), addr(11), 2).is_none());
    let (r, log) = a.run(private::reconcile);
    let out = r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(
        out.starts_with("reconciled 2 segments (VNIs 1000002 1000003): "),
        "{out}"
    );
    ip(&a.name(), &["link", "set", "one-2-0", "master", "onebr3"]);
    assert_eq!((a.links(), ruleset(a)), before);
    assert!(
        ping(vb200.name(), addr(11)),
        "VNI 1000003 after reconcile\n{}",
        lab.diagnose()
    );
    // Idempotent: evpn-config and pre again change nothing.
    let links_before = (a.links(), a.frr.vtysh("show running-config"));
    a.evpn_config(&lab.description);
    let log = a.pre(&vm(1, 2, &mac(1)));
    assert!(log.contains("VM 1: already in place"), "{log}");
    assert_eq!((a.links(), a.frr.vtysh("show running-config")), links_before);
    // A second VM on VNI 1000002 on A; the first leaves: the segment stays.
    let va100b = vm_ns("va100b");
    a.pre(&vm(3, 2, &mac(3)));
    a.plug(&va100b, "one-3-0", "onebr2", &mac(3), addr(3), 1450);
    a.unplug("one-1-0");
    let log = a.clean(&vm(1, 2, &mac(1)));
    assert!(
        log.contains("VM 1: left VNI 1000002, which VM 3 NIC 0 still uses on this host"),
        "{log}"
    );
    assert!(a.has_link("vxlan1000002"));
    assert!(ping(va100b.name(), addr(2)), "VM 3 still reaches B\n{}", lab.diagnose());
    // The last VM of VNI 1000002 on A leaves: the VXLAN device, the bridge and FRR's vni line go.
    a.unplug("one-3-0");
    let log = a.clean(&vm(3, 2, &mac(3)));
    assert!(
        log.contains("no VM uses on this host any more: removed (and from FRR's configuration)"),
        "{log}"
    );
    assert!(
        !a.has_link("vxlan1000002") && !a.has_link("onebr2"),
        "{log}\n{}",
        a.links_text()
    );
    assert!(a.has_link("vxlan1000003"), "VNI 1000003 is untouched");
    let running = a.frr.vtysh("show running-config");
    assert!(
        !running.contains("vni 1000002") && running.contains("vni 1000003"),
        "{running}"
    );
    let withdrawn = wait_for(Duration::from_secs(10), || {
        !b.fdb("vxlan1000002").contains("dst 10.0.0.2")
    });
    assert!(
        withdrawn.is_some(),
        "B still floods VNI 1000002 to A: {}",
        b.fdb("vxlan1000002")
    );
    eprintln!("VNI 1000002 withdrawn from B {withdrawn:?} after A's clean");
    assert!(ping(vb200.name(), addr(11)), "VNI 1000003 still works");
    // B through the action file: the fixture VM leaves, VNI 1000002 goes there too.
    b.unplug("one-7-1");
    let (_, err) = run_bin(&clean, &["edge-host2"], &test_support::encode(&deploy));
    assert!(
        err.contains("VM 7: left VNI 1000002, which no VM uses on this host any more"),
        "{err}"
    );
    assert!(!b.has_link("vxlan1000002") && !b.has_link("onebr2"));
    eprintln!("two_hosts_one_reflector: {:?} in all", total.elapsed());
}

/// Three hosts, two route reflectors: VMs on every host, a VM deployed once
/// everything has converged (timed), and one reflector stopped: traffic
/// keeps flowing and new MACs are still learnt through the other.
#[test]
#[ignore = "privileged: needs root, iproute2, nftables, frr and frr-pythontools; run by .ci/run"]
fn three_hosts_two_reflectors_late_vm_and_a_reflector_down() {
    require_root();
    let total = Instant::now();
    let mut lab = Lab::new(3, 2);
    let start = Instant::now();
    lab.configure();
    let vms: Vec<NetNs> = (0..3).map(|n| vm_ns(&format!("v{n}"))).collect();
    for (n, h) in lab.hosts.iter().enumerate().take(2) {
        let k = u8::try_from(n).unwrap() + 1;
        h.pre(&vm(u64::from(k), 2, &mac(k)));
        h.plug(&vms[n], &format!("one-{k}-0"), "onebr2", &mac(k), addr(k), 1450);
    }
    let converged = ping_until(vms[0].name(), addr(2), Duration::from_secs(30))
        .unwrap_or_else(|| panic!("host 0 -> host 1 never answered\n{}", lab.diagnose()));
    eprintln!(
        "3 hosts, 2 reflectors: first VM ping {:?} after evpn-config started ({converged:?} of pinging)",
        start.elapsed()
    );
    // Everything has converged: a VM on host 2, whose VNI is new there.
    wait_for(Duration::from_secs(10), || {
        lab.hosts[1]
            .fdb("vxlan1000002")
            .contains(&format!("{} dst 10.0.0.2 self extern_learn", mac(1)))
    })
    .unwrap_or_else(|| panic!("host 1 never learnt VM 1's MAC\n{}", lab.diagnose()));
    let late = Instant::now();
    let c = &lab.hosts[2];
    c.pre(&vm(3, 2, &mac(3)));
    c.plug(&vms[2], "one-3-0", "onebr2", &mac(3), addr(3), 1450);
    let deployed = late.elapsed();
    let first = ping_until(vms[2].name(), addr(1), Duration::from_secs(15))
        .unwrap_or_else(|| panic!("the late VM never reached host 0's VM\n{}", lab.diagnose()));
    let reached = late.elapsed();
    assert!(ping(vms[2].name(), addr(2)), "the late VM reaches host 1's VM");
    let learnt = wait_for(Duration::from_secs(10), || {
        lab.hosts[0]
            .fdb("vxlan1000002")
            .contains(&format!("{} dst 10.0.0.4 self extern_learn", mac(3)))
    });
    eprintln!(
        "VM deployed after convergence (VNI new on its host): pre + plug {deployed:?}, first ping {reached:?} \
         ({first:?} of pinging), its MAC learnt on host 0 through EVPN {:?} after pre",
        learnt.map(|_| late.elapsed())
    );
    assert!(learnt.is_some(), "{}", lab.diagnose());
    assert!(reached < Duration::from_secs(15), "generous bound");
    // A VM deployed on a host where its VNI already is.
    let v4 = vm_ns("v4");
    let late = Instant::now();
    lab.hosts[1].pre(&vm(4, 2, &mac(4)));
    lab.hosts[1].plug(&v4, "one-4-0", "onebr2", &mac(4), addr(4), 1450);
    let reached = ping_until(v4.name(), addr(3), Duration::from_secs(15))
        .unwrap_or_else(|| panic!("VM 4 never reached VM 3\n{}", lab.diagnose()));
    eprintln!(
        "VM deployed after convergence (VNI already on its host): first ping {:?} after pre",
        late.elapsed()
    );
    assert!(reached < Duration::from_secs(15));
    // Reflector 0 goes down (FRR stopped on host 0): hosts 1 and 2 keep
    // their routes through reflector 1.
    lab.hosts[0].frr.signal();
    let stopped = Instant::now();
    let mut lost = 0;
    while stopped.elapsed() < Duration::from_secs(4) {
        if ping_tries(vms[2].name(), addr(2), 2).is_none() {
            lost += 1;
        }
    }
    lab.hosts[0].frr.wait();
    assert_eq!(
        lost,
        0,
        "traffic host 2 -> host 1 stopped with reflector 0 down\n{}",
        lab.hosts[1].diagnose()
    );
    let summary = lab.hosts[2].frr.vtysh("show bgp l2vpn evpn summary");
    eprintln!("host 2 with reflector 0 down:\n{summary}");
    assert!(
        lab.hosts[2]
            .fdb("vxlan1000002")
            .contains(&format!("{} dst 10.0.0.3 self extern_learn", mac(2))),
        "{}",
        lab.hosts[2].fdb("vxlan1000002")
    );
    // And the control plane still works: a new VM on host 2 is learnt on host 1.
    let v5 = vm_ns("v5");
    lab.hosts[2].pre(&vm(5, 2, &mac(5)));
    lab.hosts[2].plug(&v5, "one-5-0", "onebr2", &mac(5), addr(5), 1450);
    assert!(ping(v5.name(), addr(2)), "new VM -> host 1 with reflector 0 down");
    let learnt = wait_for(Duration::from_secs(10), || {
        lab.hosts[1]
            .fdb("vxlan1000002")
            .contains(&format!("{} dst 10.0.0.4 self extern_learn", mac(5)))
    });
    assert!(learnt.is_some(), "{}", lab.hosts[1].diagnose());
    eprintln!("with reflector 0 down: the new VM's MAC learnt on host 1 {learnt:?} after its first ping");
    eprintln!("three_hosts_two_reflectors: {:?} in all", total.elapsed());
}
