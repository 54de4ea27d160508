//! The planner's plans for the driver's situations, as text, compared with
//! `tests/golden/*.txt` (`UPDATE_GOLDEN=1 cargo test -p public-plan` accepts
//! changes; review the diff). Each scenario also checks that applying the
//! plan to a simulated host and planning again gives an empty plan.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::BTreeSet;
use std::path::Path;

use opennebula::vm::Vm;
use public_plan::endpoint::BridgeName;
use public_plan::observed::{ChainState, HostAddress, Link};
use public_plan::{Endpoint, Observed, Plan, Request, plan, select, simulate};

fn assert_golden(name: &str, actual: &str) {
    test_support::assert_golden_in(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden"),
        name,
        actual,
    );
}

fn parse_vm(xml: &str) -> Vm {
    Vm::from_element(&opennebula::xml::parse(xml.as_bytes()).unwrap()).unwrap()
}

/// A reduced VM document with IPv4 public NICs `(nic_id, n, attach)`: NIC n
/// has private 172.30.0.(4n)/31 and flexible IP 51.15.0.n.
fn vm(id: u64, nics: &[(u32, u8, bool)]) -> Vm {
    let mut body = String::new();
    for &(nic_id, n, attach) in nics {
        let mac = format!("02:00:00:{:02x}:{:02x}:{nic_id:02x}", (id >> 8) & 0xff, id & 0xff);
        body.push_str(&format!(
            "<NIC><NIC_ID>{nic_id}</NIC_ID><VN_MAD>scaleway</VN_MAD><BRIDGE>scwpub0</BRIDGE>\
             <TARGET>one-{id}-{nic_id}</TARGET><MAC>{mac}</MAC><IP>172.30.0.{}</IP><GATEWAY>172.30.0.{}</GATEWAY><EXTERNAL_IP>51.15.0.{n}</EXTERNAL_IP>{}</NIC>",
            4 * n,
            4 * n + 1,
            if attach { "<ATTACH>YES</ATTACH>" } else { "" }
        ));
    }
    parse_vm(&format!("<VM><ID>{id}</ID><TEMPLATE>{body}</TEMPLATE></VM>"))
}

fn fixture_vm(name: &str) -> Vm {
    parse_vm(&test_support::fixture(name))
}

/// A simulated host: what the kernel has, which endpoints are recorded,
/// which bridges are ours.
#[derive(Default)]
struct Host {
    kernel: Observed,
    record: Vec<Endpoint>,
    owned: BTreeSet<BridgeName>,
}

impl Host {
    fn request(&self, vm: &Vm, ensure: bool) -> Request {
        let selection = select(vm).unwrap();
        let selected = selection.endpoints;
        let keep = self
            .record
            .iter()
            .filter(|e| !selected.iter().any(|s| s.owner == e.owner))
            .copied()
            .collect();
        Request {
            ensure: if ensure { selected.clone() } else { Vec::new() },
            remove: if ensure { Vec::new() } else { selected },
            keep,
            owned_bridges: self.owned.clone(),
            filters: if ensure { selection.filters } else { Vec::new() },
            ..Request::default()
        }
    }

    /// The plan, which is also the plan of the request narrowed to the
    /// endpoints it touches (`model::narrow`, what the driver plans).
    fn plan(&self, request: &Request) -> Plan {
        checked(request, &self.kernel).unwrap()
    }

    /// Applies the plan, records the result, and checks that planning the
    /// same request again changes nothing.
    fn apply(&mut self, request: &Request, p: &Plan) {
        self.kernel = simulate(&self.kernel, p).unwrap();
        self.owned.extend(p.bridges_created.iter().copied());
        for b in &p.bridges_deleted {
            self.owned.remove(b);
        }
        self.record
            .retain(|e| !request.remove.iter().any(|r| r.owner == e.owner));
        self.record
            .retain(|e| !request.ensure.iter().any(|r| r.owner == e.owner));
        self.record.extend(request.ensure.iter().copied());
        let again = plan(request, &self.kernel).unwrap();
        assert!(
            again.is_empty(),
            "applying twice must be a no-op, second plan:\n{again}"
        );
    }

