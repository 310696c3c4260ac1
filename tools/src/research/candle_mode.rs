//! Candle mode: OHLCV candles of both venues, an FX series and funding settlements turned
//! into the engine's events.
//!
//! Assumptions (also printed in every report, see [`BookModel::assumptions`]):
//! - a candle's close is known at its close time (open + interval), never earlier;
//! - at each close both venues' books are rebuilt around the close: best bid/ask at
//!   close ∓ half the configured spread (rounded outward to the tick), then `levels`
//!   levels `level_step_bps` apart, each holding `depth` worth of quote currency;
//! - no path inside a candle: high and low are not traded on;
//! - only candles present on both venues at the same close time are used;
//! - the FX series is an official USD/KRW rate fed as `Event::Fx(Official)` (bid = ask),
//!   so the run uses `fx_source = official` whatever the config says;
//! - funding settles at the recorded times; the rate of a settlement is announced from
//!   the previous settlement on (the venue's live estimate is not in the data).

use kimp_core::config::{Direction, FundingFilter};
use kimp_core::engine::{CoinSpec, Markets};
use kimp_core::event::{BookSnapshot, Event, Funding, Level};
use kimp_core::instrument::{Instrument, InstrumentId, Symbol, TickRule};
use kimp_core::testkit::{binance_perp, upbit_krw};
use kimp_core::units::{Nanos, Price, Qty, Quote, SCALE};

use super::backtest::{RunSetup, Runner};
use super::candles::{Candles, FundingRow, FxSeries};
use super::metrics::RunResult;

/// How a synthetic book is built around a close.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BookModel {
    /// Upbit bid-ask spread, bps of the close.
    pub upbit_spread_bps: f64,
    /// Binance bid-ask spread, bps of the close.
    pub binance_spread_bps: f64,
    /// Levels per side.
    pub levels: usize,
    /// Distance between levels, bps (at least one tick).
    pub level_step_bps: f64,
    /// Depth of each Upbit level, KRW.
    pub upbit_depth_krw: f64,
    /// Depth of each Binance level, USDT.
    pub binance_depth_usdt: f64,
}

impl Default for BookModel {
    fn default() -> Self {
        Self {
            upbit_spread_bps: 4.0,
            binance_spread_bps: 2.0,
            levels: 5,
            level_step_bps: 1.0,
            upbit_depth_krw: 50_000_000.0,
            binance_depth_usdt: 50_000.0,
        }
    }
}

impl BookModel {
    /// The assumptions, in words, for reports.
    pub fn assumptions(&self) -> Vec<String> {
        vec![
            "Candle mode: a candle's close is known at its close time (open + interval); \
             high/low are not traded on (no intra-candle path)."
                .into(),
            format!(
                "Synthetic books at each close: best bid/ask = close ∓ half-spread (Upbit {} bps, \
                 Binance {} bps, rounded outward to the tick); {} levels per side {} bps apart; \
                 {:.0} KRW per Upbit level, {:.0} USDT per Binance level. Fills are at close ± \
                 half-spread while the order fits the first level.",
                self.upbit_spread_bps,
                self.binance_spread_bps,
                self.levels,
                self.level_step_bps,
                self.upbit_depth_krw,
                self.binance_depth_usdt
            ),
            "Only closes present on both venues at the same time are used.".into(),
            "FX: the series is an official USD/KRW rate fed as the engine's official FX \
             (bid = ask = rate); a date-only value is effective from 17:00 UTC of that date; \
             fx_source is set to `official` for the run."
                .into(),
            "Funding settles at the recorded times; each settlement's rate is announced from \
             the previous settlement on (the live estimate is not in the data)."
                .into(),
        ]
    }
}

/// What the run does where funding data is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FundingMissing {
    /// The engine is told a rate of 0: the `positive`/`favourable` filters refuse entries;
    /// nothing settles.
    Block,
    /// Funding is treated as zero: nothing settles, and the filter is told the smallest
    /// rate of the sign it accepts (1e-8), so missing data does not block entries.
    Zero,
}

