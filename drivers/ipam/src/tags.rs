//! The tags that mark a flexible IP as ours (defined with the ownership
//! check in [`scaleway::ownership`], which the network driver shares), and
//! a new registration token.

pub use scaleway::ownership::{BLOCK, OURS, TOKEN, for_range, is_ours, value};

/// A new random registration token (a UUID v4 from the kernel's CSPRNG).
pub fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_uuids_and_differ() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert!(scaleway::secret::is_uuid(&a), "{a}");
        assert_eq!(&a[14..15], "4");
    }
}
