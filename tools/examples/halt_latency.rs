//! Kill-switch figures (RELIABILITY.md R9), measured on the real engine with a fake clock.
//!
//! 1. ring → HALTED: an operator thread sends `Control::Stop` through a bounded crossbeam
//!    channel (the runtime's control ring, `run::build`); the engine thread runs duty
//!    cycles like the loop's `after_poll` — one market event, then drain the control ring —
//!    and stamps the moment `trading_state()` is `Halted`. Each repetition then checks the
//!    halted engine refuses an entry signal, and re-arms it with `Resume` (untimed).
//!    For scale, the same duty cycle alone (three book snapshots) is timed too.
//! 2. The engine's own halt step: `on_event(Control::Stop)` on an active engine (close to
//!    the resolution of `Instant`, whose own cost is a few tens of ns).
//! 3. HALT → cancel + flatten emitted: `on_event(Control::Flatten(None))` on an engine
//!    holding a one-leg pair (Binance leg filled) with the Upbit leg still open; the one
//!    call must emit the halt, a `Cancel` for the open order and a market flatten of the
//!    filled leg.
//!
//! Behaviour is asserted (a wrong result panics); the timings are wall-clock ns from
//! `Instant`, so they depend on the machine and its load.
//!
//! ```text
//! cargo run --release -p kimp --example halt_latency [-- REPS]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crossbeam_channel::bounded;
use kimp_core::action::{Action, HaltReason, Outbox, TradingState};
use kimp_core::config::{EngineConfig, FundingFilter};
use kimp_core::engine::Engine;
use kimp_core::event::{
    Balance, BookSnapshot, Control, Event, Level, OrderEvent, OrderEventKind, Side,
};
use kimp_core::instrument::{InstrumentId, Symbol, Venue};
use kimp_core::order::{OrderKind, OrderRequest};
use kimp_core::testkit::{BTCUSDT, KRW_BTC, KRW_USDT, btc_markets, ladder};
use kimp_core::units::{Nanos, Qty, Quote, SCALE};

/// Books for one market state, built once (events borrow their levels).
struct Books {
    levels: Vec<(InstrumentId, Vec<Level>, Vec<Level>)>,
}

impl Books {
    /// FX 1,449/1,450; Binance 70,000/70,000.1; Upbit priced so the executable sell
    /// premium is about `bps`.
    fn new(bps: f64) -> Self {
        let s = SCALE as f64;
        let fp = |v: f64| (v * s).round() as i64;
        let bid_u = ((70_000.1 * 1_450.0 * (1.0 + bps / 10_000.0)) / 1_000.0).round() * 1_000.0;
        let book = |inst, bid: f64, ask: f64, tick: f64, size: f64, n| {
            (inst, ladder(fp(bid), -fp(tick), fp(size), n), ladder(fp(ask), fp(tick), fp(size), n))
        };
        Self {
            levels: vec![
                book(KRW_USDT, 1_449.0, 1_450.0, 1.0, 1_000_000.0, 5),
                book(BTCUSDT, 70_000.0, 70_000.1, 0.1, 1.0, 20),
                book(KRW_BTC, bid_u, bid_u + 100_000.0, 1_000.0, 1.0, 20),
            ],
        }
    }

    fn feed(&self, e: &mut Engine, now: Nanos, out: &mut Outbox) {
        for (inst, bids, asks) in &self.levels {
            let snap = BookSnapshot { inst: *inst, exch_ts: now, last_update_id: 0, bids, asks };
            e.on_event(now, &Event::Book(snap), out);
        }
    }
}

