//! Benchmark 3: the host's cost of one more public NIC when N are already
//! there, on a real kernel, inside namespaces the bench makes (one for our
//! driver, one for the baseline, per N). Ours: the release `scaleway-vnm`
//! through its action files (`pre`, `clean_host`; the N recorded NICs put
//! in place by `reconcile`: one nft transaction, rtnetlink). Baseline:
//! the existing implementation's approach, one `iptables` (iptables-nft)
//! process per rule, 2 rules per IP, as `shared/lab/03-nat-bench.sh` (the N
//! existing rules loaded with one `iptables-restore`).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use public_apply::record::{Record, RecordFile};
use public_plan::endpoint::BridgeName;
use public_plan::filter::NicFilter;
use public_plan::{Endpoint, Owner, Port, Public};

use crate::cloud::{PublicNic, b64, vm_document};
use crate::measure::SYSTEM_PATH;
use crate::table::{Row, fmt_ms};
use crate::util::{self, Bins, NetNs, TempDir};

const B: &str = "3 host apply";

/// Address i: private 172.20.0.0 + 2i (gateway + 1), flexible IP 198.18.0.0 + i.
fn addresses(i: u32) -> (Ipv4Addr, Ipv4Addr, Ipv4Addr) {
    let private = u32::from(Ipv4Addr::new(172, 20, 0, 0)) + 2 * i;
    (
        Ipv4Addr::from(private),
        Ipv4Addr::from(private + 1),
        Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i),
    )
}

pub fn legend() -> Vec<String> {
    vec![
        "3: real kernel in namespaces made for the run (each with an uplink and a default route, as a host has); ours = the release scaleway-vnm `pre` (add) / `clean_host` \
         (remove) of one VM with one public NIC with N already on the host (bridge, /32 route, proxy ARP, a permanent \
         neighbour entry, 2 NAT map elements, 3 port guard elements, 2 security group verdict map elements (jumping to \
         the chains of its rules when they restrict, shared by the NICs with the same rules), record; the N others likewise, each NIC in OpenNebula's default security group as on a real \
         host: open both ways, so no chain and its verdict map elements `continue`; `restricted group`: every NIC in \
         group 100 of the document a real oned sent for a group with every rule form (ports, ranges, ICMP, IPsec; both \
         directions restricted): two chains, shared by the N+1 NICs), median of the repetitions; `all N at once` = `reconcile` of N recorded NICs on a host as after a reboot \
         (no table, no bridge; each repetition after `nft flush ruleset` and the bridge deleted). Baseline \
         = the existing implementation's NAT only: 2 `iptables -w -t nat -A/-D` processes per IP (iptables-nft), \
         the N existing rules loaded by one `iptables-restore --noflush` into no table (timed as the `all N` \
         baseline, each repetition after `nft flush ruleset`); it does \
         no route, proxy ARP or record, so it is a lower bound of that implementation; `as oneadmin` (N up to 100, \
         the sizes a host has): ours with ONE_SCALEWAY_SUDO=always (what needs root in one `sudo -n` of the root \
         helper per action, as in production), the baseline as OpenNebula's drivers run it, `sudo -n iptables`"
            .into(),
    ]
}