impl FundingMissing {
    /// Parses `block` / `zero`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "block" => Ok(Self::Block),
            "zero" => Ok(Self::Zero),
            _ => Err(format!("{s:?}: expected block or zero")),
        }
    }

    fn rate_e8(self, filter: FundingFilter, dir: Direction) -> i64 {
        match (self, filter, dir) {
            (Self::Block, _, _) | (Self::Zero, FundingFilter::Off, _) => 0,
            (Self::Zero, FundingFilter::Positive, _) => 1,
            (Self::Zero, FundingFilter::Favourable, Direction::SellPremium) => -1,
            (Self::Zero, FundingFilter::Favourable, Direction::BuyDiscount) => 1,
        }
    }
}

/// One coin's candle inputs.
#[derive(Clone, Debug)]
pub struct CoinCandles {
    /// Base asset, e.g. `BTC`.
    pub name: String,
    /// Upbit market, e.g. `KRW-BTC`.
    pub upbit_symbol: String,
    /// Binance perpetual, e.g. `BTCUSDT`.
    pub binance_symbol: String,
    /// Upbit KRW candles.
    pub upbit: Candles,
    /// Binance USDT candles.
    pub binance: Candles,
    /// Funding settlements of this perp.
    pub funding: Vec<FundingRow>,
}

#[derive(Clone, Copy, Debug)]
struct Close {
    t: i64,
    coin: u16,
    upbit: Price,
    binance: Price,
}

#[derive(Clone, Copy, Debug)]
struct FundEv {
    t: i64,
    coin: u16,
    /// `None`: no data for the coming period.
    rate: Option<i64>,
    next_ms: Option<i64>,
    settles: Option<(i64, Option<Price>)>,
}

/// Candle inputs prepared once (shared by every run of a sweep).
#[derive(Clone, Debug)]
pub struct CandleData {
    /// Coins.
    pub coins: Vec<CoinCandles>,
    /// FX.
    pub fx: FxSeries,
    closes: Vec<Close>,
    funding: Vec<FundEv>,
    /// Candle interval (the finer of the two venues'), ms.
    pub interval_ms: i64,
    /// Closes dropped because the other venue had no candle at that time.
    pub unaligned: u64,
    /// Time ranges without funding data, `(from, to)` epoch ms.
    pub funding_gaps: Vec<(i64, i64)>,
}

/// A far-away next-funding time: a period without data never settles.
const FAR_MS: i64 = 1 << 52;

impl CandleData {
    /// Aligns the venues' closes and plans the funding events.
    pub fn new(coins: Vec<CoinCandles>, fx: FxSeries) -> Self {
        let mut closes = Vec::new();
        let mut unaligned = 0u64;
        let mut interval = i64::MAX;
        for (c, cc) in coins.iter().enumerate() {
            let (u, b) = (&cc.upbit, &cc.binance);
            interval = interval.min(u.interval_ms.max(1)).min(b.interval_ms.max(1));
            let (mut i, mut j) = (0, 0);
            while i < u.bars.len() && j < b.bars.len() {
                let (tu, tb) = (u.close_ms(i), b.close_ms(j));
                if tu == tb {
                    closes.push(Close {
                        t: tu,
                        coin: c as u16,
                        upbit: u.bars[i].close,
                        binance: b.bars[j].close,
                    });
                    i += 1;
                    j += 1;
                } else if tu < tb {
                    i += 1;
                    unaligned += 1;
                } else {
                    j += 1;
                    unaligned += 1;
                }
            }
            unaligned += (u.bars.len() - i + b.bars.len() - j) as u64;
        }
        closes.sort_by_key(|c| (c.t, c.coin));
        let (funding, funding_gaps) = plan_funding(&coins, &closes);
        Self {
            coins,
            fx,
            closes,
            funding,
            interval_ms: if interval == i64::MAX { 0 } else { interval },
            unaligned,
            funding_gaps,
        }
    }

    /// Closes used (both venues present).
    pub fn aligned(&self) -> usize {
        self.closes.len()
    }

    /// Aligned closes inside `[from, to)`.
    pub fn aligned_in(&self, from: i64, to: i64) -> usize {
        self.closes.iter().filter(|c| c.t >= from && c.t < to).count()
    }

    /// First and last close time.
    pub fn span(&self) -> Option<(i64, i64)> {
        Some((self.closes.first()?.t, self.closes.last()?.t))
    }

