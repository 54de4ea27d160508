//! The frontend half of the public network driver `scaleway`: `post` and
//! `clean`, which OpenNebula runs on the frontend (they are in
//! `VNMAD_LOCAL_ACTIONS`) because only the frontend holds Scaleway
//! credentials.
//!
//! | action | what |
//! |---|---|
//! | `post <deploy_id> <host>` | attaches each public NIC's flexible IP to the Scaleway server of the VM's host and waits until Scaleway says `attached`. The host is the VM's last history record, the destination during a migration (OpenNebula passes the source in argv). A flexible IP attached to another server (a migration, a crash) is moved. If one NIC fails, the IPs attached by this run are detached again. |
//! | `clean <host>` | runs the host part (`clean_host`) on `<host>` over SSH, then detaches the flexible IPs that are attached to that host's server (and only those: after a migration they may already be on the destination). |
//!
//! Before touching anything, every NIC is checked against its address range
//! as oned knows it (`one.vn.info`): the flexible IP is the range's
//! `SCALEWAY_IP_ID`, and the NIC's `EXTERNAL_IP` and address must be the
//! range's. A user who writes `EXTERNAL_IP` or `SCALEWAY_IP_ID` in a
//! template cannot get another range's flexible IP.
//!
//! The server of a host: the host's `PROVISION/DEPLOY_ID` (`<zone>/<server
//! id>`), else the one server tagged `one-scaleway-host=<host name>`.
//!
//! Settings (environment): `ONE_XMLRPC`, `ONE_AUTH` (oned); the Scaleway
//! credentials as for the IPAM driver; `ONE_SCALEWAY_SSH` (the ssh program,
//! default `ssh`), `ONE_SCALEWAY_SSH_OPTIONS` (extra ssh arguments, split on
//! whitespace), `ONE_SCALEWAY_REMOTE_DIR` (where `onehost sync` puts the
//! drivers on the hosts, default `/var/tmp/one`); `ONE_SCALEWAY_POLL_MS`,
//! `ONE_SCALEWAY_WAIT`, `ONE_SCALEWAY_TIMEOUT`, `ONE_SCALEWAY_RETRY_BASE_MS`.

mod clean;
mod ssh;

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{Context, anyhow, bail};
use opennebula::attr::{Attributes, Uuid, parse_value};
use opennebula::driver::{Env, Log, Output};
use opennebula::oned::Oned;
use opennebula::vm::{Nic, Vm};
use opennebula::xml::Element;
use scaleway::baremetal::ServerFilter;
use scaleway::flexible_ip::{FipStatus, FlexibleIp};
use scaleway::{Client, Credentials, Tuning, WaitPolicy, Zone};

pub use clean::clean;
pub use ssh::{HostRunner, Ssh};

/// The driver's name.
const VN_MAD: &str = "scaleway";

/// The tag that names the host of a server we provisioned.
pub const HOST_TAG: &str = "one-scaleway-host=";

/// Client settings from the environment (see [`scaleway::Tuning`]).
pub fn tuning(env: &Env) -> anyhow::Result<Tuning> {
    Ok(Tuning::from_env(&|k| env.get(k).map(str::to_owned))?)
}

/// A public NIC checked against its address range in oned.
struct PublicNic {
    nic_id: u32,
    fip_id: String,
    external: IpAddr,
    zone: Zone,
    credentials: Credentials,
    /// The range's `IP` (IPv4 ranges): its private /31, which the flexible
    /// IP's tags must name.
    private: Option<std::net::Ipv4Addr>,
}

impl PublicNic {
    /// Whether one client reaches both NICs' flexible IPs.
    fn same_account(&self, other: &PublicNic) -> bool {
        self.zone == other.zone
            && self.credentials.project_id == other.credentials.project_id
            && self.credentials.api_url == other.credentials.api_url
            && self.credentials.secret_source == other.credentials.secret_source
    }

