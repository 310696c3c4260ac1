//! One deterministic run: the real engine, the fake venues, the simulated network, the
//! seeded market and faults, a simulated clock in 10 ms steps, and the checker after
//! every step. Safety phase (faults on), then liveness phase (faults off) until the
//! system is flat or hedged and reconciled, or the deadline says it never got there.

use kimp_core::action::{Action, Alert, Outbox, Record, TradingState};
use kimp_core::config::EngineConfig;
use kimp_core::engine::{Engine, Markets};
use kimp_core::event::{
    Balance, BookSnapshot, Control, DepthDiff, Event, Funding, OrderEvent, OrderEventKind,
    PositionReport, RejectReason,
};
use kimp_core::instrument::{InstrumentId, Symbol, Venue};
use kimp_core::pair::PairState;
use kimp_core::testkit::{BTCUSDT, KRW_BTC, btc_markets};
use kimp_core::units::{Nanos, Price, Qty, SCALE};

use super::check::Checker;
use super::faults::FaultMix;
use super::market::{Market, Md, MdKind};
use super::net::{Chan, Msg, Net};
use super::venue::FakeVenue;
use crate::sim::rng::Rng;

/// Simulated ms per step (the engine timer's cadence).
pub const STEP_MS: u64 = 10;
/// Market-data cadence, ms.
const MD_MS: u64 = 100;
/// Binance's default `recvWindow`: a request older than this at the venue is refused.
const RECV_WINDOW_MS: u64 = 5_000;
const START_KRW: i64 = 1_000_000_000;
const START_BTC: i64 = 10;
const START_USDT: i64 = 1_000_000;

/// What one run does.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Safety phase length (faults on), simulated ms.
    pub safety_ms: u64,
    /// Liveness deadline after the safety phase, simulated ms.
    pub liveness_ms: u64,
    /// The fault mix; `None` = chosen from the seed (swarm).
    pub faults: Option<FaultMix>,
    /// Engine configuration.
    pub engine: EngineConfig,
    /// Print every engine event and its actions to stderr (debugging a seed).
    pub trace: bool,
    /// A deliberate bug in the harness's runtime model, to prove the checker catches it.
    pub mutant: Option<Mutant>,
}

/// Deliberate bugs the checker must catch (its own tests: a checker that cannot fail
/// proves nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutant {
    /// The gateway sends every new order twice (I1).
    DoubleSend,
    /// Order records are not journaled before the send (I1).
    SendBeforeJournal,
    /// Fill records are not journaled (I3, I7).
    LoseFill,
    /// After a gap the gateway hands the engine a snapshot the checker never sees
    /// delivered — the engine trades on a book the checker knows is gapped (I6).
    BlindResync,
    /// The engine timer never runs (I4).
    NoTimer,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            safety_ms: 60_000,
            liveness_ms: 60_000,
            faults: None,
            engine: EngineConfig::default(),
            trace: false,
            mutant: None,
        }
    }
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Seed.
    pub seed: u64,
    /// Fault mix of the safety phase.
    pub mix: FaultMix,
    /// Simulated ms run.
    pub sim_ms: u64,
    /// Invariant violations (empty = pass).
    pub violations: Vec<String>,
    /// Figures.
    pub fig: super::check::Figures,
    /// The liveness phase converged.
    pub converged: bool,
}

impl Outcome {
    /// True when no invariant was violated and the liveness phase converged.
    pub fn ok(&self) -> bool {
        self.violations.is_empty() && self.converged
    }

    /// One line for the swarm output.
    pub fn line(&self) -> String {
        format!(
            "seed={} {} sim={}s intents={} orders={} fills={} crashes={} unknowns={} resyncs={} decisions={}{}",
            self.seed,
            if self.ok() { "ok" } else { "FAIL" },
            self.sim_ms / 1_000,
            self.fig.intents,
            self.fig.places,
            self.fig.fills,
            self.fig.crashes,
            self.fig.unknowns,
            self.fig.resyncs,
            self.fig.decisions,
            if self.ok() {
                String::new()
            } else {
                format!(
                    "\n  fault mix: {}\n  {}\n  reproduce: kimp sim swarm --seeds 1 --start {}",
                    self.mix.describe(),
                    self.violations.join("\n  "),
                    self.seed
                )
            }
        )
    }
}

