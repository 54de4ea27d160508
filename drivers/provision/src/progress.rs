//! Live progress of long operations, per resource: on a terminal, a table
//! redrawn in place; otherwise one timestamped line per change.

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

/// Receives what each resource is doing.
pub trait Progress: Sync {
    fn report(&self, resource: &str, status: &str);
}

/// Plain lines: `2026-11-25T19:30:00Z +12.3s server edge-host1: installing`.
pub struct Lines {
    start: Instant,
    out: Mutex<Box<dyn Write + Send>>,
}

impl Lines {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            start: Instant::now(),
            out: Mutex::new(out),
        }
    }
}

impl Progress for Lines {
    fn report(&self, resource: &str, status: &str) {
        let line = format!(
            "{} +{:.1}s {resource}: {status}\n",
            crate::state::now_utc(),
            self.start.elapsed().as_secs_f64()
        );
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
    }
}

/// A table of resources redrawn in place (ANSI cursor movement).
pub struct Terminal {
    start: Instant,
    inner: Mutex<TerminalRows>,
}

struct TerminalRows {
    rows: Vec<(String, String, Instant)>,
    drawn: usize,
    out: Box<dyn Write + Send>,
}

impl Terminal {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            start: Instant::now(),
            inner: Mutex::new(TerminalRows {
                rows: Vec::new(),
                drawn: 0,
                out,
            }),
        }
    }
}

impl Progress for Terminal {
    fn report(&self, resource: &str, status: &str) {
        let Ok(mut t) = self.inner.lock() else { return };
        let now = Instant::now();
        match t.rows.iter_mut().find(|r| r.0 == resource) {
            Some(r) => {
                r.1 = status.to_owned();
                r.2 = now;
            }
            None => t.rows.push((resource.to_owned(), status.to_owned(), now)),
        }
        let width = t.rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let mut text = String::new();
        if t.drawn > 0 {
            text.push_str(&format!("\x1b[{}A", t.drawn));
        }
        for (name, status, since) in &t.rows {
            text.push_str(&format!(
                "\x1b[2K{name:<width$}  {status} ({:.0}s)\n",
                since.duration_since(self.start).as_secs_f64()
            ));
        }
        t.drawn = t.rows.len();
        let _ = t.out.write_all(text.as_bytes());
        let _ = t.out.flush();
    }
}

/// Collects reports (tests).
#[derive(Default)]
pub struct Collect(pub Mutex<Vec<(String, String)>>);

impl Progress for Collect {
    fn report(&self, resource: &str, status: &str) {
        if let Ok(mut v) = self.0.lock() {
            v.push((resource.to_owned(), status.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_timestamped_and_terminal_rows_are_redrawn_in_place() {
        let out = Shared::default();
        let lines = Lines::new(Box::new(out.clone()));
        lines.report("server edge-host1", "installing");
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let (stamp, rest) = text.split_once(' ').unwrap();
        assert!(stamp.ends_with('Z') && stamp.len() == 20, "{text}");
        assert!(rest.ends_with("server edge-host1: installing\n"), "{text}");

        let out = Shared::default();
        let term = Terminal::new(Box::new(out.clone()));
        term.report("VPC", "creating");
        term.report("server edge-host1", "ordering");
        term.report("VPC", "done");
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        // The third report moves up over the two rows and redraws both.
        let last = text.rsplit("\x1b[2A").next().unwrap();
        assert_eq!(last.matches("\x1b[2K").count(), 2, "{text:?}");
        assert!(last.contains("VPC                done"), "{last:?}");
        assert!(last.contains("server edge-host1  ordering"), "{last:?}");
    }
}
