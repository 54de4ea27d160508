//! observe -> plan -> apply on the fake host: the order of the calls, the
//! undo of a failed step, and that a second round changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use public_apply::fake::FakeHost;
use public_apply::{Host, apply, observe};
use public_plan::endpoint::BridgeName;
use public_plan::{Endpoint, Observed, Owner, Port, Public, Request, plan, query};

fn endpoint(vm: u64, n: u8) -> Endpoint {
    Endpoint {
        owner: Owner {
            vm,
            nic_id: 0,
            alias: None,
        },
        bridge: BridgeName::parse("scwpub0").unwrap(),
        public: Public::V4 {
            ip: format!("172.30.0.{}", 4 * n).parse().unwrap(),
            gateway: format!("172.30.0.{}", 4 * n + 1).parse().unwrap(),
            external: format!("51.15.0.{n}").parse().unwrap(),
        },
        port: Some(Port {
            tap: BridgeName::parse(&format!("one-{vm}-0")).unwrap(),
            mac: [2, 0, 0, 0, vm as u8, n],
        }),
    }
}

fn host(fake: &FakeHost) -> Host<'_> {
    Host {
        nft: fake,
        ip: fake,
        sysctl: fake,
        helper: None,
    }
}

fn round(fake: &FakeHost, request: &Request) -> Result<public_plan::Plan, String> {
    let observed = observe(host(fake), &query(request)).map_err(|e| e.to_string())?;
    let p = plan(request, &observed).map_err(|e| e.to_string())?;
    apply(host(fake), &p).map_err(|e| e.to_string())?;
    Ok(p)
}

#[test]
fn applies_in_order_and_twice_is_once() {
    let fake = FakeHost::new();
    let request = Request {
        ensure: vec![endpoint(1, 1)],
        ..Request::default()
    };
    round(&fake, &request).unwrap();
    let calls = fake.take_calls();
    let kinds: Vec<&str> = calls
        .iter()
        .map(|c| c.split(" <<<").next().unwrap().split(": ").next().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "nft -j list table ip one_scaleway",
            "nft -j list table bridge one_scaleway_guard",
            "nft -j list table inet one_scaleway_sg",
            "netlink read",
            "netlink change",
            "sysctl net.ipv4.ip_forward = 1",
            "sysctl net.ipv4.conf.scwpub0.forwarding = 1",
            "sysctl net.ipv4.neigh.scwpub0.proxy_delay = 0",
            "nft -f -",
        ]
    );
    assert_eq!(
        fake.processes(),
        4,
        "3 nft listings, 1 nft transaction (links, routes, neighbours: rtnetlink)"
    );
    let second = round(&fake, &request).unwrap();
    assert!(second.is_empty());
    assert_eq!(fake.take_calls().len(), 4, "a second pre only observes");
}

#[test]
fn a_failed_nft_transaction_undoes_the_routes_and_the_bridge() {
    let fake = FakeHost::new();
    fake.fail_next("nft", "Error: Could not process rule: No buffer space available");
    let request = Request {
        ensure: vec![endpoint(1, 1)],
        ..Request::default()
    };
    let e = round(&fake, &request).unwrap_err();
    assert!(e.contains("No buffer space available"), "{e}");
    assert!(e.ends_with("; the changes made before it were undone"), "{e}");
    let k = fake.kernel();
    assert!(
        k.links.is_empty() && k.routes.is_empty() && k.proxies.is_empty(),
        "{k:?}"
    );
    // It works the next time.
    round(&fake, &request).unwrap();
    assert_eq!(fake.kernel().routes.len(), 1);
}

#[test]
fn a_failed_ip_line_undoes_the_lines_before_it() {
    let fake = FakeHost::new();
    round(
        &fake,
        &Request {
            ensure: vec![endpoint(1, 1)],
            ..Request::default()
        },
    )
    .unwrap();
    let before = fake.kernel();
    // VM 2 adds a route, a proxy entry and a neighbour entry; the last line fails.
    fake.fail_next("ip", "RTNETLINK answers: No buffer space available");
    let e = round(
        &fake,
        &Request {
            ensure: vec![endpoint(2, 2)],
            keep: vec![endpoint(1, 1)],
            ..Request::default()
        },
    )
    .unwrap_err();
    assert!(
        e.contains("`ip neigh replace 172.30.0.8 lladdr 02:00:00:00:02:02 dev scwpub0 nud permanent` failed: "),
        "{e}"
    );
    assert!(e.contains("were undone"), "{e}");
    assert_eq!(fake.kernel(), before, "VM 1 untouched, nothing of VM 2 left");
}

#[test]
fn a_reboot_is_repaired_by_planning_everything_again() {
    let fake = FakeHost::new();
    let all = vec![endpoint(1, 1), endpoint(2, 2), endpoint(3, 3)];
    round(
        &fake,
        &Request {
            ensure: all.clone(),
            ..Request::default()
        },
    )
    .unwrap();
    let running = fake.kernel();
    fake.reboot();
    assert_eq!(fake.kernel(), Observed::default());
    round(
        &fake,
        &Request {
            ensure: all,
            ..Request::default()
        },
    )
    .unwrap();
    assert_eq!(fake.kernel(), running);
}