struct Sim {
    cfg: RunConfig,
    mix: FaultMix,
    now: u64,
    markets: Markets,
    engine: Option<Engine>,
    out: Outbox,
    epoch: u32,
    market: Market,
    venue: FakeVenue,
    net: Net,
    journal: Vec<(u64, Record)>,
    chk: Checker,
    r_net: Rng,
    r_venue: Rng,
    r_ops: Rng,
    reconciling: bool,
    snapshot_pending: bool,
    resync_pending: bool,
    crash_pending: Option<u64>,
    restart_at: Option<u64>,
    down_until: [u64; 2],
    was_down: [bool; 2],
    stall_until: [u64; 2],
    blind_resync: bool,
}

/// The engine event of a market-data message (borrowing its levels).
fn md_event(md: &Md) -> Event<'_> {
    match md.kind {
        MdKind::Book { last_id } => Event::Book(BookSnapshot {
            inst: md.inst,
            exch_ts: ns(md.exch_ms),
            last_update_id: last_id,
            bids: &md.bids,
            asks: &md.asks,
        }),
        MdKind::Depth { first, last, prev } => Event::Depth(DepthDiff {
            inst: md.inst,
            exch_ts: ns(md.exch_ms),
            first_id: first,
            last_id: last,
            prev_last_id: Some(prev),
            bids: &md.bids,
            asks: &md.asks,
        }),
    }
}

fn ns(ms: u64) -> Nanos {
    Nanos::from_ms(ms)
}

/// Runs one seed.
pub fn run_seed(seed: u64, cfg: &RunConfig) -> Outcome {
    let mix = cfg.faults.unwrap_or_else(|| FaultMix::from_seed(seed));
    let markets = btc_markets();
    let n = markets.instruments.len();
    let risk = cfg.engine.risk;
    let mut s = Sim {
        cfg: cfg.clone(),
        mix,
        now: 1_000,
        chk: Checker::new(
            n,
            markets.coins.len(),
            risk.book_age_ms_max,
            risk.orphan_ms_hard,
            STEP_MS,
        ),
        markets,
        engine: None,
        out: Outbox::with_capacity(512),
        epoch: 0,
        market: Market::new(seed),
        venue: FakeVenue::new(n),
        net: Net::default(),
        journal: Vec::new(),
        r_net: Rng::stream(seed, 0x4E37),
        r_venue: Rng::stream(seed, 0x7E40),
        r_ops: Rng::stream(seed, 0x0F5),
        reconciling: false,
        snapshot_pending: false,
        resync_pending: false,
        crash_pending: None,
        restart_at: None,
        down_until: [0; 2],
        was_down: [false; 2],
        stall_until: [0; 2],
        blind_resync: false,
    };
    s.restart();
    let start = s.now;
    let safety_end = start + cfg.safety_ms;
    let deadline = safety_end + cfg.liveness_ms;
    let mut converged = false;
    while s.now < deadline {
        if s.now == safety_end {
            s.mix = FaultMix::NONE;
        }
        s.step();
        if s.now >= safety_end && s.converged() {
            converged = true;
            s.chk.fig.converge_ms = s.now - safety_end;
            let coins: Vec<(InstrumentId, InstrumentId)> =
                s.markets.coins.iter().map(|c| (c.upbit, c.binance)).collect();
            if let Some(e) = s.engine.as_ref() {
                s.chk.finish(s.now, e, &s.venue, &coins);
            }
            break;
        }
        s.now += STEP_MS;
    }
    if !converged {
        let state = s.engine.as_ref().map(|e| {
            format!(
                "{:?}, {} live orders, pair {:?}",
                e.trading_state(),
                e.live_orders().count(),
                e.pair(0).map(|p| (p.state, p.u.pos.0, p.b.pos.0))
            )
        });
        let unmatched = s.chk.unmatched_fills(&s.venue);
        s.chk.violations.push(format!(
            "liveness: not flat/hedged and reconciled {} ms after faults stopped: {state:?}; \
             reconciling {}, order traffic in flight {}, fills the journal lacks {unmatched:?}",
            cfg.liveness_ms,
            s.reconciling,
            s.net.order_traffic()
        ));
    }
    Outcome {
        seed,
        mix,
        sim_ms: s.now - start,
        violations: std::mem::take(&mut s.chk.violations),
        fig: std::mem::take(&mut s.chk.fig),
        converged,
    }
}

