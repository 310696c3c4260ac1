//! The bridge between the loop and the sidecars, on their own threads: the journal is
//! tailed into the store (trading records, never dropped — the loop never waits for
//! them), telemetry goes to the store and the status board, alerts go through the alert
//! rules to the log and Telegram. The loop only ever does a `try_send`.
//!
//! [`Sidecars::pause`] stops the bridge and the journal tail from draining (a slow or
//! stuck sidecar, RELIABILITY.md R14): the loop's channel fills and telemetry is dropped
//! and counted there, while trading records wait in the journal and reach the store when
//! the tail resumes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use crossbeam_channel::{Receiver, Sender, bounded};
use kimp_core::action::{Alert, HaltReason, HaltSet, Record, Telemetry, TradingState};
use kimp_core::engine::Markets;
use kimp_core::event::Control;
use kimp_core::units::Nanos;
use kimp_sidecars::alerts::{self, AlertInput, AlertMsg, AlertsConfig, AlertsHandle, Severity};
use kimp_sidecars::labels;
use kimp_sidecars::names::Names;
use kimp_sidecars::status::StatusBoard;
use kimp_sidecars::store::{LatencySample, QuestDbConf, Store, StoreConfig, StoreEvent, StoreTx};
use kimp_sidecars::telegram::{BotToken, Telegram, TelegramConfig, TelegramHandle};

use super::clock::Clock;
use super::config::Config;
use super::ctl::{CtlListener, CtlServer};
use super::feed_watch::{FeedLine, FeedWatch};
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
    /// The `kimp ctl` server and the status line (`kimp run` only).
    ctl: Option<CtlServer>,
    status_line: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    /// What the bridge counted.
    pub counts: Arc<BridgeCounts>,
}

/// The bridge's counters.
#[derive(Debug, Default)]
pub struct BridgeCounts {
    /// Alerts dropped because the alert rules' queue was full.
    pub alert_drops: AtomicU64,
    /// Journal disk-full alerts raised (once per condition).
    pub journal_alerts: AtomicU64,
    /// Journal entries handed to the store.
    pub records: AtomicU64,
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
        let paused = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(BridgeCounts::default());
        let mut threads = Vec::new();
        {
            let (tx, board, stop) = (store.tx(), board.clone(), stop.clone());
            let (paused, counts) = (paused.clone(), counts.clone());
            threads.push(std::thread::Builder::new().name("kimp-journal-tail".into()).spawn(
                move || {
                    let gate = Gate { stop: &stop, paused: &paused };
                    tail_journal(&mut tail, &tx, &board, &clock, gate, &counts)
                },
            )?);
        }
        {
            let (tx, board, stop) = (store.tx(), board.clone(), stop.clone());
            let (paused, counts) = (paused.clone(), counts.clone());
            threads.push(std::thread::Builder::new().name("kimp-bridge".into()).spawn(
                move || {
                    let gate = Gate { stop: &stop, paused: &paused };
                    bridge(out_rx, &tx, &board, &alert_tx, &clock, gate, &counts)
                },
            )?);
        }
        Ok(Sidecars {
            board,
            store: Some(store),
            telegram,
            alerts: Some(alerts),
            threads,
            ctl: None,
            status_line: None,
            stop,
            paused,
            counts,
        })
    }

    /// Serves `kimp ctl` on `listener`: answers from the board, controls to `control`.
    pub fn serve_ctl(
        &mut self,
        listener: CtlListener,
        control: Sender<Control>,
        confirm: Duration,
    ) -> Result<()> {
        self.ctl = Some(listener.serve(self.board.clone(), control, confirm)?);
        Ok(())
    }

    /// Logs a status line from the board every `every` (state, premium per coin, open
    /// pairs, PnL today, feed ages).
    pub fn log_status_every(&mut self, every: Duration) -> Result<()> {
        let (board, stop) = (self.board.clone(), self.stop.clone());
        let t = std::thread::Builder::new().name("kimp-status".into()).spawn(move || {
            let mut next = std::time::Instant::now() + every;
            while !stop.load(Ordering::Relaxed) {
                let now = std::time::Instant::now();
                if now >= next {
                    next += every;
                    tracing::info!(
                        target: "kimp::status",
                        "status: {}",
                        kimp_sidecars::commands::format::status_line(&board)
                    );
                }
                std::thread::sleep(
                    next.saturating_duration_since(now).min(Duration::from_millis(50)),
                );
            }
        })?;
        self.status_line = Some(t);
        Ok(())
    }

    /// Stops (`true`) or restarts (`false`) draining the loop's channel and the journal:
    /// a stuck sidecar, for tests and drills. Shutdown still completes while paused.
    pub fn pause(&self, on: bool) {
        self.paused.store(on, Ordering::Relaxed);
    }

    /// Stops the bridge threads once the loop has stopped (its channel closed), flushes
    /// the store and stops Telegram.
    pub fn shutdown(mut self) {
        if let Some(c) = self.ctl.take() {
            c.shutdown();
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.status_line.take() {
            let _ = t.join();
        }
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

/// The bridge threads' stop and pause flags.
#[derive(Clone, Copy)]
struct Gate<'a> {
    stop: &'a AtomicBool,
    paused: &'a AtomicBool,
}

impl Gate<'_> {
    /// Waits while paused (not once stopping); true when stopping.
    fn hold(&self) -> bool {
        while self.paused.load(Ordering::Relaxed) && !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.stop.load(Ordering::Relaxed)
    }
}