    /// Refuses a flexible IP that is not ours or not this range's (see
    /// [`scaleway::ownership::check`]): a range's attributes are data a user
    /// may have written.
    fn guard(&self, fip: &FlexibleIp, verb: &str) -> anyhow::Result<()> {
        let claim = scaleway::ownership::Claim {
            fip_id: &self.fip_id,
            external: Some(self.external),
            private: self.private,
        };
        scaleway::ownership::check(fip, &claim).map_err(|why| {
            anyhow!(
                "NIC {}: {why}: refusing to {verb} it, nothing was changed at Scaleway (the address range's \
                 SCALEWAY_IP_ID or EXTERNAL_IP was edited: put back its own)",
                self.nic_id
            )
        })
    }
}

/// The leaf attributes of an AR (its `LEASES` are left out).
fn ar_attributes(ar: &Element, path: &str) -> Result<Attributes, opennebula::attr::DocError> {
    let leaves = Element {
        children: ar.children.iter().filter(|c| c.is_leaf()).cloned().collect(),
        ..ar.clone()
    };
    Attributes::from_element(&leaves, path)
}

/// Checks each NIC against its range in oned and resolves what acting on
/// it needs.
fn verify(oned: &Oned, env: &Env, nics: &[Nic]) -> anyhow::Result<Vec<PublicNic>> {
    let mut vnets: BTreeMap<u32, Element> = BTreeMap::new();
    let mut out = Vec::new();
    for nic in nics {
        let what = format!(
            "NIC {} (VM network {})",
            nic.nic_id,
            nic.network.as_deref().unwrap_or("?")
        );
        let network = nic.network_id.ok_or_else(|| anyhow!("{what}: no NETWORK_ID"))?;
        let ar_id = nic.ar_id.ok_or_else(|| anyhow!("{what}: no AR_ID"))?;
        let vnet = match vnets.entry(network) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(
                oned.vnet(u64::from(network))
                    .with_context(|| format!("{what}: reading network {network}"))?,
            ),
        };
        let ar = vnet
            .at("AR_POOL")
            .and_then(|pool| {
                pool.children_named("AR")
                    .find(|ar| ar.child("AR_ID").is_some_and(|i| i.text == ar_id.to_string()))
            })
            .ok_or_else(|| anyhow!("{what}: network {network} has no address range {ar_id}"))?;
        let ar = ar_attributes(ar, &format!("VNET {network}/AR_POOL/AR[AR_ID={ar_id}]"))?;
        let fip_id: Uuid = ar.parse("SCALEWAY_IP_ID")?.ok_or_else(|| {
            anyhow!("{what}: address range {ar_id} of network {network} is not a scaleway range (no SCALEWAY_IP_ID)")
        })?;
        let owned: IpAddr = ar.require("EXTERNAL_IP")?;
        match nic.external_ip {
            Some(claimed) if claimed == owned => {}
            Some(claimed) => bail!(
                "{what}: EXTERNAL_IP {claimed} is not the flexible IP of its address range ({owned}, range {ar_id} of \
                 network {network}); refusing"
            ),
            None => bail!("{what}: no EXTERNAL_IP (add EXTERNAL_IP to INHERIT_VNET_ATTR in oned.conf)"),
        }
        let ar_ip = ar.get("IP").filter(|v| !v.is_empty()).or(ar.get("IP6")).unwrap_or("");
        let nic_ip = nic
            .ip
            .map(|i| i.to_string())
            .or(nic.ip6.map(|i| i.to_string()))
            .unwrap_or_default();
        if ar_ip != nic_ip {
            bail!("{what}: address {nic_ip:?} is not the address of its range ({ar_ip:?}); refusing");
        }
        let from_env = |k: &str| env.get(k).map(str::to_owned);
        let profile = ar.get("SCALEWAY_PROFILE").filter(|v| !v.is_empty());
        let provision: Option<u64> = ar.parse("PROVISION_ID")?;
        let fetch = |id: u64| oned.provider_connection(id).map_err(|e| e.to_string());
        let credentials = scaleway::config::resolve_for(&from_env, profile, provision, Box::new(fetch))?;
        let zone = match ar.get("SCALEWAY_ZONE").filter(|z| !z.is_empty()) {
            Some(z) => Zone::new(z)?,
            None => credentials.require_zone()?.clone(),
        };
        out.push(PublicNic {
            nic_id: nic.nic_id,
            fip_id: fip_id.to_string(),
            external: owned,
            zone,
            credentials,
            private: ar.parse("IP")?,
        });
    }
    Ok(out)
}

