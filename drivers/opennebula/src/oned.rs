//! The few calls we make to oned's XML-RPC API.
//!
//! Endpoint from `ONE_XMLRPC` (default `http://localhost:2633/RPC2`);
//! session from the file named by `ONE_AUTH` (default `~/.one/one_auth`,
//! `user:password` on its first line), as OpenNebula's own tools do. The
//! session is a secret: it never appears in logs or errors.
//!
//! oned answers every call with an array `[success, body or error message,
//! error code, ...]`; the body of `*.info` calls is the object's XML.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::driver::Env;
use crate::xml::{self, Element, Limits};

/// Bounds for oned's answers (pools can be large).
const LIMITS: Limits = Limits {
    depth: 64,
    elements: 5_000_000,
    text: 256 << 20,
};

/// Why a call to oned failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnedError(pub String);

impl fmt::Display for OnedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OnedError {}

/// An XML-RPC parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Str(String),
    Int(i64),
    Bool(bool),
}

/// A client for oned.
#[derive(Clone)]
pub struct Oned {
    url: String,
    session: String,
    http: reqwest::blocking::Client,
}

impl fmt::Debug for Oned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Oned")
            .field("url", &self.url)
            .field("session", &"<redacted>")
            .finish()
    }
}

impl Oned {
    /// The endpoint and session OpenNebula's tools would use.
    pub fn from_env(env: &Env) -> Result<Self, OnedError> {
        let url = env.get("ONE_XMLRPC").unwrap_or("http://localhost:2633/RPC2").to_owned();
        let auth = match env.get("ONE_AUTH") {
            Some(path) => PathBuf::from(path),
            None => PathBuf::from(env.get("HOME").unwrap_or("/var/lib/one")).join(".one/one_auth"),
        };
        let text = std::fs::read_to_string(&auth).map_err(|e| {
            OnedError(format!(
                "cannot read the OpenNebula session file {} ({e}); set ONE_AUTH",
                auth.display()
            ))
        })?;
        let session = text.lines().next().unwrap_or("").trim().to_owned();
        if !session.contains(':') {
            return Err(OnedError(format!(
                "{} does not hold a user:password line",
                auth.display()
            )));
        }
        Self::new(&url, session)
    }

    pub fn new(url: &str, session: String) -> Result<Self, OnedError> {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| OnedError(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Self {
            url: url.to_owned(),
            session,
            http,
        })
    }

    /// Calls `method(session, params...)` and returns the body of a
    /// successful answer.
    pub fn call(&self, method: &str, params: &[Param]) -> Result<String, OnedError> {
        let mut body = format!(
            "<?xml version=\"1.0\"?><methodCall><methodName>{}</methodName><params>\
             <param><value><string>{}</string></value></param>",
            xml::escape(method),
            xml::escape(&self.session)
        );
        for p in params {
            body.push_str("<param><value>");
            match p {
                Param::Str(s) => body.push_str(&format!("<string>{}</string>", xml::escape(s))),
                Param::Int(i) => body.push_str(&format!("<i4>{i}</i4>")),
                Param::Bool(b) => body.push_str(&format!("<boolean>{}</boolean>", u8::from(*b))),
            }
            body.push_str("</value></param>");
        }
        body.push_str("</params></methodCall>");
        let fail = |what: String| OnedError(format!("oned {method} at {}: {what}", self.url));
        let response = self
            .http
            .post(&self.url)
            .header("Content-Type", "text/xml")
            .body(body)
            .send()
            .map_err(|e| fail(format!("no answer ({e}); is oned running? (ONE_XMLRPC)")))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .map_err(|e| fail(format!("cannot read the answer: {e}")))?;
        if !status.is_success() {
            return Err(fail(format!("HTTP {status}")));
        }
        parse_response(&bytes).map_err(fail)
    }

