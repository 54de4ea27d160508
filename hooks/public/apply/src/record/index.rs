//! How many VMs hold a key (an address, a port, a MAC, a bridge, a
//! chain), without a file per key: a counting filter in one file
//! (`index`): 2^20 counters of 16 bits, three per key, at places a SHA-256
//! of the key chooses. A key's count is the least of its three counters:
//! never fewer than the VMs that hold it (keys sharing a counter only add
//! to it), so a count that says "no VM but those read" is exact, and a
//! count too high costs a slower path (every bucket read). Counters are
//! read and written in place, two bytes each: an action creates no file.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The counters.
const SLOTS: u64 = 1 << 20;
/// The pages the index is written in.
const PAGE: usize = 4096;
/// The most read at once when comparing the file (16 pages).
const CHUNK: usize = 16 * PAGE;
/// What the file starts with.
const MAGIC: &[u8; 8] = b"oskidx01";
/// The file's length.
const LEN: usize = MAGIC.len() + 2 * (SLOTS as usize);

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

    /// The file's data ranges (`[start, end)`): what is not a hole (pages
    /// never written, zeros: a host's index is mostly holes, and reading
    /// one costs as much as reading data).
    fn data_ranges(&self) -> io::Result<Vec<(u64, u64)>> {
        use nix::unistd::{Whence, lseek};
        let end = i64::try_from(LEN).unwrap_or(i64::MAX);
        let mut out = Vec::new();
        let mut at = 0i64;
        while at < end {
            let start = match lseek(&self.file, at, Whence::SeekData) {
                Ok(s) => s,
                // No data after `at`.
                Err(nix::errno::Errno::ENXIO) => break,
                Err(e) => return Err(e.into()),
            };
            let stop = lseek(&self.file, start, Whence::SeekHole)?.min(end);
            if start >= stop {
                break;
            }
            out.push((start.unsigned_abs(), stop.unsigned_abs()));
            at = stop;
        }
        Ok(out)
    }

    /// The counters of `keys` (each with the number of VMs holding it),
    /// sorted by their byte offset in the file: (offset, count).
    fn counts<K: AsRef<str>>(keys: impl IntoIterator<Item = (K, u16)>) -> Vec<(usize, u16)> {
        let keys = keys.into_iter();
        let mut at: Vec<(usize, u16)> = Vec::with_capacity(3 * keys.size_hint().0);
        for (k, n) in keys {
            at.extend(places(k.as_ref()).map(|p| (offset(p) as usize, n)));
        }
        at.sort_unstable_by_key(|(o, _)| *o);
        let mut out: Vec<(usize, u16)> = Vec::with_capacity(at.len());
        for (a, n) in at {
            match out.last_mut() {
                Some((o, c)) if *o == a => *c = c.saturating_add(n),
                _ => out.push((a, n)),
            }
        }
        out
    }

    /// Page `page`'s bytes (in `buf`, its length) for `counts` (sorted);
    /// whether it holds any (page 0: the header).
    fn page(page: usize, counts: &[(usize, u16)], buf: &mut Vec<u8>) -> bool {
        let (start, end) = (page * PAGE, ((page + 1) * PAGE).min(LEN));
        buf.clear();
        buf.resize(end - start, 0);
        let mut any = page == 0;
        if any {
            buf[..MAGIC.len()].copy_from_slice(MAGIC);
        }
        let first = counts.partition_point(|(o, _)| *o < start);
        for (o, c) in counts[first..].iter().take_while(|(o, _)| *o < end) {
            buf[o - start..o - start + 2].copy_from_slice(&c.to_le_bytes());
            any = true;
        }
        any
    }

    /// Writes the index of `keys` (each with the number of VMs holding it)
    /// at `path`, replacing what was there at once.
    pub(super) fn build<K: AsRef<str>>(path: &Path, keys: impl IntoIterator<Item = (K, u16)>) -> io::Result<()> {
        let counts = Self::counts(keys);
        // Only the pages holding a count are written (a host's keys touch
        // a few of the 513 pages), the file's others left a hole.
        let tmp: PathBuf = path.with_extension(format!("{}.tmp", std::process::id()));
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)
            .and_then(|f| {
                f.set_len(LEN as u64)?;
                let mut buf = Vec::with_capacity(PAGE);
                for page in 0..LEN.div_ceil(PAGE) {
                    if Self::page(page, &counts, &mut buf) {
                        f.write_all_at(&buf, (page * PAGE) as u64)?;
                    }
                }
                Ok(())
            });
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(())
    }

    /// Makes the index at `path` exactly that of `keys`: the pages that
    /// differ written in place (none, usually: `reconcile` of a host whose
    /// index is right writes nothing), or (no index there) [`Self::build`].
    /// A crash in between leaves each counter as it was or exact: never
    /// below the truth, when it was not.
    pub(super) fn rebuild<K: AsRef<str>>(path: &Path, keys: impl IntoIterator<Item = (K, u16)>) -> io::Result<()> {
        let Some(index) = Self::open(path)? else {
            return Self::build(path, keys);
        };
        let counts = Self::counts(keys);
        let data = index.data_ranges()?;
        let (mut want, mut have) = (Vec::with_capacity(PAGE), Vec::with_capacity(PAGE));
        // The data is read a chunk at a time (a host's index is mostly
        // data past a hundred VMs: a read per page was half of this).
        let mut chunk = vec![0u8; CHUNK];
        let mut held = 0..0u64;
        for page in 0..LEN.div_ceil(PAGE) {
            let (start, end) = ((page * PAGE) as u64, ((page + 1) * PAGE).min(LEN) as u64);
            Self::page(page, &counts, &mut want);
            have.clear();
            have.resize(want.len(), 0);
            for &(from, to) in data.iter().filter(|(a, b)| *a < end && *b > start) {
                let (a, b) = (from.max(start), to.min(end));
                if !(held.start <= a && b <= held.end) {
                    let len = (to - a).min(CHUNK as u64);
                    index.file.read_exact_at(&mut chunk[..len as usize], a)?;
                    held = a..a + len;
                }
                have[(a - start) as usize..(b - start) as usize]
                    .copy_from_slice(&chunk[(a - held.start) as usize..(b - held.start) as usize]);
            }
            if want != have {
                index.file.write_all_at(&want, start)?;
            }
        }
        Ok(())
    }
}
