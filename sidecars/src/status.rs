//! The status board: the latest state the runtime publishes off the hot path and the bot
//! (and the daily summary) reads. One `RwLock`; writers hold it for a few field stores.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use kimp_core::action::{
    KimpSample, PairRecord, PnlSplit, Record, StatusSnapshot, Telemetry, TradingState,
};
use kimp_core::instrument::{InstrumentId, Venue};
use kimp_core::pair::PairState;
use kimp_core::units::{Krw, Nanos};

use crate::names::Names;
use crate::store::{LatencySample, StoreStats};

/// Health of one book.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BookHealth {
    /// Age of the newest update, ms.
    pub age_ms: u64,
    /// Sequence gaps detected so far.
    pub gaps: u64,
    /// True when the engine will not trade on it (stale, gap, resyncing).
    pub stale: bool,
}

/// Health of one venue connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VenueHealth {
    /// Market data connected.
    pub connected: bool,
    /// Consecutive API errors.
    pub api_errors_in_row: u32,
    /// Reconnects so far.
    pub reconnects: u64,
    /// Last error, as text (never with keys: gateways' errors are redacted).
    pub last_error: Option<String>,
}

/// One venue connection (market data or user stream) as the loop last reported it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedHealth {
    /// Short name (`upbit`, `binance public`, ...).
    pub name: &'static str,
    /// The connection is open.
    pub open: bool,
    /// Age of its newest data message, ms (`None`: none yet).
    pub age_ms: Option<u64>,
    /// Times it opened again after the first time.
    pub reconnects: u64,
    /// True for a stream that is quiet when nothing happens (the user stream): its age
    /// says nothing about its health.
    pub quiet: bool,
}

/// Realised PnL totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PnlTotals {
    /// Sum over closed pairs since start.
    pub realized: PnlSplit,
    /// Pairs closed since start.
    pub closed: u32,
    /// Net PnL of pairs closed today (UTC date of the engine time).
    pub today: Krw,
    /// Pairs closed today.
    pub today_closed: u32,
    /// Day number (days since 1970-01-01 UTC) `today` refers to.
    pub day: u64,
}

/// Everything on the board (cloned out by readers).
#[derive(Clone, Debug, Default)]
pub struct Board {
    /// Trading state, once known.
    pub trading: Option<TradingState>,
    /// When `trading` was reported (a late report of an older state does not undo a
    /// newer one).
    pub trading_at: Nanos,
    /// Latest engine status snapshot.
    pub status: Option<StatusSnapshot>,
    /// Latest premium sample per coin index.
    pub kimp: Vec<Option<KimpSample>>,
    /// Pairs not yet closed, by id.
    pub open_pairs: BTreeMap<u32, PairRecord>,
    /// Realised PnL.
    pub pnl: PnlTotals,
    /// Latest latency percentiles per stage.
    pub latency: BTreeMap<&'static str, LatencySample>,
    /// Book health per instrument id.
    pub books: BTreeMap<u16, BookHealth>,
    /// Venue health per venue index.
    pub venues: [VenueHealth; Venue::COUNT],
    /// The loop's connections, as last reported.
    pub feeds: Vec<FeedHealth>,
    /// Engine time of the latest update.
    pub now: Nanos,
}

/// The shared board.
#[derive(Debug)]
pub struct StatusBoard {
    names: Arc<Names>,
    board: RwLock<Board>,
    store: RwLock<Option<Arc<StoreStats>>>,
    started: Instant,
}

const DAY_NS: u64 = 86_400_000_000_000;

impl StatusBoard {
    /// An empty board.
    pub fn new(names: Arc<Names>) -> Self {
        Self {
            names,
            board: RwLock::new(Board::default()),
            store: RwLock::new(None),
            started: Instant::now(),
        }
    }

