//! Providers kept in a real oned, and the commands an administrator runs
//! with them: `provider create|list|show|update|delete` (a provider whose
//! credentials lack a product is refused, naming the IAM permission set),
//! a description that names a provider and takes its defaults, `validate`,
//! `create`, `show` and `list` with `--json`, `configure` and
//! `host configure`, and the guards (a provider in use keeps its zone and
//! cannot be deleted).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::path::{Path, PathBuf};

use common::{Bed, check_cluster, path_of};
use serde_json::{Value, json};

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../share/scaleway/providers/{name}.yaml"))
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
#[ignore = "privileged: runs a real oned as oneadmin (sudo .ci/run)"]
fn providers_in_oned_and_provisions_made_with_them() {
    let bed = Bed::new("providers");
    assert!(bed.ok(&["provider", "list"]).starts_with("no providers"));
    assert_eq!(
        json_of(&bed.ok(&["provider", "list", "--json"])),
        json!({"format": 1, "providers": []})
    );

    // A provider whose API key may not read public gateways is refused, naming the permission set.
    bed.emu
        .add_fault(&json!({"kind": "permissions_denied", "path_prefix": "/vpc-gw/v2/zones/fr-par-1/gateways"}))
        .unwrap();
    let (code, out, err) = bed.run(&["provider", "create", path_of(&shipped("fr-par-1"))]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.contains("may not read public gateways in fr-par-1")
            && err.contains("add the IAM permission set VPCGatewayFullAccess"),
        "{err}"
    );
    assert!(
        bed.ok(&["provider", "list"]).starts_with("no providers"),
        "nothing registered"
    );

    // The shipped provider, as an administrator registers it.
    let out = bed.ok(&["provider", "create", path_of(&shipped("fr-par-1"))]);
    assert!(out.starts_with("provider fr-par-1 created (document "), "{out}");
    let (code, _, err) = bed.run(&["provider", "create", path_of(&shipped("fr-par-1"))]);
    assert!(code == 1 && err.contains("provider fr-par-1 exists"), "{err}");
    let listed = json_of(&bed.ok(&["provider", "list", "--json"]));
    let id = listed["providers"][0]["id"].as_i64().unwrap();
    assert_eq!(
        listed["providers"][0],
        json!({
            "id": id, "name": "fr-par-1", "description": "Scaleway Elastic Metal, fr-par-1", "zone": "fr-par-1",
            "profile": null,
            "defaults": {"offer": "EM-A116X-SSD", "os": "Ubuntu 24.04", "subscription_period": "hourly"},
        })
    );
    assert_eq!(
        json_of(&bed.ok(&["provider", "show", "fr-par-1", "--json"]))["provider"],
        listed["providers"][0]
    );
    assert!(
        bed.ok(&["provider", "show", "fr-par-1"])
            .contains("default offer         EM-A116X-SSD")
    );
    // It is an oned document of our own type, which oneprovision's and OneForm's tools never list.
    let doc = bed.oned.info_text("document", u32::try_from(id).unwrap());
    assert!(
        doc.contains("<TYPE>1200</TYPE>") && doc.contains("<ZONE><![CDATA[fr-par-1]]></ZONE>"),
        "{doc}"
    );

    // A description naming the provider, taking its offer, OS and billing; full YAML.
    let file = bed.dir.path().join("edge.yaml");
    std::fs::write(
        &file,
        "# the provider gives offer, OS and billing\nname: &n edge\nprovider: fr-par-1\ninputs:\n  \
         number_hosts: 2\n  number_public_ips: 1\n  dns: [1.1.1.1, 9.9.9.9]\n  cluster_name: *n\n",
    )
    .unwrap();
    let valid = json_of(&bed.ok(&["validate", path_of(&file), "--json"]));
    assert_eq!(valid["validation"]["valid"], json!(true), "{valid}");
    assert_eq!(
        (
            &valid["validation"]["offer"],
            &valid["validation"]["os"],
            &valid["validation"]["provider"]
        ),
        (&json!("EM-A116X-SSD"), &json!("Ubuntu 24.04"), &json!("fr-par-1"))
    );
    let created = json_of(&bed.ok(&["create", path_of(&file), "--json"]));
    let p = &created["provision"];
    assert_eq!(
        (
            &p["name"],
            &p["phase"],
            &p["provider"],
            &p["zone"],
            &p["hypervisor"],
            &p["opennebula_version"]
        ),
        (
            &json!("edge"),
            &json!("ready"),
            &json!("fr-par-1"),
            &json!("fr-par-1"),
            &json!("kvm"),
            &json!("7.0")
        )
    );
    assert_eq!(p["hosts"].as_array().unwrap().len(), 2);
    assert_eq!(p["public_ips"].as_array().unwrap().len(), 1);
    check_cluster(&bed, "edge", true, 2, 1);
    assert_eq!(json_of(&bed.ok(&["show", "edge", "--json"])), created);
    let listed = json_of(&bed.ok(&["list", "--json"]));
    assert_eq!(
        (&listed["provisions"][0]["name"], &listed["provisions"][0]["hosts"]),
        (&json!("edge"), &json!(2))
    );
    let invalid = bed.dir.path().join("bad.yaml");
    std::fs::write(&invalid, "name: edge\nprovider: nowhere\ninputs:\n  number_hosts: 1\n").unwrap();
    let (code, out, _) = bed.run(&["validate", path_of(&invalid), "--json"]);
    let out = json_of(&out);
    assert_eq!((code, &out["validation"]["valid"]), (1, &json!(false)));
    assert!(
        out["validation"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("line 2: provider \"nowhere\"")
    );

    // A provider in use keeps its zone and stays; its description can change.
    let moved = bed.dir.path().join("moved.yaml");
    let text = std::fs::read_to_string(shipped("fr-par-1")).unwrap();
    std::fs::write(&moved, text.replace("zone: fr-par-1", "zone: nl-ams-1")).unwrap();
    let (code, _, err) = bed.run(&["provider", "update", "fr-par-1", path_of(&moved)]);
    assert!(code == 1 && err.contains("its zone cannot change"), "{err}");
    let renamed = bed.dir.path().join("renamed.yaml");
    std::fs::write(&renamed, text.replace("Scaleway Elastic Metal, fr-par-1", "Paris edge")).unwrap();
    bed.ok(&["provider", "update", "fr-par-1", path_of(&renamed)]);
    assert_eq!(
        json_of(&bed.ok(&["provider", "show", "fr-par-1", "--json"]))["provider"]["description"],
        json!("Paris edge")
    );
    let (code, _, err) = bed.run(&["provider", "delete", "fr-par-1"]);
    assert!(
        code == 1 && err.contains("provision(s) edge use provider fr-par-1"),
        "{err}"
    );

    // configure runs the whole bootstrap again on every host; host configure on one.
    let s = bed.record("edge").unwrap();
    let installs = |ip| {
        bed.hosts
            .host(ip)
            .commands
            .iter()
            .filter(|c| c.join(" ").contains("apt-get install"))
            .count()
    };
    let (a, b) = (s.hosts[0].public_ip.unwrap(), s.hosts[1].public_ip.unwrap());
    assert_eq!((installs(a), installs(b)), (1, 1));
    let out = bed.ok(&["configure", "edge"]);
    assert!(out.starts_with("configured host(s) edge-host1 edge-host2"), "{out}");
    assert_eq!((installs(a), installs(b)), (2, 2));
    bed.ok(&["host", "configure", "edge", "edge-host2"]);
    assert_eq!((installs(a), installs(b)), (2, 3));
    check_cluster(&bed, "edge", true, 2, 1);
    assert!(bed.record("edge").unwrap().hosts.iter().all(|h| h.bootstrapped));

    // Once no provision uses it, the provider goes; deleting it again is done.
    bed.ok(&["delete", "edge"]);
    assert_eq!(
        bed.ok(&["provider", "delete", "fr-par-1"]),
        "provider fr-par-1 deleted\n"
    );
    assert!(bed.ok(&["provider", "delete", "fr-par-1"]).contains("does not exist"));
    assert!(bed.ok(&["provider", "list"]).starts_with("no providers"));
}
