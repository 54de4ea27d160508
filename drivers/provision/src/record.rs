//! The provision record in oned: the authority every frontend of the same
//! oned reads and writes. Each provision is a document of a type of our own
//! ([`PROVISION_DOCUMENT`]; oneprovision's and OneForm's tools read types
//! 100 to 104 and never see it): its `NAME` is the provision's, its template
//! holds `PROVISION_ID`, the record as JSON in `BODY` (as OneFlow keeps its
//! services), and `HOLDER` while a command runs. The local file of
//! [`crate::state`] is a cache, written after oned.
//!
//! Two frontends never run commands on one provision at once: a command
//! takes oned's lock of the document (`one.document.lock` with `test`, an
//! atomic test-and-set in oned) for its whole run, and writes who holds it
//! (`HOLDER`: frontend, pid, start). A lock left by a command that died on
//! this frontend is taken over; any other is reported with what to do
//! (`scaleway-provision unlock`). The lock is taken at oned's `ADMIN` level,
//! which blocks no operation we make on the document.

use anyhow::{Error, Result, anyhow, bail};
use opennebula::oned::{Oned, Param};
use opennebula::template::Template;
use opennebula::xml::Element;

use crate::state::ProvisionState;

/// oned document type of a provision record.
pub const PROVISION_DOCUMENT: i64 = 1201;
/// The template attribute marking a provision record of this tool.
const KIND: &str = "SCALEWAY_PROVISION";
/// `one.document.lock` level 3: ADMIN (blocks only administrative operations).
const LOCK_LEVEL: i64 = 3;

/// A provision record as oned keeps it.
#[derive(Debug, Clone)]
pub struct Doc {
    pub id: i64,
    pub state: ProvisionState,
    /// `Some(unix time)` when oned has the document locked.
    pub locked_since: Option<u64>,
    /// Who holds the lock: `<frontend> <pid> <unix start>`.
    pub holder: Option<String>,
}

/// Who this command is, for `HOLDER`.
pub fn holder_here() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{} {} {start}", host.trim(), std::process::id())
}

/// Whether the lock (taken at `locked_since`) is the one of a command of
/// this frontend that is no longer running. A lock taken well after that
/// command started belongs to another command that has not written its
/// holder yet: never taken over.
fn left_by_a_dead_command_here(holder: &str, locked_since: Option<u64>) -> bool {
    let words: Vec<&str> = holder.split_whitespace().collect();
    let [host, pid, start] = words[..] else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    let here = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    host == here.trim()
        && pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        && locked_since.is_some_and(|t| t <= start + 120)
}

fn describe_holder(holder: Option<&str>, since: Option<u64>) -> String {
    let since = since.map(crate::state::format_utc).unwrap_or_else(|| "?".into());
    match holder.map(|h| h.split_whitespace().collect::<Vec<_>>()) {
        Some(w) if w.len() >= 2 => format!("a command started at {since} on frontend {} (pid {})", w[0], w[1]),
        _ => format!("a command started at {since} (which frontend is not recorded)"),
    }
}

/// The provision records of an oned.
pub struct Records<'a> {
    pub oned: &'a Oned,
}

