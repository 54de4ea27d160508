//! The one way our tools run a command on a host: `ssh`.
//!
//! Used by the provisioner (host bootstrap) and by the public network
//! driver's frontend `clean` (the host part). What it guarantees:
//! - every word of the remote command is quoted for the remote login shell,
//!   whatever it is (`sh`, `bash`, `dash`, `zsh`, `tcsh`, `fish`: single
//!   quotes, a `'` as `'\''`); a word no quoting makes safe for all of them
//!   (a backslash, a `!`, a control character) is refused before anything
//!   runs;
//! - a connect timeout (`ConnectTimeout`) and an overall one: a hung remote
//!   command is killed and reported, never waited for forever;
//! - stdin is written while stdout and stderr are read (a chatty remote
//!   cannot deadlock a large stdin);
//! - a minimal environment: `PATH`, `HOME`, `USER`, `LOGNAME`, `LANG`,
//!   `LC_*`, `TZ`, `TMPDIR`, `SSH_AUTH_SOCK` and the emulator's
//!   `SCALEWAY_EMULATOR_*` pass; the Scaleway credentials (`SCW_*`),
//!   `ONE_AUTH` and everything else do not;
//! - the host is a validated name or address (never an option).
//!
//! Settings: `ONE_SCALEWAY_SSH` (the program, default `ssh`),
//! `ONE_SCALEWAY_SSH_OPTIONS` (extra options, split on whitespace),
//! `ONE_SCALEWAY_SSH_TIMEOUT` (the overall limit, seconds; each user has
//! its default).

use anyhow::{Result, anyhow, bail};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::driver::Env;
use crate::process;

/// What a remote command did (`status` as the local `ssh` ended).
pub use crate::process::Ran;

/// A configured `ssh`.
#[derive(Debug, Clone)]
pub struct Ssh {
    program: String,
    options: Vec<String>,
    user: Option<String>,
    timeout: Duration,
}

/// Quotes `word` for any remote login shell, or says why it cannot be.
pub fn quote(word: &str) -> Result<String> {
    // A backslash is an escape inside fish's single quotes; tcsh expands
    // `!` (history) even inside single quotes and in `tcsh -c` (measured).
    if let Some(c) = word.chars().find(|c| c.is_control() || *c == '\\' || *c == '!') {
        bail!("refusing to send {word:?} to a remote shell: {c:?} cannot be quoted for every shell");
    }
    Ok(format!("'{}'", word.replace('\'', r"'\''")))
}

/// Whether `host` can be given to ssh as a destination: a host name or an
/// address, never an option or a `user@`/`:port` form.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && !host.starts_with('-')
        && host.len() <= 253
        && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c))
}

const PASSED_ENV: [&str; 8] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "TZ",
    "TMPDIR",
    "SSH_AUTH_SOCK",
];

