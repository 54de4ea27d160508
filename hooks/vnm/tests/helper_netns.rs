//! The public driver's changes through the root helper, as oneadmin makes
//! them (one `sudo -n scaleway-vnm root` per plan), against the real
//! kernel in a namespace made for the test: applied whole; a transaction
//! the kernel refuses comes back as such (the driver then reads the tables
//! and plans again) with the changes before it undone by the helper; a
//! change of a device that is not a bridge is refused before anything
//! runs. Run as root here, with sudo as shipped to oneadmin in the sandbox.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::net::Ipv4Addr;

use host_tools::Tools;
use nix::sched::CloneFlags;
use opennebula::driver::Env;
use public_apply::ip::IpNetlink;
use public_apply::nft::NftCommand;
use public_apply::sysctl::ProcSysctl;
use public_apply::{Host, apply};
use public_plan::endpoint::BridgeName;
use public_plan::{IpOp, NftOp, Plan, Route};
use test_support::{NetNs, require_root};

const HELPER: &str = env!("CARGO_BIN_EXE_scaleway-vnm");

/// Applies `plan` inside namespace `ns` through sudo and the helper.
fn through_helper(ns: &NetNs, plan: Plan) -> Result<(), host_tools::ApplyError> {
    let path = format!("/run/netns/{}", ns.name());
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
        let tools = Tools::from_env(&Env::from_pairs([
            ("ONE_SCALEWAY_SUDO", "always"),
            ("ONE_SCALEWAY_ROOT_HELPER", HELPER),
        ]))
        .unwrap();
        assert!(tools.uses_sudo());
        let (nft, ip, sysctl) = (
            NftCommand { tools: &tools },
            IpNetlink { tools: &tools },
            ProcSysctl::new(&tools),
        );
        let before = tools.spawned();
        let done = apply(
            Host {
                nft: &nft,
                ip: &ip,
                sysctl: &sysctl,
                helper: Some(&tools),
            },
            &plan,
        );
        assert_eq!(tools.spawned() - before, 1, "one sudo per plan");
        done
    })
    .join()
    .unwrap()
}

fn plan(bridge: &str, nft: Vec<NftOp>) -> Plan {
    let b = BridgeName::parse(bridge).unwrap();
    Plan {
        ip_before: vec![
            IpOp::AddBridge {
                name: b,
                mac: [2, 0x5c, 0, 0, 0, 1],
            },
            IpOp::SetUp(b),
            IpOp::AddRoute(Route {
                dst: "172.30.0.4".parse().unwrap(),
                len: 32,
                via: None,
                dev: b,
            }),
        ],
        nft: public_plan::NftBatch { ops: nft },
        ..Plan::default()
    }
}

fn dnat() -> NftOp {
    NftOp::AddDnat {
        external: Ipv4Addr::new(198, 51, 100, 1),
        ip: Ipv4Addr::new(172, 30, 0, 4),
    }
}

#[test]
#[ignore = "needs root: run with --include-ignored"]
fn a_plan_goes_whole_to_the_helper_and_comes_back_as_the_kernel_answered() {
    require_root();
    let ns = NetNs::new("helper");
    // Our table is missing: the kernel refuses the transaction, the bridge
    // and route made before it are undone, and the driver is told.
    let e = through_helper(&ns, plan("scwpub0", vec![dnat()])).unwrap_err();
    assert!(e.nft_refused, "{e}");
    assert!(e.message.contains("sudo -n"), "{e}");
    assert!(e.message.contains("the changes made before it were undone"), "{e}");
    let links = ns.run_ok(&["ip", "-j", "link", "show"], b"");
    assert!(!links.contains("scwpub0"), "{links}");

    // With the table declared, the whole plan is in place.
    through_helper(&ns, plan("scwpub0", vec![NftOp::EnsureBase, dnat()])).unwrap();
    let route = ns.run_ok(&["ip", "-j", "route", "show", "172.30.0.4/32"], b"");
    assert!(route.contains("\"dev\":\"scwpub0\""), "{route}");
    let map = ns.run_ok(&["nft", "list", "map", "ip", "one_scaleway", "dnat_map"], b"");
    assert!(map.contains("198.51.100.1 : 172.30.0.4"), "{map}");

    // A change of a device that is not a bridge: refused before anything runs.
    let mut bad = plan("scwpub1", vec![]);
    bad.ip_after = vec![IpOp::DeleteLink(BridgeName::parse("lo").unwrap())];
    let e = through_helper(&ns, bad).unwrap_err();
    assert!(!e.nft_refused);
    assert!(
        e.message.contains("refused") && e.message.contains("lo is not a bridge"),
        "{e}"
    );
    let links = ns.run_ok(&["ip", "-j", "link", "show"], b"");
    assert!(!links.contains("scwpub1"), "nothing ran: {links}");
}
