//! Each server's own files (`NetworkOptions::host_fs`, `--host-fs`):
//! the namespaces share the machine's file system, so a host bootstrap run
//! through `exec` or the ssh alias (which writes `/etc/hosts`,
//! `/etc/sudoers.d/…`, `/var/lib/one/…`, `/var/tmp/one/…`) would change the
//! machine itself. With this option every command run on a server sees:
//!
//! - `/etc`: an overlay of the machine's `/etc` whose changes go to
//!   `<state root>/<server id>/fs/etc` (the machine's `/etc` is never
//!   written; a user or a sudoers rule the bootstrap adds exists on that
//!   server only);
//! - `/var/lib`: the same, changes in `fs/var-lib` (oneadmin's home
//!   `/var/lib/one`, where the host-side drivers keep their records);
//! - `/usr/local`: the same, changes in `fs/usr-local` (where the host
//!   bootstrap installs the drivers' root helper);
//! - `/var/tmp`: `fs/var-tmp`, empty at first (where `onehost sync` and the
//!   bootstrap put the host-side drivers);
//! - `/run`: `fs/run` (the host lock in `/run/lock`, sudo's own files),
//!   with the server's FRR instance folder (`<server id>/frr`, see
//!   [`super::frr`]) on `/run/frr`: FRR's default paths (`vtysh`,
//!   `frr-reload.py` without options) reach that server's FRR, so the host
//!   drivers run exactly the commands they run on a real host (and that
//!   the shipped sudoers rules allow).
//!
//! Everything else (`/tmp`, `/usr`, the install folder) is shared. The
//! folder goes with the server's namespace.
//!
//! Each server also has the user Scaleway's Ubuntu images log in as:
//! `ubuntu`, with passwordless sudo (`/etc/sudoers.d/90-cloud-init-users`,
//! as cloud-init writes it), so that a provisioner logs in as it does on a
//! real server (`ubuntu@HOST`, then `sudo -n`).
//!
//! How: `exec` runs `ip netns exec NS <this program> enter-host-fs --fs DIR
//! [--user NAME] -- PROGRAM ARGS`; `enter-host-fs` makes a mount namespace
//! of its own (`unshare`, every mount a slave of the machine's: nothing
//! propagates back), mounts the overlays (a work folder per run, so
//! concurrent runs on one server never share one) and the bind mounts,
//! becomes NAME (the login user of the ssh alias: its groups, `HOME`,
//! `USER`, `LOGNAME`, `SHELL`, a login `PATH`, the home as working folder,
//! as sshd does), then execs PROGRAM.

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

pub fn var_lib_upper(fs: &Path) -> PathBuf {
    fs.join("var-lib")
}

pub fn usr_local_upper(fs: &Path) -> PathBuf {
    fs.join("usr-local")
}

pub fn run_dir(fs: &Path) -> PathBuf {
    fs.join("run")
}

/// The server's FRR instance folder (beside `fs/`).
fn frr_dir(fs: &Path) -> Option<PathBuf> {
    fs.parent().map(|d| d.join("frr")).filter(|d| d.is_dir())
}

fn work_root(fs: &Path) -> PathBuf {
    fs.join("work")
}

/// Creates a server's folder: `etc/`, `var-lib/`, `var-tmp/` (1777),
/// `run/` with `run/lock` (1777) and the mount point `run/frr`, `work/`.
pub fn prepare(fs: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    check_path(fs)?;
    let run = run_dir(fs);
    for d in [
        etc_upper(fs),
        var_lib_upper(fs),
        usr_local_upper(fs),
        var_tmp(fs),
        run.join("lock"),
        run.join("frr"),
        work_root(fs),
    ] {
        std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    for (d, mode) in [(var_tmp(fs), 0o1777), (run.clone(), 0o755), (run.join("lock"), 0o1777)] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("{}: {e}", d.display()))?;
    }
    image_user(&etc_upper(fs))
}

