//! Every body the oned stand-in answers is valid against OpenNebula's
//! schemas (`tests/fixtures/xsd/opennebula/`), checked with the real
//! xmllint; the IPAM driver messages are checked in `onedsim_ipam/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{PRIVATE, client, documents, i, id, raw, s};
use test_support::onedsim::{Config, OnedSim, schema};

#[test]
fn every_body_is_valid_against_opennebula_s_schemas() {
    let sim = OnedSim::start(Config {
        documents: documents(),
        ..Config::default()
    })
    .unwrap();
    let oned = client(&sim);
    let cluster = id(&oned, "one.cluster.allocate", &[s("edge")]);
    id(
        &oned,
        "one.cluster.update",
        &[i(cluster), s("PROVISION = [ ID = 7 ]"), i(1)],
    );
    let host = id(&oned, "one.host.allocate", &[s("h1"), s("kvm"), s("kvm"), i(cluster)]);
    id(
        &oned,
        "one.host.update",
        &[i(host), s("PROVISION = [ ID = 7, DEPLOY_ID = \"fr-par-1/x\" ]"), i(1)],
    );
    sim.set_host_vms(host, &[3]).unwrap();
    let ds = id(
        &oned,
        "one.datastore.allocate",
        &[s("NAME=i\nDS_MAD=fs\nTM_MAD=ssh"), i(cluster)],
    );
    let vnet = id(&oned, "one.vn.allocate", &[s(PRIVATE), i(cluster)]);
    id(
        &oned,
        "one.vn.add_ar",
        &[
            i(vnet),
            s("AR = [ TYPE = IP4_6, IP = 10.9.0.1, GLOBAL_PREFIX = \"2001:db8::\", SIZE = 2 ]"),
        ],
    );
    sim.lease(vnet, 0, 3).unwrap();
    sim.lease(vnet, 1, 3).unwrap();
    let empty = id(
        &oned,
        "one.vn.allocate",
        &[s("NAME = e\nVN_MAD = dummy\nBRIDGE = br9"), i(-1)],
    );
    let template = id(
        &oned,
        "one.vntemplate.allocate",
        &[s("NAME = t\nVN_MAD = bridge\nAR = [ TYPE = ETHER, SIZE = 1 ]")],
    );
    let record = id(
        &oned,
        "one.document.allocate",
        &[s("NAME = edge\nKIND = x\nBODY = \"{}\""), i(1201)],
    );
    id(
        &oned,
        "one.document.lock",
        &[i(record), i(3), opennebula::oned::Param::Bool(true)],
    );
    let bodies = [
        raw(&oned, "one.document.info", &[i(record)]),
        raw(&oned, "one.documentpool.info", &[i(-2), i(-1), i(-1), i(1201)]),
        raw(&oned, "one.clusterpool.info", &[]),
        raw(&oned, "one.cluster.info", &[i(cluster)]),
        raw(&oned, "one.cluster.info", &[i(0)]),
        raw(&oned, "one.hostpool.info", &[]),
        raw(&oned, "one.host.info", &[i(host)]),
        raw(&oned, "one.datastorepool.info", &[]),
        raw(&oned, "one.datastore.info", &[i(ds)]),
        raw(&oned, "one.datastore.info", &[i(0)]),
        raw(&oned, "one.vn.info", &[i(vnet)]),
        raw(&oned, "one.vn.info", &[i(empty)]),
        raw(&oned, "one.vntemplatepool.info", &[i(-2), i(-1), i(-1)]),
        raw(&oned, "one.vntemplate.info", &[i(template)]),
        raw(&oned, "one.document.info", &[i(3)]),
        raw(&oned, "one.documentpool.info", &[i(-2), i(-1), i(-1), i(102)]),
        // The pool holds the stored ranges, which upstream's vnet.xsd (it
        // describes `one.vn.info`'s) does not: they are checked above.
        strip_ranges(&raw(&oned, "one.vnpool.info", &[i(-2), i(-1), i(-1)])),
    ];
    for b in bodies {
        schema::validate(&b).unwrap_or_else(|e| panic!("{e}\n{b}"));
    }
    // The check can fail.
    let broken = raw(&oned, "one.host.info", &[i(host)]).replace("<STATE>0</STATE>", "<STATE>up</STATE>");
    assert!(schema::validate(&broken).is_err());
    let no_name = raw(&oned, "one.vntemplate.info", &[i(template)]).replace("<NAME>t</NAME>", "");
    assert!(schema::validate(&no_name).is_err());
}

/// The pool body with every `AR_POOL` emptied.
fn strip_ranges(pool: &str) -> String {
    let mut out = String::new();
    let mut rest = pool;
    while let Some(start) = rest.find("<AR_POOL>") {
        out.push_str(&rest[..start]);
        out.push_str("<AR_POOL/>");
        let end = rest[start..].find("</AR_POOL>").unwrap() + start + "</AR_POOL>".len();
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn vm_documents_are_checked_against_vm_xsd() {
    for f in ["vm/deploy.xml", "vm/migrate.xml"] {
        schema::validate(&test_support::fixture(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    let broken = test_support::fixture("vm/deploy.xml").replace("<LCM_STATE>3</LCM_STATE>", "");
    assert!(schema::validate(&broken).is_err(), "a VM without LCM_STATE is refused");
}