pub fn run(bins: &Bins, sizes: &[u32], reps: usize) -> Vec<Row> {
    if !util::have("iptables") || !util::have("iptables-restore") {
        return vec![Row::skipped(
            B,
            "baseline not measured: iptables is not installed (Debian: apt-get install iptables, the nft backend)",
        )]
        .into_iter()
        .chain(sizes.iter().flat_map(|&n| ours_only(bins, n, reps)))
        .collect();
    }
    let mut rows = Vec::new();
    let mut bases = Vec::new();
    for &n in sizes {
        let ours = measure_ours(bins, n, reps, As::Root);
        let base = measure_iptables(n, reps, As::Root);
        match (ours, base) {
            (Ok(o), Ok(b)) => {
                rows.extend(rows_of(n, &o, Some(&b), As::Root));
                bases.push((n, b));
            }
            (Err(e), _) => rows.push(Row::failed(B, &format!("N={n}"), &format!("ours: {e:#}"))),
            (_, Err(e)) => rows.push(Row::failed(B, &format!("N={n}"), &format!("iptables: {e:#}"))),
        }
    }
    // Every NIC in a restrictive group (both directions): two chains per
    // NIC, against the same baseline.
    for (n, b) in bases.into_iter().filter(|(n, _)| *n <= 1000) {
        match measure_ours(bins, n, reps, As::Restricted) {
            Ok(o) => rows.extend(rows_of(n, &o, Some(&b), As::Restricted)),
            Err(e) => rows.push(Row::failed(B, &format!("N={n}, restricted"), &format!("ours: {e:#}"))),
        }
    }
    // As in production: the driver as oneadmin, what needs root through
    // `sudo -n` of the root helper (one request per action); the baseline
    // as OpenNebula's drivers run iptables, `sudo -n iptables`. At the sizes
    // a host has (Scaleway: 64 flexible IPs per server).
    if util::have("sudo") {
        for &n in sizes.iter().filter(|n| **n <= 100) {
            match (
                measure_ours(bins, n, reps, As::Sudo),
                measure_iptables(n, reps, As::Sudo),
            ) {
                (Ok(o), Ok(b)) => rows.extend(rows_of(n, &o, Some(&b), As::Sudo).into_iter().take(2)),
                (Err(e), _) => rows.push(Row::failed(B, &format!("N={n}, sudo"), &format!("ours: {e:#}"))),
                (_, Err(e)) => rows.push(Row::failed(B, &format!("N={n}, sudo"), &format!("iptables: {e:#}"))),
            }
        }
    }
    rows
}

/// How the driver (and the baseline) get root.
#[derive(Clone, Copy, PartialEq, Eq)]
enum As {
    /// Run as root.
    Root,
    /// Run as oneadmin would: through `sudo -n` (of the root helper, for ours).
    Sudo,
    /// Run as root, every NIC in one restrictive group (the group's two
    /// chains, shared).
    Restricted,
}

fn ours_only(bins: &Bins, n: u32, reps: usize) -> Vec<Row> {
    match measure_ours(bins, n, reps, As::Root) {
        Ok(o) => rows_of(n, &o, None, As::Root),
        Err(e) => vec![Row::failed(B, &format!("N={n}"), &format!("{e:#}"))],
    }
}

/// Medians in ms: (add one, remove one, all N at once).
type Figures = (f64, f64, f64);

fn rows_of(n: u32, ours: &Figures, base: Option<&Figures>, how: As) -> Vec<Row> {
    let labels = match how {
        As::Root => [
            ("add one NIC", "pre", "2× iptables -A"),
            ("remove one NIC", "clean_host", "2× iptables -D"),
            ("all N at once", "reconcile", "iptables-restore"),
        ],
        As::Sudo => [
            ("add one NIC, as oneadmin", "pre", "2× sudo iptables -A"),
            ("remove one NIC, as oneadmin", "clean_host", "2× sudo iptables -D"),
            ("all N at once, as oneadmin", "reconcile", "sudo iptables-restore"),
        ],
        As::Restricted => [
            ("add one NIC, restricted group", "pre", "2× iptables -A"),
            ("remove one NIC, restricted group", "clean_host", "2× iptables -D"),
            ("all N at once, restricted group", "reconcile", "iptables-restore"),
        ],
    };
    let o = [ours.0, ours.1, ours.2];
    let b = base.map(|b| [b.0, b.1, b.2]);
    labels
        .iter()
        .enumerate()
        .map(|(i, (what, ours_how, base_how))| {
            let base_text = b.map_or("-".to_owned(), |b| format!("{base_how} {}", fmt_ms(b[i])));
            Row::new(
                B,
                format!("N={n}: {what}"),
                format!("{ours_how} {}", fmt_ms(o[i])),
                base_text,
            )
            .ratio(o[i], b.map_or(f64::NAN, |b| b[i]))
        })
        .collect()
}

