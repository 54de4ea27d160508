//! The host side of the public network driver `scaleway`: what runs on a
//! hypervisor in `pre` and in the host part of `clean`, and `reconcile`,
//! which puts the host's state back after a reboot.
//!
//! | function | when | what |
//! |---|---|---|
//! | [`pre`] | deploy, resume, migration (destination), attach_nic | ensures the bridge, the /32 route, the proxy ARP entry, the sysctls and the 1:1 NAT of every public NIC of the VM (only the NIC being attached during attach_nic) |
//! | [`clean_host`] | shutdown, undeploy, migration (source), detach_nic | removes exactly this VM's NICs' routes, proxy entries and NAT elements (only the NIC being detached during detach_nic); the bridge goes once nothing uses it |
//! | [`reconcile`] | after a reboot (the kernel forgot everything), or by hand | re-applies everything the record holds, in one nft transaction |
//! | [`update_sg`] | oned, for each VM of a security group whose rules changed | sets the security group rules of the VM's public NICs (`public_plan::filter`) in one transaction, if the VM runs here |
//!
//! Every action validates the VM's NICs before touching anything, takes the
//! host lock, observes the host, plans (pure, `public_plan`), applies
//! (`public_apply`) and updates the record, all under the lock. `pre` and
//! `clean` read only what their NICs concern (their routes, proxy and
//! neighbour entries, sysctls) and do not list our nft tables: the host
//! record says what those hold (`public_plan::model`), and the kernel checks it
//! when it applies the transaction; a refused transaction (tables gone
//! after a reboot, an element the record does not know) makes the action
//! list the tables and plan again. `reconcile` always lists them. Running an
//! action twice is the same as once; removing what is absent succeeds; a
//! flexible IP or private IP already mapped to something else is refused,
//! naming both, with nothing changed.
//!
//! Host-wide effects: `net.ipv4.ip_forward = 1` (and, for IPv6 NICs,
//! `net.ipv6.conf.all.forwarding = 1`, after which the host ignores router
//! advertisements on interfaces whose `accept_ra` is 1: a host that learns
//! its own IPv6 default route from them needs `accept_ra = 2` on its uplink).
//! Everything else is per bridge, per address, or inside `table ip
//! one_scaleway`.
//!
//! Settings (environment):
//!
//! - `ONE_SCALEWAY_STATE_DIR`: folder of the host record `vnm-public/`
//!   (default `$ONE_LOCATION/var/scaleway`, else `/var/lib/one/scaleway`:
//!   under oneadmin's home on a host, which `onehost sync` leaves alone,
//!   unlike `/var/tmp/one`, and which survives reboots, unlike `/run`; the
//!   same folder and variable as the IPAM driver's state on the frontend,
//!   another file). Run `reconcile` as oneadmin, so the folder stays
//!   oneadmin's;
//! - `ONE_SCALEWAY_HOST_LOCK`: the host lock (default `vnm.lock` in the state
//!   folder: not in a folder every local account can write, where another
//!   account could take the lock file and hold it), `ONE_SCALEWAY_LOCK_TIMEOUT`: seconds
//!   to wait for it (default 120);
//! - `ONE_SCALEWAY_SUDO`, `ONE_SCALEWAY_TOOL_TIMEOUT`: see `host_tools::run`;
//! - `ONE_SCALEWAY_DRY_RUN=yes`: observe and plan, print the plan on stdout,
//!   change nothing.

mod actions;
mod clean;
mod reconcile;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use opennebula::driver::{Env, Log, Output};
use opennebula::vm::Vm;
use public_apply::Host;
use public_apply::ip::IpNetlink;
use public_apply::nft::NftCommand;
use public_apply::sysctl::ProcSysctl;

pub use actions::{pre_with, update_sg_with};
pub use clean::clean_host_with;
pub use reconcile::reconcile_with;

