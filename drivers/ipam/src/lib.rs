//! The OpenNebula IPAM driver `scaleway`.
//!
//! oned runs `remotes/ipam/scaleway/<action> <request id>` on the frontend,
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
//! This version reads and validates every request, then refuses to act: the
//! actions arrive with the Scaleway client (see the README's status table).

pub mod alloc;

use std::ffi::OsString;

use anyhow::bail;
use clap::{Parser, ValueEnum};
use opennebula::cli::parse_args;
use opennebula::driver::{Env, Io, Output, dispatch_argv0, run};

/// The name OpenNebula knows this driver by (`IPAM_MAD`).
pub const IPAM_MAD: &str = "scaleway";
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

/// OpenNebula IPAM driver `scaleway`: address ranges backed by Scaleway flexible IPs.
#[derive(Debug, Parser)]
#[command(name = PROGRAM, version, after_help = "\
OpenNebula runs the action files under remotes/ipam/scaleway/, which are links to this program, \
with the base64-encoded IPAM_DRIVER_ACTION_DATA document on stdin. \
Log level: ONE_SCALEWAY_LOG=error|warn|info|debug.

Status: requests are read and validated; the actions themselves are not available yet in this version.")]
struct Cli {
    /// The IPAM action to run.
    #[arg(value_enum)]
    action: Action,
    /// OpenNebula's request id (for logs only).
    request_id: Option<u64>,
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
    let args: Vec<String> = cli.request_id.iter().map(u64::to_string).collect();
    run(PROGRAM, cli.action.name(), &args, env, io, |driver| {
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
        not_available(cli.action)
    })
}

fn not_available(action: Action) -> anyhow::Result<Output> {
    bail!(
        "the scaleway IPAM action {} is not available in one-scaleway {} yet: \
         the request was read and is valid, nothing was changed",
        action.name(),
        env!("CARGO_PKG_VERSION")
    )
}
