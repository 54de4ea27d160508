//! `scaleway-provision`: an edge cluster's whole lifecycle on Scaleway
//! (VPC, private network, public gateway, SSH keys, Elastic Metal servers),
//! and the OpenNebula objects to register for it.
//!
//! This version has one command, `opennebula-config`, which registers our
//! drivers in OpenNebula's configuration (what `install.sh` runs); the
//! cluster commands are not available yet.

pub mod oneconf;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use opennebula::cli::parse_args;
use opennebula::driver::{EXIT_FAILURE, Io};

const PROGRAM: &str = "scaleway-provision";

/// Creates, grows, shrinks and deletes OpenNebula edge clusters on Scaleway Elastic Metal.
#[derive(Debug, Parser)]
#[command(name = PROGRAM, version, after_help = "\
Status: only opennebula-config is available in this version. The provision driver will create a \
cluster from a provision description (create, with --dry-run), add and remove hosts and public IPs, \
show it, and delete it with everything it created.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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

/// Runs the program with the given argv and streams; returns the exit code.
pub fn main_with(argv: Vec<OsString>, mut io: Io<'_>) -> u8 {
    let cli: Cli = match parse_args(argv, &mut io) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match cli.command {
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
