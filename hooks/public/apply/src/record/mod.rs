//! The record of what the driver applied on this host: every public
//! endpoint with its owner (VM, NIC), each NIC's security group rules, and
//! the bridges the driver created.
//!
//! The kernel forgets routes, proxy entries and nft elements at a reboot;
//! the record lets `reconcile` put them back, lets `clean` remove a VM's
//! endpoints even when the document it gets is not the one `pre` got, and
//! names the owner of an address in a conflict.
//!
//! It is a folder (`vnm-public/` beside where the single file
//! `vnm-public.json` of earlier versions was, which the first action
//! moves into it) read and changed only under the host lock, so that an
//! action reads and writes what concerns its VM, not every VM of the host
//! ([`store`]):
//!
//! ```text
//! host.json         the tables' base fingerprint, the bridges we created
//! vms-NN.json       the endpoints and rules of the VMs whose ID is NN modulo 64
//! index             how many VMs hold each key: an address, a port (tap), a
//!                   MAC, a bridge, a chain (a counting filter, [`index`])
//! ```
//!
//! The JSON files are on one line (`jq . FILE` indents them) and replaced
//! atomically; the index's counters are changed in place (no file created
//! per action). No fsync: a host crash may lose the last change, which the
//! VM's next `pre` records again. A key is counted before the bucket that
//! holds it is written and uncounted after, so a crash leaves a count too
//! high (a slower path), never too low; `reconcile` writes the index again,
//! exact.

use std::collections::{BTreeMap, BTreeSet};

use public_plan::endpoint::BridgeName;
use public_plan::filter::{FilterChain, NicFilter, nic_of};
use public_plan::{Endpoint, Owner};

mod format;
mod index;
mod store;

pub use store::RecordFile;

/// What the driver applied on this host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub endpoints: Vec<Endpoint>,
    /// Bridges the driver created (the only ones it may delete).
    pub bridges: BTreeSet<BridgeName>,
    /// The fingerprint of the tables' base (`public_plan::ops::base_fingerprint`)
    /// last declared or found intact on this host: while it is this
    /// version's, `pre` and `clean` trust the record for the tables'
    /// contents instead of listing them.
    pub base: Option<String>,
    /// The security group rules set on each NIC (restored by `reconcile`).
    pub filters: Vec<NicFilter>,
    /// What of the host's record this holds ([`RecordFile::load_for`]:
    /// the VMs an action looks at), and what it knows of the rest.
    pub view: View,
}

/// The part of the host's record a [`Record`] holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// The buckets read, as they were read: (endpoints, rules) of their
    /// VMs ([`RecordFile::save`] writes those that changed).
    pub(crate) loaded: BTreeMap<u64, (Vec<Endpoint>, Vec<NicFilter>)>,
    /// `host.json` as it was read (base, bridges).
    pub(crate) host: Option<(Option<String>, BTreeSet<BridgeName>)>,
    /// Bridges that endpoints the record does not hold use.
    pub busy_bridges: BTreeSet<BridgeName>,
    /// Security group chains that NICs the record does not hold use.
    pub outside_chains: BTreeSet<FilterChain>,
    /// Read from an earlier version's single file: the next save moves it
    /// into the folder.
    pub(crate) migrate: bool,
}

impl Record {
    /// The endpoints of VM `vm`.
    pub fn of_vm(&self, vm: u64) -> Vec<Endpoint> {
        self.endpoints.iter().filter(|e| e.owner.vm == vm).copied().collect()
    }

    /// Replaces the endpoints of the same owners, or adds them.
    pub fn put(&mut self, endpoints: &[Endpoint]) {
        self.forget(endpoints.iter().map(|e| e.owner));
        self.endpoints.extend_from_slice(endpoints);
        self.endpoints.sort_by_key(|e| e.owner);
    }

    /// Forgets the endpoints of these owners (and the rules of a NIC left
    /// without endpoint).
    pub fn forget(&mut self, owners: impl IntoIterator<Item = Owner>) {
        let owners: BTreeSet<Owner> = owners.into_iter().collect();
        self.endpoints.retain(|e| !owners.contains(&e.owner));
        let nics: BTreeSet<(u64, u32)> = self.endpoints.iter().map(nic_of).collect();
        self.filters.retain(|f| nics.contains(&(f.vm, f.nic_id)));
    }

    /// Its endpoints in their owners' order, its rules in their NICs'.
    pub(crate) fn sort(&mut self) {
        self.endpoints.sort_by_key(|e| e.owner);
        self.filters.sort_by_key(|f| (f.vm, f.nic_id));
    }

    /// Replaces the rules of the same NICs, or adds them.
    pub fn put_filters(&mut self, filters: &[NicFilter]) {
        let nics: BTreeSet<(u64, u32)> = filters.iter().map(|n| (n.vm, n.nic_id)).collect();
        self.filters.retain(|f| !nics.contains(&(f.vm, f.nic_id)));
        self.filters.extend_from_slice(filters);
        self.filters.sort_by_key(|f| (f.vm, f.nic_id));
    }
}

#[cfg(test)]
mod tests;
