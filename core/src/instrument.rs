//! Venues, instruments and their order rules (tick, lot, minimum notional).
//!
//! Rules are data, read from the venue at start-up (Binance `exchangeInfo` filters, Upbit
//! `orderbook/instruments`) and handed to the engine; the Upbit KRW price-unit table is the
//! documented fallback when a venue does not give a single tick.

use crate::units::{Overflow, Price, Qty, Quote};

/// A trading venue.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[repr(u8)]
pub enum Venue {
    /// Upbit KRW spot.
    Upbit = 0,
    /// Binance USDT-M perpetual futures.
    Binance = 1,
    /// Binance spot (optional hedge venue).
    BinanceSpot = 2,
}

impl Venue {
    /// Number of venues (for fixed arrays indexed by venue).
    pub const COUNT: usize = 3;
    /// Index for fixed arrays.
    #[inline]
    pub const fn idx(self) -> usize {
        self as usize
    }
    /// Lower-case name used in config, logs and the store.
    pub const fn name(self) -> &'static str {
        match self {
            Venue::Upbit => "upbit",
            Venue::Binance => "binance",
            Venue::BinanceSpot => "binance_spot",
        }
    }
}

/// Dense index of an instrument in the engine's table (assigned at start-up).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Default)]
pub struct InstrumentId(pub u16);

/// A short fixed-capacity ASCII symbol (`KRW-BTC`, `BTCUSDT`), `Copy` and allocation-free.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Symbol {
    len: u8,
    bytes: [u8; Symbol::CAP],
}

impl Symbol {
    /// Longest symbol held.
    pub const CAP: usize = 23;

    /// Builds a symbol; `None` if longer than [`Symbol::CAP`] or not printable ASCII.
    pub fn new(s: &str) -> Option<Self> {
        Self::from_bytes(s.as_bytes())
    }

    /// Builds a symbol from raw bytes (wire input); `None` if invalid.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.is_empty() || b.len() > Self::CAP || !b.iter().all(|c| c.is_ascii_graphic()) {
            return None;
        }
        let mut bytes = [0u8; Self::CAP];
        bytes[..b.len()].copy_from_slice(b);
        Some(Self { len: b.len() as u8, bytes })
    }

    /// The symbol text.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored, so this cannot fail.
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }

    /// Case-insensitive comparison with wire bytes (Binance stream names are lower case).
    pub fn eq_ignore_case(&self, b: &[u8]) -> bool {
        self.bytes[..self.len as usize].eq_ignore_ascii_case(b)
    }
}

impl core::fmt::Debug for Symbol {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl core::fmt::Display for Symbol {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which prices an order may carry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TickRule {
    /// One tick size at every price level (Binance `PRICE_FILTER.tickSize`, or Upbit's
    /// per-market `tick_size` when read from the venue).
    Fixed(Price),
    /// Upbit's KRW-market price-unit table (tick depends on the price level).
    UpbitKrw,
}

/// Upbit KRW-market price units, `(lower bound inclusive, tick)`, highest first. From the
/// docs' KRW market table in force since 2025-07-31 (see docs/exchange-protocols.md §2.3:
/// prefer the venue's `tick_size`; this table is the fallback).
const UPBIT_KRW_TABLE: [(i64, i64); 14] = [
    (1_000_000 * SCALE_I, 1_000 * SCALE_I),
    (500_000 * SCALE_I, 500 * SCALE_I),
    (100_000 * SCALE_I, 100 * SCALE_I),
    (50_000 * SCALE_I, 50 * SCALE_I),
    (10_000 * SCALE_I, 10 * SCALE_I),
    (5_000 * SCALE_I, 5 * SCALE_I),
    (100 * SCALE_I, SCALE_I),
    (10 * SCALE_I, SCALE_I / 100),
    (SCALE_I, SCALE_I / 1_000),
    (SCALE_I / 10, SCALE_I / 10_000),
    (SCALE_I / 100, SCALE_I / 100_000),
    (SCALE_I / 1_000, SCALE_I / 1_000_000),
    (SCALE_I / 10_000, SCALE_I / 10_000_000),
    (0, 1),
];
const SCALE_I: i64 = crate::units::SCALE;

impl TickRule {
    /// The tick that applies at `px`.
    pub fn tick_at(self, px: Price) -> Price {
        match self {
            TickRule::Fixed(t) => t,
            TickRule::UpbitKrw => {
                for &(lo, tick) in UPBIT_KRW_TABLE.iter() {
                    if px.0 >= lo {
                        return Price(tick);
                    }
                }
                Price(1)
            }
        }
    }

