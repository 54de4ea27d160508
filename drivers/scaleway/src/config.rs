//! Where credentials, project, locality and API URL come from.
//!
//! In this order (one-scaleway's contract): the `SCW_*` environment
//! variables (and the legacy aliases the Scaleway SDK still reads), then the
//! Scaleway CLI's config file, field by field. The file is
//! `$SCW_CONFIG_PATH`, else `$XDG_CONFIG_HOME/scw/config.yaml`, else
//! `~/.config/scw/config.yaml` (or `config.yml`). Its profile is the one the
//! caller names (an AR's or host's `SCALEWAY_PROFILE`), else `SCW_PROFILE`,
//! else the file's `active_profile`, else its root; a named profile is
//! merged field by field over the root. A config file that other users can
//! read is refused: it holds the secret key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::config_file::{ConfigFile, Profile};
use crate::secret::{SecretKey, is_uuid};

/// The real API.
pub const DEFAULT_API_URL: &str = "https://api.scaleway.com";

/// Why a configuration could not be resolved. Never contains the secret key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// A Scaleway zone (`fr-par-1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Zone(String);

/// A Scaleway region (`fr-par`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region(String);

fn lower_parts(s: &str, parts: &[(usize, usize)]) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == parts.len()
        && groups.iter().zip(parts).enumerate().all(|(i, (g, (min, max)))| {
            (*min..=*max).contains(&g.len())
                && if i == 2 {
                    g.chars().all(|c| c.is_ascii_digit())
                } else {
                    g.chars().all(|c| c.is_ascii_lowercase())
                }
        })
}

