//! Host bootstrap: what a new Elastic Metal server needs before OpenNebula
//! can use it, as a typed plan per host (pure, golden-tested) and a thin
//! executor that runs it over SSH.
//!
//! Every remote command is an argument vector whose words are checked
//! against a conservative alphabet (letters, digits and `_./:=@,+%-`), so
//! that the words the remote shell receives from `ssh` are exactly ours:
//! nothing of the description, of Scaleway's answers or of the host reaches
//! a shell unquoted. File contents travel on stdin (`install ... /dev/stdin
//! PATH`), never on the command line.
//!
//! Phases, in order (each can be skipped with `--skip`, for hosts prepared
//! another way, like the sandbox's):
//! - `packages`: OpenNebula's apt repository, the node package for the
//!   hypervisor, FRR and nftables.
//! - `access`: what oneadmin may do on the host: the frontend's public keys,
//!   the drivers' root helper (a root-owned copy of `scaleway-vnm` in
//!   `/usr/local/libexec/one-scaleway`) and the sudoers rules allowing it
//!   and nothing else (checked with `visudo` before they are put in place),
//!   the drivers' state folder `/var/lib/one/scaleway`.
//! - `services`: the boot-time reconcile unit, FRR with bgpd.
//! - `network`: sysctls, the private network's VLAN interface `scwpriv0`
//!   (netplan), `/etc/hosts` entries for every host (live migration), the
//!   host firewall (`table inet one_scaleway_host`).
//! - `evpn`: the `scaleway-vnm` binary and `evpn-config` with the cluster
//!   description (again on every host when a host joins or leaves).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::Ipv4Network;

/// The interface of the private network on every host.
pub const PRIVATE_DEVICE: &str = "scwpriv0";
/// Where the host-side driver binary goes (where `onehost sync` puts it too).
pub const REMOTE_VNM: &str = "/var/tmp/one/vnm/scaleway_evpn/scaleway-vnm";
/// Where the drivers' root helper goes (root-owned; the only command the
/// shipped sudoers rules allow, with the single argument `root`).
pub const ROOT_HELPER: &str = "/usr/local/libexec/one-scaleway/scaleway-vnm";
/// Its folder.
const ROOT_HELPER_DIR: &str = "/usr/local/libexec/one-scaleway";
/// The cluster's AS number.
pub const EVPN_AS: u32 = 65000;

const SUDOERS: &str = include_str!("../../../share/host/sudoers-one-scaleway");
const RECONCILE_UNIT: &str = include_str!("../../../share/host/one-scaleway-reconcile.service");

/// A bootstrap phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Packages,
    Access,
    Services,
    Network,
    Evpn,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Packages,
        Phase::Access,
        Phase::Services,
        Phase::Network,
        Phase::Evpn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Packages => "packages",
            Self::Access => "access",
            Self::Services => "services",
            Self::Network => "network",
            Self::Evpn => "evpn",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// A file edit computed from the file's current text (read on the host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// `bgpd=yes` in FRR's daemons file.
    FrrBgpd,
    /// Our block of `/etc/hosts` (between marker lines) holds these entries.
    HostsBlock {
        marker: String,
        entries: Vec<(Ipv4Addr, String)>,
    },
}

/// What one step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Runs a command.
    Run { argv: Vec<String>, stdin: Option<Vec<u8>> },
    /// Writes a file (through `install`, content on stdin).
    Install {
        path: String,
        mode: u32,
        owner: Option<String>,
        content: Vec<u8>,
        /// Shown instead of the content in plans (binaries).
        label: Option<String>,
    },
    /// Reads a file, edits it, writes it back if it changed, then runs `then`.
    Edit {
        path: String,
        edit: Edit,
        then: Vec<Vec<String>>,
    },
    /// Runs `argv`; when its output contains `expect`, skips `otherwise`.
    Unless {
        argv: Vec<String>,
        expect: String,
        otherwise: Vec<Action>,
    },
}

/// One step of a host's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub phase: Phase,
    pub title: String,
    pub action: Action,
}

/// What the plan is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub name: String,
    pub public_ip: Ipv4Addr,
    pub private_ip: Ipv4Addr,
    pub vlan: Option<u32>,
    /// The host's default-route device (the VLAN's parent), when known.
    pub uplink: Option<String>,
}

