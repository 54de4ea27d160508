//! The sandbox end to end, as `sudo ./sandbox.sh` runs it, in CI: a real
//! oned (the OpenNebula build `ONE_SCALEWAY_ONED` names, else
//! `tests/oned/build.sh`'s) with the workspace's binaries installed by
//! `install.sh -d`, then the whole story (privileged: root, oneadmin,
//! iproute2, nftables, frr, frr-pythontools, sudo; `.ci/run` installs them).
//! It uses its own namespace prefix (`sbxt`), so it never meets a sandbox
//! someone runs by hand.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use test_support::require_root;

const SANDBOX: &str = env!("CARGO_BIN_EXE_one-scaleway-sandbox");

/// The folder of the workspace's binaries (where `cargo test --workspace` builds them all).
fn bin_dir() -> PathBuf {
    let dir = Path::new(SANDBOX).parent().unwrap().to_path_buf();
    for b in [
        "scaleway-ipam",
        "scaleway-vnm",
        "scaleway-provision",
        "scaleway-emulator",
        "one-scaleway-test-vmm",
    ] {
        assert!(
            dir.join(b).exists(),
            "{} is missing: build the workspace first (cargo build --workspace, or cargo test --workspace)",
            dir.join(b).display()
        );
    }
    dir
}

/// Runs the sandbox with `args` (prefix `prefix`) and checks it passed,
/// printed every proof, and left no namespace.
fn play(prefix: &str, args: &[&str], proofs: &[&str]) {
    // One sandbox at a time: two would share 2 cores and could miss their time limits.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    require_root();
    let started = Instant::now();
    let out = Command::new(SANDBOX)
        .arg("--bindir")
        .arg(bin_dir())
        .args(["--prefix", prefix, "--speed", "0.05"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "the sandbox failed after {:.0}s:\n{stdout}\n{stderr}",
        started.elapsed().as_secs_f64()
    );
    for proof in proofs {
        assert!(stdout.contains(proof), "no {proof:?} in:\n{stdout}");
    }
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(&format!("{prefix}-")))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "namespaces left: {left:?}");
}

/// What every run proves.
const PROOFS: [&str; 13] = [
    "scaleway-provision provider create (the shipped provider file, kept in oned) ... ok",
    "scaleway-provision create (as oneadmin; hosts bootstrapped over ssh) ... ok",
    "check: the host drivers ran as oneadmin (through sudo, with the shipped rules) ... ok",
    "check: the internet reaches vm1 on its flexible IP ... ok",
    "check: vm2 reaches the internet from its flexible IP ... ok",
    "check: vm1 <-> vm2 on the private network ... ok",
    "check: the internet reaches vm2 on its flexible IP (after the resume) ... ok",
    "check: the internet reaches vm1 on its flexible IP (after the move) ... ok",
    "onevm nic-attach vm2 on the public network ... ok",
    "scaleway-provision host add (a third host) ... ok",
    "check: nothing left at Scaleway (the emulator is empty) ... ok",
    "check: nothing left in oned ... ok",
    "check: nothing left in the kernel, in FRR, on this machine ... ok",
];

/// The whole story on KVM hosts, with part 7 (`--timing`: a VM's deploy
/// and terminate at Scaleway's own speed, the figures printed).
#[test]
#[ignore = "privileged: needs root, iproute2, nftables, frr; run by .ci/run"]
fn the_sandbox_plays_the_whole_story_and_leaves_nothing() {
    let mut proofs = PROOFS.to_vec();
    proofs.extend([
        "onevm migrate --live vm1 from",
        "onevm recover --delete vm1 during its live migration ... ok",
        "deployed and terminated at emulator speed 1.0 ... ok",
        "deploy to the VM answering on its flexible IP: ",
        ": PASSED",
    ]);
    play("sbxt", &["--timing"], &proofs);
}

/// The same story on LXC hosts (`hypervisor: lxc`): OpenNebula's LXC path,
/// a veth on the bridge; VMs are replaced, not moved.
#[test]
#[ignore = "privileged: needs root, iproute2, nftables, frr; run by .ci/run"]
fn the_sandbox_plays_the_story_on_lxc_hosts() {
    let mut proofs = PROOFS.to_vec();
    proofs.extend(["onevm terminate + create (LXC: no live migration) vm1 from", ": PASSED"]);
    play("sbxl", &["--hypervisor", "lxc"], &proofs);
}
