//! Benchmark 5: EVPN, the time from `pre` on a host to the first packet
//! between VMs on two hosts, with real FRR (zebra + bgpd per host
//! namespace) on an underlay bridge, ported from
//! `hooks/vnm/tests/evpn_netns.rs`. The driver is the release
//! `scaleway-vnm` through its `scaleway_evpn` action files.
//!
//! - A new host: host B's `evpn-config` (it joins the cluster: BGP session
//!   to the reflector A), then `pre` of a VM whose VNI A already has,
//!   until B's VM gets an echo reply from A's VM.
//! - A VNI new on B (B already in the cluster), repeated: `pre` on B until
//!   the first reply. Baseline: the same segment made by hand with `ip`
//!   (VXLAN device, bridge: what OpenNebula's stock vxlan driver runs in
//!   EVPN mode), FRR untouched (`advertise-all-vni` picks the VNI up).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::cloud::{b64, vm_document};
use crate::lab::{self, Host, VmNs};
use crate::table::{Row, fmt_ms};
use crate::util::{self, Bins, NetNs, TempDir};

const B: &str = "5 EVPN first packet";
/// How long A's side of a segment is left to be advertised before B starts.
const SETTLE: Duration = Duration::from_secs(3);
const LIMIT: Duration = Duration::from_secs(30);

pub fn legend() -> Vec<String> {
    vec![format!(
        "5: two hosts (namespaces, FRR {} per host, host A route reflector) on an underlay bridge; time from the \
         start of the action on host B to the first ICMP echo reply from A's VM to B's VM (echo every 20 ms); B's VM \
         is plugged right after `pre` as libvirt would; A's side of each segment is in place {} s before; \
         baseline = the segment made by hand on B with 5 `ip` commands (OpenNebula's vxlan driver in EVPN mode), \
         FRR untouched; median of the repetitions",
        "zebra+bgpd",
        SETTLE.as_secs()
    )]
}

pub fn run(bins: &Bins, reps: usize) -> Vec<Row> {
    match evpn(bins, reps) {
        Ok(rows) => rows,
        Err(e) => vec![Row::failed(B, "lab", &format!("{e:#}"))],
    }
}

fn mac(vm: u64) -> String {
    format!("02:00:c0:a8:{:02x}:{:02x}", (vm >> 8) & 0xff, vm & 0xff)
}

/// The segment of `vni` made by hand on `host` (no driver, no FRR change).
fn by_hand(host: &Host, vni: u32) -> anyhow::Result<()> {
    let (vx, br) = (format!("vxlan{vni}"), format!("onebr.{vni}"));
    let (id, local) = (vni.to_string(), host.underlay.to_string());
    host.ns.ip(&[
        "link",
        "add",
        &vx,
        "type",
        "vxlan",
        "id",
        &id,
        "dev",
        "scwpriv0",
        "local",
        &local,
        "dstport",
        "4789",
        "nolearning",
    ])?;
    host.ns.ip(&["link", "add", "name", &br, "type", "bridge"])?;
    host.ns.ip(&["link", "set", &vx, "master", &br, "mtu", "1450"])?;
    host.ns.ip(&["link", "set", &vx, "up"])?;
    host.ns.ip(&["link", "set", &br, "up"])?;
    Ok(())
}