    /// The markets of these coins: Upbit KRW spot and Binance perp rules, with the
    /// given taker fees (parts per 1e8).
    pub fn markets(&self, upbit_fee_e8: i64, binance_fee_e8: i64) -> Markets {
        let mut instruments = Vec::new();
        let mut coins = Vec::new();
        for (c, cc) in self.coins.iter().enumerate() {
            let mut u = upbit_krw(&cc.upbit_symbol);
            u.taker_fee_e8 = upbit_fee_e8;
            let mut b = perp_rules(&cc.binance_symbol, &cc.binance);
            b.taker_fee_e8 = binance_fee_e8;
            instruments.push(u);
            instruments.push(b);
            coins.push(CoinSpec {
                name: Symbol::new(&cc.name).unwrap_or_default(),
                upbit: InstrumentId(2 * c as u16),
                binance: InstrumentId(2 * c as u16 + 1),
            });
        }
        Markets { instruments, coins, fx: None }
    }

    /// First Upbit and Binance close of each coin at or after `from` (for balances).
    pub fn first_prices(&self, from: i64) -> Vec<(f64, f64)> {
        (0..self.coins.len())
            .map(|c| {
                self.closes
                    .iter()
                    .find(|x| x.coin as usize == c && x.t >= from)
                    .map_or((0.0, 0.0), |x| (x.upbit.to_f64(), x.binance.to_f64()))
            })
            .collect()
    }

    /// Runs one backtest over `[from, to)` (epoch ms).
    pub fn run(
        &self,
        setup: &RunSetup,
        book: &BookModel,
        missing: FundingMissing,
        from: i64,
        to: i64,
    ) -> anyhow::Result<RunResult> {
        let wall = std::time::Instant::now();
        let mut r = Runner::new(setup)?;
        let strat = setup.engine.strategy;
        let missing_rate = missing.rate_e8(strat.funding_filter, strat.direction);
        let closes = &self.closes[self.closes.partition_point(|c| c.t < from)..];
        let closes = &closes[..closes.partition_point(|c| c.t < to)];
        let Some(first) = closes.first() else {
            return Ok(r.finish(0, wall));
        };
        let t0 = first.t;
        r.start(Nanos::from_ms(t0.max(1) as u64 - 1), setup);
        // FX in force at the start, then its changes.
        let mut fx_i = self.fx.points.partition_point(|p| p.0 <= t0);
        if let Some(rate) = self.fx.at(t0) {
            r.fx(Nanos::from_ms(t0 as u64), rate);
        }
        // Funding: what is announced at the start, then the planned events.
        let mut fu_i = self.funding.partition_point(|f| f.t <= t0);
        for c in 0..self.coins.len() {
            let last = self.funding[..fu_i].iter().rev().find(|f| f.coin as usize == c);
            let (rate, next) = match last {
                Some(f) => (f.rate, f.next_ms),
                None => (None, None),
            };
            self.feed_funding(
                &mut r,
                setup,
                t0,
                c as u16,
                rate.unwrap_or(missing_rate),
                next,
                None,
                closes,
            );
        }
        let mut bufs = Bufs::default();
        let markets = &setup.markets;
        for close in closes {
            while fx_i < self.fx.points.len() && self.fx.points[fx_i].0 <= close.t {
                let (t, rate) = self.fx.points[fx_i];
                r.fx(Nanos::from_ms(t.max(t0) as u64), rate);
                fx_i += 1;
            }
            while fu_i < self.funding.len() && self.funding[fu_i].t <= close.t {
                let f = self.funding[fu_i];
                let settles = f.settles.map(|(rate, mark)| (rate, mark.unwrap_or(Price(0))));
                self.feed_funding(
                    &mut r,
                    setup,
                    f.t,
                    f.coin,
                    f.rate.unwrap_or(missing_rate),
                    f.next_ms,
                    settles,
                    closes,
                );
                fu_i += 1;
            }
            let spec = markets.coins[close.coin as usize];
            let t = Nanos::from_ms(close.t as u64);
            let ib = &markets.instruments[spec.binance.0 as usize];
            let iu = &markets.instruments[spec.upbit.0 as usize];
            r.exec.set_mark(spec.binance, close.binance);
            bufs.build(
                ib,
                close.binance,
                book.binance_spread_bps,
                book.level_step_bps,
                book.levels,
                book.binance_depth_usdt,
            );
            r.market(
                t,
                &Event::Book(BookSnapshot {
                    inst: spec.binance,
                    exch_ts: t,
                    last_update_id: 0,
                    bids: &bufs.bids,
                    asks: &bufs.asks,
                }),
            );
            bufs.build(
                iu,
                close.upbit,
                book.upbit_spread_bps,
                book.level_step_bps,
                book.levels,
                book.upbit_depth_krw,
            );
            r.market(
                t,
                &Event::Book(BookSnapshot {
                    inst: spec.upbit,
                    exch_ts: t,
                    last_update_id: 0,
                    bids: &bufs.bids,
                    asks: &bufs.asks,
                }),
            );
        }
        Ok(r.finish(60_000, wall))
    }

