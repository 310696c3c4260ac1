//! The invariant checker (RELIABILITY.md §9, I1–I7), run after every engine step, and the
//! figures the reliability table reports.
//!
//! It never trusts the engine's own account: it keeps its own copy of the journal's
//! meaning (which ids were journaled, which intents, which fills), its own mirror of what
//! market data reached the engine (to judge I6), and compares both with what the venues
//! actually did.

use std::collections::{HashMap, HashSet};

use kimp_core::action::{Purpose, Record, TradingState};
use kimp_core::engine::Engine;
use kimp_core::event::Side;
use kimp_core::instrument::{InstrumentId, Venue};
use kimp_core::order::{ClientId, OrderState};
use kimp_core::pair::PairState;
use kimp_core::testkit::{BTCUSDT, KRW_BTC, KRW_USDT};

use super::market::{Md, MdKind};
use super::venue::FakeVenue;

/// Differences in base units (1e-8 BTC) below this count as dust, not as an orphan:
/// under Upbit's 5,000 KRW minimum at these prices.
pub const DUST: i64 = 4_000;
/// Tolerance of the venue-level hedge check: one Binance lot (0.001) plus dust.
pub const HEDGE_TOL: i64 = 100_000 + DUST;

/// Figures of one run.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// Intents journaled.
    pub intents: u64,
    /// Orders placed (Place actions executed).
    pub places: u64,
    /// Orders the venues received.
    pub venue_orders: u64,
    /// Fill records journaled.
    pub fills: u64,
    /// Engine crashes (and restarts).
    pub crashes: u64,
    /// Orders that went through the `Unknown` state.
    pub unknowns: u64,
    /// Resync requests (gaps the engine detected).
    pub resyncs: u64,
    /// Entry and exit decisions.
    pub decisions: u64,
    /// Halts (alerts).
    pub halts: u64,
    /// Orphan (unhedged) durations by the journal's fills, ms.
    pub orphan_ms: Vec<u64>,
    /// Gap detected → snapshot applied, ms.
    pub resync_ms: Vec<u64>,
    /// Hard orphan deadline crossed → halted, ms.
    pub halt_latency_ms: Vec<u64>,
    /// Unknown outcome → resolved, ms.
    pub unknown_resolve_ms: Vec<u64>,
    /// Largest exchange-time age of a book used in a decision, ms.
    pub max_decision_age_ms: u64,
    /// Decisions on a gapped, regressed, down or too-old book (must be 0).
    pub stale_decisions: u64,
    /// Client ids placed more than once (must be 0).
    pub duplicates: u64,
    /// Quantity the venue filled that the journal never recorded, at the end (must be 0).
    pub lost_fill_qty: i64,
    /// Simulated ms from the start of the liveness phase to convergence.
    pub converge_ms: u64,
}

/// What reached the engine for one book.
#[derive(Clone, Copy, Debug, Default)]
struct Mirror {
    recv: Option<u64>,
    exch: u64,
    max_exch: u64,
    last_u: Option<u64>,
    awaiting: bool,
    gap: bool,
    down: bool,
    resync_asked: Option<u64>,
}

/// The checker.
#[derive(Debug)]
pub struct Checker {
    /// Violations found (each names the invariant).
    pub violations: Vec<String>,
    /// Figures.
    pub fig: Figures,
    book_age_ms_max: u64,
    orphan_ms_hard: u64,
    timer_ms: u64,
    placed: HashSet<ClientId>,
    journaled: HashMap<ClientId, (Side, InstrumentId)>,
    intent_ids: HashSet<ClientId>,
    journal_filled: HashMap<ClientId, i64>,
    journal_pos: Vec<i64>,
    order_pair: HashMap<ClientId, (u16, u32)>,
    cur_pair: Vec<Option<u32>>,
    ledger: Vec<(i64, i64)>,
    orphan_since: Vec<Option<u64>>,
    /// Per coin: (unhedged since, halt measured, violation reported).
    halt_cross: Vec<Option<(u64, bool, bool)>>,
    unknown_since: HashMap<ClientId, u64>,
    mirror: Vec<Mirror>,
    /// Exchange time of each book the engine holds, after the current event.
    engine_exch: Vec<u64>,
}

impl Checker {
    /// A checker for `n` instruments and `coins` coins under the engine's limits.
    pub fn new(
        n: usize,
        coins: usize,
        book_age_ms_max: u64,
        orphan_ms_hard: u64,
        timer_ms: u64,
    ) -> Self {
        Self {
            violations: Vec::new(),
            fig: Figures::default(),
            book_age_ms_max,
            orphan_ms_hard,
            timer_ms,
            placed: HashSet::new(),
            journaled: HashMap::new(),
            intent_ids: HashSet::new(),
            journal_filled: HashMap::new(),
            journal_pos: vec![0; n],
            order_pair: HashMap::new(),
            cur_pair: vec![None; coins],
            ledger: vec![(0, 0); coins],
            orphan_since: vec![None; coins],
            halt_cross: vec![None; coins],
            unknown_since: HashMap::new(),
            mirror: vec![Mirror::default(); n],
            engine_exch: vec![0; n],
        }
    }

