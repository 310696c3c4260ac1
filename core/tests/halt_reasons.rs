//! Every halt reason is kept (issue 14 item 5): a second halt while halted adds its reason
//! to the state instead of being lost, each new reason is journaled with the whole set, a
//! restart restores every latched reason (but never `Shutdown`), and one `Resume` clears
//! them all.

mod common;

use common::*;
use kimp_core::action::{Action, Alert, HaltReason, HaltSet, Record, TradingState};
use kimp_core::config::EngineConfig;
use kimp_core::engine::Engine;
use kimp_core::event::{Control, Event, OrderEventKind};
use kimp_core::testkit::{BTCUSDT, KRW_BTC, btc_markets};
use kimp_core::units::Qty;

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

fn trading_records(h: &H) -> Vec<TradingState> {
    records(&h.log)
        .into_iter()
        .filter_map(|r| if let Record::Trading { state } = r { Some(state) } else { None })
        .collect()
}

const BOTH: HaltSet = HaltSet::of(HaltReason::OrderRate).with(HaltReason::OrphanHard);

/// The sequence: the runaway guard halts (`order_rate`) on the repair of a one-leg
/// pair, every repair is then refused by the venue, and the orphan reaches its hard deadline
/// (`orphan_hard`).
fn order_rate_then_orphan_hard() -> H {
    let mut cfg = EngineConfig::default();
    cfg.strategy.funding_filter = kimp_core::config::FundingFilter::Off;
    cfg.risk.orders_per_sec_max = 1;
    let mut h = H::new(cfg);
    h.start();
    let acts = h.market(344.0);
    let (u, b) = (place_on(&acts, KRW_BTC).unwrap(), place_on(&acts, BTCUSDT).unwrap());
    h.fill_all(&u);
    // The perp leg expires unfilled: the re-hedge is the second Binance order in a second.
    let acts = h.report(&b, OrderEventKind::Done { cum_qty: Qty::ZERO });
    assert!(has(&acts, |a| matches!(a, Action::Alert(Alert::Halted(HaltReason::OrderRate)))));
    assert_eq!(h.e.trading_state(), TradingState::halted(HaltReason::OrderRate));
    let hard = h.e.config().risk.orphan_ms_hard;
    let mut orphan_alert = false;
    for _ in 0..hard / 10 + 10 {
        h.advance_ms(10);
        let acts = h.timer();
        orphan_alert |=
            has(&acts, |a| matches!(a, Action::Alert(Alert::Halted(HaltReason::OrphanHard))));
        for p in places(&acts) {
            h.reject(&p);
        }
        if orphan_alert {
            break;
        }
    }
    assert!(orphan_alert, "the orphan never reached its hard deadline");
    h
}

#[test]
fn a_second_halt_adds_its_reason_to_the_state_and_the_journal() {
    let h = order_rate_then_orphan_hard();
    assert_eq!(h.e.trading_state(), TradingState::Halted(BOTH));
    assert_eq!(
        trading_records(&h)[1..],
        [TradingState::halted(HaltReason::OrderRate), TradingState::Halted(BOTH)],
        "each new reason journaled with the whole set (after the start's Active)"
    );
    let mut h = h;
    h.ev(Event::Control(Control::Status));
    let st = h.log.iter().rev().find_map(|a| match a {
        Action::Telemetry(kimp_core::action::Telemetry::Status(s)) => Some(s.trading),
        _ => None,
    });
    assert_eq!(st, Some(TradingState::Halted(BOTH)), "the status snapshot shows both");
}

#[test]
fn a_restart_restores_every_latched_reason() {
    let h = order_rate_then_orphan_hard();
    let mut r = restart(&h);
    r.start();
    assert_eq!(r.e.trading_state(), TradingState::Halted(BOTH));
}

#[test]
fn a_repeated_reason_is_alerted_but_not_journaled_again() {
    let mut h = H::simple();
    h.start();
    h.ev(Event::Control(Control::Stop));
    let acts = h.ev(Event::Control(Control::Stop));
    assert!(has(&acts, |a| matches!(a, Action::Alert(Alert::Halted(HaltReason::Operator)))));
    assert!(records(&acts).is_empty());
    assert_eq!(h.e.trading_state(), TradingState::halted(HaltReason::Operator));
}

#[test]
fn one_resume_clears_every_reason_and_a_restart_after_it_is_not_halted() {
    let mut h = order_rate_then_orphan_hard();
    h.ev(Event::Control(Control::Resume));
    assert_eq!(h.e.trading_state(), TradingState::Active);
    let mut r = restart(&h);
    r.start();
    assert_eq!(r.e.trading_state(), TradingState::Active);
}

#[test]
fn shutdown_joins_the_set_for_this_run_but_never_latches() {
    let mut h = H::simple();
    h.start();
    h.ev(Event::Control(Control::Stop));
    let acts = h.ev(Event::Control(Control::Shutdown));
    let set = HaltSet::of(HaltReason::Operator).with(HaltReason::Shutdown);
    assert_eq!(h.e.trading_state(), TradingState::Halted(set));
    assert_eq!(records(&acts), [Record::Trading { state: TradingState::Halted(set) }]);
    let mut r = restart(&h);
    r.start();
    assert_eq!(r.e.trading_state(), TradingState::halted(HaltReason::Operator));
    // Shutdown alone restarts active.
    let mut h = H::simple();
    h.start();
    h.ev(Event::Control(Control::Shutdown));
    let mut r = restart(&h);
    r.start();
    assert_eq!(r.e.trading_state(), TradingState::Active);
}

#[test]
fn the_set_is_a_copy_bitset_in_declaration_order() {
    let s = HaltSet::of(HaltReason::Mismatch).with(HaltReason::Operator);
    assert_eq!(s.iter().collect::<Vec<_>>(), [HaltReason::Operator, HaltReason::Mismatch]);
    assert_eq!((s.len(), s.first()), (2, Some(HaltReason::Operator)));
    assert_eq!(HaltSet::from_bits(s.bits()), Some(s));
    assert_eq!(HaltSet::from_bits(1 << 15), None, "an unknown bit is refused");
    assert!(s.without(HaltReason::Operator).without(HaltReason::Mismatch).is_empty());
    assert_eq!(format!("{:?}", TradingState::Halted(BOTH)), "Halted({OrderRate, OrphanHard})");
    assert_eq!(std::mem::size_of::<TradingState>(), 4);
}
