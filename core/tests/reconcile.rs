//! Position reconciliation (issue 14 item 4): the venues' accounts are compared with the
//! engine's positions — after a restart, the journal's — and a difference above dust halts
//! entries with an alert naming the coin, the venue, what was expected and what the venue
//! holds. At start-up and on the runtime's timer alike, through `Control::CheckAccount`.

mod common;

use common::*;
use kimp_core::action::{Action, Alert, HaltReason, TradingState};
use kimp_core::engine::Engine;
use kimp_core::event::{Balance, Control, Event, PositionReport};
use kimp_core::instrument::{Symbol, Venue};
use kimp_core::order::OrderRequest;
use kimp_core::pair::PairState;
use kimp_core::testkit::{BTCUSDT, KRW_BTC, btc_markets};
use kimp_core::units::{Nanos, Qty};

/// A running engine holding one hedged BTC pair; returns it with both legs' orders.
fn hedged() -> (H, OrderRequest, OrderRequest) {
    let mut h = H::simple();
    h.start();
    let acts = h.market(344.0);
    let (u, b) = (place_on(&acts, KRW_BTC).unwrap(), place_on(&acts, BTCUSDT).unwrap());
    h.fill_all(&u);
    h.fill_all(&b);
    assert_eq!(h.e.pair(0).unwrap().state, PairState::Hedged);
    (h, u, b)
}

/// A fresh engine (next epoch) with `h`'s journal replayed, as at a restart.
fn restart(h: &H) -> H {
    let mut e = Engine::new(h.e.config().to_owned(), &btc_markets(), 2).unwrap();
    for a in &h.log {
        if let Action::Journal(r) = a {
            e.replay(h.now, r);
        }
    }
    let mut n = H::simple();
    n.e = e;
    n.now = Nanos::from_ms(500); // the new process's clock starts again
    n
}

fn position(h: &mut H, qty: Qty) -> Vec<Action> {
    h.ev(Event::Position(PositionReport { inst: BTCUSDT, qty }))
}

fn upbit_btc(h: &mut H, free: Qty) -> Vec<Action> {
    h.ev(Event::Balance(Balance {
        venue: Venue::Upbit,
        asset: Symbol::new("BTC").unwrap(),
        free,
        locked: Qty(0),
    }))
}

fn check(h: &mut H, venue: Venue, asked_at: Nanos) -> Vec<Action> {
    h.ev(Event::Control(Control::CheckAccount { venue, asked_at }))
}

fn mismatches(acts: &[Action]) -> Vec<(u16, Venue, Qty, Qty)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Alert(Alert::Mismatch { coin, venue, expected, actual }) => {
                Some((*coin, *venue, *expected, *actual))
            }
            _ => None,
        })
        .collect()
}

fn halted_by_mismatch(h: &H) -> bool {
    h.e.trading_state().halts().contains(HaltReason::Mismatch)
}

#[test]
fn restart_on_a_hedged_pair_against_an_account_without_it_halts_and_names_it() {
    let (a, _, b) = hedged();
    let mut r = restart(&a);
    assert_eq!(r.e.pair(0).unwrap().b.pos, b.qty, "the journal restored the perp leg");
    r.out.clear();
    r.e.start_reconcile(r.now, &mut r.out);
    // The runtime asks for the account; the venue lists no BTCUSDT position at all.
    let asked = r.now;
    r.advance_ms(30);
    r.balances(1_000_000_000.0, 10.0, 1_000_000.0);
    let acts = check(&mut r, Venue::Binance, asked);
    assert_eq!(mismatches(&acts), vec![(0, Venue::Binance, b.qty, Qty::ZERO)]);
    assert!(has(&acts, |a| matches!(a, Action::Alert(Alert::Halted(HaltReason::Mismatch)))));
    assert_eq!(r.e.trading_state(), TradingState::halted(HaltReason::Mismatch));
    // Reconciliation finishing does not turn it into a silent `Active`.
    r.ev(Event::Control(Control::ReconcileDone));
    assert_eq!(r.e.trading_state(), TradingState::halted(HaltReason::Mismatch));
    r.advance_ms(10);
    assert!(places(&r.market(344.0)).is_empty(), "no entry while the positions disagree");
}

#[test]
fn a_venue_reporting_the_wrong_size_is_named_with_both_quantities() {
    let (a, _, b) = hedged();
    let mut r = restart(&a);
    r.e.start_reconcile(r.now, &mut r.out);
    let asked = r.now;
    r.advance_ms(30);
    let half = Qty(b.qty.0 / 2);
    position(&mut r, half);
    let acts = check(&mut r, Venue::Binance, asked);
    assert_eq!(mismatches(&acts), vec![(0, Venue::Binance, b.qty, half)]);
    assert!(halted_by_mismatch(&r));
}

