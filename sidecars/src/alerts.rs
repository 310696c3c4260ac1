//! Alert rules: engine alerts, API error streaks, stale feeds and store outages become
//! short messages for people, deduplicated per key within a window and rate-limited,
//! then routed to the log (tracing) and to Telegram.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use kimp_core::action::{Alert, HaltReason};
use kimp_core::instrument::Venue;
use kimp_core::units::{DecimalDp, Krw};

use crate::labels;
use crate::names::Names;
use crate::status::StatusBoard;
use crate::store::StoreAlert;

/// `[alerts]` configuration.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// The same key is sent at most once per this many seconds.
    pub dedup_s: u64,
    /// API errors in a row from one venue that raise an alert.
    pub api_errors_in_row: u32,
    /// Non-critical messages per minute at most (critical ones always pass).
    pub max_per_min: u32,
    /// UTC hour of the daily summary (`None`: no summary). 0 UTC is 09:00 in Seoul.
    pub daily_summary_utc_hour: Option<u8>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            dedup_s: 300,
            api_errors_in_row: 3,
            max_per_min: 20,
            daily_summary_utc_hour: Some(0),
        }
    }
}

/// How urgent a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// For the record (entries, exits).
    Info,
    /// Needs a look (one leg, stale feed, API errors).
    Warn,
    /// Needs action (halt, emergency stop, storage down).
    Critical,
}

/// A message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertMsg {
    /// Urgency.
    pub severity: Severity,
    /// Dedup key (`halt:operator`, `api:binance`, `pair:12:opened`).
    pub key: String,
    /// Plain text.
    pub text: String,
}

impl AlertMsg {
    /// A message with its key.
    pub fn new(severity: Severity, key: impl Into<String>, text: impl Into<String>) -> Self {
        Self { severity, key: key.into(), text: text.into() }
    }
}

/// What the runtime reports to the alert rules.
#[derive(Clone, Debug, PartialEq)]
pub enum AlertInput {
    /// An engine alert (`Action::Alert`).
    Engine(Alert),
    /// A venue API call failed (HTTP error, timeout, venue error code).
    ApiError {
        /// Venue.
        venue: Venue,
        /// Short description (must not contain keys or signatures).
        detail: String,
    },
    /// A venue API call succeeded (resets the error streak).
    ApiOk(Venue),
    /// A venue's market data stopped arriving.
    FeedStale {
        /// Venue.
        venue: Venue,
        /// Age of its newest message, ms.
        age_ms: u64,
    },
    /// A stale feed is live again.
    FeedRecovered(Venue),
    /// The emergency stop ran (operator, signal file, loss limit).
    EmergencyStop(String),
    /// The store's outage and disk alerts.
    Store(StoreAlert),
    /// The trading-record queue to the store was full (entries halted).
    RecordQueueFull,
    /// Anything else.
    Custom(AlertMsg),
}

/// The rules (deterministic: time is passed in).
#[derive(Debug)]
pub struct Alerts {
    cfg: AlertsConfig,
    names: Arc<Names>,
    last_sent: HashMap<String, u64>,
    recent: VecDeque<u64>,
    api_streak: [u32; Venue::COUNT],
    stale: HashSet<Venue>,
    /// Messages dropped as duplicates within the window.
    pub deduped: u64,
    /// Messages dropped by the per-minute limit.
    pub rate_limited: u64,
}

fn coin_qty(q: kimp_core::units::Qty) -> DecimalDp {
    DecimalDp(q.0, 8)
}

fn krw(k: Krw) -> String {
    format!("{} KRW", DecimalDp(k.0, 0))
}

impl Alerts {
    /// Rules with a configuration and names.
    pub fn new(cfg: AlertsConfig, names: Arc<Names>) -> Self {
        Self {
            cfg,
            names,
            last_sent: HashMap::new(),
            recent: VecDeque::new(),
            api_streak: [0; Venue::COUNT],
            stale: HashSet::new(),
            deduped: 0,
            rate_limited: 0,
        }
    }

    /// Applies one input at `now_ms` (any monotonic or wall clock in ms); returns the
    /// message to send, if any.
    pub fn on_input(&mut self, now_ms: u64, input: &AlertInput) -> Option<AlertMsg> {
        let msg = self.rule(input)?;
        self.gate(now_ms, msg)
    }

