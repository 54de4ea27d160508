//! A small, bounded XML tree for OpenNebula documents.
//!
//! OpenNebula documents are plain element trees: every value is the text
//! (often CDATA) of a leaf element, XML attributes are not used, and there is
//! never a document type declaration. This parser keeps exactly that and
//! refuses the rest, so hostile input cannot expand entities or exhaust memory:
//!
//! - `<!DOCTYPE ...>` is refused (no internal subset, no entity expansion);
//! - only the five predefined entities and character references are resolved;
//! - characters that XML 1.0 forbids (most control characters) are refused,
//!   whether written raw or as character references;
//! - depth, element count and text size are bounded;
//! - an element may hold text or child elements, not both (mixed content).

use std::fmt;

use quick_xml::events::Event;
use quick_xml::reader::Reader;

/// Deepest nesting accepted. OpenNebula's deepest documents (a VM with
/// `USER_TEMPLATE` vectors) are 4 levels deep.
pub const MAX_DEPTH: usize = 32;
/// Most elements accepted in one document.
pub const MAX_ELEMENTS: usize = 200_000;
/// Largest text of one element, in bytes.
pub const MAX_TEXT: usize = 1 << 20;

/// The bounds a document must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub depth: usize,
    pub elements: usize,
    pub text: usize,
}

impl Limits {
    /// For driver messages.
    pub const DEFAULT: Limits = Limits {
        depth: MAX_DEPTH,
        elements: MAX_ELEMENTS,
        text: MAX_TEXT,
    };
}

/// One element: its name, its text, its children.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// A leaf element with text.
    pub fn leaf(name: &str, text: &str) -> Self {
        Self {
            name: name.to_owned(),
            text: text.to_owned(),
            children: Vec::new(),
        }
    }

    /// The first child with this name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child with this name, in document order.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The element at a `/`-separated path of first children (`"TEMPLATE/CONTEXT"`).
    pub fn at(&self, path: &str) -> Option<&Element> {
        path.split('/').try_fold(self, |e, name| e.child(name))
    }

    /// Whether the element has no children (a simple attribute).
    pub fn is_leaf(&self) -> bool {
        self.children.is_empty()
    }

    /// Writes the element as compact XML (text escaped; no declaration).
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        self.write_xml(&mut out);
        out
    }

    fn write_xml(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.name);
        out.push('>');
        if self.children.is_empty() {
            out.push_str(&escape(&self.text));
        }
        for child in &self.children {
            child.write_xml(out);
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }
}

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError {
    /// Byte offset in the document where the problem was found.
    pub offset: u64,
    /// Path of the element being read (`VM/TEMPLATE/NIC`), empty at top level.
    pub path: String,
    pub reason: String,
}

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{} (at byte {})", self.reason, self.offset)
        } else {
            write!(f, "{} in <{}> (at byte {})", self.reason, self.path, self.offset)
        }
    }
}

impl std::error::Error for XmlError {}

/// Whether XML 1.0 allows this character in a document.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{a}' | '\u{d}' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

fn check_chars(text: &str) -> Result<(), String> {
    match text.chars().find(|&c| !is_xml_char(c)) {
        Some(c) => Err(format!("character U+{:04X} is not allowed in XML", u32::from(c))),
        None => Ok(()),
    }
}

struct Builder {
    limits: Limits,
    /// Open elements; the last one is the innermost.
    stack: Vec<Element>,
    root: Option<Element>,
    elements: usize,
}

impl Builder {
    fn path(&self) -> String {
        self.stack.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join("/")
    }

    fn open(&mut self, name: String) -> Result<(), String> {
        if self.root.is_some() {
            return Err(format!("a second root element <{name}> after the document ended"));
        }
        if self.stack.len() >= self.limits.depth {
            return Err(format!("elements nested deeper than {} levels", self.limits.depth));
        }
        self.elements += 1;
        if self.elements > self.limits.elements {
            return Err(format!("more than {} elements", self.limits.elements));
        }
        if let Some(parent) = self.stack.last()
            && !parent.text.trim().is_empty()
        {
            return Err(format!("element <{name}> mixed with text"));
        }
        self.stack.push(Element {
            name,
            ..Element::default()
        });
        Ok(())
    }

