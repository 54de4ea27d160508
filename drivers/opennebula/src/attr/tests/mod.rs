use super::*;

fn attrs(pairs: &[(&str, &str)]) -> Attributes {
    Attributes::from_pairs("AR", pairs.iter().copied())
}

#[test]
fn typed_values_parse() {
    let a = attrs(&[
        ("IP", "10.0.0.1"),
        ("IP6", "2001:db8::1"),
        ("SIZE", "1"),
        ("ATTACH", "yes"),
        ("BRIDGE", "br0"),
        ("MAC", "02:00:0A:00:00:01"),
        ("ID", "3F2504E0-4F89-11D3-9A0C-0305E82C3301"),
        ("HOST", "node-1.example.com"),
        ("EMPTY", ""),
    ]);
    assert_eq!(a.require::<Ipv4Addr>("IP").unwrap(), Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(a.require::<Ipv6Addr>("IP6").unwrap().to_string(), "2001:db8::1");
    assert_eq!(a.require::<u32>("SIZE").unwrap(), 1);
    assert!(a.require::<bool>("ATTACH").unwrap());
    assert_eq!(a.require::<IfName>("BRIDGE").unwrap().as_str(), "br0");
    assert_eq!(a.require::<MacAddr>("MAC").unwrap().to_string(), "02:00:0a:00:00:01");
    assert_eq!(
        a.require::<Uuid>("ID").unwrap().as_str(),
        "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    );
    assert_eq!(a.require::<HostName>("HOST").unwrap().as_str(), "node-1.example.com");
    assert_eq!(a.parse::<u32>("EMPTY").unwrap(), None);
    assert_eq!(a.parse::<u32>("ABSENT").unwrap(), None);
}

/// Table of bad values: each must be refused with an error that names
/// the attribute and says what was expected.
#[test]
fn bad_values_are_named() {
    struct Case {
        value: &'static str,
        check: fn(&Attributes) -> Result<(), DocError>,
        expected: &'static str,
    }
    fn ip4(a: &Attributes) -> Result<(), DocError> {
        a.require::<Ipv4Addr>("V").map(drop)
    }
    fn num(a: &Attributes) -> Result<(), DocError> {
        a.require::<u32>("V").map(drop)
    }
    fn ifname(a: &Attributes) -> Result<(), DocError> {
        a.require::<IfName>("V").map(drop)
    }
    fn host(a: &Attributes) -> Result<(), DocError> {
        a.require::<HostName>("V").map(drop)
    }
    fn token(a: &Attributes) -> Result<(), DocError> {
        a.require::<Token>("V").map(drop)
    }
    fn uuid(a: &Attributes) -> Result<(), DocError> {
        a.require::<Uuid>("V").map(drop)
    }
    fn mac(a: &Attributes) -> Result<(), DocError> {
        a.require::<MacAddr>("V").map(drop)
    }
    fn yes(a: &Attributes) -> Result<(), DocError> {
        a.require::<bool>("V").map(drop)
    }
    let long = Box::leak("1".repeat(300).into_boxed_str());
    let cases = [
        Case {
            value: "10.0.0.x",
            check: ip4,
            expected: r#"AR/V = "10.0.0.x" is not an IPv4 address"#,
        },
        Case {
            value: "010.0.0.1",
            check: ip4,
            expected: "is not an IPv4 address",
        },
        Case {
            value: "10.0.0.1/24",
            check: ip4,
            expected: "is not an IPv4 address",
        },
        Case {
            value: "-1",
            check: num,
            expected: "is not a whole number from 0 to 4294967295",
        },
        Case {
            value: "4294967296",
            check: num,
            expected: "is not a whole number",
        },
        Case {
            value: long,
            check: num,
            expected: "is too long (300 bytes",
        },
        Case {
            value: "br0; rm -rf /",
            check: ifname,
            expected: r#"AR/V = "br0; rm -rf /" is not a network interface name: ";" is not allowed"#,
        },
        Case {
            value: "br0$(id)",
            check: ifname,
            expected: r#""$" is not allowed"#,
        },
        Case {
            value: "a-very-long-bridge-name",
            check: ifname,
            expected: "Linux allows at most 15",
        },
        Case {
            value: "-oProxyCommand=x",
            check: host,
            expected: "is not a host name",
        },
        Case {
            value: "node1`id`",
            check: host,
            expected: "\"`\" is not allowed",
        },
        Case {
            value: "a..b",
            check: host,
            expected: "bad label",
        },
        Case {
            value: "line\nbreak",
            check: token,
            expected: r#""line\nbreak" is not a name: "\n" is not allowed"#,
        },
        Case {
            value: "tab\there",
            check: token,
            expected: r#""\t" is not allowed"#,
        },
        Case {
            value: "not-a-uuid",
            check: uuid,
            expected: "is not a UUID",
        },
        Case {
            value: "02:00:0a:00:00",
            check: mac,
            expected: "is not a MAC address",
        },
        Case {
            value: "02:00:0a:00:00:01:02",
            check: mac,
            expected: "is not a MAC address",
        },
        Case {
            value: "maybe",
            check: yes,
            expected: "is not YES or NO",
        },
    ];
    for case in cases {
        let err = (case.check)(&attrs(&[("V", case.value)])).unwrap_err().to_string();
        assert!(
            err.contains(case.expected),
            "{:?}: {err:?} should contain {:?}",
            case.value,
            case.expected
        );
        assert!(!err.contains('\n'), "{err:?} must be one line");
    }
}

#[test]
fn missing_is_named() {
    assert_eq!(
        attrs(&[]).require::<u32>("SIZE").unwrap_err().to_string(),
        "AR/SIZE is missing"
    );
}

#[test]
fn show_escapes_and_shortens() {
    assert_eq!(show("a\"b\n"), r#""a\"b\n""#);
    let shown = show(&"x".repeat(100));
    assert!(shown.ends_with("...\" (100 bytes)"), "{shown}");
}

#[test]
fn flat_vectors_refuse_nesting_and_duplicates() {
    let nested = crate::xml::parse(b"<NIC><IP>1</IP><X><Y>1</Y></X></NIC>").unwrap();
    assert_eq!(
        Attributes::from_element(&nested, "NIC").unwrap_err().to_string(),
        "NIC/X has nested elements, but OpenNebula vector attributes hold only simple values"
    );
    let twice = crate::xml::parse(b"<NIC><IP>1</IP><IP>2</IP></NIC>").unwrap();
    assert_eq!(
        Attributes::from_element(&twice, "NIC").unwrap_err().to_string(),
        "NIC/IP is given twice"
    );
}
