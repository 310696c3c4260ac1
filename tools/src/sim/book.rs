//! The simulator's own order book for one market: levels, the update-id sequence and
//! the diffs that the depth stream publishes.
//!
//! Two copies of the levels are kept: `current` (what orders match against) and
//! `published` (what the depth stream and the REST snapshot have told clients). A depth
//! event is the difference between the two, so the REST snapshot (taken from
//! `published`, with `lastUpdateId` = the last published `u`) is always consistent with
//! the diff stream, which is the property Binance's sync procedure relies on.

use std::collections::BTreeMap;

use super::rng::Rng;

/// Fixed-point price (1e-8).
pub type Px = i64;
/// Fixed-point quantity (1e-8).
pub type Qt = i64;
/// Price levels, best first.
pub type Levels = Vec<(Px, Qt)>;

/// Which side of the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BookSide {
    /// Bids.
    Bid,
    /// Asks.
    Ask,
}

/// One diff-depth event (Binance `depthUpdate` payload fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepthDiff {
    /// First update id in the event (`U`).
    pub first_id: u64,
    /// Last update id (`u`).
    pub last_id: u64,
    /// Last id of the previous event (`pu`).
    pub prev_id: u64,
    /// Changed bids (absolute qty, 0 = removed), best first.
    pub bids: Vec<(Px, Qt)>,
    /// Changed asks, best first.
    pub asks: Vec<(Px, Qt)>,
}

/// One market's book.
#[derive(Clone, Debug)]
pub struct SimBook {
    bids: BTreeMap<Px, Qt>,
    asks: BTreeMap<Px, Qt>,
    pub_bids: BTreeMap<Px, Qt>,
    pub_asks: BTreeMap<Px, Qt>,
    cur_id: u64,
    first_unpublished: Option<u64>,
    last_published: u64,
    ids: Rng,
}

impl SimBook {
    /// An empty book whose update ids start near `first_id`.
    pub fn new(first_id: u64, seed: u64) -> Self {
        Self {
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            pub_bids: BTreeMap::new(),
            pub_asks: BTreeMap::new(),
            cur_id: first_id,
            first_unpublished: None,
            last_published: first_id,
            ids: Rng::new(seed),
        }
    }

    fn side_mut(&mut self, s: BookSide) -> &mut BTreeMap<Px, Qt> {
        match s {
            BookSide::Bid => &mut self.bids,
            BookSide::Ask => &mut self.asks,
        }
    }

    /// Levels of one side, best first.
    pub fn levels(&self, s: BookSide) -> Vec<(Px, Qt)> {
        match s {
            BookSide::Bid => self.bids.iter().rev().map(|(p, q)| (*p, *q)).collect(),
            BookSide::Ask => self.asks.iter().map(|(p, q)| (*p, *q)).collect(),
        }
    }

    /// Quantity at a price (0 when absent).
    pub fn qty_at(&self, s: BookSide, px: Px) -> Qt {
        match s {
            BookSide::Bid => self.bids.get(&px).copied().unwrap_or(0),
            BookSide::Ask => self.asks.get(&px).copied().unwrap_or(0),
        }
    }

    /// Best bid.
    pub fn best_bid(&self) -> Option<(Px, Qt)> {
        self.bids.iter().next_back().map(|(p, q)| (*p, *q))
    }

    /// Best ask.
    pub fn best_ask(&self) -> Option<(Px, Qt)> {
        self.asks.iter().next().map(|(p, q)| (*p, *q))
    }

    /// Sets a level (0 removes) and allocates an update id for the change.
    pub fn set(&mut self, s: BookSide, px: Px, qty: Qt) -> u64 {
        if qty > 0 {
            self.side_mut(s).insert(px, qty);
        } else {
            self.side_mut(s).remove(&px);
        }
        self.next_id()
    }

    fn next_id(&mut self) -> u64 {
        // Several venue-wide updates share the id space, so ids jump.
        self.cur_id += self.ids.range(1, 9);
        if self.first_unpublished.is_none() {
            self.first_unpublished = Some(self.cur_id);
        }
        self.cur_id
    }

    /// The latest update id (for `bookTicker.u`).
    pub fn current_id(&self) -> u64 {
        self.cur_id
    }

