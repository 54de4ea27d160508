//! Small helpers written by hand: a seeded pseudo-random generator, UUIDs,
//! timestamps (RFC 3339 and HTTP dates), MD5 (for SSH key fingerprints) and
//! percent-decoding.

use std::time::{SystemTime, UNIX_EPOCH};

/// SplitMix64: small, fast, good enough for ids and fault probabilities.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: Option<u64>) -> Self {
        let seed = seed.unwrap_or_else(|| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            // Truncation is fine: we only want some entropy.
            (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
        });
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An integer in [lo, hi].
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// A random version-4 UUID in lower case.
    pub fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&a.to_be_bytes());
        bytes[8..].copy_from_slice(&b.to_be_bytes());
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }
}

/// True for a canonical UUID (any version, either case).
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

/// Seconds since the epoch (may be fractional; never before it) as a time.
fn at(epoch_seconds: f64) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_secs_f64(epoch_seconds.max(0.0))
}

/// RFC 3339 UTC with nanoseconds: `2025-12-09T18:20:30.225934619Z` (`humantime`).
pub fn rfc3339(epoch_seconds: f64) -> String {
    humantime::format_rfc3339_nanos(at(epoch_seconds)).to_string()
}

/// HTTP date (IMF-fixdate): `Wed, 25 Feb 2026 09:35:25 GMT` (`httpdate`).
pub fn http_date(epoch_seconds: f64) -> String {
    httpdate::fmt_http_date(at(epoch_seconds))
}

/// Seconds since the Unix epoch, now.
pub fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Percent-decodes `s` (`percent-encoding`, as `url` and `reqwest` do);
/// with `plus_is_space`, `+` becomes a space first (query strings: an
/// encoded `%2B` stays a `+`). Invalid sequences are kept as they are.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let spaced;
    let s = if plus_is_space {
        spaced = s.replace('+', " ");
        spaced.as_str()
    } else {
        s
    };
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// MD5 (RFC 1321), for SSH key fingerprints (RustCrypto's `md-5`).
pub fn md5(input: &[u8]) -> [u8; 16] {
    use md5::Digest;
    md5::Md5::digest(input).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_vectors() {
        let hex = |d: [u8; 16]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hex(md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex(md5(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            hex(md5(
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
            )),
            "57edf4a22be3c955ac49da2e2107b67a"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_772_012_125.5), "2026-02-25T09:35:25.500000000Z");
        assert_eq!(http_date(1_772_012_125.0), "Wed, 25 Feb 2026 09:35:25 GMT");
    }

    #[test]
    fn uuids_and_decoding() {
        let mut r = Rng::new(Some(1));
        let u = r.uuid();
        assert!(is_uuid(&u), "{u}");
        assert_eq!(&u[14..15], "4");
        assert!(!is_uuid("not-a-uuid"));
        assert_eq!(percent_decode("a%2Fb+c%zz", true), "a/b c%zz");
        assert_eq!(percent_decode("10.0.0.0%2F8", false), "10.0.0.0/8");
        assert_eq!(percent_decode("100%", false), "100%");
    }
}
