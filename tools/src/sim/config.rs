//! Simulator configuration: addresses, seed, speed, accounts, markets, fees, limits.

use std::net::SocketAddr;
use std::path::PathBuf;

use kimp_gateways::sign::Secret;

use super::faults::Faults;

/// An API key pair that both simulated venues accept (Upbit access/secret key and
/// Binance API key/secret).
#[derive(Clone, Debug)]
pub struct ApiKeyPair {
    /// Upbit access key and Binance API key (public; safe to log).
    pub key: String,
    /// The secret (Debug prints `<redacted>`).
    pub secret: Secret,
}

impl ApiKeyPair {
    /// A key pair from its two parts.
    pub fn new(key: &str, secret: &str) -> Self {
        Self { key: key.to_owned(), secret: Secret::new(secret) }
    }

    /// Parses `KEY:SECRET` (the `--account` form).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some((k, v))
                if !k.is_empty()
                    && !v.is_empty()
                    && k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') =>
            {
                Ok(Self::new(k, v))
            }
            _ => Err("expected KEY:SECRET (key: letters, digits, '-' or '_')".to_owned()),
        }
    }
}

/// The documented default account: access/API key.
pub const DEFAULT_KEY: &str = "kimp-sim-key";
/// The documented default account: secret (a simulator-only key with no value).
pub const DEFAULT_SECRET: &str = "kimp-sim-secret";

/// The default market's long-run kimchi premium, bps (`kimp sim --premium-mean`).
pub const DEFAULT_PREMIUM_MEAN_BPS: f64 = 200.0;
/// The default market's premium volatility, bps (`kimp sim --premium-vol`): the standard
/// deviation of the premium's noise around its mean.
pub const DEFAULT_PREMIUM_VOL_BPS: f64 = 60.0;
/// The default premium mean-reversion speed, per hour (a half-life of about a minute):
/// livelier than the real premium, so that paper trading sees entries and exits within
/// minutes at `--speed 1`.
pub const DEFAULT_PREMIUM_REVERSION_PER_H: f64 = 40.0;

/// One coin traded on both venues (`KRW-<base>` on Upbit, `<base>USDT` on Binance).
#[derive(Clone, Debug, PartialEq)]
pub struct CoinSpec {
    /// Base asset (`BTC`).
    pub base: String,
    /// Starting Binance price in USDT.
    pub usdt_price: f64,
    /// Daily volatility of the log price.
    pub daily_vol: f64,
    /// Binance tick (`PRICE_FILTER.tickSize`), fixed-point 1e-8.
    pub bin_tick: i64,
    /// Binance price decimals.
    pub bin_price_dp: u32,
    /// Binance step (`LOT_SIZE.stepSize`), fixed-point 1e-8.
    pub bin_step: i64,
    /// Binance quantity decimals.
    pub bin_qty_dp: u32,
    /// Binance `MIN_NOTIONAL.notional` in USDT, fixed-point 1e-8.
    pub bin_min_notional: i64,
    /// Typical Binance level size (base units).
    pub bin_level_qty: f64,
    /// Typical Upbit level size (base units).
    pub upbit_level_qty: f64,
    /// Upbit half spread in ticks.
    pub upbit_half_spread_ticks: f64,
    /// Long-run premium the premium process reverts to (0.02 = 2 %).
    pub premium_mean: f64,
}

impl CoinSpec {
    /// BTC with the fixtures' price level.
    pub fn btc() -> Self {
        Self {
            base: "BTC".into(),
            usdt_price: 70_500.0,
            daily_vol: 0.03,
            bin_tick: 10_000_000,
            bin_price_dp: 2,
            bin_step: 100_000,
            bin_qty_dp: 3,
            bin_min_notional: 100 * 100_000_000,
            bin_level_qty: 0.4,
            upbit_level_qty: 0.05,
            upbit_half_spread_ticks: 8.0,
            premium_mean: DEFAULT_PREMIUM_MEAN_BPS / 10_000.0,
        }
    }

