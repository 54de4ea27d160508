//! A host's typed steps, phase by phase ([`plan`], pure, golden-tested).

use super::*;

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
