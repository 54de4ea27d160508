//! The frontend reaches a host's `clean_host` over a real SSH connection:
//! a "frontend" and a "host" network namespace joined by a veth, a real
//! `sshd` listening inside the host namespace (started and stopped by this
//! test), our `Ssh` runner running from a thread inside the frontend
//! namespace. The host side really removes what `pre` installed.
//!
//! Privileged: root, iproute2, nftables and openssh-server (`sshd`).
//! Nothing is created outside the test's namespaces and temporary folder,
//! except `/run/sshd`, the privilege separation folder sshd insists on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use opennebula::attr::HostName;
use opennebula::driver::Env;
use scaleway_vnm::frontend::{HostRunner, Ssh};
use test_support::{NetNs, TempDir, encode, fixture, link_as, require_root, run_ok};

const BIN: &str = env!("CARGO_BIN_EXE_scaleway-vnm");

fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// sshd, killed (by PID) when dropped.
struct Sshd(Child);

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nat_elements(ns: &NetNs) -> String {
    ns.run(&["nft", "list", "map", "ip", "one_scaleway", "dnat_map"], b"")
        .stdout
}

/// A "frontend" and a "host" namespace joined by a veth (10.250.0.1 and
/// .2), keys, and a real sshd in the host namespace that logs root in with
/// `login_shell` (`None`: the machine's own; otherwise `ip netns exec`
/// shows sshd an `/etc/passwd` that gives root that shell).
struct SshLab {
    front: NetNs,
    host: NetNs,
    dir: TempDir,
    sshd: Option<Sshd>,
    // Last: removed once sshd is stopped.
    _etc: Option<EtcNetns>,
}

fn ssh_lab(login_shell: Option<&str>) -> SshLab {
    let front = NetNs::new("front");
    let host = NetNs::new("sshhost");
    run_ok(
        &[
            "ip",
            "-n",
            front.name(),
            "link",
            "add",
            "f0",
            "type",
            "veth",
            "peer",
            "name",
            "h0",
            "netns",
            host.name(),
        ],
        b"",
    );
    for (ns, dev, addr) in [(&front, "f0", "10.250.0.1/24"), (&host, "h0", "10.250.0.2/24")] {
        run_ok(&["ip", "-n", ns.name(), "addr", "add", addr, "dev", dev], b"");
        run_ok(&["ip", "-n", ns.name(), "link", "set", dev, "up"], b"");
        run_ok(&["ip", "-n", ns.name(), "link", "set", "lo", "up"], b"");
    }
    let dir = TempDir::new("ssh");
    let d = dir.path();
    let keygen = |file: &Path| {
        run_ok(
            &[
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                file.to_str().unwrap(),
            ],
            b"",
        )
    };
    keygen(&d.join("host_key"));
    keygen(&d.join("id"));
    std::fs::copy(d.join("id.pub"), d.join("authorized_keys")).unwrap();
    std::fs::write(
        d.join("ssh_config"),
        format!(
            "Host *\n  User root\n  IdentityFile {d}/id\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  \
             LogLevel ERROR\n  SetEnv ONE_SCALEWAY_STATE_DIR={state} ONE_SCALEWAY_HOST_LOCK={lock} ONE_SCALEWAY_SUDO=never\n",
            d = d.display(),
            state = d.join("state").display(),
            lock = d.join("host.lock").display()
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("sshd_config"),
        format!(
            "ListenAddress 10.250.0.2\nPort 22\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             UsePAM no\nStrictModes no\nAcceptEnv ONE_SCALEWAY_*\nPidFile {d}/sshd.pid\n",
            d = d.display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    // `ip netns exec NS` bind-mounts the files of /etc/netns/NS/ over /etc
    // for what it runs: sshd (and the shells it starts) see that passwd.
    let etc = login_shell.map(|shell| {
        let machine = std::fs::read_to_string("/etc/passwd").unwrap();
        let changed: String = machine
            .lines()
            .map(|l| match l.strip_prefix("root:") {
                Some(rest) => {
                    let mut fields: Vec<&str> = rest.split(':').collect();
                    let last = fields.len() - 1;
                    fields[last] = shell;
                    format!("root:{}\n", fields.join(":"))
                }
                None => format!("{l}\n"),
            })
            .collect();
        EtcNetns::new(host.name(), &changed)
    });
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", host.name(), "/usr/sbin/sshd", "-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let sshd = Sshd(command.spawn().expect("sshd (Debian package openssh-server)"));
    SshLab {
        front,
        host,
        dir,
        sshd: Some(sshd),
        _etc: etc,
    }
}

/// `/etc/netns/<namespace>/passwd` (and the folders, if this made them),
/// removed by name when dropped.
struct EtcNetns {
    folder: std::path::PathBuf,
    made_parent: bool,
}

impl EtcNetns {
    fn new(namespace: &str, passwd: &str) -> Self {
        let parent = Path::new("/etc/netns");
        let made_parent = !parent.exists();
        let folder = parent.join(namespace);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("passwd"), passwd).unwrap();
        Self { folder, made_parent }
    }
}

impl Drop for EtcNetns {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.folder.join("passwd"));
        let _ = std::fs::remove_dir(&self.folder);
        if self.made_parent {
            let _ = std::fs::remove_dir("/etc/netns");
        }
    }
}

