//! The private driver `scaleway_evpn` (`evpn-config`, `pre`, `clean`,
//! `reconcile`) on the fake host of `private_apply`: the segments, the FRR
//! configuration and when it is reloaded, the record and who uses which
//! VNI, conflicts, hot attach/detach, failures and their undoing, dry runs.
//! Fast, no root.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::time::Duration;

use opennebula::driver::{Level, Log, Output};
use opennebula::vm::Vm;
use private_apply::apply::{EvpnHost, Forwarding};
use private_apply::fake::FakeHost;
use private_apply::record::RecordFile;
use scaleway_vnm::private::{Settings, clean_with, evpn_config_with, pre_with, reconcile_with};
use test_support::{TempDir, fixture};

const CLUSTER: &str = "# test cluster\nAS = 65000\nUNDERLAY = 10.0.0.0/24\nHOSTS = \"10.0.0.2 10.0.0.3 10.0.0.4\"\n";

/// One fake hypervisor at 10.0.0.2 (the first reflector), underlay
/// `scwpriv0` with MTU 1500.
struct Hyper {
    fake: FakeHost,
    settings: Settings,
    _dir: TempDir,
}

impl Hyper {
    fn new() -> Self {
        Self::at("10.0.0.2")
    }

    fn at(local: &str) -> Self {
        let dir = TempDir::new("vnm-evpn");
        Self {
            fake: FakeHost::with_underlay("scwpriv0", local, 1500),
            settings: Settings {
                record: dir.path().join("state/vnm-evpn.json"),
                frr_conf: dir.path().join("state/frr-evpn.conf"),
                lock: dir.path().join("lock"),
                lock_timeout: Duration::from_secs(5),
                dry_run: false,
            },
            _dir: dir,
        }
    }

    fn act(
        &self,
        f: impl FnOnce(&mut Log<'_>, EvpnHost<'_>, &Settings) -> anyhow::Result<Output>,
    ) -> (Result<String, String>, String) {
        let mut err = Vec::new();
        let result = {
            let mut log = Log::new(&mut err, Level::Debug, "scaleway-vnm scaleway_evpn test");
            f(&mut log, self.fake.host(), &self.settings)
        };
        (
            result.map(|o| o.stdout).map_err(|e| format!("{e:#}")),
            String::from_utf8(err).unwrap(),
        )
    }

    fn config(&self, text: &str) -> (Result<String, String>, String) {
        self.act(|log, host, s| evpn_config_with(text, "cluster.conf", log, host, s))
    }

    fn configured() -> Self {
        let h = Self::new();
        let (r, log) = h.config(CLUSTER);
        r.unwrap_or_else(|e| panic!("{e}\n{log}"));
        h.fake.take_calls();
        h
    }

    fn pre(&self, vm: &Vm) -> (Result<String, String>, String) {
        self.act(|log, host, s| pre_with(vm, log, host, s))
    }

    fn pre_ok(&self, vm: &Vm) -> String {
        let (r, log) = self.pre(vm);
        r.unwrap_or_else(|e| panic!("pre of VM {}: {e}\n{log}", vm.id));
        log
    }

    fn clean(&self, vm: &Vm) -> (Result<String, String>, String) {
        self.act(|log, host, s| clean_with(vm, log, host, s))
    }

    fn clean_ok(&self, vm: &Vm) -> String {
        let (r, log) = self.clean(vm);
        r.unwrap_or_else(|e| panic!("clean of VM {}: {e}\n{log}", vm.id));
        log
    }

    /// `vni N` lines of the FRR configuration last reloaded.
    fn frr_vnis(&self) -> Vec<String> {
        self.fake
            .frr()
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("  vni "))
            .map(|l| l.trim().to_owned())
            .collect()
    }

    /// The record's segments: "VNI: users".
    fn record(&self) -> Vec<String> {
        RecordFile::new(&self.settings.record)
            .load()
            .unwrap()
            .segments
            .values()
            .map(|s| {
                let users: Vec<String> = s.users.iter().map(ToString::to_string).collect();
                format!("{}: {}", s.segment.vni, users.join(", "))
            })
            .collect()
    }

    fn links(&self) -> Vec<String> {
        self.fake.links().links.keys().cloned().collect()
    }
}

