//! Part 6 of the story: the cluster changes while VMs run, as an
//! administrator changes it: more public IPs (`scaleway-provision ip add`,
//! `onevnet addar`), a NIC hot-attached and detached, public IPs removed
//! (`onevnet rmar`, `scaleway-provision ip delete`), a host added (and a VM
//! migrated onto it) and a host deleted, and a VM deleted while a live
//! migration runs (`onevm recover --delete`).

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use opennebula::xml::Element;

use crate::checks::{bgp_sessions, inbound, links, nothing_of, private, rules_naming};
use crate::report::Report;
use crate::sandbox::{HostInfo, NAME, Sandbox};
use crate::vms::value;

/// The public network's ranges: `(AR_ID, EXTERNAL_IP, SCALEWAY_IP_ID)`.
pub fn public_ars(sb: &Sandbox) -> anyhow::Result<Vec<(String, String, String)>> {
    let v = sb.show("onevnet", sb.cluster.public_vnet)?;
    Ok(v.at("AR_POOL")
        .map(|p| {
            p.children_named("AR")
                .map(|ar| {
                    (
                        value(ar, "AR_ID"),
                        value(ar, "EXTERNAL_IP"),
                        value(ar, "SCALEWAY_IP_ID"),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Whether Scaleway (the emulator) has flexible IP `id`.
fn fip_exists(sb: &Sandbox, id: &str) -> anyhow::Result<bool> {
    Ok(sb.emu()?.state()["flexible_ips"]
        .as_array()
        .is_some_and(|a| a.iter().any(|f| f["id"] == id)))
}

/// `scaleway-provision ARGS` as oneadmin, which must succeed.
fn provision(sb: &Sandbox, args: &[&str]) -> anyhow::Result<String> {
    let ran = sb.provision(args, Duration::from_secs(1800))?;
    if !ran.ok() {
        sb.note_emulator_calls();
    }
    ensure!(
        ran.ok(),
        "scaleway-provision {} failed:\n{}",
        args.join(" "),
        ran.complaint()
    );
    Ok(ran.stdout.trim().to_owned())
}

/// The bootstrap options of `create`, for `host add` and `host delete`.
fn access(sb: &Sandbox) -> anyhow::Result<Vec<String>> {
    let vnm = sb.oned()?.location.join("var/remotes/vnm/scaleway_evpn/scaleway-vnm");
    Ok([
        "--ssh-user",
        "ubuntu",
        "--skip",
        "packages,services",
        "--ssh-key",
        &sb.paths.key.display().to_string(),
        "--vnm",
        &vnm.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec())
}

/// After `how` added a range: one more range, whose flexible IP is at Scaleway.
fn one_more_range(sb: &Sandbox, before: usize, how: &str) -> anyhow::Result<(String, String)> {
    let ars = public_ars(sb)?;
    ensure!(
        ars.len() == before + 1,
        "{} ranges after {how}, not {}",
        ars.len(),
        before + 1
    );
    let (id, address, fip_id) = ars.last().cloned().context("no range")?;
    ensure!(
        fip_exists(sb, &fip_id)?,
        "range {id}'s flexible IP {address} is not at Scaleway"
    );
    Ok((id, address))
}

pub fn ip_add(sb: &Sandbox) -> anyhow::Result<String> {
    let before = public_ars(sb)?.len();
    let out = provision(sb, &["ip", "add", NAME, "1"])?;
    let (id, address) = one_more_range(sb, before, "ip add")?;
    Ok(format!("{out}\nrange {id}: flexible IP {address}"))
}

fn addar(sb: &Sandbox) -> anyhow::Result<String> {
    let before = public_ars(sb)?.len();
    let file = sb.oned()?.template_file(
        "public-ar.tmpl",
        "AR = [ IPAM_MAD = \"scaleway_fip\", TYPE = \"IP4\", SIZE = \"1\" ]\n",
    );
    sb.one("onevnet", &["addar", &sb.cluster.public_vnet.to_string(), &file])?;
    let (id, address) = one_more_range(sb, before, "addar")?;
    Ok(format!(
        "onevnet addar: range {id}, flexible IP {address} (the IPAM driver made it)"
    ))
}

/// A NIC of VM `index`, attached on the public network: its flexible IP
/// follows the VM's host, and the internet reaches the VM on it.
fn nic_attach(sb: &mut Sandbox, index: usize) -> anyhow::Result<String> {
    let vm = sb.vms.get(index).context("no such VM")?;
    let id = vm.id;
    let net = sb.cluster.public_vnet.to_string();
    sb.one("onevm", &["nic-attach", &id.to_string(), "--network", &net])?;
    let doc = sb.wait_vm(id, "the attached NIC", |vm| nics(vm).len() == 3 && running(vm))?;
    let nic = nics(&doc).last().cloned().context("no NIC")?;
    let external: std::net::Ipv4Addr = value(&nic, "EXTERNAL_IP").parse().context("EXTERNAL_IP")?;
    let host = sb.host(sb.vms[index].host)?.clone();
    let routed = route_of(sb, &external.to_string())?;
    ensure!(
        routed.as_deref() == Some(host.server_id.as_str()),
        "flexible IP {external} is routed to {routed:?}, not to {}'s server",
        host.name
    );
    let saved = sb.vms[index].external_ip;
    sb.vms[index].external_ip = external;
    let reached = inbound(sb, index);
    sb.vms[index].external_ip = saved;
    Ok(format!(
        "NIC {} ({}, range {}): flexible IP {external} routed to {}'s server\n{}",
        value(&nic, "NIC_ID"),
        value(&nic, "IP"),
        value(&nic, "AR_ID"),
        host.name,
        reached?
    ))
}

fn nic_detach(sb: &Sandbox, index: usize) -> anyhow::Result<String> {
    let vm = sb.vms.get(index).context("no such VM")?;
    let id = vm.id;
    let doc = sb.show("onevm", id)?;
    let nic = nics(&doc).last().cloned().context("no NIC")?;
    let nic_id = value(&nic, "NIC_ID");
    let external = value(&nic, "EXTERNAL_IP");
    sb.one("onevm", &["nic-detach", &id.to_string(), &nic_id])?;
    sb.wait_vm(id, "the detach", |vm| nics(vm).len() == 2 && running(vm))?;
    let host = sb.host(vm.host)?.clone();
    let started = Instant::now();
    loop {
        let routed = route_of(sb, &external)?;
        let left = nic_gone(
            sb,
            &host,
            &value(&nic, "TARGET"),
            &[external.clone(), value(&nic, "IP")],
        );
        match (routed, left) {
            (None, Ok(_)) => break,
            (routed, left) if started.elapsed() > Duration::from_secs(30) => {
                bail!("after the detach: {external} routed to {routed:?}; host: {left:?}")
            }
            _ => sb.ctl.sleep(Duration::from_millis(300))?,
        }
    }
    Ok(format!(
        "NIC {nic_id} detached: flexible IP {external} no longer routed, {} has no rule for it",
        host.name
    ))
}

/// The NIC's tap is gone from host `h` and its nftables rules too.
fn nic_gone(sb: &Sandbox, h: &HostInfo, target: &str, addresses: &[String]) -> anyhow::Result<()> {
    let mut left: Vec<String> = links(sb, h)?.into_iter().filter(|l| l == target).collect();
    left.extend(rules_naming(sb, h, addresses)?);
    ensure!(left.is_empty(), "{} still has: {}", h.name, left.join(", "));
    Ok(())
}

fn route_of(sb: &Sandbox, address: &str) -> anyhow::Result<Option<String>> {
    let dest = format!("{address}/32");
    Ok(sb.emu()?.network().context("no network report")?["flexible_ips"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["destination"] == dest.as_str()))
        .and_then(|r| r["server_id"].as_str().map(str::to_owned)))
}

fn nics(vm: &Element) -> Vec<Element> {
    vm.at("TEMPLATE")
        .map(|t| t.children_named("NIC").cloned().collect())
        .unwrap_or_default()
}

fn running(vm: &Element) -> bool {
    value(vm, "STATE") == "3" && value(vm, "LCM_STATE") == "3"
}

/// Removes range `ar` with `how` and checks its flexible IP is released.
pub fn remove_range(sb: &Sandbox, ar: &(String, String, String), how: &str) -> anyhow::Result<String> {
    let (id, address, fip_id) = ar;
    let out = if how == "rmar" {
        sb.one("onevnet", &["rmar", &sb.cluster.public_vnet.to_string(), id])?
    } else {
        provision(sb, &["ip", "delete", NAME, id])?
    };
    ensure!(
        !public_ars(sb)?.iter().any(|a| &a.0 == id),
        "range {id} is still in the network"
    );
    ensure!(
        !fip_exists(sb, fip_id)?,
        "flexible IP {address} is still at Scaleway after {how}"
    );
    Ok(format!(
        "{}range {id} removed, flexible IP {address} released",
        if out.trim().is_empty() {
            String::new()
        } else {
            format!("{}\n", out.trim())
        }
    ))
}

/// `onevm recover --delete` of VM `index` while its live migration is held
/// in the VM driver (after `pre` on the destination): oned's cleanup must
/// leave nothing of it on either host, and its flexible IP detached.
fn delete_during_migration(sb: &mut Sandbox, index: usize) -> anyhow::Result<String> {
    let vm = sb.vms.get_mut(index).context("no such VM")?;
    vm.service = None;
    let (id, src, ns) = (vm.id, vm.host, vm.ns.clone());
    let addresses = vec![vm.external_ip.to_string(), vm.public_ip.to_string()];
    let dest = (src + 1) % sb.cluster.hosts.len();
    let (s, d) = (sb.host(src)?.clone(), sb.host(dest)?.clone());
    let hold = sb.oned()?.location.join("var/hold-migrate");
    std::fs::write(&hold, "").with_context(|| format!("cannot write {}", hold.display()))?;
    let held = (|| -> anyhow::Result<()> {
        sb.one("onevm", &["migrate", "--live", &id.to_string(), &d.one_id.to_string()])?;
        sb.wait_vm(id, "the migration", |vm| value(vm, "LCM_STATE") == "4")?;
        // oned runs `pre` on the destination, then the VM driver's migrate,
        // which is held: wait for `pre` in the VM's log.
        let log = sb.oned()?.location.join(format!("var/vms/{id}/vm.log"));
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let since = text.rfind("New LCM state is MIGRATE").map_or("", |i| &text[i..]);
            if since.contains("network driver operation: pre") {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(60),
                "no pre on the destination within 60 s"
            );
            sb.ctl.sleep(Duration::from_millis(100))?;
        }
        sb.one("onevm", &["recover", "--delete", &id.to_string()]).map(|_| ())
    })();
    let _ = std::fs::remove_file(&hold);
    held?;
    sb.wait_vm(id, "the delete (DONE)", |vm| value(vm, "STATE") == "6")?;
    let started = Instant::now();
    let checked = loop {
        let both = nothing_of(sb, &s, Some(id), &addresses)
            .and_then(|a| Ok(format!("{a}\n{}", nothing_of(sb, &d, Some(id), &addresses)?)));
        let routed = route_of(sb, &addresses[0])?;
        match (both, routed) {
            (Ok(text), None) => break text,
            (both, routed) if started.elapsed() > Duration::from_secs(60) => {
                bail!("VM {id} deleted during its migration: {both:?}; flexible IP routed to {routed:?}")
            }
            _ => sb.ctl.sleep(Duration::from_millis(300))?,
        }
    };
    let namespace_left = crate::netns::namespaces().contains(&ns);
    sb.vms.retain(|v| v.id != id);
    ensure!(
        !namespace_left,
        "VM {id} is deleted but its namespace {ns} is still there: oned never told the VM driver to stop it \
         (libvirtd: {})",
        sb.libvirt_log().join("; ")
    );
    Ok(format!(
        "VM {id}: migration {} -> {} held, recover --delete: DONE; flexible IP detached\n{checked}",
        s.name, d.name
    ))
}

/// Part 6. Returns when a step fails.
pub fn run(sb: &mut Sandbox, rep: &mut Report) -> anyhow::Result<()> {
    rep.part("6. day 2: public IPs, NIC hot-plug, hosts added and removed");
    rep.step("scaleway-provision ip add (one more public IP)", false, || {
        Ok(((), ip_add(sb)?))
    })?;
    let added = public_ars(sb)?.last().cloned().context("no range")?;
    rep.step("onevnet addar (a range of the IPAM driver, by hand)", false, || {
        Ok(((), addar(sb)?))
    })?;
    let by_hand = public_ars(sb)?.last().cloned().context("no range")?;
    rep.step("onevm nic-attach vm2 on the public network", false, || {
        Ok(((), nic_attach(sb, 1)?))
    })?;
    rep.step("onevm nic-detach vm2's new NIC", false, || Ok(((), nic_detach(sb, 1)?)))?;
    rep.step("onevnet rmar (the range added by hand)", false, || {
        Ok(((), remove_range(sb, &by_hand, "rmar")?))
    })?;
    rep.step("scaleway-provision ip delete", false, || {
        Ok(((), remove_range(sb, &added, "ip delete")?))
    })?;
    rep.step("scaleway-provision host add (a third host)", false, || {
        let mut args = vec!["host".to_owned(), "add".to_owned(), NAME.to_owned(), "1".to_owned()];
        args.extend(access(sb)?);
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = provision(sb, &words)?;
        Ok(((), format!("{out}\n{}", crate::story::rediscover(sb, 3)?)))
    })?;
    rep.step("EVPN: BGP sessions with the new host", true, || {
        Ok(((), bgp_sessions(sb)?))
    })?;
    let last = sb.cluster.hosts.len() - 1;
    let how = crate::story::moving(sb);
    rep.step(&format!("{how} vm2 to the new host"), false, || {
        Ok(((), sb.move_vm(1, last)?))
    })?;
    rep.step(
        "vm1 <-> vm2 on the private network, across to the new host",
        true,
        || Ok(((), format!("{}\n{}", private(sb, 0, 1)?, private(sb, 1, 0)?))),
    )?;
    rep.step("the internet reaches vm2 on the new host", true, || {
        Ok(((), inbound(sb, 1)?))
    })?;
    rep.step("scaleway-provision host delete refuses a host with VMs", true, || {
        let busy = sb.host(sb.vms.first().context("no VM")?.host)?.clone();
        let mut args = vec![
            "host".to_owned(),
            "delete".to_owned(),
            NAME.to_owned(),
            busy.one_id.to_string(),
        ];
        args.extend(access(sb)?);
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        let ran = sb.provision(&words, Duration::from_secs(300))?;
        ensure!(!ran.ok(), "host delete of {} (VMs on it) succeeded", busy.name);
        ensure!(
            ran.stderr.contains("--force"),
            "host delete of {} failed without saying what to do: {}",
            busy.name,
            ran.complaint()
        );
        ensure!(
            sb.show("onehost", busy.one_id).is_ok(),
            "host {} is gone from oned",
            busy.name
        );
        Ok(((), format!("{}: {}", busy.name, ran.complaint())))
    })?;
    let empty = (0..sb.cluster.hosts.len())
        .find(|i| !sb.vms.iter().any(|v| v.host == *i))
        .context("no host without VMs")?;
    let gone = sb.host(empty)?.clone();
    rep.step(&format!("scaleway-provision host delete {}", gone.name), false, || {
        let mut args = vec![
            "host".to_owned(),
            "delete".to_owned(),
            NAME.to_owned(),
            gone.one_id.to_string(),
        ];
        args.extend(access(sb)?);
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = provision(sb, &words)?;
        Ok(((), format!("{out}\n{}", crate::story::rediscover(sb, 2)?)))
    })?;
    rep.step(
        "vm1 <-> vm2 on the private network, without the deleted host",
        true,
        || Ok(((), format!("{}\n{}", private(sb, 0, 1)?, private(sb, 1, 0)?))),
    )?;
    if sb.opts.hypervisor == crate::sandbox::Hypervisor::Kvm {
        rep.step("onevm recover --delete vm1 during its live migration", false, || {
            Ok(((), delete_during_migration(sb, 0)?))
        })?;
    }
    Ok(())
}
