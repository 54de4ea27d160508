//! The execution contract of an OpenNebula driver, in one place.
//!
//! OpenNebula (`DriverExecHelper#get_info_from_execution`) reads a driver
//! like this:
//!
//! - exit 0: success, and stdout is the result (an `AR = [...]` template for
//!   `register_address_range`, `ADDRESS = [...]` for `get_address`, ...);
//! - any other exit: failure. stderr lines matching
//!   `^(ERROR|INFO|WARN|DEBUG):\s+(\d+)?\s*(.*)$` go to the log; every
//!   other stderr line is joined into the error message the user sees.
//!
//! So [`run`] prints the result only once the action has fully succeeded
//! (never a partial result), prints the failure as one plain line, and the
//! [`Log`] writes every log line with exactly one of those prefixes (never
//! `WARNING:`, which would leak into the error text). Log lines read
//! `INFO: scaleway-ipam register_address_range: message`: the program name
//! after the prefix also keeps a message that starts with a number from
//! being taken for a request id.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Display;
use std::io::{Read, Write};
use std::path::Path;

use crate::ipam::IpamRequest;
use crate::message::{self, MessageError};
use crate::vm::Vm;
use crate::xml::Element;

/// Environment variable that sets the log level (`error`, `warn`, `info`,
/// `debug`); `info` when unset.
pub const LOG_LEVEL_ENV: &str = "ONE_SCALEWAY_LOG";

/// Exit code of a failed action.
pub const EXIT_FAILURE: u8 = 1;

/// The process environment, captured once, so tests can inject their own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// The real environment (variables that are not valid UTF-8 are skipped).
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self {
            vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        }
    }

    /// A variable's value; empty counts as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// Log levels, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    /// The prefix OpenNebula recognises.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Error => "ERROR:",
            Self::Warn => "WARN:",
            Self::Info => "INFO:",
            Self::Debug => "DEBUG:",
        }
    }

    fn from_env(env: &Env) -> Result<Self, String> {
        match env.get(LOG_LEVEL_ENV).map(str::to_ascii_lowercase).as_deref() {
            None | Some("info") => Ok(Self::Info),
            Some("error") => Ok(Self::Error),
            Some("warn") => Ok(Self::Warn),
            Some("debug") => Ok(Self::Debug),
            Some(other) => Err(format!(
                "{LOG_LEVEL_ENV}={} is not a log level (error, warn, info or debug)",
                crate::attr::show(other)
            )),
        }
    }
}

/// Makes any text one line: control characters (newlines included) are
/// escaped, so a value can never start a line of its own on stderr.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Writes OpenNebula log lines to stderr.
pub struct Log<'a> {
    out: &'a mut dyn Write,
    level: Level,
    origin: String,
}

impl<'a> Log<'a> {
    pub fn new(out: &'a mut dyn Write, level: Level, origin: &str) -> Self {
        Self {
            out,
            level,
            origin: origin.to_owned(),
        }
    }

    pub fn level(&self) -> Level {
        self.level
    }

    /// Writes one line at `level` if the level is enabled. Failing to log
    /// never fails the action.
    pub fn log(&mut self, level: Level, message: impl Display) {
        if level <= self.level {
            let line = one_line(&format!("{} {}: {message}", level.prefix(), self.origin));
            let _ = writeln!(self.out, "{line}");
        }
    }

    pub fn error(&mut self, message: impl Display) {
        self.log(Level::Error, message);
    }

    pub fn warn(&mut self, message: impl Display) {
        self.log(Level::Warn, message);
    }

    pub fn info(&mut self, message: impl Display) {
        self.log(Level::Info, message);
    }

    pub fn debug(&mut self, message: impl Display) {
        self.log(Level::Debug, message);
    }

    /// Writes the failure line: plain, one line, so OpenNebula shows it as
    /// the error message.
    fn failure(&mut self, message: &str) {
        let mut line = one_line(message);
        if ["ERROR:", "WARN:", "INFO:", "DEBUG:"]
            .iter()
            .any(|p| line.starts_with(p))
        {
            line.insert_str(0, "error: ");
        }
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }
}

/// The standard streams of one run, injectable for tests.
pub struct Io<'a> {
    pub stdin: &'a mut dyn Read,
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
}

/// Undoes an action whose result could not be delivered.
pub type Undo = Box<dyn FnOnce(&mut Log<'_>) -> anyhow::Result<()>>;

/// What an action hands to [`run`]: its complete stdout, and what to undo
/// if that stdout cannot be delivered (an IPAM range whose answer never
/// reaches oned must not keep a flexible IP).
pub struct Output {
    pub stdout: String,
    pub undo_if_undelivered: Option<Undo>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("stdout", &self.stdout)
            .field("undo_if_undelivered", &self.undo_if_undelivered.is_some())
            .finish()
    }
}

