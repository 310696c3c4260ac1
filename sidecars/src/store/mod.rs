//! The store sidecar: journal records and telemetry → ILP rows → local files or QuestDB.
//!
//! Two bounded queues feed one worker thread: trading records (never dropped: when that
//! queue is full, [`StoreTx::journal`] says so and the runtime halts entries) and telemetry
//! (dropped and counted when full). The worker turns events into ILP rows with questdb-rs's
//! `Buffer` and appends them, once per batch, to rotating files:
//!
//! - without QuestDB, to `dir` (default `data/ilp/`; kept; `kimp report` and [`load_files`] read them);
//! - with QuestDB, to the spool (default `data/spool/`), which a second thread (the shipper) tails and sends
//!   with questdb-rs's `Sender`, deleting each file once it is sent. The worker never touches
//!   the network, so a slow or dead QuestDB cannot stall it; the spool is the disk buffer
//!   that backfills on recovery. Delivery is at least once; the DEDUP keys in
//!   docs/questdb.md make it exactly once in the tables.

pub mod candles;
pub mod files;
pub mod ilp;
pub mod questdb;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ::questdb::ingress::{Buffer, ProtocolVersion};
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, never, select};
use kimp_core::action::{KimpSample, Record};
use kimp_core::event::{Bbo, Funding, FxQuote};
use kimp_core::units::Nanos;

pub use self::questdb::{LoadStats, load_files};
use crate::names::Names;

/// A journal record with its position and time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JournalEntry {
    /// Journal sequence number: stable across replays, so it is part of the orders' dedup key.
    pub seq: u64,
    /// Engine time (Unix epoch ns) when the record was made.
    pub ts: Nanos,
    /// The record.
    pub record: Record,
}

/// Latency percentiles of one pipeline stage over one interval (the runtime's histograms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencySample {
    /// End of the interval (Unix epoch ns).
    pub ts: Nanos,
    /// Stage name (`parse`, `tick_to_order`, ...).
    pub stage: &'static str,
    /// Samples in the interval.
    pub count: u64,
    /// Median, ns.
    pub p50_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
    /// 99.9th percentile, ns.
    pub p999_ns: u64,
    /// Maximum, ns.
    pub max_ns: u64,
}

/// Everything the store accepts (owned, `Send`, `Copy`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StoreEvent {
    /// A trading record (critical: never dropped).
    Journal(JournalEntry),
    /// A premium sample (`kimp`, and `candles_1m` as venue `kimp`).
    Kimp(KimpSample),
    /// A best bid/offer sample (`bbo`, `candles_1m`).
    Bbo(Bbo),
    /// Mark price and funding (`funding`).
    Funding(Funding),
    /// An FX quote (`fx`).
    Fx(FxQuote),
    /// Latency percentiles (`latency`).
    Latency(LatencySample),
}

impl StoreEvent {
    /// True for trading records, which go through the critical queue.
    pub fn is_critical(&self) -> bool {
        matches!(self, StoreEvent::Journal(_))
    }
}

/// A QuestDB client configuration string (`tcp::addr=host:9009;`), which may hold
/// credentials: its `Debug` shows only the transport.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct QuestDbConf(pub String);

impl std::fmt::Debug for QuestDbConf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = self.0.split("::").next().unwrap_or("");
        write!(f, "QuestDbConf({scheme}::<redacted>)")
    }
}

