//! The sandbox's pieces and how programs are run in it: the emulator
//! (in-process, network mode with FRR and per-server files), a real oned
//! (OpenNebula built from source, our build installed into it with
//! `install.sh -d`, run as oneadmin), the "libvirtd" that plugs the VMs, and
//! the hard cleanup that removes everything the sandbox made, by name and
//! PID.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use opennebula::xml::Element;
use scaleway_emulator::network::{NetworkOptions, default_state_root};
use scaleway_emulator::{Emulator, Options, Running};
use serde_json::Value;
use test_support::oned::{ONEADMIN, Options as OnedOptions, RealOned};

use crate::ctl::{Ctl, Ran, ip};
use crate::libvirt::Libvirt;
use crate::netns::Service;

/// The project the emulated account has.
pub const PROJECT: &str = "5a4db0c5-0000-4000-8000-5a4db0c50001";
/// Any UUID is a secret key for the emulator.
pub const SECRET: &str = "5a4db0c5-0000-4000-8000-5ec7e75ec7e7";
pub const ZONE: &str = "fr-par-1";
/// The provision's name (and cluster's).
pub const NAME: &str = "sandbox";
/// The frontend's key the servers get (the hosts are reached through the
/// emulator's ssh alias, which needs no key).
const PUBLIC_KEY: &str = include_str!("../../fixtures/provision/oneadmin.pub");

/// The command line's choices.
#[derive(Debug, Clone)]
pub struct Opts {
    /// The build: our binaries and the test ones (`one-scaleway-test-vmm`).
    pub bindir: PathBuf,
    pub prefix: String,
    pub speed: f64,
    pub keep: bool,
    /// Part 7: deploy and terminate timed at Scaleway's own speed.
    pub timing: bool,
    /// The hosts' hypervisor: `kvm`, or `lxc` (OpenNebula's LXC path: no
    /// live migration; a VM is replaced on the other host).
    pub hypervisor: Hypervisor,
}

/// The hosts' hypervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Hypervisor {
    Kvm,
    Lxc,
}

impl Hypervisor {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Lxc => "lxc",
        }
    }
}

/// The sandbox's own files.
#[derive(Debug, Clone)]
pub struct Paths {
    pub bindir: PathBuf,
    pub work: PathBuf,
    pub key: PathBuf,
    pub description: PathBuf,
    pub socket: PathBuf,
    /// The emulator's ssh alias (a link named `scaleway-emulator-ssh`).
    pub ssh: PathBuf,
    pub state_root: PathBuf,
}

impl Paths {
    pub fn new(opts: &Opts) -> anyhow::Result<Paths> {
        let bindir =
            std::path::absolute(&opts.bindir).with_context(|| format!("--bindir {}", opts.bindir.display()))?;
        for needed in [
            "scaleway-provision",
            "scaleway-ipam",
            "scaleway-vnm",
            "scaleway-emulator",
            "one-scaleway-test-vmm",
        ] {
            if !bindir.join(needed).is_file() {
                bail!(
                    "{} is missing: --bindir must be the build's folder (target/release; sandbox.sh builds it)",
                    bindir.join(needed).display()
                );
            }
        }
        let work = std::env::temp_dir().join(format!("one-scaleway-sandbox-{}", std::process::id()));
        // Every server has its own /etc, /var/lib, /var/tmp and /run: what they run must be elsewhere.
        for p in [&bindir, &work] {
            if ["/etc", "/var/lib", "/var/tmp", "/run"]
                .iter()
                .any(|d| p.starts_with(d))
            {
                bail!(
                    "{} is under /etc, /var/lib, /var/tmp or /run, which every emulated server has its own of: use \
                     another folder (TMPDIR)",
                    p.display()
                );
            }
        }
        Ok(Paths {
            key: work.join("frontend.pub"),
            description: work.join(format!("{NAME}.yaml")),
            socket: work.join("libvirt.sock"),
            ssh: work.join("scaleway-emulator-ssh"),
            state_root: default_state_root(&opts.prefix),
            bindir,
            work,
        })
    }
}

/// A host of the provision, as the record, oned and the emulator show it.
#[derive(Debug, Clone)]
pub struct HostInfo {
    pub name: String,
    pub one_id: u32,
    pub public_ip: Ipv4Addr,
    pub private_ip: Ipv4Addr,
    pub server_id: String,
    pub namespace: String,
}

/// The provisioned cluster.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub cluster_id: u32,
    pub hosts: Vec<HostInfo>,
    pub public_vnet: u32,
    pub private_template: u32,
    pub system_ds: u32,
}

