//! Checks a description against Scaleway before anything is created: the
//! offer exists in the zone for the period, is enabled and in stock, offers
//! the Private Network option; the OS exists, is allowed, is compatible
//! with the offer, and needs nothing we do not provide.

use scaleway::Client;
use scaleway::baremetal::Stock;

use crate::description::Description;

/// What the check resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub offer_id: String,
    pub os_id: String,
    pub private_network_option_id: String,
    pub warnings: Vec<String>,
}

/// Checks `d` against the API; every problem is reported.
pub fn check(d: &Description, client: &Client) -> Result<Checked, Vec<String>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let offers = client
        .list_offers(&d.zone, Some(d.period.as_str()))
        .map_err(|e| vec![e.to_string()])?;
    let Some(offer) = offers.iter().find(|o| o.name == d.offer) else {
        let mut names: Vec<&str> = offers.iter().map(|o| o.name.as_str()).collect();
        names.sort_unstable();
        return Err(vec![format!(
            "offer {} does not exist in {} ({}); there: {}",
            d.offer,
            d.zone,
            d.period.as_str(),
            names.join(", ")
        )]);
    };
    if !offer.enable {
        errors.push(format!("offer {} is not enabled in {}", d.offer, d.zone));
    }
    match offer.stock {
        Stock::Empty => errors.push(format!(
            "offer {} is out of stock in {}: choose another offer or zone",
            d.offer, d.zone
        )),
        Stock::Low => warnings.push(format!(
            "offer {} has low stock in {} ({} hosts wanted)",
            d.offer, d.zone, d.hosts
        )),
        _ => {}
    }
    let option = offer.options.iter().find(|o| o.name == "Private Network");
    if option.is_none() {
        errors.push(format!(
            "offer {} has no Private Network option: the hosts could not reach each other",
            d.offer
        ));
    }
    let systems = client.list_os(&d.zone, None).map_err(|e| vec![e.to_string()])?;
    let (name, version) = &d.os;
    let candidates: Vec<_> = systems
        .iter()
        .filter(|o| &o.name == name && o.version.starts_with(version.as_str()))
        .collect();
    let os = candidates.iter().find(|o| !offer.incompatible_os_ids.contains(&o.id));
    match os {
        None if candidates.is_empty() => {
            let mut known: Vec<String> = systems.iter().map(|o| format!("{} {}", o.name, o.version)).collect();
            known.sort();
            errors.push(format!(
                "OS {name} {version} does not exist in {}; there: {}",
                d.zone,
                known.join(", ")
            ));
        }
        None => errors.push(format!("OS {name} {version} cannot be installed on offer {}", d.offer)),
        Some(os) => {
            if !os.enabled || !os.allowed {
                errors.push(format!(
                    "OS {} {} is not available to this account",
                    os.name, os.version
                ));
            }
            for (what, req) in [
                ("user", &os.user),
                ("password", &os.password),
                ("service_user", &os.service_user),
                ("service_password", &os.service_password),
            ] {
                if req.required && req.default_value.is_none() {
                    errors.push(format!(
                        "OS {} {} needs a {what} at install: choose another OS",
                        os.name, os.version
                    ));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(Checked {
            offer_id: offer.id.clone(),
            os_id: os.map(|o| o.id.clone()).unwrap_or_default(),
            private_network_option_id: option.map(|o| o.id.clone()).unwrap_or_default(),
            warnings,
        })
    } else {
        Err(errors)
    }
}