    fn close(&mut self) -> Result<(), String> {
        let Some(mut done) = self.stack.pop() else {
            return Err("a closing tag without an opening one".to_owned());
        };
        if !done.children.is_empty() {
            // Whitespace between child elements is layout, not content.
            done.text.clear();
        }
        match self.stack.last_mut() {
            Some(parent) => parent.children.push(done),
            None => self.root = Some(done),
        }
        Ok(())
    }

    fn text(&mut self, text: &str, cdata: bool) -> Result<(), String> {
        check_chars(text)?;
        let Some(current) = self.stack.last_mut() else {
            if text.trim().is_empty() {
                return Ok(());
            }
            return Err("text outside the root element".to_owned());
        };
        if !current.children.is_empty() && (cdata || !text.trim().is_empty()) {
            return Err("text mixed with elements".to_owned());
        }
        if current.text.len() + text.len() > self.limits.text {
            return Err(format!("a value longer than {} bytes", self.limits.text));
        }
        current.text.push_str(text);
        Ok(())
    }
}

fn element_name(local: &str) -> Result<String, String> {
    // Namespaces play no part in OpenNebula documents: the local name is kept.
    Ok(local.to_owned())
}

/// Parses a complete document into its root element.
pub fn parse(document: &[u8]) -> Result<Element, XmlError> {
    parse_with(document, Limits::DEFAULT)
}

/// Parses a complete document within the given bounds.
pub fn parse_with(document: &[u8], limits: Limits) -> Result<Element, XmlError> {
    let text = std::str::from_utf8(document).map_err(|e| XmlError {
        offset: e.valid_up_to() as u64,
        path: String::new(),
        reason: "the document is not valid UTF-8".to_owned(),
    })?;
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut builder = Builder {
        limits,
        stack: Vec::new(),
        root: None,
        elements: 0,
    };
    loop {
        let event = reader.read_event().map_err(|e| XmlError {
            offset: reader.error_position(),
            path: builder.path(),
            reason: format!("malformed XML: {e}"),
        })?;
        let step = match event {
            Event::Start(start) => element_name(start.local_name().as_ref()).and_then(|n| builder.open(n)),
            Event::Empty(start) => element_name(start.local_name().as_ref())
                .and_then(|n| builder.open(n))
                .and_then(|()| builder.close()),
            Event::End(_) => builder.close(),
            Event::Text(t) => builder.text(&t.xml10_content(), false),
            Event::CData(t) => builder.text(&t.xml10_content(), true),
            Event::GeneralRef(r) => resolve_reference(&r).and_then(|c| builder.text(c.encode_utf8(&mut [0; 4]), false)),
            Event::DocType(_) => Err(
                "a document type declaration (<!DOCTYPE>), which OpenNebula never sends; \
                 refused to rule out entity expansion"
                    .to_owned(),
            ),
            Event::PI(_) => Err("a processing instruction, which OpenNebula never sends".to_owned()),
            Event::Decl(_) | Event::Comment(_) => Ok(()),
            Event::Eof => break,
        };
        step.map_err(|reason| XmlError {
            offset: reader.buffer_position(),
            path: builder.path(),
            reason,
        })?;
    }
    if !builder.stack.is_empty() {
        return Err(XmlError {
            offset: reader.buffer_position(),
            path: builder.path(),
            reason: "the document ends before its elements are closed (truncated?)".to_owned(),
        });
    }
    builder.root.ok_or(XmlError {
        offset: 0,
        path: String::new(),
        reason: "the document has no root element".to_owned(),
    })
}

fn resolve_reference(r: &quick_xml::events::BytesRef<'_>) -> Result<char, String> {
    let name: &str = r;
    let c = match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ if r.is_char_ref() => match r.resolve_char_ref() {
            Ok(Some(c)) => c,
            _ => return Err(format!("an invalid character reference &{name};")),
        },
        _ => {
            return Err(format!(
                "an undefined entity &{name}; (only XML's predefined entities are accepted)"
            ));
        }
    };
    if is_xml_char(c) {
        Ok(c)
    } else {
        Err(format!(
            "character reference &{name}; is U+{:04X}, which is not allowed in XML",
            u32::from(c)
        ))
    }
}

/// Escapes text for an XML element body.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_text_cdata_and_nesting() {
        let doc = br#"<?xml version="1.0"?>
<VM>
  <ID>7</ID>
  <TEMPLATE>
    <NIC><IP><![CDATA[10.0.0.1]]></IP><NAME>a &amp; b &#x41;</NAME><EMPTY/></NIC>
  </TEMPLATE>
