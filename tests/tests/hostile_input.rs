//! Bad input, from day one: every kind of broken or hostile driver message
//! gives a clear one-line error naming the problem, a non-zero exit, nothing
//! on stdout, and never a panic, for every IPAM and network action.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use integration_tests::{Ran, encode, fixture, fixtures_in, run_ipam, run_vnm};
use test_support::set_attribute as set;

const IPAM_ACTIONS: [&str; 5] = [
    "register_address_range",
    "unregister_address_range",
    "get_address",
    "allocate_address",
    "free_address",
];
const VM_ACTIONS: [&str; 5] = ["pre", "post", "clean", "update_sg", "update_nic"];

fn billion_laughs(root: &str) -> String {
    let mut entities = String::from("<!ENTITY lol0 \"lol\">");
    for i in 1..10 {
        let prev = format!("&lol{};", i - 1);
        entities.push_str(&format!("<!ENTITY lol{i} \"{}\">", prev.repeat(10)));
    }
    format!("<?xml version=\"1.0\"?><!DOCTYPE {root} [{entities}]><{root}><ID>&lol9;</ID></{root}>")
}

/// (what, stdin, expected text in the error)
fn common_cases(root: &str) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    vec![
        ("empty stdin", Vec::new(), "no driver message on stdin"),
        ("whitespace only", b"\n\n".to_vec(), "no driver message on stdin"),
        (
            "raw XML instead of base64",
            format!("<{root}/>").into_bytes(),
            "not valid base64: unexpected character '<' at offset 0",
        ),
        (
            "base64 with garbage",
            b"PFZNPjwvVk0+!!".to_vec(),
            "not valid base64: unexpected character '!'",
        ),
        ("truncated base64", b"PFZNPjwvVk0+P".to_vec(), "not valid base64"),
        (
            "truncated XML",
            encode(&format!("<{root}><ID>1</ID>")),
            "ends before its elements are closed",
        ),
        (
            "malformed XML",
            encode(&format!("<{root}><ID>1</IP></{root}>")),
            "not a valid OpenNebula XML document",
        ),
        (
            "entity expansion",
            encode(&billion_laughs(root)),
            "document type declaration",
        ),
        (
            "external entity",
            encode(&format!(
                "<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/shadow\">]><{root}>&e;</{root}>"
            )),
            "document type declaration",
        ),
        (
            "undefined entity",
            encode(&format!("<{root}><ID>&e;</ID></{root}>")),
            "undefined entity",
        ),
        (
            "deep nesting",
            encode(&format!("<{root}>{}{}</{root}>", "<A>".repeat(100), "</A>".repeat(100))),
            "nested deeper than",
        ),
        (
            "control character",
            encode(&format!("<{root}><ID>1\u{1b}[2J</ID></{root}>")),
            "U+001B",
        ),
        ("not UTF-8", b"PFZNPv8=".to_vec(), "not valid UTF-8"),
        ("oversized", vec![b'A'; 17 << 20], "larger than 16 MiB"),
    ]
}

fn assert_refused(ran: &Ran, what: &str, expected: &str) {
    assert_ne!(ran.code, 0, "{what}: must fail\n{ran:?}");
    assert_eq!(ran.stdout, "", "{what}: nothing on stdout");
    let errors = ran.error_lines();
    assert_eq!(errors.len(), 1, "{what}: exactly one error line, got {errors:?}");
    assert!(
        errors[0].contains(expected),
        "{what}: {:?} should contain {expected:?}",
        errors[0]
    );
    assert!(
        ran.stderr.lines().any(|l| l.starts_with("ERROR: ")),
        "{what}: the error is also logged\n{}",
        ran.stderr
    );
}

#[test]
fn ipam_actions_refuse_broken_messages() {
    for action in IPAM_ACTIONS {
        for (what, stdin, expected) in common_cases("IPAM_DRIVER_ACTION_DATA") {
            assert_refused(&run_ipam(action, &[], &stdin), &format!("{action}: {what}"), expected);
        }
    }
}

