//! `gc` and `rebuild-state`.

use std::collections::HashSet;

use anyhow::Context;
use opennebula::driver::{Driver, Output};
use opennebula::oned::Oned;
use scaleway::{Client, Zone};

use crate::actions::{STALE_PENDING_SECS, orphans, rebuild, state_path};
use crate::alloc::{Phase, State, Store};

fn connect(d: &Driver<'_, '_>, zone: Option<&str>, profile: Option<&str>) -> anyhow::Result<(Client, Zone, String)> {
    let env = d.env;
    let credentials = scaleway::resolve(&|k| env.get(k).map(str::to_owned), profile)?;
    let zone = match zone {
        Some(z) => Zone::new(z)?,
        None => credentials.require_zone()?.clone(),
    };
    let project = credentials.require_project()?.to_owned();
    let client = Client::new(credentials, crate::actions::tuning(env)?.options)?;
    Ok((client, zone, project))
}

/// How old a registration must be before `gc` trusts oned's word that no
/// range holds it (oned stores an answer a moment after the driver gives it).
pub const DEFAULT_GC_GRACE_SECS: u64 = 300;

/// The flexible IP ids of every address range in oned (`SCALEWAY_IP_ID`),
/// or `None` (with a warning) when oned cannot be asked: then our state file
/// alone says what is referenced.
fn ranges_in_oned(d: &mut Driver<'_, '_>) -> Option<HashSet<String>> {
    let asked = (|| -> anyhow::Result<HashSet<String>> {
        let oned = Oned::from_env(d.env)?;
        let mut ids = HashSet::new();
        for vnet in oned.vnet_ids()? {
            let doc = oned.vnet(vnet)?;
            if let Some(pool) = doc.at("AR_POOL") {
                for ar in pool.children_named("AR") {
                    if let Some(id) = ar.child("SCALEWAY_IP_ID").filter(|e| !e.text.is_empty()) {
                        ids.insert(id.text.clone());
                    }
                }
            }
        }
        Ok(ids)
    })();
    match asked {
        Ok(ids) => Some(ids),
        Err(e) => {
            d.log.warn(format_args!(
                "cannot ask oned which ranges exist ({e:#}): only the state file says what is referenced \
                 (set ONE_XMLRPC and ONE_AUTH as for OpenNebula's CLI)"
            ));
            None
        }
    }
}

/// Lists (and with `delete`, deletes) our flexible IPs no range references:
/// no address range in oned holds them (or, when oned cannot be asked, our
/// state file does not).
pub fn gc(d: &mut Driver<'_, '_>, delete: bool, zone: Option<&str>, profile: Option<&str>) -> anyhow::Result<Output> {
    let (client, zone, project) = connect(d, zone, profile)?;
    let store = Store::new(state_path(d.env));
    let state = store.update(
        || rebuild(&client, &zone, &project),
        |s| Ok::<State, anyhow::Error>(s.clone()),
    )?;
    let known = ranges_in_oned(d);
    let grace = match d.env.get("ONE_SCALEWAY_GC_GRACE") {
        Some(v) => v
            .parse()
            .with_context(|| format!("ONE_SCALEWAY_GC_GRACE={v:?} is not a number of seconds"))?,
        None => DEFAULT_GC_GRACE_SECS,
    };
    let found = orphans(&client, &zone, &project, &state, known.as_ref(), grace)?;
    let mut out = String::new();
    for fip in &found {
        if delete {
            client
                .delete_fip(&zone, &fip.id, &project)
                .with_context(|| format!("deleting flexible IP {}", fip.id))?;
            out.push_str(&format!("deleted {} {} ({zone})\n", fip.id, fip.ip_address));
        } else {
            out.push_str(&format!(
                "orphan {} {} ({zone}) tags {}\n",
                fip.id,
                fip.ip_address,
                fip.tags.join(",")
            ));
        }
    }
    if delete {
        // Blocks of crashed registrations, and of the IPs just deleted, are free again.
        let deleted: Vec<String> = found.iter().map(|f| f.id.clone()).collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let freed = store.update(
            || Ok::<_, anyhow::Error>(State::default()),
            |s| {
                let before = s.blocks.len();
                s.blocks.retain(|_, a| {
                    let stale = a.phase == Phase::Pending && now.saturating_sub(a.since) >= STALE_PENDING_SECS;
                    let gone = a.fip_id.as_ref().is_some_and(|id| deleted.contains(id));
                    !(stale || gone)
                });
                Ok(before - s.blocks.len())
            },
        )?;
        if freed > 0 {
            out.push_str(&format!("freed {freed} private blocks\n"));
        }
    }
    if found.is_empty() {
        d.log.info(format_args!("no orphaned flexible IP in {zone}"));
    } else if !delete {
        d.log.info(format_args!(
            "{} orphaned flexible IPs in {zone}; run with --delete to delete them",
            found.len()
        ));
    }
    Ok(Output::text(out))
}

/// Rebuilds the block state from Scaleway's tags (the old file is replaced).
pub fn rebuild_state(d: &mut Driver<'_, '_>, zone: Option<&str>, profile: Option<&str>) -> anyhow::Result<Output> {
    let (client, zone, project) = connect(d, zone, profile)?;
    let fresh = rebuild(&client, &zone, &project)?;
    let n = fresh.blocks.len();
    Store::new(state_path(d.env)).update(
        || Ok::<_, anyhow::Error>(State::default()),
        |s| {
            *s = fresh;
            Ok(())
        },
    )?;
    Ok(Output::text(format!(
        "{n} private blocks recorded from the flexible IPs in {zone}\n"
    )))
}
