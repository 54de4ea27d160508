//! The OpenNebula network drivers `scaleway` (public networking) and
//! `scaleway_evpn` (private networking).
//!
//! OpenNebula runs `remotes/vnm/<driver>/<action> [args]` with a base64 VM
//! document on stdin (a VNET document for `vnet_create`/`vnet_delete`). The
//! action files are links to this binary: the file name is the action and
//! the folder name the driver. By hand: `scaleway-vnm --driver scaleway pre`.
//!
//! | action | argv | runs on |
//! |---|---|---|
//! | `pre` | none | the host (the destination during a migration) |
//! | `post` | `<deploy_id> <host>` | `scaleway`: the frontend; `scaleway_evpn`: the host |
//! | `clean` | `<host>` | `scaleway`: the frontend; `scaleway_evpn`: the host |
//! | `update_sg` | `<deploy_id>` | the host |
//! | `update_nic` | `<deploy_id> <vnet_id>` | the host (full VM document) |
//! | `vnet_create`, `vnet_delete` | `<vnet_id>` | the frontend (VNET document) |
//!
//! `scaleway-vnm root` is the root helper the host-side actions run through
//! `sudo -n` (see [`root`]).
//!
//! This version reads and validates every document. `vnet_create` and
//! `vnet_delete` are complete (neither driver keeps per-network state on the
//! frontend); the other actions arrive with the host-side network issues.

pub mod frontend;
pub mod host;
pub mod private;
pub mod root;

use std::ffi::OsString;

use anyhow::bail;
use clap::{Parser, ValueEnum};
use opennebula::attr::parse_value;
use opennebula::cli::{EXIT_USAGE, parse_args};
use opennebula::driver::{Env, Io, Log, Output, dispatch_argv0, run};
use opennebula::vm::Vm;
use opennebula::xml::Element;

const PROGRAM: &str = "scaleway-vnm";

/// Our two network drivers (`VN_MAD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum VnMad {
    /// Public networking: flexible IPs, routing, proxy ARP, 1:1 NAT.
    Scaleway,
    /// Private networking: VXLAN segments with BGP-EVPN.
    ScalewayEvpn,
}

impl VnMad {
    pub fn name(self) -> &'static str {
        match self {
            Self::Scaleway => "scaleway",
            Self::ScalewayEvpn => "scaleway_evpn",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [Self::Scaleway, Self::ScalewayEvpn]
            .into_iter()
            .find(|d| d.name() == name)
    }
}

/// The network driver actions, named as OpenNebula names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Action {
    Pre,
    Post,
    Clean,
    UpdateSg,
    UpdateNic,
    VnetCreate,
    VnetDelete,
    /// Not an OpenNebula action: the host part of `clean` for `scaleway`,
    /// whose `clean` runs on the frontend (the frontend runs it over SSH).
    CleanHost,
    /// Not an OpenNebula action: re-applies the host state the driver
    /// recorded (after a reboot). `scaleway-vnm --driver scaleway reconcile`.
    Reconcile,
    /// Not an OpenNebula action: applies a cluster description to this
    /// host's FRR and firewall (`scaleway_evpn`).
    /// `scaleway-vnm --driver scaleway_evpn evpn-config FILE`.
    #[value(name = "evpn-config")]
    EvpnConfig,
}

impl Action {
    /// The action files: OpenNebula's actions, and `clean_host`, which the
    /// frontend's `clean` runs on the host over SSH.
    pub const ALL: [Action; 8] = [
        Self::Pre,
        Self::Post,
        Self::Clean,
        Self::UpdateSg,
        Self::UpdateNic,
        Self::VnetCreate,
        Self::VnetDelete,
        Self::CleanHost,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Pre => "pre",
            Self::Post => "post",
            Self::Clean => "clean",
            Self::UpdateSg => "update_sg",
            Self::UpdateNic => "update_nic",
            Self::VnetCreate => "vnet_create",
            Self::VnetDelete => "vnet_delete",
            Self::CleanHost => "clean_host",
            Self::Reconcile => "reconcile",
            Self::EvpnConfig => "evpn-config",
        }
    }
}

/// OpenNebula network drivers `scaleway` (public) and `scaleway_evpn` (private).
#[derive(Debug, Parser)]
#[command(name = PROGRAM, version, after_help = "\
OpenNebula runs the action files under remotes/vnm/scaleway/ and remotes/vnm/scaleway_evpn/, \
which are links to this program, with a base64-encoded VM document on stdin (a VNET document \
for vnet_create and vnet_delete). Log level: ONE_SCALEWAY_LOG=error|warn|info|debug.

Status: documents are read and validated. scaleway (public): pre (host side: bridge, route, proxy \
ARP, 1:1 NAT), post and clean (frontend: flexible IP attach/detach, host part over SSH through \
clean_host) are complete; `reconcile` re-applies the host state after a reboot. scaleway_evpn \
(private, VXLAN + BGP-EVPN through FRR): pre, post and clean are complete; `evpn-config FILE` \
applies the cluster description to the host's FRR and firewall; `reconcile` as above. Both apply \
OpenNebula's security groups on the host (pre, clean, reconcile, update_sg). update_nic succeeds without changes, and vnet_create and vnet_delete have \
nothing to do.")]
struct Cli {
    /// Which driver (taken from the action file's folder when OpenNebula runs us).
    #[arg(long, value_enum)]
    driver: Option<VnMad>,
    /// The network driver action to run.
    #[arg(value_enum)]
    action: Action,
    /// The action's arguments, as OpenNebula passes them.
    args: Vec<String>,
}