#[test]
fn vnm_actions_refuse_broken_messages() {
    for driver in ["scaleway", "scaleway_evpn"] {
        for action in VM_ACTIONS.iter().chain(&["vnet_create", "vnet_delete"]) {
            for (what, stdin, expected) in common_cases("VM") {
                assert_refused(
                    &run_vnm(driver, action, &[], &[], &stdin),
                    &format!("{driver} {action}: {what}"),
                    expected,
                );
            }
        }
    }
}

/// (what, document, expected) for IPAM requests that are well-formed XML
/// but wrong.
#[test]
fn ipam_requests_with_bad_attributes_are_refused() {
    let good = fixture("ipam/allocate_address.xml");
    let cases = [
        (
            "not an IPAM request",
            fixture("vm/deploy.xml"),
            "<VM> is not an IPAM request",
        ),
        (
            "missing AR",
            "<IPAM_DRIVER_ACTION_DATA><ADDRESS/></IPAM_DRIVER_ACTION_DATA>".to_owned(),
            "IPAM_DRIVER_ACTION_DATA/AR is missing",
        ),
        (
            "wrong type",
            good.replace("<SIZE>1</SIZE></ADDRESS>", "<SIZE>-1</SIZE></ADDRESS>"),
            "ADDRESS/SIZE = \"-1\" is not a non-negative whole number",
        ),
        (
            "bad address",
            good.replace("<IP>172.30.12.4</IP><SIZE>", "<IP>172.30.12.400</IP><SIZE>"),
            "ADDRESS/IP = \"172.30.12.400\" is not an IPv4 address",
        ),
        (
            "over-long value",
            good.replacen("<![CDATA[172.30.12.4]]>", &"1".repeat(4000), 1),
            "AR/IP is too long (4000 bytes",
        ),
        (
            "shell metacharacters",
            good.replace("<![CDATA[scaleway_fip]]>", "<![CDATA[scaleway_fip;reboot]]>"),
            "AR/IPAM_MAD = \"scaleway_fip;reboot\" is not a name",
        ),
        (
            "control characters in CDATA",
            good.replace("<![CDATA[fr-par-2]]>", "<![CDATA[fr-par-2\u{7}]]>"),
            "U+0007",
        ),
        (
            "newline in a name",
            good.replace("<![CDATA[scaleway_fip]]>", "<![CDATA[scale\nway_fip]]>"),
            "AR/IPAM_MAD = \"scale\\nway_fip\" is not a name",
        ),
        (
            "other driver's range",
            good.replace("<![CDATA[scaleway_fip]]>", "<![CDATA[aws]]>"),
            "IPAM_MAD=\"aws\", not \"scaleway_fip\"",
        ),
        (
            "duplicated attribute",
            good.replace("<TYPE>", "<TYPE>IP4</TYPE><TYPE>"),
            "AR/TYPE is given twice",
        ),
    ];
    for action in IPAM_ACTIONS {
        for (what, doc, expected) in &cases {
            let ran = run_ipam(action, &[], &encode(doc));
            assert_refused(&ran, &format!("{action}: {what}"), expected);
        }
    }
}

#[test]
fn vm_documents_with_bad_attributes_are_refused() {
    let vm = fixture("vnm/deploy-scaleway-pre.xml");
    let cases = [
        ("not a VM", fixture("ipam/get_address.xml"), "is not a VM document"),
        ("missing ID", set(&vm, "VM", "", "", "ID", None), "VM/ID is missing"),
        (
            "wrong ID type",
            set(&vm, "VM", "", "", "ID", Some("forty-two")),
            "VM/ID = \"forty-two\" is not a non-negative whole number",
        ),
        (
            "missing NIC_ID",
            set(&vm, "NIC", "NIC_ID", "1", "NIC_ID", None),
            "VM/TEMPLATE/NIC#2/NIC_ID is missing",
        ),
        (
            "missing HOSTNAME",
            set(&vm, "HISTORY", "HOSTNAME", "host-a", "HOSTNAME", None),
            "VM/HISTORY_RECORDS/HISTORY/HOSTNAME is missing",
        ),
        (
            "option-like host name",
            set(
                &vm,
                "HISTORY",
                "HOSTNAME",
                "host-a",
                "HOSTNAME",
                Some("-oProxyCommand=reboot"),
            ),
            "HOSTNAME = \"-oProxyCommand=reboot\" is not a host name",
        ),
        (
            "shell in DEPLOY_ID",
            set(&vm, "VM", "", "", "DEPLOY_ID", Some("one-7 && reboot")),
            "VM/DEPLOY_ID = \"one-7 && reboot\" is not a name",
        ),
    ];
    for driver in ["scaleway", "scaleway_evpn"] {
        for action in VM_ACTIONS {
            for (what, doc, expected) in &cases {
                let ran = run_vnm(driver, action, &[], &[], &encode(doc));
                assert_refused(&ran, &format!("{driver} {action}: {what}"), expected);
            }
        }
    }
}

