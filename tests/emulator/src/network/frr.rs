//! FRR on the emulated servers (`NetworkOptions::frr`, `--frr`): the model
//! of "the OS image comes with FRR and bgpd running", which the real
//! bootstrap installs and the sandbox's skips.
//!
//! When a server's namespace is built, `zebra` and `bgpd` (Debian's, from
//! `/usr/lib/frr`) start inside it with an instance folder of their own,
//! `<state root>/<server id>/frr` (sockets, pid files, logs, the
//! configuration `frr-reload.py` writes; owned by `frr`): `--vty_socket
//! DIR`, `-i DIR/<daemon>.pid`, `-z DIR/zserv.api`, `-P 0` (no vty port),
//! `-f /dev/null` (started empty; `evpn-config` configures them). With
//! `host_fs`, every command `exec` or the ssh alias runs on the server sees
//! DIR on `/run/frr` (FRR's default: `vtysh` and `frr-reload.py` need no
//! option, see [`super::hostfs`]); otherwise the server's `env` file gets
//! `ONE_SCALEWAY_FRR_DIR=DIR`. Either way, `evpn-config` and the private
//! driver's `pre` and `clean` talk to this instance, never to the machine's
//! FRR.
//! The daemons are stopped by PID (SIGTERM, then SIGKILL after 5 s) before
//! the namespace goes; `cleanup` stops those a killed emulator left (found
//! by their pid files, checked against their command lines).

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawnp};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// Where Debian's FRR daemons are.
pub const DAEMONS: &str = "/usr/lib/frr";
/// The daemons started, with the file that shows each is ready.
const READY: [(&str, &str); 2] = [("zebra", "zserv.api"), ("bgpd", "bgpd.vty")];
/// The variable the drivers read (see `private_apply::apply`).
pub const FRR_DIR_ENV: &str = "ONE_SCALEWAY_FRR_DIR";

const START_WAIT: Duration = Duration::from_secs(10);
const STOP_WAIT: Duration = Duration::from_secs(5);

/// A daemon this process started (and reaps).
#[derive(Debug)]
struct Daemon {
    pid: Pid,
    exited: Option<String>,
}

impl Daemon {
    /// Whether it still runs (reaps it once it has exited).
    fn running(&mut self) -> bool {
        if self.exited.is_some() {
            return false;
        }
        match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => true,
            Ok(status) => {
                self.exited = Some(format!("{status:?}"));
                false
            }
            Err(e) => {
                self.exited = Some(e.to_string());
                false
            }
        }
    }
}

/// One server's FRR (zebra + bgpd), stopped when dropped.
#[derive(Debug)]
pub struct Instance {
    pub dir: PathBuf,
    children: Vec<Daemon>,
}

/// `ip ARGS` with a clean signal state: no blocked signals, default
/// dispositions, its own process group. (A program that blocks
/// SIGINT/SIGTERM to handle them in a thread, like this emulator's binary
/// or the sandbox, passes its mask to every child it spawns: daemons that
/// cannot be stopped by SIGTERM.)
fn spawn_ip(args: &[String], stderr: &File) -> Result<Pid, String> {
    let e = |what: &str, err: nix::Error| format!("{what}: {err}");
    let null_in = File::open("/dev/null").map_err(|err| format!("/dev/null: {err}"))?;
    let null_out = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(|err| format!("/dev/null: {err}"))?;
    let mut actions = PosixSpawnFileActions::init().map_err(|err| e("posix_spawn", err))?;
    for (fd, target) in [
        (null_in.as_raw_fd(), 0),
        (null_out.as_raw_fd(), 1),
        (stderr.as_raw_fd(), 2),
    ] {
        actions.add_dup2(fd, target).map_err(|err| e("posix_spawn dup2", err))?;
    }
    let mut attr = PosixSpawnAttr::init().map_err(|err| e("posix_spawn", err))?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK
            | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF
            | PosixSpawnFlags::POSIX_SPAWN_SETPGROUP,
    )
    .map_err(|err| e("posix_spawn flags", err))?;
    attr.set_sigmask(&SigSet::empty())
        .map_err(|err| e("posix_spawn sigmask", err))?;
    let mut defaults = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGPIPE] {
        defaults.add(sig);
    }
    attr.set_sigdefault(&defaults)
        .map_err(|err| e("posix_spawn sigdefault", err))?;
    attr.set_pgroup(Pid::from_raw(0))
        .map_err(|err| e("posix_spawn pgroup", err))?;
    let cstring = |b: &[u8]| CString::new(b).map_err(|_| "a NUL byte in an argument".to_owned());
    let mut argv = vec![cstring(b"ip")?];
    for a in args {
        argv.push(cstring(a.as_bytes())?);
    }
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    posix_spawnp(c"ip", &actions, &attr, &argv, &env).map_err(|err| format!("cannot run ip: {err}"))
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}

