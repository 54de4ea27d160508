//! `scaleway-provision provider create|list|show|update|delete`.

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use opennebula::driver::{Env, Io};
use opennebula::oned::Oned;

use crate::cli::ProviderCommand;
use crate::commands::client_for;
use crate::listing::provisions;
use crate::provider::{Provider, Providers, check_zone};
use crate::{reach, report};

fn read_file(file: &Path) -> Result<Provider> {
    let text = std::fs::read_to_string(file).map_err(|e| anyhow!("cannot read {}: {e}", file.display()))?;
    Provider::parse(&text).map_err(|e| anyhow!("{}: {}", file.display(), e.join("; ")))
}

/// Refuses a provider whose credentials cannot read every product a provision uses.
fn check_reach(p: &Provider, env: &Env) -> Result<()> {
    let zone = check_zone(&p.zone)?;
    let (client, _) = client_for(&zone, p.profile.as_deref(), env)
        .map_err(|e| anyhow!("provider {}: its credentials do not resolve: {e}", p.name))?;
    reach::reach(&client, &zone).map_err(|errors| {
        anyhow!(
            "provider {}: its credentials cannot do what a provision needs:\n  {}",
            p.name,
            errors.join("\n  ")
        )
    })
}

/// The provisions of this frontend that use a provider.
fn users(name: &str, env: &Env) -> Result<Vec<String>> {
    let listing = provisions(env)?;
    if let Some(e) = listing.oned_error {
        bail!("cannot tell which provisions use provider {name}: {e}");
    }
    Ok(listing
        .all
        .into_iter()
        .filter_map(Result::ok)
        .filter(|s| s.provider.as_deref() == Some(name))
        .map(|s| s.name)
        .collect())
}

fn found(providers: &Providers<'_>, name: &str) -> Result<(i64, Provider)> {
    providers
        .get(name)?
        .ok_or_else(|| anyhow!("no provider named {name} (scaleway-provision provider list)"))
}

pub(crate) fn run(command: &ProviderCommand, env: &Env, io: &mut Io<'_>) -> Result<()> {
    let oned = Oned::from_env(env).map_err(|e| anyhow!("cannot reach oned: {e}"))?;
    let providers = Providers { oned: &oned };
    match command {
        ProviderCommand::Create { file } => {
            let p = read_file(file)?;
            if let Some((id, _)) = providers.get(&p.name)? {
                bail!(
                    "provider {} exists (document {id}): `scaleway-provision provider update {} FILE` changes it",
                    p.name,
                    p.name
                );
            }
            check_reach(&p, env)?;
            let id = providers.create(&p)?;
            let _ = writeln!(io.stdout, "provider {} created (document {id})", p.name);
        }
        ProviderCommand::List { json } => {
            let all = providers.list()?;
            if *json {
                let entries: Vec<_> = all.iter().map(|(id, p)| report::provider_json(*id, p)).collect();
                let _ = write!(io.stdout, "{}", report::document("providers", entries.into()));
            } else if all.is_empty() {
                let _ = writeln!(
                    io.stdout,
                    "no providers (scaleway-provision provider create /usr/share/one/scaleway/providers/fr-par-1.yaml)"
                );
            } else {
                for (id, p) in &all {
                    let _ = writeln!(
                        io.stdout,
                        "{id:>5}  {:<20}  {:<9}  profile {:<12}  {}",
                        p.name,
                        p.zone,
                        p.profile.as_deref().unwrap_or("-"),
                        p.description
                    );
                }
            }
        }
        ProviderCommand::Show { name, json } => {
            let (id, p) = found(&providers, name)?;
            let text = if *json {
                report::document("provider", report::provider_json(id, &p))
            } else {
                report::provider_text(id, &p)
            };
            let _ = write!(io.stdout, "{text}");
        }
        ProviderCommand::Update { name, file } => {
            let (id, old) = found(&providers, name)?;
            let new = read_file(file)?;
            if new.name != *name {
                bail!(
                    "{} names provider {}, not {name}: a provider's name does not change",
                    file.display(),
                    new.name
                );
            }
            let used = users(name, env)?;
            if new.zone != old.zone && !used.is_empty() {
                bail!(
                    "provider {name} is in {} and provision(s) {} use it: its zone cannot change (make another provider)",
                    old.zone,
                    used.join(", ")
                );
            }
            check_reach(&new, env)?;
            providers.update(id, &new)?;
            let _ = writeln!(io.stdout, "provider {name} updated");
        }
        ProviderCommand::Delete { name } => {
            let Some((id, _)) = providers.get(name)? else {
                let _ = writeln!(io.stdout, "provider {name} does not exist (nothing to delete)");
                return Ok(());
            };
            let used = users(name, env)?;
            if !used.is_empty() {
                bail!(
                    "provision(s) {} use provider {name}: delete them first",
                    used.join(", ")
                );
            }
            providers.delete(id)?;
            let _ = writeln!(io.stdout, "provider {name} deleted");
        }
    }
    Ok(())
}
