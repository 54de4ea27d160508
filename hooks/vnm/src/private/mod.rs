//! The private network driver `scaleway_evpn` on a host: VXLAN segments
//! whose remote endpoints and MAC addresses are learnt through BGP-EVPN
//! (FRR) between the hosts of the cluster.
//!
//! | function | when | what |
//! |---|---|---|
//! | [`evpn_config`] | provisioning, and whenever a host joins or leaves the cluster (on every host) | reads the cluster description, renders this host's FRR configuration, checks it with `vtysh -C -f`, applies it with `frr-reload.py` (no restart), and sets the firewall table |
//! | [`pre`] | deploy, resume, migration (destination), attach_nic | for each NIC of the driver: the VNI's VXLAN device on the network's bridge, MTUs consistent, the VNI listed in FRR's configuration, the NIC's security groups on its port |
//! | [`post`] | after the VM started | nothing (everything is in place after `pre`) |
//! | [`clean`] | shutdown, undeploy, migration (source), detach_nic | forgets the VM's NICs; a segment no VM on the host uses any more loses its VXLAN device, its bridge (if the driver made it) and its FRR `vni` line |
//! | [`update_sg`] | oned, for each VM of a security group whose rules changed | the security group rules of the VM's private NICs on this host (`private_plan::sg`), in one transaction |
//! | [`reconcile`] | after a reboot, or by hand | puts back every recorded segment, the FRR configuration, the firewall and the security group tables |
//!
//! Every action validates the VM's NICs first, then, under the host lock
//! (the one the public driver uses), reads the record, observes the host's
//! links, plans (`private_plan::plan`, pure), renders and checks FRR's
//! configuration when the VNIs changed, applies (`private::apply`: only the
//! VNIs changed in place with one `vtysh` when nothing else changed, else the
//! whole configuration reloaded), and saves the record.
//! Running an action twice is the same as once; `pre` that cannot finish
//! (FRR refuses the reload) deletes the devices it made and changes nothing.
//!
//! Which VMs use which network on a host is the record's `users` of each
//! segment (`vnm-evpn.json` in the state folder): `clean` deletes a
//! segment only once its last user is gone, whatever the document says
//! about other VMs.
//!
//! The host needs, before `pre` can work: `evpn-config` run once (it is
//! where the host's underlay address comes from), FRR running with bgpd
//! (Debian: `frr` and `frr-pythontools`, `bgpd=yes` in
//! `/etc/frr/daemons`), `ip`, `nft`, and, when the driver does not run as
//! root, `sudo -n` of the root helper (see [`crate::root`]). No sysctl is needed: the segments are
//! bridged, not routed.
//!
//! Settings (environment), besides the public driver's
//! (`ONE_SCALEWAY_STATE_DIR`, `ONE_SCALEWAY_HOST_LOCK`,
//! `ONE_SCALEWAY_LOCK_TIMEOUT`, `ONE_SCALEWAY_SUDO`,
//! `ONE_SCALEWAY_TOOL_TIMEOUT`, `ONE_SCALEWAY_DRY_RUN`): which FRR instance
//! (`ONE_SCALEWAY_FRR_DIR`, `ONE_SCALEWAY_FRR_PATHSPACE`,
//! `ONE_SCALEWAY_FRR_RELOAD`, see `private_apply::apply`).

mod actions;
mod apply;
mod config;
mod converge;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use opennebula::driver::{Env, Log, Output};
use opennebula::vm::Vm;
use private_apply::apply::{EvpnHost, FrrCommand, FrrInstance, IpLinks, NftFirewall, ProcSystem};

pub use actions::{clean_with, pre_with, update_sg_with};
pub use config::{evpn_config_with, reconcile_with};

/// The host record's file name (in the state folder).
pub const RECORD_FILE: &str = "vnm-evpn.json";
/// The FRR configuration last rendered (in the state folder).
pub const FRR_FILE: &str = "frr-evpn.conf";

