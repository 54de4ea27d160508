//! The small part of YAML we read: the Scaleway CLI's `config.yaml` ([`parse`]),
//! and provision descriptions ([`parse_tree`]: nested maps of scalars). For the
//! config file:
//! `key: value` scalars at the top level, and `profiles:` holding one map of
//! scalars per profile. Anything else is refused with the line number, so a
//! file we do not understand is never half-read.

use std::collections::BTreeMap;

/// A parsed config file: root scalars, and named maps (`profiles`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Document {
    pub root: BTreeMap<String, String>,
    pub maps: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn strip_comment(line: &str) -> &str {
    // A '#' starts a comment at the start of a line or after a space, outside quotes.
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev == ' ' => return &line[..i],
            None => {}
        }
        prev = c;
    }
    line
}

fn scalar(raw: &str, line: usize) -> Result<String, String> {
    let raw = raw.trim();
    if let Some(inner) = raw.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or(format!("line {line}: unterminated \"quoted\" value"))?;
        if inner.contains('\\') {
            return Err(format!("line {line}: escapes in \"quoted\" values are not supported"));
        }
        return Ok(inner.to_owned());
    }
    if let Some(inner) = raw.strip_prefix('\'') {
        let inner = inner
            .strip_suffix('\'')
            .ok_or(format!("line {line}: unterminated 'quoted' value"))?;
        return Ok(inner.replace("''", "'"));
    }
    if raw.starts_with(['[', '{', '&', '*', '!', '|', '>', '-']) {
        return Err(format!("line {line}: only plain values are supported here"));
    }
    Ok(raw.to_owned())
}

fn key_value(text: &str, line: usize) -> Result<(String, Option<String>), String> {
    let (key, value) = text
        .split_once(':')
        .ok_or(format!("line {line}: expected `key: value`"))?;
    let key = key.trim();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(format!("line {line}: unexpected key"));
    }
    let value = value.trim();
    Ok((
        key.to_owned(),
        if value.is_empty() {
            None
        } else {
            Some(scalar(value, line)?)
        },
    ))
}

/// Parses the config file's text.
pub fn parse(text: &str) -> Result<Document, String> {
    let mut doc = Document::default();
    // (map name, entry name) currently open
    let mut open_map: Option<String> = None;
    let mut open_entry: Option<String> = None;
    let mut entry_indent = 0;
    let mut field_indent = 0;
    for (i, raw_line) in text.lines().enumerate() {
        let n = i + 1;
        if raw_line.contains('\t') {
            return Err(format!("line {n}: tabs are not allowed in YAML indentation"));
        }
        let line = strip_comment(raw_line).trim_end();
        if line.trim().is_empty() || line.trim() == "---" {
            continue;
        }
        let indent = indent_of(line);
        let (key, value) = key_value(line.trim_start(), n)?;
        if indent == 0 {
            open_entry = None;
            match value {
                Some(v) => {
                    open_map = None;
                    doc.root.insert(key, v);
                }
                None => {
                    doc.maps.entry(key.clone()).or_default();
                    open_map = Some(key);
                    entry_indent = 0;
                }
            }
            continue;
        }
        let Some(map) = &open_map else {
            return Err(format!("line {n}: unexpected indentation"));
        };
        if open_entry.is_none() || indent <= entry_indent {
            if entry_indent != 0 && indent != entry_indent {
                return Err(format!("line {n}: inconsistent indentation"));
            }
            if value.is_some() {
                return Err(format!("line {n}: `{key}` under `{map}` must be a map of settings"));
            }
            entry_indent = indent;
            field_indent = 0;
            doc.maps.entry(map.clone()).or_default().entry(key.clone()).or_default();
            open_entry = Some(key);
            continue;
        }
        if field_indent != 0 && indent != field_indent {
            return Err(format!("line {n}: inconsistent indentation"));
        }
        field_indent = indent;
        let value = value.ok_or(format!("line {n}: nested maps are not supported below `{map}`"))?;
        let entry = open_entry.clone().unwrap_or_default();
        doc.maps
            .entry(map.clone())
            .or_default()
            .entry(entry)
            .or_default()
            .insert(key, value);
    }
    Ok(doc)
}

/// A YAML node of the subset we read: a scalar or a map (keys in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Scalar(String),
    Map(Vec<(String, Node)>),
}

impl Node {
    /// The child of a map, by key.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            Node::Scalar(_) => None,
        }
    }

    /// The scalar's text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Scalar(s) => Some(s),
            Node::Map(_) => None,
        }
    }
}