/// A running VM, as oned shows it.
pub struct VmState {
    pub id: u32,
    pub name: String,
    pub ns: String,
    /// Index in `Cluster::hosts` of its current host.
    pub host: usize,
    pub public_ip: Ipv4Addr,
    pub external_ip: Ipv4Addr,
    pub private_ip: Ipv4Addr,
    pub service: Option<Service>,
}

/// Everything the sandbox made (and must remove).
pub struct Sandbox {
    pub opts: Opts,
    pub paths: Paths,
    pub ctl: Ctl,
    pub emu: Option<Running>,
    pub oned: Option<RealOned>,
    pub libvirt: Option<Libvirt>,
    pub cluster: Cluster,
    pub private_vnet: Option<u32>,
    pub vms: Vec<VmState>,
    pub inet_service: Option<Service>,
    /// FRR daemons the emulator started (checked gone at the end).
    pub frr_pids: Vec<u64>,
}

fn run_ok(ctl: &Ctl, program: &str, args: &[&str]) -> anyhow::Result<String> {
    ctl.run_ok(Command::new(program).args(args), b"", Duration::from_secs(30))
}

impl Sandbox {
    pub fn new(opts: Opts, ctl: Ctl) -> anyhow::Result<Sandbox> {
        let paths = Paths::new(&opts)?;
        Ok(Sandbox {
            opts,
            paths,
            ctl,
            emu: None,
            oned: None,
            libvirt: None,
            cluster: Cluster::default(),
            private_vnet: None,
            vms: Vec::new(),
            inet_service: None,
            frr_pids: Vec::new(),
        })
    }

    pub fn emu(&self) -> anyhow::Result<&Running> {
        self.emu.as_ref().context("the emulator is not running")
    }

    pub fn oned(&self) -> anyhow::Result<&RealOned> {
        self.oned.as_ref().context("oned is not running")
    }

    pub fn inet(&self) -> String {
        format!("{}-inet", self.opts.prefix)
    }

    /// How often the drivers poll Scaleway: as often, in emulated time, as
    /// they would for real (2 s), at least every 50 ms.
    pub fn poll_ms(&self) -> String {
        ((2000.0 * self.opts.speed) as u64).clamp(50, 2000).to_string()
    }

    /// The work folder (oneadmin reads the key and the description there,
    /// and reaches libvirtd's socket).
    pub fn prepare(&self) -> anyhow::Result<String> {
        let p = &self.paths;
        std::fs::create_dir_all(&p.work).with_context(|| format!("cannot create {}", p.work.display()))?;
        note_made(&self.opts.prefix, "work", &p.work);
        let work = p.work.display().to_string();
        run_ok(&self.ctl, "chmod", &["0755", &work])?;
        std::os::unix::fs::symlink(p.bindir.join("scaleway-emulator"), &p.ssh)
            .with_context(|| format!("cannot link {}", p.ssh.display()))?;
        std::fs::write(&p.key, PUBLIC_KEY)?;
        std::fs::write(
            &p.description,
            format!(
                "# the sandbox's edge cluster (see share/scaleway/provisions/edge-cluster.yaml); offer, OS and\n\
                 # billing are the provider's defaults\nname: &name {NAME}\ndescription: |\n  The sandbox's edge cluster,\n  \
                 on the emulated Scaleway.\nprovider: {ZONE}\ninputs:\n  number_hosts: 2\n  number_public_ips: 2\n  \
                 dns: [1.1.1.1]\n  private_cidr: 172.18.0.0/24\n  public_ip_cidr: 172.30.0.0/16\n  hypervisor: {hv}\n  \
                 cluster_name: *name\n  opennebula_version: \"7.0\"\n",
                hv = self.opts.hypervisor.as_str()
            ),
        )?;
        Ok(format!("work folder {work}"))
    }

    /// The emulator, in-process: network mode, FRR on every server, every
    /// server its own files.
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