    /// ETH.
    pub fn eth() -> Self {
        Self {
            base: "ETH".into(),
            usdt_price: 3_500.0,
            daily_vol: 0.04,
            bin_tick: 1_000_000,
            bin_price_dp: 2,
            bin_step: 100_000,
            bin_qty_dp: 3,
            bin_min_notional: 20 * 100_000_000,
            bin_level_qty: 6.0,
            upbit_level_qty: 1.0,
            upbit_half_spread_ticks: 2.0,
            premium_mean: DEFAULT_PREMIUM_MEAN_BPS / 10_000.0,
        }
    }

    /// Upbit market code.
    pub fn upbit_code(&self) -> String {
        format!("KRW-{}", self.base)
    }

    /// Binance symbol.
    pub fn binance_symbol(&self) -> String {
        format!("{}USDT", self.base)
    }
}

/// Trading fees in parts per 1e8 (0.05 % = 50 000).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fees {
    /// Upbit KRW markets, maker and taker (documented 0.05 %).
    pub upbit_e8: i64,
    /// Binance USDT-M taker (0.04 %).
    pub binance_taker_e8: i64,
    /// Binance USDT-M maker (0.02 %).
    pub binance_maker_e8: i64,
}

impl Default for Fees {
    fn default() -> Self {
        Self { upbit_e8: 50_000, binance_taker_e8: 40_000, binance_maker_e8: 20_000 }
    }
}

/// Request budgets (the venues' documented defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Upbit `order` group per second per account.
    pub upbit_order_per_s: u32,
    /// Upbit `default` group per second per account.
    pub upbit_default_per_s: u32,
    /// Binance IP request weight per minute.
    pub binance_weight_per_min: u32,
    /// Binance orders per 10 s per account.
    pub binance_orders_per_10s: u32,
    /// Binance orders per minute per account.
    pub binance_orders_per_min: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            upbit_order_per_s: 8,
            upbit_default_per_s: 30,
            binance_weight_per_min: 2400,
            binance_orders_per_10s: 300,
            binance_orders_per_min: 1200,
        }
    }
}

/// Starting balances of every account.
#[derive(Clone, Debug, PartialEq)]
pub struct Balances {
    /// Upbit KRW.
    pub upbit_krw: f64,
    /// Upbit coin balances per base asset (`BTC`, `USDT`, ...); coins not listed start at 0.
    pub upbit_coins: Vec<(String, f64)>,
    /// Binance USDT-M wallet (USDT).
    pub binance_usdt: f64,
}

impl Default for Balances {
    fn default() -> Self {
        Self {
            upbit_krw: 100_000_000.0,
            upbit_coins: vec![("BTC".into(), 1.0), ("ETH".into(), 10.0), ("USDT".into(), 10_000.0)],
            binance_usdt: 100_000.0,
        }
    }
}

/// Parameters of the FX and premium processes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MarketParams {
    /// Official USD/KRW at start.
    pub usdkrw: f64,
    /// Long-run USDT premium over the official rate (KRW-USDT / USDKRW - 1).
    pub usdt_premium: f64,
    /// Premium mean reversion speed, per hour.
    pub premium_reversion_per_h: f64,
    /// Premium volatility per sqrt(hour).
    pub premium_vol_per_sqrt_h: f64,
    /// Premium jumps per hour.
    pub premium_jumps_per_h: f64,
    /// Standard deviation of a premium jump.
    pub premium_jump_sd: f64,
    /// Mean funding rate per interval.
    pub funding_mean: f64,
}

impl Default for MarketParams {
    fn default() -> Self {
        let mut p = Self {
            usdkrw: 1_463.5,
            usdt_premium: 0.003,
            premium_reversion_per_h: DEFAULT_PREMIUM_REVERSION_PER_H,
            premium_vol_per_sqrt_h: 0.0,
            premium_jumps_per_h: 3.0,
            premium_jump_sd: 0.0,
            funding_mean: 0.0001,
        };
        p.set_premium_vol(DEFAULT_PREMIUM_VOL_BPS / 10_000.0);
        p
    }
}

impl MarketParams {
    /// Sets how far the premium wanders: noise whose standard deviation around the mean
    /// is `sd` (0.006 = 60 bps) at the current reversion speed, and jumps of `2 × sd`;
    /// `0` = a flat premium (no noise, no jumps).
    pub fn set_premium_vol(&mut self, sd: f64) {
        let sd = sd.max(0.0);
        self.premium_vol_per_sqrt_h = sd * (2.0 * self.premium_reversion_per_h).sqrt();
        self.premium_jump_sd = 2.0 * sd;
        if sd == 0.0 {
            self.premium_jumps_per_h = 0.0;
        }
    }