/// Parses nested maps of scalars (`key: value`, `key:` followed by an
/// indented map), with comments and quoted values. Lists, anchors, tags and
/// multi-line values are refused with the line number.
pub fn parse_tree(text: &str) -> Result<Node, String> {
    // (indent, key, value or None for a map, line)
    let mut lines = Vec::new();
    for (i, raw_line) in text.lines().enumerate() {
        let n = i + 1;
        if raw_line.contains('\t') {
            return Err(format!("line {n}: tabs are not allowed in YAML indentation"));
        }
        let line = strip_comment(raw_line).trim_end();
        if line.trim().is_empty() || line.trim() == "---" {
            continue;
        }
        if line.trim_start().starts_with("- ") || line.trim() == "-" {
            return Err(format!("line {n}: lists are not supported here"));
        }
        let (key, value) = key_value(line.trim_start(), n)?;
        lines.push((indent_of(line), key, value, n));
    }
    let mut pos = 0;
    let root = parse_map(&lines, &mut pos, 0)?;
    if let Some((_, _, _, n)) = lines.get(pos) {
        return Err(format!("line {n}: unexpected indentation"));
    }
    Ok(root)
}

type Line = (usize, String, Option<String>, usize);

fn parse_map(lines: &[Line], pos: &mut usize, indent: usize) -> Result<Node, String> {
    let mut entries: Vec<(String, Node)> = Vec::new();
    while let Some((line_indent, key, value, n)) = lines.get(*pos) {
        if *line_indent < indent {
            break;
        }
        if *line_indent > indent {
            return Err(format!("line {n}: unexpected indentation"));
        }
        if entries.iter().any(|(k, _)| k == key) {
            return Err(format!("line {n}: `{key}` is given twice"));
        }
        *pos += 1;
        let node = match value {
            Some(v) => Node::Scalar(v.clone()),
            None => match lines.get(*pos) {
                Some((child_indent, ..)) if *child_indent > indent => parse_map(lines, pos, *child_indent)?,
                _ => Node::Map(Vec::new()),
            },
        };
        entries.push((key.clone(), node));
    }
    Ok(Node::Map(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_scw_cli_format() {
        let text = "# scw config\naccess_key: SCWXXXXXXXXXXXXXXXXX\nsecret_key: \"11111111-2222-4333-8444-555555555555\"\n\
                    default_zone: fr-par-1 # comment\nactive_profile: edge\nprofiles:\n  edge:\n    default_zone: 'nl-ams-1'\n    \
                    default_project_id: 22222222-2222-4333-8444-555555555555\n  other:\n    default_region: pl-waw\n";
        let doc = parse(text).unwrap();
        assert_eq!(doc.root["secret_key"], "11111111-2222-4333-8444-555555555555");
        assert_eq!(doc.root["default_zone"], "fr-par-1");
        assert_eq!(doc.root["active_profile"], "edge");
        assert_eq!(doc.maps["profiles"]["edge"]["default_zone"], "nl-ams-1");
        assert_eq!(doc.maps["profiles"]["other"]["default_region"], "pl-waw");
    }

    #[test]
    fn trees_of_maps() {
        let text = "name: edge # the cluster\ninputs:\n  hosts: 2\n  os: 'Ubuntu 24.04'\nconnection:\n  zone: fr-par-1\n  nested:\n    deep: yes\nempty:\n";
        let t = parse_tree(text).unwrap();
        assert_eq!(t.get("name").and_then(Node::as_str), Some("edge"));
        assert_eq!(
            t.get("inputs").and_then(|i| i.get("os")).and_then(Node::as_str),
            Some("Ubuntu 24.04")
        );
        assert_eq!(
            t.get("connection")
                .and_then(|c| c.get("nested"))
                .and_then(|n| n.get("deep"))
                .and_then(Node::as_str),
            Some("yes")
        );
        assert_eq!(t.get("empty"), Some(&Node::Map(Vec::new())));
        for (bad, expected) in [
            ("a:\n  - x\n", "line 2: lists are not supported"),
            ("a: 1\na: 2\n", "line 2: `a` is given twice"),
            ("a:\n    b: 1\n  c: 2\n", "line 3: unexpected indentation"),
            ("  a: 1\nb: 2\n", "line 1: unexpected indentation"),
        ] {
            let err = parse_tree(bad).unwrap_err();
            assert!(err.contains(expected), "{bad:?}: {err}");
        }
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        for (text, expected) in [
            ("a: [1, 2]", "line 1: only plain values"),
            ("a: b\n  c: d", "line 2: unexpected indentation"),
            ("profiles:\n  p: x", "must be a map"),
            ("profiles:\n  p:\n    q:\n      r: s", "nested maps"),
            ("just text", "expected `key: value`"),
            ("a: \"open", "unterminated"),
            ("\ta: b", "tabs"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }
}
