//! Running the host part of an action on a host, over SSH.
//!
//! `ssh -o BatchMode=yes -o ConnectTimeout=15 [ONE_SCALEWAY_SSH_OPTIONS] <host>
//! <remote dir>/vnm/scaleway/<action>`, the base64 VM document on stdin.
//! The remote command is a constant path (no attribute of the VM is in it);
//! the host name is a validated [`HostName`], which never starts with `-`.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, anyhow, bail};
use opennebula::attr::HostName;
use opennebula::driver::Env;

/// Runs a host-side action on a host.
pub trait HostRunner {
    fn run(&self, host: &HostName, action: &str, stdin: &[u8]) -> anyhow::Result<()>;
}

/// The real runner: `ssh`.
#[derive(Debug, Clone)]
pub struct Ssh {
    program: String,
    options: Vec<String>,
    remote_dir: String,
}

impl Ssh {
    pub fn from_env(env: &Env) -> anyhow::Result<Self> {
        let remote_dir = env
            .get("ONE_SCALEWAY_REMOTE_DIR")
            .unwrap_or("/var/tmp/one")
            .trim_end_matches('/')
            .to_owned();
        let safe = remote_dir.starts_with('/')
            && remote_dir
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/-_.".contains(c))
            && !remote_dir.split('/').any(|p| p == "..");
        if !safe {
            bail!(
                "ONE_SCALEWAY_REMOTE_DIR={remote_dir:?} must be an absolute path of letters, digits, '/', '-', '_', '.'"
            );
        }
        Ok(Self {
            program: env.get("ONE_SCALEWAY_SSH").unwrap_or("ssh").to_owned(),
            options: env
                .get("ONE_SCALEWAY_SSH_OPTIONS")
                .map(|o| o.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            remote_dir,
        })
    }
}

impl HostRunner for Ssh {
    fn run(&self, host: &HostName, action: &str, stdin: &[u8]) -> anyhow::Result<()> {
        if !action.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            bail!("{action:?} is not an action name");
        }
        let remote = format!("{}/vnm/scaleway/{action}", self.remote_dir);
        let mut child = Command::new(&self.program)
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=15"])
            .args(&self.options)
            .arg(host.as_str())
            .arg(&remote)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", self.program))?;
        if let Some(mut pipe) = child.stdin.take() {
            // A remote side that exits early closes the pipe: its exit status says why.
            let _ = pipe.write_all(stdin);
        }
        let out = child.wait_with_output().context("waiting for ssh")?;
        if out.status.success() {
            return Ok(());
        }
        // The remote driver's error lines (not its log lines) say what failed.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let reason: Vec<&str> = stderr
            .lines()
            .filter(|l| {
                !["ERROR:", "WARN:", "INFO:", "DEBUG:"].iter().any(|p| l.starts_with(p)) && !l.trim().is_empty()
            })
            .collect();
        Err(anyhow!(
            "{} {host} {remote} failed ({}): {}",
            self.program,
            out.status,
            if reason.is_empty() {
                "no message".to_owned()
            } else {
                reason.join(" ")
            }
        ))
    }
}
