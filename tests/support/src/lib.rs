//! Helpers for one-scaleway's tests. Test code only: failures panic with a
//! message, which is how a test reports them.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

pub mod netlink;
pub mod oned;
pub mod onedsim;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The repository's `tests/` folder.
pub fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/support has a parent")
        .to_path_buf()
}

/// `tests/fixtures/<name>`.
pub fn fixture_path(name: &str) -> PathBuf {
    tests_dir().join("fixtures").join(name)
}

/// The text of `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> String {
    let path = fixture_path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Tests that need another value change one attribute of a captured
/// document (never a document shaped by hand):
/// `doc` with the child `attr` of the first element named `element` whose
/// `key` child is `id` set to `value` (added if missing, removed with
/// `None`); with `key` empty, the first element of that name. The document
/// a real oned sent is the base: only the attribute under test changes.
pub fn set_attribute(doc: &str, element: &str, key: &str, id: &str, attr: &str, value: Option<&str>) -> String {
    type Target<'a> = (&'a str, &'a str, &'a str, &'a str, Option<&'a str>);
    fn walk(e: &mut opennebula::xml::Element, t: Target<'_>) -> bool {
        let (element, key, id, attr, value) = t;
        if e.name == element && (key.is_empty() || e.child(key).is_some_and(|k| k.text == id)) {
            e.children.retain(|c| c.name != attr);
            if let Some(v) = value {
                e.children.push(opennebula::xml::Element::leaf(attr, v));
            }
            return true;
        }
        e.children.iter_mut().any(|c| walk(c, t))
    }
    let mut root = opennebula::xml::parse(doc.as_bytes()).expect("a captured document");
    assert!(
        walk(&mut root, (element, key, id, attr, value)),
        "no {element} to change"
    );
    root.to_xml()
}

/// Every `.xml` fixture below `tests/fixtures/<folder>`, sorted, as `folder/file`.
pub fn fixtures_in(folder: &str) -> Vec<String> {
    let dir = fixture_path(folder);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".xml"))
        .map(|n| format!("{folder}/{n}"))
        .collect();
    names.sort();
    names
}

/// Compares `actual` with `tests/golden/<name>`; with `UPDATE_GOLDEN=1`
/// rewrites the golden file instead.
pub fn assert_golden(name: &str, actual: &str) {
    assert_golden_in(&tests_dir().join("golden"), name, actual);
}

/// Compares `actual` with `<dir>/<name>` (a crate's own golden folder);
/// with `UPDATE_GOLDEN=1` rewrites the golden file instead.
pub fn assert_golden_in(dir: &Path, name: &str, actual: &str) {
    let path = dir.join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the golden folder");
        }
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from the output (run with UPDATE_GOLDEN=1 to accept it):\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// A temporary folder, removed with everything in it when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("one-scaleway-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one run of a driver produced.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// stderr lines that are not OpenNebula log lines: the error message
    /// oned would show the user.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !["ERROR:", "WARN:", "INFO:", "DEBUG:"].iter().any(|p| l.starts_with(p)))
            .collect()
    }
}

/// How long a program a test runs may take (then it is killed and the test
/// fails): far more than any of ours needs.
const PROGRAM_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Runs a program with arguments and stdin, as a separate process.
pub fn run_program(program: &Path, args: &[&str], stdin: &[u8]) -> Ran {
    run_program_env(program, args, stdin, &[])
}

/// Runs a program with arguments, stdin and extra environment variables
/// (set after the Scaleway variables of the test's own environment are
/// cleared).
pub fn run_program_env(program: &Path, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Ran {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_remove("ONE_SCALEWAY_LOG")
        // No real Scaleway credentials reach a test by accident.
        .env("SCW_CONFIG_PATH", "/nonexistent/one-scaleway-tests/config.yaml")
        .env_remove("SCW_SECRET_KEY")
        .env_remove("SCW_ACCESS_KEY")
        .env_remove("SCW_PROFILE")
        .env_remove("SCW_API_URL")
        .env_remove("SCW_DEFAULT_PROJECT_ID")
        .env_remove("SCW_DEFAULT_ZONE")
        .envs(env.iter().copied());
    let out = opennebula::process::run(&mut command, stdin, PROGRAM_LIMIT)
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout_text(),
        stderr: out.stderr_text(),
    }
}

/// Links `target` as `dir/<relative>` (creating folders), the way
/// `install.sh` lays out OpenNebula's action files; returns the link.
pub fn link_as(target: &Path, dir: &Path, relative: &str) -> PathBuf {
    let link = dir.join(relative);
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent).expect("create the link's folder");
    }
    std::os::unix::fs::symlink(target, &link).unwrap_or_else(|e| panic!("cannot link {}: {e}", link.display()));
    link
}

