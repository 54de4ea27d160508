//! `scaleway-provision`: an edge cluster's whole lifecycle on Scaleway
//! (VPC, private network, public gateway, SSH keys, Elastic Metal servers),
//! the hosts' bootstrap over SSH, and the OpenNebula objects registered for
//! it through oned's XML-RPC API.
//!
//! Commands: `validate`, `create [--dry-run]`, `show`, `list`, `host add`,
//! `host delete`, `ip add`, `ip delete`, `delete`, and `opennebula-config`
//! (registers our drivers in OpenNebula's configuration; what `install.sh`
//! runs). The flow of each: read the description or the provision's record
//! (`state`), check at Scaleway (`check`), then the steps of `ops`, each
//! recorded as soon as it is done.

pub mod bootstrap;
pub mod check;
pub mod cloud;
pub mod description;
pub mod one;
pub mod oneconf;
pub mod ops;
pub mod plan;
pub mod progress;
pub mod remote;
pub mod state;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use opennebula::cli::parse_args;
use opennebula::driver::{EXIT_FAILURE, Env, Io};

use crate::bootstrap::Phase as BootPhase;
use crate::ops::{BootstrapOptions, Ctx};
use crate::state::{ProvisionState, Store};

const PROGRAM: &str = "scaleway-provision";

/// Creates, grows, shrinks and deletes OpenNebula edge clusters on Scaleway Elastic Metal.
#[derive(Debug, Parser)]
#[command(name = PROGRAM, version, after_help = "\
Environment: the SCW_* variables or ~/.config/scw/config.yaml (Scaleway credentials), ONE_XMLRPC and \
ONE_AUTH (oned), ONE_SCALEWAY_STATE_DIR (where provisions are recorded), ONE_SCALEWAY_SSH and \
ONE_SCALEWAY_SSH_OPTIONS (how hosts are reached), ONE_SCALEWAY_WAIT and ONE_SCALEWAY_INSTALL_WAIT (seconds).")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct HostAccess {
    /// A public key for the servers and oneadmin (repeatable; default: ~/.ssh/*.pub).
    #[arg(long = "ssh-key", value_name = "FILE")]
    ssh_keys: Vec<PathBuf>,
    /// The user SSH logs in as on the servers.
    #[arg(long, default_value = "ubuntu")]
    ssh_user: String,
    /// Bootstrap phases to skip, comma-separated: packages, access, services, network, evpn.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// The scaleway-vnm binary the hosts get (default: the installed one).
    #[arg(long)]
    vnm: Option<PathBuf>,
    /// OpenNebula version of the hosts' package repository.
    #[arg(long, default_value = "7.0")]
    opennebula_version: String,
}

#[derive(Debug, Subcommand)]
enum HostCommand {
    /// Adds N hosts (servers, bootstrap, OpenNebula hosts; the others learn about them).
    Add {
        name: String,
        count: u32,
        #[command(flatten)]
        access: HostAccess,
    },
    /// Deletes hosts (OpenNebula host ids, names, or <provision>-hostN), their servers included.
    Delete {
        name: String,
        #[arg(required = true)]
        hosts: Vec<String>,
        /// Even if VMs run on them.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        access: HostAccess,
    },
}

