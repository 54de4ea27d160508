//! The VM document parser: raw XML (no base64) to the typed VM and its NICs
//! of both drivers, and the IPAM request, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