    fn pre(&mut self, vm: &Vm) -> Plan {
        let r = self.request(vm, true);
        let p = self.plan(&r);
        self.apply(&r, &p);
        p
    }

    fn clean(&mut self, vm: &Vm) -> Plan {
        let r = self.request(vm, false);
        let p = self.plan(&r);
        self.apply(&r, &p);
        p
    }

    /// A VM tap on the bridge (as libvirt adds it).
    fn plug(&mut self, tap: &str, bridge: &str) {
        self.kernel.links.insert(
            tap.into(),
            Link {
                kind: Some("tun".into()),
                up: true,
                master: Some(bridge.into()),
            },
        );
    }

    fn unplug(&mut self, tap: &str) {
        self.kernel.links.remove(tap);
    }
}

/// The plan of `request`, which is also the plan of the request narrowed
/// to the endpoints it touches (`model::narrow`: what the driver plans).
fn checked(request: &Request, kernel: &Observed) -> Result<Plan, public_plan::PlanError> {
    let whole = plan(request, kernel);
    let narrowed = plan(&public_plan::model::narrow(request.clone()), kernel);
    assert_eq!(whole, narrowed, "narrowing the request changed its plan");
    whole
}

fn section(title: &str, p: &Plan) -> String {
    format!("## {title}\n{p}\n")
}

#[test]
fn first_nic() {
    let mut host = Host::default();
    let p = host.pre(&vm(42, &[(0, 1, false)]));
    assert_eq!(
        p.processes(),
        1,
        "one nft transaction (the ip changes are rtnetlink messages)"
    );
    let again = host.pre(&vm(42, &[(0, 1, false)]));
    let out = section("pre of VM 42 (one NIC) on an empty host", &p)
        + &section("pre of VM 42 again (idempotent re-apply)", &again);
    assert_golden("first_nic.txt", &out);
}

#[test]
fn nth_nic() {
    let mut host = Host::default();
    for id in 1..=3u8 {
        host.pre(&vm(u64::from(id), &[(0, id, false)]));
        host.plug(&format!("one-{id}-0"), "scwpub0");
    }
    let p = host.pre(&vm(4, &[(0, 4, false)]));
    assert_eq!(
        p.nft.ops.len(),
        7,
        "two NAT elements, three guard elements, the NIC's filter and its address, no table change"
    );
    assert_golden("nth_nic.txt", &section("pre of VM 4 with VMs 1 to 3 on the host", &p));
}