impl Output {
    /// Nothing on stdout.
    pub fn empty() -> Self {
        Self::text(String::new())
    }

    pub fn text(stdout: impl Into<String>) -> Self {
        Self {
            stdout: stdout.into(),
            undo_if_undelivered: None,
        }
    }
}

/// Everything an action may use: its name and arguments, the environment,
/// the log, and stdin (through the typed readers).
pub struct Driver<'a, 'l> {
    pub program: &'a str,
    pub action: &'a str,
    pub args: &'a [String],
    pub env: &'a Env,
    pub log: &'a mut Log<'l>,
    stdin: &'a mut dyn Read,
}

impl Driver<'_, '_> {
    /// The decoded XML document from stdin.
    pub fn read_document(&mut self) -> Result<Element, MessageError> {
        message::read_document(self.stdin)
    }

    pub fn read_ipam_request(&mut self) -> Result<IpamRequest, MessageError> {
        message::read_ipam_request(self.stdin)
    }

    pub fn read_vm(&mut self) -> Result<Vm, MessageError> {
        message::read_vm(self.stdin)
    }

    /// Everything on stdin, as text (a file an action is given as `-`).
    pub fn read_text(&mut self) -> std::io::Result<String> {
        let mut text = String::new();
        self.stdin.read_to_string(&mut text)?;
        Ok(text)
    }
}

