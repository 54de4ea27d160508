//! The Scaleway error parser: any status and body give an ApiError whose
//! message is one printable line, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
