//! Running programs "on a server" of the network mode, in place of SSH, and
//! cleaning up after a killed emulator.
//!
//! - `scaleway-emulator exec [--prefix P] [--state-root DIR] TARGET -- PROGRAM ARGS...`
//!   runs `ip netns exec <namespace> PROGRAM ARGS...` (an argument vector,
//!   never a shell) with the standard streams of the process, and exits
//!   with the program's code (128 + N when killed by signal N). TARGET is a
//!   server's public IPv4 or IPv6 address, id, or name (as in
//!   `<state root>/hosts.json`), or `internet` for the internet namespace.
//!   The environment passes through, plus, for a server:
//!   `SCALEWAY_EMULATOR_SERVER_ID`, `SCALEWAY_EMULATOR_NAMESPACE`, then the
//!   `KEY=VALUE` lines of `<state root>/env` and `<state root>/<id>/env`
//!   when they exist (per-host settings a sandbox writes). With `--host-fs`
//!   the program sees the server's own `/etc`, `/var/lib`, `/var/tmp` and
//!   `/run` (see [`super::hostfs`]), so the drivers' default paths are the
//!   server's; without it, `ONE_SCALEWAY_STATE_DIR=<state root>/<id>/state`
//!   and `ONE_SCALEWAY_HOST_LOCK=<state root>/<id>/host.lock` keep two
//!   servers apart (and with `--frr`, `ONE_SCALEWAY_FRR_DIR` in the
//!   server's `env` file names its FRR). Exit codes of its own: 2 for a bad
//!   command line, 1 for an unknown target.
//! - Called through a file named `scaleway-emulator-ssh` or `ssh` (a symlink or a copy), it
//!   behaves as `ssh [OPTIONS] [USER@]HOST COMMAND...` for
//!   `ONE_SCALEWAY_SSH` and as OpenNebula's `ssh`: options `-o X`, `-F f`,
//!   `-i f`, `-p N`, `-l U`, `-E f`, `-J h`, `-c x`, `-m x`, `-b a` (value
//!   attached or next) and flags `-T -t -n -q -x -4 -6 -v -A -a -C`
//!   (combinable) are accepted and ignored but for `-l` (`-n` gives the
//!   program an empty stdin); `--` ends them. COMMAND runs as the login
//!   user (`USER@`, `-l USER`, else the caller's name, as with ssh), who
//!   must exist on the server (its `/etc/passwd`): its ids and groups, its
//!   home, a login `PATH`. Root is needed to enter a namespace: run it as
//!   root, or as a setuid-root copy (what a test oned, running as oneadmin,
//!   has as `ssh`), which trusts only a state root and index that are
//!   root's alone. The prefix and state root come from
//!   `SCALEWAY_EMULATOR_PREFIX` (default `scw`) and
//!   `SCALEWAY_EMULATOR_STATE_ROOT`. As sshd does, the command words are
//!   joined with spaces and run by the login user's shell (`SHELL -c LINE`,
//!   the shell of the server's `/etc/passwd`): quoting, splitting and
//!   expansions are that shell's, so what a caller quotes is tested for
//!   real; no command (an interactive login) is refused. As with ssh, the environment is a fresh one: only
//!   `PATH`, `HOME`, `USER`, `LOGNAME`, `LANG`, `LC_*`, `TERM` and `TZ`
//!   pass (the login user's replace them), plus the per-server variables
//!   above. Its own errors exit 255, as ssh's do.
//! - `scaleway-emulator cleanup [--prefix P] [--state-root DIR]` deletes the
//!   namespaces `P-inet`, `P-<8 hex>` and `P-pn-<8 hex>` and the folders a
//!   killed emulator left, after stopping the FRR daemons of those folders
//!   (prints what it deleted).

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::Args;
use opennebula::driver::Io;
use serde_json::Value;

use super::{DEFAULT_PREFIX, DEFAULT_STATE_PARENT, INDEX_FILE, check_prefix, default_state_root, kernel};

/// `exec` arguments.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Namespace prefix of the emulator (its --network).
    #[arg(long, default_value = DEFAULT_PREFIX)]
    prefix: String,
    /// Its state root (default /run/scaleway-emulator/PREFIX).
    #[arg(long, value_name = "DIR")]
    state_root: Option<PathBuf>,
    /// A server's public IPv4 or IPv6 address, id or name; or `internet`.
    target: String,
    /// The program and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    command: Vec<OsString>,
}

