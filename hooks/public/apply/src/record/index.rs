//! How many VMs hold a key (an address, a port, a MAC, a bridge, a
//! chain), without a file per key: a counting filter in one file
//! (`index`): 2^20 counters of 16 bits, three per key, at places a SHA-256
//! of the key chooses. A key's count is the least of its three counters:
//! never fewer than the VMs that hold it (keys sharing a counter only add
//! to it), so a count that says "no VM but those read" is exact, and a
//! count too high costs a slower path (every bucket read). Counters are
//! read and written in place, two bytes each: an action creates no file.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The counters.
const SLOTS: u64 = 1 << 20;
/// The pages the index is written in.
const PAGE: usize = 4096;
/// What the file starts with.
const MAGIC: &[u8; 8] = b"oskidx01";

/// The three counters of `key`.
fn places(key: &str) -> [u64; 3] {
    let d = Sha256::digest(key.as_bytes());
    let at = |i: usize| u64::from(u32::from_le_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]])) % SLOTS;
    [at(0), at(4), at(8)]
}

fn offset(place: u64) -> u64 {
    MAGIC.len() as u64 + 2 * place
}

/// The index file, open for reading and writing.
pub(super) struct Index {
    file: File,
}

impl Index {
    /// The index at `path`; `None` when there is none (or it is not one:
    /// then it is built again).
    pub(super) fn open(path: &Path) -> io::Result<Option<Self>> {
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut magic = [0u8; 8];
        let whole = file.metadata()?.len() == offset(SLOTS);
        if !whole || file.read_exact_at(&mut magic, 0).is_err() || &magic != MAGIC {
            return Ok(None);
        }
        Ok(Some(Self { file }))
    }

    fn counter(&self, place: u64) -> io::Result<u16> {
        let mut b = [0u8; 2];
        self.file.read_exact_at(&mut b, offset(place))?;
        Ok(u16::from_le_bytes(b))
    }

    /// At least how many VMs hold `key`.
    pub(super) fn count(&self, key: &str) -> io::Result<u16> {
        let mut least = u16::MAX;
        for p in places(key) {
            least = least.min(self.counter(p)?);
        }
        Ok(least)
    }

    /// One VM more holds `key` (a full counter stays full).
    pub(super) fn add(&self, key: &str) -> io::Result<()> {
        for p in places(key) {
            let c = self.counter(p)?;
            self.file.write_all_at(&c.saturating_add(1).to_le_bytes(), offset(p))?;
        }
        Ok(())
    }

    /// One VM fewer holds `key` (a full counter stays full: it no longer
    /// knows how many).
    pub(super) fn remove(&self, key: &str) -> io::Result<()> {
        for p in places(key) {
            let c = self.counter(p)?;
            if c != 0 && c != u16::MAX {
                self.file.write_all_at(&(c - 1).to_le_bytes(), offset(p))?;
            }
        }
        Ok(())
    }

    /// Writes the index of `keys` (each once per VM holding it) at `path`,
    /// replacing what was there at once.
    pub(super) fn build(path: &Path, keys: impl IntoIterator<Item = String>) -> io::Result<()> {
        // Zeroed (the allocator's fresh pages), counted in place; only the
        // pages holding a count are written (a host's keys touch a few of
        // the 512 pages), the file's others left a hole.
        let mut bytes = vec![0u8; offset(SLOTS) as usize];
        bytes[..MAGIC.len()].copy_from_slice(MAGIC);
        let mut pages = BTreeSet::from([0usize]);
        for key in keys {
            for p in places(&key) {
                let at = offset(p) as usize;
                let c = u16::from_le_bytes([bytes[at], bytes[at + 1]]).saturating_add(1);
                bytes[at..at + 2].copy_from_slice(&c.to_le_bytes());
                pages.insert(at / PAGE);
            }
        }
        let tmp: PathBuf = path.with_extension(format!("{}.tmp", std::process::id()));
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)
            .and_then(|f| {
                f.set_len(bytes.len() as u64)?;
                for page in pages {
                    let end = ((page + 1) * PAGE).min(bytes.len());
                    f.write_all_at(&bytes[page * PAGE..end], (page * PAGE) as u64)?;
                }
                Ok(())
            });
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(())
    }
}
