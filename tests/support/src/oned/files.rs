//! The files of a test oned: the cached installation, the stock-file
//! edits, the recorder and the test hypervisor's actions.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The OpenNebula installation the tests use: `ONE_SCALEWAY_ONED` (an
/// installation such as `tests/oned/build.sh` prints), else what
/// `tests/oned/build.sh` prints (it builds once, then answers from its cache).
pub fn installation() -> PathBuf {
    if let Some(dir) = std::env::var_os("ONE_SCALEWAY_ONED") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("bin/oned").is_file(),
            "ONE_SCALEWAY_ONED={} has no bin/oned: point it at the folder tests/oned/build.sh prints",
            dir.display()
        );
        return dir;
    }
    let script = crate::tests_dir().join("oned/build.sh");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(out.status.success(), "{} failed: {}", script.display(), out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let dir = PathBuf::from(text.lines().last().unwrap_or_default().trim());
    assert!(
        dir.join("bin/oned").is_file(),
        "{} printed {text:?}, not an installation",
        script.display()
    );
    dir
}

/// The VM driver actions `one_vmm_exec` runs for the test hypervisor.
pub(super) const VMM_ACTIONS: [&str; 18] = [
    "deploy",
    "shutdown",
    "cancel",
    "save",
    "restore",
    "migrate",
    "migrate_local",
    "poll",
    "attach_nic",
    "detach_nic",
    "reboot",
    "reset",
    "attach_disk",
    "detach_disk",
    "resize",
    "update_conf",
    "prereconfigure",
    "reconfigure",
];

/// Our driver binaries in an installation: `(folder, binary)`.
pub(super) const OUR_BINARIES: [(&str, &str); 3] = [
    ("var/remotes/ipam/scaleway_fip", "scaleway-ipam"),
    ("var/remotes/vnm/scaleway", "scaleway-vnm"),
    ("var/remotes/vnm/scaleway_evpn", "scaleway-vnm"),
];

/// Puts `recorder` in place of each driver binary of ours in `location`
/// (the binary becomes `<binary>.real`): the installed action files then
/// run the recorder exactly as they run the driver.
pub(super) fn install_recorder(location: &Path, recorder: &Path) {
    for (folder, binary) in OUR_BINARIES {
        let path = location.join(folder).join(binary);
        let real = location.join(folder).join(format!("{binary}.real"));
        std::fs::rename(&path, &real).unwrap_or_else(|e| panic!("cannot move {}: {e}", path.display()));
        std::fs::copy(recorder, &path)
            .unwrap_or_else(|e| panic!("cannot copy the recorder to {}: {e}", path.display()));
    }
}

/// A port for one of oned's listeners: below Linux's ephemeral range (where
/// the tests' own client connections take their source ports, and port 0
/// would pick from), free when tried, and never handed out twice in this
/// process (the tests of one binary start their oneds at once).
pub(super) fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Spread runs over the range by process id, then walk it.
    let start = std::process::id() % 12_000;
    for offset in 0..12_000u32 {
        // 7 and 12000 are coprime: every port of the range once.
        let port = u16::try_from(20_000 + (start + offset * 7) % 12_000).expect("a port below 32000");
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between 20000 and 31999")
}

/// Replaces `from` by `to` in `text`, which must hold `from` exactly once.
pub(super) fn replace_once(text: &str, from: &str, to: &str, file: &Path) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{} does not hold {from:?} exactly once: OpenNebula's stock file changed, adapt tests/support/src/oned.rs",
        file.display()
    );
    text.replacen(from, to, 1)
}

pub(super) fn edit(file: &Path, edits: &[(&str, &str)]) {
    let mut text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    for (from, to) in edits {
        text = replace_once(&text, from, to, file);
    }
    std::fs::write(file, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
}

pub(super) fn run_checked(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The repository's root.
pub(super) fn repo() -> PathBuf {
    crate::tests_dir().parent().expect("tests/ has a parent").to_path_buf()
}

/// The stock `kvm` and `lxc` drivers become the test ones: the VM driver
/// runs the test hypervisor's actions (`TYPE = "xml"`: no libvirt domain),
/// the monitoring runs OpenNebula's `dummy` probes on the frontend.
pub(super) fn kvm_as_test_vmm(location: &Path) {
    let actions = VMM_ACTIONS.join(",");
    edit(
        &location.join("etc/oned.conf"),
        &[
            (
                "    ARGUMENTS      = \"-t 15 -r 0 kvm -p\",\n    DEFAULT        = \"vmm_exec/vmm_exec_kvm.conf\",\n    \
                 TYPE           = \"kvm\",",
                &format!(
                    "    ARGUMENTS      = \"-t 15 -r 0 {} -l {actions}\",\n    \
                     DEFAULT        = \"vmm_exec/vmm_exec_kvm.conf\",\n    TYPE           = \"xml\",",
                    super::TEST_VMM,
                ),
            ),
            // LXC hosts too (`hypervisor: lxc`): the same test hypervisor,
            // handed the same actions (OpenNebula's LXC driver plugs a veth
            // named after the NIC's TARGET into its BRIDGE, as ours does).
            (
                "    ARGUMENTS      = \"-t 15 -r 0 lxc\",",
                &format!("    ARGUMENTS      = \"-t 15 -r 0 {} -l {actions}\",", super::TEST_VMM),
            ),
        ],
    );
    edit(
        &location.join("etc/monitord.conf"),
        &[
            (
                "    EXECUTABLE    = \"one_im_ssh\",\n    ARGUMENTS     = \"-r 3 -t 15 -w 90 kvm\",",
                "    EXECUTABLE    = \"one_im_sh\",\n    ARGUMENTS     = \"-r 3 -t 15 -w 90 dummy\",",
            ),
            (
                "    EXECUTABLE    = \"one_im_ssh\",\n    ARGUMENTS     = \"-r 3 -t 15 -w 90 lxc\",",
                "    EXECUTABLE    = \"one_im_sh\",\n    ARGUMENTS     = \"-r 3 -t 15 -w 90 dummy\",",
            ),
        ],
    );
}

/// A setuid-root copy of the emulator named `ssh` in a root-owned folder of
/// `dir` (runnable by oneadmin's group only): oned's `ssh`. Returns the folder.
pub(super) fn install_emulator_ssh(dir: &Path, emulator: &Path) -> PathBuf {
    let bin = dir.join("ssh-bin");
    std::fs::create_dir(&bin).expect("create the ssh folder");
    let ssh = bin.join("ssh");
    std::fs::copy(emulator, &ssh).unwrap_or_else(|e| panic!("cannot copy {}: {e}", emulator.display()));
    let ssh_text = ssh.display().to_string();
    run_checked("chown", &[&format!("root:{}", super::ONEADMIN), &ssh_text]);
    run_checked("chmod", &["4750", &ssh_text]);
    run_checked("chmod", &["0755", &bin.display().to_string()]);
    bin
}