/// `cleanup` arguments.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Namespace prefix of the emulator that was killed.
    #[arg(long, default_value = DEFAULT_PREFIX)]
    prefix: String,
    /// Its state root (default /run/scaleway-emulator/PREFIX).
    #[arg(long, value_name = "DIR")]
    state_root: Option<PathBuf>,
}

/// `enter-host-fs` arguments (internal: what `exec` and the ssh alias run
/// for a server's own files and for the login user).
#[derive(Debug, Args)]
pub struct EnterArgs {
    /// The server's folder (`<state root>/<server id>/fs`).
    #[arg(long, value_name = "DIR")]
    fs: Option<PathBuf>,
    /// The user the program runs as (the ssh alias's login user).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Run the words as sshd runs a remote command: joined with spaces, by
    /// the user's login shell (`-c`).
    #[arg(long, requires = "user")]
    login_shell: bool,
    /// The program and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    command: Vec<OsString>,
}

/// Where a command runs.
#[derive(Debug, PartialEq)]
struct Place {
    namespace: String,
    env: Vec<(String, String)>,
    /// The server's own files (`--host-fs`).
    fs: Option<PathBuf>,
}

/// Finds TARGET in the index of `state_root`.
fn resolve(prefix: &str, state_root: &Path, target: &str) -> Result<Place, String> {
    check_prefix(prefix)?;
    let index_path = state_root.join(INDEX_FILE);
    let text = std::fs::read_to_string(&index_path).map_err(|e| {
        format!(
            "cannot read {} ({e}): is an emulator running with --network {prefix}?",
            index_path.display()
        )
    })?;
    let index: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", index_path.display()))?;
    if target == "internet" {
        return Ok(Place {
            namespace: format!("{prefix}-inet"),
            env: Vec::new(),
            fs: None,
        });
    }
    let servers = index
        .get("servers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let field = |s: &Value, k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut found: Vec<&Value> = servers
        .iter()
        .filter(|s| {
            field(s, "server_id").eq_ignore_ascii_case(target)
                || field(s, "ipv4") == target
                || field(s, "ipv6") == target
        })
        .collect();
    if found.is_empty() {
        found = servers.iter().filter(|s| field(s, "name") == target).collect();
    }
    let server = match found.as_slice() {
        [one] => *one,
        [] => {
            return Err(format!(
                "no server {target:?} has a namespace (in {}): unknown, or not installed yet",
                index_path.display()
            ));
        }
        _ => return Err(format!("{target:?} names several servers: use an id or an address")),
    };
    let id = field(server, "server_id");
    if !crate::util::is_uuid(&id) {
        return Err(format!("bad server id {id:?} in {}", index_path.display()));
    }
    let dir = state_root.join(&id);
    // Only the server's own folder: never a path the index could point elsewhere.
    let fs = server.get("fs").and_then(Value::as_str).map(|_| dir.join("fs"));
    let mut env = Vec::new();
    // With its own files, a server needs no settings: the drivers' default
    // paths are its own (see `hostfs`).
    if fs.is_none() {
        env.extend([
            (
                "ONE_SCALEWAY_STATE_DIR".to_string(),
                dir.join("state").display().to_string(),
            ),
            (
                "ONE_SCALEWAY_HOST_LOCK".to_string(),
                dir.join("host.lock").display().to_string(),
            ),
        ]);
    }
    env.extend([
        ("SCALEWAY_EMULATOR_SERVER_ID".to_string(), id.clone()),
        ("SCALEWAY_EMULATOR_NAMESPACE".to_string(), field(server, "namespace")),
    ]);
    for file in [state_root.join("env"), dir.join("env")] {
        env.extend(read_env_file(&file));
    }
    Ok(Place {
        namespace: field(server, "namespace"),
        env,
        fs,
    })
}

/// `KEY=VALUE` lines (blank lines and `#` comments skipped).
fn read_env_file(path: &Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs the command in the place (as `user`, when given); returns its exit code.
fn run(
    place: &Place,
    command: &[OsString],
    user: Option<&str>,
    fresh_env: bool,
    null_stdin: bool,
) -> Result<u8, String> {
    let mut cmd = Command::new("ip");
    if fresh_env {
        let kept: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(k, _)| {
                let k = k.to_string_lossy();
                ["PATH", "HOME", "USER", "LOGNAME", "LANG", "TERM", "TZ"].contains(&k.as_ref()) || k.starts_with("LC_")
            })
            .collect();
        cmd.env_clear().envs(kept);
        if std::env::var_os("PATH").is_none() {
            cmd.env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        }
    }
    let command = if place.fs.is_some() || user.is_some() {
        super::hostfs::wrap(place.fs.as_deref(), user, command)?
    } else {
        command.to_vec()
    };
    cmd.args(["netns", "exec", &place.namespace])
        .args(command)
        .envs(place.env.iter().cloned());
    if null_stdin {
        cmd.stdin(Stdio::null());
    }
    let status = cmd.status().map_err(|e| format!("cannot run ip netns exec: {e}"))?;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c).unwrap_or(255),
        (None, Some(s)) => u8::try_from(128 + s).unwrap_or(255),
        (None, None) => 255,
    })
}

