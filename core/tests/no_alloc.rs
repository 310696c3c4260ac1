//! After warm-up, a million mixed events through `Engine::on_event` allocate nothing.
//!
//! Method: a global allocator that counts allocations made by the *test thread* while a
//! thread-local switch is on (the test harness's own threads are not counted). The
//! workload is three coins with Upbit whole-book snapshots, Binance diff depth with `pu`
//! chains (and injected gaps answered by snapshots), the KRW-USDT FX book, funding
//! settlements, timers, and a small venue that answers every order with fills, partial
//! fills or rejects — so entries, exits, one-leg repairs and resyncs all run in the
//! measured phase. The test also checks that they did run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use kimp_core::action::{Action, Outbox};
use kimp_core::config::{EngineConfig, FundingFilter};
use kimp_core::engine::Engine;
use kimp_core::event::{
    Balance, BookSnapshot, Control, DepthDiff, Event, Funding, Level, OrderEvent, OrderEventKind,
    PositionReport, RejectReason,
};
use kimp_core::instrument::{InstrumentId, Symbol, Venue};
use kimp_core::order::{OrderKind, OrderRequest};
use kimp_core::testkit::multi_markets;
use kimp_core::units::{Nanos, Price, Qty, Quote, SCALE};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    if COUNTING.try_with(|c| c.get()).unwrap_or(false) {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
    }
}

fn counted<T>(f: impl FnOnce() -> T) -> (T, u64) {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCS.with(|a| a.get()))
}

// SAFETY: delegates to the system allocator; only adds a counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const COINS: u16 = 3;

/// Deterministic xorshift, so the workload is the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Workload {
    e: Engine,
    out: Outbox,
    now: Nanos,
    rng: Rng,
    step: u64,
    mid_b: [i64; COINS as usize],
    last_u: [u64; COINS as usize],
    pending: Vec<OrderRequest>,
    resync: Vec<InstrumentId>,
    bids: [Level; 30],
    asks: [Level; 30],
    trade_id: u64,
    funding_at: Nanos,
}

impl Workload {
    fn new() -> Self {
        let mut cfg = EngineConfig::default();
        cfg.strategy.funding_filter = FundingFilter::Off;
        cfg.strategy.entry_cooldown_ms = 0;
        cfg.risk.orders_per_sec_max = 1_000;
        let e = Engine::new(cfg, &multi_markets(COINS), 1).unwrap();
        Self {
            e,
            out: Outbox::with_capacity(256),
            now: Nanos::from_ms(1_000),
            rng: Rng(0x9E37_79B9_7F4A_7C15),
            step: 0,
            mid_b: [70_000 * SCALE; COINS as usize],
            last_u: [1_000; COINS as usize],
            pending: Vec::with_capacity(256),
            resync: Vec::with_capacity(64),
            bids: [Level::default(); 30],
            asks: [Level::default(); 30],
            trade_id: 0,
            funding_at: Nanos::from_ms(60_000),
        }
    }

    fn feed(&mut self, ev: Event<'_>) {
        self.out.clear();
        self.e.on_event(self.now, &ev, &mut self.out);
        for a in self.out.as_slice() {
            match *a {
                Action::Place(r) if self.pending.len() < self.pending.capacity() => {
                    self.pending.push(r);
                }
                Action::Resync(i) if self.resync.len() < self.resync.capacity() => {
                    self.resync.push(i);
                }
                _ => {}
            }
        }
    }

    fn start(&mut self) {
        let set = |v: Venue, a: &str, x: i64| Balance {
            venue: v,
            asset: Symbol::new(a).unwrap(),
            free: Qty(x * SCALE),
            locked: Qty(0),
        };
        self.feed(Event::Balance(set(Venue::Upbit, "KRW", 10_000_000_000)));
        self.feed(Event::Balance(set(Venue::Binance, "USDT", 10_000_000)));
        for c in 0..COINS {
            let name = ["C0", "C1", "C2"][c as usize];
            self.feed(Event::Balance(set(Venue::Upbit, name, 1_000)));
        }
        self.feed(Event::Control(Control::ReconcileDone));
        for c in 0..COINS {
            self.binance_snapshot(c);
        }
    }

    /// Premium oscillating between about 0.5 % and 4.5 %, so pairs open and close.
    fn premium(&self) -> f64 {
        0.025 + 0.02 * ((self.step as f64) / 3_000.0).sin()
    }