    #[allow(clippy::too_many_arguments)]
    fn feed_funding(
        &self,
        r: &mut Runner,
        setup: &RunSetup,
        t: i64,
        coin: u16,
        rate_e8: i64,
        next_ms: Option<i64>,
        settles: Option<(i64, Price)>,
        closes: &[Close],
    ) {
        let spec = setup.markets.coins[coin as usize];
        // The settlement's mark: the recorded one, else the last Binance close before it.
        let last_close = || {
            let i = closes.partition_point(|c| c.t <= t);
            closes[..i]
                .iter()
                .rev()
                .find(|c| c.coin == coin)
                .or(closes.first())
                .map_or(Price(0), |c| c.binance)
        };
        let mark = match settles {
            Some((_, m)) if m.0 > 0 => m,
            _ => last_close(),
        };
        let f = Funding {
            inst: spec.binance,
            exch_ts: Nanos::from_ms(t as u64),
            mark,
            rate_e8,
            next_funding: Nanos::from_ms(next_ms.unwrap_or(FAR_MS) as u64),
        };
        r.funding(Nanos::from_ms(t.max(0) as u64), f, settles.map(|(rate, _)| (rate, mark)));
    }
}

/// Binance perp rules for a symbol: the real BTCUSDT ones for BTC, otherwise a tick of
/// the finest price step in the data and a lot of about 100 USDT / price (power of ten).
fn perp_rules(symbol: &str, bars: &Candles) -> Instrument {
    if symbol == "BTCUSDT" {
        return binance_perp(symbol);
    }
    let mut step = SCALE;
    for b in bars.bars.iter().take(5_000) {
        while step > 1 && b.close.0 % step != 0 {
            step /= 10;
        }
    }
    let px = bars.bars.first().map_or(1.0, |b| b.close.to_f64()).max(1e-8);
    let lot = 10f64.powf((100.0 / px).log10().floor()).clamp(1e-8, 1e6);
    let mut i = binance_perp(symbol);
    i.tick = TickRule::Fixed(Price(step));
    i.lot = Qty((lot * SCALE as f64).round() as i64);
    i.min_qty = i.lot;
    i.min_notional = Quote(5 * SCALE);
    i.price_dp = 8;
    i.qty_dp = 8;
    i
}

