//! Actions: everything the engine asks the outside world to do, in order.
//!
//! The engine writes actions into a caller-owned [`Outbox`] with a fixed capacity. Order
//! matters and is part of the contract: a `Journal(Record::Intent)` always precedes the
//! `Place` actions of that intent, so the runtime journals an id before it sends it.

use crate::config::Direction;
use crate::event::{Bbo, Funding, FxQuote, FxSource, RejectReason};
use crate::instrument::{InstrumentId, Venue};
use crate::order::{ClientId, OrderRequest, OrderState};
use crate::pair::PairState;
use crate::risk::RiskReject;
use crate::units::{Krw, Nanos, Price, Qty, Quote};

/// Why an intent was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Open a pair.
    Entry,
    /// Close a pair (strategy exit).
    Exit,
    /// Repair a one-leg pair (re-hedge or unwind).
    Hedge,
    /// Flatten at market (operator command or hard orphan deadline).
    Flatten,
}

/// Why trading is halted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum HaltReason {
    /// Operator `/stop` or CLI.
    Operator = 0,
    /// Orders per second exceeded (runaway guard).
    OrderRate = 1,
    /// A one-leg pair passed the hard deadline and was flattened.
    OrphanHard = 2,
    /// Operator flatten.
    Flatten = 3,
    /// The process is shutting down: entries stop for this run only (not latched across
    /// a restart, unlike every other reason).
    Shutdown = 4,
    /// A venue's position or balance disagrees with the engine's (reconciliation).
    Mismatch = 5,
}

impl HaltReason {
    /// Every reason, in bit order.
    pub const ALL: [HaltReason; 6] = [
        HaltReason::Operator,
        HaltReason::OrderRate,
        HaltReason::OrphanHard,
        HaltReason::Flatten,
        HaltReason::Shutdown,
        HaltReason::Mismatch,
    ];

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// The set of active halt reasons: a bitset, so it stays `Copy` and allocation-free.
/// Iterates in [`HaltReason::ALL`] order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HaltSet(u16);

impl HaltSet {
    /// No reason.
    pub const EMPTY: HaltSet = HaltSet(0);
    const KNOWN: u16 = (1 << HaltReason::ALL.len()) - 1;

    /// The set holding only `r`.
    pub const fn of(r: HaltReason) -> HaltSet {
        HaltSet(r.bit())
    }
    /// This set plus `r`.
    #[must_use]
    pub const fn with(self, r: HaltReason) -> HaltSet {
        HaltSet(self.0 | r.bit())
    }
    /// This set without `r`.
    #[must_use]
    pub const fn without(self, r: HaltReason) -> HaltSet {
        HaltSet(self.0 & !r.bit())
    }
    /// True when `r` is in the set.
    pub const fn contains(self, r: HaltReason) -> bool {
        self.0 & r.bit() != 0
    }
    /// True when no reason is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Number of reasons.
    pub const fn len(self) -> u32 {
        self.0.count_ones()
    }
    /// The bits (bit `n` is the reason with discriminant `n`), for the journal.
    pub const fn bits(self) -> u16 {
        self.0
    }
    /// A set from its bits; `None` when a bit names no reason.
    pub const fn from_bits(b: u16) -> Option<HaltSet> {
        if b & !Self::KNOWN == 0 { Some(HaltSet(b)) } else { None }
    }
    /// The reasons, in [`HaltReason::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = HaltReason> {
        HaltReason::ALL.into_iter().filter(move |r| self.contains(*r))
    }
    /// The first reason in [`HaltReason::ALL`] order.
    pub fn first(self) -> Option<HaltReason> {
        self.iter().next()
    }
}

impl From<HaltReason> for HaltSet {
    fn from(r: HaltReason) -> HaltSet {
        HaltSet::of(r)
    }
}

impl core::fmt::Debug for HaltSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Trading state of the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TradingState {
    /// Start-up: journal replay and venue reconciliation; no new orders.
    Reconciling,
    /// Normal trading.
    Active,
    /// Refuses new entries and exits; cancels and hedges still go out. Latches until
    /// an explicit resume, which clears every reason at once. Never empty.
    Halted(HaltSet),
}