/// `scaleway-emulator exec`.
pub fn exec_main(args: ExecArgs, io: &mut Io<'_>) -> u8 {
    let root = args.state_root.unwrap_or_else(|| default_state_root(&args.prefix));
    match resolve(&args.prefix, &root, &args.target).and_then(|p| run(&p, &args.command, None, false, false)) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(io.stderr, "scaleway-emulator exec: {e}");
            1
        }
    }
}

/// `scaleway-emulator enter-host-fs --fs DIR -- PROGRAM ARGS...`: returns
/// only when PROGRAM could not be run (127, as a shell would).
pub fn enter_main(args: &EnterArgs, io: &mut Io<'_>) -> u8 {
    let e = super::hostfs::enter(
        args.fs.as_deref(),
        args.user.as_deref(),
        args.login_shell,
        &args.command,
    );
    let _ = writeln!(io.stderr, "scaleway-emulator enter-host-fs: {e}");
    127
}

/// What an ssh command line asks for.
#[derive(Debug, PartialEq)]
struct SshLine {
    /// The login user (`USER@HOST` or `-l USER`), if given.
    user: Option<String>,
    host: String,
    command: Vec<OsString>,
    null_stdin: bool,
}

/// Options from `args[*i]` on, as ssh's getopt reads them: up to the first
/// word that is not an option (left at `*i`), or `--` (consumed; then
/// `Ok(true)`). `-n` and `-l USER` are noted in `line`.
fn ssh_options(args: &[OsString], i: &mut usize, line: &mut SshLine) -> Result<bool, String> {
    const WITH_VALUE: &str = "oFiplEJcmb";
    const FLAGS: &str = "Ttnqx46vAaC";
    while let Some(a) = args.get(*i) {
        let s = a.to_string_lossy();
        if s == "--" {
            *i += 1;
            return Ok(true);
        }
        if !s.starts_with('-') || s.len() < 2 {
            return Ok(false);
        }
        let letters: Vec<char> = s.chars().skip(1).collect();
        let mut j = 0;
        while let Some(&c) = letters.get(j) {
            if WITH_VALUE.contains(c) {
                let attached: String = letters[j + 1..].iter().collect();
                let value = if attached.is_empty() {
                    *i += 1;
                    args.get(*i)
                        .ok_or_else(|| format!("option -{c} needs a value"))?
                        .to_string_lossy()
                        .into_owned()
                } else {
                    attached
                };
                if c == 'l' {
                    line.user = Some(value);
                }
                break;
            } else if FLAGS.contains(c) {
                line.null_stdin |= c == 'n';
                j += 1;
            } else {
                return Err(format!("unsupported option -{c}"));
            }
        }
        *i += 1;
    }
    Ok(false)
}

fn parse_ssh(args: &[OsString]) -> Result<SshLine, String> {
    let mut line = SshLine {
        user: None,
        host: String::new(),
        command: Vec::new(),
        null_stdin: false,
    };
    let mut i = 0;
    let terminated = ssh_options(args, &mut i, &mut line)?;
    let host = args.get(i).ok_or("no host given")?.to_string_lossy();
    match host.rsplit_once('@') {
        Some((user, h)) => {
            line.user = Some(user.to_owned());
            line.host = h.to_owned();
        }
        None => line.host = host.into_owned(),
    }
    i += 1;
    // Like OpenSSH, options may follow the host too (`ssh HOST -- COMMAND`),
    // unless `--` came before it.
    if !terminated {
        ssh_options(args, &mut i, &mut line)?;
    }
    line.command = args[i.min(args.len())..].to_vec();
    if line.command.is_empty() {
        return Err("no command given: an interactive login is not emulated".to_string());
    }
    if let Some(u) = &line.user
        && (u.is_empty() || !u.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)))
    {
        return Err(format!("{u:?} is not a user name"));
    }
    Ok(line)
}

