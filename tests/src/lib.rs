//! Helpers shared by the integration tests: fixtures, golden files, running
//! our drivers in-process exactly as OpenNebula runs them.

use std::ffi::OsString;

use opennebula::driver::{Env, Io};
use opennebula::xml::{self, Element};
pub use test_support::{Ran, assert_golden, encode, fixture, fixture_path, fixtures_in};

/// The reduced VM document oned sends to network drivers (`pre`, `post`,
/// `clean`, `update_sg`), built from a full VM document the way
/// `one_vmm_exec.rb` builds it: `ID`, `DEPLOY_ID`, the NICs, NIC aliases
/// and PCI devices that have a `VN_MAD`, `CONTEXT`, `SECURITY_GROUP_RULE`,
/// `USER_TEMPLATE`, and the last history record's host fields.
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
    for name in ["ID", "DEPLOY_ID"] {
        if let Some(e) = vm.child(name) {
            reduced.children.push(e.clone());
        }
    }
    let mut template = Element {
        name: "TEMPLATE".into(),
        ..Element::default()
    };
    if let Some(t) = vm.child("TEMPLATE") {
        for e in &t.children {
            let keep = match e.name.as_str() {
                "NIC" | "NIC_ALIAS" | "PCI" => e.child("VN_MAD").is_some(),
                "CONTEXT" | "SECURITY_GROUP_RULE" => true,
                _ => false,
            };
            if keep {
                template.children.push(e.clone());
            }
        }
    }
    reduced.children.push(template);
    if let Some(u) = vm.child("USER_TEMPLATE") {
        reduced.children.push(u.clone());
    }
    if let Some(last) = vm
        .child("HISTORY_RECORDS")
        .and_then(|h| h.children_named("HISTORY").last())
    {
        let mut history = Element {
            name: "HISTORY".into(),
            ..Element::default()
        };
        for name in ["HOSTNAME", "HID", "DS_ID", "VM_MAD"] {
            if let Some(e) = last.child(name) {
                history.children.push(e.clone());
            }
        }
        reduced.children.push(Element {
            name: "HISTORY_RECORDS".into(),
            text: String::new(),
            children: vec![history],
        });
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
    let argv0 = format!("/var/lib/one/remotes/ipam/scaleway/{action}");
    drive(scaleway_ipam::main_with, &[&argv0, "1203"], env, stdin)
}

/// Runs `scaleway-vnm` in-process as oned does: argv[0] is
/// `.../vnm/<driver>/<action>`.
pub fn run_vnm(driver: &str, action: &str, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Ran {
    let argv0 = format!("/var/tmp/one/vnm/{driver}/{action}");
    let mut argv = vec![argv0.as_str()];
    argv.extend_from_slice(args);
    drive(scaleway_vnm::main_with, &argv, env, stdin)
}