fn evpn(bins: &Bins, reps: usize) -> anyhow::Result<Vec<Row>> {
    let dir = TempDir::new("evpn")?;
    let fabric = NetNs::new("fab")?;
    fabric.ip(&["link", "add", "name", "br-ul", "type", "bridge"])?;
    fabric.ip(&["link", "set", "br-ul", "up"])?;
    let a = Host::new("eva", Ipv4Addr::new(10, 0, 0, 2), Some(&fabric))?;
    let b = Host::new("evb", Ipv4Addr::new(10, 0, 0, 3), Some(&fabric))?;
    let desc = lab::description(dir.path(), &[a.underlay, b.underlay], 1)?;
    let desc = desc.display().to_string();
    let links = dir.join("remotes");
    crate::cloud::link_actions(bins, &links)?;
    let pre = links.join("vnm/scaleway_evpn/pre");
    let config = ["--driver", "scaleway_evpn", "evpn-config", desc.as_str()];
    let doc = |vm: u64, vni: u32, host: &str| vm_document(vm, &[], Some(vni), host, 3).map(|d| b64(&d));
    let ip = |vni: u32, n: u8| Ipv4Addr::new(192, 168, u8::try_from(vni % 250).unwrap_or(0), n);
    let mut vms: Vec<VmNs> = Vec::new();
    let mut rows = Vec::new();

    // A new host joins: evpn-config on B, then pre of a VM on VNI 100.
    a.run(&bins.vnm, &config, "", &[])?;
    a.run(&pre, &[], &doc(1, 100, "edge-host1")?, &[])?;
    vms.push(VmNs::plug(&a, "one-1-0", "onebr.100", &mac(1), ip(100, 1))?);
    std::thread::sleep(SETTLE);
    let t0 = Instant::now();
    let flood = a.flood_ready(100, b.underlay, t0, LIMIT);
    b.run(&bins.vnm, &config, "", &[])?;
    let configured = t0.elapsed();
    b.run(&pre, &[], &doc(2, 100, "edge-host2")?, &[])?;
    let pre_done = t0.elapsed();
    let vb = VmNs::plug(&b, "one-2-0", "onebr.100", &mac(2), ip(100, 2))?;
    let first = vb.first_reply(ip(100, 1), t0, LIMIT)?;
    let flooding = flood.join().ok().flatten();
    vms.push(vb);
    rows.push(match first {
        Some(t) => Row::new(
            B,
            "new host: evpn-config + pre on B (1 run)",
            format!(
                "{} (evpn-config {}, pre {}, A floods to B {})",
                fmt_ms(util::ms(t)),
                fmt_ms(util::ms(configured)),
                fmt_ms(util::ms(pre_done - configured)),
                flooding.map_or_else(|| "never".to_owned(), |f| fmt_ms(util::ms(f)))
            ),
            "-",
        ),
        None => Row::failed(B, "new host", &format!("no reply within {} s", LIMIT.as_secs())),
    });
    if util::wait_for(Duration::from_secs(10), || b.bgp_up(a.underlay)).is_none() {
        anyhow::bail!("B's BGP session to A is not established");
    }

    // A VNI new on B, repeated: ours (pre) and by hand (ip).
    let (mut ours, mut ours_pre, mut base, mut base_ip) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ours_flood, mut base_flood) = (Vec::new(), Vec::new());
    for r in 0..reps {
        let r32 = u32::try_from(r).unwrap_or(0);
        let (vni_ours, vni_hand) = (101 + r32, 201 + r32);
        let vm = 10 * (u64::from(r32) + 1);
        a.run(&pre, &[], &doc(vm, vni_ours, "edge-host1")?, &[])?;
        vms.push(VmNs::plug(
            &a,
            &format!("one-{vm}-0"),
            &format!("onebr.{vni_ours}"),
            &mac(vm),
            ip(vni_ours, 1),
        )?);
        by_hand(&a, vni_hand)?;
        vms.push(VmNs::plug(
            &a,
            &format!("hand-{vni_hand}"),
            &format!("onebr.{vni_hand}"),
            &mac(vm + 1),
            ip(vni_hand, 1),
        )?);
        std::thread::sleep(SETTLE);
        let t0 = Instant::now();
        let flood = a.flood_ready(vni_ours, b.underlay, t0, LIMIT);
        b.run(&pre, &[], &doc(vm + 2, vni_ours, "edge-host2")?, &[])?;
        ours_pre.push(util::ms(t0.elapsed()));
        let v = VmNs::plug(
            &b,
            &format!("one-{}-0", vm + 2),
            &format!("onebr.{vni_ours}"),
            &mac(vm + 2),
            ip(vni_ours, 2),
        )?;
        let first = v.first_reply(ip(vni_ours, 1), t0, LIMIT)?;
        vms.push(v);
        ours.push(first.map_or(f64::NAN, util::ms));
        ours_flood.push(flood.join().ok().flatten().map_or(f64::NAN, util::ms));
        let t0 = Instant::now();
        let flood = a.flood_ready(vni_hand, b.underlay, t0, LIMIT);
        by_hand(&b, vni_hand)?;
        base_ip.push(util::ms(t0.elapsed()));
        let v = VmNs::plug(
            &b,
            &format!("hand-{vni_hand}"),
            &format!("onebr.{vni_hand}"),
            &mac(vm + 3),
            ip(vni_hand, 2),
        )?;
        let first = v.first_reply(ip(vni_hand, 1), t0, LIMIT)?;
        vms.push(v);
        base.push(first.map_or(f64::NAN, util::ms));
        base_flood.push(flood.join().ok().flatten().map_or(f64::NAN, util::ms));
    }
    let lost = |v: &[f64]| v.iter().filter(|x| x.is_nan()).count();
    let (o, h) = (util::median_ms(&ours), util::median_ms(&base));
    let mut ours_text = format!(
        "{} (pre {}, A floods to B {})",
        fmt_ms(o),
        fmt_ms(util::median_ms(&ours_pre)),
        fmt_ms(util::median_ms(&ours_flood))
    );
    if lost(&ours) > 0 {
        ours_text.push_str(&format!(", {} of {reps} never answered", lost(&ours)));
    }
    let mut base_text = format!(
        "by hand {} (ip {}, A floods to B {})",
        fmt_ms(h),
        fmt_ms(util::median_ms(&base_ip)),
        fmt_ms(util::median_ms(&base_flood))
    );
    if lost(&base) > 0 {
        base_text.push_str(&format!(", {} of {reps} never answered", lost(&base)));
    }
    rows.push(
        Row::new(
            B,
            format!(
                "VNI new on B: pre on B ({reps} run{})",
                if reps == 1 { "" } else { "s" }
            ),
            ours_text,
            base_text,
        )
        .ratio(o, h),
    );
    drop(vms);
    Ok(rows)
}
