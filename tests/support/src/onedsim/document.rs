//! Documents (`one.document*`): those given at start, served as given
//! (providers captured from a real oned), and those a tool allocates (the
//! provisioner's records), kept as oned keeps them: the name taken out of
//! the template, a template replaced or merged by `update`, a lock with its
//! level and time (`one.document.lock` with `test` refuses a locked one).

use opennebula::template::Template;
use opennebula::xml;

use super::model::{leaf, now, parse_template, take, template_xml, update as merge};
use super::params::{Params, Reply};
use super::rpc::{ACTION, Answer, INTERNAL};
use super::{Shared, lock as guard};

/// A document.
pub(crate) struct Document {
    pub id: i64,
    pub doc_type: i64,
    pub xml: String,
    /// Allocated here (else given at start, and never changed).
    kept: Option<Kept>,
}

struct Kept {
    name: String,
    template: Template,
    /// The level (1 use, 2 manage, 3 admin) and time.
    lock: Option<(i64, i64)>,
}

impl Document {
    /// A document given at start (a real oned's XML).
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let root = xml::parse(text.as_bytes()).map_err(|e| format!("onedsim: a document that is not XML: {e}"))?;
        let number = |name: &str| {
            root.child(name)
                .and_then(|e| e.text.trim().parse::<i64>().ok())
                .ok_or_else(|| format!("onedsim: a DOCUMENT without a numeric {name}"))
        };
        if root.name != "DOCUMENT" {
            return Err(format!("onedsim: <{}> is not a DOCUMENT", root.name));
        }
        // Served without its XML declaration, as in oned's answers.
        let body = match text.trim_start().strip_prefix("<?xml") {
            Some(rest) => rest.split_once("?>").map_or(rest, |(_, r)| r),
            None => text,
        };
        Ok(Self {
            id: number("ID")?,
            doc_type: number("TYPE")?,
            xml: body.trim().to_owned(),
            kept: None,
        })
    }

    /// The XML of an allocated document, in the order of OpenNebula's
    /// `document.xsd` (the permissions of a document oneadmin allocates).
    fn render(&mut self) {
        let Some(k) = &self.kept else {
            return;
        };
        let lock = k.lock.map_or_else(String::new, |(level, time)| {
            format!("<LOCK><LOCKED>{level}</LOCKED><OWNER>0</OWNER><TIME>{time}</TIME><REQ_ID>-1</REQ_ID></LOCK>")
        });
        self.xml = format!(
            "<DOCUMENT><ID>{}</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME>{}\
             <TYPE>{}</TYPE><PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A>\
             <GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A><OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M>\
             <OTHER_A>0</OTHER_A></PERMISSIONS>{lock}{}</DOCUMENT>",
            self.id,
            leaf("NAME", &k.name),
            self.doc_type,
            template_xml("TEMPLATE", &k.template)
        );
    }
}

/// `one.documentpool.info(filter, start, end, type)`.
pub(crate) fn pool(shared: &Shared, p: &Params<'_>) -> Reply {
    let doc_type = p.int(3)?;
    let st = guard(&shared.state);
    let mut body = String::new();
    for d in st.documents.values().filter(|d| d.doc_type == doc_type) {
        if p.in_pool(d.id)? {
            body.push_str(&d.xml);
        }
    }
    Ok(Answer::Str(format!("<DOCUMENT_POOL>{body}</DOCUMENT_POOL>")))
}

pub(crate) fn info(shared: &Shared, p: &Params<'_>) -> Reply {
    let id = p.int(0)?;
    let st = guard(&shared.state);
    let d = st.documents.get(&id).ok_or_else(|| p.no_exists("document", id))?;
    Ok(Answer::Str(d.xml.clone()))
}

/// `one.document.allocate(template, type)`: the name from the template's
/// `NAME` (taken out of it), else `document-<id>`.
pub(crate) fn allocate(shared: &Shared, p: &Params<'_>) -> Reply {
    let mut template = parse_template(p.str(0)?).map_err(|e| p.fail(INTERNAL, &e))?;
    let doc_type = p.int(1)?;
    let mut st = guard(&shared.state);
    let id = st.documents.keys().next_back().map_or(0, |last| last + 1);
    let name = take(&mut template, "NAME").unwrap_or_else(|| format!("document-{id}"));
    let mut d = Document {
        id,
        doc_type,
        xml: String::new(),
        kept: Some(Kept {
            name,
            template,
            lock: None,
        }),
    };
    d.render();
    st.documents.insert(id, d);
    Ok(Answer::Int(id))
}

/// An allocated document, to change.
fn kept<'a>(st: &'a mut super::model::State, p: &Params<'_>, id: i64) -> Result<&'a mut Document, Answer> {
    let d = st.documents.get_mut(&id).ok_or_else(|| p.no_exists("document", id))?;
    if d.kept.is_none() {
        return Err(p.fail(INTERNAL, "onedsim: a document given at start is not changed"));
    }
    Ok(d)
}

/// `one.document.update(id, template, type)`: 0 replaces, 1 merges.
pub(crate) fn update(shared: &Shared, p: &Params<'_>) -> Reply {
    let (id, new) = (p.int(0)?, parse_template(p.str(1)?).map_err(|e| p.fail(INTERNAL, &e))?);
    let append = p.int_or(2, 0)? == 1;
    let mut st = guard(&shared.state);
    let d = kept(&mut st, p, id)?;
    if let Some(k) = d.kept.as_mut() {
        merge(&mut k.template, new, append);
    }
    d.render();
    Ok(Answer::Int(id))
}

pub(crate) fn delete(shared: &Shared, p: &Params<'_>) -> Reply {
    let id = p.int(0)?;
    let mut st = guard(&shared.state);
    kept(&mut st, p, id)?;
    st.documents.remove(&id);
    Ok(Answer::Int(id))
}

/// `one.document.lock(id, level, test)`.
pub(crate) fn lock(shared: &Shared, p: &Params<'_>) -> Reply {
    let (id, level, test) = (p.int(0)?, p.int(1)?, p.bool_or(2, false)?);
    if !(1..=4).contains(&level) {
        return Err(p.fail(ACTION, "Wrong lock level specified"));
    }
    let mut st = guard(&shared.state);
    let d = kept(&mut st, p, id)?;
    if let Some(k) = d.kept.as_mut() {
        if test && k.lock.is_some() {
            return Err(p.fail(ACTION, "Object is locked"));
        }
        k.lock = Some((if level == 4 { 1 } else { level }, now()));
    }
    d.render();
    Ok(Answer::Int(id))
}

pub(crate) fn unlock(shared: &Shared, p: &Params<'_>) -> Reply {
    let id = p.int(0)?;
    let mut st = guard(&shared.state);
    let d = kept(&mut st, p, id)?;
    if let Some(k) = d.kept.as_mut() {
        k.lock = None;
    }
    d.render();
    Ok(Answer::Int(id))
}
