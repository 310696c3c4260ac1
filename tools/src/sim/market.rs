//! Synthetic markets: the price, FX and premium processes, and how books are shaped
//! around them.
//!
//! - Coin price in USDT: geometric Brownian motion with the coin's daily volatility.
//! - Official USD/KRW: a slow mean-reverting process; KRW-USDT = USD/KRW × (1 + USDT
//!   premium), the USDT premium itself mean-reverting.
//! - Kimchi premium per coin: a mean-reverting (Ornstein-Uhlenbeck) driver with Poisson
//!   jumps, which the premium follows with a lag of [`PREMIUM_LAG_MS`] (so that it moves
//!   over seconds, not by bps per step, and the books keep their depth), and
//!   Upbit KRW mid = Binance mid × KRW-USDT × (1 + premium) × (1 + own noise).
//! - Funding rate: mean-reverting around the configured mean.
//!
//! Everything is a pure function of the seed and the sequence of `advance` calls.

use kimp_core::instrument::TickRule;
use kimp_core::units::Price;

use super::book::{BookSide, Px, Qt, SimBook};
use super::config::{CoinSpec, MarketParams};
use super::rng::Rng;

const MS_PER_H: f64 = 3_600_000.0;
const MS_PER_DAY: f64 = 86_400_000.0;
const E8: f64 = 100_000_000.0;
/// How closely the premium follows its driver: the time constant of the lag, simulated ms.
pub const PREMIUM_LAG_MS: f64 = 10_000.0;

/// State of one coin's processes.
#[derive(Clone, Debug)]
pub struct CoinProc {
    /// The coin.
    pub spec: CoinSpec,
    log_px: f64,
    /// Kimchi premium against KRW-USDT (0.02 = 2 %). Writing it (tests, the demo) moves
    /// the driver there too, so a premium that was set stays set.
    pub premium: f64,
    /// The mean-reverting process the premium follows.
    driver: f64,
    /// The premium as the last `advance` left it (an outside write differs from it).
    premium_seen: f64,
    upbit_noise: f64,
    /// Current funding-rate estimate (per interval).
    pub funding_rate: f64,
}

/// The seeded market generator.
#[derive(Clone, Debug)]
pub struct MarketGen {
    rng: Rng,
    params: MarketParams,
    /// Coins.
    pub coins: Vec<CoinProc>,
    /// Official USD/KRW.
    pub usdkrw: f64,
    /// USDT premium over USD/KRW.
    pub usdt_premium: f64,
}

impl MarketGen {
    /// A generator at its starting values.
    pub fn new(seed: u64, params: MarketParams, coins: &[CoinSpec]) -> Self {
        Self {
            rng: Rng::stream(seed, 0x4d4b54),
            params,
            coins: coins
                .iter()
                .map(|c| CoinProc {
                    spec: c.clone(),
                    log_px: c.usdt_price.ln(),
                    premium: c.premium_mean,
                    driver: c.premium_mean,
                    premium_seen: c.premium_mean,
                    upbit_noise: 0.0,
                    funding_rate: params.funding_mean,
                })
                .collect(),
            usdkrw: params.usdkrw,
            usdt_premium: params.usdt_premium,
        }
    }

    /// Advances every process by `dt_ms` of simulated time.
    pub fn advance(&mut self, dt_ms: u64) {
        let dt_h = dt_ms as f64 / MS_PER_H;
        let dt_d = dt_ms as f64 / MS_PER_DAY;
        let p = self.params;
        // Official FX: 0.5 %/day volatility, reverting to its start over ~a day.
        let fx_z = self.rng.normal();
        self.usdkrw +=
            (p.usdkrw - self.usdkrw) * (dt_h / 24.0) + self.usdkrw * 0.005 * dt_d.sqrt() * fx_z;
        let up_z = self.rng.normal();
        self.usdt_premium += (p.usdt_premium - self.usdt_premium) * (dt_h * 1.0).min(1.0)
            + 0.002 * dt_h.sqrt() * up_z;
        for c in &mut self.coins {
            let z = self.rng.normal();
            let s = c.spec.daily_vol;
            c.log_px += -0.5 * s * s * dt_d + s * dt_d.sqrt() * z;
            let pz = self.rng.normal();
            let mut jump = 0.0;
            if self.rng.chance(p.premium_jumps_per_h * dt_h) {
                jump = p.premium_jump_sd * self.rng.normal();
            }
            if c.premium != c.premium_seen {
                c.driver = c.premium;
            }
            c.driver += (c.spec.premium_mean - c.driver)
                * (p.premium_reversion_per_h * dt_h).min(1.0)
                + p.premium_vol_per_sqrt_h * dt_h.sqrt() * pz
                + jump;
            c.driver = c.driver.clamp(-0.15, 0.35);
            c.premium += (c.driver - c.premium) * (dt_ms as f64 / PREMIUM_LAG_MS).min(1.0);
            c.premium_seen = c.premium;
            let nz = self.rng.normal();
            c.upbit_noise += -c.upbit_noise * (dt_ms as f64 / 5_000.0).min(1.0)
                + 0.0001 * (dt_ms as f64 / 1_000.0).sqrt() * nz;
            let fz = self.rng.normal();
            c.funding_rate += (p.funding_mean - c.funding_rate) * (dt_h / 8.0).min(1.0)
                + 0.0001 * dt_h.sqrt() * fz;
            c.funding_rate = c.funding_rate.clamp(-0.0075, 0.0075);
        }
    }

