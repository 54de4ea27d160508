//! Running the host part of an action on a host, over SSH
//! ([`opennebula::ssh`]: quoting, time limits, minimal environment):
//! `ssh -o BatchMode=yes -o ConnectTimeout=15 [ONE_SCALEWAY_SSH_OPTIONS]
//! <host> -- '<remote dir>/vnm/scaleway/<action>'`, the base64 VM document
//! on stdin. The remote command is a constant path (no attribute of the VM
//! is in it); the host name is a validated [`HostName`].

use anyhow::{anyhow, bail};
use opennebula::attr::HostName;
use opennebula::driver::Env;

/// Runs a host-side action on a host.
pub trait HostRunner {
    fn run(&self, host: &HostName, action: &str, stdin: &[u8]) -> anyhow::Result<()>;
}

/// How long the host part may take by default (it waits up to 120 s for
/// the host lock): `ONE_SCALEWAY_SSH_TIMEOUT` seconds otherwise.
const DEFAULT_TIMEOUT: u64 = 300;

/// The real runner: `ssh`.
#[derive(Debug, Clone)]
pub struct Ssh {
    ssh: opennebula::ssh::Ssh,
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
        let timeout = opennebula::ssh::timeout_from_env(env, DEFAULT_TIMEOUT).map_err(|e| anyhow!(e))?;
        Ok(Self {
            ssh: opennebula::ssh::Ssh::from_env(env, None, timeout).map_err(|e| anyhow!(e))?,
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
        let program = self.ssh.program();
        let out = self
            .ssh
            .run(host.as_str(), &[], &[&remote], stdin)
            .map_err(|e| anyhow!(e))?;
        if out.success {
            return Ok(());
        }
        // The remote driver's error lines (not its log lines) say what failed.
        let reason: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| {
                !["ERROR:", "WARN:", "INFO:", "DEBUG:"].iter().any(|p| l.starts_with(p)) && !l.trim().is_empty()
            })
            .collect();
        Err(anyhow!(
            "{program} {host} {remote} failed ({}): {}",
            out.status,
            if reason.is_empty() {
                "no message".to_owned()
            } else {
                reason.join(" ")
            }
        ))
    }
}
