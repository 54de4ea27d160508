//! The one way our programs run another program: [`run`].
//!
//! Used by the network drivers (`ip`, `nft`, the root helper through
//! `sudo`), by [`crate::ssh`] (the provisioner's host bootstrap, the public
//! driver's frontend `clean`), by the benchmarks and by the sandbox. What it
//! guarantees:
//! - stdin is written, and stdout and stderr are read, each by its own
//!   thread while the program runs: a chatty program cannot deadlock a large
//!   stdin, and a program that exits early (closing its stdin) is no error
//!   here: its exit status says why;
//! - a time limit: past it the program is killed (`SIGKILL`, by its PID,
//!   which stays its own until the waiting thread reaps it) and the run is
//!   [`Failure::TimedOut`], with what it printed so far;
//! - the exit is seen the moment it happens (a thread waits; no polling);
//! - a caller that can be interrupted (the sandbox's Ctrl-C) gives a
//!   [`Watch`]: the program is killed as soon as it says so.
//!
//! The command (program, arguments, environment, folder) is the caller's
//! [`Command`]: no shell ever parses it.

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// What a program did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// From just before the spawn to the exit.
    pub elapsed: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Stdout as text (invalid UTF-8 replaced).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as text (invalid UTF-8 replaced).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// What a program did, as text: what the drivers keep and quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    pub success: bool,
    /// `exit status: N` or `signal: N`.
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Ran {
    fn from(out: Output) -> Self {
        Self {
            success: out.success(),
            status: out.status.to_string(),
            stdout: out.stdout_text(),
            stderr: out.stderr_text(),
        }
    }
}

/// Why a program gave no [`Output`].
#[derive(Debug)]
pub enum Failure {
    /// It could not start (not found, not executable, ...).
    Spawn(std::io::Error),
    /// It ran past the time limit and was killed; what it printed.
    TimedOut {
        limit: Duration,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    /// The [`Watch`] said stop; it was killed.
    Interrupted,
    /// Waiting for it failed.
    Wait(std::io::Error),
}

impl Failure {
    /// The last line the program wrote to stderr before it was stopped
    /// (`none`): what a message about a timeout quotes.
    pub fn last_words(&self) -> String {
        match self {
            Self::TimedOut { stderr, .. } => String::from_utf8_lossy(stderr)
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("none")
                .trim()
                .to_owned(),
            _ => "none".to_owned(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Spawn(e) => write!(f, "cannot start: {e}"),
            Self::TimedOut { limit, .. } => {
                write!(f, "did not finish within {} s and was stopped", limit.as_secs())
            }
            Self::Interrupted => f.write_str("interrupted"),
            Self::Wait(e) => write!(f, "cannot wait for it: {e}"),
        }
    }
}

impl std::error::Error for Failure {}

/// A caller that follows its children (the sandbox: to stop them on
/// Ctrl-C, and to stop waiting when interrupted).
pub trait Watch {
    /// The program started with this PID.
    fn started(&self, pid: u32);
    /// The program ended (or was killed and reaped).
    fn ended(&self, pid: u32);
    /// Whether to stop the program now.
    fn interrupted(&self) -> bool;
}

/// Runs `cmd` with `stdin`, at most `limit` (see the module's documentation).
pub fn run(cmd: &mut Command, stdin: &[u8], limit: Duration) -> Result<Output, Failure> {
    run_watched(cmd, stdin, limit, None)
}

/// [`run`], told about by `watch` and stopped when it says so.
pub fn run_watched(
    cmd: &mut Command,
    stdin: &[u8],
    limit: Duration,
    watch: Option<&dyn Watch>,
) -> Result<Output, Failure> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Failure::Spawn)?;
    let id = child.id();
    if let Some(w) = watch {
        w.started(id);
    }
    let input = stdin.to_vec();
    let writer = child.stdin.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        })
    });
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    // With a watch, wake up now and then to ask it; without, sleep until
    // the exit or the limit.
    let slice = if watch.is_some() {
        Duration::from_millis(20)
    } else {
        limit
    };
    let stopped = loop {
        let left = limit.saturating_sub(start.elapsed());
        match rx.recv_timeout(slice.min(left)) {
            Ok(status) => break Ok(status),
            Err(RecvTimeoutError::Disconnected) => {
                break Ok(Err(std::io::Error::other("the waiting thread ended")));
            }
            Err(RecvTimeoutError::Timeout) if start.elapsed() >= limit => break Err(false),
            Err(RecvTimeoutError::Timeout) if watch.is_some_and(|w| w.interrupted()) => break Err(true),
            Err(RecvTimeoutError::Timeout) => {}
        }
    };
    let status = match stopped {
        Ok(status) => status,
        Err(interrupted) => {
            // Not reaped yet (the waiting thread has not returned): the PID
            // is still the child's.
            let _ = kill(Pid::from_raw(i32::try_from(id).unwrap_or(i32::MAX)), Signal::SIGKILL);
            let _ = rx.recv();
            if let Some(w) = watch {
                w.ended(id);
            }
            if let Some(w) = writer {
                let _ = w.join();
            }
            let (stdout, stderr) = (collect(out), collect(err));
            return Err(if interrupted {
                Failure::Interrupted
            } else {
                Failure::TimedOut { limit, stdout, stderr }
            });
        }
    };
    let elapsed = start.elapsed();
    if let Some(w) = watch {
        w.ended(id);
    }
    if let Some(w) = writer {
        let _ = w.join();
    }
    let (stdout, stderr) = (collect(out), collect(err));
    Ok(Output {
        status: status.map_err(Failure::Wait)?,
        stdout,
        stderr,
        elapsed,
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> Option<JoinHandle<Vec<u8>>> {
    pipe.map(|mut p| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = p.read_to_end(&mut buf);
            buf
        })
    })
}

