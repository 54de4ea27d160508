//! Providers: where and how provisions are made. A provider names a zone,
//! the credentials profile of the Scaleway config file (the secrets stay in
//! that file, mode 0600, never in oned), and defaults for the inputs of the
//! provisions that use it (offer, OS, billing).
//!
//! Providers are kept in oned, as documents of a type of our own
//! ([`PROVIDER_DOCUMENT`]; oneprovision's and OneForm's tools read types
//! 100 to 104 and never see them), so every frontend of the same oned sees
//! the same providers. The file form (`provider create FILE`) is YAML:
//!
//! ```yaml
//! name: paris                      # letters, digits, '-', '_', '.'
//! description: Paris, hourly EM-A116X
//! connection:
//!   zone: fr-par-1
//!   profile: edge-paris            # a profile of ~oneadmin/.config/scw/config.yaml (optional)
//! defaults:                        # inputs a description may leave out (optional)
//!   offer: EM-A116X-SSD
//!   os: Ubuntu 24.04
//!   subscription_period: hourly
//! ```

use anyhow::{Error, Result, anyhow, bail};
use opennebula::oned::{Oned, Param};
use opennebula::template::Template;
use opennebula::xml::Element;
use scaleway::Zone;
use scaleway::yaml::{self, Spanned, at};
use serde::{Deserialize, Serialize};

use crate::description::ZONES;

/// oned document type of a provider.
pub const PROVIDER_DOCUMENT: i64 = 1200;
/// The template attribute marking a provider of this tool (its format version).
const KIND: &str = "SCALEWAY_PROVIDER";

/// Inputs a provider gives the descriptions that leave them out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_period: Option<String>,
}

/// A validated provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provider {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub zone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default)]
    pub defaults: Defaults,
}

/// `connection:` of a provider file or a description.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnection {
    pub zone: Spanned<String>,
    pub profile: Option<Spanned<String>>,
}

/// The (non-empty) text of `TEMPLATE/<name>` of one of our oned documents.
pub fn template_attr(doc: &Element, name: &str) -> Option<String> {
    doc.at(&format!("TEMPLATE/{name}"))
        .map(|e| e.text.clone())
        .filter(|t| !t.is_empty())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    /// The shipped files say `provider: scaleway`; nothing else is accepted.
    provider: Option<Spanned<String>>,
    connection: RawConnection,
    #[serde(default)]
    defaults: Defaults,
}

pub fn is_provider_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !s.starts_with('.')
}

/// A zone where provisions can be made, or why not.
pub fn check_zone(zone: &str) -> Result<Zone> {
    match Zone::new(zone) {
        Ok(z) if ZONES.contains(&z.as_str()) => Ok(z),
        Ok(z) => Err(anyhow!(
            "zone {z}: Elastic Metal with flexible IPs exists only in {}",
            ZONES.join(", ")
        )),
        Err(e) => Err(anyhow!("zone: {e}")),
    }
}

/// A credentials profile name, or why not.
pub fn check_profile(profile: &str) -> Result<()> {
    if !profile.is_empty()
        && profile.len() <= 64
        && profile.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        Ok(())
    } else {
        Err(anyhow!("profile {profile:?}: letters, digits, '-', '_' and '.' only"))
    }
}

impl Provider {
    /// Reads and validates a provider file; every problem is reported.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let raw: RawProvider = yaml::from_str(text).map_err(|e| vec![e.to_string()])?;
        let mut errors = Vec::new();
        if !is_provider_name(&raw.name.value) {
            errors.push(format!(
                "{}name {:?}: 1 to 64 letters, digits, '-', '_' and '.'",
                at(&raw.name),
                raw.name.value
            ));
        }
        if let Some(p) = raw.provider.as_ref().filter(|p| p.value != "scaleway") {
            errors.push(format!(
                "{}provider {:?}: this tool makes scaleway providers",
                at(p),
                p.value
            ));
        }
        if let Err(e) = check_zone(&raw.connection.zone.value) {
            errors.push(format!("{}connection {e}", at(&raw.connection.zone)));
        }
        if let Some(p) = &raw.connection.profile
            && let Err(e) = check_profile(&p.value)
        {
            errors.push(format!("{}connection {e}", at(p)));
        }
        if let Some(period) = raw.defaults.subscription_period.as_deref()
            && !["hourly", "monthly"].contains(&period)
        {
            errors.push(format!("defaults subscription_period {period:?}: hourly or monthly"));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            name: raw.name.value,
            description: raw.description.trim().to_owned(),
            zone: raw.connection.zone.value,
            profile: raw.connection.profile.map(|p| p.value),
            defaults: raw.defaults,
        })
    }

    /// The document template oned keeps: plain attributes, readable in
    /// `one.document.info` by anyone allowed to see the document.
    fn template(&self, with_name: bool) -> Result<String> {
        let mut t = Template::new();
        if with_name {
            t.single("NAME", &self.name);
        }
        t.single(KIND, "1");
        let optional = [
            ("DESCRIPTION", Some(&self.description).filter(|d| !d.is_empty())),
            ("ZONE", Some(&self.zone)),
            ("PROFILE", self.profile.as_ref()),
            ("DEFAULT_OFFER", self.defaults.offer.as_ref()),
            ("DEFAULT_OS", self.defaults.os.as_ref()),
            (
                "DEFAULT_SUBSCRIPTION_PERIOD",
                self.defaults.subscription_period.as_ref(),
            ),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                t.single(name, v);
            }
        }
        t.render().map_err(Error::msg)
    }

    fn from_document(doc: &Element) -> Result<(i64, Self)> {
        let id = doc.child("ID").and_then(|e| e.text.parse().ok()).unwrap_or(-1);
        let attr = |name: &str| template_attr(doc, name);
        if attr(KIND).is_none() {
            bail!("document {id} is not a provider of this tool (no TEMPLATE/{KIND})");
        }
        let p = Self {
            name: doc.child("NAME").map(|e| e.text.clone()).unwrap_or_default(),
            description: attr("DESCRIPTION").unwrap_or_default(),
            zone: attr("ZONE").ok_or_else(|| anyhow!("provider document {id} has no ZONE"))?,
            profile: attr("PROFILE"),
            defaults: Defaults {
                offer: attr("DEFAULT_OFFER"),
                os: attr("DEFAULT_OS"),
                subscription_period: attr("DEFAULT_SUBSCRIPTION_PERIOD"),
            },
        };
        Ok((id, p))
    }
}

