//! The command line (clap): every command, its arguments and help.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::PROGRAM;

/// Creates, grows, shrinks and deletes OpenNebula edge clusters on Scaleway Elastic Metal.
#[derive(Debug, Parser)]
#[command(name = PROGRAM, version, after_help = "\
Environment: the SCW_* variables or ~/.config/scw/config.yaml (Scaleway credentials), ONE_XMLRPC and \
ONE_AUTH (oned), ONE_SCALEWAY_STATE_DIR (where provisions are recorded), ONE_SCALEWAY_SSH and \
ONE_SCALEWAY_SSH_OPTIONS (how hosts are reached), ONE_SCALEWAY_WAIT and ONE_SCALEWAY_INSTALL_WAIT (seconds).")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub(crate) struct HostAccess {
    /// A public key for the servers and oneadmin (repeatable; default: ~/.ssh/*.pub).
    #[arg(long = "ssh-key", value_name = "FILE")]
    pub ssh_keys: Vec<PathBuf>,
    /// The user SSH logs in as on the servers.
    #[arg(long, default_value = "ubuntu")]
    pub ssh_user: String,
    /// Bootstrap phases to skip, comma-separated: packages, access, services, network, evpn.
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// The scaleway-vnm binary the hosts get (default: the installed one).
    #[arg(long)]
    pub vnm: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum HostCommand {
    /// Adds N hosts (servers, bootstrap, OpenNebula hosts; the others learn about them).
    Add {
        name: String,
        count: u32,
        #[command(flatten)]
        access: HostAccess,
    },
    /// Runs the bootstrap of hosts again (packages, access, services, network, EVPN, the root
    /// helper): after an upgrade of one-scaleway, or to repair a host. Idempotent.
    Configure {
        name: String,
        /// OpenNebula host ids, names, or <provision>-hostN.
        #[arg(required = true)]
        hosts: Vec<String>,
        #[command(flatten)]
        access: HostAccess,
    },
    /// Deletes hosts (OpenNebula host ids, names, or <provision>-hostN), their servers included.
    Delete {
        name: String,
        #[arg(required = true)]
        hosts: Vec<String>,
        /// Even if VMs run on them.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        access: HostAccess,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum IpCommand {
    /// Adds N public IPs (address ranges of the public network).
    Add { name: String, count: u32 },
    /// Deletes public address ranges by id (their flexible IPs are released).
    Delete {
        name: String,
        #[arg(required = true)]
        ranges: Vec<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Manage providers (zone, credentials profile, defaults), kept in oned.
    Provider {
        #[command(subcommand)]
        command: ProviderCommand,
    },
    /// Check a provision description: its syntax and values, then the offer, stock and OS at Scaleway.
    Validate {
        /// The provision description (YAML).
        file: PathBuf,
        /// Print the result as JSON (on stdout, also when invalid).
        #[arg(long)]
        json: bool,
    },
    /// Create the cluster of a description (again after an interruption: continues it).
    Create {
        file: PathBuf,
        /// Print the plan (resources, OpenNebula templates, host bootstrap) and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the provision as JSON when done (progress stays on stderr).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        access: HostAccess,
    },
    /// Show a provision: its resources, hosts, OpenNebula objects and public IPs.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List the provisions of this frontend.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Puts a lost provision record back: this frontend's copy into oned, or, with neither, rebuilt
    /// from the description FILE it was created from, its OpenNebula hosts and its Scaleway tags.
    Adopt {
        name: String,
        file: Option<PathBuf>,
        #[command(flatten)]
        access: HostAccess,
    },
    /// Releases oned's lock of a provision, left by a command that is not running any more.
    Unlock { name: String },
    /// Runs the bootstrap of every host again (see `host configure`). Idempotent.
    Configure {
        name: String,
        #[command(flatten)]
        access: HostAccess,
    },
    /// Add or delete hosts.
    Host {
        #[command(subcommand)]
        command: HostCommand,
    },
    /// Add or delete public IPs.
    Ip {
        #[command(subcommand)]
        command: IpCommand,
    },
    /// Delete a provision: OpenNebula objects, then every Scaleway resource; checks nothing is left.
    Delete {
        name: String,
        /// Even if VMs run on its hosts.
        #[arg(long)]
        force: bool,
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

#[derive(Debug, Subcommand)]
pub(crate) enum ProviderCommand {
    /// Registers a provider from a YAML file (see /usr/share/one/scaleway/providers/); checks first
    /// that its credentials reach every Scaleway product a provision uses.
    Create { file: PathBuf },
    /// Lists the providers.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Shows a provider.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Replaces a provider's content from a YAML file (same name); the zone of a provider in use
    /// cannot change.
    Update { name: String, file: PathBuf },
    /// Deletes a provider no provision uses.
    Delete { name: String },
}