impl Instance {
    /// Starts zebra then bgpd in namespace `ns`, with folder `dir`.
    pub fn start(ns: &str, dir: &Path) -> Result<Instance, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(dir.join("vtysh.conf"), "service integrated-vtysh-config\n")
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let d = dir.display().to_string();
        let chown = Command::new("chown")
            .args(["-R", "frr:frr", &d])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run chown: {e}"))?;
        if !chown.status.success() {
            return Err(format!(
                "chown -R frr:frr {d}: {} (is FRR installed? apt-get install frr frr-pythontools)",
                String::from_utf8_lossy(&chown.stderr).trim()
            ));
        }
        let mut instance = Instance {
            dir: dir.to_path_buf(),
            children: Vec::new(),
        };
        for (daemon, ready) in READY {
            let out = dir.join(format!("{daemon}.out"));
            let log = File::create(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            let program = format!("{DAEMONS}/{daemon}");
            let mut args: Vec<String> = vec![
                "netns".into(),
                "exec".into(),
                ns.into(),
                program.clone(),
                "-f".into(),
                "/dev/null".into(),
                "--vty_socket".into(),
                d.clone(),
                "-i".into(),
                format!("{d}/{daemon}.pid"),
                "-z".into(),
                format!("{d}/zserv.api"),
                "-P".into(),
                "0".into(),
                "--log".into(),
                format!("file:{d}/{daemon}.log"),
            ];
            if daemon == "zebra" {
                args.extend(["-s".into(), "90000000".into()]);
            }
            // `ip netns exec` execs the daemon: the child's PID is the daemon's.
            // Its own process group: a Ctrl-C in the terminal is for the
            // emulator (which stops the daemons), not for them.
            let pid = spawn_ip(&args, &log).map_err(|e| format!("{program} in {ns}: {e}"))?;
            instance.children.push(Daemon { pid, exited: None });
            let path = dir.join(ready);
            let deadline = Instant::now() + START_WAIT;
            while !path.exists() {
                let exited = instance.children.last_mut().is_some_and(|d| !d.running());
                if exited || Instant::now() >= deadline {
                    let why = format!("{} {}", tail(&out), tail(&dir.join(format!("{daemon}.log"))));
                    let status = instance
                        .children
                        .last()
                        .and_then(|d| d.exited.clone())
                        .unwrap_or_else(|| "no socket after 10 s".to_owned());
                    return Err(format!(
                        "{program} did not start in {ns} ({status}): {} (is FRR installed? apt-get install frr)",
                        why.trim()
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(instance)
    }

    /// The daemons' PIDs.
    pub fn pids(&self) -> Vec<i32> {
        self.children.iter().map(|d| d.pid.as_raw()).collect()
    }

    /// SIGTERM to every daemon still running.
    pub fn signal(&mut self) {
        for d in &mut self.children {
            if d.running() {
                let _ = kill(d.pid, Signal::SIGTERM);
            }
        }
    }

    /// Waits for the daemons to exit; SIGKILL for one still there after 5 s.
    pub fn wait(&mut self) {
        let deadline = Instant::now() + STOP_WAIT;
        for d in &mut self.children {
            while d.running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if d.running() {
                let _ = kill(d.pid, Signal::SIGKILL);
                let _ = waitpid(d.pid, None);
            }
        }
        self.children.clear();
    }

    pub fn stop(&mut self) {
        self.signal();
        self.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Appends `KEY=VALUE` to a server's `env` file.
pub fn append_env(file: &Path, key: &str, value: &str) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .and_then(|mut f| writeln!(f, "{key}={value}"))
        .map_err(|e| format!("{}: {e}", file.display()))
}

/// Stops the daemons a killed emulator left in `dir` (an instance folder):
/// the PIDs of its pid files whose command line names the folder. Returns
/// the PIDs signalled.
pub fn stop_leftovers(dir: &Path) -> Vec<i32> {
    let mut stopped = Vec::new();
    let d = dir.display().to_string();
    for (daemon, _) in READY {
        let Some(pid) = std::fs::read_to_string(dir.join(format!("{daemon}.pid")))
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            .filter(|p| *p > 1)
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let words: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        if words.first().is_some_and(|w| w.ends_with(daemon)) && words.contains(&d) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            stopped.push(pid);
        }
    }
    let deadline = Instant::now() + STOP_WAIT;
    for pid in &stopped {
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
    }
    stopped
}