/// Follows the journal into the store. A full record queue is waited out here (the loop
/// is not involved), so no trading record is ever dropped.
fn tail_journal(
    tail: &mut Tail,
    tx: &StoreTx,
    board: &StatusBoard,
    clock: &Clock,
    gate: Gate<'_>,
    counts: &BridgeCounts,
) {
    let mut buf = Vec::with_capacity(1_024);
    let mut seq = 0u64;
    let mut last_state = None;
    loop {
        // Read once more after the stop flag so the last records are not left behind.
        let stopping = gate.hold();
        buf.clear();
        if tail.poll(&mut buf).is_err() {
            std::thread::sleep(Duration::from_millis(10));
        }
        for (ts, e) in &buf {
            seq += 1;
            if let Entry::Record(r) = e {
                // A state journaled again unchanged (each new reason re-journals the set)
                // is one line for the operator.
                if let Record::Trading { state } = r
                    && last_state.replace(*state) != Some(*state)
                {
                    log_trading(*state);
                }
                board.on_record(wall(clock, *ts), r);
                while tx.journal(seq, wall(clock, *ts), *r).is_err() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                counts.records.fetch_add(1, Ordering::Relaxed);
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

/// A reconnect line (every one is logged; the alert rules see the books' staleness).
fn log_feed(l: &FeedLine) {
    match l {
        FeedLine::Connected(name) => {
            tracing::info!(target: "kimp::feeds", "feed connected: {name}")
        }
        FeedLine::Down(name) => {
            tracing::warn!(target: "kimp::feeds", "feed down: {name}; reconnecting")
        }
        FeedLine::Reconnected { name, down_ms, count } => match down_ms {
            Some(ms) => tracing::info!(
                target: "kimp::feeds",
                "feed reconnected: {name} after {ms} ms down (reconnect {count})"
            ),
            None => {
                tracing::info!(target: "kimp::feeds", "feed reconnected: {name} (reconnect {count})")
            }
        },
    }
}

/// The log line of a trading-state change: every active halt reason, not only the one
/// that was just added (`trading: HALTED (order_rate+orphan_hard)`).
fn trading_line(state: TradingState) -> String {
    match state {
        TradingState::Halted(set) => {
            format!("trading: HALTED ({})", labels::halt_reasons(set, "+"))
        }
        s => format!("trading: {}", labels::trading_state(s)),
    }
}

fn log_trading(state: TradingState) {
    let line = trading_line(state);
    // A clean stop (Ctrl-C, SIGTERM) is routine: only a risk or operator halt warns.
    if state.halts().is_empty() || state.halts() == HaltSet::of(HaltReason::Shutdown) {
        tracing::info!(state = labels::trading_state(state), "{line}");
    } else {
        tracing::warn!(state = labels::trading_state(state), "{line}");
    }
}

/// The store's row for a piece of engine telemetry, in Unix epoch time. Market rows keep
/// the venue's time (their dedup keys), or take the bridge's when a venue gave none.
fn store_event(t: Telemetry, clock: &Clock) -> Option<StoreEvent> {
    let venue_ts = |ts: Nanos| if ts.0 == 0 { wall(clock, clock.now()) } else { ts };
    Some(match t {
        Telemetry::Kimp(mut k) => {
            k.ts = wall(clock, k.ts);
            StoreEvent::Kimp(k)
        }
        Telemetry::Bbo(mut b) => {
            b.exch_ts = venue_ts(b.exch_ts);
            StoreEvent::Bbo(b)
        }
        Telemetry::Funding(mut f) => {
            f.exch_ts = venue_ts(f.exch_ts);
            StoreEvent::Funding(f)
        }
        Telemetry::Fx(mut q) => {
            q.exch_ts = venue_ts(q.exch_ts);
            StoreEvent::Fx(q)
        }
        Telemetry::RiskReject { .. } | Telemetry::Status(_) => return None,
    })
}

/// Telemetry, latency and alerts from the loop.
fn bridge(
    rx: Receiver<Out>,
    tx: &StoreTx,
    board: &StatusBoard,
    alerts: &Sender<AlertInput>,
    clock: &Clock,
    gate: Gate<'_>,
    counts: &BridgeCounts,
) {
    let mut journal_alarm = false;
    let mut feeds = FeedWatch::new();
    let mut lines = Vec::new();
    let alert = |a: AlertInput| {
        if alerts.try_send(a).is_err() {
            counts.alert_drops.fetch_add(1, Ordering::Relaxed);
        }
    };
    loop {
        gate.hold();
        let o = match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(o) => o,
            // Stopping with nothing left: done even if the loop still holds its sender.
            Err(crossbeam_channel::RecvTimeoutError::Timeout) if gate.hold() => return,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        };
        match o {
            Out::Telemetry(t) => {
                board.on_telemetry(&t);
                let ev = store_event(t, clock);
                if let Some(StoreEvent::Kimp(k)) = ev {
                    for (inst, stale_ms) in feeds.on_sample(k.coin, board.names(), Instant::now()) {
                        let n = board.names();
                        alert(AlertInput::Custom(AlertMsg::new(
                            Severity::Info,
                            format!("feed_ok:{}", inst.0),
                            format!(
                                "feed recovered: {} {} (stale for {} ms)",
                                n.venue_name(inst),
                                n.symbol(inst),
                                stale_ms
                            ),
                        )));
                    }
                    board.set_kimp(k);
                }
                if let Some(ev) = ev {
                    tx.telemetry(ev);
                }
            }
            Out::Alert(a) => {
                if let Alert::StaleBook(inst) = a {
                    feeds.on_stale(inst, Instant::now());
                }
                alert(AlertInput::Engine(a))
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
            Out::Counters(c) => {
                let health = feeds.on_report(&c.feeds, c.at, Instant::now(), &mut lines);
                board.on_report(wall(clock, c.at), c.trading, &health);
                for l in lines.drain(..) {
                    log_feed(&l);
                }
                // The loop repeats its journal state every interval, so a report lost to
                // a full channel is not an alarm lost.
                let full = c.journal_degraded || c.journal_failed;
                if full && !journal_alarm {
                    counts.journal_alerts.fetch_add(1, Ordering::Relaxed);
                    alert(AlertInput::Custom(AlertMsg::new(
                        Severity::Critical,
                        "journal:full",
                        format!(
                            "Journal disk full: no new segment can be reserved; entries halted, \
                             {} records of room left for hedges{}",
                            c.journal_room,
                            if c.journal_failed { "; a record was refused" } else { "" }
                        ),
                    )));
                }
                journal_alarm = full;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use kimp_core::action::{HaltReason, HaltSet, TradingState};

    #[test]
    fn the_log_line_names_every_active_halt_reason() {
        let both = HaltSet::of(HaltReason::OrderRate).with(HaltReason::OrphanHard);
        assert_eq!(
            super::trading_line(TradingState::Halted(both)),
            "trading: HALTED (order_rate+orphan_hard)"
        );
        assert_eq!(super::trading_line(TradingState::Active), "trading: active");
    }
}
