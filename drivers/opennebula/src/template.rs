//! OpenNebula's template syntax, written and parsed.
//!
//! ```text
//! AR = [
//!   TYPE = "IP4",
//!   IP = "172.16.0.2"
//! ]
//! ```
//!
//! The rules follow OpenNebula's own lexer and grammar
//! (`src/parsers/template_parser.l`, `template_syntax.y`):
//!
//! - names are letters, digits and `_`; inside `[ ]` OpenNebula upper-cases
//!   them, so the writer only accepts upper-case names there;
//! - a quoted value may span lines; the only escape is `\"` for `"`, and
//!   every other backslash is literal. So the writer turns `"` into `\"` and
//!   leaves backslashes and newlines as they are;
//! - two values cannot be written at all: one ending in a backslash (it would
//!   escape the closing quote) and one containing `]]>` (OpenNebula refuses
//!   it, as it would end the CDATA section the value is stored in). The
//!   writer refuses them, and control characters other than tab and newline,
//!   which XML cannot store.

use std::fmt;

/// A value: a single string or a vector of named strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Single(String),
    Vector(Vec<(String, String)>),
}

/// A template: attributes in order. Names may repeat (`AR = [..]` twice).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    pub attributes: Vec<(String, Value)>,
}

/// Why a template could not be written or parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TemplateError {}

fn check_name(name: &str, vector_key: bool) -> Result<(), TemplateError> {
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && (!vector_key || !name.chars().any(|c| c.is_ascii_lowercase()));
    if valid {
        Ok(())
    } else if vector_key {
        Err(TemplateError(format!(
            "{} cannot be a vector attribute name (upper-case letters, digits and '_' only)",
            crate::attr::show(name)
        )))
    } else {
        Err(TemplateError(format!(
            "{} cannot be an attribute name (letters, digits and '_' only)",
            crate::attr::show(name)
        )))
    }
}

fn quote(name: &str, value: &str) -> Result<String, TemplateError> {
    let refuse = |why: &str| Err(TemplateError(format!("{name} = {}: {why}", crate::attr::show(value))));
    if value.ends_with('\\') {
        return refuse("a value ending in a backslash cannot be written in OpenNebula template syntax");
    }
    if value.contains("]]>") {
        return refuse("OpenNebula refuses values containing \"]]>\"");
    }
    if let Some(c) = value.chars().find(|&c| c.is_control() && c != '\n' && c != '\t') {
        return refuse(&format!(
            "control character U+{:04X} cannot be stored by OpenNebula",
            u32::from(c)
        ));
    }
    Ok(format!("\"{}\"", value.replace('"', "\\\"")))
}

impl Template {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `NAME = "value"`.
    pub fn single(&mut self, name: &str, value: &str) -> &mut Self {
        self.attributes.push((name.to_owned(), Value::Single(value.to_owned())));
        self
    }

    /// Appends `NAME = [ KEY = "value", ... ]`.
    pub fn vector<K: Into<String>, V: Into<String>>(
        &mut self,
        name: &str,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> &mut Self {
        let pairs = pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        self.attributes.push((name.to_owned(), Value::Vector(pairs)));
        self
    }

    /// Writes the template; fails, writing nothing, if any name or value
    /// cannot be represented.
    pub fn render(&self) -> Result<String, TemplateError> {
        let mut out = String::new();
        for (name, value) in &self.attributes {
            check_name(name, false)?;
            match value {
                Value::Single(v) => {
                    out.push_str(&format!("{name} = {}\n", quote(name, v)?));
                }
                Value::Vector(pairs) => {
                    out.push_str(&format!("{name} = [\n"));
                    for (i, (key, v)) in pairs.iter().enumerate() {
                        check_name(key, true)?;
                        let sep = if i + 1 < pairs.len() { "," } else { "" };
                        out.push_str(&format!("  {key} = {}{sep}\n", quote(&format!("{name}/{key}"), v)?));
                    }
                    out.push_str("]\n");
                }
            }
        }
        Ok(out)
    }

    /// The first vector attribute with this name.
    pub fn vector_named(&self, name: &str) -> Option<&[(String, String)]> {
        self.attributes.iter().find_map(|(n, v)| match v {
            Value::Vector(pairs) if n == name => Some(pairs.as_slice()),
            _ => None,
        })
    }

    /// Parses template text as OpenNebula does.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        Parser {
            chars: text.chars().collect(),
            pos: 0,
            line: 1,
        }
        .template()
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    line: usize,
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn error<T>(&self, what: &str) -> Result<T, TemplateError> {
        Err(TemplateError(format!(
            "template syntax error at line {}: {what}",
            self.line
        )))
    }

    /// Skips blanks, newlines and `#` comments.
    fn skip_layout(&mut self) {
        while let Some(c) = self.peek() {
            if c == '#' {
                while let Some(c) = self.bump() {
                    if c == '\n' {
                        break;
                    }
                }
            } else if is_blank(c) || c == '\n' || c == '\r' {
                self.bump();
            } else {
                break;
            }
        }
    }

    fn skip_blanks(&mut self) {
        while self.peek().is_some_and(is_blank) {
            self.bump();
        }
    }

