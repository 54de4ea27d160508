//! The one table: rows (benchmark, parameter, our figure, baseline figure,
//! ratio), the machine header and the legend, as text or Markdown.

use crate::util;

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub bench: String,
    pub param: String,
    pub ours: String,
    pub base: String,
    pub ratio: String,
}

impl Row {
    pub fn new(bench: &str, param: impl Into<String>, ours: impl Into<String>, base: impl Into<String>) -> Self {
        Self {
            bench: bench.to_owned(),
            param: param.into(),
            ours: ours.into(),
            base: base.into(),
            ratio: String::new(),
        }
    }

    pub fn ratio(mut self, ours: f64, base: f64) -> Self {
        self.ratio = ratio(ours, base);
        self
    }

    pub fn with_ratio(mut self, text: impl Into<String>) -> Self {
        self.ratio = text.into();
        self
    }

    /// A benchmark that could not run or failed: the reason in place of figures.
    pub fn failed(bench: &str, param: &str, why: &str) -> Self {
        Self::new(bench, param, format!("FAILED: {why}"), "-")
    }

    /// Whether the row is a failure (not a figure, not a skip).
    pub fn is_failed(&self) -> bool {
        self.ours.starts_with("FAILED: ")
    }

    pub fn skipped(bench: &str, why: &str) -> Self {
        Self::new(bench, "-", format!("skipped: {why}"), "-")
    }
}

/// `ours / base` as `×1.23` (`-` when either is missing).
pub fn ratio(ours: f64, base: f64) -> String {
    if !ours.is_finite() || !base.is_finite() || base <= 0.0 {
        return "-".into();
    }
    let r = ours / base;
    if r >= 100.0 {
        format!("×{r:.0}")
    } else if r >= 10.0 {
        format!("×{r:.1}")
    } else {
        format!("×{r:.2}")
    }
}

/// A time in milliseconds, readable.
pub fn fmt_ms(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v >= 10_000.0 {
        format!("{:.1} s", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

/// Kilobytes as MiB.
pub fn fmt_kb(kb: f64) -> String {
    format!("{:.1} MiB", kb / 1024.0)
}

/// The machine the run is on: CPU model, cores, kernel, OS, date.
pub fn machine() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".to_owned(), |(_, m)| m.trim().to_owned());
    let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map_or("unknown".to_owned(), |v| v.trim_matches('"').to_owned());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or("unknown".to_owned(), |kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0));
    let load = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let tool = |args: &[&str]| {
        util::run_ok(args, b"")
            .ok()
            .and_then(|o| o.lines().next().map(str::to_owned))
            .unwrap_or_else(|| "not installed".into())
    };
    vec![
        ("date".into(), now_utc()),
        ("cpu".into(), format!("{model}, {cores} cores")),
        ("memory".into(), mem),
        ("kernel".into(), kernel.trim().to_owned()),
        ("os".into(), os),
        ("load at start".into(), load),
        (
            "tools".into(),
            format!(
                "{}; {}; {}",
                tool(&["nft", "--version"]),
                tool(&["iptables", "--version"]),
                tool(&["dpkg-query", "-W", "-f", "FRR ${Version}", "frr"])
            ),
        ),
    ]
}

/// The current UTC time as `YYYY-MM-DD HH:MM:SS UTC` (the provision driver's formatter).
pub fn now_utc() -> String {
    scaleway_provision::state::now_utc()
        .replacen('T', " ", 1)
        .replace('Z', " UTC")
}

const HEADERS: [&str; 5] = ["benchmark", "parameter", "ours", "baseline", "ratio"];

fn cells(r: &Row) -> [&str; 5] {
    [&r.bench, &r.param, &r.ours, &r.base, &r.ratio]
}

/// The table as aligned text.
pub fn text(title: &str, machine: &[(String, String)], rows: &[Row], legend: &[String]) -> String {
    let mut out = format!("{title}\n");
    for (k, v) in machine {
        out.push_str(&format!("  {k:<14} {v}\n"));
    }
    out.push('\n');
    let mut widths = HEADERS.map(|h| h.chars().count());
    for r in rows {
        for (w, c) in widths.iter_mut().zip(cells(r)) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |c: [&str; 5]| {
        let mut s = String::new();
        for (i, (w, v)) in widths.iter().zip(c).enumerate() {
            let pad = w.saturating_sub(v.chars().count());
            if i >= 2 {
                s.push_str(&" ".repeat(pad));
                s.push_str(v);
            } else {
                s.push_str(v);
                s.push_str(&" ".repeat(pad));
            }
            s.push_str("  ");
        }
        s.trim_end().to_owned() + "\n"
    };
    out.push_str(&line(HEADERS));
    out.push_str(&line(widths.map(|_| "")).replace(' ', "-"));
    let mut previous = "";
    for r in rows {
        if !previous.is_empty() && previous != r.bench {
            out.push('\n');
        }
        previous = &r.bench;
        out.push_str(&line(cells(r)));
    }
    if !legend.is_empty() {
        out.push_str("\nLegend\n");
        for l in legend {
            out.push_str(&format!("- {l}\n"));
        }
    }
    out
}

/// The table as Markdown.
pub fn markdown(title: &str, machine: &[(String, String)], rows: &[Row], legend: &[String]) -> String {
    let esc = |s: &str| s.replace('|', "\\|");
    let mut out = format!("## {title}\n\n");
    for (k, v) in machine {
        out.push_str(&format!("- {k}: {}\n", esc(v)));
    }
    out.push_str("\n| benchmark | parameter | ours | baseline | ratio |\n|---|---|--:|--:|--:|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            esc(&r.bench),
            esc(&r.param),
            esc(&r.ours),
            esc(&r.base),
            esc(&r.ratio)
        ));
    }
    if !legend.is_empty() {
        out.push_str("\nLegend:\n\n");
        for l in legend {
            out.push_str(&format!("- {}\n", esc(l)));
        }
    }
    out
}