    /// A real oned: OpenNebula's stock configuration as our `install.sh -d`
    /// edits it, our build installed, the `kvm` drivers pointed at the test
    /// hypervisor (libvirtd here), `ssh` the emulator's alias (setuid, for
    /// oneadmin), Scaleway credentials in oneadmin's config file.
    pub fn start_oned(&mut self) -> anyhow::Result<String> {
        let bin = &self.paths.bindir;
        let options = OnedOptions {
            bindir: bin.clone(),
            env: vec![
                ("SCALEWAY_EMULATOR_PREFIX".into(), self.opts.prefix.clone()),
                (
                    "SCALEWAY_EMULATOR_STATE_ROOT".into(),
                    self.paths.state_root.display().to_string(),
                ),
                ("ONE_SCALEWAY_POLL_MS".into(), self.poll_ms()),
                ("ONE_SCALEWAY_RETRY_BASE_MS".into(), "50".into()),
                (
                    "ONE_SCALEWAY_TEST_LIBVIRT".into(),
                    self.paths.socket.display().to_string(),
                ),
            ],
            test_vmm: Some(bin.join("one-scaleway-test-vmm")),
            kvm_is_test_vmm: true,
            emulator_ssh: Some(bin.join("scaleway-emulator")),
            ..OnedOptions::default()
        };
        // The harness panics with what went wrong (it is test code).
        let oned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| RealOned::start(&options)))
            .map_err(|_| anyhow::anyhow!("oned did not start (above: why)"))?;
        if let Some(dir) = oned.location.parent() {
            note_made(&self.opts.prefix, "oned", dir);
        }
        let url = self.emu()?.url();
        oned.write_scaleway_config(&format!(
            "secret_key: {SECRET}\ndefault_project_id: {PROJECT}\ndefault_zone: {ZONE}\napi_url: {url}\n"
        ));
        let details = format!(
            "{} as {ONEADMIN}, ONE_LOCATION {} (our build installed with install.sh -d)",
            oned.xmlrpc,
            oned.location.display()
        );
        let libvirt = Libvirt::start(
            &self.paths.socket,
            ONEADMIN,
            self.ctl.clone(),
            &self.opts.prefix,
            oned.api(),
        )?;
        self.oned = Some(oned);
        self.libvirt = Some(libvirt);
        Ok(format!(
            "{details}\nlibvirtd (the test hypervisor's plumbing) on {}",
            self.paths.socket.display()
        ))
    }

    /// `PROGRAM ARGS` as oneadmin on the frontend, with oned's environment
    /// (OpenNebula's CLI, `scaleway-provision`), within `limit`.
    pub fn as_oneadmin(&self, program: &str, args: &[&str], limit: Duration) -> anyhow::Result<Ran> {
        let oned = self.oned()?;
        let path = if program.contains('/') {
            program.to_owned()
        } else {
            oned.location.join("bin").join(program).display().to_string()
        };
        let mut cmd = oned.as_oneadmin(&path, args);
        self.ctl.run(&mut cmd, b"", limit)
    }

    /// [`Sandbox::as_oneadmin`] that must succeed; its stdout.
    pub fn one(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let ran = self.as_oneadmin(program, args, Duration::from_secs(120))?;
        if !ran.ok() {
            bail!("{program} {} failed: {}", args.join(" "), ran.complaint());
        }
        Ok(ran.stdout)
    }

    /// `<program> show ID --xml`, parsed.
    pub fn show(&self, program: &str, id: u32) -> anyhow::Result<Element> {
        let text = self.one(program, &["show", &id.to_string(), "--xml"])?;
        opennebula::xml::parse(text.as_bytes()).map_err(|e| anyhow::anyhow!("{program} show {id}: {e}"))
    }

    /// `scaleway-provision ARGS` as the administrator runs it: oneadmin on the frontend.
    pub fn provision(&self, args: &[&str], limit: Duration) -> anyhow::Result<Ran> {
        self.as_oneadmin("scaleway-provision", args, limit)
    }

    /// `ssh root@<host> PROGRAM ARGS` (the emulator's ssh alias), stdin given.
    pub fn on_host(&self, host: &HostInfo, program: &str, args: &[&str], stdin: &[u8]) -> anyhow::Result<Ran> {
        self.on_host_as("root", host, program, args, stdin)
    }

    /// `ssh USER@<host> -- PROGRAM ARGS`: as that user on the host (the
    /// words quoted for its login shell, as `opennebula::ssh` quotes them).
    pub fn on_host_as(
        &self,
        user: &str,
        host: &HostInfo,
        program: &str,
        args: &[&str],
        stdin: &[u8],
    ) -> anyhow::Result<Ran> {
        let env = opennebula::driver::Env::from_pairs([("ONE_SCALEWAY_SSH", self.paths.ssh.display().to_string())]);
        let ssh =
            opennebula::ssh::Ssh::from_env(&env, Some(user), Duration::from_secs(180)).map_err(anyhow::Error::msg)?;
        let words: Vec<&str> = std::iter::once(program).chain(args.iter().copied()).collect();
        let mut cmd = ssh
            .command(&host.public_ip.to_string(), &[], &words)
            .map_err(anyhow::Error::msg)?;
        cmd.env("SCALEWAY_EMULATOR_PREFIX", &self.opts.prefix)
            .env("SCALEWAY_EMULATOR_STATE_ROOT", &self.paths.state_root);
        self.ctl.run(&mut cmd, stdin, Duration::from_secs(180))
    }

    /// Every Scaleway call the emulator answered, into the log (after a failure).
    pub fn note_emulator_calls(&self) {
        if let Some(emu) = &self.emu {
            let calls: Vec<String> = emu.calls().iter().map(ToString::to_string).collect();
            self.ctl.note(&format!("emulator calls:\n{}", calls.join("\n")));
            let report = emu.network().unwrap_or_default();
            self.ctl.note(&format!("emulator network:\n{report:#}"));
        }
        if let Some(oned) = &self.oned {
            self.ctl.note(&format!("oned.log (end):\n{}", oned.log_tail(80)));
        }
    }

    /// The provision's record (`$ONE_LOCATION/var/scaleway/provisions/<name>.json`).
    pub fn record(&self) -> anyhow::Result<Value> {
        let path = self
            .oned()?
            .location
            .join(format!("var/scaleway/provisions/{NAME}.json"));
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
    }

    /// Removes everything this run made, whatever state it is in: services,
    /// VM namespaces (by name), oned and everything it started (by PID),
    /// the emulator (which stops its FRR daemons by PID and deletes its
    /// namespaces), the work folder.
    pub fn hard_cleanup(&mut self) -> Vec<String> {
        let mut done = Vec::new();
        self.inet_service = None;
        for vm in &mut self.vms {
            vm.service = None;
        }
        self.vms.clear();
        if let Some(oned) = self.oned.take() {
            drop(oned);
            done.push("stopped oned and every process it started".into());
        }
        if let Some(libvirt) = self.libvirt.take() {
            for ns in libvirt.namespaces() {
                match ip(&Ctl::default(), &["netns", "del", &ns]) {
                    Ok(_) => done.push(format!("deleted namespace {ns}")),
                    Err(e) => done.push(format!("cannot delete namespace {ns}: {e:#}")),
                }
                libvirt.forget(&ns);
            }
        }
        if let Some(emu) = self.emu.take() {
            emu.stop();
            done.push("stopped the emulator (its namespaces and FRR daemons are gone)".into());
        }
        if self.paths.work.exists() {
            let _ = std::fs::remove_dir_all(&self.paths.work);
        }
        let _ = std::fs::remove_file(marker(&self.opts.prefix));
        done
    }
}

