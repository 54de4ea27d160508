//! Security groups through OpenNebula's own path: the administrator changes
//! the rules of the default group 0 (`onesecgroup update`), oned runs
//! `update_sg` of both drivers for every VM of the group on its host, and
//! the traffic to a VM, from the internet (public NIC) and from another VM
//! (private NIC), follows the new rules.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use scaleway_emulator::network::CLIENT_V4;

use crate::checks::{inbound, outbound};
use crate::netns::{PORT, ask};
use crate::sandbox::Sandbox;

/// The VMs of the sandbox oned has not brought up to date yet in group 0,
/// or a failure. A VM counts as done only once it is in `UPDATED_VMS`:
/// oned takes a VM out of `OUTDATED_VMS` and saves the group before it
/// puts the VM in `UPDATING_VMS` (`LifeCycleManager::trigger_updatesg`),
/// so for a moment the VM is in no list.
fn pending(sb: &Sandbox) -> anyhow::Result<Vec<String>> {
    let sg = sb.show("onesecgroup", 0)?;
    let ids = |list: &str| -> Vec<String> {
        sg.at(list)
            .map(|l| l.children_named("ID").map(|i| i.text.clone()).collect())
            .unwrap_or_default()
    };
    let failed = ids("ERROR_VMS");
    if !failed.is_empty() {
        bail!(
            "oned's update_sg failed for VM(s) {}: see their vm.log",
            failed.join(", ")
        );
    }
    let updated = ids("UPDATED_VMS");
    Ok(sb
        .vms
        .iter()
        .map(|vm| vm.id.to_string())
        .filter(|id| !updated.contains(id))
        .collect())
}

/// `onesecgroup update 0` with `rules`, then waits until oned has run
/// `update_sg` for every VM of the group.
fn update_group0(sb: &Sandbox, file: &str, rules: &str) -> anyhow::Result<String> {
    let path = sb.oned()?.template_file(file, rules);
    sb.one("onesecgroup", &["update", "0", &path])?;
    let started = Instant::now();
    loop {
        let left = pending(sb)?;
        if left.is_empty() {
            return Ok(format!(
                "oned ran update_sg for every VM of group 0 in {:.1}s",
                started.elapsed().as_secs_f64()
            ));
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("oned did not update VM(s) {} of group 0 in 60 s", left.join(", "));
        }
        sb.ctl.sleep(Duration::from_millis(300))?;
    }
}

/// Group 0 allows only TCP 22 in (and everything out): neither the
/// internet nor VM `other` on the private network reaches VM `i` on its
/// service port any more; VM `i` still reaches the internet.
pub fn restrict(sb: &Sandbox, i: usize, other: usize) -> anyhow::Result<String> {
    let updated = update_group0(
        sb,
        "group0-ssh-only.tmpl",
        "RULE = [ PROTOCOL = \"ALL\", RULE_TYPE = \"OUTBOUND\" ]\n\
         RULE = [ PROTOCOL = \"TCP\", RULE_TYPE = \"INBOUND\", RANGE = \"22\" ]\n",
    )?;
    let vm = sb.vms.get(i).context("no such VM")?;
    let to = SocketAddr::new(vm.external_ip.into(), PORT);
    if let Ok(a) = ask(&sb.inet(), to, 0, Duration::from_secs(3)) {
        bail!("{to} still answered ({}) after group 0 allowed only TCP 22 in", a.name);
    }
    let from = sb.vms.get(other).context("no such VM")?;
    let private = SocketAddr::new(vm.private_ip.into(), PORT);
    if let Ok(a) = ask(&from.ns, private, 0, Duration::from_secs(3)) {
        let h = sb.host(vm.host)?;
        let tables = ["bridge one_scaleway_evpn_ports", "inet one_scaleway_evpn_sg"].map(|t| {
            let mut args = vec!["list", "table"];
            args.extend(t.split(' '));
            sb.on_host(h, "nft", &args, b"")
                .map_or_else(|e| format!("{e:#}"), |r| format!("{}{}", r.stdout, r.stderr))
        });
        bail!(
            "{} -> {private} (private network) still answered ({}) after group 0 allowed only TCP 22 in; {}'s \
             security group tables:\n{}",
            from.name,
            a.name,
            h.name,
            tables.join("")
        );
    }
    let out = outbound(sb, i)?;
    Ok(format!(
        "{updated}\n{CLIENT_V4} -> {to}: refused (group 0: TCP 22 only)\n{} -> {private} (private \
         network): refused\n{out} (outbound still open)",
        from.name
    ))
}

/// Group 0 back to OpenNebula's default (all in, all out): the internet
/// and VM `other` reach VM `i` again.
pub fn reopen(sb: &Sandbox, i: usize, other: usize) -> anyhow::Result<String> {
    let updated = update_group0(
        sb,
        "group0-default.tmpl",
        "RULE = [ PROTOCOL = \"ALL\", RULE_TYPE = \"OUTBOUND\" ]\n\
         RULE = [ PROTOCOL = \"ALL\", RULE_TYPE = \"INBOUND\" ]\n",
    )?;
    Ok(format!(
        "{updated}\n{}\n{}",
        inbound(sb, i)?,
        crate::checks::private(sb, other, i)?
    ))
}