/// NIC attributes are checked for the driver's own NICs: a public NIC with
/// a bad attribute stops `scaleway` but not `scaleway_evpn`, and the other
/// way round.
#[test]
fn nic_attributes_are_checked_for_the_drivers_own_nics() {
    let vm = fixture("vnm/deploy-scaleway-pre.xml");
    let public = |attr: &str, value: &str| set(&vm, "NIC", "NIC_ID", "0", attr, Some(value));
    let public_cases = [
        (
            "wrong type",
            public("IP", "172.30.12"),
            "VM/TEMPLATE/NIC[NIC_ID=0]/IP = \"172.30.12\" is not an IPv4 address",
        ),
        (
            "shell in BRIDGE",
            public("BRIDGE", "br0;reboot"),
            "NIC[NIC_ID=0]/BRIDGE = \"br0;reboot\" is not a network interface name: \";\" is not allowed",
        ),
        (
            "command substitution in GATEWAY",
            public("GATEWAY", "$(reboot)"),
            "NIC[NIC_ID=0]/GATEWAY = \"$(reboot)\" is not an IPv4 address",
        ),
        (
            "rule in EXTERNAL_IP",
            set(
                &vm,
                "NIC_ALIAS",
                "NIC_ID",
                "2",
                "EXTERNAL_IP",
                Some("51.15.220.9 -j ACCEPT"),
            ),
            "NIC_ALIAS[NIC_ID=2]/EXTERNAL_IP",
        ),
        (
            "path in SCALEWAY_IP_ID",
            public("SCALEWAY_IP_ID", "../../servers/x"),
            "SCALEWAY_IP_ID = \"../../servers/x\" is not a UUID",
        ),
        (
            "over-long MAC",
            public("MAC", &"0".repeat(1000)),
            "NIC[NIC_ID=0]/MAC is too long (1000 bytes",
        ),
    ];
    for (what, doc, expected) in &public_cases {
        let ran = run_vnm("scaleway", "pre", &[], &[], &encode(doc));
        assert_refused(&ran, what, expected);
        // scaleway_evpn reads only its own NIC, and stops at the missing cluster configuration.
        let other = run_vnm("scaleway_evpn", "pre", &[], &[], &encode(doc));
        assert!(
            other
                .stderr
                .contains("VM 7: this host has no BGP-EVPN configuration yet"),
            "{what}: scaleway_evpn is not concerned\n{}",
            other.stderr
        );
    }
    let private = set(&vm, "NIC", "NIC_ID", "1", "VLAN_ID", Some("100 dev eth0"));
    assert_refused(
        &run_vnm("scaleway_evpn", "pre", &[], &[], &encode(&private)),
        "VLAN_ID",
        "NIC[NIC_ID=1]/VLAN_ID = \"100 dev eth0\"",
    );
    // ... and scaleway is not concerned: it plans its own NICs (a dry run).
    let ran = run_vnm("scaleway", "pre", &[], &[], &encode(&private));
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.contains("62.210.16.2"), "{ran:?}");
}

