//! A real oned for the end-to-end tests: OpenNebula built from source by
//! `tests/oned/build.sh` (cached outside the checkout), started per test run
//! from a temporary `ONE_LOCATION` as `oneadmin`, with OpenNebula's stock
//! configuration **as edited by our own `install.sh -d`** (so the install is
//! tested against the real stock files), and stopped with everything it
//! started, by PID.
//!
//! What the harness changes in the stock files, and why: the XML-RPC, hook
//! manager and monitord ports (free ports on 127.0.0.1, so runs never meet),
//! `LISTEN_ADDRESS` (loopback only), and what a test appends (`conf_extra`,
//! e.g. a VM driver). Everything else is OpenNebula's.
//!
//! Environment of oned (and so of every driver it runs): `ONE_LOCATION`,
//! `ONE_AUTH`, `ONE_XMLRPC`, `RUBYLIB`, `PATH` (a test's folders first, e.g.
//! an `ssh` stand-in), `HOME` (`ONE_LOCATION/var`, as oneadmin's home is
//! `/var/lib/one` in production), plus the test's own variables.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{Ran, TempDir, require_root};

mod cli;
mod files;

pub use cli::{id_of, ranges};
pub use files::installation;
use files::{VMM_ACTIONS, edit, free_port, install_emulator_ssh, install_recorder, kvm_as_test_vmm, repo, run_checked};

/// The user OpenNebula runs as.
pub const ONEADMIN: &str = "oneadmin";
/// oneadmin's password in every test oned.
const PASSWORD: &str = "one-scaleway-test";

/// How to start a test oned.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Our built binaries (`scaleway-ipam`, ...), installed with `install.sh -d -b`.
    pub bindir: PathBuf,
    /// Extra environment for oned and its drivers.
    pub env: Vec<(String, String)>,
    /// Folders put first on oned's `PATH`.
    pub path_first: Vec<PathBuf>,
    /// Text appended to `oned.conf` after our install edited it.
    pub conf_extra: String,
    /// Run oned inside this network namespace (when its drivers change networking).
    pub netns: Option<String>,
    /// `one-scaleway-recorder`: when set, every action file of ours records
    /// what oned sends it ([`RealOned::records`]) before running the action.
    pub recorder: Option<PathBuf>,
    /// With the recorder: the kinds of action (`vnm`, `ipam`) only recorded,
    /// not run (their call succeeds and changes nothing).
    pub record_only: Vec<String>,
    /// Hosts are this machine: `one-scaleway-local-ssh` is oned's `ssh`, and
    /// `SCRIPTS_REMOTE_DIR` is a folder of the run holding a copy of the
    /// remotes (as `onehost sync` leaves them). Only with `record_only` for
    /// anything that would change the machine.
    pub local_hosts: Option<PathBuf>,
    /// `one-scaleway-test-vmm`: declares the hypervisor `sbx` (OpenNebula's
    /// `one_vmm_exec` with our actions, run on the frontend), so that oned
    /// runs the network drivers around its actions as in production.
    pub test_vmm: Option<PathBuf>,
    /// With `test_vmm`: the stock `kvm` and `lxc` drivers become the test
    /// ones (their VM drivers run the `sbx` actions, their monitoring runs
    /// OpenNebula's `dummy` probes on the frontend), for hosts registered as
    /// KVM or LXC hosts (as `scaleway-provision` registers them).
    pub kvm_is_test_vmm: bool,
    /// The emulator's binary: a setuid-root copy becomes oned's `ssh` (the
    /// emulator's ssh alias, which enters the emulated hosts; only oneadmin
    /// may run it), so that OpenNebula's ssh streams and the drivers reach
    /// the emulated hosts as oneadmin.
    pub emulator_ssh: Option<PathBuf>,
}

/// The test hypervisor's name (`VM_MAD`).
pub const TEST_VMM: &str = "sbx";

/// One action call oned made, as recorded.
#[derive(Debug, Clone)]
pub struct Record {
    /// `<kind>-<driver>-<action>`, e.g. `ipam-scaleway_fip-register_address_range`.
    pub call: String,
    pub args: Vec<String>,
    pub stdin: Vec<u8>,
}

/// A running oned. Dropping it stops oned and every process it started.
pub struct RealOned {
    pub location: PathBuf,
    pub xmlrpc: String,
    home: PathBuf,
    env: Vec<(String, String)>,
    netns: Option<String>,
    child: Option<Child>,
    // Last: removed after oned is stopped.
    dir: TempDir,
}

