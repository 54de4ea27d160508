//! The `scaleway-emulator` binary: --help/--version, the first stdout line
//! with the real port, serving, refusing non-loopback addresses, key list,
//! and ending on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use test_support::run_program;

const BIN: &str = env!("CARGO_BIN_EXE_scaleway-emulator");

/// Starts the binary and returns it with the URL of its first stdout line.
fn spawn(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the emulator starts");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {line:?}"))
        .to_string();
    (child, url)
}

/// One HTTP/1.1 exchange with `Connection: close`.
fn http(url: &str, request_head: &str) -> String {
    let addr = url.strip_prefix("http://").unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("{request_head}Host: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn stop(mut child: Child) {
    let pid = child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the emulator did not end on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn help_and_version() {
    let help = run_program(Path::new(BIN), &["--help"], b"");
    assert_eq!(help.code, 0, "{help:?}");
    for flag in [
        "--listen",
        "--secret-key",
        "--speed",
        "--manual-clock",
        "--seed",
        "--project-id",
    ] {
        assert!(help.stdout.contains(flag), "{flag} in {}", help.stdout);
    }
    assert!(
        help.stdout.contains("[default: 0.1]"),
        "the default speed is documented: {}",
        help.stdout
    );
    let version = run_program(Path::new(BIN), &["--version"], b"");
    assert_eq!(
        version.stdout.trim(),
        concat!("scaleway-emulator ", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn port_zero_prints_the_real_port_first_and_serves_until_sigterm() {
    let (child, url) = spawn(&["--listen", "127.0.0.1:0"]);
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0, "{url}");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let answer = http(
        &url,
        "GET /flexible-ip/v1alpha1/zones/fr-par-1/fips HTTP/1.1\r\nX-Auth-Token: 6f1c2a57-61a3-4f5c-9d3d-2b7e0b1e5d11\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("\"total_count\":0"), "{answer}");
    let state = http(&url, "GET /_emulator/state HTTP/1.1\r\n");
    assert!(state.contains("\"empty\":true"), "{state}");
    stop(child);
}

#[test]
fn only_the_given_secret_keys_are_accepted() {
    let key = "0f6a7d0e-9f43-4a55-8c3c-8d5a4c6e2b10";
    let (child, url) = spawn(&["--secret-key", key, "--speed", "0.01"]);
    let path = "GET /iam/v1alpha1/ssh-keys HTTP/1.1\r\n";
    let ok = http(&url, &format!("{path}X-Auth-Token: {key}\r\n"));
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let other = http(
        &url,
        &format!("{path}X-Auth-Token: 11111111-2222-4333-8444-555555555555\r\n"),
    );
    assert!(other.starts_with("HTTP/1.1 401"), "{other}");
    assert!(other.contains("denied_authentication"), "{other}");
    stop(child);
}

#[test]
fn non_loopback_and_bad_options_are_refused() {
    let bad = run_program(Path::new(BIN), &["--listen", "localhost"], b"");
    assert_eq!(bad.code, 2, "{bad:?}");
    let public = run_program(Path::new(BIN), &["--listen", "0.0.0.0:0"], b"");
    assert_eq!(public.code, 2, "{public:?}");
    assert_eq!(public.stdout, "", "no 'listening on' line when refusing");
    assert!(public.stderr.contains("loopback"), "{}", public.stderr);
    let key = run_program(Path::new(BIN), &["--secret-key", "not-a-uuid"], b"");
    assert_eq!(key.code, 2, "{key:?}");
    let speed = run_program(Path::new(BIN), &["--speed", "-1"], b"");
    assert_eq!(speed.code, 2, "{speed:?}");
}

#[test]
fn a_busy_port_is_a_plain_failure() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let ran = run_program(Path::new(BIN), &["--listen", &addr], b"");
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(ran.stderr.contains("cannot listen"), "{}", ran.stderr);
}
