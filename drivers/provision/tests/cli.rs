//! `scaleway-provision` answers --help and --version and says it has no
//! commands yet.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::Path;

use test_support::run_program;

const BIN: &str = env!("CARGO_BIN_EXE_scaleway-provision");

#[test]
fn help_and_version() {
    let help = run_program(Path::new(BIN), &["--help"], b"");
    assert_eq!(help.code, 0, "{help:?}");
    assert!(
        help.stdout.contains("Status: no commands are available"),
        "{}",
        help.stdout
    );
    let version = run_program(Path::new(BIN), &["--version"], b"");
    assert_eq!(
        version.stdout.trim(),
        concat!("scaleway-provision ", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn anything_else_says_not_yet() {
    let ran = run_program(Path::new(BIN), &[], b"");
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("no commands are available"), "{}", ran.stderr);
    assert_eq!(run_program(Path::new(BIN), &["create"], b"").code, 2);
}
