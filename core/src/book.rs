//! A fixed-capacity L2 order book with the venues' sequence rules.
//!
//! Each side is stored one of two ways, chosen at construction:
//! - **Sorted array** ([`Book::new`]): levels sorted with the *best level at the end*, so
//!   updates at the top move few elements and the best price is one load. Right for
//!   books that arrive whole and small (Upbit's ≤ 30-level snapshots). When a side is
//!   full, the level farthest from the top is dropped, which never matters for an
//!   executable price.
//! - **Price ladder** ([`Book::with_tick`]), for fixed-tick venues (Binance): a ring of
//!   `window` slots indexed by `price / tick`, covering a window of prices that follows
//!   the best level. Setting a level is a multiply and a store wherever it is in the
//!   book; a sorted array of 1,000 levels had to move most of itself for every deep
//!   insert (measured in bench/RESULTS.md). Levels deeper than the window are dropped —
//!   the same rule as the sorted array's capacity, expressed in ticks. A price off the
//!   tick grid (a venue that changed its tick size) switches the side to the sorted
//!   array for good, so nothing is lost or misplaced.
//!
//! Both are allocated once; the book never allocates afterwards.
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

/// Levels the sorted array of a ladder side keeps if the side ever falls back to it.
const FALLBACK_DEPTH: usize = 1_024;

/// Exact division by a fixed tick without a divide instruction: `tick = 2^shift × odd`,
/// and `x` is a multiple of `odd` exactly when `x × odd⁻¹ (mod 2^64) ≤ u64::MAX / odd`
/// (Granlund–Montgomery); the product is then the quotient.
#[derive(Debug, Clone, Copy)]
struct TickDiv {
    tick: i64,
    shift: u32,
    inv: u64,
    limit: u64,
}

impl TickDiv {
    fn new(tick: i64) -> Self {
        let t = tick.max(1) as u64;
        let shift = t.trailing_zeros();
        let odd = t >> shift;
        // Newton's iteration doubles the correct low bits each step (3 → 6 → … → 96).
        let mut inv = odd;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inv)));
        }
        Self { tick: tick.max(1), shift, inv, limit: u64::MAX / odd }
    }

    #[inline]
    fn tick(self) -> i64 {
        self.tick
    }

    /// `px / tick` when `px` is a positive multiple of the tick.
    #[inline]
    fn ticks(self, px: i64) -> Option<i64> {
        if px <= 0 {
            return None;
        }
        let x = px as u64;
        if x & ((1u64 << self.shift) - 1) != 0 {
            return None;
        }
        let q = (x >> self.shift).wrapping_mul(self.inv);
        (q <= self.limit).then_some(q as i64)
    }
}

/// The price-ladder storage of one side: a ring of slots for the ticks `[lo, lo + n)`;
/// a slot with zero quantity is empty.
#[derive(Debug, Clone)]
struct Ladder {
    div: TickDiv,
    slots: Vec<Level>,
    mask: usize,
    lo: i64,
    /// Tick of the best level (meaningful while `count > 0`).
    best: i64,
    count: usize,
}

impl Ladder {
    fn new(tick: i64, window: usize) -> Self {
        let n = window.clamp(64, 1 << 24).next_power_of_two();
        Self {
            div: TickDiv::new(tick),
            slots: vec![Level::default(); n],
            mask: n - 1,
            lo: 0,
            best: 0,
            count: 0,
        }
    }

    /// A placeholder for sides stored sorted (no slots).
    fn empty() -> Self {
        Self { div: TickDiv::new(1), slots: Vec::new(), mask: 0, lo: 0, best: 0, count: 0 }
    }

    #[inline]
    fn width(&self) -> i64 {
        self.slots.len() as i64
    }

    #[inline]
    fn slot(&self, t: i64) -> &Level {
        &self.slots[(t as usize) & self.mask]
    }

