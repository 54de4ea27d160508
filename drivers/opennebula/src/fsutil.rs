//! Files the drivers keep (state, records) and the configuration files the
//! install edits: replaced atomically, never through a predictable or
//! world-readable temporary file.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Replaces `path` with `bytes` so that a reader (or a crash) sees the old
/// file or the new one, never a mix: a temporary file beside it, fsync,
/// rename, fsync of the folder. The new file gets `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    write_atomic_as(path, bytes, mode, None)
}

/// [`write_atomic`], creating the file's folder first if needed.
pub fn write_atomic_creating(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    write_atomic(path, bytes, mode)
}

/// [`write_atomic`], the new file owned by `owner` (uid, gid) when given.
/// The temporary file has an unpredictable name, is created anew (never
/// through an existing file or link: `O_CREAT | O_EXCL`, `O_NOFOLLOW`), and
/// is readable by its owner only until it has its mode and owner: a
/// configuration file holding a password is never world-readable, even
/// briefly.
pub fn write_atomic_as(path: &Path, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    replace(path, bytes, mode, owner, true)
}

/// [`write_atomic_creating`] without the two fsyncs: a reader sees the old
/// file or the new one (the rename), and so does a crash on ext4 (which
/// writes a file renamed over another before the rename), but the last
/// change may be lost with the machine. For the hosts' records: after a
/// host crash oned deploys its VMs again, and each `pre` records its VM
/// again; an action then does not wait for a disk busy with the VMs' images.
pub fn write_replacing_creating(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    replace(path, bytes, mode, None, false)
}

fn replace(path: &Path, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>, sync: bool) -> std::io::Result<()> {
    let (mut file, tmp) = create_temporary(path)?;
    let mut write = || -> std::io::Result<()> {
        file.write_all(bytes)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
        file.set_permissions(Permissions::from_mode(mode))?;
        if sync {
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| sync && !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// A new file beside `path`, mode 0600, with a random name.
fn create_temporary(path: &Path) -> std::io::Result<(File, PathBuf)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut last = None;
    for _ in 0..8 {
        let mut random = [0u8; 8];
        File::open("/dev/urandom")?.read_exact(&mut random)?;
        let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = path.with_file_name(format!(".{name}.{suffix}.tmp"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(O_NOFOLLOW)
            .open(&tmp)
        {
            Ok(file) => return Ok((file, tmp)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temporary file name")))
}

/// `open(2)`'s `O_NOFOLLOW`: a link at the path is an error, not followed.
pub const O_NOFOLLOW: i32 = nix::fcntl::OFlag::O_NOFOLLOW.bits();

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("one-scaleway-fsutil-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn replaces_with_the_mode_and_leaves_no_temporary() {
        let dir = scratch("mode");
        let path = dir.join("state.json");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o640).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert!(write_atomic(&dir.join("missing/x"), b"", 0o600).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A link planted where the file goes is replaced, not followed.
    #[test]
    fn a_planted_link_is_replaced_not_followed() {
        let dir = scratch("link");
        let victim = dir.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let path = dir.join("state.json");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!std::fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporary_names_differ_and_are_created_private() {
        let dir = scratch("tmp");
        let path = dir.join("oned.conf");
        let (a, pa) = create_temporary(&path).unwrap();
        let (_, pb) = create_temporary(&path).unwrap();
        assert_ne!(pa, pb);
        assert_eq!(a.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        assert!(pa.file_name().unwrap().to_string_lossy().starts_with(".oned.conf."));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
