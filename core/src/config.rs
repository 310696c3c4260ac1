//! Engine configuration: every threshold of the strategy and the risk checks, validated
//! before the engine starts. Deserialised from the `[strategy]` and `[risk]` tables of the
//! runtime's TOML file (the runtime reports the line of a bad value; `validate` reports
//! which key is wrong and why).

use serde::Deserialize;

use crate::event::FxSource;

/// Which pair the strategy opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Sell on Upbit (from coin inventory), buy the Binance perp; earns as the premium falls.
    SellPremium,
    /// Buy on Upbit, short the Binance perp; earns as the premium rises.
    BuyDiscount,
}

impl Direction {
    /// Upbit leg side when opening.
    pub const fn upbit_open_side(self) -> crate::event::Side {
        match self {
            Direction::SellPremium => crate::event::Side::Sell,
            Direction::BuyDiscount => crate::event::Side::Buy,
        }
    }
    /// Name used in config, logs and the store.
    pub const fn name(self) -> &'static str {
        match self {
            Direction::SellPremium => "sell_premium",
            Direction::BuyDiscount => "buy_discount",
        }
    }
}

/// Funding condition for entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FundingFilter {
    /// No condition.
    Off,
    /// Enter only when the funding rate is > 0 (the operators' literal rule; default).
    Positive,
    /// Enter only when funding pays the perp leg (short: rate > 0; long: rate < 0).
    Favourable,
}

/// How a one-leg pair is repaired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OneLegPolicy {
    /// Send the missing quantity again on the lagging venue with a widening price collar.
    Rehedge,
    /// Reverse the excess on the leading venue.
    Unwind,
}

/// Strategy rules (DESIGN.md §1).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StrategyConfig {
    /// Pair direction.
    pub direction: Direction,
    /// Enter when the executable premium (in the direction's sense) is at least this, in
    /// basis points (300 = 3.0 %).
    pub entry_bps: i64,
    /// Close when the pair's net PnL after all fees and funding exceeds this (KRW).
    pub exit_min_profit_krw: i64,
    /// Funding condition for entries.
    pub funding_filter: FundingFilter,
    /// Percentage of capital that may be deployed (95 = keep 5 % in reserve).
    pub deployable_pct: u32,
    /// Largest pair notional in KRW.
    pub max_pair_notional_krw: i64,
    /// Depth counted for sizing: levels within this many bps of the touch.
    pub slippage_bps: i64,
    /// Binance leverage used to compute margin per pair (1 = fully collateralised).
    pub leverage: u32,
    /// FX source for the premium.
    pub fx_source: FxSource,
    /// Minimum time between two entries on the same coin, and between two exit decisions
    /// of a pair whose exit legs both went unfilled (ms).
    pub entry_cooldown_ms: u64,
    /// Minimum interval between two premium samples sent to telemetry per coin (ms).
    pub telemetry_interval_ms: u64,
}

impl Default for StrategyConfig {
    fn default() -> Self {
        Self {
            direction: Direction::SellPremium,
            entry_bps: 300,
            exit_min_profit_krw: 0,
            funding_filter: FundingFilter::Positive,
            deployable_pct: 95,
            max_pair_notional_krw: 10_000_000,
            slippage_bps: 10,
            leverage: 1,
            fx_source: FxSource::UpbitUsdt,
            entry_cooldown_ms: 1_000,
            telemetry_interval_ms: 100,
        }
    }
}