impl TradingState {
    /// Halted for one reason.
    pub const fn halted(r: HaltReason) -> TradingState {
        TradingState::Halted(HaltSet::of(r))
    }
    /// The active halt reasons (empty unless halted).
    pub const fn halts(self) -> HaltSet {
        match self {
            TradingState::Halted(s) => s,
            _ => HaltSet::EMPTY,
        }
    }
}

/// A record for the journal (never dropped).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Record {
    /// An intent and the ids of its orders, written before any of them is sent.
    Intent {
        /// Intent sequence.
        seq: u32,
        /// Pair id.
        pair: u32,
        /// Coin index.
        coin: u16,
        /// Why.
        purpose: Purpose,
        /// Client ids of the orders (one or two).
        orders: [Option<ClientId>; 2],
    },
    /// An order as sent.
    Order(OrderRequest),
    /// A new fill on one of our orders.
    Fill {
        /// Order.
        cl_id: ClientId,
        /// Venue trade id.
        trade_id: u64,
        /// Price.
        px: Price,
        /// Newly filled quantity.
        qty: Qty,
        /// Fee, quote currency.
        fee: Quote,
        /// Exchange time.
        exch_ts: Nanos,
    },
    /// An order changed state.
    OrderState {
        /// Order.
        cl_id: ClientId,
        /// New state.
        state: OrderState,
        /// Cumulative fill.
        filled: Qty,
    },
    /// A pair changed state.
    Pair(PairRecord),
    /// Trading state changed.
    Trading {
        /// New state.
        state: TradingState,
    },
}

/// A pair transition, with its accounting at that moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairRecord {
    /// Pair id (the intent sequence that opened it).
    pub pair: u32,
    /// Coin index.
    pub coin: u16,
    /// Direction.
    pub direction: Direction,
    /// Previous state.
    pub from: PairState,
    /// New state.
    pub to: PairState,
    /// Upbit position (signed).
    pub pos_u: Qty,
    /// Binance position (signed).
    pub pos_b: Qty,
    /// Executable premium at entry, bps.
    pub entry_premium_bps: f64,
    /// FX locked at entry (KRW per USDT).
    pub fx_entry: Price,
    /// Realised PnL split; all zero until the pair closes.
    pub pnl: PnlSplit,
}

/// Realised PnL in KRW, attributed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PnlSplit {
    /// Premium change (both legs' price moves at the entry FX).
    pub premium: Krw,
    /// FX change on the USDT leg between entry and exit.
    pub fx: Krw,
    /// Fees on both venues (negative).
    pub fees: Krw,
    /// Funding received (positive) or paid (negative).
    pub funding: Krw,
}

impl PnlSplit {
    /// Sum of the parts.
    pub fn net(&self) -> Krw {
        Krw(self
            .premium
            .0
            .saturating_add(self.fx.0)
            .saturating_add(self.fees.0)
            .saturating_add(self.funding.0))
    }
}

/// A premium sample for telemetry (the `kimp` table).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KimpSample {
    /// Coin index.
    pub coin: u16,
    /// Engine time.
    pub ts: Nanos,
    /// Mid premium in bps (display only).
    pub mid_bps: f64,
    /// Executable `sell_premium` premium in bps for the sizing quantity.
    pub sell_bps: f64,
    /// Executable `buy_discount` premium in bps.
    pub buy_bps: f64,
    /// FX used (KRW per USDT, mid).
    pub fx: Price,
    /// FX source.
    pub fx_source: FxSource,
    /// Quantity the executable premium was computed for.
    pub qty: Qty,
    /// Current funding rate (1e-8).
    pub funding_e8: i64,
}

/// A status snapshot, answered to `Control::Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusSnapshot {
    /// Trading state.
    pub trading: TradingState,
    /// Open pairs.
    pub open_pairs: u32,
    /// Orders not yet terminal.
    pub live_orders: u32,
    /// Orders in the `Unknown` state.
    pub unknown_orders: u32,
    /// Σ |unhedged quantity| over coins.
    pub unhedged_pairs: u32,
    /// Realised net PnL since start, KRW.
    pub realized_krw: Krw,
    /// Events processed.
    pub events: u64,
}