fn measure_ours(bins: &Bins, n: u32, reps: usize, how: As) -> anyhow::Result<Figures> {
    let ns = NetNs::new("nat")?.with_uplink()?;
    let dir = TempDir::new("nat")?;
    let links = dir.join("remotes");
    crate::cloud::link_actions(bins, &links)?;
    let state = dir.join("state");
    std::fs::create_dir_all(&state)?;
    let endpoints: Vec<Endpoint> = (0..n)
        .map(|i| {
            let (ip, gateway, external) = addresses(i);
            Ok(Endpoint {
                owner: Owner {
                    vm: u64::from(i),
                    nic_id: 0,
                    alias: None,
                },
                bridge: BridgeName::parse("scwpub0").map_err(anyhow::Error::msg)?,
                public: Public::V4 { ip, gateway, external },
                port: Some(Port {
                    tap: BridgeName::parse(&format!("one-{i}-0")).map_err(anyhow::Error::msg)?,
                    mac: [2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8],
                }),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let (ip, gateway, external) = addresses(n);
    let nic = PublicNic {
        nic_id: 0,
        vnet: 5,
        ar_id: 0,
        ip: ip.to_string(),
        gateway: gateway.to_string(),
        external: external.to_string(),
    };
    let id = u64::from(n) + 1;
    let xml = if how == As::Restricted {
        // The document a real oned sent for a VM in group 100 (every rule
        // form, both directions restricted: `real_oned_secgroups.rs`), its
        // NIC given this run's addresses and group 100 only, as the
        // namespace tests do.
        let mut doc = test_support::set_attribute(
            &test_support::fixture("vnm/secgroup-scaleway-pre.xml"),
            "VM",
            "",
            "",
            "ID",
            Some(&id.to_string()),
        );
        for (attr, value) in [
            ("IP", nic.ip.clone()),
            ("GATEWAY", nic.gateway.clone()),
            ("EXTERNAL_IP", nic.external.clone()),
            ("MAC", crate::cloud::mac_of(&nic.ip)),
            ("TARGET", format!("one-{id}-0")),
            ("BRIDGE", "scwpub0".to_owned()),
            ("SECURITY_GROUPS", "100".to_owned()),
        ] {
            doc = test_support::set_attribute(&doc, "NIC", "NIC_ID", "0", attr, Some(&value));
        }
        doc
    } else {
        vm_document(id, &[nic], None, "edge-host1", 3)?
    };
    // Every NIC in OpenNebula is in a security group (the default one, 0,
    // unless the network names others): the N NICs already on the host
    // have the measured VM's rules (those of the captured document: the
    // default group), hence their chains, as on a real host.
    let vm = opennebula::xml::parse(xml.as_bytes())
        .map_err(|e| anyhow::anyhow!("the VM document: {e}"))
        .and_then(|root| opennebula::vm::Vm::from_element(&root).map_err(|e| anyhow::anyhow!("{e}")))?;
    let rules = match endpoints.first() {
        Some(e) => public_plan::filter::select(&vm, &[*e])?.remove(0).rules,
        None => Vec::new(),
    };
    let filters = endpoints
        .iter()
        .map(|e| NicFilter {
            vm: e.owner.vm,
            nic_id: e.owner.nic_id,
            rules: rules.clone(),
        })
        .collect();
    RecordFile::new(state.join("vnm-public.json"))
        .save(&Record {
            endpoints,
            filters,
            ..Record::default()
        })
        .context("writing the record")?;
    let doc = b64(&xml);
    let env = [
        ("PATH".to_owned(), SYSTEM_PATH.to_owned()),
        ("ONE_SCALEWAY_STATE_DIR".into(), state.display().to_string()),
        (
            "ONE_SCALEWAY_HOST_LOCK".into(),
            dir.join("host.lock").display().to_string(),
        ),
        (
            "ONE_SCALEWAY_SUDO".into(),
            if how == As::Sudo { "always" } else { "never" }.into(),
        ),
        ("ONE_SCALEWAY_ROOT_HELPER".into(), bins.vnm.display().to_string()),
    ];
    let (vnm, pre, clean) = (
        bins.vnm.clone(),
        links.join("vnm/scaleway/pre"),
        links.join("vnm/scaleway/clean_host"),
    );
    util::in_ns(ns.name(), move || -> anyhow::Result<Figures> {
        let once = |program: &Path, args: &[&str], stdin: &str| -> anyhow::Result<f64> {
            let mut cmd = Command::new(program);
            cmd.env_clear().envs(env.iter().cloned()).args(args);
            let ran = util::run(&mut cmd, stdin.as_bytes(), Duration::from_secs(300))?;
            Ok(util::ms(ran.check(&program.display().to_string())?.elapsed))
        };
        // `reconcile` after a reboot: our tables gone, and the bridge with
        // its routes and entries; the record kept.
        let mut fills = Vec::new();
        for rep in 0..reps {
            if rep > 0 {
                util::run_ok(&["nft", "flush", "ruleset"], b"")?;
                util::run_ok(&["ip", "link", "del", "scwpub0"], b"")?;
            }
            fills.push(once(&vnm, &["--driver", "scaleway", "reconcile"], "")?);
        }
        let fill = util::median_ms(&fills);
        let (mut adds, mut dels) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            adds.push(once(&pre, &[], &doc)?);
            dels.push(once(&clean, &[], &doc)?);
        }
        Ok((util::median_ms(&adds), util::median_ms(&dels), fill))
    })?
}

fn iptables(args: &[&str], how: As) -> anyhow::Result<f64> {
    let mut cmd = match how {
        As::Root | As::Restricted => Command::new("iptables"),
        As::Sudo => {
            let mut c = Command::new("sudo");
            c.args(["-n", "iptables"]);
            c
        }
    };
    cmd.args(["-w", "-t", "nat"]).args(args);
    let ran = util::run(&mut cmd, b"", Duration::from_secs(120))?;
    Ok(util::ms(ran.check(&format!("iptables {}", args.join(" ")))?.elapsed))
}

/// The two rules of IP `i`: (chain, match, address, target, to).
fn rules(i: u32) -> [[String; 6]; 2] {
    let (private, _, public) = addresses(i);
    [
        [
            "POSTROUTING".into(),
            "-s".into(),
            private.to_string(),
            "SNAT".into(),
            "--to-source".into(),
            public.to_string(),
        ],
        [
            "PREROUTING".into(),
            "-d".into(),
            public.to_string(),
            "DNAT".into(),
            "--to-destination".into(),
            private.to_string(),
        ],
    ]
}

fn measure_iptables(n: u32, reps: usize, how: As) -> anyhow::Result<Figures> {
    let ns = NetNs::new("ipt")?.with_uplink()?;
    util::in_ns(ns.name(), move || -> anyhow::Result<Figures> {
        let mut script = String::from("*nat\n");
        for i in 0..n {
            for [chain, m, a, target, to, b] in rules(i) {
                script.push_str(&format!("-A {chain} {m} {a} -j {target} {to} {b}\n"));
            }
        }
        script.push_str("COMMIT\n");
        // After a reboot: no table.
        let mut fills = Vec::new();
        for rep in 0..reps {
            if rep > 0 {
                util::run_ok(&["nft", "flush", "ruleset"], b"")?;
            }
            let mut cmd = Command::new("iptables-restore");
            cmd.args(["-w", "--noflush"]);
            fills.push(util::ms(
                util::run(&mut cmd, script.as_bytes(), Duration::from_secs(300))?
                    .check("iptables-restore")?
                    .elapsed,
            ));
        }
        let fill = util::median_ms(&fills);
        let one = |op: &str| -> anyhow::Result<f64> {
            let mut total = 0.0;
            for [chain, m, a, target, to, b] in rules(n) {
                total += iptables(&[op, &chain, &m, &a, "-j", &target, &to, &b], how)?;
            }
            Ok(total)
        };
        let (mut adds, mut dels) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            adds.push(one("-A")?);
            dels.push(one("-D")?);
        }
        Ok((util::median_ms(&adds), util::median_ms(&dels), fill))
    })?
}
