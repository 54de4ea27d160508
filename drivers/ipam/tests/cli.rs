//! The real `scaleway-ipam` binary, run the way oned runs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::Path;

use test_support::{TempDir, encode, fixture, link_as, run_program};

const BIN: &str = env!("CARGO_BIN_EXE_scaleway-ipam");
const ACTIONS: [&str; 5] = [
    "register_address_range",
    "unregister_address_range",
    "get_address",
    "allocate_address",
    "free_address",
];

#[test]
fn help_lists_the_actions_and_the_status() {
    let ran = run_program(Path::new(BIN), &["--help"], b"");
    assert_eq!(ran.code, 0, "{ran:?}");
    for action in ACTIONS {
        assert!(
            ran.stdout.contains(action),
            "--help must list {action}:\n{}",
            ran.stdout
        );
    }
    assert!(
        ran.stdout.contains("gc") && ran.stdout.contains("rebuild-state"),
        "{}",
        ran.stdout
    );
}

#[test]
fn version_names_the_program() {
    let ran = run_program(Path::new(BIN), &["--version"], b"");
    assert_eq!(
        (ran.code, ran.stdout.trim()),
        (0, concat!("scaleway-ipam ", env!("CARGO_PKG_VERSION")))
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["resize_address_range"][..],
        &["get_address", "not-a-number"][..],
    ] {
        let ran = run_program(Path::new(BIN), args, b"");
        assert_eq!(ran.code, 2, "{args:?}: {ran:?}");
        assert_eq!(ran.stdout, "");
    }
}

/// oned runs `remotes/ipam/scaleway_fip/<action> <request id>`: a link to us.
#[test]
fn action_files_dispatch_on_their_name() {
    let dir = TempDir::new("ipam-cli");
    for action in ACTIONS {
        let link = link_as(
            Path::new(BIN),
            dir.path(),
            &format!("remotes/ipam/scaleway_fip/{action}"),
        );
        let bad = run_program(&link, &["7"], b"not base64!");
        assert_eq!(bad.code, 1, "{action}: {bad:?}");
        assert_eq!(bad.stdout, "");
        assert_eq!(bad.error_lines().len(), 1, "{bad:?}");
        assert!(
            bad.stderr.contains(&format!(
                "ERROR: scaleway-ipam {action}: the driver message on stdin is not valid base64"
            )),
            "{}",
            bad.stderr
        );

        let good = run_program(&link, &["7"], &encode(&fixture(&format!("ipam/{action}.xml"))));
        if action.ends_with("register_address_range") {
            assert_eq!(good.code, 1, "{action}: no credentials here");
            assert!(
                good.stderr.contains("Scaleway profile \"edge-paris\" was asked for"),
                "{}",
                good.stderr
            );
        } else {
            assert_eq!(good.code, 0, "{action}: {good:?}");
        }
    }
}