    #[inline]
    fn slot_mut(&mut self, t: i64) -> &mut Level {
        let m = self.mask;
        &mut self.slots[(t as usize) & m]
    }

    /// Offset of tick `t` in the window, if inside.
    #[inline]
    fn offset(&self, t: i64) -> Option<i64> {
        let off = t.checked_sub(self.lo)?;
        (0..self.width()).contains(&off).then_some(off)
    }

    /// Headroom kept beyond the best level, toward better prices.
    #[inline]
    fn headroom(&self) -> i64 {
        self.width() / 8
    }

    /// Removes the level at tick `t` (in the window) if present.
    #[inline]
    fn clear(&mut self, t: i64) {
        let s = self.slot_mut(t);
        if s.qty.0 != 0 {
            *s = Level::default();
            self.count -= 1;
        }
    }

    /// Moves the window so it starts at `new_lo`; levels that leave it are dropped.
    fn shift_to(&mut self, new_lo: i64) {
        let w = self.width();
        let (a, b) = if new_lo > self.lo {
            (self.lo, new_lo.min(self.lo.saturating_add(w)))
        } else {
            (new_lo.saturating_add(w).max(self.lo), self.lo.saturating_add(w))
        };
        // The ticks in [a, b) leave the window; their slots are reused by the new ticks.
        if self.count > 0 {
            let mut t = a;
            while t < b && self.count > 0 {
                self.clear(t);
                t += 1;
            }
        }
        self.lo = new_lo;
    }

    /// Window start that puts `best` at the target position for `side`.
    #[inline]
    fn lo_for(&self, side: Side, best: i64) -> i64 {
        match side {
            Side::Buy => best.saturating_sub(self.width() - self.headroom()),
            Side::Sell => best.saturating_sub(self.headroom()),
        }
    }

    /// Re-centres when the best level drifted toward the deep edge (no level is lost:
    /// the ticks that leave are all better than the best, hence empty).
    #[inline]
    fn keep_centred(&mut self, side: Side) {
        let w = self.width();
        let off = self.best.saturating_sub(self.lo);
        let deep_room = match side {
            Side::Buy => off,
            Side::Sell => w - 1 - off,
        };
        if deep_room < w / 4 {
            let lo = self.lo_for(side, self.best);
            self.shift_to(lo);
        }
    }

    /// Steps from `t` away from the top until a non-empty slot (requires `count > 0`).
    #[inline]
    fn next_deeper(&self, side: Side, mut t: i64) -> i64 {
        let step = if side == Side::Buy { -1 } else { 1 };
        loop {
            t = t.wrapping_add(step);
            if self.slot(t).qty.0 != 0 {
                return t;
            }
        }
    }

    /// Sets tick `t` (price `px`) to `qty`; a level deeper than the window is dropped.
    #[inline]
    fn set(&mut self, side: Side, t: i64, px: Price, qty: Qty) {
        let better = |a: i64, b: i64| if side == Side::Buy { a > b } else { a < b };
        if self.count == 0 {
            if qty.0 <= 0 {
                return;
            }
            self.lo = self.lo_for(side, t);
            *self.slot_mut(t) = Level::new(px, qty);
            self.best = t;
            self.count = 1;
            return;
        }
        if self.offset(t).is_none() {
            if qty.0 <= 0 || !better(t, self.best) {
                return; // absent, or deeper than the window: dropped like a full side's tail
            }
            let lo = self.lo_for(side, t);
            self.shift_to(lo);
        }
        let s = self.slot_mut(t);
        if qty.0 > 0 {
            let was_empty = s.qty.0 == 0;
            *s = Level::new(px, qty);
            self.count += was_empty as usize;
            if better(t, self.best) {
                self.best = t;
                let lo = self.lo_for(side, t);
                // A new best close to the window's edge moves the window (dropping the
                // deepest levels); most new bests are well inside and move nothing.
                let off = t - self.lo;
                let room = if side == Side::Buy { self.width() - 1 - off } else { off };
                if room < self.headroom() / 2 {
                    self.shift_to(lo);
                }
            }
        } else if s.qty.0 != 0 {
            *s = Level::default();
            self.count -= 1;
            if t == self.best && self.count > 0 {
                self.best = self.next_deeper(side, t);
                self.keep_centred(side);
            }
        }
    }