/// Who runs the alias: `Ok(None)` for root; for a setuid-root copy run by
/// another user, that user's name (after becoming fully root: `ip netns
/// exec` needs it; the command itself runs as the login user).
fn take_root() -> Result<Option<String>, String> {
    use nix::unistd::{Gid, Uid, User, getuid, setresgid, setresuid};
    let caller = getuid();
    if caller.is_root() {
        return Ok(None);
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "root is needed to enter a server's namespace (run as root, or through a setuid-root copy of the alias)"
                .to_string(),
        );
    }
    let name = User::from_uid(caller)
        .ok()
        .flatten()
        .map(|u| u.name)
        .ok_or_else(|| format!("uid {caller} has no name"))?;
    setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).map_err(|e| format!("setresgid: {e}"))?;
    setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).map_err(|e| format!("setresuid: {e}"))?;
    Ok(Some(name))
}

/// For a setuid copy: the state root and its index must be root's alone
/// (a caller cannot point the alias at servers of its own making).
fn check_owned_by_root(root: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    for p in [root.to_path_buf(), root.join(INDEX_FILE)] {
        let m = std::fs::metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        if m.uid() != 0 || m.mode() & 0o022 != 0 {
            return Err(format!(
                "{} must be root's and writable by root only (run by another user, the alias trusts nothing else)",
                p.display()
            ));
        }
    }
    Ok(())
}

/// `scaleway-emulator-ssh [OPTIONS] [USER@]HOST COMMAND...`: COMMAND runs on
/// the server as the login user (USER, else the caller, as with ssh).
pub fn ssh_main(args: &[OsString], io: &mut Io<'_>) -> u8 {
    let prefix = std::env::var("SCALEWAY_EMULATOR_PREFIX").unwrap_or_else(|_| DEFAULT_PREFIX.to_string());
    let root = std::env::var_os("SCALEWAY_EMULATOR_STATE_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| default_state_root(&prefix));
    let ran = parse_ssh(args).and_then(|line| {
        let caller = take_root()?;
        if caller.is_some() {
            check_owned_by_root(&root)?;
        }
        let user = line.user.clone().or(caller).unwrap_or_else(|| "root".to_string());
        let place = resolve(&prefix, &root, &line.host)?;
        run(&place, &line.command, Some(&user), true, line.null_stdin)
    });
    match ran {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(io.stderr, "scaleway-emulator-ssh: {e}");
            255
        }
    }
}

/// Whether `name` is one of the network mode's namespaces for `prefix`.
pub fn is_ours(prefix: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    let hex8 = |s: &str| s.len() == 8 && s.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
    rest == "inet" || hex8(rest) || rest.strip_prefix("pn-").is_some_and(hex8)
}

/// `scaleway-emulator cleanup`.
pub fn cleanup_main(args: CleanupArgs, io: &mut Io<'_>) -> u8 {
    if let Err(e) = check_prefix(&args.prefix) {
        let _ = writeln!(io.stderr, "scaleway-emulator cleanup: {e}");
        return 2;
    }
    let root = args.state_root.unwrap_or_else(|| default_state_root(&args.prefix));
    let mut code = 0;
    for name in kernel::existing_namespaces() {
        if is_ours(&args.prefix, &name) {
            match kernel::ip(&["netns", "del", &name]) {
                Ok(()) => {
                    let _ = writeln!(io.stdout, "deleted namespace {name}");
                }
                Err(e) => {
                    let _ = writeln!(io.stderr, "scaleway-emulator cleanup: {e}");
                    code = 1;
                }
            }
        }
    }
    let entries: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    for p in entries {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let removed = if crate::util::is_uuid(&name) && p.is_dir() {
            for pid in super::frr::stop_leftovers(&p.join("frr")) {
                let _ = writeln!(io.stdout, "stopped FRR daemon {pid}");
            }
            std::fs::remove_dir_all(&p).is_ok()
        } else if name == INDEX_FILE || name == format!("{INDEX_FILE}.tmp") {
            std::fs::remove_file(&p).is_ok()
        } else {
            false
        };
        if removed {
            let _ = writeln!(io.stdout, "deleted {}", p.display());
        }
    }
    let _ = std::fs::remove_dir(&root);
    if root.parent() == Some(Path::new(DEFAULT_STATE_PARENT)) {
        let _ = std::fs::remove_dir(Path::new(DEFAULT_STATE_PARENT));
    }
    code
}

#[cfg(test)]
mod tests;
