//! The host-wide lock that serialises every change the driver makes on a
//! host (`flock` on a file; released when the process exits, even killed).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::run::ApplyError;

/// Held while alive.
#[derive(Debug)]
pub struct HostLock {
    _file: File,
    path: PathBuf,
}

impl HostLock {
    /// Takes the lock, waiting at most `timeout` for another holder.
    pub fn acquire(path: &Path, timeout: Duration) -> Result<Self, ApplyError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                ApplyError::new(format!(
                    "cannot create the folder of the host lock {}: {e}",
                    dir.display()
                ))
            })?;
        }
        // flock works on a read-only descriptor: a lock file another user
        // created (root running `reconcile` at boot, say) still serves. A
        // link at the path is refused, never followed.
        let nofollow = opennebula::fsutil::O_NOFOLLOW;
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
            .map_err(|e| ApplyError::new(format!("cannot open the host lock {}: {e}", path.display())))?;
        let start = Instant::now();
        let mut pause = Duration::from_micros(200);
        loop {
            match file.try_lock() {
                Ok(()) => {
                    return Ok(Self {
                        _file: file,
                        path: path.to_path_buf(),
                    });
                }
                Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < timeout => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(ApplyError::new(format!(
                        "another scaleway-vnm action has held the host lock {} for more than {} s; nothing was \
                         changed (`fuser -v {}` shows who holds it)",
                        path.display(),
                        timeout.as_secs(),
                        path.display()
                    )));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(ApplyError::new(format!("cannot lock {}: {e}", path.display())));
                }
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time() {
        let dir = test_support::TempDir::new("lock");
        let path = dir.path().join("sub/host.lock");
        let held = HostLock::acquire(&path, Duration::from_secs(1)).unwrap();
        let e = HostLock::acquire(&path, Duration::from_millis(50))
            .unwrap_err()
            .to_string();
        assert!(e.contains("another scaleway-vnm action has held the host lock"), "{e}");
        drop(held);
        HostLock::acquire(&path, Duration::from_millis(50)).unwrap();
    }

    /// A link planted at the lock's path is refused, not followed.
    #[test]
    fn a_link_at_the_path_is_refused() {
        let dir = test_support::TempDir::new("lock-link");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let path = dir.path().join("host.lock");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let e = HostLock::acquire(&path, Duration::from_millis(50))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot open the host lock"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }
}
