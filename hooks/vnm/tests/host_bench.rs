//! Benchmark (not a timed test): the host side of driver `scaleway` with
//! N = 1, 100, 1000, 5000 public addresses already on a host, inside a
//! fresh network namespace per N. Prints, for one more VM with one NIC:
//! the time of its `pre`, of a second `pre` (nothing to do), of its
//! `clean`, and the processes each starts; and how long `reconcile` takes
//! to put all N back (one nft transaction, rtnetlink for the rest).
//!
//! `sudo cargo test -p scaleway-vnm --test host_bench -- --ignored --nocapture`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use host_tools::Tools;
use nix::sched::CloneFlags;
use opennebula::driver::{Level, Log};
use opennebula::vm::Vm;
use public_apply::Host;
use public_apply::ip::IpNetlink;
use public_apply::nft::NftCommand;
use public_apply::record::{Record, RecordFile};
use public_apply::sysctl::ProcSysctl;
use public_plan::endpoint::BridgeName;
use public_plan::{Endpoint, Owner, Port, Public};
use scaleway_vnm::host::{Settings, clean_host_with, pre_with, reconcile_with};
use test_support::{NetNs, TempDir, require_root};

/// Address i: private 172.20.0.0 + 2i (its gateway + 1), flexible IP 198.18.0.0 + i.
fn addresses(i: u32) -> (Ipv4Addr, Ipv4Addr, Ipv4Addr) {
    let private = u32::from(Ipv4Addr::new(172, 20, 0, 0)) + 2 * i;
    (
        Ipv4Addr::from(private),
        Ipv4Addr::from(private + 1),
        Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i),
    )
}

fn endpoint(i: u32) -> Endpoint {
    let (ip, gateway, external) = addresses(i);
    Endpoint {
        owner: Owner {
            vm: u64::from(i),
            nic_id: 0,
            alias: None,
        },
        bridge: BridgeName::parse("scwpub0").unwrap(),
        public: Public::V4 { ip, gateway, external },
        port: Some(Port {
            tap: BridgeName::parse(&format!("one-{i}-0")).unwrap(),
            mac: [2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8],
        }),
    }
}

fn vm(i: u32) -> Vm {
    let (ip, gateway, external) = addresses(i);
    let doc = format!(
        "<VM><ID>{i}</ID><TEMPLATE><NIC><NIC_ID>0</NIC_ID><VN_MAD>scaleway</VN_MAD><BRIDGE>scwpub0</BRIDGE>\
         <TARGET>one-{i}-0</TARGET><MAC>02:00:00:{:02x}:{:02x}:{:02x}</MAC><IP>{ip}</IP><GATEWAY>{gateway}</GATEWAY><EXTERNAL_IP>{external}</EXTERNAL_IP></NIC></TEMPLATE></VM>",
        (i >> 16) as u8,
        (i >> 8) as u8,
        i as u8
    );
    Vm::from_element(&opennebula::xml::parse(doc.as_bytes()).unwrap()).unwrap()
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// One size, inside namespace `ns`: returns the table's row.
fn measure(ns: &str, n: u32, dir: &std::path::Path) -> String {
    let path = format!("/run/netns/{ns}");
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
        let tools = Tools::direct(Duration::from_secs(120));
        let (nft, ip, sysctl) = (
            NftCommand { tools: &tools },
            IpNetlink { tools: &tools },
            ProcSysctl::new(&tools),
        );
        let host = Host {
            nft: &nft,
            ip: &ip,
            sysctl: &sysctl,
            helper: None,
        };
        let settings = Settings {
            record: dir.join("vnm-public.json"),
            lock: dir.join("host.lock"),
            lock_timeout: Duration::from_secs(60),
            dry_run: false,
        };
        RecordFile::new(&settings.record)
            .save(&Record {
                endpoints: (0..n).map(endpoint).collect(),
                ..Record::default()
            })
            .unwrap();
        let mut sink = Vec::new();
        let mut log = Log::new(&mut sink, Level::Warn, "bench");
        let t = Instant::now();
        reconcile_with(&mut log, host, &settings).unwrap();
        let fill = t.elapsed();
        let one = vm(n);
        let step = |f: &dyn Fn(&mut Log<'_>) -> anyhow::Result<opennebula::driver::Output>, log: &mut Log<'_>| {
            let before = tools.spawned();
            let t = Instant::now();
            f(log).unwrap();
            (t.elapsed(), tools.spawned() - before)
        };
        let (pre, pre_procs) = step(&|log| pre_with(&one, log, host, &settings), &mut log);
        let (again, again_procs) = step(&|log| pre_with(&one, log, host, &settings), &mut log);
        let (clean, clean_procs) = step(&|log| clean_host_with(&one, log, host, &settings), &mut log);
        format!(
            "{n:>6} {:>10} {:>8} {:>6} {:>10} {:>6} {:>9} {:>6}",
            ms(fill),
            ms(pre),
            pre_procs,
            ms(again),
            again_procs,
            ms(clean),
            clean_procs
        )
    })
    .join()
    .unwrap()
}

#[test]
#[ignore = "benchmark: needs root; run with --ignored --nocapture"]
fn host_apply_time_for_one_more_nic() {
    require_root();
    println!(
        "{:>6} {:>10} {:>8} {:>6} {:>10} {:>6} {:>9} {:>6}",
        "N", "fill_ms", "pre_ms", "procs", "again_ms", "procs", "clean_ms", "procs"
    );
    for n in [1, 100, 1000, 5000] {
        let ns = NetNs::new("bench");
        // An uplink and a default route, as every host has.
        for args in [
            &["ip", "link", "add", "uplink0", "type", "veth", "peer", "uplink1"][..],
            &["ip", "link", "set", "uplink0", "up"],
            &["ip", "link", "set", "uplink1", "up"],
            &["ip", "addr", "add", "10.20.0.5/24", "dev", "uplink0"],
            &["ip", "route", "add", "default", "via", "10.20.0.1"],
        ] {
            ns.run_ok(args, b"");
        }
        let dir = TempDir::new("vnm-bench");
        println!("{}", measure(ns.name(), n, dir.path()));
    }
    println!(
        "fill = reconcile of N recorded NICs on an empty host (one nft transaction, the links, routes and neighbour entries through rtnetlink);"
    );
    println!(
        "pre/again/clean = one more VM with one NIC; procs = processes started: nft when more than elements change (elements: nf_tables netlink; links, routes, neighbours: rtnetlink; sysctls: file writes)"
    );
}