/// Funding events: per coin, an announcement of each settlement's rate from the previous
/// settlement on, the settlement itself, and "no data" periods.
fn plan_funding(coins: &[CoinCandles], closes: &[Close]) -> (Vec<FundEv>, Vec<(i64, i64)>) {
    let mut evs = Vec::new();
    let mut gaps = Vec::new();
    let (start, end) = match (closes.first(), closes.last()) {
        (Some(a), Some(b)) => (a.t, b.t),
        _ => return (evs, gaps),
    };
    for (c, cc) in coins.iter().enumerate() {
        let rows: Vec<&FundingRow> = cc.funding.iter().collect();
        if rows.is_empty() {
            gaps.push((start, end));
            continue;
        }
        let mut ivs: Vec<i64> = rows.windows(2).map(|w| w[1].t_ms - w[0].t_ms).collect();
        ivs.sort_unstable();
        let iv = ivs.get(ivs.len() / 2).copied().unwrap_or(8 * 3_600_000).max(60_000);
        let coin = c as u16;
        let first_ann = rows[0].t_ms - iv;
        if first_ann > start {
            gaps.push((start, first_ann));
        }
        evs.push(FundEv {
            t: first_ann,
            coin,
            rate: Some(rows[0].rate_e8),
            next_ms: Some(rows[0].t_ms),
            settles: None,
        });
        for k in 0..rows.len() {
            let row = rows[k];
            let settles = Some((row.rate_e8, row.mark));
            match rows.get(k + 1) {
                Some(nx) if nx.t_ms - row.t_ms <= iv + iv / 2 => evs.push(FundEv {
                    t: row.t_ms,
                    coin,
                    rate: Some(nx.rate_e8),
                    next_ms: Some(nx.t_ms),
                    settles,
                }),
                Some(nx) => {
                    // A hole in the data: settle, say "no data", announce again later.
                    evs.push(FundEv { t: row.t_ms, coin, rate: None, next_ms: None, settles });
                    evs.push(FundEv {
                        t: nx.t_ms - iv,
                        coin,
                        rate: Some(nx.rate_e8),
                        next_ms: Some(nx.t_ms),
                        settles: None,
                    });
                    gaps.push((row.t_ms, nx.t_ms - iv));
                }
                None => {
                    evs.push(FundEv { t: row.t_ms, coin, rate: None, next_ms: None, settles });
                    if row.t_ms < end {
                        gaps.push((row.t_ms, end));
                    }
                }
            }
        }
    }
    evs.sort_by_key(|e| (e.t, e.coin));
    (evs, gaps)
}

/// Reusable level buffers for the synthetic books.
#[derive(Default, Debug)]
struct Bufs {
    bids: Vec<Level>,
    asks: Vec<Level>,
}

impl Bufs {
    fn build(
        &mut self,
        inst: &Instrument,
        close: Price,
        spread_bps: f64,
        step_bps: f64,
        levels: usize,
        depth_quote: f64,
    ) {
        self.bids.clear();
        self.asks.clear();
        let c = close.0 as i128;
        let half = (c as f64 * spread_bps / 20_000.0) as i128;
        let tick = inst.tick;
        let mut bid = tick.round_down(Price((c - half) as i64));
        let mut ask = tick.round_up(Price((c + half) as i64));
        if ask.0 <= bid.0 {
            ask = Price(bid.0 + tick.tick_at(bid).0);
        }
        let step_px = (c as f64 * step_bps / 10_000.0) as i64;
        let depth = depth_quote * SCALE as f64;
        for _ in 0..levels.max(1) {
            let qb = inst.round_qty(Qty((depth / bid.to_f64().max(1e-8)) as i64));
            let qa = inst.round_qty(Qty((depth / ask.to_f64().max(1e-8)) as i64));
            self.bids.push(Level::new(bid, qb));
            self.asks.push(Level::new(ask, qa));
            let sb = step_px.max(tick.tick_at(bid).0);
            let sa = step_px.max(tick.tick_at(ask).0);
            bid = tick.round_down(Price(bid.0 - sb));
            ask = tick.round_up(Price(ask.0 + sa));
            if bid.0 <= 0 {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_book_is_tick_aligned_around_the_close() {
        let inst = upbit_krw("KRW-BTC");
        let mut b = Bufs::default();
        b.build(&inst, Price(100_000_000 * SCALE), 4.0, 1.0, 3, 50_000_000.0);
        // ∓ 2 bps of 100,000,000 = 20,000; tick 1,000.
        assert_eq!(b.bids[0].px, Price(99_980_000 * SCALE));
        assert_eq!(b.asks[0].px, Price(100_020_000 * SCALE));
        assert_eq!(b.bids[1].px, Price(99_970_000 * SCALE), "1 bps = 10,000 KRW steps");
        assert_eq!(b.bids[0].qty, Qty(50_010_002), "50M KRW / 99.98M KRW, 1e-8 lot");
        assert_eq!(b.bids.len(), 3);
        let perp = binance_perp("BTCUSDT");
        b.build(&perp, Price(70_000 * SCALE), 0.0, 0.0, 2, 1_000.0);
        assert!(b.asks[0].px > b.bids[0].px, "a zero spread still leaves one tick");
    }
}
