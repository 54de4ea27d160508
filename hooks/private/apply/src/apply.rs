//! The driver's side effects, behind traits, with their real
//! implementations (argument vectors only, through `host_tools::Tools`: `sudo
//! -n` when not root, a time limit, the tool's stderr kept in errors):
//!
//! - [`Links`]: `ip -d -j addr show` and one `ip -batch -` ([`IpLinks`]);
//! - [`Firewall`]: one `nft -f -` transaction for the firewall table, one
//!   for the security group tables (after making sure `br_netfilter` passes
//!   bridged traffic to them) ([`NftFirewall`]);
//! - [`Frr`]: `vtysh -C -f <file>` (check) and `frr-reload.py --reload
//!   <file>` ([`FrrCommand`]);
//! - [`System`]: the OS hostname and the forwarding sysctls, read from
//!   `/proc/sys` ([`ProcSystem`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use host_tools::{ApplyError, Tools};
use opennebula::driver::Env;

use crate::root::Private;
use private_plan::firewall::Rules;
use private_plan::net::Vni;
use private_plan::observed::{Observed, parse_links};
use private_plan::plan::{LinkOp, LinkPlan};
use private_plan::sg::Filters;

/// Links: read all, change with `ip` commands.
pub trait Links {
    fn observe(&self) -> Result<Observed, ApplyError>;
    /// Applies the commands in order, stopping at the first failure (the
    /// error's `failed_line` says which), or with `keep_going` trying every
    /// one (for undoing).
    fn apply(&self, ops: &[LinkOp], keep_going: bool) -> Result<(), ApplyError>;
}

/// Our nftables tables.
pub trait Firewall {
    /// Makes the table `rules` (one `nft -f -` transaction).
    fn apply(&self, rules: &Rules) -> Result<(), ApplyError>;
    /// Makes the security group tables `filters` (one `nft -f -`
    /// transaction), `br_netfilter` on first when there is a port: in
    /// place from `before` (what the record said they held), or whole
    /// (without `before`, or when the update fails).
    fn filters(&self, filters: &Filters, before: Option<&Filters>) -> Result<(), ApplyError>;
}

/// The host's FRR.
pub trait Frr {
    /// Checks a configuration file without applying it (`vtysh -C -f`).
    fn check(&self, path: &Path) -> Result<(), ApplyError>;
    /// Makes the running configuration that of the file (`frr-reload.py
    /// --reload`: the differences only, no restart).
    fn reload(&self, path: &Path) -> Result<(), ApplyError>;
    /// Adds and removes VNIs of the running `router bgp asn` (one `vtysh`).
    fn vnis(&self, asn: u32, add: &BTreeSet<Vni>, remove: &BTreeSet<Vni>) -> Result<(), ApplyError>;
}

/// Forwarding, as the host has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarding {
    pub ipv4: bool,
    pub ipv6: bool,
}

/// What the FRR configuration must repeat about the host.
pub trait System {
    fn hostname(&self) -> Result<String, ApplyError>;
    fn forwarding(&self) -> Result<Forwarding, ApplyError>;
}

/// The four side effects of one host.
#[derive(Clone, Copy)]
pub struct EvpnHost<'a> {
    pub links: &'a dyn Links,
    pub firewall: &'a dyn Firewall,
    pub frr: &'a dyn Frr,
    pub system: &'a dyn System,
}

/// Undoes the additions among `applied` (best effort, every step tried)
/// and says so in `error`.
pub fn undo(links: &dyn Links, applied: &[LinkOp], error: &mut ApplyError) {
    let ops: Vec<LinkOp> = applied.iter().rev().filter_map(LinkOp::undo).collect();
    if ops.is_empty() {
        return;
    }
    match links.apply(&ops, true) {
        Ok(()) => error
            .message
            .push_str("; the devices made before it were deleted again"),
        Err(u) => error
            .message
            .push_str(&format!("; deleting the devices made before it failed too: {u}")),
    }
}

/// Applies a link plan; when a command fails, the devices the plan added
/// before it are deleted again.
pub fn apply_links(links: &dyn Links, plan: &LinkPlan) -> Result<(), ApplyError> {
    if let Err(mut e) = links.apply(&plan.ops, false) {
        let done = e
            .failed_line
            .map_or(plan.ops.len(), |n| n.saturating_sub(1).min(plan.ops.len()));
        undo(links, &plan.ops[..done], &mut e);
        return Err(e);
    }
    Ok(())
}

