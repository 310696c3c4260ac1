//! Restart from the journal: the engine's own records rebuild pairs and in-flight orders,
//! every unknown outcome is queried (never re-sent), and an orphan leg is repaired before
//! anything new is opened.

mod common;

use common::*;
use kimp_core::action::{Action, HaltReason, Record, TradingState};
use kimp_core::config::EngineConfig;
use kimp_core::engine::Engine;
use kimp_core::event::{Control, Event, OrderEventKind, Side};
use kimp_core::order::{OrderKind, OrderRequest};
use kimp_core::pair::PairState;
use kimp_core::testkit::{BTCUSDT, KRW_BTC, btc_markets};
use kimp_core::units::Nanos;

/// Replays the journal records of `h` into a fresh engine of the next epoch.
fn restart(h: &H) -> H {
    let mut e = Engine::new(h.e.config().to_owned(), &btc_markets(), 2).unwrap();
    for a in &h.log {
        if let Action::Journal(r) = a {
            e.replay(h.now, r);
        }
    }
    let mut n = H::simple();
    n.e = e;
    n.now = h.now;
    n
}

fn queries(acts: &[Action]) -> Vec<kimp_core::order::ClientId> {
    acts.iter()
        .filter_map(|a| if let Action::Query { cl_id, .. } = a { Some(*cl_id) } else { None })
        .collect()
}

#[test]
fn crash_after_intent_journaled_queries_both_legs_and_sends_nothing() {
    let mut a = H::new(EngineConfig::default());
    a.start();
    a.funding(0.0001, 100_000_000);
    let acts = a.market(344.0);
    let (u, b) = (place_on(&acts, KRW_BTC).unwrap(), place_on(&acts, BTCUSDT).unwrap());
    let mut r = restart(&a);
    assert_eq!(r.e.trading_state(), TradingState::Reconciling);
    assert_eq!(r.e.pair(0).unwrap().state, PairState::Opening);
    r.out.clear();
    let n = r.e.start_reconcile(r.now, &mut r.out);
    let q = queries(r.out.as_slice());
    assert_eq!(n, 2);
    assert!(q.contains(&u.cl_id) && q.contains(&b.cl_id));
    assert!(!r.e.outcomes_known());
    // Neither order reached the venue (asked once no request could still arrive).
    r.advance_ms(kimp_core::order::NOT_FOUND_FINAL.as_ms());
    let mut acts = r.report(&u, OrderEventKind::NotFound);
    acts.extend(r.report(&b, OrderEventKind::NotFound));
    assert!(places(&acts).is_empty());
    assert!(r.e.outcomes_known());
    assert!(r.e.pair(0).is_none(), "nothing traded: the pair is closed flat");
    r.start();
    assert_eq!(r.e.trading_state(), TradingState::Active);
}

#[test]
fn crash_after_one_leg_filled_repairs_the_orphan_with_a_new_epoch() {
    let mut a = H::simple();
    a.start();
    let acts = a.market(344.0);
    let (u, b) = (place_on(&acts, KRW_BTC).unwrap(), place_on(&acts, BTCUSDT).unwrap());
    a.fill_all(&u);
    let mut r = restart(&a);
    let p = *r.e.pair(0).unwrap();
    assert_eq!(p.u.pos.0, -u.qty.0, "the Upbit fill was restored");
    assert_eq!(p.u.fees, a.e.pair(0).unwrap().u.fees);
    r.out.clear();
    r.e.start_reconcile(r.now, &mut r.out);
    assert_eq!(queries(r.out.as_slice()), vec![b.cl_id], "only the unknown leg is queried");
    // The Binance order never arrived: the orphan must be hedged, under the new epoch.
    r.advance_ms(kimp_core::order::NOT_FOUND_FINAL.as_ms());
    r.market(344.0);
    let acts = r.report(&b, OrderEventKind::NotFound);
    let hedge = place_on(&acts, BTCUSDT).expect("orphan re-hedged while reconciling");
    assert_eq!(hedge.cl_id.epoch, 2);
    assert_eq!((hedge.side, hedge.qty), (Side::Buy, b.qty));
    r.fill_all(&hedge);
    assert_eq!(r.e.pair(0).unwrap().state, PairState::Hedged);
    r.ev(Event::Control(Control::ReconcileDone));
    assert_eq!(r.e.trading_state(), TradingState::Active);
}

#[test]
fn crash_after_one_leg_filled_when_the_other_had_filled_too() {
    let mut a = H::simple();
    a.start();
    let acts = a.market(344.0);
    let (u, b) = (place_on(&acts, KRW_BTC).unwrap(), place_on(&acts, BTCUSDT).unwrap());
    a.fill_all(&u);
    let mut r = restart(&a);
    r.out.clear();
    r.e.start_reconcile(r.now, &mut r.out);
    // The query finds it filled: hedged, and no order was sent at all.
    let mut acts = r.fill(&b, b.qty, b.qty);
    acts.extend(r.report(&b, OrderEventKind::Done { cum_qty: b.qty }));
    assert!(places(&acts).is_empty());
    assert_eq!(r.e.pair(0).unwrap().state, PairState::Hedged);
}

#[test]
fn a_halt_survives_a_restart() {
    let mut a = H::simple();
    a.start();
    a.ev(Event::Control(Control::Stop));
    let mut r = restart(&a);
    r.start();
    assert!(matches!(r.e.trading_state(), TradingState::Halted(_)), "halt latched across restart");
    assert!(places(&r.market(344.0)).is_empty());
}