/// The VM of `xml`; each NIC's port is `one-<VM>-<NIC>`, as oned names it.
fn parse_vm(xml: &str) -> Vm {
    let id = xml
        .split_once("<ID>")
        .and_then(|(_, rest)| rest.split_once("</ID>"))
        .map(|(id, _)| id.to_owned())
        .unwrap();
    let xml = xml.replace("<TARGET>one-VM-", &format!("<TARGET>one-{id}-"));
    Vm::from_element(&opennebula::xml::parse(xml.as_bytes()).unwrap()).unwrap()
}

fn nic(nic_id: u32, vni: u32, extra: &str) -> String {
    format!(
        "<NIC><NIC_ID>{nic_id}</NIC_ID><VN_MAD>scaleway_evpn</VN_MAD><VLAN_ID>{vni}</VLAN_ID>\
         <BRIDGE>onebr.{vni}</BRIDGE><PHYDEV>scwpriv0</PHYDEV><GUEST_MTU>1450</GUEST_MTU>\
         <TARGET>one-VM-{nic_id}</TARGET>{extra}</NIC>"
    )
}

/// VM `id` with NICs `(nic_id, vni)`.
fn vm(id: u64, nics: &[(u32, u32)]) -> Vm {
    let body: String = nics.iter().map(|&(n, v)| nic(n, v, "")).collect();
    parse_vm(&format!("<VM><ID>{id}</ID><TEMPLATE>{body}</TEMPLATE></VM>"))
}

#[test]
fn evpn_config_renders_checks_and_reloads_frr_and_sets_the_firewall() {
    let h = Hyper::new();
    let (r, log) = h.config(CLUSTER);
    let out = r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_eq!(
        out,
        "10.0.0.2 is a route reflector of AS 65000 (reflectors 10.0.0.2, 10.0.0.3), 2 BGP peers, VNIs none; \
         firewall: BGP and VXLAN only from 10.0.0.0/24 on scwpriv0\n"
    );
    assert_eq!(
        h.fake.take_calls(),
        [
            "ip -d -j addr show",
            "vtysh -C -f",
            "nft -f -",
            "nft -f - (security groups)",
            "frr-reload.py --reload"
        ]
    );
    let frr = h.fake.frr().unwrap();
    assert!(
        frr.contains(" neighbor 10.0.0.3 peer-group reflectors\n neighbor 10.0.0.4 peer-group clients\n"),
        "{frr}"
    );
    assert!(
        frr.contains("hostname host1\nno ip forwarding\nno ipv6 forwarding\n"),
        "{frr}"
    );
    assert_eq!(
        std::fs::read_to_string(&h.settings.frr_conf).unwrap(),
        frr,
        "the file FRR got is kept"
    );
    let fw = h.fake.firewall().unwrap();
    assert!(
        fw.contains("iifname \"scwpriv0\" ip saddr 10.0.0.0/24 tcp dport 179 accept"),
        "{fw}"
    );
    // A host that forwards: the configuration says nothing of forwarding.
    h.fake.set_forwarding(Forwarding { ipv4: true, ipv6: true });
    h.config(CLUSTER).0.unwrap();
    assert!(!h.fake.frr().unwrap().contains("forwarding"));
    // VNIS are listed even without a VM.
    h.config(&format!("{CLUSTER}VNIS = \"300\"\n")).0.unwrap();
    assert_eq!(h.frr_vnis(), ["vni 300"]);
}

#[test]
fn evpn_config_places_the_host_or_says_why_not() {
    let cases = [
        (
            "10.0.0.9",
            CLUSTER.to_owned(),
            "none of HOSTS is an address of this host (it has 10.0.0.9)",
        ),
        (
            "10.0.0.2",
            format!("{CLUSTER}LOCAL = 10.0.0.3\n"),
            "LOCAL = 10.0.0.3 is not an address of this host",
        ),
        (
            "10.0.0.2",
            format!("{CLUSTER}UNDERLAY_DEVICE = eth1\n"),
            "UNDERLAY_DEVICE = eth1 does not hold this host's underlay address 10.0.0.2 (scwpriv0 does)",
        ),
        ("10.0.0.2", "AS = 65000\n".to_owned(), "the cluster description"),
    ];
    for (local, text, expected) in cases {
        let h = Hyper::at(local);
        let (r, _) = h.config(&text);
        let e = r.unwrap_err();
        assert!(e.contains(expected), "{text}: {e}");
        assert_eq!(h.fake.frr(), None, "nothing applied");
        assert!(!h.settings.record.exists());
    }
    // The client: peers with the two reflectors only.
    let h = Hyper::at("10.0.0.4");
    let out = h.config(CLUSTER).0.unwrap();
    assert!(out.starts_with("10.0.0.4 is a client of AS 65000 (reflectors 10.0.0.2, 10.0.0.3), 2 BGP peers"));
    // FRR refusing the configuration: nothing changed.
    let h = Hyper::new();
    h.fake.fail_next("vtysh", "line 12: % Unknown command");
    let e = h.config(CLUSTER).0.unwrap_err();
    assert!(
        e.contains("nothing was changed") && e.contains("Unknown command"),
        "{e}"
    );
    assert_eq!((h.fake.frr(), h.fake.firewall()), (None, None));
    assert!(!h.settings.record.exists());
}

