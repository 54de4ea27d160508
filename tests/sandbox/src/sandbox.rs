//! The sandbox's pieces and how programs are run in it: the emulator
//! (in-process, network mode with FRR and per-server files), the oned
//! stand-in, the installed programs (`--one-location`), and the hard
//! cleanup that removes everything the sandbox made, by name and PID.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use scaleway_emulator::network::{NetworkOptions, default_state_root};
use scaleway_emulator::{Emulator, Options, Running};
use serde_json::Value;
use test_support::onedsim::{Config, OnedSim};

use crate::ctl::{Ctl, Ran, ip};
use crate::netns::Service;
use crate::vmdoc::VmSpec;

/// The project the emulated account has.
pub const PROJECT: &str = "5a4db0c5-0000-4000-8000-5a4db0c50001";
/// Any UUID is a secret key for the emulator.
pub const SECRET: &str = "5a4db0c5-0000-4000-8000-5ec7e75ec7e7";
pub const ZONE: &str = "fr-par-1";
/// The provision's name (and cluster's).
pub const NAME: &str = "sandbox";
/// The frontend's key the servers get (never used to log in: the hosts
/// are reached through the emulator's ssh alias).
const PUBLIC_KEY: &str = include_str!("../../fixtures/provision/oneadmin.pub");

/// The command line's choices.
#[derive(Debug, Clone)]
pub struct Opts {
    pub one_location: PathBuf,
    pub prefix: String,
    pub speed: f64,
    pub keep: bool,
}

/// The installed programs and the sandbox's own files.
#[derive(Debug, Clone)]
pub struct Paths {
    pub one: PathBuf,
    pub remotes: PathBuf,
    pub provision: PathBuf,
    pub emulator: PathBuf,
    pub work: PathBuf,
    pub ssh: PathBuf,
    pub auth: PathBuf,
    pub key: PathBuf,
    pub description: PathBuf,
    pub state_root: PathBuf,
}

impl Paths {
    pub fn new(opts: &Opts) -> anyhow::Result<Paths> {
        let one = std::path::absolute(&opts.one_location)
            .with_context(|| format!("--one-location {}", opts.one_location.display()))?;
        let remotes = one.join("var/remotes");
        let paths = Paths {
            provision: one.join("bin/scaleway-provision"),
            emulator: one.join("bin/scaleway-emulator"),
            remotes,
            work: std::env::temp_dir().join(format!("one-scaleway-sandbox-{}", std::process::id())),
            ssh: PathBuf::new(),
            auth: PathBuf::new(),
            key: PathBuf::new(),
            description: PathBuf::new(),
            state_root: default_state_root(&opts.prefix),
            one,
        };
        for needed in [
            paths.provision.clone(),
            paths.emulator.clone(),
            paths.remotes.join("ipam/scaleway_fip/register_address_range"),
            paths.remotes.join("vnm/scaleway/pre"),
            paths.remotes.join("vnm/scaleway/clean_host"),
            paths.remotes.join("vnm/scaleway_evpn/scaleway-vnm"),
            paths.one.join("share/scaleway/providers/fr-par-1.yaml"),
        ] {
            if !needed.exists() {
                bail!(
                    "{} is missing: --one-location must be a folder installed by `./install.sh -d DIR` (sandbox.sh does it)",
                    needed.display()
                );
            }
        }
        // Every server has its own /etc and /var/tmp: what they run must be elsewhere.
        for p in [&paths.one, &paths.work] {
            if p.starts_with("/etc") || p.starts_with("/var/tmp") {
                bail!(
                    "{} is under /etc or /var/tmp, which every emulated server has its own of: use another folder (TMPDIR)",
                    p.display()
                );
            }
        }
        Ok(Paths {
            ssh: paths.work.join("scaleway-emulator-ssh"),
            auth: paths.work.join("one_auth"),
            key: paths.work.join("frontend.pub"),
            description: paths.work.join(format!("{NAME}.yaml")),
            ..paths
        })
    }
}