/// `[store]` configuration.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// questdb-rs configuration string; `None` = local files only.
    pub questdb: Option<QuestDbConf>,
    /// Directory of the local ILP files (used when `questdb` is not set).
    pub dir: PathBuf,
    /// Directory of the spool in front of QuestDB (default: `spool` beside `dir`).
    pub spool_dir: Option<PathBuf>,
    /// Rotate local ILP files at this size, KiB.
    pub rotate_kb: u64,
    /// Rotate spool files at this size, KiB (small, so sent files are deleted early).
    pub spool_rotate_kb: u64,
    /// Spool size above which telemetry is dropped (trading records never are), MiB.
    pub spool_max_mb: u64,
    /// Write a batch at least this often, ms.
    pub flush_ms: u64,
    /// Write a batch at this many rows.
    pub batch_rows: usize,
    /// First retry delay after QuestDB fails, ms (doubles up to `retry_max_ms`).
    pub retry_min_ms: u64,
    /// Longest retry delay, ms.
    pub retry_max_ms: u64,
    /// Over TCP, keep a sent spool file this long before deleting it, and re-send it if the
    /// connection fails meanwhile (TCP ILP has no acknowledgements), ms. HTTP: 0.
    pub tcp_replay_ms: u64,
    /// Shipper poll interval when idle, ms.
    pub ship_poll_ms: u64,
    /// At shutdown, keep shipping the spool for at most this long, ms.
    pub drain_ms: u64,
    /// Capacity of the trading-record queue.
    pub record_queue: usize,
    /// Capacity of the telemetry queue.
    pub telemetry_queue: usize,
    /// Build `candles_1m` from BBO and premium samples.
    pub candles: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            questdb: None,
            dir: PathBuf::from("data/ilp"),
            spool_dir: None,
            rotate_kb: 64 << 10,
            spool_rotate_kb: 4 << 10,
            spool_max_mb: 1024,
            flush_ms: 100,
            batch_rows: 4096,
            retry_min_ms: 200,
            retry_max_ms: 30_000,
            tcp_replay_ms: 5_000,
            ship_poll_ms: 50,
            drain_ms: 2_000,
            record_queue: 65_536,
            telemetry_queue: 16_384,
            candles: true,
        }
    }
}

impl StoreConfig {
    /// The spool directory in effect.
    pub fn spool_dir(&self) -> PathBuf {
        self.spool_dir.clone().unwrap_or_else(|| self.dir.with_file_name("spool"))
    }
}

/// What the store tells people about (route it to the alerts sidecar).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreAlert {
    /// QuestDB stopped accepting rows; the spool is buffering.
    QuestDbDown {
        /// questdb-rs's error message.
        error: String,
    },
    /// QuestDB is back; the spool is being (or was) sent.
    QuestDbUp {
        /// How long it was down, ms.
        down_ms: u64,
    },
    /// Writing local files failed (disk full, permissions).
    DiskError {
        /// The I/O error.
        error: String,
    },
}

/// Where QuestDB stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuestDbState {
    /// Not configured (local files only).
    Off,
    /// Connected, or not yet tried.
    Up,
    /// Failing; retrying with backoff.
    Down,
}

/// Counters of the store (all monotonic except the gauges noted).
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Trading records refused because their queue was full (the runtime halts entries).
    pub critical_full: AtomicU64,
    /// Telemetry events dropped because their queue was full.
    pub telemetry_dropped: AtomicU64,
    /// Telemetry rows dropped because the spool passed `spool_max_mb`.
    pub spool_dropped_rows: AtomicU64,
    /// Events received by the worker.
    pub events: AtomicU64,
    /// Rows written to files (local or spool).
    pub rows_written: AtomicU64,
    /// Events the encoder refused (bad names, timestamps).
    pub encode_errors: AtomicU64,
    /// File write failures.
    pub io_errors: AtomicU64,
    /// Trading-record bytes lost after repeated write failures (journal still has them).
    pub critical_lost_bytes: AtomicU64,
    /// Rows sent to QuestDB (counting re-sends).
    pub rows_sent: AtomicU64,
    /// Spool lines that did not parse (torn tails after a crash).
    pub bad_lines: AtomicU64,
    /// QuestDB failures (connect or flush).
    pub questdb_errors: AtomicU64,
    /// Outages (transitions to down).
    pub outages: AtomicU64,
    /// Gauge: bytes in the spool.
    pub spool_bytes: AtomicU64,
    state: AtomicU8,
}

impl StoreStats {
    /// QuestDB state gauge.
    pub fn questdb(&self) -> QuestDbState {
        match self.state.load(Ordering::Relaxed) {
            1 => QuestDbState::Up,
            2 => QuestDbState::Down,
            _ => QuestDbState::Off,
        }
    }