/// The cluster-wide inputs of every host's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterFacts {
    pub provision: String,
    pub hypervisor_package: String,
    /// OpenNebula's repository line parts: Ubuntu version (`24.04`).
    pub ubuntu: String,
    pub opennebula_version: String,
    pub private_cidr: Ipv4Network,
    /// Every host, in their fixed order (the first are route reflectors).
    pub hosts: Vec<HostFacts>,
    /// The frontend's public keys for oneadmin.
    pub authorized_keys: String,
    /// The frontend's address as the hosts see it (VNC is opened to it only).
    pub frontend: Option<IpAddr>,
    /// Skipped phases.
    pub skip: Vec<Phase>,
    /// The user SSH logs in as (`root` needs no sudo).
    pub ssh_user: String,
}

/// Whether a word passes to a remote shell unchanged.
pub fn safe_word(word: &str) -> bool {
    !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:=@,+%-".contains(c))
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

/// The EVPN cluster description every host gets (`evpn-config -`: on stdin).
pub fn evpn_description(cluster: &ClusterFacts) -> String {
    let hosts: Vec<String> = cluster.hosts.iter().map(|h| h.private_ip.to_string()).collect();
    format!(
        "# one-scaleway provision {}: written by scaleway-provision, again whenever a host joins or leaves\n\
         AS              = {EVPN_AS}\nUNDERLAY        = {}\nHOSTS           = \"{}\"\nREFLECTORS      = {}\n\
         UNDERLAY_DEVICE = {PRIVATE_DEVICE}\n",
        cluster.provision,
        cluster.private_cidr,
        hosts.join(" "),
        cluster.hosts.len().min(2),
    )
}

/// The host firewall (one atomic nft batch): SSH from anywhere, BGP, VXLAN,
/// libvirt and migration from the private network, VNC from the frontend.
pub fn firewall(cluster: &ClusterFacts) -> String {
    let mut s = String::from(
        "table inet one_scaleway_host {}\ndelete table inet one_scaleway_host\ntable inet one_scaleway_host {\n  \
         chain input {\n    type filter hook input priority filter; policy drop;\n    \
         ct state established,related accept\n    ct state invalid drop\n    iif \"lo\" accept\n    \
         meta l4proto { icmp, ipv6-icmp } accept\n    udp dport { 67, 68, 546 } accept\n    tcp dport 22 accept\n",
    );
    let _ = writeln!(
        s,
        "    ip saddr {} tcp dport {{ 179, 16509, 16514, 49152-49215 }} accept",
        cluster.private_cidr
    );
    let _ = writeln!(s, "    ip saddr {} udp dport 4789 accept", cluster.private_cidr);
    match cluster.frontend {
        Some(IpAddr::V4(a)) => {
            let _ = writeln!(s, "    ip saddr {a} tcp dport 5900-65535 accept");
        }
        Some(IpAddr::V6(a)) => {
            let _ = writeln!(s, "    ip6 saddr {a} tcp dport 5900-65535 accept");
        }
        None => {}
    }
    s.push_str("  }\n}\n");
    s
}

fn netplan(host: &HostFacts, prefix: u8, uplink: &str, vlan: Option<u32>) -> String {
    let vlan = vlan.map_or_else(|| "<VLAN id>".to_owned(), |v| v.to_string());
    format!(
        "# one-scaleway: the Scaleway private network (VLAN {vlan} of {uplink})\nnetwork:\n  version: 2\n  \
         vlans:\n    {PRIVATE_DEVICE}:\n      id: {vlan}\n      link: {uplink}\n      addresses: [{}/{prefix}]\n",
        host.private_ip
    )
}

const SYSCTL: &str = "# one-scaleway: VMs' public traffic is routed and NATed by the host\n\
                      net.ipv4.ip_forward = 1\nnet.ipv6.conf.all.forwarding = 1\nnet.ipv6.conf.all.accept_ra = 2\n";

/// A folder of oneadmin's alone (0700).
fn oneadmin_folder(path: &str) -> Action {
    Action::Run {
        argv: argv(&["install", "-d", "-o", "oneadmin", "-g", "oneadmin", "-m", "0700", path]),
        stdin: None,
    }
}

/// The whole plan of one host. `full`: a new host (every phase); otherwise
/// only what changes when hosts join or leave (`/etc/hosts`, EVPN).
pub fn plan(cluster: &ClusterFacts, host: &HostFacts, full: bool) -> Vec<Step> {
    let mut steps = Vec::new();
    let wanted = |p: Phase| !cluster.skip.contains(&p) && (full || matches!(p, Phase::Network | Phase::Evpn));
    let oneadmin = !cluster.skip.contains(&Phase::Access);
    let owner = oneadmin.then(|| "oneadmin".to_owned());
    let mut step = |phase: Phase, title: &str, action: Action| {
        steps.push(Step {
            phase,
            title: title.to_owned(),
            action,
        });
    };
    if wanted(Phase::Packages) {
        step(
            Phase::Packages,
            "apt keyring folder",
            Action::Run {
                argv: argv(&["install", "-d", "-m", "0755", "/etc/apt/keyrings"]),
                stdin: None,
            },
        );
        step(
            Phase::Packages,
            "OpenNebula's signing key",
            Action::Run {
                argv: argv(&[
                    "curl",
                    "-fsSL",
                    "-o",
                    "/etc/apt/keyrings/opennebula.asc",
                    "https://downloads.opennebula.io/repo/repo2.key",
                ]),
                stdin: None,
            },
        );
        step(
            Phase::Packages,
            "OpenNebula's repository",
            Action::Install {
                path: "/etc/apt/sources.list.d/opennebula.list".into(),
                mode: 0o644,
                owner: None,
                content: format!(
                    "deb [signed-by=/etc/apt/keyrings/opennebula.asc] https://downloads.opennebula.io/repo/{}/Ubuntu/{} stable opennebula\n",
                    cluster.opennebula_version, cluster.ubuntu
                )
                .into_bytes(),
                label: None,
            },
        );
        step(
            Phase::Packages,
            "package lists",
            Action::Run {
                argv: argv(&["apt-get", "update", "-q"]),
                stdin: None,
            },
        );
        step(
            Phase::Packages,
            "packages",
            Action::Run {
                argv: argv(&[
                    "env",
                    "DEBIAN_FRONTEND=noninteractive",
                    "apt-get",
                    "install",
                    "-q",
                    "-y",
                    &cluster.hypervisor_package,
                    "frr",
                    "frr-pythontools",
                    "nftables",
                ]),
                stdin: None,
            },
        );
    }
    if wanted(Phase::Access) {
        step(
            Phase::Access,
            "oneadmin's SSH folder",
            oneadmin_folder("/var/lib/one/.ssh"),
        );
        step(
            Phase::Access,
            "the frontend's keys for oneadmin",
            Action::Install {
                path: "/var/lib/one/.ssh/authorized_keys".into(),
                mode: 0o600,
                owner: Some("oneadmin".into()),
                content: cluster.authorized_keys.clone().into_bytes(),
                label: None,
            },
        );
        step(
            Phase::Access,
            "the drivers' root helper folder (root's)",
            Action::Run {
                argv: argv(&[
                    "install",
                    "-d",
                    "-m",
                    "0755",
                    "-o",
                    "root",
                    "-g",
                    "root",
                    ROOT_HELPER_DIR,
                ]),
                stdin: None,
            },
        );
        step(
            Phase::Access,
            "the drivers' root helper (root's scaleway-vnm)",
            Action::Install {
                path: ROOT_HELPER.into(),
                mode: 0o755,
                owner: None,
                content: Vec::new(),
                label: Some("the frontend's scaleway-vnm".into()),
            },
        );
        step(
            Phase::Access,
            "sudoers rules (checked before use)",
            Action::Install {
                path: "/etc/sudoers.d/one-scaleway.new".into(),
                mode: 0o440,
                owner: None,
                content: SUDOERS.as_bytes().to_vec(),
                label: None,
            },
        );
        step(
            Phase::Access,
            "sudoers rules are valid",
            Action::Run {
                argv: argv(&["visudo", "-c", "-q", "-f", "/etc/sudoers.d/one-scaleway.new"]),
                stdin: None,
            },
        );
        step(
            Phase::Access,
            "sudoers rules in place",
            Action::Run {
                argv: argv(&[
                    "mv",
                    "-f",
                    "/etc/sudoers.d/one-scaleway.new",
                    "/etc/sudoers.d/one-scaleway",
                ]),
                stdin: None,
            },
        );
        step(
            Phase::Access,
            "the drivers' state folder",
            oneadmin_folder("/var/lib/one/scaleway"),
        );
    }
    if wanted(Phase::Services) {
        step(
            Phase::Services,
            "boot-time reconcile unit",
            Action::Install {
                path: "/etc/systemd/system/one-scaleway-reconcile.service".into(),
                mode: 0o644,
                owner: None,
                content: RECONCILE_UNIT.as_bytes().to_vec(),
                label: None,
            },
        );
        step(
            Phase::Services,
            "systemd reads it",
            Action::Run {
                argv: argv(&["systemctl", "daemon-reload"]),
                stdin: None,
            },
        );
        step(
            Phase::Services,
            "reconcile at boot",
            Action::Run {
                argv: argv(&["systemctl", "enable", "one-scaleway-reconcile.service"]),
                stdin: None,
            },
        );
        step(
            Phase::Services,
            "FRR with bgpd",
            Action::Edit {
                path: "/etc/frr/daemons".into(),
                edit: Edit::FrrBgpd,
                then: vec![argv(&["systemctl", "restart", "frr.service"])],
            },
        );
        step(
            Phase::Services,
            "FRR at boot",
            Action::Run {
                argv: argv(&["systemctl", "enable", "--now", "frr.service"]),
                stdin: None,
            },
        );
    }
    if wanted(Phase::Network) {
        if full {
            step(
                Phase::Network,
                "forwarding sysctls",
                Action::Install {
                    path: "/etc/sysctl.d/60-one-scaleway.conf".into(),
                    mode: 0o644,
                    owner: None,
                    content: SYSCTL.as_bytes().to_vec(),
                    label: None,
                },
            );
            step(
                Phase::Network,
                "forwarding now",
                Action::Run {
                    argv: argv(&["sysctl", "-q", "-p", "/etc/sysctl.d/60-one-scaleway.conf"]),
                    stdin: None,
                },
            );
            let expect = format!("inet {}/{}", host.private_ip, cluster.private_cidr.prefix());
            let uplink = host.uplink.clone().unwrap_or_else(|| "UPLINK".into());
            step(
                Phase::Network,
                "private network interface",
                Action::Unless {
                    argv: argv(&["ip", "-4", "-o", "addr", "show", "dev", PRIVATE_DEVICE]),
                    expect,
                    otherwise: vec![
                        Action::Install {
                            path: "/etc/netplan/60-one-scaleway.yaml".into(),
                            mode: 0o600,
                            owner: None,
                            content: netplan(host, cluster.private_cidr.prefix(), &uplink, host.vlan).into_bytes(),
                            label: None,
                        },
                        Action::Run {
                            argv: argv(&["netplan", "apply"]),
                            stdin: None,
                        },
                    ],
                },
            );
        }
        step(
            Phase::Network,
            "/etc/hosts entries of every host",
            Action::Edit {
                path: "/etc/hosts".into(),
                edit: Edit::HostsBlock {
                    marker: format!("one-scaleway provision {}", cluster.provision),
                    entries: cluster.hosts.iter().map(|h| (h.private_ip, h.name.clone())).collect(),
                },
                then: Vec::new(),
            },
        );
        if full {
            step(
                Phase::Network,
                "host firewall",
                Action::Run {
                    argv: argv(&["nft", "-f", "/dev/stdin"]),
                    stdin: Some(firewall(cluster).into_bytes()),
                },
            );
        }
    }
    if wanted(Phase::Evpn) {
        // Always: `install FILE` does not create the folder (a host whose
        // access phase is skipped has no oneadmin, but needs it all the same).
        let mut folder = argv(&["install", "-d"]);
        if let Some(owner) = &owner {
            folder.extend(argv(&["-o", owner, "-g", owner]));
        }
        folder.extend(argv(&[
            "/var/tmp/one",
            "/var/tmp/one/vnm",
            "/var/tmp/one/vnm/scaleway_evpn",
        ]));
        step(
            Phase::Evpn,
            "driver folder",
            Action::Run {
                argv: folder,
                stdin: None,
            },
        );
        step(
            Phase::Evpn,
            "scaleway-vnm",
            Action::Install {
                path: REMOTE_VNM.into(),
                mode: 0o755,
                owner: owner.clone(),
                content: Vec::new(),
                label: Some("the frontend's scaleway-vnm".into()),
            },
        );
        let mut run = Vec::new();
        if oneadmin {
            run.extend(argv(&["sudo", "-n", "-u", "oneadmin"]));
        }
        run.extend(argv(&[REMOTE_VNM, "--driver", "scaleway_evpn", "evpn-config", "-"]));
        step(
            Phase::Evpn,
            "FRR EVPN configuration and firewall",
            Action::Run {
                argv: run,
                stdin: Some(evpn_description(cluster).into_bytes()),
            },
        );
    }
    steps
}

/// `bgpd=yes` in FRR's daemons file.
pub fn edit_frr_daemons(text: &str) -> String {
    let mut found = false;
    let mut out: Vec<String> = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("bgpd=") {
                found = true;
                "bgpd=yes".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    if !found {
        out.push("bgpd=yes".into());
    }
    out.join("\n") + "\n"
}

/// Our block of `/etc/hosts`, replaced (or appended) between marker lines.
pub fn edit_hosts(text: &str, marker: &str, entries: &[(Ipv4Addr, String)]) -> String {
    let begin = format!("# {marker} begin");
    let end = format!("# {marker} end");
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line == begin {
            inside = true;
        } else if line == end {
            inside = false;
        } else if !inside {
            out.push(line.to_owned());
        }
    }
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    if !entries.is_empty() {
        out.push(begin);
        out.extend(entries.iter().map(|(ip, name)| format!("{ip} {name}")));
        out.push(end);
    }
    out.join("\n") + "\n"
}

/// Prefixes `sudo -n` unless the SSH user is root.
pub fn privileged(user: &str, argv: &[String]) -> Vec<String> {
    if user == "root" || argv.first().is_some_and(|w| w == "sudo") {
        argv.to_vec()
    } else {
        let mut v = vec!["sudo".to_owned(), "-n".to_owned()];
        v.extend(argv.iter().cloned());
        v
    }
}

/// The `install` command that writes a file from stdin.
pub fn install_argv(path: &str, mode: u32, owner: Option<&str>) -> Vec<String> {
    let mut v = argv(&["install", "-m", &format!("{mode:04o}")]);
    if let Some(o) = owner {
        v.extend(argv(&["-o", o, "-g", o]));
    }
    v.extend(argv(&["/dev/stdin", path]));
    v
}

/// The plan as text (for `--dry-run` and golden files).
pub fn render(host: &HostFacts, steps: &[Step], user: &str) -> String {
    let mut s = format!(
        "host {} ({}, private {}):\n",
        host.name, host.public_ip, host.private_ip
    );
    for (i, step) in steps.iter().enumerate() {
        let _ = writeln!(s, "  {:>2}. [{}] {}", i + 1, step.phase.as_str(), step.title);
        render_action(&mut s, &step.action, user, "        ");
    }
    s
}

fn render_action(s: &mut String, action: &Action, user: &str, indent: &str) {
    match action {
        Action::Run { argv, stdin } => {
            let _ = writeln!(s, "{indent}$ {}", privileged(user, argv).join(" "));
            if let Some(input) = stdin {
                let _ = writeln!(s, "{indent}  stdin:");
                for l in String::from_utf8_lossy(input).lines() {
                    let _ = writeln!(s, "{indent}  | {l}");
                }
            }
        }
        Action::Install {
            path,
            mode,
            owner,
            content,
            label,
        } => {
            let _ = writeln!(
                s,
                "{indent}$ {}",
                privileged(user, &install_argv(path, *mode, owner.as_deref())).join(" ")
            );
            match label {
                Some(l) => {
                    let _ = writeln!(s, "{indent}  stdin: {l}");
                }
                None => {
                    let _ = writeln!(s, "{indent}  stdin:");
                    for l in String::from_utf8_lossy(content).lines() {
                        let _ = writeln!(s, "{indent}  | {l}");
                    }
                }
            }
        }
        Action::Edit { path, edit, then } => {
            let what = match edit {
                Edit::FrrBgpd => "bgpd=yes".to_owned(),
                Edit::HostsBlock { marker, entries } => format!(
                    "the block \"# {marker}\": {}",
                    entries
                        .iter()
                        .map(|(ip, n)| format!("{ip} {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let _ = writeln!(s, "{indent}edit {path}: {what}");
            for t in then {
                let _ = writeln!(s, "{indent}  if changed: $ {}", privileged(user, t).join(" "));
            }
        }
        Action::Unless {
            argv,
            expect,
            otherwise,
        } => {
            let _ = writeln!(
                s,
                "{indent}unless `{}` shows {expect:?}:",
                privileged(user, argv).join(" ")
            );
            let deeper = format!("{indent}  ");
            for a in otherwise {
                render_action(s, a, user, &deeper);
            }
        }
    }
}

/// Output of a remote command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemoteOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs commands on hosts (SSH, or a fake in tests).
pub trait Remote: Sync {
    fn run(&self, host: Ipv4Addr, argv: &[String], stdin: &[u8]) -> Result<RemoteOutput, String>;

    /// Forgets what was learnt about a deleted host (its SSH host key).
    fn forget(&self, _host: Ipv4Addr) -> Result<(), String> {
        Ok(())
    }
}

/// Runs a plan on a host; `vnm` is the binary shipped by the `scaleway-vnm` step.
pub fn execute(
    remote: &dyn Remote,
    host: &HostFacts,
    steps: &[Step],
    user: &str,
    vnm: &[u8],
    progress: &dyn Fn(&str),
) -> Result<(), String> {
    for step in steps {
        progress(&format!("{} ({})", step.title, step.phase.as_str()));
        execute_action(remote, host, &step.action, user, vnm).map_err(|e| format!("{}: {e}", step.title))?;
    }
    Ok(())
}

fn checked(remote: &dyn Remote, host: Ipv4Addr, argv: &[String], stdin: &[u8]) -> Result<RemoteOutput, String> {
    if let Some(bad) = argv.iter().find(|w| !safe_word(w)) {
        return Err(format!("refusing to send {bad:?} to a remote shell"));
    }
    let out = remote.run(host, argv, stdin)?;
    if out.success {
        Ok(out)
    } else {
        let why = out
            .stderr
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("no message")
            .to_owned();
        Err(format!("`{}` failed on {host}: {why}", argv.join(" ")))
    }
}

fn execute_action(
    remote: &dyn Remote,
    host: &HostFacts,
    action: &Action,
    user: &str,
    vnm: &[u8],
) -> Result<(), String> {
    let ip = host.public_ip;
    match action {
        Action::Run { argv, stdin } => {
            checked(remote, ip, &privileged(user, argv), stdin.as_deref().unwrap_or(&[]))?;
        }
        Action::Install {
            path,
            mode,
            owner,
            content,
            label,
        } => {
            let bytes = if label.is_some() { vnm } else { content.as_slice() };
            checked(
                remote,
                ip,
                &privileged(user, &install_argv(path, *mode, owner.as_deref())),
                bytes,
            )?;
        }
        Action::Edit { path, edit, then } => {
            let current = checked(remote, ip, &privileged(user, &argv(&["cat", path])), &[])?.stdout;
            let wanted = match edit {
                Edit::FrrBgpd => edit_frr_daemons(&current),
                Edit::HostsBlock { marker, entries } => edit_hosts(&current, marker, entries),
            };
            if wanted != current {
                checked(
                    remote,
                    ip,
                    &privileged(user, &install_argv(path, 0o644, None)),
                    wanted.as_bytes(),
                )?;
                for t in then {
                    checked(remote, ip, &privileged(user, t), &[])?;
                }
            }
        }
        Action::Unless {
            argv,
            expect,
            otherwise,
        } => {
            let seen = remote.run(ip, &privileged(user, argv), &[])?;
            if !(seen.success && seen.stdout.contains(expect.as_str())) {
                for a in otherwise {
                    execute_action(remote, host, a, user, vnm)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sudoers_rules_allow_the_root_helper_only() {
        let rules: Vec<&str> = SUDOERS
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect();
        assert_eq!(
            rules,
            [format!("oneadmin ALL=(root) NOPASSWD: {ROOT_HELPER} root").as_str()]
        );
    }

    #[test]
    fn hosts_block_is_replaced_in_place_and_removed_when_empty() {
        let base = "127.0.0.1 localhost\n::1 localhost\n";
        let entries = vec![
            (Ipv4Addr::new(172, 18, 0, 2), "edge-host1".to_owned()),
            (Ipv4Addr::new(172, 18, 0, 3), "edge-host2".to_owned()),
        ];
        let once = edit_hosts(base, "one-scaleway provision edge", &entries);
        assert_eq!(edit_hosts(&once, "one-scaleway provision edge", &entries), once);
        assert!(once.contains("# one-scaleway provision edge begin\n172.18.0.2 edge-host1\n"));
        let fewer = edit_hosts(&once, "one-scaleway provision edge", &entries[..1]);
        assert!(!fewer.contains("edge-host2"));
        assert_eq!(edit_hosts(&once, "one-scaleway provision edge", &[]), base);
    }

    #[test]
    fn the_evpn_description_is_what_the_host_driver_reads() {
        let host = |i: u8| HostFacts {
            name: format!("edge-host{i}"),
            public_ip: Ipv4Addr::new(192, 0, 2, i),
            private_ip: Ipv4Addr::new(172, 18, 0, 1 + i),
            vlan: Some(7),
            uplink: None,
        };
        let cluster = ClusterFacts {
            provision: "edge".into(),
            hypervisor_package: "opennebula-node-kvm".into(),
            ubuntu: "24.04".into(),
            opennebula_version: "7.0".into(),
            private_cidr: "172.18.0.0/24".parse().unwrap(),
            hosts: (1..=3).map(host).collect(),
            authorized_keys: String::new(),
            frontend: None,
            skip: Vec::new(),
            ssh_user: "ubuntu".into(),
        };
        let parsed = evpn::cluster::Cluster::parse(&evpn_description(&cluster)).unwrap();
        parsed.validate().unwrap();
        assert_eq!(parsed.reflector_addresses().len(), 2);
        // Every word sent to a host passes the shell-safety check.
        for h in &cluster.hosts {
            for step in plan(&cluster, h, true) {
                let words: Vec<String> = match &step.action {
                    Action::Run { argv, .. } => argv.clone(),
                    Action::Install { path, mode, owner, .. } => install_argv(path, *mode, owner.as_deref()),
                    Action::Edit { path, then, .. } => then.iter().flatten().cloned().chain([path.clone()]).collect(),
                    Action::Unless { argv, .. } => argv.clone(),
                };
                assert!(words.iter().all(|w| safe_word(w)), "{words:?}");
            }
        }
    }

    #[test]
    fn without_the_access_phase_the_driver_folder_is_still_made() {
        let host = HostFacts {
            name: "edge-host1".into(),
            public_ip: Ipv4Addr::new(192, 0, 2, 1),
            private_ip: Ipv4Addr::new(172, 18, 0, 2),
            vlan: Some(7),
            uplink: None,
        };
        let cluster = ClusterFacts {
            provision: "edge".into(),
            hypervisor_package: "opennebula-node-kvm".into(),
            ubuntu: "24.04".into(),
            opennebula_version: "7.0".into(),
            private_cidr: "172.18.0.0/24".parse().unwrap(),
            hosts: vec![host.clone()],
            authorized_keys: String::new(),
            frontend: None,
            skip: vec![Phase::Packages, Phase::Access, Phase::Services],
            ssh_user: "root".into(),
        };
        let steps = plan(&cluster, &host, true);
        let at = |title: &str| steps.iter().position(|s| s.title == title).unwrap();
        assert!(at("driver folder") < at("scaleway-vnm"));
        assert_eq!(
            steps[at("driver folder")].action,
            Action::Run {
                argv: argv(&[
                    "install",
                    "-d",
                    "/var/tmp/one",
                    "/var/tmp/one/vnm",
                    "/var/tmp/one/vnm/scaleway_evpn"
                ]),
                stdin: None
            }
        );
    }

    #[test]
    fn frr_daemons() {
        assert_eq!(edit_frr_daemons("zebra=yes\nbgpd=no\n"), "zebra=yes\nbgpd=yes\n");
        assert_eq!(edit_frr_daemons("zebra=yes\n"), "zebra=yes\nbgpd=yes\n");
    }

    #[test]
    fn words_that_could_change_meaning_in_a_shell_are_refused() {
        for bad in [
            "", "a b", "$(x)", "a;b", "`x`", "a|b", "a'b", "a\"b", "a\nb", "*", "~root", "a&b",
        ] {
            assert!(!safe_word(bad), "{bad:?}");
        }
        for good in [
            "/etc/hosts",
            "bgpd=yes",
            "--driver",
            "0755",
            "172.18.0.0/24",
            "oneadmin@host",
        ] {
            assert!(safe_word(good), "{good:?}");
        }
    }
}
