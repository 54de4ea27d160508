//! `scaleway-provision`: --help, --version, and `opennebula-config` on
//! copies of OpenNebula's configuration files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::Path;

use test_support::{TempDir, run_program};

const BIN: &str = env!("CARGO_BIN_EXE_scaleway-provision");

#[test]
fn help_and_version() {
    let help = run_program(Path::new(BIN), &["--help"], b"");
    assert_eq!(help.code, 0, "{help:?}");
    assert!(help.stdout.contains("opennebula-config"), "{}", help.stdout);
    assert!(
        help.stdout.contains("Status: opennebula-config and validate"),
        "{}",
        help.stdout
    );
    let version = run_program(Path::new(BIN), &["--version"], b"");
    assert_eq!(
        version.stdout.trim(),
        concat!("scaleway-provision ", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(run_program(Path::new(BIN), &[], b"").code, 2);
    assert_eq!(run_program(Path::new(BIN), &["create"], b"").code, 2);
}

#[test]
fn opennebula_config_prints_writes_and_removes() {
    let dir = TempDir::new("oneconf");
    let oned = dir.path().join("oned.conf");
    let rc = dir.path().join("vmm_execrc");
    let stock_oned = test_support::fixture("opennebula/oned.conf");
    let stock_rc = test_support::fixture("opennebula/vmm_execrc");
    std::fs::write(&oned, &stock_oned).unwrap();
    std::fs::write(&rc, &stock_rc).unwrap();
    let args = |extra: &[&str]| {
        let mut a = vec![
            "opennebula-config",
            "--oned-conf",
            oned.to_str().unwrap(),
            "--vmm-execrc",
            rc.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        run_program(Path::new(BIN), &a, b"")
    };
    let printed = run(&[]);
    assert_eq!(printed.code, 0, "{printed:?}");
    assert!(printed.stdout.contains("IPAM_MAD ARGUMENTS"), "{}", printed.stdout);
    assert!(printed.stdout.contains("not written"), "{}", printed.stdout);
    assert_eq!(
        std::fs::read_to_string(&oned).unwrap(),
        stock_oned,
        "printing changes nothing"
    );
    let written = run(&["--write"]);
    assert_eq!(written.code, 0, "{written:?}");
    let edited = std::fs::read_to_string(&oned).unwrap();
    assert!(edited.contains(",scaleway\""), "{edited}");
    assert!(
        std::fs::read_to_string(&rc)
            .unwrap()
            .contains("scaleway-post scaleway-clean")
    );
    assert_eq!(
        std::fs::read_to_string(format!("{}.one-scaleway.bak", oned.display())).unwrap(),
        stock_oned
    );
    let again = run(&["--write"]);
    assert!(again.stdout.contains("nothing to change"), "{}", again.stdout);
    assert_eq!(std::fs::read_to_string(&oned).unwrap(), edited, "idempotent");
    let removed = run(&["--write", "--remove"]);
    assert_eq!(removed.code, 0, "{removed:?}");
    assert_eq!(
        std::fs::read_to_string(&oned).unwrap(),
        stock_oned,
        "uninstall restores oned.conf"
    );
    assert_eq!(std::fs::read_to_string(&rc).unwrap(), stock_rc, "and vmm_execrc");
    let missing = run_program(
        Path::new(BIN),
        &["opennebula-config", "--oned-conf", "/nonexistent/oned.conf"],
        b"",
    );
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("cannot read /nonexistent/oned.conf"),
        "{}",
        missing.stderr
    );
}