/// The image's `ubuntu` user, in the server's `/etc` only: the machine's
/// `passwd`, `group` and `shadow` with `ubuntu` added (the first free id
/// from 1000; a locked password), and cloud-init's sudoers rule. Nothing when the machine has an
/// `ubuntu` already.
fn image_user(etc: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let read =
        |name: &str| std::fs::read_to_string(Path::new("/etc").join(name)).map_err(|e| format!("/etc/{name}: {e}"));
    let (passwd, group) = (read("passwd")?, read("group")?);
    if passwd.lines().any(|l| l.starts_with("ubuntu:")) {
        return Ok(());
    }
    let taken = |text: &str| -> Vec<u32> { text.lines().filter_map(|l| l.split(':').nth(2)?.parse().ok()).collect() };
    let (uids, gids) = (taken(&passwd), taken(&group));
    let id = (1000..60000)
        .find(|i| !uids.contains(i) && !gids.contains(i))
        .ok_or("no free id for the image user")?;
    let write = |name: &str, text: String, mode: u32| -> Result<(), String> {
        let path = etc.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    let with_newline = |t: &str| {
        if t.ends_with('\n') {
            t.to_owned()
        } else {
            format!("{t}\n")
        }
    };
    write(
        "passwd",
        format!(
            "{}ubuntu:x:{id}:{id}:Ubuntu:/home/ubuntu:/bin/bash\n",
            with_newline(&passwd)
        ),
        0o644,
    )?;
    write("group", format!("{}ubuntu:x:{id}:\n", with_newline(&group)), 0o644)?;
    // A locked password (`!`, as cloud-init leaves it): sudo's account check needs the entry.
    let shadow = read("shadow")?;
    write(
        "shadow",
        format!("{}ubuntu:!:20000:0:99999:7:::\n", with_newline(&shadow)),
        0o640,
    )?;
    let machine = std::fs::metadata("/etc/shadow").map_err(|e| format!("/etc/shadow: {e}"))?;
    std::os::unix::fs::chown(
        etc.join("shadow"),
        Some(std::os::unix::fs::MetadataExt::uid(&machine)),
        Some(std::os::unix::fs::MetadataExt::gid(&machine)),
    )
    .map_err(|e| format!("{}: {e}", etc.join("shadow").display()))?;
    let sudoers = etc.join("sudoers.d");
    std::fs::create_dir_all(&sudoers).map_err(|e| format!("{}: {e}", sudoers.display()))?;
    write(
        "sudoers.d/90-cloud-init-users",
        "ubuntu ALL=(ALL) NOPASSWD:ALL\n".to_owned(),
        0o440,
    )
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
/// `enter-host-fs` around `command` (the server's files, the login user;
/// with a login user, `command` is a remote command line as sshd gets it:
/// run by the user's login shell).
pub fn wrap(fs: Option<&Path>, user: Option<&str>, command: &[OsString]) -> Result<Vec<OsString>, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut v: Vec<OsString> = vec![me.into_os_string(), "enter-host-fs".into()];
    if let Some(fs) = fs {
        v.extend(["--fs".into(), fs.as_os_str().to_owned()]);
    }
    if let Some(user) = user {
        v.extend(["--user".into(), user.into(), "--login-shell".into()]);
    }
    v.push("--".into());
    v.extend(command.iter().cloned());
    Ok(v)
}

/// `enter-host-fs`: the mounts (with `fs`), the user (with `user`), then
/// exec; with `login_shell`, as sshd runs a remote command: the words
/// joined with spaces, given to the user's login shell (`SHELL -c LINE`,
/// the shell from the server's `/etc/passwd`), which does the quoting,
/// splitting and expansions. Returns only on failure.
pub fn enter(fs: Option<&Path>, user: Option<&str>, login_shell: bool, command: &[OsString]) -> String {
    let (program, args) = match command.split_first() {
        Some(c) => c,
        None => return "no command given".into(),
    };
    if let Some(fs) = fs
        && let Err(e) = mount_all(fs)
    {
        return e;
    }
    let mut cmd = match (login_shell, user) {
        (true, Some(name)) => {
            let shell = match nix::unistd::User::from_name(name) {
                Ok(Some(u)) if !u.shell.as_os_str().is_empty() => u.shell,
                _ => PathBuf::from("/bin/sh"),
            };
            let line: Vec<String> = command.iter().map(|w| w.to_string_lossy().into_owned()).collect();
            let mut c = Command::new(shell);
            c.arg("-c").arg(line.join(" "));
            c
        }
        _ => {
            let mut c = Command::new(program);
            c.args(args);
            c
        }
    };
    if let Some(name) = user
        && let Err(e) = become_user(name, &mut cmd)
    {
        return e;
    }
    let e = cmd.exec();
    format!("cannot run {}: {e}", program.to_string_lossy())
}

fn overlay(lower: &str, upper: &Path, work: &Path) -> Result<(), String> {
    std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
    let options = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        lower,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|e| format!("mounting an overlay on {lower} ({options}): {e} (does the kernel have overlayfs?)"))
}

fn bind(from: &Path, to: &Path, flags: MsFlags) -> Result<(), String> {
    mount(Some(from), to, None::<&str>, MsFlags::MS_BIND | flags, None::<&str>)
        .map_err(|e| format!("binding {} on {}: {e}", from.display(), to.display()))
}

fn mount_all(fs: &Path) -> Result<(), String> {
    check_path(fs)?;
    if !etc_upper(fs).is_dir() || !var_tmp(fs).is_dir() || !run_dir(fs).join("frr").is_dir() {
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
    overlay("/etc", &etc_upper(fs), &work.join("etc"))?;
    overlay("/var/lib", &var_lib_upper(fs), &work.join("var-lib"))?;
    overlay("/usr/local", &usr_local_upper(fs), &work.join("usr-local"))?;
    bind(&var_tmp(fs), Path::new("/var/tmp"), MsFlags::empty())?;
    // Last: the state root may be under /run, which this hides.
    let run = run_dir(fs);
    if let Some(frr) = frr_dir(fs) {
        bind(&frr, &run.join("frr"), MsFlags::empty())?;
    }
    bind(&run, Path::new("/run"), MsFlags::MS_REC)
}

/// What sshd does for a login: the user's groups and ids, its
/// environment, its home as working folder.
fn become_user(name: &str, cmd: &mut Command) -> Result<(), String> {
    use nix::unistd::{Gid, Uid, User};
    let user = User::from_name(name)
        .map_err(|e| format!("looking up user {name}: {e}"))?
        .ok_or_else(|| format!("Permission denied: no user {name} on this server"))?;
    let path = if user.uid.is_root() {
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    } else {
        "/usr/local/bin:/usr/bin:/bin:/usr/games"
    };
    let home = if user.dir.is_dir() {
        user.dir.clone()
    } else {
        PathBuf::from("/")
    };
    cmd.env("HOME", &user.dir)
        .env("USER", &user.name)
        .env("LOGNAME", &user.name)
        .env("SHELL", &user.shell)
        .env("PATH", path)
        .current_dir(home);
    let (uid, gid): (Uid, Gid) = (user.uid, user.gid);
    let cname = std::ffi::CString::new(user.name.clone()).map_err(|e| format!("user {name}: {e}"))?;
    nix::unistd::initgroups(&cname, gid).map_err(|e| format!("initgroups({name}): {e}"))?;
    nix::unistd::setgid(gid).map_err(|e| format!("setgid({gid}): {e}"))?;
    nix::unistd::setuid(uid).map_err(|e| format!("setuid({uid}): {e}"))?;
    Ok(())
}
