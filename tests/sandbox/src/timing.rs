//! Part 7 (`--timing`): what our drivers add to a VM's life at Scaleway's
//! own speed. The emulator runs at speed 1.0 (a flexible IP takes
//! `ATTACH_SECONDS` to attach and `DETACH_SECONDS` to detach, as measured at
//! Scaleway); oned deploys and terminates two VMs on the same host:
//!
//! - one without NIC: oned's own pipeline (its scheduler aside: `onevm
//!   deploy`, the VM driver, the test hypervisor), no network driver runs;
//! - one with a public NIC: our `pre` on the host, the VM driver, our
//!   `post` attaching its flexible IP; at termination our `clean`
//!   (`clean_host` on the host, then the detach).
//!
//! The floor of "deploy to the VM answering on its flexible IP" is oned's
//! pipeline (to RUNNING) plus Scaleway's attach; of "terminate to the
//! flexible IP detached" its pipeline up to the VM driver's shutdown (when
//! it would run `clean`: the epilog comes after) plus Scaleway's detach. What is above the floor
//! is what our drivers add (their processes, SSH to the host, the API
//! calls). The figures are printed, not asserted (a benchmark, run by
//! `sudo ./sandbox.sh --timing`; `docs/EVIDENCE.md`).

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Context;
use opennebula::oned::{Oned, Param};
use scaleway_emulator::fip::{ATTACH_SECONDS, DETACH_SECONDS};

use crate::netns::{PORT, Service, in_ns};
use crate::report::Report;
use crate::sandbox::{Sandbox, id_of};
use crate::vms::value;

/// The realistic speed, and how long a probe waits for anything.
const REAL: f64 = 1.0;
const LIMIT: Duration = Duration::from_secs(60);

