//! The real `scaleway-vnm` binary, run the way oned runs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::Path;

use test_support::{TempDir, encode, fixture, link_as, run_program};

const BIN: &str = env!("CARGO_BIN_EXE_scaleway-vnm");
const ACTIONS: [&str; 7] = [
    "pre",
    "post",
    "clean",
    "update_sg",
    "update_nic",
    "vnet_create",
    "vnet_delete",
];

#[test]
fn help_lists_the_actions_and_drivers() {
    let ran = run_program(Path::new(BIN), &["--help"], b"");
    assert_eq!(ran.code, 0, "{ran:?}");
    for word in ACTIONS.iter().chain(&["scaleway", "scaleway_evpn", "Status:"]) {
        assert!(ran.stdout.contains(word), "--help must mention {word}:\n{}", ran.stdout);
    }
}

#[test]
fn version_names_the_program() {
    let ran = run_program(Path::new(BIN), &["--version"], b"");
    assert_eq!(
        (ran.code, ran.stdout.trim()),
        (0, concat!("scaleway-vnm ", env!("CARGO_PKG_VERSION")))
    );
}

#[test]
fn without_a_driver_it_asks_which() {
    let ran = run_program(Path::new(BIN), &["pre"], b"");
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("which driver?"), "{}", ran.stderr);
}

/// oned runs `<remotes>/vnm/<driver>/<action>`: the folder names the driver.
#[test]
fn action_files_dispatch_on_folder_and_name() {
    let dir = TempDir::new("vnm-cli");
    for driver in ["scaleway", "scaleway_evpn"] {
        for action in ACTIONS {
            let link = link_as(Path::new(BIN), dir.path(), &format!("vnm/{driver}/{action}"));
            let bad = run_program(&link, &[], b"");
            assert_eq!(bad.code, 1, "{driver}/{action}: {bad:?}");
            assert!(
                bad.stderr.contains(&format!(
                    "ERROR: scaleway-vnm {driver} {action}: no driver message on stdin"
                )),
                "{}",
                bad.stderr
            );
        }
        let ran = run_program(
            &dir.path().join(format!("vnm/{driver}/vnet_create")),
            &["5"],
            &encode(&fixture("vnet/public.xml")),
        );
        assert_eq!(
            (ran.code, ran.stdout.as_str(), ran.stderr.as_str()),
            (0, "", ""),
            "{driver} vnet_create"
        );
    }
}
