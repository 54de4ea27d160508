//! The Scaleway side of a provision: each resource is looked up by the
//! provision's tags before it is created (a run killed after a create and
//! before its record finds it again), waited for, and deleted with "already
//! gone" counted as done.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Result, anyhow};
use scaleway::baremetal::{NewInstall, NewServer, PrivateNetworkStatus, Server, ServerFilter};
use scaleway::flexible_ip::FipFilter;
use scaleway::wait::{Progress, WaitPolicy, wait_until};
use scaleway::{ApiErrorKind, Client, Error, Region, Zone};

use crate::check::Checked;
use crate::description::Description;
use crate::state::{HostRecord, ProvisionState, SshKeyRecord};

/// The tag on everything a provision creates.
pub fn provision_tag(id: &str) -> String {
    format!("one-scaleway-provision={id}")
}

/// Tags of a provision's resources.
pub fn tags(id: &str) -> Vec<String> {
    vec!["opennebula".into(), "one-scaleway".into(), provision_tag(id)]
}

/// The tag that identifies one resource of a provision (`vpc`, `host3`...).
pub fn token(id: &str, role: &str) -> String {
    format!("one-scaleway-token={id}.{role}")
}

/// The tag naming a server's OpenNebula host (the public driver's fallback).
pub fn host_tag(name: &str) -> String {
    format!("one-scaleway-host={name}")
}

/// How long each kind of wait may take.
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    pub short: WaitPolicy,
    /// OS installation (`ONE_SCALEWAY_INSTALL_WAIT`, default one hour).
    pub install: WaitPolicy,
}

impl Waits {
    pub fn from_env(base: WaitPolicy, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let install = match env("ONE_SCALEWAY_INSTALL_WAIT") {
            None => 3600,
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| anyhow!("ONE_SCALEWAY_INSTALL_WAIT={v:?} is not a whole number of seconds"))?,
        };
        Ok(Self {
            short: base,
            install: WaitPolicy::new(base.interval, Duration::from_secs(install).max(base.timeout)),
        })
    }
}

fn e(what: &str) -> impl Fn(Error) -> anyhow::Error + '_ {
    move |err| anyhow!("{what}: {err}")
}

/// The frontend's keys registered in the project; keys that were there
/// before are used and kept.
pub fn ensure_ssh_keys(client: &Client, s: &ProvisionState, keys: &[String]) -> Result<Vec<SshKeyRecord>> {
    let prefix = format!("one-scaleway-{}-", s.id);
    let mut out = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let name = format!("{prefix}{}", i + 1);
        let k = client
            .ensure_ssh_key(&s.project_id, &name, key)
            .map_err(e("registering the frontend's SSH key"))?;
        let ours = k.name.starts_with(&prefix);
        out.push(SshKeyRecord {
            id: k.id,
            name: k.name,
            ours,
        });
    }
    Ok(out)
}

pub fn ensure_vpc(client: &Client, region: &Region, s: &ProvisionState) -> Result<String> {
    let t = token(&s.id, "vpc");
    if let Some(v) = client
        .list_vpcs(region, &s.project_id, Some(&t))
        .map_err(e("looking for the VPC"))?
        .into_iter()
        .next()
    {
        return Ok(v.id);
    }
    client
        .create_vpc(region, &s.project_id, &s.name, &tags(&s.id), &t)
        .map(|v| v.id)
        .map_err(e("creating the VPC"))
}

pub fn ensure_private_network(client: &Client, d: &Description, s: &ProvisionState, vpc: &str) -> Result<String> {
    let t = token(&s.id, "pn");
    if let Some(p) = client
        .list_private_networks(&d.region, &s.project_id, Some(&t))
        .map_err(e("looking for the private network"))?
        .into_iter()
        .next()
    {
        return Ok(p.id);
    }
    client
        .create_private_network(
            &d.region,
            &s.project_id,
            vpc,
            &s.name,
            &d.private_cidr.to_string(),
            &tags(&s.id),
            &t,
        )
        .map(|p| p.id)
        .map_err(e("creating the private network"))
}

