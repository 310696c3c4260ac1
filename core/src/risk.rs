//! Pre-trade risk checks, run on every order inside the loop with no I/O.
//!
//! The checks are those of SEC 15c3-5 / MiFID RTS 6 as listed in RELIABILITY.md §6: kill
//! switch (trading state), price collar against the *current* book, maximum quantity and
//! notional per order and per coin, maximum open pairs, orders per second per venue,
//! free balance, stale data and duplicate intents. A refusal carries its reason code.

use crate::action::Purpose;
use crate::instrument::{RuleViolation, Venue};
use crate::units::Nanos;

/// Why risk refused an order or an intent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RiskReject {
    /// Trading is halted or reconciling.
    NotActive,
    /// Limit price outside the collar around the current touch.
    Collar,
    /// Order notional above the per-order maximum.
    MaxOrderNotional,
    /// Coin exposure would exceed its maximum.
    MaxCoinNotional,
    /// Too many open pairs.
    MaxOpenPairs,
    /// Orders per second per venue exceeded.
    OrderRate,
    /// Not enough free balance.
    Balance,
    /// A book is stale, old or missing.
    StaleData,
    /// An intent for this coin is already open or in flight.
    Duplicate,
    /// Violates the instrument's tick, lot or minimum-notional rule.
    Rule(RuleViolation),
    /// The quantity rounded to zero.
    ZeroQty,
}

impl RiskReject {
    /// Short reason code for logs and the store.
    pub const fn code(self) -> &'static str {
        match self {
            RiskReject::NotActive => "not_active",
            RiskReject::Collar => "collar",
            RiskReject::MaxOrderNotional => "max_order_notional",
            RiskReject::MaxCoinNotional => "max_coin_notional",
            RiskReject::MaxOpenPairs => "max_open_pairs",
            RiskReject::OrderRate => "order_rate",
            RiskReject::Balance => "balance",
            RiskReject::StaleData => "stale_data",
            RiskReject::Duplicate => "duplicate",
            RiskReject::Rule(RuleViolation::Tick) => "tick",
            RiskReject::Rule(RuleViolation::Lot) => "lot",
            RiskReject::Rule(RuleViolation::MinNotional) => "min_notional",
            RiskReject::Rule(RuleViolation::Overflow) => "overflow",
            RiskReject::ZeroQty => "zero_qty",
        }
    }
}

/// True when an intent of this purpose may send new orders in the given state: entries
/// and exits only when active; hedges and flattens always (they reduce risk).
pub const fn purpose_allowed(active: bool, purpose: Purpose) -> bool {
    match purpose {
        Purpose::Entry | Purpose::Exit => active,
        Purpose::Hedge | Purpose::Flatten => true,
    }
}

/// A sliding one-second window of order timestamps per venue, pre-allocated.
#[derive(Debug, Clone)]
pub struct OrderRate {
    per_sec: usize,
    // A ring per venue of the last `per_sec` send times.
    rings: Vec<Nanos>,
    heads: [usize; Venue::COUNT],
    counts: [usize; Venue::COUNT],
}

impl OrderRate {
    /// A limiter for `per_sec` orders per second per venue.
    pub fn new(per_sec: u32) -> Self {
        let n = per_sec.max(1) as usize;
        Self {
            per_sec: n,
            rings: vec![Nanos(0); n * Venue::COUNT],
            heads: [0; Venue::COUNT],
            counts: [0; Venue::COUNT],
        }
    }

    /// True if one more order may go to `venue` at `now`.
    pub fn allows(&self, venue: Venue, now: Nanos) -> bool {
        let v = venue.idx();
        if self.counts[v] < self.per_sec {
            return true;
        }
        // Full ring: the oldest entry is at the head.
        let oldest = self.rings[v * self.per_sec + self.heads[v]];
        now.since(oldest) >= Nanos::from_ms(1_000)
    }

    /// Records an order sent to `venue` at `now`.
    pub fn record(&mut self, venue: Venue, now: Nanos) {
        let v = venue.idx();
        self.rings[v * self.per_sec + self.heads[v]] = now;
        self.heads[v] = (self.heads[v] + 1) % self.per_sec;
        self.counts[v] = (self.counts[v] + 1).min(self.per_sec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_rate_is_a_sliding_second() {
        let mut r = OrderRate::new(2);
        let t = Nanos::from_ms(10_000);
        assert!(r.allows(Venue::Upbit, t));
        r.record(Venue::Upbit, t);
        r.record(Venue::Upbit, t.plus(Nanos::from_ms(100)));
        assert!(!r.allows(Venue::Upbit, t.plus(Nanos::from_ms(500))));
        assert!(r.allows(Venue::Binance, t), "venues are independent");
        assert!(r.allows(Venue::Upbit, t.plus(Nanos::from_ms(1_000))));
        r.record(Venue::Upbit, t.plus(Nanos::from_ms(1_000)));
        assert!(!r.allows(Venue::Upbit, t.plus(Nanos::from_ms(1_050))));
        assert!(r.allows(Venue::Upbit, t.plus(Nanos::from_ms(1_100))));
    }

    #[test]
    fn halted_allows_only_risk_reducing_intents() {
        assert!(purpose_allowed(true, Purpose::Entry));
        assert!(!purpose_allowed(false, Purpose::Entry));
        assert!(!purpose_allowed(false, Purpose::Exit));
        assert!(purpose_allowed(false, Purpose::Hedge));
        assert!(purpose_allowed(false, Purpose::Flatten));
    }
}
