//! install.sh on a temporary root (`-d DIR`): layout, links that really run
//! the drivers, modes, idempotent re-install, an edited file kept, the
//! OpenNebula configuration edited on copies of the stock files, and an
//! uninstall that leaves nothing of ours.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use test_support::{TempDir, encode, fixture, run_program, run_program_env};

/// Where cargo put the binaries of this build (next to this test's own folder).
fn bindir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    for b in [
        "scaleway-ipam",
        "scaleway-vnm",
        "scaleway-provision",
        "scaleway-emulator",
    ] {
        assert!(
            dir.join(b).exists(),
            "{} is missing: build the workspace first (cargo build --workspace)",
            dir.join(b).display()
        );
    }
    dir
}

/// An action file is a small wrapper (`onehost sync` copies links as whole
/// binaries): executable, a few hundred bytes, running the binary beside it.
fn assert_action_file(path: &Path, runs: &str) {
    assert!(!path.is_symlink(), "{} is a link", path.display());
    assert_eq!(mode(path), 0o755, "{}", path.display());
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.len() < 300, "{}: {} bytes", path.display(), text.len());
    let (program, words) = runs.split_once(' ').unwrap();
    assert!(
        text.contains(&format!("exec \"${{0%/*}}/{program}\" {words} -- \"$@\"")),
        "{}:\n{text}",
        path.display()
    );
}

fn install_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("install.sh")
}

fn install(dir: &Path, extra: &[&str]) -> test_support::Ran {
    let bins = bindir();
    let mut args = vec![
        install_sh().display().to_string(),
        "-d".into(),
        dir.display().to_string(),
    ];
    // The drivers' account: `nobody` here (oneadmin in production), so that
    // what is root's and what is theirs can be told apart.
    args.extend(["-u", "nobody", "-g", "nogroup", "-b"].map(str::to_owned));
    args.push(bins.display().to_string());
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_program(Path::new("bash"), &args, b"")
}

fn owner(p: &Path) -> u32 {
    std::os::unix::fs::MetadataExt::uid(&std::fs::symlink_metadata(p).unwrap())
}