/// The public gateway (found by tag, or ordered); see [`wait_gateway`].
pub fn ensure_gateway(client: &Client, d: &Description, s: &ProvisionState) -> Result<String> {
    let t = token(&s.id, "gw");
    let id = match client
        .list_gateways(&d.zone, &s.project_id, Some(&t))
        .map_err(e("looking for the public gateway"))?
        .into_iter()
        .next()
    {
        Some(g) => g.id,
        None => {
            client
                .create_gateway(&d.zone, &s.project_id, &s.name, "VPC-GW-S", &tags(&s.id), &t)
                .map_err(e("creating the public gateway"))?
                .id
        }
    };
    Ok(id)
}

/// Waits until the gateway is running (a new one may read as missing for a moment).
pub fn wait_gateway(client: &Client, d: &Description, id: &str, w: &Waits) -> Result<()> {
    patiently(|| client.wait_gateway_running(&d.zone, id, w.short), w)
        .map(drop)
        .map_err(e("waiting for the public gateway"))
}

/// The gateway's leg in the private network (default route pushed), ready.
pub fn ensure_gateway_network(client: &Client, d: &Description, gw: &str, pn: &str, w: &Waits) -> Result<String> {
    let g = client
        .get_gateway(&d.zone, gw)
        .map_err(e("reading the public gateway"))?;
    let id = match g.gateway_networks.iter().find(|n| n.private_network_id == pn) {
        Some(n) => n.id.clone(),
        None => {
            client
                .create_gateway_network(&d.zone, gw, pn, w.short)
                .map_err(e("connecting the public gateway to the private network"))?
                .id
        }
    };
    patiently(|| client.wait_gateway_network_ready(&d.zone, &id, w.short), w)
        .map_err(e("waiting for the gateway network"))?;
    Ok(id)
}

/// What a server became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUp {
    pub server_id: String,
    pub public_ip: Ipv4Addr,
    pub private_ip: Ipv4Addr,
    pub vlan: Option<u32>,
}

/// One host's server: ordered (or found), installed, attached to the
/// private network with its address. `step` reports progress.
#[allow(clippy::too_many_arguments)]
pub fn ensure_server(
    client: &Client,
    d: &Description,
    s: &ProvisionState,
    h: &HostRecord,
    checked: &Checked,
    pn: &str,
    w: &Waits,
    step: &dyn Fn(&str),
    record: &dyn Fn(&str),
) -> Result<ServerUp> {
    let t = token(&s.id, &format!("host{}", h.index));
    let what = format!("server {}", h.name);
    let existing = match &h.server_id {
        // Recorded: a new server can be invisible for a moment (eventual
        // consistency); only one still missing after a few reads is gone.
        Some(id) => find_patiently(|| client.find_server(&d.zone, id), w).map_err(e(&what))?,
        None => None,
    };
    let existing = match existing {
        Some(x) => Some(x),
        None => client
            .list_servers(
                &d.zone,
                &ServerFilter {
                    project_id: Some(s.project_id.clone()),
                    tags: vec![t.clone()],
                    name: None,
                },
            )
            .map_err(e(&what))?
            .into_iter()
            .find(|x| x.tags.contains(&t)),
    };
    let server: Server = match existing {
        Some(x) => x,
        None => {
            step("ordering");
            let mut server_tags = tags(&s.id);
            server_tags.push(host_tag(&h.name));
            client
                .create_server(
                    &d.zone,
                    &NewServer {
                        project_id: s.project_id.clone(),
                        offer_id: checked.offer_id.clone(),
                        name: h.name.clone(),
                        description: format!("OpenNebula host of provision {} ({})", s.name, s.id),
                        tags: server_tags,
                        install: Some(NewInstall {
                            os_id: checked.os_id.clone(),
                            hostname: h.name.clone(),
                            ssh_key_ids: s.ssh_keys.iter().map(|k| k.id.clone()).collect(),
                        }),
                        option_ids: Vec::new(),
                    },
                    &t,
                )
                .map_err(e(&format!("ordering {what}")))?
        }
    };
    // Recorded at once: a rerun finds it by id even while lists omit it.
    record(&server.id);
    step("installing");
    let server = patiently(|| client.wait_server_installed(&d.zone, &server.id, w.install), w)
        .map_err(e(&format!("installing {what}")))?;
    let public_ip: Ipv4Addr = server
        .public_ipv4()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| anyhow!("{what} ({}) has no public IPv4 address", server.id))?;
    let has_option = server
        .options
        .iter()
        .any(|o| o.id == checked.private_network_option_id || o.name == "Private Network");
    if !has_option {
        step("enabling the Private Network option");
        client
            .add_server_option(&d.zone, &server.id, &checked.private_network_option_id)
            .map_err(e(&format!("enabling the Private Network option of {what}")))?;
    }
    let attached = client
        .list_server_private_networks(&d.zone, &server.id)
        .map_err(e(&what))?;
    if !attached.iter().any(|m| m.private_network_id == pn) {
        step("attaching to the private network");
        client
            .set_server_private_networks(&d.zone, &server.id, &[pn])
            .map_err(e(&format!("attaching {what} to the private network")))?;
    }
    let mappings = client
        .wait_server_private_networks(&d.zone, &server.id, w.short)
        .map_err(e(&format!("attaching {what} to the private network")))?;
    let mapping = mappings
        .iter()
        .find(|m| m.private_network_id == pn && m.status == PrivateNetworkStatus::Attached)
        .ok_or_else(|| anyhow!("{what} is not attached to private network {pn}"))?;
    let ips = client
        .list_ipam_ips_of(&d.region, &mapping.id)
        .map_err(e(&format!("reading the private address of {what}")))?;
    let private_ip = ips
        .iter()
        .filter(|i| !i.is_ipv6)
        .find_map(|i| i.address.split('/').next().and_then(|a| a.parse::<Ipv4Addr>().ok()))
        .filter(|a| d.private_cidr.contains(*a))
        .ok_or_else(|| anyhow!("{what} has no address in {} on the private network", d.private_cidr))?;
    Ok(ServerUp {
        server_id: server.id,
        public_ip,
        private_ip,
        vlan: mapping.vlan,
    })
}

