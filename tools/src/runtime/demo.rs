//! `kimp demo`: the venue simulator, the runtime against it and a live terminal view, in
//! one process. The market is synthetic and accelerated so that the premium crosses the
//! entry and exit thresholds within the first minute.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use clap::Args;
use kimp_core::action::TradingState;
use kimp_gateways::sign::Secret;
use kimp_sidecars::status::Board;

use super::bridge::Sidecars;
use super::config::Config;
use super::metrics::{STAGES, Stage, StageSummary};
use super::run::{self, BuildOptions};
use super::secrets::Keys;
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
    /// Simulated time per real time (prices and funding; the premium cycle is real time).
    #[arg(long, default_value_t = 1.0)]
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

/// The simulator configuration of the demo: the premium process itself is frozen (no
/// reversion, tiny noise) because [`drive_premium`] moves it along a visible cycle.
pub fn demo_sim(seed: u64, speed: f64) -> SimConfig {
    let mut s = SimConfig { seed, speed, ..SimConfig::default() };
    s.market.premium_reversion_per_h = 0.0;
    s.market.premium_vol_per_sqrt_h = 0.000_5;
    s.market.premium_jumps_per_h = 0.0;
    s.funding_interval_ms = 3_600_000;
    s
}

/// The demo's premium path for coin `i` at `t` seconds: a 20-second cycle between about
/// 2.1 % and 3.7 %, so the 3.0 % entry and a profitable exit both happen every cycle.
pub fn demo_premium(t: f64, i: usize) -> f64 {
    let phase = std::f64::consts::TAU * (t / 20.0) + i as f64 * 1.3;
    0.029 + 0.008 * phase.sin()
}

/// Moves the simulator's premium along [`demo_premium`] until `stop`.
pub fn drive_premium(sim: &SimHandle, stop: &AtomicBool) {
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let t = start.elapsed().as_secs_f64();
        sim.with_world(|w| {
            for (i, c) in w.mkt.coins.iter_mut().enumerate() {
                c.premium = demo_premium(t, i);
            }
        });
        std::thread::sleep(Duration::from_millis(100));
    }
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

fn line(b: &Board, names: &[String], elapsed: Duration) -> String {
    let mut s = format!("[{:>5.1}s]", elapsed.as_secs_f64());
    for (i, k) in b.kimp.iter().enumerate() {
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
    let frame = b.latency.get("frame").map_or((0, 0), |l| (l.p50_ns, l.p99_ns));
    s.push_str(&format!(
        " open pairs {} closed {} | realised {:+.0} KRW | loop p50 {:.1}us p99 {:.1}us",
        b.open_pairs.len(),
        b.pnl.closed,
        b.pnl.realized.net().to_f64(),
        frame.0 as f64 / 1e3,
        frame.1 as f64 / 1e3,
    ));
    for p in b.open_pairs.values() {
        s.push_str(&format!(
            " | pair {} {:?} entry {:+.2}%",
            p.pair,
            p.to,
            p.entry_premium_bps / 100.0
        ));
    }
    if let Some(TradingState::Halted(h)) = b.trading {
        s.push_str(&format!(" | HALTED ({h:?})"));
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
    let sidecars = Sidecars::start(
        &cfg,
        &rt.tl.core.markets,
        rt.tl.clock,
        rt.out_rx.clone(),
        rt.journal_tail,
        rt.control_tx.clone(),
    )?;
    let board = sidecars.board.clone();
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
    let director_stop = AtomicBool::new(false);
    std::thread::scope(|scope| -> Result<()> {
        scope.spawn(|| drive_premium(&sim, &director_stop));
        eprintln!(
            "kimp demo: simulator at {} and {}; data in {}",
            sim.urls.upbit_rest,
            sim.urls.binance_rest,
            run_dir.display()
        );
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(1_000));
            eprintln!("{}", line(&board.snapshot(), &names, start.elapsed()));
            if args.duration.is_some_and(|d| start.elapsed() >= d) {
                stop.store(true, Ordering::Relaxed);
            }
        }
        director_stop.store(true, Ordering::Relaxed);
        Ok(())
    })?;
    let tl = trading.join().map_err(|_| anyhow!("the trading thread panicked"))??;
    drop(rt.control_tx);
    if let Some(s) = syncer {
        let _ = s.join();
    }
    let totals = tl.core.metrics.totals();
    let stalls = tl.core.metrics.stalls_total;
    let engine = *tl.core.engine.stats();
    let wire = tl.orders.stats.wire_orders;
    let realized = tl.core.engine.realized_krw() as f64 / kimp_core::units::SCALE as f64;
    drop(tl);
    sidecars.shutdown();
    sim.shutdown();
    let opened = count_opened(&run_dir.join("journal"));
    print_summary(&args, stalls, opened, &totals, engine, wire, realized, start.elapsed());
    Ok(())
}

/// Pairs that were hedged at least once, from the run's journal.
fn count_opened(dir: &std::path::Path) -> u64 {
    let Ok((_, replay)) = super::journal::Journal::open(dir, 1 << 20) else { return 0 };
    let mut ids = std::collections::BTreeSet::new();
    for (_, e) in &replay.entries {
        if let super::record_codec::Entry::Record(kimp_core::action::Record::Pair(p)) = e
            && p.to == kimp_core::pair::PairState::Hedged
        {
            ids.insert(p.pair);
        }
    }
    ids.len() as u64
}

#[allow(clippy::too_many_arguments)]
fn print_summary(
    args: &DemoArgs,
    stalls: u64,
    opened: u64,
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
        opened, engine.pairs_closed, realized
    );
    println!(
        "  orders sent {wire}  intents {}  risk rejects {}  events {}",
        engine.intents, engine.risk_rejects, engine.events
    );
    println!("  per stage (ns)        count      p50      p99    p99.9      max");
    for (i, name) in super::metrics::STAGE_NAMES.iter().enumerate() {
        let t = totals[i];
        println!(
            "    {name:<16} {:>9} {:>8} {:>8} {:>8} {:>8}",
            t.count, t.p50, t.p99, t.p999, t.max
        );
    }
    println!("  duty cycle: {stalls} turns over runtime.cycle_us_max");
    if args.json {
        println!(
            "{{\"pairs_opened\":{},\"pairs_closed\":{},\"realized_pnl_krw\":{:.0},\"orders_sent\":{},\"intents\":{},\"events\":{},\"loop_p50_ns\":{},\"loop_p99_ns\":{},\"tick_to_order_p50_ns\":{},\"tick_to_order_p99_ns\":{},\"elapsed_ms\":{}}}",
            opened,
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
