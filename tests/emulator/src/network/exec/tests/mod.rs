use super::*;

fn os(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

#[test]
fn ssh_lines() {
    let l = parse_ssh(&os(&[
        "-o",
        "BatchMode=yes",
        "-oConnectTimeout=15",
        "-qT",
        "-p",
        "22",
        "oneadmin@62.210.158.2",
        "/var/tmp/one/x",
        "a b",
    ]))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l.host, "62.210.158.2");
    assert_eq!(l.user.as_deref(), Some("oneadmin"));
    assert_eq!(l.command, os(&["/var/tmp/one/x", "a b"]));
    assert!(!l.null_stdin);
    let l = parse_ssh(&os(&["-n", "--", "h", "ls"])).unwrap_or_else(|e| panic!("{e}"));
    assert!(l.null_stdin && l.host == "h");
    // As OpenSSH: options and `--` after the host too (scaleway-provision
    // runs `ssh ... root@HOST -- COMMAND`); after `--`, words are the command.
    let l = parse_ssh(&os(&["-o", "BatchMode=yes", "root@h", "--", "true"])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((l.host.as_str(), l.command), ("h", os(&["true"])));
    let l = parse_ssh(&os(&["h", "-p", "22", "-n", "ls", "-l"])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((l.null_stdin, l.command), (true, os(&["ls", "-l"])));
    let l = parse_ssh(&os(&["--", "h", "--", "x"])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l.command, os(&["--", "x"]));
    assert!(parse_ssh(&os(&["h", "--"])).is_err(), "no command");
    assert!(parse_ssh(&os(&["-Z", "h", "ls"])).is_err());
    assert!(parse_ssh(&os(&["h"])).is_err(), "no command");
    assert!(parse_ssh(&os(&["-o"])).is_err());
    let l = parse_ssh(&os(&["-l", "ubuntu", "h", "ls"])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((l.user.as_deref(), l.host.as_str()), (Some("ubuntu"), "h"));
    let l = parse_ssh(&os(&["-lroot", "h", "ls"])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l.user.as_deref(), Some("root"));
    assert_eq!(parse_ssh(&os(&["h", "ls"])).map(|l| l.user), Ok(None));
    assert!(parse_ssh(&os(&["a;b@h", "ls"])).is_err(), "not a user name");
    assert!(parse_ssh(&os(&[])).is_err());
}

#[test]
fn our_names() {
    assert!(is_ours("scw", "scw-inet") && is_ours("scw", "scw-0a1b2c3d") && is_ours("scw", "scw-pn-0a1b2c3d"));
    for other in [
        "scw-gw-0a1b2c3d",
        "scw-0a1b2c3",
        "scwx-inet",
        "scw1-inet",
        "scw-0A1B2C3D",
        "oscw-inet",
        "scw-pn-x",
    ] {
        assert!(!is_ours("scw", other), "{other}");
    }
}

#[test]
fn resolving_targets() {
    let dir = std::env::temp_dir().join(format!("scw-emu-exec-{}", std::process::id()));
    let id = "0a1b2c3d-0000-4000-8000-000000000001";
    std::fs::create_dir_all(dir.join(id)).unwrap_or_else(|e| panic!("{e}"));
    let index = serde_json::json!({"servers": [{"server_id": id, "name": "h1", "namespace": "t-0a1b2c3d", "ipv4": "62.210.158.2", "ipv6": "2001:bc8::2"}]});
    std::fs::write(dir.join(INDEX_FILE), index.to_string()).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.join(id).join("env"),
        "# settings\nONE_SCALEWAY_SUDO=never\nbad line\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for target in ["62.210.158.2", id, "h1", "2001:bc8::2"] {
        let p = resolve("t", &dir, target).unwrap_or_else(|e| panic!("{target}: {e}"));
        assert_eq!(p.namespace, "t-0a1b2c3d");
        assert!(p.env.contains(&(
            "ONE_SCALEWAY_STATE_DIR".to_string(),
            dir.join(id).join("state").display().to_string()
        )));
        assert!(p.env.contains(&("ONE_SCALEWAY_SUDO".to_string(), "never".to_string())));
    }
    assert_eq!(
        resolve("t", &dir, "internet").map(|p| p.namespace),
        Ok("t-inet".to_string())
    );
    assert!(resolve("t", &dir, "62.210.158.3").is_err());
    assert!(resolve("t", &dir.join("nope"), "h1").is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