/// A host of the provision, as the record, oned and the emulator show it.
#[derive(Debug, Clone)]
pub struct HostInfo {
    pub name: String,
    pub one_id: i64,
    pub public_ip: Ipv4Addr,
    pub private_ip: Ipv4Addr,
    pub server_id: String,
    pub namespace: String,
}

/// The provisioned cluster.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub cluster_id: i64,
    pub hosts: Vec<HostInfo>,
    pub public_vnet: i64,
    pub private_template: i64,
}

/// A deployed VM.
pub struct VmState {
    pub spec: VmSpec,
    pub ns: String,
    /// Index in `Cluster::hosts` of its current host.
    pub host: usize,
    pub service: Option<Service>,
}

/// Everything the sandbox made (and must remove).
pub struct Sandbox {
    pub opts: Opts,
    pub paths: Paths,
    pub ctl: Ctl,
    pub emu: Option<Running>,
    pub oned: Option<OnedSim>,
    pub cluster: Cluster,
    pub private_vnet: Option<i64>,
    pub vms: Vec<VmState>,
    pub inet_service: Option<Service>,
    /// The VM namespaces this run created (deleted by name).
    pub namespaces: Vec<String>,
    /// FRR daemons the emulator started (checked gone at the end).
    pub frr_pids: Vec<u64>,
    /// What `$ONE_LOCATION/var/scaleway` held before (the drivers' state
    /// files this run adds there are removed at the end).
    state_files: Vec<PathBuf>,
}

/// Every file and folder below `dir`, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

impl Sandbox {
    pub fn new(opts: Opts, ctl: Ctl) -> anyhow::Result<Sandbox> {
        let paths = Paths::new(&opts)?;
        let record = paths.one.join(format!("var/scaleway/provisions/{NAME}.json"));
        if record.exists() {
            bail!(
                "{} exists: this install was used by a sandbox that did not finish; use a fresh install (sandbox.sh makes one)",
                record.display()
            );
        }
        Ok(Sandbox {
            state_files: tree(&paths.one.join("var/scaleway")),
            opts,
            paths,
            ctl,
            emu: None,
            oned: None,
            cluster: Cluster::default(),
            private_vnet: None,
            vms: Vec::new(),
            inet_service: None,
            namespaces: Vec::new(),
            frr_pids: Vec::new(),
        })
    }

    pub fn emu(&self) -> anyhow::Result<&Running> {
        self.emu.as_ref().context("the emulator is not running")
    }

    pub fn oned(&self) -> anyhow::Result<&OnedSim> {
        self.oned.as_ref().context("the oned stand-in is not running")
    }

    pub fn inet(&self) -> String {
        format!("{}-inet", self.opts.prefix)
    }

    /// How often the drivers poll Scaleway: as often, in emulated time, as
    /// they would for real (2 s), at least every 50 ms.
    fn poll_ms(&self) -> String {
        ((2000.0 * self.opts.speed) as u64).clamp(50, 2000).to_string()
    }

    /// The work folder: the ssh alias, oned's credentials, the frontend's
    /// key, the description.
    pub fn prepare(&self) -> anyhow::Result<String> {
        let p = &self.paths;
        std::fs::create_dir_all(p.work.join("home")).with_context(|| format!("cannot create {}", p.work.display()))?;
        std::os::unix::fs::symlink(&p.emulator, &p.ssh).with_context(|| format!("cannot link {}", p.ssh.display()))?;
        std::fs::write(&p.auth, "oneadmin:sandbox\n")?;
        std::fs::write(&p.key, PUBLIC_KEY)?;
        std::fs::write(
            &p.description,
            format!(
                "# the sandbox's edge cluster (see share/scaleway/provisions/edge-cluster.yaml)\nname: {NAME}\n\
                 provider: {ZONE}\ninputs:\n  number_hosts: 2\n  offer: EM-A116X-SSD\n  subscription_period: hourly\n  \
                 os: Ubuntu 24.04\n  number_public_ips: 2\n  dns: 1.1.1.1\n  private_cidr: 172.18.0.0/24\n  \
                 public_ip_cidr: 172.30.0.0/16\n  hypervisor: kvm\n  cluster_name: {NAME}\n"
            ),
        )?;
        Ok(format!("work folder {}", p.work.display()))
    }