    fn fail(&mut self, now: u64, what: String) {
        if self.violations.len() < 50 {
            self.violations.push(format!("t={now}ms {what}"));
        }
    }

    // ----- market data mirror (I6) -------------------------------------------------------

    /// A market-data message was fed to the engine.
    pub fn on_md(&mut self, md: &Md, now: u64) {
        let m = &mut self.mirror[md.inst.0 as usize];
        match md.kind {
            MdKind::Book { last_id } => {
                m.recv = Some(now);
                m.exch = md.exch_ms;
                m.max_exch = m.max_exch.max(md.exch_ms);
                m.down = false;
                if md.inst == BTCUSDT {
                    m.last_u = Some(last_id);
                    m.awaiting = true;
                    m.gap = false;
                    if let Some(t) = m.resync_asked.take() {
                        self.fig.resync_ms.push(now - t);
                    }
                }
            }
            MdKind::Depth { first, last, prev } => {
                if m.down || m.gap {
                    return;
                }
                let Some(l) = m.last_u else { return };
                let applied = if m.awaiting {
                    if last < l {
                        return;
                    }
                    first <= l && l <= last
                } else {
                    if last <= l {
                        return;
                    }
                    prev == l
                };
                if applied {
                    m.awaiting = false;
                    m.last_u = Some(last);
                    m.recv = Some(now);
                    m.exch = md.exch_ms;
                    m.max_exch = m.max_exch.max(md.exch_ms);
                } else {
                    m.gap = true;
                }
            }
        }
    }

    /// A venue's feeds went down.
    pub fn on_feed_down(&mut self, venue: Venue) {
        for (i, m) in self.mirror.iter_mut().enumerate() {
            let v = if i == BTCUSDT.0 as usize { Venue::Binance } else { Venue::Upbit };
            if v == venue {
                // A new connection starts over: what came before says nothing about
                // the order of what comes after.
                *m = Mirror { down: true, resync_asked: m.resync_asked, ..Mirror::default() };
            }
        }
    }

    /// The engine asked for a snapshot (it found a gap).
    pub fn on_resync(&mut self, inst: InstrumentId, now: u64) {
        self.fig.resyncs += 1;
        let m = &mut self.mirror[inst.0 as usize];
        m.resync_asked.get_or_insert(now);
    }

    /// The exchange times of the books the engine holds now.
    pub fn set_engine_books(&mut self, e: &Engine) {
        for (i, x) in self.engine_exch.iter_mut().enumerate() {
            *x = e.book(InstrumentId(i as u16)).map_or(0, |b| b.exch_ts.0 / 1_000_000);
        }
    }

    /// A new engine process starts with nothing.
    pub fn on_restart(&mut self) {
        for m in self.mirror.iter_mut() {
            *m = Mirror::default();
        }
        self.unknown_since.clear();
    }

    fn book_ok(&mut self, inst: InstrumentId, now: u64) -> Result<(), String> {
        let m = self.mirror[inst.0 as usize];
        let age = m.recv.map(|r| now - r);
        self.fig.max_decision_age_ms = self.fig.max_decision_age_ms.max(now - m.exch.min(now));
        if m.down {
            return Err(format!("book {} is down (feed lost)", inst.0));
        }
        if m.gap {
            return Err(format!("book {} has a detected gap", inst.0));
        }
        // Upbit books carry no sequence: holding an older book after a newer one reached
        // the engine is a regression (judged on the book the engine actually holds).
        let held = self.engine_exch[inst.0 as usize];
        if inst != BTCUSDT && held < m.max_exch {
            return Err(format!(
                "book {} regressed: exchange time {held} after {} was seen",
                inst.0, m.max_exch
            ));
        }
        match age {
            None => Err(format!("book {} never received", inst.0)),
            Some(a) if a > self.book_age_ms_max => {
                Err(format!("book {} is {a} ms old (max {})", inst.0, self.book_age_ms_max))
            }
            _ => Ok(()),
        }
    }

    // ----- the outbox ------------------------------------------------------------------

