//! `scaleway-emulator`: a local Scaleway API for our tests and the sandbox.
//!
//! A client targets it by changing only its base URL (`SCW_API_URL`) and
//! using any UUID as secret key: same paths, methods, JSON shapes, status
//! codes and error bodies as `api.scaleway.com` for the APIs the drivers use,
//! checked against the recorded traffic in `shared/scaleway/recordings`
//! (`tests/recordings.rs` replays all of it). It is a plain HTTP/1.1 server on
//! `std::net` (a thread per connection, keep-alive, `Content-Length` or
//! chunked request bodies), with no async runtime.
//!
//! # Command line
//!
//! ```text
//! scaleway-emulator [--listen 127.0.0.1:PORT] [--secret-key UUID]... [--speed F]
//!                   [--manual-clock] [--seed N] [--project-id UUID]...
//!                   [--network PREFIX [--state-root DIR] [--mtu N] [--frr] [--host-fs]]
//! scaleway-emulator exec [--prefix P] [--state-root DIR] TARGET -- PROGRAM ARGS...
//! scaleway-emulator cleanup [--prefix P] [--state-root DIR]
//! scaleway-emulator-ssh [SSH OPTIONS] [USER@]HOST COMMAND...   (a symlink)
//! ```
//!
//! - `--listen` (default `127.0.0.1:0`): loopback only (`0.0.0.0` or a
//!   public address is refused, exit 2); port 0 picks a free port. The first
//!   stdout line, flushed, is `listening on http://127.0.0.1:PORT` with the
//!   real port; then it serves until killed (SIGTERM/SIGINT end it).
//! - `--secret-key UUID` (repeatable): accept only these `X-Auth-Token`
//!   values. Without it any UUID is accepted.
//! - `--speed F` (default [`DEFAULT_SPEED`] = 0.1): multiplies every
//!   simulated delay. 1.0 is realistic (a FIP attach takes 5 s, an OS install
//!   about 6 min); 0.01 suits tests.
//! - `--manual-clock`: start with a frozen clock that only
//!   `POST /_emulator/clock` moves.
//! - `--seed N`: reproducible ids, addresses and fault probabilities.
//! - `--project-id UUID` (repeatable): projects that exist from the start,
//!   each with a default VPC in every region.
//!
//! - `--network PREFIX`: the network mode (root and iproute2 needed; see
//!   [`network`]): servers, private networks and flexible IPs become network
//!   namespaces named `PREFIX-…`; `--state-root DIR` (default
//!   `/run/scaleway-emulator/PREFIX`) holds the per-server folders,
//!   `--mtu N` (default 1500) is the private NICs' MTU, `--frr` starts FRR
//!   (zebra, bgpd) in every server's namespace ([`network::frr`]),
//!   `--host-fs` gives every server its own `/etc`, `/var/lib`, `/var/tmp` and `/run`
//!   ([`network::hostfs`]). SIGTERM, SIGINT and
//!   SIGHUP then stop it cleanly (exit 0) after deleting every namespace it
//!   created.
//! - `exec`, `cleanup` and the `scaleway-emulator-ssh` alias: run a program
//!   on an emulated server (in place of SSH), remove what a killed emulator
//!   left; see [`network::exec`].
//!
//! Exit codes: 2 for a bad command line or a refused address, 1 when the
//! port cannot be bound or the network mode cannot be set up.
//!
//! # Library
//!
//! ```no_run
//! use scaleway_emulator::{Emulator, Options};
//! let emu = Emulator::start(Options { speed: 1.0, manual_clock: true, ..Options::default() }).unwrap();
//! let base = emu.url(); // "http://127.0.0.1:PORT"
//! emu.advance(5.0); // same as POST /_emulator/clock {"advance_seconds": 5}
//! emu.stop(); // or drop it
//! ```
//!
//! The network mode: `Options { network:
//! Some(NetworkOptions::with_prefix("scw")), .. }` (fields `prefix`,
//! `state_root`, `mtu`, `frr`, `host_fs`); [`Running::network`] gives the report of
//! `GET /_emulator/network`, once the kernel matches the API.
//!
//! [`Running`] also has typed helpers for the control API: `advance`,
//! `set_manual_clock`, `now`, `set_speed`, `add_fault`, `clear_faults`,
//! `calls`, `clear_calls`, `state`, `register_project`, `reset`, `network`;
//! [`Running::stopper`] stops it from another thread.
//!
//! # What is served
//!
//! Every call needs `X-Auth-Token` (a UUID, or one of `--secret-key`);
//! otherwise `401 {"type":"denied_authentication","method":"api_key","reason":"not_found","message":"authentication is denied"}`.
//! Every answer has `X-Request-Id`, `Date` (from the emulator clock) and
//! `Server`. Unknown zones or regions give `400 invalid_arguments` (argument
//! `zone` or `region`). Creates answer 200; deletes that answer 204 have an
//! empty body (with `Content-Type: application/json`, as the real API).
//! Every list paginates: `page` (1-based), `page_size` (default **20**,
//! maximum 100; more is `400 invalid_arguments`), `total_count` counts every
//! match. Repeated query keys are arrays (`tags=a&tags=b`, also `tags[]=`).
//! Unknown request fields are ignored; `null`, missing and `[]` are accepted
//! for optional arrays.
//!
//! | API | Paths (`/…` under the locality) |
//! |---|---|
//! | Flexible IP v1alpha1 (EM zones) | `POST/GET /fips`, `GET/PATCH/DELETE /fips/{id}`, `POST /fips/attach`, `POST /fips/detach`, `POST/DELETE /fips/{id}/mac`, `POST /fips/{id}/mac/duplicate`, `POST /fips/{id}/mac/move` |
//! | Elastic Metal v1 (EM zones) | `GET /offers`, `/offers/{id}`, `/os`, `/os/{id}`, `/options`, `/options/{id}`, `/partitioning-schemas/default`; `POST/GET /servers`, `GET/PATCH/DELETE /servers/{id}`, `POST /servers/{id}/install`, `…/start`, `…/stop`, `…/reboot`, `POST/DELETE /servers/{id}/options/{option_id}`, `GET /servers/{id}/events` (empty) |
//! | Elastic Metal v3 (EM zones) | `PUT/POST /servers/{id}/private-networks`, `DELETE /servers/{id}/private-networks/{pn_id}`, `GET /server-private-networks` |
//! | VPC v2 (regions) | `POST/GET /vpcs`, `GET/PATCH/DELETE /vpcs/{id}`, `POST /vpcs/{id}/enable-routing`, `POST/GET /private-networks`, `GET/PATCH/DELETE /private-networks/{id}`, `POST /private-networks/{id}/enable-dhcp` |
//! | Public Gateway v2 (gateway zones) | `GET /gateway-types`, `POST/GET /gateways`, `GET/PATCH /gateways/{id}`, `DELETE /gateways/{id}?delete_ip=`, `POST /gateways/{id}/refresh-ssh-keys`, `POST/PUT /gateways/{id}/bastion-allowed-ips`, `DELETE /gateways/{id}/bastion-allowed-ips/{cidr}`, `POST/GET /gateway-networks`, `GET/PATCH/DELETE /gateway-networks/{id}`, `POST/GET /ips`, `GET/PATCH/DELETE /ips/{id}` |
//! | IPAM v1 (regions) | `POST/GET /ips`, `GET/PATCH/DELETE /ips/{id}` |
//! | IAM v1alpha1 (global) | `POST/GET /ssh-keys`, `GET/PATCH/DELETE /ssh-keys/{id}` |
//!
//! Localities: EM zones `fr-par-1`, `fr-par-2`, `nl-ams-1`, `nl-ams-2`,
//! `pl-waw-2`, `pl-waw-3`; gateway zones add `it-mil-1`, `nl-ams-3`,
//! `pl-waw-1`; regions `fr-par`, `nl-ams`, `pl-waw`, `it-mil`.
//!
//! Catalogue: five real offers (ids are the real ones, the same in every
//! zone), each with an hourly and a monthly twin: `EM-A116X-SSD` (stock
//! `low`, no cloud-init, Proxmox and ESXi incompatible), `EM-B220E-NVME`,
//! `EM-I215E-NVME`, `EM-L110X-SATA` (no cloud-init) and `EM-L420E-NVME`
//! (stock `empty`); eight real OSes; each offer has a `Private Network`
//! option (`cd4158d7-2d65-49be-8803-c4b8ab6f760c`). `subscription_period`
//! absent, `unknown_subscription_period` or `hourly` lists the hourly twins,
//! `monthly` the monthly ones (as recorded).
//!
//! Error shapes: `400 invalid_arguments` with `details[{argument_name,
//! reason, help_message}]`; `403 permissions_denied`
//! `details:[{action:"read",resource:"flexible-ip"}]` for any unknown or
//! deleted FIP (GET, PATCH, DELETE, attach, detach; the MAC endpoints answer
//! `404 not_found` with `resource:"flexible_ips"`, as recorded); `404 not_found`
//! `{resource, resource_id}` for VPC, PN, gateway, GN, IPs, SSH keys;
//! `404 {"message":"Not Found"}` for EM v1 (servers, offers, OSes);
//! `409 transient_state {resource, resource_id, current_state}` when acting
//! on a transient FIP, server, mapping, gateway or GN (a GN create while the
//! gateway is not `running` names the **gateway**); `409 already_exists`
//! (same SSH key twice in a project, a booked address); `412
//! precondition_failed` (`resource_still_in_use`: a PN with server mappings or
//! gateway networks, a VPC with PNs, a gateway with GNs, an IP in use;
//! `protected_resource`: a protected server); `503
//! {"message":"cloud-init is not supported on this offer"}` for `user_data`
//! on an offer without the `cloud-init` tag; `503 out_of_stock {resource:
//! <offer name>}` for an offer whose stock is `empty`.
//!
//! # Time: clock, speed, transitions
//!
//! The emulator clock counts seconds since the start; in `real` mode it
//! follows the wall clock, in `manual` mode it is frozen and only moves when
//! told to (`POST /_emulator/clock`). Timestamps are `start + clock`. Each
//! change that takes time is scheduled at `now + nominal delay × speed`
//! (the speed in force when it is scheduled); before any request is answered
//! the due changes are applied in time order, so what a client sees is a
//! function of the clock only. Nominal delays (seconds, from the recordings):
//!
//! | Resource | Sequence |
//! |---|---|
//! | FIP | create → `ready`; create with `server_id` or attach → `updating` (server_id null) → 5 → `attached` (server_id set); detach → `detaching` (server_id kept) → 5 → `ready`; delete of an attached FIP → `detaching` → 5 → gone; server deleted → `detaching` → 10 → `ready`. MAC: `ready` on an unattached FIP; `updating` → 5 → `used` on an attached one |
//! | Server | with install: `ordered` → 5 → `ready`; install `to_install` → 25 → `installing` → 330 → `completed`. Without install: `delivering` → 2 → `ready`, `install:null`. install: `to_install` → 20 → `installing` → 330 → `completed`. stop: `stopping` → 15 → `stopped`; start: `starting` → 15 → `ready`; reboot: `stopping` → 8 → `starting` → 15 → `ready`; delete: `deleting` → 5 → `404 {"message":"Not Found"}`. Options: `option_status_enabling` → 10 → `option_status_enable`; delete: `option_status_disabling` → 10 → gone |
//! | Server ↔ PN | `attaching` → 15 → `attached`; removal: `detaching` (IPs released at once) → 10 → gone |
//! | Gateway | `allocating` → 5 → `configuring` → 2 → `running`; a GN create: gateway `configuring` → 15 → `running`; a bastion/SMTP change: `configuring` → 5 → `running`; delete: `deleting` in the answer, gone at once |
//! | GN | create: `created` → 15 → `ready`; patch: `configuring` → 5 → `ready`; delete: `detaching` → 5 → 404 |
//!
//! Shapes taken from the recordings: no `version` on a gateway while
//! `allocating`, no `mac_address` on a GN while `created`, no
//! `transitivity_enabled` on a VPC unless true, no `protected`/`user_data` on
//! a server created without either, empty `ips` only in the server create
//! answer, `domain` set once the install starts, the tag `PrivateNetwork`
//! added to a server when its Private Network option is enabled.
//!
//! # Control API (`/_emulator/`, no token needed)
//!
//! | Call | Body | Answer |
//! |---|---|---|
//! | `GET /_emulator/state` | | `{now_seconds, empty, counts:{flexible_ips, servers, server_private_networks, vpcs, private_networks, gateways, gateway_networks, gateway_ips, ipam_ips, ssh_keys}, flexible_ips:[…], servers:[…], server_private_networks:[…], vpcs:[…], default_vpcs:[…], private_networks:[…], gateways:[…], gateway_networks:[…], gateway_ips:[…], ipam_ips:[…], ssh_keys:[…], pending_transitions:[{at, resource_id, lane, action}]}`: every resource as the API shows it; `empty` is true when every count is 0 (default VPCs are apart, in `default_vpcs`) |
//! | `GET /_emulator/calls` | | `{total_count, calls:[{seq, method, path, query, status, fault, at, request_id}]}`: every Scaleway call (not control calls), `status` null when the connection was dropped, `fault` the kind that fired or null |
//! | `DELETE /_emulator/calls` | | 204 |
//! | `POST /_emulator/faults` | a rule (below) | 200 `{id, kind, method, path, path_prefix, remaining, probability, hits, params}` |
//! | `GET /_emulator/faults` | | `{faults:[rule…]}` |
//! | `DELETE /_emulator/faults` / `…/faults/{id}` | | 204 (404 for an unknown id) |
//! | `GET /_emulator/clock` | | `{now_seconds, mode:"manual"\|"real", speed, wall, pending_transitions}` |
//! | `POST /_emulator/clock` | `{"mode":"manual"\|"real"}`, `{"advance_seconds":N}`, `{"advance_to":T}` (any combination; the clock never goes back) | as GET, after applying what became due |
//! | `GET /_emulator/speed` / `PUT /_emulator/speed` | `{"speed":F}` (F ≥ 0) | `{speed}` |
//! | `GET /_emulator/projects` / `POST /_emulator/projects` | `{"project_id":UUID}` | `{projects:[…]}` / `{project_id, default_vpcs:[…]}` |
//! | `PUT /_emulator/stock` | `{"offer_id"\|"offer_name", "zone"?, "stock":"empty"\|"low"\|"available"}` | `{stock:[{zone, offer_id, name, stock}]}` |
//! | `POST /_emulator/reset` | | 204: forgets every resource, transition, fault, call and stock override (keeps clock, speed, projects); the network mode builds its namespaces again from scratch |
//! | `GET /_emulator/network` | | the network mode's namespaces and routes (see [`network`]); 404 without it |
//! | `GET /_emulator` | | `{endpoints:[…]}` |
//!
//! Bad control bodies answer `400 invalid_arguments`.
//!
//! # Faults
//!
//! A rule: `{"kind": K, "method"?: "GET", "path"?: GLOB, "path_prefix"?:
//! "/flexible-ip/", "times"?: N, "probability"?: P, …params}`. `path` is a
//! glob on the decoded path where `*` matches within one segment and `**`
//! anything; without `method`/`path`/`path_prefix` a rule matches every
//! Scaleway call. It fires on the next `times` matching calls (default 1),
//! or on each matching call with `probability` (then unlimited unless
//! `times` is also given). Rules are tried in order; the first that fires
//! decides the call's fault. Kinds:
//!
//! | Kind | Params | Effect |
//! |---|---|---|
//! | `rate_limit` | | 429, empty body, no Content-Type, `X-Envoy-Ratelimited: true`, no Retry-After (the real gateway) |
//! | `rate_limit_retry_after` | `retry_after` (s, default 1) | the same with `Retry-After` |
//! | `internal_error` | | `500 {"message":"internal error"}` |
//! | `upstream_error` | `status` (5xx, default 502), `body` (`html` default, or `empty`) | an HTML page (`text/html`) or an empty `text/plain` body |
//! | `unavailable` | `message` | a permanent-looking JSON 503 `{"message":…}` (like the cloud-init one) |
//! | `delay` | `seconds` (default 3; real seconds, not scaled) | hangs, then answers normally: slow answers and client timeouts |
//! | `drop` | | closes the connection without answering; the call is not performed |
//! | `reset_mid_body` | | performs the call, sends the headers and half the body, closes |
//! | `transient_state` | `resource`, `resource_id`, `current_state` | 409 transient_state; by default the last id of the path, or for a create the `gateway_id`/`server_id` of the body (a GN create names its gateway) |
//! | `quotas_exceeded` | `resource`, `quota`, `current` (default 1) | 403 quotas_exceeded `details[{resource, quota, current, project_id}]`; the resource defaults to the offer's `quota_name` for servers, `flexible_ips` for FIPs |
//! | `permissions_denied` | `resource` (default: the path's), `action` (default `read` for GET, else `write`) | 403 permissions_denied `details[{resource, action}]`, the shape recorded for FIPs: an API key whose IAM policy lacks the product |
//! | `out_of_stock` | `accept` (default false) | 503 out_of_stock naming the offer; with `accept`, a server create succeeds and the server sits at `out_of_stock` |
//! | `stuck` | | the transitions the call schedules never finish (an install stays `installing`, an attach `updating`, a delete `deleting`) |
//! | `transition_error` | | they end in `error` (install `error`, server, FIP, mapping, GN `error`, gateway `failed`) |
//! | `transition_locked` | | they end in `locked` (for a server create: the server) |
//! | `commit_then_error` | `status` (default 500) | performs the call, answers the error: a naive retry duplicates the FIP or server |
//! | `commit_then_drop` | | performs the call, closes without answering |
//! | `eventual_consistency` | `reads` (default 2) | the resource the call creates is invisible to the next `reads` reads: GET answers its not-found shape (403 for a FIP, `{"message":"Not Found"}` for a server), lists omit it |
//! | `recycle_fip` | | a FIP create reuses the most recently deleted FIP of the zone: same id, address and `created_at` |
//! | `total_count_delta` | `delta` (default 1) | lists report `total_count` off by `delta` (an extra, empty last page) |
//!
//! Every fired fault shows in `GET /_emulator/calls` (`fault`) and in the
//! rule's `hits` and `remaining`.