#[test]
fn pre_needs_the_cluster_description_first() {
    let h = Hyper::new();
    let (r, _) = h.pre(&parse_vm(&fixture("vnm/deploy-scaleway_evpn-pre.xml")));
    let e = r.unwrap_err();
    assert!(
        e.contains(
            "VM 7: this host has no BGP-EVPN configuration yet: run `scaleway-vnm --driver scaleway_evpn evpn-config"
        ),
        "{e}"
    );
    assert!(h.fake.take_calls().is_empty(), "nothing observed or changed");
}

/// VM `id` with NICs `(nic_id, network id)` on networks oned gave no
/// `VLAN_ID` (as it sends them for our driver, as in the captured VM 7:
/// its private NIC 1 is on network 2).
fn vm_on(id: u64, nics: &[(u32, u32)]) -> Vm {
    let body: String = nics
        .iter()
        .map(|&(n, net)| {
            format!(
                "<NIC><NIC_ID>{n}</NIC_ID><VN_MAD>scaleway_evpn</VN_MAD><NETWORK_ID>{net}</NETWORK_ID>\
                 <BRIDGE>onebr{net}</BRIDGE><PHYDEV>scwpriv0</PHYDEV><GUEST_MTU>1450</GUEST_MTU>\
                 <TARGET>one-{id}-{n}</TARGET></NIC>"
            )
        })
        .collect();
    parse_vm(&format!("<VM><ID>{id}</ID><TEMPLATE>{body}</TEMPLATE></VM>"))
}

#[test]
fn pre_sets_up_the_segment_and_lists_the_vni_once() {
    let h = Hyper::configured();
    let deploy = parse_vm(&fixture("vnm/deploy-scaleway_evpn-pre.xml"));
    let log = h.pre_ok(&deploy);
    assert!(
        log.contains(
            "INFO: scaleway-vnm scaleway_evpn test: VM 7: set up VM 7 NIC 1: VNI 1000002: vxlan1000002 on bridge \
             onebr2 (local 10.0.0.2 on scwpriv0, MTU 1450)"
        ),
        "{log}"
    );
    assert!(log.contains("FRR updated: VNIs listed 1000002"), "{log}");
    let calls = h.fake.take_calls();
    assert_eq!(calls[0], "ip -d -j addr show");
    assert!(
        !calls
            .iter()
            .any(|c| c == "vtysh -C -f" || c == "frr-reload.py --reload"),
        "only the VNI changes, in place: {calls:#?}"
    );
    assert!(
        calls.contains(
            &"ip link add name vxlan1000002 mtu 1450 type vxlan id 1000002 local 10.0.0.2 dstport 4789 nolearning \
              dev scwpriv0"
                .to_owned()
        ),
        "{calls:#?}"
    );
    assert_eq!(
        calls.last().unwrap(),
        "vtysh router bgp 65000: vni +[1000002] -[]",
        "FRR after the devices: {calls:#?}"
    );
    assert_eq!(h.frr_vnis(), ["vni 1000002"]);
    assert_eq!(h.record(), ["1000002: VM 7 NIC 1"]);
    let links = h.fake.links();
    let vx = &links.links["vxlan1000002"];
    assert_eq!(
        (vx.mtu, vx.up, vx.master.as_deref(), vx.port_learning),
        (1450, true, Some("onebr2"), Some(false))
    );
    assert_eq!(links.links["onebr2"].mtu, 1450);
    // Twice is once: observed, nothing changed, FRR not touched.
    let log = h.pre_ok(&deploy);
    assert!(log.contains("VM 7: already in place"), "{log}");
    assert_eq!(h.fake.take_calls(), ["ip -d -j addr show"]);
    // Another VM on the same network: its devices are there, FRR lists the VNI already.
    h.pre_ok(&vm_on(17, &[(0, 2)]));
    assert_eq!(
        h.fake.take_calls(),
        ["ip -d -j addr show", "nft -f - (security groups)"],
        "only its port's security groups"
    );
    assert_eq!(h.record(), ["1000002: VM 7 NIC 1, VM 17 NIC 0"]);
    // A second network: its own devices, FRR reloaded with both VNIs.
    h.pre_ok(&vm_on(18, &[(0, 3)]));
    assert_eq!(h.frr_vnis(), ["vni 1000002", "vni 1000003"]);
}