    /// Binance mid of coin `i` in USDT.
    pub fn binance_mid(&self, i: usize) -> f64 {
        self.coins[i].log_px.exp()
    }

    /// Upbit KRW-USDT mid.
    pub fn krw_usdt_mid(&self) -> f64 {
        self.usdkrw * (1.0 + self.usdt_premium)
    }

    /// Upbit KRW mid of coin `i`, given the Binance mid it is derived from.
    pub fn upbit_mid(&self, i: usize, binance_mid: f64) -> f64 {
        let c = &self.coins[i];
        binance_mid * self.krw_usdt_mid() * (1.0 + c.premium) * (1.0 + c.upbit_noise)
    }

    /// Overrides coin `i`'s price (replayed Binance data drives the synthetic Upbit side).
    pub fn set_binance_mid(&mut self, i: usize, mid: f64) {
        if mid > 0.0 {
            self.coins[i].log_px = mid.ln();
        }
    }
}

/// How a book is shaped around its mid.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Price grid.
    pub tick: TickRule,
    /// Half spread in ticks (before the spread multiplier).
    pub half_spread_ticks: f64,
    /// Price slots per side in which levels may exist.
    pub slots: usize,
    /// Fraction of slots holding a level.
    pub occupancy: f64,
    /// Typical level size, base units.
    pub level_qty: f64,
    /// Quantity grid (fixed-point).
    pub lot: Qt,
}

/// Per-book state the shaper keeps between steps.
#[derive(Clone, Debug)]
pub struct Shaper {
    /// The shape.
    pub shape: Shape,
    depth_mult: f64,
    rng: Rng,
    initialised: bool,
}

impl Shaper {
    /// A shaper with its own random stream.
    pub fn new(shape: Shape, seed: u64, label: u64) -> Self {
        Self { shape, depth_mult: 1.0, rng: Rng::stream(seed, label), initialised: false }
    }

    fn tick_at(&self, px: Px) -> Px {
        self.shape.tick.tick_at(Price(px)).0.max(1)
    }

    fn step_away(&self, px: Px, side: BookSide) -> Px {
        match side {
            BookSide::Bid => px - self.tick_at(px - 1),
            BookSide::Ask => px + self.tick_at(px),
        }
    }

    fn sample_qty(&mut self, j: usize) -> Qt {
        let s = self.shape;
        let grow = 1.0 + j as f64 / s.slots.max(1) as f64;
        let q = s.level_qty * self.depth_mult * grow * (0.7 * self.rng.normal()).exp();
        let raw = (q * E8) as i64;
        let lot = s.lot.max(1);
        (raw - raw % lot).max(lot)
    }

