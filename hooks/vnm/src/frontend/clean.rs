//! `clean` of driver `scaleway` on the frontend: the host part over SSH
//! (`clean_host`), then the NICs' flexible IPs detached from that host's
//! server, each checked to be its range's first.

use anyhow::bail;
use opennebula::attr::{HostName, parse_value};
use opennebula::driver::{Env, Log, Output};
use opennebula::oned::Oned;
use opennebula::vm::Vm;
use opennebula::xml::Element;
use scaleway::flexible_ip::{FipFilter, FipStatus, FlexibleIp};
use scaleway::{Client, Tuning};

use super::{HostRunner, PublicNic, VN_MAD, server_of, tuning, verify};

/// `clean <host>`: the host part over SSH, then the flexible IPs detached
/// from that host's server.
pub fn clean(
    vm: &Vm,
    document: &Element,
    args: &[String],
    log: &mut Log<'_>,
    env: &Env,
    runner: &dyn HostRunner,
) -> anyhow::Result<Output> {
    let nics = vm.touched_nics_of(VN_MAD)?;
    if nics.is_empty() {
        return Ok(Output::empty());
    }
    let host_name: HostName = match args.first() {
        Some(h) => parse_value("clean's host argument", h)?,
        None => vm.require_current_host()?.hostname.clone(),
    };
    let oned = Oned::from_env(env)?;
    let tuning = tuning(env)?;
    let verified = verify(&oned, env, &nics)?;
    let encoded = opennebula::base64::encode(document.to_xml().as_bytes());
    let errors = clean_on(&host_name, &encoded, &verified, &oned, &tuning, log, runner)?;
    // A recover --delete during a migration runs clean twice with the same
    // host (the destination) and document: the source host, which still
    // holds the VM's NAT and maybe its flexible IPs, is named nowhere. When
    // clean is for the current host, the host of the record before it is
    // cleaned as well; that is idempotent (after a finished migration there
    // is nothing left there) and its failures are warnings (it may be gone).
    if vm.current_host().is_some_and(|h| h.hostname == host_name) {
        match previous_host(&oned, vm.id, &host_name) {
            Ok(Some(previous)) => match clean_on(&previous, &encoded, &verified, &oned, &tuning, log, runner) {
                Ok(problems) => {
                    for e in problems {
                        log.warn(format_args!("VM {}: previous host {previous}: {e}", vm.id));
                    }
                }
                Err(e) => log.warn(format_args!("VM {}: previous host {previous}: {e:#}", vm.id)),
            },
            Ok(None) => {}
            Err(e) => log.warn(format_args!(
                "VM {}: cannot read its history from oned ({e:#}): a previous host was not checked",
                vm.id
            )),
        }
    }
    if errors.is_empty() {
        Ok(Output::empty())
    } else {
        bail!("VM {}: clean on {host_name} failed: {}", vm.id, errors.join("; "))
    }
}