/// The Scaleway server of an OpenNebula host.
fn server_of(host: &Element, client: &Client, zone: &Zone) -> anyhow::Result<String> {
    let name = host.child("NAME").map_or("", |n| n.text.as_str());
    if let Some(deploy) = host
        .at("TEMPLATE/PROVISION/DEPLOY_ID")
        .map(|e| e.text.trim())
        .filter(|t| !t.is_empty())
    {
        let (server_zone, id) = deploy
            .split_once('/')
            .ok_or_else(|| anyhow!("host {name}: PROVISION/DEPLOY_ID {deploy:?} is not <zone>/<server id>"))?;
        let id: Uuid = parse_value(&format!("host {name} PROVISION/DEPLOY_ID"), id)?;
        if server_zone != zone.as_str() {
            bail!(
                "host {name} is a server in {server_zone}, but the flexible IP is in {zone}: a flexible IP only \
                 attaches to a server of its zone"
            );
        }
        return Ok(id.to_string());
    }
    let tagged = client.list_servers(
        zone,
        &ServerFilter {
            tags: vec![format!("{HOST_TAG}{name}")],
            ..Default::default()
        },
    )?;
    match tagged.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => bail!(
            "host {name} has no PROVISION/DEPLOY_ID and no server in {zone} is tagged {HOST_TAG}{name}: \
             add PROVISION = [ DEPLOY_ID = \"<zone>/<server id>\" ] to the host's template"
        ),
        _ => bail!("several servers in {zone} are tagged {HOST_TAG}{name}: keep the tag on one only"),
    }
}

/// Makes the flexible IP attached to `server`; `Ok(true)` if this changed anything.
fn ensure_attached(
    client: &Client,
    n: &PublicNic,
    server: &str,
    wait: WaitPolicy,
    log: &mut Log<'_>,
) -> anyhow::Result<bool> {
    let mut fip = client
        .find_fip(&n.zone, &n.fip_id, n.credentials.require_project()?)
        .with_context(|| format!("flexible IP {} ({}) of NIC {}", n.fip_id, n.external, n.nic_id))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "flexible IP {} ({}) of NIC {} does not exist at Scaleway (any more): its address range is stale",
                n.fip_id,
                n.external,
                n.nic_id
            )
        })?;
    n.guard(&fip, "attach")?;
    if matches!(fip.status, FipStatus::Updating | FipStatus::Detaching) {
        fip = client.wait_fip_settled(&n.zone, &n.fip_id, wait)?;
    }
    match (&fip.status, fip.server_id.as_deref()) {
        (FipStatus::Attached, Some(s)) if s == server => return Ok(false),
        (FipStatus::Attached, Some(other)) => {
            log.info(format_args!(
                "flexible IP {} is on server {other}: moving it to server {server}",
                n.external
            ));
            client.detach_fips(&n.zone, &[&n.fip_id])?;
            client.wait_fip_ready(&n.zone, &n.fip_id, wait)?;
        }
        (FipStatus::Ready, _) => {}
        (status, _) => bail!(
            "flexible IP {} ({}) is {status}: it cannot be attached",
            n.external,
            n.fip_id
        ),
    }
    client.attach_fips(&n.zone, &[&n.fip_id], server)?;
    Ok(true)
}

