//! Steps as the commands a host runs: rendered for `--dry-run`, and
//! executed through the [`Remote`] (SSH, or a fake in tests), every word
//! checked before it is sent.

use super::*;
use anyhow::{Result, anyhow, bail};

/// Prefixes `sudo -n` unless the SSH user is root.
pub fn privileged(user: &str, argv: &[String]) -> Vec<String> {
    if user == "root" || argv.first().is_some_and(|w| w == "sudo") {
        argv.to_vec()
    } else {
        let mut v = vec!["sudo".to_owned(), "-n".to_owned()];
        v.extend(argv.iter().cloned());
        v
    }
}

/// The `install` command that writes a file from stdin.
pub fn install_argv(path: &str, mode: u32, owner: Option<&str>) -> Vec<String> {
    let mut v = argv(&["install", "-m", &format!("{mode:04o}")]);
    if let Some(o) = owner {
        v.extend(argv(&["-o", o, "-g", o]));
    }
    v.extend(argv(&["/dev/stdin", path]));
    v
}

/// The plan as text (for `--dry-run` and golden files).
pub fn render(host: &HostFacts, steps: &[Step], user: &str) -> String {
    let mut s = format!(
        "host {} ({}, private {}):\n",
        host.name, host.public_ip, host.private_ip
    );
    for (i, step) in steps.iter().enumerate() {
        let _ = writeln!(s, "  {:>2}. [{}] {}", i + 1, step.phase.as_str(), step.title);
        render_action(&mut s, &step.action, user, "        ");
    }
    s
}

pub(super) fn render_action(s: &mut String, action: &Action, user: &str, indent: &str) {
    match action {
        Action::Run { argv, stdin } => {
            let _ = writeln!(s, "{indent}$ {}", privileged(user, argv).join(" "));
            if let Some(input) = stdin {
                let _ = writeln!(s, "{indent}  stdin:");
                for l in String::from_utf8_lossy(input).lines() {
                    let _ = writeln!(s, "{indent}  | {l}");
                }
            }
        }
        Action::Install {
            path,
            mode,
            owner,
            content,
            label,
        } => {
            let _ = writeln!(
                s,
                "{indent}$ {}",
                privileged(user, &install_argv(path, *mode, owner.as_deref())).join(" ")
            );
            match label {
                Some(l) => {
                    let _ = writeln!(s, "{indent}  stdin: {l}");
                }
                None => {
                    let _ = writeln!(s, "{indent}  stdin:");
                    for l in String::from_utf8_lossy(content).lines() {
                        let _ = writeln!(s, "{indent}  | {l}");
                    }
                }
            }
        }
        Action::Edit { path, edit, then } => {
            let what = match edit {
                Edit::FrrBgpd => "bgpd=yes".to_owned(),
                Edit::HostsBlock { marker, entries } => format!(
                    "the block \"# {marker}\": {}",
                    entries
                        .iter()
                        .map(|(ip, n)| format!("{ip} {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let _ = writeln!(s, "{indent}edit {path}: {what}");
            for t in then {
                let _ = writeln!(s, "{indent}  if changed: $ {}", privileged(user, t).join(" "));
            }
        }
        Action::Unless {
            argv,
            expect,
            otherwise,
        } => {
            let _ = writeln!(
                s,
                "{indent}unless `{}` shows {expect:?}:",
                privileged(user, argv).join(" ")
            );
            let deeper = format!("{indent}  ");
            for a in otherwise {
                render_action(s, a, user, &deeper);
            }
        }
    }
}

/// Output of a remote command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemoteOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs commands on hosts (SSH, or a fake in tests).
pub trait Remote: Sync {
    fn run(&self, host: Ipv4Addr, argv: &[String], stdin: &[u8]) -> Result<RemoteOutput>;

    /// Forgets what was learnt about a deleted host (its SSH host key).
    fn forget(&self, _host: Ipv4Addr) -> Result<()> {
        Ok(())
    }
}

/// Runs a plan on a host; `vnm` is the binary shipped by the `scaleway-vnm` step.
pub fn execute(
    remote: &dyn Remote,
    host: &HostFacts,
    steps: &[Step],
    user: &str,
    vnm: &[u8],
    progress: &dyn Fn(&str),
) -> Result<()> {
    for step in steps {
        progress(&format!("{} ({})", step.title, step.phase.as_str()));
        execute_action(remote, host, &step.action, user, vnm).map_err(|e| anyhow!("{}: {e}", step.title))?;
    }
    Ok(())
}

pub(super) fn checked(remote: &dyn Remote, host: Ipv4Addr, argv: &[String], stdin: &[u8]) -> Result<RemoteOutput> {
    if let Some(bad) = argv.iter().find(|w| !safe_word(w)) {
        bail!("refusing to send {bad:?} to a remote shell");
    }
    let out = remote.run(host, argv, stdin)?;
    if out.success {
        Ok(out)
    } else {
        let why = out
            .stderr
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("no message")
            .to_owned();
        Err(anyhow!("`{}` failed on {host}: {why}", argv.join(" ")))
    }
}

pub(super) fn execute_action(
    remote: &dyn Remote,
    host: &HostFacts,
    action: &Action,
    user: &str,
    vnm: &[u8],
) -> Result<()> {
    let ip = host.public_ip;
    match action {
        Action::Run { argv, stdin } => {
            checked(remote, ip, &privileged(user, argv), stdin.as_deref().unwrap_or(&[]))?;
        }
        Action::Install {
            path,
            mode,
            owner,
            content,
            label,
        } => {
            let bytes = if label.is_some() { vnm } else { content.as_slice() };
            checked(
                remote,
                ip,
                &privileged(user, &install_argv(path, *mode, owner.as_deref())),
                bytes,
            )?;
        }
        Action::Edit { path, edit, then } => {
            let current = checked(remote, ip, &privileged(user, &argv(&["cat", path])), &[])?.stdout;
            let wanted = match edit {
                Edit::FrrBgpd => edit_frr_daemons(&current),
                Edit::HostsBlock { marker, entries } => edit_hosts(&current, marker, entries),
            };
            if wanted != current {
                checked(
                    remote,
                    ip,
                    &privileged(user, &install_argv(path, 0o644, None)),
                    wanted.as_bytes(),
                )?;
                for t in then {
                    checked(remote, ip, &privileged(user, t), &[])?;
                }
            }
        }
        Action::Unless {
            argv,
            expect,
            otherwise,
        } => {
            let seen = remote.run(ip, &privileged(user, argv), &[])?;
            if !(seen.success && seen.stdout.contains(expect.as_str())) {
                for a in otherwise {
                    execute_action(remote, host, a, user, vnm)?;
                }
            }
        }
    }
    Ok(())
}
