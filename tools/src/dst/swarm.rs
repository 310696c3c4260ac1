//! `kimp sim swarm --seeds N [--start S]`: many seeded runs, each with its own fault mix,
//! and a summary (seeds run, failures with their seeds, simulated hours, figures).

use std::time::Instant;

use clap::Args;

use super::check::pct;
use super::run::{Outcome, RunConfig, run_seed};

/// `kimp sim swarm` arguments.
#[derive(Debug, Clone, Args)]
pub struct SwarmArgs {
    /// Number of seeds to run.
    #[arg(long, default_value_t = 100)]
    pub seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 1)]
    pub start: u64,
    /// Safety phase (faults on) per seed, simulated seconds.
    #[arg(long, default_value_t = 60)]
    pub safety_s: u64,
    /// Liveness deadline per seed, simulated seconds.
    #[arg(long, default_value_t = 60)]
    pub liveness_s: u64,
    /// Print every seed, not only failures.
    #[arg(long)]
    pub verbose: bool,
    /// Trace every engine event and action to stderr (use with --seeds 1).
    #[arg(long)]
    pub trace: bool,
}

/// Aggregated results of many runs.
#[derive(Debug, Default)]
pub struct Summary {
    /// Seeds run.
    pub seeds: u64,
    /// Failed seeds.
    pub failures: Vec<u64>,
    /// Simulated ms in total.
    pub sim_ms: u64,
    /// All orphan durations, ms.
    pub orphan_ms: Vec<u64>,
    /// All resync times, ms.
    pub resync_ms: Vec<u64>,
    /// All halt latencies, ms.
    pub halt_latency_ms: Vec<u64>,
    /// All unknown-resolution times, ms.
    pub unknown_resolve_ms: Vec<u64>,
    /// Liveness convergence times, ms.
    pub converge_ms: Vec<u64>,
    /// Totals.
    pub intents: u64,
    /// Orders placed.
    pub places: u64,
    /// Fills journaled.
    pub fills: u64,
    /// Crashes.
    pub crashes: u64,
    /// Unknown outcomes.
    pub unknowns: u64,
    /// Resyncs.
    pub resyncs: u64,
    /// Decisions.
    pub decisions: u64,
    /// Duplicates (must be 0).
    pub duplicates: u64,
    /// Lost fill quantity (must be 0).
    pub lost_fill_qty: i64,
    /// Stale decisions (must be 0).
    pub stale_decisions: u64,
    /// Largest exchange-time age of a book used in a decision, ms.
    pub max_decision_age_ms: u64,
}

impl Summary {
    /// Adds one run.
    pub fn add(&mut self, o: &Outcome) {
        self.seeds += 1;
        if !o.ok() {
            self.failures.push(o.seed);
        }
        self.sim_ms += o.sim_ms;
        let f = &o.fig;
        self.orphan_ms.extend(&f.orphan_ms);
        self.resync_ms.extend(&f.resync_ms);
        self.halt_latency_ms.extend(&f.halt_latency_ms);
        self.unknown_resolve_ms.extend(&f.unknown_resolve_ms);
        if o.converged {
            self.converge_ms.push(f.converge_ms);
        }
        self.intents += f.intents;
        self.places += f.places;
        self.fills += f.fills;
        self.crashes += f.crashes;
        self.unknowns += f.unknowns;
        self.resyncs += f.resyncs;
        self.decisions += f.decisions;
        self.duplicates += f.duplicates;
        self.lost_fill_qty += f.lost_fill_qty;
        self.stale_decisions += f.stale_decisions;
        self.max_decision_age_ms = self.max_decision_age_ms.max(f.max_decision_age_ms);
    }

    /// The summary as text.
    pub fn report(&self) -> String {
        let d = |v: &[u64]| {
            format!(
                "n={} p50={} p99={} max={}",
                v.len(),
                pct(v, 50.0),
                pct(v, 99.0),
                v.iter().max().copied().unwrap_or(0)
            )
        };
        format!(
            "seeds run {}  failures {}{}\nsimulated hours {:.2}\n\
             intents {}  orders {}  fills {}  crashes+restarts {}  unknown outcomes {}  resyncs {}  decisions {}\n\
             duplicates {}  lost fill qty {}  decisions on a bad book {}\n\
             orphan duration ms {}\nresync ms {}\nhalt latency ms (hard deadline → halted) {}\n\
             unknown → resolved ms {}\nliveness: faults off → flat/hedged+reconciled ms {}\n\
             max exchange-time age of a book used in a decision ms {}",
            self.seeds,
            self.failures.len(),
            if self.failures.is_empty() {
                String::new()
            } else {
                format!(" (seeds {:?})", self.failures)
            },
            self.sim_ms as f64 / 3_600_000.0,
            self.intents,
            self.places,
            self.fills,
            self.crashes,
            self.unknowns,
            self.resyncs,
            self.decisions,
            self.duplicates,
            self.lost_fill_qty,
            self.stale_decisions,
            d(&self.orphan_ms),
            d(&self.resync_ms),
            d(&self.halt_latency_ms),
            d(&self.unknown_resolve_ms),
            d(&self.converge_ms),
            self.max_decision_age_ms,
        )
    }
}

/// Runs seeds `start .. start + seeds` and prints failures and the summary; fails when
/// any seed failed.
pub fn run(args: &SwarmArgs) -> anyhow::Result<()> {
    let cfg = RunConfig {
        safety_ms: args.safety_s * 1_000,
        liveness_ms: args.liveness_s * 1_000,
        trace: args.trace,
        ..RunConfig::default()
    };
    let t0 = Instant::now();
    let mut sum = Summary::default();
    for seed in args.start..args.start.saturating_add(args.seeds) {
        let o = run_seed(seed, &cfg);
        if args.verbose || !o.ok() {
            println!("{}", o.line());
        }
        sum.add(&o);
    }
    println!("{}", sum.report());
    println!("wall time {:.1}s", t0.elapsed().as_secs_f64());
    if sum.failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} of {} seeds failed: {:?}", sum.failures.len(), sum.seeds, sum.failures)
    }
}