    /// Moves the book toward `mid`: levels that crossed are removed, the top levels are
    /// refreshed, some levels change, appear or vanish. `spread_mult` widens the spread
    /// and `depth_mult` scales sizes (faults).
    pub fn shape(&mut self, book: &mut SimBook, mid: f64, spread_mult: f64, depth_mult: f64) {
        if !(mid.is_finite() && mid > 0.0) {
            return;
        }
        if (depth_mult - self.depth_mult).abs() > 1e-12 {
            let ratio = depth_mult / self.depth_mult;
            self.depth_mult = depth_mult;
            for side in [BookSide::Bid, BookSide::Ask] {
                for (px, q) in book.levels(side) {
                    let lot = self.shape.lot.max(1);
                    let nq = ((q as f64 * ratio) as i64 / lot * lot).max(lot);
                    book.set(side, px, nq);
                }
            }
        }
        let mid_px = (mid * E8) as i64;
        let tick = self.tick_at(mid_px);
        let h = (self.shape.half_spread_ticks * spread_mult).max(0.5);
        let best_bid = self.shape.tick.round_down(Price(mid_px - (h * tick as f64) as i64)).0;
        let mut best_ask = self.shape.tick.round_up(Price(mid_px + (h * tick as f64) as i64)).0;
        if best_ask <= best_bid {
            best_ask = best_bid + self.tick_at(best_bid);
        }
        for (side, best) in [(BookSide::Bid, best_bid), (BookSide::Ask, best_ask)] {
            // Levels through the new best are gone (taken or cancelled).
            for px in book.prices(side) {
                let crossed = match side {
                    BookSide::Bid => px > best,
                    BookSide::Ask => px < best,
                };
                if crossed {
                    book.set(side, px, 0);
                }
            }
            let occ = self.shape.occupancy.clamp(0.05, 0.99);
            let remove_p = 0.03;
            // Refill quickly while the side is thinner than its target (after a move
            // or a sweep), slowly otherwise.
            let target = (occ * self.shape.slots as f64) as usize;
            let have_n = book.prices(side).len();
            let add_p = if !self.initialised {
                occ
            } else if have_n < target {
                0.35
            } else {
                remove_p * occ / (1.0 - occ)
            };
            let mut px = best;
            let mut last = best;
            for j in 0..self.shape.slots {
                if px <= 0 {
                    break;
                }
                last = px;
                let have = book.qty_at(side, px);
                if j == 0 {
                    if have == 0 || self.rng.chance(0.3) {
                        let q = self.sample_qty(0);
                        book.set(side, px, q);
                    }
                } else if have > 0 {
                    if self.rng.chance(remove_p) {
                        book.set(side, px, 0);
                    } else if self.rng.chance(0.06) {
                        let q = self.sample_qty(j);
                        book.set(side, px, q);
                    }
                } else if self.rng.chance(add_p) {
                    let q = self.sample_qty(j);
                    book.set(side, px, q);
                }
                px = self.step_away(px, side);
            }
            // Levels beyond the window drift out of view.
            for p in book.prices(side) {
                let beyond = match side {
                    BookSide::Bid => p < last,
                    BookSide::Ask => p > last,
                };
                if beyond {
                    book.set(side, p, 0);
                }
            }
        }
        self.initialised = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::config::SimConfig;

    #[test]
    fn premium_links_the_two_venues_and_reverts() {
        let cfg = SimConfig::default();
        let mut g = MarketGen::new(9, cfg.market, &cfg.coins);
        let mut sum = 0.0;
        let n = 20_000;
        for _ in 0..n {
            g.advance(1_000);
            let b = g.binance_mid(0);
            let implied = g.upbit_mid(0, b) / (b * g.krw_usdt_mid()) - 1.0;
            assert!((implied - g.coins[0].premium).abs() < 0.01, "{implied}");
            sum += g.coins[0].premium;
        }
        let mean = sum / n as f64;
        assert!((mean - 0.02).abs() < 0.01, "premium mean {mean}");
        assert!(g.usdkrw > 1_300.0 && g.usdkrw < 1_650.0, "{}", g.usdkrw);
    }

    #[test]
    fn the_default_premium_moves_over_seconds_and_a_set_premium_stays() {
        let cfg = SimConfig::default();
        let mut g = MarketGen::new(3, cfg.market, &cfg.coins);
        let (mut sq, mut max, mut above, mut dev) = (0.0, 0.0f64, 0, 0.0);
        let n = 36_000; // one hour of 100 ms steps
        for _ in 0..n {
            let before = g.coins[0].premium;
            g.advance(100);
            let d = g.coins[0].premium - before;
            sq += d * d;
            max = max.max(d.abs());
            dev += (g.coins[0].premium - 0.02).powi(2);
            above += usize::from(g.coins[0].premium > 0.0258);
        }
        let (rms, sd) = ((sq / n as f64).sqrt(), (dev / n as f64).sqrt());
        assert!(rms < 0.000_05 && max < 0.000_8, "per-step change rms {rms}, max {max}");
        assert!((0.003..0.01).contains(&sd), "premium sd {sd} around the mean");
        assert!(above > 100, "config/default.toml's entry (250 bps + spread) is reached");
        g.coins[0].premium = 0.036;
        for _ in 0..30 {
            g.advance(100);
        }
        assert!((g.coins[0].premium - 0.036).abs() < 0.001, "{}", g.coins[0].premium);
    }

    #[test]
    fn shaped_books_are_uncrossed_on_the_grid_and_deep() {
        let cfg = SimConfig::default();
        let mut g = MarketGen::new(5, cfg.market, &cfg.coins);
        let shape = Shape {
            tick: TickRule::UpbitKrw,
            half_spread_ticks: 8.0,
            slots: 90,
            occupancy: 0.5,
            level_qty: 0.05,
            lot: 1,
        };
        let mut sh = Shaper::new(shape, 5, 1);
        let mut book = SimBook::new(0, 1);
        for _ in 0..200 {
            g.advance(100);
            let m = g.upbit_mid(0, g.binance_mid(0));
            sh.shape(&mut book, m, 1.0, 1.0);
            let (bb, ba) = (book.best_bid().unwrap().0, book.best_ask().unwrap().0);
            assert!(bb < ba);
            assert!((bb as f64 / E8) < m && (ba as f64 / E8) > m);
            for side in [BookSide::Bid, BookSide::Ask] {
                let lv = book.levels(side);
                assert!(lv.len() >= 30, "{} levels", lv.len());
                assert!(lv.iter().all(|(p, q)| TickRule::UpbitKrw.is_valid(Price(*p)) && *q > 0));
            }
        }
    }
}