/// Runs the program with the given argv, environment and streams; returns
/// the exit code.
pub fn main_with(argv: Vec<OsString>, env: &Env, mut io: Io<'_>) -> u8 {
    // The root helper (`scaleway-vnm root`, exactly: what sudo allows).
    if argv.len() == 2 && argv[1] == "root" {
        return root::main(&mut io);
    }
    let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
    let (argv, folder) = dispatch_argv0(argv, PROGRAM, &names);
    let cli: Cli = match parse_args(argv, &mut io) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let driver = match cli.driver.or_else(|| folder.as_deref().and_then(VnMad::from_name)) {
        Some(driver) => driver,
        None => {
            let _ = writeln!(
                io.stderr,
                "{PROGRAM}: which driver? Run it as remotes/vnm/scaleway/<action> or \
                 remotes/vnm/scaleway_evpn/<action>, or pass --driver scaleway|scaleway_evpn"
            );
            return EXIT_USAGE;
        }
    };
    let origin = format!("{PROGRAM} {}", driver.name());
    if cli.action == Action::EvpnConfig {
        return run(&origin, "evpn-config", &cli.args, env, io, |d| match driver {
            VnMad::ScalewayEvpn => {
                let stdin = if cli.args.first().is_some_and(|a| a == "-") {
                    Some(anyhow::Context::context(
                        d.read_text(),
                        "cannot read the cluster description from stdin",
                    )?)
                } else {
                    None
                };
                private::evpn_config(&cli.args, stdin, d.log, env)
            }
            VnMad::Scaleway => bail!("evpn-config is for the scaleway_evpn driver"),
        });
    }
    if cli.action == Action::Reconcile {
        return run(&origin, "reconcile", &cli.args, env, io, |d| match driver {
            VnMad::Scaleway => host::reconcile(d.log, env),
            VnMad::ScalewayEvpn => private::reconcile(d.log, env),
        });
    }
    run(&origin, cli.action.name(), &cli.args, env, io, |d| {
        let document = d.read_document()?;
        if matches!(cli.action, Action::VnetCreate | Action::VnetDelete) {
            return vnet_action(cli.action, &document, d.log);
        }
        let vm = Vm::from_element(&document)?;
        match driver {
            VnMad::Scaleway => public_action(cli.action, &vm, &document, &cli.args, d.log, env),
            VnMad::ScalewayEvpn => private_action(cli.action, &vm, d.log, env),
        }
    })
}

/// `vnet_create`, `vnet_delete`: neither driver keeps per-network state on
/// the frontend.
fn vnet_action(action: Action, document: &Element, log: &mut Log<'_>) -> anyhow::Result<Output> {
    if document.name != "VNET" {
        bail!("{} expects a VNET document, got <{}>", action.name(), document.name);
    }
    let id: u64 = parse_value("VNET/ID", document.child("ID").map_or("", |e| e.text.as_str()))?;
    log.debug(format_args!("virtual network {id}: nothing to do on the frontend"));
    Ok(Output::empty())
}

/// The public driver `scaleway`.
fn public_action(
    action: Action,
    vm: &Vm,
    document: &Element,
    args: &[String],
    log: &mut Log<'_>,
    env: &Env,
) -> anyhow::Result<Output> {
    match action {
        Action::Pre => host::pre(vm, log, env),
        Action::Post => frontend::post(vm, log, env),
        Action::Clean => frontend::clean(vm, document, args, log, env, &frontend::Ssh::from_env(env)?),
        Action::CleanHost => host::clean_host(vm, log, env),
        Action::UpdateSg => host::update_sg(vm, log, env),
        // Nothing on the host depends on the attributes update_nic changes.
        Action::UpdateNic => Ok(Output::empty()),
        Action::VnetCreate | Action::VnetDelete | Action::Reconcile | Action::EvpnConfig => {
            bail!("{} takes no VM document", action.name())
        }
    }
}

/// The private driver `scaleway_evpn`: everything runs on the host.
fn private_action(action: Action, vm: &Vm, log: &mut Log<'_>, env: &Env) -> anyhow::Result<Output> {
    match action {
        Action::Pre => private::pre(vm, log, env),
        Action::Post => private::post(vm, log, env),
        Action::Clean => private::clean(vm, log, env),
        Action::CleanHost => bail!("clean_host is for the scaleway driver; scaleway_evpn cleans on the host in clean"),
        Action::UpdateSg => private::update_sg(vm, log, env),
        // The segment depends on VLAN_ID and the bridge, which update_nic does not change.
        Action::UpdateNic => Ok(Output::empty()),
        Action::VnetCreate | Action::VnetDelete | Action::Reconcile | Action::EvpnConfig => {
            bail!("{} takes no VM document", action.name())
        }
    }
}
