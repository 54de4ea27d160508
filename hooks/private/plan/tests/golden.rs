//! The rendered FRR configurations and firewall, compared with
//! `tests/golden/*` (`UPDATE_GOLDEN=1 cargo test -p private-plan` accepts changes;
//! review the diff): a route reflector and a client with 1, 2 and 3
//! reflectors, VNIs being added, and the firewall table. Every golden FRR
//! file is also checked by FRR itself (`vtysh -C -f`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use private_plan::frr::{FrrHost, render};
use private_plan::{Cluster, Vni, firewall};

mod sg_example;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn assert_golden(name: &str, actual: &str) {
    test_support::assert_golden_in(&golden_dir(), name, actual);
}

/// A cluster of `hosts` hosts 10.0.0.2, .3, ... with `reflectors` reflectors.
fn cluster(hosts: u8, reflectors: usize) -> Cluster {
    let list: Vec<String> = (0..hosts).map(|n| format!("10.0.0.{}", 2 + n)).collect();
    Cluster::parse(&format!(
        "AS = 65000\nUNDERLAY = 10.0.0.0/24\nHOSTS = \"{}\"\nREFLECTORS = {reflectors}\n",
        list.join(" ")
    ))
    .unwrap()
}

fn host(n: u8, vnis: &[u32]) -> FrrHost {
    FrrHost {
        local: format!("10.0.0.{}", 2 + n).parse().unwrap(),
        hostname: format!("edge-host{n}"),
        ip_forwarding: true,
        ipv6_forwarding: false,
        vnis: vnis.iter().map(|v| Vni::new(*v).unwrap()).collect::<BTreeSet<_>>(),
    }
}

/// (golden file, cluster, host index, VNIs)
fn cases() -> Vec<(String, Cluster, u8, Vec<u32>)> {
    let mut cases = Vec::new();
    for (reflectors, hosts) in [(1usize, 2u8), (2, 3), (3, 4)] {
        let c = cluster(hosts, reflectors);
        cases.push((format!("rr{reflectors}_reflector.conf"), c.clone(), 0, vec![100]));
        cases.push((format!("rr{reflectors}_client.conf"), c, hosts - 1, vec![100]));
    }
    let c = cluster(3, 2);
    cases.push(("vnis_0_none.conf".into(), c.clone(), 2, vec![]));
    cases.push(("vnis_1_added_100.conf".into(), c.clone(), 2, vec![100]));
    cases.push((
        "vnis_2_added_200_and_16777215.conf".into(),
        c,
        2,
        vec![100, 200, 16_777_215],
    ));
    cases
}

#[test]
fn reflector_and_client_configurations() {
    for (name, cluster, n, vnis) in cases() {
        let text = render(&cluster, &host(n, &vnis)).unwrap();
        assert_golden(&name, &text);
    }
}

#[test]
fn the_roles_follow_the_order_of_hosts() {
    // Two reflectors, three hosts: each reflector peers with everybody,
    // the client with the two reflectors only.
    let c = cluster(3, 2);
    let r0 = render(&c, &host(0, &[])).unwrap();
    let r1 = render(&c, &host(1, &[])).unwrap();
    let client = render(&c, &host(2, &[])).unwrap();
    assert!(r0.contains(" neighbor 10.0.0.3 peer-group reflectors\n neighbor 10.0.0.4 peer-group clients\n"));
    assert!(r1.contains(" neighbor 10.0.0.2 peer-group reflectors\n neighbor 10.0.0.4 peer-group clients\n"));
    assert!(client.contains(" neighbor 10.0.0.2 peer-group reflectors\n neighbor 10.0.0.3 peer-group reflectors\n"));
    assert!(!client.contains("route-reflector-client") && !client.contains("cluster-id"));
    // Adding a host re-renders every host's peers: a reflector gains a
    // client, the clients are unchanged.
    let bigger = cluster(4, 2);
    let r0_after = render(&bigger, &host(0, &[])).unwrap();
    assert!(r0_after.contains(" neighbor 10.0.0.5 peer-group clients\n"));
    assert_eq!(
        render(&bigger, &host(2, &[]))
            .unwrap()
            .replace("(4 hosts)", "(3 hosts)"),
        client
    );
}

#[test]
fn forwarding_lines_mirror_the_host() {
    let c = cluster(2, 1);
    let mut h = host(1, &[]);
    for (v4, v6, expected) in [
        (true, true, ""),
        (false, true, "no ip forwarding\n"),
        (true, false, "no ipv6 forwarding\n"),
        (false, false, "no ip forwarding\nno ipv6 forwarding\n"),
    ] {
        h.ip_forwarding = v4;
        h.ipv6_forwarding = v6;
        let text = render(&c, &h).unwrap();
        let lines: String = text
            .lines()
            .filter(|l| l.contains("forwarding"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(lines, expected, "{text}");
        assert!(text.contains("hostname edge-host1\n"));
    }
}

#[test]
fn firewall_table() {
    let text = firewall::render("10.0.0.0/24".parse().unwrap(), "scwpriv0");
    assert_golden("firewall.nft", &text);
    assert_eq!(
        firewall::render_removal(),
        "table inet one_scaleway_evpn\ndelete table inet one_scaleway_evpn\n"
    );
}

/// Both security group tables: a NIC with rules, one in group 0, a VXLAN
/// device; written whole, and updated in place from tables that held
/// another port instead of the second, the first in group 0, and another
/// VXLAN device.
#[test]
fn security_group_tables() {
    use sg_example::{filters, port};
    let after = filters(vec![port(7, 1, 1, true), port(8, 0, 2, false)], &["vxlan100"]);
    assert_golden("security_groups.nft", &after.script());
    let before = filters(
        vec![port(7, 1, 1, false), port(9, 0, 3, false)],
        &["vxlan100", "vxlan200"],
    );
    assert_golden("security_groups_update.nft", &after.update_script(&before));
}

/// FRR's own parser accepts every golden configuration (`vtysh -C -f`: no
/// daemon needed), and refuses a broken one.
#[test]
#[ignore = "needs FRR's vtysh (Debian package frr); run by .ci/run"]
fn frr_accepts_the_golden_configurations() {
    let check = |path: &Path| {
        std::process::Command::new("vtysh")
            .args(["-C", "-f"])
            .arg(path)
            .output()
            .expect("run vtysh (install frr)")
    };
    let mut checked = 0;
    for (name, ..) in cases() {
        let path = golden_dir().join(&name);
        let out = check(&path);
        assert!(
            out.status.success(),
            "vtysh -C -f {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert_eq!(checked, 9);
    let dir = test_support::TempDir::new("evpn-vtysh");
    let broken = dir.path().join("broken.conf");
    let text = render(&cluster(2, 1), &host(0, &[100])).unwrap();
    std::fs::write(&broken, text.replace("advertise-all-vni", "advertise-every-vni")).unwrap();
    assert!(!check(&broken).status.success(), "a broken configuration is refused");
}