    fn rule(&mut self, input: &AlertInput) -> Option<AlertMsg> {
        use Severity::*;
        let n = &self.names;
        Some(match input {
            AlertInput::Engine(a) => match *a {
                Alert::PairOpened { pair, coin, qty, premium_bps } => AlertMsg::new(
                    Info,
                    format!("pair:{pair}:opened"),
                    format!(
                        "Opened pair #{pair} {}: qty {} at {}",
                        n.coin(coin),
                        coin_qty(qty),
                        labels::bps(premium_bps)
                    ),
                ),
                Alert::PairClosed { pair, coin, pnl } => AlertMsg::new(
                    Info,
                    format!("pair:{pair}:closed"),
                    format!(
                        "Closed pair #{pair} {}: net {} (premium {}, fx {}, fees {}, funding {})",
                        n.coin(coin),
                        krw(pnl.net()),
                        krw(pnl.premium),
                        krw(pnl.fx),
                        krw(pnl.fees),
                        krw(pnl.funding)
                    ),
                ),
                Alert::OneLeg { pair, coin, unhedged } => AlertMsg::new(
                    Warn,
                    format!("pair:{pair}:one_leg"),
                    format!(
                        "ONE LEG: pair #{pair} {} unhedged {}; repairing",
                        n.coin(coin),
                        coin_qty(unhedged)
                    ),
                ),
                Alert::OneLegResolved { pair, coin, age_ms } => AlertMsg::new(
                    Info,
                    format!("pair:{pair}:one_leg_resolved"),
                    format!("One leg resolved: pair #{pair} {} after {age_ms} ms", n.coin(coin)),
                ),
                // A normal shutdown (Ctrl-C, SIGTERM) stops entries for the rest of this
                // run only: news, not an alarm.
                Alert::Halted(HaltReason::Shutdown) => AlertMsg::new(
                    Info,
                    "shutdown",
                    "Shutting down: no new entries; orders in flight finish first.",
                ),
                Alert::Halted(r) => AlertMsg::new(
                    Critical,
                    format!("halt:{}", labels::halt_reason(r)),
                    format!(
                        "HALTED ({}): no new entries; hedges and cancels continue. /resume to re-arm.",
                        labels::halt_reason(r)
                    ),
                ),
                Alert::Mismatch { coin, venue, expected, actual } => AlertMsg::new(
                    Critical,
                    format!("mismatch:{coin}:{}", venue.name()),
                    format!(
                        "POSITION MISMATCH: {} on {}: expected {}, venue has {}; entries halted. \
                         Fix the account, then /resume.",
                        n.coin(coin),
                        venue.name(),
                        coin_qty(expected),
                        coin_qty(actual)
                    ),
                ),
                Alert::Resumed => AlertMsg::new(Info, "resumed", "Trading resumed."),
                Alert::StaleBook(inst) => AlertMsg::new(
                    Warn,
                    format!("stale:{}", inst.0),
                    format!("Stale book: {} {}", n.venue_name(inst), n.symbol(inst)),
                ),
                Alert::Rejected { venue, reason } => {
                    return self.api_error(venue, &format!("rejected: {}", labels::reject(reason)));
                }
            },
            AlertInput::ApiError { venue, detail } => return self.api_error(*venue, detail),
            AlertInput::ApiOk(v) => {
                self.api_streak[v.idx()] = 0;
                return None;
            }
            AlertInput::FeedStale { venue, age_ms } => {
                self.stale.insert(*venue);
                AlertMsg::new(
                    Warn,
                    format!("feed:{}", venue.name()),
                    format!(
                        "Stale feed: {} (no data for {age_ms} ms); entries on it stop",
                        venue.name()
                    ),
                )
            }
            AlertInput::FeedRecovered(v) => {
                if !self.stale.remove(v) {
                    return None;
                }
                AlertMsg::new(
                    Info,
                    format!("feed_ok:{}", v.name()),
                    format!("Feed back: {}", v.name()),
                )
            }
            AlertInput::EmergencyStop(why) => {
                AlertMsg::new(Critical, "emergency", format!("EMERGENCY STOP: {why}"))
            }
            AlertInput::Store(s) => match s {
                StoreAlert::QuestDbDown { error } => AlertMsg::new(
                    Critical,
                    "store:down",
                    format!("QuestDB unavailable ({error}); buffering to disk"),
                ),
                StoreAlert::QuestDbUp { down_ms } => AlertMsg::new(
                    Info,
                    "store:up",
                    format!("QuestDB back after {down_ms} ms; backfilling"),
                ),
                StoreAlert::DiskError { error } => AlertMsg::new(
                    Critical,
                    "store:disk",
                    format!("Store cannot write files: {error}"),
                ),
            },
            AlertInput::RecordQueueFull => AlertMsg::new(
                Critical,
                "store:queue",
                "Store record queue full: entries halted until it drains",
            ),
            AlertInput::Custom(m) => m.clone(),
        })
    }

    fn api_error(&mut self, venue: Venue, detail: &str) -> Option<AlertMsg> {
        let s = &mut self.api_streak[venue.idx()];
        *s = s.saturating_add(1);
        tracing::info!(venue = venue.name(), streak = *s, detail, "venue API error");
        (*s >= self.cfg.api_errors_in_row).then(|| {
            AlertMsg::new(
                Severity::Warn,
                format!("api:{}", venue.name()),
                format!("{} API errors in a row from {} (last: {detail})", *s, venue.name()),
            )
        })
    }

