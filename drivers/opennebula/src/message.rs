//! Driver messages: the base64-encoded XML document OpenNebula writes on a
//! driver's stdin.

use std::fmt;
use std::io::Read;

use crate::attr::DocError;
use crate::base64::{self, Base64Error};
use crate::ipam::IpamRequest;
use crate::vm::Vm;
use crate::xml::{self, Element, XmlError};

/// Largest message accepted on stdin, in bytes of base64. A VM document with
/// dozens of NICs and a large CONTEXT stays well below 1 MiB.
pub const MAX_MESSAGE: usize = 16 << 20;

/// Why a driver message could not be read.
#[derive(Debug)]
pub enum MessageError {
    Io(std::io::Error),
    Empty,
    TooLarge,
    Base64(Base64Error),
    Xml(XmlError),
    Document(DocError),
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "cannot read the driver message from stdin: {e}"),
            Self::Empty => write!(
                f,
                "no driver message on stdin: OpenNebula sends the base64-encoded XML document there \
                 (to run by hand: base64 -w0 doc.xml | <action> ...)"
            ),
            Self::TooLarge => write!(
                f,
                "the driver message on stdin is larger than {} MiB",
                MAX_MESSAGE >> 20
            ),
            Self::Base64(e) => write!(f, "the driver message on stdin is not valid base64: {e}"),
            Self::Xml(e) => write!(f, "the driver message is not a valid OpenNebula XML document: {e}"),
            Self::Document(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for MessageError {}

impl From<DocError> for MessageError {
    fn from(e: DocError) -> Self {
        Self::Document(e)
    }
}

/// Reads all of stdin (bounded), decodes base64 and parses the XML.
pub fn read_document(stdin: &mut dyn Read) -> Result<Element, MessageError> {
    let mut raw = Vec::new();
    stdin
        .take(MAX_MESSAGE as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(MessageError::Io)?;
    if raw.len() > MAX_MESSAGE {
        return Err(MessageError::TooLarge);
    }
    decode_document(&raw)
}

/// Decodes a message already read.
pub fn decode_document(raw: &[u8]) -> Result<Element, MessageError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(MessageError::Empty);
    }
    let document = base64::decode(raw).map_err(MessageError::Base64)?;
    xml::parse(&document).map_err(MessageError::Xml)
}

/// Reads an IPAM request from stdin.
pub fn read_ipam_request(stdin: &mut dyn Read) -> Result<IpamRequest, MessageError> {
    Ok(IpamRequest::from_element(&read_document(stdin)?)?)
}

/// Reads a VM document from stdin.
pub fn read_vm(stdin: &mut dyn Read) -> Result<Vm, MessageError> {
    Ok(Vm::from_element(&read_document(stdin)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_wrapped_message() {
        let doc = "<VM><ID>3</ID></VM>";
        let mut encoded = base64::encode(doc.as_bytes());
        encoded.insert(8, '\n');
        encoded.push('\n');
        let vm = read_vm(&mut encoded.as_bytes()).unwrap();
        assert_eq!(vm.id, 3);
    }

    #[test]
    fn each_failure_says_what_is_wrong() {
        let big = vec![b'A'; MAX_MESSAGE + 4];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "no driver message on stdin"),
            (b" \n".to_vec(), "no driver message on stdin"),
            (
                b"<VM><ID>1</ID></VM>".to_vec(),
                "not valid base64: unexpected character '<' at offset 0",
            ),
            (
                base64::encode(b"<VM><ID>1</VM>").into_bytes(),
                "not a valid OpenNebula XML document",
            ),
            (base64::encode(b"\xff\xfe").into_bytes(), "not valid UTF-8"),
            (big, "larger than 16 MiB"),
        ];
        for (input, expected) in cases {
            let err = read_document(&mut input.as_slice()).unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} should contain {expected:?}");
        }
    }
}