/// How many times a resource that was just created or recorded may read as
/// missing before it counts as gone (Scaleway's eventual consistency).
const INVISIBLE_READS: u32 = 5;

fn pause(w: &Waits) {
    std::thread::sleep(w.short.interval.max(Duration::from_millis(50)));
}

/// `find` until it finds something, a few times.
fn find_patiently<T>(find: impl Fn() -> scaleway::Result<Option<T>>, w: &Waits) -> scaleway::Result<Option<T>> {
    for _ in 1..INVISIBLE_READS {
        if let Some(x) = find()? {
            return Ok(Some(x));
        }
        pause(w);
    }
    find()
}

/// `op` again while it fails because its resource reads as missing.
fn patiently<T>(op: impl Fn() -> scaleway::Result<T>, w: &Waits) -> scaleway::Result<T> {
    for _ in 1..INVISIBLE_READS {
        match op() {
            Err(err) if err.is_not_found() => pause(w),
            other => return other,
        }
    }
    op()
}

/// Deletes a server (detached from private networks first) and waits until it is gone.
pub fn delete_server(client: &Client, zone: &Zone, id: &str, w: &Waits) -> Result<()> {
    let what = format!("deleting server {id}");
    if find_patiently(|| client.find_server(zone, id), w)
        .map_err(e(&what))?
        .is_none()
    {
        return Ok(());
    }
    let attached = match client.list_server_private_networks(zone, id) {
        Ok(list) => !list.is_empty(),
        Err(err) if err.is_not_found() => return Ok(()),
        Err(err) => return Err(anyhow!("{what}: {err}")),
    };
    if attached {
        match client.set_server_private_networks(zone, id, &[]) {
            Ok(_) => {}
            Err(err) if err.is_not_found() => return Ok(()),
            Err(err) => return Err(anyhow!("{what}: detaching it from the private network: {err}")),
        }
    }
    client.delete_server(zone, id).map_err(e(&what))?;
    client.wait_server_gone(zone, id, w.install).map_err(e(&what))
}

/// Deletes the gateway network and waits until it is gone.
pub fn delete_gateway_network(client: &Client, zone: &Zone, id: &str, w: &Waits) -> Result<()> {
    let what = format!("deleting gateway network {id}");
    client.delete_gateway_network(zone, id).map_err(e(&what))?;
    wait_until(
        "gateway network",
        id,
        "deleted",
        w.short,
        || match client.get_gateway_network(zone, id) {
            Err(err) if err.is_not_found() => Ok(None),
            other => other.map(Some),
        },
        |g| if g.is_none() { Progress::Done } else { Progress::Pending },
        |g| g.as_ref().map_or("gone".into(), |g| g.status.to_string()),
    )
    .map(drop)
    .map_err(e(&what))
}