/// The IPs a run attached or detached, by client (zone and credentials),
/// so that one list per poll waits for all of them.
fn by_client<'a>(items: &'a [(Client, &'a PublicNic, String)]) -> Vec<Vec<&'a (Client, &'a PublicNic, String)>> {
    let mut groups: Vec<Vec<&(Client, &PublicNic, String)>> = Vec::new();
    for item in items {
        let same = |g: &Vec<&(Client, &PublicNic, String)>| {
            g.first()
                .is_some_and(|(_, f, server)| *server == item.2 && f.same_account(item.1))
        };
        match groups.iter_mut().find(|g| same(g)) {
            Some(g) => g.push(item),
            None => groups.push(vec![item]),
        }
    }
    groups
}

/// Waits until the IPs are attached to their server (`attach`) or ready:
/// one IP is read by itself, several through one list per poll.
fn wait_settled(items: &[(Client, &PublicNic, String)], attach: bool, wait: WaitPolicy) -> anyhow::Result<()> {
    for group in by_client(items) {
        let Some((client, first, server)) = group.first().map(|x| (&x.0, x.1, x.2.as_str())) else {
            continue;
        };
        if let [(_, n, _)] = group.as_slice() {
            if attach {
                client.wait_fip_attached(&n.zone, &n.fip_id, server, wait)?;
            } else {
                client.wait_fip_ready(&n.zone, &n.fip_id, wait)?;
            }
            continue;
        }
        let ids: Vec<&str> = group.iter().map(|x| x.1.fip_id.as_str()).collect();
        let project = first.credentials.require_project()?;
        if attach {
            client.wait_fips_attached(&first.zone, project, &ids, server, wait)?;
        } else {
            client.wait_fips_ready(&first.zone, project, &ids, wait)?;
        }
    }
    Ok(())
}

/// `post`: every public NIC's flexible IP attached to the VM's host's server.
pub fn post(vm: &Vm, log: &mut Log<'_>, env: &Env) -> anyhow::Result<Output> {
    let nics = vm.touched_nics_of(VN_MAD)?;
    if nics.is_empty() {
        return Ok(Output::empty());
    }
    let history = vm.require_current_host()?;
    let oned = Oned::from_env(env)?;
    let tuning = tuning(env)?;
    let verified = verify(&oned, env, &nics)?;
    let host = oned
        .host(u64::from(history.hid))
        .with_context(|| format!("reading host {} ({})", history.hid, history.hostname))?;
    // Each IP is attached (one call per IP: Scaleway moves several IPs in
    // one call only when they share a MAC address), then all are waited
    // for together.
    let mut done: Vec<(Client, &PublicNic, String)> = Vec::new();
    let rollback = |done: &[(Client, &PublicNic, String)], log: &mut Log<'_>| {
        for (client, undo, _) in done {
            match client.detach_fips(&undo.zone, &[&undo.fip_id]) {
                Ok(_) => log.info(format_args!("detached flexible IP {} again (rollback)", undo.external)),
                Err(u) => log.error(format_args!(
                    "rollback: cannot detach flexible IP {}: {u}",
                    undo.external
                )),
            }
        }
    };
    for n in &verified {
        let client = Client::new(n.credentials.clone(), tuning.options.clone())?;
        let step = server_of(&host, &client, &n.zone)
            .and_then(|server| ensure_attached(&client, n, &server, tuning.wait, log).map(|changed| (server, changed)));
        match step {
            Ok((server, true)) => done.push((client, n, server)),
            Ok((_, false)) => {}
            Err(e) => {
                rollback(&done, log);
                return Err(e.context(format!(
                    "VM {}: cannot attach the flexible IP of NIC {} on host {}",
                    vm.id, n.nic_id, history.hostname
                )));
            }
        }
    }
    if let Err(e) = wait_settled(&done, true, tuning.wait) {
        rollback(&done, log);
        let nics: Vec<String> = done.iter().map(|(_, n, _)| n.nic_id.to_string()).collect();
        return Err(e.context(format!(
            "VM {}: cannot attach the flexible IP of NIC {} on host {}",
            vm.id,
            nics.join(", "),
            history.hostname
        )));
    }
    for (_, n, server) in &done {
        log.info(format_args!(
            "flexible IP {} of NIC {} attached to server {server}",
            n.external, n.nic_id
        ));
    }
    Ok(Output::empty())
}
