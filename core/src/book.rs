//! A fixed-capacity L2 order book with the venues' sequence rules.
//!
//! Each side is a sorted array with the *best level at the end*: almost every update
//! touches the top of the book, so inserts and removals there move few elements, and the
//! best price is one load. Capacity is fixed at construction; the book never allocates
//! afterwards (when a side is full, the level farthest from the top is dropped, which
//! never matters for an executable price).
//!
//! Sequence rules (docs/exchange-protocols.md §3.5 and §5):
//! - a snapshot (Upbit message, or Binance REST depth with `lastUpdateId = L`) replaces
//!   the book;
//! - Binance futures: after a snapshot, diffs with `u < L` are dropped, the first applied
//!   diff must have `U <= L <= u`, and every later diff must have `pu == previous u`;
//! - Binance spot: drop `u <= L`, the first applied has `U <= L + 1 <= u`, later ones
//!   `U == previous u + 1`;
//! - anything else is a gap: the book is marked stale and must be resynced from a new
//!   snapshot. A diff whose `u` is not newer than the last applied one carries nothing
//!   new (a duplicate) and is dropped without declaring a gap.

use crate::event::{BookSnapshot, DepthDiff, Level, Side};
use crate::units::{Nanos, Price, Qty, Quote};

/// One side of the book.
#[derive(Debug, Clone)]
pub struct BookSide {
    /// Sorted so the best level is last: ascending prices for bids, descending for asks.
    levels: Vec<Level>,
    cap: usize,
    side: Side,
}

/// Result of walking one side of the book for a quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Walk {
    /// Quantity the visible levels can fill (≤ the asked quantity).
    pub filled: Qty,
    /// Quote amount for `filled` (Σ price × qty).
    pub notional: Quote,
    /// Price of the last level touched.
    pub worst: Price,
}

impl Walk {
    /// Volume-weighted average price of the walk, as `f64` (display and ratios only).
    pub fn vwap_f64(&self) -> f64 {
        if self.filled.0 == 0 { 0.0 } else { self.notional.to_f64() / self.filled.to_f64() }
    }
}

impl BookSide {
    /// An empty side holding at most `cap` levels.
    pub fn new(side: Side, cap: usize) -> Self {
        Self { levels: Vec::with_capacity(cap.max(1)), cap: cap.max(1), side }
    }

    /// Number of levels.
    #[inline]
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// True when there are no levels.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Capacity fixed at construction.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Best level.
    #[inline]
    pub fn best(&self) -> Option<Level> {
        self.levels.last().copied()
    }

    /// Levels from best to worst.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Level> + ExactSizeIterator + '_ {
        self.levels.iter().rev()
    }

    /// True if price `a` is better (closer to the top) than `b` on this side.
    #[inline]
    fn better(&self, a: Price, b: Price) -> bool {
        match self.side {
            Side::Buy => a > b,
            Side::Sell => a < b,
        }
    }

    /// Index where `px` is or would be inserted.
    #[inline]
    fn search(&self, px: Price) -> Result<usize, usize> {
        // Scan the top few levels first: most updates are there.
        let n = self.levels.len();
        let scan = n.min(8);
        for k in 0..scan {
            let i = n - 1 - k;
            let l = self.levels[i].px;
            if l == px {
                return Ok(i);
            }
            if self.better(px, l) {
                return Err(i + 1);
            }
        }
        if scan == n {
            return Err(0);
        }
        let head = &self.levels[..n - scan];
        match self.side {
            Side::Buy => head.binary_search_by(|l| l.px.cmp(&px)),
            Side::Sell => head.binary_search_by(|l| px.cmp(&l.px)),
        }
    }

    /// Sets the absolute quantity at a price (zero removes the level).
    pub fn set(&mut self, px: Price, qty: Qty) {
        match self.search(px) {
            Ok(i) => {
                if qty.0 <= 0 {
                    self.levels.remove(i);
                } else {
                    self.levels[i].qty = qty;
                }
            }
            Err(i) => {
                if qty.0 <= 0 {
                    return; // removing an absent level is normal (Binance rule 9)
                }
                if self.levels.len() >= self.cap {
                    if i == 0 {
                        return; // worse than everything we keep
                    }
                    self.levels.remove(0);
                    self.levels.insert(i - 1, Level::new(px, qty));
                } else {
                    self.levels.insert(i, Level::new(px, qty));
                }
            }
        }
    }

    /// Removes every level at `px` or better (used to uncross after the other side moved).
    fn remove_through(&mut self, px: Price) -> usize {
        let mut n = 0;
        while let Some(b) = self.levels.last() {
            let crosses = match self.side {
                Side::Buy => b.px >= px,
                Side::Sell => b.px <= px,
            };
            if !crosses {
                break;
            }
            self.levels.pop();
            n += 1;
        }
        n
    }

    /// Replaces the side with `levels` given best first. Zero-price or zero-size levels
    /// are skipped (Upbit pads thin books with zeros).
    pub fn replace(&mut self, best_first: &[Level]) {
        self.levels.clear();
        for l in best_first {
            if l.px.0 > 0 && l.qty.0 > 0 {
                self.set(l.px, l.qty);
            }
        }
    }

    /// Walks from the best level to fill `qty`.
    pub fn walk(&self, qty: Qty) -> Walk {
        let mut w = Walk::default();
        let mut left = qty.0;
        for l in self.levels.iter().rev() {
            if left <= 0 {
                break;
            }
            let take = left.min(l.qty.0);
            let n = crate::units::mul_div(l.px.0, take, crate::units::SCALE).unwrap_or(i64::MAX);
            w.notional = Quote(w.notional.0.saturating_add(n));
            w.filled = Qty(w.filled.0 + take);
            w.worst = l.px;
            left -= take;
        }
        w
    }

    /// Quantity available at prices no worse than `limit`.
    pub fn depth_within(&self, limit: Price) -> Qty {
        let mut q = 0i64;
        for l in self.levels.iter().rev() {
            if self.better(l.px, limit) || l.px == limit {
                q = q.saturating_add(l.qty.0);
            } else {
                break;
            }
        }
        Qty(q)
    }
}

