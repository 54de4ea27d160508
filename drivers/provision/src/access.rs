//! How the hosts are reached and bootstrapped: the frontend's public keys,
//! the scaleway-vnm binary they get, the options of `--ssh-key`, `--skip`...

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use opennebula::driver::Env;

use crate::bootstrap::Phase as BootPhase;
use crate::cli::HostAccess;
use crate::ops::BootstrapOptions;
use crate::progress;

/// The frontend's public keys: the given files, else `~/.ssh/*.pub`.
pub(crate) fn public_keys(files: &[PathBuf], env: &Env) -> Result<Vec<String>> {
    let files: Vec<PathBuf> = if files.is_empty() {
        let home = PathBuf::from(env.get("HOME").unwrap_or("/var/lib/one"));
        let dir = home.join(".ssh");
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "pub"))
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        if found.is_empty() {
            bail!(
                "no public key in {}: create one (ssh-keygen) or give --ssh-key FILE",
                dir.display()
            );
        }
        found
    } else {
        files.to_vec()
    };
    let mut keys = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| anyhow!("cannot read {}: {e}", f.display()))?;
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let mut words = line.split_whitespace();
            let (Some(kind), Some(data)) = (words.next(), words.next()) else {
                bail!("{}: {line:?} is not a public key", f.display());
            };
            let kind_ok = kind.chars().all(|c| c.is_ascii_alphanumeric() || "-@.".contains(c));
            let data_ok = data.chars().all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c));
            if !kind_ok || !data_ok {
                bail!("{}: not an OpenSSH public key line", f.display());
            }
            keys.push(format!("{kind} {data}"));
        }
    }
    if keys.is_empty() {
        bail!("no public key found: give --ssh-key FILE");
    }
    Ok(keys)
}

/// Where the installed scaleway-vnm is; else the one beside this program.
pub(crate) fn default_vnm(env: &Env) -> PathBuf {
    let remotes = match env.get("ONE_LOCATION") {
        Some(one) => Path::new(one).join("var/remotes"),
        None => PathBuf::from("/var/lib/one/remotes"),
    };
    let installed = remotes.join("vnm/scaleway_evpn/scaleway-vnm");
    if installed.exists() {
        return installed;
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("scaleway-vnm")))
        .filter(|p| p.exists())
        .unwrap_or(installed)
}

pub(crate) fn boot_options(access: &HostAccess, env: &Env, need_keys: bool) -> Result<BootstrapOptions> {
    let skip = access
        .skip
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            BootPhase::parse(s).ok_or_else(|| anyhow!("--skip {s:?}: one of packages, access, services, network, evpn"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BootstrapOptions {
        ssh_user: access.ssh_user.clone(),
        skip,
        authorized_keys: if need_keys {
            public_keys(&access.ssh_keys, env)?
        } else {
            Vec::new()
        },
        vnm: access.vnm.clone().unwrap_or_else(|| default_vnm(env)),
    })
}

pub(crate) fn progress_sink() -> Box<dyn progress::Progress> {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        Box::new(progress::Terminal::new(Box::new(std::io::stderr())))
    } else {
        Box::new(progress::Lines::new(Box::new(std::io::stderr())))
    }
}