fn uid_of(user: &str) -> u32 {
    run_program(Path::new("id"), &["-u", user], b"")
        .stdout
        .trim()
        .parse()
        .unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn install_reinstall_and_uninstall_in_a_folder() {
    let root = TempDir::new("install");
    let dir = root.path().join("one");
    std::fs::create_dir_all(dir.join("etc/vmm_exec")).unwrap();
    let stock_oned = fixture("opennebula/oned.conf");
    let stock_rc = fixture("opennebula/vmm_execrc");
    std::fs::write(dir.join("etc/oned.conf"), &stock_oned).unwrap();
    std::fs::write(dir.join("etc/vmm_exec/vmm_execrc"), &stock_rc).unwrap();

    let first = install(&dir, &[]);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let remotes = dir.join("var/remotes");
    for a in [
        "register_address_range",
        "unregister_address_range",
        "get_address",
        "allocate_address",
        "free_address",
    ] {
        assert_action_file(
            &remotes.join("ipam/scaleway_fip").join(a),
            &format!("scaleway-ipam {a}"),
        );
    }
    for driver in ["scaleway", "scaleway_evpn"] {
        assert_eq!(mode(&remotes.join(format!("vnm/{driver}/scaleway-vnm"))), 0o755);
        for a in [
            "pre",
            "post",
            "clean",
            "update_sg",
            "update_nic",
            "vnet_create",
            "vnet_delete",
        ] {
            assert_action_file(
                &remotes.join(format!("vnm/{driver}/{a}")),
                &format!("scaleway-vnm --driver {driver} {a}"),
            );
        }
    }
    assert_action_file(
        &remotes.join("vnm/scaleway/clean_host"),
        "scaleway-vnm --driver scaleway clean_host",
    );
    assert_eq!(mode(&dir.join("bin/scaleway-provision")), 0o755);
    // The test emulator is not for production frontends.
    assert!(
        !dir.join("bin/scaleway-emulator").exists(),
        "the emulator was installed"
    );
    assert!(dir.join("share/scaleway/doc/protocol.md").exists());
    assert!(dir.join("share/scaleway/providers/fr-par-1.yaml").exists());
    assert!(dir.join("share/scaleway/provisions/edge-cluster.yaml").exists());
    assert!(dir.join("share/scaleway/host/sudoers-one-scaleway").exists());
    let scw = dir.join("var/.config/scw/config.yaml");
    assert_eq!(mode(&scw), 0o600, "the credentials file is private");
    // Everything is root's but what the drivers' account must write.
    let nobody = uid_of("nobody");
    for theirs in ["var/scaleway", "var/.config/scw/config.yaml"] {
        assert_eq!(owner(&dir.join(theirs)), nobody, "{theirs}");
    }
    for roots in [
        "bin/scaleway-provision",
        "var/remotes/ipam/scaleway_fip",
        "var/remotes/ipam/scaleway_fip/scaleway-ipam",
        "var/remotes/ipam/scaleway_fip/get_address",
        "var/remotes/vnm/scaleway/scaleway-vnm",
        "var/remotes/vnm/scaleway_evpn/pre",
        "share/scaleway",
        "share/scaleway/install-manifest",
        "share/scaleway/host/sudoers-one-scaleway",
    ] {
        assert_eq!(owner(&dir.join(roots)), 0, "{roots}");
        assert_eq!(mode(&dir.join(roots)) & 0o022, 0, "{roots} is writable by others");
    }
    let oned = std::fs::read_to_string(dir.join("etc/oned.conf")).unwrap();
    assert!(
        oned.contains("-i dummy,aws,equinix,vultr,scaleway,scaleway_fip\""),
        "{oned}"
    );
    assert!(
        std::fs::read_to_string(dir.join("etc/vmm_exec/vmm_execrc"))
            .unwrap()
            .contains("scaleway-post scaleway-clean")
    );
    assert!(first.stdout.contains("onehost sync --force"), "{}", first.stdout);

    // The installed action files run the drivers, as oned runs them.
    let get = run_program_env(
        &remotes.join("ipam/scaleway_fip/get_address"),
        &["7"],
        &encode(&fixture("ipam/get_address.xml")),
        &[],
    );
    assert_eq!(
        (get.code, get.stdout.as_str()),
        (0, "ADDRESS = [\n  IP = \"172.30.12.2\",\n  SIZE = \"1\"\n]\n"),
        "{}",
        get.stderr
    );

    // Re-running changes nothing.
    let manifest_path = dir.join("share/scaleway/install-manifest");
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();
    let again = install(&dir, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(std::fs::read_to_string(dir.join("etc/oned.conf")).unwrap(), oned);
    assert_eq!(std::fs::read_to_string(&manifest_path).unwrap(), manifest);

    // An edited credentials file is kept (never overwritten, never deleted).
    std::fs::write(&scw, "secret_key: 11111111-1111-4111-8111-111111111111\n").unwrap();
    let edited = install(&dir, &[]);
    assert_eq!(edited.code, 0, "{}", edited.stderr);
    assert_eq!(
        std::fs::read_to_string(&scw).unwrap(),
        "secret_key: 11111111-1111-4111-8111-111111111111\n"
    );

    // --no-config prints instead of editing.
    let restored = dir.join("etc/oned.conf");
    std::fs::write(&restored, &stock_oned).unwrap();
    let printed = install(&dir, &["--no-config"]);
    assert!(printed.stdout.contains("IPAM_MAD ARGUMENTS"), "{}", printed.stdout);
    assert_eq!(std::fs::read_to_string(&restored).unwrap(), stock_oned);
    assert_eq!(install(&dir, &[]).code, 0);

    // A manifest entry that names a file this script does not install (an
    // old manifest was writable by the drivers' account) is never acted on.
    let victim = root.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let sum = run_program(Path::new("sha256sum"), &[victim.to_str().unwrap()], b"")
        .stdout
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let mut tampered = std::fs::read_to_string(&manifest_path).unwrap();
    tampered.push_str(&format!(
        "file {sum} {}\nfile {sum} {}/bin/../../victim\n",
        victim.display(),
        dir.display()
    ));
    std::fs::write(&manifest_path, tampered).unwrap();

    // Uninstall: the configuration restored, nothing of ours left but the edited credentials.
    let removed = install(&dir, &["-r"]);
    assert_eq!(removed.code, 0, "{}\n{}", removed.stdout, removed.stderr);
    assert_eq!(std::fs::read_to_string(dir.join("etc/oned.conf")).unwrap(), stock_oned);
    assert_eq!(
        std::fs::read_to_string(dir.join("etc/vmm_exec/vmm_execrc")).unwrap(),
        stock_rc
    );
    for gone in ["var/remotes", "bin", "share", "var/scaleway"] {
        assert!(!dir.join(gone).exists(), "{gone} is left");
    }
    assert!(scw.exists(), "the edited credentials are the administrator's");
    assert!(victim.exists(), "a path outside ours is never removed");
    assert!(removed.stdout.contains("ignored"), "{}", removed.stdout);
    assert!(removed.stdout.contains("kept"), "{}", removed.stdout);
}

/// The binaries `onehost sync` copies to the hosts must run there (Ubuntu
/// 22.04 has glibc 2.35, 24.04 has 2.39): no symbol newer than GLIBC_2.35.
#[test]
fn binaries_need_no_glibc_newer_than_ubuntu_22_04s() {
    for b in ["scaleway-ipam", "scaleway-vnm", "scaleway-provision"] {
        let path = bindir().join(b);
        let out = run_program(Path::new("objdump"), &["-T", path.to_str().unwrap()], b"");
        assert_eq!(out.code, 0, "objdump (binutils) is needed: {}", out.stderr);
        let newest = out
            .stdout
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .filter_map(|w| w.strip_prefix("GLIBC_"))
            .filter_map(|v| {
                let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
                Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
            })
            .max()
            .unwrap();
        assert!(
            newest <= (2, 35),
            "{b} needs GLIBC_{}.{}: too new for Ubuntu 22.04",
            newest.0,
            newest.1
        );
    }
}
