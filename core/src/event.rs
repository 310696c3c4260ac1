//! Events: everything that enters the engine.
//!
//! Events are fixed-size and `Copy`. Book levels are *borrowed* (`&'a [Level]`) from the
//! gateway's reusable parse buffer, so a 67-level Binance diff or a 30-level Upbit book
//! enters the engine without a copy and without an allocation; whoever needs to keep an
//! event (a test, the simulator) keeps the levels and lends them again.

use crate::instrument::{InstrumentId, Venue};
use crate::order::ClientId;
use crate::units::{Nanos, Price, Qty, Quote};

/// One price level: absolute quantity at a price (quantity zero = remove the level).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Level {
    /// Price.
    pub px: Price,
    /// Absolute quantity at that price.
    pub qty: Qty,
}

impl Level {
    /// Shorthand constructor.
    #[inline]
    pub const fn new(px: Price, qty: Qty) -> Self {
        Self { px, qty }
    }
}

/// Buy or sell.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Side {
    /// Buy (Upbit `bid`, Binance `BUY`).
    Buy,
    /// Sell (Upbit `ask`, Binance `SELL`).
    Sell,
}

impl Side {
    /// The opposite side.
    #[inline]
    pub const fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
    /// +1 for buy, -1 for sell (sign of the position change).
    #[inline]
    pub const fn sign(self) -> i64 {
        match self {
            Side::Buy => 1,
            Side::Sell => -1,
        }
    }
}

/// A whole book: Upbit's top-N message (replace both sides) or a Binance REST depth
/// snapshot (`last_update_id` = `lastUpdateId`; the sync rule starts from it).
#[derive(Clone, Copy, Debug)]
pub struct BookSnapshot<'a> {
    /// Instrument.
    pub inst: InstrumentId,
    /// Exchange time of the book.
    pub exch_ts: Nanos,
    /// Binance `lastUpdateId`; 0 for venues without sequence numbers (Upbit).
    pub last_update_id: u64,
    /// Bids, best first.
    pub bids: &'a [Level],
    /// Asks, best first.
    pub asks: &'a [Level],
}

/// Binance diff-depth event (`depthUpdate`).
#[derive(Clone, Copy, Debug)]
pub struct DepthDiff<'a> {
    /// Instrument.
    pub inst: InstrumentId,
    /// Exchange event time (`E`).
    pub exch_ts: Nanos,
    /// First update id in the event (`U`).
    pub first_id: u64,
    /// Final update id in the event (`u`).
    pub last_id: u64,
    /// Final update id of the previous event (`pu`, futures only). `None` on spot,
    /// where continuity is `U == previous u + 1`.
    pub prev_last_id: Option<u64>,
    /// Changed bid levels (absolute quantities; zero removes).
    pub bids: &'a [Level],
    /// Changed ask levels.
    pub asks: &'a [Level],
}

/// Best bid and offer (`bookTicker`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bbo {
    /// Instrument.
    pub inst: InstrumentId,
    /// Exchange time.
    pub exch_ts: Nanos,
    /// Update id (`u`), from the same sequence as depth on Binance; 0 when absent.
    pub update_id: u64,
    /// Best bid.
    pub bid: Level,
    /// Best ask.
    pub ask: Level,
}

/// A public trade print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trade {
    /// Instrument.
    pub inst: InstrumentId,
    /// Exchange time.
    pub exch_ts: Nanos,
    /// Trade price.
    pub px: Price,
    /// Trade quantity.
    pub qty: Qty,
    /// Aggressor side.
    pub aggressor: Side,
    /// Venue trade id (or sequential id).
    pub trade_id: u64,
}

/// Mark price and funding (`markPriceUpdate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Funding {
    /// Perpetual instrument.
    pub inst: InstrumentId,
    /// Exchange time.
    pub exch_ts: Nanos,
    /// Mark price.
    pub mark: Price,
    /// Funding rate for the next settlement, fixed-point 1e-8 (`0.00038167` = 38_167).
    pub rate_e8: i64,
    /// Next funding time.
    pub next_funding: Nanos,
}

/// Where a KRW-per-USD(T) rate comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FxSource {
    /// Upbit `KRW-USDT` book (tradeable proxy; the default).
    UpbitUsdt,
    /// An official USD/KRW quote (bank rate).
    Official,
}

/// An FX quote in KRW per USD(T). The `UpbitUsdt` source is normally derived from the
/// KRW-USDT book by the engine; this event carries the other sources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FxQuote {
    /// Source.
    pub source: FxSource,
    /// Time of the quote.
    pub exch_ts: Nanos,
    /// Bid (KRW per USD).
    pub bid: Price,
    /// Ask (KRW per USD).
    pub ask: Price,
}

/// An asset's balance on a venue (from reconciliation or an account update).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Balance {
    /// Venue.
    pub venue: Venue,
    /// Asset, e.g. `KRW`, `USDT`, `BTC`.
    pub asset: crate::instrument::Symbol,
    /// Free amount.
    pub free: Qty,
    /// Amount locked in orders.
    pub locked: Qty,
}