/// The real `ip`.
pub struct IpLinks<'a> {
    pub tools: &'a Tools,
}

impl Links for IpLinks<'_> {
    fn observe(&self) -> Result<Observed, ApplyError> {
        let args = ["-d", "-j", "addr", "show"];
        let ran = self.tools.run("ip", &args, b"")?;
        if !ran.success {
            return Err(self.tools.failure("ip", &args, &ran));
        }
        parse_links(&ran.stdout)
            .map_err(|e| ApplyError::new(format!("cannot read the output of `ip -d -j addr show`: {e}")))
    }

    fn apply(&self, ops: &[LinkOp], keep_going: bool) -> Result<(), ApplyError> {
        self.tools.ip_batch(ops, LinkOp::args, keep_going, || {
            Private::Links {
                ops: ops.to_vec(),
                keep_going,
            }
            .to_json()
        })
    }
}

/// The real `nft`.
pub struct NftFirewall<'a> {
    pub tools: &'a Tools,
}

impl Firewall for NftFirewall<'_> {
    fn apply(&self, rules: &Rules) -> Result<(), ApplyError> {
        let args = ["-f", "-"];
        let ran = self.tools.run_root("nft", &args, rules.script().as_bytes(), || {
            Private::Firewall { rules: rules.clone() }.to_json()
        })?;
        if ran.success {
            return Ok(());
        }
        let mut e = self.tools.failure("nft", &args, &ran);
        e.message
            .push_str(" (nothing was changed: the transaction is all or nothing)");
        Err(e)
    }

    fn filters(&self, filters: &Filters, before: Option<&Filters>) -> Result<(), ApplyError> {
        if before.is_some_and(|b| filters.update_script(b).is_empty()) {
            return Ok(());
        }
        let args = ["-f", "-"];
        let ran = if self.tools.uses_sudo() {
            // The one request does it all, the fallback included.
            let request = Private::Filters {
                filters: filters.clone(),
                before: before.cloned(),
            }
            .to_json();
            self.tools.run_root("nft", &args, b"", || request)?
        } else {
            crate::filters::apply(self.tools, filters, before)?
        };
        if ran.success {
            return Ok(());
        }
        let mut e = self.tools.failure("nft", &args, &ran);
        e.message
            .push_str(" (the security group tables were not changed: the transaction is all or nothing)");
        Err(e)
    }
}

/// Environment variable: the FRR instance's socket, configuration and run
/// folder, for a host running several FRR instances (`vtysh --vty_socket`,
/// `frr-reload.py --vty_socket --confdir --rundir`). Default: FRR's own
/// (`/var/run/frr`, `/etc/frr`).
pub const FRR_DIR_ENV: &str = "ONE_SCALEWAY_FRR_DIR";
/// Environment variable: the FRR pathspace (`vtysh -N`, `frr-reload.py -N`).
pub const FRR_PATHSPACE_ENV: &str = "ONE_SCALEWAY_FRR_PATHSPACE";
/// Environment variable: where `frr-reload.py` is.
pub const FRR_RELOAD_ENV: &str = "ONE_SCALEWAY_FRR_RELOAD";
/// Debian's `frr-reload.py` (package `frr-pythontools`).
pub const DEFAULT_FRR_RELOAD: &str = "/usr/lib/frr/frr-reload.py";

/// Which FRR to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrrInstance {
    pub dir: Option<PathBuf>,
    pub pathspace: Option<String>,
    pub reload: PathBuf,
}

