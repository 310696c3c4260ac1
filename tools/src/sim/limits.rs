//! Request budgets: Upbit's per-second groups (`Remaining-Req`) and Binance's per-minute
//! IP weight and per-account order counts, as sliding windows.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Sliding-window counters.
#[derive(Debug, Default)]
pub struct RateState {
    upbit: HashMap<(Option<usize>, &'static str), VecDeque<Instant>>,
    weight: VecDeque<(Instant, u32)>,
    orders: HashMap<usize, VecDeque<Instant>>,
}

fn prune<T>(q: &mut VecDeque<T>, now: Instant, window: Duration, at: impl Fn(&T) -> Instant) {
    while q.front().is_some_and(|x| now.duration_since(at(x)) >= window) {
        q.pop_front();
    }
}

impl RateState {
    /// Takes one request from an Upbit group (`key` = account, `None` = IP); returns the
    /// requests left in the current second, or `Err` when the group is exhausted.
    pub fn upbit_take(
        &mut self,
        key: Option<usize>,
        group: &'static str,
        limit: u32,
        now: Instant,
    ) -> Option<u32> {
        let q = self.upbit.entry((key, group)).or_default();
        prune(q, now, Duration::from_secs(1), |t| *t);
        if q.len() as u32 >= limit {
            return None;
        }
        q.push_back(now);
        Some(limit - q.len() as u32)
    }

    /// Adds request weight; returns the weight used in the last minute, or the seconds to
    /// wait (`Retry-After`) when over the limit.
    pub fn binance_weight(&mut self, w: u32, limit: u32, now: Instant) -> Result<u32, u64> {
        prune(&mut self.weight, now, Duration::from_secs(60), |x| x.0);
        let used: u32 = self.weight.iter().map(|x| x.1).sum();
        if used + w > limit {
            let oldest = self.weight.front().map(|x| x.0).unwrap_or(now);
            let wait = Duration::from_secs(60).saturating_sub(now.duration_since(oldest));
            return Err(wait.as_secs().max(1));
        }
        self.weight.push_back((now, w));
        Ok(used + w)
    }

    /// Weight used in the last minute.
    pub fn binance_used(&mut self, now: Instant) -> u32 {
        prune(&mut self.weight, now, Duration::from_secs(60), |x| x.0);
        self.weight.iter().map(|x| x.1).sum()
    }

    /// Counts an order for an account; returns (last 10 s, last minute) or the seconds to
    /// wait when a limit is reached.
    pub fn binance_order(
        &mut self,
        account: usize,
        per_10s: u32,
        per_min: u32,
        now: Instant,
    ) -> Result<(u32, u32), u64> {
        let q = self.orders.entry(account).or_default();
        prune(q, now, Duration::from_secs(60), |t| *t);
        let in10 =
            q.iter().filter(|t| now.duration_since(**t) < Duration::from_secs(10)).count() as u32;
        if in10 >= per_10s {
            return Err(10);
        }
        if q.len() as u32 >= per_min {
            return Err(60);
        }
        q.push_back(now);
        Ok((in10 + 1, q.len() as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_slide() {
        let mut r = RateState::default();
        let t0 = Instant::now();
        for i in 0..8 {
            assert_eq!(r.upbit_take(Some(0), "order", 8, t0), Some(7 - i));
        }
        assert!(r.upbit_take(Some(0), "order", 8, t0).is_none());
        assert!(r.upbit_take(Some(1), "order", 8, t0).is_some(), "per account");
        assert!(r.upbit_take(Some(0), "order", 8, t0 + Duration::from_millis(1_001)).is_some());
        assert_eq!(r.binance_weight(20, 30, t0), Ok(20));
        assert!(r.binance_weight(20, 30, t0).is_err());
        assert_eq!(r.binance_weight(20, 30, t0 + Duration::from_secs(61)), Ok(20));
    }
}
