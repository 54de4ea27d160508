//! Writing the private NICs' security group tables ([`private_plan::sg`])
//! on the host.

use std::path::Path;

use host_tools::{ApplyError, Tools};
use private_plan::sg::{BRIDGE_NF_KEYS, Filters};

/// Writes the tables (as root, or as a user allowed to): `br_netfilter`
/// on first when there is a port, then `nft -f -` of the update from
/// `before`, or of the whole tables when there is no `before` or the
/// update fails.
pub fn apply(tools: &Tools, filters: &Filters, before: Option<&Filters>) -> Result<host_tools::run::Ran, ApplyError> {
    if !filters.ports.is_empty() {
        bridge_netfilter(tools, Path::new("/proc/sys"))?;
    }
    if let Some(before) = before {
        let script = filters.update_script(before);
        if script.is_empty() {
            return Ok(host_tools::run::Ran {
                success: true,
                status: "nothing to change".into(),
                stdout: String::new(),
                stderr: String::new(),
            });
        }
        let ran = tools.run("nft", &["-f", "-"], script.as_bytes())?;
        if ran.success {
            return Ok(ran);
        }
    }
    tools.run("nft", &["-f", "-"], filters.script().as_bytes())
}

/// Makes sure bridged IPv4 and IPv6 go through the `inet` hooks (as root):
/// `br_netfilter` loaded (`modprobe`, when `net/bridge` is missing under
/// `proc_sys`) and both switches on. Reads only, when they are.
pub fn bridge_netfilter(tools: &Tools, proc_sys: &Path) -> Result<(), ApplyError> {
    let dir = proc_sys.join("net/bridge");
    if !dir.exists() {
        let ran = tools.run("modprobe", &["br_netfilter"], b"")?;
        if !ran.success || !dir.exists() {
            return Err(ApplyError::new(format!(
                "the kernel module br_netfilter cannot be loaded ({}): the private NICs' security groups need it; \
                 load it (`modprobe br_netfilter`, and list it in /etc/modules-load.d/) and run the action again",
                ran.stderr.trim()
            )));
        }
    }
    for key in BRIDGE_NF_KEYS {
        let path = dir.join(key);
        let read = || std::fs::read_to_string(&path).map(|v| v.trim() == "1");
        let on = read().map_err(|e| ApplyError::new(format!("cannot read {}: {e}", path.display())))?;
        if !on {
            std::fs::write(&path, "1\n")
                .map_err(|e| ApplyError::new(format!("cannot switch {} on: {e}", path.display())))?;
            if !read().unwrap_or(false) {
                return Err(ApplyError::new(format!("{} does not stay on", path.display())));
            }
        }
    }
    Ok(())
}
