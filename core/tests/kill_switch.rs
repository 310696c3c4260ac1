//! Kill switch (RELIABILITY.md R9, I5), behaviour only — the timings are in
//! `tools/examples/halt_latency.rs`. A `Stop` halts on the event that carries it and
//! latches through time, timers, market moves and a second reconciliation; a `Flatten`
//! halts and, in the same step, cancels the open order and closes the filled leg at
//! market; only `Resume` re-arms.

mod common;

use common::*;
use kimp_core::action::{Action, Alert, HaltReason, Record, TradingState};
use kimp_core::event::{Control, Event, OrderEventKind, Side};
use kimp_core::order::OrderKind;
use kimp_core::testkit::{BTCUSDT, KRW_BTC};

#[test]
fn stop_halts_at_once_and_latches_until_resume() {
    let mut h = H::simple();
    h.start();
    let acts = h.ev(Event::Control(Control::Stop));
    assert_eq!(h.e.trading_state(), TradingState::halted(HaltReason::Operator));
    assert!(has(&acts, |a| matches!(
        a,
        Action::Journal(Record::Trading { state }) if *state == TradingState::halted(HaltReason::Operator)
    )));
    assert!(has(&acts, |a| matches!(a, Action::Alert(Alert::Halted(HaltReason::Operator)))));
    // Minutes of an entry-level premium, timers, a repeated stop and a reconciliation:
    // nothing leaves, the state does not move.
    for _ in 0..600 {
        h.advance_ms(100);
        assert!(places(&h.market(344.0)).is_empty());
        assert!(places(&h.timer()).is_empty());
    }
    h.ev(Event::Control(Control::Stop));
    h.ev(Event::Control(Control::ReconcileDone));
    assert_eq!(h.e.trading_state(), TradingState::halted(HaltReason::Operator));
    assert!(places(&h.market(344.0)).is_empty());
    h.ev(Event::Control(Control::Resume));
    assert_eq!(h.e.trading_state(), TradingState::Active);
    assert_eq!(places(&h.market(344.0)).len(), 2, "re-armed: entries again");
}

#[test]
fn flatten_cancels_the_open_order_and_closes_the_filled_leg_in_one_step() {
    let mut h = H::simple();
    h.start();
    let acts = h.market(344.0);
    let (u, b) = (place_on(&acts, KRW_BTC).unwrap(), place_on(&acts, BTCUSDT).unwrap());
    h.fill_all(&b);
    h.report(&u, OrderEventKind::Ack);
    let acts = h.ev(Event::Control(Control::Flatten(None)));
    assert_eq!(h.e.trading_state(), TradingState::halted(HaltReason::Flatten));
    assert!(has(&acts, |a| matches!(a, Action::Cancel { cl_id, .. } if *cl_id == u.cl_id)));
    let f = places(&acts);
    assert_eq!(f.len(), 1, "the leg with an open order is cancelled, never re-sent: {f:?}");
    assert_eq!((f[0].inst, f[0].side, f[0].qty), (BTCUSDT, Side::Sell, b.qty));
    assert_eq!((f[0].kind, f[0].reduce_only), (OrderKind::Market, true));
    // The cancel lands (nothing filled): the pair is flat and stays halted.
    h.report(&u, OrderEventKind::Done { cum_qty: kimp_core::units::Qty::ZERO });
    h.fill_all(&f[0]);
    assert!(h.e.pair(0).is_none());
    h.advance_ms(1_000);
    assert!(places(&h.market(344.0)).is_empty());
    assert_eq!(h.e.trading_state(), TradingState::halted(HaltReason::Flatten));
}
