//! The one way YAML is read: the Scaleway CLI's `config.yaml`
//! ([`crate::config`]) and the provision tool's descriptions and providers,
//! each into typed structs that refuse keys they do not know.
//!
//! The parser is `serde-saphyr` (full YAML 1.2: block and flow style,
//! comments, anchors, aliases and merge keys, block scalars), with its
//! default budgets against alias bombs, and duplicate keys refused. Errors
//! carry the line and column; [`YamlError::redacted`] is the form for files
//! holding secrets, where neither a snippet of the file nor any long token
//! of the message is shown.

use std::fmt;

use serde::de::DeserializeOwned;

pub use serde_saphyr::Spanned;

/// A YAML document that did not read as the expected structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// 1-based; 0 when the parser knows no position.
    pub line: u64,
    pub column: u64,
    /// The parser's message, without position or snippet.
    pub message: String,
    /// The message with a few lines of the document around the position.
    pub snippet: String,
}

impl YamlError {
    /// `line L column C: message`, with every run of 20 or more letters,
    /// digits and dashes (a key or a UUID, as Scaleway's secrets are)
    /// replaced by `<hidden>`: safe to show for a file holding secrets.
    pub fn redacted(&self) -> String {
        let mut out = String::new();
        let mut run = String::new();
        let flush = |run: &mut String, out: &mut String| {
            if run.len() >= 20 {
                out.push_str("<hidden>");
            } else {
                out.push_str(run);
            }
            run.clear();
        };
        for c in self.message.chars() {
            if c.is_ascii_alphanumeric() || c == '-' {
                run.push(c);
            } else {
                flush(&mut run, &mut out);
                out.push(c);
            }
        }
        flush(&mut run, &mut out);
        format!("{}{out}", self.position())
    }

    fn position(&self) -> String {
        if self.line == 0 {
            String::new()
        } else {
            format!("line {} column {}: ", self.line, self.column)
        }
    }
}

impl fmt::Display for YamlError {
    /// `line L column C: message` (one line).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.position(), self.message)
    }
}

impl std::error::Error for YamlError {}

/// Reads one YAML document as `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let plain = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
        let mut message = e.render_with_options(plain);
        // The plain rendering ends with its own " at line L, column C".
        for suffix in [
            format!(" at line {line}, column {column}"),
            format!(" at line {line} column {column}"),
        ] {
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message = stripped.to_owned();
            }
        }
        if let Some(rest) = message.strip_prefix(&format!("error: line {line} column {column}: ")) {
            message = rest.to_owned();
        }
        YamlError {
            line,
            column,
            message: message.trim().to_owned(),
            snippet: e.to_string(),
        }
    })
}

/// Where a value was written: `line L: ` (empty when unknown).
pub fn at<T>(value: &Spanned<T>) -> String {
    match value.referenced.line() {
        0 => String::new(),
        n => format!("line {n}: "),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        name: String,
        #[serde(default)]
        items: Vec<String>,
        #[serde(default)]
        inputs: BTreeMap<String, u32>,
        note: Option<String>,
        size: Option<Spanned<u32>>,
    }

    #[test]
    fn full_yaml_lists_flow_anchors_merge_keys_block_scalars() {
        let text = "# a comment\nname: &n edge # trailing comment\nitems: [a, b]\ninputs: &base\n  hosts: 2\n\
                    note: |\n  two\n  lines\nsize: 3\n";
        let d: Doc = from_str(text).unwrap();
        assert_eq!(d.name, "edge");
        assert_eq!(d.items, ["a", "b"]);
        assert_eq!(d.inputs["hosts"], 2);
        assert_eq!(d.note.as_deref(), Some("two\nlines\n"));
        assert_eq!(d.size.as_ref().map(|s| s.value), Some(3));
        assert_eq!(d.size.as_ref().map(at).as_deref(), Some("line 9: "));
        let merged: BTreeMap<String, BTreeMap<String, u32>> =
            from_str("a: &a {x: 1, y: 2}\nb:\n  <<: *a\n  y: 3\n").unwrap();
        assert_eq!(merged["b"], BTreeMap::from([("x".into(), 1), ("y".into(), 3)]));
        let listed: BTreeMap<String, Vec<String>> = from_str("l:\n  - a\n  - b\n").unwrap();
        assert_eq!(listed["l"], ["a", "b"]);
    }

    #[test]
    fn errors_have_line_and_column_and_no_snippet() {
        for (text, line, column, expected) in [
            ("name: a\ncolour: x\n", 2, 1, "unknown field `colour`"),
            ("name: a\nname: b\n", 2, 1, "duplicate mapping key"),
            ("name: a\nsize: three\n", 2, 7, "u32"),
            ("name: [a\n", 1, 7, ""),
            ("name: a\n---\nname: b\n", 3, 1, "multiple YAML documents"),
        ] {
            let e = from_str::<Doc>(text).unwrap_err();
            assert_eq!((e.line, e.column), (line, column), "{text:?}: {e:?}");
            assert!(e.message.contains(expected), "{text:?}: {e:?}");
            assert!(!e.message.contains('\n') && !e.message.contains("-->"), "{e:?}");
            assert!(
                e.to_string().starts_with(&format!("line {line} column {column}: ")),
                "{e}"
            );
        }
        let bomb = "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n\
                    c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n\
                    e: &e [*d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e]\n\
                    g: [*f, *f, *f, *f, *f, *f, *f, *f]\n";
        assert!(from_str::<BTreeMap<String, serde::de::IgnoredAny>>(bomb).is_err());
    }

    #[test]
    fn redaction_hides_long_tokens() {
        let e = from_str::<Doc>("name: a\n11111111-2222-4333-8444-555555555555: x\n").unwrap_err();
        assert!(e.message.contains("11111111-2222"), "{e:?}");
        let shown = e.redacted();
        assert!(
            shown.starts_with("line 2 column 1: unknown field `<hidden>`"),
            "{shown}"
        );
        assert!(!shown.contains("1111"), "{shown}");
    }
}