impl Sim {
    fn per_step(&self, per_s: f64) -> f64 {
        per_s * STEP_MS as f64 / 1_000.0
    }

    fn step(&mut self) {
        let now = self.now;
        // Faults that are events of their own.
        for v in 0..2 {
            if now >= self.down_until[v]
                && now >= self.stall_until[v]
                && self.r_net.chance(self.per_step(self.mix.disconnect_per_s))
            {
                self.down_until[v] = now + self.r_net.range(100, 3_000);
                self.was_down[v] = true;
                let venue = if v == 0 { Venue::Upbit } else { Venue::Binance };
                let chan = if v == 0 { Chan::UpbitMd } else { Chan::BinanceMd };
                self.net.send(now, chan, 0, false, Msg::FeedDown(venue));
            }
            if now >= self.down_until[v]
                && now >= self.stall_until[v]
                && self.r_net.chance(self.per_step(self.mix.stall_per_s))
            {
                self.stall_until[v] = now + self.r_net.range(200, 3_000);
            }
            if self.was_down[v] && now >= self.down_until[v] {
                self.was_down[v] = false;
                if v == 1 {
                    // Reconnected: the depth stream needs a snapshot (the runtime asks on open).
                    self.ask_snapshot(false);
                }
            }
        }
        if self.crash_pending.is_none()
            && self.engine.is_some()
            && self.r_ops.chance(self.per_step(self.mix.crash_per_s))
        {
            self.crash_pending = Some(now);
        }
        if self.engine.is_some() && self.r_ops.chance(self.per_step(self.mix.operator_per_s)) {
            let c = match self.r_ops.range(0, 4) {
                0 | 1 => Control::Stop,
                2 | 3 => Control::Resume,
                _ => Control::Flatten(None),
            };
            self.feed(&Event::Control(c));
        }
        if now.is_multiple_of(MD_MS) {
            self.market_data();
        }
        if now.is_multiple_of(1_000) {
            let f = Funding {
                inst: BTCUSDT,
                exch_ts: ns(now),
                mark: Price((self.market.mid * SCALE as f64) as i64),
                rate_e8: 10_000,
                next_funding: ns(8 * 3_600_000),
            };
            self.feed(&Event::Funding(f));
        }
        while let Some(m) = self.net.pop_due(now) {
            self.deliver(m);
        }
        if std::mem::take(&mut self.blind_resync) {
            // The mutant: a snapshot the checker is not told about.
            let snap = self.market.snapshot(BTCUSDT, now);
            let diff = self.market.last_diff.clone();
            for md in std::iter::once(snap).chain(diff) {
                let ev = md_event(&md);
                self.feed(&ev);
            }
        }
        if self.restart_at.is_some_and(|t| now >= t) {
            self.restart();
        }
        if self.cfg.mutant != Some(Mutant::NoTimer) {
            self.feed(&Event::Timer);
        }
        if self.reconciling
            && !self.snapshot_pending
            && self.engine.as_ref().is_some_and(Engine::outcomes_known)
        {
            self.reconciling = false;
            self.feed(&Event::Control(Control::ReconcileDone));
        }
        if let Some(t) = self.crash_pending
            && now - t > 2_000
        {
            self.crash();
        }
        self.chk.step(now, self.engine.as_ref());
    }

    fn converged(&self) -> bool {
        let Some(e) = self.engine.as_ref() else { return false };
        !self.reconciling
            && e.trading_state() != TradingState::Reconciling
            && e.live_orders().count() == 0
            && (0..e.coin_count())
                .all(|c| e.pair(c as u16).is_none_or(|p| p.state == PairState::Hedged))
            && !self.net.order_traffic()
            && self.chk.fills_match(&self.venue)
    }