#[derive(Debug, Subcommand)]
enum IpCommand {
    /// Adds N public IPs (address ranges of the public network).
    Add { name: String, count: u32 },
    /// Deletes public address ranges by id (their flexible IPs are released).
    Delete {
        name: String,
        #[arg(required = true)]
        ranges: Vec<i64>,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a provision description: its syntax and values, then the offer, stock and OS at Scaleway.
    Validate {
        /// The provision description (YAML).
        file: PathBuf,
        /// Where provider files are (default: the installed ones).
        #[arg(long)]
        providers: Option<PathBuf>,
    },
    /// Create the cluster of a description (again after an interruption: continues it).
    Create {
        file: PathBuf,
        #[arg(long)]
        providers: Option<PathBuf>,
        /// Print the plan (resources, OpenNebula templates, host bootstrap) and change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        access: HostAccess,
    },
    /// Show a provision: its resources, hosts, OpenNebula objects and public IPs.
    Show { name: String },
    /// List the provisions of this frontend.
    List,
    /// Add or delete hosts.
    Host {
        #[command(subcommand)]
        command: HostCommand,
    },
    /// Add or delete public IPs.
    Ip {
        #[command(subcommand)]
        command: IpCommand,
    },
    /// Delete a provision: OpenNebula objects, then every Scaleway resource; checks nothing is left.
    Delete {
        name: String,
        /// Even if VMs run on its hosts.
        #[arg(long)]
        force: bool,
    },
    /// Register the scaleway drivers in oned.conf and vmm_execrc (prints the changes; --write applies them).
    #[command(name = "opennebula-config")]
    OpennebulaConfig {
        /// oned.conf to edit.
        #[arg(long, default_value = "/etc/one/oned.conf")]
        oned_conf: PathBuf,
        /// vmm_execrc to edit.
        #[arg(long, default_value = "/etc/one/vmm_exec/vmm_execrc")]
        vmm_execrc: PathBuf,
        /// Write the files (after a backup) instead of printing the changes.
        #[arg(long)]
        write: bool,
        /// Remove our registration instead of adding it.
        #[arg(long)]
        remove: bool,
    },
}

/// Replaces `path` with `text` atomically, keeping its mode and owner,
/// after saving the old content as `<path>.one-scaleway.bak` (same mode
/// and owner: `oned.conf` holds the database password, and neither file is
/// ever readable by anyone else, even briefly).
fn replace_file(path: &Path, text: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let backup = PathBuf::from(format!("{}.one-scaleway.bak", path.display()));
    let meta = std::fs::metadata(path)?;
    let mode = meta.permissions().mode() & 0o7777;
    let owner = Some((meta.uid(), meta.gid()));
    opennebula::fsutil::write_atomic_as(&backup, &std::fs::read(path)?, mode, owner)?;
    opennebula::fsutil::write_atomic_as(path, text.as_bytes(), mode, owner)?;
    Ok(backup)
}

fn opennebula_config(oned: &Path, rc: &Path, write: bool, remove: bool, io: &mut Io<'_>) -> Result<(), String> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let edits = [
        (oned, oneconf::edit_oned_conf(&read(oned)?, !remove)?),
        (rc, oneconf::edit_vmm_execrc(&read(rc)?, !remove)?),
    ];
    let mut any = false;
    for (path, edit) in &edits {
        for change in &edit.changes {
            any = true;
            let _ = writeln!(io.stdout, "{}: {change}", path.display());
        }
        if write && !edit.changes.is_empty() {
            let backup = replace_file(path, &edit.text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            let _ = writeln!(
                io.stdout,
                "{}: written (the previous version is in {})",
                path.display(),
                backup.display()
            );
        }
    }
    if !any {
        let _ = writeln!(io.stdout, "nothing to change");
    } else if !write {
        let _ = writeln!(io.stdout, "(not written: run again with --write to apply)");
    } else {
        let _ = writeln!(
            io.stdout,
            "restart OpenNebula (systemctl restart opennebula) for oned to read it"
        );
    }
    Ok(())
}

/// Where the installed provider files are: `$ONE_LOCATION/share/scaleway/providers`,
/// else `/usr/share/one/scaleway/providers`.
fn default_providers(env: &Env) -> PathBuf {
    match env.get("ONE_LOCATION") {
        Some(one) => Path::new(one).join("share/scaleway/providers"),
        None => PathBuf::from("/usr/share/one/scaleway/providers"),
    }
}

fn read_provider(providers: &Path, name: &str) -> Option<String> {
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) || name.starts_with('.') {
        return None;
    }
    std::fs::read_to_string(providers.join(format!("{name}.yaml"))).ok()
}

/// Reads and validates a description file.
fn read_description(file: &Path, providers: &Path) -> Result<(description::Description, String), Vec<String>> {
    let text = std::fs::read_to_string(file).map_err(|e| vec![format!("cannot read {}: {e}", file.display())])?;
    let d = description::parse(&text, &|name| read_provider(providers, name))?;
    Ok((d, text))
}