/// Runs one action under the contract and returns the process exit code.
pub fn run<F>(program: &str, action: &str, args: &[String], env: &Env, io: Io<'_>, body: F) -> u8
where
    F: FnOnce(&mut Driver<'_, '_>) -> anyhow::Result<Output>,
{
    let Io { stdin, stdout, stderr } = io;
    let origin = format!("{program} {action}");
    let level = Level::from_env(env);
    let mut log = Log::new(stderr, *level.as_ref().unwrap_or(&Level::Info), &origin);
    if let Err(e) = &level {
        log.warn(e);
    }
    let result = {
        let mut driver = Driver {
            program,
            action,
            args,
            env,
            log: &mut log,
            stdin,
        };
        body(&mut driver)
    };
    let output = match result {
        Ok(output) => output,
        Err(e) => {
            let message = format!("{e:#}");
            log.error(&message);
            log.failure(&message);
            return EXIT_FAILURE;
        }
    };
    let delivered = stdout.write_all(output.stdout.as_bytes()).and_then(|()| stdout.flush());
    if let Err(e) = delivered {
        let mut message = format!("cannot write the result to stdout: {e}");
        if let Some(undo) = output.undo_if_undelivered {
            match undo(&mut log) {
                Ok(()) => message.push_str(" (the action was undone)"),
                Err(u) => message.push_str(&format!(" and undoing the action failed too: {u:#}")),
            }
        }
        log.error(&message);
        log.failure(&message);
        return EXIT_FAILURE;
    }
    0
}

/// Busybox-style dispatch. OpenNebula runs action-named files
/// (`.../remotes/ipam/scaleway_fip/register_address_range 42`); when those are
/// links to (or copies of) our binary, argv[0]'s file name is the action.
/// Returns argv with the action inserted as the first argument (so clap sees
/// `scaleway-ipam register_address_range 42`), and the name of the folder
/// the program was called from (the network driver's name for `scaleway-vnm`).
pub fn dispatch_argv0(argv: Vec<OsString>, program: &str, actions: &[&str]) -> (Vec<OsString>, Option<String>) {
    let Some(argv0) = argv.first() else {
        return (vec![OsString::from(program)], None);
    };
    let path = Path::new(argv0);
    let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
    if !actions.contains(&file) {
        return (argv, None);
    }
    let folder = path
        .parent()
        .and_then(Path::file_name)
        .and_then(|f| f.to_str())
        .map(str::to_owned);
    let mut out = Vec::with_capacity(argv.len() + 1);
    out.push(OsString::from(program));
    out.push(OsString::from(file));
    out.extend(argv.into_iter().skip(1));
    (out, folder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::anyhow;

    struct Ran {
        code: u8,
        stdout: String,
        stderr: String,
    }

    fn drive<F>(env: &[(&str, &str)], stdin: &str, body: F) -> Ran
    where
        F: FnOnce(&mut Driver<'_, '_>) -> anyhow::Result<Output>,
    {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let io = Io {
            stdin: &mut stdin.as_bytes(),
            stdout: &mut out,
            stderr: &mut err,
        };
        let code = run("prog", "act", &[], &Env::from_pairs(env.iter().copied()), io, body);
        Ran {
            code,
            stdout: String::from_utf8(out).unwrap(),
            stderr: String::from_utf8(err).unwrap(),
        }
    }

    #[test]
    fn success_prints_the_payload_only() {
        let r = drive(&[], "", |d| {
            d.log.info("did it");
            d.log.debug("hidden");
            Ok(Output::text("AR = [ IP = \"1\" ]\n"))
        });
        assert_eq!(r.code, 0);
        assert_eq!(r.stdout, "AR = [ IP = \"1\" ]\n");
        assert_eq!(r.stderr, "INFO: prog act: did it\n");
    }

    #[test]
    fn failure_is_one_plain_line_and_nothing_on_stdout() {
        let r = drive(&[], "", |d| {
            d.log.warn("careful");
            Err(anyhow!("inner\nproblem").context("outer"))
        });
        assert_eq!(r.code, EXIT_FAILURE);
        assert_eq!(r.stdout, "");
        assert_eq!(
            r.stderr,
            "WARN: prog act: careful\nERROR: prog act: outer: inner\\nproblem\nouter: inner\\nproblem\n"
        );
    }

    #[test]
    fn failure_text_never_looks_like_a_log_line() {
        let r = drive(&[], "", |_| Err(anyhow!("INFO: sneaky")));
        assert!(r.stderr.ends_with("\nerror: INFO: sneaky\n"), "{}", r.stderr);
    }

    #[test]
    fn log_level_comes_from_the_environment() {
        let r = drive(&[(LOG_LEVEL_ENV, "debug")], "", |d| {
            d.log.debug("shown");
            Ok(Output::empty())
        });
        assert_eq!(r.stderr, "DEBUG: prog act: shown\n");
        let r = drive(&[(LOG_LEVEL_ENV, "error")], "", |d| {
            d.log.warn("hidden");
            Ok(Output::empty())
        });
        assert_eq!(r.stderr, "");
        let r = drive(&[(LOG_LEVEL_ENV, "loud")], "", |_| Ok(Output::empty()));
        assert_eq!(r.code, 0);
        assert!(
            r.stderr
                .starts_with("WARN: prog act: ONE_SCALEWAY_LOG=\"loud\" is not a log level"),
            "{}",
            r.stderr
        );
    }

    #[test]
    fn never_warning_prefix() {
        for level in [Level::Error, Level::Warn, Level::Info, Level::Debug] {
            assert!(["ERROR:", "WARN:", "INFO:", "DEBUG:"].contains(&level.prefix()));
        }
    }

    struct BrokenPipe;
    impl Write for BrokenPipe {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn undeliverable_output_is_undone() {
        let undone = std::rc::Rc::new(std::cell::Cell::new(false));
        let flag = undone.clone();
        let mut err = Vec::new();
        let io = Io {
            stdin: &mut "".as_bytes(),
            stdout: &mut BrokenPipe,
            stderr: &mut err,
        };
        let code = run("prog", "act", &[], &Env::default(), io, move |_| {
            Ok(Output {
                stdout: "AR = []".into(),
                undo_if_undelivered: Some(Box::new(move |log| {
                    log.info("releasing");
                    flag.set(true);
                    Ok(())
                })),
            })
        });
        assert_eq!(code, EXIT_FAILURE);
        assert!(undone.get());
        let err = String::from_utf8(err).unwrap();
        assert!(err.contains("cannot write the result to stdout"), "{err}");
        assert!(err.contains("(the action was undone)"), "{err}");
    }

    #[test]
    fn argv0_dispatch() {
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let actions = ["pre", "post", "clean"];
        let (argv, folder) = dispatch_argv0(
            os(&["/var/tmp/one/vnm/scaleway_evpn/pre", "x"]),
            "scaleway-vnm",
            &actions,
        );
        assert_eq!(argv, os(&["scaleway-vnm", "pre", "x"]));
        assert_eq!(folder.as_deref(), Some("scaleway_evpn"));
        let (argv, folder) = dispatch_argv0(os(&["scaleway-vnm", "pre"]), "scaleway-vnm", &actions);
        assert_eq!(argv, os(&["scaleway-vnm", "pre"]));
        assert_eq!(folder, None);
        let (argv, _) = dispatch_argv0(Vec::new(), "scaleway-vnm", &actions);
        assert_eq!(argv, os(&["scaleway-vnm"]));
    }
}
