//! Sysctls: written under `/proc/sys` (through the root helper when not
//! root) and always read back, because a write can be refused silently
//! (procps `sysctl -q -w` exits 0 on EINVAL).

use std::path::PathBuf;

use public_plan::SysctlKey;

use host_tools::run::{ApplyError, Tools};

/// The sysctl side effects.
pub trait Sysctl {
    /// The value, or `None` when the key does not exist (a device's key
    /// before the device does).
    fn read(&self, key: &SysctlKey) -> Result<Option<String>, ApplyError>;
    /// Sets the value and checks it reads back.
    fn write(&self, key: &SysctlKey, value: &str) -> Result<(), ApplyError>;
}

/// The real `/proc/sys` (of the calling thread's network namespace).
pub struct ProcSysctl<'a> {
    pub tools: &'a Tools,
    pub root: PathBuf,
}

impl<'a> ProcSysctl<'a> {
    pub fn new(tools: &'a Tools) -> Self {
        Self {
            tools,
            root: PathBuf::from("/proc/sys"),
        }
    }
}

impl Sysctl for ProcSysctl<'_> {
    fn read(&self, key: &SysctlKey) -> Result<Option<String>, ApplyError> {
        let path = self.root.join(key.path());
        match std::fs::read_to_string(&path) {
            Ok(v) => Ok(Some(v.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ApplyError::new(format!(
                "cannot read sysctl {key} ({}): {e}",
                path.display()
            ))),
        }
    }

    fn write(&self, key: &SysctlKey, value: &str) -> Result<(), ApplyError> {
        let path = self.root.join(key.path());
        std::fs::write(&path, format!("{value}\n"))
            .map_err(|e| ApplyError::new(format!("cannot set sysctl {key} = {value} ({}): {e}", path.display())))?;
        match self.read(key)? {
            Some(v) if v == value => Ok(()),
            Some(v) => Err(ApplyError::new(format!(
                "sysctl {key} = {value} did not take: it reads {v}"
            ))),
            None => Err(ApplyError::new(format!(
                "sysctl {key} does not exist ({})",
                path.display()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn writes_and_reads_back_under_a_root() {
        let dir = test_support::TempDir::new("sysctl");
        std::fs::create_dir_all(dir.path().join("net/ipv4")).unwrap();
        std::fs::write(dir.path().join("net/ipv4/ip_forward"), "0\n").unwrap();
        let tools = Tools::direct(Duration::from_secs(5));
        let s = ProcSysctl {
            tools: &tools,
            root: dir.path().to_path_buf(),
        };
        let key = SysctlKey::ip_forward();
        assert_eq!(s.read(&key).unwrap().as_deref(), Some("0"));
        s.write(&key, "1").unwrap();
        assert_eq!(s.read(&key).unwrap().as_deref(), Some("1"));
        let missing = SysctlKey::new(&["net", "ipv4", "conf", "nope0", "forwarding"]);
        assert_eq!(s.read(&missing).unwrap(), None);
        let e = s.write(&missing, "1").unwrap_err().to_string();
        assert!(
            e.contains("cannot set sysctl net.ipv4.conf.nope0.forwarding = 1"),
            "{e}"
        );
    }
}