    // ----- market data -----------------------------------------------------------------

    fn market_data(&mut self) {
        let now = self.now;
        let skip = self.r_net.chance(self.mix.depth_gap);
        let msgs = self.market.step(now, MD_MS, skip);
        for md in msgs {
            let v = usize::from(md.inst == BTCUSDT);
            if now < self.down_until[v] || now < self.stall_until[v] {
                continue;
            }
            let upbit_book = md.inst == KRW_BTC;
            self.send_md(md);
            if upbit_book
                && self.r_net.chance(self.mix.upbit_regress)
                && let Some(old) = self.market.old_upbit_book()
            {
                self.send_md(old);
            }
        }
    }

    fn send_md(&mut self, md: Md) {
        let chan = if md.inst == BTCUSDT { Chan::BinanceMd } else { Chan::UpbitMd };
        let r = &mut self.r_net;
        if r.chance(self.mix.md_drop) {
            return;
        }
        let mut delay = r.range(1, 5);
        if r.chance(self.mix.md_delay) {
            delay += r.range(200, 1_500);
        }
        let overtaken = r.chance(self.mix.md_reorder);
        if overtaken {
            delay += r.range(1, 150);
        }
        let dup = r.chance(self.mix.md_dup);
        if dup {
            self.net.send(self.now, chan, delay, overtaken, Msg::Md(md.clone()));
        }
        self.net.send(self.now, chan, delay, overtaken, Msg::Md(md));
    }

    fn ask_snapshot(&mut self, for_resync: bool) {
        if for_resync && self.resync_pending {
            return;
        }
        self.resync_pending = true;
        let d = self.rest_delay();
        self.net.send(self.now, Chan::Rest, d, false, Msg::Snapshot(BTCUSDT));
    }

    fn rest_delay(&mut self) -> u64 {
        let mut d = self.r_net.range(1, 20);
        if self.r_net.chance(self.mix.rest_spike) {
            d += self.r_net.range(500, 5_000);
        }
        d
    }

    // ----- delivery --------------------------------------------------------------------

    fn deliver(&mut self, m: Msg) {
        if m.to_engine() && self.engine.is_none() {
            return; // the process is down: its sockets are gone
        }
        match m {
            Msg::Md(md) => self.feed_md(&md),
            Msg::Snapshot(inst) => {
                self.resync_pending = false;
                self.snapshot_pending = false;
                let snap = self.market.snapshot(inst, self.now);
                self.feed_md(&snap);
                // The runtime buffers diffs while the snapshot is on its way and applies
                // them after it: the bridging diff comes next.
                if let Some(d) = self.market.last_diff.clone() {
                    self.feed_md(&d);
                }
            }
            Msg::Order(oe) => self.feed(&Event::Order(oe)),
            Msg::FeedDown(v) => {
                self.chk.on_feed_down(v);
                self.feed(&Event::FeedDown(v));
            }
            Msg::Place(req, sent) => self.venue_place(req, sent),
            Msg::Query(id, _) => {
                let evs = self.venue.query(id);
                self.reply(id, evs, true);
            }
            Msg::Cancel(id, _) => {
                let evs = self.venue.query(id);
                self.reply(id, evs, true);
            }
        }
    }

    fn feed_md(&mut self, md: &Md) {
        self.chk.on_md(md, self.now);
        let ev = md_event(md);
        self.feed(&ev);
    }

