//! What the real-oned tests share: the emulator behind the IPAM driver and
//! oneadmin's Scaleway credentials for it.

use std::path::PathBuf;

use scaleway_emulator::{Emulator, Options, Running};
use test_support::oned::{Options as OnedOptions, RealOned};

pub const PROJECT: &str = "5a4db0c5-0000-4000-8000-0000000000e2";
pub const SECRET: &str = "5a4db0c5-0000-4000-8000-5ec7e75ec7e2";

/// The emulator at speed 0.01, for the project of [`PROJECT`].
///
/// # Panics
/// If it cannot start (a test bug or a broken machine).
#[allow(clippy::expect_used)]
pub fn emulator() -> Running {
    Emulator::start(Options {
        speed: 0.01,
        project_ids: vec![PROJECT.into()],
        ..Default::default()
    })
    .expect("the emulator starts")
}

/// Credentials where production keeps them, oneadmin's Scaleway config
/// file: the root profile (zone fr-par-1) and `edge-paris` (fr-par-2), both
/// on the emulator.
pub fn scaleway_credentials(oned: &RealOned, emu: &Running) {
    let url = emu.url();
    oned.write_scaleway_config(&format!(
        "secret_key: {SECRET}\ndefault_project_id: {PROJECT}\ndefault_zone: fr-par-1\napi_url: {url}\n\
         profiles:\n  edge-paris:\n    secret_key: {SECRET}\n    default_project_id: {PROJECT}\n    \
         default_zone: fr-par-2\n    api_url: {url}\n"
    ));
}

/// Where cargo put this build's binaries (beside the running test).
///
/// # Panics
/// If the test's own path has no grandparent (never, under cargo).
#[allow(clippy::expect_used)]
pub fn bindir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    exe.parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// A real oned with this build installed, every action file of ours
/// recorded, fast polling, and oneadmin's Scaleway credentials for `emu`.
pub fn start_oned(emu: &Running) -> RealOned {
    let oned = RealOned::start(&OnedOptions {
        bindir: bindir(),
        recorder: Some(bindir().join("one-scaleway-recorder")),
        env: vec![
            ("ONE_SCALEWAY_POLL_MS".into(), "20".into()),
            ("ONE_SCALEWAY_RETRY_BASE_MS".into(), "20".into()),
        ],
        ..OnedOptions::default()
    });
    scaleway_credentials(&oned, emu);
    oned
}