impl Records<'_> {
    fn template(state: &ProvisionState, holder: Option<&str>, with_name: bool) -> Result<String> {
        let mut t = Template::new();
        if with_name {
            t.single("NAME", &state.name);
        }
        t.single(KIND, "1");
        t.single("PROVISION_ID", &state.id);
        if let Some(h) = holder {
            t.single("HOLDER", h);
        }
        let mut stored = state.clone();
        stored.version = 1;
        let body = serde_json::to_string(&stored).map_err(|e| anyhow!("cannot encode the provision: {e}"))?;
        t.single("BODY", &body);
        t.render()
            .map_err(|e| anyhow!("cannot write provision {} for oned: {e}", state.name))
    }

    fn from_document(doc: &Element) -> Result<Doc> {
        let id = doc.child("ID").and_then(|e| e.text.parse().ok()).unwrap_or(-1);
        let attr = |name: &str| crate::provider::template_attr(doc, name);
        if attr(KIND).is_none() {
            bail!("document {id} is not a provision record of this tool");
        }
        let body = attr("BODY").ok_or_else(|| anyhow!("provision document {id} has no BODY"))?;
        let state: ProvisionState =
            serde_json::from_str(&body).map_err(|e| anyhow!("provision document {id} does not read: {e}"))?;
        let locked_since = doc
            .at("LOCK/LOCKED")
            .filter(|l| l.text != "0")
            .map(|_| doc.at("LOCK/TIME").and_then(|t| t.text.parse().ok()).unwrap_or(0));
        Ok(Doc {
            id,
            state,
            locked_since,
            holder: attr("HOLDER"),
        })
    }

    /// Every provision record, by name.
    pub fn list(&self) -> Result<Vec<Doc>> {
        let mut all: Vec<Doc> = self.list_all()?.into_iter().filter_map(Result::ok).collect();
        all.sort_by(|a, b| a.state.name.cmp(&b.state.name).then(a.id.cmp(&b.id)));
        all.dedup_by(|b, a| a.state.name == b.state.name);
        Ok(all)
    }

    /// Every provision record, each read or, for one that does not read,
    /// its document's name and why (one damaged record hides no other).
    pub fn list_all(&self) -> Result<Vec<Result<Doc, (String, String)>>> {
        let docs = self
            .oned
            .documents(PROVISION_DOCUMENT)
            .map_err(|e| anyhow!("cannot list the provisions in oned: {e}"))?;
        Ok(docs
            .iter()
            .map(|d| {
                Self::from_document(d).map_err(|e| {
                    (
                        d.child("NAME").map(|n| n.text.clone()).unwrap_or_default(),
                        format!("{e:#}"),
                    )
                })
            })
            .collect())
    }

    /// The record of that name (the oldest, were there two); an error when
    /// a record of that name does not read (nothing is done over it).
    pub fn find(&self, name: &str) -> Result<Option<Doc>> {
        let all = self.list_all()?;
        if let Some((_, e)) = all.iter().filter_map(|r| r.as_ref().err()).find(|(n, _)| n == name) {
            bail!(
                "the record of provision {name} in oned does not read ({e}): restore it from a backup of oned, or \
                 delete that document and run `scaleway-provision adopt {name}`"
            );
        }
        Ok(self.list()?.into_iter().find(|d| d.state.name == name))
    }

    /// Registers a new record, locked by this command; refuses when another
    /// frontend registered the same name at the same moment.
    pub fn create(&self, state: &ProvisionState, holder: &str) -> Result<i64> {
        let id = self
            .oned
            .call_id(
                "one.document.allocate",
                &[
                    Param::Str(Self::template(state, Some(holder), true)?),
                    Param::Int(PROVISION_DOCUMENT),
                ],
            )
            .map_err(|e| anyhow!("oned refused the record of provision {}: {e}", state.name))?;
        self.lock(id)?;
        match self.find(&state.name)? {
            Some(first) if first.id != id => {
                let _ = self.unlock(id);
                let _ = self.delete(id);
                Err(anyhow!(
                    "another frontend registered provision {} at the same moment: use another name, or \
                     operate it from there",
                    state.name
                ))
            }
            _ => Ok(id),
        }
    }

    /// Replaces a record's content.
    pub fn update(&self, id: i64, state: &ProvisionState, holder: Option<&str>) -> Result<()> {
        self.oned
            .call(
                "one.document.update",
                &[
                    Param::Int(id),
                    Param::Str(Self::template(state, holder, false)?),
                    Param::Int(0),
                ],
            )
            .map(|_| ())
            .map_err(|e| anyhow!("cannot record provision {} in oned: {e}", state.name))
    }

    pub fn delete(&self, id: i64) -> Result<()> {
        self.oned
            .call("one.document.delete", &[Param::Int(id)])
            .map(|_| ())
            .map_err(|e| anyhow!("oned refused to delete provision document {id}: {e}"))
    }

    fn lock(&self, id: i64) -> Result<()> {
        self.oned
            .call(
                "one.document.lock",
                &[Param::Int(id), Param::Int(LOCK_LEVEL), Param::Bool(true)],
            )
            .map(|_| ())
            .map_err(Error::msg)
    }

    pub fn unlock(&self, id: i64) -> Result<()> {
        self.oned
            .call("one.document.unlock", &[Param::Int(id)])
            .map(|_| ())
            .map_err(|e| anyhow!("oned refused to unlock provision document {id}: {e}"))
    }

    /// Takes the lock of an existing record for this command (taking over a
    /// lock left by a command of this frontend that died), and writes the
    /// holder. Returns the record as it is now.
    pub fn acquire(&self, name: &str, holder: &str) -> Result<Option<Doc>> {
        let Some(doc) = self.find(name)? else {
            return Ok(None);
        };
        if self.lock(doc.id).is_err() {
            // Locked: by whom?
            let now = self
                .find(name)?
                .ok_or_else(|| anyhow!("provision {name} vanished from oned"))?;
            match &now.holder {
                Some(h) if left_by_a_dead_command_here(h, now.locked_since) => {
                    self.unlock(now.id)?;
                    self.lock(now.id)
                        .map_err(|e| anyhow!("cannot lock provision {name} in oned: {e}"))?;
                }
                h => {
                    bail!(
                        "provision {name} is being operated by {}: wait for it to finish; if no command is \
                         running there any more, run `scaleway-provision unlock {name}`",
                        describe_holder(h.as_deref(), now.locked_since)
                    );
                }
            }
        }
        let doc = self
            .find(name)?
            .ok_or_else(|| anyhow!("provision {name} vanished from oned"))?;
        self.update(doc.id, &doc.state, Some(holder))?;
        Ok(Some(doc))
    }
}