    /// Calls a method whose answer body is an XML document (`*.info`, `*pool.info`).
    pub fn call_xml(&self, method: &str, params: &[Param]) -> Result<Element, OnedError> {
        parse_body(&self.call(method, params)?)
    }

    /// Calls a method whose answer is an object id (`*.allocate`, `*.add_ar`...).
    pub fn call_id(&self, method: &str, params: &[Param]) -> Result<i64, OnedError> {
        let body = self.call(method, params)?;
        body.trim()
            .parse()
            .map_err(|_| OnedError(format!("oned {method} answered {body:?} where an id was expected")))
    }

    /// `one.document.info`, decrypted: a document (the provisioning tools'
    /// providers and provisions). oned encrypts the attributes named in
    /// `DOCUMENT_ENCRYPTED_ATTR` (stock: `PROVISION_BODY`, where oneprovision
    /// keeps a provider's connection) unless asked to decrypt, which only
    /// the owner and administrators may.
    pub fn document(&self, id: u64) -> Result<Element, OnedError> {
        let body = self.call("one.document.info", &[Param::Int(id as i64), Param::Bool(true)])?;
        parse_body(&body)
    }

    /// `one.documentpool.info`: every document of a type the session can see.
    pub fn documents(&self, doc_type: i64) -> Result<Vec<Element>, OnedError> {
        let body = self.call(
            "one.documentpool.info",
            &[Param::Int(-2), Param::Int(-1), Param::Int(-1), Param::Int(doc_type)],
        )?;
        Ok(parse_body(&body)?
            .children
            .into_iter()
            .filter(|e| e.name == "DOCUMENT")
            .collect())
    }

    /// `one.vn.info`: a virtual network, with its address ranges.
    pub fn vnet(&self, id: u64) -> Result<Element, OnedError> {
        let body = self.call("one.vn.info", &[Param::Int(id as i64), Param::Bool(false)])?;
        parse_body(&body)
    }

    /// The ids of every virtual network the session can see (`one.vnpool.info`).
    pub fn vnet_ids(&self) -> Result<Vec<u64>, OnedError> {
        let body = self.call("one.vnpool.info", &[Param::Int(-2), Param::Int(-1), Param::Int(-1)])?;
        parse_body(&body)?
            .children
            .iter()
            .filter(|v| v.name == "VNET")
            .map(|v| {
                let id = v.child("ID").map_or("", |i| i.text.as_str());
                id.parse()
                    .map_err(|_| OnedError(format!("oned one.vnpool.info: a network with id {id:?}")))
            })
            .collect()
    }

    /// A host by name (`one.hostpool.info`), if there is one.
    pub fn host_by_name(&self, name: &str) -> Result<Option<Element>, OnedError> {
        let body = self.call("one.hostpool.info", &[])?;
        Ok(parse_body(&body)?
            .children
            .into_iter()
            .find(|h| h.name == "HOST" && h.child("NAME").is_some_and(|n| n.text == name)))
    }

    /// `one.vm.info`: a VM, with every history record.
    pub fn vm(&self, id: u64) -> Result<Element, OnedError> {
        let body = self.call("one.vm.info", &[Param::Int(id as i64), Param::Bool(false)])?;
        parse_body(&body)
    }

    /// `one.host.info`: a host.
    pub fn host(&self, id: u64) -> Result<Element, OnedError> {
        let body = self.call("one.host.info", &[Param::Int(id as i64), Param::Bool(false)])?;
        parse_body(&body)
    }
}

/// Document types of OpenNebula's provisioning tools. oneprovision (6.x):
/// provider 102 (its JSON in `TEMPLATE/PROVISION_BODY`), provision 103
/// (`TEMPLATE/BODY`, naming its provider in `provider`). OneForm (7.2+):
/// provider 103 (`TEMPLATE/PROVIDER_BODY`), provision 104
/// (`TEMPLATE/PROVISION_BODY`, with `provider_id`). Both keep the
/// credentials in the provider's `connection`.
pub const ONEPROVISION_PROVIDER: i64 = 102;
pub const ONEPROVISION_PROVISION: i64 = 103;
pub const ONEFORM_PROVIDER: i64 = 103;
pub const ONEFORM_PROVISION: i64 = 104;