/// The Scaleway client for a description (its profile or the environment).
fn client_for(d: &description::Description, env: &Env) -> Result<(scaleway::Client, scaleway::Tuning), String> {
    let from_env = |k: &str| env.get(k).map(str::to_owned);
    let fetch = |_: u64| Err("no provision id".to_owned());
    let mut credentials = scaleway::config::resolve_for(&from_env, d.profile.as_deref(), None, Box::new(fetch))
        .map_err(|e| e.to_string())?;
    credentials.zone = Some(d.zone.clone());
    let tuning = scaleway::Tuning::from_env(&from_env).map_err(|e| e.to_string())?;
    let client = scaleway::Client::new(credentials, tuning.options.clone()).map_err(|e| e.to_string())?;
    Ok((client, tuning))
}

fn validate(file: &Path, providers: &Path, env: &Env, io: &mut Io<'_>) -> Result<(), Vec<String>> {
    let (d, _) = read_description(file, providers)?;
    let (client, _) = client_for(&d, env).map_err(|e| vec![e])?;
    let checked = check::check(&d, &client)?;
    for w in &checked.warnings {
        let _ = writeln!(io.stderr, "WARN: {PROGRAM} validate: {w}");
    }
    let _ = writeln!(
        io.stdout,
        "{}: {} {} host(s) {} ({}) with {} {}, {} public IP(s), private network {}, cluster {}: valid",
        d.name,
        d.hosts,
        match d.hypervisor {
            description::Hypervisor::Kvm => "KVM",
            description::Hypervisor::Lxc => "LXC",
        },
        d.offer,
        d.period.as_str(),
        d.os.0,
        d.os.1,
        d.public_ips,
        d.private_cidr,
        d.cluster_name
    );
    Ok(())
}

/// The frontend's public keys: the given files, else `~/.ssh/*.pub`.
fn public_keys(files: &[PathBuf], env: &Env) -> Result<Vec<String>, String> {
    let files: Vec<PathBuf> = if files.is_empty() {
        let home = PathBuf::from(env.get("HOME").unwrap_or("/var/lib/one"));
        let dir = home.join(".ssh");
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "pub"))
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        if found.is_empty() {
            return Err(format!(
                "no public key in {}: create one (ssh-keygen) or give --ssh-key FILE",
                dir.display()
            ));
        }
        found
    } else {
        files.to_vec()
    };
    let mut keys = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let mut words = line.split_whitespace();
            let (Some(kind), Some(data)) = (words.next(), words.next()) else {
                return Err(format!("{}: {line:?} is not a public key", f.display()));
            };
            let kind_ok = kind.chars().all(|c| c.is_ascii_alphanumeric() || "-@.".contains(c));
            let data_ok = data.chars().all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c));
            if !kind_ok || !data_ok {
                return Err(format!("{}: not an OpenSSH public key line", f.display()));
            }
            keys.push(format!("{kind} {data}"));
        }
    }
    if keys.is_empty() {
        return Err("no public key found: give --ssh-key FILE".into());
    }
    Ok(keys)
}

/// Where the installed scaleway-vnm is; else the one beside this program.
fn default_vnm(env: &Env) -> PathBuf {
    let remotes = match env.get("ONE_LOCATION") {
        Some(one) => Path::new(one).join("var/remotes"),
        None => PathBuf::from("/var/lib/one/remotes"),
    };
    let installed = remotes.join("vnm/scaleway_evpn/scaleway-vnm");
    if installed.exists() {
        return installed;
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("scaleway-vnm")))
        .filter(|p| p.exists())
        .unwrap_or(installed)
}