    /// Rounds down (toward the bid side) to a valid price.
    pub fn round_down(self, px: Price) -> Price {
        let t = self.tick_at(px).0.max(1);
        Price(px.0.div_euclid(t) * t)
    }

    /// Rounds up (toward the ask side) to a valid price.
    pub fn round_up(self, px: Price) -> Price {
        let down = self.round_down(px);
        if down == px {
            return px;
        }
        // The tick just above may belong to a coarser band: round within that band.
        let t = self.tick_at(Price(down.0 + self.tick_at(down).0)).0.max(1);
        Price((px.0 + t - 1).div_euclid(t) * t)
    }

    /// True when `px` is a valid order price.
    pub fn is_valid(self, px: Price) -> bool {
        px.0 > 0 && self.round_down(px) == px
    }
}

/// Trading rules of one instrument.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Instrument {
    /// Venue it trades on.
    pub venue: Venue,
    /// Venue symbol (`KRW-BTC`, `BTCUSDT`).
    pub symbol: Symbol,
    /// Price rule.
    pub tick: TickRule,
    /// Quantity step (Binance `LOT_SIZE.stepSize`; Upbit volume precision 1e-8).
    pub lot: Qty,
    /// Minimum quantity.
    pub min_qty: Qty,
    /// Minimum order notional in the quote currency (Upbit 5,000 KRW; Binance
    /// `MIN_NOTIONAL.notional`).
    pub min_notional: Quote,
    /// Decimal places the venue accepts for prices (formatting only).
    pub price_dp: u32,
    /// Decimal places the venue accepts for quantities (formatting only).
    pub qty_dp: u32,
    /// Taker fee in parts per 1e8 (0.05 % = 50_000).
    pub taker_fee_e8: i64,
}

/// Why an order does not fit an instrument's rules.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum RuleViolation {
    /// Price not on the tick grid or not positive.
    Tick,
    /// Quantity not a multiple of the lot or below the minimum.
    Lot,
    /// Price × quantity below the minimum notional.
    MinNotional,
    /// Arithmetic overflow.
    Overflow,
}

impl From<Overflow> for RuleViolation {
    fn from(_: Overflow) -> Self {
        RuleViolation::Overflow
    }
}

impl Instrument {
    /// Rounds a quantity down to the lot grid (never up: never trade more than sized).
    pub fn round_qty(&self, q: Qty) -> Qty {
        let lot = self.lot.0.max(1);
        Qty(q.0.div_euclid(lot) * lot)
    }