/// Which sequence rule a book follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqRule {
    /// No sequence numbers: every message is a whole book (Upbit).
    Snapshots,
    /// Binance USDT-M futures: `pu == previous u`.
    Futures,
    /// Binance spot: `U == previous u + 1`.
    Spot,
}

/// Whether the book may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BookState {
    /// Never synced, or a gap was found: waiting for a snapshot.
    Stale,
    /// Consistent with the venue.
    Synced,
}

/// What a diff did to the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiffOutcome {
    /// Applied in sequence.
    Applied,
    /// Older than the book (before the snapshot, or a duplicate); ignored.
    Dropped,
    /// The book is not synced; the diff was ignored (the gateway buffers until a
    /// snapshot arrives).
    NotSynced,
    /// A sequence gap: the book is now stale and needs a new snapshot.
    Gap,
}

/// A two-sided L2 book for one instrument.
#[derive(Debug, Clone)]
pub struct Book {
    /// Bid side.
    pub bids: BookSide,
    /// Ask side.
    pub asks: BookSide,
    rule: SeqRule,
    state: BookState,
    last_id: u64,
    awaiting_first: bool,
    /// Engine time of the last update applied.
    pub updated_at: Nanos,
    /// Exchange time of the last update applied.
    pub exch_ts: Nanos,
    /// Gaps detected since start.
    pub gaps: u64,
    /// Levels removed because the other side moved through them.
    pub uncrossed: u64,
}

impl Book {
    /// An empty, stale book holding `depth` levels per side.
    pub fn new(rule: SeqRule, depth: usize) -> Self {
        Self {
            bids: BookSide::new(Side::Buy, depth),
            asks: BookSide::new(Side::Sell, depth),
            rule,
            state: BookState::Stale,
            last_id: 0,
            awaiting_first: false,
            updated_at: Nanos(0),
            exch_ts: Nanos(0),
            gaps: 0,
            uncrossed: 0,
        }
    }

    /// Current state.
    #[inline]
    pub fn state(&self) -> BookState {
        self.state
    }

    /// Last applied update id (`u`), or the snapshot's `lastUpdateId`.
    #[inline]
    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    /// The sequence rule.
    #[inline]
    pub fn rule(&self) -> SeqRule {
        self.rule
    }

    /// Marks the book stale (disconnect, or a gap found elsewhere).
    pub fn mark_stale(&mut self) {
        self.state = BookState::Stale;
    }

    /// True when synced and updated within `max_age` of `now`.
    #[inline]
    pub fn is_fresh(&self, now: Nanos, max_age: Nanos) -> bool {
        self.state == BookState::Synced
            && !self.bids.is_empty()
            && !self.asks.is_empty()
            && now.since(self.updated_at) <= max_age
    }

    /// Replaces the whole book.
    pub fn apply_snapshot(&mut self, s: &BookSnapshot<'_>, now: Nanos) {
        self.bids.replace(s.bids);
        self.asks.replace(s.asks);
        self.last_id = s.last_update_id;
        self.awaiting_first = self.rule != SeqRule::Snapshots;
        self.state = BookState::Synced;
        self.updated_at = now;
        self.exch_ts = s.exch_ts;
    }

