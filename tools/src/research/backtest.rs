//! The backtest loop: market events in time order, the very same `kimp_core::Engine`,
//! and the execution model answering its orders.
//!
//! Time is the events' time (a fake clock): before a market event at `t` is applied,
//! everything the execution model has due at or before `t` happens first (orders reaching
//! venues, reports reaching the engine), and while orders are in flight or a pair is not
//! hedged the engine gets `Timer` events at the runtime's cadence, as it would live.

use kimp_core::action::{Action, Alert, Outbox, Purpose, Record, Telemetry};
use kimp_core::config::EngineConfig;
use kimp_core::engine::{Engine, Markets};
use kimp_core::event::{Balance, Control, Event, Funding, FxQuote, FxSource};
use kimp_core::instrument::{InstrumentId, Symbol, Venue};
use kimp_core::pair::PairState;
use kimp_core::units::{Nanos, Price, Qty, SCALE};

use super::exec_model::{Balances, ExecConfig, ExecModel};
use super::metrics::{Collector, RunMetrics, RunResult};

/// Starting balances of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct StartBalances {
    /// Upbit KRW.
    pub krw: f64,
    /// Upbit inventory of each coin (base units), in the order of `Markets::coins`.
    pub coins: Vec<f64>,
    /// Binance USDT.
    pub usdt: f64,
}

/// Everything a run needs besides market data.
#[derive(Clone, Debug)]
pub struct RunSetup {
    /// Instruments, coins and FX book.
    pub markets: Markets,
    /// Engine configuration (strategy + risk).
    pub engine: EngineConfig,
    /// Execution model.
    pub exec: ExecConfig,
    /// Starting balances.
    pub balances: StartBalances,
    /// Capital the returns are measured against, KRW.
    pub capital_krw: f64,
    /// Engine timer cadence while orders are in flight (the runtime's `timer_ms`).
    pub timer_ms: u64,
    /// Equity is sampled at most this often (event time), ms.
    pub equity_every_ms: u64,
    /// Keep the premium and equity series (for the report); sweeps turn it off.
    pub keep_series: bool,
}

/// The backtest loop around one engine.
#[derive(Debug)]
pub struct Runner {
    engine: Engine,
    out: Outbox,
    acts: Vec<Action>,
    /// The simulated venues.
    pub exec: ExecModel,
    now: Nanos,
    timer_ms: u64,
    next_timer: Option<Nanos>,
    fx: f64,
    fx_inst: Option<InstrumentId>,
    upbit_of: Vec<InstrumentId>,
    binance_of: Vec<InstrumentId>,
    col: Collector,
    events: u64,
}

impl Runner {
    /// Builds the engine and the venues; nothing happens until [`Runner::start`].
    pub fn new(setup: &RunSetup) -> anyhow::Result<Self> {
        let engine = Engine::new(setup.engine, &setup.markets, 1)
            .map_err(|e| anyhow::anyhow!("config: {e}"))?;
        let n = setup.markets.instruments.len();
        let mut bal = Balances {
            krw: fp(setup.balances.krw),
            coin: vec![0; n],
            usdt: fp(setup.balances.usdt),
            ..Default::default()
        };
        for (c, spec) in setup.markets.coins.iter().enumerate() {
            bal.coin[spec.upbit.0 as usize] =
                fp(setup.balances.coins.get(c).copied().unwrap_or(0.0));
        }
        let mut exec_cfg = setup.exec.clone();
        exec_cfg.leverage = setup.engine.strategy.leverage;
        let exec = ExecModel::new(exec_cfg, &setup.markets.instruments, bal);
        Ok(Self {
            engine,
            out: Outbox::with_capacity(512),
            acts: Vec::with_capacity(512),
            exec,
            now: Nanos(0),
            timer_ms: setup.timer_ms.max(1),
            next_timer: None,
            fx: 0.0,
            fx_inst: setup.markets.fx,
            upbit_of: setup.markets.coins.iter().map(|c| c.upbit).collect(),
            binance_of: setup.markets.coins.iter().map(|c| c.binance).collect(),
            col: Collector::new(setup),
            events: 0,
        })
    }

    /// The engine (read-only: tests and reports look at pairs and stats).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Current event time.
    pub fn now(&self) -> Nanos {
        self.now
    }

    /// Reports the starting balances and finishes reconciliation at `t`.
    pub fn start(&mut self, t: Nanos, setup: &RunSetup) {
        self.now = t;
        let mut balances = vec![
            (Venue::Upbit, "KRW", setup.balances.krw),
            (Venue::Binance, "USDT", setup.balances.usdt),
        ];
        for (c, spec) in setup.markets.coins.iter().enumerate() {
            balances.push((
                Venue::Upbit,
                spec.name.as_str(),
                setup.balances.coins.get(c).copied().unwrap_or(0.0),
            ));
        }
        for (venue, asset, v) in balances {
            let Some(asset) = Symbol::new(asset) else { continue };
            let ev = Event::Balance(Balance { venue, asset, free: Qty(fp(v)), locked: Qty(0) });
            self.feed(t, &ev);
        }
        self.feed(t, &Event::Control(Control::ReconcileDone));
    }

    /// Runs everything due before `t` (venue arrivals, reports, timers).
    pub fn advance(&mut self, t: Nanos) {
        loop {
            let q = self.exec.next_due().filter(|&d| d <= t);
            let timer = self.next_timer.filter(|&d| d <= t);
            match (q, timer) {
                (None, None) => break,
                (Some(d), Some(tm)) if tm < d => self.timer(tm),
                (None, Some(tm)) => self.timer(tm),
                (Some(_), _) => {
                    if let Some(Some((at, oe))) = self.exec.step(t) {
                        self.feed(at, &Event::Order(oe));
                        self.col.after_order(&self.engine, at, &self.upbit_of);
                    }
                    if !self.exec.fills.is_empty() {
                        self.col.fills(&self.exec.fills, self.fx);
                        self.exec.fills.clear();
                    }
                }
            }
        }
        if t > self.now {
            self.now = t;
        }
    }

