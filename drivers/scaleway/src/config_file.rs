//! The Scaleway CLI's config file (`~/.config/scw/config.yaml`), typed as
//! the CLI writes it: the profile fields at the root, `active_profile`, and
//! `profiles` of the same fields. An unknown key is refused (with its line)
//! rather than ignored: a misspelt `secret-key` would otherwise silently
//! leave the driver with other credentials than the user meant.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::yaml::{self, YamlError};

/// One profile's fields (the root's, or one of `profiles`).
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub api_url: Option<String>,
    pub insecure: Option<bool>,
    pub default_organization_id: Option<String>,
    pub default_project_id: Option<String>,
    pub default_region: Option<String>,
    pub default_zone: Option<String>,
    pub send_telemetry: Option<bool>,
}

impl Profile {
    /// The text fields that are set, by name.
    pub fn fields(&self) -> BTreeMap<String, String> {
        [
            ("access_key", &self.access_key),
            ("secret_key", &self.secret_key),
            ("api_url", &self.api_url),
            ("default_organization_id", &self.default_organization_id),
            ("default_project_id", &self.default_project_id),
            ("default_region", &self.default_region),
            ("default_zone", &self.default_zone),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_owned(), v.clone())))
        .collect()
    }
}

/// The whole file.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub api_url: Option<String>,
    pub insecure: Option<bool>,
    pub default_organization_id: Option<String>,
    pub default_project_id: Option<String>,
    pub default_region: Option<String>,
    pub default_zone: Option<String>,
    pub send_telemetry: Option<bool>,
    pub active_profile: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

impl ConfigFile {
    /// Reads the file's text. An empty file is an empty configuration.
    pub fn parse(text: &str) -> Result<Self, YamlError> {
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Ok(Self::default());
        }
        yaml::from_str(text)
    }

    /// The root's fields.
    pub fn root(&self) -> Profile {
        Profile {
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            api_url: self.api_url.clone(),
            insecure: self.insecure,
            default_organization_id: self.default_organization_id.clone(),
            default_project_id: self.default_project_id.clone(),
            default_region: self.default_region.clone(),
            default_zone: self.default_zone.clone(),
            send_telemetry: self.send_telemetry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_scw_cli_format() {
        let text = "# scw config\naccess_key: SCWXXXXXXXXXXXXXXXXX\nsecret_key: \"11111111-2222-4333-8444-555555555555\"\n\
                    default_zone: fr-par-1 # comment\nsend_telemetry: false\nactive_profile: edge\nprofiles:\n  edge:\n    \
                    default_zone: 'nl-ams-1'\n    default_project_id: 22222222-2222-4333-8444-555555555555\n  \
                    other: {default_region: pl-waw}\n";
        let c = ConfigFile::parse(text).unwrap();
        assert_eq!(c.root().fields()["secret_key"], "11111111-2222-4333-8444-555555555555");
        assert_eq!(c.root().fields()["default_zone"], "fr-par-1");
        assert_eq!(c.active_profile.as_deref(), Some("edge"));
        assert_eq!(c.profiles["edge"].fields()["default_zone"], "nl-ams-1");
        assert_eq!(c.profiles["other"].fields()["default_region"], "pl-waw");
        assert_eq!(ConfigFile::parse("# nothing yet\n\n").unwrap(), ConfigFile::default());
    }

    #[test]
    fn refuses_unknown_keys_with_their_line_and_never_shows_a_secret() {
        for (text, expected) in [
            (
                "secret-key: 11111111-2222-4333-8444-555555555555\n",
                "line 1 column 1: unknown field `secret-key`",
            ),
            (
                "profiles:\n  p:\n    zone: fr-par-1\n",
                "line 3 column 5: unknown field `zone`",
            ),
            ("profiles:\n  p: x\n", "line 2"),
            ("secret_key: [a, b]\n", "line 1"),
        ] {
            let e = ConfigFile::parse(text).unwrap_err();
            assert!(e.redacted().starts_with(expected), "{text:?}: {}", e.redacted());
        }
        let e = ConfigFile::parse("11111111-2222-4333-8444-555555555555: x\n").unwrap_err();
        assert!(!e.redacted().contains("1111"), "{}", e.redacted());
    }
}