#[test]
#[ignore = "privileged: needs root, iproute2, nftables and sshd; run by .ci/run"]
fn clean_host_runs_on_the_host_over_ssh() {
    require_root();
    let mut lab = ssh_lab(None);
    let (front, host, d) = (&lab.front, &lab.host, lab.dir.path().to_path_buf());
    let d = d.as_path();
    // The host's driver files, as `onehost sync` lays them out.
    let remote = d.join("remote");
    link_as(Path::new(BIN), &remote, "vnm/scaleway/clean_host");
    let state = d.join("state");
    let lock = d.join("host.lock");

    // pre, on the host: the VM's NAT is installed there.
    let doc = encode(&fixture("vnm/deploy-scaleway-pre.xml"));
    let pre = Command::new("ip")
        .args(["netns", "exec", host.name(), BIN, "--driver", "scaleway", "pre"])
        .env("ONE_SCALEWAY_STATE_DIR", &state)
        .env("ONE_SCALEWAY_HOST_LOCK", &lock)
        .env("ONE_SCALEWAY_SUDO", "never")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = {
        use std::io::Write;
        let mut pre = pre;
        pre.stdin.take().unwrap().write_all(&doc).unwrap();
        pre.wait_with_output().unwrap()
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(nat_elements(host).contains("62.210.16.2"), "{}", nat_elements(host));

    // clean_host, from the frontend namespace, over ssh.
    let env = Env::from_pairs([
        (
            "ONE_SCALEWAY_SSH_OPTIONS",
            format!("-F {}", d.join("ssh_config").display()),
        ),
        ("ONE_SCALEWAY_REMOTE_DIR", remote.display().to_string()),
    ]);
    let runner = Ssh::from_env(&env).unwrap();
    let target: HostName = "10.250.0.2".parse().unwrap();
    let started = Instant::now();
    let result = in_ns(front.name(), move || {
        // sshd may still be starting
        let mut last = None;
        for _ in 0..50 {
            match runner.run(&target, "clean_host", &doc) {
                Ok(()) => return Ok(()),
                Err(e) if format!("{e:#}").contains("Connection refused") => {
                    last = Some(e);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap())
    });
    result.unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("clean_host over ssh: {:?}", started.elapsed());
    assert!(
        !nat_elements(host).contains("62.210.16.2"),
        "the host's NAT entries are gone: {}",
        nat_elements(host)
    );

    // A failing remote action is reported with the remote error line.
    let env = Env::from_pairs([
        (
            "ONE_SCALEWAY_SSH_OPTIONS",
            format!("-F {}", d.join("ssh_config").display()),
        ),
        ("ONE_SCALEWAY_REMOTE_DIR", remote.display().to_string()),
    ]);
    let runner = Ssh::from_env(&env).unwrap();
    let target: HostName = "10.250.0.2".parse().unwrap();
    let err = in_ns(front.name(), move || runner.run(&target, "clean_host", b"not base64!")).unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("not valid base64"), "{err}");
    lab.sshd.take();
}

/// The words our runner sends reach the program exactly, whatever root's
/// login shell on the host: POSIX `sh`, and `tcsh` and `fish`, which are
/// not POSIX shells (quoting is single quotes; `'` as `'\''`; tcsh expands
/// `!` even inside single quotes, so the runner refuses it).
#[test]
#[ignore = "privileged: needs root, iproute2, sshd, tcsh and fish; run by .ci/run"]
fn every_login_shell_gets_the_words_as_sent() {
    require_root();
    let words = [
        "printf", "%s|", "a b", "it's", "$HOME", "*", ";", "`id`", "$(id)", "~", "{a,b}", "\"\"", "#",
    ];
    for shell in ["/bin/sh", "/usr/bin/tcsh", "/usr/bin/fish"] {
        assert!(
            Path::new(shell).exists(),
            "{shell} is missing (Debian packages tcsh, fish)"
        );
        let mut lab = ssh_lab(Some(shell));
        let env = Env::from_pairs([(
            "ONE_SCALEWAY_SSH_OPTIONS",
            format!("-F {}", lab.dir.path().join("ssh_config").display()),
        )]);
        let ssh = opennebula::ssh::Ssh::from_env(&env, None, Duration::from_secs(20)).unwrap();
        let ran = in_ns(lab.front.name(), move || {
            let mut last = None;
            for _ in 0..50 {
                match ssh.run("10.250.0.2", &[], &words, b"") {
                    Ok(r) if r.stderr.contains("Connection refused") => {
                        last = Some(r);
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    other => return other,
                }
            }
            Ok(last.unwrap())
        })
        .unwrap();
        assert_eq!(
            (ran.success, ran.stdout.as_str()),
            (true, "a b|it's|$HOME|*|;|`id`|$(id)|~|{a,b}|\"\"|#|"),
            "{shell}: {ran:?}"
        );
        lab.sshd.take();
    }
}