fn collect(handle: Option<JoinHandle<Vec<u8>>>) -> Vec<u8> {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};

    #[test]
    fn output_status_and_a_large_stdin() {
        let big = vec![b'x'; 1 << 20];
        let out = run(Command::new("cat").arg("-"), &big, Duration::from_secs(10)).unwrap();
        assert!(out.success());
        assert_eq!(out.stdout.len(), big.len());
        let out = run(
            Command::new("ls").arg("/nonexistent/one-scaleway"),
            b"",
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(!out.success());
        assert!(out.stderr_text().contains("/nonexistent/one-scaleway"));
        // A program that exits without reading its stdin is no error here.
        assert!(
            run(&mut Command::new("true"), &big, Duration::from_secs(10))
                .unwrap()
                .success()
        );
        assert!(matches!(
            run(&mut Command::new("/nonexistent/program"), b"", Duration::from_secs(1)),
            Err(Failure::Spawn(_))
        ));
    }

    #[test]
    fn a_program_past_its_limit_is_killed() {
        let started = Instant::now();
        let e = run(Command::new("sleep").arg("30"), b"", Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(e, Failure::TimedOut { .. }), "{e}");
        assert!(e.to_string().contains("did not finish within 0 s"), "{e}");
        assert_eq!(e.last_words(), "none");
        let e = Failure::TimedOut {
            limit: Duration::from_secs(1),
            stdout: Vec::new(),
            stderr: b"connecting\nwaiting for the lock \n\n".to_vec(),
        };
        assert_eq!(e.last_words(), "waiting for the lock");
    }

    struct Seen {
        pids: RefCell<Vec<(bool, u32)>>,
        stop: Cell<bool>,
    }

    impl Watch for Seen {
        fn started(&self, pid: u32) {
            self.pids.borrow_mut().push((true, pid));
        }
        fn ended(&self, pid: u32) {
            self.pids.borrow_mut().push((false, pid));
        }
        fn interrupted(&self) -> bool {
            self.stop.get()
        }
    }

    #[test]
    fn a_watch_sees_the_child_and_can_stop_it() {
        let seen = Seen {
            pids: RefCell::new(Vec::new()),
            stop: Cell::new(false),
        };
        run_watched(&mut Command::new("true"), b"", Duration::from_secs(10), Some(&seen)).unwrap();
        let pids = seen.pids.borrow().clone();
        assert_eq!(pids.len(), 2);
        assert_eq!((pids[0].1, pids[0].0, pids[1].0), (pids[1].1, true, false));
        seen.stop.set(true);
        let started = Instant::now();
        let e = run_watched(
            Command::new("sleep").arg("30"),
            b"",
            Duration::from_secs(60),
            Some(&seen),
        )
        .unwrap_err();
        assert!(matches!(e, Failure::Interrupted), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(seen.pids.borrow().len(), 4);
    }
}