    /// Checks an order against the tick, lot and minimum-notional rules.
    pub fn check(&self, px: Price, q: Qty) -> Result<(), RuleViolation> {
        if !self.tick.is_valid(px) {
            return Err(RuleViolation::Tick);
        }
        if q.0 <= 0 || q.0 < self.min_qty.0 || self.round_qty(q) != q {
            return Err(RuleViolation::Lot);
        }
        if px.notional(q)?.0 < self.min_notional.0 {
            return Err(RuleViolation::MinNotional);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::SCALE;

    fn krw(v: i64) -> Price {
        Price(v * SCALE)
    }

    #[test]
    fn upbit_krw_table_bands() {
        let r = TickRule::UpbitKrw;
        assert_eq!(r.tick_at(krw(103_493_000)), krw(1_000));
        assert_eq!(r.tick_at(krw(1_500_000)), krw(1_000));
        assert_eq!(r.tick_at(krw(999_999)), krw(500));
        assert_eq!(r.tick_at(krw(100_000)), krw(100));
        assert_eq!(r.tick_at(krw(75_000)), krw(50));
        assert_eq!(r.tick_at(krw(20_000)), krw(10));
        assert_eq!(r.tick_at(krw(7_000)), krw(5));
        assert_eq!(r.tick_at(krw(1_469)), krw(1));
        assert_eq!(r.tick_at(krw(150)), krw(1));
        assert_eq!(r.tick_at(krw(50)), Price(SCALE / 100));
        assert_eq!(r.tick_at(Price(SCALE / 2)), Price(SCALE / 10_000));
        assert_eq!(r.tick_at(Price(5)), Price(1));
    }

    #[test]
    fn fixture_prices_are_valid_upbit_prices() {
        // upbit_orderbook.jsonl line 1: KRW-BTC levels move in 1,000 KRW steps.
        let r = TickRule::UpbitKrw;
        assert!(r.is_valid(krw(103_493_000)));
        assert!(r.is_valid(krw(103_460_000)));
        assert!(!r.is_valid(krw(103_460_500)));
        assert!(r.is_valid(krw(1_468)));
    }

    #[test]
    fn rounding_respects_bands() {
        let r = TickRule::UpbitKrw;
        assert_eq!(r.round_down(krw(103_460_500)), krw(103_460_000));
        assert_eq!(r.round_up(krw(103_460_500)), krw(103_461_000));
        // 99,990 is in the 50-KRW band (valid: 99,950 / 100,000); 99,990 rounds up to
        // 100,000 which is valid in the 100-KRW band.
        assert_eq!(r.round_up(krw(99_990)), krw(100_000));
        assert_eq!(r.round_down(krw(99_990)), krw(99_950));
        let f = TickRule::Fixed(Price(SCALE / 10));
        assert_eq!(f.round_down(Price(7_050_004_000_000)), Price(7_050_000_000_000));
        assert_eq!(f.round_up(Price(7_050_004_000_000)), Price(7_050_010_000_000));
    }

    #[test]
    fn instrument_check() {
        let btcusdt = Instrument {
            venue: Venue::Binance,
            symbol: Symbol::new("BTCUSDT").unwrap(),
            tick: TickRule::Fixed(Price(SCALE / 10)),
            lot: Qty(SCALE / 1_000),
            min_qty: Qty(SCALE / 1_000),
            min_notional: Quote(100 * SCALE),
            price_dp: 2,
            qty_dp: 3,
            taker_fee_e8: 40_000,
        };
        let px = Price(70_500 * SCALE);
        assert_eq!(btcusdt.check(px, Qty(SCALE / 100)), Ok(()));
        assert_eq!(btcusdt.check(px, Qty(SCALE / 1_000)), Err(RuleViolation::MinNotional));
        assert_eq!(btcusdt.check(px, Qty(SCALE / 100 + 1)), Err(RuleViolation::Lot));
        assert_eq!(btcusdt.check(Price(px.0 + 1), Qty(SCALE / 100)), Err(RuleViolation::Tick));
        assert_eq!(btcusdt.round_qty(Qty(1_234_567)), Qty(1_200_000));
    }

    #[test]
    fn symbol_is_bounded() {
        assert!(Symbol::new("KRW-BTC").is_some());
        assert!(Symbol::new("").is_none());
        assert!(Symbol::new("A-VERY-LONG-SYMBOL-NAME-X").is_none());
        assert!(Symbol::new("BTC USDT").is_none());
        assert!(Symbol::new("BTCUSDT").unwrap().eq_ignore_case(b"btcusdt"));
    }
}