impl RealOned {
    /// Lays out a fresh `ONE_LOCATION`, installs our drivers into it with
    /// `install.sh -d`, and starts oned; returns once it answers XML-RPC.
    pub fn start(options: &Options) -> RealOned {
        require_root();
        let install = installation();
        let dir = TempDir::new("oned");
        let location = dir.path().join("one");
        // oneadmin's home, as in production (/var/lib/one): where install.sh
        // puts the credentials file, ~/.config/scw/config.yaml.
        let home = location.join("var");
        std::fs::create_dir_all(&location).expect("create ONE_LOCATION");
        // The programs and libraries are read only: linked, file by file in
        // bin/ (where install.sh -d adds ours: never into the shared cache).
        // What oned and the install change (etc, var, share) is copied.
        for d in ["lib", "sbin", "include"] {
            std::os::unix::fs::symlink(install.join(d), location.join(d)).expect("link the installation");
        }
        std::fs::create_dir(location.join("bin")).expect("create bin");
        for entry in std::fs::read_dir(install.join("bin")).expect("list the installation's bin") {
            let entry = entry.expect("a bin entry");
            std::os::unix::fs::symlink(entry.path(), location.join("bin").join(entry.file_name()))
                .expect("link a program");
        }
        let copied: Vec<String> = ["etc", "share", "var"]
            .iter()
            .map(|d| install.join(d).display().to_string())
            .collect();
        let mut args: Vec<&str> = vec!["-a"];
        args.extend(copied.iter().map(String::as_str));
        let target = location.display().to_string();
        args.push(&target);
        run_checked("cp", &args);
        std::fs::create_dir_all(home.join(".one")).expect("create HOME/.one");
        std::fs::write(home.join(".one/one_auth"), format!("{ONEADMIN}:{PASSWORD}\n")).expect("write one_auth");

        // Our install, on OpenNebula's stock files, exactly as an administrator runs it.
        let installer = repo().join("install.sh");
        let bindir = options.bindir.display().to_string();
        let out = Command::new(&installer)
            .args(["-d", &target, "-b", &bindir, "-u", ONEADMIN, "-g", ONEADMIN])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", installer.display()));
        assert!(
            out.status.success(),
            "install.sh -d failed on the stock configuration:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        let mut env_extra: Vec<(String, String)> = Vec::new();
        if let Some(recorder) = &options.recorder {
            let copy = dir.path().join("bin/one-scaleway-recorder");
            std::fs::create_dir_all(dir.path().join("bin")).expect("create bin");
            std::fs::create_dir_all(dir.path().join("records")).expect("create records");
            std::fs::copy(recorder, &copy).unwrap_or_else(|e| panic!("cannot copy {}: {e}", recorder.display()));
            install_recorder(&location, &copy);
            env_extra.push((
                "ONE_SCALEWAY_RECORD_DIR".into(),
                dir.path().join("records").display().to_string(),
            ));
        }

        let mut conf_extra = options.conf_extra.clone();
        let mut scripts_remote_dir: Option<PathBuf> = None;
        let mut path_first = options.path_first.clone();
        if let Some(vmm) = &options.test_vmm {
            let dir_vmm = location.join("var/remotes/vmm").join(TEST_VMM);
            std::fs::create_dir_all(&dir_vmm).expect("create the test hypervisor's folder");
            let copy = dir_vmm.join("one-scaleway-test-vmm");
            std::fs::copy(vmm, &copy).unwrap_or_else(|e| panic!("cannot copy {}: {e}", vmm.display()));
            for action in VMM_ACTIONS {
                std::os::unix::fs::symlink("one-scaleway-test-vmm", dir_vmm.join(action)).expect("link a VM action");
            }
            conf_extra.push_str(&format!(
                "VM_MAD = [ NAME = \"{TEST_VMM}\", SUNSTONE_NAME = \"Test\", EXECUTABLE = \"one_vmm_exec\",\n  \
                 ARGUMENTS = \"-t 15 -r 0 {TEST_VMM} -l {}\", TYPE = \"xml\", KEEP_SNAPSHOTS = \"no\" ]\n",
                VMM_ACTIONS.join(",")
            ));
        }
        if let Some(ssh) = &options.local_hosts {
            let bin = dir.path().join("path");
            std::fs::create_dir_all(&bin).expect("create the PATH folder");
            std::fs::copy(ssh, bin.join("ssh")).unwrap_or_else(|e| panic!("cannot copy {}: {e}", ssh.display()));
            path_first.insert(0, bin);
            // What `onehost sync` leaves on a host: the remotes, links resolved.
            let remote = dir.path().join("remote");
            run_checked(
                "cp",
                &[
                    "-rL",
                    &location.join("var/remotes").display().to_string(),
                    &remote.display().to_string(),
                ],
            );
            scripts_remote_dir = Some(remote);
        }
        if !options.record_only.is_empty() {
            env_extra.push(("ONE_SCALEWAY_RECORD_ONLY".into(), options.record_only.join(",")));
        }

        let (port, hm_port, hm_listen, monitor_port) = (free_port(), free_port(), free_port(), free_port());
        let oned_conf = location.join("etc/oned.conf");
        edit(
            &oned_conf,
            &[
                ("\nPORT = 2633\n", &format!("\nPORT = {port}\n")),
                ("\nLISTEN_ADDRESS = \"0.0.0.0\"\n", "\nLISTEN_ADDRESS = \"127.0.0.1\"\n"),
                (
                    "\"-p 2101 -l 2102 -b 127.0.0.1\"",
                    &format!("\"-p {hm_port} -l {hm_listen} -b 127.0.0.1\""),
                ),
            ],
        );
        if let Some(remote) = &scripts_remote_dir {
            // Replaced, not added: OpenNebula's Ruby drivers join repeated values.
            edit(
                &oned_conf,
                &[(
                    "\nSCRIPTS_REMOTE_DIR=/var/tmp/one\n",
                    &format!("\nSCRIPTS_REMOTE_DIR={}\n", remote.display()),
                )],
            );
        }
        if !conf_extra.is_empty() {
            let mut text = std::fs::read_to_string(&oned_conf).expect("read oned.conf");
            text.push_str("\n# added by the test harness\n");
            text.push_str(&conf_extra);
            text.push('\n');
            std::fs::write(&oned_conf, text).expect("write oned.conf");
        }
        edit(
            &location.join("etc/monitord.conf"),
            &[
                ("PORT    = 4124,", &format!("PORT    = {monitor_port},")),
                ("ADDRESS         = \"::\",", "ADDRESS         = \"127.0.0.1\","),
            ],
        );
        if options.kvm_is_test_vmm {
            assert!(options.test_vmm.is_some(), "kvm_is_test_vmm needs test_vmm");
            kvm_as_test_vmm(&location);
        }
        let dir_text = dir.path().display().to_string();
        run_checked("chown", &["-R", &format!("{ONEADMIN}:{ONEADMIN}"), &dir_text]);
        run_checked("chmod", &["0700", &home.join(".one").display().to_string()]);
        if let Some(emulator) = &options.emulator_ssh {
            let bin = install_emulator_ssh(dir.path(), emulator);
            // OpenNebula's transfer scripts put /usr/bin first on their PATH
            // and honour $SSH: without it they would run the real ssh.
            env_extra.push(("SSH".into(), bin.join("ssh").display().to_string()));
            path_first.insert(0, bin);
        }

        let xmlrpc = format!("http://127.0.0.1:{port}/RPC2");
        let mut path: Vec<String> = path_first.iter().map(|p| p.display().to_string()).collect();
        path.push(location.join("bin").display().to_string());
        path.extend(["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(String::from));
        let mut env: Vec<(String, String)> = vec![
            ("ONE_LOCATION".into(), target.clone()),
            ("ONE_AUTH".into(), home.join(".one/one_auth").display().to_string()),
            ("ONE_XMLRPC".into(), xmlrpc.clone()),
            ("RUBYLIB".into(), location.join("lib/ruby").display().to_string()),
            ("PATH".into(), path.join(":")),
            ("HOME".into(), home.display().to_string()),
            ("LANG".into(), "C.UTF-8".into()),
        ];
        env.extend(env_extra);
        env.extend(options.env.iter().cloned());
        let mut oned = RealOned {
            location,
            xmlrpc,
            home,
            env,
            netns: options.netns.clone(),
            child: None,
            dir,
        };
        let log = std::fs::File::create(oned.dir.path().join("oned.stdout")).expect("create oned.stdout");
        let program = oned.location.join("bin/oned").display().to_string();
        let mut command = oned.as_oneadmin(&program, &["-f"]);
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log"))
            .stderr(log);
        oned.child = Some(command.spawn().expect("start oned"));
        oned.wait_ready();
        oned
    }

    /// A command that runs `program args` as oneadmin with oned's
    /// environment (inside oned's namespace, if it has one).
    pub fn as_oneadmin(&self, program: &str, args: &[&str]) -> Command {
        let mut words: Vec<String> = Vec::new();
        if let Some(ns) = &self.netns {
            words.extend(["ip", "netns", "exec", ns].map(String::from));
        }
        words.extend(
            [
                "setpriv",
                "--reuid",
                ONEADMIN,
                "--regid",
                ONEADMIN,
                "--init-groups",
                "--",
            ]
            .map(String::from),
        );
        words.push(program.to_owned());
        words.extend(args.iter().map(|a| (*a).to_owned()));
        let mut command = Command::new(&words[0]);
        command
            .args(&words[1..])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&self.home)
            .process_group(0);
        command
    }

    /// Runs one of OpenNebula's CLI commands (`onevnet`, `onevm`, ...) as
    /// oneadmin, as an administrator would.
    pub fn cli(&self, program: &str, args: &[&str]) -> Ran {
        let path = self.location.join("bin").join(program).display().to_string();
        let out = self
            .as_oneadmin(&path, args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// [`RealOned::cli`] that must succeed; returns its stdout.
    pub fn cli_ok(&self, program: &str, args: &[&str]) -> String {
        let ran = self.cli(program, args);
        assert_eq!(
            ran.code,
            0,
            "{program} {args:?} failed:\n{}{}\n--- oned.log (end)\n{}",
            ran.stdout,
            ran.stderr,
            self.log_tail(40)
        );
        ran.stdout
    }

    /// The last `n` lines of `oned.log`.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.location.join("var/oned.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// oneadmin's home (`ONE_LOCATION/var`).
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Writes `text` as oneadmin's `~/.config/scw/config.yaml` (0600, owned by
    /// oneadmin), replacing the template `install.sh` put there.
    pub fn write_scaleway_config(&self, text: &str) {
        let path = self.home.join(".config/scw/config.yaml");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        run_checked(
            "chown",
            &[&format!("{ONEADMIN}:{ONEADMIN}"), &path.display().to_string()],
        );
        run_checked("chmod", &["0600", &path.display().to_string()]);
    }

    /// An XML-RPC client of this oned, as oneadmin.
    pub fn api(&self) -> opennebula::oned::Oned {
        opennebula::oned::Oned::new(&self.xmlrpc, format!("{ONEADMIN}:{PASSWORD}")).expect("an XML-RPC client")
    }

    /// oned's environment (what its drivers inherit).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let out = std::fs::read_to_string(self.dir.path().join("oned.stdout")).unwrap_or_default();
                panic!(
                    "oned exited at start ({status}):\n{out}\n--- oned.log\n{}",
                    self.log_tail(60)
                );
            }
            let ran = self.cli("oneuser", &["show", "0", "--xml"]);
            if ran.code == 0 {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "oned did not answer within 2 minutes:\n{}\n--- oned.log\n{}",
                ran.stderr,
                self.log_tail(60)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Every process whose environment has this oned's `ONE_LOCATION`: oned,
    /// its drivers and what they started (the ssh streams make process
    /// groups of their own, so a group kill would miss them).
    fn our_processes(&self) -> Vec<i32> {
        let marker = format!("ONE_LOCATION={}", self.location.display());
        let mut pids = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return pids;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if pid == std::process::id() as i32 {
                continue;
            }
            if let Ok(environ) = std::fs::read(entry.path().join("environ"))
                && environ.split(|b| *b == 0).any(|v| v == marker.as_bytes())
            {
                pids.push(pid);
            }
        }
        pids
    }

    fn signal_all(&self, signal: Signal) -> usize {
        let pids = self.our_processes();
        for pid in &pids {
            let _ = kill(Pid::from_raw(*pid), signal);
        }
        pids.len()
    }

    /// Stops oned (SIGTERM, as `one stop` does) and then everything it
    /// started that is still there.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for signal in [Signal::SIGTERM, Signal::SIGTERM, Signal::SIGKILL] {
            if self.signal_all(signal) == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for RealOned {
    fn drop(&mut self) {
        self.stop();
    }
}
