//! The host's links as the drivers' checks need them.

use std::collections::BTreeMap;

use crate::run::Tools;

/// The kind of every link of the host (`None`: a device without a kind,
/// a physical one).
pub fn link_kinds(tools: &Tools) -> Result<BTreeMap<String, Option<String>>, String> {
    let ran = tools
        .run("ip", &["-d", "-j", "link", "show"], b"")
        .map_err(|e| e.to_string())?;
    if !ran.success {
        return Err(format!("`ip -d -j link show` failed: {}", ran.stderr.trim()));
    }
    let links: serde_json::Value = serde_json::from_str(&ran.stdout).map_err(|e| e.to_string())?;
    Ok(links
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            let name = l.get("ifname")?.as_str()?.to_owned();
            let kind = l
                .get("linkinfo")
                .and_then(|i| i.get("info_kind"))
                .and_then(|k| k.as_str())
                .map(str::to_owned);
            Some((name, kind))
        })
        .collect())
}
