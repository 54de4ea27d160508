//! Lowercase hexadecimal, written without the formatting machinery
//! (`{:02x}` per byte costs a format specification each: `reconcile`
//! writes a fingerprint or a MAC address for every NIC of the host, several
//! times).

use std::fmt;

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as lowercase hexadecimal, two digits each.
pub fn write(out: &mut impl fmt::Write, bytes: &[u8]) -> fmt::Result {
    let mut buf = [0u8; 64];
    for chunk in bytes.chunks(buf.len() / 2) {
        for (i, b) in chunk.iter().enumerate() {
            buf[2 * i] = DIGITS[usize::from(b >> 4)];
            buf[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
        }
        out.write_str(std::str::from_utf8(&buf[..2 * chunk.len()]).map_err(|_| fmt::Error)?)?;
    }
    Ok(())
}

/// Appends `bytes` to `out` as lowercase hexadecimal.
pub fn push(out: &mut String, bytes: &[u8]) {
    out.reserve(2 * bytes.len());
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

/// A MAC address as `ip` and `nft` write it: `02:00:ac:1e:00:02`.
pub fn mac(mac: [u8; 6]) -> String {
    let mut out = String::with_capacity(17);
    for (i, b) in mac.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        push(&mut out, &[*b]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_the_format_specification_writes_it() {
        let bytes: Vec<u8> = (0..=255).chain(0..40).collect();
        let want: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut written = String::new();
        write(&mut written, &bytes).unwrap();
        assert_eq!(written, want);
        let mut pushed = String::from("m-");
        push(&mut pushed, &bytes);
        assert_eq!(pushed, format!("m-{want}"));
        let mut empty = String::new();
        write(&mut empty, &[]).unwrap();
        assert!(empty.is_empty());
        assert_eq!(mac([2, 0, 0xac, 0x1e, 0, 0xff]), "02:00:ac:1e:00:ff");
    }
}