    /// The standard deviation of the premium's noise around its mean (jumps aside).
    pub fn premium_vol(&self) -> f64 {
        if self.premium_vol_per_sqrt_h == 0.0 {
            0.0
        } else if self.premium_reversion_per_h > 0.0 {
            self.premium_vol_per_sqrt_h / (2.0 * self.premium_reversion_per_h).sqrt()
        } else {
            f64::INFINITY
        }
    }
}

/// Everything the simulator needs to start.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seed of every random choice (market, faults, ids).
    pub seed: u64,
    /// Simulated time per real time (1.0 = real time).
    pub speed: f64,
    /// Simulated epoch at start, ms; `None` = the wall clock at start.
    pub start_ms: Option<u64>,
    /// Upbit REST + WebSocket address (port 0 = ephemeral).
    pub upbit_listen: SocketAddr,
    /// Binance REST + WebSocket address (port 0 = ephemeral).
    pub binance_listen: SocketAddr,
    /// Serve TLS with a generated self-signed certificate.
    pub tls: bool,
    /// Accounts; empty = the default account ([`DEFAULT_KEY`]).
    pub accounts: Vec<ApiKeyPair>,
    /// Fault scenarios.
    pub faults: Faults,
    /// Recorded files to replay instead of generating those markets.
    pub replay: Vec<PathBuf>,
    /// Coins on both venues.
    pub coins: Vec<CoinSpec>,
    /// Fees.
    pub fees: Fees,
    /// Rate limits.
    pub limits: Limits,
    /// Starting balances.
    pub balances: Balances,
    /// Market processes.
    pub market: MarketParams,
    /// Binance depth cadence = market step, simulated ms.
    pub step_ms: u64,
    /// markPrice cadence, simulated ms.
    pub mark_interval_ms: u64,
    /// Funding interval, simulated ms.
    pub funding_interval_ms: u64,
    /// Binance leverage applied to every position (margin = notional / leverage).
    pub leverage: u32,
    /// Base latency added to every REST response, real ms.
    pub rest_latency_ms: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            speed: 1.0,
            start_ms: None,
            upbit_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            binance_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: false,
            accounts: Vec::new(),
            faults: Faults::default(),
            replay: Vec::new(),
            coins: vec![CoinSpec::btc(), CoinSpec::eth()],
            fees: Fees::default(),
            limits: Limits::default(),
            balances: Balances::default(),
            market: MarketParams::default(),
            step_ms: 100,
            mark_interval_ms: 1_000,
            funding_interval_ms: 8 * 3_600_000,
            leverage: 10,
            rest_latency_ms: 0,
        }
    }
}

impl SimConfig {
    /// Checks values that would make the simulator misbehave.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.speed.is_finite() && self.speed > 0.0 && self.speed <= 10_000.0) {
            return Err(format!("speed must be in (0, 10000], got {}", self.speed));
        }
        if self.step_ms == 0 || self.mark_interval_ms == 0 || self.funding_interval_ms == 0 {
            return Err("step, mark and funding intervals must be positive".into());
        }
        if self.coins.is_empty() && self.replay.is_empty() {
            return Err("no coins and no replay files: nothing to serve".into());
        }
        if self.leverage == 0 || self.leverage > 125 {
            return Err(format!("leverage must be 1..=125, got {}", self.leverage));
        }
        for c in &self.coins {
            if c.base.is_empty() || !c.base.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(format!("coin base must be upper-case letters: {:?}", c.base));
            }
            if c.usdt_price.is_nan() || c.usdt_price <= 0.0 || c.bin_tick <= 0 || c.bin_step <= 0 {
                return Err(format!("coin {}: price, tick and step must be positive", c.base));
            }
        }
        Ok(())
    }

    /// Accounts in effect (the default one when none is configured).
    pub fn effective_accounts(&self) -> Vec<ApiKeyPair> {
        if self.accounts.is_empty() {
            vec![ApiKeyPair::new(DEFAULT_KEY, DEFAULT_SECRET)]
        } else {
            self.accounts.clone()
        }
    }
}
