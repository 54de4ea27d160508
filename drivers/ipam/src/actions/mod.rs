//! The five IPAM actions (and the maintenance commands), on the Scaleway
//! client and the block store.

use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use opennebula::attr::Token;
use opennebula::driver::{Driver, Env, Log, Output};
use opennebula::ipam::IpamRequest;
use opennebula::template::Template;
use scaleway::flexible_ip::{FipFilter, FipStatus, FlexibleIp, NewFlexibleIp};
use scaleway::{Client, Credentials, Tuning, Zone};

use crate::alloc::{Allocation, Block, DEFAULT_PRIVATE_CIDR, Phase, PrivateCidr, State, Store};
use crate::tags;

mod address;
mod recovery;
mod register;
mod unregister;

pub use address::{check_address, get_address};
pub use recovery::{STALE_PENDING_SECS, orphans, rebuild};
pub use register::register;
pub use unregister::unregister;

/// Environment variable: where the block state lives (tests, unusual setups).
pub const STATE_DIR_ENV: &str = "ONE_SCALEWAY_STATE_DIR";

/// The block state file: `$ONE_SCALEWAY_STATE_DIR/ipam-blocks.json`, else
/// under `$ONE_LOCATION/var/scaleway/`, else `/var/lib/one/scaleway/`.
pub fn state_path(env: &Env) -> PathBuf {
    let dir = match (env.get(STATE_DIR_ENV), env.get("ONE_LOCATION")) {
        (Some(dir), _) => PathBuf::from(dir),
        (None, Some(one)) => PathBuf::from(one).join("var/scaleway"),
        (None, None) => PathBuf::from("/var/lib/one/scaleway"),
    };
    dir.join("ipam-blocks.json")
}

/// Client settings from the environment (see [`scaleway::Tuning`]).
pub fn tuning(env: &Env) -> anyhow::Result<Tuning> {
    Ok(Tuning::from_env(&|k| env.get(k).map(str::to_owned))?)
}

/// What a range asks for, read from its AR.
struct RangeSettings {
    ipv6: bool,
    /// IPv4 ranges only: IPv6 ranges route their /64 to the VM, no private block.
    private_cidr: PrivateCidr,
    profile: Option<String>,
    provision_id: Option<String>,
    /// A `scaleway-provision` provision's id (`SCALEWAY_PROVISION`).
    scaleway_provision: Option<String>,
    zone: Option<Zone>,
}

fn settings(request: &IpamRequest) -> anyhow::Result<RangeSettings> {
    let ar = &request.ar.attrs;
    let ipv6 = match ar.get("SCALEWAY_IP_TYPE").map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("ipv4") => false,
        Some("ipv6") => true,
        Some(other) => bail!(
            "{}/SCALEWAY_IP_TYPE = {} must be ipv4 or ipv6",
            ar.path(),
            opennebula::attr::show(other)
        ),
    };
    let private_cidr = PrivateCidr::parse(
        ar.get("PRIVATE_CIDR")
            .filter(|v| !v.is_empty())
            .unwrap_or(DEFAULT_PRIVATE_CIDR),
    )
    .map_err(|e| anyhow!("{}/{e}", ar.path()))?;
    let profile: Option<Token> = ar.parse("SCALEWAY_PROFILE")?;
    let provision: Option<u64> = ar.parse("PROVISION_ID")?;
    let zone: Option<Token> = ar.parse("SCALEWAY_ZONE")?;
    let scaleway_provision: Option<Token> = ar.parse("SCALEWAY_PROVISION")?;
    let zone = zone.map(|z| Zone::new(z.as_str())).transpose()?;
    if let Some(size) = request.ar.size
        && size != 1
    {
        bail!(
            "{}/SIZE = {size}: a scaleway range holds exactly one address (one flexible IP); use SIZE = 1",
            ar.path()
        );
    }
    Ok(RangeSettings {
        ipv6,
        private_cidr,
        profile: profile.map(|p| p.to_string()),
        provision_id: provision.map(|p| p.to_string()),
        scaleway_provision: scaleway_provision.map(|p| p.to_string()),
        zone,
    })
}

/// The credentials of a range (see [`scaleway::config::resolve_for`]): a
/// range that carries only a `PROVISION_ID` uses its provider's connection,
/// read from oned.
pub fn credentials_for(env: &Env, profile: Option<&str>, provision: Option<&str>) -> anyhow::Result<Credentials> {
    let from_env = |k: &str| env.get(k).map(str::to_owned);
    let provision = provision
        .map(|p| {
            p.parse::<u64>()
                .map_err(|_| anyhow!("PROVISION_ID {p:?} is not a number"))
        })
        .transpose()?;
    let fetch = |id: u64| {
        opennebula::oned::Oned::from_env(env)
            .and_then(|oned| oned.provider_connection(id))
            .map_err(|e| e.to_string())
    };
    Ok(scaleway::config::resolve_for(
        &from_env,
        profile,
        provision,
        Box::new(fetch),
    )?)
}

/// How long an IPAM action may take, by default: oned drops an answer after
/// 90 s, time waiting in its one-at-a-time queue included.
pub const DEFAULT_ACTION_BUDGET_SECS: u64 = 60;

/// The tuning of one of the five actions: every Scaleway request and wait
/// ends within the action's budget (`ONE_SCALEWAY_IPAM_BUDGET` seconds,
/// counted from the first call of this function), so that the action fails
/// (and undoes what it made) while oned still listens, rather than succeed
/// after oned stopped listening.
fn action_tuning(env: &Env) -> anyhow::Result<Tuning> {
    static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let started = *STARTED.get_or_init(std::time::Instant::now);
    let budget = match env.get("ONE_SCALEWAY_IPAM_BUDGET") {
        Some(v) => std::time::Duration::from_secs(
            v.trim()
                .parse()
                .map_err(|_| anyhow!("ONE_SCALEWAY_IPAM_BUDGET={v:?} is not a whole number of seconds"))?,
        ),
        None => std::time::Duration::from_secs(DEFAULT_ACTION_BUDGET_SECS),
    };
    let mut tuning = tuning(env)?;
    let deadline = started + budget;
    tuning.options.deadline = Some(deadline);
    tuning.wait.timeout = tuning
        .wait
        .timeout
        .min(deadline.saturating_duration_since(std::time::Instant::now()));
    Ok(tuning)
}

/// Credentials and client for a range.
fn connect(d: &mut Driver<'_, '_>, s: &RangeSettings) -> anyhow::Result<(Client, Credentials)> {
    let env = d.env;
    let credentials = credentials_for(env, s.profile.as_deref(), s.provision_id.as_deref())?;
    let tuning = action_tuning(env)?;
    let client = Client::new(credentials.clone(), tuning.options)?;
    Ok((client, credentials))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
