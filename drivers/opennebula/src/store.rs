//! The one way our programs keep state in a file: a [`StateFile`] (typed
//! JSON, versioned, replaced atomically with its mode) guarded by a
//! [`FileLock`] (`flock`, released when the process ends, even killed).
//!
//! Four stores use them: the IPAM driver's address blocks, the
//! provisioner's provisions, and the two network drivers' host records.
//! Each says in its [`StateFile`] what the file is and what to do when it is
//! damaged; each chooses how long to wait for its lock ([`Wait`]).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::fsutil;

/// The version every state file has today (`"version": 1`).
pub const VERSION: u32 = 1;

/// A problem with a state file or its lock: one readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    pub message: String,
    /// Another process holds the lock (and [`Wait`] ran out).
    pub busy: bool,
}

impl StoreError {
    fn new(message: String) -> Self {
        Self { message, busy: false }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {}

/// What a state file holds: it says which version of its format it is.
pub trait Versioned {
    fn version(&self) -> u32;
}

/// A typed state file.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    mode: u32,
    what: String,
    when_damaged: String,
    /// Saved with fsyncs (the default), or not ([`StateFile::without_fsync`]).
    durable: bool,
    /// Saved indented (the default), or on one line ([`StateFile::compact`]).
    pretty: bool,
}

#[derive(serde::Deserialize)]
struct Version {
    version: Option<u32>,
}

impl StateFile {
    /// `path`, written with `mode`; `what` names it in messages ("the
    /// address state"), `when_damaged` says what to do when it cannot be
    /// read ("move it aside and run ...").
    pub fn new(path: impl Into<PathBuf>, mode: u32, what: &str, when_damaged: &str) -> Self {
        Self {
            path: path.into(),
            mode,
            what: what.to_owned(),
            when_damaged: when_damaged.to_owned(),
            durable: true,
            pretty: true,
        }
    }

    /// Saved as compact JSON (one line, no indentation): for the hosts'
    /// records, which every action on a host reads and writes whole (a
    /// third of the bytes of the indented form for a host's NICs and their
    /// rules); `jq . FILE` shows them indented.
    #[must_use]
    pub fn compact(mut self) -> Self {
        self.pretty = false;
        self
    }

    /// Saved without waiting for the disk
    /// ([`fsutil::write_replacing_creating`]): for the hosts' records,
    /// whose last change, if a host crash loses it, the next action on the
    /// VM records again.
    #[must_use]
    pub fn without_fsync(mut self) -> Self {
        self.durable = false;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The error for a file whose content is wrong (`problem`): names the
    /// file and says what to do. For the checks a store makes after
    /// decoding.
    pub fn damaged(&self, problem: impl std::fmt::Display) -> StoreError {
        StoreError::new(format!(
            "{} {} is damaged ({problem}); {}",
            self.what,
            self.path.display(),
            self.when_damaged
        ))
    }

    /// Reads the file: `None` when it does not exist. A file that is not
    /// JSON of `T`, or of another version than [`VERSION`], is damaged.
    /// One pass over the file when it is right (a host's record is read by
    /// every action); the version is looked for on its own only to explain
    /// a file that is not `T`.
    pub fn load<T: DeserializeOwned + Versioned>(&self) -> Result<Option<T>, StoreError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::new(format!("cannot read {}: {e}", self.path.display()))),
        };
        let wrong_version = |v: Option<u32>| match v {
            Some(VERSION) => None,
            Some(v) => Some(self.damaged(format!("version {v} is not {VERSION}"))),
            None => Some(self.damaged("it has no version")),
        };
        match serde_json::from_slice::<T>(&bytes) {
            Ok(value) => match wrong_version(Some(value.version())) {
                None => Ok(Some(value)),
                Some(e) => Err(e),
            },
            Err(e) => {
                let version: Version = serde_json::from_slice(&bytes).map_err(|e| self.damaged(e))?;
                Err(wrong_version(version.version).unwrap_or_else(|| self.damaged(e)))
            }
        }
    }

    /// Replaces the file with `value` (which carries `"version":
    /// VERSION`), creating its folder: a reader or a crash sees the old file
    /// or the new one ([`fsutil::write_atomic`]).
    pub fn save<T: Serialize>(&self, value: &T) -> Result<(), StoreError> {
        let fail = |e: String| StoreError::new(format!("cannot save {} {}: {e}", self.what, self.path.display()));
        let text = if self.pretty {
            serde_json::to_vec_pretty(value)
        } else {
            serde_json::to_vec(value)
        };
        let mut text = text.map_err(|e| fail(e.to_string()))?;
        text.push(b'\n');
        if self.durable {
            fsutil::write_atomic_creating(&self.path, &text, self.mode)
        } else {
            fsutil::write_replacing_creating(&self.path, &text, self.mode)
        }
        .map_err(|e| fail(e.to_string()))
    }

    /// Removes the file; a missing one is nothing to do.
    pub fn remove(&self) -> Result<(), StoreError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::new(format!("cannot remove {}: {e}", self.path.display()))),
        }
    }
}