#[test]
fn clean_removes_a_segment_only_with_its_last_user() {
    let h = Hyper::configured();
    let deploy = parse_vm(&fixture("vnm/deploy-scaleway_evpn-pre.xml"));
    let other = vm_on(17, &[(0, 2), (1, 3)]);
    h.pre_ok(&deploy);
    h.pre_ok(&deploy);
    h.pre_ok(&other);
    h.pre_ok(&other);
    h.fake.take_calls();
    let log = h.clean_ok(&parse_vm(&fixture("vnm/terminate-scaleway_evpn-clean.xml")));
    assert!(
        log.contains("VM 7: left VNI 1000002, which VM 17 NIC 0 still uses on this host"),
        "{log}"
    );
    assert_eq!(
        h.fake.take_calls(),
        ["ip -d -j addr show", "nft -f - (security groups)"],
        "no device removed, FRR untouched; its ports' security groups gone"
    );
    let ports: Vec<String> = h.fake.filters().unwrap().ports.iter().map(|p| p.port.clone()).collect();
    assert_eq!(ports, ["one-17-0", "one-17-1"]);
    assert_eq!(h.record(), ["1000002: VM 17 NIC 0", "1000003: VM 17 NIC 1"]);
    let log = h.clean_ok(&other);
    assert!(
        log.contains(
            "VM 17: left VNI 1000002, which no VM uses on this host any more: removed (and from FRR's configuration)"
        ),
        "{log}"
    );
    assert_eq!(h.links(), ["scwpriv0"], "devices and bridges gone");
    assert!(h.frr_vnis().is_empty());
    assert!(h.record().is_empty());
    // Removing what is absent succeeds.
    let log = h.clean_ok(&vm_on(17, &[(0, 2)]));
    assert!(
        log.contains("VM 17: no NIC of driver scaleway_evpn recorded on this host"),
        "{log}"
    );
    // A document the driver cannot read: the record says what to remove.
    h.pre_ok(&vm(9, &[(0, 300)]));
    let broken = parse_vm(&format!(
        "<VM><ID>9</ID><TEMPLATE>{}</TEMPLATE></VM>",
        nic(0, 300, "").replace("<VLAN_ID>300</VLAN_ID>", "<VLAN_ID>0</VLAN_ID>")
    ));
    let log = h.clean_ok(&broken);
    assert!(log.contains("removing what the host record holds for the VM"), "{log}");
    assert_eq!(h.links(), ["scwpriv0"]);
}

#[test]
fn a_bridge_the_driver_did_not_make_stays() {
    let h = Hyper::configured();
    let mut links = h.fake.links();
    links.links.insert(
        "onebr.100".into(),
        private_plan::observed::Link {
            kind: Some("bridge".into()),
            mtu: 1500,
            up: true,
            ..private_plan::observed::Link::default()
        },
    );
    h.fake.set_links(links);
    h.pre_ok(&vm(1, &[(0, 100)]));
    h.clean_ok(&vm(1, &[(0, 100)]));
    assert_eq!(h.links(), ["onebr.100", "scwpriv0"]);
}