/// Where the driver keeps its record and lock, and how it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub record: PathBuf,
    pub frr_conf: PathBuf,
    pub lock: PathBuf,
    pub lock_timeout: Duration,
    pub dry_run: bool,
}

impl Settings {
    /// The public driver's settings (same state folder, same host lock),
    /// with this driver's files.
    pub fn from_env(env: &Env) -> anyhow::Result<Self> {
        let base = crate::host::Settings::from_env(env)?;
        let dir = base.record.parent().map(PathBuf::from).context("the state folder")?;
        Ok(Self {
            record: dir.join(RECORD_FILE),
            frr_conf: dir.join(FRR_FILE),
            lock: base.lock,
            lock_timeout: base.lock_timeout,
            dry_run: base.dry_run,
        })
    }
}

/// Runs `f` on the real host (`ip`, `nft`, FRR's tools, `/proc/sys` of the
/// calling thread's namespaces).
fn on_real_host<T>(env: &Env, f: impl FnOnce(EvpnHost<'_>, &Settings) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let settings = Settings::from_env(env)?;
    let tools = host_tools::Tools::from_env(env).context("the driver's settings")?;
    let links = IpLinks { tools: &tools };
    let firewall = NftFirewall { tools: &tools };
    let frr = FrrCommand {
        tools: &tools,
        instance: FrrInstance::from_env(env).context("the driver's settings")?,
    };
    let system = ProcSystem::default();
    f(
        EvpnHost {
            links: &links,
            firewall: &firewall,
            frr: &frr,
            system: &system,
        },
        &settings,
    )
}

/// `pre`: sets up the VM's private NICs on this host.
pub fn pre(vm: &Vm, log: &mut Log<'_>, env: &Env) -> anyhow::Result<Output> {
    on_real_host(env, |host, settings| pre_with(vm, log, host, settings))
}

/// `post`: nothing to do on the host once the VM runs (`pre` did it all).
pub fn post(vm: &Vm, log: &mut Log<'_>, _env: &Env) -> anyhow::Result<Output> {
    let nics = vm.nics_of(private_plan::VN_MAD)?;
    log.debug(format_args!(
        "VM {}: {} NICs of scaleway_evpn, nothing to do after the VM started",
        vm.id,
        nics.len()
    ));
    Ok(Output::empty())
}

/// `clean`: removes the VM's private NICs from this host.
pub fn clean(vm: &Vm, log: &mut Log<'_>, env: &Env) -> anyhow::Result<Output> {
    on_real_host(env, |host, settings| clean_with(vm, log, host, settings))
}

/// `update_sg`: the VM's security group rules, on its private ports here.
pub fn update_sg(vm: &Vm, log: &mut Log<'_>, env: &Env) -> anyhow::Result<Output> {
    on_real_host(env, |host, settings| update_sg_with(vm, log, host, settings))
}

/// `scaleway-vnm --driver scaleway_evpn evpn-config FILE`: applies the
/// cluster description in FILE (`-`: stdin) to this host's FRR and firewall.
/// (`-`, not `/dev/stdin`: run through `sudo -u oneadmin` over ssh, stdin
/// is a pipe of the login user that oneadmin may read but not open again.)
pub fn evpn_config(args: &[String], stdin: Option<String>, log: &mut Log<'_>, env: &Env) -> anyhow::Result<Output> {
    let [file] = args else {
        bail!(
            "usage: scaleway-vnm --driver scaleway_evpn evpn-config FILE|- (the cluster description: AS, UNDERLAY, \
             HOSTS, REFLECTORS, ...; see the README)"
        );
    };
    let text = match stdin {
        Some(text) if file == "-" => text,
        _ => std::fs::read_to_string(file).with_context(|| format!("cannot read the cluster description {file}"))?,
    };
    on_real_host(env, |host, settings| evpn_config_with(&text, file, log, host, settings))
}

/// Re-applies everything the record holds (after a reboot).
pub fn reconcile(log: &mut Log<'_>, env: &Env) -> anyhow::Result<Output> {
    on_real_host(env, |host, settings| reconcile_with(log, host, settings))
}
