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
use super::output;
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

/// The one duration syntax of every `kimp` command (`30s`, `500ms`, `10m`, `2h`).
pub use crate::research::timefmt::parse_duration_arg as parse_duration;

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

/// Widest line of the live view: it must fit a 100-column terminal without wrapping
/// (a wrapped line breaks the in-place redraw).
pub const VIEW_COLS: usize = 100;
/// Open pairs listed one per line in the live view; more are counted.
const VIEW_PAIRS: usize = 3;

/// The live view's lines for `b`: a header, the totals, one line per coin, one per open pair (up to
/// [`VIEW_PAIRS`]) and a halt line, each at most [`VIEW_COLS`] columns.
pub fn view(b: &Board, names: &[String], elapsed: Duration) -> Vec<String> {
    let state = match b.trading {
        Some(TradingState::Active) => "active",
        Some(TradingState::Halted(_)) => "HALTED",
        Some(TradingState::Reconciling) | None => "starting",
    };
    let frame = b.latency.get("frame").map_or((0, 0), |l| (l.p50_ns, l.p99_ns));
    let mut lines = vec![
        format!(
            "[{:>6.1}s] {state:<8} | loop p50 {} p99 {}",
            elapsed.as_secs_f64(),
            short_ns(frame.0),
            short_ns(frame.1),
        ),
        format!(
            "  pairs open {} closed {} | realised {:+.0} KRW",
            b.open_pairs.len(),
            b.pnl.closed,
            b.pnl.realized.net().to_f64(),
        ),
    ];
    let name = |i: usize| names.get(i).map_or("?", String::as_str);
    for (i, k) in b.kimp.iter().enumerate() {
        if let Some(k) = k {
            lines.push(format!(
                "  {:<6} mid {:+.2}%  sell {:+.2}%  buy {:+.2}%  fx {:.1}  funding {:+.4}%",
                name(i),
                k.mid_bps / 100.0,
                k.sell_bps / 100.0,
                k.buy_bps / 100.0,
                k.fx.to_f64(),
                k.funding_e8 as f64 / 1e6,
            ));
        }
    }
    for p in b.open_pairs.values().take(VIEW_PAIRS) {
        lines.push(format!(
            "  pair {:<6} {:<6} {:<8} {:?} entry {:+.2}%  qty {:.6}",
            p.pair,
            name(p.coin as usize),
            format!("{:?}", p.to),
            p.direction,
            p.entry_premium_bps / 100.0,
            p.pos_u.to_f64().abs(),
        ));
    }
    if b.open_pairs.len() > VIEW_PAIRS {
        lines.push(format!("  ... and {} more open pairs", b.open_pairs.len() - VIEW_PAIRS));
    }
    if let Some(TradingState::Halted(h)) = b.trading {
        lines.push(format!(
            "  HALTED: {} (no new pairs until resumed)",
            kimp_sidecars::labels::halt_reasons(h, ", ")
        ));
    }
    lines
}

/// `ns` in the unit that keeps it short: `850ns`, `12.3us`, `4.1ms`, `2.0s`.
fn short_ns(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{:.1}us", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}ms", ns as f64 / 1e6),
        _ => format!("{:.1}s", ns as f64 / 1e9),
    }
}

/// Draws the live view: in place on a terminal (cursor back up over the last frame,
/// each line cleared), one frame after the other otherwise (a pipe or a file).
#[derive(Debug)]
struct LiveView {
    terminal: bool,
    drawn: usize,
}

impl LiveView {
    /// Draws `lines`; false when stderr is closed.
    fn draw(&mut self, lines: &[String]) -> bool {
        let s = self.frame(lines);
        output::err(&s)
    }

    /// The bytes that replace the last frame with `lines`.
    fn frame(&mut self, lines: &[String]) -> String {
        let mut s = String::new();
        if self.terminal && self.drawn > 0 {
            s.push_str(&format!("\x1b[{}F", self.drawn));
        }
        for l in lines {
            if self.terminal {
                s.push_str("\x1b[2K");
            }
            s.push_str(l);
            s.push('\n');
        }
        if self.terminal {
            s.push_str("\x1b[J"); // a shorter frame leaves no stale lines below
        }
        self.drawn = lines.len();
        s
    }
}

