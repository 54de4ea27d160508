//! Running programs (argument vectors only, never a shell) under the
//! sandbox's control: every child is registered by PID while it runs, so
//! that Ctrl-C/SIGTERM stops exactly the processes this sandbox started;
//! output is captured and appended to the sandbox's log.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::Pid;
use opennebula::process;

/// Shared between the story and the signal thread.
#[derive(Clone, Default)]
pub struct Ctl {
    cancelled: Arc<AtomicBool>,
    children: Arc<Mutex<BTreeSet<u32>>>,
    log: Arc<Mutex<Option<PathBuf>>>,
}

/// What one run produced.
#[derive(Debug, Clone)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// What went wrong, in a few lines: the error lines (not OpenNebula's
    /// `INFO:`/`DEBUG:` log lines), or the last lines.
    pub fn complaint(&self) -> String {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .chain(self.stdout.lines())
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let errors: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| !["INFO:", "DEBUG:", "WARN:"].iter().any(|p| l.starts_with(p)))
            .collect();
        let chosen = if errors.is_empty() { &lines } else { &errors };
        chosen[chosen.len().saturating_sub(6)..].join("\n")
    }
}

/// The runner tells the sandbox about its children (Ctrl-C stops them) and
/// stops waiting when interrupted.
impl process::Watch for Ctl {
    fn started(&self, pid: u32) {
        self.children.lock().unwrap_or_else(PoisonError::into_inner).insert(pid);
    }

    fn ended(&self, pid: u32) {
        self.children
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&pid);
    }

    fn interrupted(&self) -> bool {
        self.cancelled()
    }
}

impl Ctl {
    /// Sets where every run is logged.
    pub fn set_log(&self, path: &Path) {
        *self.log.lock().unwrap_or_else(PoisonError::into_inner) = Some(path.to_path_buf());
    }

    pub fn log_path(&self) -> Option<PathBuf> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Appends a note to the log.
    pub fn note(&self, text: &str) {
        if let Some(path) = self.log_path()
            && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path)
        {
            let _ = writeln!(f, "{text}");
        }
    }

    pub fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Ctrl-C, SIGTERM: stop the running children (SIGTERM, by PID).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        for pid in self.children.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            if let Ok(p) = i32::try_from(*pid) {
                let _ = kill(Pid::from_raw(p), Signal::SIGTERM);
            }
        }
    }

    /// After `--keep`'s wait: the signal that ended it is spent.
    pub fn resume(&self) {
        self.cancelled.store(false, Ordering::SeqCst);
    }

    /// Fails when interrupted.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.cancelled() {
            bail!("interrupted");
        }
        Ok(())
    }

    /// Sleeps, waking up early when interrupted.
    pub fn sleep(&self, d: Duration) -> anyhow::Result<()> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.check()?;
            std::thread::sleep(Duration::from_millis(20).min(end.saturating_duration_since(Instant::now())));
        }
        self.check()
    }

    /// Runs a command with `stdin`, at most `limit`; the output, whatever
    /// the exit code. Interrupted or timed out: the child is killed.
    pub fn run(&self, cmd: &mut Command, stdin: &[u8], limit: Duration) -> anyhow::Result<Ran> {
        self.check()?;
        let shown = show(cmd);
        let result = process::run_watched(cmd, stdin, limit, Some(self));
        let (status, ran) = match &result {
            Ok(out) => (
                out.status.to_string(),
                Ran {
                    code: out.status.code(),
                    stdout: out.stdout_text(),
                    stderr: out.stderr_text(),
                },
            ),
            Err(process::Failure::TimedOut { stdout, stderr, .. }) => (
                format!("still running after {}s: killed", limit.as_secs()),
                Ran {
                    code: None,
                    stdout: String::from_utf8_lossy(stdout).into_owned(),
                    stderr: String::from_utf8_lossy(stderr).into_owned(),
                },
            ),
            Err(e) => (
                e.to_string(),
                Ran {
                    code: None,
                    stdout: String::new(),
                    stderr: String::new(),
                },
            ),
        };
        self.note(&format!(
            "$ {shown}\n  exit: {status}\n  stdout:\n{}\n  stderr:\n{}",
            indent(&ran.stdout),
            indent(&ran.stderr)
        ));
        match result {
            Ok(_) => Ok(ran),
            Err(process::Failure::Spawn(e)) => Err(e).with_context(|| format!("cannot run {shown}")),
            Err(_) => bail!("{shown}: {status}"),
        }
    }

    /// Runs a command that must succeed; its stdout.
    pub fn run_ok(&self, cmd: &mut Command, stdin: &[u8], limit: Duration) -> anyhow::Result<String> {
        let shown = show(cmd);
        let ran = self.run(cmd, stdin, limit)?;
        if !ran.ok() {
            bail!(
                "{shown} failed ({}): {}",
                ran.code.map_or_else(|| "killed".to_owned(), |c| format!("exit {c}")),
                ran.complaint()
            );
        }
        Ok(ran.stdout)
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// A command as one would type it (for messages).
pub fn show(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

/// `ip ARGS...` (quick, must succeed).
pub fn ip(ctl: &Ctl, args: &[&str]) -> anyhow::Result<String> {
    ctl.run_ok(Command::new("ip").args(args), b"", Duration::from_secs(30))
}

/// The signals that interrupt the sandbox.
pub fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set
}

/// Blocks the stop signals in this thread (and the threads it starts: do
/// it first) and hands them to a thread that cancels `ctl`.
pub fn take_signals(ctl: &Ctl) -> anyhow::Result<()> {
    let set = stop_signals();
    set.thread_block().context("cannot block signals")?;
    let ctl = ctl.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            while let Ok(sig) = set.wait() {
                eprintln!("\n{sig}: stopping...");
                ctl.cancel();
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code
mod tests {
    use super::*;

    #[test]
    fn a_complaint_is_the_error_lines_not_the_log() {
        let ran = Ran {
            code: Some(1),
            stdout: String::new(),
            stderr: "INFO: scaleway-vnm: starting\nDEBUG: x\nno flexible IP left\n".into(),
        };
        assert_eq!(ran.complaint(), "no flexible IP left");
        let only_logs = Ran {
            code: Some(1),
            stdout: String::new(),
            stderr: "INFO: a\nINFO: b\n".into(),
        };
        assert_eq!(only_logs.complaint(), "INFO: a\nINFO: b");
    }

    #[test]
    fn runs_capture_output_and_interruptions_kill() {
        let ctl = Ctl::default();
        let out = ctl
            .run_ok(Command::new("cat").arg("-"), b"hello", Duration::from_secs(10))
            .unwrap();
        assert_eq!(out, "hello");
        let err = ctl
            .run_ok(&mut Command::new("false"), b"", Duration::from_secs(10))
            .unwrap_err();
        assert!(format!("{err:#}").contains("false failed (exit 1)"), "{err:#}");
        let err = ctl
            .run(Command::new("sleep").arg("5"), b"", Duration::from_millis(200))
            .unwrap_err();
        assert!(format!("{err:#}").contains("killed"), "{err:#}");
        ctl.cancel();
        assert!(ctl.run(&mut Command::new("true"), b"", Duration::from_secs(1)).is_err());
        ctl.resume();
        assert!(ctl.run(&mut Command::new("true"), b"", Duration::from_secs(1)).is_ok());
    }
}
