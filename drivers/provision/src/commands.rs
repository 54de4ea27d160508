//! The provision commands: `validate`, `create`, `show`, `list`, and those
//! that change an existing provision (`configure`, `host ...`, `ip ...`,
//! `delete`). Each reads the description or the provision's record, checks
//! at Scaleway, then runs the steps of [`crate::ops`].

use std::path::Path;

use anyhow::{Error, Result, anyhow, bail};
use opennebula::driver::{Env, Io};
use opennebula::oned::Oned;

use crate::access::{boot_options, default_vnm, progress_sink};
use crate::cli::HostAccess;
use crate::description::{self, Description, Hypervisor};
use crate::ops::{self, BootstrapOptions, Ctx};
use crate::provider::{Provider, Providers};
use crate::record::Link;
use crate::state::{self, ProvisionState, Store};
use crate::{PROGRAM, bootstrap, check, cloud, dry_run, one, progress, remote, report};

/// Finds providers in oned (connecting on first use).
fn provider_lookup(env: &Env) -> impl Fn(&str) -> Result<Option<Provider>> + '_ {
    move |name: &str| {
        let oned = Oned::from_env(env).map_err(|e| anyhow!("cannot ask oned for providers: {e}"))?;
        Providers { oned: &oned }.get(name).map(|found| found.map(|(_, p)| p))
    }
}

/// Reads and validates a description file.
pub(crate) fn read_description(file: &Path, env: &Env) -> Result<(Description, String), Vec<String>> {
    let text = std::fs::read_to_string(file).map_err(|e| vec![format!("cannot read {}: {e}", file.display())])?;
    let d = description::parse(&text, &provider_lookup(env))?;
    Ok((d, text))
}

/// The Scaleway client of a zone and credentials profile.
pub(crate) fn client_for(
    zone: &scaleway::Zone,
    profile: Option<&str>,
    env: &Env,
) -> Result<(scaleway::Client, scaleway::Tuning)> {
    let from_env = |k: &str| env.get(k).map(str::to_owned);
    let fetch = |_: u64| Err("no provision id".to_owned());
    let mut credentials =
        scaleway::config::resolve_for(&from_env, profile, None, Box::new(fetch)).map_err(Error::msg)?;
    credentials.zone = Some(zone.clone());
    let tuning = scaleway::Tuning::from_env(&from_env).map_err(Error::msg)?;
    let client = scaleway::Client::new(credentials, tuning.options.clone()).map_err(Error::msg)?;
    Ok((client, tuning))
}

fn hypervisor_name(h: Hypervisor) -> &'static str {
    match h {
        Hypervisor::Kvm => "kvm",
        Hypervisor::Lxc => "lxc",
    }
}

pub(crate) fn validate(file: &Path, json: bool, env: &Env, io: &mut Io<'_>) -> Result<(), Vec<String>> {
    let result = read_description(file, env).and_then(|(d, _)| {
        let (client, _) = client_for(&d.zone, d.profile.as_deref(), env).map_err(|e| vec![format!("{e:#}")])?;
        check::check(&d, &client).map(|c| (d, c))
    });
    let (d, checked) = match result {
        Ok(ok) => ok,
        Err(errors) if json => {
            let doc = serde_json::json!({"valid": false, "errors": errors, "warnings": []});
            let _ = write!(io.stdout, "{}", report::document("validation", doc));
            return Err(errors);
        }
        Err(errors) => return Err(errors),
    };
    if json {
        let doc = serde_json::json!({
            "valid": true,
            "errors": [],
            "warnings": checked.warnings,
            "name": d.name,
            "provider": d.provider,
            "zone": d.zone.as_str(),
            "hosts": d.hosts,
            "hypervisor": hypervisor_name(d.hypervisor),
            "offer": d.offer,
            "subscription_period": d.period.as_str(),
            "os": format!("{} {}", d.os.0, d.os.1),
            "public_ips": d.public_ips,
            "private_cidr": d.private_cidr.to_string(),
            "cluster_name": d.cluster_name,
            "opennebula_version": d.opennebula_version,
        });
        let _ = write!(io.stdout, "{}", report::document("validation", doc));
        return Ok(());
    }
    for w in &checked.warnings {
        let _ = writeln!(io.stderr, "WARN: {PROGRAM} validate: {w}");
    }
    let _ = writeln!(
        io.stdout,
        "{}: {} {} host(s) {} ({}) with {} {}, {} public IP(s), private network {}, cluster {}, OpenNebula {}: valid",
        d.name,
        d.hosts,
        match d.hypervisor {
            Hypervisor::Kvm => "KVM",
            Hypervisor::Lxc => "LXC",
        },
        d.offer,
        d.period.as_str(),
        d.os.0,
        d.os.1,
        d.public_ips,
        d.private_cidr,
        d.cluster_name,
        d.opennebula_version
    );
    Ok(())
}

