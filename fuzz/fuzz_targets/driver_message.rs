//! The driver message decoder: any bytes on stdin give a typed document or
//! a MessageError, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = opennebula::message::decode_document(data);
    let _ = opennebula::message::read_ipam_request(&mut &data[..]);
    let _ = opennebula::message::read_vm(&mut &data[..]);
});
