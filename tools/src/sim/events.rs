//! What the simulated venues publish: market data (formatted per subscriber by the
//! WebSocket layers) and private events (already serialized, routed by account).

use super::book::{DepthDiff, Px, Qt};

/// One Upbit `trade`.
#[derive(Clone, Debug, PartialEq)]
pub struct UpbitTrade {
    /// Market code.
    pub code: String,
    /// Message time, ms.
    pub ts: u64,
    /// Trade time, ms.
    pub trade_ts: u64,
    /// Price.
    pub px: Px,
    /// Volume.
    pub qty: Qt,
    /// True when the buyer was the taker (`BID`).
    pub bid: bool,
    /// Previous closing price.
    pub prev_close: Px,
    /// Unique trade id.
    pub seq_id: u64,
    /// Best ask (px, qty) after the trade.
    pub best_ask: (Px, Qt),
    /// Best bid after the trade.
    pub best_bid: (Px, Qt),
}

/// One Upbit `ticker`.
#[derive(Clone, Debug, PartialEq)]
pub struct UpbitTicker {
    /// Market code.
    pub code: String,
    /// Message time.
    pub ts: u64,
    /// Opening price of the day.
    pub open: Px,
    /// Day high.
    pub high: Px,
    /// Day low.
    pub low: Px,
    /// Last trade price.
    pub last: Px,
    /// Previous close.
    pub prev_close: Px,
    /// Last trade volume.
    pub last_qty: Qt,
    /// Volume since 00:00 UTC (fixed-point 1e-8, wide).
    pub acc_volume: i128,
    /// KRW since 00:00 UTC.
    pub acc_price: i128,
    /// Volume over the last 24 h.
    pub acc_volume_24h: i128,
    /// KRW over the last 24 h.
    pub acc_price_24h: i128,
    /// Seller-initiated volume since 00:00 UTC.
    pub acc_ask: i128,
    /// Buyer-initiated volume since 00:00 UTC.
    pub acc_bid: i128,
    /// Last trade time.
    pub trade_ts: u64,
    /// Last trade was buyer-initiated.
    pub bid: bool,
}

/// Market data, in venue-neutral structured form.
#[derive(Clone, Debug, PartialEq)]
pub enum MdEvent {
    /// Upbit whole top-N book (up to 30 levels a side, best first).
    UpbitBook {
        /// Market code.
        code: String,
        /// Book time, ms.
        ts: u64,
        /// Bids.
        bids: Vec<(Px, Qt)>,
        /// Asks.
        asks: Vec<(Px, Qt)>,
    },
    /// Upbit trade.
    UpbitTrade(UpbitTrade),
    /// Upbit ticker.
    UpbitTicker(UpbitTicker),
    /// Binance diff depth.
    BinDepth {
        /// Upper-case symbol.
        sym: String,
        /// Event time.
        e: u64,
        /// Transaction time.
        t: u64,
        /// Ids and levels.
        diff: DepthDiff,
        /// Price decimals.
        pdp: u32,
        /// Quantity decimals.
        qdp: u32,
    },
    /// Binance bookTicker.
    BinBookTicker {
        /// Symbol.
        sym: String,
        /// Update id.
        u: u64,
        /// Event time.
        e: u64,
        /// Transaction time.
        t: u64,
        /// Best bid.
        bid: (Px, Qt),
        /// Best ask.
        ask: (Px, Qt),
        /// Price decimals.
        pdp: u32,
        /// Quantity decimals.
        qdp: u32,
    },
    /// Binance markPriceUpdate.
    BinMark {
        /// Symbol.
        sym: String,
        /// Event time.
        e: u64,
        /// Mark price.
        mark: Px,
        /// Index price.
        index: Px,
        /// Funding rate, fixed-point 1e-8.
        rate: i64,
        /// Next funding time.
        next_funding: u64,
    },
    /// Binance trade.
    BinTrade {
        /// Symbol.
        sym: String,
        /// Event time.
        e: u64,
        /// Trade id.
        id: u64,
        /// Price.
        px: Px,
        /// Quantity.
        qty: Qt,
        /// Buyer was the maker.
        buyer_maker: bool,
        /// Price decimals.
        pdp: u32,
        /// Quantity decimals.
        qdp: u32,
    },
}

impl MdEvent {
    /// True for Upbit events.
    pub fn is_upbit(&self) -> bool {
        matches!(self, MdEvent::UpbitBook { .. } | MdEvent::UpbitTrade(_) | MdEvent::UpbitTicker(_))
    }
}

/// Everything a step or an order produces.
#[derive(Clone, Debug, PartialEq)]
pub enum Out {
    /// Public market data.
    Md(MdEvent),
    /// Upbit private (`myOrder`/`myAsset`) payload for an account (DEFAULT format JSON).
    UpbitPrivate {
        /// Account index.
        account: usize,
        /// `myOrder` or `myAsset`.
        kind: &'static str,
        /// DEFAULT-format JSON.
        json: String,
    },
    /// Binance user-data payload for an account.
    BinanceUser {
        /// Account index.
        account: usize,
        /// Raw JSON.
        json: String,
    },
}
