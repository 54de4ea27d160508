//! Each server's own files (`NetworkOptions::host_fs`, `--host-fs`):
//! the namespaces share the machine's file system, so a host bootstrap run
//! through `exec` or the ssh alias (which writes `/etc/hosts`,
//! `/etc/sysctl.d/…`, `/var/tmp/one/…`) would change the machine itself.
//! With this option every command run on a server sees:
//!
//! - `/etc`: an overlay of the machine's `/etc` whose changes go to
//!   `<state root>/<server id>/fs/etc` (the machine's `/etc` is never
//!   written);
//! - `/var/tmp`: `<state root>/<server id>/fs/var-tmp`, empty at first
//!   (where `onehost sync` and the bootstrap put the host-side drivers).
//!
//! Everything else (`/tmp`, `/run`, the state root, the install folder) is
//! shared. The folder goes with the server's namespace.
//!
//! How: `exec` runs `ip netns exec NS <this program> enter-host-fs --fs DIR
//! -- PROGRAM ARGS`; `enter-host-fs` makes a mount namespace of its own
//! (`unshare`, every mount a slave of the machine's: nothing propagates
//! back), mounts the overlay (a work folder per run, so concurrent runs on
//! one server never share one) and the bind mount, then execs PROGRAM.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

/// The per-server folder's parts.
pub fn etc_upper(fs: &Path) -> PathBuf {
    fs.join("etc")
}

pub fn var_tmp(fs: &Path) -> PathBuf {
    fs.join("var-tmp")
}

fn work_root(fs: &Path) -> PathBuf {
    fs.join("work")
}

/// Creates a server's folder (`etc/`, `var-tmp/` mode 1777, `work/`).
pub fn prepare(fs: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    check_path(fs)?;
    for d in [etc_upper(fs), var_tmp(fs), work_root(fs)] {
        std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    std::fs::set_permissions(var_tmp(fs), std::fs::Permissions::from_mode(0o1777))
        .map_err(|e| format!("{}: {e}", var_tmp(fs).display()))
}

/// Overlay options cannot name paths with `,`, `:` or `\`.
fn check_path(fs: &Path) -> Result<(), String> {
    let text = fs.to_str().ok_or_else(|| format!("{} is not UTF-8", fs.display()))?;
    if !fs.is_absolute() || text.contains([',', ':', '\\']) {
        return Err(format!(
            "{text}: the per-server folder must be an absolute path without ',', ':' or '\\'"
        ));
    }
    Ok(())
}

/// The `ip netns exec` arguments after the namespace: this program's
/// `enter-host-fs` around `command`.
pub fn wrap(fs: &Path, command: &[OsString]) -> Result<Vec<OsString>, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut v: Vec<OsString> = vec![
        me.into_os_string(),
        "enter-host-fs".into(),
        "--fs".into(),
        fs.as_os_str().to_owned(),
        "--".into(),
    ];
    v.extend(command.iter().cloned());
    Ok(v)
}

/// `enter-host-fs`: the mounts, then exec. Returns only on failure.
pub fn enter(fs: &Path, command: &[OsString]) -> String {
    match enter_inner(fs, command) {
        Ok(e) | Err(e) => e,
    }
}

fn enter_inner(fs: &Path, command: &[OsString]) -> Result<String, String> {
    check_path(fs)?;
    let (program, args) = command.split_first().ok_or("no command given")?;
    if !etc_upper(fs).is_dir() || !var_tmp(fs).is_dir() {
        return Err(format!(
            "{} is not a server's folder (made by the emulator with --host-fs)",
            fs.display()
        ));
    }
    // A mount namespace of our own whatever the caller did, whose mounts
    // never propagate back to the machine's.
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(CLONE_NEWNS): {e} (root is needed)"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| format!("making / a slave mount: {e}"))?;
    let work = work_root(fs).join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let options = format!(
        "lowerdir=/etc,upperdir={},workdir={}",
        etc_upper(fs).display(),
        work.display()
    );
    mount(
        Some("overlay"),
        "/etc",
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|e| format!("mounting an overlay on /etc ({options}): {e} (does the kernel have overlayfs?)"))?;
    mount(
        Some(&var_tmp(fs)),
        "/var/tmp",
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| format!("binding {} on /var/tmp: {e}", var_tmp(fs).display()))?;
    let e = Command::new(program).args(args).exec();
    Ok(format!("cannot run {}: {e}", program.to_string_lossy()))
}
