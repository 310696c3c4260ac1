//! The seeded market of a run: a Binance BTCUSDT mid on a random walk, a premium that
//! reverts to a mean just under the entry threshold (so pairs open and close), and the
//! KRW-USDT FX book — rendered as the messages the venues send: Upbit whole books and
//! Binance depth diffs with `U`/`u`/`pu` ids (and REST snapshots on request).

use std::collections::VecDeque;

use kimp_core::event::Level;
use kimp_core::instrument::{InstrumentId, TickRule};
use kimp_core::testkit::{BTCUSDT, KRW_BTC, KRW_USDT};
use kimp_core::units::{Price, Qty, SCALE};

use crate::sim::rng::Rng;

/// Market-data message kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MdKind {
    /// A whole book (Upbit message or Binance REST snapshot with `lastUpdateId`).
    Book {
        /// `lastUpdateId` (0 on Upbit).
        last_id: u64,
    },
    /// A Binance diff.
    Depth {
        /// `U`.
        first: u64,
        /// `u`.
        last: u64,
        /// `pu`.
        prev: u64,
    },
}

/// One market-data message with owned levels (the engine borrows them).
#[derive(Clone, Debug, PartialEq)]
pub struct Md {
    /// Instrument.
    pub inst: InstrumentId,
    /// Exchange time, ms.
    pub exch_ms: u64,
    /// Kind.
    pub kind: MdKind,
    /// Bids, best first.
    pub bids: Vec<Level>,
    /// Asks, best first.
    pub asks: Vec<Level>,
}

/// The true market.
#[derive(Debug)]
pub struct Market {
    rng: Rng,
    /// Binance mid, USDT.
    pub mid: f64,
    /// Premium (0.03 = 3 %).
    pub premium: f64,
    /// KRW per USDT.
    pub fx: f64,
    books: [(Vec<Level>, Vec<Level>); 3],
    /// Last Binance update id sent.
    pub last_id: u64,
    /// Last Binance diff generated (re-delivered after a snapshot, as the runtime's
    /// buffer would).
    pub last_diff: Option<Md>,
    upbit_history: VecDeque<Md>,
}

fn lv(px: f64, qty: f64) -> Level {
    Level::new(Price((px * SCALE as f64).round() as i64), Qty((qty * SCALE as f64).round() as i64))
}

impl Market {
    /// A market for `seed`.
    pub fn new(seed: u64) -> Self {
        let mut m = Market {
            rng: Rng::stream(seed, 0x3A4B),
            mid: 70_000.0,
            premium: 0.029,
            fx: 1_450.0,
            books: Default::default(),
            last_id: 1_000,
            last_diff: None,
            upbit_history: VecDeque::with_capacity(16),
        };
        m.render();
        m
    }

    /// The current true book of an instrument (bids, asks; best first).
    pub fn book(&self, inst: InstrumentId) -> (&[Level], &[Level]) {
        let (b, a) = &self.books[inst.0 as usize];
        (b, a)
    }

    fn render(&mut self) {
        let r = &mut self.rng;
        // Binance: 20 levels a side, tick 0.1, sizes in 0.001 lots.
        let bid = (self.mid * 10.0).floor() / 10.0;
        let mut size = |lo: f64, hi: f64| ((lo + (hi - lo) * r.unit()) * 1_000.0).round() / 1_000.0;
        let b_bids: Vec<Level> =
            (0..20).map(|i| lv(bid - 0.1 * i as f64, size(0.3, 1.0))).collect();
        let b_asks: Vec<Level> =
            (0..20).map(|i| lv(bid + 0.1 * (i + 1) as f64, size(0.3, 1.0))).collect();
        // FX: KRW-USDT, tick 1 KRW.
        let fx_bid = self.fx.floor();
        let f_bids: Vec<Level> = (0..5).map(|i| lv(fx_bid - i as f64, 1_000_000.0)).collect();
        let f_asks: Vec<Level> = (0..5).map(|i| lv(fx_bid + 1.0 + i as f64, 1_000_000.0)).collect();
        // Upbit KRW-BTC: the premium over Binance's ask at the FX ask, tick 1,000 KRW.
        let b_ask = bid + 0.1;
        let raw = b_ask * (fx_bid + 1.0) * (1.0 + self.premium);
        let tick = TickRule::UpbitKrw;
        let u_bid = tick.round_down(Price((raw * SCALE as f64) as i64)).0 as f64 / SCALE as f64;
        let u_bids: Vec<Level> =
            (0..15).map(|i| lv(u_bid - 1_000.0 * i as f64, size(0.2, 0.6))).collect();
        let u_asks: Vec<Level> =
            (0..15).map(|i| lv(u_bid + 20_000.0 + 1_000.0 * i as f64, size(0.2, 0.6))).collect();
        self.books[BTCUSDT.0 as usize] = (b_bids, b_asks);
        self.books[KRW_USDT.0 as usize] = (f_bids, f_asks);
        self.books[KRW_BTC.0 as usize] = (u_bids, u_asks);
    }