/// What a provision command needs besides the record.
pub(crate) struct Session {
    pub d: Description,
    pub client: scaleway::Client,
    pub oned: Oned,
    pub waits: cloud::Waits,
}

impl Session {
    /// What the commands of `ops` work with.
    pub(crate) fn context<'a>(
        self,
        remote: &'a dyn bootstrap::Remote,
        progress: &'a dyn progress::Progress,
        boot: BootstrapOptions,
        file: state::Locked,
    ) -> Ctx<'a> {
        Ctx {
            d: self.d,
            client: self.client,
            oned: self.oned,
            remote,
            waits: self.waits,
            progress,
            boot,
            file,
        }
    }
}

pub(crate) fn session(d: Description, env: &Env) -> Result<Session> {
    let (client, tuning) = client_for(&d.zone, d.profile.as_deref(), env)?;
    let oned = Oned::from_env(env).map_err(Error::msg)?;
    let from_env = |k: &str| env.get(k).map(str::to_owned);
    let waits = cloud::Waits::from_env(tuning.wait, &from_env)?;
    Ok(Session { d, client, oned, waits })
}

/// The description recorded with a provision, its provider read again
/// from oned. A provider whose zone is no longer the provision's is
/// refused: the provision's resources are in the recorded zone.
fn recorded_description(s: &ProvisionState, env: &Env) -> Result<Description> {
    let d = description::parse(&s.description, &provider_lookup(env)).map_err(|e| {
        anyhow!(
            "the description recorded with provision {} no longer reads: {}",
            s.name,
            e.join("; ")
        )
    })?;
    if !s.zone.is_empty() && s.zone != d.zone.as_str() {
        bail!(
            "provision {} is in {}, but its provider {} now says {}: give the provider back its zone \
             (scaleway-provision provider update)",
            s.name,
            s.zone,
            d.provider.as_deref().unwrap_or("-"),
            d.zone
        );
    }
    Ok(d)
}

/// Locks a provision for this command, on this frontend and in oned;
/// returns its record: oned's, else this frontend's file when it was
/// written before oned kept the records (the first save puts it in oned).
/// A file written after oned's record that oned no longer has is stale:
/// refused, `adopt` decides.
/// With `stale_too` (`adopt`), a stale copy is returned, marked
/// `oned_record: false`; the flag returned says whether oned had it.
pub(crate) fn take(
    store: &Store,
    name: &str,
    env: &Env,
    stale_too: bool,
) -> Result<(state::Locked, Option<(ProvisionState, bool)>)> {
    let mut file_lock = store.lock(name)?;
    let oned = Oned::from_env(env).map_err(|e| anyhow!("cannot reach oned, which keeps the provisions: {e}"))?;
    let (link, from_oned) = Link::acquire(oned, name)?;
    file_lock.attach(link);
    let s = match from_oned {
        Some(s) => Some((s, true)),
        None => match file_lock.load()? {
            Some(s) if s.oned_record && !stale_too => return Err(Error::msg(stale(name))),
            Some(mut s) => {
                s.oned_record = false;
                Some((s, false))
            }
            None => None,
        },
    };
    Ok((file_lock, s))
}