    /// Applies a diff under the book's sequence rule.
    pub fn apply_diff(&mut self, d: &DepthDiff<'_>, now: Nanos) -> DiffOutcome {
        if self.state != BookState::Synced || self.rule == SeqRule::Snapshots {
            return DiffOutcome::NotSynced;
        }
        let l = self.last_id;
        let in_sequence = if self.awaiting_first {
            let (drop, bridges) = match self.rule {
                SeqRule::Futures => (d.last_id < l, d.first_id <= l && l <= d.last_id),
                _ => (d.last_id <= l, d.first_id <= l + 1 && l < d.last_id),
            };
            if drop {
                return DiffOutcome::Dropped;
            }
            bridges
        } else {
            if d.last_id <= l {
                return DiffOutcome::Dropped;
            }
            match (self.rule, d.prev_last_id) {
                (SeqRule::Futures, Some(pu)) => pu == l,
                (SeqRule::Futures, None) => false,
                _ => d.first_id == l + 1,
            }
        };
        if !in_sequence {
            self.state = BookState::Stale;
            self.gaps += 1;
            return DiffOutcome::Gap;
        }
        for lv in d.bids {
            self.set(Side::Buy, lv.px, lv.qty);
        }
        for lv in d.asks {
            self.set(Side::Sell, lv.px, lv.qty);
        }
        self.awaiting_first = false;
        self.last_id = d.last_id;
        self.updated_at = now;
        self.exch_ts = d.exch_ts;
        DiffOutcome::Applied
    }

    /// Sets one level; a positive level at or through the other side's best removes the
    /// crossed levels there (the newer information wins).
    pub fn set(&mut self, side: Side, px: Price, qty: Qty) {
        if px.0 <= 0 {
            return;
        }
        match side {
            Side::Buy => {
                if qty.0 > 0 {
                    self.uncrossed += self.asks.remove_through(px) as u64;
                }
                self.bids.set(px, qty);
            }
            Side::Sell => {
                if qty.0 > 0 {
                    self.uncrossed += self.bids.remove_through(px) as u64;
                }
                self.asks.set(px, qty);
            }
        }
    }

    /// Best bid.
    #[inline]
    pub fn best_bid(&self) -> Option<Level> {
        self.bids.best()
    }

    /// Best ask.
    #[inline]
    pub fn best_ask(&self) -> Option<Level> {
        self.asks.best()
    }

    /// Mid price as `f64`, if both sides exist.
    pub fn mid_f64(&self) -> Option<f64> {
        Some((self.best_bid()?.px.to_f64() + self.best_ask()?.px.to_f64()) / 2.0)
    }