fn boot_options(access: &HostAccess, env: &Env, need_keys: bool) -> Result<BootstrapOptions, String> {
    let skip = access
        .skip
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            BootPhase::parse(s).ok_or_else(|| format!("--skip {s:?}: one of packages, access, services, network, evpn"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !access
        .opennebula_version
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.')
    {
        return Err(format!(
            "--opennebula-version {:?}: like 7.0",
            access.opennebula_version
        ));
    }
    Ok(BootstrapOptions {
        ssh_user: access.ssh_user.clone(),
        skip,
        authorized_keys: if need_keys {
            public_keys(&access.ssh_keys, env)?
        } else {
            Vec::new()
        },
        vnm: access.vnm.clone().unwrap_or_else(|| default_vnm(env)),
        opennebula_version: access.opennebula_version.clone(),
    })
}

fn progress_sink() -> Box<dyn progress::Progress> {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        Box::new(progress::Terminal::new(Box::new(std::io::stderr())))
    } else {
        Box::new(progress::Lines::new(Box::new(std::io::stderr())))
    }
}

/// What a provision command needs besides the record.
struct Session {
    d: description::Description,
    client: scaleway::Client,
    oned: opennebula::oned::Oned,
    waits: cloud::Waits,
}

impl Session {
    /// What the commands of `ops` work with.
    fn context<'a>(
        self,
        remote: &'a dyn bootstrap::Remote,
        progress: &'a dyn progress::Progress,
        boot: BootstrapOptions,
        file: state::Locked,
    ) -> Ctx<'a> {
        Ctx {
            d: self.d,
            client: self.client,
            oned: self.oned,
            remote,
            waits: self.waits,
            progress,
            boot,
            file,
        }
    }
}

fn session(d: description::Description, env: &Env) -> Result<Session, String> {
    let (client, tuning) = client_for(&d, env)?;
    let oned = opennebula::oned::Oned::from_env(env).map_err(|e| e.to_string())?;
    let from_env = |k: &str| env.get(k).map(str::to_owned);
    let waits = cloud::Waits::from_env(tuning.wait, &from_env)?;
    Ok(Session { d, client, oned, waits })
}

/// The description recorded with a provision.
fn recorded_description(s: &ProvisionState, env: &Env) -> Result<description::Description, String> {
    let providers = default_providers(env);
    description::parse(&s.description, &|name| read_provider(&providers, name)).map_err(|e| {
        format!(
            "the description recorded with provision {} no longer reads: {}",
            s.name,
            e.join("; ")
        )
    })
}

fn checked(d: &description::Description, client: &scaleway::Client, io: &mut Io<'_>) -> Result<check::Checked, String> {
    let c = check::check(d, client).map_err(|e| e.join("; "))?;
    for w in &c.warnings {
        let _ = writeln!(io.stderr, "WARN: {PROGRAM}: {w}");
    }
    Ok(c)
}

fn create(
    file: &Path,
    providers: &Path,
    dry_run: bool,
    access: &HostAccess,
    env: &Env,
    io: &mut Io<'_>,
    remote: Option<&dyn bootstrap::Remote>,
) -> Result<(), String> {
    let (d, text) = read_description(file, providers).map_err(|e| format!("{}: {}", file.display(), e.join("; ")))?;
    let boot = boot_options(access, env, true)?;
    let store = Store::new(&state::state_dir(env));
    if dry_run {
        let s = match store.read(&d.name)? {
            Some(s) => s,
            None => ProvisionState {
                id: "p000000000000".into(),
                name: d.name.clone(),
                ..ProvisionState::default()
            },
        };
        let _ = write!(io.stdout, "{}", plan::render(&d, &s, &boot)?);
        return Ok(());
    }
    let file_lock = store.lock(&d.name)?;
    let mut s = match file_lock.load()? {
        Some(s) if s.description != text => {
            return Err(format!(
                "provision {} exists with another description: `scaleway-provision show {}`; use host/ip commands to change it, or delete it first",
                d.name, d.name
            ));
        }
        Some(s) => s,
        None => ProvisionState {
            id: state::new_id()?,
            name: d.name.clone(),
            description: text,
            created_at: state::now_utc(),
            ..ProvisionState::default()
        },
    };
    let session = session(d, env)?;
    if s.project_id.is_empty() {
        s.project_id = session
            .client
            .credentials()
            .require_project()
            .map_err(|e| e.to_string())?
            .to_owned();
    }
    if s.phase == state::Phase::Ready {
        let _ = writeln!(io.stdout, "provision {} already exists:", s.name);
        let _ = write!(io.stdout, "{}", ops::summary(&s, None));
        return Ok(());
    }
    let c = checked(&session.d, &session.client, io)?;
    file_lock.save(&s)?;
    let ssh = remote::Ssh::from_env(env, &boot.ssh_user)?;
    let sink = progress_sink();
    let ctx = session.context(remote.unwrap_or(&ssh), sink.as_ref(), boot, file_lock);
    let started = std::time::Instant::now();
    ops::create(&ctx, &mut s, &c)?;
    let ranges = s.one.public_network.and_then(|v| ctx_ranges(&ctx, v, &s.id));
    let _ = writeln!(io.stdout, "created in {:.0?}", started.elapsed());
    let _ = write!(io.stdout, "{}", ops::summary(&s, ranges.as_deref()));
    Ok(())
}

