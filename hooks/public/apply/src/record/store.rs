//! The record's folder: `host.json`, the VMs in 64 buckets, and the index
//! that counts the VMs holding an address, a port, a MAC, a bridge or a
//! chain (see the module above). [`RecordFile::load_for`] reads what one
//! VM's action looks at: its bucket, and, when the index says another VM
//! may share an address, a port or a MAC with it, every bucket; and
//! whether VMs it did not read use its bridges and chains. So an action's
//! cost does not grow with the number of VMs on the host, and it writes
//! one bucket and a few counters.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use opennebula::store::StateFile;
use public_plan::endpoint::BridgeName;
use public_plan::filter::{FilterChain, FilterTarget, NicFilter, Targets};
use public_plan::{Endpoint, Public};

use super::format::{FileV1, bridges, decode, encode};
use super::index::Index;
use super::{Record, View};
use host_tools::run::ApplyError;

/// The VMs' buckets: a VM's endpoints and rules are in `vms-NN.json`, NN
/// its ID modulo this (a bucket holds a few VMs: what an action reads and
/// writes; `reconcile` reads them all).
const BUCKETS: u64 = 64;

const WHEN_DAMAGED: &str = "move the folder aside: the next pre of each VM records it again (reconcile then restores \
                            only what is recorded)";

fn bucket(vm: u64) -> u64 {
    vm % BUCKETS
}

/// The keys by which other VMs' endpoints are found: addresses, port, MAC.
fn lookup_keys(e: &Endpoint) -> Vec<String> {
    let mut k = Vec::with_capacity(5);
    push_lookup_keys(e, &mut k);
    k
}

fn push_lookup_keys(e: &Endpoint, k: &mut Vec<String>) {
    use std::fmt::Write;
    let mut key = |a: &dyn std::fmt::Display| {
        let mut s = String::with_capacity(24);
        let _ = write!(s, "a-{a}");
        k.push(s);
    };
    match e.public {
        Public::V4 { ip, gateway, external } => [ip, gateway, external].iter().for_each(|a| key(a)),
        Public::V6 { ip, gateway, prefix } => [ip, gateway, prefix].iter().for_each(|a| key(a)),
    }
    if let Some(p) = e.port {
        k.push(format!("t-{}", p.tap));
        let mut mac = String::with_capacity(14);
        mac.push_str("m-");
        opennebula::hex::push(&mut mac, &p.mac);
        k.push(mac);
    }
}

fn bridge_key(b: BridgeName) -> String {
    format!("b-{b}")
}

fn chain_key(c: FilterChain) -> String {
    format!("c-{}", c.name())
}

/// The chains of a NIC's rules (none for a direction they leave open).
fn chains<'a>(f: &'a NicFilter, targets: &mut Targets<'a>) -> impl Iterator<Item = FilterChain> + use<> {
    targets.get(&f.rules).into_iter().filter_map(|t| match t {
        FilterTarget::Chain(c) => Some(c),
        FilterTarget::Continue => None,
    })
}

/// The keys of one VM's endpoints and rules, each once, sorted.
fn vm_keys<'a>(
    endpoints: impl IntoIterator<Item = &'a Endpoint>,
    filters: impl IntoIterator<Item = &'a NicFilter>,
    targets: &mut Targets<'a>,
) -> Vec<String> {
    let mut k = Vec::with_capacity(8);
    let mut bridges = BTreeSet::new();
    for e in endpoints {
        push_lookup_keys(e, &mut k);
        bridges.insert(e.bridge);
    }
    k.extend(bridges.into_iter().map(bridge_key));
    let chains: BTreeSet<FilterChain> = filters.into_iter().flat_map(|f| chains(f, targets)).collect();
    k.extend(chains.into_iter().map(chain_key));
    k.sort_unstable();
    k.dedup();
    k
}

/// The keys of each VM of `endpoints` and `filters`.
fn keys_by_vm<'a>(
    endpoints: &'a [Endpoint],
    filters: &'a [NicFilter],
    targets: &mut Targets<'a>,
) -> BTreeMap<u64, Vec<String>> {
    let mut of: BTreeMap<u64, (Vec<&Endpoint>, Vec<&NicFilter>)> = BTreeMap::new();
    for e in endpoints {
        of.entry(e.owner.vm).or_default().0.push(e);
    }
    for f in filters {
        of.entry(f.vm).or_default().1.push(f);
    }
    of.into_iter()
        .map(|(vm, (e, f))| (vm, vm_keys(e, f, targets)))
        .collect()
}

/// How many of `record`'s VMs hold each key.
fn held(record: &Record) -> HashMap<String, u16> {
    let mut targets = Targets::default();
    let mut out = HashMap::with_capacity(6 * record.endpoints.len());
    for keys in keys_by_vm(&record.endpoints, &record.filters, &mut targets).into_values() {
        for key in keys {
            let n: &mut u16 = out.entry(key).or_default();
            *n = n.saturating_add(1);
        }
    }
    out
}