    /// The side you hit when you trade `side` (buying walks the asks).
    #[inline]
    pub fn side_for_taker(&self, side: Side) -> &BookSide {
        match side {
            Side::Buy => &self.asks,
            Side::Sell => &self.bids,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instrument::InstrumentId;
    use crate::units::SCALE;

    fn lv(px: i64, q: i64) -> Level {
        Level::new(Price(px), Qty(q))
    }

    fn diff<'a>(u0: u64, u1: u64, pu: u64, b: &'a [Level], a: &'a [Level]) -> DepthDiff<'a> {
        DepthDiff {
            inst: InstrumentId(0),
            exch_ts: Nanos(0),
            first_id: u0,
            last_id: u1,
            prev_last_id: Some(pu),
            bids: b,
            asks: a,
        }
    }

    fn snap<'a>(l: u64, b: &'a [Level], a: &'a [Level]) -> BookSnapshot<'a> {
        BookSnapshot {
            inst: InstrumentId(0),
            exch_ts: Nanos(0),
            last_update_id: l,
            bids: b,
            asks: a,
        }
    }

    #[test]
    fn sides_keep_best_last_and_remove_zero() {
        let mut s = BookSide::new(Side::Buy, 4);
        for (p, q) in [(10, 1), (12, 1), (11, 1), (9, 1)] {
            s.set(Price(p), Qty(q));
        }
        assert_eq!(s.best(), Some(lv(12, 1)));
        let v: Vec<_> = s.iter().map(|l| l.px.0).collect();
        assert_eq!(v, [12, 11, 10, 9]);
        // Full: a worse level is ignored, a better one evicts the worst.
        s.set(Price(8), Qty(1));
        assert_eq!(s.len(), 4);
        s.set(Price(13), Qty(1));
        let v: Vec<_> = s.iter().map(|l| l.px.0).collect();
        assert_eq!(v, [13, 12, 11, 10]);
        s.set(Price(12), Qty(0));
        s.set(Price(99), Qty(0));
        let v: Vec<_> = s.iter().map(|l| l.px.0).collect();
        assert_eq!(v, [13, 11, 10]);
        assert_eq!(s.capacity(), 4);
    }

    #[test]
    fn walk_gives_vwap_over_levels() {
        let mut s = BookSide::new(Side::Sell, 8);
        s.set(Price(100 * SCALE), Qty(SCALE));
        s.set(Price(101 * SCALE), Qty(SCALE));
        let w = s.walk(Qty(SCALE + SCALE / 2));
        assert_eq!(w.filled, Qty(SCALE + SCALE / 2));
        assert_eq!(w.notional, Quote(100 * SCALE + 101 * SCALE / 2));
        assert_eq!(w.worst, Price(101 * SCALE));
        let short = s.walk(Qty(5 * SCALE));
        assert_eq!(short.filled, Qty(2 * SCALE));
        assert_eq!(s.depth_within(Price(100 * SCALE)), Qty(SCALE));
        assert_eq!(s.depth_within(Price(101 * SCALE)), Qty(2 * SCALE));
    }

    #[test]
    fn futures_sync_rule() {
        let mut b = Book::new(SeqRule::Futures, 16);
        assert_eq!(b.apply_diff(&diff(1, 2, 0, &[], &[]), Nanos(1)), DiffOutcome::NotSynced);
        b.apply_snapshot(&snap(100, &[lv(10, 1)], &[lv(11, 1)]), Nanos(1));
        // u < L: dropped.
        assert_eq!(b.apply_diff(&diff(90, 99, 80, &[], &[]), Nanos(2)), DiffOutcome::Dropped);
        // first must bracket L.
        assert_eq!(
            b.apply_diff(&diff(95, 105, 94, &[lv(10, 5)], &[]), Nanos(3)),
            DiffOutcome::Applied
        );
        assert_eq!(b.best_bid(), Some(lv(10, 5)));
        // pu continuity; U is not pu+1 on futures.
        assert_eq!(b.apply_diff(&diff(110, 120, 105, &[], &[]), Nanos(4)), DiffOutcome::Applied);
        // duplicate of the last: dropped, not a gap.
        assert_eq!(b.apply_diff(&diff(110, 120, 105, &[], &[]), Nanos(5)), DiffOutcome::Dropped);
        // gap.
        assert_eq!(b.apply_diff(&diff(130, 140, 125, &[], &[]), Nanos(6)), DiffOutcome::Gap);
        assert_eq!(b.state(), BookState::Stale);
        assert_eq!(b.gaps, 1);
        assert_eq!(b.apply_diff(&diff(141, 150, 140, &[], &[]), Nanos(7)), DiffOutcome::NotSynced);
    }

    #[test]
    fn snapshot_too_old_is_a_gap() {
        let mut b = Book::new(SeqRule::Futures, 16);
        b.apply_snapshot(&snap(100, &[lv(10, 1)], &[lv(11, 1)]), Nanos(1));
        assert_eq!(b.apply_diff(&diff(101, 110, 100, &[], &[]), Nanos(2)), DiffOutcome::Gap);
    }

    #[test]
    fn spot_sync_rule() {
        let mut b = Book::new(SeqRule::Spot, 16);
        b.apply_snapshot(&snap(100, &[lv(10, 1)], &[lv(11, 1)]), Nanos(1));
        let mut d = diff(90, 100, 0, &[], &[]);
        d.prev_last_id = None;
        assert_eq!(b.apply_diff(&d, Nanos(2)), DiffOutcome::Dropped);
        d.first_id = 99;
        d.last_id = 103;
        assert_eq!(b.apply_diff(&d, Nanos(2)), DiffOutcome::Applied);
        d.first_id = 104;
        d.last_id = 106;
        assert_eq!(b.apply_diff(&d, Nanos(3)), DiffOutcome::Applied);
        d.first_id = 108;
        d.last_id = 109;
        assert_eq!(b.apply_diff(&d, Nanos(4)), DiffOutcome::Gap);
    }

    #[test]
    fn crossing_level_removes_the_other_side() {
        let mut b = Book::new(SeqRule::Futures, 16);
        b.apply_snapshot(&snap(1, &[lv(10, 1)], &[lv(11, 1), lv(12, 1)]), Nanos(1));
        b.set(Side::Buy, Price(11), Qty(3));
        assert_eq!(b.best_ask(), Some(lv(12, 1)));
        assert_eq!(b.best_bid(), Some(lv(11, 3)));
        assert_eq!(b.uncrossed, 1);
    }

    #[test]
    fn age_makes_book_unusable() {
        let mut b = Book::new(SeqRule::Snapshots, 30);
        let max = Nanos::from_ms(500);
        assert!(!b.is_fresh(Nanos(0), max));
        b.apply_snapshot(&snap(0, &[lv(10, 1), lv(0, 0)], &[lv(11, 1)]), Nanos::from_ms(1_000));
        assert_eq!(b.bids.len(), 1, "zero-price padding skipped");
        assert!(b.is_fresh(Nanos::from_ms(1_500), max));
        assert!(!b.is_fresh(Nanos::from_ms(1_501), max));
    }
}