#[test]
fn closed_pairs_restore_realised_pnl_and_nothing_else() {
    let mut a = H::simple();
    a.start();
    let acts = a.market(344.0);
    let (u, b) = (place_on(&acts, KRW_BTC).unwrap(), place_on(&acts, BTCUSDT).unwrap());
    a.fill_all(&u);
    a.fill_all(&b);
    a.advance_ms(10);
    let acts = a.market(50.0);
    let (cu, cb) = (place_on(&acts, KRW_BTC).unwrap(), place_on(&acts, BTCUSDT).unwrap());
    a.fill_all(&cu);
    a.fill_all(&cb);
    assert!(a.e.pair(0).is_none());
    let r = restart(&a);
    assert!(r.e.pair(0).is_none());
    assert_eq!(r.e.live_orders().count(), 0);
    assert_eq!(r.e.realized_krw(), a.e.realized_krw());
    assert!(
        a.log
            .iter()
            .any(|x| matches!(x, Action::Journal(Record::Pair(p)) if p.to == PairState::Closed))
    );
}

#[test]
fn restored_orders_resolve_on_the_new_clock() {
    // The previous run placed its order late in a long life (engine time 1 h); the new
    // process's clock starts near zero. "Not found" must still become final a few seconds
    // after the restart, not an hour later.
    let mut a = H::simple();
    a.start();
    a.now = Nanos::from_ms(3_600_000);
    let acts = a.market(344.0);
    let b = place_on(&acts, BTCUSDT).unwrap();
    let u = place_on(&acts, KRW_BTC).unwrap();
    let mut r = restart(&a);
    r.now = Nanos::from_ms(1_000);
    r.out.clear();
    r.e.start_reconcile(r.now, &mut r.out);
    r.now = Nanos::from_ms(1_000 + 7_000);
    r.report(&u, OrderEventKind::NotFound);
    r.report(&b, OrderEventKind::NotFound);
    assert!(r.e.outcomes_known(), "unknown orders still pending 7 s after the restart");
}

/// A restart after leg 1 filled with leg 2's outcome unknown: the new process is up at
/// `down_ms` after the crash, asks the venue, and ticks its timer every 10 ms. Returns
/// the restarted harness (clock at `start_reconcile`), leg 1 and leg 2.
fn restart_with_unknown_leg(down_ms: u64) -> (H, OrderRequest, OrderRequest) {
    let mut a = H::simple();
    a.start();
    let acts = a.market(344.0);
    let (u, b) = (place_on(&acts, KRW_BTC).unwrap(), place_on(&acts, BTCUSDT).unwrap());
    a.fill_all(&u);
    let mut r = restart(&a);
    r.advance_ms(down_ms);
    r.market(344.0);
    r.out.clear();
    r.e.start_reconcile(r.now, &mut r.out);
    (r, u, b)
}

/// Ticks the timer every 10 ms for `ms`; returns every place emitted.
fn tick_for(r: &mut H, ms: u64) -> Vec<OrderRequest> {
    let mut placed = Vec::new();
    for _ in 0..ms / 10 {
        r.advance_ms(10);
        placed.extend(places(&r.timer()));
    }
    placed
}

#[test]
fn a_restored_orphan_learned_inside_the_hard_deadline_is_repaired_without_a_halt() {
    // R8 regression: the deadline counts from the restart (not from the fill, 30 s ago in
    // the dead process), and an outcome learned inside it leaves the repair path to work.
    let hard = EngineConfig::default().risk.orphan_ms_hard;
    let (mut r, _, b) = restart_with_unknown_leg(30_000);
    assert!(tick_for(&mut r, hard - 500).is_empty(), "nothing sent while the leg is unknown");
    assert_eq!(r.e.trading_state(), TradingState::Reconciling);
    // The query answers: the IOC expired unfilled. The orphan is re-hedged at once.
    let acts = r.report(&b, OrderEventKind::Done { cum_qty: kimp_core::units::Qty::ZERO });
    let hedge = place_on(&acts, BTCUSDT).expect("orphan re-hedged while reconciling");
    assert_eq!((hedge.side, hedge.qty, hedge.cl_id.epoch), (Side::Buy, b.qty, 2));
    r.fill_all(&hedge);
    assert_eq!(r.e.pair(0).unwrap().state, PairState::Hedged);
    r.ev(Event::Control(Control::ReconcileDone));
    tick_for(&mut r, hard + 500);
    assert_eq!(r.e.trading_state(), TradingState::Active, "no halt: the orphan was repaired");
}

#[test]
fn a_restored_orphan_still_unknown_at_the_hard_deadline_halts_and_flattens() {
    // I4 holds across a restart: reconciliation is part of the orphan's life. A leg that
    // stays unknown for `orphan_ms_hard` after the restart halts trading and closes the
    // known leg at market (the unknown one is never re-sent).
    let hard = EngineConfig::default().risk.orphan_ms_hard;
    let (mut r, u, b) = restart_with_unknown_leg(30_000);
    let t0 = r.now;
    assert!(tick_for(&mut r, hard - 10).is_empty());
    assert_eq!(r.e.trading_state(), TradingState::Reconciling, "not before the deadline");
    let flat = tick_for(&mut r, 10);
    assert_eq!(r.now.since(t0), Nanos::from_ms(hard));
    assert_eq!(r.e.trading_state(), TradingState::halted(HaltReason::OrphanHard));
    assert_eq!(flat.len(), 1, "only the known leg is flattened: {flat:?}");
    assert_eq!((flat[0].inst, flat[0].side, flat[0].qty), (KRW_BTC, Side::Buy, u.qty));
    assert_eq!(flat[0].kind, OrderKind::Market);
    assert!(flat.iter().all(|p| p.cl_id != b.cl_id));
}
