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

/// Rebuilds the block state from our tagged flexible IPs in `zone`.
pub fn rebuild(client: &Client, zone: &Zone, project: &str) -> anyhow::Result<State> {
    let filter = FipFilter {
        project_id: Some(project.to_owned()),
        tags: vec![tags::OURS.to_owned()],
        ..FipFilter::default()
    };
    let mut state = State::default();
    for fip in client
        .list_fips(zone, &filter)?
        .into_iter()
        .filter(|f| tags::is_ours(&f.tags))
    {
        let token = tags::value(&fip.tags, tags::TOKEN).unwrap_or_default().to_owned();
        let allocation = Allocation {
            phase: Phase::Active,
            token: token.clone(),
            zone: zone.to_string(),
            fip_id: Some(fip.id.clone()),
            external_ip: fip.address().map(|a| a.to_string()),
            since: now(),
            owner: None,
        };
        match tags::value(&fip.tags, tags::BLOCK).and_then(Block::parse) {
            Some(block) => {
                state.blocks.insert(block, allocation);
            }
            None => {
                let key = if token.is_empty() { fip.id.clone() } else { token };
                state.unblocked.insert(key, allocation);
            }
        }
    }
    Ok(state)
}

/// `register_address_range`: one flexible IP, one private block, one AR.
pub fn register(d: &mut Driver<'_, '_>, request: &IpamRequest) -> anyhow::Result<Output> {
    let s = settings(request)?;
    let (client, credentials) = connect(d, &s)?;
    let zone = match &s.zone {
        Some(z) => z.clone(),
        None => credentials.require_zone()?.clone(),
    };
    let project = credentials.require_project()?.to_owned();
    let token = tags::new_token().context("cannot make a registration token")?;
    let store = Store::new(state_path(d.env));

    // 0. Repair registrations that crashed half-way: their flexible IP (found by
    //    token) is deleted and their reservation forgotten.
    let crashed = store.update(
        || rebuild(&client, &zone, &project),
        |state| Ok::<_, anyhow::Error>(state.crashed()),
    )?;
    for old in &crashed {
        let tag = format!("{}{old}", tags::TOKEN);
        let filter = FipFilter {
            project_id: Some(project.clone()),
            tags: vec![tag],
            ..FipFilter::default()
        };
        for fip in client.list_fips(&zone, &filter)? {
            client.delete_fip(&zone, &fip.id, &project)?;
            d.log.info(format_args!(
                "released flexible IP {} of a registration that crashed",
                fip.ip_address
            ));
        }
        store.update(
            || Ok::<_, anyhow::Error>(State::default()),
            |state| {
                state.forget_pending(old);
                Ok(())
            },
        )?;
    }

    // 1. Reserve the registration (and the private block of an IPv4 range),
    //    before anything exists at Scaleway.
    let pending = Allocation {
        phase: Phase::Pending,
        token: token.clone(),
        zone: zone.to_string(),
        fip_id: None,
        external_ip: None,
        since: now(),
        owner: crate::alloc::Owner::me(),
    };
    let cidr = s.private_cidr;
    let ipv6 = s.ipv6;
    let block = store.update(
        || rebuild(&client, &zone, &project),
        |state| {
            if ipv6 {
                state.unblocked.insert(token.clone(), pending);
                return Ok(None);
            }
            let block = cidr.first_free(&state.taken()).ok_or_else(|| {
                anyhow!(
                    "PRIVATE_CIDR {cidr} is exhausted ({} ranges): give this range a larger or another PRIVATE_CIDR",
                    cidr.capacity()
                )
            })?;
            state.blocks.insert(block, pending);
            Ok(Some(block))
        },
    )?;
    let release_block = |log: &mut Log<'_>| {
        let freed = store.update(
            || Ok::<_, anyhow::Error>(State::default()),
            |state| {
                state.forget_pending(&token);
                Ok(())
            },
        );
        if let Err(e) = freed {
            log.error(format_args!(
                "could not free the reservation of this registration: {e:#}"
            ));
        }
    };

    // 2. The flexible IP, tagged with the token so an ambiguous create is found, not repeated.
    let block_text = block.map(|b| b.cidr()).unwrap_or_default();
    let new = NewFlexibleIp {
        project_id: project.clone(),
        description: "OpenNebula address range (one-scaleway)".to_owned(),
        tags: tags::for_range(
            &token,
            &block_text,
            s.provision_id.as_deref(),
            s.scaleway_provision.as_deref(),
        ),
        server_id: None,
        is_ipv6: s.ipv6,
    };
    let fip = match client.create_fip(&zone, &new, &format!("{}{token}", tags::TOKEN)) {
        Ok(fip) => fip,
        Err(e) => {
            release_block(d.log);
            return Err(anyhow!(e).context("cannot create the flexible IP for this address range"));
        }
    };
    let undo = {
        let client_zone = zone.clone();
        let project = project.clone();
        let fip_id = fip.id.clone();
        move |client: &Client, log: &mut Log<'_>| match client.delete_fip(&client_zone, &fip_id, &project) {
            Ok(_) => log.info(format_args!("released flexible IP {fip_id}")),
            Err(e) => log.error(format_args!(
                "could not release flexible IP {fip_id}: {e}; `scaleway-ipam gc --delete` will"
            )),
        }
    };

    // 3. The answer, then the block marked active. Any failure from here releases both.
    let answer = (|| -> anyhow::Result<String> {
        let external: IpAddr = fip
            .address()
            .ok_or_else(|| anyhow!("Scaleway returned flexible IP {} without an address", fip.id))?;
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut push = |k: &str, v: String| pairs.push((k.to_owned(), v));
        match block {
            Some(b) => {
                push("TYPE", "IP4".into());
                push("IP", b.vm.to_string());
                push("SIZE", "1".into());
                push("GATEWAY", b.gateway.to_string());
                push("NETWORK_MASK", "255.255.255.254".into());
                push("PRIVATE_CIDR", s.private_cidr.to_string());
            }
            None => {
                let IpAddr::V6(prefix) = external else {
                    bail!("Scaleway returned an IPv4 address for an IPv6 flexible IP")
                };
                let p = u128::from(prefix) & !((1u128 << 64) - 1);
                push("TYPE", "IP6_STATIC".into());
                push("IP6", Ipv6Addr::from(p | 2).to_string());
                push("PREFIX_LENGTH", "64".into());
                push("SIZE", "1".into());
                push("GATEWAY6", Ipv6Addr::from(p | 1).to_string());
            }
        }
        push("IPAM_MAD", crate::IPAM_MAD.into());
        push(
            "EXTERNAL_IP",
            match external {
                IpAddr::V4(a) => a.to_string(),
                // The /64's first address: the NIC reads EXTERNAL_IP as an address.
                IpAddr::V6(a) => a.to_string(),
            },
        );
        push("SCALEWAY_IP_ID", fip.id.clone());
        push("SCALEWAY_ZONE", zone.to_string());
        push("SCALEWAY_IP_TYPE", if s.ipv6 { "ipv6" } else { "ipv4" }.into());
        if let Some(p) = &s.profile {
            push("SCALEWAY_PROFILE", p.clone());
        }
        if let Some(p) = &s.provision_id {
            push("PROVISION_ID", p.clone());
        }
        if let Some(p) = &s.scaleway_provision {
            push("SCALEWAY_PROVISION", p.clone());
        }
        // oned replaces the whole range with the answer: everything else the
        // user wrote (DNS, SECURITY_GROUPS, custom attributes) is echoed.
        let owned: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
        pairs.extend(echoed(&request.ar.attrs, &owned));
        let mut t = Template::new();
        t.vector("AR", pairs);
        let text = t.render()?;
        store.update(
            || Ok::<_, anyhow::Error>(State::default()),
            |state| {
                let a = match block {
                    Some(b) => state.blocks.get_mut(&b),
                    None => state.unblocked.get_mut(&token),
                }
                .ok_or_else(|| anyhow!("the reservation of this registration vanished from the state file"))?;
                a.phase = Phase::Active;
                a.fip_id = Some(fip.id.clone());
                a.external_ip = Some(external.to_string());
                a.owner = None;
                Ok(())
            },
        )?;
        Ok(text)
    })();
    let text = match answer {
        Ok(text) => text,
        Err(e) => {
            undo(&client, d.log);
            release_block(d.log);
            return Err(e.context("cannot register the address range (the flexible IP was released)"));
        }
    };
    d.log.info(format_args!(
        "flexible IP {} ({}) created in {zone}{}",
        fip.ip_address,
        fip.id,
        block.map(|b| format!(", private block {b}")).unwrap_or_default()
    ));
    let store_path = state_path(d.env);
    Ok(Output {
        stdout: text,
        undo_if_undelivered: Some(Box::new(move |log| {
            undo(&client, log);
            Store::new(store_path).update(
                || Ok::<_, anyhow::Error>(State::default()),
                |state| {
                    state.blocks.retain(|_, a| a.token != token);
                    state.unblocked.remove(&token);
                    Ok(())
                },
            )?;
            Ok(())
        })),
    })
}