/// The providers kept in oned.
pub struct Providers<'a> {
    pub oned: &'a Oned,
}

impl Providers<'_> {
    /// Every provider, by name.
    pub fn list(&self) -> Result<Vec<(i64, Provider)>> {
        let docs = self.oned.documents(PROVIDER_DOCUMENT).map_err(Error::msg)?;
        let mut all = docs
            .iter()
            .map(Provider::from_document)
            .collect::<Result<Vec<_>, _>>()?;
        all.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        Ok(all)
    }

    /// The provider of that name.
    pub fn get(&self, name: &str) -> Result<Option<(i64, Provider)>> {
        Ok(self.list()?.into_iter().find(|(_, p)| p.name == name))
    }

    /// Registers a new provider; refuses a name in use.
    pub fn create(&self, p: &Provider) -> Result<i64> {
        if let Some((id, _)) = self.get(&p.name)? {
            bail!(
                "provider {} exists (document {id}): `scaleway-provision provider update {} FILE` changes it",
                p.name,
                p.name
            );
        }
        self.oned
            .call_id(
                "one.document.allocate",
                &[Param::Str(p.template(true)?), Param::Int(PROVIDER_DOCUMENT)],
            )
            .map_err(|e| anyhow!("oned refused the provider: {e}"))
    }

    /// Replaces a provider's content (its name stays).
    pub fn update(&self, id: i64, p: &Provider) -> Result<()> {
        self.oned
            .call(
                "one.document.update",
                &[Param::Int(id), Param::Str(p.template(false)?), Param::Int(0)],
            )
            .map(|_| ())
            .map_err(|e| anyhow!("oned refused the update of provider {}: {e}", p.name))
    }

    pub fn delete(&self, id: i64) -> Result<()> {
        self.oned
            .call("one.document.delete", &[Param::Int(id)])
            .map(|_| ())
            .map_err(|e| anyhow!("oned refused to delete provider document {id}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_shipped_files_and_full_yaml() {
        let shipped = include_str!("../../../share/scaleway/providers/fr-par-1.yaml");
        let p = Provider::parse(shipped).unwrap();
        assert_eq!(
            (p.name.as_str(), p.zone.as_str(), p.profile),
            ("fr-par-1", "fr-par-1", None)
        );
        assert_eq!(p.defaults.os.as_deref(), Some("Ubuntu 24.04"));
        let p = Provider::parse(
            "# Paris\nname: paris\ndescription: >\n  Paris, hourly\nconnection: {zone: fr-par-2, profile: edge}\n\
             defaults:\n  offer: EM-B220E-NVME\n  os: Ubuntu 24.04\n  subscription_period: monthly\n",
        )
        .unwrap();
        assert_eq!(p.description, "Paris, hourly");
        assert_eq!(p.profile.as_deref(), Some("edge"));
        assert_eq!(p.defaults.offer.as_deref(), Some("EM-B220E-NVME"));
        // What oned stores (read back from a real oned in tests/tests/real_oned_providers.rs).
        assert_eq!(
            p.template(true).unwrap(),
            "NAME = \"paris\"\nSCALEWAY_PROVIDER = \"1\"\nDESCRIPTION = \"Paris, hourly\"\nZONE = \"fr-par-2\"\n\
             PROFILE = \"edge\"\nDEFAULT_OFFER = \"EM-B220E-NVME\"\nDEFAULT_OS = \"Ubuntu 24.04\"\n\
             DEFAULT_SUBSCRIPTION_PERIOD = \"monthly\"\n"
        );
    }

    #[test]
    fn every_problem_with_its_line() {
        let errors = Provider::parse(
            "name: 'a b'\nprovider: aws\nconnection:\n  zone: fr-par-3\n  profile: 'x y'\ndefaults:\n  subscription_period: weekly\n",
        )
        .unwrap_err();
        for expected in [
            "line 1: name \"a b\"",
            "line 2: provider \"aws\"",
            "line 4: connection zone fr-par-3",
            "line 5: connection profile \"x y\"",
            "defaults subscription_period \"weekly\"",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(expected)),
                "{expected:?} not in {errors:#?}"
            );
        }
        let e = Provider::parse("name: a\nconnection:\n  zone: fr-par-1\n  secret_key: x\n").unwrap_err();
        assert!(e[0].starts_with("line 4 column 3: unknown field `secret_key`"), "{e:?}");
    }
}