/// The JSON a document keeps in `TEMPLATE/<attribute>`.
fn json_body(doc: &Element, attribute: &str) -> Result<serde_json::Value, OnedError> {
    let id = doc.child("ID").map_or("?", |e| e.text.as_str());
    let text = doc
        .at(&format!("TEMPLATE/{attribute}"))
        .map(|e| e.text.as_str())
        .ok_or_else(|| OnedError(format!("document {id} has no TEMPLATE/{attribute}")))?;
    serde_json::from_str(text).map_err(|e| OnedError(format!("document {id}: {attribute} is not JSON ({e})")))
}

fn doc_type(doc: &Element) -> i64 {
    doc.child("TYPE").and_then(|e| e.text.parse().ok()).unwrap_or(-1)
}

impl Oned {
    /// The provider connection (`secret_key`, `project_id`, `zone`, ...) of
    /// a provision made by oneprovision (6.x: provision 103 -> provider 102,
    /// by name or id) or OneForm (7.2+: provision 104 -> provider 103 by
    /// `provider_id`).
    pub fn provider_connection(
        &self,
        provision_id: u64,
    ) -> Result<std::collections::BTreeMap<String, String>, OnedError> {
        let provision = self.document(provision_id)?;
        let (provider_doc, provider_attribute) = match doc_type(&provision) {
            ONEFORM_PROVISION => {
                let body = json_body(&provision, "PROVISION_BODY")?;
                let id = body
                    .get("provider_id")
                    .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
                    .ok_or_else(|| OnedError(format!("OneForm provision {provision_id} has no provider_id")))?;
                let doc = self.document(id)?;
                if doc_type(&doc) != ONEFORM_PROVIDER {
                    return Err(OnedError(format!(
                        "provision {provision_id}'s provider {id} is not a OneForm provider (TYPE {})",
                        doc_type(&doc)
                    )));
                }
                (doc, "PROVIDER_BODY")
            }
            ONEPROVISION_PROVISION => {
                let body = json_body(&provision, "BODY")?;
                let provider = match body.get("provider") {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Number(n)) => n.to_string(),
                    _ => return Err(OnedError(format!("provision {provision_id} names no provider"))),
                };
                // The pool's copies stay encrypted: found by name, read by id.
                let id = match provider.parse::<u64>() {
                    Ok(id) => id,
                    Err(_) => self
                        .documents(ONEPROVISION_PROVIDER)?
                        .iter()
                        .find(|d| d.child("NAME").is_some_and(|n| n.text == provider))
                        .and_then(|d| d.child("ID")?.text.parse().ok())
                        .ok_or_else(|| {
                            OnedError(format!(
                                "provision {provision_id}: provider {provider:?} not found in oned"
                            ))
                        })?,
                };
                let doc = self.document(id)?;
                if doc_type(&doc) != ONEPROVISION_PROVIDER {
                    return Err(OnedError(format!(
                        "provision {provision_id}'s provider {provider:?} is not a oneprovision provider (TYPE {})",
                        doc_type(&doc)
                    )));
                }
                (doc, "PROVISION_BODY")
            }
            other => {
                return Err(OnedError(format!(
                    "document {provision_id} is not a provision (TYPE {other}; oneprovision's are \
                     {ONEPROVISION_PROVISION}, OneForm's {ONEFORM_PROVISION})"
                )));
            }
        };
        let provider_id = provider_doc.child("ID").map_or("?", |e| e.text.as_str()).to_owned();
        let body = json_body(&provider_doc, provider_attribute)?;
        let connection = body
            .get("connection")
            .and_then(serde_json::Value::as_object)
            .ok_or_else(|| OnedError(format!("provider {provider_id} has no connection")))?;
        Ok(connection
            .iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k.clone(), s.clone())),
                serde_json::Value::Null => None,
                other => Some((k.clone(), other.to_string())),
            })
            .collect())
    }
}

