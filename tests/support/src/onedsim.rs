//! `onedsim`: an in-memory stand-in for oned's XML-RPC API.
//!
//! No end-to-end test uses it: the sandbox, the provision tests and the
//! driver tests run a real oned ([`crate::oned`]). It stays for the
//! benchmarks (`tests/bench`), which time our own binaries: with a real oned
//! the figures would be oned's Ruby drivers and scheduler, not ours, and
//! they run unprivileged.
//!
//! [`OnedSim::start`] serves `http://127.0.0.1:PORT/RPC2` and answers the
//! calls our tools make in oned's real format: `[true, body or id, 0]` on
//! success, `[false, "[method] message", error code, object id, 0]` on
//! failure, an XML-RPC fault for an unknown method. Objects live in memory
//! with oned's id allocation (clusters and datastores from 100 after oned's
//! system ones, hosts, networks and network templates from 0; ids are never
//! reused) and their `*.info` bodies follow OpenNebula's schemas.
//!
//! # What it models
//!
//! - clusters, hosts, datastores, virtual networks, network templates:
//!   allocate, info, pool info, update (replace or merge), delete, cluster
//!   membership, with oned's refusals and messages (a taken name, a
//!   non-empty cluster, a host with VMs, a network with leases in use);
//! - a fresh oned's objects: cluster 0 `default`, datastores 0 `system`,
//!   1 `default`, 2 `files`;
//! - documents (oneprovision's provisions and providers) given at start;
//! - the IPAM driver as oned runs it: for every address range with an
//!   `IPAM_MAD` (its own or inherited from the network), the program
//!   `<ipam_dir>/<IPAM_MAD>/<action> <request id>` with the base64
//!   `IPAM_DRIVER_ACTION_DATA` on stdin: `register_address_range` when a
//!   range is added (its `AR = [...]` answer merged over the range),
//!   `unregister_address_range` when it is removed, `get_address` and
//!   `free_address` for [`OnedSim::lease`] and [`OnedSim::release`]. A
//!   failing driver's stderr (without its log lines) becomes the error;
//! - like oned 7, `one.vn.allocate` succeeds before its ranges are
//!   registered: a range the driver refuses leaves the network in state
//!   ERROR (5) with `TEMPLATE/ERROR/MESSAGE`, the ranges registered before it
//!   kept. Here that happens before the answer, so the answer's state is final;
//! - optionally the network driver's `vnet_create`/`vnet_delete`
//!   (`<vnm_dir>/<VN_MAD>/<action> <vnet id>`, base64 VNET on stdin).
//!
//! [`schema`] checks bodies and driver messages against OpenNebula's
//! schemas with `xmllint`.
//!
//! Driver runs are serialised (oned's `one_ipam -t 1`) and run without the
//! state lock, so a driver may call back (`one.document.info` for a
//! provision's credentials) while it runs. A driver that calls back a
//! network-changing method waits for the running action, as with oned, until
//! the driver timeout kills it.
//!
//! # What it does not model
//!
//! Users, groups, ACLs and permissions (everything belongs to oneadmin, any
//! `user:password` session is accepted), VMs (only [`OnedSim::set_host_vms`]
//! and leases owned by a VM id), images, monitoring (hosts stay in their
//! state, capacities are 0), quotas, reservations, VLAN id pools, locks,
//! security groups beyond the default `SECURITY_GROUPS = "0"`, hooks and
//! encrypted attributes.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ar;
mod document;
mod driver;
mod methods;
mod model;
mod params;
mod ranges;
mod rpc;
pub mod schema;
mod vnet;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use opennebula::oned::Param;
use opennebula::template::Template;

pub use driver::DriverRun;

/// How a stand-in starts.
#[derive(Debug, Clone)]
pub struct Config {
    /// oned's `remotes/ipam`: `<ipam_dir>/<IPAM_MAD>/<action>` is run for
    /// ranges with an `IPAM_MAD`. `None`: such ranges fail as with a driver
    /// oned does not know.
    pub ipam_dir: Option<PathBuf>,
    /// oned's `remotes/vnm`: when set, `<vnm_dir>/<VN_MAD>/vnet_create` and
    /// `vnet_delete` run as oned runs them. `None`: they are skipped.
    pub vnm_dir: Option<PathBuf>,
    /// Extra environment of the driver runs (after the test's Scaleway
    /// variables are removed and `ONE_XMLRPC` is set to this stand-in).
    pub driver_env: Vec<(String, String)>,
    /// `DOCUMENT` XML bodies (for example the fixtures under
    /// `tests/fixtures/document/`), served by `one.document.info` and
    /// `one.documentpool.info`.
    pub documents: Vec<String>,
    /// A driver run taking longer is killed and fails.
    pub driver_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ipam_dir: None,
            vnm_dir: None,
            driver_env: Vec::new(),
            documents: Vec::new(),
            driver_timeout: Duration::from_secs(60),
        }
    }
}