/// The record's folder (where the single file of earlier versions was).
#[derive(Debug, Clone)]
pub struct RecordFile {
    /// `vnm-public.json`: the record of earlier versions, moved into the
    /// folder by the first action that reads it.
    legacy: StateFile,
    dir: PathBuf,
}

impl RecordFile {
    /// The record whose earlier single file is `path` (`vnm-public.json`):
    /// the folder of the same name without its extension.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let dir = path.into().with_extension("");
        Self {
            legacy: state_file(
                dir.with_extension("json"),
                "the driver's host record (of an earlier version)",
            ),
            dir,
        }
    }

    /// The record's folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn host_file(&self) -> StateFile {
        state_file(self.dir.join("host.json"), "the driver's host record")
    }

    fn bucket_file(&self, b: u64) -> StateFile {
        state_file(self.dir.join(format!("vms-{b:02}.json")), "the driver's host record")
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("index")
    }

    /// Everything the record holds (`reconcile`). Call it under the host
    /// lock, as every method.
    pub fn load(&self) -> Result<Record, ApplyError> {
        let mut record = self.start()?;
        if record.view.migrate {
            return Ok(record);
        }
        for b in 0..BUCKETS {
            self.read(&mut record, b)?;
        }
        record.sort();
        Ok(record)
    }

    /// Writes the index of `record` (all of the host's record) again, exact.
    pub fn reindex(&self, record: &Record) -> Result<(), ApplyError> {
        Index::rebuild(&self.index_path(), held(record))
            .map_err(|e| ApplyError::new(format!("cannot write {}: {e}", self.index_path().display())))
    }

    /// What an action on VM `vm` looks at, which ensures `endpoints` with
    /// `filters` (or removes what the record holds for it): its bucket,
    /// those of the VMs that share an address, a port or a MAC with it
    /// (conflicts, a lease moved from another VM); and whether VMs it did
    /// not read use its bridges ([`View::busy_bridges`]) and the chains of
    /// its rules ([`View::outside_chains`]).
    pub fn load_for(&self, vm: u64, endpoints: &[Endpoint], filters: &[NicFilter]) -> Result<Record, ApplyError> {
        let mut record = self.start()?;
        if record.view.migrate {
            return Ok(record);
        }
        let Some(index) = Index::open(&self.index_path()).map_err(|e| self.unreadable(&e))? else {
            // No index (the first action of this version, or a damaged
            // one): every bucket (the save builds the index).
            return self.load();
        };
        self.read(&mut record, bucket(vm))?;
        record.sort();
        let mine: Vec<Endpoint> = endpoints.iter().copied().chain(record.of_vm(vm)).collect();
        let held = held(&record);
        let outside = |key: &str| -> Result<bool, ApplyError> {
            let count = index.count(key).map_err(|e| self.unreadable(&e))?;
            Ok(count > held.get(key).copied().unwrap_or(0))
        };
        for key in mine.iter().flat_map(lookup_keys) {
            if outside(&key)? {
                // Another VM may share it (a lease moved, a conflict, or
                // two keys sharing counters): every bucket.
                return self.load();
            }
        }
        let bridges: BTreeSet<BridgeName> = mine.iter().map(|e| e.bridge).collect();
        for b in bridges {
            if outside(&bridge_key(b))? {
                record.view.busy_bridges.insert(b);
            }
        }
        let mut rules: Vec<NicFilter> = filters.to_vec();
        rules.extend(record.filters.iter().filter(|f| f.vm == vm).cloned());
        let mut targets = Targets::default();
        let wanted: BTreeSet<FilterChain> = rules.iter().flat_map(|f| chains(f, &mut targets)).collect();
        for c in wanted {
            if outside(&chain_key(c))? {
                record.view.outside_chains.insert(c);
            }
        }
        Ok(record)
    }

    /// The record with `host.json` read (the single file of an earlier
    /// version moved into the folder first).
    fn start(&self) -> Result<Record, ApplyError> {
        if let Some(record) = self.legacy_record()? {
            return Ok(record);
        }
        let mut record = Record::default();
        let file = self.host_file();
        let damaged = |p: String| file.damaged(p).message;
        let (base, owned) = match file.load::<FileV1>()? {
            Some(host) => (
                host.base.clone(),
                bridges(&host, &damaged).map_err(ApplyError::new)?.into_iter().collect(),
            ),
            None => (None, BTreeSet::new()),
        };
        record.base.clone_from(&base);
        record.bridges.clone_from(&owned);
        record.view.host = Some((base, owned));
        Ok(record)
    }

    /// Adds bucket `b` to `record` (in the file's order: [`Record::sort`]
    /// once all are read).
    fn read(&self, record: &mut Record, b: u64) -> Result<(), ApplyError> {
        let file = self.bucket_file(b);
        let (endpoints, filters) = match file.load::<FileV1>()? {
            Some(f) => decode(f, &|p| file.damaged(p).message).map_err(ApplyError::new)?,
            None => (Vec::new(), Vec::new()),
        };
        record.endpoints.extend(endpoints.iter().copied());
        record.filters.extend(filters.iter().cloned());
        record.view.loaded.insert(b, (endpoints, filters));
        Ok(())
    }

    fn unreadable(&self, e: &std::io::Error) -> ApplyError {
        ApplyError::new(format!(
            "cannot read the driver's host record {}: {e}",
            self.dir.display()
        ))
    }

    /// Writes what changed: `host.json`, then the keys the record's VMs
    /// gained, the buckets, and the keys they lost. A bucket the record
    /// did not read is written with what the record holds of it (a record
    /// made whole by its caller, a test's).
    pub fn save(&self, record: &Record) -> Result<(), ApplyError> {
        let host = (record.base.clone(), record.bridges.clone());
        if record.view.host.as_ref() != Some(&host) {
            let mut file = encode([], []);
            file.base.clone_from(&host.0);
            file.bridges = host.1.iter().map(ToString::to_string).collect();
            self.host_file().save(&file)?;
        }
        let index = if record.view.migrate {
            None
        } else {
            Index::open(&self.index_path()).map_err(|e| self.unreadable(&e))?
        };
        let counted = |e: std::io::Error| ApplyError::new(format!("cannot write {}: {e}", self.index_path().display()));
        let empty = (Vec::new(), Vec::new());
        let mut touched: BTreeSet<u64> = record.view.loaded.keys().copied().collect();
        touched.extend(record.endpoints.iter().map(|e| bucket(e.owner.vm)));
        for b in touched {
            let before = record.view.loaded.get(&b).unwrap_or(&empty);
            let endpoints: Vec<Endpoint> = record
                .endpoints
                .iter()
                .filter(|e| bucket(e.owner.vm) == b)
                .copied()
                .collect();
            let filters: Vec<NicFilter> = record.filters.iter().filter(|f| bucket(f.vm) == b).cloned().collect();
            if before.0 == endpoints
                && before.1 == filters
                && record.view.loaded.contains_key(&b)
                && !record.view.migrate
            {
                continue;
            }
            let mut targets = Targets::default();
            let mut olds = keys_by_vm(&before.0, &before.1, &mut targets);
            let mut news = keys_by_vm(&endpoints, &filters, &mut targets);
            let vms: BTreeSet<u64> = olds.keys().chain(news.keys()).copied().collect();
            let mut lost = Vec::new();
            for vm in vms {
                let old = olds.remove(&vm).unwrap_or_default();
                let new = news.remove(&vm).unwrap_or_default();
                // Counted before the bucket holds them, uncounted after it
                // no longer does: a crash leaves a count too high.
                if let Some(index) = &index {
                    for key in new.iter().filter(|k| old.binary_search(k).is_err()) {
                        index.add(key).map_err(counted)?;
                    }
                }
                lost.extend(old.into_iter().filter(|k| new.binary_search(k).is_err()));
            }
            let file = self.bucket_file(b);
            if endpoints.is_empty() {
                match std::fs::remove_file(file.path()) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(ApplyError::new(format!("cannot remove {}: {e}", file.path().display())));
                    }
                    _ => {}
                }
            } else {
                file.save(&encode(&endpoints, &filters))?;
            }
            if let Some(index) = &index {
                for key in &lost {
                    index.remove(key).map_err(counted)?;
                }
            }
        }
        if index.is_none() || record.view.migrate {
            // No index yet (or the record moving in): built from every bucket.
            let mut all = Record::default();
            for b in 0..BUCKETS {
                self.read(&mut all, b)?;
            }
            self.reindex(&all)?;
        }
        if record.view.migrate {
            std::fs::remove_file(self.legacy.path()).map_err(|e| {
                ApplyError::new(format!(
                    "cannot remove {} (moved into {}): {e}",
                    self.legacy.path().display(),
                    self.dir.display()
                ))
            })?;
        }
        Ok(())
    }

    /// The record of an earlier version's single file, whole: the first
    /// save moves it into the folder (every bucket written, the index
    /// built, the file removed last, so a crash moves it again); a dry run
    /// leaves it where it is.
    fn legacy_record(&self) -> Result<Option<Record>, ApplyError> {
        let Some(file) = self.legacy.load::<FileV1>()? else {
            return Ok(None);
        };
        let damaged = |p: String| self.legacy.damaged(p).message;
        let owned = bridges(&file, &damaged).map_err(ApplyError::new)?;
        let base = file.base.clone();
        let (endpoints, filters) = decode(file, &damaged).map_err(ApplyError::new)?;
        let mut view = View {
            migrate: true,
            ..View::default()
        };
        // Every bucket as empty: all written (a bucket left by a crashed
        // move included).
        view.loaded = (0..BUCKETS).map(|b| (b, (Vec::new(), Vec::new()))).collect();
        Ok(Some(Record {
            endpoints,
            filters,
            base,
            bridges: owned.into_iter().collect(),
            view,
        }))
    }
}

fn state_file(path: PathBuf, what: &str) -> StateFile {
    StateFile::new(path, 0o644, what, WHEN_DAMAGED)
        .without_fsync()
        .compact()
}
