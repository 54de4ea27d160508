//! The oned XML-RPC calls against a stub oned that answers in oned's real
//! format, with documents valid against OpenNebula's document schema.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use opennebula::oned::Oned;
use test_support::{StubOned, fixture};

fn stub() -> StubOned {
    StubOned::start(|method, params| match (method, params.first().map(String::as_str)) {
        ("one.document.info", Some("17")) => Ok(fixture("document/provision-17.xml")),
        ("one.document.info", Some("5")) => Ok(fixture("document/provider-5.xml")),
        ("one.document.info", Some(id)) => Err((format!("[one.document.info] Error getting document [{id}]."), 1024)),
        ("one.documentpool.info", _) => Ok(format!(
            "<DOCUMENT_POOL>{}</DOCUMENT_POOL>",
            fixture("document/provider-5.xml")
        )),
        (other, _) => Err((format!("[{other}] not in the stub"), 1)),
    })
}

#[test]
fn provider_connection_of_a_provision() {
    let oned = stub();
    let client = Oned::new(&oned.url, "oneadmin:pw".into()).unwrap();
    let connection = client.provider_connection(17).unwrap();
    assert_eq!(connection["zone"], "fr-par-2");
    assert_eq!(connection["project_id"], "564aa517-68b0-4fd7-8c8c-d21c4bcdcbd5");
    assert_eq!(connection["secret_key"], "7a1c3e5f-0b2d-4c6e-8f9a-1b3c5d7e9f0a");
    let calls = oned.calls.lock().unwrap().clone();
    assert_eq!(
        calls[0],
        ("one.document.info".to_owned(), vec!["17".to_owned(), "0".to_owned()])
    );
    assert_eq!(calls[1].0, "one.documentpool.info", "the provider is looked up by name");
}

#[test]
fn errors_name_the_call_and_never_the_secrets() {
    let oned = stub();
    let client = Oned::new(&oned.url, "oneadmin:pw-secret".into()).unwrap();
    let err = client.provider_connection(99).unwrap_err().to_string();
    assert!(
        err.contains("one.document.info") && err.contains("Error getting document [99]") && err.contains("1024"),
        "{err}"
    );
    assert!(!err.contains("pw-secret"));
    let err = client.provider_connection(5).unwrap_err().to_string();
    assert!(err.contains("document 5 is not a provision (TYPE 102"), "{err}");
    assert!(!err.contains("7a1c3e5f"), "{err}");
}