    /// A journal record was appended (`before`: the trading state before the event).
    pub fn on_record(&mut self, r: &Record, before: TradingState, now: u64, venue: &FakeVenue) {
        match *r {
            Record::Intent { pair, coin, purpose, orders, .. } => {
                self.fig.intents += 1;
                for id in orders.iter().flatten() {
                    self.intent_ids.insert(*id);
                    self.order_pair.insert(*id, (coin, pair));
                }
                if purpose == Purpose::Entry {
                    if let Some(c) = self.cur_pair.get_mut(coin as usize) {
                        *c = Some(pair);
                    }
                    if let Some(l) = self.ledger.get_mut(coin as usize) {
                        *l = (0, 0);
                    }
                }
                if matches!(purpose, Purpose::Entry | Purpose::Exit) {
                    self.fig.decisions += 1;
                    // I5: entries and exits only while active.
                    if before != TradingState::Active {
                        self.fail(now, format!("I5: {purpose:?} intent while {before:?}"));
                    }
                    // I6: every book the decision read was in sync, fresh and current.
                    for inst in [KRW_BTC, BTCUSDT, KRW_USDT] {
                        if let Err(e) = self.book_ok(inst, now) {
                            self.fig.stale_decisions += 1;
                            self.fail(now, format!("I6: {purpose:?} decision on a bad book: {e}"));
                        }
                    }
                }
            }
            Record::Order(req) => {
                self.journaled.insert(req.cl_id, (req.side, req.inst));
            }
            Record::Fill { cl_id, qty, .. } => {
                self.fig.fills += 1;
                let Some(&(side, inst)) = self.journaled.get(&cl_id) else {
                    self.fail(
                        now,
                        format!("I3: fill journaled for an order never journaled: {cl_id}"),
                    );
                    return;
                };
                let f = self.journal_filled.entry(cl_id).or_insert(0);
                *f += qty.0;
                let total = *f;
                // I3: never more than the venue filled (a fill applied twice).
                let v = venue.filled(&cl_id);
                if total > v {
                    self.fail(
                        now,
                        format!("I3: journal has {total} filled for {cl_id}, venue {v}"),
                    );
                }
                self.journal_pos[inst.0 as usize] += side.sign() * qty.0;
                if let Some(&(coin, pair)) = self.order_pair.get(&cl_id)
                    && self.cur_pair.get(coin as usize).copied().flatten() == Some(pair)
                {
                    let l = &mut self.ledger[coin as usize];
                    if inst == BTCUSDT {
                        l.1 += side.sign() * qty.0;
                    } else {
                        l.0 += side.sign() * qty.0;
                    }
                }
            }
            _ => {}
        }
    }

    /// A new order is about to leave (I1, I2).
    pub fn on_place(&mut self, id: ClientId, now: u64) {
        self.fig.places += 1;
        if !self.placed.insert(id) {
            self.fig.duplicates += 1;
            self.fail(now, format!("I1: client id {id} sent twice"));
        }
        if !self.journaled.contains_key(&id) || !self.intent_ids.contains(&id) {
            self.fail(now, format!("I1: {id} sent before its intent and order were journaled"));
        }
        if self.fig.places > 2 * self.fig.intents {
            self.fail(
                now,
                format!("I2: {} orders for {} intents", self.fig.places, self.fig.intents),
            );
        }
    }

    /// The venue received a new order.
    pub fn on_venue_order(&mut self, id: ClientId, venue: &FakeVenue, now: u64) {
        self.fig.venue_orders += 1;
        if venue.new_order_msgs.get(&id).copied().unwrap_or(0) > 1 {
            self.fig.duplicates += 1;
            self.fail(now, format!("I1: venue received {id} twice"));
        }
    }

    // ----- after every step -------------------------------------------------------------

