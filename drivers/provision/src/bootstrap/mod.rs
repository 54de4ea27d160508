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

mod files;
mod run;
mod steps;

use files::{SYSCTL, netplan, oneadmin_folder};
pub use files::{edit_frr_daemons, edit_hosts, evpn_description, firewall};
pub use run::{Remote, RemoteOutput, execute, install_argv, privileged, render};
pub use steps::plan;

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

const SUDOERS: &str = include_str!("../../../../share/host/sudoers-one-scaleway");
const RECONCILE_UNIT: &str = include_str!("../../../../share/host/one-scaleway-reconcile.service");

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
        let parsed = private_plan::cluster::Cluster::parse(&evpn_description(&cluster)).unwrap();
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