    fn venue_place(&mut self, req: kimp_core::order::OrderRequest, sent: u64) {
        let inst = self.markets.instruments[req.inst.0 as usize];
        let r = &mut self.r_venue;
        let mut reject = if r.chance(self.mix.reject) {
            Some(if r.chance(0.5) {
                RejectReason::InsufficientBalance
            } else {
                RejectReason::Other(-4131)
            })
        } else {
            None
        };
        if inst.venue == Venue::Binance && self.now - sent > RECV_WINDOW_MS {
            reject = Some(RejectReason::Other(-1021));
        }
        let cap = r.chance(self.mix.partial).then(|| 0.1 + 0.8 * r.unit());
        let coin_free = START_BTC * SCALE + self.venue.pos[KRW_BTC.0 as usize];
        let krw_free = START_KRW * SCALE + self.venue.krw;
        let placed = self.venue.place(
            &req,
            &inst,
            self.market.book(req.inst),
            reject,
            cap,
            coin_free,
            krw_free,
        );
        self.chk.on_venue_order(req.cl_id, &self.venue, self.now);
        self.reply(req.cl_id, placed.reply, true);
        for k in placed.stream {
            let r = &mut self.r_net;
            if r.chance(self.mix.stream_drop) {
                continue;
            }
            let mut d = r.range(1, 10);
            let late = r.chance(self.mix.stream_reorder);
            if late {
                d += r.range(0, 800);
            }
            let dup = r.chance(self.mix.stream_dup);
            let oe = OrderEvent { cl_id: req.cl_id, exch_ts: ns(self.now), kind: k };
            if dup {
                self.net.send(self.now, Chan::Stream, d + 1, late, Msg::Order(oe));
            }
            self.net.send(self.now, Chan::Stream, d, late, Msg::Order(oe));
        }
    }

    /// A REST reply; lost with `reply_drop` (then, half the time, the gateway reports
    /// the unknown outcome at its deadline).
    fn reply(&mut self, id: kimp_core::order::ClientId, evs: Vec<OrderEventKind>, droppable: bool) {
        if droppable && self.r_net.chance(self.mix.reply_drop) {
            self.gateway_unknown(id);
            return;
        }
        let d = self.rest_delay();
        for k in evs {
            let oe = OrderEvent { cl_id: id, exch_ts: ns(self.now), kind: k };
            self.net.send(self.now, Chan::Rest, d, false, Msg::Order(oe));
        }
    }

    fn gateway_unknown(&mut self, id: kimp_core::order::ClientId) {
        if self.r_net.chance(0.5) {
            let oe = OrderEvent { cl_id: id, exch_ts: ns(self.now), kind: OrderEventKind::Unknown };
            let d = self.cfg.engine.risk.order_timeout_ms;
            self.net.send(self.now, Chan::Rest, d, false, Msg::Order(oe));
        }
    }

    // ----- the engine process ----------------------------------------------------------

    fn feed(&mut self, ev: &Event<'_>) {
        let Some(e) = self.engine.as_mut() else { return };
        let before = e.trading_state();
        self.out.clear();
        e.on_event(ns(self.now), ev, &mut self.out);
        self.chk.set_engine_books(e);
        let acts: Vec<Action> = self.out.as_slice().to_vec();
        if self.cfg.trace && (!matches!(ev, Event::Timer | Event::Funding(_)) || !acts.is_empty()) {
            let short = match ev {
                Event::Book(b) => format!("Book({}, exch {})", b.inst.0, b.exch_ts.0 / 1_000_000),
                Event::Depth(d) => {
                    format!("Depth(U {} u {} pu {:?})", d.first_id, d.last_id, d.prev_last_id)
                }
                other => format!("{other:?}"),
            };
            eprintln!("{} {:?} {short}", self.now, before);
            for a in &acts {
                if !matches!(a, Action::Telemetry(_)) {
                    eprintln!("    {a:?}");
                }
            }
        }
        let interesting = acts
            .iter()
            .any(|a| matches!(a, Action::Place(_) | Action::Journal(Record::Fill { .. })));
        let crash = self.crash_pending.is_some() && interesting;
        let n = if crash { self.r_ops.range(0, acts.len() as u64) as usize } else { acts.len() };
        for a in &acts[..n] {
            self.execute(a, before);
        }
        if crash {
            self.crash();
        }
    }

