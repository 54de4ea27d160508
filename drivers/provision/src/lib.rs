//! `scaleway-provision`: an edge cluster's whole lifecycle on Scaleway
//! (VPC, private network, public gateway, SSH keys, Elastic Metal servers),
//! and the OpenNebula objects to register for it.
//!
//! This version has `opennebula-config`, which registers our drivers in
//! OpenNebula's configuration (what `install.sh` runs), and `validate`,
//! which checks a provision description (syntax, values, then the offer,
//! stock and OS at Scaleway); the cluster commands are not available yet.

pub mod check;
pub mod description;
pub mod oneconf;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use opennebula::cli::parse_args;
use opennebula::driver::{EXIT_FAILURE, Env, Io};

const PROGRAM: &str = "scaleway-provision";

/// Creates, grows, shrinks and deletes OpenNebula edge clusters on Scaleway Elastic Metal.
#[derive(Debug, Parser)]
#[command(name = PROGRAM, version, after_help = "\
Status: opennebula-config and validate are available in this version. The provision driver will create a \
cluster from a provision description (create, with --dry-run), add and remove hosts and public IPs, \
show it, and delete it with everything it created.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a provision description: its syntax and values, then the offer, stock and OS at Scaleway.
    Validate {
        /// The provision description (YAML).
        file: PathBuf,
        /// Where provider files are (default: the installed ones).
        #[arg(long)]
        providers: Option<PathBuf>,
    },
    /// Register the scaleway drivers in oned.conf and vmm_execrc (prints the changes; --write applies them).
    #[command(name = "opennebula-config")]
    OpennebulaConfig {
        /// oned.conf to edit.
        #[arg(long, default_value = "/etc/one/oned.conf")]
        oned_conf: PathBuf,
        /// vmm_execrc to edit.
        #[arg(long, default_value = "/etc/one/vmm_exec/vmm_execrc")]
        vmm_execrc: PathBuf,
        /// Write the files (after a backup) instead of printing the changes.
        #[arg(long)]
        write: bool,
        /// Remove our registration instead of adding it.
        #[arg(long)]
        remove: bool,
    },
}

/// Replaces `path` with `text` atomically, keeping its mode, after copying
/// the old content to `<path>.one-scaleway.bak`.
fn replace_file(path: &Path, text: &str) -> std::io::Result<PathBuf> {
    let backup = PathBuf::from(format!("{}.one-scaleway.bak", path.display()));
    std::fs::copy(path, &backup)?;
    let meta = std::fs::metadata(path)?;
    let tmp = PathBuf::from(format!("{}.one-scaleway.tmp", path.display()));
    std::fs::write(&tmp, text)?;
    std::fs::set_permissions(&tmp, meta.permissions())?;
    {
        use std::os::unix::fs::MetadataExt;
        let _ = std::os::unix::fs::chown(&tmp, Some(meta.uid()), Some(meta.gid()));
    }
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(backup)
}

fn opennebula_config(oned: &Path, rc: &Path, write: bool, remove: bool, io: &mut Io<'_>) -> Result<(), String> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let edits = [
        (oned, oneconf::edit_oned_conf(&read(oned)?, !remove)?),
        (rc, oneconf::edit_vmm_execrc(&read(rc)?, !remove)?),
    ];
    let mut any = false;
    for (path, edit) in &edits {
        for change in &edit.changes {
            any = true;
            let _ = writeln!(io.stdout, "{}: {change}", path.display());
        }
        if write && !edit.changes.is_empty() {
            let backup = replace_file(path, &edit.text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            let _ = writeln!(
                io.stdout,
                "{}: written (the previous version is in {})",
                path.display(),
                backup.display()
            );
        }
    }
    if !any {
        let _ = writeln!(io.stdout, "nothing to change");
    } else if !write {
        let _ = writeln!(io.stdout, "(not written: run again with --write to apply)");
    } else {
        let _ = writeln!(
            io.stdout,
            "restart OpenNebula (systemctl restart opennebula) for oned to read it"
        );
    }
    Ok(())
}

/// Where the installed provider files are: `$ONE_LOCATION/share/scaleway/providers`,
/// else `/usr/share/one/scaleway/providers`.
fn default_providers(env: &Env) -> PathBuf {
    match env.get("ONE_LOCATION") {
        Some(one) => Path::new(one).join("share/scaleway/providers"),
        None => PathBuf::from("/usr/share/one/scaleway/providers"),
    }
}

fn validate(file: &Path, providers: &Path, env: &Env, io: &mut Io<'_>) -> Result<(), Vec<String>> {
    let text = std::fs::read_to_string(file).map_err(|e| vec![format!("cannot read {}: {e}", file.display())])?;
    let read_provider = |name: &str| {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) || name.starts_with('.') {
            return None;
        }
        std::fs::read_to_string(providers.join(format!("{name}.yaml"))).ok()
    };
    let d = description::parse(&text, &read_provider)?;
    let from_env = |k: &str| env.get(k).map(str::to_owned);
    let fetch = |_: u64| Err("no provision id".to_owned());
    let mut credentials = scaleway::config::resolve_for(&from_env, d.profile.as_deref(), None, Box::new(fetch))
        .map_err(|e| vec![e.to_string()])?;
    credentials.zone = Some(d.zone.clone());
    let tuning = scaleway::Tuning::from_env(&from_env).map_err(|e| vec![e.to_string()])?;
    let client = scaleway::Client::new(credentials, tuning.options).map_err(|e| vec![e.to_string()])?;
    let checked = check::check(&d, &client)?;
    for w in &checked.warnings {
        let _ = writeln!(io.stderr, "WARN: {PROGRAM} validate: {w}");
    }
    let _ = writeln!(
        io.stdout,
        "{}: {} {} host(s) {} ({}) with {} {}, {} public IP(s), private network {}, cluster {}: valid",
        d.name,
        d.hosts,
        match d.hypervisor {
            description::Hypervisor::Kvm => "KVM",
            description::Hypervisor::Lxc => "LXC",
        },
        d.offer,
        d.period.as_str(),
        d.os.0,
        d.os.1,
        d.public_ips,
        d.private_cidr,
        d.cluster_name
    );
    Ok(())
}

/// Runs the program with the given argv, environment and streams; returns the exit code.
pub fn main_with(argv: Vec<OsString>, env: &Env, mut io: Io<'_>) -> u8 {
    let cli: Cli = match parse_args(argv, &mut io) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match cli.command {
        Command::Validate { file, providers } => {
            let providers = providers.unwrap_or_else(|| default_providers(env));
            match validate(&file, &providers, env, &mut io) {
                Ok(()) => 0,
                Err(errors) => {
                    let _ = writeln!(io.stderr, "{}: {}", file.display(), errors.join("; "));
                    EXIT_FAILURE
                }
            }
        }
        Command::OpennebulaConfig {
            oned_conf,
            vmm_execrc,
            write,
            remove,
        } => match opennebula_config(&oned_conf, &vmm_execrc, write, remove, &mut io) {
            Ok(()) => 0,
            Err(e) => {
                let _ = writeln!(io.stderr, "{e}");
                EXIT_FAILURE
            }
        },
    }
}