pub mod baremetal;
pub mod bmpn;
mod cli;
pub mod control;
pub mod errors;
pub mod faults;
pub mod fip;
pub mod http;
pub mod iam;
pub mod input;
pub mod ipam;
pub mod network;
pub mod router;
mod running;
pub mod server;
pub mod util;
pub mod vpc;
pub mod vpcgw;
pub mod world;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};

pub use crate::cli::main_with;
use crate::network::{Network, NetworkOptions};
pub use crate::running::{Running, Stopper};
use crate::server::Shared;
use crate::world::World;

/// The default speed factor: every simulated delay is multiplied by it
/// (0.1 makes a 5 s FIP attach take 0.5 s and an OS install about 35 s).
pub const DEFAULT_SPEED: f64 = 0.1;

/// How to start an emulator.
#[derive(Debug, Clone)]
pub struct Options {
    /// Loopback address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Accepted `X-Auth-Token` values; empty accepts any UUID.
    pub secret_keys: Vec<String>,
    /// Multiplies every simulated delay (1.0 is realistic).
    pub speed: f64,
    /// Start with a frozen clock that only `advance` moves.
    pub manual_clock: bool,
    /// Seed of the generator of ids, addresses and fault probabilities.
    pub seed: Option<u64>,
    /// Projects that exist from the start (each gets a default VPC per region).
    pub project_ids: Vec<String>,
    /// The network mode (root needed): resources become network namespaces.
    pub network: Option<NetworkOptions>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            secret_keys: Vec::new(),
            speed: DEFAULT_SPEED,
            manual_clock: false,
            seed: None,
            project_ids: Vec::new(),
            network: None,
        }
    }
}

