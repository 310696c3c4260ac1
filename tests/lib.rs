//! Shared helpers for the end-to-end and fault tests: the venue simulator in-process, the
//! real runtime (gateways, loop, journal) pointed at it on loopback, an observer of the
//! loop's alerts and counters, and the checks every fault scenario must pass (no client
//! id sent twice, every wire order journaled, no lost fill, positions equal the venues').

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kimp::runtime::bridge::{BridgeCounts, Sidecars};
use kimp::runtime::clock::Clock;
use kimp::runtime::config::Config;
use kimp::runtime::demo::{demo_sim, point_at, sim_keys};
use kimp::runtime::journal::Journal;
use kimp::runtime::journal::{DiskFaults, Published, Tail};
use kimp::runtime::metrics::LoopSummary;
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
use kimp_sidecars::store::StoreStats;

/// A run's directory (journal, store files), removed when its last owner drops it: a
/// restart on the same journal moves it from one run to the next, so it lives as long as
/// the test needs it and no longer (each journal segment is pre-allocated, 64 MiB).
#[derive(Debug)]
pub struct TmpDir(tempfile::TempDir);

impl std::ops::Deref for TmpDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for TmpDir {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

/// A fresh directory under the system temp dir (`kimp-faults-NAME-…`), removed on drop.
pub fn tmp(name: &str) -> TmpDir {
    TmpDir(
        tempfile::Builder::new()
            .prefix(&format!("kimp-faults-{name}-"))
            .tempdir()
            .expect("temp dir"),
    )
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
    /// The loop's per-interval latency summaries, stamped when seen.
    pub loops: Vec<(Instant, LoopSummary)>,
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
    pub dir: TmpDir,
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
    /// This run's epoch (the store's event sequence counts from its `Epoch` entry).
    pub epoch: u32,
    /// The journal's fault injection (disk full).
    pub disk: Arc<DiskFaults>,
    /// The journal's write position (segment, slots written), live.
    pub journal_pos: Arc<Published>,
    /// A second reader of the journal, for tests that compare live (started with the loop).
    pub tail: Option<Tail>,
    /// The sidecars (store, alerts, bridge), when started.
    pub sidecars: Option<Sidecars>,
    /// While set, the observer stops reading the loop's channel (a stuck consumer).
    pub observer_paused: Arc<AtomicBool>,
}

/// Options of [`E2e::start_opts`].
#[derive(Debug, Clone, Default)]
pub struct E2eOpts {
    /// Start the sidecars (journal tail → store, bridge, alerts) as `kimp run` does; the
    /// observer then passes everything it reads on to the bridge.
    pub sidecars: bool,
    /// Journal segment size in bytes (default: the configuration's).
    pub segment_bytes: Option<u64>,
    /// Capacity of the loop → sidecars channel (default: the runtime's).
    pub out_capacity: Option<usize>,
    /// Disk full before the loop starts (segment reservations fail).
    pub enospc: bool,
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
    pub dir: TmpDir,
    /// This run's epoch.
    pub epoch: u32,
    /// The store's counters (sidecars started).
    pub store: Option<Arc<StoreStats>>,
    /// The bridge's counters (sidecars started).
    pub bridge: Option<Arc<BridgeCounts>>,
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
    pub fn start_on(sim: SimHandle, dir: TmpDir, tweak: impl FnOnce(&mut Config)) -> E2e {
        Self::start_opts(sim, dir, tweak, E2eOpts::default())
    }

