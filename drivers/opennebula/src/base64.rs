//! Standard base64 (RFC 4648, `+/` alphabet, `=` padding), as OpenNebula's
//! drivers exchange it (Ruby `Base64.encode64`/`strict_encode64`).
//!
//! Decoding tolerates ASCII whitespace anywhere (Ruby's `encode64` wraps at
//! 60 characters; shells add a trailing newline) and rejects everything else
//! that is not part of the alphabet, with the offset of the first bad byte.

use std::fmt;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Why a base64 text could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base64Error {
    /// A byte outside the alphabet, `=` and whitespace.
    InvalidByte { offset: usize, byte: u8 },
    /// `=` somewhere else than at the end, or more than two of them.
    MisplacedPadding { offset: usize },
    /// The number of significant characters leaves a dangling 6-bit group.
    Truncated { symbols: usize },
}

impl fmt::Display for Base64Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidByte { offset, byte } => {
                if byte.is_ascii_graphic() {
                    write!(f, "unexpected character '{}' at offset {offset}", *byte as char)
                } else {
                    write!(f, "unexpected byte 0x{byte:02x} at offset {offset}")
                }
            }
            Self::MisplacedPadding { offset } => {
                write!(f, "padding '=' in the wrong place at offset {offset}")
            }
            Self::Truncated { symbols } => write!(
                f,
                "the text is truncated ({symbols} base64 characters is not a valid length)"
            ),
        }
    }
}

impl std::error::Error for Base64Error {}

fn value_of(byte: u8) -> Option<u32> {
    match byte {
        b'A'..=b'Z' => Some(u32::from(byte - b'A')),
        b'a'..=b'z' => Some(u32::from(byte - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(byte - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes base64 text, skipping ASCII whitespace.
pub fn decode(input: &[u8]) -> Result<Vec<u8>, Base64Error> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut symbols = 0usize;
    let mut padding = 0usize;
    for (offset, &byte) in input.iter().enumerate() {
        if byte.is_ascii_whitespace() {
            continue;
        }
        if byte == b'=' {
            padding += 1;
            // Padding only completes a final quantum of 2 or 3 symbols.
            if padding > 2 || symbols % 4 < 2 || (symbols + padding) % 4 == 1 {
                return Err(Base64Error::MisplacedPadding { offset });
            }
            continue;
        }
        if padding > 0 {
            return Err(Base64Error::MisplacedPadding { offset });
        }
        let value = value_of(byte).ok_or(Base64Error::InvalidByte { offset, byte })?;
        acc = (acc << 6) | value;
        bits += 6;
        symbols += 1;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if symbols % 4 == 1 {
        return Err(Base64Error::Truncated { symbols });
    }
    if padding > 0 && !(symbols + padding).is_multiple_of(4) {
        return Err(Base64Error::Truncated { symbols });
    }
    Ok(out)
}

/// Encodes bytes as one line of padded base64 (no newline), like Ruby's
/// `Base64.strict_encode64`.
pub fn encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let symbols = chunk.len() + 1;
        for i in 0..4 {
            if i < symbols {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors_round_trip() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(encode(plain.as_bytes()), *encoded, "encode {plain:?}");
            assert_eq!(
                decode(encoded.as_bytes()).unwrap(),
                plain.as_bytes(),
                "decode {encoded:?}"
            );
        }
    }

    #[test]
    fn all_bytes_round_trip() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for len in 0..data.len() {
            assert_eq!(decode(encode(&data[..len]).as_bytes()).unwrap(), &data[..len]);
        }
    }

    #[test]
    fn whitespace_and_wrapping_are_tolerated() {
        assert_eq!(decode(b"  Zm9v\nYmFy\r\n").unwrap(), b"foobar");
        assert_eq!(decode(b"Zm9vYg==\n").unwrap(), b"foob");
        assert_eq!(decode(b"Zm9vYg\n").unwrap(), b"foob", "padding is optional");
        assert_eq!(decode(b"Zm 9v\tYm Fy").unwrap(), b"foobar");
    }

    #[test]
    fn rejects_bad_input_with_position() {
        let cases: &[(&[u8], Base64Error)] = &[
            (b"<VM>", Base64Error::InvalidByte { offset: 0, byte: b'<' }),
            (b"Zm9v!", Base64Error::InvalidByte { offset: 4, byte: b'!' }),
            (b"Zm9v\0", Base64Error::InvalidByte { offset: 4, byte: 0 }),
            (b"Zg==Zg==", Base64Error::MisplacedPadding { offset: 4 }),
            (b"Z===", Base64Error::MisplacedPadding { offset: 1 }),
            (b"Zm9vY", Base64Error::Truncated { symbols: 5 }),
            (b"Zg=", Base64Error::Truncated { symbols: 2 }),
            (b"=", Base64Error::MisplacedPadding { offset: 0 }),
        ];
        for (input, expected) in cases {
            assert_eq!(&decode(input).unwrap_err(), expected, "input {input:?}");
        }
    }

    #[test]
    fn error_messages_are_readable() {
        assert_eq!(
            decode(b"ab\x01").unwrap_err().to_string(),
            "unexpected byte 0x01 at offset 2"
        );
        assert_eq!(
            decode(b"<x>").unwrap_err().to_string(),
            "unexpected character '<' at offset 0"
        );
    }
}
