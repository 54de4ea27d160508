//! `scaleway-provision`: an edge cluster's whole lifecycle on Scaleway
//! (VPC, private network, public gateway, SSH keys, Elastic Metal servers),
//! the hosts' bootstrap over SSH, and the OpenNebula objects registered for
//! it through oned's XML-RPC API; and the providers provisions are made with.
//!
//! Commands ([`cli`]): `provider create|list|show|update|delete`
//! ([`provider_cmd`]), `validate`, `create [--dry-run]`, `show`, `list`,
//! `configure`, `host add|configure|delete`, `ip add|delete`, `delete`
//! ([`commands`]), and `opennebula-config` (registers our drivers in
//! OpenNebula's configuration; what `install.sh` runs). The flow of each:
//! read the description or the provision's record (`state`), check at
//! Scaleway (`check`), then the steps of `ops`, each recorded as soon as it
//! is done; what is printed comes from `report`.

pub mod access;
pub mod adopt;
pub mod bootstrap;
pub mod check;
pub(crate) mod cli;
pub mod cloud;
pub mod commands;
pub mod description;
pub mod dry_run;
pub mod listing;
pub mod one;
pub mod oneconf;
pub mod ops;
pub mod progress;
pub mod provider;
pub mod provider_cmd;
pub mod reach;
pub mod record;
pub mod remote;
pub mod report;
pub mod state;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use opennebula::cli::parse_args;
use opennebula::driver::{EXIT_FAILURE, Env, Io};

use crate::cli::{Cli, Command, HostCommand, IpCommand};
use crate::commands::Op;

pub(crate) const PROGRAM: &str = "scaleway-provision";

/// Replaces `path` with `text` atomically, keeping its mode and owner,
/// after saving the old content as `<path>.one-scaleway.bak` (same mode
/// and owner: `oned.conf` holds the database password, and neither file is
/// ever readable by anyone else, even briefly).
fn replace_file(path: &Path, text: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let backup = PathBuf::from(format!("{}.one-scaleway.bak", path.display()));
    let meta = std::fs::metadata(path)?;
    let mode = meta.permissions().mode() & 0o7777;
    let owner = Some((meta.uid(), meta.gid()));
    opennebula::fsutil::write_atomic_as(&backup, &std::fs::read(path)?, mode, owner)?;
    opennebula::fsutil::write_atomic_as(path, text.as_bytes(), mode, owner)?;
    Ok(backup)
}

fn opennebula_config(oned: &Path, rc: &Path, write: bool, remove: bool, io: &mut Io<'_>) -> Result<()> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| anyhow!("cannot read {}: {e}", p.display()));
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
            let backup = replace_file(path, &edit.text).map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
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

fn fail(io: &mut Io<'_>, command: &str, error: &str) -> u8 {
    let mut lines = error.lines();
    let first = lines.next().unwrap_or("failed");
    let _ = writeln!(
        io.stderr,
        "ERROR: {PROGRAM} {command}: {}",
        opennebula::driver::one_line(error)
    );
    let _ = writeln!(io.stderr, "{first}");
    for l in lines {
        let _ = writeln!(io.stderr, "{l}");
    }
    EXIT_FAILURE
}

/// Runs the program with the given argv, environment and streams; returns the exit code.
pub fn main_with(argv: Vec<OsString>, env: &Env, io: Io<'_>) -> u8 {
    main_with_remote(argv, env, io, None)
}

/// [`main_with`] with the hosts reached through `remote` instead of SSH (tests).
pub fn main_with_remote(argv: Vec<OsString>, env: &Env, mut io: Io<'_>, remote: Option<&dyn bootstrap::Remote>) -> u8 {
    let cli: Cli = match parse_args(argv, &mut io) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let (command, result) = match cli.command {
        Command::Provider { command } => ("provider", provider_cmd::run(&command, env, &mut io)),
        Command::Validate { file, json } => {
            return match commands::validate(&file, json, env, &mut io) {
                Ok(()) => 0,
                Err(errors) => {
                    let _ = writeln!(io.stderr, "ERROR: {}: {}", file.display(), errors.join("; "));
                    EXIT_FAILURE
                }
            };
        }
        Command::Create {
            file,
            dry_run,
            json,
            access,
        } => (
            "create",
            commands::create(&file, dry_run, json, &access, env, &mut io, remote),
        ),
        Command::Show { name, json } => ("show", listing::show(&name, json, env, &mut io)),
        Command::List { json } => ("list", listing::list(json, env, &mut io)),
        Command::Adopt { name, file, access } => (
            "adopt",
            adopt::adopt(&name, file.as_deref(), &access, env, &mut io, remote),
        ),
        Command::Unlock { name } => ("unlock", listing::unlock(&name, env, &mut io)),
        Command::Configure { name, access } => (
            "configure",
            commands::operate(&name, &Op::Configure(&[], &access), env, &mut io, remote),
        ),
        Command::Host { command } => match command {
            HostCommand::Add { name, count, access } => (
                "host add",
                commands::operate(&name, &Op::HostAdd(count, &access), env, &mut io, remote),
            ),
            HostCommand::Configure { name, hosts, access } => (
                "host configure",
                commands::operate(&name, &Op::Configure(&hosts, &access), env, &mut io, remote),
            ),
            HostCommand::Delete {
                name,
                hosts,
                force,
                access,
            } => (
                "host delete",
                commands::operate(&name, &Op::HostDelete(&hosts, force, &access), env, &mut io, remote),
            ),
        },
        Command::Ip { command } => match command {
            IpCommand::Add { name, count } => (
                "ip add",
                commands::operate(&name, &Op::IpAdd(count), env, &mut io, remote),
            ),
            IpCommand::Delete { name, ranges } => (
                "ip delete",
                commands::operate(&name, &Op::IpDelete(&ranges), env, &mut io, remote),
            ),
        },
        Command::Delete { name, force } => (
            "delete",
            commands::operate(&name, &Op::Delete(force), env, &mut io, remote),
        ),
        Command::OpennebulaConfig {
            oned_conf,
            vmm_execrc,
            write,
            remove,
        } => (
            "opennebula-config",
            opennebula_config(&oned_conf, &vmm_execrc, write, remove, &mut io),
        ),
    };
    match result {
        Ok(()) => 0,
        Err(e) => fail(&mut io, command, &format!("{e:#}")),
    }
}