    /// Empties the ladder (cost proportional to the levels held).
    fn clear_all(&mut self, side: Side) {
        let mut t = self.best;
        while self.count > 0 {
            self.clear(t);
            t = t.wrapping_add(if side == Side::Buy { -1 } else { 1 });
        }
    }

    /// Ticks of the window's deep end.
    #[inline]
    fn deep_end(&self, side: Side) -> i64 {
        match side {
            Side::Buy => self.lo,
            Side::Sell => self.lo.saturating_add(self.width() - 1),
        }
    }
}

/// How a side stores its levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Sorted,
    Ladder,
}

/// One side of the book.
#[derive(Debug, Clone)]
pub struct BookSide {
    /// Sorted so the best level is last: ascending prices for bids, descending for asks.
    levels: Vec<Level>,
    cap: usize,
    side: Side,
    mode: Mode,
    ladder: Ladder,
}

/// Levels of one side from best to worst (either end can be walked).
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    inner: IterInner<'a>,
}

#[derive(Debug, Clone)]
enum IterInner<'a> {
    Sorted(std::iter::Rev<std::slice::Iter<'a, Level>>),
    Ladder { lad: &'a Ladder, front: i64, back: i64, step: i64, left: usize },
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a Level;

    #[inline]
    fn next(&mut self) -> Option<&'a Level> {
        match &mut self.inner {
            IterInner::Sorted(it) => it.next(),
            IterInner::Ladder { lad, front, step, left, .. } => {
                while *left > 0 {
                    let s = lad.slot(*front);
                    *front = front.wrapping_add(*step);
                    if s.qty.0 != 0 {
                        *left -= 1;
                        return Some(s);
                    }
                }
                None
            }
        }
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match &self.inner {
            IterInner::Sorted(it) => it.len(),
            IterInner::Ladder { left, .. } => *left,
        };
        (n, Some(n))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    #[inline]
    fn next_back(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            IterInner::Sorted(it) => it.next_back(),
            IterInner::Ladder { lad, back, step, left, .. } => {
                while *left > 0 {
                    let s = lad.slot(*back);
                    *back = back.wrapping_sub(*step);
                    if s.qty.0 != 0 {
                        *left -= 1;
                        return Some(s);
                    }
                }
                None
            }
        }
    }
}

