//! Whether a provider's credentials reach Scaleway: one read of each
//! product a provision uses, in the provider's zone and region and the
//! credentials' project. A refusal names the IAM permission set the API
//! key's policy lacks (Scaleway's names, from its permission-set list).
//! Reads cannot prove write access; a missing write permission is named
//! when the first write is refused.

use scaleway::error::{ApiErrorKind, Error};
use scaleway::{Client, Zone};

/// A product a provision uses: what to read, and the permission set that allows it.
struct Probe {
    what: &'static str,
    permission_set: &'static str,
    path: String,
    project_filter: bool,
}

fn probes(zone: &Zone) -> Vec<Probe> {
    let region = zone.region();
    let probe = |what, permission_set, path: String, project_filter| Probe {
        what,
        permission_set,
        path,
        project_filter,
    };
    vec![
        probe(
            "Elastic Metal servers",
            "ElasticMetalFullAccess",
            format!("/baremetal/v1/zones/{zone}/servers"),
            true,
        ),
        probe(
            "flexible IPs",
            "ElasticMetalFullAccess",
            format!("/flexible-ip/v1alpha1/zones/{zone}/fips"),
            true,
        ),
        probe("VPCs", "VPCFullAccess", format!("/vpc/v2/regions/{region}/vpcs"), true),
        probe(
            "private networks",
            "PrivateNetworksFullAccess",
            format!("/vpc/v2/regions/{region}/private-networks"),
            true,
        ),
        probe(
            "public gateways",
            "VPCGatewayFullAccess",
            format!("/vpc-gw/v2/zones/{zone}/gateways"),
            true,
        ),
        probe(
            "IPAM addresses",
            "IPAMFullAccess",
            format!("/ipam/v1/regions/{region}/ips"),
            true,
        ),
        probe("SSH keys", "SSHKeysFullAccess", "/iam/v1alpha1/ssh-keys".into(), true),
    ]
}

/// Reads each product once; every refusal is reported, each with what to
/// do. The secret key is refused outright: one error.
pub fn reach(client: &Client, zone: &Zone) -> Result<(), Vec<String>> {
    let project = client
        .credentials()
        .require_project()
        .map_err(|e| vec![e.to_string()])?
        .to_owned();
    let mut errors = Vec::new();
    for p in probes(zone) {
        let mut query = vec![("page_size".to_owned(), "1".to_owned())];
        if p.project_filter {
            query.push(("project_id".to_owned(), project.clone()));
        }
        match client.get::<serde_json::Value>(&p.path, &query) {
            Ok(_) => {}
            Err(Error::Api(e)) => match &e.kind {
                ApiErrorKind::DeniedAuthentication { .. } => {
                    return Err(vec![format!(
                        "Scaleway refuses the credentials ({e}): check the secret key of the provider's profile"
                    )]);
                }
                ApiErrorKind::PermissionsDenied { details } => {
                    let detail = details
                        .first()
                        .map(|d| format!(" ({} {})", d.action, d.resource))
                        .unwrap_or_default();
                    errors.push(format!(
                        "the API key may not read {} in {zone}{detail}: add the IAM permission set {} for project \
                         {project} to its policy",
                        p.what, p.permission_set
                    ));
                }
                _ => errors.push(format!("cannot read {}: {e}", p.what)),
            },
            Err(e) => {
                // No answer at all: one error says it (the others would repeat it).
                return Err(vec![format!("cannot reach Scaleway: {e}")]);
            }
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}
