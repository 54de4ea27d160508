//! Plumbing shared by the benchmarks: programs run with a time limit
//! (argument vectors, never a shell), temporary folders, network namespaces
//! made and deleted by the bench, threads inside a namespace, the drivers'
//! release binaries, statistics.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use opennebula::process;

/// What one program run gave.
#[derive(Debug, Clone)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// The run as an error if it failed.
    pub fn check(self, what: &str) -> anyhow::Result<Self> {
        if self.ok() {
            return Ok(self);
        }
        let err: Vec<&str> = self.stderr.lines().rev().take(6).collect();
        let err: Vec<&str> = err.into_iter().rev().collect();
        bail!(
            "{what} failed ({:?}): {} {}",
            self.code,
            err.join(" | "),
            self.stdout.trim()
        )
    }
}

/// Runs `cmd` with `stdin`; kills it (SIGKILL) after `limit`
/// ([`opennebula::process`]). The elapsed time runs from just before the
/// spawn to the exit.
pub fn run(cmd: &mut Command, stdin: &[u8], limit: Duration) -> anyhow::Result<Ran> {
    let shown = format!("{:?}", cmd.get_program());
    let out = process::run(cmd, stdin, limit).with_context(|| format!("running {shown}"))?;
    Ok(Ran {
        code: out.status.code(),
        stdout: out.stdout_text(),
        stderr: out.stderr_text(),
        elapsed: out.elapsed,
    })
}

/// `program args...` with a 120 s limit, failing unless it exits 0; its stdout.
pub fn run_ok(args: &[&str], stdin: &[u8]) -> anyhow::Result<String> {
    let (program, rest) = args.split_first().ok_or_else(|| anyhow!("no program"))?;
    let ran = run(Command::new(program).args(rest), stdin, Duration::from_secs(120))?;
    Ok(ran.check(&args.join(" "))?.stdout)
}

/// A temporary folder, removed with its contents when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> anyhow::Result<Self> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("one-scaleway-bench-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The prefix of every namespace the bench makes.
pub const NS_PREFIX: &str = "osbench-";

/// A network namespace made by the bench; its processes are killed and it
/// is deleted when dropped.
pub struct NetNs {
    name: String,
}

impl NetNs {
    pub fn new(label: &str) -> anyhow::Result<Self> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{NS_PREFIX}{}-{label}{n}", std::process::id());
        run_ok(&["ip", "netns", "add", &name], b"")?;
        let ns = Self { name };
        run_ok(&["ip", "-n", ns.name(), "link", "set", "lo", "up"], b"")?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// An uplink (a veth pair, 10.20.0.5/24 on `uplink0`) and a default
    /// route through it, as every host has.
    pub fn with_uplink(self) -> anyhow::Result<Self> {
        for args in [
            &["link", "add", "uplink0", "type", "veth", "peer", "uplink1"][..],
            &["link", "set", "uplink0", "up"],
            &["link", "set", "uplink1", "up"],
            &["addr", "add", "10.20.0.5/24", "dev", "uplink0"],
            &["route", "add", "default", "via", "10.20.0.1"],
        ] {
            self.ip(args)?;
        }
        Ok(self)
    }

    /// `ip -n <ns> args...`.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["ip", "-n", self.name.as_str()];
        all.extend_from_slice(args);
        run_ok(&all, b"")
    }
}

/// Kills every process inside namespace `name` and deletes it.
fn delete_ns(name: &str) {
    if let Ok(pids) = run_ok(&["ip", "netns", "pids", name], b"") {
        for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let _ = run(
        Command::new("ip").args(["netns", "del", name]),
        b"",
        Duration::from_secs(30),
    );
}

impl Drop for NetNs {
    fn drop(&mut self) {
        delete_ns(&self.name);
    }
}

/// Deletes the namespaces a killed earlier run left (its PID is gone).
pub fn sweep_leftovers() -> Vec<String> {
    let Ok(list) = run_ok(&["ip", "netns", "list"], b"") else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(NS_PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            delete_ns(name);
            removed.push(name.to_owned());
        }
    }
    removed
}

/// Runs `f` on a new thread inside namespace `ns` (checked to differ from
/// the caller's); programs it starts run there too.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || -> anyhow::Result<T> {
        enter_ns(&path)?;
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow!("a thread inside {ns} failed"))?
}