    fn name(&mut self) -> Result<String, TemplateError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            self.bump();
        }
        if start == self.pos {
            return self.error("expected an attribute name");
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    fn expect(&mut self, want: char) -> Result<(), TemplateError> {
        if self.bump() == Some(want) {
            Ok(())
        } else {
            self.error(&format!("expected '{want}'"))
        }
    }

    /// A value: `"quoted"` (may span lines) or a bare word.
    fn value(&mut self) -> Result<String, TemplateError> {
        if self.peek() == Some('"') {
            self.bump();
            let mut raw = String::new();
            loop {
                match self.bump() {
                    None => return self.error("unterminated quoted value"),
                    Some('\\') if self.peek() == Some('"') => {
                        self.bump();
                        raw.push_str("\\\"");
                    }
                    Some('"') => break,
                    Some(c) => raw.push(c),
                }
            }
            if raw.contains("]]>") {
                return self.error("a value contains \"]]>\"");
            }
            Ok(raw.replace("\\\"", "\""))
        } else {
            let start = self.pos;
            while self.peek().is_some_and(|c| !(is_blank(c) || "=#\n,[]".contains(c))) {
                self.bump();
            }
            Ok(self.chars[start..self.pos].iter().collect())
        }
    }

    fn template(mut self) -> Result<Template, TemplateError> {
        let mut t = Template::new();
        loop {
            self.skip_layout();
            if self.peek().is_none() {
                return Ok(t);
            }
            let name = self.name()?;
            self.skip_blanks();
            self.expect('=')?;
            self.skip_blanks();
            if self.peek() == Some('[') {
                self.bump();
                let mut pairs = Vec::new();
                self.skip_layout();
                if self.peek() != Some(']') {
                    loop {
                        self.skip_layout();
                        let key = self.name()?.to_ascii_uppercase();
                        self.skip_blanks();
                        self.expect('=')?;
                        self.skip_blanks();
                        let value = self.value()?;
                        pairs.push((key, value));
                        self.skip_layout();
                        match self.bump() {
                            Some(',') => continue,
                            Some(']') => break,
                            _ => return self.error("expected ',' or ']'"),
                        }
                    }
                } else {
                    self.bump();
                }
                t.attributes.push((name, Value::Vector(pairs)));
            } else {
                let value = self.value()?;
                t.attributes.push((name, Value::Single(value)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_vector_attributes() {
        let mut t = Template::new();
        t.vector("AR", [("TYPE", "IP4"), ("IP", "172.16.0.2"), ("SIZE", "1")]);
        assert_eq!(
            t.render().unwrap(),
            "AR = [\n  TYPE = \"IP4\",\n  IP = \"172.16.0.2\",\n  SIZE = \"1\"\n]\n"
        );
    }

    #[test]
    fn escaping_round_trips() {
        let values = [
            "",
            "plain",
            "with \"quotes\"",
            "back\\slash",
            "back\\\"slash-quote",
            "multi\nline\nvalue",
            "tab\there",
            "comma, bracket ] [ = # hash",
            "unicode: é ✓",
            "\"",
            "\\\"",
            "\"\"\"",
            "a\\\\b",
        ];
        for v in values {
            let mut t = Template::new();
            t.vector("AR", [("V", v), ("NEXT", "x")]).single("S", v);
            let text = t.render().unwrap();
            let back = Template::parse(&text).unwrap();
            assert_eq!(back, t, "value {v:?} rendered as {text:?}");
        }
    }

    #[test]
    fn refuses_unrepresentable_values() {
        let cases = [
            ("ends\\", "ending in a backslash"),
            ("a]]>b", "]]>"),
            ("bell\u{7}", "U+0007"),
            ("nul\0", "U+0000"),
            ("cr\r", "U+000D"),
        ];
        for (v, expected) in cases {
            let err = Template {
                attributes: vec![("A".into(), Value::Single(v.into()))],
            }
            .render()
            .unwrap_err();
            assert!(err.0.contains(expected), "{v:?}: {err}");
        }
        let mut bad_key = Template::new();
        bad_key.vector("AR", [("lower", "x")]);
        assert!(bad_key.render().is_err());
        let mut bad_name = Template::new();
        bad_name.single("A B", "x");
        assert!(bad_name.render().is_err());
    }

    #[test]
    fn parses_opennebula_forms() {
        let text = "# comment\nNAME = bare\nAR=[type=\"IP4\" ,\n size = 1,IP=\"10.0.0.1\"]\nEMPTY = [ ]\nQ = \"a \\\"b\\\"\"\n";
        let t = Template::parse(text).unwrap();
        assert_eq!(t.attributes[0], ("NAME".into(), Value::Single("bare".into())));
        assert_eq!(
            t.vector_named("AR").unwrap(),
            &[
                ("TYPE".into(), "IP4".into()),
                ("SIZE".into(), "1".into()),
                ("IP".into(), "10.0.0.1".into())
            ]
        );
        assert_eq!(t.vector_named("EMPTY").unwrap(), &[]);
        assert_eq!(t.attributes[3].1, Value::Single("a \"b\"".into()));
    }

    #[test]
    fn parse_errors_give_the_line() {
        let cases = [
            ("A = [ B = \"x\"", "line 1"),
            ("\nA = \"open", "unterminated"),
            ("= x", "expected an attribute name"),
            ("A x", "expected '='"),
            ("A = [ B = \"]]>\" ]", "]]>"),
        ];
        for (text, expected) in cases {
            let err = Template::parse(text).unwrap_err();
            assert!(err.0.contains(expected), "{text:?}: {err}");
        }
    }
}