impl Ssh {
    /// From `ONE_SCALEWAY_SSH` and `ONE_SCALEWAY_SSH_OPTIONS`; `user` is the
    /// login (`None`: ssh's own choice), `timeout` the overall limit of a
    /// command.
    pub fn from_env(env: &Env, user: Option<&str>, timeout: Duration) -> Result<Self> {
        if let Some(u) = user
            && (u.is_empty()
                || u.starts_with('-')
                || !u.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)))
        {
            bail!("{u:?} is not a user name");
        }
        Ok(Self {
            program: env.get("ONE_SCALEWAY_SSH").unwrap_or("ssh").to_owned(),
            options: env
                .get("ONE_SCALEWAY_SSH_OPTIONS")
                .map(|o| o.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            user: user.map(str::to_owned),
            timeout,
        })
    }

    /// The program run (for messages).
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Runs `words` on `host`, `stdin` on its standard input; `defaults`
    /// are ssh options that come before the configured ones (which may
    /// override them). `Err` when ssh cannot run, a word cannot be quoted,
    /// or the overall time limit passes (then ssh is killed).
    pub fn run(&self, host: &str, defaults: &[&str], words: &[&str], stdin: &[u8]) -> Result<Ran> {
        let mut command = self.command(host, defaults, words)?;
        let destination = self.destination(host);
        match process::run(&mut command, stdin, self.timeout) {
            Ok(out) => Ok(Ran::from(out)),
            Err(e @ process::Failure::TimedOut { .. }) => Err(anyhow!(
                "{} {destination} did not finish within {} s: stopped (is the host reachable, and the command \
                 stuck?); its last output: {}",
                self.program,
                self.timeout.as_secs(),
                e.last_words()
            )),
            Err(e) => Err(anyhow!("cannot run {}: {e}", self.program)),
        }
    }

    /// The `ssh` command [`Ssh::run`] runs, for a caller with its own way of
    /// running it (the sandbox: interruptible): the host validated, every
    /// word quoted, the minimal environment.
    pub fn command(&self, host: &str, defaults: &[&str], words: &[&str]) -> Result<Command> {
        if !valid_host(host) {
            bail!("{host:?} is not a host name or address");
        }
        let quoted = words.iter().map(|w| quote(w)).collect::<Result<Vec<_>, _>>()?;
        let mut command = Command::new(&self.program);
        command
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=15"])
            .args(defaults)
            .args(&self.options)
            .arg(self.destination(host))
            .arg("--")
            .args(&quoted)
            .env_clear()
            .envs(minimal_env());
        Ok(command)
    }

    fn destination(&self, host: &str) -> String {
        match &self.user {
            Some(u) => format!("{u}@{host}"),
            None => host.to_owned(),
        }
    }
}

/// The overall time limit of a remote command: `ONE_SCALEWAY_SSH_TIMEOUT`
/// seconds, else `default`.
pub fn timeout_from_env(env: &Env, default: u64) -> Result<Duration> {
    match env.get("ONE_SCALEWAY_SSH_TIMEOUT") {
        None => Ok(Duration::from_secs(default)),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .ok_or_else(|| anyhow!("ONE_SCALEWAY_SSH_TIMEOUT={v:?} is not a number of seconds")),
    }
}

/// The environment ssh gets (see the module's documentation).
fn minimal_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| {
            PASSED_ENV.contains(&k.as_str()) || k.starts_with("LC_") || k.starts_with("SCALEWAY_EMULATOR_")
        })
        .collect()
}