/// How long [`FileLock::acquire`] waits for another holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Not at all: busy at once.
    No,
    /// At most this long.
    Up(Duration),
    /// Until it is free.
    Forever,
}

/// An exclusive `flock` on a file, held while this lives.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    path: PathBuf,
}

impl FileLock {
    /// Takes the lock on `path` (created, mode 0644, with its folder),
    /// waiting as `wait` says. A link at the path is refused, never
    /// followed; a lock file another user created (root running a command
    /// at boot, say) still serves, opened read-only.
    pub fn acquire(path: &Path, wait: Wait) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::new(format!("cannot create the folder of the lock {}: {e}", dir.display())))?;
        }
        let nofollow = fsutil::O_NOFOLLOW;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .custom_flags(nofollow)
            .open(path)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::PermissionDenied => OpenOptions::new().read(true).custom_flags(nofollow).open(path),
                _ => Err(e),
            })
            .map_err(|e| StoreError::new(format!("cannot open the lock {}: {e}", path.display())))?;
        let start = Instant::now();
        let mut pause = Duration::from_micros(200);
        loop {
            let err = match file.try_lock() {
                Ok(()) => {
                    return Ok(Self {
                        _file: file,
                        path: path.to_path_buf(),
                    });
                }
                Err(std::fs::TryLockError::WouldBlock) => match wait {
                    Wait::No => None,
                    Wait::Up(limit) if start.elapsed() >= limit => None,
                    Wait::Up(_) => {
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_millis(20));
                        continue;
                    }
                    Wait::Forever => {
                        return file
                            .lock()
                            .map(|()| Self {
                                _file: file,
                                path: path.to_path_buf(),
                            })
                            .map_err(|e| StoreError::new(format!("cannot lock {}: {e}", path.display())));
                    }
                },
                Err(std::fs::TryLockError::Error(e)) => Some(e),
            };
            return Err(match err {
                Some(e) => StoreError::new(format!("cannot lock {}: {e}", path.display())),
                None => StoreError {
                    message: format!("{} is held by another process", path.display()),
                    busy: true,
                },
            });
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Thing {
        version: u32,
        names: Vec<String>,
    }

    impl Versioned for Thing {
        fn version(&self) -> u32 {
            self.version
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("one-scaleway-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn round_trips_with_its_mode_and_refuses_damage_and_other_versions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("file");
        let file = StateFile::new(dir.join("a/b/state.json"), 0o600, "the test state", "move it aside");
        assert_eq!(file.load::<Thing>().unwrap(), None);
        let thing = Thing {
            version: VERSION,
            names: vec!["x".into()],
        };
        file.save(&thing).unwrap();
        assert_eq!(file.load::<Thing>().unwrap(), Some(thing));
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        for (text, problem) in [
            ("{", "EOF"),
            (r#"{"version": 2, "names": []}"#, "version 2 is not 1"),
            (r#"{"names": []}"#, "it has no version"),
            (r#"{"version": 1, "names": 3}"#, "invalid type"),
        ] {
            std::fs::write(file.path(), text).unwrap();
            let e = file.load::<Thing>().unwrap_err().to_string();
            assert!(
                e.starts_with("the test state ") && e.contains("is damaged (") && e.contains(problem),
                "{e}"
            );
            assert!(e.ends_with("; move it aside"), "{e}");
        }
        file.remove().unwrap();
        file.remove().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_fsync_it_still_replaces_whole_files_with_their_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("nosync");
        let file = StateFile::new(dir.join("a/state.json"), 0o640, "the test state", "move it aside")
            .without_fsync()
            .compact();
        for n in 0..3 {
            let thing = Thing {
                version: VERSION,
                names: vec![n.to_string(); n],
            };
            file.save(&thing).unwrap();
            assert_eq!(file.load::<Thing>().unwrap(), Some(thing));
        }
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        let text = std::fs::read_to_string(file.path()).unwrap();
        assert_eq!(text, "{\"version\":1,\"names\":[\"2\",\"2\"]}\n", "compact");
        let left: Vec<_> = std::fs::read_dir(dir.join("a"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["state.json"], "no temporary file left");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_holder_at_a_time_and_waiting_as_asked() {
        let dir = scratch("lock");
        let path = dir.join("x.lock");
        let held = FileLock::acquire(&path, Wait::No).unwrap();
        let e = FileLock::acquire(&path, Wait::No).unwrap_err();
        assert!(e.busy && e.to_string().contains("held by another process"), "{e}");
        let started = Instant::now();
        assert!(
            FileLock::acquire(&path, Wait::Up(Duration::from_millis(100)))
                .unwrap_err()
                .busy
        );
        assert!(started.elapsed() >= Duration::from_millis(100));
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || FileLock::acquire(&path, Wait::Forever).map(|_| ()))
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
        waiter.join().unwrap().unwrap();
        // A link planted at the lock's path is refused.
        let link = dir.join("link.lock");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(!FileLock::acquire(&link, Wait::No).unwrap_err().busy);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
