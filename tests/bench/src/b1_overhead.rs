//! Benchmark 1: the drivers' own cost per action (wall time, median of R
//! runs, and peak memory), with the Scaleway and kernel work taken out: the
//! emulator on loopback at speed 0 (every transition done at once), oned in
//! memory, the host's tools replayed (see `replay`). Each action is the
//! release binary run as oned runs it (action-named link, base64 document
//! on stdin). Baseline: `/bin/true` started the same way, the cost of any
//! process.

use std::path::Path;

use anyhow::{Context, anyhow};
use opennebula::template::Template;

use crate::cloud::{self, PublicNic, World, b64, ipam_request, vm_document};
use crate::measure::{self, Measured, Run};
use crate::replay;
use crate::table::{Row, fmt_kb, fmt_ms, ratio};
use crate::util::{Bins, TempDir};

const B: &str = "1 action overhead";

struct Base {
    ms: f64,
    kb: f64,
}

fn row(label: &str, m: &Measured, base: &Base) -> Row {
    let ours = format!("{}, {}", fmt_ms(m.median()), fmt_kb(m.maxrss_kb));
    let baseline = format!("{}, {}", fmt_ms(base.ms), fmt_kb(base.kb));
    Row::new(B, label, ours, baseline).with_ratio(format!(
        "{} time, {} mem",
        ratio(m.median(), base.ms),
        ratio(m.maxrss_kb, base.kb)
    ))
}

/// Every row of benchmark 1.
pub fn run(bins: &Bins, runs: usize, root: bool, frr: bool) -> (Vec<Row>, Vec<String>) {
    let mut rows = Vec::new();
    let mut legend = vec![format!(
        "1: median wall time of {runs} runs (spawn to exit) and peak memory (the largest VmHWM, the process's own \
         resident high-water mark, read at its exit through a ptrace exit stop) of each action, release binaries run \
         as oned runs them; Scaleway = emulator at speed 0 on loopback, oned = onedsim in memory, host tools = \
         record/replay stand-ins (a call costs about the stand-in row's time; what the drivers do through netlink, the namespace's kernel); baseline = /bin/true measured the same \
         way"
    )];
    let truth = Run::new(Path::new("/bin/true"), &[], String::new(), &[]);
    let base = match measure::measure(&bins.me, &vec![truth; runs], None, false) {
        Ok(m) => Base {
            ms: m.median(),
            kb: m.maxrss_kb,
        },
        Err(e) => return (vec![Row::failed(B, "/bin/true", &format!("{e:#}"))], legend),
    };
    match frontend(bins, runs) {
        Ok(list) => rows.extend(list.iter().map(|(l, m)| row(l, m, &base))),
        Err(e) => rows.push(Row::failed(B, "frontend and IPAM actions", &format!("{e:#}"))),
    }
    if root {
        match replay::public(bins, runs) {
            Ok(list) => rows.extend(list.iter().map(|(l, m)| row(l, m, &base))),
            Err(e) => rows.push(Row::failed(B, "scaleway host actions", &format!("{e:#}"))),
        }
        if frr {
            match replay::private(bins, runs) {
                Ok(list) => rows.extend(list.iter().map(|(l, m)| row(l, m, &base))),
                Err(e) => rows.push(Row::failed(B, "scaleway_evpn host actions", &format!("{e:#}"))),
            }
        } else {
            rows.push(Row::skipped(
                B,
                "scaleway_evpn pre/clean need FRR: apt-get install frr frr-pythontools",
            ));
        }
    } else {
        rows.push(Row::skipped(
            B,
            "host actions (pre, clean_host) need root for their namespace",
        ));
    }
    legend.push(
        "1: `clean` includes the SSH stand-in that takes the host part's place; host actions run in a namespace whose \
         first VM is in place (steady state), the measured VM's record restored before each run"
            .into(),
    );
    (rows, legend)
}

/// The attributes of an `AR = [...]` answer.
fn answered_ar(stdout: &str) -> anyhow::Result<Vec<(String, String)>> {
    let t = Template::parse(stdout).with_context(|| format!("register answered {stdout:?}"))?;
    Ok(t.vector_named("AR")
        .ok_or_else(|| anyhow!("register answered no AR: {stdout:?}"))?
        .to_vec())
}