    fn binance_snapshot(&mut self, c: u16) {
        let mid = self.mid_b[c as usize];
        for i in 0..30 {
            self.bids[i] = Level::new(Price(mid - (i as i64 + 1) * SCALE / 10), Qty(SCALE / 2));
            self.asks[i] = Level::new(Price(mid + (i as i64 + 1) * SCALE / 10), Qty(SCALE / 2));
        }
        // The next diff (U = last + 3, u = last + 9) must bracket the snapshot's id.
        let id = self.last_u[c as usize] + 5;
        let (bids, asks) = (self.bids, self.asks);
        self.feed(Event::Book(BookSnapshot {
            inst: InstrumentId(2 * c + 1),
            exch_ts: self.now,
            last_update_id: id,
            bids: &bids,
            asks: &asks,
        }));
    }

    fn binance_diff(&mut self, c: u16) {
        let ci = c as usize;
        let walk = self.rng.below(3) as i64 - 1;
        self.mid_b[ci] += walk * SCALE / 10;
        let mid = self.mid_b[ci];
        for i in 0..10 {
            let qb =
                if self.rng.below(5) == 0 { 0 } else { self.rng.below(SCALE as u64) as i64 + 1 };
            let qa =
                if self.rng.below(5) == 0 { 0 } else { self.rng.below(SCALE as u64) as i64 + 1 };
            self.bids[i] = Level::new(Price(mid - (i as i64 + 1) * SCALE / 10), Qty(qb));
            self.asks[i] = Level::new(Price(mid + (i as i64 + 1) * SCALE / 10), Qty(qa));
        }
        let pu = self.last_u[ci];
        // One diff in 2,000 skips ahead: a gap the engine must detect and resync.
        let gap = if self.rng.below(2_000) == 0 { 5 } else { 0 };
        let (first, last) = (pu + 3 + gap, pu + 9 + gap);
        self.last_u[ci] = last;
        let (bids, asks) = (self.bids, self.asks);
        self.feed(Event::Depth(DepthDiff {
            inst: InstrumentId(2 * c + 1),
            exch_ts: self.now,
            first_id: first,
            last_id: last,
            prev_last_id: Some(pu + gap),
            bids: &bids[..10],
            asks: &asks[..10],
        }));
    }

    fn upbit_book(&mut self, c: u16) {
        let fx = 1_450.0;
        let krw = self.mid_b[c as usize] as f64 / SCALE as f64 * fx * (1.0 + self.premium());
        let best_bid = ((krw / 1_000.0).floor() * 1_000.0) as i64 * SCALE;
        for i in 0..15 {
            self.bids[i] = Level::new(
                Price(best_bid - i as i64 * 1_000 * SCALE),
                Qty(SCALE / 4 + self.rng.below(1_000) as i64),
            );
            self.asks[i] = Level::new(
                Price(best_bid + (i as i64 + 1) * 1_000 * SCALE),
                Qty(SCALE / 4 + self.rng.below(1_000) as i64),
            );
        }
        let (bids, asks) = (self.bids, self.asks);
        self.feed(Event::Book(BookSnapshot {
            inst: InstrumentId(2 * c),
            exch_ts: self.now,
            last_update_id: 0,
            bids: &bids[..15],
            asks: &asks[..15],
        }));
    }

    fn fx_book(&mut self) {
        for i in 0..5 {
            self.bids[i] = Level::new(Price((1_449 - i as i64) * SCALE), Qty(1_000_000 * SCALE));
            self.asks[i] = Level::new(Price((1_450 + i as i64) * SCALE), Qty(1_000_000 * SCALE));
        }
        let (bids, asks) = (self.bids, self.asks);
        self.feed(Event::Book(BookSnapshot {
            inst: InstrumentId(2 * COINS),
            exch_ts: self.now,
            last_update_id: 0,
            bids: &bids[..5],
            asks: &asks[..5],
        }));
    }

