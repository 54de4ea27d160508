//! `gc` and `rebuild-state`.

use anyhow::Context;
use opennebula::driver::{Driver, Output};
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

/// Lists (and with `delete`, deletes) our flexible IPs no range references.
pub fn gc(d: &mut Driver<'_, '_>, delete: bool, zone: Option<&str>, profile: Option<&str>) -> anyhow::Result<Output> {
    let (client, zone, project) = connect(d, zone, profile)?;
    let store = Store::new(state_path(d.env));
    let state = store.update(
        || rebuild(&client, &zone, &project),
        |s| Ok::<State, anyhow::Error>(s.clone()),
    )?;
    let found = orphans(&client, &zone, &project, &state)?;
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
