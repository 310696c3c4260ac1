//! The bridge between the loop and the sidecars, on their own threads: the journal is
//! tailed into the store (trading records, never dropped — the loop never waits for
//! them), telemetry goes to the store and the status board, alerts go through the alert
//! rules to the log and Telegram. The loop only ever does a `try_send`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Result, anyhow};
use crossbeam_channel::{Receiver, Sender, bounded};
use kimp_core::action::Telemetry;
use kimp_core::engine::Markets;
use kimp_core::event::Control;
use kimp_core::units::Nanos;
use kimp_sidecars::alerts::{self, AlertInput, AlertMsg, AlertsConfig, AlertsHandle};
use kimp_sidecars::names::Names;
use kimp_sidecars::status::StatusBoard;
use kimp_sidecars::store::{LatencySample, QuestDbConf, Store, StoreConfig, StoreEvent, StoreTx};
use kimp_sidecars::telegram::{BotToken, Telegram, TelegramConfig, TelegramHandle};

use super::clock::Clock;
use super::config::Config;
use super::journal::Tail;
use super::metrics::{STAGE_NAMES, STAGES};
use super::record_codec::Entry;
use super::trading_loop::Out;

/// The running sidecars.
pub struct Sidecars {
    /// The status board (read by Telegram and the demo view).
    pub board: Arc<StatusBoard>,
    store: Option<Store>,
    telegram: Option<TelegramHandle>,
    alerts: Option<AlertsHandle>,
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Sidecars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sidecars")
            .field("telegram", &self.telegram.is_some())
            .finish_non_exhaustive()
    }
}

/// Converts engine time (monotonic since start) to Unix epoch nanoseconds.
fn wall(clock: &Clock, t: Nanos) -> Nanos {
    Nanos(clock.wall_ms(Nanos(0)) * 1_000_000 + t.0)
}

impl Sidecars {
    /// Starts the store, the alert rules, Telegram (when configured) and the bridge
    /// threads. `out_rx` is the loop's telemetry; `tail` follows its journal; `control`
    /// reaches the loop.
    pub fn start(
        cfg: &Config,
        markets: &Markets,
        clock: Clock,
        out_rx: Receiver<Out>,
        mut tail: Tail,
        control: Sender<Control>,
    ) -> Result<Sidecars> {
        let names = Arc::new(Names::from_markets(markets));
        let board = Arc::new(StatusBoard::new(names.clone()));
        let (alert_tx, alert_rx) = bounded::<AlertInput>(4_096);
        let store_cfg = StoreConfig {
            questdb: cfg.store.questdb.clone().map(QuestDbConf),
            dir: cfg.store.dir.clone(),
            ..StoreConfig::default()
        };
        let on_alert = {
            let tx = alert_tx.clone();
            Arc::new(move |a| {
                let _ = tx.try_send(AlertInput::Store(a));
            })
        };
        let store =
            Store::spawn(store_cfg, names.clone(), on_alert).map_err(|e| anyhow!("store: {e}"))?;
        board.set_store(store.stats());
        let (tg_tx, tg_rx) = bounded::<AlertMsg>(1_024);
        let telegram = match &cfg.telegram {
            Some(t) => {
                let tc = TelegramConfig {
                    api_url: t.api_url.clone(),
                    token_env: t.token_env.clone(),
                    allowed_chat_ids: t.allowed_chat_ids.clone(),
                    ..TelegramConfig::default()
                };
                let token =
                    BotToken::from_env(&t.token_env).map_err(|e| anyhow!("telegram: {e}"))?;
                Some(
                    Telegram::start(tc, token, control, board.clone(), tg_rx)
                        .map_err(|e| anyhow!("telegram: {e}"))?,
                )
            }
            None => None,
        };
        let tg_out = telegram.as_ref().map(|_| tg_tx);
        let alerts =
            alerts::spawn(AlertsConfig::default(), names, Some(board.clone()), alert_rx, tg_out)?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        {
            let (tx, board, stop) = (store.tx(), board.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("kimp-journal-tail".into())
                    .spawn(move || tail_journal(&mut tail, &tx, &board, &clock, &stop))?,
            );
        }
        {
            let (tx, board) = (store.tx(), board.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("kimp-bridge".into())
                    .spawn(move || bridge(out_rx, &tx, &board, &alert_tx, &clock))?,
            );
        }
        Ok(Sidecars { board, store: Some(store), telegram, alerts: Some(alerts), threads, stop })
    }

    /// Stops the bridge threads once the loop has stopped (its channel closed), flushes
    /// the store and stops Telegram.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // The store holds a sender of alert inputs: stop it before waiting for the alert
        // thread, which ends only when every sender is gone.
        if let Some(s) = self.store.take() {
            s.shutdown();
        }
        if let Some(a) = self.alerts.take() {
            let _ = a.join();
        }
        if let Some(t) = self.telegram.take() {
            t.shutdown();
        }
    }
}

/// Follows the journal into the store. A full record queue is waited out here (the loop
/// is not involved), so no trading record is ever dropped.
fn tail_journal(
    tail: &mut Tail,
    tx: &StoreTx,
    board: &StatusBoard,
    clock: &Clock,
    stop: &AtomicBool,
) {
    let mut buf = Vec::with_capacity(1_024);
    let mut seq = 0u64;
    loop {
        // Read once more after the stop flag so the last records are not left behind.
        let stopping = stop.load(Ordering::Relaxed);
        buf.clear();
        if tail.poll(&mut buf).is_err() {
            std::thread::sleep(Duration::from_millis(10));
        }
        for (ts, e) in &buf {
            seq += 1;
            if let Entry::Record(r) = e {
                board.on_record(wall(clock, *ts), r);
                while tx.journal(seq, wall(clock, *ts), *r).is_err() {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        if stopping {
            return;
        }
        if buf.is_empty() {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Telemetry, latency and alerts from the loop.
fn bridge(
    rx: Receiver<Out>,
    tx: &StoreTx,
    board: &StatusBoard,
    alerts: &Sender<AlertInput>,
    clock: &Clock,
) {
    while let Ok(o) = rx.recv() {
        match o {
            Out::Telemetry(t) => {
                board.on_telemetry(&t);
                if let Telemetry::Kimp(mut k) = t {
                    k.ts = wall(clock, k.ts);
                    board.set_kimp(k);
                    tx.telemetry(StoreEvent::Kimp(k));
                }
            }
            Out::Alert(a) => {
                let _ = alerts.try_send(AlertInput::Engine(a));
            }
            Out::Loop(l) => {
                let ts = wall(clock, clock.now());
                for (i, name) in STAGE_NAMES.iter().enumerate().take(STAGES) {
                    let s = l.stages[i];
                    if s.count == 0 {
                        continue;
                    }
                    let sample = LatencySample {
                        ts,
                        stage: name,
                        count: s.count,
                        p50_ns: s.p50,
                        p99_ns: s.p99,
                        p999_ns: s.p999,
                        max_ns: s.max,
                    };
                    board.set_latency(sample);
                    tx.telemetry(StoreEvent::Latency(sample));
                }
            }
            Out::Counters(_) => {}
        }
    }
}
