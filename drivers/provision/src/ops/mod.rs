//! The provision commands: create, host add/delete, ip add/delete, delete.
//!
//! Each command follows the same pattern: under the provision's lock, read
//! the record, do each step only if its result is not recorded yet (and,
//! for Scaleway resources, not found by tag), record its result at once,
//! and go on. A command that was killed is finished by running it again;
//! an operation left pending must be finished before another starts.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Error, Result, anyhow};
use opennebula::oned::Oned;
use scaleway::Client;

use crate::bootstrap::{self, ClusterFacts, HostFacts, Phase as BootPhase, Remote};
use crate::check::Checked;
use crate::cloud::{self, Waits};
use crate::description::{Description, Hypervisor};
use crate::one::{self, One, Pool};
use crate::progress::Progress;
use crate::state::{HostRecord, Locked, Pending, Phase, ProvisionState};

mod create;
mod delete;
mod hosts;
mod ips;
mod setup;

pub use create::{adopt, create};
pub use delete::delete;
pub use hosts::{configure, host_add, host_delete};
pub use ips::{ip_add, ip_delete};
pub use setup::cluster_facts;
// Steps one command shares with another.
use create::{converge_public_ranges, register_hosts, servers_up};
use hosts::{check_no_vms, delete_server_ids, forget_hosts};
use setup::bootstrap_hosts;

/// Settings of the host bootstrap.
#[derive(Debug, Clone)]
pub struct BootstrapOptions {
    pub ssh_user: String,
    pub skip: Vec<BootPhase>,
    /// The frontend's public keys (one per line).
    pub authorized_keys: Vec<String>,
    /// The `scaleway-vnm` binary shipped to the hosts.
    pub vnm: PathBuf,
}

/// Everything a command works with.
pub struct Ctx<'a> {
    pub d: Description,
    pub client: Client,
    pub oned: Oned,
    pub remote: &'a dyn Remote,
    pub waits: Waits,
    pub progress: &'a dyn Progress,
    pub boot: BootstrapOptions,
    pub file: Locked,
}

impl Ctx<'_> {
    pub(super) fn save(&self, s: &ProvisionState) -> Result<()> {
        self.file.save(s)
    }

    pub(super) fn one(&self) -> One<'_> {
        One { oned: &self.oned }
    }

    pub(super) fn say(&self, resource: &str, status: &str) {
        self.progress.report(resource, status);
    }

    /// Records `error` in the file and returns it.
    pub(super) fn failed<T>(&self, s: &mut ProvisionState, error: String) -> Result<T> {
        s.last_error = Some(error.clone());
        let _ = self.save(s);
        Err(Error::msg(error))
    }
}

/// Runs `work` on every item, each in a thread of its own, and waits for
/// all; their errors joined (`what` names a thread that panicked).
pub(super) fn in_parallel<T: Sync>(items: &[T], what: &str, work: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    let work = &work;
    let errors: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = items.iter().map(|item| scope.spawn(move || work(item))).collect();
        handles
            .into_iter()
            .filter_map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a {what} thread failed")))
                    .err()
            })
            .map(|e| format!("{e:#}"))
            .collect()
    });
    if errors.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(errors.join("; ")))
    }
}

pub(super) fn host_name(d: &Description, index: u32) -> String {
    format!("{}-host{index}", d.name)
}

pub(super) fn lock(shared: &Mutex<ProvisionState>) -> Result<std::sync::MutexGuard<'_, ProvisionState>> {
    shared.lock().map_err(|_| anyhow!("a worker failed while recording"))
}

/// Applies `f` to the shared record and saves it.
pub(super) fn record(ctx: &Ctx<'_>, shared: &Mutex<ProvisionState>, f: impl FnOnce(&mut ProvisionState)) -> Result<()> {
    let mut s = lock(shared)?;
    f(&mut s);
    ctx.save(&s)
}

pub(super) fn ready(s: &ProvisionState) -> Result<()> {
    match s.phase {
        Phase::Ready => Ok(()),
        Phase::Creating => Err(anyhow!(
            "provision {} is not created yet: run `scaleway-provision create` again to finish it",
            s.name
        )),
        Phase::Deleting => Err(anyhow!(
            "provision {} is being deleted: run `scaleway-provision delete {}` to finish",
            s.name,
            s.name
        )),
    }
}

pub(super) fn pending_error(s: &ProvisionState, p: &Pending) -> anyhow::Error {
    let what = match p {
        Pending::HostAdd { indexes } => format!("host add {}", indexes.len()),
        Pending::HostDelete { indexes } => format!(
            "host delete {}",
            indexes
                .iter()
                .filter_map(|i| s.host(*i).map(|h| h.name.clone()))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Pending::IpAdd { .. } => "ip add".to_owned(),
    };
    anyhow!(
        "provision {} has an unfinished `{what}`: run that command again first",
        s.name
    )
}

/// Resolves host arguments: OpenNebula host ids, host names (public
/// addresses) or our names (`<provision>-host<N>`).
pub fn resolve_hosts(s: &ProvisionState, args: &[String]) -> Result<Vec<u32>> {
    args.iter()
        .map(|a| {
            s.hosts
                .iter()
                .find(|h| {
                    h.name == *a
                        || h.public_ip.is_some_and(|ip| ip.to_string() == *a)
                        || h.one_id.is_some_and(|id| id.to_string() == *a)
                })
                .map(|h| h.index)
                .ok_or_else(|| {
                    anyhow!(
                        "{a}: not a host of provision {} (give an OpenNebula host id, its name or {}-hostN)",
                        s.name,
                        s.name
                    )
                })
        })
        .collect()
}
