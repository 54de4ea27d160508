//! The one skeleton of every change a network driver makes on a host.
//!
//! Both drivers' actions (`pre`, `clean`, `update_sg`, `reconcile`, and the
//! private driver's `evpn-config`) follow it:
//!
//! ```text
//! validate the document (typed)           the action
//! take the host lock (lock::HostLock)     the action
//! read the record                         the action
//! the record after (what must be true)    the action
//! observe -> plan -> apply -> settle      converge, through the driver's Change
//! save the record when it changed         converge
//! ```
//!
//! A driver implements [`Change`] for one change of its host: how it
//! observes what a plan starts from, plans (its pure planner and
//! renderers), applies (its appliers), and what the record learns from a
//! plan once applied. [`converge`] runs the steps in order, logs the plan,
//! stops before applying when dry-running, observes and plans once more
//! when the driver says an apply failed because its observation was a model
//! the kernel contradicted, and saves the record when it changed.

use opennebula::driver::{Level, Log};

/// How [`Change::observe`] may learn the host's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observe {
    /// As cheaply as the driver can (from its record's model of what it
    /// owns, when it trusts it).
    Cheaply,
    /// Everything read from the kernel: after an apply the cheap
    /// observation misled.
    Fully,
}

/// One change of a driver on a host.
pub trait Change {
    /// What the driver keeps on the host.
    type Record: Clone + PartialEq;
    /// What a plan starts from.
    type Observed;
    /// What the change does (pure).
    type Plan;
    /// What applying told (say, whether FRR reloaded).
    type Applied;

    /// Reads what the plan starts from.
    fn observe(&self, before: &Self::Record, after: &Self::Record, how: Observe) -> anyhow::Result<Self::Observed>;

    /// The plan from `before` to `after` on the observed host.
    fn plan(
        &self,
        before: &Self::Record,
        after: &Self::Record,
        observed: &Self::Observed,
    ) -> anyhow::Result<Self::Plan>;

    /// The plan's warnings (logged as `WARN:`).
    fn notes(&self, plan: &Self::Plan) -> Vec<String>;

    /// The plan's lines (logged as `DEBUG: plan: ...`; rendered only when
    /// the debug level is on: `reconcile`'s are thousands).
    fn lines(&self, plan: &Self::Plan) -> String;

    /// What a dry run prints instead of applying.
    fn dry_run(&self, plan: &Self::Plan) -> String;