#[test]
fn conflict_is_refused_naming_both() {
    let mut host = Host::default();
    host.pre(&vm(1, &[(0, 1, false)]));
    // VM 2 claims VM 1's flexible IP for another private address.
    let claim = parse_vm(
        "<VM><ID>2</ID><TEMPLATE><NIC><NIC_ID>0</NIC_ID><VN_MAD>scaleway</VN_MAD><BRIDGE>scwpub0</BRIDGE>\
         <TARGET>one-2-0</TARGET><MAC>02:00:00:00:02:00</MAC><IP>172.30.0.8</IP><GATEWAY>172.30.0.9</GATEWAY><EXTERNAL_IP>51.15.0.1</EXTERNAL_IP></NIC></TEMPLATE></VM>",
    );
    let same_external = checked(&host.request(&claim, true), &host.kernel)
        .unwrap_err()
        .to_string();
    // VM 3 claims VM 1's private address with another flexible IP.
    let claim = parse_vm(
        "<VM><ID>3</ID><TEMPLATE><NIC><NIC_ID>0</NIC_ID><VN_MAD>scaleway</VN_MAD><BRIDGE>scwpub0</BRIDGE>\
         <TARGET>one-3-0</TARGET><MAC>02:00:00:00:03:00</MAC><IP>172.30.0.4</IP><GATEWAY>172.30.0.5</GATEWAY><EXTERNAL_IP>51.15.0.99</EXTERNAL_IP></NIC></TEMPLATE></VM>",
    );
    let same_private = checked(&host.request(&claim, true), &host.kernel)
        .unwrap_err()
        .to_string();
    // The same, set by hand (not in the record).
    host.record.clear();
    let by_hand = checked(&host.request(&claim, true), &host.kernel)
        .unwrap_err()
        .to_string();
    // Two NICs of one VM with one flexible IP.
    let twice = vm(5, &[(0, 7, false), (1, 7, false)]);
    let twice = checked(&Host::default().request(&twice, true), &Observed::default())
        .unwrap_err()
        .to_string();
    for m in [&same_external, &same_private, &by_hand] {
        assert!(
            m.contains("VM 1 NIC 0") || m.contains("not in the driver's record"),
            "{m}"
        );
    }
    // A range whose private block is inside the host's own network (the
    // EVPN underlay here); the flexible IP in the host's public subnet is fine.
    let mut underlay = Observed::default();
    for (addr, len, dev) in [
        ("172.30.0.10", 24, "scwpriv0"),
        ("51.15.0.2", 24, "eno1"),
        ("fe80::1", 64, "scwpub0"),
    ] {
        underlay.addresses.push(HostAddress {
            addr: addr.parse().unwrap(),
            len,
            dev: dev.into(),
        });
    }
    let inside = checked(&Host::default().request(&vm(6, &[(0, 1, false)]), true), &underlay)
        .unwrap_err()
        .to_string();
    underlay.addresses.remove(0);
    checked(&Host::default().request(&vm(6, &[(0, 1, false)]), true), &underlay).unwrap();
    assert_golden(
        "conflict.txt",
        &format!(
            "## same flexible IP, other private IP\n{same_external}\n\n## same private IP, other flexible IP\n\
             {same_private}\n\n## set by hand\n{by_hand}\n\n## one flexible IP on two NICs\n{twice}\n\n\
             ## the VM's address inside the host's own network\n{inside}\n"
        ),
    );
}

#[test]
fn clean_of_one_vm_among_several() {
    let mut host = Host::default();
    for id in 1..=3u8 {
        host.pre(&vm(u64::from(id), &[(0, id, false)]));
        host.plug(&format!("one-{id}-0"), "scwpub0");
    }
    host.unplug("one-2-0");
    let p = host.clean(&vm(2, &[(0, 2, false)]));
    let again = host.clean(&vm(2, &[(0, 2, false)]));
    assert!(again.is_empty());
    // VMs 1 and 3 keep everything.
    for n in [1u8, 3] {
        let ip = format!("172.30.0.{}", 4 * n).parse().unwrap();
        assert!(host.kernel.nat.get("snat_map", ip).is_some());
        assert!(host.kernel.routes.iter().any(|r| r.dst == ip));
    }
    // The last VM gone, the bridge goes too.
    host.unplug("one-1-0");
    host.clean(&vm(1, &[(0, 1, false)]));
    let with_port = host.clean(&vm(3, &[(0, 3, false)]));
    host.unplug("one-3-0");
    host.pre(&vm(3, &[(0, 3, false)]));
    let last = host.clean(&vm(3, &[(0, 3, false)]));
    assert!(host.kernel.links.is_empty(), "{:?}", host.kernel.links);
    let out = section("clean of VM 2 among VMs 1, 2, 3", &p)
        + &section("clean of VM 2 again (removing what is absent)", &again)
        + &section("clean of VM 3, the last one, its tap still on the bridge", &with_port)
        + &section("clean of VM 3, the last one, tap gone", &last);
    assert_golden("clean_one_of_several.txt", &out);
}

#[test]
fn nic_alias() {
    let mut host = Host::default();
    let vm = fixture_vm("vnm/deploy-scaleway-pre.xml");
    let p = host.pre(&vm);
    assert_golden(
        "nic_alias.txt",
        &section("pre of fixture vnm/deploy-scaleway-pre.xml (NIC 0 and NIC_ALIAS 2)", &p),
    );
}

