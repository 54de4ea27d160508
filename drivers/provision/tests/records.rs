//! Provision records kept in a real oned: what a second frontend (another
//! state folder, the same oned) sees and can do, the cache rebuilt when a
//! frontend's file is lost, a record from before oned kept them moved into
//! it, and oned's lock: a command of another frontend refuses this one
//! (until `unlock`), a lock left by a dead command of this frontend is
//! taken over.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{Bed, check_cluster, path_of};
use opennebula::oned::Param::{Bool, Int, Str};

/// The provision records (type 1201) in oned: (id, name, template text).
fn records(bed: &Bed) -> Vec<(i64, String, String)> {
    let pool = bed
        .oned
        .api()
        .call("one.documentpool.info", &[Int(-2), Int(-1), Int(-1), Int(1201)])
        .unwrap();
    let pool = opennebula::xml::parse(pool.as_bytes()).unwrap();
    pool.children_named("DOCUMENT")
        .map(|d| {
            (
                d.child("ID").unwrap().text.parse().unwrap(),
                d.child("NAME").unwrap().text.clone(),
                d.to_xml(),
            )
        })
        .collect()
}

#[test]
#[ignore = "privileged: runs a real oned as oneadmin (sudo .ci/run)"]
fn records_in_oned_serve_every_frontend_and_one_command_at_a_time() {
    let bed = Bed::new("records");
    let file = bed.description("edge", 1, 1);
    bed.ok(&["create", path_of(&file)]);
    let docs = records(&bed);
    assert_eq!(docs.len(), 1, "{docs:?}");
    let (id, name, xml) = docs[0].clone();
    assert_eq!(name, "edge");
    let local = bed.record("edge").unwrap();
    assert!(
        xml.contains(&format!("<PROVISION_ID>{}</PROVISION_ID>", local.id)),
        "{xml}"
    );
    assert!(!xml.contains("<LOCK>"), "unlocked once the command ended: {xml}");
    assert!(!xml.contains("<HOLDER>"), "{xml}");

    // A second frontend: its own state folder, the same oned.
    let other = bed.dir.path().join("frontend2");
    let state2 = other.display().to_string();
    let frontend2 = [("ONE_SCALEWAY_STATE_DIR", state2.as_str())];
    let run2 = |args: &[&str]| {
        let (code, out, err) = bed.run_env(args, &frontend2);
        assert_eq!(code, 0, "{args:?} on frontend 2:\n{err}\n{out}");
        out
    };
    assert!(run2(&["list"]).starts_with("edge  "));
    assert!(run2(&["show", "edge"]).contains(&local.id));
    assert!(run2(&["ip", "add", "edge", "1"]).contains("the public network has 2 public IP(s)"));
    check_cluster(&bed, "edge", true, 1, 2);
    // Frontend 1 sees what frontend 2 did (oned's record, not its stale file).
    assert!(bed.ok(&["show", "edge"]).contains("range 1"));
    bed.ok(&["ip", "add", "edge", "1"]);
    check_cluster(&bed, "edge", true, 1, 3);

    // Frontend 1 loses its file: oned's record serves, and the next command writes the file again.
    std::fs::remove_file(bed.dir.path().join("state/provisions/edge.json")).unwrap();
    assert!(bed.ok(&["list"]).starts_with("edge  "));
    bed.ok(&["host", "add", "edge", "1"]);
    check_cluster(&bed, "edge", true, 2, 3);
    assert_eq!(bed.record("edge").unwrap().hosts.len(), 2);

    // A damaged record (a bad restore, another tool): listed as unreadable, the others still
    // served, and nothing is done over it.
    let damaged = bed
        .oned
        .api()
        .call_id(
            "one.document.allocate",
            &[
                Str("NAME = \"broken\"\nSCALEWAY_PROVISION = \"1\"\nBODY = \"{\"\n".into()),
                Int(1201),
            ],
        )
        .unwrap();
    let listed = bed.ok(&["list"]);
    assert!(
        listed.contains("broken  unreadable:") && listed.contains("edge  "),
        "{listed}"
    );
    let (code, _, err) = bed.run(&["ip", "add", "broken", "1"]);
    assert!(
        code == 1 && err.contains("the record of provision broken in oned does not read"),
        "{err}"
    );
    bed.oned.api().call("one.document.delete", &[Int(damaged)]).unwrap();

    // Another frontend's command holds the lock: refused, saying who and what to do.
    let api = bed.oned.api();
    let holder = format!("other-frontend 4242 {}", now());
    set_holder(&bed, id, &holder);
    api.call("one.document.lock", &[Int(id), Int(3), Bool(true)]).unwrap();
    let (code, _, err) = bed.run(&["ip", "add", "edge", "1"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("provision edge is being operated by a command started at")
            && err.contains("on frontend other-frontend (pid 4242)")
            && err.contains("scaleway-provision unlock edge"),
        "{err}"
    );
    let (code, _, err) = bed.run_env(&["host", "delete", "edge", "edge-host2"], &frontend2);
    assert!(code == 1 && err.contains("other-frontend"), "{err}");
    check_cluster(&bed, "edge", true, 2, 3);
    let out = bed.ok(&["unlock", "edge"]);
    assert!(out.contains("unlocked (it was held by other-frontend 4242"), "{out}");
    assert!(bed.ok(&["unlock", "edge"]).contains("is not locked"));

    // A lock left by a command of this frontend that died is taken over.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    set_holder(&bed, id, &format!("{} 999999999 {}", host.trim(), now()));
    api.call("one.document.lock", &[Int(id), Int(3), Bool(true)]).unwrap();
    bed.ok(&["host", "delete", "edge", "edge-host2"]);
    check_cluster(&bed, "edge", true, 1, 3);

    // A record only a file knows (written before oned kept them) moves into oned at the next command.
    let path = bed.dir.path().join("state/provisions/edge.json");
    let mut copy: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    copy["oned_record"] = serde_json::json!(false);
    std::fs::write(&path, serde_json::to_vec(&copy).unwrap()).unwrap();
    api.call("one.document.delete", &[Int(id)]).unwrap();
    assert!(records(&bed).is_empty());
    assert!(bed.ok(&["list"]).starts_with("edge  "), "the file lists it");
    bed.ok(&["ip", "add", "edge", "1"]);
    assert_eq!(records(&bed).len(), 1);
    check_cluster(&bed, "edge", true, 1, 4);

    // oned loses the record: the copies are stale, refused; adopt puts this frontend's back.
    let id = records(&bed)[0].0;
    api.call("one.document.delete", &[Int(id)]).unwrap();
    let (code, out, err) = bed.run(&["list"]);
    assert!(
        code == 0 && out.starts_with("no provisions") && err.contains("adopt edge"),
        "{out}{err}"
    );
    let (code, _, err) = bed.run(&["ip", "add", "edge", "1"]);
    assert!(code == 1 && err.contains("is not in oned any more"), "{err}");
    assert!(
        bed.ok(&["adopt", "edge"])
            .contains("this frontend's copy is in oned again")
    );
    assert!(bed.ok(&["adopt", "edge"]).contains("is in oned: nothing to adopt"));
    assert!(run2(&["list"]).starts_with("edge  "));

    // Every copy lost: adopt rebuilds the record from the description, oned's hosts and Scaleway's tags,
    // without a new server or flexible IP (the network keeps its 4 ranges, not the description's 1).
    let id = records(&bed)[0].0;
    api.call("one.document.delete", &[Int(id)]).unwrap();
    std::fs::remove_file(bed.dir.path().join("state/provisions/edge.json")).unwrap();
    std::fs::remove_file(other.join("provisions/edge.json")).unwrap();
    let (servers, fips) = (bed.resources("servers").len(), bed.resources("flexible_ips").len());
    let (code, _, err) = bed.run(&["adopt", "edge"]);
    assert!(code == 1 && err.contains("adopt edge FILE"), "{err}");
    let out = bed.ok(&["adopt", "edge", path_of(&file)]);
    assert!(out.contains(&format!("provision edge ({}): ready", local.id)), "{out}");
    assert_eq!(
        (bed.resources("servers").len(), bed.resources("flexible_ips").len()),
        (servers, fips)
    );
    check_cluster(&bed, "edge", true, 1, 4);
    let rebuilt = bed.record("edge").unwrap();
    assert_eq!((rebuilt.id.as_str(), rebuilt.hosts.len()), (local.id.as_str(), 1));
    assert!(rebuilt.hosts[0].bootstrapped && rebuilt.hosts[0].index == 1);

    // Deleting removes the record from oned; the other frontend then has nothing to show.
    bed.ok(&["delete", "edge"]);
    assert!(records(&bed).is_empty());
    assert!(run2(&["list"]).starts_with("no provisions"));
    let (code, _, err) = bed.run(&["show", "edge"]);
    assert!(code == 1 && err.contains("no provision named edge"), "{err}");
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Writes `HOLDER` into the record (as the command holding it does).
fn set_holder(bed: &Bed, id: i64, holder: &str) {
    bed.oned
        .api()
        .call(
            "one.document.update",
            &[Int(id), Str(format!("HOLDER = \"{holder}\"\n")), Int(1)],
        )
        .unwrap();
}