impl FrrInstance {
    /// From `ONE_SCALEWAY_FRR_DIR`, `ONE_SCALEWAY_FRR_PATHSPACE`, `ONE_SCALEWAY_FRR_RELOAD`.
    pub fn from_env(env: &Env) -> Result<Self, ApplyError> {
        let pathspace = env.get(FRR_PATHSPACE_ENV).map(str::to_owned);
        if let Some(p) = &pathspace
            && !p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ApplyError::new(format!(
                "{FRR_PATHSPACE_ENV}={p:?} is not a pathspace name (letters, digits, '-', '_', '.')"
            )));
        }
        Ok(Self {
            dir: env.get(FRR_DIR_ENV).map(PathBuf::from),
            pathspace,
            reload: PathBuf::from(env.get(FRR_RELOAD_ENV).unwrap_or(DEFAULT_FRR_RELOAD)),
        })
    }

    /// The arguments that select the instance, for `frr-reload.py`.
    pub fn reload_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(d) = &self.dir {
            let d = d.display().to_string();
            for flag in ["--vty_socket", "--confdir", "--rundir"] {
                args.extend([flag.to_owned(), d.clone()]);
            }
        }
        if let Some(p) = &self.pathspace {
            args.extend(["-N".to_owned(), p.clone()]);
        }
        args
    }

    /// The arguments that select the instance, for `vtysh`.
    pub fn vtysh_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(d) = &self.dir {
            args.extend(["--vty_socket".to_owned(), d.display().to_string()]);
        }
        if let Some(p) = &self.pathspace {
            args.extend(["-N".to_owned(), p.clone()]);
        }
        args
    }
}

/// The real FRR tools.
pub struct FrrCommand<'a> {
    pub tools: &'a Tools,
    pub instance: FrrInstance,
}

/// A tool's complaint on one line: its error lines, or the last lines it printed.
fn complaint(stdout: &str, stderr: &str) -> String {
    let lines: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("ERROR") || l.contains('%') || l.contains("rror"))
        .collect();
    let chosen = if errors.is_empty() {
        &lines[lines.len().saturating_sub(3)..]
    } else {
        &errors[..]
    };
    // Drop the ANSI colours frr-reload.py puts around ERROR.
    chosen.join(" / ").replace("\u{1b}[91m", "").replace("\u{1b}[0m", "")
}

impl Frr for FrrCommand<'_> {
    fn check(&self, path: &Path) -> Result<(), ApplyError> {
        let file = path.display().to_string();
        let args = ["-C", "-f", file.as_str()];
        let ran = self.tools.run_root("vtysh", &args, b"", || {
            Private::FrrCheck {
                config: std::fs::read_to_string(path).unwrap_or_default(),
            }
            .to_json()
        });
        let ran = ran.map_err(|mut e| {
            if e.message.contains("not found") {
                e.message.push_str(" (install frr)");
            }
            e
        })?;
        if ran.success {
            return Ok(());
        }
        Err(ApplyError::new(format!(
            "FRR refuses the rendered configuration {file} (`{}` failed, {}): {}",
            self.tools.show("vtysh", &args),
            ran.status,
            complaint(&ran.stdout, &ran.stderr)
        )))
    }

    fn reload(&self, path: &Path) -> Result<(), ApplyError> {
        let program = self.instance.reload.display().to_string();
        let mut args: Vec<String> = vec!["--reload".into(), "--stdout".into()];
        args.extend(self.instance.reload_args());
        args.push(path.display().to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ran = self.tools.run_root(&program, &args, b"", || {
            Private::FrrReload {
                config: std::fs::read_to_string(path).unwrap_or_default(),
            }
            .to_json()
        });
        let ran = ran.map_err(|mut e| {
            if e.message.contains("not found") || e.message.contains("No such file") {
                e.message.push_str(" (install frr-pythontools)");
            }
            e
        })?;
        if ran.success {
            return Ok(());
        }
        Err(ApplyError::new(format!(
            "`{}` failed ({}): {} (is FRR running with bgpd enabled, `bgpd=yes` in /etc/frr/daemons?)",
            self.tools.show(&program, &args),
            ran.status,
            complaint(&ran.stdout, &ran.stderr)
        )))
    }

    fn vnis(&self, asn: u32, add: &BTreeSet<Vni>, remove: &BTreeSet<Vni>) -> Result<(), ApplyError> {
        let words = private_plan::frr::vni_commands(asn, add, remove);
        self.vtysh_change(words, || {
            Private::FrrVnis {
                asn,
                add: add.iter().map(|v| u32::from(*v)).collect(),
                remove: remove.iter().map(|v| u32::from(*v)).collect(),
            }
            .to_json()
        })
    }
}

