//! Checks oned bodies and IPAM driver messages against OpenNebula's schemas
//! (`tests/fixtures/xsd/opennebula/`) with the real `xmllint`, the way
//! `tests/tests/schemas.rs` checks the fixtures: OpenNebula's namespace is
//! added to the root element of a copy first, since oned's documents carry
//! none.
//!
//! Only the object schemas are vendored. For the pools (`HOST_POOL`, ...)
//! and `VNTEMPLATE` the check writes small schemas of its own: a pool is a
//! sequence of its objects as the vendored schema describes them, and
//! `VNTEMPLATE` is ID, UID, GID, UNAME, GNAME, NAME, LOCK?, PERMISSIONS,
//! REGTIME, TEMPLATE (OpenNebula's `vntemplate.xsd`, which is not vendored).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

const NAMESPACE: &str = "http://opennebula.org/XMLSchema";

fn xsd_dir() -> PathBuf {
    crate::fixture_path("xsd/opennebula")
}

/// The files written for one check, removed when dropped.
#[derive(Default)]
struct Scratch(Vec<PathBuf>);

impl Scratch {
    fn write(&mut self, name: &str, text: &str) -> Result<PathBuf, String> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!("one-scaleway-onedsim-xsd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join(format!("{}-{name}", COUNTER.fetch_add(1, Ordering::Relaxed)));
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        self.0.push(path.clone());
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
        if let Some(dir) = self.0.first().and_then(|p| p.parent()) {
            // Only when empty: another check may be running.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Runs `xmllint --noout --schema` (never skipped: a missing xmllint fails).
fn xmllint(scratch: &mut Scratch, document: &str, schema: &Path) -> Result<(), String> {
    let file = scratch.write("doc.xml", document)?;
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(schema)
        .arg(&file)
        .output();
    let out = out.map_err(|e| format!("cannot run xmllint ({e}): install libxml2-utils"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The document with OpenNebula's namespace on its root element.
fn namespaced(document: &str) -> Result<String, String> {
    let start = document.find('<').ok_or("no root element")?;
    let end = start + document[start..].find('>').ok_or("no root element")?;
    let (name_end, close) = if document[..end].ends_with('/') {
        (end - 1, "/")
    } else {
        (end, "")
    };
    Ok(format!(
        "{}{} xmlns=\"{NAMESPACE}\"{close}{}",
        &document[..start],
        &document[start..name_end],
        &document[end..]
    ))
}

fn root_name(document: &str) -> Result<String, String> {
    let root = opennebula::xml::parse_with(
        document.as_bytes(),
        opennebula::xml::Limits {
            depth: 64,
            elements: 5_000_000,
            text: 256 << 20,
        },
    )
    .map_err(|e| format!("not XML: {e}"))?;
    Ok(root.name)
}

fn wrapper(include: &Path, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" \
         xmlns=\"{NAMESPACE}\" elementFormDefault=\"qualified\" targetNamespace=\"{NAMESPACE}\">\n\
         <xs:include schemaLocation=\"{}\"/>\n{body}\n</xs:schema>\n",
        include.display()
    )
}

const VNTEMPLATE: &str = "<xs:element name=\"VNTEMPLATE\"><xs:complexType><xs:sequence>\
    <xs:element name=\"ID\" type=\"xs:integer\"/><xs:element name=\"UID\" type=\"xs:integer\"/>\
    <xs:element name=\"GID\" type=\"xs:integer\"/><xs:element name=\"UNAME\" type=\"xs:string\"/>\
    <xs:element name=\"GNAME\" type=\"xs:string\"/><xs:element name=\"NAME\" type=\"xs:string\"/>\
    <xs:element name=\"LOCK\" type=\"LOCK\" minOccurs=\"0\"/><xs:element name=\"PERMISSIONS\" type=\"PERMISSIONS\"/>\
    <xs:element name=\"REGTIME\" type=\"xs:integer\"/><xs:element name=\"TEMPLATE\" type=\"xs:anyType\"/>\
    </xs:sequence></xs:complexType></xs:element>";

/// The schema of a root element: a vendored one, or one written here.
fn schema_for(scratch: &mut Scratch, root: &str) -> Result<PathBuf, String> {
    let vendored = |f: &str| xsd_dir().join(f);
    let mut object = |root: &str| -> Result<PathBuf, String> {
        Ok(match root {
            "CLUSTER" => vendored("cluster.xsd"),
            "HOST" => vendored("host.xsd"),
            "DATASTORE" => vendored("datastore.xsd"),
            "VNET" => vendored("vnet.xsd"),
            "DOCUMENT" => vendored("document.xsd"),
            "VM" => vendored("vm.xsd"),
            "VNTEMPLATE" => scratch.write("vntemplate.xsd", &wrapper(&vendored("shared.xsd"), VNTEMPLATE))?,
            other => return Err(format!("no OpenNebula schema for <{other}>")),
        })
    };
    match root.strip_suffix("_POOL") {
        Some(item) => {
            let body = format!(
                "<xs:element name=\"{root}\"><xs:complexType><xs:sequence>\
                 <xs:element ref=\"{item}\" minOccurs=\"0\" maxOccurs=\"unbounded\"/>\
                 </xs:sequence></xs:complexType></xs:element>"
            );
            let include = object(item)?;
            scratch.write(&format!("{root}.xsd"), &wrapper(&include, &body))
        }
        None => object(root),
    }
}

/// Validates an oned body (`CLUSTER`, `HOST`, `DATASTORE`, `VNET`,
/// `VNTEMPLATE`, `DOCUMENT`, `VM` or one of their pools) against its schema.
pub fn validate(body: &str) -> Result<(), String> {
    let root = root_name(body)?;
    let mut scratch = Scratch::default();
    let schema = schema_for(&mut scratch, &root)?;
    xmllint(&mut scratch, &namespaced(body)?, &schema).map_err(|e| format!("<{root}> is not valid: {e}"))
}

/// Validates an `IPAM_DRIVER_ACTION_DATA` message against the schema the
/// fixtures are checked with (`tests/fixtures/xsd/ipam_driver_action_data.xsd`).
pub fn validate_ipam_request(message: &str) -> Result<(), String> {
    xmllint(
        &mut Scratch::default(),
        message,
        &crate::fixture_path("xsd/ipam_driver_action_data.xsd"),
    )
}
