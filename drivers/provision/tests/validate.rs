//! `scaleway-provision validate` against the emulator: the shipped
//! template and providers are valid; an offer out of stock, an unknown
//! offer, an OS the offer cannot run are refused before anything exists.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::{Path, PathBuf};

use opennebula::driver::{Env, Io};
use scaleway_emulator::Emulator;
use test_support::TempDir;

const PROJECT: &str = "564aa517-68b0-4fd7-8c8c-d21c4bcdcbd5";

fn share() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../share/scaleway")
}

fn validate(url: &str, file: &Path) -> (u8, String, String) {
    let env = Env::from_pairs([
        ("SCW_SECRET_KEY", "5ec7e7aa-0000-4000-8000-5ec7e75ec7e7"),
        ("SCW_DEFAULT_PROJECT_ID", PROJECT),
        ("SCW_API_URL", url),
        ("SCW_CONFIG_PATH", "/nonexistent/config.yaml"),
    ]);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let io = Io {
        stdin: &mut &b""[..],
        stdout: &mut out,
        stderr: &mut err,
    };
    let argv = vec![
        "scaleway-provision".into(),
        "validate".into(),
        file.as_os_str().to_owned(),
    ];
    let code = scaleway_provision::main_with(argv, &env, io);
    (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}

/// The shipped example with its provider given inline (providers are read
/// from oned: tests/tests/real_oned_provision_cli.rs validates it as shipped).
fn inline(dir: &TempDir) -> PathBuf {
    let example = std::fs::read_to_string(share().join("provisions/edge-cluster.yaml")).unwrap();
    let line = example.lines().find(|l| l.starts_with("provider: fr-par-1")).unwrap();
    let file = dir.path().join("edge-cluster-inline.yaml");
    std::fs::write(&file, example.replace(line, "connection: {zone: fr-par-1}")).unwrap();
    file
}

#[test]
fn the_shipped_template_is_valid() {
    let emu = Emulator::start(scaleway_emulator::Options {
        project_ids: vec![PROJECT.into()],
        ..Default::default()
    })
    .unwrap();
    let dir = TempDir::new("provision-validate-shipped");
    let (code, out, err) = validate(&emu.url(), &inline(&dir));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "edge-paris: 2 KVM host(s) EM-A116X-SSD (hourly) with Ubuntu 24.04, 2 public IP(s), private network \
         172.18.0.0/24, cluster edge-paris, OpenNebula 7.0: valid"
    );
    assert!(
        emu.calls().iter().all(|c| c["method"] == "GET"),
        "validating creates nothing"
    );
}

#[test]
fn scaleway_side_problems_are_refused() {
    let emu = Emulator::start(scaleway_emulator::Options {
        project_ids: vec![PROJECT.into()],
        ..Default::default()
    })
    .unwrap();
    let dir = TempDir::new("provision-validate");
    let template = std::fs::read_to_string(inline(&dir)).unwrap();
    for (change, expected) in [
        (
            ("EM-A116X-SSD", "EM-L420E-NVME"),
            "offer EM-L420E-NVME is out of stock in fr-par-1",
        ),
        (
            ("EM-A116X-SSD", "EM-Z999X-SSD"),
            "offer EM-Z999X-SSD does not exist in fr-par-1 (hourly); there: EM-A116X-SSD",
        ),
        (
            ("Ubuntu 24.04", "Proxmox VE 8"),
            "OS Proxmox VE 8 cannot be installed on offer EM-A116X-SSD",
        ),
        (("Ubuntu 24.04", "Plan9 4"), "OS Plan9 4 does not exist in fr-par-1"),
    ] {
        let file = dir.path().join("p.yaml");
        std::fs::write(&file, template.replace(change.0, change.1)).unwrap();
        let (code, out, err) = validate(&emu.url(), &file);
        assert_eq!((code, out.as_str()), (1, ""), "{change:?}: {err}");
        assert!(err.contains(expected), "{change:?}: {err}");
    }
    assert_eq!(emu.state()["empty"], serde_json::json!(true));
}