/// Folder of the host record.
pub const STATE_DIR_ENV: &str = "ONE_SCALEWAY_STATE_DIR";
/// The host lock's path.
pub const LOCK_ENV: &str = "ONE_SCALEWAY_HOST_LOCK";
/// Seconds to wait for the host lock.
pub const LOCK_TIMEOUT_ENV: &str = "ONE_SCALEWAY_LOCK_TIMEOUT";
/// Plan only.
pub const DRY_RUN_ENV: &str = "ONE_SCALEWAY_DRY_RUN";
/// The host record's file name.
pub const RECORD_FILE: &str = "vnm-public.json";
/// The host lock's file name in the state folder (by default).
pub const LOCK_FILE: &str = "vnm.lock";

/// Where the host side keeps its lock and record, and how it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub record: PathBuf,
    pub lock: PathBuf,
    pub lock_timeout: Duration,
    pub dry_run: bool,
}

impl Settings {
    pub fn from_env(env: &Env) -> anyhow::Result<Self> {
        let dir = match (env.get(STATE_DIR_ENV), env.get("ONE_LOCATION")) {
            (Some(dir), _) => PathBuf::from(dir),
            (None, Some(one)) => PathBuf::from(one).join("var/scaleway"),
            (None, None) => PathBuf::from("/var/lib/one/scaleway"),
        };
        let lock_timeout = match env.get(LOCK_TIMEOUT_ENV) {
            None => 120,
            Some(v) => match v.parse::<u64>() {
                Ok(s) if s > 0 => s,
                _ => bail!("{LOCK_TIMEOUT_ENV}={v:?} is not a number of seconds"),
            },
        };
        let dry_run = match env.get(DRY_RUN_ENV).map(str::to_ascii_lowercase).as_deref() {
            None | Some("no" | "0" | "false") => false,
            Some("yes" | "1" | "true") => true,
            Some(other) => bail!("{DRY_RUN_ENV}={other:?} is not yes or no"),
        };
        Ok(Self {
            record: dir.join(RECORD_FILE),
            lock: env.get(LOCK_ENV).map_or_else(|| dir.join(LOCK_FILE), PathBuf::from),
            lock_timeout: Duration::from_secs(lock_timeout),
            dry_run,
        })
    }
}

/// Runs `f` on the real host (`ip`, `nft`, `/proc/sys` of the calling
/// thread's network namespace).
fn on_real_host<T>(env: &Env, f: impl FnOnce(Host<'_>, &Settings) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let settings = Settings::from_env(env)?;
    let tools = host_tools::Tools::from_env(env).context("the driver's settings")?;
    let nft = NftCommand { tools: &tools };
    let ip = IpNetlink { tools: &tools };
    let sysctl = ProcSysctl::new(&tools);
    f(
        Host {
            nft: &nft,
            ip: &ip,
            sysctl: &sysctl,
            helper: tools.uses_sudo().then_some(&tools),
        },
        &settings,
    )
}

/// `pre`: sets up the VM's public NICs on this host.
pub fn pre(vm: &Vm, log: &mut Log<'_>, env: &Env) -> anyhow::Result<Output> {
    on_real_host(env, |host, settings| pre_with(vm, log, host, settings))
}

/// The host part of `clean`: removes the VM's public NICs from this host.
pub fn clean_host(vm: &Vm, log: &mut Log<'_>, env: &Env) -> anyhow::Result<Output> {
    on_real_host(env, |host, settings| clean_host_with(vm, log, host, settings))
}

/// `update_sg`: the VM's security group rules, on this host.
pub fn update_sg(vm: &Vm, log: &mut Log<'_>, env: &Env) -> anyhow::Result<Output> {
    on_real_host(env, |host, settings| update_sg_with(vm, log, host, settings))
}

/// Re-applies everything the host record holds (after a reboot).
pub fn reconcile(log: &mut Log<'_>, env: &Env) -> anyhow::Result<Output> {
    on_real_host(env, |host, settings| reconcile_with(log, host, settings))
}