    /// Last published `u` (the REST snapshot's `lastUpdateId`).
    pub fn last_published_id(&self) -> u64 {
        self.last_published
    }

    /// Levels of every side within `[lo, hi]` of price.
    pub fn prices(&self, s: BookSide) -> Vec<Px> {
        match s {
            BookSide::Bid => self.bids.keys().copied().collect(),
            BookSide::Ask => self.asks.keys().copied().collect(),
        }
    }

    /// Takes liquidity as a taker on `taker_side`'s opposite book: buys walk the asks.
    /// Stops at `limit` (inclusive), at `max_qty`, and when `quote_budget` (Σ px·qty/1e8)
    /// would be exceeded; quantities are multiples of `lot`. Returns the fills.
    pub fn take(
        &mut self,
        buy: bool,
        limit: Option<Px>,
        max_qty: Qt,
        quote_budget: Option<i64>,
        lot: Qt,
    ) -> Vec<(Px, Qt)> {
        let mut fills = Vec::new();
        let mut left = max_qty;
        let mut budget = quote_budget;
        let lot = lot.max(1);
        loop {
            if left <= 0 {
                break;
            }
            let lvl = if buy { self.best_ask() } else { self.best_bid() };
            let Some((px, avail)) = lvl else { break };
            if let Some(l) = limit
                && ((buy && px > l) || (!buy && px < l))
            {
                break;
            }
            let mut q = avail.min(left);
            if let Some(b) = budget {
                let afford = ((b as i128 * 100_000_000) / px as i128) as i64;
                q = q.min(afford);
            }
            q -= q % lot;
            if q <= 0 {
                break;
            }
            let side = if buy { BookSide::Ask } else { BookSide::Bid };
            self.set(side, px, avail - q);
            left -= q;
            if let Some(b) = budget.as_mut() {
                *b -= notional(px, q);
            }
            fills.push((px, q));
        }
        fills
    }

    /// Quantity a taker could get up to `limit` (for FOK).
    pub fn available(&self, buy: bool, limit: Option<Px>) -> Qt {
        let it: Box<dyn Iterator<Item = (&Px, &Qt)>> =
            if buy { Box::new(self.asks.iter()) } else { Box::new(self.bids.iter().rev()) };
        let mut sum = 0;
        for (px, q) in it {
            if let Some(l) = limit
                && ((buy && *px > l) || (!buy && *px < l))
            {
                break;
            }
            sum += q;
        }
        sum
    }

    /// The changes since the last publication as a depth event, or `None` when nothing
    /// changed. Marks them published.
    pub fn publish_diff(&mut self) -> Option<DepthDiff> {
        let first = self.first_unpublished.take()?;
        let bids = diff_side(&self.pub_bids, &self.bids, true);
        let asks = diff_side(&self.pub_asks, &self.asks, false);
        self.pub_bids.clone_from(&self.bids);
        self.pub_asks.clone_from(&self.asks);
        let prev = self.last_published;
        self.last_published = self.cur_id;
        if bids.is_empty() && asks.is_empty() {
            // Changes that cancelled out still consumed ids: the chain stays consistent
            // because the next event's `pu` is this `u`.
            return Some(DepthDiff {
                first_id: first,
                last_id: self.cur_id,
                prev_id: prev,
                bids,
                asks,
            });
        }
        Some(DepthDiff { first_id: first, last_id: self.cur_id, prev_id: prev, bids, asks })
    }

    /// The published book (REST snapshot), best first, at most `limit` levels a side.
    pub fn published(&self, limit: usize) -> (u64, Levels, Levels) {
        let bids = self.pub_bids.iter().rev().take(limit).map(|(p, q)| (*p, *q)).collect();
        let asks = self.pub_asks.iter().take(limit).map(|(p, q)| (*p, *q)).collect();
        (self.last_published, bids, asks)
    }

    /// Top `n` levels a side of the current book, best first.
    pub fn top(&self, n: usize) -> (Levels, Levels) {
        let bids = self.bids.iter().rev().take(n).map(|(p, q)| (*p, *q)).collect();
        let asks = self.asks.iter().take(n).map(|(p, q)| (*p, *q)).collect();
        (bids, asks)
    }