/// The IPAM actions, `post`, `clean`, `vnet_create`.
fn frontend(bins: &Bins, runs: usize) -> anyhow::Result<Vec<(String, Measured)>> {
    let world = World::start(bins, 0.0, 1)?;
    let (hid, host, _) = world.hosts.first().cloned().ok_or_else(|| anyhow!("no host"))?;
    let ipam_state = TempDir::new("ipam-state")?;
    let mut ipam_env = cloud::scaleway_env(&world.emu.url());
    ipam_env.push(("ONE_SCALEWAY_STATE_DIR".into(), ipam_state.path().display().to_string()));
    let action = |a: &str| world.action(a);
    let mut out = Vec::new();
    let mut measure_all = |label: &str, list: Vec<Run>, keep: bool| -> anyhow::Result<Measured> {
        let m = measure::measure(&bins.me, &list, None, keep).with_context(|| label.to_owned())?;
        out.push((label.to_owned(), m.clone()));
        Ok(m)
    };
    // register_address_range: a new flexible IP each run.
    let new_range: Vec<(String, String)> = [
        ("IPAM_MAD", "scaleway_fip"),
        ("TYPE", "IP4"),
        ("SIZE", "1"),
        ("PRIVATE_CIDR", "10.77.0.0/16"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let doc = b64(&ipam_request(&new_range, "<ADDRESS><MAC/><IP/><SIZE/></ADDRESS>"));
    let reg = Run::new(
        &action("ipam/scaleway_fip/register_address_range"),
        &["1203"],
        doc,
        &ipam_env,
    );
    let registered = measure_all("scaleway-ipam register_address_range", vec![reg; runs], true)?;
    let ars: Vec<Vec<(String, String)>> = registered
        .stdouts
        .iter()
        .map(|s| answered_ar(s))
        .collect::<anyhow::Result<_>>()?;
    // The ranges in oned's network (without IPAM_MAD: oned does not run the driver again).
    let mut t = Template::new();
    t.single("NAME", "edge-public")
        .single("VN_MAD", "scaleway")
        .single("BRIDGE", "scwpub0");
    for ar in &ars {
        t.vector("AR", ar.iter().filter(|(k, _)| k != "IPAM_MAD").cloned());
    }
    let vnet = world.id(
        "one.vn.allocate",
        &[cloud::s(&t.render()?), opennebula::oned::Param::Int(-1)],
    )?;
    let ranges = world.ranges(vnet)?;
    // get_address, allocate_address, free_address on range 0.
    let mut first = ars.first().cloned().ok_or_else(|| anyhow!("no range registered"))?;
    first.push(("AR_ID".into(), "0".into()));
    let ip = first
        .iter()
        .find(|(k, _)| k == "IP")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| anyhow!("no IP in the range"))?;
    let address = format!(
        "<ADDRESS><MAC><![CDATA[{}]]></MAC><IP><![CDATA[{ip}]]></IP><SIZE><![CDATA[1]]></SIZE></ADDRESS>",
        cloud::mac_of(&ip)
    );
    for (a, addr) in [
        ("get_address", "<ADDRESS><SIZE><![CDATA[1]]></SIZE></ADDRESS>"),
        ("allocate_address", address.as_str()),
        ("free_address", address.as_str()),
    ] {
        let doc = b64(&ipam_request(&first, addr));
        let r = Run::new(&action(&format!("ipam/scaleway_fip/{a}")), &["1203"], doc, &ipam_env);
        measure_all(&format!("scaleway-ipam {a}"), vec![r; runs], false)?;
    }
    // post then clean: VM i's NIC is range i (attached by its post, detached by its clean).
    let env = world.frontend_env();
    let docs: Vec<(String, String)> = ranges
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let id = 100 + i as u64;
            let nic = PublicNic::of_range(0, vnet, r)?;
            Ok((format!("one-{id}"), b64(&vm_document(id, &[nic], None, &host, hid)?)))
        })
        .collect::<anyhow::Result<_>>()?;
    let post: Vec<Run> = docs
        .iter()
        .map(|(deploy, d)| Run::new(&action("vnm/scaleway/post"), &[deploy, &host], d.clone(), &env))
        .collect();
    measure_all("scaleway-vnm scaleway post (attach 1 IP)", post, false)?;
    let clean: Vec<Run> = docs
        .iter()
        .map(|(_, d)| Run::new(&action("vnm/scaleway/clean"), &[&host], d.clone(), &env))
        .collect();
    measure_all("scaleway-vnm scaleway clean (detach 1 IP)", clean, false)?;
    // unregister_address_range: each run releases one of the flexible IPs.
    let unreg: Vec<Run> = ars
        .iter()
        .enumerate()
        .map(|(i, ar)| {
            let mut ar = ar.clone();
            ar.push(("AR_ID".into(), i.to_string()));
            Run::new(
                &action("ipam/scaleway_fip/unregister_address_range"),
                &["1203"],
                b64(&ipam_request(&ar, "")),
                &ipam_env,
            )
        })
        .collect();
    measure_all("scaleway-ipam unregister_address_range", unreg, false)?;
    // update_sg of a VM this host does not run (reads the host record of a
    // state folder of its own: nothing to set), update_nic (validates only).
    let fixture_vm = b64(&crate::util::fixture("vm/deploy.xml")?);
    let host_state = TempDir::new("host-state")?;
    let host_env = vec![
        (
            "ONE_SCALEWAY_STATE_DIR".to_owned(),
            host_state.path().display().to_string(),
        ),
        ("ONE_SCALEWAY_SUDO".to_owned(), "never".to_owned()),
    ];
    for (a, args, what) in [
        ("update_sg", &["one-7"][..], "VM not on this host"),
        ("update_nic", &["one-7", "5"][..], "validates only"),
    ] {
        let r = Run::new(
            &action(&format!("vnm/scaleway/{a}")),
            args,
            fixture_vm.clone(),
            &host_env,
        );
        measure_all(&format!("scaleway-vnm scaleway {a} ({what})"), vec![r; runs], false)?;
    }
    let vnet_doc = b64(&crate::util::fixture("vnet/public.xml")?);
    let vc = Run::new(&action("vnm/scaleway/vnet_create"), &["5"], vnet_doc, &[]);
    measure_all(
        "scaleway-vnm scaleway vnet_create (does nothing)",
        vec![vc; runs],
        false,
    )?;
    let left = world.emu.state()["counts"]["flexible_ips"].as_u64().unwrap_or(0);
    if left != 0 {
        return Err(anyhow!("{left} flexible IPs left after unregister"));
    }
    Ok(out)
}