/// An active engine with balances, reconciled, funding filter and cool-down off.
fn engine() -> Engine {
    let mut cfg = EngineConfig::default();
    cfg.strategy.funding_filter = FundingFilter::Off;
    cfg.strategy.entry_cooldown_ms = 0;
    let mut e = Engine::new(cfg, &btc_markets(), 1).expect("valid config");
    let mut out = Outbox::with_capacity(256);
    let q = |v: i64| Qty(v * SCALE);
    for (venue, asset, free) in [
        (Venue::Upbit, "KRW", q(1_000_000_000)),
        (Venue::Upbit, "BTC", q(10)),
        (Venue::Binance, "USDT", q(1_000_000)),
    ] {
        let asset = Symbol::new(asset).expect("symbol");
        let ev = Event::Balance(Balance { venue, asset, free, locked: Qty(0) });
        e.on_event(Nanos::from_ms(1_000), &ev, &mut out);
    }
    e.on_event(Nanos::from_ms(1_000), &Event::Control(Control::ReconcileDone), &mut out);
    assert_eq!(e.trading_state(), TradingState::Active);
    e
}

fn places(out: &Outbox) -> Vec<OrderRequest> {
    out.as_slice()
        .iter()
        .filter_map(|a| if let Action::Place(r) = a { Some(*r) } else { None })
        .collect()
}

fn report(e: &mut Engine, now: Nanos, r: &OrderRequest, kind: OrderEventKind, out: &mut Outbox) {
    e.on_event(now, &Event::Order(OrderEvent { cl_id: r.cl_id, exch_ts: now, kind }), out);
}

/// n, p50, p99, p99.9, max of `v` (ns).
fn summary(name: &str, v: &mut [u64]) {
    v.sort_unstable();
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name}: n {} p50 {} ns p99 {} ns p99.9 {} ns max {} ns",
        v.len(),
        p(0.5),
        p(0.99),
        p(0.999),
        v[v.len() - 1]
    );
}

/// 1. Cross-thread: control ring → engine halted.
fn ring_to_halted(reps: usize) -> Vec<u64> {
    let base = Instant::now();
    let sent_at = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = bounded::<Control>(1_024);
    let (done_tx, done_rx) = bounded::<u64>(1);
    let engine_thread = {
        let (sent_at, stop) = (sent_at.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut e = engine();
            let mut out = Outbox::with_capacity(256);
            // Below the entry level: each cycle is real book work, no pair opens.
            let quiet = [Books::new(150.0), Books::new(160.0)];
            let entry = Books::new(344.0);
            let mut now = Nanos::from_ms(2_000);
            let mut cycle = 0usize;
            while !stop.load(Ordering::Relaxed) {
                now = now.plus(Nanos(10_000));
                cycle += 1;
                quiet[cycle % 2].feed(&mut e, now, &mut out);
                out.clear();
                while let Ok(c) = rx.try_recv() {
                    e.on_event(now, &Event::Control(c), &mut out);
                    if matches!(e.trading_state(), TradingState::Halted(_)) {
                        let t = base.elapsed().as_nanos() as u64;
                        let lat = t.saturating_sub(sent_at.load(Ordering::Acquire));
                        // Untimed checks: halted for the operator, entries refused.
                        assert_eq!(e.trading_state(), TradingState::halted(HaltReason::Operator));
                        out.clear();
                        entry.feed(&mut e, now, &mut out);
                        assert!(places(&out).is_empty(), "an entry left a halted engine");
                        out.clear();
                        e.on_event(now, &Event::Control(Control::Resume), &mut out);
                        assert_eq!(e.trading_state(), TradingState::Active);
                        out.clear();
                        done_tx.send(lat).expect("operator thread");
                    }
                }
            }
        })
    };
    let mut lat = Vec::with_capacity(reps);
    let mut spin = 1u64;
    for _ in 0..reps {
        // Land the command at varying points of the engine's duty cycle.
        spin = spin.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let until = Instant::now() + std::time::Duration::from_nanos((spin >> 33) % 20_000);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        sent_at.store(base.elapsed().as_nanos() as u64, Ordering::Release);
        tx.send(Control::Stop).expect("engine thread");
        lat.push(done_rx.recv().expect("engine thread"));
    }
    stop.store(true, Ordering::Relaxed);
    engine_thread.join().expect("engine thread");
    lat
}

