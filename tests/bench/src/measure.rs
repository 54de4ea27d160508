//! Timing and peak memory of one kind of driver run, in a fresh process.
//!
//! The bench starts itself as `one-scaleway-bench __measure SPEC` for each
//! action kind. That process runs the action R times, one after the other
//! (each a child: the real driver binary, environment cleared, base64
//! document on stdin, as oned runs it), timing each from spawn to exit.
//!
//! Peak memory: the driver's own high-water resident set (`VmHWM` of
//! `/proc/PID/status`), read when it exits: the measuring process attaches
//! to each child with `PTRACE_SEIZE` + `PTRACE_O_TRACEEXIT` right after the
//! spawn, so the child stops in `exit` with its memory still mapped. Not
//! `getrusage(RUSAGE_CHILDREN).ru_maxrss`: a child started with
//! `posix_spawn`/`vfork` inherits its spawner's peak at `exec` (the kernel
//! folds the old mm's high-water mark into the new image's), so every child
//! would show at least the bench's own size. `VmHWM` is the driver's alone,
//! without the tools it starts. Between runs the measuring process resets
//! files (copies, emptied folders) itself, without starting processes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use nix::sys::ptrace;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::util::{self, TempDir};

/// What to do to files before a run.
#[derive(Debug, Clone)]
pub enum Reset {
    /// Copy a file (or a folder) over another.
    Copy(PathBuf, PathBuf),
    /// Remove a folder's contents.
    Clear(PathBuf),
}

/// One run of a program.
#[derive(Debug, Clone)]
pub struct Run {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub stdin: String,
    pub env: Vec<(String, String)>,
    pub reset: Vec<Reset>,
}

