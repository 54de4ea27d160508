//! `one-scaleway-bench`: issue 9's benchmark suite, one command, one table.
//!
//! ```text
//! cargo build --release -p scaleway-ipam -p scaleway-vnm -p scaleway-provision
//! sudo cargo run --release -p one-scaleway-bench [-- --quick] [-- --only 1,3] [-- --out FILE]
//! ```
//!
//! It runs the release binaries of the drivers found beside its own
//! executable, as OpenNebula runs them, and prints one table: benchmark,
//! parameter, our figure, the baseline measured in the same run, the ratio;
//! with the machine in a header and what each line means in a legend. None
//! of it is a pass/fail test. See README.md.
//!
//! The same executable is also, when called through a link with their
//! names, the stand-ins for `ip`, `nft`, `sysctl`, `vtysh`, `frr-reload.py`
//! and SSH (`shim`), and with `__measure SPEC` the process that measures
//! one action kind (`measure`).

mod b1_overhead;
mod b2_calls;
mod b3_nat;
mod b4_provision;
mod b5_evpn;
mod cloud;
mod lab;
mod measure;
mod replay;
mod shim;
mod table;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use crate::table::Row;
use crate::util::Bins;

/// Runs the benchmarks of issue 9 against the release drivers and prints one table.
#[derive(Debug, Parser)]
#[command(
    name = "one-scaleway-bench",
    version,
    after_help = "\
Build the drivers first, in the same target folder: cargo build --release (or -p scaleway-ipam -p scaleway-vnm \
-p scaleway-provision). Benchmarks 1 (host actions), 3 and 5 need root, iproute2 and nftables; 3's baseline needs \
iptables (Debian: apt-get install iptables); 5 and the scaleway_evpn rows of 1 need frr and frr-pythontools. What \
cannot run is listed as skipped, with what to install. Everything runs in network namespaces the bench creates \
and deletes (named osbench-*), never in the root namespace."
)]
struct Cli {
    /// Fewer runs and sizes (under 3 minutes).
    #[arg(long)]
    quick: bool,
    /// Only these benchmarks (comma-separated numbers, 1 to 5).
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    only: Vec<u8>,
    /// Also write the table as Markdown to FILE.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Runs per action in benchmark 1 (default 100, --quick 20).
    #[arg(long, value_name = "R")]
    runs: Option<usize>,
    /// Emulator speed for benchmark 4 (default 0.01: OS install 3.55 s).
    #[arg(long, value_name = "S", default_value_t = 0.01)]
    provision_speed: f64,
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let name = argv
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if shim::is_shim(&name) {
        return ExitCode::from(shim::main(&name, argv.get(1..).unwrap_or(&[])));
    }
    if argv.get(1).map(String::as_str) == Some("__measure") {
        let spec = argv.get(2).map(PathBuf::from).unwrap_or_default();
        return ExitCode::from(measure::child_main(&spec));
    }
    let cli = Cli::parse();
    match suite(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("one-scaleway-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn suite(cli: &Cli) -> anyhow::Result<()> {
    let started = Instant::now();
    if let Some(bad) = cli.only.iter().find(|n| !(1..=5).contains(*n)) {
        anyhow::bail!("--only {bad}: the benchmarks are 1 to 5");
    }
    let (bins, warnings) = Bins::locate()?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let wanted = |n: u8| cli.only.is_empty() || cli.only.contains(&n);
    let root = util::is_root();
    let ip_nft = util::have("ip") && util::have("nft");
    let frr = lab::frr_installed();
    if root {
        for ns in util::sweep_leftovers() {
            eprintln!("removed the namespace {ns} a killed earlier run left");
        }
    }
    let machine = table::machine();
    let quick = cli.quick;
    let runs = cli.runs.unwrap_or(if quick { 20 } else { 100 }).max(1);
    let mut rows: Vec<Row> = Vec::new();
    let mut legend: Vec<String> = Vec::new();
    let progress = |n: u8, what: &str| eprintln!("[{:>5.1} s] benchmark {n}: {what}", started.elapsed().as_secs_f64());
    let privileged = |bench: &str, what: &str| -> Option<Row> {
        if !root {
            Some(Row::skipped(bench, &format!("{what} needs root (sudo)")))
        } else if !ip_nft {
            Some(Row::skipped(bench, &format!("{what} needs iproute2 and nftables")))
        } else {
            None
        }
    };
    if wanted(1) {
        progress(1, &format!("action overhead, {runs} runs each"));
        let (r, l) = b1_overhead::run(&bins, runs, root && ip_nft, frr);
        rows.extend(r);
        legend.extend(l);
    }
    if wanted(2) {
        progress(2, "Scaleway calls per VM lifecycle");
        rows.extend(b2_calls::run(&bins));
        legend.extend(b2_calls::legend());
    }
    if wanted(3) {
        let sizes: &[u32] = if quick {
            &[1, 100, 1000]
        } else {
            &[1, 100, 1000, 5000, 10000]
        };
        progress(3, &format!("host apply, N = {sizes:?}"));
        match privileged("3 host apply", "a namespace") {
            Some(skip) => rows.push(skip),
            None => rows.extend(b3_nat::run(&bins, sizes, if quick { 3 } else { 9 })),
        }
        legend.extend(b3_nat::legend());
    }
    if wanted(4) {
        let ks: &[u32] = if quick { &[1, 5] } else { &[1, 5, 10, 20] };
        progress(4, &format!("provisioning, K = {ks:?}"));
        rows.extend(b4_provision::run(&bins, ks, cli.provision_speed));
        legend.extend(b4_provision::legend(cli.provision_speed));
    }
    if wanted(5) {
        progress(5, "EVPN first packet");
        match privileged("5 EVPN first packet", "the EVPN lab") {
            Some(skip) => rows.push(skip),
            None if !frr => rows.push(Row::skipped(
                "5 EVPN first packet",
                "FRR is not installed (Debian: apt-get install frr frr-pythontools)",
            )),
            None => rows.extend(b5_evpn::run(&bins, if quick { 1 } else { 5 })),
        }
        legend.extend(b5_evpn::legend());
    }
    legend.push("ratio = ours / baseline (below 1: ours is cheaper or faster)".into());
    let mut machine = machine;
    machine.push((
        "run".into(),
        format!(
            "{}, {:.0} s, drivers from {}",
            if quick { "--quick" } else { "default settings" },
            started.elapsed().as_secs_f64(),
            bins.vnm.parent().map_or(String::new(), |p| p.display().to_string())
        ),
    ));
    let title = "one-scaleway benchmarks (issue 9)";
    println!("{}", table::text(title, &machine, &rows, &legend));
    if let Some(out) = &cli.out {
        std::fs::write(out, table::markdown(title, &machine, &rows, &legend))?;
        eprintln!("wrote {}", out.display());
    }
    let failed = rows.iter().filter(|r| r.is_failed()).count();
    if failed > 0 {
        anyhow::bail!("{failed} row(s) of the table FAILED: their benchmark did not run to the end");
    }
    Ok(())
}
