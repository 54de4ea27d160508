//! The host's links as the drivers' checks need them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::netlink::Rtnl;

/// The kind of every link of the host (`None`: a device without a kind,
/// a physical one), read through rtnetlink.
pub fn link_kinds() -> Result<BTreeMap<String, Option<String>>, String> {
    let mut rtnl = Rtnl::open(Duration::from_secs(60)).map_err(|e| e.to_string())?;
    Ok(rtnl
        .links(None)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|l| (l.name, l.kind))
        .collect())
}

/// The kind of each of `names` that exists.
pub fn link_kinds_of<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<BTreeMap<String, Option<String>>, String> {
    let mut rtnl = Rtnl::open(Duration::from_secs(60)).map_err(|e| e.to_string())?;
    let mut kinds = BTreeMap::new();
    for name in names {
        if let Some(l) = rtnl.link(name).map_err(|e| e.to_string())? {
            kinds.insert(l.name, l.kind);
        }
    }
    Ok(kinds)
}
