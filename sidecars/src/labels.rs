//! Lower-case labels for the engine's enums, shared by the store (symbol values) and the bot.

use kimp_core::action::{HaltReason, HaltSet, Purpose, TradingState};
use kimp_core::config::Direction;
use kimp_core::event::{FxSource, RejectReason, Side};
use kimp_core::order::{OrderKind, OrderState};
use kimp_core::pair::PairState;

/// `buy` / `sell`.
pub fn side(s: Side) -> &'static str {
    match s {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

/// Why an intent was made.
pub fn purpose(p: Purpose) -> &'static str {
    match p {
        Purpose::Entry => "entry",
        Purpose::Exit => "exit",
        Purpose::Hedge => "hedge",
        Purpose::Flatten => "flatten",
    }
}

/// Order execution kind.
pub fn order_kind(k: OrderKind) -> &'static str {
    match k {
        OrderKind::LimitIoc => "limit_ioc",
        OrderKind::Market => "market",
    }
}

/// Order state (rejections carry their reason separately, see [`reject`]).
pub fn order_state(s: OrderState) -> &'static str {
    match s {
        OrderState::Sent => "sent",
        OrderState::Open => "open",
        OrderState::Unknown => "unknown",
        OrderState::Filled => "filled",
        OrderState::Done => "done",
        OrderState::Rejected(_) => "rejected",
    }
}

/// Why a venue refused an order (`other` keeps no code; the store writes it as a column).
pub fn reject(r: RejectReason) -> &'static str {
    match r {
        RejectReason::InsufficientBalance => "insufficient_balance",
        RejectReason::MinNotional => "min_notional",
        RejectReason::Filter => "filter",
        RejectReason::RateLimited => "rate_limited",
        RejectReason::Duplicate => "duplicate",
        RejectReason::MarketClosed => "market_closed",
        RejectReason::Auth => "auth",
        RejectReason::Gateway => "gateway",
        RejectReason::Other(_) => "other",
    }
}

/// Pair state.
pub fn pair_state(s: PairState) -> &'static str {
    match s {
        PairState::Opening => "opening",
        PairState::Hedged => "hedged",
        PairState::OneLeg => "one_leg",
        PairState::Closing => "closing",
        PairState::Closed => "closed",
    }
}

/// Strategy direction.
pub fn direction(d: Direction) -> &'static str {
    match d {
        Direction::SellPremium => "sell_premium",
        Direction::BuyDiscount => "buy_discount",
    }
}

/// Why trading halted.
pub fn halt_reason(r: HaltReason) -> &'static str {
    match r {
        HaltReason::Operator => "operator",
        HaltReason::OrderRate => "order_rate",
        HaltReason::OrphanHard => "orphan_hard",
        HaltReason::Flatten => "flatten",
        HaltReason::Shutdown => "shutdown",
        HaltReason::Mismatch => "mismatch",
    }
}

/// Every active halt reason, in declaration order, joined by `sep` (`order_rate+orphan_hard`).
pub fn halt_reasons(set: HaltSet, sep: &str) -> String {
    set.iter().map(halt_reason).collect::<Vec<_>>().join(sep)
}

/// Trading state without its reason.
pub fn trading_state(s: TradingState) -> &'static str {
    match s {
        TradingState::Reconciling => "reconciling",
        TradingState::Active => "active",
        TradingState::Halted(_) => "halted",
    }
}

/// FX source.
pub fn fx_source(s: FxSource) -> &'static str {
    match s {
        FxSource::UpbitUsdt => "upbit_usdt",
        FxSource::Official => "official",
    }
}

/// A premium in basis points, one decimal; "unknown" when not a number (a pair restored
/// from a journal that holds its orders but no premium, e.g. after a crash mid-entry).
pub fn bps(v: f64) -> String {
    if v.is_finite() { format!("{v:.1} bps") } else { "unknown bps".to_owned() }
}

#[cfg(test)]
mod bps_tests {
    #[test]
    fn bps_prints_one_decimal_or_unknown() {
        assert_eq!(super::bps(251.26), "251.3 bps");
        assert_eq!(super::bps(f64::NAN), "unknown bps");
    }
}