impl Run {
    pub fn new(program: &Path, args: &[&str], stdin: String, env: &[(String, String)]) -> Self {
        Self {
            program: program.to_path_buf(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            stdin,
            env: env.to_vec(),
            reset: Vec::new(),
        }
    }

    pub fn reset(mut self, reset: Vec<Reset>) -> Self {
        self.reset = reset;
        self
    }
}

/// What a measurement gave.
#[derive(Debug, Clone)]
pub struct Measured {
    pub ms: Vec<f64>,
    pub maxrss_kb: f64,
    pub stdouts: Vec<String>,
}

impl Measured {
    pub fn median(&self) -> f64 {
        util::median_ms(&self.ms)
    }
}

/// The PATH drivers get (plus the stand-ins' folder first, when given).
pub const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs `runs` in a fresh `__measure` process (inside namespace `netns`
/// when given).
pub fn measure(me: &Path, runs: &[Run], netns: Option<&str>, keep_stdout: bool) -> anyhow::Result<Measured> {
    let dir = TempDir::new("measure")?;
    let spec = json!({
        "netns": netns.map(|n| format!("/run/netns/{n}")),
        "keep_stdout": keep_stdout,
        "runs": runs.iter().map(|r| json!({
            "program": r.program,
            "args": r.args,
            "stdin": r.stdin,
            "env": r.env,
            "reset": r.reset.iter().map(|x| match x {
                Reset::Copy(a, b) => json!(["copy", a, b]),
                Reset::Clear(d) => json!(["clear", d]),
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let path = dir.join("spec.json");
    std::fs::write(&path, spec.to_string())?;
    let limit = Duration::from_secs(60 + 30 * runs.len() as u64);
    let ran = util::run(Command::new(me).arg("__measure").arg(&path).env_clear(), b"", limit)?;
    let ran = ran.check("the measuring process")?;
    let v: Value = serde_json::from_str(&ran.stdout).context("the measuring process's answer")?;
    if let Some(e) = v["error"].as_str() {
        bail!("{e}");
    }
    let floats = |k: &str| -> Vec<f64> {
        v[k].as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    Ok(Measured {
        ms: floats("ms"),
        maxrss_kb: v["maxrss_kb"].as_f64().unwrap_or(f64::NAN),
        stdouts: v["stdouts"]
            .as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap_or("").to_owned()).collect())
            .unwrap_or_default(),
    })
}

/// The `__measure SPEC` process: prints `{ms, maxrss_kb, stdouts, error}`.
pub fn child_main(spec: &Path) -> u8 {
    let answer = match child(spec) {
        Ok(v) => v,
        Err(e) => json!({ "error": format!("{e:#}") }),
    };
    println!("{answer}");
    0
}

fn child(spec: &Path) -> anyhow::Result<Value> {
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(spec)?)?;
    if let Some(ns) = spec["netns"].as_str() {
        util::enter_ns(ns)?;
    }
    let keep = spec["keep_stdout"].as_bool().unwrap_or(false);
    let mut times = Vec::new();
    let mut stdouts = Vec::new();
    let (mut peak, mut seen) = (0u64, 0usize);
    let runs = spec["runs"].as_array().ok_or_else(|| anyhow!("no runs"))?;
    for (i, r) in runs.iter().enumerate() {
        for reset in r["reset"].as_array().into_iter().flatten() {
            match (reset[0].as_str(), reset[1].as_str(), reset[2].as_str()) {
                (Some("copy"), Some(from), Some(to)) => {
                    crate::util::copy_over(Path::new(from), Path::new(to))?;
                }
                (Some("clear"), Some(dir), _) => {
                    let _ = std::fs::remove_dir_all(dir);
                    std::fs::create_dir_all(dir)?;
                }
                _ => bail!("bad reset {reset}"),
            }
        }
        let program = r["program"].as_str().ok_or_else(|| anyhow!("run {i}: no program"))?;
        let mut cmd = Command::new(program);
        cmd.env_clear().env("PATH", SYSTEM_PATH);
        for a in r["args"].as_array().into_iter().flatten() {
            cmd.arg(a.as_str().unwrap_or(""));
        }
        for kv in r["env"].as_array().into_iter().flatten() {
            cmd.env(kv[0].as_str().unwrap_or(""), kv[1].as_str().unwrap_or(""));
        }
        let stdin = r["stdin"].as_str().unwrap_or("");
        let (ran, hwm) = traced(&mut cmd, stdin.as_bytes(), Duration::from_secs(30))?;
        let what = format!("run {} of {}", i + 1, Path::new(program).display());
        let ran = ran.check(&what)?;
        times.push(util::ms(ran.elapsed));
        if let Some(kb) = hwm {
            peak = peak.max(kb);
            seen += 1;
        }
        if keep {
            stdouts.push(ran.stdout);
        }
    }
    // A run that ended before it could be attached to has no figure; at least half must have one.
    let maxrss = if seen * 2 >= runs.len() {
        json!(peak)
    } else {
        Value::Null
    };
    Ok(json!({ "ms": times, "maxrss_kb": maxrss, "stdouts": stdouts, "error": null }))
}

/// `VmHWM` of a live process, in kB.
fn vm_hwm(pid: Pid) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs `cmd` like `util::run`, traced to read its `VmHWM` at exit; the
/// elapsed time ends when it exits.
fn traced(cmd: &mut Command, stdin: &[u8], limit: Duration) -> anyhow::Result<(util::Ran, Option<u64>)> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let attached = ptrace::seize(pid, ptrace::Options::PTRACE_O_TRACEEXIT).is_ok();
    let input = stdin.to_vec();
    let writer = child.stdin.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        })
    });
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let (cancel, watch) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if watch.recv_timeout(limit) == Err(mpsc::RecvTimeoutError::Timeout) {
            let _ = kill(pid, Signal::SIGKILL);
        }
    });
    let (mut hwm, mut elapsed, mut code) = (None, None, None);
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::PtraceEvent(_, _, event)) if event == ptrace::Event::PTRACE_EVENT_EXIT as i32 => {
                elapsed = Some(start.elapsed());
                hwm = vm_hwm(pid);
                let _ = ptrace::cont(pid, None);
            }
            Ok(WaitStatus::PtraceEvent(..)) => {
                let _ = ptrace::cont(pid, None);
            }
            // A signal for the child (SIGCHLD from its tools, ...): deliver it.
            Ok(WaitStatus::Stopped(_, sig)) => {
                let _ = ptrace::cont(pid, sig);
            }
            Ok(WaitStatus::Exited(_, c)) => {
                code = Some(c);
                break;
            }
            Ok(WaitStatus::Signaled(..)) => break,
            Ok(_) => {}
            Err(e) => {
                let _ = cancel.send(());
                bail!("waiting for {:?}: {e}", cmd.get_program());
            }
        }
    }
    let elapsed = elapsed.unwrap_or_else(|| start.elapsed());
    let _ = cancel.send(());
    let _ = watchdog.join();
    if let Some(w) = writer {
        let _ = w.join();
    }
    let ran = util::Ran {
        code,
        stdout: String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned(),
        elapsed,
    };
    Ok((ran, if attached { hwm } else { None }))
}
