//! Running `ip`, `nft` and `sysctl`: argument vectors only (never a shell),
//! stdin piped, a time limit, and errors that keep the tool's stderr and say
//! what to do.
//!
//! What needs root goes through [`Tools::run_root`]: as root, the tool
//! itself; as another user (oneadmin), `sudo -n` of the root helper
//! ([`ROOT_HELPER`], `scaleway-vnm root`, installed root-owned by the host
//! bootstrap and the only command the shipped sudoers rules allow), which
//! reads a typed request on stdin, checks it, and runs the tool.

use std::fmt;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opennebula::driver::Env;
use opennebula::process;

/// Environment variable: how to get the privileges `ip`, `nft` and sysctl
/// writes need. `auto` (default): nothing as root, else `sudo -n` of the
/// root helper; `never`; `always` (the helper even as root).
pub const SUDO_ENV: &str = "ONE_SCALEWAY_SUDO";

/// Where the host bootstrap installs the root helper (root-owned): the
/// shipped sudoers rules allow `sudo -n ROOT_HELPER root` and nothing else.
pub const ROOT_HELPER: &str = "/usr/local/libexec/one-scaleway/scaleway-vnm";

/// Environment variable: another path for the root helper (the sudoers
/// rules must allow it).
pub const ROOT_HELPER_ENV: &str = "ONE_SCALEWAY_ROOT_HELPER";

/// Environment variable: seconds one tool may run (default 60).
pub const TIMEOUT_ENV: &str = "ONE_SCALEWAY_TOOL_TIMEOUT";

/// A failure, as one readable message (the tool's stderr included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyError {
    pub message: String,
    /// For an `ip -batch -` that failed: the 1-based line that failed (the
    /// lines before it were applied).
    pub failed_line: Option<usize>,
    /// The kernel refused the plan's nft transaction (nothing of it
    /// changed, and the steps before it were undone).
    pub nft_refused: bool,
}

impl ApplyError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            failed_line: None,
            nft_refused: false,
        }
    }
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApplyError {}

impl From<opennebula::store::StoreError> for ApplyError {
    fn from(e: opennebula::store::StoreError) -> Self {
        Self::new(e.message)
    }
}

/// What one run produced.
pub use opennebula::process::Ran;

/// How tools are run.
#[derive(Debug)]
pub struct Tools {
    prefix: Vec<String>,
    timeout: Duration,
    spawned: AtomicUsize,
}

/// The effective user id (`geteuid`, through nix).
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

impl Tools {
    /// Tools run directly (as the current user), with a time limit.
    pub fn direct(timeout: Duration) -> Self {
        Self {
            prefix: Vec::new(),
            timeout,
            spawned: AtomicUsize::new(0),
        }
    }