/// A venue's report of a perpetual position (reconciliation, `ACCOUNT_UPDATE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PositionReport {
    /// Perpetual instrument.
    pub inst: InstrumentId,
    /// Signed position (positive = long).
    pub qty: Qty,
}

/// Why a venue refused an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Not enough balance or margin (Upbit `insufficient_funds_*`, Binance `-2019`).
    InsufficientBalance,
    /// Below the minimum notional (Upbit `under_min_total_*`, Binance `-4164`).
    MinNotional,
    /// Price or quantity off the grid (Binance `-1111`, filters).
    Filter,
    /// Rate limited (HTTP 429 / Upbit 429 / Binance `-1003`).
    RateLimited,
    /// Duplicate client id (Upbit identifier reuse).
    Duplicate,
    /// Venue in maintenance or the market is offline.
    MarketClosed,
    /// Authentication or permission failure.
    Auth,
    /// Our own gateway refused it before it reached the wire.
    Gateway,
    /// Anything else; the venue code is kept.
    Other(i32),
}

/// What happened to one of our orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderEventKind {
    /// The venue accepted the order.
    Ack,
    /// The venue refused the order; nothing was filled.
    Reject(RejectReason),
    /// A (partial) fill. `cum_qty` is the venue's cumulative filled quantity for the
    /// order, which makes duplicated and reordered fill messages harmless.
    Fill {
        /// Venue trade id.
        trade_id: u64,
        /// Price of this fill.
        px: Price,
        /// Quantity of this fill.
        qty: Qty,
        /// Cumulative filled quantity after this fill.
        cum_qty: Qty,
        /// Fee of this fill in the instrument's quote currency.
        fee: Quote,
    },
    /// The order ended without filling the rest (cancelled, IOC remainder expired).
    /// `cum_qty` is the final filled quantity.
    Done {
        /// Final cumulative filled quantity.
        cum_qty: Qty,
    },
    /// The outcome of a request is not known (timeout, HTTP 5xx, Binance `-1007`,
    /// dropped connection). The order must never be re-sent; it is queried.
    Unknown,
    /// A query by client id found no such order: it never reached the venue.
    NotFound,
}

/// An execution report for one of our orders, keyed by our client id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderEvent {
    /// Our client order id.
    pub cl_id: ClientId,
    /// Exchange time of the report.
    pub exch_ts: Nanos,
    /// What happened.
    pub kind: OrderEventKind,
}

/// A tunable parameter that can be changed at run time (`/set`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Param {
    /// Entry threshold in basis points of executable premium.
    EntryBps,
    /// Exit: minimum net PnL in KRW to close.
    ExitMinProfitKrw,
    /// Maximum pair notional in KRW.
    MaxPairNotionalKrw,
    /// Maximum number of open pairs.
    MaxOpenPairs,
}

/// Operator control, from the Telegram sidecar, the CLI or a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Halt new entries (latches until `Resume`). Cancels and hedges still go out.
    Stop,
    /// Re-arm after a halt.
    Resume,
    /// Close open pairs (all coins, or one coin index) at market, then halt.
    Flatten(Option<u16>),
    /// Change a parameter; the value is validated like the config.
    Set(Param, i64),
    /// Start-up reconciliation is complete: venues were queried, orphans hedged.
    ReconcileDone,
    /// Ask for a status snapshot (answered with a telemetry action).
    Status,
    /// The runtime fed every balance and position report of `venue`'s account that it
    /// asked for at `asked_at`: compare them with the engine's positions (a mismatch above
    /// dust halts with `HaltReason::Mismatch`). An account that does not list a coin
    /// holds none of it. Coins with orders in flight, or with order activity since
    /// `asked_at`, are skipped (the report may predate a fill).
    CheckAccount {
        /// Venue whose account was reported.
        venue: Venue,
        /// When the runtime asked for the report (engine time).
        asked_at: Nanos,
    },
    /// Graceful shutdown: stop entries for the rest of this run (not latched across a
    /// restart); cancels and hedges still go out.
    Shutdown,
}

/// Everything the engine reacts to.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    /// Whole book (Upbit message or Binance REST snapshot).
    Book(BookSnapshot<'a>),
    /// Binance diff depth.
    Depth(DepthDiff<'a>),
    /// Best bid/offer.
    Bbo(Bbo),
    /// Public trade.
    Trade(Trade),
    /// Mark price / funding.
    Funding(Funding),
    /// FX quote from a non-book source.
    Fx(FxQuote),
    /// Balance report.
    Balance(Balance),
    /// Perp position report.
    Position(PositionReport),
    /// One of our orders changed.
    Order(OrderEvent),
    /// Operator control.
    Control(Control),
    /// A gateway lost a feed (disconnect); its books are stale until resynced.
    FeedDown(Venue),
    /// Nothing arrived; lets the engine check deadlines and book ages.
    Timer,
}
