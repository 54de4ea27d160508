//! `evpn-config` and `reconcile` of `scaleway_evpn`: the cluster
//! description applied to the host, and everything the record holds put
//! back.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use anyhow::{Context, bail};
use opennebula::driver::{Log, Output};
use private_apply::apply::EvpnHost;
use private_apply::record::HostConfig;
use private_plan::observed::Observed;
use private_plan::{Cluster, Role, Vni};

use super::Settings;
use super::converge::{Change, Frr, begin, converge, vnis};

/// This host's underlay address and device, from the description and the host.
fn find_local(cluster: &Cluster, observed: &Observed) -> anyhow::Result<(Ipv4Addr, String)> {
    let local = match cluster.local {
        Some(l) => l,
        None => {
            let mine: Vec<Ipv4Addr> = cluster
                .hosts
                .iter()
                .copied()
                .filter(|h| observed.holder_of(*h).is_some())
                .collect();
            match mine[..] {
                [one] => one,
                [] => {
                    let held: Vec<String> = observed
                        .links
                        .values()
                        .flat_map(|l| l.ipv4.iter().map(ToString::to_string))
                        .collect();
                    bail!(
                        "none of HOSTS is an address of this host (it has {}): is this host in the cluster? LOCAL \
                         names this host's underlay address",
                        held.join(", ")
                    );
                }
                _ => bail!(
                    "this host holds several addresses of HOSTS ({}): set LOCAL",
                    mine.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ),
            }
        }
    };
    let holder = observed.holder_of(local);
    let device = match (&cluster.underlay_device, holder) {
        (Some(d), Some(h)) if d.as_str() == h => h.to_owned(),
        (Some(d), _) => bail!(
            "UNDERLAY_DEVICE = {d} does not hold this host's underlay address {local} ({})",
            holder.map_or_else(|| "no device does".to_owned(), |h| format!("{h} does"))
        ),
        (None, Some(h)) => h.to_owned(),
        (None, None) => bail!("LOCAL = {local} is not an address of this host"),
    };
    Ok((local, device))
}

/// `evpn-config` on `host`: the cluster description `text` (read from `source`).
pub fn evpn_config_with(
    text: &str,
    source: &str,
    log: &mut Log<'_>,
    host: EvpnHost<'_>,
    settings: &Settings,
) -> anyhow::Result<Output> {
    let cluster = Cluster::parse(text).with_context(|| format!("the cluster description {source}"))?;
    let (_lock, file, record) = begin(settings)?;
    let observed = host.links.observe().context("cannot read the host's links")?;
    let (local, device) = find_local(&cluster, &observed).context("cannot place this host in the cluster")?;
    let role = cluster.role_of(local).unwrap_or(Role::Client);
    let mut after = record.clone();
    // The recorded segments follow the host's underlay address (and the
    // configured underlay device).
    for s in after.segments.values_mut() {
        s.segment.local = local;
        if let Some(d) = &cluster.underlay_device {
            s.segment.underlay = d.as_str().to_owned();
        }
    }
    let peers = match role {
        Role::Reflector => cluster.hosts.len() - 1,
        Role::Client => cluster.reflector_addresses().len(),
    };
    let reflectors = cluster
        .reflector_addresses()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let (asn, underlay) = (cluster.asn, cluster.underlay);
    after.config = Some(HostConfig {
        cluster,
        local,
        device: device.clone(),
    });
    let summary = format!(
        "{local} is {} of AS {asn} (reflectors {reflectors}), {peers} BGP peer{}, VNIs {}; firewall: BGP and VXLAN \
         only from {underlay} on {device}",
        match role {
            Role::Reflector => "a route reflector",
            Role::Client => "a client",
        },
        if peers == 1 { "" } else { "s" },
        vnis(&after.wanted_vnis()),
    );
    let ensure: BTreeSet<Vni> = after.segments.keys().copied().collect();
    let outcome = converge(
        log,
        host,
        settings,
        &file,
        &observed,
        Change {
            before: &record,
            after,
            ensure,
            frr: Frr::Always,
            undo_on_frr_failure: true,
            firewall: true,
            filters: true,
        },
    )
    .context("cannot apply the cluster description")?;
    if let Some(text) = outcome.dry_run {
        return Ok(Output::text(text));
    }
    log.info(format_args!("FRR reloaded: {summary}"));
    Ok(Output::text(format!("{summary}\n")))
}

/// `reconcile` on `host`: every recorded segment, FRR's configuration and
/// the firewall, put back.
pub fn reconcile_with(log: &mut Log<'_>, host: EvpnHost<'_>, settings: &Settings) -> anyhow::Result<Output> {
    let (_lock, file, record) = begin(settings)?;
    if record.config.is_none() && record.segments.is_empty() {
        log.info(format_args!(
            "the host record {} holds nothing: nothing to reconcile",
            file.path().display()
        ));
        return Ok(Output::text("reconciled 0 segments: nothing recorded\n"));
    }
    let observed = host.links.observe().context("cannot read the host's links")?;
    let ensure: BTreeSet<Vni> = record.segments.keys().copied().collect();
    let outcome = converge(
        log,
        host,
        settings,
        &file,
        &observed,
        Change {
            before: &record,
            after: record.clone(),
            ensure,
            frr: Frr::Always,
            undo_on_frr_failure: false,
            firewall: true,
            filters: true,
        },
    )
    .context("cannot reconcile the host's private networks")?;
    if let Some(text) = outcome.dry_run {
        return Ok(Output::text(text));
    }
    let n = record.segments.len();
    let summary = format!(
        "reconciled {n} segment{} (VNIs {}): {}{}",
        if n == 1 { "" } else { "s" },
        vnis(&record.segments.keys().copied().collect()),
        if outcome.plan.is_empty() {
            "devices already in place".to_owned()
        } else {
            format!("{} device changes", outcome.plan.ops.len())
        },
        if outcome.frr_reloaded { ", FRR reloaded" } else { "" }
    );
    log.info(&summary);
    Ok(Output::text(format!("{summary}\n")))
}