    /// Advances the market by `dt_ms` and returns the messages the venues send for it:
    /// the Upbit KRW-BTC and KRW-USDT books and one Binance diff. `skip_id` loses one
    /// Binance update at the source (a `pu` gap).
    pub fn step(&mut self, now_ms: u64, dt_ms: u64, skip_id: bool) -> Vec<Md> {
        let dt = dt_ms as f64 / 1_000.0;
        let r = &mut self.rng;
        self.mid *= (0.000_3 * dt.sqrt() * r.normal()).exp();
        // Fast mean reversion to 2.9 % (stationary sd ≈ 0.2 %, a few seconds per swing),
        // so pairs open and close many times a minute; occasional jumps.
        self.premium += 0.5 * (0.029 - self.premium) * dt + 0.002 * dt.sqrt() * r.normal();
        if r.chance(0.002) {
            self.premium += 0.004 * r.normal();
        }
        self.fx += 0.05 * r.normal();
        let n = 1 + r.range(0, 2);
        let (old_bids, old_asks) = self.books[BTCUSDT.0 as usize].clone();
        self.render();
        let (bids, asks) = self.books[BTCUSDT.0 as usize].clone();
        // A diff with every current level plus removals of the levels that went away.
        let removed = |old: &[Level], new: &[Level]| -> Vec<Level> {
            old.iter()
                .filter(|o| !new.iter().any(|n| n.px == o.px))
                .map(|o| Level::new(o.px, Qty(0)))
                .collect()
        };
        let mut d_bids = bids.clone();
        d_bids.extend(removed(&old_bids, &bids));
        let mut d_asks = asks.clone();
        d_asks.extend(removed(&old_asks, &asks));
        if skip_id {
            // The event carrying `prev + 1 ..` was lost: the next one still says pu = the
            // lost event's u, which the client never saw.
            self.last_id += n;
        }
        let first = self.last_id + 1;
        let last = self.last_id + n;
        let pu = self.last_id;
        self.last_id = last;
        let diff = Md {
            inst: BTCUSDT,
            exch_ms: now_ms,
            kind: MdKind::Depth { first, last, prev: pu },
            bids: d_bids,
            asks: d_asks,
        };
        self.last_diff = Some(diff.clone());
        let book = |inst: InstrumentId, s: &Self| Md {
            inst,
            exch_ms: now_ms,
            kind: MdKind::Book { last_id: 0 },
            bids: s.books[inst.0 as usize].0.clone(),
            asks: s.books[inst.0 as usize].1.clone(),
        };
        let u = book(KRW_BTC, self);
        if self.upbit_history.len() == 16 {
            self.upbit_history.pop_front();
        }
        self.upbit_history.push_back(u.clone());
        vec![u, book(KRW_USDT, self), diff]
    }

    /// An Upbit book from 2–15 steps ago (a timestamp regression), if there is one.
    pub fn old_upbit_book(&mut self) -> Option<Md> {
        let n = self.upbit_history.len();
        if n < 3 {
            return None;
        }
        let back = 2 + self.rng.range(0, (n - 3) as u64) as usize;
        self.upbit_history.get(n - 1 - back).cloned()
    }

    /// The Binance REST snapshot now (`lastUpdateId` = the last id sent).
    pub fn snapshot(&self, inst: InstrumentId, now_ms: u64) -> Md {
        Md {
            inst,
            exch_ms: now_ms,
            kind: MdKind::Book { last_id: self.last_id },
            bids: self.books[inst.0 as usize].0.clone(),
            asks: self.books[inst.0 as usize].1.clone(),
        }
    }
}