/// Removes `host`'s entries from the known hosts file `known_hosts` (when
/// a host is deleted: a new server that gets its address must not be
/// refused as a changed key). A missing file is nothing to do.
pub fn forget_host(known_hosts: &Path, host: &str) -> Result<()> {
    if !valid_host(host) {
        bail!("{host:?} is not a host name or address");
    }
    if !known_hosts.exists() {
        return Ok(());
    }
    let out = process::run(
        Command::new("ssh-keygen")
            .arg("-R")
            .arg(host)
            .arg("-f")
            .arg(known_hosts)
            .env_clear()
            .envs(minimal_env()),
        b"",
        Duration::from_secs(60),
    )
    .map_err(|e| anyhow!("cannot run ssh-keygen: {e}"))?;
    if out.success() {
        // ssh-keygen keeps the previous file as known_hosts.old.
        let _ = std::fs::remove_file(known_hosts.with_extension("old"));
        Ok(())
    } else {
        Err(anyhow!(
            "ssh-keygen -R {host} -f {} failed: {}",
            known_hosts.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn words_are_single_quoted_for_any_shell() {
        assert_eq!(quote("sudo").unwrap(), "'sudo'");
        assert_eq!(quote("").unwrap(), "''");
        assert_eq!(
            quote("it's; rm -rf / $(x) `y` *").unwrap(),
            r"'it'\''s; rm -rf / $(x) `y` *'"
        );
        for bad in ["a\nb", "a\\b", "a\u{0}b", "\t", "!!"] {
            assert!(quote(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hosts_are_never_options() {
        for good in ["10.0.0.2", "edge-host1", "fd00::1", "62.210.16.2"] {
            assert!(valid_host(good), "{good}");
        }
        for bad in ["-oProxyCommand=x", "", "a b", "root@h", "h;x"] {
            assert!(!valid_host(bad), "{bad}");
        }
    }

    fn fake_ssh(script: &str) -> (crate::driver::Env, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("one-scaleway-ssh-{}-{}", std::process::id(), script.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let program = dir.join("ssh");
        std::fs::write(&program, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&program, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        (
            crate::driver::Env::from_pairs([("ONE_SCALEWAY_SSH", program.display().to_string())]),
            dir,
        )
    }

    #[test]
    fn a_stuck_command_is_stopped_at_the_time_limit() {
        let (env, dir) = fake_ssh("exec sleep 30");
        let ssh = Ssh::from_env(&env, None, Duration::from_millis(300)).unwrap();
        let started = Instant::now();
        let e = ssh.run("h", &[], &["true"], b"").unwrap_err().to_string();
        assert!(e.contains("did not finish within 0 s"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A remote that writes a lot before reading its stdin: no deadlock.
    #[test]
    fn a_chatty_remote_does_not_deadlock_a_large_stdin() {
        let (env, dir) = fake_ssh("head -c 1000000 /dev/zero; cat >/dev/null; echo done >&2");
        let ssh = Ssh::from_env(&env, None, Duration::from_secs(20)).unwrap();
        let ran = ssh.run("h", &[], &["x"], &vec![b'a'; 2_000_000]).unwrap();
        assert!(ran.success, "{ran:?}");
        assert_eq!(ran.stdout.len(), 1_000_000);
        assert_eq!(ran.stderr, "done\n");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// What ssh is given: options, the destination, `--`, quoted words;
    /// and only the minimal environment (no credentials).
    #[test]
    fn the_command_line_and_environment() {
        let (env, dir) = fake_ssh("printf '%s|' \"$@\"; env | sort >&2");
        let ssh = Ssh::from_env(&env, Some("ubuntu"), Duration::from_secs(20)).unwrap();
        let ran = ssh
            .run(
                "10.0.0.2",
                &["-o", "StrictHostKeyChecking=accept-new"],
                &["sudo", "a b"],
                b"",
            )
            .unwrap();
        assert_eq!(
            ran.stdout,
            "-o|BatchMode=yes|-o|ConnectTimeout=15|-o|StrictHostKeyChecking=accept-new|ubuntu@10.0.0.2|--|'sudo'|'a b'|"
        );
        for line in ran.stderr.lines() {
            let name = line.split('=').next().unwrap_or("");
            assert!(
                PASSED_ENV.contains(&name)
                    || name.starts_with("LC_")
                    || name.starts_with("SCALEWAY_EMULATOR_")
                    || name == "PWD"
                    || name == "SHLVL"
                    || name == "_",
                "{name} reached ssh"
            );
        }
        assert!(Ssh::from_env(&env, Some("-oProxyCommand=x"), Duration::from_secs(1)).is_err());
        assert!(ssh.run("-oProxyCommand=x", &[], &["true"], b"").is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_deleted_host_is_forgotten() {
        let dir = std::env::temp_dir().join(format!("one-scaleway-known-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("known_hosts");
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9uZS1zY2FsZXdheS10ZXN0LWtleS0wMDAwMDA";
        std::fs::write(&file, format!("10.0.0.2 {key}\n10.0.0.3 {key}\n")).unwrap();
        forget_host(&file, "10.0.0.2").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("10.0.0.3 {key}\n"));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no known_hosts.old left");
        forget_host(&file, "10.0.0.2").unwrap();
        forget_host(&dir.join("missing"), "10.0.0.2").unwrap();
        assert!(forget_host(&file, "-f").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