/// Sets a flag when dropped: a scope that unwinds still stops its helper threads.
struct RaiseOnDrop<'a>(&'a AtomicBool);

impl Drop for RaiseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A pair still open at the end of the demo, marked at mid.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenPair {
    /// Pair id.
    pub pair: u32,
    /// Coin name.
    pub coin: String,
    /// State.
    pub state: kimp_core::pair::PairState,
    /// Hedged quantity, base units.
    pub qty: f64,
    /// Executable premium at entry, bps.
    pub entry_premium_bps: f64,
    /// Marked at the books' mids, no exit fees, KRW ([`kimp_core::pair::Pair::marked_krw`]).
    pub unrealized_krw: f64,
}

/// The engine's open pairs, marked at the mids of its books (FX at the FX book's mid).
pub fn open_pairs(e: &kimp_core::engine::Engine, m: &kimp_core::engine::Markets) -> Vec<OpenPair> {
    let mid = |i| e.book(i).and_then(|b| b.mid_f64()).unwrap_or(0.0);
    let fx = m.fx.map_or(0.0, mid);
    m.coins
        .iter()
        .enumerate()
        .filter_map(|(c, spec)| {
            let p = e.pair(c as u16)?;
            Some(OpenPair {
                pair: p.id,
                coin: spec.name.as_str().to_owned(),
                state: p.state,
                qty: p.hedged_qty().to_f64(),
                entry_premium_bps: p.entry_premium_bps,
                unrealized_krw: p.marked_krw(mid(spec.upbit), mid(spec.binance), fx),
            })
        })
        .collect()
}

/// Runs the demo. A closed output or a panic in any thread (simulator or runtime) stops it
/// like Ctrl-C does; a panic then ends it with an error naming the thread.
pub fn demo(args: DemoArgs) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    output::watch(&stop);
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
            // However the loop ends, the demo ends with it.
            let _stop = RaiseOnDrop(&loop_stop);
            run::pin(core)?;
            tl.run(&loop_stop, drain)?;
            Ok(tl)
        })?;
    let start = Instant::now();
    let director_stop = AtomicBool::new(false);
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let every = Duration::from_millis(if terminal { 250 } else { 1_000 });
    std::thread::scope(|scope| -> Result<()> {
        let _director = RaiseOnDrop(&director_stop);
        // Its panic is reported by `output` once the demo has stopped; caught here so the
        // scope does not re-raise it on the main thread.
        let director = std::thread::Builder::new().name("kimp-demo-premium".into());
        director.spawn_scoped(scope, || {
            let run = || drive_premium(&sim, &director_stop);
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
        })?;
        output::err(&format!(
            "kimp demo: simulator at {} and {}\nkimp demo: data in {}\n",
            sim.urls.upbit_rest,
            sim.urls.binance_rest,
            run_dir.display()
        ));
        let mut live = LiveView { terminal, drawn: 0 };
        let mut next = start + every;
        while !stop.load(Ordering::Relaxed) {
            // Short naps: a stop (Ctrl-C, closed output, a panic) is seen within 50 ms.
            std::thread::sleep(Duration::from_millis(50));
            if Instant::now() < next {
                continue;
            }
            next += every;
            if !live.draw(&view(&board.snapshot(), &names, start.elapsed())) {
                break; // the output is closed: `output` raised the stop flag
            }
            if args.duration.is_some_and(|d| start.elapsed() >= d) {
                stop.store(true, Ordering::Relaxed);
            }
        }
        Ok(())
    })?;
    let joined = trading.join();
    drop(rt.control_tx);
    if let Some(s) = syncer {
        let _ = s.join();
    }
    if let Some(p) = output::panicked() {
        sidecars.shutdown();
        sim.shutdown();
        return Err(anyhow!("the demo stopped: {p}"));
    }
    let tl = joined.map_err(|_| anyhow!("the trading thread panicked"))??;
    let totals = tl.core.metrics.totals();
    let stalls = tl.core.metrics.stalls_total;
    let engine = *tl.core.engine.stats();
    let wire = tl.orders.stats.wire_orders;
    let realized = tl.core.engine.realized_krw() as f64 / kimp_core::units::SCALE as f64;
    let open = open_pairs(&tl.core.engine, &tl.core.markets);
    drop(tl);
    sidecars.shutdown();
    sim.shutdown();
    if output::closed() {
        return Ok(()); // nobody is reading the summary
    }
    let opened = count_opened(&run_dir.join("journal"));
    let summary =
        Summary { stalls, opened, engine, wire, realized, open, elapsed: start.elapsed() };
    output::out(&summary.text(&totals, args.json));
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