    /// Checks that hold after every step (I4, I7) and measures orphans and unknowns.
    pub fn step(&mut self, now: u64, engine: Option<&Engine>) {
        // Orphans by the journal's own ledger (engine-independent, spans crashes).
        for c in 0..self.ledger.len() {
            let (u, b) = self.ledger[c];
            let open = (u + b).abs() > DUST;
            match (open, self.orphan_since[c]) {
                (true, None) => self.orphan_since[c] = Some(now),
                (false, Some(t)) => {
                    self.fig.orphan_ms.push(now - t);
                    self.orphan_since[c] = None;
                }
                _ => {}
            }
        }
        let Some(e) = engine else { return };
        let halted = matches!(e.trading_state(), TradingState::Halted(_));
        for c in 0..e.coin_count() {
            let Some(p) = e.pair(c as u16) else {
                self.halt_cross[c] = None;
                continue;
            };
            // I7: the engine's legs are the journal's fills for this pair.
            if self.cur_pair[c] == Some(p.id) {
                let (u, b) = self.ledger[c];
                if p.u.pos.0 != u || p.b.pos.0 != b {
                    self.fail(
                        now,
                        format!(
                            "I7: pair {} legs ({}, {}) but journal fills ({u}, {b})",
                            p.id, p.u.pos.0, p.b.pos.0
                        ),
                    );
                }
            }
            // I4: past the hard deadline (plus one timer period) the engine is halted.
            match p.unhedged_since {
                Some(since) => {
                    let since = since.0 / 1_000_000;
                    let cross = since + self.orphan_ms_hard;
                    if self.halt_cross[c].is_none_or(|h| h.0 != since) {
                        self.halt_cross[c] = Some((since, false, false));
                    }
                    if now >= cross
                        && let Some(h) = self.halt_cross[c].as_mut()
                    {
                        if halted && !h.1 {
                            h.1 = true;
                            self.fig.halt_latency_ms.push(now - cross);
                        }
                        if !halted && !h.2 && now > cross + 2 * self.timer_ms {
                            h.2 = true;
                            self.fail(
                                now,
                                format!(
                                    "I4: pair {} unhedged since {since} ms, past the hard deadline and not halted",
                                    p.id
                                ),
                            );
                        }
                    }
                }
                None => self.halt_cross[c] = None,
            }
        }
        // Unknown outcomes: when entered, when resolved.
        let mut live: HashSet<ClientId> = HashSet::new();
        for o in e.live_orders() {
            live.insert(o.req.cl_id);
            if o.state == OrderState::Unknown && !self.unknown_since.contains_key(&o.req.cl_id) {
                self.fig.unknowns += 1;
                self.unknown_since.insert(o.req.cl_id, now);
            }
        }
        let resolved: Vec<ClientId> =
            self.unknown_since.keys().filter(|k| !live.contains(k)).copied().collect();
        for k in resolved {
            if let Some(t) = self.unknown_since.remove(&k) {
                self.fig.unknown_resolve_ms.push(now - t);
            }
        }
    }

    /// True when every order the venues saw has all its fills in the journal.
    pub fn fills_match(&self, venue: &FakeVenue) -> bool {
        venue
            .orders
            .keys()
            .all(|id| self.journal_filled.get(id).copied().unwrap_or(0) == venue.filled(id))
    }

    /// Orders whose venue fill the journal does not have: (id, venue, journal).
    pub fn unmatched_fills(&self, venue: &FakeVenue) -> Vec<(String, i64, i64)> {
        let mut v: Vec<(String, i64, i64)> = venue
            .orders
            .keys()
            .filter_map(|id| {
                let j = self.journal_filled.get(id).copied().unwrap_or(0);
                let f = venue.filled(id);
                (j != f).then(|| (id.to_string(), f, j))
            })
            .collect();
        v.sort();
        v
    }

    /// The end of the liveness phase: nothing lost, positions equal, hedged.
    pub fn finish(
        &mut self,
        now: u64,
        engine: &Engine,
        venue: &FakeVenue,
        coins: &[(InstrumentId, InstrumentId)],
    ) {
        let mut lost = 0;
        let mut ids: Vec<&ClientId> = venue.orders.keys().collect();
        ids.sort();
        for id in ids {
            let j = self.journal_filled.get(id).copied().unwrap_or(0);
            let v = venue.filled(id);
            if j != v {
                lost += (v - j).abs();
                self.fail(now, format!("I3: {id}: venue filled {v}, journal {j} (lost fill)"));
            }
        }
        self.fig.lost_fill_qty = lost;
        for i in 0..self.journal_pos.len() {
            if self.journal_pos[i] != venue.pos[i] {
                self.fail(
                    now,
                    format!(
                        "I7: instrument {i}: journal position {} != venue {}",
                        self.journal_pos[i], venue.pos[i]
                    ),
                );
            }
        }
        for (c, &(u, b)) in coins.iter().enumerate() {
            let venue_unhedged = venue.pos[u.0 as usize] + venue.pos[b.0 as usize];
            let engine_unhedged = engine.pair(c as u16).map_or(0, |p| p.unhedged().0);
            if venue_unhedged.abs() > HEDGE_TOL {
                self.fail(
                    now,
                    format!("liveness: coin {c} not hedged at the venues ({venue_unhedged})"),
                );
            }
            if (venue_unhedged - engine_unhedged).abs() > HEDGE_TOL {
                self.fail(
                    now,
                    format!(
                        "I7: coin {c}: engine unhedged {engine_unhedged}, venues {venue_unhedged}"
                    ),
                );
            }
            if let Some(p) = engine.pair(c as u16)
                && p.state != PairState::Hedged
            {
                self.fail(now, format!("liveness: pair {} ended {:?}", p.id, p.state));
            }
        }
        if engine.live_orders().count() > 0 {
            self.fail(now, "liveness: orders still live".into());
        }
    }
}

/// Percentile (nearest rank) of `v`, 0 when empty.
pub fn pct(v: &[u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let k = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[k.clamp(1, s.len()) - 1]
}
