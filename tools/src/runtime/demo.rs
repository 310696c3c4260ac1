//! `kimp demo`: the venue simulator, the runtime against it and a live terminal view, in
//! one process. The market is synthetic and accelerated so that the premium crosses the
//! entry and exit thresholds within the first minute.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use clap::Args;
use kimp_core::action::{Alert, Telemetry};
use kimp_gateways::sign::Secret;

use super::config::Config;
use super::metrics::{STAGES, Stage, StageSummary};
use super::run::{self, BuildOptions};
use super::secrets::Keys;
use super::trading_loop::{Counters, Out};
use crate::sim::config::{DEFAULT_KEY, DEFAULT_SECRET, SimConfig};
use crate::sim::{SimHandle, Simulator};

/// `kimp demo` arguments.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Configuration file (same format as `kimp run`); default: the built-in demo config.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Stop after this long and print a summary (e.g. `30s`, `2m`); default: until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Print the summary as one JSON object on the last stdout line.
    #[arg(long)]
    pub json: bool,
    /// Seed of the simulated market.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Simulated time per real time.
    #[arg(long, default_value_t = 60.0)]
    pub speed: f64,
}

/// Parses `30s`, `500ms`, `2m`, `1h` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .trim()
        .split_at(s.trim().find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.trim().len()));
    let v: f64 =
        num.trim().parse().map_err(|_| format!("{s:?} is not a duration like 30s, 2m or 500ms"))?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1_000.0,
        "m" => v * 60.0,
        "h" => v * 3_600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (use ms, s, m or h)")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("{s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// What the terminal view and the summary show.
#[derive(Debug, Clone, Default)]
struct View {
    kimp: Vec<Option<kimp_core::action::KimpSample>>,
    pairs_opened: u64,
    pairs_closed: u64,
    realized_krw: f64,
    last_loop: Option<super::metrics::LoopSummary>,
    counters: Counters,
    halted: Option<String>,
}

fn observe(rx: crossbeam_channel::Receiver<Out>, view: Arc<Mutex<View>>, coins: usize) {
    while let Ok(o) = rx.recv() {
        let mut v = view.lock().unwrap_or_else(|p| p.into_inner());
        if v.kimp.len() < coins {
            v.kimp.resize(coins, None);
        }
        match o {
            Out::Telemetry(Telemetry::Kimp(k)) => {
                if let Some(slot) = v.kimp.get_mut(k.coin as usize) {
                    *slot = Some(k);
                }
            }
            Out::Alert(Alert::PairOpened { .. }) => v.pairs_opened += 1,
            Out::Alert(Alert::PairClosed { pnl, .. }) => {
                v.pairs_closed += 1;
                v.realized_krw += pnl.net().to_f64();
            }
            Out::Alert(Alert::Halted(r)) => v.halted = Some(format!("{r:?}")),
            Out::Alert(a) => tracing::info!(alert = ?a, "alert"),
            Out::Loop(l) => v.last_loop = Some(l),
            Out::Counters(c) => v.counters = c,
            Out::Telemetry(_) => {}
        }
    }
}

/// The simulator configuration of the demo: the premium hovers around the 3 % entry
/// threshold with jumps, so pairs open and (after it falls back) close within a minute.
pub fn demo_sim(seed: u64, speed: f64) -> SimConfig {
    let mut s = SimConfig { seed, speed, ..SimConfig::default() };
    for c in &mut s.coins {
        c.premium_mean = 0.03;
    }
    s.market.premium_vol_per_sqrt_h = 0.012;
    s.market.premium_jumps_per_h = 12.0;
    s.funding_interval_ms = 3_600_000;
    s
}

/// Points a configuration at a running simulator and gives it a fresh journal and store.
pub fn point_at(cfg: &mut Config, sim: &SimHandle, run_dir: &std::path::Path) {
    cfg.venues.upbit.rest_url = sim.urls.upbit_rest.clone();
    cfg.venues.upbit.ws_url = sim.urls.upbit_ws.clone();
    cfg.venues.binance.rest_url = sim.urls.binance_rest.clone();
    cfg.venues.binance.ws_url = sim.urls.binance_ws.clone();
    cfg.runtime.journal_dir = run_dir.join("journal");
    cfg.store.dir = run_dir.join("ilp");
}

/// The simulator's demo keys.
pub fn sim_keys() -> Keys {
    Keys {
        upbit_access: Secret::new(DEFAULT_KEY),
        upbit_secret: Secret::new(DEFAULT_SECRET),
        binance_key: Secret::new(DEFAULT_KEY),
        binance_secret: Secret::new(DEFAULT_SECRET),
    }
}

fn line(v: &View, names: &[String], elapsed: Duration) -> String {
    let mut s = format!("[{:>5.1}s]", elapsed.as_secs_f64());
    for (i, k) in v.kimp.iter().enumerate() {
        if let Some(k) = k {
            s.push_str(&format!(
                " {} mid {:+.2}% sell {:+.2}% buy {:+.2}% fx {:.1} fund {:+.4}% |",
                names.get(i).map_or("?", String::as_str),
                k.mid_bps / 100.0,
                k.sell_bps / 100.0,
                k.buy_bps / 100.0,
                k.fx.to_f64(),
                k.funding_e8 as f64 / 1e6,
            ));
        }
    }
    let (p50, p99) = v.last_loop.map_or((0, 0), |l| {
        (l.stages[Stage::Frame as usize].p50, l.stages[Stage::Frame as usize].p99)
    });
    s.push_str(&format!(
        " pairs open {} closed {} | pnl {:+.0} KRW | orders {} | loop p50 {:.1}us p99 {:.1}us",
        v.pairs_opened.saturating_sub(v.pairs_closed),
        v.pairs_closed,
        v.realized_krw,
        v.counters.orders.wire_orders,
        p50 as f64 / 1e3,
        p99 as f64 / 1e3,
    ));
    if let Some(h) = &v.halted {
        s.push_str(&format!(" | HALTED ({h})"));
    }
    s
}

/// Runs the demo.
pub fn demo(args: DemoArgs) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut cfg = match &args.config {
        Some(p) => Config::load(p).map_err(|e| anyhow!("{e}"))?,
        None => Config::parse(
            include_str!("../../../config/demo.toml"),
            std::path::Path::new("config/demo.toml"),
        )
        .map_err(|e| anyhow!("{e}"))?,
    };
    let sim = Simulator::start(demo_sim(args.seed, args.speed))
        .map_err(|e| anyhow!("starting the simulator: {e}"))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let run_dir = PathBuf::from("data/demo").join(format!("run-{stamp}"));
    point_at(&mut cfg, &sim, &run_dir);
    let mut rt = run::build(&cfg, &sim_keys(), &BuildOptions::default())?;
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    let syncer = rt.spawn_syncer(Duration::from_millis(cfg.runtime.journal_sync_ms), stop.clone());
    let names: Vec<String> = cfg.coins.iter().map(|c| c.name.clone()).collect();
    let view = Arc::new(Mutex::new(View::default()));
    let observer = {
        let (rx, view, n) = (rt.out_rx.clone(), view.clone(), names.len());
        std::thread::Builder::new()
            .name("kimp-observer".into())
            .spawn(move || observe(rx, view, n))?
    };
    let loop_stop = stop.clone();
    let drain = Duration::from_millis(cfg.runtime.shutdown_ms);
    let core = cfg.runtime.core;
    let mut tl = rt.tl;
    let trading =
        std::thread::Builder::new().name("kimp-loop".into()).spawn(move || -> Result<_> {
            run::pin(core)?;
            tl.run(&loop_stop, drain)?;
            Ok(tl)
        })?;
    let start = Instant::now();
    eprintln!(
        "kimp demo: simulator at {} and {}; data in {}",
        sim.urls.upbit_rest,
        sim.urls.binance_rest,
        run_dir.display()
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(1_000));
        let v = view.lock().unwrap_or_else(|p| p.into_inner()).clone();
        eprintln!("{}", line(&v, &names, start.elapsed()));
        if args.duration.is_some_and(|d| start.elapsed() >= d) {
            stop.store(true, Ordering::Relaxed);
        }
    }
    let tl = trading.join().map_err(|_| anyhow!("the trading thread panicked"))??;
    drop(rt.control_tx);
    if let Some(s) = syncer {
        let _ = s.join();
    }
    let totals = tl.core.metrics.totals();
    let engine = *tl.core.engine.stats();
    let wire = tl.orders.stats.wire_orders;
    let realized = tl.core.engine.realized_krw() as f64 / kimp_core::units::SCALE as f64;
    drop(tl);
    let _ = observer.join();
    sim.shutdown();
    let v = view.lock().unwrap_or_else(|p| p.into_inner()).clone();
    print_summary(&args, &v, &totals, engine, wire, realized, start.elapsed());
    Ok(())
}