/// What the demo prints at the end.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Loop turns over `runtime.cycle_us_max`.
    pub stalls: u64,
    /// Pairs hedged at least once.
    pub opened: u64,
    /// Engine counters.
    pub engine: kimp_core::engine::Stats,
    /// Orders written to a socket.
    pub wire: u64,
    /// Realised net PnL, KRW.
    pub realized: f64,
    /// Pairs still open, marked at mid.
    pub open: Vec<OpenPair>,
    /// Run time.
    pub elapsed: Duration,
}

impl Summary {
    /// Unrealised PnL of the open pairs, KRW.
    pub fn unrealized(&self) -> f64 {
        self.open.iter().map(|p| p.unrealized_krw).sum()
    }

    /// The summary text; with `json`, one JSON object on the last line.
    pub fn text(&self, totals: &[StageSummary; STAGES], json: bool) -> String {
        use std::fmt::Write;
        let (engine, wire) = (self.engine, self.wire);
        let mut s = String::new();
        let _ = writeln!(s, "kimp demo summary ({:.1}s)", self.elapsed.as_secs_f64());
        let _ = writeln!(
            s,
            "  pairs opened {}  closed {}  realised PnL {:+.0} KRW",
            self.opened, engine.pairs_closed, self.realized
        );
        let _ = writeln!(
            s,
            "  open pairs {}  unrealised PnL {:+.0} KRW (at mid, before exit fees)",
            self.open.len(),
            self.unrealized()
        );
        for p in &self.open {
            let _ = writeln!(
                s,
                "    pair {} {} {:?} qty {:.6} entry {:+.2}% unrealised {:+.0} KRW",
                p.pair,
                p.coin,
                p.state,
                p.qty,
                p.entry_premium_bps / 100.0,
                p.unrealized_krw
            );
        }
        let _ = writeln!(
            s,
            "  orders sent {wire}  intents {}  risk rejects {}  events {}",
            engine.intents, engine.risk_rejects, engine.events
        );
        let _ = writeln!(s, "  per stage (ns)        count      p50      p99    p99.9      max");
        for (i, name) in super::metrics::STAGE_NAMES.iter().enumerate() {
            let t = totals[i];
            let _ = writeln!(
                s,
                "    {name:<16} {:>9} {:>8} {:>8} {:>8} {:>8}",
                t.count, t.p50, t.p99, t.p999, t.max
            );
        }
        let _ = writeln!(s, "  duty cycle: {} turns over runtime.cycle_us_max", self.stalls);
        if json {
            let frame = totals[Stage::Frame as usize];
            let t2o = totals[Stage::TickToOrder as usize];
            let open: Vec<_> = self
                .open
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "pair": p.pair,
                        "coin": p.coin,
                        "state": format!("{:?}", p.state),
                        "qty": p.qty,
                        "entry_premium_bps": p.entry_premium_bps,
                        "unrealized_pnl_krw": p.unrealized_krw.round() as i64,
                    })
                })
                .collect();
            let j = serde_json::json!({
                "pairs_opened": self.opened,
                "pairs_closed": engine.pairs_closed,
                "realized_pnl_krw": self.realized.round() as i64,
                "open_pairs": self.open.len(),
                "unrealized_pnl_krw": self.unrealized().round() as i64,
                "open": open,
                "orders_sent": wire,
                "intents": engine.intents,
                "events": engine.events,
                "loop_p50_ns": frame.p50,
                "loop_p99_ns": frame.p99,
                "tick_to_order_p50_ns": t2o.p50,
                "tick_to_order_p99_ns": t2o.p99,
                "elapsed_ms": self.elapsed.as_millis() as u64,
            });
            let _ = writeln!(s, "{j}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kimp_core::action::{HaltReason, KimpSample, PairRecord};
    use kimp_core::config::Direction;
    use kimp_core::event::FxSource;
    use kimp_core::pair::PairState;
    use kimp_core::units::{Nanos, Price, Qty};
    use kimp_sidecars::store::LatencySample;

    /// The widest board the default config can show: its one coin, `max_open_pairs` = 3
    /// pairs (and one more, to see the overflow line), halted, long numbers everywhere.
    fn worst_board(pairs: u32) -> Board {
        let mut b = Board {
            trading: Some(TradingState::halted(HaltReason::OrphanHard)),
            ..Board::default()
        };
        b.kimp = vec![Some(KimpSample {
            coin: 0,
            ts: Nanos(0),
            mid_bps: -12_345.6,
            sell_bps: -12_345.6,
            buy_bps: -12_345.6,
            fx: Price::from_f64(123_456.7).unwrap(),
            fx_source: FxSource::UpbitUsdt,
            qty: Qty(1),
            funding_e8: -1_000_000_000,
        })];
        for i in 0..pairs {
            let id = 4_000_000_000 - i;
            b.open_pairs.insert(
                id,
                PairRecord {
                    pair: id,
                    coin: 0,
                    direction: Direction::BuyDiscount,
                    from: PairState::Opening,
                    to: PairState::OneLeg,
                    pos_u: Qty::from_f64(-12_345.678_912).unwrap(),
                    pos_b: Qty(0),
                    entry_premium_bps: -12_345.6,
                    fx_entry: Price(0),
                    pnl: Default::default(),
                },
            );
        }
        b.pnl.closed = 4_000_000_000;
        b.latency.insert(
            "frame",
            LatencySample {
                ts: Nanos(0),
                stage: "frame",
                count: 1,
                p50_ns: 999_999_999_999,
                p99_ns: 999_999_999_999,
                p999_ns: 0,
                max_ns: 0,
            },
        );
        b
    }

    #[test]
    fn every_line_fits_100_columns_for_the_default_config() {
        let names = vec!["BTC".to_owned()];
        for pairs in [0, 1, 3, 4] {
            let lines = view(&worst_board(pairs), &names, Duration::from_secs(99_999));
            for l in &lines {
                assert!(l.chars().count() <= VIEW_COLS, "{} columns: {l}", l.chars().count());
            }
            // Header, totals, the coin, up to 3 pairs (+ overflow), the halt.
            let listed = pairs.min(3) as usize + usize::from(pairs > 3);
            assert_eq!(lines.len(), 4 + listed, "{lines:#?}");
        }
    }

    #[test]
    fn a_terminal_frame_redraws_over_the_last_one() {
        let lines = vec!["a".to_owned(), "b".to_owned()];
        let mut tty = LiveView { terminal: true, drawn: 0 };
        assert_eq!(tty.frame(&lines), "\x1b[2Ka\n\x1b[2Kb\n\x1b[J");
        // Back up over the two lines drawn, clear each, clear what a longer frame left.
        assert_eq!(tty.frame(&lines[..1]), "\x1b[2F\x1b[2Ka\n\x1b[J");
        assert_eq!(tty.frame(&lines), "\x1b[1F\x1b[2Ka\n\x1b[2Kb\n\x1b[J");
        // A pipe or a file gets plain lines, one frame after the other.
        let mut pipe = LiveView { terminal: false, drawn: 0 };
        assert_eq!(pipe.frame(&lines), "a\nb\n");
        assert_eq!(pipe.frame(&lines), "a\nb\n");
    }
}
