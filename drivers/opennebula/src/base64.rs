//! Standard base64 (RFC 4648, `+/` alphabet, `=` padding), as OpenNebula's
//! drivers exchange it (Ruby `Base64.encode64`/`strict_encode64`), through
//! the `base64` crate.
//!
//! Decoding tolerates ASCII whitespace anywhere (Ruby's `encode64` wraps at
//! 60 characters; shells add a trailing newline) and rejects everything else
//! that is not part of the alphabet, with the offset of the first bad byte.

use std::fmt;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::{DecodeError, Engine, alphabet};

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

/// Standard alphabet; padding optional (Ruby's `decode64` does not need
/// it); the unused bits of the last symbol ignored (as Ruby does).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes base64 text, skipping ASCII whitespace.
pub fn decode(input: &[u8]) -> Result<Vec<u8>, Base64Error> {
    // The significant bytes, and where each was in the input (for errors).
    let (text, origin): (Vec<u8>, Vec<usize>) = input
        .iter()
        .enumerate()
        .filter(|(_, b)| !b.is_ascii_whitespace())
        .map(|(i, &b)| (b, i))
        .unzip();
    let at = |i: usize| origin.get(i).copied().unwrap_or(input.len());
    // The first byte outside the alphabet (the crate may report a later one).
    if let Some(i) = text
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='))
    {
        return Err(Base64Error::InvalidByte {
            offset: at(i),
            byte: text[i],
        });
    }
    let first_padding = || text.iter().position(|&b| b == b'=').map_or(input.len(), at);
    LENIENT.decode(&text).map_err(|e| match e {
        DecodeError::InvalidByte(i, b'=') => Base64Error::MisplacedPadding { offset: at(i) },
        DecodeError::InvalidByte(i, byte)
        | DecodeError::InvalidLastSymbol {
            offset: i,
            symbol: byte,
            ..
        } => Base64Error::InvalidByte { offset: at(i), byte },
        DecodeError::InvalidLength(_) => Base64Error::Truncated {
            symbols: text.iter().filter(|&&b| b != b'=').count(),
        },
        DecodeError::InvalidPadding => Base64Error::MisplacedPadding {
            offset: first_padding(),
        },
    })
}

/// Encodes bytes as one line of padded base64 (no newline), like Ruby's
/// `Base64.strict_encode64`.
pub fn encode(input: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(input)
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
        assert_eq!(
            decode(b"Zg=").unwrap(),
            b"f",
            "short padding, as Ruby's decode64 reads it"
        );
    }

    #[test]
    fn rejects_bad_input_with_position() {
        let cases: &[(&[u8], Base64Error)] = &[
            (b"<VM>", Base64Error::InvalidByte { offset: 0, byte: b'<' }),
            (b"Zm9v!", Base64Error::InvalidByte { offset: 4, byte: b'!' }),
            (b"Zm9v\0", Base64Error::InvalidByte { offset: 4, byte: 0 }),
            (b"Zg==Zg==", Base64Error::MisplacedPadding { offset: 2 }),
            (b"Z===", Base64Error::MisplacedPadding { offset: 1 }),
            (b"Zm9vY", Base64Error::Truncated { symbols: 5 }),
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
