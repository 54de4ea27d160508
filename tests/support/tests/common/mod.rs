//! Helpers of the oned stand-in's tests.

#![allow(dead_code)] // each test file uses some of them
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use opennebula::oned::{Oned, Param};
use opennebula::xml::{self, Element};
use test_support::fixture;
use test_support::onedsim::{Config, OnedSim};

pub fn sim() -> OnedSim {
    OnedSim::start(Config::default()).unwrap()
}

pub fn client(sim: &OnedSim) -> Oned {
    Oned::new(&sim.url(), "oneadmin:opennebula".into()).unwrap()
}

pub fn s(v: &str) -> Param {
    Param::Str(v.to_owned())
}

pub fn i(v: i64) -> Param {
    Param::Int(v)
}

pub fn id(oned: &Oned, method: &str, params: &[Param]) -> i64 {
    let body = oned
        .call(method, params)
        .unwrap_or_else(|e| panic!("{method} {params:?}: {e}"));
    body.parse()
        .unwrap_or_else(|_| panic!("{method} answered {body:?}, not an id"))
}

pub fn raw(oned: &Oned, method: &str, params: &[Param]) -> String {
    oned.call(method, params)
        .unwrap_or_else(|e| panic!("{method} {params:?}: {e}"))
}

pub fn body(oned: &Oned, method: &str, params: &[Param]) -> Element {
    let text = raw(oned, method, params);
    xml::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{method}: {e}\n{text}"))
}

/// The error of a failing call, without the client's `oned <method> at <url>: ` prefix.
pub fn error(oned: &Oned, method: &str, params: &[Param]) -> String {
    match oned.call(method, params) {
        Ok(b) => panic!("{method} {params:?} succeeded: {b}"),
        Err(e) => e.0.split_once(": ").map_or(e.0.clone(), |(_, m)| m.to_owned()),
    }
}

pub fn ids(e: &Element, list: &str) -> Vec<i64> {
    e.at(list)
        .map(|l| l.children_named("ID").map(|i| i.text.parse().unwrap()).collect())
        .unwrap_or_default()
}

pub fn text<'a>(e: &'a Element, path: &str) -> &'a str {
    e.at(path).map_or("", |x| x.text.as_str())
}

/// A network without IPAM: one range of 240 addresses.
pub const PRIVATE: &str = "NAME = \"edge-private\"\nVN_MAD = \"bridge\"\nDNS = \"1.1.1.1\"\n\
    AR = [ TYPE = \"IP4\", IP = \"10.200.0.10\", SIZE = \"240\" ]\n";

/// The oneprovision (6.x) documents captured from a real oned (provision 3,
/// provider 2 named scaleway-fr-par-2).
pub fn documents() -> Vec<String> {
    vec![
        fixture("document/oneprovision-provision.xml"),
        fixture("document/oneprovision-provider.xml"),
    ]
}