#[test]
fn agreement_within_dust_reconciles_to_active() {
    let (a, _, b) = hedged();
    let mut r = restart(&a);
    r.e.start_reconcile(r.now, &mut r.out);
    let asked = r.now;
    r.advance_ms(30);
    r.balances(1_000_000_000.0, 10.0, 1_000_000.0);
    // Half a lot more than the journal: no venue could trade that difference.
    let acts = position(&mut r, Qty(b.qty.0 + 50_000));
    assert!(acts.is_empty());
    let acts = check(&mut r, Venue::Binance, asked);
    assert!(mismatches(&acts).is_empty(), "{acts:?}");
    r.ev(Event::Control(Control::ReconcileDone));
    assert_eq!(r.e.trading_state(), TradingState::Active);
    // One lot off is not dust.
    let asked = r.now;
    r.advance_ms(30);
    position(&mut r, Qty(b.qty.0 + 100_000));
    let acts = check(&mut r, Venue::Binance, asked);
    assert_eq!(mismatches(&acts), vec![(0, Venue::Binance, b.qty, Qty(b.qty.0 + 100_000))]);
}

#[test]
fn the_periodic_check_catches_a_position_changed_outside_kimp() {
    let (mut h, u, b) = hedged();
    // The first periodic check agrees: nothing happens.
    h.advance_ms(1_000);
    let asked = h.now;
    h.advance_ms(40);
    position(&mut h, b.qty);
    upbit_btc(&mut h, Qty(10 * 100_000_000 - u.qty.0));
    let mut acts = check(&mut h, Venue::Binance, asked);
    acts.extend(check(&mut h, Venue::Upbit, asked));
    assert!(mismatches(&acts).is_empty(), "{acts:?}");
    assert_eq!(h.e.trading_state(), TradingState::Active);
    // Someone closes the perp by hand: the next check halts and names it.
    h.advance_ms(60_000);
    let asked = h.now;
    h.advance_ms(40);
    position(&mut h, Qty::ZERO);
    upbit_btc(&mut h, Qty(10 * 100_000_000 - u.qty.0));
    let acts = check(&mut h, Venue::Binance, asked);
    assert_eq!(mismatches(&acts), vec![(0, Venue::Binance, b.qty, Qty::ZERO)]);
    assert_eq!(h.e.trading_state(), TradingState::halted(HaltReason::Mismatch));
    assert!(places(&h.market(344.0)).is_empty());
}

#[test]
fn the_periodic_check_catches_an_upbit_balance_changed_outside_kimp() {
    let (mut h, u, _) = hedged();
    h.advance_ms(60_000);
    let asked = h.now;
    h.advance_ms(40);
    // 0.5 BTC withdrawn by hand.
    let expected = Qty(10 * 100_000_000 - u.qty.0);
    let actual = Qty(expected.0 - 50_000_000);
    upbit_btc(&mut h, actual);
    let acts = check(&mut h, Venue::Upbit, asked);
    assert_eq!(mismatches(&acts), vec![(0, Venue::Upbit, expected, actual)]);
    assert!(halted_by_mismatch(&h));
    // The engine goes on from what the venue holds: once resumed, the next check agrees.
    h.ev(Event::Control(Control::Resume));
    let asked = h.now;
    h.advance_ms(40);
    upbit_btc(&mut h, actual);
    assert!(mismatches(&check(&mut h, Venue::Upbit, asked)).is_empty());
    assert_eq!(h.e.trading_state(), TradingState::Active);
}

#[test]
fn a_report_that_may_predate_a_fill_is_not_a_mismatch() {
    let mut h = H::simple();
    h.start();
    // Asked before the entry; the answer (no position) arrives after its legs filled.
    let asked = h.now;
    h.advance_ms(5);
    let acts = h.market(344.0);
    let (u, b) = (place_on(&acts, KRW_BTC).unwrap(), place_on(&acts, BTCUSDT).unwrap());
    // While the orders are in flight, too.
    position(&mut h, Qty::ZERO);
    assert!(mismatches(&check(&mut h, Venue::Binance, asked)).is_empty());
    h.fill_all(&u);
    h.fill_all(&b);
    h.advance_ms(5);
    position(&mut h, Qty::ZERO);
    assert!(mismatches(&check(&mut h, Venue::Binance, asked)).is_empty());
    assert_eq!(h.e.trading_state(), TradingState::Active);
    // A report asked for after the last fill is conclusive.
    let asked = h.now;
    h.advance_ms(5);
    position(&mut h, Qty::ZERO);
    assert_eq!(mismatches(&check(&mut h, Venue::Binance, asked)).len(), 1);
}

#[test]
fn a_flat_account_with_no_pair_agrees() {
    let mut h = H::simple();
    h.start();
    h.advance_ms(1_000);
    let asked = h.now;
    h.advance_ms(40);
    position(&mut h, Qty::ZERO);
    let mut acts = check(&mut h, Venue::Binance, asked);
    acts.extend(check(&mut h, Venue::Upbit, asked)); // BTC unreported: checked as zero
    assert_eq!(mismatches(&acts), vec![(0, Venue::Upbit, Qty(10 * 100_000_000), Qty::ZERO)]);
    // A stray perp position nobody journaled is a mismatch too.
    h.ev(Event::Control(Control::Resume));
    let asked = h.now;
    h.advance_ms(40);
    position(&mut h, Qty(-1_000_000));
    upbit_btc(&mut h, Qty::ZERO); // what the last check found
    let mut acts = check(&mut h, Venue::Binance, asked);
    acts.extend(check(&mut h, Venue::Upbit, asked));
    assert_eq!(mismatches(&acts), vec![(0, Venue::Binance, Qty::ZERO, Qty(-1_000_000))]);
}
