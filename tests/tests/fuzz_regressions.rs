//! Replays the fuzz corpora and the inputs that once failed
//! (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) through the same
//! checks as the fuzz targets in `fuzz/fuzz_targets/`, without libFuzzer, in
//! every `cargo test`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::{Path, PathBuf};

use opennebula::template::Template;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for folder in ["corpus", "regressions"] {
        let dir = root.join(folder).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                continue;
            }
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

fn each(target: &str, check: impl Fn(&[u8])) {
    let all = inputs(target);
    assert!(!all.is_empty(), "no corpus for {target}");
    for (path, data) in all {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&data)));
        assert!(ok.is_ok(), "{target}: {} fails", path.display());
    }
}

#[test]
fn driver_message() {
    each("driver_message", |data| {
        let _ = opennebula::message::decode_document(data);
        let _ = opennebula::message::read_ipam_request(&mut &data[..]);
        let _ = opennebula::message::read_vm(&mut &data[..]);
    });
}

#[test]
fn vm_document() {
    each("vm_document", |data| {
        let Ok(root) = opennebula::xml::parse(data) else { return };
        if let Ok(vm) = opennebula::vm::Vm::from_element(&root) {
            let _ = vm.nics_of("scaleway");
            let _ = vm.nics_of("scaleway_evpn");
            let _ = vm.touched_nics_of("scaleway");
            let _ = vm.current_host();
            let _ = vm.is_hotplug();
        }
        let _ = opennebula::ipam::IpamRequest::from_element(&root);
        let _ = root.to_xml();
    });
}

#[test]
fn template_roundtrip() {
    each("template_roundtrip", |data| {
        let Ok(text) = std::str::from_utf8(data) else { return };
        let Ok(t) = Template::parse(text) else { return };
        let Ok(rendered) = t.render() else { return };
        let again = Template::parse(&rendered).expect("a rendered template parses");
        assert_eq!(again, t, "render/parse round trip of {text:?} via {rendered:?}");
    });
}

#[test]
fn scaleway_error() {
    each("scaleway_error", |data| {
        let (status, body) = match data.split_first() {
            Some((s, rest)) => (400 + u16::from(*s) % 200, rest),
            None => (500, data),
        };
        let e = scaleway::ApiError::from_response("POST", "/fuzz", status, body, None, None);
        let shown = e.to_string();
        assert!(!shown.contains('\n'), "one line: {shown:?}");
        let _ = e.is_retryable();
        let _ = e.is_capacity();
    });
}
