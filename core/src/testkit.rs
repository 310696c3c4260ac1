//! Ready-made markets and event builders for tests, benches, examples and the simulator.
//!
//! The numbers are the fixtures' (docs/exchange-protocols.md §6.3): Upbit KRW-BTC around
//! 103,460,000 / 103,493,000, Binance BTCUSDT 70,499.90 / 70,500.00, KRW-USDT 1,468 / 1,469.

use crate::engine::{CoinSpec, Markets};
use crate::event::Level;
use crate::instrument::{Instrument, InstrumentId, Symbol, TickRule, Venue};
use crate::units::{Price, Qty, Quote, SCALE};

/// Instrument id of Upbit `KRW-BTC` in [`btc_markets`].
pub const KRW_BTC: InstrumentId = InstrumentId(0);
/// Instrument id of Binance `BTCUSDT` in [`btc_markets`].
pub const BTCUSDT: InstrumentId = InstrumentId(1);
/// Instrument id of Upbit `KRW-USDT` in [`btc_markets`].
pub const KRW_USDT: InstrumentId = InstrumentId(2);

/// Upbit KRW market rules: the KRW price-unit table, 1e-8 volume, 5,000 KRW minimum,
/// 0.05 % fee.
pub fn upbit_krw(symbol: &str) -> Instrument {
    Instrument {
        venue: Venue::Upbit,
        symbol: Symbol::new(symbol).unwrap_or_default(),
        tick: TickRule::UpbitKrw,
        lot: Qty(1),
        min_qty: Qty(1),
        min_notional: Quote(5_000 * SCALE),
        price_dp: 8,
        qty_dp: 8,
        taker_fee_e8: 50_000,
    }
}

/// Binance USDT-M perpetual rules like BTCUSDT's: tick 0.1, step 0.001, notional 100,
/// taker 0.04 %.
pub fn binance_perp(symbol: &str) -> Instrument {
    Instrument {
        venue: Venue::Binance,
        symbol: Symbol::new(symbol).unwrap_or_default(),
        tick: TickRule::Fixed(Price(SCALE / 10)),
        lot: Qty(SCALE / 1_000),
        min_qty: Qty(SCALE / 1_000),
        min_notional: Quote(100 * SCALE),
        price_dp: 2,
        qty_dp: 3,
        taker_fee_e8: 40_000,
    }
}

/// One coin (BTC) with KRW-USDT as the FX book.
pub fn btc_markets() -> Markets {
    Markets {
        instruments: vec![upbit_krw("KRW-BTC"), binance_perp("BTCUSDT"), upbit_krw("KRW-USDT")],
        coins: vec![CoinSpec {
            name: Symbol::new("BTC").unwrap_or_default(),
            upbit: KRW_BTC,
            binance: BTCUSDT,
        }],
        fx: Some(KRW_USDT),
    }
}

/// `n` coins (`C0`, `C1`, ...) with KRW-USDT as the FX book at the last index.
pub fn multi_markets(n: u16) -> Markets {
    let mut instruments = Vec::new();
    let mut coins = Vec::new();
    for c in 0..n {
        instruments.push(upbit_krw(&format!("KRW-C{c}")));
        instruments.push(binance_perp(&format!("C{c}USDT")));
        coins.push(CoinSpec {
            name: Symbol::new(&format!("C{c}")).unwrap_or_default(),
            upbit: InstrumentId(2 * c),
            binance: InstrumentId(2 * c + 1),
        });
    }
    instruments.push(upbit_krw("KRW-USDT"));
    Markets { instruments, coins, fx: Some(InstrumentId(2 * n)) }
}

/// A ladder of `n` levels from `best`, moving `step` away from the top each level, each
/// holding `qty` (fixed-point values).
pub fn ladder(best: i64, step: i64, qty: i64, n: usize) -> Vec<Level> {
    (0..n as i64).map(|i| Level::new(Price(best + i * step), Qty(qty))).collect()
}