    /// The name table.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Time since the board was made.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// A copy of the board.
    pub fn snapshot(&self) -> Board {
        self.board.read().map(|b| b.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Changes the board under its lock.
    pub fn update(&self, f: impl FnOnce(&mut Board)) {
        let mut g = self.board.write().unwrap_or_else(|p| p.into_inner());
        f(&mut g);
    }

    /// Shows the store's counters in `/health`.
    pub fn set_store(&self, stats: Arc<StoreStats>) {
        *self.store.write().unwrap_or_else(|p| p.into_inner()) = Some(stats);
    }

    /// The store's counters, if set.
    pub fn store(&self) -> Option<Arc<StoreStats>> {
        self.store.read().ok().and_then(|s| s.clone())
    }

    /// Applies a journal record: trading state, pair transitions, realised PnL.
    pub fn on_record(&self, ts: Nanos, rec: &Record) {
        self.update(|b| {
            b.now = b.now.max(ts);
            match rec {
                Record::Trading { state } => set_trading(b, ts, *state),
                Record::Pair(p) => {
                    if p.to == PairState::Closed {
                        b.open_pairs.remove(&p.pair);
                        let day = ts.0 / DAY_NS;
                        if day != b.pnl.day {
                            b.pnl.day = day;
                            b.pnl.today = Krw(0);
                            b.pnl.today_closed = 0;
                        }
                        let r = &mut b.pnl.realized;
                        r.premium = r.premium.saturating_add(p.pnl.premium);
                        r.fx = r.fx.saturating_add(p.pnl.fx);
                        r.fees = r.fees.saturating_add(p.pnl.fees);
                        r.funding = r.funding.saturating_add(p.pnl.funding);
                        b.pnl.closed += 1;
                        b.pnl.today = b.pnl.today.saturating_add(p.pnl.net());
                        b.pnl.today_closed += 1;
                    } else {
                        b.open_pairs.insert(p.pair, *p);
                    }
                }
                _ => {}
            }
        });
    }

    /// Applies engine telemetry (premium samples, status snapshots).
    pub fn on_telemetry(&self, t: &Telemetry) {
        match t {
            Telemetry::Kimp(k) => self.set_kimp(*k),
            Telemetry::Status(s) => self.update(|b| {
                b.trading = Some(s.trading);
                b.status = Some(*s);
            }),
            Telemetry::RiskReject { .. }
            | Telemetry::Bbo(_)
            | Telemetry::Funding(_)
            | Telemetry::Fx(_) => {}
        }
    }

    /// Latest premium of a coin.
    pub fn set_kimp(&self, k: KimpSample) {
        self.update(|b| {
            let i = k.coin as usize;
            if b.kimp.len() <= i {
                b.kimp.resize(i + 1, None);
            }
            b.kimp[i] = Some(k);
            b.now = b.now.max(k.ts);
        });
    }

    /// Latest latency percentiles of a stage.
    pub fn set_latency(&self, l: LatencySample) {
        self.update(|b| {
            b.latency.insert(l.stage, l);
        });
    }

    /// Health of a book.
    pub fn set_book(&self, inst: InstrumentId, h: BookHealth) {
        self.update(|b| {
            b.books.insert(inst.0, h);
        });
    }

    /// Health of a venue.
    pub fn set_venue(&self, venue: Venue, h: VenueHealth) {
        self.update(|b| b.venues[venue.idx()] = h);
    }

    /// The loop's periodic report at `ts`: its trading state and its connections.
    pub fn on_report(&self, ts: Nanos, trading: Option<TradingState>, feeds: &[FeedHealth]) {
        self.update(|b| {
            b.now = b.now.max(ts);
            if let Some(t) = trading {
                set_trading(b, ts, t);
            }
            b.feeds.clear();
            b.feeds.extend_from_slice(feeds);
        });
    }
}

fn set_trading(b: &mut Board, ts: Nanos, state: TradingState) {
    if ts >= b.trading_at {
        b.trading = Some(state);
        b.trading_at = ts;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kimp_core::config::Direction;
    use kimp_core::units::{Price, Qty};

    fn pair(id: u32, to: PairState, net: i64) -> PairRecord {
        PairRecord {
            pair: id,
            coin: 0,
            direction: Direction::SellPremium,
            from: PairState::Opening,
            to,
            pos_u: Qty(-1),
            pos_b: Qty(1),
            entry_premium_bps: 250.0,
            fx_entry: Price(1_400 * 100_000_000),
            pnl: PnlSplit { premium: Krw(net), ..PnlSplit::default() },
        }
    }

    #[test]
    fn a_late_report_of_an_older_state_does_not_undo_a_newer_record() {
        use kimp_core::action::HaltReason;
        let board = StatusBoard::new(Arc::new(Names::new()));
        let halted = TradingState::halted(HaltReason::Operator);
        board.on_report(Nanos(10), Some(TradingState::Active), &[]);
        board.on_record(Nanos(20), &Record::Trading { state: halted });
        board.on_report(Nanos(15), Some(TradingState::Active), &[]);
        assert_eq!(board.snapshot().trading, Some(halted));
        board.on_report(Nanos(30), Some(TradingState::Active), &[]);
        assert_eq!(board.snapshot().trading, Some(TradingState::Active));
    }

    #[test]
    fn tracks_open_pairs_and_daily_pnl() {
        let board = StatusBoard::new(Arc::new(Names::new()));
        let d1 = Nanos(20_000 * DAY_NS + 5);
        board.on_record(d1, &Record::Pair(pair(1, PairState::Hedged, 0)));
        board.on_record(d1, &Record::Pair(pair(2, PairState::Hedged, 0)));
        assert_eq!(board.snapshot().open_pairs.len(), 2);
        board.on_record(d1, &Record::Pair(pair(1, PairState::Closed, 700)));
        let b = board.snapshot();
        assert_eq!(b.open_pairs.keys().copied().collect::<Vec<_>>(), vec![2]);
        assert_eq!((b.pnl.closed, b.pnl.today, b.pnl.realized.premium), (1, Krw(700), Krw(700)));
        board.on_record(Nanos(d1.0 + DAY_NS), &Record::Pair(pair(2, PairState::Closed, -200)));
        let b = board.snapshot();
        assert_eq!((b.pnl.closed, b.pnl.today, b.pnl.today_closed), (2, Krw(-200), 1));
        assert_eq!(b.pnl.realized.net(), Krw(500));
    }
}