/// Valid documents get past every check: the address actions answer, the
/// actions that need Scaleway fail only for want of credentials (the
/// fixtures name the profile `edge-paris`), the
/// network actions check what they need before changing anything, the
/// complete ones succeed.
#[test]
fn valid_documents_are_accepted() {
    for (action, name) in [
        ("register_address_range", "ipam/register_address_range.xml"),
        ("register_address_range", "ipam/register_address_range_ipv6.xml"),
        ("unregister_address_range", "ipam/unregister_address_range.xml"),
    ] {
        let ran = run_ipam(
            action,
            &[("SCW_CONFIG_PATH", "/nonexistent/config.yaml")],
            &encode(&fixture(name)),
        );
        assert_eq!(ran.stdout, "", "{name}");
        assert_eq!(
            ran.error_lines(),
            vec![
                "Scaleway profile \"edge-paris\" was asked for, but there is no config file at /nonexistent/config.yaml"
            ],
            "{name}"
        );
    }
    let ran = run_ipam("get_address", &[], &encode(&fixture("ipam/get_address.xml")));
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (0, "ADDRESS = [\n  IP = \"172.30.12.2\",\n  SIZE = \"1\"\n]\n"),
        "{ran:?}"
    );
    for action in ["allocate_address", "free_address"] {
        let ran = run_ipam(action, &[], &encode(&fixture(&format!("ipam/{action}.xml"))));
        assert_eq!((ran.code, ran.stdout.as_str()), (0, ""), "{action}: {ran:?}");
    }
    // The network actions on every document a real oned sent them, run dry
    // (pre's real changes are tested in namespaces: hooks/vnm/tests/*_netns.rs).
    // scaleway_evpn on a host that has no cluster configuration yet: pre says
    // so (but at the hot-attach of a public NIC: nothing to do); the
    // frontend actions stop for want of oned; the rest succeeds.
    for name in fixtures_in("vnm").iter().filter(|n| !n.contains("vnet_")) {
        let doc = encode(&fixture(name));
        let (event, call) = name
            .trim_start_matches("vnm/")
            .trim_end_matches(".xml")
            .split_once('-')
            .unwrap();
        let (driver, action) = call.rsplit_once('-').unwrap();
        let args: &[&str] = if action == "pre" { &[] } else { &["one-7", "host-a"] };
        let ran = run_vnm(driver, action, args, &[], &doc);
        if driver == "scaleway_evpn" && action == "pre" && event != "nic_attach" {
            assert_eq!(ran.code, 1, "{name}: {}", ran.stderr);
            assert!(
                ran.stderr.contains("this host has no BGP-EVPN configuration yet"),
                "{name}: {}",
                ran.stderr
            );
        } else if driver == "scaleway" && action == "update_sg" {
            // On a host whose record does not hold the VM: nothing to set.
            assert_eq!((ran.code, ran.stdout.as_str()), (0, ""), "{name}: {ran:?}");
            assert!(
                ran.stderr.contains("no public NIC of it on this host"),
                "{name}: {ran:?}"
            );
        } else if driver == "scaleway" && action != "pre" {
            // The frontend actions read the document, then need oned.
            assert_eq!(
                ran.error_lines(),
                vec![
                    "cannot read the OpenNebula session file /var/lib/one/.one/one_auth (No such file or directory \
                     (os error 2)); set ONE_AUTH"
                ],
                "{name}"
            );
        } else {
            assert_eq!(ran.code, 0, "{name}: {ran:?}");
        }
    }
    for name in ["vnet/public.xml", "vnet/private.xml"] {
        for action in ["vnet_create", "vnet_delete"] {
            let ran = run_vnm("scaleway", action, &["5"], &[], &encode(&fixture(name)));
            assert_eq!(
                (ran.code, ran.stdout.as_str(), ran.stderr.as_str()),
                (0, "", ""),
                "{name} {action}"
            );
        }
    }
}

/// Debug logging shows what was read, with OpenNebula's prefix.
#[test]
fn debug_logging_uses_opennebula_prefixes() {
    let ran = run_ipam(
        "get_address",
        &[("ONE_SCALEWAY_LOG", "debug")],
        &encode(&fixture("ipam/get_address.xml")),
    );
    assert!(
        ran.stderr
            .lines()
            .any(|l| l.starts_with("DEBUG: scaleway-ipam get_address: request read")),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("WARNING:"));
}