#[test]
fn hot_attach_and_detach_touch_only_that_nic() {
    let h = Hyper::configured();
    h.pre_ok(&vm(1, &[(0, 100)]));
    let attached = parse_vm(&format!(
        "<VM><ID>1</ID><TEMPLATE>{}{}</TEMPLATE></VM>",
        nic(0, 100, ""),
        nic(1, 200, "<ATTACH>YES</ATTACH>")
    ));
    let log = h.pre_ok(&attached);
    assert!(
        log.contains("VM 1: set up VM 1 NIC 1: VNI 200") && !log.contains("NIC 0:"),
        "{log}"
    );
    assert_eq!(h.record(), ["100: VM 1 NIC 0", "200: VM 1 NIC 1"]);
    h.clean_ok(&attached);
    assert_eq!(h.record(), ["100: VM 1 NIC 0"]);
    assert!(h.links().contains(&"vxlan100".to_owned()) && !h.links().contains(&"vxlan200".to_owned()));
    // Another driver's NIC being attached: ours are not touched.
    let other = parse_vm(&format!(
        "<VM><ID>1</ID><TEMPLATE>{}<NIC><NIC_ID>5</NIC_ID><VN_MAD>scaleway</VN_MAD><ATTACH>YES</ATTACH></NIC></TEMPLATE></VM>",
        nic(0, 100, "")
    ));
    h.fake.take_calls();
    h.pre_ok(&other);
    h.clean_ok(&other);
    assert!(h.fake.take_calls().is_empty());
    assert_eq!(h.record(), ["100: VM 1 NIC 0"]);
}

#[test]
fn a_nic_that_changed_network_leaves_the_old_one() {
    let h = Hyper::configured();
    h.pre_ok(&vm(1, &[(0, 100)]));
    h.pre_ok(&vm(1, &[(0, 200)]));
    assert_eq!(h.record(), ["200: VM 1 NIC 0"]);
    assert!(!h.links().contains(&"vxlan100".to_owned()));
    assert_eq!(h.frr_vnis(), ["vni 200"]);
}

#[test]
fn conflicts_and_bad_mtus_change_nothing() {
    let h = Hyper::configured();
    h.pre_ok(&vm(1, &[(0, 100)]));
    let links = h.fake.links();
    let calls = h.fake.take_calls();
    assert!(!calls.is_empty());
    let cases = [
        (
            nic(0, 100, "").replace("<BRIDGE>onebr.100</BRIDGE>", "<BRIDGE>other</BRIDGE>"),
            "VNI 100 is on bridge onebr.100 on this host (used by VM 1 NIC 0); VM 2 NIC 0 asks for bridge other",
        ),
        (
            nic(0, 300, "").replace("<BRIDGE>onebr.300</BRIDGE>", "<BRIDGE>onebr.100</BRIDGE>"),
            "bridge onebr.100 carries VNI 100 on this host (used by VM 1 NIC 0); VM 2 NIC 0 asks for VNI 300 on it",
        ),
        (
            nic(0, 300, "").replace("<GUEST_MTU>1450</GUEST_MTU>", "<GUEST_MTU>1500</GUEST_MTU>"),
            "VM 2 NIC 0: GUEST_MTU = 1500 is larger than the segment's MTU 1450",
        ),
        (
            nic(0, 300, "<MTU>1500</MTU>"),
            "VM 2 NIC 0: MTU = 1500 does not fit in VXLAN over scwpriv0 (MTU 1500): at most 1450",
        ),
        (
            nic(0, 300, "").replace("<PHYDEV>scwpriv0</PHYDEV>", "<PHYDEV>eth9</PHYDEV>"),
            "the underlay device eth9 does not exist on this host",
        ),
    ];
    for (n, expected) in cases {
        let doc = parse_vm(&format!("<VM><ID>2</ID><TEMPLATE>{n}</TEMPLATE></VM>"));
        let (r, _) = h.pre(&doc);
        let e = r.unwrap_err();
        assert!(
            e.starts_with("VM 2: cannot set up its private NICs on this host"),
            "{e}"
        );
        assert!(e.contains(expected), "{e}");
        assert_eq!(h.fake.take_calls(), ["ip -d -j addr show"], "{expected}");
        assert_eq!(h.fake.links(), links);
        assert_eq!(h.record(), ["100: VM 1 NIC 0"]);
    }
    // Without GUEST_MTU the guest keeps 1500: warned.
    let doc = parse_vm(&format!(
        "<VM><ID>3</ID><TEMPLATE>{}</TEMPLATE></VM>",
        nic(0, 300, "").replace("<GUEST_MTU>1450</GUEST_MTU>", "")
    ));
    let log = h.pre_ok(&doc);
    assert!(
        log.contains("WARN: scaleway-vnm scaleway_evpn test: VM 3 NIC 0: GUEST_MTU is not set"),
        "{log}"
    );
}

