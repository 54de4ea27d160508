//! `scaleway-emulator` answers --help and --version, validates --listen and
//! says the server is not available yet.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::Path;

use test_support::run_program;

const BIN: &str = env!("CARGO_BIN_EXE_scaleway-emulator");

#[test]
fn help_and_version() {
    let help = run_program(Path::new(BIN), &["--help"], b"");
    assert_eq!(help.code, 0, "{help:?}");
    assert!(help.stdout.contains("--listen"), "{}", help.stdout);
    let version = run_program(Path::new(BIN), &["--version"], b"");
    assert_eq!(
        version.stdout.trim(),
        concat!("scaleway-emulator ", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn listen_is_validated_and_serving_is_not_available_yet() {
    let bad = run_program(Path::new(BIN), &["--listen", "localhost"], b"");
    assert_eq!(bad.code, 2, "{bad:?}");
    let ran = run_program(Path::new(BIN), &["--listen", "127.0.0.1:0"], b"");
    assert_eq!(ran.code, 1, "{ran:?}");
    assert_eq!(ran.stdout, "", "no 'listening on' line while nothing listens");
    assert!(ran.stderr.contains("not available"), "{}", ran.stderr);
}
