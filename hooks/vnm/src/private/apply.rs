//! How a change of the host's private networking is applied: the FRR
//! configuration checked before anything changes, the firewall, the links,
//! then FRR: only the VNIs changed in place (`vtysh`, one process) when
//! nothing else changed since FRR got our configuration, else the whole
//! configuration reloaded (`frr-reload.py`); the rendered file is kept in
//! either case, so a restarted FRR reads what runs.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, anyhow};
use opennebula::driver::Log;
use private_apply::apply::{EvpnHost, apply_links, undo};
use private_plan::plan::LinkPlan;
use private_plan::sg::Filters;
use private_plan::{Vni, firewall};

/// The VNIs to add to and remove from FRR's running configuration.
pub struct VniChange {
    pub asn: u32,
    pub add: BTreeSet<Vni>,
    pub remove: BTreeSet<Vni>,
}

/// What a change writes besides links.
pub struct Texts<'a> {
    /// The whole FRR configuration, when FRR must change.
    pub frr: Option<&'a str>,
    /// With `frr`: only these VNIs changed.
    pub vnis: Option<&'a VniChange>,
    pub firewall: Option<&'a firewall::Rules>,
    /// The security group tables, when they must be written, and what the
    /// record said they held (to update them in place), if not written whole.
    pub filters: Option<(&'a Filters, Option<&'a Filters>)>,
}

/// Checks the FRR configuration (before anything changes), sets the
/// firewall and the security group tables (before a VM's port exists),
/// applies the links, reloads FRR. Returns whether FRR was
/// reloaded (a failed reload is an error when `undo_on_frr_failure`, after
/// the links made are deleted again; otherwise a warning).
pub fn apply_change(
    log: &mut Log<'_>,
    host: EvpnHost<'_>,
    new_conf: &Path,
    frr_conf: &Path,
    texts: &Texts<'_>,
    p: &LinkPlan,
    undo_on_frr_failure: bool,
) -> anyhow::Result<bool> {
    if let Some(text) = texts.frr {
        opennebula::fsutil::write_atomic_creating(new_conf, text.as_bytes(), 0o644)
            .with_context(|| format!("cannot write the FRR configuration {}", new_conf.display()))?;
        if texts.vnis.is_none() {
            host.frr
                .check(new_conf)
                .map_err(|e| anyhow!(e).context("nothing was changed"))?;
        }
    }
    if let Some(rules) = texts.firewall {
        host.firewall.apply(rules).context("cannot set the firewall table")?;
    }
    if let Some((filters, before)) = texts.filters {
        host.firewall
            .filters(filters, before)
            .context("cannot set the security group tables")?;
    }
    apply_links(host.links, p)?;
    if texts.frr.is_none() {
        return Ok(false);
    }
    let in_place = texts.vnis.map(|v| host.frr.vnis(v.asn, &v.add, &v.remove));
    let reloaded = match in_place {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => {
            // FRR does not run what we think (restarted with another file,
            // changed by hand): the whole configuration, checked, instead.
            log.warn(format_args!(
                "FRR's VNIs could not be changed in place ({e}): its whole configuration is reloaded instead"
            ));
            host.frr
                .check(new_conf)
                .map_err(|e| anyhow!(e).context("FRR's VNIs could not be changed"))
                .and_then(|()| host.frr.reload(new_conf).map_err(|e| anyhow!(e)))
                .map_err(|e| evpn_error(&e))
        }
        None => host.frr.reload(new_conf),
    };
    match reloaded {
        Ok(()) => {
            std::fs::rename(new_conf, frr_conf)
                .with_context(|| format!("cannot rename {} (FRR was reloaded)", new_conf.display()))?;
            Ok(true)
        }
        Err(mut e) if undo_on_frr_failure => {
            undo(host.links, &p.ops, &mut e);
            Err(anyhow!(e))
        }
        Err(e) => {
            log.warn(format_args!(
                "FRR's configuration could not be reloaded (the next action tries again): {e}"
            ));
            Ok(false)
        }
    }
}

fn evpn_error(e: &anyhow::Error) -> host_tools::ApplyError {
    host_tools::ApplyError::new(format!("{e:#}"))
}
