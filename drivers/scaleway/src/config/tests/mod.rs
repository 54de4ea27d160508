use super::*;
use std::os::unix::fs::PermissionsExt;

const KEY1: &str = "11111111-1111-4111-8111-111111111111";
const KEY2: &str = "22222222-2222-4222-8222-222222222222";
const PROJECT: &str = "33333333-3333-4333-8333-333333333333";

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k| map.get(k).cloned()
}

fn write_config(dir: &Path, text: &str, mode: u32) -> PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn plain_http_only_to_this_machine() {
    for local in ["127.0.0.1:8080", "127.1.2.3", "[::1]:9000/", "localhost:1", "LOCALHOST"] {
        assert!(is_loopback_authority(local), "{local}");
    }
    for remote in [
        "api.scaleway.com",
        "10.0.0.1:80",
        "127.0.0.1.evil.example",
        "[2001:db8::1]:80",
        "",
    ] {
        assert!(!is_loopback_authority(remote), "{remote}");
    }
}

#[test]
fn environment_alone() {
    let env = env_of(&[
        ("SCW_SECRET_KEY", KEY1),
        ("SCW_DEFAULT_PROJECT_ID", PROJECT),
        ("SCW_DEFAULT_ZONE", "nl-ams-1"),
        ("SCW_API_URL", "http://127.0.0.1:8080/"),
        ("SCW_CONFIG_PATH", "/nonexistent/config.yaml"),
    ]);
    let c = resolve(&env, None).unwrap();
    assert_eq!(c.secret_key.expose(), KEY1);
    assert_eq!(c.project_id.as_deref(), Some(PROJECT));
    assert_eq!(c.zone.as_ref().unwrap().as_str(), "nl-ams-1");
    assert_eq!(c.region.as_ref().unwrap().as_str(), "nl-ams");
    assert_eq!(c.api_url, "http://127.0.0.1:8080");
    assert_eq!(c.secret_source, "environment variable SCW_SECRET_KEY");
}

#[test]
fn file_profiles_and_precedence() {
    let dir = test_support::TempDir::new("scw-config");
    let path = write_config(
        dir.path(),
        &format!(
            "secret_key: {KEY1}\ndefault_zone: fr-par-1\ndefault_project_id: {PROJECT}\nactive_profile: ams\n\
             profiles:\n  ams:\n    default_zone: nl-ams-1\n  waw:\n    secret_key: {KEY2}\n    default_zone: pl-waw-3\n"
        ),
        0o600,
    );
    let p = path.to_str().unwrap();
    // active profile, merged over the root
    let c = resolve(&env_of(&[("SCW_CONFIG_PATH", p)]), None).unwrap();
    assert_eq!((c.secret_key.expose(), c.zone.unwrap().as_str()), (KEY1, "nl-ams-1"));
    assert_eq!(c.profile.as_deref(), Some("ams"));
    // the profile the caller names wins over SCW_PROFILE and active_profile
    let c = resolve(&env_of(&[("SCW_CONFIG_PATH", p), ("SCW_PROFILE", "ams")]), Some("waw")).unwrap();
    assert_eq!((c.secret_key.expose(), c.zone.unwrap().as_str()), (KEY2, "pl-waw-3"));
    assert_eq!(
        c.project_id.as_deref(),
        Some(PROJECT),
        "root fields fill the profile's gaps"
    );
    // environment variables win field by field
    let c = resolve(
        &env_of(&[("SCW_CONFIG_PATH", p), ("SCW_DEFAULT_ZONE", "fr-par-2")]),
        Some("waw"),
    )
    .unwrap();
    assert_eq!((c.secret_key.expose(), c.zone.unwrap().as_str()), (KEY2, "fr-par-2"));
    // an unknown profile is an error
    let err = resolve(&env_of(&[("SCW_CONFIG_PATH", p)]), Some("nope")).unwrap_err();
    assert!(err.0.contains("has no profile \"nope\""), "{err}");
}

#[test]
fn default_path_under_home() {
    let dir = test_support::TempDir::new("scw-home");
    std::fs::create_dir_all(dir.path().join(".config/scw")).unwrap();
    write_config(&dir.path().join(".config/scw"), &format!("secret_key: {KEY1}\n"), 0o600);
    let c = resolve(&env_of(&[("HOME", dir.path().to_str().unwrap())]), None).unwrap();
    assert_eq!(c.secret_key.expose(), KEY1);
    assert!(
        c.secret_source.ends_with(".config/scw/config.yaml"),
        "{}",
        c.secret_source
    );
}