    fn gate(&mut self, now_ms: u64, msg: AlertMsg) -> Option<AlertMsg> {
        let window = self.cfg.dedup_s.saturating_mul(1000);
        if let Some(&t) = self.last_sent.get(&msg.key)
            && now_ms.saturating_sub(t) < window
        {
            self.deduped += 1;
            return None;
        }
        while self.recent.front().is_some_and(|&t| now_ms.saturating_sub(t) >= 60_000) {
            self.recent.pop_front();
        }
        if msg.severity < Severity::Critical && self.recent.len() >= self.cfg.max_per_min as usize {
            self.rate_limited += 1;
            return None;
        }
        self.recent.push_back(now_ms);
        self.last_sent.insert(msg.key.clone(), now_ms);
        if self.last_sent.len() > 10_000 {
            self.last_sent.retain(|_, t| now_ms.saturating_sub(*t) < window);
        }
        Some(msg)
    }
}

/// Logs a message at its severity.
pub fn log(m: &AlertMsg) {
    match m.severity {
        Severity::Info => tracing::info!(target: "kimp::alert", key = %m.key, "{}", m.text),
        Severity::Warn => tracing::warn!(target: "kimp::alert", key = %m.key, "{}", m.text),
        Severity::Critical => tracing::error!(target: "kimp::alert", key = %m.key, "{}", m.text),
    }
}

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The alerts thread.
#[derive(Debug)]
pub struct AlertsHandle {
    thread: Option<JoinHandle<Alerts>>,
}

impl AlertsHandle {
    /// Waits for the thread (it ends when every `AlertInput` sender is dropped) and returns
    /// the rules with their counters.
    pub fn join(mut self) -> Option<Alerts> {
        self.thread.take().and_then(|t| t.join().ok())
    }
}