/// A command's hold on its record in oned: every save goes to oned first
/// (created on the first save of a new provision), and the lock is
/// released, with the holder cleared, when the command ends.
pub struct Link {
    oned: Oned,
    /// The document, the last record saved, and the holder written.
    doc: std::sync::Mutex<(Option<i64>, Option<ProvisionState>, String)>,
}

impl Link {
    /// Takes the record of `name` for this command; returns the link and
    /// the record oned has (none yet for a new provision).
    pub fn acquire(oned: Oned, name: &str) -> Result<(Self, Option<ProvisionState>)> {
        let holder = holder_here();
        let doc = Records { oned: &oned }.acquire(name, &holder)?;
        let (id, state) = match doc {
            Some(d) => (Some(d.id), Some(d.state)),
            None => (None, None),
        };
        let link = Self {
            oned,
            doc: std::sync::Mutex::new((id, state.clone(), holder)),
        };
        Ok((link, state))
    }

    pub fn save(&self, state: &ProvisionState) -> Result<()> {
        let mut doc = self.doc.lock().map_err(|_| anyhow!("a worker failed"))?;
        let records = Records { oned: &self.oned };
        match doc.0 {
            Some(id) => records.update(id, state, Some(&doc.2))?,
            None => {
                // The lock is taken now: so is the holder's start.
                doc.2 = holder_here();
                doc.0 = Some(records.create(state, &doc.2)?);
            }
        }
        doc.1 = Some(state.clone());
        Ok(())
    }

    /// Deletes the record (the provision is gone).
    pub fn remove(&self) -> Result<()> {
        let mut doc = self.doc.lock().map_err(|_| anyhow!("a worker failed"))?;
        if let Some(id) = doc.0.take() {
            let records = Records { oned: &self.oned };
            let _ = records.unlock(id);
            records.delete(id)?;
        }
        Ok(())
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Ok(doc) = self.doc.lock()
            && let (Some(id), state, _) = &*doc
        {
            let records = Records { oned: &self.oned };
            if let Some(s) = state {
                let _ = records.update(*id, s, None);
            }
            let _ = records.unlock(*id);
        }
    }
}
