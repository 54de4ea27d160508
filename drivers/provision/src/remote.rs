//! Running commands on the hosts over SSH (`ONE_SCALEWAY_SSH`, default
//! `ssh`; extra options from `ONE_SCALEWAY_SSH_OPTIONS`). The words of
//! every command are checked by [`crate::bootstrap::safe_word`] before they
//! get here; host addresses are typed.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use opennebula::driver::Env;

use crate::bootstrap::{Remote, RemoteOutput, safe_word};

/// The real runner.
#[derive(Debug, Clone)]
pub struct Ssh {
    program: String,
    options: Vec<String>,
    user: String,
}

impl Ssh {
    pub fn from_env(env: &Env, user: &str) -> Result<Self, String> {
        if !safe_word(user) || user.starts_with('-') || user.contains('@') {
            return Err(format!("--ssh-user {user:?} is not a user name"));
        }
        Ok(Self {
            program: env.get("ONE_SCALEWAY_SSH").unwrap_or("ssh").to_owned(),
            options: env
                .get("ONE_SCALEWAY_SSH_OPTIONS")
                .map(|o| o.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            user: user.to_owned(),
        })
    }
}

impl Remote for Ssh {
    fn run(&self, host: Ipv4Addr, argv: &[String], stdin: &[u8]) -> Result<RemoteOutput, String> {
        let mut child = Command::new(&self.program)
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=15",
                "-o",
                "StrictHostKeyChecking=accept-new",
            ])
            .args(&self.options)
            .arg(format!("{}@{host}", self.user))
            .arg("--")
            .args(argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.program))?;
        if let Some(mut pipe) = child.stdin.take() {
            // A remote side that exits early closes the pipe: its status says why.
            let _ = pipe.write_all(stdin);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("waiting for {}: {e}", self.program))?;
        Ok(RemoteOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