/// Where a running sandbox notes the folders it made (`work DIR`, `oned
/// DIR` lines), so that `--cleanup` finds them after a kill.
pub fn marker(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("one-scaleway-sandbox-{prefix}.run"))
}

fn note_made(prefix: &str, kind: &str, dir: &std::path::Path) {
    use std::io::Write as _;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(marker(prefix))
    {
        let _ = writeln!(f, "{kind} {}", dir.display());
    }
}

/// `--cleanup`: what a killed sandbox noted: oned and every process whose
/// environment names its `ONE_LOCATION` (by PID), its folders.
pub fn cleanup_made(prefix: &str) -> Vec<String> {
    let mut done = Vec::new();
    let text = std::fs::read_to_string(marker(prefix)).unwrap_or_default();
    for line in text.lines() {
        let Some((kind, dir)) = line.split_once(' ') else {
            continue;
        };
        let dir = PathBuf::from(dir);
        if kind == "oned" {
            let wanted = format!("ONE_LOCATION={}", dir.join("one").display());
            for signal in [nix::sys::signal::Signal::SIGTERM, nix::sys::signal::Signal::SIGKILL] {
                for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
                    if environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes())
                        && let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<i32>().ok())
                    {
                        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
                        done.push(format!("signalled process {pid} ({signal})"));
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        if dir.starts_with(std::env::temp_dir()) && std::fs::remove_dir_all(&dir).is_ok() {
            done.push(format!("deleted {}", dir.display()));
        }
    }
    let _ = std::fs::remove_file(marker(prefix));
    done
}

/// The id an OpenNebula `create` or `instantiate` prints.
pub fn id_of(printed: &str) -> anyhow::Result<u32> {
    let words: Vec<&str> = printed.split_whitespace().collect();
    words
        .last()
        .and_then(|w| w.parse().ok())
        .with_context(|| format!("no id in {printed:?}"))
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.hard_cleanup();
    }
}
