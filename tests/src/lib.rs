//! Helpers shared by the integration tests: fixtures, golden files, running
//! our drivers in-process exactly as OpenNebula runs them.

use std::ffi::OsString;

pub mod edge;
pub mod real;

use opennebula::driver::{Env, Io};
use opennebula::xml::{self, Element};
pub use test_support::{Ran, assert_golden, encode, fixture, fixture_path, fixtures_in};

/// The reduced VM document oned sends to network drivers (`pre`, `post`,
/// `clean`, `update_sg`), built from a full VM document exactly as
/// `one_vmm_exec.rb` builds it (`get_vnm_drivers`, `add_element_to_path`):
/// every element matched by its XPath list (`ID`, `DEPLOY_ID`,
/// `TEMPLATE/CONTEXT`, `USER_TEMPLATE`, `TEMPLATE/SECURITY_GROUP_RULE`, the
/// history's `HOSTNAME`, `HID`, `DS_ID`, `VM_MAD`), then every NIC, NIC alias
/// and PCI device with a `VN_MAD`, is copied under a wrapper of its own: one
/// `<TEMPLATE>` per NIC, one `<HISTORY_RECORDS><HISTORY>` per history field.
/// The documents captured from a real oned (`tests/fixtures/vm/*-vnm.xml`)
/// have this shape; this function makes the same shape from other fixtures.
///
/// # Panics
/// If `full` is not a VM document (a test bug).
#[allow(clippy::panic)]
pub fn reduce_for_vnm(full: &str) -> String {
    let vm = xml::parse(full.as_bytes()).unwrap_or_else(|e| panic!("fixture is not XML: {e}"));
    let mut reduced = Element {
        name: "VM".into(),
        ..Element::default()
    };
    // `add_element_to_path`: the path's parents are created anew every time.
    let wrap = |path: &[&str], e: &Element| -> Element {
        path.iter().rev().fold(e.clone(), |inner, name| Element {
            name: (*name).into(),
            text: String::new(),
            children: vec![inner],
        })
    };
    let at = |path: &[&str]| -> Vec<Element> {
        let mut found = vec![&vm];
        for name in path {
            found = found.iter().flat_map(|e| e.children_named(name)).collect();
        }
        found.into_iter().cloned().collect()
    };
    let xpaths: [&[&str]; 9] = [
        &["ID"],
        &["DEPLOY_ID"],
        &["TEMPLATE", "CONTEXT"],
        &["USER_TEMPLATE"],
        &["TEMPLATE", "SECURITY_GROUP_RULE"],
        &["HISTORY_RECORDS", "HISTORY", "HOSTNAME"],
        &["HISTORY_RECORDS", "HISTORY", "HID"],
        &["HISTORY_RECORDS", "HISTORY", "DS_ID"],
        &["HISTORY_RECORDS", "HISTORY", "VM_MAD"],
    ];
    for path in xpaths {
        for e in at(path) {
            reduced.children.push(wrap(&path[..path.len() - 1], &e));
        }
    }
    for kind in ["NIC", "NIC_ALIAS", "PCI"] {
        for e in at(&["TEMPLATE", kind]) {
            if e.child("VN_MAD").is_some_and(|v| !v.text.is_empty()) {
                reduced.children.push(wrap(&["TEMPLATE"], &e));
            }
        }
    }
    reduced.to_xml()
}

type MainWith = fn(Vec<OsString>, &Env, Io<'_>) -> u8;

fn drive(main: MainWith, argv: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Ran {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let io = Io {
        stdin: &mut &stdin[..],
        stdout: &mut out,
        stderr: &mut err,
    };
    let argv = argv.iter().map(OsString::from).collect();
    let code = main(argv, &Env::from_pairs(env.iter().copied()), io);
    Ran {
        code: i32::from(code),
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    }
}

/// Runs `scaleway-ipam` in-process as oned does: argv[0] is the action file.
pub fn run_ipam(action: &str, env: &[(&str, &str)], stdin: &[u8]) -> Ran {
    let argv0 = format!("/var/lib/one/remotes/ipam/scaleway_fip/{action}");
    drive(scaleway_ipam::main_with, &[&argv0, "1203"], env, stdin)
}

/// Runs `scaleway-vnm` in-process as oned does: argv[0] is
/// `.../vnm/<driver>/<action>`.
///
/// Whatever the document, this never changes the machine (these tests run
/// as root in CI, in the root network namespace): host actions only observe
/// and plan (`ONE_SCALEWAY_DRY_RUN=yes`, so a document that is accepted
/// prints its plan on stdout), and the state folder and host lock are a
/// temporary folder's unless `env` names them.
pub fn run_vnm(driver: &str, action: &str, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Ran {
    let argv0 = format!("/var/tmp/one/vnm/{driver}/{action}");
    let mut argv = vec![argv0.as_str()];
    argv.extend_from_slice(args);
    let scratch = test_support::TempDir::new("run-vnm");
    let state = scratch.path().join("state").display().to_string();
    let lock = scratch.path().join("lock").display().to_string();
    let mut all: Vec<(&str, &str)> = vec![
        ("ONE_SCALEWAY_STATE_DIR", state.as_str()),
        ("ONE_SCALEWAY_HOST_LOCK", lock.as_str()),
    ];
    all.retain(|(k, _)| !env.iter().any(|(e, _)| e == k));
    all.extend(env.iter().filter(|(k, _)| *k != "ONE_SCALEWAY_DRY_RUN"));
    all.push(("ONE_SCALEWAY_DRY_RUN", "yes"));
    drive(scaleway_vnm::main_with, &argv, &all, stdin)
}
