//! `unregister_address_range`: the range's flexible IP released, once it is
//! proven to be this range's, and its /31 freed.

use super::*;

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