    pub(crate) fn set_questdb(&self, s: QuestDbState) {
        let v = match s {
            QuestDbState::Off => 0,
            QuestDbState::Up => 1,
            QuestDbState::Down => 2,
        };
        self.state.store(v, Ordering::Relaxed);
    }

    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// Errors of the store's setup and of [`load_files`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// File system.
    #[error("store I/O: {0}")]
    Io(#[from] std::io::Error),
    /// questdb-rs (configuration, connection, flush).
    #[error("questdb: {0}")]
    QuestDb(String),
}

/// The critical queue is full: the runtime must stop opening pairs and raise an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("store record queue full")]
pub struct StoreFull;

/// Alert callback (called from the store's threads; keep it short and non-blocking).
pub type AlertFn = Arc<dyn Fn(StoreAlert) + Send + Sync>;

/// The sending side, for the runtime's loop: never blocks.
#[derive(Clone, Debug)]
pub struct StoreTx {
    records: Sender<StoreEvent>,
    telemetry: Sender<StoreEvent>,
    stats: Arc<StoreStats>,
}

impl StoreTx {
    /// Queues a trading record; `Err(StoreFull)` when the critical queue is full (or the
    /// store has stopped), which the runtime treats as a halt condition.
    #[inline]
    pub fn journal(&self, seq: u64, ts: Nanos, record: Record) -> Result<(), StoreFull> {
        self.send(StoreEvent::Journal(JournalEntry { seq, ts, record }))
    }

    /// Queues a telemetry event; `false` when it was dropped (and counted).
    #[inline]
    pub fn telemetry(&self, ev: StoreEvent) -> bool {
        match self.telemetry.try_send(ev) {
            Ok(()) => true,
            Err(_) => {
                StoreStats::add(&self.stats.telemetry_dropped, 1);
                false
            }
        }
    }

    /// Queues any event on the queue its kind belongs to.
    #[inline]
    pub fn send(&self, ev: StoreEvent) -> Result<(), StoreFull> {
        if !ev.is_critical() {
            self.telemetry(ev);
            return Ok(());
        }
        match self.records.try_send(ev) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                StoreStats::add(&self.stats.critical_full, 1);
                Err(StoreFull)
            }
        }
    }

    /// The store's counters.
    pub fn stats(&self) -> &Arc<StoreStats> {
        &self.stats
    }
}

/// A running store (worker thread, and the shipper thread when QuestDB is configured).
#[derive(Debug)]
pub struct Store {
    tx: StoreTx,
    stop: Arc<AtomicBool>,
    /// Dropped at shutdown to wake the worker out of its wait.
    wake: Option<Sender<()>>,
    worker: Option<JoinHandle<()>>,
    shipper: Option<JoinHandle<()>>,
}