</VM>"#;
        let vm = parse(doc).unwrap();
        assert_eq!(vm.name, "VM");
        assert_eq!(vm.child("ID").unwrap().text, "7");
        assert_eq!(vm.at("TEMPLATE/NIC/IP").unwrap().text, "10.0.0.1");
        assert_eq!(vm.at("TEMPLATE/NIC/NAME").unwrap().text, "a & b A");
        assert_eq!(vm.at("TEMPLATE/NIC/EMPTY").unwrap().text, "");
        assert_eq!(vm.child("TEMPLATE").unwrap().text, "", "layout whitespace is dropped");
    }

    #[test]
    fn namespaces_are_ignored() {
        let vm = parse(br#"<VM xmlns="http://opennebula.org/XMLSchema"><ID>1</ID></VM>"#).unwrap();
        assert_eq!(vm.child("ID").unwrap().text, "1");
    }

    #[test]
    fn refuses_hostile_and_broken_documents() {
        let deep = "<A>".repeat(MAX_DEPTH + 1) + &"</A>".repeat(MAX_DEPTH + 1);
        let many = format!("<R>{}</R>", "<E/>".repeat(MAX_ELEMENTS + 1));
        let long = format!("<R>{}</R>", "x".repeat(MAX_TEXT + 1));
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "billion laughs",
                br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><VM><ID>&lol2;</ID></VM>"#.to_vec(),
                "document type declaration",
            ),
            ("external entity", br#"<!DOCTYPE x SYSTEM "file:///etc/passwd"><x/>"#.to_vec(), "document type declaration"),
            ("undefined entity", b"<VM><ID>&lol;</ID></VM>".to_vec(), "undefined entity &lol;"),
            ("raw control character", b"<VM><ID>1\x01</ID></VM>".to_vec(), "U+0001"),
            ("control character reference", b"<VM><ID>&#1;</ID></VM>".to_vec(), "U+0001"),
            ("NUL reference", b"<VM><ID>&#0;</ID></VM>".to_vec(), "invalid character reference"),
            ("truncated", b"<VM><ID>1</ID><TEMPLATE>".to_vec(), "ends before"),
            ("mismatched", b"<VM><ID>1</VM>".to_vec(), "malformed XML"),
            ("two roots", b"<VM/><VM/>".to_vec(), "second root"),
            ("no root", b"  ".to_vec(), "no root element"),
            ("text outside", b"hello".to_vec(), "text outside"),
            ("mixed content", b"<VM>1<ID>2</ID></VM>".to_vec(), "mixed"),
            ("mixed content after", b"<VM><ID>2</ID>x</VM>".to_vec(), "mixed"),
            ("processing instruction", b"<?php echo 1 ?><VM/>".to_vec(), "processing instruction"),
            ("not utf-8", b"<VM>\xff</VM>".to_vec(), "UTF-8"),
            ("too deep", deep.into_bytes(), "nested deeper"),
            ("too many", many.into_bytes(), "more than"),
            ("too long", long.into_bytes(), "longer than"),
        ];
        for (name, doc, expected) in cases {
            let err = parse(&doc).expect_err(name).to_string();
            assert!(err.contains(expected), "{name}: {err:?} should mention {expected:?}");
        }
    }

    #[test]
    fn error_names_the_element() {
        let err = parse(b"<VM><TEMPLATE><NIC><IP>1\x02</IP></NIC></TEMPLATE></VM>").unwrap_err();
        assert_eq!(err.path, "VM/TEMPLATE/NIC/IP");
    }

    #[test]
    fn to_xml_round_trips() {
        let doc = br#"<VM><ID>1</ID><T><A><![CDATA[x < y & "z"]]></A><B/></T></VM>"#;
        let tree = parse(doc).unwrap();
        assert_eq!(
            tree.to_xml(),
            "<VM><ID>1</ID><T><A>x &lt; y &amp; &quot;z&quot;</A><B></B></T></VM>"
        );
        assert_eq!(parse(tree.to_xml().as_bytes()).unwrap(), tree);
    }

    #[test]
    fn escape_round_trips() {
        let raw = r#"<a href="x">&'"#;
        let doc = format!("<R>{}</R>", escape(raw));
        assert_eq!(parse(doc.as_bytes()).unwrap().text, raw);
    }
}
