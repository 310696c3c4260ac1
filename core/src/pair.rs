//! The hedged pair: two legs of equal base quantity and opposite sides, and its states.
//!
//! `Opening -> Hedged -> Closing -> Closed`, with `OneLeg` whenever the two legs' filled
//! quantities differ and no order is in flight to fix it — except during a strategy exit,
//! where a leg that missed is first retried at a profit and the pair turns `OneLeg` only
//! once that exposure outlives `orphan_ms_max`. The unhedged quantity is always
//! `pos_u + pos_b` (the legs have opposite signs), so it is known at every moment.

use crate::action::PnlSplit;
use crate::config::Direction;
use crate::event::Side;
use crate::order::Leg;
use crate::units::{Krw, Nanos, Price, Qty, Quote, SCALE};

/// Pair lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PairState {
    /// Entry orders in flight.
    Opening,
    /// Both legs filled equally.
    Hedged,
    /// Legs differ and must be repaired (re-hedge or unwind), within deadlines.
    OneLeg,
    /// Exit orders in flight.
    Closing,
    /// Flat on both venues; accounting final.
    Closed,
}

/// What the pair is trying to reach when it repairs a one-leg state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// Keep the pair open at equal legs.
    Open,
    /// Reach flat on both venues, at any price (operator flatten, hard orphan deadline).
    Flat,
    /// Reach flat through the strategy's exit: every order towards flat keeps the pair's
    /// net PnL above `exit_min_profit_krw`.
    Exit,
}

/// Money that moved on one leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LegBook {
    /// Signed position (base units).
    pub pos: Qty,
    /// Cash flow from trades, quote currency: + for sells, − for buys (before fees).
    pub cash: Quote,
    /// Fees paid, quote currency (positive number).
    pub fees: Quote,
}

impl LegBook {
    /// Books a fill.
    pub fn fill(&mut self, side: Side, qty: Qty, notional: Quote, fee: Quote) {
        self.pos = Qty(self.pos.0.saturating_add(side.sign() * qty.0));
        self.cash = Quote(self.cash.0.saturating_sub(side.sign() * notional.0));
        self.fees = self.fees.saturating_add(fee);
    }
}

/// One pair.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pair {
    /// Pair id: the sequence of the intent that opened it.
    pub id: u32,
    /// Coin index.
    pub coin: u16,
    /// Direction.
    pub direction: Direction,
    /// State.
    pub state: PairState,
    /// Current goal for repairs.
    pub goal: Goal,
    /// Quantity the entry aimed for.
    pub target: Qty,
    /// Upbit leg (KRW).
    pub u: LegBook,
    /// Binance leg (USDT).
    pub b: LegBook,
    /// Funding received (+) / paid (−) on the perp leg, USDT fixed-point.
    pub funding_usdt: i64,
    /// FX locked at entry (KRW per USDT).
    pub fx_entry: Price,
    /// Executable premium at entry, bps.
    pub entry_premium_bps: f64,
    /// When the entry intent was made.
    pub opened_at: Nanos,
    /// Since when the legs have differed, if they do.
    pub unhedged_since: Option<Nanos>,
    /// Repair attempts so far (widens the collar).
    pub repairs: u8,
    /// When the last repair order was sent.
    pub repaired_at: Option<Nanos>,
    /// When the last strategy exit was decided (paces a new decision after a miss).
    pub exit_at: Option<Nanos>,
}

impl Pair {
    /// A new pair at entry.
    pub fn new(
        id: u32,
        coin: u16,
        direction: Direction,
        target: Qty,
        fx: Price,
        prem: f64,
        now: Nanos,
    ) -> Self {
        Self {
            id,
            coin,
            direction,
            state: PairState::Opening,
            goal: Goal::Open,
            target,
            u: LegBook::default(),
            b: LegBook::default(),
            funding_usdt: 0,
            fx_entry: fx,
            entry_premium_bps: prem,
            opened_at: now,
            unhedged_since: None,
            repairs: 0,
            repaired_at: None,
            exit_at: None,
        }
    }

    /// Side of a leg when opening.
    pub fn open_side(&self, leg: Leg) -> Side {
        let u = self.direction.upbit_open_side();
        match leg {
            Leg::U => u,
            Leg::B => u.opposite(),
        }
    }

    /// Leg book by leg.
    pub fn leg_mut(&mut self, leg: Leg) -> &mut LegBook {
        match leg {
            Leg::U => &mut self.u,
            Leg::B => &mut self.b,
        }
    }

    /// Signed unhedged quantity (`pos_u + pos_b`); zero when hedged or flat.
    #[inline]
    pub fn unhedged(&self) -> Qty {
        Qty(self.u.pos.0 + self.b.pos.0)
    }

    /// True when both legs are flat.
    #[inline]
    pub fn is_flat(&self) -> bool {
        self.u.pos.0 == 0 && self.b.pos.0 == 0
    }

    /// Hedged size (the quantity both legs share).
    #[inline]
    pub fn hedged_qty(&self) -> Qty {
        Qty(self.u.pos.0.abs().min(self.b.pos.0.abs()))
    }

