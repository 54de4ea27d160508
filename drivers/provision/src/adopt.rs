//! `scaleway-provision adopt NAME [FILE]`: puts a provision's record back
//! when it was lost, from what can be proven to be the provision's:
//!
//! - a copy on this frontend that oned no longer has goes back into oned;
//! - with neither, the description FILE (the one it was created from) and
//!   the provision's id, read from its OpenNebula hosts (`PROVISION/ID` of
//!   the hosts whose `PROVISION/NAME` is NAME) or from its VPC at Scaleway
//!   (named NAME, tagged `one-scaleway` and `one-scaleway-provision=<id>`;
//!   the two must agree), rebuild the record: its hosts are its servers'
//!   (by their `one-scaleway-token=<id>.host<N>` tags), and the rest is
//!   found again by tag and by name as a rerun of `create` does; what an
//!   interrupted create had not made yet is made. Public ranges are never
//!   added to a public network that exists: `ip add` and `ip delete` may
//!   have changed their number since the description was written.

use anyhow::{Error, Result, anyhow, bail};
use opennebula::driver::{Env, Io};
use opennebula::oned::Oned;
use scaleway::baremetal::ServerFilter;

use crate::access::{boot_options, progress_sink};
use crate::cloud::{provision_tag, token};
use crate::commands::{checked, read_description, record_facts, session, take};
use crate::description::Description;
use crate::one::{One, Pool};
use crate::state::{self, HostRecord, ProvisionState, Store};
use crate::{ops, remote, report};

/// The provision id its OpenNebula hosts and its VPC carry.
fn find_id(d: &Description, client: &scaleway::Client, oned: &Oned, project: &str) -> Result<String> {
    let hosts = One { oned }.list(Pool::Host).map_err(Error::msg)?;
    let mut from_oned: Vec<String> = hosts
        .iter()
        .filter(|h| {
            h.element
                .at("TEMPLATE/PROVISION/NAME")
                .is_some_and(|n| n.text == d.name)
        })
        .filter_map(|h| h.provision.clone())
        .collect();
    from_oned.sort();
    from_oned.dedup();
    let vpcs = client
        .list_vpcs(&d.region, project, Some("one-scaleway"))
        .map_err(Error::msg)?;
    let prefix = provision_tag("");
    let mut from_scaleway: Vec<String> = vpcs
        .iter()
        .filter(|v| v.name == d.name)
        .flat_map(|v| v.tags.iter().filter_map(|t| t.strip_prefix(&prefix).map(str::to_owned)))
        .collect();
    from_scaleway.sort();
    from_scaleway.dedup();
    let mut all = from_oned.clone();
    all.extend(from_scaleway.iter().cloned());
    all.sort();
    all.dedup();
    match all.as_slice() {
        [id] => Ok(id.clone()),
        [] => Err(anyhow!(
            "nothing of provision {} was found: no OpenNebula host says PROVISION/NAME={}, no VPC named {} in {} \
             is tagged by one-scaleway",
            d.name,
            d.name,
            d.name,
            d.region
        )),
        _ => Err(anyhow!(
            "provision {} has several ids (OpenNebula hosts: {}; VPCs: {}): adopt cannot tell which is the \
             provision; remove the other's resources first",
            d.name,
            from_oned.join(" "),
            from_scaleway.join(" ")
        )),
    }
}

/// The record rebuilt from the provision's servers and OpenNebula hosts.
fn rebuild(
    d: &Description,
    text: &str,
    id: &str,
    client: &scaleway::Client,
    oned: &Oned,
    project: &str,
) -> Result<ProvisionState> {
    let mut s = ProvisionState {
        id: id.to_owned(),
        name: d.name.clone(),
        description: text.to_owned(),
        created_at: state::now_utc(),
        project_id: project.to_owned(),
        ..ProvisionState::default()
    };
    record_facts(&mut s, d);
    let servers = client
        .list_servers(
            &d.zone,
            &ServerFilter {
                project_id: Some(project.to_owned()),
                tags: vec![provision_tag(id)],
                name: None,
            },
        )
        .map_err(Error::msg)?;
    let hosts = One { oned }.list(Pool::Host).map_err(Error::msg)?;
    let prefix = token(id, "host");
    for server in servers.iter().filter(|x| x.tags.contains(&provision_tag(id))) {
        let Some(index) = server
            .tags
            .iter()
            .find_map(|t| t.strip_prefix(&prefix).and_then(|n| n.parse::<u32>().ok()))
        else {
            continue;
        };
        let name = format!("{}-host{index}", d.name);
        // Registered in OpenNebula: it was bootstrapped.
        let registered = hosts.iter().any(|h| {
            h.provision.as_deref() == Some(id)
                && h.element
                    .at("TEMPLATE/PROVISION/HOSTNAME")
                    .is_some_and(|n| n.text == name)
        });
        s.hosts.push(HostRecord {
            index,
            name,
            server_id: Some(server.id.clone()),
            bootstrapped: registered,
            ..HostRecord::default()
        });
    }
    s.hosts.sort_by_key(|h| h.index);
    s.next_host_index = s.hosts.last().map_or(0, |h| h.index + 1);
    Ok(s)
}

pub(crate) fn adopt(
    name: &str,
    file: Option<&std::path::Path>,
    access: &crate::cli::HostAccess,
    env: &Env,
    io: &mut Io<'_>,
    remote: Option<&dyn crate::bootstrap::Remote>,
) -> Result<()> {
    let store = Store::new(&state::state_dir(env));
    let (file_lock, found) = take(&store, name, env, true)?;
    if let Some((s, in_oned)) = found {
        if in_oned {
            let _ = writeln!(io.stdout, "provision {name} is in oned: nothing to adopt");
            return Ok(());
        }
        file_lock.save(&s)?;
        let _ = writeln!(io.stdout, "provision {name}: this frontend's copy is in oned again");
        let _ = write!(io.stdout, "{}", report::summary(&s, None));
        return Ok(());
    }
    let file = file.ok_or_else(|| {
        anyhow!("no copy of provision {name} is left: give the description it was created from (adopt {name} FILE)")
    })?;
    let (d, text) = read_description(file, env).map_err(|e| anyhow!("{}: {}", file.display(), e.join("; ")))?;
    if d.name != name {
        bail!("{} describes provision {}, not {name}", file.display(), d.name);
    }
    let session = session(d, env)?;
    let project = session
        .client
        .credentials()
        .require_project()
        .map_err(Error::msg)?
        .to_owned();
    let id = find_id(&session.d, &session.client, &session.oned, &project)?;
    let mut s = rebuild(&session.d, &text, &id, &session.client, &session.oned, &project)?;
    let public_exists = One { oned: &session.oned }
        .by_name(Pool::Vnet, &crate::one::public_network_name(&session.d))
        .map_err(Error::msg)?
        .is_some_and(|f| f.provision.as_deref() == Some(id.as_str()));
    let c = checked(&session.d, &session.client, io)?;
    let boot = boot_options(access, env, true)?;
    file_lock.save(&s)?;
    let _ = writeln!(
        io.stderr,
        "INFO: provision {name} is {id}: {} server(s) found; finishing what is missing",
        s.hosts.len()
    );
    let ssh = remote::Ssh::from_env(env, &boot.ssh_user)?;
    let sink = progress_sink();
    let ctx = session.context(remote.unwrap_or(&ssh), sink.as_ref(), boot, file_lock);
    ops::adopt(&ctx, &mut s, &c, public_exists)?;
    let _ = write!(io.stdout, "{}", report::summary(&s, None));
    Ok(())
}
