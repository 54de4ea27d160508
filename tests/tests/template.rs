//! The template writer against golden files and OpenNebula's parser rules.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use integration_tests::assert_golden;
use opennebula::template::{Template, Value};

/// What `register_address_range` will answer: rendered exactly like this.
#[test]
fn address_range_answer_is_golden_and_round_trips() {
    let mut t = Template::new();
    t.vector(
        "AR",
        [
            ("TYPE", "IP4"),
            ("IP", "172.30.12.4"),
            ("SIZE", "1"),
            ("IPAM_MAD", "scaleway_fip"),
            ("EXTERNAL_IP", "51.15.220.7"),
            ("GATEWAY", "172.30.12.5"),
            ("NETWORK_MASK", "255.255.255.254"),
            ("SCALEWAY_IP_ID", "8c2a4f6e-1b3d-4e5f-9a7b-0c1d2e3f4a5b"),
            ("SCALEWAY_ZONE", "fr-par-2"),
            ("SCALEWAY_PROFILE", "edge-paris"),
            ("DESCRIPTION", "quote \" backslash \\ and\nnewline"),
        ],
    );
    let text = t.render().unwrap();
    assert_golden("templates/address_range.tmpl", &text);
    assert_eq!(Template::parse(&text).unwrap(), t);
}

#[test]
fn get_address_answer_is_golden() {
    let mut t = Template::new();
    t.vector("ADDRESS", [("IP", "172.30.12.4"), ("SIZE", "1")]);
    let text = t.render().unwrap();
    assert_golden("templates/address.tmpl", &text);
    assert_eq!(
        Template::parse(&text).unwrap().attributes[0].1,
        Value::Vector(vec![("IP".into(), "172.30.12.4".into()), ("SIZE".into(), "1".into()),])
    );
}

/// A hand-written template in OpenNebula's looser forms parses as oned would.
#[test]
fn parses_a_user_written_template() {
    let text =
        "# public range\nAR = [ ipam_mad = scaleway,size=1,\n  SCALEWAY_IP_TYPE = \"ipv4\" ]\nNAME=\"edge public\"\n";
    let t = Template::parse(text).unwrap();
    assert_eq!(
        t.vector_named("AR").unwrap(),
        &[
            ("IPAM_MAD".to_owned(), "scaleway".to_owned()),
            ("SIZE".to_owned(), "1".to_owned()),
            ("SCALEWAY_IP_TYPE".to_owned(), "ipv4".to_owned())
        ]
    );
    assert_eq!(
        t.attributes[1],
        ("NAME".to_owned(), Value::Single("edge public".to_owned()))
    );
}
