//! `ip add`, `ip delete`: the public network's ranges, each a flexible IP.

use super::*;
use anyhow::{Result, anyhow, bail};

/// `ip add N`: N more flexible IPs in the public network.
pub fn ip_add(ctx: &Ctx<'_>, s: &mut ProvisionState, n: u32) -> Result<u32> {
    ready(s)?;
    let vnet = s
        .one
        .public_network
        .ok_or_else(|| anyhow!("the provision has no public network"))?;
    let target = match &s.pending {
        Some(Pending::IpAdd { target }) => *target,
        Some(other) => return Err(pending_error(s, other)),
        None => {
            let have = u32::try_from(ctx.one().public_ranges(vnet, &s.id)?.len()).unwrap_or(u32::MAX);
            let target = have.saturating_add(n);
            if target > crate::description::MAX_PUBLIC_IPS {
                bail!(
                    "a provision has at most {} public IPs ({have} now)",
                    crate::description::MAX_PUBLIC_IPS
                );
            }
            s.pending = Some(Pending::IpAdd { target });
            ctx.save(s)?;
            target
        }
    };
    if let Err(e) = converge_public_ranges(ctx, s, target) {
        return ctx.failed(s, format!("{e:#}\n(run the same ip add again to continue)"));
    }
    s.pending = None;
    s.last_error = None;
    ctx.save(s)?;
    Ok(target)
}

/// `ip delete AR...`: removes public ranges (their flexible IPs are released).
pub fn ip_delete(ctx: &Ctx<'_>, s: &mut ProvisionState, ars: &[i64]) -> Result<()> {
    ready(s)?;
    if let Some(p) = &s.pending {
        return Err(pending_error(s, p));
    }
    let vnet = s
        .one
        .public_network
        .ok_or_else(|| anyhow!("the provision has no public network"))?;
    let ranges = ctx.one().public_ranges(vnet, &s.id)?;
    for ar in ars {
        match ranges.iter().find(|r| r.ar_id == *ar) {
            // Already removed (a run killed half-way): done.
            None => {}
            Some(r) if r.used_leases > 0 => {
                bail!(
                    "address range {ar} ({}) is in use by a VM: release it first",
                    r.external_ip.clone().unwrap_or_default()
                );
            }
            Some(_) => {}
        }
    }
    for ar in ars {
        if ranges.iter().any(|r| r.ar_id == *ar) {
            ctx.say(&format!("address range {ar}"), "removing");
            ctx.one()
                .remove_range(vnet, *ar)
                .map_err(|e| anyhow!("removing address range {ar} of network {vnet}: {e}"))?;
        }
    }
    Ok(())
}