    /// The venue answers one pending order: mostly full fills, some partial, some rejects.
    fn answer(&mut self) {
        let Some(r) = self.pending.pop() else { return };
        let roll = self.rng.below(20);
        let report = |w: &mut Self, kind| {
            w.feed(Event::Order(OrderEvent { cl_id: r.cl_id, exch_ts: w.now, kind }))
        };
        if roll == 0 && r.kind == OrderKind::LimitIoc {
            report(self, OrderEventKind::Reject(RejectReason::InsufficientBalance));
            return;
        }
        report(self, OrderEventKind::Ack);
        // Partial fills come in whole lots on Binance (odd ids) and any volume on Upbit.
        let lot = if r.inst.0 % 2 == 1 { SCALE / 1_000 } else { 1 };
        let qty = if roll == 1 && r.kind == OrderKind::LimitIoc {
            Qty(r.qty.0 / 2 / lot * lot)
        } else {
            r.qty
        };
        if qty.0 > 0 {
            self.trade_id += 1;
            let fee = Quote(r.px.notional(qty).unwrap().0 / 2_000);
            report(
                self,
                OrderEventKind::Fill { trade_id: self.trade_id, px: r.px, qty, cum_qty: qty, fee },
            );
        }
        report(self, OrderEventKind::Done { cum_qty: qty });
    }

    fn step(&mut self) {
        self.step += 1;
        self.now = self.now.plus(Nanos::from_us(100));
        if let Some(i) = self.resync.pop() {
            self.binance_snapshot((i.0 - 1) / 2);
            return;
        }
        if !self.pending.is_empty() && self.rng.below(3) == 0 {
            self.answer();
            return;
        }
        let c = self.rng.below(COINS as u64) as u16;
        match self.rng.below(100) {
            0..=44 => self.binance_diff(c),
            45..=84 => self.upbit_book(c),
            85..=89 => self.fx_book(),
            90..=97 => self.feed(Event::Timer),
            98 => {
                // A periodic account check that agrees with the engine (the comparison
                // and its alert path run without allocating).
                for c in 0..COINS {
                    let qty = self.e.pair(c).map_or(Qty::ZERO, |p| p.b.pos);
                    let inst = InstrumentId(2 * c + 1);
                    self.feed(Event::Position(PositionReport { inst, qty }));
                }
                let asked_at = Nanos(self.now.0.saturating_sub(1_000_000));
                self.feed(Event::Control(Control::CheckAccount {
                    venue: Venue::Binance,
                    asked_at,
                }));
            }
            _ => {
                if self.now >= self.funding_at {
                    self.funding_at = self.funding_at.plus(Nanos::from_ms(60_000));
                }
                let mark = Price(self.mid_b[c as usize]);
                self.feed(Event::Funding(Funding {
                    inst: InstrumentId(2 * c + 1),
                    exch_ts: self.now,
                    mark,
                    rate_e8: 10_000,
                    next_funding: self.funding_at,
                }));
            }
        }
    }
}

#[test]
fn a_million_events_after_warm_up_allocate_nothing() {
    let mut w = Workload::new();
    w.start();
    for _ in 0..200_000 {
        w.step();
    }
    let before = *w.e.stats();
    let (events, allocs) = counted(|| {
        let mut steps = 0u64;
        while w.e.stats().events - before.events < 1_000_000 {
            w.step();
            steps += 1;
        }
        steps
    });
    let after = *w.e.stats();
    let d = |a: u64, b: u64| a - b;
    eprintln!(
        "steps {events}, engine events {}, intents {}, orders {}, pairs closed {}, gaps {}, funding {}, allocations {allocs}",
        d(after.events, before.events),
        d(after.intents, before.intents),
        d(after.orders_placed, before.orders_placed),
        d(after.pairs_closed, before.pairs_closed),
        d(after.gaps, before.gaps),
        d(after.funding_settlements, before.funding_settlements),
    );
    // The measured phase really traded, repaired and resynced.
    assert!(after.intents - before.intents > 100, "too few intents: {after:?}");
    assert!(after.pairs_closed - before.pairs_closed > 20, "too few closed pairs: {after:?}");
    assert!(after.gaps > before.gaps, "no gap exercised");
    assert!(after.funding_settlements > before.funding_settlements, "no funding settled");
    assert_eq!(allocs, 0, "allocations on the hot path after warm-up");
}

#[test]
fn the_counter_counts() {
    // The allocator above must be able to see an allocation, or the zero means nothing.
    let (v, n) = counted(|| Vec::<u64>::with_capacity(std::hint::black_box(16)));
    drop(v);
    assert!(n >= 1);
}
