//! Running commands on the hosts over SSH ([`opennebula::ssh`]: every word
//! quoted for the remote shell, time limits, minimal environment). The
//! words of every command are also checked by
//! [`crate::bootstrap::safe_word`] before they get here; host addresses are
//! typed. New host keys are accepted (`StrictHostKeyChecking=accept-new`)
//! and forgotten when a host is deleted (`Remote::forget`).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{Result, anyhow};
use opennebula::driver::Env;

use crate::bootstrap::{Remote, RemoteOutput};

/// How long one bootstrap command may take by default (package installs
/// included): `ONE_SCALEWAY_SSH_TIMEOUT` seconds otherwise.
const DEFAULT_TIMEOUT: u64 = 1800;

/// The real runner.
#[derive(Debug, Clone)]
pub struct Ssh {
    ssh: opennebula::ssh::Ssh,
    /// `~/.ssh/known_hosts` of the user running the provisioner.
    known_hosts: Option<PathBuf>,
}

impl Ssh {
    pub fn from_env(env: &Env, user: &str) -> Result<Self> {
        let timeout = opennebula::ssh::timeout_from_env(env, DEFAULT_TIMEOUT)?;
        let ssh = opennebula::ssh::Ssh::from_env(env, Some(user), timeout)
            .map_err(|_| anyhow!("--ssh-user {user:?} is not a user name"))?;
        Ok(Self {
            ssh,
            known_hosts: env.get("HOME").map(|h| PathBuf::from(h).join(".ssh/known_hosts")),
        })
    }
}

impl Remote for Ssh {
    fn run(&self, host: Ipv4Addr, argv: &[String], stdin: &[u8]) -> Result<RemoteOutput> {
        let words: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = self.ssh.run(
            &host.to_string(),
            &["-o", "StrictHostKeyChecking=accept-new"],
            &words,
            stdin,
        )?;
        Ok(RemoteOutput {
            success: out.success,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    /// Removes the host's key from `known_hosts`: a server that gets the
    /// address later is not refused as a changed key.
    fn forget(&self, host: Ipv4Addr) -> Result<()> {
        match &self.known_hosts {
            Some(file) => opennebula::ssh::forget_host(file, &host.to_string()),
            None => Ok(()),
        }
    }
}