/// Base64 of a document, as oned writes it (hand-written here so the tests
/// do not check our encoder with itself).
pub fn encode(document: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    for chunk in document.as_bytes().chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]
            } else {
                b'='
            });
        }
    }
    out
}

/// Fails the calling test, with a message saying how to run it, unless the
/// process runs as root. Privileged tests call this first: they fail, never
/// skip, where they cannot run.
pub fn require_root() {
    let euid = nix::unistd::geteuid();
    assert!(
        euid.is_root(),
        "this privileged test needs root (effective uid {euid}): run it through `sudo .ci/run`, \
         or `sudo cargo test -- --include-ignored`"
    );
}

/// Runs a program (argument vector, no shell) and returns its output;
/// panics with the program's stderr if it fails.
pub fn run_ok(args: &[&str], stdin: &[u8]) -> String {
    let (program, rest) = args.split_first().expect("a program");
    let ran = run_program(Path::new(program), rest, stdin);
    assert!(ran.code == 0, "{args:?} failed with {}:\n{}", ran.code, ran.stderr);
    ran.stdout
}

/// A network namespace made for one test, deleted (with everything in it)
/// when dropped. Names start with `oscw-` so a leftover is easy to spot.
pub struct NetNs {
    name: String,
}

impl NetNs {
    pub fn new(label: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("oscw-{label}-{}-{n}", std::process::id());
        run_ok(&["ip", "netns", "add", &name], b"");
        Self { name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a program inside the namespace.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Ran {
        let mut all = vec!["netns", "exec", self.name.as_str()];
        all.extend_from_slice(args);
        run_program(Path::new("ip"), &all, stdin)
    }

    /// Runs a program inside the namespace; panics if it fails.
    pub fn run_ok(&self, args: &[&str], stdin: &[u8]) -> String {
        let ran = self.run(args, stdin);
        assert!(
            ran.code == 0,
            "{args:?} in {} failed with {}:\n{}",
            self.name,
            ran.code,
            ran.stderr
        );
        ran.stdout
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// What a stub oned answers to one call: `Ok(body)` or `Err((message, code))`.
pub type OnedAnswer = Result<String, (String, i32)>;

/// The calls a stub oned received: method and parameters (session left out).
pub type OnedCalls = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<String>)>>>;

/// A stub of oned's XML-RPC endpoint on 127.0.0.1, answering in oned's real
/// format (`[success, body, error code]`) from a function of the method name
/// and the parameters after the session. Stops when dropped.
pub struct StubOned {
    pub url: String,
    pub calls: OnedCalls,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    addr: std::net::SocketAddr,
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

impl StubOned {
    pub fn start(answer: impl Fn(&str, &[String]) -> OnedAnswer + Send + Sync + 'static) -> Self {
        use std::io::{BufRead, BufReader, Read};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the stub oned");
        let addr = listener.local_addr().expect("its address");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop2, calls2) = (stop.clone(), calls.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let body = String::from_utf8_lossy(&body).into_owned();
                let method = body
                    .split("<methodName>")
                    .nth(1)
                    .and_then(|r| r.split("</methodName>").next())
                    .unwrap_or("")
                    .to_owned();
                // Every <value>'s inner text, skipping the session (the first).
                let params: Vec<String> = body
                    .split("<value>")
                    .skip(2)
                    .map(|v| {
                        let v = v.split("</value>").next().unwrap_or("");
                        let inner = v.find('>').map_or(v, |i| &v[i + 1..]);
                        xml_unescape(inner.split('<').next().unwrap_or(""))
                    })
                    .collect();
                calls2.lock().expect("calls").push((method.clone(), params.clone()));
                let (ok, text, code) = match answer(&method, &params) {
                    Ok(b) => (1, b, 0),
                    Err((m, c)) => (0, m, c),
                };
                let xml = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<methodResponse>\r\n<params>\r\n<param><value><array><data>\
                     <value><boolean>{ok}</boolean></value><value><string>{}</string></value><value><i4>{code}</i4></value>\
                     </data></array></value></param>\r\n</params>\r\n</methodResponse>\r\n",
                    xml_escape(&text)
                );
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                    xml.len()
                );
                let _ = stream.write_all(response.as_bytes());
            }
        });
        Self {
            url: format!("http://{addr}/RPC2"),
            calls,
            stop,
            addr,
        }
    }
}

impl Drop for StubOned {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(self.addr);
    }
}