#[test]
fn hot_attach_and_detach() {
    let mut host = Host::default();
    // The VM runs with NIC 0 and its alias.
    host.pre(&fixture_vm("vnm/deploy-scaleway-pre.xml"));
    host.plug("one-7-0", "scwpub0");
    let attach = fixture_vm("vnm/nic_attach-scaleway-pre.xml");
    assert!(select(&attach).unwrap().hotplug);
    let p_attach = host.pre(&attach);
    host.plug("one-7-3", "scwpub0");
    // detach_nic runs clean with a document where NIC 3 has ATTACH=YES.
    host.unplug("one-7-3");
    let detach = fixture_vm("vnm/nic_detach-scaleway-clean.xml");
    let p_detach = host.clean(&detach);
    assert_eq!(host.record.len(), 2, "NIC 0 and its alias stay");
    let out = section("pre for attach_nic (NIC 3 has ATTACH=YES): only NIC 3", &p_attach)
        + &section("clean for detach_nic (NIC 3 has ATTACH=YES): only NIC 3", &p_detach);
    assert_golden("hot_attach_detach.txt", &out);
}

#[test]
fn ipv6_nic() {
    let mut host = Host::default();
    let vm = fixture_vm("vnm/ipv6-scaleway-pre.xml");
    let p = host.pre(&vm);
    host.plug("one-8-0", "scwpub0");
    let c = host.clean(&vm);
    assert_golden(
        "ipv6.txt",
        &(section(
            "pre of fixture vnm/ipv6-scaleway-pre.xml (IPv6 NIC 0, IPv4 NIC_ALIAS 1)",
            &p,
        ) + &section("clean of the same VM (tap still on the bridge)", &c)),
    );
}

#[test]
fn repairs_our_table_and_refuses_a_foreign_one() {
    let mut host = Host::default();
    host.pre(&vm(1, &[(0, 1, false)]));
    // Someone flushed a chain.
    host.kernel.nat.chains.get_mut("prerouting").unwrap().rules.clear();
    let repair = host.pre(&vm(1, &[(0, 1, false)]));
    // Someone turned a chain into a filter chain: not ours to fix.
    host.kernel.nat.chains.insert(
        "postrouting".into(),
        ChainState {
            kind: Some("filter".into()),
            hook: Some("forward".into()),
            prio: Some(0),
            rules: Vec::new(),
        },
    );
    let refused = checked(&host.request(&vm(2, &[(0, 2, false)]), true), &host.kernel)
        .unwrap_err()
        .to_string();
    // A device of another kind under our bridge's name.
    let mut other = Host::default();
    other.kernel.links.insert(
        "scwpub0".into(),
        Link {
            kind: Some("veth".into()),
            up: true,
            master: None,
        },
    );
    let not_bridge = checked(&other.request(&vm(1, &[(0, 1, false)]), true), &other.kernel)
        .unwrap_err()
        .to_string();
    assert_golden(
        "repair.txt",
        &(section("pre after the prerouting chain was flushed by hand", &repair)
            + &format!("## a chain of our table changed kind\n{refused}\n\n## BRIDGE is a veth\n{not_bridge}\n")),
    );
}

#[test]
fn many_endpoints_plan_one_transaction() {
    // Reconcile-sized: 2000 endpoints on an empty host, one nft batch.
    let endpoints: Vec<Endpoint> = (0..2000u32)
        .map(|i| {
            let vm = vm(u64::from(i), &[(0, 1, false)]);
            let mut e = select(&vm).unwrap().endpoints[0];
            e.public = public_plan::Public::V4 {
                ip: std::net::Ipv4Addr::from(0xac1e_0000 + 2 * i),
                gateway: std::net::Ipv4Addr::from(0xac1e_0000 + 2 * i + 1),
                external: std::net::Ipv4Addr::from(0xc612_0000 + i),
            };
            e
        })
        .collect();
    let request = Request {
        ensure: endpoints,
        ..Request::default()
    };
    let p = checked(&request, &Observed::default()).unwrap();
    assert_eq!(p.processes(), 1);
    assert_eq!(
        p.nft.render().lines().count(),
        39,
        "NAT base (11 lines) + one line per map, guard base (23 lines) + one line per set"
    );
    let after = simulate(&Observed::default(), &p).unwrap();
    assert!(checked(&request, &after).unwrap().is_empty());
}