    /// From `ONE_SCALEWAY_SUDO` and `ONE_SCALEWAY_TOOL_TIMEOUT`.
    pub fn from_env(env: &Env) -> Result<Self, ApplyError> {
        let sudo = match env.get(SUDO_ENV).map(str::to_ascii_lowercase).as_deref() {
            None | Some("auto") => effective_uid() != 0,
            Some("never") => false,
            Some("always") => true,
            Some(other) => {
                return Err(ApplyError::new(format!(
                    "{SUDO_ENV}={other:?} is not one of auto, never, always"
                )));
            }
        };
        let timeout = match env.get(TIMEOUT_ENV) {
            None => 60,
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| ApplyError::new(format!("{TIMEOUT_ENV}={v:?} is not a number of seconds")))?,
        };
        let mut tools = Self::direct(Duration::from_secs(timeout));
        if sudo {
            let helper = env.get(ROOT_HELPER_ENV).unwrap_or(ROOT_HELPER);
            tools.prefix = vec!["sudo".into(), "-n".into(), helper.into(), "root".into()];
        }
        Ok(tools)
    }

    /// Whether what needs root goes through `sudo` and the root helper.
    pub fn uses_sudo(&self) -> bool {
        !self.prefix.is_empty()
    }

    /// Runs `program args` with `stdin` as root: directly when this process
    /// may (root, or `ONE_SCALEWAY_SUDO=never`), else through the root
    /// helper with `request` (the same change, typed, as JSON) on its stdin.
    /// The helper prints what the tool printed and exits with its status.
    pub fn run_root(
        &self,
        program: &str,
        args: &[&str],
        stdin: &[u8],
        request: impl FnOnce() -> String,
    ) -> Result<Ran, ApplyError> {
        match self.prefix.split_first() {
            None => self.run(program, args, stdin),
            Some((sudo, rest)) => {
                let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
                let shown = self.show(program, args);
                self.spawn(sudo, &rest, request().as_bytes(), &shown)
            }
        }
    }

    /// The time limit of one tool (and of one rtnetlink answer).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How many processes were started so far.
    pub fn spawned(&self) -> usize {
        self.spawned.load(Ordering::Relaxed)
    }

    /// `program args` as one would type it (for messages), and how it ran
    /// when it went through the root helper.
    pub fn show(&self, program: &str, args: &[&str]) -> String {
        let mut all = vec![program];
        all.extend_from_slice(args);
        let text = all.join(" ");
        if self.uses_sudo() {
            format!("{text}` through `{}", self.prefix.join(" "))
        } else {
            text
        }
    }

    /// Runs `program args` with `stdin`, waits at most the time limit, and
    /// returns what it printed. A tool that cannot start, or times out, is
    /// an error; a tool that fails is a [`Ran`] with `success: false`.
    /// Runs as the current user (what needs no root: reading links, routes,
    /// neighbours; and the root helper itself).
    pub fn run(&self, program: &str, args: &[&str], stdin: &[u8]) -> Result<Ran, ApplyError> {
        let mut all = vec![program];
        all.extend_from_slice(args);
        self.spawn(program, args, stdin, &all.join(" "))
    }

    fn spawn(&self, exe: &str, rest: &[&str], stdin: &[u8], shown: &str) -> Result<Ran, ApplyError> {
        let mut cmd = Command::new(exe);
        cmd.args(rest).env("LC_ALL", "C");
        let result = process::run(&mut cmd, stdin, self.timeout);
        if !matches!(result, Err(process::Failure::Spawn(_))) {
            self.spawned.fetch_add(1, Ordering::Relaxed);
        }
        match result {
            Ok(out) => Ok(Ran::from(out)),
            Err(process::Failure::Spawn(e)) => {
                let hint = match (e.kind(), exe) {
                    (std::io::ErrorKind::NotFound, "ip") => " (install iproute2)",
                    (std::io::ErrorKind::NotFound, "nft") => " (install nftables)",
                    (std::io::ErrorKind::NotFound, "sudo") => {
                        " (install sudo, or run the driver as root with ONE_SCALEWAY_SUDO=never)"
                    }
                    (std::io::ErrorKind::NotFound, _) => " (not found in PATH)",
                    _ => "",
                };
                Err(ApplyError::new(format!("cannot run `{shown}`: {e}{hint}")))
            }
            Err(e @ process::Failure::TimedOut { .. }) => Err(ApplyError::new(format!(
                "`{shown}` did not finish within {} s and was stopped (is the host overloaded, or the tool stuck \
                 on a lock?); {TIMEOUT_ENV} sets the limit; its last output: {}",
                self.timeout.as_secs(),
                e.last_words()
            ))),
            Err(e) => Err(ApplyError::new(format!("`{shown}`: {e}"))),
        }
    }

    /// The error for a tool that failed: its stderr on one line, and what to
    /// do when the cause is a common one.
    /// Runs `ip [-force] -batch -` with one line per operation (`args`
    /// gives its arguments). On failure the error names the failed
    /// operation (`failed_line`, 1-based): with `keep_going` the others
    /// were still applied, without it the ones before it were.
    /// `request` is the same batch for the root helper (see [`Tools::run_root`]).
    pub fn ip_batch<T: std::fmt::Display>(
        &self,
        ops: &[T],
        args: impl Fn(&T) -> Vec<String>,
        keep_going: bool,
        request: impl FnOnce() -> String,
    ) -> Result<(), ApplyError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut script = String::new();
        for op in ops {
            script.push_str(&args(op).join(" "));
            script.push('\n');
        }
        let flags: &[&str] = if keep_going {
            &["-force", "-batch", "-"]
        } else {
            &["-batch", "-"]
        };
        let ran = self.run_root("ip", flags, script.as_bytes(), request)?;
        if ran.success {
            return Ok(());
        }
        let mut e = self.failure("ip", flags, &ran);
        // "Command failed -:3": line 3 failed.
        e.failed_line = ran
            .stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix("Command failed -:"))
            .and_then(|n| n.trim().parse().ok());
        if let Some(op) = e.failed_line.and_then(|n| ops.get(n.wrapping_sub(1))) {
            e.message.push_str(&format!(" (at `ip {op}`)"));
        }
        Err(e)
    }

    pub fn failure(&self, program: &str, args: &[&str], ran: &Ran) -> ApplyError {
        let stderr = ran.stderr.split_whitespace().collect::<Vec<_>>().join(" ");
        let hint = if stderr.contains("Operation not permitted") || stderr.contains("a password is required") {
            if self.uses_sudo() {
                " (the driver runs what needs root through `sudo -n` of its root helper: install the helper and \
                 the sudoers rules of share/host/, as scaleway-provision's host bootstrap does)"
            } else {
                " (network changes need root: run the driver as root, or set ONE_SCALEWAY_SUDO=always)"
            }
        } else {
            ""
        };
        ApplyError::new(format!(
            "`{}` failed ({}): {}{hint}",
            self.show(program, args),
            ran.status,
            if stderr.is_empty() { "no error message" } else { &stderr }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_with_stdin_and_large_output() {
        let tools = Tools::direct(Duration::from_secs(10));
        let input = "x".repeat(300_000);
        let ran = tools.run("cat", &[], input.as_bytes()).unwrap();
        assert!(ran.success);
        assert_eq!(ran.stdout.len(), 300_000);
        assert_eq!(tools.spawned(), 1);
    }

    #[test]
    fn failures_keep_stderr_and_missing_tools_say_so() {
        let tools = Tools::direct(Duration::from_secs(10));
        let ran = tools.run("ls", &["/nonexistent/one-scaleway"], b"").unwrap();
        assert!(!ran.success);
        let e = tools.failure("ls", &["/nonexistent/one-scaleway"], &ran).to_string();
        assert!(
            e.starts_with("`ls /nonexistent/one-scaleway` failed (exit status: 2): "),
            "{e}"
        );
        assert!(e.contains("No such file or directory"), "{e}");
        let e = tools
            .run("one-scaleway-no-such-tool", &[], b"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot run `one-scaleway-no-such-tool`") && e.contains("not found in PATH"),
            "{e}"
        );
    }

    #[test]
    fn slow_tools_are_stopped() {
        let tools = Tools::direct(Duration::from_millis(200));
        let e = tools.run("sleep", &["5"], b"").unwrap_err().to_string();
        assert!(e.contains("did not finish within"), "{e}");
    }

    #[test]
    fn the_shipped_sudoers_rules_name_the_root_helper() {
        let rules = include_str!("../../../share/host/sudoers-one-scaleway");
        assert!(rules.contains(&format!("NOPASSWD: {ROOT_HELPER} root\n")), "{rules}");
    }

    #[test]
    fn sudo_setting() {
        let env = |v: &str| Env::from_pairs([(SUDO_ENV, v)]);
        assert!(Tools::from_env(&env("always")).unwrap().uses_sudo());
        assert!(!Tools::from_env(&env("never")).unwrap().uses_sudo());
        assert!(Tools::from_env(&env("maybe")).is_err());
        let t = Tools::from_env(&env("always")).unwrap();
        assert_eq!(
            t.show("nft", &["-f", "-"]),
            "nft -f -` through `sudo -n /usr/local/libexec/one-scaleway/scaleway-vnm root"
        );
    }
}