/// One duty cycle of the engine thread in (1): three book snapshots, no order.
fn cycle_step(reps: usize) -> Vec<u64> {
    let mut e = engine();
    let mut out = Outbox::with_capacity(256);
    let quiet = [Books::new(150.0), Books::new(160.0)];
    let mut now = Nanos::from_ms(2_000);
    let mut v = Vec::with_capacity(reps);
    for i in 0..reps {
        now = now.plus(Nanos(10_000));
        let t = Instant::now();
        quiet[i % 2].feed(&mut e, now, &mut out);
        v.push(t.elapsed().as_nanos() as u64);
        assert!(places(&out).is_empty());
        out.clear();
    }
    v
}

/// 2. The engine's halt step alone.
fn stop_step(reps: usize) -> Vec<u64> {
    let mut e = engine();
    let mut out = Outbox::with_capacity(256);
    let now = Nanos::from_ms(2_000);
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps {
        out.clear();
        let t = Instant::now();
        e.on_event(now, &Event::Control(Control::Stop), &mut out);
        v.push(t.elapsed().as_nanos() as u64);
        assert_eq!(e.trading_state(), TradingState::halted(HaltReason::Operator));
        out.clear();
        e.on_event(now, &Event::Control(Control::Resume), &mut out);
    }
    v
}

/// 3. Flatten on a one-leg pair with an open order: halt, cancel and flatten in one call.
fn flatten_step(reps: usize) -> Vec<u64> {
    let books = Books::new(344.0);
    let mut out = Outbox::with_capacity(256);
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps {
        let mut e = engine();
        let now = Nanos::from_ms(2_000);
        out.clear();
        books.feed(&mut e, now, &mut out);
        let legs = places(&out);
        let u = *legs.iter().find(|r| r.inst == KRW_BTC).expect("entry: Upbit leg");
        let b = *legs.iter().find(|r| r.inst == BTCUSDT).expect("entry: Binance leg");
        out.clear();
        let fee = Quote(0);
        report(&mut e, now, &b, OrderEventKind::Ack, &mut out);
        let fill = OrderEventKind::Fill { trade_id: 1, px: b.px, qty: b.qty, cum_qty: b.qty, fee };
        report(&mut e, now, &b, fill, &mut out);
        report(&mut e, now, &b, OrderEventKind::Done { cum_qty: b.qty }, &mut out);
        report(&mut e, now, &u, OrderEventKind::Ack, &mut out);
        out.clear();
        let t = Instant::now();
        e.on_event(now, &Event::Control(Control::Flatten(None)), &mut out);
        v.push(t.elapsed().as_nanos() as u64);
        assert_eq!(e.trading_state(), TradingState::halted(HaltReason::Flatten));
        let acts = out.as_slice();
        assert!(
            acts.iter().any(|a| matches!(a, Action::Cancel { cl_id, .. } if *cl_id == u.cl_id)),
            "open order not cancelled: {acts:?}"
        );
        let f = places(&out);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].inst, f[0].side, f[0].qty), (BTCUSDT, Side::Sell, b.qty));
        assert_eq!((f[0].kind, f[0].reduce_only), (OrderKind::Market, true));
    }
    v
}

fn main() {
    let reps: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    // Warm-up (caches, branch predictors, lazy statics).
    stop_step(1_000);
    flatten_step(200);
    ring_to_halted(1_000);
    summary(
        "ring → HALTED (Control::Stop over the control channel, engine thread)",
        &mut ring_to_halted(reps),
    );
    summary("engine duty cycle in (1): three book snapshots", &mut cycle_step(reps));
    summary("on_event(Control::Stop): active → HALTED", &mut stop_step(reps * 5));
    summary(
        "on_event(Control::Flatten): HALT + cancel open order + market flatten emitted",
        &mut flatten_step(reps),
    );
}