    /// Applies the plan.
    fn apply(&self, log: &mut Log<'_>, plan: &Self::Plan) -> anyhow::Result<Self::Applied>;

    /// Whether `error` from [`Change::apply`] means the observation was a
    /// model the kernel contradicted (nothing changed): then, with the
    /// reason logged at debug level, the host is observed
    /// [`Observe::Fully`] and planned again, once.
    fn observe_again(&self, _error: &anyhow::Error, _observed: &Self::Observed) -> Option<String> {
        None
    }

    /// What the record learns from the plan (`applied`: `None` when
    /// dry-running).
    fn settle(
        &self,
        after: &mut Self::Record,
        observed: &Self::Observed,
        plan: &Self::Plan,
        applied: Option<&Self::Applied>,
    );

    /// Saves the record.
    fn save(&self, record: &Self::Record) -> anyhow::Result<()>;
}

/// What [`converge`] did.
pub struct Converged<C: Change> {
    pub plan: C::Plan,
    /// `None` when dry-running.
    pub applied: Option<C::Applied>,
    /// Dry run: what would have been done.
    pub dry_run: Option<String>,
    /// The record after the change (saved unless dry-running).
    pub after: C::Record,
}

/// Observes, plans, logs, applies (unless `dry_run`), settles and saves the
/// record when it changed. `observed`: what the action read already (the
/// private driver needs the links to know what `after` is), else observed
/// here.
pub fn converge<C: Change>(
    change: &C,
    log: &mut Log<'_>,
    before: &C::Record,
    mut after: C::Record,
    observed: Option<C::Observed>,
    dry_run: bool,
) -> anyhow::Result<Converged<C>> {
    let mut observed = match observed {
        Some(o) => o,
        None => change.observe(before, &after, Observe::Cheaply)?,
    };
    let mut again = true;
    loop {
        let plan = change.plan(before, &after, &observed)?;
        for note in &change.notes(&plan) {
            log.warn(note);
        }
        if log.level() >= Level::Debug {
            for line in change.lines(&plan).lines().filter(|l| !l.starts_with("# note:")) {
                log.debug(format_args!("plan: {line}"));
            }
        }
        if dry_run {
            let text = change.dry_run(&plan);
            change.settle(&mut after, &observed, &plan, None);
            return Ok(Converged {
                plan,
                applied: None,
                dry_run: Some(text),
                after,
            });
        }
        match change.apply(log, &plan) {
            Ok(applied) => {
                change.settle(&mut after, &observed, &plan, Some(&applied));
                if after != *before {
                    change.save(&after).map_err(|e| {
                        e.context("the changes were applied but not recorded (the next action records them)")
                    })?;
                }
                return Ok(Converged {
                    plan,
                    applied: Some(applied),
                    dry_run: None,
                    after,
                });
            }
            Err(e) => match change.observe_again(&e, &observed).filter(|_| again) {
                Some(why) => {
                    log.debug(why);
                    observed = change.observe(before, &after, Observe::Fully)?;
                    again = false;
                }
                None => return Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// A change that records what the skeleton asked of it.
    #[derive(Default)]
    struct Fake {
        calls: RefCell<Vec<String>>,
        /// Applies fail this many times, as a misleading model would.
        refusals: RefCell<u32>,
    }

    impl Change for Fake {
        type Record = u32;
        type Observed = Observe;
        type Plan = String;
        type Applied = ();

        fn observe(&self, _: &u32, _: &u32, how: Observe) -> anyhow::Result<Observe> {
            self.calls.borrow_mut().push(format!("observe {how:?}"));
            Ok(how)
        }
        fn plan(&self, before: &u32, after: &u32, o: &Observe) -> anyhow::Result<String> {
            self.calls
                .borrow_mut()
                .push(format!("plan {before}->{after} from {o:?}"));
            Ok(format!("# note: n\nset {after}"))
        }
        fn notes(&self, _: &String) -> Vec<String> {
            vec!["careful".into()]
        }
        fn lines(&self, p: &String) -> String {
            self.calls.borrow_mut().push("lines".into());
            p.clone()
        }
        fn dry_run(&self, p: &String) -> String {
            format!("would {p}")
        }
        fn apply(&self, _: &mut Log<'_>, p: &String) -> anyhow::Result<()> {
            self.calls
                .borrow_mut()
                .push(format!("apply {}", p.lines().last().unwrap_or_default()));
            let mut left = self.refusals.borrow_mut();
            if *left > 0 {
                *left -= 1;
                anyhow::bail!("refused");
            }
            Ok(())
        }
        fn observe_again(&self, e: &anyhow::Error, o: &Observe) -> Option<String> {
            (*o == Observe::Cheaply).then(|| format!("misled ({e})"))
        }
        fn settle(&self, after: &mut u32, _: &Observe, _: &String, applied: Option<&()>) {
            self.calls.borrow_mut().push(format!("settle {}", applied.is_some()));
            *after += 100;
        }
        fn save(&self, record: &u32) -> anyhow::Result<()> {
            self.calls.borrow_mut().push(format!("save {record}"));
            Ok(())
        }
    }

    fn run(fake: &Fake, before: u32, after: u32, dry_run: bool) -> (anyhow::Result<Converged<Fake>>, String) {
        run_at(Level::Debug, fake, before, after, dry_run)
    }

    fn run_at(
        level: Level,
        fake: &Fake,
        before: u32,
        after: u32,
        dry_run: bool,
    ) -> (anyhow::Result<Converged<Fake>>, String) {
        let mut err = Vec::new();
        let out = {
            let mut log = Log::new(&mut err, level, "t");
            converge(fake, &mut log, &before, after, None, dry_run)
        };
        (out, String::from_utf8(err).unwrap())
    }

    #[test]
    fn steps_in_order_and_the_record_saved_when_it_changed() {
        let fake = Fake::default();
        let (done, log) = run(&fake, 1, 2, false);
        let done = done.unwrap();
        assert_eq!(done.after, 102);
        assert!(done.applied.is_some() && done.dry_run.is_none());
        assert_eq!(
            *fake.calls.borrow(),
            [
                "observe Cheaply",
                "plan 1->2 from Cheaply",
                "lines",
                "apply set 2",
                "settle true",
                "save 102"
            ]
        );
        assert!(
            log.contains("WARN: t: careful") && log.contains("DEBUG: t: plan: set 2"),
            "{log}"
        );
        assert!(!log.contains("# note"), "{log}");
    }

    /// Below the debug level the plan's lines are not even rendered
    /// (`reconcile`'s are thousands); its warnings are logged.
    #[test]
    fn the_plan_is_rendered_only_for_the_debug_log() {
        let fake = Fake::default();
        let (done, log) = run_at(Level::Info, &fake, 1, 2, false);
        done.unwrap();
        assert!(!fake.calls.borrow().iter().any(|c| c == "lines"));
        assert!(log.contains("WARN: t: careful") && !log.contains("plan:"), "{log}");
    }

    #[test]
    fn a_dry_run_applies_and_saves_nothing() {
        let fake = Fake::default();
        let done = run(&fake, 1, 2, true).0.unwrap();
        assert_eq!(done.dry_run.as_deref(), Some("would # note: n\nset 2"));
        assert!(done.applied.is_none());
        assert_eq!(
            *fake.calls.borrow(),
            ["observe Cheaply", "plan 1->2 from Cheaply", "lines", "settle false"]
        );
    }

    #[test]
    fn a_misleading_observation_is_read_again_once() {
        let fake = Fake {
            refusals: RefCell::new(1),
            ..Fake::default()
        };
        let (done, log) = run(&fake, 1, 2, false);
        done.unwrap();
        assert_eq!(
            fake.calls.borrow()[..5],
            [
                "observe Cheaply",
                "plan 1->2 from Cheaply",
                "lines",
                "apply set 2",
                "observe Fully",
            ]
        );
        assert!(log.contains("DEBUG: t: misled (refused)"), "{log}");
        let fake = Fake {
            refusals: RefCell::new(2),
            ..Fake::default()
        };
        assert_eq!(run(&fake, 1, 2, false).0.err().unwrap().to_string(), "refused");
        assert!(!fake.calls.borrow().iter().any(|c| c.starts_with("save")));
    }
}