fn print_summary(
    args: &DemoArgs,
    v: &View,
    totals: &[StageSummary; STAGES],
    engine: kimp_core::engine::Stats,
    wire: u64,
    realized: f64,
    elapsed: Duration,
) {
    let frame = totals[Stage::Frame as usize];
    let t2o = totals[Stage::TickToOrder as usize];
    println!("kimp demo summary ({:.1}s)", elapsed.as_secs_f64());
    println!(
        "  pairs opened {}  closed {}  realised PnL {:+.0} KRW",
        v.pairs_opened, engine.pairs_closed, realized
    );
    println!(
        "  orders sent {wire}  intents {}  risk rejects {}  events {}",
        engine.intents, engine.risk_rejects, engine.events
    );
    println!("  frame latency p50 {} ns  p99 {} ns  (n = {})", frame.p50, frame.p99, frame.count);
    println!("  tick-to-order p50 {} ns  p99 {} ns  (n = {})", t2o.p50, t2o.p99, t2o.count);
    if args.json {
        println!(
            "{{\"pairs_opened\":{},\"pairs_closed\":{},\"realized_pnl_krw\":{:.0},\"orders_sent\":{},\"intents\":{},\"events\":{},\"loop_p50_ns\":{},\"loop_p99_ns\":{},\"tick_to_order_p50_ns\":{},\"tick_to_order_p99_ns\":{},\"elapsed_ms\":{}}}",
            v.pairs_opened,
            engine.pairs_closed,
            realized,
            wire,
            engine.intents,
            engine.events,
            frame.p50,
            frame.p99,
            t2o.p50,
            t2o.p99,
            elapsed.as_millis()
        );
    }
}