/// Pre-trade risk limits and deadlines (DESIGN.md §4, RELIABILITY.md §9).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    /// Maximum open pairs across all coins. A coin holds at most one pair at a time (an
    /// entry needs "no pair open for that coin", DESIGN.md §1), so the limit that can bind
    /// is `min(max_open_pairs, number of coins)`: with one coin, 3 means 1.
    pub max_open_pairs: u32,
    /// Maximum notional of one Upbit order (KRW).
    pub max_order_notional_krw: i64,
    /// Maximum notional of one Binance order (USDT).
    pub max_order_notional_usdt: i64,
    /// Maximum exposure per coin, KRW.
    pub max_coin_notional_krw: i64,
    /// Price collar: a limit price may be at most this many bps through the touch.
    pub collar_bps: i64,
    /// Collar widening per re-hedge attempt, bps.
    pub hedge_collar_step_bps: i64,
    /// Orders per second per venue; exceeding it halts (a runaway guard).
    pub orders_per_sec_max: u32,
    /// A book older than this blocks entries (ms).
    pub book_age_ms_max: u64,
    /// An order without any answer after this is treated as an unknown outcome (ms).
    pub order_timeout_ms: u64,
    /// A one-leg pair should be repaired within this (ms).
    pub orphan_ms_max: u64,
    /// Past this a one-leg pair is flattened at market and the engine halts (ms).
    pub orphan_ms_hard: u64,
    /// How a one-leg pair is repaired.
    pub one_leg_policy: OneLegPolicy,
    /// Minimum time between two repair orders of the same pair (ms), so a venue that
    /// keeps refusing is not hammered.
    pub hedge_retry_ms: u64,
    /// How often the runtime compares the venues' positions and balances with the
    /// engine's while running (s); a mismatch above dust halts (`HaltReason::Mismatch`).
    pub reconcile_interval_s: u64,
}

impl Default for RiskConfig {
    fn default() -> Self {
        Self {
            max_open_pairs: 3,
            max_order_notional_krw: 20_000_000,
            max_order_notional_usdt: 15_000,
            max_coin_notional_krw: 30_000_000,
            collar_bps: 20,
            hedge_collar_step_bps: 20,
            orders_per_sec_max: 8,
            book_age_ms_max: 500,
            order_timeout_ms: 2_000,
            orphan_ms_max: 250,
            orphan_ms_hard: 2_000,
            one_leg_policy: OneLegPolicy::Rehedge,
            hedge_retry_ms: 50,
            reconcile_interval_s: 60,
        }
    }
}

/// A configuration value that is out of range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key, e.g. `strategy.entry_bps`.
    pub key: &'static str,
    /// What is wrong.
    pub problem: String,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

impl std::error::Error for ConfigError {}

fn check(ok: bool, key: &'static str, problem: impl FnOnce() -> String) -> Result<(), ConfigError> {
    if ok { Ok(()) } else { Err(ConfigError { key, problem: problem() }) }
}

impl StrategyConfig {
    /// Checks every value; the first problem is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = self;
        check((-5_000..=5_000).contains(&s.entry_bps), "strategy.entry_bps", || {
            format!("{} is outside -5000..=5000 bps", s.entry_bps)
        })?;
        check(s.exit_min_profit_krw >= 0, "strategy.exit_min_profit_krw", || {
            format!("{} < 0: the strategy never closes a pair at a loss", s.exit_min_profit_krw)
        })?;
        check((1..=100).contains(&s.deployable_pct), "strategy.deployable_pct", || {
            format!("{} is outside 1..=100", s.deployable_pct)
        })?;
        check(s.max_pair_notional_krw > 0, "strategy.max_pair_notional_krw", || {
            format!("{} must be > 0", s.max_pair_notional_krw)
        })?;
        check(
            s.max_pair_notional_krw <= 1_000_000_000_000,
            "strategy.max_pair_notional_krw",
            || format!("{} exceeds 1e12 KRW", s.max_pair_notional_krw),
        )?;
        check((0..=1_000).contains(&s.slippage_bps), "strategy.slippage_bps", || {
            format!("{} is outside 0..=1000", s.slippage_bps)
        })?;
        check((1..=20).contains(&s.leverage), "strategy.leverage", || {
            format!("{} is outside 1..=20", s.leverage)
        })?;
        check(s.telemetry_interval_ms <= 60_000, "strategy.telemetry_interval_ms", || {
            format!("{} exceeds 60000", s.telemetry_interval_ms)
        })?;
        Ok(())
    }
}