    /// The emulator, in-process: network mode, FRR on every server, every
    /// server its own /etc and /var/tmp.
    pub fn start_emulator(&mut self) -> anyhow::Result<String> {
        let running = Emulator::start(Options {
            speed: self.opts.speed,
            project_ids: vec![PROJECT.to_owned()],
            network: Some(NetworkOptions {
                frr: true,
                host_fs: true,
                ..NetworkOptions::with_prefix(&self.opts.prefix)
            }),
            ..Options::default()
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let details = format!(
            "{} (speed {}), internet namespace {}, state root {}",
            running.url(),
            self.opts.speed,
            self.inet(),
            self.paths.state_root.display()
        );
        self.emu = Some(running);
        Ok(details)
    }

    /// The Scaleway settings every frontend-side program gets.
    pub fn scaleway_env(&self) -> anyhow::Result<Vec<(String, String)>> {
        Ok(vec![
            ("SCW_SECRET_KEY".into(), SECRET.into()),
            ("SCW_DEFAULT_PROJECT_ID".into(), PROJECT.into()),
            ("SCW_DEFAULT_ZONE".into(), ZONE.into()),
            ("SCW_API_URL".into(), self.emu()?.url()),
            // Never a real account's credentials.
            (
                "SCW_CONFIG_PATH".into(),
                "/nonexistent/one-scaleway-sandbox/config.yaml".into(),
            ),
            ("ONE_SCALEWAY_POLL_MS".into(), self.poll_ms()),
            ("ONE_SCALEWAY_RETRY_BASE_MS".into(), "50".into()),
            ("ONE_LOCATION".into(), self.paths.one.display().to_string()),
        ])
    }

    /// oned's stand-in, running our installed IPAM and network drivers.
    pub fn start_oned(&mut self) -> anyhow::Result<String> {
        let oned = OnedSim::start(Config {
            ipam_dir: Some(self.paths.remotes.join("ipam")),
            vnm_dir: Some(self.paths.remotes.join("vnm")),
            driver_env: self.scaleway_env()?,
            documents: Vec::new(),
            driver_timeout: Duration::from_secs(120),
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let details = format!(
            "{} (IPAM and vnet drivers from {})",
            oned.url(),
            self.paths.remotes.display()
        );
        self.oned = Some(oned);
        Ok(details)
    }

    /// A frontend program: oned, Scaleway, the hosts through the ssh alias.
    pub fn frontend_command(&self, program: &Path) -> anyhow::Result<Command> {
        let mut cmd = Command::new(program);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("SCW_") || k.starts_with("ONE_") || k.starts_with("SCALEWAY_EMULATOR_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.scaleway_env()?)
            .env("ONE_XMLRPC", self.oned()?.url())
            .env("ONE_AUTH", &self.paths.auth)
            .env("ONE_SCALEWAY_SSH", &self.paths.ssh)
            // The host part of the frontend's actions runs as oneadmin (as under oned).
            .env("ONE_SCALEWAY_SSH_OPTIONS", "-l oneadmin")
            .env("SCALEWAY_EMULATOR_PREFIX", &self.opts.prefix)
            .env("SCALEWAY_EMULATOR_STATE_ROOT", &self.paths.state_root)
            .env("HOME", self.paths.work.join("home"));
        Ok(cmd)
    }

    /// `scaleway-provision ARGS` as the administrator runs it on the frontend.
    pub fn provision(&self, args: &[&str], limit: Duration) -> anyhow::Result<Ran> {
        let mut cmd = self.frontend_command(&self.paths.provision)?;
        cmd.args(args);
        self.ctl.run(&mut cmd, b"", limit)
    }

    /// `ssh root@<host> PROGRAM ARGS` (the emulator's ssh alias), stdin given.
    pub fn on_host(&self, host: &HostInfo, program: &str, args: &[&str], stdin: &[u8]) -> anyhow::Result<Ran> {
        self.on_host_as("root", host, program, args, stdin)
    }

    /// `ssh USER@<host> PROGRAM ARGS`: as that user on the host (the
    /// drivers run as oneadmin, with the sudoers rules the bootstrap installed).
    pub fn on_host_as(
        &self,
        user: &str,
        host: &HostInfo,
        program: &str,
        args: &[&str],
        stdin: &[u8],
    ) -> anyhow::Result<Ran> {
        let mut cmd = Command::new(&self.paths.ssh);
        cmd.env("SCALEWAY_EMULATOR_PREFIX", &self.opts.prefix)
            .env("SCALEWAY_EMULATOR_STATE_ROOT", &self.paths.state_root)
            .args(["-o", "BatchMode=yes", &format!("{user}@{}", host.public_ip), program])
            .args(args);
        self.ctl.run(&mut cmd, stdin, Duration::from_secs(180))
    }

    /// Every Scaleway call the emulator answered, into the log (after a failure).
    pub fn note_emulator_calls(&self) {
        if let Some(emu) = &self.emu {
            let calls: Vec<String> = emu.calls().iter().map(ToString::to_string).collect();
            self.ctl.note(&format!("emulator calls:\n{}", calls.join("\n")));
            let t = std::time::Instant::now();
            let report = emu.network().unwrap_or_default();
            self.ctl
                .note(&format!("emulator network ({:?}):\n{report:#}", t.elapsed()));
        }
    }

    /// The provision's record (`$ONE_LOCATION/var/scaleway/provisions/<name>.json`).
    pub fn record(&self) -> anyhow::Result<Value> {
        let path = self.paths.one.join(format!("var/scaleway/provisions/{NAME}.json"));
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
    }

    /// Removes everything this run made, whatever state it is in: services,
    /// VM namespaces (by name), the oned stand-in, the emulator (which
    /// stops its FRR daemons by PID and deletes its namespaces), the work
    /// folder.
    pub fn hard_cleanup(&mut self) -> Vec<String> {
        let mut done = Vec::new();
        self.inet_service = None;
        for vm in &mut self.vms {
            vm.service = None;
        }
        for ns in std::mem::take(&mut self.namespaces) {
            if crate::netns::namespaces().contains(&ns) {
                match ip(&Ctl::default(), &["netns", "del", &ns]) {
                    Ok(_) => done.push(format!("deleted namespace {ns}")),
                    Err(e) => done.push(format!("cannot delete namespace {ns}: {e:#}")),
                }
            }
        }
        self.vms.clear();
        let t = std::time::Instant::now();
        self.oned = None;
        self.ctl.note(&format!("oned stopped in {:?}", t.elapsed()));
        if let Some(emu) = self.emu.take() {
            emu.stop();
            self.ctl.note(&format!("emulator stopped in {:?}", t.elapsed()));
            done.push("stopped the emulator (its namespaces and FRR daemons are gone)".into());
        }
        if self.paths.work.exists() {
            let _ = std::fs::remove_dir_all(&self.paths.work);
        }
        // The provision's record, the IPAM driver's state: what this run added.
        let added: Vec<PathBuf> = tree(&self.paths.one.join("var/scaleway"))
            .into_iter()
            .filter(|p| !self.state_files.contains(p))
            .collect();
        for p in added.iter().rev() {
            let _ = if p.is_dir() {
                std::fs::remove_dir(p)
            } else {
                std::fs::remove_file(p)
            };
        }
        done
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.hard_cleanup();
    }
}