/// Polls `f` every 20 ms until it holds (or `LIMIT` passes): the time since `t0`.
fn until(t0: Instant, what: &str, mut f: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<Duration> {
    loop {
        if f()? {
            return Ok(t0.elapsed());
        }
        anyhow::ensure!(t0.elapsed() < LIMIT, "{what}: not within {} s", LIMIT.as_secs());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `onevm create --hold` of `template` (name and NICs).
fn create(sb: &Sandbox, name: &str, nics: &str) -> anyhow::Result<u32> {
    let file = sb.oned()?.template_file(
        &format!("{name}.tmpl"),
        &format!("NAME = \"{name}\"\nCPU = \"0.1\"\nMEMORY = \"64\"\n{nics}"),
    );
    id_of(&sb.one("onevm", &["create", "--hold", &file])?)
}

/// oned's API (not the CLI, whose Ruby start-up would be in the figures).
fn api(sb: &Sandbox) -> anyhow::Result<Oned> {
    Ok(sb.oned()?.api())
}

fn state(sb: &Sandbox, id: u32) -> anyhow::Result<(String, String)> {
    let vm = api(sb)?.vm(u64::from(id))?;
    Ok((value(&vm, "STATE"), value(&vm, "LCM_STATE")))
}

/// `one.vm.deploy` of VM `id` on the first host.
fn start_deploy(sb: &Sandbox, id: u32) -> anyhow::Result<()> {
    let h = sb.host(0)?;
    api(sb)?.call(
        "one.vm.deploy",
        &[
            Param::Int(i64::from(id)),
            Param::Int(i64::from(h.one_id)),
            Param::Bool(false),
            Param::Int(i64::from(sb.cluster.system_ds)),
        ],
    )?;
    Ok(())
}

/// `one.vm.action terminate` of VM `id`.
fn start_terminate(sb: &Sandbox, id: u32) -> anyhow::Result<()> {
    api(sb)?.call(
        "one.vm.action",
        &[Param::Str("terminate".into()), Param::Int(i64::from(id))],
    )?;
    Ok(())
}

fn running(sb: &Sandbox, id: u32) -> anyhow::Result<bool> {
    Ok(state(sb, id)? == ("3".into(), "3".into()))
}

fn done(sb: &Sandbox, id: u32) -> anyhow::Result<bool> {
    Ok(state(sb, id)?.0 == "6")
}

/// The VM driver has stopped the VM: oned is in EPILOG (LCM state 11), or DONE.
/// (oned runs the network drivers' `clean` right after the VM driver's shutdown,
/// before the epilog.)
fn shut_down(sb: &Sandbox, id: u32) -> anyhow::Result<bool> {
    let (s, lcm) = state(sb, id)?;
    Ok(s == "6" || lcm == "11")
}

/// Deploys VM `id` on the first host: the time to RUNNING.
fn deploy(sb: &Sandbox, id: u32) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    start_deploy(sb, id)?;
    until(t0, &format!("VM {id} RUNNING"), || running(sb, id))
}

/// The status of flexible IP `address` at Scaleway (`attached`,
/// `updating`, `detaching`, `ready`: detached).
fn fip_status(sb: &Sandbox, address: &str) -> anyhow::Result<String> {
    let state = sb.emu()?.state();
    let fip = state["flexible_ips"]
        .as_array()
        .and_then(|a| a.iter().find(|f| f["ip_address"] == address))
        .with_context(|| format!("no flexible IP {address} at Scaleway"))?;
    Ok(fip["status"].as_str().unwrap_or_default().to_owned())
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// One row: ours, the floor, the ratio.
fn row(what: &str, ours: Duration, pipeline: Duration, scaleway: f64) -> String {
    let floor = secs(pipeline) + scaleway;
    format!(
        "{what}: {:.2} s; floor {floor:.2} s (oned without our drivers {:.2} s + Scaleway {scaleway:.1} s); ours add \
         {:.2} s, ×{:.3}",
        secs(ours),
        secs(pipeline),
        secs(ours) - floor,
        secs(ours) / floor
    )
}

fn measure(sb: &Sandbox) -> anyhow::Result<String> {
    let emu = sb.emu()?;
    // The floor: a VM without NIC.
    let floor_vm = create(sb, "floor", "")?;
    let d0 = deploy(sb, floor_vm)?;
    let t = Instant::now();
    start_terminate(sb, floor_vm)?;
    let t0 = until(t, &format!("VM {floor_vm} shut down"), || shut_down(sb, floor_vm))?;
    let t0_done = until(t, &format!("VM {floor_vm} DONE"), || done(sb, floor_vm))?;
    // Ours: a VM with a public NIC.
    let vm = create(
        sb,
        "timed",
        &format!("NIC = [ NETWORK_ID = \"{}\" ]\n", sb.cluster.public_vnet),
    )?;
    let doc = api(sb)?.vm(u64::from(vm))?;
    let nic = doc.at("TEMPLATE/NIC").context("the VM has no NIC")?;
    let (address, external) = (value(nic, "IP"), value(nic, "EXTERNAL_IP"));
    let to = SocketAddr::new(external.parse().context("EXTERNAL_IP")?, PORT);
    let ns = format!("{}-vm{vm}", sb.opts.prefix);
    emu.set_speed(REAL);
    let measured = (|| -> anyhow::Result<String> {
        let t = Instant::now();
        start_deploy(sb, vm)?;
        // The VM's service listens as soon as its namespace exists (mounted:
        // `ip netns add` names it a moment before).
        until(t, &format!("VM {vm}'s namespace"), || Ok(crate::netns::mounted(&ns)))?;
        let _service = Service::start(&ns, "timed", (std::net::Ipv4Addr::UNSPECIFIED, PORT).into())?;
        let inet = sb.inet();
        let answered = until(t, &format!("{to} answering"), || {
            in_ns(&inet, move || {
                Ok(TcpStream::connect_timeout(&to, Duration::from_millis(50)).is_ok())
            })
        })?;
        let running_after = until(t, &format!("VM {vm} RUNNING"), || running(sb, vm))?;
        let t = Instant::now();
        start_terminate(sb, vm)?;
        let detached = until(t, &format!("flexible IP {external} detached"), || {
            Ok(fip_status(sb, &external)? == "ready")
        })?;
        let done_after = until(t, &format!("VM {vm} DONE"), || done(sb, vm))?;
        Ok(format!(
            "{}\n{}\n(VM {vm}, public {address} = flexible IP {external}; RUNNING after {:.2} s, DONE after {:.2} s \
             (our post and clean poll every {} ms here); the VM without NIC: RUNNING after {:.2} s, shut down after {:.2} s, DONE \
             after {:.2} s)",
            row(
                "deploy to the VM answering on its flexible IP",
                answered,
                d0,
                ATTACH_SECONDS * REAL
            ),
            row(
                "terminate to the flexible IP detached",
                detached,
                t0,
                DETACH_SECONDS * REAL
            ),
            secs(running_after),
            secs(done_after),
            sb.poll_ms(),
            secs(d0),
            secs(t0),
            secs(t0_done)
        ))
    })();
    emu.set_speed(sb.opts.speed);
    measured
}

/// Part 7. Returns when a step fails.
pub fn run(sb: &mut Sandbox, rep: &mut Report) -> anyhow::Result<()> {
    rep.part("7. at Scaleway's own speed (--timing): what our drivers add to a VM's life");
    rep.step(
        "scaleway-provision ip add (a public IP for the timed VM)",
        false,
        || Ok(((), crate::day2::ip_add(sb)?)),
    )?;
    let added = crate::day2::public_ars(sb)?.last().cloned().context("no range")?;
    rep.step(
        "a VM without NIC, then one with a public NIC, deployed and terminated at emulator speed 1.0",
        false,
        || Ok(((), measure(sb)?)),
    )?;
    rep.step("scaleway-provision ip delete", false, || {
        Ok(((), crate::day2::remove_range(sb, &added, "ip delete")?))
    })?;
    Ok(())
}