    /// Executes one action as the runtime does: journal first (in outbox order), then the
    /// wire.
    fn execute(&mut self, a: &Action, before: TradingState) {
        let now = self.now;
        match *a {
            Action::Journal(r) => {
                let lost = matches!(
                    (self.cfg.mutant, r),
                    (Some(Mutant::LoseFill), Record::Fill { .. })
                        | (Some(Mutant::SendBeforeJournal), Record::Order(_))
                );
                if !lost {
                    self.journal.push((now, r));
                    self.chk.on_record(&r, before, now, &self.venue);
                }
            }
            Action::Place(req) => {
                self.chk.on_place(req.cl_id, now);
                let r = &mut self.r_net;
                if r.chance(self.mix.request_drop) {
                    self.gateway_unknown(req.cl_id);
                    return;
                }
                let d = if r.chance(self.mix.late_request) {
                    r.range(1_000, 4_500)
                } else {
                    r.range(1, 10)
                };
                self.net.send(now, Chan::Rest, d, false, Msg::Place(req, now));
                if self.cfg.mutant == Some(Mutant::DoubleSend) {
                    self.net.send(now, Chan::Rest, d + 1, false, Msg::Place(req, now));
                }
            }
            Action::Query { cl_id, inst } => {
                let d = self.r_net.range(1, 10);
                self.net.send(now, Chan::Rest, d, false, Msg::Query(cl_id, inst));
            }
            Action::Cancel { cl_id, inst } => {
                let d = self.r_net.range(1, 10);
                self.net.send(now, Chan::Rest, d, false, Msg::Cancel(cl_id, inst));
            }
            Action::Resync(inst) => {
                self.chk.on_resync(inst, now);
                if self.cfg.mutant == Some(Mutant::BlindResync) {
                    self.blind_resync = true;
                } else {
                    self.ask_snapshot(true);
                }
            }
            Action::Alert(Alert::Halted(_)) => self.chk.fig.halts += 1,
            Action::Alert(_) | Action::Telemetry(_) => {}
        }
    }

    fn crash(&mut self) {
        if self.cfg.trace {
            eprintln!("{} CRASH", self.now);
        }
        self.chk.fig.crashes += 1;
        self.engine = None;
        self.crash_pending = None;
        self.net.drop_engine_bound();
        self.reconciling = false;
        self.resync_pending = false;
        self.restart_at = Some(self.now + self.r_ops.range(50, 1_500));
    }

    /// Starts an engine process: replay the journal into a new epoch, load balances and
    /// positions from the venues, query every order of unknown outcome, resync books.
    fn restart(&mut self) {
        self.restart_at = None;
        self.epoch += 1;
        let mut e = match Engine::new(self.cfg.engine, &self.markets, self.epoch) {
            Ok(e) => e,
            Err(err) => {
                self.chk.violations.push(format!("engine config refused: {err}"));
                return;
            }
        };
        for (ts, r) in &self.journal {
            e.replay(ns(*ts), r);
        }
        self.engine = Some(e);
        self.chk.on_restart();
        let sym = |s: &str| Symbol::new(s).unwrap_or_default();
        let balances = [
            (Venue::Upbit, "KRW", START_KRW * SCALE + self.venue.krw),
            (Venue::Upbit, "BTC", START_BTC * SCALE + self.venue.pos[KRW_BTC.0 as usize]),
            (Venue::Binance, "USDT", START_USDT * SCALE - self.venue.usdt_fees),
        ];
        for (venue, asset, free) in balances {
            self.feed(&Event::Balance(Balance {
                venue,
                asset: sym(asset),
                free: Qty(free),
                locked: Qty(0),
            }));
        }
        let pos = self.venue.pos[BTCUSDT.0 as usize];
        self.feed(&Event::Position(PositionReport { inst: BTCUSDT, qty: Qty(pos) }));
        if let Some(e) = self.engine.as_mut() {
            let before = e.trading_state();
            self.out.clear();
            e.start_reconcile(ns(self.now), &mut self.out);
            let acts: Vec<Action> = self.out.as_slice().to_vec();
            for a in &acts {
                self.execute(a, before);
            }
        }
        self.reconciling = true;
        self.snapshot_pending = true;
        self.resync_pending = false;
        self.ask_snapshot(false);
    }
}
