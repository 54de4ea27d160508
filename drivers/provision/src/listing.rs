//! What the frontend knows of its provisions: `show`, `list` (oned's
//! records, and copies from before oned kept them; stale copies are only
//! warned about), and `unlock`.

use anyhow::{Error, Result, anyhow};
use opennebula::driver::{Env, Io};
use opennebula::oned::Oned;

use crate::commands::{print_provision, stale};
use crate::record::Records;
use crate::state::{self, ProvisionState, Store};
use crate::{PROGRAM, one, report};

pub(crate) fn show(name: &str, json: bool, env: &Env, io: &mut Io<'_>) -> Result<()> {
    let listing = provisions(env)?;
    if let Some(w) = listing.warning() {
        let _ = writeln!(io.stderr, "WARN: {PROGRAM} show: {w}");
    }
    let s = listing
        .all
        .into_iter()
        .find_map(|p| match p {
            Ok(s) if s.name == name => Some(Ok(s)),
            Err((n, e)) if n == name => Some(Err(e)),
            _ => None,
        })
        .ok_or_else(|| anyhow!("no provision named {name} (scaleway-provision list)"))?
        .map_err(Error::msg)?;
    let ranges = s.one.public_network.and_then(|v| {
        Oned::from_env(env)
            .ok()
            .and_then(|oned| one::One { oned: &oned }.public_ranges(v, &s.id).ok())
    });
    print_provision(&s, ranges.as_deref(), json, io);
    Ok(())
}

/// A recorded provision, or the name of one whose record does not read and why.
pub(crate) type Recorded = Result<ProvisionState, (String, String)>;

/// Every provision known here.
pub(crate) struct Listing {
    /// oned's records and those only this frontend's files know (recorded
    /// before oned kept them); only the files when oned cannot be asked.
    pub all: Vec<Recorded>,
    /// Copies of this frontend that oned no longer has (see [`take`]).
    pub stale: Vec<String>,
    /// Why oned could not be asked.
    pub oned_error: Option<String>,
}

impl Listing {
    /// What to warn about.
    pub fn warning(&self) -> Option<String> {
        let mut w: Vec<String> = self.stale.iter().map(|n| stale(n)).collect();
        if let Some(e) = &self.oned_error {
            w.push(format!("oned cannot be asked ({e}): showing this frontend's copies"));
        }
        (!w.is_empty()).then(|| w.join("; "))
    }
}

/// Every provision: see [`Listing`].
pub(crate) fn provisions(env: &Env) -> Result<Listing> {
    let store = Store::new(&state::state_dir(env));
    let local: Vec<Recorded> = store
        .names()?
        .into_iter()
        .filter_map(|name| match store.read(&name) {
            Ok(Some(s)) => Some(Ok(s)),
            Ok(None) => None,
            Err(e) => Some(Err((name, format!("{e:#}")))),
        })
        .collect();
    let from_oned = Oned::from_env(env)
        .map_err(Error::msg)
        .and_then(|oned| Records { oned: &oned }.list_all());
    match from_oned {
        Ok(docs) => {
            let mut all: Vec<Recorded> = docs.into_iter().map(|d| d.map(|d| d.state)).collect();
            all.sort_by(|a, b| name_of(a).cmp(name_of(b)));
            all.dedup_by(|b, a| name_of(a) == name_of(b));
            let known = |n: &str| all.iter().any(|p| name_of(p) == n);
            let mut stale_names = Vec::new();
            let mut only_here = Vec::new();
            for p in local {
                match p {
                    Ok(s) if known(&s.name) => {}
                    Ok(s) if s.oned_record => stale_names.push(s.name),
                    Err((n, _)) if known(&n) => {}
                    other => only_here.push(other),
                }
            }
            all.extend(only_here);
            all.sort_by(|a, b| name_of(a).cmp(name_of(b)));
            Ok(Listing {
                all,
                stale: stale_names,
                oned_error: None,
            })
        }
        Err(e) => Ok(Listing {
            all: local,
            stale: Vec::new(),
            oned_error: Some(format!("{e:#}")),
        }),
    }
}

fn name_of(p: &Recorded) -> &str {
    match p {
        Ok(s) => &s.name,
        Err((n, _)) => n,
    }
}

pub(crate) fn list(json: bool, env: &Env, io: &mut Io<'_>) -> Result<()> {
    let listing = provisions(env)?;
    if let Some(w) = listing.warning() {
        let _ = writeln!(io.stderr, "WARN: {PROGRAM} list: {w}");
    }
    let all = listing.all;
    if json {
        let entries: Vec<serde_json::Value> = all
            .iter()
            .map(|p| match p {
                Ok(s) => report::list_entry(s),
                Err((name, e)) => serde_json::json!({"name": name, "error": e}),
            })
            .collect();
        let _ = write!(io.stdout, "{}", report::document("provisions", entries.into()));
        return Ok(());
    }
    if all.is_empty() {
        let _ = writeln!(io.stdout, "no provisions");
    }
    for p in all {
        match p {
            Ok(s) => {
                let _ = writeln!(
                    io.stdout,
                    "{}  {}  {}  {}  {} host(s)  created {}{}",
                    s.name,
                    s.id,
                    s.phase.as_str(),
                    if s.zone.is_empty() { "-" } else { &s.zone },
                    s.hosts.len(),
                    s.created_at,
                    if s.pending.is_some() {
                        "  (unfinished operation)"
                    } else {
                        ""
                    }
                );
            }
            Err((name, e)) => {
                let _ = writeln!(io.stdout, "{name}  unreadable: {e}");
            }
        }
    }
    Ok(())
}

/// `unlock`: releases oned's lock of a provision left by a command that
/// is not running any more (on any frontend).
pub(crate) fn unlock(name: &str, env: &Env, io: &mut Io<'_>) -> Result<()> {
    let oned = Oned::from_env(env).map_err(|e| anyhow!("cannot reach oned: {e}"))?;
    let records = Records { oned: &oned };
    let doc = records
        .find(name)?
        .ok_or_else(|| anyhow!("no provision named {name} in oned (scaleway-provision list)"))?;
    if doc.locked_since.is_none() {
        let _ = writeln!(io.stdout, "provision {name} is not locked");
        return Ok(());
    }
    records.unlock(doc.id)?;
    let _ = writeln!(
        io.stdout,
        "provision {name} unlocked (it was held by {})",
        doc.holder.as_deref().unwrap_or("an unrecorded command")
    );
    Ok(())
}