#[test]
fn refuses_a_readable_config_file() {
    let dir = test_support::TempDir::new("scw-mode");
    for mode in [0o644, 0o640, 0o604, 0o620] {
        let path = write_config(dir.path(), &format!("secret_key: {KEY1}\n"), mode);
        let err = resolve(&env_of(&[("SCW_CONFIG_PATH", path.to_str().unwrap())]), None).unwrap_err();
        assert!(err.0.contains("chmod 600"), "{mode:o}: {err}");
        assert!(!err.0.contains(KEY1));
    }
}

#[test]
fn errors_say_what_to_do_and_never_show_the_key() {
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("SCW_CONFIG_PATH", "/nonexistent")],
            "no Scaleway secret key: set SCW_SECRET_KEY",
        ),
        (vec![("SCW_SECRET_KEY", "not-a-uuid-but-secret")], "is not a UUID"),
        (
            vec![("SCW_SECRET_KEY", KEY1), ("SCW_DEFAULT_ZONE", "paris")],
            "not a Scaleway zone",
        ),
        (
            vec![("SCW_SECRET_KEY", KEY1), ("SCW_DEFAULT_PROJECT_ID", "p1")],
            "default_project_id \"p1\"",
        ),
        (
            vec![("SCW_SECRET_KEY", KEY1), ("SCW_API_URL", "ftp://x")],
            "must start with https://",
        ),
        (
            vec![("SCW_SECRET_KEY", KEY1), ("SCW_API_URL", "http://api.scaleway.com")],
            "plain http to another machine",
        ),
        (
            vec![
                ("SCW_SECRET_KEY", KEY1),
                ("SCW_API_URL", "http://127.0.0.1.evil.example:80"),
            ],
            "plain http to another machine",
        ),
        (
            vec![("SCW_SECRET_KEY", KEY1), ("SCW_API_URL", "http://10.0.0.1:8080")],
            "plain http to another machine",
        ),
        (
            vec![("SCW_CONFIG_PATH", "/nonexistent"), ("SCW_PROFILE", "x")],
            "no config file",
        ),
    ];
    for (pairs, expected) in cases {
        let err = resolve(&env_of(&pairs), None).unwrap_err();
        assert!(err.0.contains(expected), "{pairs:?}: {err}");
        assert!(
            !err.0.contains("not-a-uuid-but-secret") && !err.0.contains(KEY1),
            "{err}"
        );
    }
}

#[test]
fn provision_connection_only_when_nothing_else_is_named() {
    let connection = || -> BTreeMap<String, String> {
        [("secret_key", KEY2), ("project_id", PROJECT), ("zone", "nl-ams-1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let env = env_of(&[
        ("SCW_CONFIG_PATH", "/nonexistent"),
        ("SCW_API_URL", "http://127.0.0.1:1"),
    ]);
    let c = resolve_for(
        &env,
        None,
        Some(17),
        Box::new(|id| {
            assert_eq!(id, 17);
            Ok(connection())
        }),
    )
    .unwrap();
    assert_eq!(
        (c.secret_key.expose(), c.zone.unwrap().as_str(), c.api_url.as_str()),
        (KEY2, "nl-ams-1", "http://127.0.0.1:1")
    );
    // a key in the environment wins, and oned is not asked
    let env = env_of(&[("SCW_SECRET_KEY", KEY1), ("SCW_CONFIG_PATH", "/nonexistent")]);
    let c = resolve_for(&env, None, Some(17), Box::new(|_| panic!("not asked"))).unwrap();
    assert_eq!(c.secret_key.expose(), KEY1);
    // oned's failure is reported with the provision
    let env = env_of(&[("SCW_CONFIG_PATH", "/nonexistent")]);
    let err = resolve_for(&env, None, Some(9), Box::new(|_| Err("no such document".into()))).unwrap_err();
    assert_eq!(
        err.0,
        "cannot read the Scaleway credentials of provision 9: no such document"
    );
}

#[test]
fn zones_and_regions() {
    assert_eq!(Zone::new("pl-waw-3").unwrap().region().as_str(), "pl-waw");
    assert!(Zone::new("fr-par").is_err());
    assert!(Zone::new("FR-PAR-1").is_err());
    assert_eq!(Region::new("par1").unwrap().as_str(), "fr-par");
    assert!(Region::new("fr-par-1").is_err());
}