/// The host part of `clean` on one host (`clean_host` over SSH), then the
/// NICs' flexible IPs on that host's server detached; the errors, if any.
///
/// Scaleway calls, per account and zone: one list of the server's flexible
/// IPs (an IP missing from it is read by itself: lists lag), one detach
/// per IP of ours on the server, one list (or read, for one IP) until they
/// are all detached.
fn clean_on(
    host_name: &HostName,
    encoded: &str,
    verified: &[PublicNic],
    oned: &Oned,
    tuning: &Tuning,
    log: &mut Log<'_>,
    runner: &dyn HostRunner,
) -> anyhow::Result<Vec<String>> {
    let mut errors: Vec<String> = Vec::new();
    if let Err(e) = runner.run(host_name, "clean_host", encoded.as_bytes()) {
        errors.push(format!("host part on {host_name}: {e:#}"));
    }
    let Some(host) = oned.host_by_name(host_name.as_str())? else {
        errors.push(format!(
            "oned knows no host named {host_name}: flexible IPs left as they are"
        ));
        return Ok(errors);
    };
    for group in same_account(verified) {
        let Some(first) = group.first().copied() else {
            continue;
        };
        let listed = || -> anyhow::Result<(Client, String, Vec<FlexibleIp>)> {
            let client = Client::new(first.credentials.clone(), tuning.options.clone())?;
            let server = server_of(&host, &client, &first.zone)?;
            let filter = FipFilter {
                project_id: Some(first.credentials.require_project()?.to_owned()),
                server_ids: vec![server.clone()],
                ..FipFilter::default()
            };
            let on_server = client.list_fips(&first.zone, &filter)?;
            Ok((client, server, on_server))
        };
        let (client, server, on_server) = match listed() {
            Ok(x) => x,
            Err(e) => {
                for n in &group {
                    errors.push(format!("NIC {} flexible IP {}: {e:#}", n.nic_id, n.external));
                }
                continue;
            }
        };
        let mut detached: Vec<&PublicNic> = Vec::new();
        for n in group {
            let mut step = || -> anyhow::Result<bool> {
                // Lists are eventually consistent: an IP attached a moment
                // ago may be missing from the list; it is read by itself.
                let mut fip = match on_server.iter().find(|f| f.id == n.fip_id) {
                    Some(listed) => listed.clone(),
                    None => match client.find_fip(&n.zone, &n.fip_id, n.credentials.require_project()?)? {
                        Some(fip) => fip,
                        None => {
                            log.warn(format_args!(
                                "flexible IP {} of NIC {} no longer exists",
                                n.fip_id, n.nic_id
                            ));
                            return Ok(false);
                        }
                    },
                };
                n.guard(&fip, "detach")?;
                if matches!(fip.status, FipStatus::Updating | FipStatus::Detaching) {
                    fip = client.wait_fip_settled(&n.zone, &n.fip_id, tuning.wait)?;
                }
                if fip.status == FipStatus::Attached && fip.server_id.as_deref() == Some(server.as_str()) {
                    client.detach_fips(&n.zone, &[&n.fip_id])?;
                    return Ok(true);
                }
                log.debug(format_args!(
                    "flexible IP {} is not on server {server}: left as it is",
                    n.external
                ));
                Ok(false)
            };
            match step() {
                Ok(true) => detached.push(n),
                Ok(false) => {}
                Err(e) => errors.push(format!("NIC {} flexible IP {}: {e:#}", n.nic_id, n.external)),
            }
        }
        let ids: Vec<&str> = detached.iter().map(|n| n.fip_id.as_str()).collect();
        let waited = || -> anyhow::Result<()> {
            match ids.as_slice() {
                [] => {}
                [one] => drop(client.wait_fip_ready(&first.zone, one, tuning.wait)?),
                _ => {
                    let project = first.credentials.require_project()?;
                    client.wait_fips_ready(&first.zone, project, &ids, tuning.wait)?;
                }
            }
            Ok(())
        };
        match waited() {
            Ok(()) => {
                for n in &detached {
                    log.info(format_args!(
                        "flexible IP {} of NIC {} detached from server {server}",
                        n.external, n.nic_id
                    ));
                }
            }
            Err(e) => errors.push(format!("waiting for the detached flexible IPs: {e:#}")),
        }
    }
    Ok(errors)
}

/// The NICs whose flexible IPs one client reaches: same zone, same
/// project, same API and secret.
fn same_account(nics: &[PublicNic]) -> Vec<Vec<&PublicNic>> {
    let mut groups: Vec<Vec<&PublicNic>> = Vec::new();
    for n in nics {
        match groups.iter_mut().find(|g| g.first().is_some_and(|f| f.same_account(n))) {
            Some(g) => g.push(n),
            None => groups.push(vec![n]),
        }
    }
    groups
}

/// The host of the VM's history record before the one on `current`, if it
/// is another host.
fn previous_host(oned: &Oned, vm: u64, current: &HostName) -> anyhow::Result<Option<HostName>> {
    let doc = oned.vm(vm)?;
    let names: Vec<&str> = doc
        .at("HISTORY_RECORDS")
        .map(|h| {
            h.children_named("HISTORY")
                .filter_map(|r| r.child("HOSTNAME").map(|n| n.text.as_str()))
                .collect()
        })
        .unwrap_or_default();
    match names.as_slice() {
        [.., previous, last] if *last == current.as_str() && previous != last => {
            Ok(Some(parse_value("the VM's previous host", previous)?))
        }
        _ => Ok(None),
    }
}