impl RiskConfig {
    /// Checks every value; the first problem is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let r = self;
        check((1..=64).contains(&r.max_open_pairs), "risk.max_open_pairs", || {
            format!("{} is outside 1..=64", r.max_open_pairs)
        })?;
        check(r.max_order_notional_krw > 0, "risk.max_order_notional_krw", || {
            format!("{} must be > 0", r.max_order_notional_krw)
        })?;
        check(r.max_order_notional_usdt > 0, "risk.max_order_notional_usdt", || {
            format!("{} must be > 0", r.max_order_notional_usdt)
        })?;
        check(r.max_coin_notional_krw > 0, "risk.max_coin_notional_krw", || {
            format!("{} must be > 0", r.max_coin_notional_krw)
        })?;
        check((1..=2_000).contains(&r.collar_bps), "risk.collar_bps", || {
            format!("{} is outside 1..=2000", r.collar_bps)
        })?;
        check(
            (0..=2_000).contains(&r.hedge_collar_step_bps),
            "risk.hedge_collar_step_bps",
            || format!("{} is outside 0..=2000", r.hedge_collar_step_bps),
        )?;
        check((1..=1_000).contains(&r.orders_per_sec_max), "risk.orders_per_sec_max", || {
            format!("{} is outside 1..=1000", r.orders_per_sec_max)
        })?;
        check((1..=60_000).contains(&r.book_age_ms_max), "risk.book_age_ms_max", || {
            format!("{} is outside 1..=60000", r.book_age_ms_max)
        })?;
        check((1..=60_000).contains(&r.order_timeout_ms), "risk.order_timeout_ms", || {
            format!("{} is outside 1..=60000", r.order_timeout_ms)
        })?;
        check(r.orphan_ms_max >= 1, "risk.orphan_ms_max", || "must be >= 1".into())?;
        check(r.orphan_ms_hard > r.orphan_ms_max, "risk.orphan_ms_hard", || {
            format!("{} must be greater than orphan_ms_max ({})", r.orphan_ms_hard, r.orphan_ms_max)
        })?;
        check(r.hedge_retry_ms < r.orphan_ms_hard, "risk.hedge_retry_ms", || {
            format!("{} must be less than orphan_ms_hard ({})", r.hedge_retry_ms, r.orphan_ms_hard)
        })?;
        check((1..=86_400).contains(&r.reconcile_interval_s), "risk.reconcile_interval_s", || {
            format!("{} is outside 1..=86400", r.reconcile_interval_s)
        })?;
        Ok(())
    }
}

/// Everything the engine needs to be configured with.
#[derive(Clone, Copy, Debug, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Strategy rules.
    pub strategy: StrategyConfig,
    /// Risk limits.
    pub risk: RiskConfig,
}

impl EngineConfig {
    /// Validates both tables.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.strategy.validate()?;
        self.risk.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_operators_rules() {
        let c = EngineConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.strategy.entry_bps, 300);
        assert_eq!(c.strategy.direction, Direction::SellPremium);
        assert_eq!(c.strategy.funding_filter, FundingFilter::Positive);
        assert_eq!(c.strategy.deployable_pct, 95);
        assert_eq!(c.risk.book_age_ms_max, 500);
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut c = EngineConfig::default();
        c.strategy.deployable_pct = 120;
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "strategy.deployable_pct");
        assert!(e.to_string().contains("120"));
        let mut c = EngineConfig::default();
        c.risk.orphan_ms_hard = 10;
        assert_eq!(c.validate().unwrap_err().key, "risk.orphan_ms_hard");
        let mut c = EngineConfig::default();
        c.strategy.exit_min_profit_krw = -1;
        assert_eq!(c.validate().unwrap_err().key, "strategy.exit_min_profit_krw");
    }

    #[test]
    fn parses_from_json_and_refuses_unknown_keys() {
        let c: EngineConfig =
            serde_json::from_str(r#"{"strategy":{"entry_bps":250,"direction":"buy_discount"}}"#)
                .unwrap();
        assert_eq!(c.strategy.entry_bps, 250);
        assert_eq!(c.strategy.direction, Direction::BuyDiscount);
        assert_eq!(c.risk, RiskConfig::default());
        let e = serde_json::from_str::<EngineConfig>(r#"{"strategy":{"entry_pct":3}}"#);
        assert!(e.unwrap_err().to_string().contains("entry_pct"));
    }
}