impl Zone {
    /// `^[a-z]{2}-[a-z]{3,7}-[0-9]{1,2}$`, as the Scaleway SDK validates it.
    pub fn new(s: &str) -> Result<Self, ConfigError> {
        if lower_parts(s, &[(2, 2), (3, 7), (1, 2)]) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ConfigError(format!("{s:?} is not a Scaleway zone (like fr-par-1)")))
        }
    }

    /// The zone's region: its first two parts.
    pub fn region(&self) -> Region {
        Region(self.0.rsplit_once('-').map_or(self.0.as_str(), |(r, _)| r).to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Region {
    /// `^[a-z]{2}-[a-z]{3,7}$`; the legacy `par1`/`ams1` map to `fr-par`/`nl-ams`.
    pub fn new(s: &str) -> Result<Self, ConfigError> {
        let s = match s {
            "par1" => "fr-par",
            "ams1" => "nl-ams",
            other => other,
        };
        if lower_parts(s, &[(2, 2), (3, 7)]) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ConfigError(format!("{s:?} is not a Scaleway region (like fr-par)")))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything needed to call the API, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key: Option<String>,
    pub secret_key: SecretKey,
    pub project_id: Option<String>,
    pub organization_id: Option<String>,
    pub zone: Option<Zone>,
    pub region: Option<Region>,
    /// Base URL without a trailing slash.
    pub api_url: String,
    /// The config file profile used, if any.
    pub profile: Option<String>,
    /// Where the secret key came from (for messages: "environment", or a path and profile).
    pub secret_source: String,
}

impl Credentials {
    /// The project id, required for creates.
    pub fn require_project(&self) -> Result<&str, ConfigError> {
        self.project_id.as_deref().ok_or_else(|| {
            ConfigError(format!(
                "no Scaleway project id: set SCW_DEFAULT_PROJECT_ID or default_project_id in the config file{}",
                self.profile
                    .as_ref()
                    .map(|p| format!(" (profile {p})"))
                    .unwrap_or_default()
            ))
        })
    }

    /// The zone: the one asked for, else the default one.
    pub fn require_zone(&self) -> Result<&Zone, ConfigError> {
        self.zone.as_ref().ok_or_else(|| {
            ConfigError("no Scaleway zone: set SCW_DEFAULT_ZONE or default_zone in the config file".to_owned())
        })
    }
}

/// The environment variables we read, each with its legacy aliases.
const ENV: &[(&str, &[&str])] = &[
    ("access_key", &["SCW_ACCESS_KEY", "SCALEWAY_ACCESS_KEY"]),
    ("secret_key", &["SCW_SECRET_KEY", "SCW_TOKEN", "SCALEWAY_TOKEN"]),
    (
        "default_organization_id",
        &[
            "SCW_DEFAULT_ORGANIZATION_ID",
            "SCW_ORGANIZATION",
            "SCALEWAY_ORGANIZATION",
        ],
    ),
    ("default_project_id", &["SCW_DEFAULT_PROJECT_ID"]),
    (
        "default_region",
        &["SCW_DEFAULT_REGION", "SCW_REGION", "SCALEWAY_REGION"],
    ),
    ("default_zone", &["SCW_DEFAULT_ZONE"]),
    ("api_url", &["SCW_API_URL"]),
];

/// Resolves credentials. `env` reads an environment variable; `profile` is
/// the profile the caller was asked to use (`SCALEWAY_PROFILE`), if any.
pub fn resolve(env: &dyn Fn(&str) -> Option<String>, profile: Option<&str>) -> Result<Credentials, ConfigError> {
    let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let mut fields: BTreeMap<&str, (String, String)> = BTreeMap::new();
    for (field, names) in ENV {
        if let Some((name, value)) = names.iter().find_map(|n| get(n).map(|v| (*n, v))) {
            fields.insert(field, (value, format!("environment variable {name}")));
        }
    }
    let wanted_profile = profile.map(str::to_owned).or_else(|| get("SCW_PROFILE"));
    let file = config_path(&get);
    let mut used_profile = None;
    // The file is needed when the environment lacks something, or a profile was asked for.
    let needs_file = wanted_profile.is_some() || ENV.iter().any(|(f, _)| !fields.contains_key(f));
    if let Some(path) = file.as_ref().filter(|_| needs_file) {
        if let Some(text) = read_private(path)? {
            let doc = ConfigFile::parse(&text).map_err(|e| {
                ConfigError(format!(
                    "cannot read the Scaleway config file {}: {}",
                    path.display(),
                    e.redacted()
                ))
            })?;
            let profile_name = wanted_profile.clone().or_else(|| doc.active_profile.clone());
            let mut merged = doc.root().fields();
            if let Some(name) = &profile_name {
                let profile = doc.profiles.get(name).map(Profile::fields).ok_or_else(|| {
                    ConfigError(format!(
                        "the Scaleway config file {} has no profile {name:?}",
                        path.display()
                    ))
                })?;
                merged.extend(profile.iter().map(|(k, v)| (k.clone(), v.clone())));
                used_profile = Some(name.clone());
            }
            let origin = match &used_profile {
                Some(p) => format!("{} (profile {p})", path.display()),
                None => path.display().to_string(),
            };
            for (field, _) in ENV {
                if let Some(v) = merged.get(*field).filter(|v| !v.is_empty()) {
                    fields.entry(field).or_insert_with(|| (v.clone(), origin.clone()));
                }
            }
        } else if wanted_profile.is_some() {
            return Err(ConfigError(format!(
                "Scaleway profile {:?} was asked for, but there is no config file at {}",
                wanted_profile.unwrap_or_default(),
                path.display()
            )));
        }
    }
    let take = |f: &str| fields.get(f).map(|(v, _)| v.clone());
    let (secret, secret_source) = fields.get("secret_key").cloned().ok_or_else(|| {
        ConfigError(format!(
            "no Scaleway secret key: set SCW_SECRET_KEY, or secret_key in {}",
            file.as_ref()
                .map_or("~/.config/scw/config.yaml".to_owned(), |p| p.display().to_string())
        ))
    })?;
    let secret_key = SecretKey::new(&secret).map_err(|e| ConfigError(format!("{e} (from {secret_source})")))?;
    let check_uuid = |field: &str| -> Result<Option<String>, ConfigError> {
        match fields.get(field) {
            Some((v, from)) if !is_uuid(v) => Err(ConfigError(format!("{field} {v:?} (from {from}) is not a UUID"))),
            Some((v, _)) => Ok(Some(v.to_ascii_lowercase())),
            None => Ok(None),
        }
    };
    let zone = take("default_zone").map(|z| Zone::new(&z)).transpose()?;
    let region = match take("default_region") {
        Some(r) => Some(Region::new(&r)?),
        None => zone.as_ref().map(Zone::region),
    };
    let api_url = take("api_url").unwrap_or_else(|| DEFAULT_API_URL.to_owned());
    let api_url = api_url.trim_end_matches('/').to_owned();
    if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
        return Err(ConfigError(format!(
            "the Scaleway API URL {api_url:?} must start with https:// or http://"
        )));
    }
    // The secret key goes in every request: in clear only to this machine
    // (the emulator), never over a network.
    if let Some(rest) = api_url.strip_prefix("http://")
        && !is_loopback_authority(rest)
    {
        return Err(ConfigError(format!(
            "the Scaleway API URL {api_url:?} is plain http to another machine: the secret key would cross the \
             network in clear; use https:// (http:// is for a local emulator on 127.0.0.1, [::1] or localhost)"
        )));
    }
    Ok(Credentials {
        access_key: take("access_key"),
        secret_key,
        project_id: check_uuid("default_project_id")?,
        organization_id: check_uuid("default_organization_id")?,
        zone,
        region,
        api_url,
        profile: used_profile,
        secret_source,
    })
}

/// A provider connection (oneprovision's `connection`: `secret_key`,
/// `access_key`, `project_id`, `zone`, `region`...), fetched on demand.
pub type ConnectionFetch<'a> = dyn FnOnce(u64) -> Result<BTreeMap<String, String>, String> + 'a;

/// The credentials of an OpenNebula object (a range, a host) in the
/// contract's order: the `SCW_*` environment, then the Scaleway config file
/// (the object's `SCALEWAY_PROFILE`, else the active profile); an object that
/// carries only a `PROVISION_ID` (made by oneprovision) uses its provider's
/// connection, which `fetch` reads from oned. `SCW_API_URL` from the
/// environment applies in every case.
pub fn resolve_for(
    env: &dyn Fn(&str) -> Option<String>,
    profile: Option<&str>,
    provision_id: Option<u64>,
    fetch: Box<ConnectionFetch<'_>>,
) -> Result<Credentials, ConfigError> {
    let secret_in_env = ENV[1].1.iter().any(|n| env(n).is_some_and(|v| !v.trim().is_empty()));
    let Some(id) = provision_id.filter(|_| profile.is_none() && !secret_in_env) else {
        return resolve(env, profile);
    };
    let connection =
        fetch(id).map_err(|e| ConfigError(format!("cannot read the Scaleway credentials of provision {id}: {e}")))?;
    let get = |key: &str| connection.get(key).cloned();
    let mapped = |k: &str| match k {
        "SCW_SECRET_KEY" => get("secret_key"),
        "SCW_ACCESS_KEY" => get("access_key"),
        "SCW_DEFAULT_PROJECT_ID" => get("project_id"),
        "SCW_DEFAULT_ORGANIZATION_ID" => get("organization_id"),
        "SCW_DEFAULT_ZONE" => get("zone"),
        "SCW_DEFAULT_REGION" => get("region"),
        "SCW_API_URL" => env("SCW_API_URL"),
        // Only the provider's connection counts: no config file.
        "SCW_CONFIG_PATH" => Some("/nonexistent/one-scaleway/provider-connection-only".to_owned()),
        _ => None,
    };
    resolve(&mapped, None).map_err(|e| ConfigError(format!("the provider connection of provision {id}: {e}")))
}

fn config_path(get: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(p) = get("SCW_CONFIG_PATH") {
        return Some(PathBuf::from(p));
    }
    let dir = get("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| get("HOME").map(|h| Path::new(&h).join(".config")))?
        .join("scw");
    let yml = dir.join("config.yml");
    let yaml = dir.join("config.yaml");
    Some(if !yaml.exists() && yml.exists() { yml } else { yaml })
}

/// Reads the config file; `None` if there is none. Refuses a file that
/// other users can read or write.
fn read_private(path: &Path) -> Result<Option<String>, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ConfigError(format!(
                "cannot read the Scaleway config file {}: {e}",
                path.display()
            )));
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError(format!(
            "refusing the Scaleway config file {}: its mode is {mode:04o}, so other users can read the secret key \
             in it; run: chmod 600 {}",
            path.display(),
            path.display()
        )));
    }
    std::fs::read_to_string(path)
        .map(Some)
        .map_err(|e| ConfigError(format!("cannot read the Scaleway config file {}: {e}", path.display())))
}

/// Whether the host of `authority` (`host[:port][/path]`, after `http://`)
/// is this machine: a loopback address or `localhost`.
fn is_loopback_authority(authority: &str) -> bool {
    let authority = authority.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests;