impl Store {
    /// Starts the store. `on_alert` receives outage and disk alerts.
    pub fn spawn(
        cfg: StoreConfig,
        names: Arc<Names>,
        on_alert: AlertFn,
    ) -> Result<Store, StoreError> {
        let stats = Arc::new(StoreStats::default());
        let (rec_tx, rec_rx) = bounded(cfg.record_queue.max(1));
        let (tel_tx, tel_rx) = bounded(cfg.telemetry_queue.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let (dir, rotate) = match &cfg.questdb {
            Some(_) => (cfg.spool_dir(), cfg.spool_rotate_kb),
            None => (cfg.dir.clone(), cfg.rotate_kb),
        };
        let out = files::IlpFiles::open(&dir, rotate.max(1) << 10)?;
        stats.spool_bytes.store(
            if cfg.questdb.is_some() { files::total_bytes(&dir)? } else { 0 },
            Ordering::Relaxed,
        );
        let worker_done = Arc::new(AtomicBool::new(false));
        let shipper = match &cfg.questdb {
            Some(conf) => {
                let conf = questdb::normalise_conf(&conf.0);
                // Fail fast on a malformed string instead of retrying it forever. The message
                // names only the error kind: parser messages may quote a credential.
                ::questdb::ingress::SenderBuilder::from_conf(&conf)
                    .map_err(|e| StoreError::QuestDb(questdb::safe_msg(&e)))?;
                stats.set_questdb(QuestDbState::Up);
                let sh =
                    questdb::Shipper::new(&cfg, conf, dir.clone(), stats.clone(), on_alert.clone());
                let (stop, done) = (stop.clone(), worker_done.clone());
                Some(
                    std::thread::Builder::new()
                        .name("kimp-store-ship".into())
                        .spawn(move || sh.run(&stop, &done))?,
                )
            }
            None => None,
        };
        let mut w = Worker::new(&cfg, names, out, stats.clone(), on_alert);
        let stop2 = stop.clone();
        let (wake, wake_rx) = bounded::<()>(1);
        let worker = std::thread::Builder::new().name("kimp-store".into()).spawn(move || {
            w.run(rec_rx, tel_rx, wake_rx, &stop2);
            worker_done.store(true, Ordering::Release);
        })?;
        let tx = StoreTx { records: rec_tx, telemetry: tel_tx, stats };
        Ok(Store { tx, stop, wake: Some(wake), worker: Some(worker), shipper })
    }

    /// A sender for the runtime (clone it freely).
    pub fn tx(&self) -> StoreTx {
        self.tx.clone()
    }

    /// The counters.
    pub fn stats(&self) -> Arc<StoreStats> {
        self.tx.stats.clone()
    }

    /// Stops: the worker writes what is queued, then the shipper sends the spool for at
    /// most `drain_ms`; whatever is left stays on disk for the next start.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.wake.take();
        for h in [self.worker.take(), self.shipper.take()].into_iter().flatten() {
            let _ = h.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Rows kept in memory for retry when a file write fails, bytes (beyond, counted as lost).
const RETRY_BYTES_MAX: usize = 64 << 20;

struct Worker {
    enc: ilp::Encoder,
    candles: Option<candles::Candles>,
    out: files::IlpFiles,
    spool: bool,
    spool_max: u64,
    crit: Buffer,
    tele: Buffer,
    stats: Arc<StoreStats>,
    alert: AlertFn,
    flush_every: Duration,
    batch_rows: usize,
    disk_failing: bool,
}

impl Worker {
    fn new(
        cfg: &StoreConfig,
        names: Arc<Names>,
        out: files::IlpFiles,
        stats: Arc<StoreStats>,
        alert: AlertFn,
    ) -> Self {
        Self {
            enc: ilp::Encoder::new(names),
            candles: cfg.candles.then(candles::Candles::default),
            out,
            spool: cfg.questdb.is_some(),
            spool_max: cfg.spool_max_mb << 20,
            crit: Buffer::new(ProtocolVersion::V1),
            tele: Buffer::new(ProtocolVersion::V1),
            stats,
            alert,
            flush_every: Duration::from_millis(cfg.flush_ms.max(1)),
            batch_rows: cfg.batch_rows.max(1),
            disk_failing: false,
        }
    }

    fn run(
        &mut self,
        rec_rx: Receiver<StoreEvent>,
        tel_rx: Receiver<StoreEvent>,
        wake: Receiver<()>,
        stop: &AtomicBool,
    ) {
        let (mut rec_rx, mut tel_rx, mut wake) = (rec_rx, tel_rx, wake);
        let mut next_flush = Instant::now() + self.flush_every;
        loop {
            let wait = next_flush.saturating_duration_since(Instant::now());
            select! {
                recv(rec_rx) -> m => match m {
                    Ok(ev) => self.on_event(&ev),
                    Err(_) => rec_rx = never(),
                },
                recv(tel_rx) -> m => match m {
                    Ok(ev) => self.on_event(&ev),
                    Err(_) => tel_rx = never(),
                },
                recv(wake) -> _ => wake = never(),
                default(wait) => {}
            }
            // Take what is already queued, trading records first, up to a batch.
            while self.rows() < self.batch_rows {
                match rec_rx.try_recv().or_else(|_| tel_rx.try_recv()) {
                    Ok(ev) => self.on_event(&ev),
                    Err(_) => break,
                }
            }
            let stopping = stop.load(Ordering::Acquire);
            if self.rows() >= self.batch_rows || Instant::now() >= next_flush || stopping {
                self.write_batch();
                next_flush = Instant::now() + self.flush_every;
            }
            if stopping {
                while let Ok(ev) = rec_rx.try_recv().or_else(|_| tel_rx.try_recv()) {
                    self.on_event(&ev);
                    if self.rows() >= self.batch_rows {
                        self.write_batch();
                    }
                }
                if let Some(c) = &mut self.candles {
                    for k in c.drain() {
                        let _ = self.enc.candle(&k, &mut self.tele);
                    }
                }
                self.write_batch();
                if let Err(e) = self.out.seal() {
                    self.disk_error(&e);
                }
                return;
            }
        }
    }

    fn rows(&self) -> usize {
        self.crit.row_count() + self.tele.row_count()
    }

    fn on_event(&mut self, ev: &StoreEvent) {
        StoreStats::add(&self.stats.events, 1);
        let (buf, is_crit) =
            if ev.is_critical() { (&mut self.crit, true) } else { (&mut self.tele, false) };
        let _ = buf.set_marker();
        let r = match ev {
            StoreEvent::Journal(e) => self.enc.journal(e, buf),
            StoreEvent::Kimp(k) => self.enc.kimp(k, buf),
            StoreEvent::Bbo(b) => self.enc.bbo(b, buf),
            StoreEvent::Funding(f) => self.enc.funding(f, buf),
            StoreEvent::Fx(q) => self.enc.fx(q, buf),
            StoreEvent::Latency(l) => self.enc.latency(l, buf),
        };
        match r {
            Ok(()) => buf.clear_marker(),
            Err(e) => {
                let _ = buf.rewind_to_marker();
                StoreStats::add(&self.stats.encode_errors, 1);
                tracing::warn!(error = e.msg(), critical = is_crit, "store: event not encoded");
            }
        }
        if let Some(c) = &mut self.candles {
            let closed = match ev {
                StoreEvent::Bbo(b) if b.bid.px.is_positive() && b.ask.px.is_positive() => {
                    let inst = self.enc.names().inst(b.inst);
                    match inst.and_then(|i| i.coin.map(|c| (i.venue.name(), c))) {
                        Some((venue, coin)) => {
                            let mid = (b.bid.px.to_f64() + b.ask.px.to_f64()) / 2.0;
                            c.add(venue, coin, b.exch_ts, mid)
                        }
                        None => None,
                    }
                }
                StoreEvent::Kimp(k) => c.add("kimp", k.coin, k.ts, k.mid_bps),
                _ => None,
            };
            if let Some(k) = closed
                && self.enc.candle(&k, &mut self.tele).is_err()
            {
                StoreStats::add(&self.stats.encode_errors, 1);
            }
        }
    }

    fn write_batch(&mut self) {
        if self.crit.is_empty() && self.tele.is_empty() {
            return;
        }
        let crit_rows = self.crit.row_count() as u64;
        let mut ok = match self.out.append(self.crit.as_bytes()) {
            Ok(()) => {
                StoreStats::add(&self.stats.rows_written, crit_rows);
                if self.spool {
                    StoreStats::add(&self.stats.spool_bytes, self.crit.len() as u64);
                }
                self.crit.clear();
                true
            }
            Err(e) => {
                self.disk_error(&e);
                // The journal still holds these; keep them for the next batch, within reason.
                if self.crit.len() > RETRY_BYTES_MAX {
                    StoreStats::add(&self.stats.critical_lost_bytes, self.crit.len() as u64);
                    self.crit.clear();
                }
                false
            }
        };
        if !self.tele.is_empty() {
            let tele_rows = self.tele.row_count() as u64;
            if self.spool && self.stats.spool_bytes.load(Ordering::Relaxed) > self.spool_max {
                StoreStats::add(&self.stats.spool_dropped_rows, tele_rows);
            } else {
                match self.out.append(self.tele.as_bytes()) {
                    Ok(()) => {
                        StoreStats::add(&self.stats.rows_written, tele_rows);
                        if self.spool {
                            StoreStats::add(&self.stats.spool_bytes, self.tele.len() as u64);
                        }
                    }
                    Err(e) => {
                        ok = false;
                        self.disk_error(&e);
                    }
                }
            }
            self.tele.clear();
        }
        if let Err(e) = self.out.flush() {
            ok = false;
            self.disk_error(&e);
        }
        if ok {
            self.disk_failing = false;
        }
    }

    fn disk_error(&mut self, e: &std::io::Error) {
        StoreStats::add(&self.stats.io_errors, 1);
        if !self.disk_failing {
            self.disk_failing = true;
            tracing::error!(error = %e, "store: writing ILP files failed");
            (self.alert)(StoreAlert::DiskError { error: e.to_string() });
        }
    }
}