pub(crate) fn stale(name: &str) -> String {
    format!(
        "this frontend's copy of provision {name} is not in oned any more: it was deleted from another frontend, \
         or its record was lost; if its resources still exist, `scaleway-provision adopt {name}` puts it back"
    )
}

/// Copies the description's facts into the record (see [`ProvisionState`]).
pub(crate) fn record_facts(s: &mut ProvisionState, d: &Description) {
    s.provider.clone_from(&d.provider);
    s.zone = d.zone.to_string();
    s.hypervisor = hypervisor_name(d.hypervisor).to_owned();
    s.opennebula_version.clone_from(&d.opennebula_version);
}

pub(crate) fn checked(d: &Description, client: &scaleway::Client, io: &mut Io<'_>) -> Result<check::Checked> {
    let c = check::check(d, client).map_err(|e| anyhow!(e.join("; ")))?;
    for w in &c.warnings {
        let _ = writeln!(io.stderr, "WARN: {PROGRAM}: {w}");
    }
    Ok(c)
}

pub(crate) fn print_provision(s: &ProvisionState, ranges: Option<&[one::PublicRange]>, json: bool, io: &mut Io<'_>) {
    let text = if json {
        report::document("provision", report::provision_json(s, ranges))
    } else {
        report::summary(s, ranges)
    };
    let _ = write!(io.stdout, "{text}");
}

pub(crate) fn create(
    file: &Path,
    dry_run: bool,
    json: bool,
    access: &HostAccess,
    env: &Env,
    io: &mut Io<'_>,
    remote: Option<&dyn bootstrap::Remote>,
) -> Result<()> {
    let (d, text) = read_description(file, env).map_err(|e| anyhow!("{}: {}", file.display(), e.join("; ")))?;
    let boot = boot_options(access, env, true)?;
    let store = Store::new(&state::state_dir(env));
    if dry_run {
        let s = match store.read(&d.name)? {
            Some(s) => s,
            None => ProvisionState {
                id: "p000000000000".into(),
                name: d.name.clone(),
                ..ProvisionState::default()
            },
        };
        let _ = write!(io.stdout, "{}", dry_run::render(&d, &s, &boot)?);
        return Ok(());
    }
    let file_lock = take(&store, &d.name, env, false)?;
    let mut s = match file_lock.1.clone().map(|(s, _)| s) {
        Some(s) if s.description != text => {
            bail!(
                "provision {} exists with another description: `scaleway-provision show {}`; use host/ip commands to change it, or delete it first",
                d.name,
                d.name
            );
        }
        Some(s) => s,
        None => ProvisionState {
            id: state::new_id()?,
            name: d.name.clone(),
            description: text,
            created_at: state::now_utc(),
            ..ProvisionState::default()
        },
    };
    let file_lock = file_lock.0;
    if s.zone.is_empty() {
        record_facts(&mut s, &d);
    } else {
        // Continuing: the provider must still say the recorded zone.
        recorded_description(&s, env)?;
    }
    let session = session(d, env)?;
    if s.project_id.is_empty() {
        s.project_id = session
            .client
            .credentials()
            .require_project()
            .map_err(Error::msg)?
            .to_owned();
    }
    if s.phase == state::Phase::Ready {
        if !json {
            let _ = writeln!(io.stdout, "provision {} already exists:", s.name);
        }
        let ranges = s
            .one
            .public_network
            .and_then(|v| one::One { oned: &session.oned }.public_ranges(v, &s.id).ok());
        print_provision(&s, ranges.as_deref(), json, io);
        return Ok(());
    }
    let c = checked(&session.d, &session.client, io)?;
    file_lock.save(&s)?;
    let ssh = remote::Ssh::from_env(env, &boot.ssh_user)?;
    let sink = progress_sink();
    let ctx = session.context(remote.unwrap_or(&ssh), sink.as_ref(), boot, file_lock);
    let started = std::time::Instant::now();
    ops::create(&ctx, &mut s, &c)?;
    let ranges = s.one.public_network.and_then(|v| ctx_ranges(&ctx, v, &s.id));
    if !json {
        let _ = writeln!(io.stdout, "created in {:.0?}", started.elapsed());
    }
    print_provision(&s, ranges.as_deref(), json, io);
    Ok(())
}

