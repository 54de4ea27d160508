//! The oned XML-RPC calls against a stub oned that answers in oned's real
//! format, with documents valid against OpenNebula's document schema.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use opennebula::oned::Oned;
use test_support::{StubOned, fixture};

/// Answers with the documents a real oned returned (tests/fixtures/document/,
/// captured by real_oned.rs): OneForm provider 0 and provision 1, oneprovision
/// provider 2 (scaleway-fr-par-2) and provision 3.
fn stub() -> StubOned {
    StubOned::start(|method, params| match (method, params.first().map(String::as_str)) {
        ("one.document.info", Some("0")) => Ok(fixture("document/oneform-provider.xml")),
        ("one.document.info", Some("1")) => Ok(fixture("document/oneform-provision.xml")),
        ("one.document.info", Some("2")) => Ok(fixture("document/oneprovision-provider.xml")),
        ("one.document.info", Some("3")) => Ok(fixture("document/oneprovision-provision.xml")),
        ("one.document.info", Some(id)) => Err((format!("[one.document.info] Error getting document [{id}]."), 1024)),
        ("one.documentpool.info", _) => Ok(format!(
            "<DOCUMENT_POOL>{}</DOCUMENT_POOL>",
            fixture("document/oneprovision-provider.xml")
        )),
        (other, _) => Err((format!("[{other}] not in the stub"), 1)),
    })
}

#[test]
fn provider_connection_of_a_provision() {
    let oned = stub();
    let client = Oned::new(&oned.url, "oneadmin:pw".into()).unwrap();
    // oneprovision (6.x): provision 103 (BODY) -> provider 102 by name.
    let connection = client.provider_connection(3).unwrap();
    assert_eq!(connection["zone"], "fr-par-2");
    assert_eq!(connection["project_id"], "5a4db0c5-0000-4000-8000-0000000000e2");
    assert_eq!(connection["secret_key"], "5a4db0c5-0000-4000-8000-5ec7e75ec7e2");
    let calls = oned.calls.lock().unwrap().clone();
    assert_eq!(
        calls[0],
        ("one.document.info".to_owned(), vec!["3".to_owned(), "1".to_owned()]),
        "decrypted (oned encrypts PROVISION_BODY)"
    );
    assert_eq!(calls[1].0, "one.documentpool.info", "the provider is looked up by name");
    assert_eq!(
        calls[2],
        ("one.document.info".to_owned(), vec!["2".to_owned(), "1".to_owned()])
    );
    // OneForm (7.2+): provision 104 (PROVISION_BODY, provider_id) -> provider 103 (PROVIDER_BODY).
    let connection = client.provider_connection(1).unwrap();
    assert_eq!(connection["zone"], "fr-par-1");
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
    let err = client.provider_connection(2).unwrap_err().to_string();
    assert!(err.contains("document 2 is not a provision (TYPE 102"), "{err}");
    assert!(!err.contains("5ec7e75ec7e2"), "{err}");
}
