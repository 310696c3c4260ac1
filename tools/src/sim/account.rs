//! Per-account balances (Upbit spot) and wallet and positions (Binance USDT-M).

use std::collections::BTreeMap;

use super::book::{Px, Qt, notional};

/// One Upbit currency balance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balance {
    /// Free.
    pub free: i64,
    /// Locked in orders.
    pub locked: i64,
    /// Average buy price in KRW.
    pub avg_buy: i64,
}

/// An Upbit account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpbitAccount {
    /// Balances by currency (`KRW`, `BTC`, ...).
    pub balances: BTreeMap<String, Balance>,
}

impl UpbitAccount {
    /// Balance of a currency (zero when absent).
    pub fn get(&self, cur: &str) -> Balance {
        self.balances.get(cur).copied().unwrap_or_default()
    }

    /// Mutable balance, created when absent.
    pub fn get_mut(&mut self, cur: &str) -> &mut Balance {
        self.balances.entry(cur.to_owned()).or_default()
    }

    /// Moves `amount` from free to locked; false (and no change) when short.
    pub fn lock(&mut self, cur: &str, amount: i64) -> bool {
        let b = self.get_mut(cur);
        if b.free < amount {
            return false;
        }
        b.free -= amount;
        b.locked += amount;
        true
    }

    /// Moves `amount` back from locked to free.
    pub fn unlock(&mut self, cur: &str, amount: i64) {
        let b = self.get_mut(cur);
        let a = amount.min(b.locked).max(0);
        b.locked -= a;
        b.free += a;
    }

    /// Records a coin bought at `px` (for the average buy price).
    pub fn add_coin(&mut self, cur: &str, qty: Qt, px: Px) {
        let b = self.get_mut(cur);
        let total = b.free + b.locked;
        let new_total = total + qty;
        if new_total > 0 {
            let cost = notional(b.avg_buy, total) + notional(px, qty);
            b.avg_buy = ((cost as i128 * 100_000_000) / new_total as i128) as i64;
        }
        b.free += qty;
    }
}

/// One Binance one-way (`BOTH`) position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// Signed quantity (long > 0).
    pub qty: Qt,
    /// Average entry price.
    pub entry: Px,
}

/// A Binance USDT-M account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BinanceAccount {
    /// Wallet balance in USDT (fixed-point).
    pub wallet: i64,
    /// Positions by symbol.
    pub positions: BTreeMap<String, Position>,
}

impl BinanceAccount {
    /// Applies a fill; returns the realised PnL (USDT). Fees are charged separately.
    pub fn fill(&mut self, sym: &str, buy: bool, px: Px, qty: Qt) -> i64 {
        let p = self.positions.entry(sym.to_owned()).or_default();
        let signed = if buy { qty } else { -qty };
        let mut realised = 0;
        if p.qty == 0 || (p.qty > 0) == (signed > 0) {
            let new_qty = p.qty + signed;
            let cost = notional(p.entry, p.qty.abs()) + notional(px, qty);
            p.entry = ((cost as i128 * 100_000_000) / new_qty.abs() as i128) as i64;
            p.qty = new_qty;
        } else {
            let closing = qty.min(p.qty.abs());
            let per_unit = if p.qty > 0 { px - p.entry } else { p.entry - px };
            realised = notional(per_unit, closing);
            let rest = qty - closing;
            p.qty += if buy { closing } else { -closing };
            if p.qty == 0 {
                p.entry = 0;
            }
            if rest > 0 {
                p.qty = if buy { rest } else { -rest };
                p.entry = px;
            }
        }
        self.wallet += realised;
        realised
    }

    /// Unrealised PnL of a position at `mark`.
    pub fn unrealised(&self, sym: &str, mark: Px) -> i64 {
        self.positions.get(sym).map(|p| notional(mark - p.entry, p.qty)).unwrap_or(0)
    }

    /// Signed position quantity.
    pub fn position(&self, sym: &str) -> Qt {
        self.positions.get(sym).map(|p| p.qty).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 100_000_000;

    #[test]
    fn positions_average_and_realise() {
        let mut a = BinanceAccount { wallet: 1_000 * S, ..Default::default() };
        a.fill("BTCUSDT", true, 100 * S, S);
        a.fill("BTCUSDT", true, 110 * S, S);
        assert_eq!(a.positions["BTCUSDT"], Position { qty: 2 * S, entry: 105 * S });
        let r = a.fill("BTCUSDT", false, 120 * S, 3 * S);
        assert_eq!(r, 30 * S);
        assert_eq!(a.positions["BTCUSDT"], Position { qty: -S, entry: 120 * S });
        assert_eq!(a.wallet, 1_030 * S);
        assert_eq!(a.unrealised("BTCUSDT", 110 * S), 10 * S);
    }

    #[test]
    fn upbit_locks_and_averages() {
        let mut a = UpbitAccount::default();
        a.get_mut("KRW").free = 10_000 * S;
        assert!(a.lock("KRW", 6_000 * S));
        assert!(!a.lock("KRW", 6_000 * S));
        a.unlock("KRW", 1_000 * S);
        assert_eq!(a.get("KRW"), Balance { free: 5_000 * S, locked: 5_000 * S, avg_buy: 0 });
        a.add_coin("BTC", S, 100 * S);
        a.add_coin("BTC", S, 200 * S);
        assert_eq!(a.get("BTC").avg_buy, 150 * S);
    }
}