#[test]
fn a_failed_reload_undoes_pre_and_a_failed_ip_undoes_itself() {
    let h = Hyper::configured();
    // The change in place refused: the whole configuration is reloaded instead.
    h.fake.fail_next("vtysh", "% BGP instance not found");
    h.pre_ok(&vm(9, &[(0, 900)]));
    let calls = h.fake.take_calls();
    assert!(
        calls.ends_with(&[
            "vtysh router bgp 65000: vni +[900] -[]".to_owned(),
            "vtysh -C -f".to_owned(),
            "frr-reload.py --reload".to_owned()
        ]),
        "{calls:#?}"
    );
    assert_eq!(h.frr_vnis(), ["vni 900"]);
    h.clean_ok(&vm(9, &[(0, 900)]));
    // Both refused: pre is undone.
    h.fake.fail_next("vtysh", "% BGP instance not found");
    h.fake
        .fail_next("frr-reload", "vtysh failed: Exiting: failed to connect to any daemons.");
    let (r, _) = h.pre(&vm(1, &[(0, 100)]));
    let e = r.unwrap_err();
    assert!(
        e.contains("failed to connect to any daemons") && e.contains("deleted again"),
        "{e}"
    );
    assert_eq!(h.links(), ["scwpriv0"]);
    assert!(h.record().is_empty());
    // The next pre does it all.
    h.pre_ok(&vm(1, &[(0, 100)]));
    assert_eq!(h.frr_vnis(), ["vni 100"]);
    // clean: the devices go, a failed reload is a warning, and the next action lists the VNIs again.
    h.fake.fail_next("vtysh", "% Unknown command");
    h.fake.fail_next("frr-reload", "daemons gone");
    let log = h.clean_ok(&vm(1, &[(0, 100)]));
    assert!(
        log.contains("WARN: scaleway-vnm scaleway_evpn test: FRR's configuration could not be reloaded"),
        "{log}"
    );
    assert_eq!(h.frr_vnis(), ["vni 100"], "still listed");
    h.pre_ok(&vm(2, &[(0, 200)]));
    assert_eq!(h.frr_vnis(), ["vni 200"]);
    // ip failing: the devices made before are deleted again.
    h.fake.fail_next("ip", "RTNETLINK answers: Operation not permitted");
    let (r, _) = h.pre(&vm(3, &[(0, 300)]));
    assert!(r.unwrap_err().contains("Operation not permitted"));
    assert!(!h.links().contains(&"onebr.300".to_owned()));
    assert_eq!(h.record(), ["200: VM 2 NIC 0"]);
}

#[test]
fn reconcile_puts_back_what_a_reboot_took() {
    let h = Hyper::configured();
    h.pre_ok(&vm(1, &[(0, 100), (1, 200)]));
    let links = h.fake.links();
    let frr = h.fake.frr();
    // The reboot: links gone, the FRR state as the file left it, no firewall.
    let mut bare = links.clone();
    bare.links.retain(|n, _| n == "scwpriv0");
    h.fake.set_links(bare);
    h.fake.take_calls();
    let (r, log) = h.act(reconcile_with);
    let out = r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(
        out.starts_with("reconciled 2 segments (VNIs 100 200): 18 device changes, FRR reloaded"),
        "{out}"
    );
    assert_eq!(h.fake.links(), links);
    assert_eq!(h.fake.frr(), frr);
    assert!(h.fake.take_calls().contains(&"nft -f -".to_owned()));
    let (r, _) = h.act(reconcile_with);
    assert!(r.unwrap().contains("devices already in place"));
}

#[test]
fn dry_runs_print_and_change_nothing() {
    let mut h = Hyper::configured();
    h.settings.dry_run = true;
    let (r, _) = h.pre(&vm(1, &[(0, 100)]));
    let out = r.unwrap();
    assert!(out.starts_with("ip link add name onebr.100 type bridge\n"), "{out}");
    assert!(
        out.contains("# FRR configuration (vtysh -C -f, then frr-reload.py --reload)\n"),
        "{out}"
    );
    assert!(out.contains("  vni 100\n"), "{out}");
    assert_eq!(h.fake.take_calls(), ["ip -d -j addr show"]);
    assert!(h.record().is_empty());
    let (r, _) = h.config(CLUSTER);
    assert!(r.unwrap().contains("# nft -f -\ntable inet one_scaleway_evpn\n"));
}
