//! `reconcile` of the public driver: everything the host record holds put
//! back (after a reboot, or by hand), the tables declared again.

use std::collections::BTreeSet;

use anyhow::Context;
use opennebula::driver::{Log, Output};
use public_apply::{Host, observe};
use public_plan::ops::NFT_DNAT_MAP;
use public_plan::{Public, Request, query};

use super::Settings;
use super::actions::*;

/// `reconcile` on `host`: everything the record holds, put back.
pub fn reconcile_with(log: &mut Log<'_>, host: Host<'_>, settings: &Settings) -> anyhow::Result<Output> {
    let (_lock, file, record) = begin(settings, Read::All)?;
    let on = On {
        host,
        settings,
        file: &file,
    };
    if record.endpoints.is_empty() {
        log.info(format_args!(
            "the host record {} holds no public NIC: nothing to reconcile",
            file.path().display()
        ));
        return Ok(Output::text("reconciled 0 public NICs: nothing recorded\n"));
    }
    let request = Request {
        ensure: record.endpoints.clone(),
        remove: Vec::new(),
        keep: Vec::new(),
        owned_bridges: record.bridges.clone(),
        filters: record.filters.clone(),
        // The chains nothing jumps to (left by a crash, or by an earlier
        // version) go.
        collect_chains: true,
        ..Request::default()
    };
    let recorded: BTreeSet<_> = record
        .endpoints
        .iter()
        .filter_map(|e| match e.public {
            Public::V4 { external, .. } => Some(external),
            Public::V6 { .. } => None,
        })
        .collect();
    let vms: BTreeSet<u64> = record.endpoints.iter().map(|e| e.owner.vm).collect();
    let count = record.endpoints.len();
    let observed = observe(host, &query(&request)).context("cannot read the host's network state")?;
    let strangers: Vec<String> = observed
        .nat
        .maps
        .get(NFT_DNAT_MAP)
        .map(|m| {
            m.elements
                .keys()
                .filter(|k| !recorded.contains(k))
                .map(ToString::to_string)
                .collect()
        })
        .unwrap_or_default();
    if !strangers.is_empty() {
        log.warn(format_args!(
            "{NFT_DNAT_MAP} maps flexible IPs the host record does not hold, left alone: {}",
            strangers.join(", ")
        ));
    }
    let (p, dry, after) =
        run(log, on, &record, &request, Some(observed), |_| {}).context("cannot reconcile the host's public NICs")?;
    if let Some(text) = dry {
        return Ok(Output::text(text));
    }
    // The index of the record's keys written again, exact (after a crash
    // its counts may be too high: actions then read more than they need).
    file.reindex(&after)?;
    let what = format!(
        "reconciled {} of {}",
        plural(count, "public NIC"),
        plural(vms.len(), "VM")
    );
    let summary = if p.is_empty() {
        format!("{what}: already in place")
    } else {
        let changes = p.ip_before.len() + p.sysctls.len() + p.nft.ops.len() + p.ip_after.len();
        format!("{what}: {}", plural(changes, "change"))
    };
    log.info(&summary);
    Ok(Output::text(format!("{summary}\n")))
}
