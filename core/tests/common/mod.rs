//! A test harness around the engine: a fake clock, book builders for one coin (BTC) on
//! both venues plus the KRW-USDT FX book, and a tiny venue that answers orders.
#![allow(dead_code)]

use kimp_core::action::{Action, Outbox, Record};
use kimp_core::config::EngineConfig;
use kimp_core::engine::Engine;
use kimp_core::event::{
    Balance, BookSnapshot, Control, Event, Funding, Level, OrderEvent, OrderEventKind, RejectReason,
};
use kimp_core::instrument::{InstrumentId, Symbol, Venue};
use kimp_core::order::OrderRequest;
use kimp_core::testkit::{BTCUSDT, KRW_BTC, KRW_USDT, btc_markets};
use kimp_core::units::{Nanos, Price, Qty, Quote, SCALE};

/// Fixed-point from a float (test convenience).
pub fn fp(v: f64) -> i64 {
    (v * SCALE as f64).round() as i64
}

/// A price.
pub fn px(v: f64) -> Price {
    Price(fp(v))
}

/// A quantity.
pub fn q(v: f64) -> Qty {
    Qty(fp(v))
}

/// The harness.
pub struct H {
    pub e: Engine,
    pub out: Outbox,
    pub now: Nanos,
    pub log: Vec<Action>,
    trade_id: u64,
}

impl H {
    /// An engine on the BTC markets with `cfg`, epoch 1, clock at 1 s.
    pub fn new(cfg: EngineConfig) -> Self {
        let e = Engine::new(cfg, &btc_markets(), 1).expect("valid config");
        Self {
            e,
            out: Outbox::with_capacity(256),
            now: Nanos::from_ms(1_000),
            log: Vec::new(),
            trade_id: 0,
        }
    }

    /// Default config with funding filter off and no cooldown, for simple tests.
    pub fn simple() -> Self {
        let mut cfg = EngineConfig::default();
        cfg.strategy.funding_filter = kimp_core::config::FundingFilter::Off;
        cfg.strategy.entry_cooldown_ms = 0;
        Self::new(cfg)
    }

    /// Advances the fake clock.
    pub fn advance_ms(&mut self, ms: u64) {
        self.now = self.now.plus(Nanos::from_ms(ms));
    }

    /// Feeds one event; returns the actions it produced (also appended to `log`).
    pub fn ev(&mut self, ev: Event<'_>) -> Vec<Action> {
        self.out.clear();
        self.e.on_event(self.now, &ev, &mut self.out);
        let acts: Vec<Action> = self.out.as_slice().to_vec();
        self.log.extend_from_slice(&acts);
        acts
    }

    /// Balances: KRW and BTC on Upbit, USDT on Binance.
    pub fn balances(&mut self, krw: f64, btc: f64, usdt: f64) {
        for (venue, asset, v) in
            [(Venue::Upbit, "KRW", krw), (Venue::Upbit, "BTC", btc), (Venue::Binance, "USDT", usdt)]
        {
            self.ev(Event::Balance(Balance {
                venue,
                asset: Symbol::new(asset).unwrap(),
                free: q(v),
                locked: Qty(0),
            }));
        }
    }

    /// Typical start: balances, reconciliation done.
    pub fn start(&mut self) {
        self.balances(1_000_000_000.0, 10.0, 1_000_000.0);
        self.ev(Event::Control(Control::ReconcileDone));
    }

    /// A book around `bid`/`ask` with `n` levels of `size` each, one tick apart.
    pub fn book(
        &mut self,
        inst: InstrumentId,
        bid: f64,
        ask: f64,
        tick: f64,
        size: f64,
        n: usize,
    ) -> Vec<Action> {
        let bids: Vec<Level> =
            (0..n).map(|i| Level::new(px(bid - tick * i as f64), q(size))).collect();
        let asks: Vec<Level> =
            (0..n).map(|i| Level::new(px(ask + tick * i as f64), q(size))).collect();
        self.ev(Event::Book(BookSnapshot {
            inst,
            exch_ts: self.now,
            last_update_id: 0,
            bids: &bids,
            asks: &asks,
        }))
    }