/// Deletes the gateway (and its IP) once it is not busy.
pub fn delete_gateway(client: &Client, zone: &Zone, id: &str, w: &Waits) -> Result<()> {
    let what = format!("deleting public gateway {id}");
    match patiently(|| client.wait_gateway_running(zone, id, w.short), w) {
        Ok(_) => {}
        Err(err) if err.is_not_found() => return Ok(()),
        Err(err) => return Err(anyhow!("{what}: {err}")),
    }
    client.delete_gateway(zone, id, true).map(drop).map_err(e(&what))
}

/// Deletes the private network, waiting while it is still in use.
pub fn delete_private_network(client: &Client, region: &Region, id: &str, w: &Waits) -> Result<()> {
    wait_until(
        "private network",
        id,
        "deleted",
        w.short,
        || match client.delete_private_network(region, id) {
            Err(Error::Api(api)) if matches!(api.kind, ApiErrorKind::PreconditionFailed { .. }) => Ok(false),
            other => other.map(|_| true),
        },
        |done| if *done { Progress::Done } else { Progress::Pending },
        |_| "in use".into(),
    )
    .map(drop)
    .map_err(e(&format!("deleting private network {id}")))
}

/// Deletes the VPC, waiting while it still holds a network.
pub fn delete_vpc(client: &Client, region: &Region, id: &str, w: &Waits) -> Result<()> {
    wait_until(
        "VPC",
        id,
        "deleted",
        w.short,
        || match client.delete_vpc(region, id) {
            Err(Error::Api(api)) if matches!(api.kind, ApiErrorKind::PreconditionFailed { .. }) => Ok(false),
            other => other.map(|_| true),
        },
        |done| if *done { Progress::Done } else { Progress::Pending },
        |_| "in use".into(),
    )
    .map(drop)
    .map_err(e(&format!("deleting VPC {id}")))
}

/// A resource still tagged with the provision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub kind: &'static str,
    pub id: String,
    pub name: String,
}

/// Everything Scaleway still has with the provision's tag.
pub fn leftovers(client: &Client, d: &Description, s: &ProvisionState) -> Result<Vec<Leftover>> {
    let tag = provision_tag(&s.id);
    let mut out = Vec::new();
    let servers = client
        .list_servers(
            &d.zone,
            &ServerFilter {
                project_id: Some(s.project_id.clone()),
                tags: vec![tag.clone()],
                name: None,
            },
        )
        .map_err(e("listing servers"))?;
    out.extend(servers.into_iter().filter(|x| x.tags.contains(&tag)).map(|x| Leftover {
        kind: "server",
        id: x.id,
        name: x.name,
    }));
    let fips = client
        .list_fips(
            &d.zone,
            &FipFilter {
                project_id: Some(s.project_id.clone()),
                tags: vec![tag.clone()],
                ..FipFilter::default()
            },
        )
        .map_err(e("listing flexible IPs"))?;
    out.extend(fips.into_iter().filter(|f| f.tags.contains(&tag)).map(|f| Leftover {
        kind: "flexible IP",
        name: f.ip_address.clone(),
        id: f.id,
    }));
    let gws = client
        .list_gateways(&d.zone, &s.project_id, Some(&tag))
        .map_err(e("listing public gateways"))?;
    out.extend(gws.into_iter().filter(|g| g.tags.contains(&tag)).map(|g| Leftover {
        kind: "public gateway",
        id: g.id,
        name: g.name,
    }));
    let pns = client
        .list_private_networks(&d.region, &s.project_id, Some(&tag))
        .map_err(e("listing private networks"))?;
    out.extend(pns.into_iter().filter(|p| p.tags.contains(&tag)).map(|p| Leftover {
        kind: "private network",
        id: p.id,
        name: p.name,
    }));
    let vpcs = client
        .list_vpcs(&d.region, &s.project_id, Some(&tag))
        .map_err(e("listing VPCs"))?;
    out.extend(vpcs.into_iter().filter(|v| v.tags.contains(&tag)).map(|v| Leftover {
        kind: "VPC",
        id: v.id,
        name: v.name,
    }));
    let prefix = format!("one-scaleway-{}-", s.id);
    let keys = client.list_ssh_keys(&s.project_id).map_err(e("listing SSH keys"))?;
    out.extend(
        keys.into_iter()
            .filter(|k| k.name.starts_with(&prefix))
            .map(|k| Leftover {
                kind: "SSH key",
                id: k.id,
                name: k.name,
            }),
    );
    Ok(out)
}