    /// Net PnL in KRW if the legs were closed for the given cash flows now: `close_u`
    /// and `close_b` are the cash of the hypothetical closing trades (quote currency,
    /// signed as in [`LegBook`]) and their fees; `fx` converts USDT to KRW.
    pub fn net_if_closed(
        &self,
        close_u: Quote,
        fee_u: Quote,
        close_b: Quote,
        fee_b: Quote,
        fx: Price,
    ) -> i128 {
        let u = self.u.cash.0 as i128 + close_u.0 as i128 - self.u.fees.0 as i128 - fee_u.0 as i128;
        let b = self.b.cash.0 as i128 + close_b.0 as i128 - self.b.fees.0 as i128 - fee_b.0 as i128
            + self.funding_usdt as i128;
        u + b * fx.0 as i128 / SCALE as i128
    }

    /// Unrealised value in KRW marked at the given mid prices (no exit fees): each leg's
    /// cash, fees paid and funding plus its position at `mid_u` (KRW) and `mid_b` (USDT,
    /// converted at `fx`). Analytics only (reports, the demo summary), never a trading rule.
    pub fn marked_krw(&self, mid_u: f64, mid_b: f64, fx: f64) -> f64 {
        let s = SCALE as f64;
        let u = (self.u.cash.0 - self.u.fees.0) as f64 / s + self.u.pos.0 as f64 / s * mid_u;
        let b = (self.b.cash.0 - self.b.fees.0 + self.funding_usdt) as f64 / s
            + self.b.pos.0 as f64 / s * mid_b;
        u + b * fx
    }

    /// Realised PnL split at close, with `fx_exit` for the USDT leg.
    pub fn realised(&self, fx_exit: Price) -> PnlSplit {
        let s = SCALE as i128;
        let b_gross = self.b.cash.0 as i128;
        let to_krw = |v: i128| Krw(v.clamp(i64::MIN as i128, i64::MAX as i128) as i64);
        PnlSplit {
            premium: to_krw(self.u.cash.0 as i128 + b_gross * self.fx_entry.0 as i128 / s),
            fx: to_krw(b_gross * (fx_exit.0 as i128 - self.fx_entry.0 as i128) / s),
            fees: to_krw(-(self.u.fees.0 as i128) - self.b.fees.0 as i128 * fx_exit.0 as i128 / s),
            funding: to_krw(self.funding_usdt as i128 * fx_exit.0 as i128 / s),
        }
    }

    /// Books a funding settlement on the perp leg: a long pays `rate × mark × |pos|` when
    /// the rate is positive, a short receives it (and the reverse when negative).
    pub fn settle_funding(&mut self, rate_e8: i64, mark: Price) {
        let notional = mark.0 as i128 * self.b.pos.0 as i128 / SCALE as i128;
        let payment = notional * rate_e8 as i128 / SCALE as i128;
        self.funding_usdt = self.funding_usdt.saturating_sub(payment as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(v: f64) -> Qty {
        Qty::from_f64(v).unwrap()
    }
    fn quote(v: f64) -> Quote {
        Quote::from_f64(v).unwrap()
    }

    #[test]
    fn pnl_split_sums_to_net() {
        // sell_premium: sell 0.1 BTC on Upbit at 105,000,000; buy 0.1 perp at 70,000.
        let mut p = Pair::new(
            1,
            0,
            Direction::SellPremium,
            q(0.1),
            Price::from_int(1_450),
            300.0,
            Nanos(0),
        );
        p.u.fill(Side::Sell, q(0.1), quote(10_500_000.0), quote(5_250.0));
        p.b.fill(Side::Buy, q(0.1), quote(7_000.0), quote(2.8));
        assert_eq!(p.unhedged(), Qty(0));
        p.settle_funding(10_000, Price::from_int(70_000)); // 0.01 %: the long pays 0.7 USDT
        assert_eq!(p.funding_usdt, -70_000_000);
        // Close: buy back at 102,000,000; sell perp at 70,100.
        p.u.fill(Side::Buy, q(0.1), quote(10_200_000.0), quote(5_100.0));
        p.b.fill(Side::Sell, q(0.1), quote(7_010.0), quote(2.804));
        assert!(p.is_flat());
        let fx_exit = Price::from_int(1_460);
        let s = p.realised(fx_exit);
        // premium: 300,000 KRW on Upbit + 10 USDT × 1,450 = 314,500
        assert_eq!(s.premium, Krw::from_int(314_500));
        // fx: 10 USDT × 10 = 100
        assert_eq!(s.fx, Krw::from_int(100));
        // fees: 10,350 KRW + 5.604 USDT × 1,460 = 8,181.84
        assert_eq!(s.fees, Krw::from_f64(-(10_350.0 + 8_181.84)).unwrap());
        assert_eq!(s.funding, Krw::from_f64(-0.7 * 1_460.0).unwrap());
        let net = p.net_if_closed(Quote(0), Quote(0), Quote(0), Quote(0), fx_exit);
        assert_eq!(s.net().0 as i128, net);
    }
}