/// A call received: method and parameters after the session, as text
/// (`5`, `1` for true, the string itself).
pub type Call = (String, Vec<String>);

/// A cluster as the stand-in holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub id: i64,
    pub name: String,
    pub hosts: Vec<i64>,
    pub datastores: Vec<i64>,
    pub vnets: Vec<i64>,
    pub template: Template,
}

/// A host as the stand-in holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostView {
    pub id: i64,
    pub name: String,
    pub im_mad: String,
    pub vm_mad: String,
    pub cluster_id: i64,
    /// oned's host state: 0 INIT, 4 DISABLED, 8 OFFLINE.
    pub state: i64,
    pub vms: Vec<i64>,
    pub template: Template,
}

/// A datastore as the stand-in holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatastoreView {
    pub id: i64,
    pub name: String,
    /// 0 image, 1 system, 2 files, 3 backup.
    pub ds_type: i64,
    pub clusters: Vec<i64>,
    pub template: Template,
}

/// A lease of an address range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub ar_id: i64,
    pub vm: i64,
    pub ip: Option<String>,
    /// `IP6` of a static IPv6 range, else `IP6_GLOBAL`.
    pub ip6: Option<String>,
    pub mac: String,
}

/// An address range: its attributes as oned keeps them (without the
/// computed `MAC_END`, `IP_END`, `USED_LEASES`), and its leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArView {
    pub id: i64,
    pub attrs: BTreeMap<String, String>,
    pub leases: Vec<Lease>,
}

/// A virtual network as the stand-in holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VnetView {
    pub id: i64,
    pub name: String,
    /// 0 INIT, 1 READY, 2 LOCK_CREATE, 3 LOCK_DELETE, 4 DONE, 5 ERROR.
    pub state: i64,
    pub vn_mad: String,
    pub bridge: String,
    pub clusters: Vec<i64>,
    pub template: Template,
    pub ars: Vec<ArView>,
}

/// A virtual network template as the stand-in holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VnTemplateView {
    pub id: i64,
    pub name: String,
    pub template: Template,
}

/// What the threads share.
pub(crate) struct Shared {
    pub state: Mutex<model::State>,
    /// Serialises the operations that run drivers; always taken before `state`.
    pub drivers: Mutex<()>,
    pub config: Config,
    pub url: String,
    pub calls: Mutex<Vec<Call>>,
    pub unknown: Mutex<Vec<Call>>,
    pub failures: Mutex<BTreeMap<String, usize>>,
    pub runs: Mutex<Vec<DriverRun>>,
    pub next_request: AtomicU64,
}

/// Locks a mutex; a thread that panicked while holding it (a test's
/// failure) leaves usable data behind.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running stand-in; stops when dropped.
pub struct OnedSim {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl OnedSim {
    /// Starts serving on 127.0.0.1 (a free port).
    pub fn start(config: Config) -> Result<Self, String> {
        let state = model::State::new(&config.documents)?;
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("onedsim: cannot listen: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("onedsim: no local address: {e}"))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            drivers: Mutex::new(()),
            config,
            url: format!("http://{addr}/RPC2"),
            calls: Mutex::new(Vec::new()),
            unknown: Mutex::new(Vec::new()),
            failures: Mutex::new(BTreeMap::new()),
            runs: Mutex::new(Vec::new()),
            next_request: AtomicU64::new(1),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (shared2, stop2) = (shared.clone(), stop.clone());
        std::thread::Builder::new()
            .name("onedsim-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stop2.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = shared2.clone();
                    // Each connection on its own thread: our tools call concurrently.
                    let _ = std::thread::Builder::new()
                        .name("onedsim-conn".into())
                        .spawn(move || rpc::serve(&stream, |request| methods::handle(&shared, request)));
                }
            })
            .map_err(|e| format!("onedsim: cannot start the accept thread: {e}"))?;
        Ok(Self { shared, stop, addr })
    }

