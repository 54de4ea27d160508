//! What the maintenance commands (`crate::maintenance`) do: the block store
//! rebuilt from oned's ranges (`rebuild-state`), and the flexible IPs and
//! blocks nobody owns any more found (`gc`).

use super::*;

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