impl ExactSizeIterator for Iter<'_> {}

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
    /// An empty side holding at most `cap` levels in a sorted array.
    pub fn new(side: Side, cap: usize) -> Self {
        Self {
            levels: Vec::with_capacity(cap.max(1)),
            cap: cap.max(1),
            side,
            mode: Mode::Sorted,
            ladder: Ladder::empty(),
        }
    }

    /// An empty side stored as a price ladder of `window` ticks (rounded up to a power of
    /// two, at least 64) for prices that are multiples of `tick`.
    pub fn with_tick(side: Side, tick: Price, window: usize) -> Self {
        let ladder = Ladder::new(tick.0, window);
        Self {
            levels: Vec::with_capacity(FALLBACK_DEPTH),
            cap: ladder.slots.len(),
            side,
            mode: Mode::Ladder,
            ladder,
        }
    }

    /// Number of levels.
    #[inline]
    pub fn len(&self) -> usize {
        match self.mode {
            Mode::Sorted => self.levels.len(),
            Mode::Ladder => self.ladder.count,
        }
    }

    /// True when there are no levels.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Capacity fixed at construction (levels, or the ladder's window in ticks).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Best level.
    #[inline]
    pub fn best(&self) -> Option<Level> {
        match self.mode {
            Mode::Sorted => self.levels.last().copied(),
            Mode::Ladder => (self.ladder.count > 0).then(|| *self.ladder.slot(self.ladder.best)),
        }
    }

    /// Levels from best to worst.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Level> + ExactSizeIterator + '_ {
        self.levels_iter()
    }

    fn levels_iter(&self) -> Iter<'_> {
        let inner = match self.mode {
            Mode::Sorted => IterInner::Sorted(self.levels.iter().rev()),
            Mode::Ladder => IterInner::Ladder {
                lad: &self.ladder,
                front: self.ladder.best,
                back: self.ladder.deep_end(self.side),
                step: if self.side == Side::Buy { -1 } else { 1 },
                left: self.ladder.count,
            },
        };
        Iter { inner }
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
    #[inline]
    pub fn set(&mut self, px: Price, qty: Qty) {
        if self.mode == Mode::Ladder {
            match self.ladder.div.ticks(px.0) {
                Some(t) => return self.ladder.set(self.side, t, px, qty),
                None => self.fall_back(),
            }
        }
        self.set_sorted(px, qty);
    }

    /// Moves a ladder side to the sorted array for good (a price off the tick grid).
    #[cold]
    fn fall_back(&mut self) {
        self.levels.clear();
        let keep = self.ladder.count.min(self.levels.capacity());
        let skip = self.ladder.count - keep;
        // Worst first, so the best ends up last.
        let deep = Iter::from(IterInner::Ladder {
            lad: &self.ladder,
            front: self.ladder.best,
            back: self.ladder.deep_end(self.side),
            step: if self.side == Side::Buy { -1 } else { 1 },
            left: self.ladder.count,
        });
        self.levels.extend(deep.rev().skip(skip).copied());
        self.ladder.clear_all(self.side);
        self.cap = self.levels.capacity();
        self.mode = Mode::Sorted;
    }

    fn set_sorted(&mut self, px: Price, qty: Qty) {
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

    /// True when `px` is at or through this side's best (it would cross).
    #[inline]
    fn crosses(&self, b: Price, px: Price) -> bool {
        match self.side {
            Side::Buy => b >= px,
            Side::Sell => b <= px,
        }
    }

    /// Removes every level at `px` or better (used to uncross after the other side moved).
    #[inline]
    fn remove_through(&mut self, px: Price) -> usize {
        let mut n = 0;
        match self.mode {
            Mode::Sorted => {
                while let Some(b) = self.levels.last() {
                    if !self.crosses(b.px, px) {
                        break;
                    }
                    self.levels.pop();
                    n += 1;
                }
            }
            Mode::Ladder => {
                while let Some(b) = self.best() {
                    if !self.crosses(b.px, px) {
                        break;
                    }
                    let t = self.ladder.best;
                    self.ladder.set(self.side, t, b.px, Qty(0));
                    n += 1;
                }
            }
        }
        n
    }

    /// Replaces the side with `levels` given best first. Zero-price or zero-size levels
    /// are skipped (Upbit pads thin books with zeros).
    pub fn replace(&mut self, best_first: &[Level]) {
        match self.mode {
            Mode::Sorted => {
                self.levels.clear();
                if self.push_ordered(best_first) {
                    return;
                }
                self.levels.clear();
            }
            Mode::Ladder => self.ladder.clear_all(self.side),
        }
        for l in best_first {
            if l.px.0 > 0 && l.qty.0 > 0 {
                self.set(l.px, l.qty);
            }
        }
    }

    /// Appends a snapshot worst first when it is strictly ordered and fits; false otherwise.
    /// Inserting best first puts every level at the front of the array (O(n²) moves); a
    /// venue snapshot is already ordered, so one push per level builds the same side.
    fn push_ordered(&mut self, best_first: &[Level]) -> bool {
        for l in best_first.iter().rev() {
            if l.px.0 <= 0 || l.qty.0 <= 0 {
                continue;
            }
            if self.levels.len() >= self.cap {
                return false;
            }
            if let Some(worse) = self.levels.last()
                && !self.better(l.px, worse.px)
            {
                return false;
            }
            self.levels.push(*l);
        }
        true
    }

    /// Walks from the best level to fill `qty`.
    pub fn walk(&self, qty: Qty) -> Walk {
        let mut w = Walk::default();
        let mut left = qty.0;
        for l in self.levels_iter() {
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
        if self.mode == Mode::Ladder {
            return self.ladder_depth_within(limit);
        }
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

    /// `depth_within` on a ladder: a sum over the slots from the best to the limit (empty
    /// slots hold zero, so no branch per slot).
    fn ladder_depth_within(&self, limit: Price) -> Qty {
        let lad = &self.ladder;
        let Some(best) = self.best() else { return Qty(0) };
        if self.better(limit, best.px) {
            return Qty(0);
        }
        // Ticks from the best to the limit, clipped to the window.
        let tick_px = lad.div.ticks(limit.0);
        let (from, to) = match self.side {
            Side::Buy => {
                let lim = tick_px.unwrap_or_else(|| ceil_ticks(limit.0, lad));
                (lim.max(lad.lo), lad.best)
            }
            Side::Sell => {
                let lim = tick_px.unwrap_or_else(|| floor_ticks(limit.0, lad));
                (lad.best, lim.min(lad.lo.saturating_add(lad.width() - 1)))
            }
        };
        // Quantities are positive, so a sum clamped once equals the saturating sum.
        let mut q = 0i64;
        let mut t = from;
        // Two contiguous runs at most (the ring wraps once).
        while t <= to {
            let i = (t as usize) & lad.mask;
            let run = ((lad.slots.len() - i) as i64).min(to - t + 1) as usize;
            q = q.saturating_add(sum_qty(&lad.slots[i..i + run]));
            t += run as i64;
        }
        Qty(q)
    }
}

impl<'a> From<IterInner<'a>> for Iter<'a> {
    fn from(inner: IterInner<'a>) -> Self {
        Self { inner }
    }
}

/// Sum of the (non-negative) quantities of `slots`, saturating. The plain sum cannot
/// overflow when every value is ≤ `i64::MAX / len` (the OR of the values bounds their
/// maximum), which lets it vectorise; otherwise a wide sum is clamped.
fn sum_qty(slots: &[Level]) -> i64 {
    let (mut sum, mut any) = (0i64, 0i64);
    for s in slots {
        sum = sum.wrapping_add(s.qty.0);
        any |= s.qty.0;
    }
    if any >= 0 && any <= i64::MAX / (slots.len().max(1) as i64) {
        return sum;
    }
    let wide: i128 = slots.iter().map(|s| s.qty.0.max(0) as i128).sum();
    wide.min(i64::MAX as i128) as i64
}

/// Smallest tick whose price is ≥ `px` (limit not on the grid; bids count levels ≥ it).
fn ceil_ticks(px: i64, lad: &Ladder) -> i64 {
    let t = lad.div.tick();
    px.div_euclid(t) + (px.rem_euclid(t) != 0) as i64
}

/// Largest tick whose price is ≤ `px`.
fn floor_ticks(px: i64, lad: &Ladder) -> i64 {
    px.div_euclid(lad.div.tick())
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
    /// Engine time at which the book last carried new information: a snapshot or diff
    /// of the sequenced venues (Binance ids always advance), or, for whole-book venues
    /// (Upbit), a snapshot whose exchange time is later than the held one — a feed that
    /// keeps repeating an old book does not keep it fresh.
    pub updated_at: Nanos,
    /// Exchange time of the last update applied.
    pub exch_ts: Nanos,
    /// Gaps detected since start.
    pub gaps: u64,
    /// Levels removed because the other side moved through them.
    pub uncrossed: u64,
}

impl Book {
    /// An empty, stale book holding `depth` levels per side in sorted arrays.
    pub fn new(rule: SeqRule, depth: usize) -> Self {
        Self::from_sides(rule, BookSide::new(Side::Buy, depth), BookSide::new(Side::Sell, depth))
    }

    /// An empty, stale book for a fixed-tick instrument: each side is a price ladder of
    /// `window` ticks that follows the best level (see the module doc).
    pub fn with_tick(rule: SeqRule, tick: Price, window: usize) -> Self {
        Self::from_sides(
            rule,
            BookSide::with_tick(Side::Buy, tick, window),
            BookSide::with_tick(Side::Sell, tick, window),
        )
    }

    fn from_sides(rule: SeqRule, bids: BookSide, asks: BookSide) -> Self {
        Self {
            bids,
            asks,
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

    /// True when synced and carrying new information within `max_age` of `now` (see
    /// `updated_at`).
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
        // Upbit books carry no sequence number: only a later exchange time is news.
        if self.rule != SeqRule::Snapshots
            || s.exch_ts > self.exch_ts
            || self.updated_at == Nanos(0)
        {
            self.updated_at = now;
        }
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
                // Futures: the documented bracket `U <= L <= u`, or an event that continues
                // exactly from the snapshot (`pu == L`: the snapshot was taken between two
                // events, which the bracket rule alone would call a gap).
                SeqRule::Futures => (
                    d.last_id < l,
                    (d.first_id <= l && l <= d.last_id) || d.prev_last_id == Some(l),
                ),
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
    fn snapshot_between_two_events_is_bridged_by_pu() {
        let mut b = Book::new(SeqRule::Futures, 16);
        b.apply_snapshot(&snap(100, &[lv(10, 1)], &[lv(11, 1)]), Nanos(1));
        // U = 105 > L = 100, but pu = 100: it continues exactly from the snapshot.
        assert_eq!(b.apply_diff(&diff(105, 110, 100, &[], &[]), Nanos(2)), DiffOutcome::Applied);
    }

    #[test]
    fn snapshot_too_old_is_a_gap() {
        let mut b = Book::new(SeqRule::Futures, 16);
        b.apply_snapshot(&snap(100, &[lv(10, 1)], &[lv(11, 1)]), Nanos(1));
        // Events 101..=104 are missing: U > L and the chain does not start at L.
        assert_eq!(b.apply_diff(&diff(105, 110, 104, &[], &[]), Nanos(2)), DiffOutcome::Gap);
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

    fn ladder_levels(s: &BookSide) -> Vec<(i64, i64)> {
        s.iter().map(|l| (l.px.0, l.qty.0)).collect()
    }

    #[test]
    fn tick_division_is_exact() {
        for tick in [1i64, 2, 3, 7, 10, 1_000, 10_000_000, 5_000_000, 1 << 20, 999_999_937] {
            let d = TickDiv::new(tick);
            for x in [1i64, 2, 3, tick, tick * 2 + 1, tick * 12_345, i64::MAX, i64::MAX - 1] {
                let want = (x > 0 && x % tick == 0).then(|| x / tick);
                assert_eq!(d.ticks(x), want, "{x} / {tick}");
            }
            assert_eq!(d.ticks(0), None);
            assert_eq!(d.ticks(-tick), None);
        }
    }

    #[test]
    fn ladder_side_orders_levels_and_walks_like_the_array() {
        for side in [Side::Buy, Side::Sell] {
            let mut lad = BookSide::with_tick(side, Price(10), 256);
            let mut arr = BookSide::new(side, 1_024);
            let ops = [(1000, 5), (1010, 3), (990, 2), (1500, 1), (1000, 0), (20, 4), (1010, 9)];
            for (p, q) in ops {
                lad.set(Price(p), Qty(q));
                arr.set(Price(p), Qty(q));
                // Only levels inside the 256-tick window survive on the ladder.
                let kept: Vec<_> = ladder_levels(&arr)
                    .into_iter()
                    .filter(|&(px, _)| lad.iter().any(|l| l.px.0 == px))
                    .collect();
                assert_eq!(ladder_levels(&lad), kept, "{side:?}");
                assert_eq!(lad.len(), lad.iter().count());
                let rev: Vec<_> = lad.iter().rev().map(|l| l.px.0).collect();
                let mut fwd: Vec<_> = lad.iter().map(|l| l.px.0).collect();
                fwd.reverse();
                assert_eq!(rev, fwd);
            }
            assert_eq!(lad.best(), arr.best());
            assert_eq!(lad.walk(Qty(10)), arr.walk(Qty(10)));
            for lim in [0, 995, 1000, 1005, 1010, 1600, 100_000] {
                assert_eq!(lad.depth_within(Price(lim)), arr.depth_within(Price(lim)), "{lim}");
            }
        }
    }

    #[test]
    fn ladder_window_follows_the_top_and_drops_only_deep_levels() {
        let mut s = BookSide::with_tick(Side::Buy, Price(1), 64);
        for p in 1000..1040 {
            s.set(Price(p), Qty(1));
        }
        assert_eq!(s.len(), 40);
        // A jump far up keeps the top exact; levels more than the window below are gone.
        s.set(Price(1100), Qty(7));
        assert_eq!(s.best(), Some(lv(1100, 7)));
        assert!(s.iter().all(|l| l.px.0 > 1100 - 64));
        assert_eq!(s.len(), s.iter().count());
        // Deeper than the window: dropped, like a full array's tail.
        s.set(Price(900), Qty(1));
        assert!(s.iter().all(|l| l.px.0 != 900));
        // The top falls away: the window moves down without losing anything.
        for p in (1000..1101).rev() {
            s.set(Price(p), Qty(0));
        }
        assert!(s.is_empty());
        s.set(Price(500), Qty(2));
        s.set(Price(480), Qty(3));
        assert_eq!(ladder_levels(&s), vec![(500, 2), (480, 3)]);
        s.set(Price(500), Qty(0));
        for p in (440..480).rev() {
            s.set(Price(p), Qty(1));
        }
        assert_eq!(s.best(), Some(lv(480, 3)));
        // At least a quarter window below the best is always kept.
        for p in 480 - 16..480 {
            assert!(s.iter().any(|l| l.px.0 == p), "{p} missing");
        }
        assert_eq!(s.len(), s.iter().count());
    }

    #[test]
    fn off_grid_price_moves_the_side_to_the_array() {
        let mut s = BookSide::with_tick(Side::Sell, Price(10), 128);
        s.set(Price(100), Qty(1));
        s.set(Price(120), Qty(2));
        s.set(Price(115), Qty(3));
        assert_eq!(ladder_levels(&s), vec![(100, 1), (115, 3), (120, 2)]);
        s.set(Price(110), Qty(4));
        assert_eq!(ladder_levels(&s), vec![(100, 1), (110, 4), (115, 3), (120, 2)]);
        assert_eq!(s.capacity(), FALLBACK_DEPTH);
    }

    #[test]
    fn ladder_book_uncrosses_and_replaces() {
        let mut b = Book::with_tick(SeqRule::Futures, Price(1), 1_024);
        b.apply_snapshot(&snap(1, &[lv(10, 1), lv(9, 1)], &[lv(11, 1), lv(12, 1)]), Nanos(1));
        b.set(Side::Buy, Price(11), Qty(3));
        assert_eq!(b.best_ask(), Some(lv(12, 1)));
        assert_eq!(b.best_bid(), Some(lv(11, 3)));
        assert_eq!(b.uncrossed, 1);
        b.apply_snapshot(&snap(5, &[lv(100, 1)], &[lv(101, 2)]), Nanos(2));
        assert_eq!(ladder_levels(&b.bids), vec![(100, 1)]);
        assert_eq!(ladder_levels(&b.asks), vec![(101, 2)]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// A ladder side whose window holds every price equals a BTreeMap after any
        /// sequence of sets; a small window keeps a subset with the reference's quantities
        /// and stays consistent.
        #[test]
        fn ladder_matches_a_btreemap(
            ops in proptest::collection::vec((0i64..400, 0i64..4, proptest::bool::ANY), 1..300),
            buy in proptest::bool::ANY,
        ) {
            use std::collections::BTreeMap;
            let side = if buy { Side::Buy } else { Side::Sell };
            let mut wide = BookSide::with_tick(side, Price(3), 1_024);
            let mut small = BookSide::with_tick(side, Price(3), 64);
            let mut reference: BTreeMap<i64, i64> = BTreeMap::new();
            for (p, q, _) in ops {
                let px = (p + 1) * 3;
                wide.set(Price(px), Qty(q));
                small.set(Price(px), Qty(q));
                if q == 0 { reference.remove(&px); } else { reference.insert(px, q); }
                let want: Vec<(i64, i64)> = if buy {
                    reference.iter().rev().map(|(&p, &q)| (p, q)).collect()
                } else {
                    reference.iter().map(|(&p, &q)| (p, q)).collect()
                };
                proptest::prop_assert_eq!(ladder_levels(&wide), want.clone());
                proptest::prop_assert_eq!(wide.len(), want.len());
                let got = ladder_levels(&small);
                proptest::prop_assert_eq!(got.len(), small.len());
                proptest::prop_assert!(got.iter().all(|(p, q)| reference.get(p) == Some(q)));
                let sorted = got.windows(2).all(|w| if buy { w[0].0 > w[1].0 } else { w[0].0 < w[1].0 });
                proptest::prop_assert!(sorted, "unsorted: {:?}", got);
                let back: Vec<_> = small.iter().rev().map(|l| (l.px.0, l.qty.0)).collect();
                proptest::prop_assert_eq!(back.into_iter().rev().collect::<Vec<_>>(), got.clone());
                for lim in [0i64, 300, 600, 900, 1_300] {
                    let d: i64 = got.iter().filter(|(p, _)| if buy { *p >= lim } else { *p <= lim }).map(|l| l.1).sum();
                    proptest::prop_assert_eq!(small.depth_within(Price(lim)), Qty(d));
                }
                let w = wide.walk(Qty(5));
                let mut arr = BookSide::new(side, 1_024);
                for &(p, q) in &want { arr.set(Price(p), Qty(q)); }
                proptest::prop_assert_eq!(w, arr.walk(Qty(5)));
            }
        }

        /// `replace` builds the side `set` builds level by level from an empty side, for
        /// snapshots in order, out of order, with repeats, zero padding or more levels
        /// than the side keeps.
        #[test]
        fn replace_equals_setting_each_level(
            raw in proptest::collection::vec((0i64..40, 0i64..3), 0..24),
            ordered in proptest::bool::ANY,
            buy in proptest::bool::ANY,
            cap in 1usize..20,
        ) {
            let side = if buy { Side::Buy } else { Side::Sell };
            let mut levels: Vec<Level> = raw.iter().map(|&(p, q)| lv(p * 10, q)).collect();
            if ordered {
                levels.sort_by_key(|l| if buy { -l.px.0 } else { l.px.0 });
                levels.dedup_by_key(|l| l.px);
            }
            let mut want = BookSide::new(side, cap);
            for l in &levels {
                if l.px.0 > 0 && l.qty.0 > 0 {
                    want.set(l.px, l.qty);
                }
            }
            let mut got = BookSide::new(side, cap);
            got.set(Price(5), Qty(1)); // replace starts from a side that held something
            got.replace(&levels);
            let a: Vec<Level> = got.iter().copied().collect();
            let b: Vec<Level> = want.iter().copied().collect();
            proptest::prop_assert_eq!(a, b);
        }
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
