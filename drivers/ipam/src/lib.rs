//! The OpenNebula IPAM driver `scaleway_fip`.
//!
//! oned runs `remotes/ipam/scaleway_fip/<action> <request id>` on the frontend,
//! with the base64 `IPAM_DRIVER_ACTION_DATA` document on stdin (see
//! [`opennebula::ipam`]). The action files are links to this binary, which
//! takes the action from its own file name, or from its first argument:
//! `scaleway-ipam register_address_range 42`.
//!
//! | action | stdout on success |
//! |---|---|
//! | `register_address_range` | `AR = [ TYPE, IP, SIZE, IPAM_MAD, EXTERNAL_IP, GATEWAY, ... ]` |
//! | `unregister_address_range` | nothing |
//! | `get_address` | `ADDRESS = [ IP, SIZE ]` |
//! | `allocate_address`, `free_address` | nothing |
//!
//! Maintenance commands: `scaleway-ipam gc [--delete]` lists (and deletes)
//! our flexible IPs that no range references any more;
//! `scaleway-ipam rebuild-state` rebuilds the private block state from the
//! flexible IPs' tags.

pub mod actions;
pub mod alloc;
pub mod tags;

use std::ffi::OsString;

use anyhow::bail;
use clap::{Parser, Subcommand, ValueEnum};
use opennebula::cli::parse_args;
use opennebula::driver::{Env, Io, dispatch_argv0, run};

/// The name OpenNebula knows this driver by (`IPAM_MAD`).
pub const IPAM_MAD: &str = "scaleway_fip";
const PROGRAM: &str = "scaleway-ipam";

/// The five IPAM actions, named as OpenNebula names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Action {
    RegisterAddressRange,
    UnregisterAddressRange,
    GetAddress,
    AllocateAddress,
    FreeAddress,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Self::RegisterAddressRange,
        Self::UnregisterAddressRange,
        Self::GetAddress,
        Self::AllocateAddress,
        Self::FreeAddress,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::RegisterAddressRange => "register_address_range",
            Self::UnregisterAddressRange => "unregister_address_range",
            Self::GetAddress => "get_address",
            Self::AllocateAddress => "allocate_address",
            Self::FreeAddress => "free_address",
        }
    }
}

/// OpenNebula IPAM driver `scaleway_fip`: address ranges backed by Scaleway flexible IPs.
#[derive(Debug, Parser)]
#[command(name = PROGRAM, version, after_help = "\
OpenNebula runs the action files under remotes/ipam/scaleway_fip/, which are links to this program, \
with the base64-encoded IPAM_DRIVER_ACTION_DATA document on stdin. \
Scaleway credentials: SCW_* environment variables, then ~/.config/scw/config.yaml (profile from \
the range's SCALEWAY_PROFILE). Log level: ONE_SCALEWAY_LOG=error|warn|info|debug.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a flexible IP and answer the range (AR) backed by it.
    #[command(name = "register_address_range")]
    RegisterAddressRange { request_id: Option<u64> },
    /// Detach and delete the range's flexible IP, free its private block.
    #[command(name = "unregister_address_range")]
    UnregisterAddressRange { request_id: Option<u64> },
    /// Answer the range's address.
    #[command(name = "get_address")]
    GetAddress { request_id: Option<u64> },
    /// Accept a lease of the range's address.
    #[command(name = "allocate_address")]
    AllocateAddress { request_id: Option<u64> },
    /// Accept the release of the range's address.
    #[command(name = "free_address")]
    FreeAddress { request_id: Option<u64> },
    /// List our flexible IPs that no range references any more (delete them with --delete).
    Gc {
        /// Delete them (the default only lists them).
        #[arg(long)]
        delete: bool,
        /// Zone (default: from the credentials).
        #[arg(long)]
        zone: Option<String>,
        /// Scaleway config profile.
        #[arg(long)]
        profile: Option<String>,
    },
    /// Rebuild the private block state file from our flexible IPs' tags.
    RebuildState {
        /// Zone (default: from the credentials).
        #[arg(long)]
        zone: Option<String>,
        /// Scaleway config profile.
        #[arg(long)]
        profile: Option<String>,
    },
}

/// Runs the program with the given argv, environment and streams; returns
/// the exit code.
pub fn main_with(argv: Vec<OsString>, env: &Env, mut io: Io<'_>) -> u8 {
    let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
    let (argv, _) = dispatch_argv0(argv, PROGRAM, &names);
    let cli: Cli = match parse_args(argv, &mut io) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let (action, request_id) = match cli.command {
        Command::RegisterAddressRange { request_id } => (Action::RegisterAddressRange, request_id),
        Command::UnregisterAddressRange { request_id } => (Action::UnregisterAddressRange, request_id),
        Command::GetAddress { request_id } => (Action::GetAddress, request_id),
        Command::AllocateAddress { request_id } => (Action::AllocateAddress, request_id),
        Command::FreeAddress { request_id } => (Action::FreeAddress, request_id),
        Command::Gc { delete, zone, profile } => {
            return run(PROGRAM, "gc", &[], env, io, |d| {
                maintenance::gc(d, delete, zone.as_deref(), profile.as_deref())
            });
        }
        Command::RebuildState { zone, profile } => {
            return run(PROGRAM, "rebuild-state", &[], env, io, |d| {
                maintenance::rebuild_state(d, zone.as_deref(), profile.as_deref())
            });
        }
    };
    let args: Vec<String> = request_id.iter().map(u64::to_string).collect();
    run(PROGRAM, action.name(), &args, env, io, |driver| {
        let request = driver.read_ipam_request()?;
        if let Some(mad) = &request.ar.ipam_mad
            && mad.as_str() != IPAM_MAD
        {
            bail!(
                "this address range has IPAM_MAD=\"{mad}\", not \"{IPAM_MAD}\": \
                 OpenNebula sent it to the wrong driver"
            );
        }
        driver.log.debug(format_args!(
            "request read: AR with {} attributes",
            request.ar.attrs.len()
        ));
        match action {
            Action::RegisterAddressRange => actions::register(driver, &request),
            Action::UnregisterAddressRange => actions::unregister(driver, &request),
            Action::GetAddress => actions::get_address(&request),
            Action::AllocateAddress => actions::check_address(&request, action.name()),
            Action::FreeAddress => actions::check_address(&request, action.name()),
        }
    })
}

mod maintenance;