    fn timer(&mut self, at: Nanos) {
        self.feed(at, &Event::Timer);
        self.next_timer = None;
        self.rearm();
    }

    fn busy(&self) -> bool {
        !self.exec.idle()
            || (0..self.engine.coin_count() as u16)
                .any(|c| self.engine.pair(c).is_some_and(|p| p.state != PairState::Hedged))
    }

    fn rearm(&mut self) {
        if self.next_timer.is_none() && self.busy() {
            self.next_timer = Some(self.now.plus(Nanos::from_ms(self.timer_ms)));
        }
    }

    /// A market-data event at `t`: the venues' books and then the engine see it.
    pub fn market(&mut self, t: Nanos, ev: &Event<'_>) {
        self.advance(t);
        match ev {
            Event::Book(s) => {
                if let Some(b) = self.exec.books.get_mut(s.inst.0 as usize) {
                    b.apply_snapshot(s, t);
                }
                if Some(s.inst) == self.fx_inst {
                    self.fx = self.exec.books[s.inst.0 as usize].mid_f64().unwrap_or(self.fx);
                }
            }
            Event::Depth(d) => {
                if let Some(b) = self.exec.books.get_mut(d.inst.0 as usize) {
                    let _ = b.apply_diff(d, t);
                }
            }
            Event::Trade(tr) => self.exec.set_mark(tr.inst, tr.px),
            Event::Funding(f) => self.exec.set_mark(f.inst, f.mark),
            Event::Fx(q) if q.source == FxSource::Official => {
                self.fx = (q.bid.to_f64() + q.ask.to_f64()) / 2.0;
            }
            _ => {}
        }
        self.feed(t, ev);
        self.col.sample_equity(&self.engine, t, self.fx, &self.upbit_of, &self.binance_of);
    }

    /// An official FX rate from `t` on.
    pub fn fx(&mut self, t: Nanos, rate: Price) {
        let q = FxQuote { source: FxSource::Official, exch_ts: t, bid: rate, ask: rate };
        self.market(t, &Event::Fx(q));
    }

    /// A funding event; `settles` = the rate and mark the venue books at this time.
    pub fn funding(&mut self, t: Nanos, f: Funding, settles: Option<(i64, Price)>) {
        if let Some((rate, mark)) = settles {
            self.exec.settle_funding(f.inst, rate, mark);
        }
        self.market(t, &Event::Funding(f));
    }

    /// Feeds one event to the engine and carries out its actions.
    fn feed(&mut self, t: Nanos, ev: &Event<'_>) {
        self.now = self.now.max(t);
        self.events += 1;
        self.out.clear();
        self.engine.on_event(self.now, ev, &mut self.out);
        if self.out.is_empty() {
            return;
        }
        self.acts.clear();
        self.acts.extend(self.out.drain());
        for i in 0..self.acts.len() {
            let a = self.acts[i];
            match a {
                Action::Place(req) => self.exec.place(self.now, req),
                Action::Query { cl_id, inst } => self.exec.query(self.now, cl_id, inst),
                Action::Resync(_) => self.exec.resync(),
                Action::Cancel { .. } => {} // IOC and market orders are already terminal
                Action::Journal(r) => self.journal(&r),
                Action::Telemetry(Telemetry::Kimp(k)) => self.col.premium(k),
                Action::Alert(Alert::OneLegResolved { age_ms, .. }) => self.col.one_leg(age_ms),
                Action::Alert(Alert::PairOpened { pair, premium_bps, .. }) => {
                    self.col.opened(pair, self.now, premium_bps)
                }
                _ => {}
            }
        }
        self.rearm();
    }

    fn journal(&mut self, r: &Record) {
        match *r {
            Record::Intent { pair, coin, purpose: Purpose::Entry, .. } => {
                self.col.entry(pair, coin, self.now)
            }
            Record::Intent { pair, purpose: Purpose::Exit, .. } => self.col.exit(pair, self.now),
            Record::Pair(pr) if pr.to == kimp_core::pair::PairState::Closed => {
                self.col.closed(&pr, self.now)
            }
            _ => {}
        }
    }

    /// Lets everything in flight finish (at most `grace_ms` past the last event) and
    /// computes the results.
    pub fn finish(mut self, grace_ms: u64, wall: std::time::Instant) -> RunResult {
        // Orders still in flight finish; the run's end stays the last market event.
        let last = self.now;
        self.advance(last.plus(Nanos::from_ms(grace_ms)));
        self.now = self.now.min(last.plus(Nanos::from_ms(grace_ms))).max(last);
        if self.exec.idle() {
            self.now = last;
        }
        let fx = self.fx;
        self.col.final_equity(&self.engine, self.now, fx, &self.upbit_of, &self.binance_of);
        let stats = *self.engine.stats();
        let exec = self.exec.stats;
        let mut res = self.col.finish(&self.engine, fx);
        res.metrics.events = self.events;
        res.metrics.engine_events = stats.events;
        res.metrics.risk_rejects = stats.risk_rejects;
        res.metrics.funding_settlements = stats.funding_settlements;
        res.metrics.elapsed_ms = wall.elapsed().as_secs_f64() * 1e3;
        res.exec = exec;
        res
    }

    /// Metrics so far (for progress displays).
    pub fn metrics(&self) -> &RunMetrics {
        self.col.metrics()
    }
}

/// Fixed-point from a float amount (balances only).
pub fn fp(v: f64) -> i64 {
    (v * SCALE as f64).round() as i64
}