    /// Replaces the whole book (replayed snapshots) and publishes it as of `id`.
    pub fn reset(&mut self, id: u64, bids: &[(Px, Qt)], asks: &[(Px, Qt)]) {
        self.bids = bids.iter().filter(|l| l.1 > 0).copied().collect();
        self.asks = asks.iter().filter(|l| l.1 > 0).copied().collect();
        self.pub_bids.clone_from(&self.bids);
        self.pub_asks.clone_from(&self.asks);
        self.cur_id = id;
        self.last_published = id;
        self.first_unpublished = None;
    }

    /// Applies a replayed diff to both copies, keeping the recorded ids.
    pub fn apply_recorded(&mut self, d: &DepthDiff) {
        for &(p, q) in &d.bids {
            upsert(&mut self.bids, p, q);
            upsert(&mut self.pub_bids, p, q);
        }
        for &(p, q) in &d.asks {
            upsert(&mut self.asks, p, q);
            upsert(&mut self.pub_asks, p, q);
        }
        self.cur_id = d.last_id;
        self.last_published = d.last_id;
        self.first_unpublished = None;
    }
}

fn upsert(m: &mut BTreeMap<Px, Qt>, p: Px, q: Qt) {
    if q > 0 {
        m.insert(p, q);
    } else {
        m.remove(&p);
    }
}

/// Notional `px × qty` in quote units (fixed-point), truncated.
pub fn notional(px: Px, qty: Qt) -> i64 {
    ((px as i128 * qty as i128) / 100_000_000) as i64
}

fn diff_side(old: &BTreeMap<Px, Qt>, new: &BTreeMap<Px, Qt>, bids: bool) -> Vec<(Px, Qt)> {
    let mut out: Vec<(Px, Qt)> = Vec::new();
    for (p, q) in new {
        if old.get(p) != Some(q) {
            out.push((*p, *q));
        }
    }
    for p in old.keys() {
        if !new.contains_key(p) {
            out.push((*p, 0));
        }
    }
    if bids {
        out.sort_by_key(|l| std::cmp::Reverse(l.0));
    } else {
        out.sort_by_key(|l| l.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 100_000_000;

    #[test]
    fn diffs_chain_and_match_the_snapshot() {
        let mut b = SimBook::new(1_000, 3);
        b.set(BookSide::Bid, 100 * S, S);
        b.set(BookSide::Ask, 101 * S, 2 * S);
        let d1 = b.publish_diff().unwrap();
        assert_eq!(d1.prev_id, 1_000);
        assert!(d1.first_id > 1_000 && d1.first_id <= d1.last_id);
        assert_eq!(d1.bids, vec![(100 * S, S)]);
        assert!(b.publish_diff().is_none(), "nothing changed");
        b.set(BookSide::Bid, 100 * S, 0);
        b.set(BookSide::Bid, 99 * S, 3 * S);
        let d2 = b.publish_diff().unwrap();
        assert_eq!(d2.prev_id, d1.last_id);
        assert_eq!(d2.bids, vec![(100 * S, 0), (99 * S, 3 * S)]);
        let (id, bids, asks) = b.published(10);
        assert_eq!((id, bids, asks), (d2.last_id, vec![(99 * S, 3 * S)], vec![(101 * S, 2 * S)]));
    }

    #[test]
    fn take_walks_levels_with_limit_budget_and_lot() {
        let mut b = SimBook::new(0, 1);
        b.set(BookSide::Ask, 100 * S, S);
        b.set(BookSide::Ask, 101 * S, S);
        b.set(BookSide::Ask, 105 * S, S);
        assert_eq!(b.available(true, Some(101 * S)), 2 * S);
        let f = b.take(true, Some(101 * S), 3 * S, None, 1);
        assert_eq!(f, vec![(100 * S, S), (101 * S, S)]);
        assert_eq!(b.best_ask(), Some((105 * S, S)));
        // Budget of 210 at 105 buys 2 whole units' worth → capped by the level (1).
        let f = b.take(true, None, i64::MAX, Some(52 * S), S / 1000);
        assert_eq!(f, vec![(105 * S, 495 * S / 1000)]);
    }
}
