//! `scaleway-vnm root`: the root helper.
//!
//! On a host the drivers run as oneadmin; what needs root (changing links,
//! routes, neighbours, our nftables tables, the driver's sysctls, FRR)
//! goes through `sudo -n /usr/local/libexec/one-scaleway/scaleway-vnm
//! root`, the only command the shipped sudoers rules allow. The host
//! bootstrap installs this copy of the binary root-owned, so oneadmin can
//! neither change it nor choose what it runs: it reads one typed request
//! on stdin (`public_apply::root::Public` for `scaleway`,
//! `private_apply::root::Private` for `scaleway_evpn`), refuses anything else or
//! anything that would touch what is not the drivers' (exit 2, one line
//! saying why), and otherwise makes the change (the public driver: a whole
//! plan per request, through rtnetlink, the sysctl files and one nf_tables
//! netlink transaction) or runs the tool, and passes on what failed and whether it
//! succeeded. It reads no environment variable and no file oneadmin can
//! write.

use std::io::Read;
use std::time::Duration;

use host_tools::Tools;
use opennebula::driver::Io;
use serde::Deserialize;

/// The longest request read (a reconcile of thousands of NICs is far below).
const MAX_REQUEST: u64 = 16 << 20;

/// Exit code of a refused request.
pub const EXIT_REFUSED: u8 = 2;

/// One request, tagged with its driver.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Request {
    #[serde(rename = "scaleway")]
    Public(public_apply::root::Public),
    #[serde(rename = "scaleway_evpn")]
    Private(private_apply::root::Private),
}

/// Parses a request (what the helper accepts, and nothing else).
pub fn parse(text: &str) -> Result<Request, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// Runs the helper: the request on `io.stdin`; the tool's output on
/// `io.stdout` and `io.stderr`; 0 when it succeeded, 1 when it failed,
/// [`EXIT_REFUSED`] when the request is refused.
pub fn main(io: &mut Io<'_>) -> u8 {
    let mut text = String::new();
    if let Err(e) = io.stdin.take(MAX_REQUEST).read_to_string(&mut text) {
        let _ = writeln!(io.stderr, "scaleway-vnm root: refused: cannot read the request: {e}");
        return EXIT_REFUSED;
    }
    let request = match parse(&text) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(
                io.stderr,
                "scaleway-vnm root: refused: not a request of the drivers: {e}"
            );
            return EXIT_REFUSED;
        }
    };
    let tools = Tools::direct(Duration::from_secs(120));
    let done = match &request {
        Request::Public(r) => public_apply::root::execute(r, &tools),
        Request::Private(r) => private_apply::root::execute(r, &tools),
    };
    match done {
        Ok(Ok(ran)) => {
            let _ = io.stdout.write_all(ran.stdout.as_bytes());
            let _ = io.stderr.write_all(ran.stderr.as_bytes());
            u8::from(!ran.success)
        }
        Ok(Err(why)) => {
            let _ = writeln!(io.stderr, "scaleway-vnm root: refused: {why}");
            EXIT_REFUSED
        }
        Err(e) => {
            let _ = writeln!(io.stderr, "scaleway-vnm root: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drivers_requests_are_what_the_helper_reads() {
        let public = public_apply::root::Public::List {
            table: public_apply::root::Table::Guard,
        };
        assert!(matches!(parse(&public.to_json()), Ok(Request::Public(r)) if r == public));
        let private = private_apply::root::Private::FrrCheck {
            config: "frr version 8.4\n".into(),
        };
        assert!(matches!(parse(&private.to_json()), Ok(Request::Private(r)) if r == private));
    }

    #[test]
    fn anything_else_is_refused_before_anything_runs() {
        for bad in [
            "",
            "ip netns exec x sh",
            r#"{"scaleway": {"exec": ["sh"]}}"#,
            r#"{"other": {}}"#,
            r#"{"scaleway": {"list": {"table": "nat"}}, "scaleway_evpn": {}}"#,
            r#"{"scaleway": {"sysctl": {"key": "kernel/modprobe", "value": "1"}}}"#,
        ] {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let code = main(&mut Io {
                stdin: &mut bad.as_bytes(),
                stdout: &mut out,
                stderr: &mut err,
            });
            let err = String::from_utf8(err).unwrap();
            assert_eq!(code, EXIT_REFUSED, "{bad}: {err}");
            assert!(err.starts_with("scaleway-vnm root: refused: "), "{err}");
            assert!(out.is_empty());
        }
    }
}