    /// All three books so that the executable sell premium for small size is about
    /// `sell_bps` (FX ask 1,450; Binance 70,000 / 70,000.1; Upbit spread 0.1 %).
    pub fn market(&mut self, sell_bps: f64) -> Vec<Action> {
        let mut acts = self.book(KRW_USDT, 1_449.0, 1_450.0, 1.0, 1_000_000.0, 5);
        acts.extend(self.book(BTCUSDT, 70_000.0, 70_000.1, 0.1, 1.0, 20));
        // bid_u = 70,000.1 × 1,450 × (1 + p), on Upbit's 1,000-KRW grid.
        let bid = ((70_000.1 * 1_450.0 * (1.0 + sell_bps / 10_000.0)) / 1_000.0).round() * 1_000.0;
        let ask = bid + 100_000.0;
        acts.extend(self.book(KRW_BTC, bid, ask, 1_000.0, 1.0, 20));
        acts
    }

    /// Funding report with `rate` (e.g. 0.0001) and the next funding time.
    pub fn funding(&mut self, rate: f64, next_ms: u64) -> Vec<Action> {
        self.ev(Event::Funding(Funding {
            inst: BTCUSDT,
            exch_ts: self.now,
            mark: px(70_000.0),
            rate_e8: fp(rate),
            next_funding: Nanos::from_ms(next_ms),
        }))
    }

    /// Reports an order event for `req`.
    pub fn report(&mut self, req: &OrderRequest, kind: OrderEventKind) -> Vec<Action> {
        self.ev(Event::Order(OrderEvent { cl_id: req.cl_id, exch_ts: self.now, kind }))
    }

    /// Ack + fill of `qty` (cumulative `cum`) at the order's price, 0.05 % fee.
    pub fn fill(&mut self, req: &OrderRequest, qty: Qty, cum: Qty) -> Vec<Action> {
        self.trade_id += 1;
        let notional = req.px.notional(qty).unwrap();
        let fee = Quote(notional.0 / 2_000);
        self.report(
            req,
            OrderEventKind::Fill { trade_id: self.trade_id, px: req.px, qty, cum_qty: cum, fee },
        )
    }

    /// Fills an IOC order completely (ack, fill, done).
    pub fn fill_all(&mut self, req: &OrderRequest) -> Vec<Action> {
        let mut a = self.report(req, OrderEventKind::Ack);
        a.extend(self.fill(req, req.qty, req.qty));
        a.extend(self.report(req, OrderEventKind::Done { cum_qty: req.qty }));
        a
    }

    /// Rejects an order.
    pub fn reject(&mut self, req: &OrderRequest) -> Vec<Action> {
        self.report(req, OrderEventKind::Reject(RejectReason::InsufficientBalance))
    }

    /// Timer tick.
    pub fn timer(&mut self) -> Vec<Action> {
        self.ev(Event::Timer)
    }
}

/// Place actions in `acts`.
pub fn places(acts: &[Action]) -> Vec<OrderRequest> {
    acts.iter().filter_map(|a| if let Action::Place(r) = a { Some(*r) } else { None }).collect()
}

/// The place for a venue instrument.
pub fn place_on(acts: &[Action], inst: InstrumentId) -> Option<OrderRequest> {
    places(acts).into_iter().find(|r| r.inst == inst)
}

/// True if any action matches.
pub fn has(acts: &[Action], f: impl Fn(&Action) -> bool) -> bool {
    acts.iter().any(f)
}

/// Journal records in `acts`.
pub fn records(acts: &[Action]) -> Vec<Record> {
    acts.iter().filter_map(|a| if let Action::Journal(r) = a { Some(*r) } else { None }).collect()
}
