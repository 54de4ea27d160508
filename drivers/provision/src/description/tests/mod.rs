use super::*;
use anyhow::anyhow;

const GOOD: &str = "name: edge-paris\nprovider: fr-par-1\ninputs:\n  number_hosts: 3\n  offer: EM-A116X-SSD\n  \
                    os: Ubuntu 24.04\n  number_public_ips: 2\n  dns: 1.1.1.1 9.9.9.9\n";

fn providers(name: &str) -> Result<Option<Provider>> {
    Ok(match name {
        "fr-par-1" => {
            Some(Provider::parse("name: fr-par-1\nconnection:\n  zone: fr-par-1\n").map_err(|e| anyhow!(e.join(";")))?)
        }
        "paris" => Some(
            Provider::parse(
                "name: paris\nconnection: {zone: fr-par-2, profile: edge}\ndefaults:\n  offer: EM-B220E-NVME\n  \
                 os: Ubuntu 22.04\n  subscription_period: monthly\n",
            )
            .map_err(|e| anyhow!(e.join(";")))?,
        ),
        "broken" => return Err(anyhow!("oned is not answering")),
        _ => None,
    })
}

#[test]
fn reads_a_description_with_defaults() {
    let d = parse(GOOD, &providers).unwrap();
    assert_eq!(
        (d.name.as_str(), d.zone.as_str(), d.region.as_str()),
        ("edge-paris", "fr-par-1", "fr-par")
    );
    assert_eq!(
        (d.hosts, d.public_ips, d.period, d.hypervisor),
        (3, 2, Period::Hourly, Hypervisor::Kvm)
    );
    assert_eq!(d.os, ("Ubuntu".to_owned(), "24.04".to_owned()));
    assert_eq!(d.dns.len(), 2);
    assert_eq!(d.private_cidr.to_string(), "172.18.0.0/24");
    assert_eq!(d.public_ip_cidr.to_string(), "172.30.0.0/16");
    assert_eq!(d.cluster_name, "edge-paris");
    assert_eq!(d.opennebula_version, "7.0");
    assert_eq!(d.provider.as_deref(), Some("fr-par-1"));
}

#[test]
fn full_yaml_lists_anchors_comments_and_provider_defaults() {
    let text = "# Paris\nname: &n edge-paris   # the name\ndescription: |\n  two\n  lines\nprovider: paris\n\
                inputs:\n  number_hosts: 2\n  dns:\n    - 1.1.1.1\n    - 2606:4700:4700::1111\n  \
                cluster_name: *n\n  opennebula_version: '7.4'\n  hypervisor: lxc\n";
    let d = parse(text, &providers).unwrap();
    assert_eq!(d.description, "two\nlines");
    assert_eq!((d.zone.as_str(), d.profile.as_deref()), ("fr-par-2", Some("edge")));
    assert_eq!(
        (d.offer.as_str(), d.os.1.as_str(), d.period),
        ("EM-B220E-NVME", "22.04", Period::Monthly)
    );
    assert_eq!(d.dns.len(), 2);
    assert_eq!(
        (d.cluster_name.as_str(), d.opennebula_version.as_str()),
        ("edge-paris", "7.4")
    );
    assert_eq!(d.hypervisor, Hypervisor::Lxc);
    // The description's own inputs win over the provider's defaults.
    let d = parse(
        "name: a\nprovider: paris\ninputs: {number_hosts: 1, offer: EM-A116X-SSD, subscription_period: hourly}\n",
        &providers,
    )
    .unwrap();
    assert_eq!((d.offer.as_str(), d.period), ("EM-A116X-SSD", Period::Hourly));
}

#[test]
fn reports_every_problem_at_once_with_its_line() {
    let bad = "name: Edge Paris\nconnection:\n  zone: fr-par-3\ninputs:\n  number_hosts: 0\n  offer: big\n  \
               os: Ubuntu\n  dns: 1.1.1.x\n  private_cidr: 172.30.1.0/24\n  hypervisor: xen\n  \
               opennebula_version: 7.0.1\n";
    let errors = parse(bad, &providers).unwrap_err();
    for expected in [
        "line 1: name \"Edge Paris\"",
        "line 3: connection zone fr-par-3: Elastic Metal with flexible IPs exists only in",
        "line 5: inputs number_hosts: a whole number from 1 to 20",
        "line 6: inputs offer \"big\"",
        "line 7: inputs os \"Ubuntu\": an OS name and version",
        "line 8: inputs dns \"1.1.1.x\"",
        "inputs private_cidr 172.30.1.0/24 and public_ip_cidr 172.30.0.0/16 overlap",
        "line 10: inputs hypervisor \"xen\"",
        "line 11: inputs opennebula_version \"7.0.1\"",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "{expected:?} not in {errors:#?}"
        );
    }
}

#[test]
fn structure_errors_have_line_and_column() {
    for (text, expected) in [
        (
            "name: a\nprovider: fr-par-1\ninputs:\n  number_hosts: 1\n  colour: blue\n",
            "line 5 column 3: unknown field `colour`",
        ),
        ("name: a\nprovider: fr-par-1\ninputs:\n  - x\n", "line 4 column 3"),
        (
            "name: a\nprovider: fr-par-1\ninputs:\n  number_hosts: two\n",
            "line 4 column 17",
        ),
        ("name: a\nname: b\n", "line 2 column 1: duplicate mapping key"),
    ] {
        let errors = parse(text, &providers).unwrap_err();
        assert!(errors[0].contains(expected), "{expected:?} not in {errors:#?}");
    }
}

#[test]
fn provider_and_cidr_problems() {
    let cases = [
        (
            "name: a\nprovider: nowhere\ninputs:\n  number_hosts: 1\n  offer: EM-X\n  os: U 1\n",
            "line 2: provider \"nowhere\": no such provider",
        ),
        (
            "name: a\nprovider: broken\ninputs:\n  number_hosts: 1\n  offer: EM-X\n  os: U 1\n",
            "provider \"broken\": oned is not answering",
        ),
        (
            "name: a\ninputs:\n  number_hosts: 1\n  offer: EM-X\n  os: U 1\n",
            "provider (or connection) is missing",
        ),
        (
            "name: a\nprovider: fr-par-1\ninputs:\n  number_hosts: 1\n",
            "inputs offer is missing (and the provider has no default offer)",
        ),
        (
            "name: a\nprovider: fr-par-1\ninputs:\n  number_hosts: 1\n  offer: EM-X\n  os: U 1\n  private_cidr: 172.18.0.1/24\n",
            "host bits set (did you mean 172.18.0.0/24?)",
        ),
        (
            "name: a\nprovider: fr-par-1\ninputs:\n  number_hosts: 1\n  offer: EM-X\n  os: U 1\n  private_cidr: 8.8.8.0/24\n",
            "not private",
        ),
        (
            "name: a\nprovider: fr-par-1\ninputs:\n  number_hosts: 20\n  offer: EM-X\n  os: U 1\n  private_cidr: 10.0.0.0/28\n",
            "too small for 20 hosts",
        ),
    ];
    for (text, expected) in cases {
        let errors = parse(text, &providers).unwrap_err();
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{expected:?} not in {errors:#?}"
        );
    }
}