/// The attributes of the user's range that an answer must carry on: oned
/// replaces the range with the driver's answer, so what is not echoed is lost.
/// What the driver answers itself (`owned`) and what describes the addresses
/// (which the answer defines) are not echoed.
fn echoed(request: &opennebula::attr::Attributes, owned: &[String]) -> Vec<(String, String)> {
    const ADDRESSES: [&str; 11] = [
        "TYPE",
        "IP",
        "IP6",
        "SIZE",
        "GATEWAY",
        "GATEWAY6",
        "NETWORK_MASK",
        "PREFIX_LENGTH",
        "GLOBAL_PREFIX",
        "ULA_PREFIX",
        "ADDRESS",
    ];
    request
        .iter()
        .filter(|(k, _)| !ADDRESSES.contains(k) && !owned.iter().any(|o| o == k))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `unregister_address_range`: the flexible IP detached and deleted, the block freed.
pub fn unregister(d: &mut Driver<'_, '_>, request: &IpamRequest) -> anyhow::Result<Output> {
    let ar = &request.ar.attrs;
    let Some(fip_id) = ar.parse::<opennebula::attr::Uuid>("SCALEWAY_IP_ID")? else {
        bail!(
            "{}/SCALEWAY_IP_ID is missing: this range was not registered by the scaleway IPAM driver",
            ar.path()
        );
    };
    let s = settings(request)?;
    let (client, credentials) = connect(d, &s)?;
    let zone = match &s.zone {
        Some(z) => z.clone(),
        None => credentials.require_zone()?.clone(),
    };
    let project = credentials.require_project()?.to_owned();
    let tuning = action_tuning(d.env)?;
    let fip_id = fip_id.as_str();
    match client.find_fip(&zone, fip_id, &project)? {
        None => d.log.info(format_args!("flexible IP {fip_id} is already gone")),
        Some(found) => {
            let claim = scaleway::ownership::Claim {
                fip_id,
                external: ar.parse::<std::net::IpAddr>("EXTERNAL_IP")?,
                private: request.ar.ip,
            };
            if let Err(why) = scaleway::ownership::check(&found, &claim) {
                bail!(
                    "{}: {why}: refusing to release it, nothing was changed at Scaleway. If this range's attributes \
                     were edited, put back its own SCALEWAY_IP_ID and EXTERNAL_IP (onevnet updatear) and remove it \
                     again",
                    ar.path()
                );
            }
            let mut fip = found;
            if matches!(fip.status, FipStatus::Updating | FipStatus::Detaching) {
                fip = client.wait_fip_settled(&zone, fip_id, tuning.wait)?;
            }
            if fip.status == FipStatus::Attached {
                let server = fip.server_id.clone().unwrap_or_default();
                d.log
                    .info(format_args!("detaching flexible IP {fip_id} from server {server}"));
                client.detach_fips(&zone, &[fip_id])?;
                client.wait_fip_ready(&zone, fip_id, tuning.wait)?;
            }
            if client.delete_fip(&zone, fip_id, &project)? {
                d.log
                    .info(format_args!("flexible IP {} ({fip_id}) deleted", fip.ip_address));
            }
        }
    }
    let block = request.ar.ip.map(Block::containing);
    Store::new(state_path(d.env)).update(
        || Ok::<_, anyhow::Error>(State::default()),
        |state| {
            if let Some(block) = block
                && state
                    .blocks
                    .get(&block)
                    .is_some_and(|a| a.fip_id.as_deref().is_none_or(|id| id == fip_id))
            {
                state.blocks.remove(&block);
            }
            state.unblocked.retain(|_, a| a.fip_id.as_deref() != Some(fip_id));
            Ok(())
        },
    )?;
    Ok(Output::empty())
}

/// The one address of a range, checked against what oned asks.
fn the_address(request: &IpamRequest) -> anyhow::Result<(String, Option<&opennebula::ipam::AddressRequest>)> {
    let ar = &request.ar;
    let address = match (ar.ip, ar.ip6) {
        (Some(ip), _) => ip.to_string(),
        (None, Some(ip6)) => ip6.to_string(),
        (None, None) => bail!(
            "{}/IP is missing: this range was not registered by the scaleway IPAM driver",
            ar.attrs.path()
        ),
    };
    let asked = request.address.as_ref();
    if let Some(size) = asked.and_then(|a| a.size)
        && size != 1
    {
        bail!("a scaleway range has exactly one address: cannot lease {size} addresses from it");
    }
    Ok((address, asked))
}

/// `get_address`: the range's address, if it is free.
pub fn get_address(request: &IpamRequest) -> anyhow::Result<Output> {
    let (address, _) = the_address(request)?;
    let used: Option<u64> = request.ar.attrs.parse("USED_LEASES")?;
    if used.unwrap_or(0) >= 1 {
        bail!("the address {address} of this range is already leased (a scaleway range has one address)");
    }
    let mut t = Template::new();
    t.vector("ADDRESS", [("IP", address.as_str()), ("SIZE", "1")]);
    if request.ar.ip.is_none() {
        t = Template::new();
        t.vector("ADDRESS", [("IP6", address.as_str()), ("SIZE", "1")]);
    }
    Ok(Output::text(t.render()?))
}

/// `allocate_address` and `free_address`: only the range's own address.
pub fn check_address(request: &IpamRequest, action: &str) -> anyhow::Result<Output> {
    let (address, asked) = the_address(request)?;
    let asked_ip = asked.and_then(|a| a.ip.map(|i| i.to_string()).or_else(|| a.ip6.map(|i| i.to_string())));
    match asked_ip {
        Some(ip) if ip != address => {
            bail!("{action}: {ip} is not in this range, whose only address is {address}")
        }
        _ => Ok(Output::empty()),
    }
}

/// A registration still `pending` after this long crashed: its flexible
/// IP, if any, is an orphan.
pub const STALE_PENDING_SECS: u64 = 3600;

/// `gc`: our flexible IPs that no range references any more (and whose
/// registration is not in progress).
pub fn orphans(
    client: &Client,
    zone: &Zone,
    project: &str,
    state: &State,
    known: Option<&std::collections::HashSet<String>>,
    grace_secs: u64,
) -> anyhow::Result<Vec<FlexibleIp>> {
    let filter = FipFilter {
        project_id: Some(project.to_owned()),
        tags: vec![tags::OURS.to_owned()],
        ..FipFilter::default()
    };
    // What references an IP: oned's address ranges when we could ask oned
    // (an answer oned dropped, after 90 s, left an IP our state calls
    // active), plus registrations younger than the grace period (oned may
    // not have stored the answer yet); else our state file.
    let referenced: std::collections::HashSet<&str> = match known {
        Some(ids) => ids
            .iter()
            .map(String::as_str)
            .chain(
                state
                    .all()
                    .filter(|a| a.phase == Phase::Active && now().saturating_sub(a.since) < grace_secs)
                    .filter_map(|a| a.fip_id.as_deref()),
            )
            .collect(),
        None => state
            .all()
            .filter(|a| a.phase == Phase::Active)
            .filter_map(|a| a.fip_id.as_deref())
            .collect(),
    };
    let pending: std::collections::HashSet<&str> = state
        .all()
        .filter(|a| {
            a.phase == Phase::Pending
                && a.owner.is_none_or(|o| o.is_alive())
                && now().saturating_sub(a.since) < STALE_PENDING_SECS
        })
        .map(|a| a.token.as_str())
        .collect();
    Ok(client
        .list_fips(zone, &filter)?
        .into_iter()
        .filter(|f| tags::is_ours(&f.tags))
        .filter(|f| !referenced.contains(f.id.as_str()))
        .filter(|f| tags::value(&f.tags, tags::TOKEN).is_none_or(|t| !pending.contains(t)))
        .collect())
}