    /// [`E2e::start_on`] with options (sidecars, journal segment size, channel capacity,
    /// disk full from the start).
    pub fn start_opts(
        sim: SimHandle,
        dir: TmpDir,
        tweak: impl FnOnce(&mut Config),
        opts: E2eOpts,
    ) -> E2e {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut cfg = demo_config();
        point_at(&mut cfg, &sim, &dir);
        tweak(&mut cfg);
        let bo = BuildOptions {
            journal_segment_bytes: opts.segment_bytes,
            out_capacity: opts.out_capacity,
            ..BuildOptions::default()
        };
        let mut rt = run::build(&cfg, &sim_keys(), &bo).expect("runtime");
        let disk = rt.tl.core.journal.disk_faults();
        disk.enospc.store(opts.enospc, Ordering::Relaxed);
        let tail = Tail::new(&rt.tl.core.journal);
        let journal_pos = rt.tl.core.journal.shared();
        let log = Arc::new(Mutex::new(Log::default()));
        let observer_paused = Arc::new(AtomicBool::new(false));
        let (tee_tx, tee_rx) =
            crossbeam_channel::bounded::<Out>(opts.out_capacity.unwrap_or(run::OUT_CAPACITY));
        let sidecars = opts.sidecars.then(|| {
            // Like `kimp run`: the journal tail feeds the store; the observer below hands
            // the bridge what the loop sends.
            let journal_tail =
                std::mem::replace(&mut rt.journal_tail, Tail::new(&rt.tl.core.journal));
            Sidecars::start(
                &cfg,
                &rt.tl.core.markets,
                rt.tl.clock,
                tee_rx,
                journal_tail,
                rt.control_tx.clone(),
            )
            .expect("sidecars")
        });
        let tee = opts.sidecars.then_some(tee_tx);
        {
            // Detached: it ends when the loop (the sender) is dropped.
            let (rx, log, paused) = (rt.out_rx.clone(), log.clone(), observer_paused.clone());
            std::thread::spawn(move || {
                loop {
                    while paused.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    let Ok(o) = rx.recv() else { return };
                    {
                        let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                        match o {
                            Out::Alert(a) => l.alerts.push((Instant::now(), a)),
                            Out::Counters(c) => l.counters = c,
                            Out::Loop(s) => l.loops.push((Instant::now(), s)),
                            _ => {}
                        }
                    }
                    if let Some(t) = &tee {
                        let _ = t.try_send(o);
                    }
                }
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let loop_stop = stop.clone();
        let control = rt.control_tx.clone();
        let clock = rt.tl.clock;
        let epoch = rt.epoch;
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
            epoch,
            disk,
            journal_pos,
            tail: Some(tail),
            sidecars,
            observer_paused,
        }
    }

    /// Stops (`true`) or restarts draining the loop's channel and the journal tail: the
    /// observer and, when started, the sidecars' bridge and journal tail.
    pub fn pause_consumers(&self, on: bool) {
        self.observer_paused.store(on, Ordering::Relaxed);
        if let Some(s) = &self.sidecars {
            s.pause(on);
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
        self.pause_consumers(false);
        let (mut store, mut bridge) = (None, None);
        if let Some(s) = self.sidecars.take() {
            store = s.board.store();
            bridge = Some(s.counts.clone());
            // The tail reads the rest of the journal; the store writes and ships it.
            s.shutdown();
        }
        let journal_dir = self.cfg.runtime.journal_dir.clone();
        let seg = self.cfg.runtime.journal_segment_mib << 20;
        let journal = Journal::open(&journal_dir, seg).map(|(_, r)| r.entries).unwrap_or_default();
        // The observer ends when the loop's sender is gone.
        let log = std::mem::take(&mut *self.log.lock().unwrap_or_else(|p| p.into_inner()));
        Finished {
            tl,
            sim: self.sim,
            log,
            journal,
            dir: self.dir,
            epoch: self.epoch,
            store,
            bridge,
        }
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

/// How far from hedged the venues may end: one Binance lot (0.001 BTC) plus Upbit dust.
pub const HEDGE_TOL: i64 = 104_000;

/// The venues end hedged (or flat) within [`HEDGE_TOL`].
pub fn assert_hedged(v: &Verdict) {
    assert!(
        (v.binance_pos + v.upbit_delta).abs() <= HEDGE_TOL,
        "not hedged at the venues: binance {} upbit {}",
        v.binance_pos,
        v.upbit_delta
    );
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

/// An ILP receiver standing in for QuestDB, over TCP (records every complete line it
/// reads) or HTTP (`POST /write`, answered 204; the body's lines are committed only once
/// it was read whole). [`IlpReceiver::kill_mid_batch`] dies in the middle of a batch: over
/// TCP it keeps the first half of the next chunk it reads; over HTTP it reads half of the
/// next request's body and commits none of it; then it resets the connection.
pub struct IlpReceiver {
    /// The port.
    pub port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
    /// Bytes dropped by the cut (read but not committed); `usize::MAX` until it happened.
    cut_dropped: Arc<std::sync::atomic::AtomicUsize>,
    conns: Arc<Mutex<Vec<std::net::TcpStream>>>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for IlpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IlpReceiver").field("port", &self.port).finish_non_exhaustive()
    }
}

/// A loopback port nobody listens on (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl IlpReceiver {
    /// Listens for ILP over TCP on `port` (0 = any), retrying while a dying predecessor
    /// still holds it.
    pub fn start(port: u16) -> Self {
        Self::start_as(port, false)
    }

    /// Listens for ILP over HTTP on `port`.
    pub fn start_http(port: u16) -> Self {
        Self::start_as(port, true)
    }

    fn start_as(port: u16, http: bool) -> Self {
        let end = Instant::now() + Duration::from_secs(3);
        let l = loop {
            match std::net::TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => break l,
                Err(e) if Instant::now() >= end => panic!("bind 127.0.0.1:{port}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let port = l.local_addr().expect("addr").port();
        l.set_nonblocking(true).expect("nonblocking");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        let cut_dropped = Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (li, st, cu, cd, co) =
            (lines.clone(), stop.clone(), cut.clone(), cut_dropped.clone(), conns.clone());
        let accept = std::thread::spawn(move || {
            while !st.load(Ordering::Acquire) {
                match l.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).expect("blocking");
                        s.set_read_timeout(Some(Duration::from_millis(20))).expect("timeout");
                        co.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(s.try_clone().expect("clone"));
                        let (li, st, cu, cd) = (li.clone(), st.clone(), cu.clone(), cd.clone());
                        std::thread::spawn(move || {
                            if http {
                                ilp_http(s, &li, &st, &cu, &cd)
                            } else {
                                ilp_read(s, &li, &st, &cu, &cd)
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self { port, lines, stop, cut, cut_dropped, conns, accept: Some(accept) }
    }

    /// Lines received so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Dies like a killed server: stops listening and resets every connection; bytes the
    /// client wrote that were not read yet are lost.
    pub fn kill(&mut self) {
        self.stop.store(true, Ordering::Release);
        for c in self.conns.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }

    /// Dies in the middle of the next batch it reads (waits up to `secs` for one), then
    /// stops listening. Returns the bytes it read but dropped, `None` if no batch came.
    pub fn kill_mid_batch(&mut self, secs: f64) -> Option<usize> {
        self.cut.store(true, Ordering::Release);
        let ok = wait_for(secs, || self.cut_dropped.load(Ordering::Acquire) != usize::MAX);
        self.kill();
        ok.then(|| self.cut_dropped.load(Ordering::Acquire))
    }
}

impl Drop for IlpReceiver {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ilp_read(
    mut s: std::net::TcpStream,
    lines: &Mutex<Vec<String>>,
    stop: &AtomicBool,
    cut: &AtomicBool,
    cut_dropped: &std::sync::atomic::AtomicUsize,
) {
    use std::io::Read;
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Acquire) {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let cutting = n > 1 && cut.swap(false, Ordering::AcqRel);
                let keep = if cutting { n / 2 } else { n };
                pending.extend_from_slice(&buf[..keep]);
                while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                    lines.lock().unwrap_or_else(|p| p.into_inner()).push(text);
                }
                if cutting {
                    // A half-read batch: the partial line and the rest are never committed.
                    cut_dropped.store(n - keep + pending.len(), Ordering::Release);
                    let _ = s.shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

fn ilp_http(
    mut s: std::net::TcpStream,
    lines: &Mutex<Vec<String>>,
    stop: &AtomicBool,
    cut: &AtomicBool,
    cut_dropped: &std::sync::atomic::AtomicUsize,
) {
    use std::io::{Read, Write};
    let mut data: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Acquire) {
        // One request: head, then a Content-Length body.
        let head_end = data.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
        if let Some(h) = head_end {
            let head = String::from_utf8_lossy(&data[..h]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if cut.load(Ordering::Acquire) && len > 1 && data.len() >= h + len / 2 {
                cut.store(false, Ordering::Release);
                // Half the body read, nothing committed, no answer.
                cut_dropped.store(data.len() - h, Ordering::Release);
                let _ = s.shutdown(std::net::Shutdown::Both);
                return;
            }
            if data.len() >= h + len {
                let body: Vec<u8> = data.drain(..h + len).skip(h).collect();
                let text = String::from_utf8_lossy(&body).into_owned();
                lines
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(text.lines().map(str::to_string));
                if s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").is_err() {
                    return;
                }
                continue;
            }
        }
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// Identity of a trading row in the store: (table, journal sequence, client id or "").
pub type RowId = (String, i64, String);

/// The trading rows the store must hold for `entries` — one run's journal entries after
/// its `Epoch`, in order (the store numbers them from 1).
pub fn expected_rows(entries: &[(Nanos, Entry)]) -> std::collections::BTreeSet<RowId> {
    let mut out = std::collections::BTreeSet::new();
    for (i, (_, e)) in entries.iter().enumerate() {
        let seq = i as i64 + 1;
        let Entry::Record(r) = e else { continue };
        let row = |t: &str, cl: String| (t.to_string(), seq, cl);
        match r {
            Record::Intent { orders, .. } => {
                for cl in orders.iter().flatten() {
                    out.insert(row("orders", cl.to_string()));
                }
            }
            Record::Order(o) => {
                out.insert(row("orders", o.cl_id.to_string()));
            }
            Record::OrderState { cl_id, .. } => {
                out.insert(row("orders", cl_id.to_string()));
            }
            Record::Fill { cl_id, .. } => {
                out.insert(row("fills", cl_id.to_string()));
            }
            Record::Pair(_) => {
                out.insert(row("pairs", String::new()));
            }
            Record::Trading { .. } => {
                out.insert(row("trading", String::new()));
            }
        }
    }
    out
}

/// This run's entries from a whole journal: after `Epoch(epoch)`, up to the next epoch.
pub fn run_entries(journal: &[(Nanos, Entry)], epoch: u32) -> Vec<(Nanos, Entry)> {
    let start = journal.iter().position(|(_, e)| *e == Entry::Epoch(epoch)).map_or(0, |i| i + 1);
    journal[start..].iter().take_while(|(_, e)| !matches!(e, Entry::Epoch(_))).cloned().collect()
}

/// The row identity QuestDB's `DEDUP UPSERT KEYS` apply (docs/questdb.md).
pub fn dedup_key(l: &kimp_sidecars::store::ilp::IlpLine) -> String {
    use kimp_sidecars::store::ilp::FieldValue;
    let f = |k: &str| match l.field(k) {
        Some(FieldValue::I64(v)) => v.to_string(),
        Some(FieldValue::Str(s)) => s.clone(),
        other => format!("{other:?}"),
    };
    let t = |k: &str| l.tag(k).unwrap_or("").to_string();
    let rest = match l.table.as_str() {
        "fills" => format!("{}|{}", t("venue"), f("trade_id")),
        "orders" => format!("{}|{}", f("cl_id"), f("event_seq")),
        "pairs" => format!("{}|{}", f("pair"), t("to_state")),
        "trading" => f("event_seq"),
        "kimp" => t("coin"),
        "bbo" | "funding" => format!("{}|{}", t("venue"), t("symbol")),
        "fx" => t("source"),
        "latency" => t("stage"),
        "candles_1m" => format!("{}|{}", t("venue"), t("coin")),
        other => format!("?{other}"),
    };
    format!("{}|{}|{rest}", l.table, l.ts.unwrap_or(-1))
}

/// What the ILP receiver holds against the journal.
#[derive(Debug, Default, Clone)]
pub struct StoreCheck {
    /// Lines received (re-sends included).
    pub lines: usize,
    /// Rows left after applying the dedup keys.
    pub distinct: usize,
    /// Trading rows the journal implies.
    pub expected: usize,
    /// Expected rows missing from the receiver (must be 0).
    pub lost: usize,
    /// Trading rows present under more than one dedup key, i.e. still duplicated after
    /// dedup (must be 0).
    pub dup_after_dedup: usize,
    /// Lines that did not parse.
    pub bad: usize,
    /// Two different rows under one dedup key (QuestDB would keep only one: must be 0).
    pub conflicts: usize,
}

/// Compares received ILP lines with the rows the journal implies.
pub fn check_store(expected: &std::collections::BTreeSet<RowId>, lines: &[String]) -> StoreCheck {
    use kimp_sidecars::store::ilp::{FieldValue, parse_line};
    let mut c = StoreCheck { lines: lines.len(), expected: expected.len(), ..Default::default() };
    let mut by_key: HashMap<String, String> = HashMap::new();
    let mut rows: HashMap<RowId, usize> = HashMap::new();
    for line in lines {
        let Ok(l) = parse_line(line.as_bytes()) else {
            c.bad += 1;
            continue;
        };
        let k = dedup_key(&l);
        match by_key.get(&k) {
            Some(prev) if prev != line => c.conflicts += 1,
            Some(_) => continue,
            None => {}
        }
        by_key.insert(k, line.clone());
        if !matches!(l.table.as_str(), "orders" | "fills" | "pairs" | "trading") {
            continue;
        }
        let seq = match l.field("event_seq") {
            Some(FieldValue::I64(v)) => *v,
            _ => -1,
        };
        let cl = match (l.table.as_str(), l.field("cl_id")) {
            ("orders" | "fills", Some(FieldValue::Str(s))) => s.clone(),
            _ => String::new(),
        };
        *rows.entry((l.table.clone(), seq, cl)).or_insert(0) += 1;
    }
    c.distinct = by_key.len();
    c.lost = expected.iter().filter(|r| !rows.contains_key(*r)).count();
    c.dup_after_dedup = rows.values().filter(|&&n| n > 1).count();
    c
}

/// Per-interval latency summaries seen between `from` and `to`: (p99 of the turn stage,
/// p99 of the engine stage, longest turn), ns.
pub fn loop_p99(log: &Log, from: Instant, to: Instant) -> Vec<(u64, u64, u64)> {
    use kimp::runtime::metrics::Stage;
    log.loops
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .map(|(_, s)| {
            (
                s.stages[Stage::Turn as usize].p99,
                s.stages[Stage::Engine as usize].p99,
                s.turn_max_ns,
            )
        })
        .collect()
}
