//! What the sandbox prints: each step as it runs (`[ 12.3s] name ... ok
//! (1.2s)`, details indented below), and a summary table at the end.

use std::io::Write;
use std::time::{Duration, Instant};

/// A step's outcome.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub ok: bool,
    pub took: Duration,
    pub check: bool,
    /// Why it failed (`{:#}` of its error).
    pub error: Option<String>,
}

/// The steps so far.
pub struct Report {
    start: Instant,
    pub rows: Vec<Row>,
    /// Print steps as they run (not in unit tests, whose output they would
    /// leak: the test harness only captures `print!`).
    loud: bool,
}

fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes());
    let _ = o.flush();
}

impl Report {
    pub fn new() -> Self {
        Report {
            start: Instant::now(),
            rows: Vec::new(),
            loud: true,
        }
    }

    fn out(&self, text: &str) {
        if self.loud {
            out(text);
        }
    }

    /// A heading between parts of the story.
    pub fn part(&self, title: &str) {
        self.out(&format!("\n== {title}\n"));
    }

    /// A line of information (not a step).
    pub fn say(&self, text: &str) {
        self.out(&format!("{text}\n"));
    }

    /// Runs one step (`check`: a verification rather than an action);
    /// prints it, records it, and returns its result. `f` returns details
    /// to show under it (may be empty).
    pub fn step<T>(
        &mut self,
        name: &str,
        check: bool,
        f: impl FnOnce() -> anyhow::Result<(T, String)>,
    ) -> anyhow::Result<T> {
        let label = if check {
            format!("check: {name}")
        } else {
            name.to_owned()
        };
        self.out(&format!("[{:6.1}s] {label} ... ", self.start.elapsed().as_secs_f64()));
        let began = Instant::now();
        let result = f();
        let took = began.elapsed();
        let ok = result.is_ok();
        let mut error = None;
        match &result {
            Ok((_, details)) => {
                self.out(&format!("ok ({:.1}s)\n", took.as_secs_f64()));
                for l in details.lines() {
                    self.out(&format!("           {l}\n"));
                }
            }
            Err(e) => {
                self.out(&format!("FAILED ({:.1}s)\n", took.as_secs_f64()));
                let text = format!("{e:#}");
                for l in text.lines() {
                    self.out(&format!("           {l}\n"));
                }
                error = Some(text);
            }
        }
        self.rows.push(Row {
            name: label,
            ok,
            took,
            check,
            error,
        });
        result.map(|(t, _)| t)
    }

    /// Whether every step passed.
    pub fn all_ok(&self) -> bool {
        self.rows.iter().all(|r| r.ok)
    }

    /// The summary table.
    pub fn summary(&self, interrupted: bool) -> String {
        let width = self.rows.iter().map(|r| r.name.len()).max().unwrap_or(10).max(10);
        let mut s = format!("\n== summary\n  {:<width$}  {:<6}  {:>7}\n", "step", "result", "time");
        for r in &self.rows {
            let _ = std::fmt::Write::write_fmt(
                &mut s,
                format_args!(
                    "  {:<width$}  {:<6}  {:>6.1}s\n",
                    r.name,
                    if r.ok { "ok" } else { "FAILED" },
                    r.took.as_secs_f64()
                ),
            );
        }
        let checks = self.rows.iter().filter(|r| r.check).count();
        let passed = self.rows.iter().filter(|r| r.check && r.ok).count();
        let failed = self.rows.iter().filter(|r| !r.ok).count();
        let verdict = if interrupted {
            "INTERRUPTED".to_owned()
        } else if failed == 0 && checks > 0 {
            "PASSED".to_owned()
        } else {
            format!("FAILED ({failed} step(s) failed)")
        };
        let _ = std::fmt::Write::write_fmt(
            &mut s,
            format_args!(
                "  {} steps, {passed}/{checks} checks passed, {:.1}s: {verdict}\n",
                self.rows.len(),
                self.start.elapsed().as_secs_f64()
            ),
        );
        // Again at the very end, where a log cut in the middle still shows it.
        for r in &self.rows {
            if let Some(e) = &r.error {
                let _ = std::fmt::Write::write_fmt(&mut s, format_args!("  failed: {}\n", r.name));
                for l in e.lines() {
                    let _ = std::fmt::Write::write_fmt(&mut s, format_args!("    {l}\n"));
                }
            }
        }
        s
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code
mod tests {
    use super::*;

    #[test]
    fn the_summary_ends_with_what_failed_and_why() {
        let mut rep = Report::new();
        rep.loud = false;
        rep.step("a step that works", false, || Ok(((), String::new())))
            .unwrap();
        let err = rep.step::<()>("check this", true, || Err(anyhow::anyhow!("the cause\nits detail")));
        assert!(err.is_err());
        let summary = rep.summary(false);
        assert!(
            summary
                .ends_with("FAILED (1 step(s) failed)\n  failed: check: check this\n    the cause\n    its detail\n"),
            "{summary}"
        );
    }
}