/// Starts the alerts thread: inputs → rules → log and `out` (Telegram; dropped, with a
/// log line, if that queue is full). With a board, it also sends the daily summary.
pub fn spawn(
    cfg: AlertsConfig,
    names: Arc<Names>,
    board: Option<Arc<StatusBoard>>,
    inputs: Receiver<AlertInput>,
    out: Option<Sender<AlertMsg>>,
) -> std::io::Result<AlertsHandle> {
    let summary_hour = cfg.daily_summary_utc_hour;
    let mut rules = Alerts::new(cfg, names);
    let thread = std::thread::Builder::new().name("kimp-alerts".into()).spawn(move || {
        let mut summary_day = wall_ms() / 86_400_000;
        let route = |m: AlertMsg| {
            log(&m);
            if let Some(o) = &out
                && o.try_send(m).is_err()
            {
                tracing::warn!("alerts: Telegram queue full; message kept in the log only");
            }
        };
        loop {
            match inputs.recv_timeout(Duration::from_secs(1)) {
                Ok(i) => {
                    if let Some(m) = rules.on_input(wall_ms(), &i) {
                        route(m);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return rules,
            }
            if let (Some(h), Some(b)) = (summary_hour, &board) {
                let now = wall_ms();
                let (day, hour) = (now / 86_400_000, (now / 3_600_000 % 24) as u8);
                if day > summary_day && hour >= h {
                    summary_day = day;
                    let text = crate::commands::format::daily_summary(b);
                    route(AlertMsg::new(Severity::Info, format!("daily:{day}"), text));
                }
            }
        }
    })?;
    Ok(AlertsHandle { thread: Some(thread) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kimp_core::event::RejectReason;

    fn rules() -> Alerts {
        let names = Arc::new(Names::from_markets(&kimp_core::testkit::btc_markets()));
        Alerts::new(AlertsConfig { dedup_s: 60, max_per_min: 3, ..AlertsConfig::default() }, names)
    }

    #[test]
    fn a_shutdown_halt_is_news_and_a_risk_halt_an_alarm() {
        let mut a = rules();
        let bye = a.on_input(0, &AlertInput::Engine(Alert::Halted(HaltReason::Shutdown))).unwrap();
        assert_eq!(bye.severity, Severity::Info);
        assert!(bye.text.starts_with("Shutting down"), "{}", bye.text);
        let halt =
            a.on_input(0, &AlertInput::Engine(Alert::Halted(HaltReason::OrderRate))).unwrap();
        assert_eq!(halt.severity, Severity::Critical);
        assert!(halt.text.starts_with("HALTED (order_rate)"), "{}", halt.text);
    }

    #[test]
    fn three_api_errors_in_a_row_alert_once_per_window() {
        let mut a = rules();
        let rej = AlertInput::Engine(Alert::Rejected {
            venue: Venue::Binance,
            reason: RejectReason::Filter,
        });
        assert_eq!(a.on_input(0, &rej), None);
        assert_eq!(
            a.on_input(
                1,
                &AlertInput::ApiError { venue: Venue::Binance, detail: "HTTP 502".into() }
            ),
            None
        );
        // A success on another venue does not reset Binance's streak.
        assert_eq!(a.on_input(2, &AlertInput::ApiOk(Venue::Upbit)), None);
        let m = a.on_input(3, &rej).expect("third error alerts");
        assert_eq!(m.key, "api:binance");
        assert!(m.text.starts_with("3 API errors in a row from binance"), "{}", m.text);
        assert_eq!(a.on_input(4, &rej), None, "deduplicated");
        assert_eq!(a.deduped, 1);
        a.on_input(5, &AlertInput::ApiOk(Venue::Binance));
        assert_eq!(a.on_input(6, &rej), None, "streak reset");
        assert_eq!(a.on_input(7, &rej), None);
        assert_eq!(a.on_input(60_010, &rej).map(|m| m.key), Some("api:binance".into()));
    }

    #[test]
    fn rate_limit_spares_critical_and_recovery_needs_a_stale_first() {
        let mut a = rules();
        assert_eq!(a.on_input(0, &AlertInput::FeedRecovered(Venue::Upbit)), None);
        for p in 0..3 {
            let i = AlertInput::Engine(Alert::OneLegResolved { pair: p, coin: 0, age_ms: 5 });
            assert!(a.on_input(10, &i).is_some());
        }
        let i = AlertInput::Engine(Alert::OneLegResolved { pair: 9, coin: 0, age_ms: 5 });
        assert_eq!(a.on_input(11, &i), None);
        assert_eq!(a.rate_limited, 1);
        let h = a.on_input(12, &AlertInput::Engine(Alert::Halted(HaltReason::Operator))).unwrap();
        assert_eq!((h.severity, h.key.as_str()), (Severity::Critical, "halt:operator"));
        assert!(a.on_input(61_000, &i).is_some(), "window slid");
        let s = a
            .on_input(61_001, &AlertInput::FeedStale { venue: Venue::Upbit, age_ms: 900 })
            .unwrap();
        assert!(s.text.contains("upbit"));
        assert_eq!(
            a.on_input(61_002, &AlertInput::FeedRecovered(Venue::Upbit)).map(|m| m.key),
            Some("feed_ok:upbit".into())
        );
    }

    #[test]
    fn thread_routes_deduplicated_messages_and_ends_with_its_inputs() {
        let names = Arc::new(Names::from_markets(&kimp_core::testkit::btc_markets()));
        let (in_tx, in_rx) = crossbeam_channel::bounded(16);
        let (out_tx, out_rx) = crossbeam_channel::bounded(16);
        let h = spawn(AlertsConfig::default(), names, None, in_rx, Some(out_tx)).unwrap();
        for _ in 0..5 {
            in_tx
                .send(AlertInput::ApiError { venue: Venue::Upbit, detail: "HTTP 503".into() })
                .unwrap();
        }
        in_tx.send(AlertInput::Store(StoreAlert::QuestDbDown { error: "refused".into() })).unwrap();
        drop(in_tx);
        let rules = h.join().expect("thread ends when inputs close");
        let got: Vec<String> = out_rx.try_iter().map(|m| m.key).collect();
        assert_eq!(got, vec!["api:upbit".to_string(), "store:down".to_string()]);
        assert_eq!(rules.deduped, 2, "errors 4 and 5 repeat the same key");
    }

    #[test]
    fn engine_alerts_name_coins() {
        let mut a = rules();
        let m = a
            .on_input(
                0,
                &AlertInput::Engine(Alert::PairOpened {
                    pair: 7,
                    coin: 0,
                    qty: kimp_core::units::Qty(1_000_000),
                    premium_bps: 251.26,
                }),
            )
            .unwrap();
        assert_eq!(m.text, "Opened pair #7 BTC: qty 0.01000000 at 251.3 bps");
    }

    #[test]
    fn a_mismatch_names_coin_venue_expected_and_actual() {
        let mut a = rules();
        let m = a
            .on_input(
                0,
                &AlertInput::Engine(Alert::Mismatch {
                    coin: 0,
                    venue: Venue::Binance,
                    expected: kimp_core::units::Qty(1_000_000),
                    actual: kimp_core::units::Qty(0),
                }),
            )
            .unwrap();
        assert_eq!((m.severity, m.key.as_str()), (Severity::Critical, "mismatch:0:binance"));
        assert!(
            m.text.starts_with(
                "POSITION MISMATCH: BTC on binance: expected 0.01000000, venue has 0.00000000;"
            ),
            "{}",
            m.text
        );
    }
}
