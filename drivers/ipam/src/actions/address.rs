//! `allocate_address`, `get_address`, `free_address`: the range's one
//! address, as oned asks for it.

use super::*;

/// The one address of a range, checked against what oned asks.
pub(super) fn the_address(
    request: &IpamRequest,
) -> anyhow::Result<(String, Option<&opennebula::ipam::AddressRequest>)> {
    let ar = &request.ar;
    let address = match (ar.ip, ar.ip6) {
        (Some(ip), _) => ip.to_string(),
        (None, Some(ip6)) => ip6.to_string(),
        (None, None) => bail!(
            "{}/IP is missing: this range was not registered by the scaleway IPAM driver",
            ar.attrs.path()
        ),
    };
    let asked = request.address.as_ref();
    if let Some(size) = asked.and_then(|a| a.size)
        && size != 1
    {
        bail!("a scaleway range has exactly one address: cannot lease {size} addresses from it");
    }
    Ok((address, asked))
}

/// `get_address`: the range's address, if it is free.
pub fn get_address(request: &IpamRequest) -> anyhow::Result<Output> {
    let (address, _) = the_address(request)?;
    let used: Option<u64> = request.ar.attrs.parse("USED_LEASES")?;
    if used.unwrap_or(0) >= 1 {
        bail!("the address {address} of this range is already leased (a scaleway range has one address)");
    }
    let mut t = Template::new();
    t.vector("ADDRESS", [("IP", address.as_str()), ("SIZE", "1")]);
    if request.ar.ip.is_none() {
        t = Template::new();
        t.vector("ADDRESS", [("IP6", address.as_str()), ("SIZE", "1")]);
    }
    Ok(Output::text(t.render()?))
}

/// `allocate_address` and `free_address`: only the range's own address.
pub fn check_address(request: &IpamRequest, action: &str) -> anyhow::Result<Output> {
    let (address, asked) = the_address(request)?;
    let asked_ip = asked.and_then(|a| a.ip.map(|i| i.to_string()).or_else(|| a.ip6.map(|i| i.to_string())));
    match asked_ip {
        Some(ip) if ip != address => {
            bail!("{action}: {ip} is not in this range, whose only address is {address}")
        }
        _ => Ok(Output::empty()),
    }
}
