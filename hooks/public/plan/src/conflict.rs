//! Conflicts: an address of ours that the host or another endpoint already
//! maps to something else.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::endpoint::{Endpoint, Owner, Public};

/// Who holds an address, for messages.
pub(crate) fn holder(owner: Option<Owner>) -> String {
    match owner {
        Some(o) => o.to_string(),
        None => "not in the driver's record: set by hand or left over".to_owned(),
    }
}

/// Addresses of endpoints, to find who holds what.
#[derive(Default)]
pub(crate) struct Index<'a> {
    external: BTreeMap<Ipv4Addr, &'a Endpoint>,
    private: BTreeMap<Ipv4Addr, &'a Endpoint>,
    prefix: BTreeMap<Ipv6Addr, &'a Endpoint>,
    private6: BTreeMap<Ipv6Addr, &'a Endpoint>,
}

impl<'a> Index<'a> {
    pub(crate) fn of(endpoints: &'a [Endpoint]) -> Self {
        let mut index = Self::default();
        for e in endpoints {
            match e.public {
                Public::V4 { ip, external, .. } => {
                    index.external.insert(external, e);
                    index.private.insert(ip, e);
                }
                Public::V6 { ip, prefix, .. } => {
                    index.prefix.insert(prefix, e);
                    index.private6.insert(ip, e);
                }
            }
        }
        index
    }

    pub(crate) fn owner_of_private(&self, ip: Ipv4Addr) -> Option<Owner> {
        self.private.get(&ip).map(|e| e.owner)
    }

    pub(crate) fn owner_of_external(&self, external: Ipv4Addr) -> Option<Owner> {
        self.external.get(&external).map(|e| e.owner)
    }
}

/// Conflicts found, one per address (the first explanation found wins).
#[derive(Default)]
pub(crate) struct Conflicts {
    addresses: BTreeSet<IpAddr>,
    pub(crate) list: Vec<String>,
}

impl Conflicts {
    pub(crate) fn add(&mut self, address: impl Into<IpAddr>, message: String) {
        if self.addresses.insert(address.into()) {
            self.list.push(message);
        }
    }
}

/// Conflicts among the endpoints to ensure, and with the ones to keep.
pub(crate) fn check_endpoints(ensure: &[Endpoint], keep: &Index<'_>, conflicts: &mut Conflicts) {
    let mut seen = Index::default();
    for e in ensure {
        match e.public {
            Public::V4 { ip, external, .. } => {
                if let Some(o) = seen.external.get(&external).filter(|o| o.owner != e.owner) {
                    conflicts.add(
                        external,
                        format!("EXTERNAL_IP {external} is on both {} and {}", o.owner, e.owner),
                    );
                }
                if let Some(o) = seen.private.get(&ip).filter(|o| o.owner != e.owner) {
                    conflicts.add(ip, format!("IP {ip} is on both {} and {}", o.owner, e.owner));
                }
                if let Some(Public::V4 { ip: theirs, .. }) = keep.external.get(&external).map(|k| k.public)
                    && theirs != ip
                {
                    conflicts.add(external, format!(
                        "flexible IP {external} is already mapped to {theirs} ({}): refusing to map it to {ip} for {}",
                        holder(keep.owner_of_private(theirs)),
                        e.owner
                    ));
                }
                if let Some(Public::V4 { external: theirs, .. }) = keep.private.get(&ip).map(|k| k.public)
                    && theirs != external
                {
                    conflicts.add(ip, format!(
                        "private IP {ip} is already mapped to flexible IP {theirs} ({}): refusing to map it to {external} for {}",
                        holder(keep.owner_of_external(theirs)),
                        e.owner
                    ));
                }
                seen.external.insert(external, e);
                seen.private.insert(ip, e);
            }
            Public::V6 { ip, prefix, .. } => {
                if let Some(o) = seen.prefix.get(&prefix).filter(|o| o.owner != e.owner) {
                    conflicts.add(
                        prefix,
                        format!("EXTERNAL_IP {prefix}/64 is on both {} and {}", o.owner, e.owner),
                    );
                }
                if let Some(o) = seen.private6.get(&ip).filter(|o| o.owner != e.owner) {
                    conflicts.add(ip, format!("IP6 {ip} is on both {} and {}", o.owner, e.owner));
                }
                if let Some(k) = keep.prefix.get(&prefix)
                    && let Public::V6 { ip: theirs, .. } = k.public
                    && theirs != ip
                {
                    conflicts.add(prefix, format!(
                        "flexible IPv6 {prefix}/64 is already routed to {theirs} ({}): refusing to route it to {ip} for {}",
                        k.owner, e.owner
                    ));
                }
                if let Some(k) = keep.private6.get(&ip)
                    && let Public::V6 { prefix: theirs, .. } = k.public
                    && theirs != prefix
                {
                    conflicts.add(
                        ip,
                        format!(
                            "IP6 {ip} already receives flexible IPv6 {theirs}/64 ({}): refusing {prefix}/64 for {}",
                            k.owner, e.owner
                        ),
                    );
                }
                seen.prefix.insert(prefix, e);
                seen.private6.insert(ip, e);
            }
        }
    }
}