impl FrrCommand<'_> {
    /// `vtysh` of these words for this instance, through the root helper
    /// when not root; a line FRR refuses fails it.
    fn vtysh_change(&self, words: Vec<String>, request: impl FnOnce() -> String) -> Result<(), ApplyError> {
        let mut args = self.instance.vtysh_args();
        args.extend(words);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ran = self.tools.run_root("vtysh", &args, b"", request)?;
        let refused = private_plan::frr::vtysh_refused(&ran.stdout, &ran.stderr);
        if ran.success && refused.is_none() {
            return Ok(());
        }
        Err(ApplyError::new(format!(
            "`{}` failed ({}): {} (is FRR running with bgpd enabled, and the host's configuration applied by \
             evpn-config?)",
            self.tools.show("vtysh", &args),
            ran.status,
            refused.unwrap_or_else(|| complaint(&ran.stdout, &ran.stderr))
        )))
    }
}

/// The real `/proc/sys` (of the calling thread's namespaces).
pub struct ProcSystem {
    pub root: PathBuf,
}

impl Default for ProcSystem {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/proc/sys"),
        }
    }
}

impl ProcSystem {
    fn read(&self, key: &str) -> Result<Option<String>, ApplyError> {
        let path = self.root.join(key);
        match std::fs::read_to_string(&path) {
            Ok(v) => Ok(Some(v.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ApplyError::new(format!("cannot read {}: {e}", path.display()))),
        }
    }
}

impl System for ProcSystem {
    fn hostname(&self) -> Result<String, ApplyError> {
        self.read("kernel/hostname")?
            .ok_or_else(|| ApplyError::new("cannot read the host name (/proc/sys/kernel/hostname)"))
    }

    fn forwarding(&self) -> Result<Forwarding, ApplyError> {
        Ok(Forwarding {
            ipv4: self.read("net/ipv4/ip_forward")?.is_some_and(|v| v != "0"),
            ipv6: self.read("net/ipv6/conf/all/forwarding")?.is_some_and(|v| v != "0"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_arguments() {
        let i = FrrInstance::from_env(&Env::from_pairs([(FRR_DIR_ENV, "/tmp/frr-a")])).unwrap();
        assert_eq!(
            i.reload_args().join(" "),
            "--vty_socket /tmp/frr-a --confdir /tmp/frr-a --rundir /tmp/frr-a"
        );
        assert_eq!(i.vtysh_args().join(" "), "--vty_socket /tmp/frr-a");
        assert_eq!(i.reload, PathBuf::from(DEFAULT_FRR_RELOAD));
        let i = FrrInstance::from_env(&Env::from_pairs([(FRR_PATHSPACE_ENV, "edge1")])).unwrap();
        assert_eq!(i.reload_args().join(" "), "-N edge1");
        assert!(FrrInstance::from_env(&Env::from_pairs([(FRR_PATHSPACE_ENV, "a b")])).is_err());
    }

    #[test]
    fn complaints_keep_the_error_lines() {
        let out = "2026-11-25 INFO: Called via ...\n2026-11-25 \u{1b}[91m  ERROR\u{1b}[0m: vtysh failed to process new configuration\n";
        assert_eq!(
            complaint(out, "b'line 2: % Unknown command:  bogus line\\n'"),
            "2026-11-25   ERROR: vtysh failed to process new configuration / b'line 2: % Unknown command:  bogus line\\n'"
        );
        assert_eq!(complaint("a\nb\nc\nd\n", ""), "b / c / d");
    }

    #[test]
    fn reads_the_host() {
        let dir = test_support::TempDir::new("evpn-sys");
        std::fs::create_dir_all(dir.path().join("kernel")).unwrap();
        std::fs::create_dir_all(dir.path().join("net/ipv4")).unwrap();
        std::fs::write(dir.path().join("kernel/hostname"), "edge-host1\n").unwrap();
        std::fs::write(dir.path().join("net/ipv4/ip_forward"), "1\n").unwrap();
        let s = ProcSystem {
            root: dir.path().to_path_buf(),
        };
        assert_eq!(s.hostname().unwrap(), "edge-host1");
        assert_eq!(
            s.forwarding().unwrap(),
            Forwarding {
                ipv4: true,
                ipv6: false
            }
        );
    }
}