fn ctx_ranges(ctx: &Ctx<'_>, vnet: i64, id: &str) -> Option<Vec<one::PublicRange>> {
    one::One { oned: &ctx.oned }.public_ranges(vnet, id).ok()
}

enum Op<'a> {
    HostAdd(u32, &'a HostAccess),
    HostDelete(&'a [String], bool, &'a HostAccess),
    IpAdd(u32),
    IpDelete(&'a [i64]),
    Delete(bool),
}

fn operate(
    name: &str,
    op: &Op<'_>,
    env: &Env,
    io: &mut Io<'_>,
    remote: Option<&dyn bootstrap::Remote>,
) -> Result<(), String> {
    let store = Store::new(&state::state_dir(env));
    let file_lock = store.lock(name)?;
    let Some(mut s) = file_lock.load()? else {
        return match op {
            // Deleting what is not there is done.
            Op::Delete(_) => {
                let _ = writeln!(io.stdout, "provision {name} does not exist (nothing to delete)");
                Ok(())
            }
            _ => Err(format!("no provision named {name} (scaleway-provision list)")),
        };
    };
    let d = recorded_description(&s, env)?;
    let session = session(d, env)?;
    let access = match op {
        Op::HostAdd(_, a) | Op::HostDelete(_, _, a) => Some(*a),
        _ => None,
    };
    let boot = match access {
        Some(a) => boot_options(a, env, matches!(op, Op::HostAdd(..)))?,
        None => BootstrapOptions {
            ssh_user: "ubuntu".into(),
            skip: Vec::new(),
            authorized_keys: Vec::new(),
            vnm: default_vnm(env),
            opennebula_version: "7.0".into(),
        },
    };
    let c = match op {
        Op::HostAdd(..) => Some(checked(&session.d, &session.client, io)?),
        _ => None,
    };
    let ssh = remote::Ssh::from_env(env, &boot.ssh_user)?;
    let sink = progress_sink();
    let ctx = session.context(remote.unwrap_or(&ssh), sink.as_ref(), boot, file_lock);
    match op {
        Op::HostAdd(n, _) => {
            let c = c.ok_or("no check")?;
            let added = ops::host_add(&ctx, &mut s, *n, &c)?;
            let _ = writeln!(io.stdout, "added {} host(s)", added.len());
        }
        Op::HostDelete(hosts, force, _) => {
            let gone = ops::host_delete(&ctx, &mut s, hosts, *force)?;
            let _ = writeln!(io.stdout, "deleted host(s) {}", gone.join(" "));
        }
        Op::IpAdd(n) => {
            let total = ops::ip_add(&ctx, &mut s, *n)?;
            let _ = writeln!(io.stdout, "the public network has {total} public IP(s)");
        }
        Op::IpDelete(ars) => {
            ops::ip_delete(&ctx, &mut s, ars)?;
            let _ = writeln!(
                io.stdout,
                "removed address range(s) {}",
                ars.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
            );
        }
        Op::Delete(force) => {
            ops::delete(&ctx, &mut s, *force)?;
            let _ = writeln!(
                io.stdout,
                "provision {name} deleted; nothing tagged with it is left at Scaleway"
            );
            return Ok(());
        }
    }
    let ranges = s.one.public_network.and_then(|v| ctx_ranges(&ctx, v, &s.id));
    let _ = write!(io.stdout, "{}", ops::summary(&s, ranges.as_deref()));
    Ok(())
}

fn show(name: &str, env: &Env, io: &mut Io<'_>) -> Result<(), String> {
    let store = Store::new(&state::state_dir(env));
    let s = store
        .read(name)?
        .ok_or_else(|| format!("no provision named {name} (scaleway-provision list)"))?;
    let ranges = s.one.public_network.and_then(|v| {
        opennebula::oned::Oned::from_env(env)
            .ok()
            .and_then(|oned| one::One { oned: &oned }.public_ranges(v, &s.id).ok())
    });
    let _ = write!(io.stdout, "{}", ops::summary(&s, ranges.as_deref()));
    Ok(())
}

fn list(env: &Env, io: &mut Io<'_>) -> Result<(), String> {
    let store = Store::new(&state::state_dir(env));
    let names = store.names()?;
    if names.is_empty() {
        let _ = writeln!(io.stdout, "no provisions");
    }
    for name in names {
        match store.read(&name) {
            Ok(Some(s)) => {
                let _ = writeln!(
                    io.stdout,
                    "{name}  {}  {}  {} host(s)  created {}{}",
                    s.id,
                    s.phase.as_str(),
                    s.hosts.len(),
                    s.created_at,
                    if s.pending.is_some() {
                        "  (unfinished operation)"
                    } else {
                        ""
                    }
                );
            }
            Ok(None) => {}
            Err(e) => {
                let _ = writeln!(io.stdout, "{name}  unreadable: {e}");
            }
        }
    }
    Ok(())
}

fn fail(io: &mut Io<'_>, command: &str, error: &str) -> u8 {
    let mut lines = error.lines();
    let first = lines.next().unwrap_or("failed");
    let _ = writeln!(
        io.stderr,
        "ERROR: {PROGRAM} {command}: {}",
        opennebula::driver::one_line(error)
    );
    let _ = writeln!(io.stderr, "{first}");
    for l in lines {
        let _ = writeln!(io.stderr, "{l}");
    }
    EXIT_FAILURE
}

/// Runs the program with the given argv, environment and streams; returns the exit code.
pub fn main_with(argv: Vec<OsString>, env: &Env, io: Io<'_>) -> u8 {
    main_with_remote(argv, env, io, None)
}

/// [`main_with`] with the hosts reached through `remote` instead of SSH (tests).
pub fn main_with_remote(argv: Vec<OsString>, env: &Env, mut io: Io<'_>, remote: Option<&dyn bootstrap::Remote>) -> u8 {
    let cli: Cli = match parse_args(argv, &mut io) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let (command, result) = match cli.command {
        Command::Validate { file, providers } => {
            let providers = providers.unwrap_or_else(|| default_providers(env));
            return match validate(&file, &providers, env, &mut io) {
                Ok(()) => 0,
                Err(errors) => {
                    let _ = writeln!(io.stderr, "{}: {}", file.display(), errors.join("; "));
                    EXIT_FAILURE
                }
            };
        }
        Command::Create {
            file,
            providers,
            dry_run,
            access,
        } => {
            let providers = providers.unwrap_or_else(|| default_providers(env));
            (
                "create",
                create(&file, &providers, dry_run, &access, env, &mut io, remote),
            )
        }
        Command::Show { name } => ("show", show(&name, env, &mut io)),
        Command::List => ("list", list(env, &mut io)),
        Command::Host { command } => match command {
            HostCommand::Add { name, count, access } => (
                "host add",
                operate(&name, &Op::HostAdd(count, &access), env, &mut io, remote),
            ),
            HostCommand::Delete {
                name,
                hosts,
                force,
                access,
            } => (
                "host delete",
                operate(&name, &Op::HostDelete(&hosts, force, &access), env, &mut io, remote),
            ),
        },
        Command::Ip { command } => match command {
            IpCommand::Add { name, count } => ("ip add", operate(&name, &Op::IpAdd(count), env, &mut io, remote)),
            IpCommand::Delete { name, ranges } => (
                "ip delete",
                operate(&name, &Op::IpDelete(&ranges), env, &mut io, remote),
            ),
        },
        Command::Delete { name, force } => ("delete", operate(&name, &Op::Delete(force), env, &mut io, remote)),
        Command::OpennebulaConfig {
            oned_conf,
            vmm_execrc,
            write,
            remove,
        } => (
            "opennebula-config",
            opennebula_config(&oned_conf, &vmm_execrc, write, remove, &mut io),
        ),
    };
    match result {
        Ok(()) => 0,
        Err(e) => fail(&mut io, command, &e),
    }
}
