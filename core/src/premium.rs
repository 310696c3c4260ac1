//! The kimchi premium: mid (for people) and executable (for trading).
//!
//! `premium = P_upbit_KRW / (P_binance_USDT × FX) − 1` (docs/exchange-protocols.md §6).
//! The executable premium walks both books to the volume-weighted price of the target
//! quantity — the bid on the venue you sell, the ask on the venue you buy — and takes
//! the FX side you would trade to square the currencies:
//!
//! - `sell_premium` (sell Upbit, buy Binance): `bid_u(q) / (ask_b(q) × FX_ask) − 1`
//! - `buy_discount` (buy Upbit, short Binance): `ask_u(q) / (bid_b(q) × FX_bid) − 1`
//!
//! So `P_sell ≤ mid ≤ P_buy` always. Ratios are `f64` at the very end; all walking is in
//! integers.

use crate::book::Book;
use crate::config::Direction;
use crate::event::Side;
use crate::units::{Price, Qty, Quote};

/// The two books and the FX quote a premium is computed from.
#[derive(Debug, Clone, Copy)]
pub struct Quotes<'a> {
    /// Upbit KRW book.
    pub upbit: &'a Book,
    /// Binance USDT book.
    pub binance: &'a Book,
    /// FX bid (KRW per USDT).
    pub fx_bid: Price,
    /// FX ask.
    pub fx_ask: Price,
}

/// An executable premium and what it took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exec {
    /// Premium in basis points.
    pub bps: f64,
    /// Worst Upbit level touched (the IOC limit for that leg).
    pub upbit_worst: Price,
    /// Worst Binance level touched.
    pub binance_worst: Price,
    /// Upbit notional for the quantity (KRW).
    pub upbit_notional: Quote,
    /// Binance notional (USDT).
    pub binance_notional: Quote,
    /// FX used.
    pub fx: Price,
}

/// Premium in bps from KRW and USDT prices and FX, all as `f64`.
#[inline]
pub fn premium_bps(krw: f64, usdt: f64, fx: f64) -> f64 {
    (krw / (usdt * fx) - 1.0) * 10_000.0
}

/// Mid premium in bps (display only; never traded on).
pub fn mid_bps(q: &Quotes<'_>) -> Option<f64> {
    let fx = (q.fx_bid.to_f64() + q.fx_ask.to_f64()) / 2.0;
    Some(premium_bps(q.upbit.mid_f64()?, q.binance.mid_f64()?, fx))
}

/// Executable premium for `qty` in direction `dir`; `None` when either book cannot fill
/// the whole quantity or a price is missing.
pub fn executable(q: &Quotes<'_>, dir: Direction, qty: Qty) -> Option<Exec> {
    if qty.0 <= 0 {
        return None;
    }
    let u_side = dir.upbit_open_side();
    let wu = q.upbit.side_for_taker(u_side).walk(qty);
    let wb = q.binance.side_for_taker(u_side.opposite()).walk(qty);
    if wu.filled != qty || wb.filled != qty {
        return None;
    }
    let fx = if u_side == Side::Sell { q.fx_ask } else { q.fx_bid };
    if fx.0 <= 0 {
        return None;
    }
    // Both VWAPs are over the same quantity, so the ratio of notionals is the ratio of
    // prices.
    let bps = premium_bps(wu.notional.to_f64(), wb.notional.to_f64(), fx.to_f64());
    Some(Exec {
        bps,
        upbit_worst: wu.worst,
        binance_worst: wb.worst,
        upbit_notional: wu.notional,
        binance_notional: wb.notional,
        fx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::SeqRule;
    use crate::event::{BookSnapshot, Level};
    use crate::instrument::InstrumentId;
    use crate::units::Nanos;

    fn px(v: f64) -> Price {
        Price::from_f64(v).unwrap()
    }
    fn q(v: f64) -> Qty {
        Qty::from_f64(v).unwrap()
    }

    fn book(bids: &[(f64, f64)], asks: &[(f64, f64)]) -> Book {
        let b: Vec<Level> = bids.iter().map(|&(p, s)| Level::new(px(p), q(s))).collect();
        let a: Vec<Level> = asks.iter().map(|&(p, s)| Level::new(px(p), q(s))).collect();
        let mut bk = Book::new(SeqRule::Snapshots, 32);
        bk.apply_snapshot(
            &BookSnapshot {
                inst: InstrumentId(0),
                exch_ts: Nanos(0),
                last_update_id: 0,
                bids: &b,
                asks: &a,
            },
            Nanos(0),
        );
        bk
    }

    /// The worked example of docs/exchange-protocols.md §6.3, from the fixture books.
    #[test]
    fn worked_example_from_the_protocol_doc() {
        let upbit = book(&[(103_460_000.0, 0.004)], &[(103_493_000.0, 0.04910155)]);
        let binance = book(&[(70_499.90, 3.512)], &[(70_500.00, 1.0)]);
        let official =
            Quotes { upbit: &upbit, binance: &binance, fx_bid: px(1_463.5), fx_ask: px(1_463.5) };
        let usdt = Quotes { fx_bid: px(1_468.0), fx_ask: px(1_469.0), ..official };
        let small = q(0.004);
        let mid = mid_bps(&official).unwrap();
        assert!((mid - 29.06).abs() < 0.01, "{mid}");
        let buy = executable(&official, Direction::BuyDiscount, small).unwrap().bps;
        assert!((buy - 30.67).abs() < 0.01, "{buy}");
        let buy_u = executable(&usdt, Direction::BuyDiscount, small).unwrap().bps;
        assert!((buy_u - -0.08).abs() < 0.01, "{buy_u}");
        let sell = executable(&official, Direction::SellPremium, small).unwrap().bps;
        assert!((sell - 27.45).abs() < 0.01, "{sell}");
        let sell_u = executable(&usdt, Direction::SellPremium, small).unwrap().bps;
        assert!((sell_u - -10.09).abs() < 0.01, "{sell_u}");
        assert!(sell <= mid && mid <= buy);
    }

    #[test]
    fn walks_depth_for_the_quantity() {
        // Upbit asks from upbit_orderbook.jsonl line 1 (first levels); VWAP for 0.1 BTC is
        // 103,500,125.783 per the protocol doc.
        let upbit =
            book(&[(103_460_000.0, 1.0)], &[(103_493_000.0, 0.04910155), (103_507_000.0, 0.06146)]);
        let binance = book(&[(70_499.90, 3.512)], &[(70_500.00, 1.0)]);
        let qs =
            Quotes { upbit: &upbit, binance: &binance, fx_bid: px(1_463.5), fx_ask: px(1_463.5) };
        let e = executable(&qs, Direction::BuyDiscount, q(0.1)).unwrap();
        let vwap = e.upbit_notional.to_f64() / 0.1;
        assert!((vwap - 103_500_125.783).abs() < 0.01, "{vwap}");
        assert!((e.bps - 31.36).abs() < 0.01, "{}", e.bps);
        assert_eq!(e.upbit_worst, px(103_507_000.0));
        assert!(executable(&qs, Direction::BuyDiscount, q(0.2)).is_none(), "not enough depth");
    }
}
