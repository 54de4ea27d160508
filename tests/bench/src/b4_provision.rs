//! Benchmark 4: wall time of `scaleway-provision create` for K hosts
//! against the emulator's fixed OS install delay D. The release binary runs
//! as oneadmin would run it, against the emulator (speed S), onedsim (which
//! runs the release IPAM driver for the public ranges) and the SSH
//! stand-in for the hosts (answers at once, like the provision tests' fake
//! hosts). Servers are ordered and waited for in parallel, so the target is
//! about D whatever K.

use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::cloud::{self, World};
use crate::measure::SYSTEM_PATH;
use crate::shim;
use crate::table::{Row, fmt_ms};
use crate::util::{self, Bins, fixture};

const B: &str = "4 provisioning";

/// The emulator's OS install at speed 1: `to_install` 25 s + `installing` 330 s.
const INSTALL_AT_SPEED_1: f64 = 355.0;

pub fn legend(speed: f64) -> Vec<String> {
    vec![format!(
        "4: wall time of `scaleway-provision create` (release binary; emulator at speed {speed}, onedsim running the \
         release IPAM driver, SSH stand-in answering at once) for K hosts and 1 public IP; baseline D = the \
         emulator's OS install ({INSTALL_AT_SPEED_1} s × {speed}); the other per-server delays (order 5 s, Private \
         Network option 10 s, private network attach 15 s, × {speed}) and the oned/IPAM/bootstrap work come on top, \
         so about D + {:.2} s is the floor for any K; client poll interval = its 2 s default × speed",
        30.0 * speed
    )]
}

pub fn run(bins: &Bins, ks: &[u32], speed: f64) -> Vec<Row> {
    let d = INSTALL_AT_SPEED_1 * speed * 1000.0;
    ks.iter()
        .map(|&k| match create(bins, k, speed) {
            Ok(wall) => Row::new(
                B,
                format!("K={k} hosts: create"),
                fmt_ms(wall),
                format!("D {}", fmt_ms(d)),
            )
            .ratio(wall, d),
            Err(e) => Row::failed(B, &format!("K={k}"), &format!("{e:#}")),
        })
        .collect()
}

fn create(bins: &Bins, k: u32, speed: f64) -> anyhow::Result<f64> {
    let world = World::start(bins, speed, 0)?;
    let dir = &world.dir;
    let desc = dir.join("bench.yaml");
    std::fs::write(
        &desc,
        format!(
            "name: bench\nconnection:\n  zone: {}\ninputs:\n  number_hosts: {k}\n  offer: EM-A116X-SSD\n  \
             os: Ubuntu 24.04\n  number_public_ips: 1\n  dns: 1.1.1.1\n",
            cloud::ZONE
        ),
    )?;
    let key = util::workspace().join("tests/fixtures/provision/oneadmin.pub");
    fixture("provision/oneadmin.pub")?;
    let poll = ((2000.0 * speed).round() as u64).max(5);
    let retry = ((1000.0 * speed).round() as u64).max(5);
    let mut env = cloud::scaleway_env(&world.emu.url());
    env.extend([
        ("PATH".to_owned(), SYSTEM_PATH.to_owned()),
        ("ONE_XMLRPC".into(), world.oned.url()),
        ("ONE_AUTH".into(), dir.join("one_auth").display().to_string()),
        ("ONE_SCALEWAY_STATE_DIR".into(), dir.join("state").display().to_string()),
        ("ONE_SCALEWAY_POLL_MS".into(), poll.to_string()),
        ("ONE_SCALEWAY_RETRY_BASE_MS".into(), retry.to_string()),
        ("ONE_SCALEWAY_WAIT".into(), "120".into()),
        ("ONE_SCALEWAY_INSTALL_WAIT".into(), "300".into()),
        (
            "ONE_SCALEWAY_SSH".into(),
            world.remotes.join("bin").join(shim::SSH).display().to_string(),
        ),
        ("HOME".into(), dir.join("home").display().to_string()),
    ]);
    std::fs::create_dir_all(dir.join("home"))?;
    let mut cmd = Command::new(&bins.provision);
    cmd.env_clear()
        .envs(env)
        .arg("create")
        .arg(&desc)
        .arg("--ssh-key")
        .arg(&key)
        .arg("--vnm")
        .arg(&bins.vnm);
    let ran = util::run(&mut cmd, b"", Duration::from_secs(300)).context("scaleway-provision create")?;
    let ran = ran.check("scaleway-provision create")?;
    let servers = world.emu.state()["counts"]["servers"].as_u64().unwrap_or(0);
    if servers != u64::from(k) {
        anyhow::bail!("{servers} servers at the emulator after create, not {k}");
    }
    Ok(util::ms(ran.elapsed))
}
