//! Shared helpers for the end-to-end and fault tests: the venue simulator in-process, the
//! real runtime (gateways, loop, journal) pointed at it on loopback, an observer of the
//! loop's alerts and counters, and the checks every fault scenario must pass (no client
//! id sent twice, every wire order journaled, no lost fill, positions equal the venues').

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kimp::runtime::clock::Clock;
use kimp::runtime::config::Config;
use kimp::runtime::demo::{demo_sim, point_at, sim_keys};
use kimp::runtime::journal::Journal;
use kimp::runtime::record_codec::Entry;
use kimp::runtime::run::{self, BuildOptions};
use kimp::runtime::trading_loop::{Counters, Out, TradingLoop};
use kimp::sim::config::{CoinSpec, SimConfig};
use kimp::sim::faults::{Faults, Scenario};
use kimp::sim::{SimHandle, Simulator};
use kimp_core::action::{Alert, Record};
use kimp_core::event::{Control, RejectReason, Side};
use kimp_core::instrument::Venue;
use kimp_core::order::ClientId;
use kimp_core::units::Nanos;

/// A fresh directory under the system temp dir.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kimp-faults-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Polls `f` every 20 ms until it is true or `secs` pass; true when it became true.
pub fn wait_for(secs: f64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The demo configuration (BTC only), with a 1 ms blocking poll (the test machine has two
/// cores shared with other work).
pub fn demo_config() -> Config {
    let text = include_str!("../config/demo.toml");
    let mut cfg = Config::parse(text, Path::new("config/demo.toml")).expect("demo config");
    cfg.runtime.busy_poll = false;
    cfg
}

/// A simulator config: the demo market (BTC only) with `scenarios`.
pub fn sim_config(seed: u64, speed: f64, scenarios: &[&str]) -> SimConfig {
    let mut sc = demo_sim(seed, speed);
    sc.coins = vec![CoinSpec::btc()];
    sc.faults =
        Faults { list: scenarios.iter().map(|s| Scenario::parse(s).expect("scenario")).collect() };
    sc
}

/// What the loop reported, stamped with when the test saw it.
#[derive(Debug, Default)]
pub struct Log {
    /// Alerts.
    pub alerts: Vec<(Instant, Alert)>,
    /// Latest counters.
    pub counters: Counters,
}

impl Log {
    /// Alerts matching `f`.
    pub fn count(&self, f: impl Fn(&Alert) -> bool) -> usize {
        self.alerts.iter().filter(|(_, a)| f(a)).count()
    }
}

/// A running runtime against a running simulator.
pub struct E2e {
    /// The simulator.
    pub sim: SimHandle,
    /// Journal and store directory.
    pub dir: PathBuf,
    /// The runtime's configuration.
    pub cfg: Config,
    /// Observed alerts and counters.
    pub log: Arc<Mutex<Log>>,
    /// Operator control into the loop.
    pub control: crossbeam_channel::Sender<Control>,
    /// The runtime's clock (journal timestamps → wall time).
    pub clock: Clock,
    /// When the loop started.
    pub started: Instant,
    stop: Arc<AtomicBool>,
    trading: Option<JoinHandle<TradingLoop>>,
}

impl std::fmt::Debug for E2e {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E2e").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// What is left after the loop stopped.
pub struct Finished {
    /// The loop (engine, order path, journal).
    pub tl: TradingLoop,
    /// The simulator, still running (for inspection).
    pub sim: SimHandle,
    /// Observed alerts and counters.
    pub log: Log,
    /// Every journal entry (this run and earlier ones), in order.
    pub journal: Vec<(Nanos, Entry)>,
    /// Directory.
    pub dir: PathBuf,
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finished").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl E2e {
    /// Starts `sc` and a runtime against it (journal in a fresh `name` directory).
    pub fn start(name: &str, sc: SimConfig, tweak: impl FnOnce(&mut Config)) -> E2e {
        let sim = Simulator::start(sc).expect("simulator");
        Self::start_on(sim, tmp(name), tweak)
    }

    /// Starts a runtime against a running simulator with the journal in `dir` (kept, so
    /// a restart replays it).
    pub fn start_on(sim: SimHandle, dir: PathBuf, tweak: impl FnOnce(&mut Config)) -> E2e {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut cfg = demo_config();
        point_at(&mut cfg, &sim, &dir);
        tweak(&mut cfg);
        let rt = run::build(&cfg, &sim_keys(), &BuildOptions::default()).expect("runtime");
        let log = Arc::new(Mutex::new(Log::default()));
        {
            // Detached: it ends when the loop (the sender) is dropped.
            let (rx, log) = (rt.out_rx.clone(), log.clone());
            std::thread::spawn(move || {
                while let Ok(o) = rx.recv() {
                    let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                    match o {
                        Out::Alert(a) => l.alerts.push((Instant::now(), a)),
                        Out::Counters(c) => l.counters = c,
                        _ => {}
                    }
                }
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let loop_stop = stop.clone();
        let control = rt.control_tx.clone();
        let clock = rt.tl.clock;
        let mut tl = rt.tl;
        let trading = std::thread::spawn(move || {
            tl.run(&loop_stop, Duration::from_secs(5)).expect("trading loop");
            tl
        });
        E2e {
            sim,
            dir,
            cfg,
            log,
            control,
            clock,
            started: Instant::now(),
            stop,
            trading: Some(trading),
        }
    }

    /// Sets the premium of the simulated market (coin 0).
    pub fn set_premium(&self, p: f64) {
        self.sim.with_world(|w| w.mkt.coins[0].premium = p);
    }

    /// Reads the observed log.
    pub fn with_log<R>(&self, f: impl FnOnce(&Log) -> R) -> R {
        f(&self.log.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Waits for reconciliation to finish (trading state reported Active).
    pub fn wait_active(&self, secs: f64) -> bool {
        wait_for(secs, || {
            self.with_log(|l| l.counters.trading == Some(kimp_core::action::TradingState::Active))
        })
    }

    /// Waits until start-up reconciliation finished (Active, or Halted when a halt from the
    /// previous run latched), up to `secs`.
    pub fn wait_reconciled(&self, secs: f64) -> bool {
        wait_for(secs, || {
            self.with_log(|l| {
                l.counters
                    .trading
                    .is_some_and(|t| t != kimp_core::action::TradingState::Reconciling)
            })
        })
    }

    /// Swings the premium above the entry threshold and below the exit level `n` times,
    /// `period` apart, so pairs open and close under whatever faults are on.
    pub fn cycle_premium(&self, n: usize, period: Duration) {
        for i in 0..n {
            self.set_premium(if i % 2 == 0 { 0.036 } else { 0.015 });
            std::thread::sleep(period);
        }
    }

    /// Stops the loop (entries stop, in-flight orders get up to 5 s) and collects
    /// everything.
    pub fn finish(mut self) -> Finished {
        self.set_premium(0.015);
        self.stop.store(true, Ordering::Relaxed);
        let tl = self.trading.take().expect("running").join().expect("trading loop panicked");
        let journal_dir = self.cfg.runtime.journal_dir.clone();
        let seg = self.cfg.runtime.journal_segment_mib << 20;
        let journal = Journal::open(&journal_dir, seg).map(|(_, r)| r.entries).unwrap_or_default();
        // The observer ends when the loop's sender is gone.
        let log = std::mem::take(&mut *self.log.lock().unwrap_or_else(|p| p.into_inner()));
        Finished { tl, sim: self.sim, log, journal, dir: self.dir }
    }
}

/// Per-order facts from the journal.
#[derive(Debug, Default, Clone, Copy)]
pub struct JOrder {
    /// Side.
    pub side: Option<Side>,
    /// Venue.
    pub venue: Option<Venue>,
    /// Σ journaled fill quantity.
    pub filled: i64,
}

/// The journal's orders by client id.
pub fn journal_orders(
    journal: &[(Nanos, Entry)],
    venue_of: impl Fn(u16) -> Venue,
) -> HashMap<ClientId, JOrder> {
    let mut m: HashMap<ClientId, JOrder> = HashMap::new();
    for (_, e) in journal {
        match e {
            Entry::Record(Record::Order(r)) => {
                let o = m.entry(r.cl_id).or_default();
                o.side = Some(r.side);
                o.venue = Some(venue_of(r.inst.0));
            }
            Entry::Record(Record::Fill { cl_id, qty, .. }) => {
                m.entry(*cl_id).or_default().filled += qty.0
            }
            _ => {}
        }
    }
    m
}

/// What the venues did with our orders: client id → (venue, filled, is buy, count).
pub fn venue_orders(sim: &SimHandle) -> HashMap<String, (Venue, i64, bool, u32)> {
    sim.with_world(|w| {
        let mut m: HashMap<String, (Venue, i64, bool, u32)> = HashMap::new();
        for o in &w.binance.orders {
            let e = m.entry(o.client_id.clone()).or_insert((Venue::Binance, 0, o.buy, 0));
            e.1 += o.executed;
            e.3 += 1;
        }
        for o in &w.upbit.orders {
            if let Some(id) = &o.identifier {
                let e = m.entry(id.clone()).or_insert((Venue::Upbit, 0, o.bid, 0));
                e.1 += o.executed;
                e.3 += 1;
            }
        }
        m
    })
}

/// Figures and checks common to every scenario.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Orders sent on the wire.
    pub wire_orders: u64,
    /// Intents.
    pub intents: u64,
    /// Orders the venues accepted.
    pub venue_orders: usize,
    /// Client ids the venues saw more than once (must be 0).
    pub duplicates: usize,
    /// Quantity filled at a venue that the journal lacks (must be 0).
    pub lost_fill_qty: i64,
    /// Orders on the wire that were never journaled (must be 0).
    pub unjournaled: usize,
    /// Binance position at the end (1e-8 BTC).
    pub binance_pos: i64,
    /// Upbit BTC change at the end.
    pub upbit_delta: i64,
    /// One-leg episodes resolved, with the engine's reported age (ms).
    pub orphan_ms: Vec<u64>,
    /// Orders still live in the engine at the end.
    pub live_orders: usize,
}

/// Upbit BTC the simulator's default account starts with.
pub const START_BTC: i64 = 100_000_000;

/// Checks I1, I2, I3 and I7 on a finished run and returns the figures; panics with a
/// clear message on a violation.
pub fn verdict(f: &Finished) -> Verdict {
    let insts = &f.tl.core.markets.instruments;
    let jo = journal_orders(&f.journal, |i| insts[i as usize].venue);
    let vo = venue_orders(&f.sim);
    let mut v = Verdict {
        wire_orders: f.tl.orders.stats.wire_orders,
        intents: f.tl.core.engine.stats().intents,
        venue_orders: vo.len(),
        live_orders: f.tl.core.engine.live_orders().count(),
        ..Verdict::default()
    };
    let dup_rejects =
        f.log.count(|a| matches!(a, Alert::Rejected { reason: RejectReason::Duplicate, .. }));
    v.duplicates = vo.values().filter(|o| o.3 > 1).count() + dup_rejects;
    for (id, &(_, filled, _, _)) in &vo {
        let Some(cl) = ClientId::decode(id.as_bytes()) else { continue };
        match jo.get(&cl) {
            None => v.unjournaled += 1,
            Some(j) => v.lost_fill_qty += (filled - j.filled).abs(),
        }
    }
    f.sim.with_world(|w| {
        v.binance_pos = w.binance.accounts[0].positions.get("BTCUSDT").map_or(0, |p| p.qty);
        let b = w.upbit.accounts[0].get("BTC");
        v.upbit_delta = b.free + b.locked - START_BTC;
    });
    v.orphan_ms =
        f.log
            .alerts
            .iter()
            .filter_map(|(_, a)| {
                if let Alert::OneLegResolved { age_ms, .. } = a { Some(*age_ms) } else { None }
            })
            .collect();
    assert_eq!(v.duplicates, 0, "I1: a client id reached a venue twice: {v:?}");
    assert_eq!(v.unjournaled, 0, "I1: an order reached a venue without its journal record: {v:?}");
    assert!(
        v.wire_orders <= 2 * v.intents,
        "I2: {} orders for {} intents",
        v.wire_orders,
        v.intents
    );
    assert_eq!(v.lost_fill_qty, 0, "I3: fills at the venue missing from the journal: {v:?}");
    // I7: the journal's fills are the venues' positions.
    let (mut jb, mut ju) = (0i64, 0i64);
    for j in jo.values() {
        let s = j.side.map_or(0, Side::sign) * j.filled;
        match j.venue {
            Some(Venue::Upbit) => ju += s,
            Some(_) => jb += s,
            None => {}
        }
    }
    assert_eq!(
        (ju, jb),
        (v.upbit_delta, v.binance_pos),
        "I7: journal positions differ from the venues'"
    );
    v
}

/// Nearest-rank percentile.
pub fn pct(v: &[u64], p: f64) -> u64 {
    kimp::dst::check::pct(v, p)
}
