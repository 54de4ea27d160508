//! The public network against its own tenants, on a real oned: a user who
//! owns a network (a reservation of public addresses) cannot point a range
//! at another flexible IP or address (our install's `VNET_RESTRICTED_ATTR`),
//! and a range an administrator edited to name a flexible IP that is not
//! its own is refused by our IPAM driver with nothing changed at Scaleway.
//!
//! Privileged (oneadmin, the build): run by `sudo .ci/run`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::BTreeMap;

use integration_tests::real::{emulator, start_oned};
use test_support::oned::{RealOned, id_of, ranges as ars};
use test_support::{Ran, require_root};

/// OpenNebula's CLI as user `alice` (her session file in oneadmin's home).
fn as_alice(oned: &RealOned, program: &str, args: &[&str]) -> Ran {
    let path = oned.location.join("bin").join(program).display().to_string();
    let out = oned
        .as_oneadmin(&path, args)
        .env("ONE_AUTH", oned.home().join("alice_auth"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
#[ignore = "privileged: runs a real oned as oneadmin (sudo .ci/run)"]
fn tenants_cannot_repoint_public_ranges() {
    require_root();
    let emu = emulator();
    let oned = start_oned(&emu);
    let range = "AR = [ IPAM_MAD = \"scaleway_fip\", SIZE = \"1\" ]\n";
    let net = oned.create(
        "onevnet",
        &[],
        &format!("NAME = \"edge-public\"\nVN_MAD = \"scaleway\"\nBRIDGE = \"scwpub0\"\n{range}{range}"),
    );
    let v = oned.wait_vnet_ready(net);
    let (a, b) = (ars(&v)[0].clone(), ars(&v)[1].clone());
    let fips = || emu.state()["flexible_ips"].as_array().cloned().unwrap_or_default();
    assert_eq!(fips().len(), 2);

    // alice, a user of group users, with USE on the public network: she
    // reserves an address, so she owns a network of its ranges.
    oned.cli_ok("oneuser", &["create", "alice", "alice-password"]);
    std::fs::write(oned.home().join("alice_auth"), "alice:alice-password\n").unwrap();
    oned.cli_ok("onevnet", &["chmod", &net.to_string(), "604"]);
    let reserved = as_alice(
        &oned,
        "onevnet",
        &["reserve", &net.to_string(), "--name", "mine", "--size", "1"],
    );
    assert_eq!(reserved.code, 0, "{reserved:?}");
    let mine = id_of(reserved.stdout.trim().trim_start_matches("Reservation VNET ID:"));
    let shown = oned.show("onevnet", mine);
    assert_eq!(
        shown.at("UNAME").map(|e| e.text.as_str()),
        Some("alice"),
        "{}",
        shown.to_xml()
    );
    // She may edit what is hers to edit...
    let description = oned.template_file("alice-desc.tmpl", "DESCRIPTION = \"my web front\"\n");
    let ok = as_alice(
        &oned,
        "onevnet",
        &["update", &mine.to_string(), "--append", &description],
    );
    assert_eq!(ok.code, 0, "{ok:?}");
    // ... but not the attributes our drivers trust, on the network or its
    // range: oned keeps their values (it drops a user's edit of a
    // restricted attribute without an error).
    let before = ars(&oned.show("onevnet", mine))[0].clone();
    let attempts = [
        (
            "updatear",
            format!(
                "AR = [ AR_ID = \"0\", SCALEWAY_IP_ID = \"{}\", EXTERNAL_IP = \"{}\" ]\n",
                b["SCALEWAY_IP_ID"], b["EXTERNAL_IP"]
            ),
        ),
        (
            "updatear",
            format!("AR = [ AR_ID = \"0\", GATEWAY = \"{}\" ]\n", b["IP"]),
        ),
        ("update", format!("EXTERNAL_IP = \"{}\"\n", b["EXTERNAL_IP"])),
        ("update", "SCALEWAY_PROFILE = \"someone-else\"\n".to_owned()),
    ];
    for (i, (command, template)) in attempts.iter().enumerate() {
        let file = oned.template_file(&format!("alice-{i}.tmpl"), template);
        let mine_s = mine.to_string();
        let how = if *command == "updatear" { "0" } else { "--append" };
        let ran = as_alice(&oned, "onevnet", &[command, &mine_s, how, &file]);
        let shown = oned.show("onevnet", mine);
        let now = &ars(&shown)[0];
        for attr in ["SCALEWAY_IP_ID", "EXTERNAL_IP", "GATEWAY", "IP"] {
            assert_eq!(
                now.get(attr),
                before.get(attr),
                "{command} {template}: {attr} changed: {ran:?}"
            );
        }
        for attr in ["EXTERNAL_IP", "SCALEWAY_PROFILE"] {
            assert!(
                shown.at(&format!("TEMPLATE/{attr}")).is_none(),
                "{command} {template}: the network got {attr}: {}",
                shown.to_xml()
            );
        }
    }
    // Without our install's restrictions, the same edit would have gone through:
    // the check above can fail (an administrator's edit shows it).
    let probe = oned.template_file("admin-probe.tmpl", &attempts[1].1);
    oned.cli_ok("onevnet", &["updatear", &mine.to_string(), "0", &probe]);
    assert_eq!(ars(&oned.show("onevnet", mine))[0].get("GATEWAY"), Some(&b["IP"]));
    assert_eq!(as_alice(&oned, "onevnet", &["delete", &mine.to_string()]).code, 0);

    // An administrator's edit that points range 0 at range 1's flexible IP:
    // removing range 0 is refused, and nothing changes at Scaleway.
    // Range 0's SCALEWAY_IP_ID and EXTERNAL_IP made those of `range`.
    let point_range_0_at = |range: &BTreeMap<String, String>, name: &str| {
        let file = oned.template_file(
            name,
            &format!(
                "AR = [ AR_ID = \"0\", SCALEWAY_IP_ID = \"{}\", EXTERNAL_IP = \"{}\" ]\n",
                range["SCALEWAY_IP_ID"], range["EXTERNAL_IP"]
            ),
        );
        oned.cli_ok("onevnet", &["updatear", &net.to_string(), "0", &file]);
    };
    point_range_0_at(&b, "admin-edit.tmpl");
    let refused = oned.cli("onevnet", &["rmar", &net.to_string(), "0"]);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(
        (refused.stdout.clone() + &refused.stderr).contains("refusing to release it"),
        "{refused:?}\n{}",
        oned.log_tail(20)
    );
    assert_eq!(fips().len(), 2, "both flexible IPs are still there");
    assert_eq!(ars(&oned.show("onevnet", net)).len(), 2, "the range is still there");
    // Put back: the range goes, with its own flexible IP.
    point_range_0_at(&a, "admin-restore.tmpl");
    oned.cli_ok("onevnet", &["rmar", &net.to_string(), "0"]);
    let left: Vec<String> = fips().iter().map(|f| f["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(left, [b["SCALEWAY_IP_ID"].clone()]);
}
