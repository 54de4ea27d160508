//! What a provision is, as the frontend remembers it: one JSON file per
//! provision (`<state dir>/provisions/<name>.json`, mode 0600), replaced
//! atomically after every step, and a lock file beside it held for the whole
//! run, so two commands of this frontend never work on the same provision at
//! once. The authority is the record in oned ([`crate::record`]), written
//! before the file, and locked in oned against other frontends; the file is
//! its cache.
//!
//! The file is a journal as much as a record: a command that was killed
//! left its `pending` operation in it, and running the same command again
//! continues it. Scaleway resources are also tagged with the provision's
//! id, so even a step whose result was never recorded is found again by tag
//! instead of being created twice.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Error, Result, anyhow};
use opennebula::driver::Env;
use opennebula::store::{FileLock, StateFile, VERSION, Versioned, Wait};
use serde::{Deserialize, Serialize};

/// Where a provision stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// `create` has started and not finished (run it again to continue).
    #[default]
    Creating,
    /// Everything was created and registered.
    Ready,
    /// `delete` has started and not finished (run it again to continue).
    Deleting,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Ready => "ready",
            Self::Deleting => "deleting",
        }
    }
}

/// An operation that started and must be finished before another begins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Pending {
    /// `host add`: the indexes of the hosts being added.
    HostAdd { indexes: Vec<u32> },
    /// `host delete`: the indexes of the hosts being removed.
    HostDelete { indexes: Vec<u32> },
    /// `ip add`: how many public ranges the network has when done.
    IpAdd { target: u32 },
}

/// An SSH key the servers are installed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKeyRecord {
    pub id: String,
    pub name: String,
    /// Registered by this provision (deleted with it); otherwise it was there before.
    pub ours: bool,
}

/// A host of the provision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HostRecord {
    /// Never reused within a provision (`<name>-host<index>`).
    pub index: u32,
    pub name: String,
    pub server_id: Option<String>,
    pub public_ip: Option<Ipv4Addr>,
    pub private_ip: Option<Ipv4Addr>,
    pub vlan: Option<u32>,
    pub bootstrapped: bool,
    /// Its OpenNebula host id once registered.
    pub one_id: Option<i64>,
}

/// The OpenNebula objects registered for the provision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OneRecord {
    pub cluster: Option<i64>,
    pub image_datastore: Option<i64>,
    pub system_datastore: Option<i64>,
    pub public_network: Option<i64>,
    pub private_template: Option<i64>,
}

/// A provision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProvisionState {
    pub version: u32,
    /// Random, in every tag (`one-scaleway-provision=<id>`).
    pub id: String,
    pub name: String,
    /// The description as given to `create` (YAML).
    pub description: String,
    pub created_at: String,
    /// Copies of the description's facts that must not change under it
    /// (`zone`: the provider's at create) or that `show` prints without
    /// asking oned. Empty in records written before they existed.
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub zone: String,
    #[serde(default)]
    pub hypervisor: String,
    #[serde(default)]
    pub opennebula_version: String,
    /// This copy was written after oned's record: when oned no longer has
    /// the record, the provision was deleted (or its record lost) elsewhere,
    /// and this copy is stale (`adopt` puts it back). False in copies from
    /// before oned kept the records, which move into oned by themselves.
    #[serde(default)]
    pub oned_record: bool,
    pub phase: Phase,
    pub pending: Option<Pending>,
    pub last_error: Option<String>,
    pub project_id: String,
    pub ssh_keys: Vec<SshKeyRecord>,
    pub vpc: Option<String>,
    pub private_network: Option<String>,
    pub gateway: Option<String>,
    pub gateway_network: Option<String>,
    pub next_host_index: u32,
    pub hosts: Vec<HostRecord>,
    pub one: OneRecord,
}

impl Versioned for ProvisionState {
    fn version(&self) -> u32 {
        self.version
    }
}

impl ProvisionState {
    pub fn host(&self, index: u32) -> Option<&HostRecord> {
        self.hosts.iter().find(|h| h.index == index)
    }

    pub fn host_mut(&mut self, index: u32) -> Option<&mut HostRecord> {
        self.hosts.iter_mut().find(|h| h.index == index)
    }
}

