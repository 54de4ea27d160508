//! `scaleway-provision`: --help, --version, and `opennebula-config` on
//! copies of OpenNebula's configuration files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::{Path, PathBuf};

use test_support::{TempDir, run_program};

const BIN: &str = env!("CARGO_BIN_EXE_scaleway-provision");

#[test]
fn help_and_version() {
    let help = run_program(Path::new(BIN), &["--help"], b"");
    assert_eq!(help.code, 0, "{help:?}");
    assert!(help.stdout.contains("opennebula-config"), "{}", help.stdout);
    for command in [
        "provider",
        "validate",
        "create",
        "show",
        "list",
        "configure",
        "host",
        "ip",
        "delete",
    ] {
        assert!(help.stdout.contains(command), "{command} in {}", help.stdout);
    }
    let version = run_program(Path::new(BIN), &["--version"], b"");
    assert_eq!(
        version.stdout.trim(),
        concat!("scaleway-provision ", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(run_program(Path::new(BIN), &[], b"").code, 2);
    assert_eq!(run_program(Path::new(BIN), &["create"], b"").code, 2);
    assert_eq!(run_program(Path::new(BIN), &["host", "add", "edge"], b"").code, 2);
    assert_eq!(run_program(Path::new(BIN), &["ip", "delete", "edge", "x"], b"").code, 2);
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
    // oned.conf holds the database password: readable by its owner and group only.
    std::fs::set_permissions(&oned, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let mode = |p: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o777;
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
    assert!(edited.contains(",scaleway_fip\""), "{edited}");
    assert!(
        std::fs::read_to_string(&rc)
            .unwrap()
            .contains("scaleway-post scaleway-clean")
    );
    let backup = PathBuf::from(format!("{}.one-scaleway.bak", oned.display()));
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), stock_oned);
    assert_eq!((mode(&oned), mode(&backup)), (0o640, 0o640), "the modes are kept");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        4,
        "oned.conf, vmm_execrc and their backups: no temporary file left"
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

#[test]
fn dry_run_prints_the_whole_plan_and_changes_nothing() {
    let dir = TempDir::new("dry-run");
    let share = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../share/scaleway");
    let key = test_support::fixture_path("provision/oneadmin.pub");
    let state = dir.path().join("state");
    // The shipped example, its provider given inline (a provider is read from oned).
    let example = std::fs::read_to_string(share.join("provisions/edge-cluster.yaml")).unwrap();
    let provider_line = example.lines().find(|l| l.starts_with("provider: fr-par-1")).unwrap();
    let description = dir.path().join("edge-cluster.yaml");
    std::fs::write(
        &description,
        example.replace(provider_line, "connection: {zone: fr-par-1}  # inline"),
    )
    .unwrap();
    let ran = test_support::run_program_env(
        Path::new(BIN),
        &[
            "create",
            description.to_str().unwrap(),
            "--ssh-key",
            key.to_str().unwrap(),
            "--dry-run",
        ],
        b"",
        &[
            ("ONE_SCALEWAY_STATE_DIR", state.to_str().unwrap()),
            // Nothing may be called: neither Scaleway nor oned.
            ("SCW_API_URL", "http://127.0.0.1:9"),
            ("ONE_XMLRPC", "http://127.0.0.1:9/RPC2"),
        ],
    );
    assert_eq!(ran.code, 0, "{ran:?}");
    test_support::assert_golden("provision/dry-run-edge-cluster.txt", &ran.stdout);
    assert!(!state.exists(), "a dry run records nothing");
}