fn parse_body(body: &str) -> Result<Element, OnedError> {
    xml::parse_with(body.as_bytes(), LIMITS).map_err(|e| OnedError(format!("oned answered XML we cannot read: {e}")))
}

/// The text of an XML-RPC `<value>`: its typed child's text, or its own.
fn value_text(value: &Element) -> &str {
    value
        .children
        .first()
        .map_or(value.text.as_str(), |typed| typed.text.as_str())
}

/// Reads oned's `[success, body, code]` answer.
pub fn parse_response(bytes: &[u8]) -> Result<String, String> {
    let root = xml::parse_with(bytes, LIMITS).map_err(|e| format!("an answer that is not XML-RPC: {e}"))?;
    if let Some(fault) = root.child("fault") {
        let members = fault.at("value/struct").map(|s| s.children.as_slice()).unwrap_or(&[]);
        let text = members
            .iter()
            .find(|m| m.child("name").is_some_and(|n| n.text == "faultString"))
            .and_then(|m| m.child("value"))
            .map_or("unknown fault", value_text);
        return Err(format!("fault: {text}"));
    }
    let values: Vec<&Element> = root
        .at("params/param/value/array/data")
        .map(|d| d.children_named("value").collect())
        .ok_or("an answer without the [success, body, code] array")?;
    let success = values.first().map(|v| value_text(v)).ok_or("an empty answer array")?;
    let body = values.get(1).map(|v| value_text(v)).unwrap_or("").to_owned();
    match success {
        "1" | "true" => Ok(body),
        _ => {
            let code = values.get(2).map(|v| value_text(v)).unwrap_or("?");
            Err(format!("{body} (error code {code})"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_success_and_failure() {
        let ok = b"<?xml version=\"1.0\"?><methodResponse><params><param><value><array><data>\
            <value><boolean>1</boolean></value><value><string>&lt;DOCUMENT&gt;&lt;ID&gt;17&lt;/ID&gt;&lt;/DOCUMENT&gt;</string></value>\
            <value><i4>0</i4></value></data></array></value></param></params></methodResponse>";
        assert_eq!(parse_response(ok).unwrap(), "<DOCUMENT><ID>17</ID></DOCUMENT>");
        let untyped = b"<methodResponse><params><param><value><array><data><value><boolean>1</boolean></value>\
            <value>plain</value></data></array></value></param></params></methodResponse>";
        assert_eq!(parse_response(untyped).unwrap(), "plain");
        let failed = b"<methodResponse><params><param><value><array><data><value><boolean>0</boolean></value>\
            <value><string>[one.document.info] Error getting document [17].</string></value><value><i4>1024</i4></value>\
            </data></array></value></param></params></methodResponse>";
        assert_eq!(
            parse_response(failed).unwrap_err(),
            "[one.document.info] Error getting document [17]. (error code 1024)"
        );
        let fault = b"<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>4</int></value></member>\
            <member><name>faultString</name><value><string>Too many parameters</string></value></member></struct></value></fault></methodResponse>";
        assert_eq!(parse_response(fault).unwrap_err(), "fault: Too many parameters");
        assert!(
            parse_response(b"<html/>")
                .unwrap_err()
                .contains("without the [success, body, code] array")
        );
    }

    #[test]
    fn the_session_never_shows() {
        let oned = Oned::new("http://127.0.0.1:9/RPC2", "oneadmin:s3cret-pass".into()).unwrap();
        assert!(!format!("{oned:?}").contains("s3cret"));
        let err = oned.call("one.host.info", &[Param::Int(1)]).unwrap_err();
        assert!(!err.0.contains("s3cret"), "{err}");
        assert!(err.0.contains("is oned running?"), "{err}");
    }
}