/// The folder of one-scaleway's frontend state: `ONE_SCALEWAY_STATE_DIR`,
/// else `$ONE_LOCATION/var/scaleway`, else `/var/lib/one/scaleway`.
pub fn state_dir(env: &Env) -> PathBuf {
    if let Some(dir) = env.get("ONE_SCALEWAY_STATE_DIR") {
        return PathBuf::from(dir);
    }
    match env.get("ONE_LOCATION") {
        Some(one) => Path::new(one).join("var/scaleway"),
        None => PathBuf::from("/var/lib/one/scaleway"),
    }
}

/// The provisions' files.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// A provision's file, locked for as long as this lives, and its record in
/// oned once attached ([`crate::record::Link`]: written first).
pub struct Locked {
    file: StateFile,
    _lock: FileLock,
    link: Option<crate::record::Link>,
}

impl std::fmt::Debug for Locked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locked")
            .field("path", &self.file.path())
            .field("in_oned", &self.link.is_some())
            .finish()
    }
}

impl Store {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("provisions"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// The provision's file ([`opennebula::store::StateFile`], mode 0600).
    fn file(&self, name: &str) -> StateFile {
        StateFile::new(
            self.path(name),
            0o600,
            "the provision file",
            "move it aside: oned keeps the provision's record, and the next command on it writes this copy again",
        )
    }

    /// Every provision recorded (names, sorted).
    pub fn names(&self) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(anyhow!("cannot read {}: {e}", self.dir.display())),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Takes the provision's lock; fails at once if another command holds it.
    pub fn lock(&self, name: &str) -> Result<Locked> {
        let lock_path = self.dir.join(format!(".{name}.lock"));
        match FileLock::acquire(&lock_path, Wait::No) {
            Ok(lock) => Ok(Locked {
                file: self.file(name),
                _lock: lock,
                link: None,
            }),
            Err(e) if e.busy => Err(anyhow!(
                "another scaleway-provision command is working on provision {name}: wait for it to finish"
            )),
            Err(e) => Err(Error::msg(e)),
        }
    }

    /// Reads a provision without locking it (for `show` and `list`).
    pub fn read(&self, name: &str) -> Result<Option<ProvisionState>> {
        self.file(name).load().map_err(Error::msg)
    }
}

impl Locked {
    pub fn load(&self) -> Result<Option<ProvisionState>> {
        self.file.load().map_err(Error::msg)
    }

    /// From now on, every save goes to oned's record first.
    pub fn attach(&mut self, link: crate::record::Link) {
        self.link = Some(link);
    }

    /// Records the provision: in oned (when attached), then the file, replaced
    /// atomically (temporary file, fsync, rename).
    pub fn save(&self, state: &ProvisionState) -> Result<()> {
        let mut state = state.clone();
        if let Some(link) = &self.link {
            state.oned_record = true;
            link.save(&state)?;
        }
        state.version = VERSION;
        self.file.save(&state).map_err(Error::msg)
    }

    /// Removes the record in oned and the file (the provision is gone).
    pub fn remove(&self) -> Result<()> {
        if let Some(link) = &self.link {
            link.remove()?;
        }
        self.file.remove().map_err(Error::msg)
    }
}

/// A new provision id: `p` and 12 random hex digits.
pub fn new_id() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 6];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| anyhow!("cannot read /dev/urandom: {e}"))?;
    Ok(format!(
        "p{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// Now, as `2026-11-25T19:30:00Z`.
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs)
}

/// Seconds since the epoch as an RFC 3339 UTC timestamp (`humantime`).
pub fn format_utc(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(1_795_635_000), "2026-11-25T19:30:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn one_command_at_a_time_and_atomic_files() {
        let dir = std::env::temp_dir().join(format!("provision-state-{}", std::process::id()));
        let store = Store::new(&dir);
        let held = store.lock("edge").unwrap();
        assert!(
            store
                .lock("edge")
                .unwrap_err()
                .to_string()
                .contains("another scaleway-provision command")
        );
        assert!(store.lock("other").is_ok());
        assert_eq!(held.load().unwrap(), None);
        let state = ProvisionState {
            id: new_id().unwrap(),
            name: "edge".into(),
            ..Default::default()
        };
        held.save(&state).unwrap();
        assert_eq!(held.load().unwrap().unwrap().id, state.id);
        assert_eq!(store.names().unwrap(), vec!["edge".to_owned()]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(store.path("edge")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(held);
        assert!(store.lock("edge").is_ok());
        std::fs::write(store.path("bad"), "{").unwrap();
        assert!(store.read("bad").unwrap_err().to_string().contains("damaged"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