/// Why an emulator could not start.
#[derive(Debug)]
pub enum StartError {
    NotLoopback(SocketAddr),
    BadOption(String),
    Bind(std::io::Error),
    /// The network mode could not be set up.
    Network(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::NotLoopback(a) => write!(f, "refusing to listen on {a}: only loopback addresses are allowed"),
            StartError::BadOption(m) => write!(f, "{m}"),
            StartError::Bind(e) => write!(f, "cannot listen: {e}"),
            StartError::Network(m) => write!(f, "network mode: {m}"),
        }
    }
}

impl std::error::Error for StartError {}

/// The emulator, as a library.
pub struct Emulator;

impl Emulator {
    /// Binds and starts serving in background threads.
    pub fn start(options: Options) -> Result<Running, StartError> {
        if !options.listen.ip().is_loopback() {
            return Err(StartError::NotLoopback(options.listen));
        }
        if !(options.speed.is_finite() && options.speed >= 0.0) {
            return Err(StartError::BadOption(format!(
                "bad speed {}: a number >= 0 is required",
                options.speed
            )));
        }
        if let Some(k) = options.secret_keys.iter().find(|k| !util::is_uuid(k)) {
            return Err(StartError::BadOption(format!("secret key {k:?} is not a UUID")));
        }
        if let Some(p) = options.project_ids.iter().find(|p| !util::is_uuid(p)) {
            return Err(StartError::BadOption(format!("project id {p:?} is not a UUID")));
        }
        if let Some(n) = &options.network {
            n.check().map_err(StartError::BadOption)?;
        }
        let listener = TcpListener::bind(options.listen).map_err(StartError::Bind)?;
        let addr = listener.local_addr().map_err(StartError::Bind)?;
        let mut world = World::new(options.speed, options.manual_clock, options.seed, options.secret_keys);
        for p in options.project_ids {
            world.register_project(&p.to_ascii_lowercase());
        }
        let network = match options.network {
            Some(n) => Some(Arc::new(Network::create(n).map_err(StartError::Network)?)),
            None => None,
        };
        let shared = Arc::new(Shared {
            world: Mutex::new(world),
            stop: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            network: network.clone(),
        });
        if let Some(n) = &network {
            n.spawn(Arc::clone(&shared));
        }
        let acceptor = server::spawn_acceptor(listener, Arc::clone(&shared));
        Ok(Running {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }
}