    /// `http://127.0.0.1:PORT/RPC2`, for `ONE_XMLRPC`.
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    /// Every call received, in order (unknown methods included).
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.shared.calls).clone()
    }

    /// The calls of methods the stand-in does not know.
    pub fn unknown_calls(&self) -> Vec<Call> {
        lock(&self.shared.unknown).clone()
    }

    /// Every driver run, in order: program, message, outcome.
    pub fn driver_runs(&self) -> Vec<DriverRun> {
        lock(&self.shared.runs).clone()
    }

    /// The next `times` calls of `method` fail as oned fails when it cannot
    /// serve (`[method] Cannot process request, oned cluster in election
    /// mode`, code 0x2000) without doing anything.
    pub fn inject_failure(&self, method: &str, times: usize) {
        *lock(&self.shared.failures).entry(method.to_owned()).or_insert(0) += times;
    }

    /// Calls a method in-process, exactly as over XML-RPC (recorded too):
    /// the body or id on success, the error message otherwise.
    pub fn call(&self, method: &str, params: &[Param]) -> Result<String, String> {
        let args = params
            .iter()
            .map(|p| match p {
                Param::Str(s) => rpc::Arg::Str(s.clone()),
                Param::Int(i) => rpc::Arg::Int(*i),
                Param::Bool(b) => rpc::Arg::Bool(*b),
            })
            .collect();
        let request = rpc::Request {
            method: method.to_owned(),
            session: Some("oneadmin:onedsim".into()),
            args,
        };
        match methods::handle(&self.shared, &request) {
            rpc::Answer::Str(s) => Ok(s),
            rpc::Answer::Int(i) => Ok(i.to_string()),
            rpc::Answer::Fail { message, .. } => Err(message),
            rpc::Answer::Fault { code, message } => Err(format!("fault {code}: {message}")),
        }
    }

    /// Whether the stand-in answers `method` (else oned's "not defined" fault).
    pub fn answers(method: &str) -> bool {
        methods::handler(method).is_some()
    }

    /// The VMs running on a host (`HOST/VMS/ID`, `HOST_SHARE/RUNNING_VMS`):
    /// a host with VMs cannot be deleted.
    pub fn set_host_vms(&self, host_id: i64, vms: &[i64]) -> Result<(), String> {
        let mut state = lock(&self.shared.state);
        let host = state
            .hosts
            .get_mut(&host_id)
            .ok_or_else(|| format!("no host {host_id}"))?;
        host.vms = vms.iter().copied().collect();
        Ok(())
    }

    /// Sets a host's state as monitoring would (2 MONITORED, 3 ERROR, ...).
    pub fn set_host_state(&self, host_id: i64, state: i64) -> Result<(), String> {
        let mut st = lock(&self.shared.state);
        let host = st.hosts.get_mut(&host_id).ok_or_else(|| format!("no host {host_id}"))?;
        host.prev_state = std::mem::replace(&mut host.state, state);
        Ok(())
    }

    /// Leases an address of a network's range to a VM, as oned does for a
    /// NIC: a range with an IPAM driver asks it (`get_address`), another
    /// gives its first free address.
    pub fn lease(&self, vnet_id: i64, ar_id: i64, vm: i64) -> Result<Lease, String> {
        ranges::lease(&self.shared, vnet_id, ar_id, vm)
    }

    /// Releases a lease (by its MAC), telling the range's IPAM driver
    /// (`free_address`); a failing driver keeps the lease.
    pub fn release(&self, vnet_id: i64, ar_id: i64, mac: &str) -> Result<(), String> {
        ranges::release(&self.shared, vnet_id, ar_id, mac)
    }

    pub fn clusters(&self) -> Vec<ClusterView> {
        lock(&self.shared.state)
            .clusters
            .values()
            .map(model::Cluster::view)
            .collect()
    }

    pub fn hosts(&self) -> Vec<HostView> {
        lock(&self.shared.state).hosts.values().map(model::Host::view).collect()
    }

    pub fn datastores(&self) -> Vec<DatastoreView> {
        lock(&self.shared.state)
            .datastores
            .values()
            .map(model::Datastore::view)
            .collect()
    }

    pub fn vnets(&self) -> Vec<VnetView> {
        lock(&self.shared.state).vnets.values().map(vnet::Vnet::view).collect()
    }

    pub fn vntemplates(&self) -> Vec<VnTemplateView> {
        lock(&self.shared.state)
            .vntemplates
            .values()
            .map(model::VnTemplate::view)
            .collect()
    }
}

impl Drop for OnedSim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}