fn ctx_ranges(ctx: &Ctx<'_>, vnet: i64, id: &str) -> Option<Vec<one::PublicRange>> {
    one::One { oned: &ctx.oned }.public_ranges(vnet, id).ok()
}

/// A command on an existing provision.
pub(crate) enum Op<'a> {
    Configure(&'a [String], &'a HostAccess),
    HostAdd(u32, &'a HostAccess),
    HostDelete(&'a [String], bool, &'a HostAccess),
    IpAdd(u32),
    IpDelete(&'a [i64]),
    Delete(bool),
}

pub(crate) fn operate(
    name: &str,
    op: &Op<'_>,
    env: &Env,
    io: &mut Io<'_>,
    remote: Option<&dyn bootstrap::Remote>,
) -> Result<()> {
    let store = Store::new(&state::state_dir(env));
    let (file_lock, found) = take(&store, name, env, false)?;
    let Some(mut s) = found.map(|(s, _)| s) else {
        return match op {
            // Deleting what is not there is done.
            Op::Delete(_) => {
                let _ = writeln!(io.stdout, "provision {name} does not exist (nothing to delete)");
                Ok(())
            }
            _ => Err(anyhow!("no provision named {name} (scaleway-provision list)")),
        };
    };
    let d = recorded_description(&s, env)?;
    if s.zone.is_empty() {
        record_facts(&mut s, &d);
    }
    let session = session(d, env)?;
    let access = match op {
        Op::Configure(_, a) | Op::HostAdd(_, a) | Op::HostDelete(_, _, a) => Some(*a),
        _ => None,
    };
    let boot = match access {
        Some(a) => boot_options(a, env, matches!(op, Op::HostAdd(..) | Op::Configure(..)))?,
        None => BootstrapOptions {
            ssh_user: "ubuntu".into(),
            skip: Vec::new(),
            authorized_keys: Vec::new(),
            vnm: default_vnm(env),
        },
    };
    let c = match op {
        Op::HostAdd(..) => Some(checked(&session.d, &session.client, io)?),
        _ => None,
    };
    let ssh = remote::Ssh::from_env(env, &boot.ssh_user)?;
    let sink = progress_sink();
    let ctx = session.context(remote.unwrap_or(&ssh), sink.as_ref(), boot, file_lock);
    match op {
        Op::Configure(hosts, _) => {
            let done = ops::configure(&ctx, &mut s, hosts)?;
            let _ = writeln!(io.stdout, "configured host(s) {}", done.join(" "));
        }
        Op::HostAdd(n, _) => {
            let c = c.ok_or_else(|| anyhow!("no check"))?;
            let added = ops::host_add(&ctx, &mut s, *n, &c)?;
            let _ = writeln!(io.stdout, "added {} host(s)", added.len());
        }
        Op::HostDelete(hosts, force, _) => {
            let gone = ops::host_delete(&ctx, &mut s, hosts, *force)?;
            let _ = writeln!(io.stdout, "deleted host(s) {}", gone.join(" "));
        }
        Op::IpAdd(n) => {
            let total = ops::ip_add(&ctx, &mut s, *n)?;
            let _ = writeln!(io.stdout, "the public network has {total} public IP(s)");
        }
        Op::IpDelete(ars) => {
            ops::ip_delete(&ctx, &mut s, ars)?;
            let _ = writeln!(
                io.stdout,
                "removed address range(s) {}",
                ars.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
            );
        }
        Op::Delete(force) => {
            ops::delete(&ctx, &mut s, *force)?;
            let _ = writeln!(
                io.stdout,
                "provision {name} deleted; nothing tagged with it is left at Scaleway"
            );
            return Ok(());
        }
    }
    let ranges = s.one.public_network.and_then(|v| ctx_ranges(&ctx, v, &s.id));
    let _ = write!(io.stdout, "{}", report::summary(&s, ranges.as_deref()));
    Ok(())
}