/// Moves the calling thread into the network namespace at `path`.
pub fn enter_ns(path: &str) -> anyhow::Result<()> {
    let before = std::fs::read_link("/proc/thread-self/ns/net")?;
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
    nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).with_context(|| format!("setns {path}"))?;
    let after = std::fs::read_link("/proc/thread-self/ns/net")?;
    if before == after {
        bail!("the thread did not leave its namespace for {path}");
    }
    Ok(())
}

/// Whether the bench runs as root.
pub fn is_root() -> bool {
    host_tools::run::effective_uid() == 0
}

/// Whether `program` is in PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// The workspace's release binaries of the drivers, found beside the
/// bench's own executable.
#[derive(Debug, Clone)]
pub struct Bins {
    pub ipam: PathBuf,
    pub vnm: PathBuf,
    pub provision: PathBuf,
    pub me: PathBuf,
}

/// The workspace's root (from where the bench was built).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> anyhow::Result<String> {
    let path = workspace().join("tests/fixtures").join(name);
    std::fs::read_to_string(&path).with_context(|| format!("cannot read the fixture {}", path.display()))
}

impl Bins {
    pub fn locate() -> anyhow::Result<(Self, Vec<String>)> {
        let me = std::env::current_exe().context("the bench's own path")?;
        let dir = me.parent().ok_or_else(|| anyhow!("{} has no folder", me.display()))?;
        let find = |name: &str| -> anyhow::Result<PathBuf> {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                bail!(
                    "{} is missing: build the drivers in the same target folder first, \
                     `cargo build --release -p scaleway-ipam -p scaleway-vnm -p scaleway-provision` \
                     (with the same CARGO_TARGET_DIR as the bench)",
                    p.display()
                )
            }
        };
        let bins = Self {
            ipam: find("scaleway-ipam")?,
            vnm: find("scaleway-vnm")?,
            provision: find("scaleway-provision")?,
            me: me.clone(),
        };
        let mut warnings = Vec::new();
        for (bin, sources) in [
            (
                &bins.ipam,
                &["drivers/ipam", "drivers/scaleway", "drivers/opennebula"][..],
            ),
            (&bins.vnm, &["hooks", "drivers/scaleway", "drivers/opennebula"][..]),
            (
                &bins.provision,
                &["drivers/provision", "drivers/scaleway", "hooks/private"][..],
            ),
        ] {
            let built = std::fs::metadata(bin).and_then(|m| m.modified()).ok();
            let newest = sources.iter().filter_map(|s| newest_rs(&workspace().join(s))).max();
            if let (Some(b), Some(n)) = (built, newest)
                && n > b
            {
                warnings.push(format!(
                    "{}: some of its sources were modified after it was built; if their content changed, rebuild \
                     it (cargo build --release) to measure the current code",
                    bin.display()
                ));
            }
        }
        Ok((bins, warnings))
    }
}

/// The newest modification time of the `.rs` files below `dir`.
fn newest_rs(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && !p.ends_with("target") {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs")
                && let Ok(t) = e.metadata().and_then(|m| m.modified())
            {
                newest = newest.max(Some(t));
            }
        }
    }
    newest
}

/// Copies file or folder `from` over `to` (a folder replaced whole).
pub fn copy_over(from: &Path, to: &Path) -> anyhow::Result<()> {
    if !from.is_dir() {
        std::fs::copy(from, to).with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
        return Ok(());
    }
    match std::fs::remove_dir_all(to) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        copy_over(&entry.path(), &to.join(entry.file_name()))?;
    }
    Ok(())
}

/// Links `target` as `dir/<relative>` (the way install.sh lays out the
/// action files); returns the link.
pub fn link_as(target: &Path, dir: &Path, relative: &str) -> anyhow::Result<PathBuf> {
    let link = dir.join(relative);
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(target, &link).with_context(|| format!("cannot link {}", link.display()))?;
    Ok(link)
}

/// The median of some durations, in milliseconds.
pub fn median_ms(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        f64::midpoint(v[mid - 1], v[mid])
    }
}

/// Milliseconds of a duration.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Waits until `check` holds or `limit` passes; the time it took.
pub fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if check() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