/// Telemetry (may be sampled or dropped under pressure; drops are counted).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Telemetry {
    /// Premium sample.
    Kimp(KimpSample),
    /// Risk refused an order.
    RiskReject {
        /// Coin index.
        coin: u16,
        /// Why.
        reason: RiskReject,
    },
    /// Status snapshot.
    Status(StatusSnapshot),
    /// Best bid/offer of a coin leg when its book changed, at most once per telemetry
    /// interval (the `bbo` table).
    Bbo(Bbo),
    /// Mark price and funding of a perpetual, when they change (the `funding` table).
    Funding(Funding),
    /// An FX quote, when it changes, from either source (the `fx` table).
    Fx(FxQuote),
}

/// An alert for people (Telegram, log), deduplicated by the alerts sidecar.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Alert {
    /// A pair was opened (both legs filled).
    PairOpened {
        /// Pair id.
        pair: u32,
        /// Coin index.
        coin: u16,
        /// Quantity.
        qty: Qty,
        /// Executable premium at entry, bps.
        premium_bps: f64,
    },
    /// A pair was closed.
    PairClosed {
        /// Pair id.
        pair: u32,
        /// Coin index.
        coin: u16,
        /// PnL split.
        pnl: PnlSplit,
    },
    /// A pair has one leg (or unequal legs).
    OneLeg {
        /// Pair id.
        pair: u32,
        /// Coin index.
        coin: u16,
        /// Unhedged quantity (signed, Upbit + Binance).
        unhedged: Qty,
    },
    /// The one-leg condition was repaired.
    OneLegResolved {
        /// Pair id.
        pair: u32,
        /// Coin index.
        coin: u16,
        /// Time it took (ms).
        age_ms: u64,
    },
    /// Trading halted (or a reason was added to an existing halt).
    Halted(HaltReason),
    /// A venue's position or balance differs from the engine's by more than dust; trading
    /// halts with [`HaltReason::Mismatch`].
    Mismatch {
        /// Coin index.
        coin: u16,
        /// Venue whose account disagrees.
        venue: Venue,
        /// What the engine (journal and fills since) expects: the perp position on
        /// Binance, the free coin balance on Upbit.
        expected: Qty,
        /// What the venue reported.
        actual: Qty,
    },
    /// Trading resumed.
    Resumed,
    /// A book became stale or unusable.
    StaleBook(InstrumentId),
    /// A venue rejected an order.
    Rejected {
        /// Venue.
        venue: Venue,
        /// Reason.
        reason: RejectReason,
    },
}

/// One thing to do.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Action {
    /// Send a new order (after its intent was journaled).
    Place(OrderRequest),
    /// Cancel an order.
    Cancel {
        /// Order.
        cl_id: ClientId,
        /// Instrument.
        inst: InstrumentId,
    },
    /// Ask the venue about an order by client id (never re-send it).
    Query {
        /// Order.
        cl_id: ClientId,
        /// Instrument.
        inst: InstrumentId,
    },
    /// The book needs a new snapshot.
    Resync(InstrumentId),
    /// Append to the journal (never dropped).
    Journal(Record),
    /// Telemetry.
    Telemetry(Telemetry),
    /// Alert.
    Alert(Alert),
}

/// The caller-owned, fixed-capacity action buffer.
#[derive(Debug)]
pub struct Outbox {
    actions: Vec<Action>,
    cap: usize,
    /// Actions that did not fit (a sizing bug: the engine reserves room before intents).
    pub overflow: u64,
}

impl Outbox {
    /// An outbox holding at most `cap` actions per `on_event` call.
    pub fn with_capacity(cap: usize) -> Self {
        Self { actions: Vec::with_capacity(cap), cap, overflow: 0 }
    }

    /// Appends an action; refuses (and counts) past capacity instead of growing.
    #[inline]
    pub fn push(&mut self, a: Action) -> bool {
        if self.actions.len() < self.cap {
            self.actions.push(a);
            true
        } else {
            self.overflow += 1;
            false
        }
    }

    /// Room left.
    #[inline]
    pub fn room(&self) -> usize {
        self.cap - self.actions.len()
    }

    /// The actions written so far.
    #[inline]
    pub fn as_slice(&self) -> &[Action] {
        &self.actions
    }

    /// Drains the actions (keeps the allocation).
    #[inline]
    pub fn drain(&mut self) -> std::vec::Drain<'_, Action> {
        self.actions.drain(..)
    }

    /// Empties the outbox (keeps the allocation).
    #[inline]
    pub fn clear(&mut self) {
        self.actions.clear();
    }

    /// Number of actions.
    #[inline]
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// True when empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}
