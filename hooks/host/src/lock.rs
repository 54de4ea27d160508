//! The host-wide lock that serialises every change the driver makes on a
//! host (`flock` on a file; released when the process exits, even killed).

use std::path::Path;
use std::time::Duration;

use opennebula::store::{FileLock, Wait};

use crate::run::ApplyError;

/// Held while alive.
#[derive(Debug)]
pub struct HostLock(FileLock);

impl HostLock {
    /// Takes the lock, waiting at most `timeout` for another holder
    /// ([`opennebula::store::FileLock`]).
    pub fn acquire(path: &Path, timeout: Duration) -> Result<Self, ApplyError> {
        match FileLock::acquire(path, Wait::Up(timeout)) {
            Ok(lock) => Ok(Self(lock)),
            Err(e) if e.busy => Err(ApplyError::new(format!(
                "another scaleway-vnm action has held the host lock {} for more than {} s; nothing was changed \
                 (`fuser -v {}` shows who holds it)",
                path.display(),
                timeout.as_secs(),
                path.display()
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub fn path(&self) -> &Path {
        self.0.path()
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
        assert!(e.contains("cannot open the lock"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }
}
