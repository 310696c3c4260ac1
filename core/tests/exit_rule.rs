//! The exit rule under a missed exit leg (issue 14, item 3): a pair whose exit IOC fills
//! on one venue and not the other is completed only at net PnL > `exit_min_profit_krw`,
//! with a new order each time and a fresh check before each; the hard orphan deadline
//! still flattens what the market never lets close at a profit. `ONE LEG` is raised only
//! for exposure that outlives `orphan_ms_max`, never for a routine exit miss.
//! Driven through `on_event` with a fake clock.

mod common;

use common::*;
use kimp_core::action::{Action, Alert, HaltReason, PnlSplit, Purpose, Record, TradingState};
use kimp_core::event::{OrderEventKind, Side};
use kimp_core::order::{OrderKind, OrderRequest};
use kimp_core::pair::PairState;
use kimp_core::testkit::{BTCUSDT, KRW_BTC, KRW_USDT};
use kimp_core::units::{Nanos, Qty, Quote};

/// The Upbit bid `H::market(bps)` sets (Binance 70,000 / 70,000.1, FX ask 1,450).
fn upbit_bid(bps: f64) -> f64 {
    ((70_000.1 * 1_450.0 * (1.0 + bps / 10_000.0)) / 1_000.0).round() * 1_000.0
}

/// All three books: Binance at `b_bid` / +0.1 first (so a move there is seen before
/// anything else is decided), Upbit around `u_bid` (spread 100,000 KRW), FX 1,449 / 1,450.
fn books(h: &mut H, u_bid: f64, b_bid: f64) -> Vec<Action> {
    let mut acts = h.book(BTCUSDT, b_bid, b_bid + 0.1, 0.1, 1.0, 20);
    acts.extend(h.book(KRW_BTC, u_bid, u_bid + 100_000.0, 1_000.0, 1.0, 20));
    acts.extend(h.book(KRW_USDT, 1_449.0, 1_450.0, 1.0, 1_000_000.0, 5));
    acts
}

/// Ack, a fill of `qty` at the order's limit with the instrument's configured taker fee
/// (Upbit 0.05 %, Binance 0.04 %: what the exit's estimate assumes), then done.
fn settle(h: &mut H, r: &OrderRequest, qty: Qty) -> Vec<Action> {
    let mut acts = h.report(r, OrderEventKind::Ack);
    if qty.0 > 0 {
        let n = r.px.notional(qty).unwrap();
        let rate = if r.inst == BTCUSDT { 40_000 } else { 50_000 };
        let fee = Quote(kimp_core::units::apply_rate_ceil(n.0, rate).unwrap());
        let trade_id = r.cl_id.seq as u64 * 10 + r.cl_id.leg as u64;
        acts.extend(
            h.report(r, OrderEventKind::Fill { trade_id, px: r.px, qty, cum_qty: qty, fee }),
        );
    }
    acts.extend(h.report(r, OrderEventKind::Done { cum_qty: qty }));
    acts
}

/// An IOC that the venue answers with no fill.
fn miss(h: &mut H, r: &OrderRequest) -> Vec<Action> {
    settle(h, r, Qty(0))
}

fn one_leg_alerts(acts: &[Action]) -> usize {
    acts.iter().filter(|a| matches!(a, Action::Alert(Alert::OneLeg { .. }))).count()
}

fn closed_pnl(acts: &[Action]) -> Option<PnlSplit> {
    acts.iter().find_map(|a| match a {
        Action::Journal(Record::Pair(p)) if p.to == PairState::Closed => Some(p.pnl),
        _ => None,
    })
}

/// Opens a pair at 344 bps and lets the premium fall 1 bp at a time until the strategy
/// decides to exit: the exit is made at the first book where the rule allows it, so the
/// pair's margin over break-even is as thin as the rule lets it be. Returns the two exit
/// orders (Upbit buy, Binance sell) and the Upbit bid of that book.
fn exit_at_the_threshold(h: &mut H) -> (OrderRequest, OrderRequest, f64) {
    h.start();
    let acts = h.market(344.0);
    let u = place_on(&acts, KRW_BTC).expect("upbit entry");
    let b = place_on(&acts, BTCUSDT).expect("binance entry");
    settle(h, &u, u.qty);
    settle(h, &b, b.qty);
    assert_eq!(h.e.pair(0).unwrap().state, PairState::Hedged);
    for bps in (-100..344).rev() {
        h.advance_ms(10);
        let acts = h.market(bps as f64);
        if let (Some(cu), Some(cb)) = (place_on(&acts, KRW_BTC), place_on(&acts, BTCUSDT)) {
            assert_eq!((cu.side, cb.side), (Side::Buy, Side::Sell));
            assert_eq!(cu.qty, cb.qty, "both exit legs sized equally");
            assert!(cb.reduce_only);
            assert_eq!(h.e.pair(0).unwrap().state, PairState::Closing);
            return (cu, cb, upbit_bid(bps as f64));
        }
    }
    panic!("the strategy never exited");
}

/// The paper-trading failure: the exit's Upbit leg fills, its Binance IOC fills 0 and the
/// market then moves so that completing the exit would lose. The engine must not send the
/// completing order at a loss; it retries, with a new client id and a fresh net > 0 check
/// each time, once the market allows it, and the pair closes at net > 0.
#[test]
fn missed_binance_exit_leg_is_retried_only_at_a_profit() {
    let mut h = H::simple();
    let (cu, cb, u_bid) = exit_at_the_threshold(&mut h);
    settle(&mut h, &cu, cu.qty);
    // Binance falls 20 bps while its exit IOC is in flight; the IOC fills nothing.
    books(&mut h, u_bid, 69_860.0);
    let acts = miss(&mut h, &cb);
    assert!(places(&acts).is_empty(), "completing at 69,860 would lose: nothing sent");
    assert!(h.e.pair(0).is_some(), "not closed");
    // The market stays there: no order, whatever the timer or the books say.
    for _ in 0..3 {
        h.advance_ms(50);
        let mut acts = h.timer();
        acts.extend(books(&mut h, u_bid, 69_860.0));
        assert!(places(&acts).is_empty(), "no completing order while it would lose");
    }
    // The market comes part of the way back: a retry goes out, priced to keep net > 0.
    h.advance_ms(10);
    let acts = books(&mut h, u_bid, 69_960.0);
    let r1 = place_on(&acts, BTCUSDT).expect("retry once net > 0 is possible again");
    assert!(has(&acts, |a| matches!(
        a,
        Action::Journal(Record::Intent { purpose: Purpose::Hedge, .. })
    )));
    assert_ne!(r1.cl_id, cb.cl_id, "a new client id, never a re-send");
    assert_eq!(
        (r1.side, r1.qty, r1.reduce_only, r1.kind),
        (Side::Sell, cb.qty, true, OrderKind::LimitIoc)
    );
    assert!(r1.px <= px(69_960.0), "marketable: at or through the bid");
    // The collar would allow 69,820.1 (20 bps); the profit rule binds before it.
    assert!(r1.px > px(69_830.0), "the limit keeps net > 0, not just the collar: {:?}", r1.px);
    // That retry misses too; the market falls again before the next one may go.
    miss(&mut h, &r1);
    h.advance_ms(60);
    let mut acts = books(&mut h, u_bid, 69_860.0);
    acts.extend(h.timer());
    assert!(
        places(&acts).is_empty(),
        "fresh check before each retry: still a loss: {:?}",
        places(&acts)
    );
    // Back again: a second retry with yet another id; filled at its limit, the pair
    // closes at a profit.
    h.advance_ms(10);
    let acts = books(&mut h, u_bid, 69_960.0);
    let r2 = place_on(&acts, BTCUSDT).expect("second retry");
    assert!(r2.cl_id != r1.cl_id && r2.cl_id != cb.cl_id);
    let acts = settle(&mut h, &r2, r2.qty);
    let pnl = closed_pnl(&acts).expect("closed");
    assert!(pnl.net().0 > 0, "closed at net ≤ 0 by the exit path: {pnl:?}");
    assert!(h.e.pair(0).is_none());
    assert_eq!(h.e.trading_state(), TradingState::Active);
    // Every completing order of the exit was a limit IOC: nothing at market.
    assert!(h.log.iter().all(|a| !matches!(a, Action::Place(r) if r.kind == OrderKind::Market)));
}

/// The same miss, with the market never coming back: no completing order at a loss; the
/// exposure is reported as `ONE LEG` once it outlives `orphan_ms_max`, and at
/// `orphan_ms_hard` the exposure limit wins over the profit rule: the open leg is
/// flattened at market and trading halts. That close is a loss, and only that path makes it.
#[test]
fn exit_the_market_never_lets_complete_is_flattened_at_the_hard_deadline() {
    let mut h = H::simple();
    let risk = h.e.config().risk;
    let (cu, cb, u_bid) = exit_at_the_threshold(&mut h);
    let t0 = h.now;
    settle(&mut h, &cu, cu.qty);
    books(&mut h, u_bid, 69_860.0);
    miss(&mut h, &cb);
    let mut alerted_at = None;
    let mut flat = None;
    for _ in 0..60 {
        h.advance_ms(50);
        let mut acts = books(&mut h, u_bid, 69_860.0);
        acts.extend(h.timer());
        if one_leg_alerts(&acts) > 0 {
            assert!(alerted_at.is_none(), "ONE LEG raised twice");
            alerted_at = Some(h.now.since(t0));
        }
        if let Some(r) = place_on(&acts, BTCUSDT) {
            flat = Some(r);
            break;
        }
    }
    let age = alerted_at.expect("persisting one-leg exposure raises ONE LEG");
    assert!(age >= Nanos::from_ms(risk.orphan_ms_max), "ONE LEG before orphan_ms_max: {age:?}");
    assert!(age < Nanos::from_ms(risk.orphan_ms_max + 100), "{age:?}");
    let flat = flat.expect("flattened at the hard deadline");
    let at = h.now.since(t0);
    assert!(at >= Nanos::from_ms(risk.orphan_ms_hard), "flattened before the deadline: {at:?}");
    assert_eq!(
        (flat.kind, flat.side, flat.qty, flat.reduce_only),
        (OrderKind::Market, Side::Sell, cb.qty, true)
    );
    assert_eq!(h.e.trading_state(), TradingState::halted(HaltReason::OrphanHard));
    assert_eq!(
        h.log.iter().filter(|a| matches!(a, Action::Place(r) if r.inst == BTCUSDT)).count(),
        3,
        "entry, exit, flatten: no completing order was sent at a loss"
    );
    // A market order fills at the touch.
    let fill = OrderRequest { px: px(69_860.0), ..flat };
    let acts = settle(&mut h, &fill, flat.qty);
    let pnl = closed_pnl(&acts).expect("closed by the flatten");
    assert!(pnl.net().0 < 0, "the deadline flatten is where a loss can happen: {pnl:?}");
}

/// Both exit IOCs fill nothing: the legs are still equal, there is no exposure, so no
/// `ONE LEG`, no flatten at market; the pair is hedged again and the exit is decided
/// afresh on a later book.
#[test]
fn exit_with_both_legs_unfilled_is_no_one_leg_and_no_flatten() {
    let mut h = H::simple();
    let (cu, cb, u_bid) = exit_at_the_threshold(&mut h);
    let mut acts = miss(&mut h, &cu);
    acts.extend(miss(&mut h, &cb));
    assert_eq!(one_leg_alerts(&acts), 0);
    assert!(places(&acts).is_empty(), "nothing at market: {:?}", places(&acts));
    assert_eq!(h.e.pair(0).unwrap().state, PairState::Hedged);
    // The next book decides again, with a fresh net check, and the exit completes.
    h.advance_ms(10);
    let acts = books(&mut h, u_bid, 70_000.0);
    let (Some(u2), Some(b2)) = (place_on(&acts, KRW_BTC), place_on(&acts, BTCUSDT)) else {
        panic!("exit decided again");
    };
    assert!(u2.cl_id != cu.cl_id && b2.cl_id != cb.cl_id);
    settle(&mut h, &u2, u2.qty);
    let acts = settle(&mut h, &b2, b2.qty);
    assert!(closed_pnl(&acts).expect("closed").net().0 > 0);
    assert_eq!(one_leg_alerts(&h.log), 0, "a routine exit miss is not ONE LEG");
    assert!(h.log.iter().all(|a| !matches!(a, Action::Place(r) if r.kind == OrderKind::Market)));
}

/// The Binance exit IOC misses and its retry fills inside the retry window
/// (`orphan_ms_max`): a routine miss, no `ONE LEG` alert.
#[test]
fn exit_leg_completed_inside_the_retry_window_raises_no_one_leg() {
    let mut h = H::simple();
    let (cu, cb, _) = exit_at_the_threshold(&mut h);
    settle(&mut h, &cu, cu.qty);
    let acts = miss(&mut h, &cb);
    let r = place_on(&acts, BTCUSDT).expect("the market is unchanged: retried at once");
    assert_ne!(r.cl_id, cb.cl_id);
    h.advance_ms(100);
    h.timer();
    let acts = settle(&mut h, &r, r.qty);
    assert!(closed_pnl(&acts).expect("closed").net().0 > 0);
    assert_eq!(one_leg_alerts(&h.log), 0, "a routine exit miss is not ONE LEG");
}

/// The exit is decided with room for either leg to be retried: at the first book where
/// the strategy exits, a missed Binance leg can still complete at net > 0 after the
/// Binance bid falls by `slippage_bps`, and a missed Upbit leg after the Upbit ask rises
/// by as much.
#[test]
fn exit_is_decided_with_room_to_retry_either_leg() {
    let slip = H::simple().e.config().strategy.slippage_bps as f64 / 10_000.0;
    // Binance leg missed, Binance bid down by the slippage budget.
    let mut h = H::simple();
    let (cu, cb, u_bid) = exit_at_the_threshold(&mut h);
    settle(&mut h, &cu, cu.qty);
    let b_bid = 70_000.0 * (1.0 - slip);
    books(&mut h, u_bid, b_bid);
    let acts = miss(&mut h, &cb);
    let r = place_on(&acts, BTCUSDT).expect("Binance retry within the headroom");
    assert!(r.px <= px(b_bid));
    let pnl = closed_pnl(&settle(&mut h, &r, r.qty)).expect("closed");
    assert!(pnl.net().0 > 0, "{pnl:?}");
    // Upbit leg missed, Upbit ask up by the slippage budget (on Upbit's 1,000-KRW grid).
    let mut h = H::simple();
    let (cu, cb, u_bid) = exit_at_the_threshold(&mut h);
    settle(&mut h, &cb, cb.qty);
    let ask = u_bid + 100_000.0;
    let up = ((ask * slip) / 1_000.0).floor() * 1_000.0;
    books(&mut h, u_bid + up, 70_000.0);
    let acts = miss(&mut h, &cu);
    let r = place_on(&acts, KRW_BTC).expect("Upbit retry within the headroom");
    assert_eq!((r.side, r.qty), (Side::Buy, cu.qty));
    assert!(r.px >= px(ask + up));
    let pnl = closed_pnl(&settle(&mut h, &r, r.qty)).expect("closed");
    assert!(pnl.net().0 > 0, "{pnl:?}");
}

/// Exposure that persists past `orphan_ms_max` on an exit is real one-leg exposure: one
/// `ONE LEG` alert, and `One leg resolved` when a retry completes it at a profit.
#[test]
fn persisting_exit_exposure_raises_one_leg_once_and_resolves() {
    let mut h = H::simple();
    let risk = h.e.config().risk;
    let (cu, cb, u_bid) = exit_at_the_threshold(&mut h);
    settle(&mut h, &cu, cu.qty);
    books(&mut h, u_bid, 69_860.0);
    miss(&mut h, &cb);
    let mut waited = 0;
    while waited <= risk.orphan_ms_max + 100 {
        h.advance_ms(50);
        waited += 50;
        books(&mut h, u_bid, 69_860.0);
        h.timer();
    }
    assert_eq!(one_leg_alerts(&h.log), 1);
    assert_eq!(h.e.pair(0).unwrap().state, PairState::OneLeg);
    h.advance_ms(10);
    let acts = books(&mut h, u_bid, 70_000.0);
    let r = place_on(&acts, BTCUSDT).expect("retried once the market is back");
    let acts = settle(&mut h, &r, r.qty);
    assert!(has(&acts, |a| matches!(a, Action::Alert(Alert::OneLegResolved { .. }))));
    assert!(closed_pnl(&acts).expect("closed").net().0 > 0);
    assert_eq!(one_leg_alerts(&h.log), 1);
}

/// A restart in the middle of a missed exit keeps the exit's profit rule: the journal
/// says the pair was exiting, so the restored engine completes it only at net > 0 — it
/// does not repair it towards flat at any price.
#[test]
fn restart_mid_exit_keeps_the_profit_rule() {
    let mut h = H::simple();
    let (cu, cb, u_bid) = exit_at_the_threshold(&mut h);
    settle(&mut h, &cu, cu.qty);
    books(&mut h, u_bid, 69_860.0);
    miss(&mut h, &cb);
    // Crash; a new epoch replays the journal and reconciles.
    let mut e = kimp_core::Engine::new(*h.e.config(), &kimp_core::testkit::btc_markets(), 2)
        .expect("valid config");
    for a in &h.log {
        if let Action::Journal(r) = a {
            e.replay(h.now, r);
        }
    }
    let mut r = H::simple();
    r.e = e;
    r.now = h.now;
    r.out.clear();
    assert_eq!(r.e.start_reconcile(r.now, &mut r.out), 0, "no order in flight");
    books(&mut r, u_bid, 69_860.0);
    r.start();
    assert_eq!(r.e.trading_state(), TradingState::Active);
    assert!(places(&r.log).is_empty(), "completing at 69,860 would lose: {:?}", places(&r.log));
    r.advance_ms(50);
    let acts = books(&mut r, u_bid, 69_960.0);
    let retry = place_on(&acts, BTCUSDT).expect("retried once the market allows a profit");
    assert_eq!(retry.cl_id.epoch, 2);
    let pnl = closed_pnl(&settle(&mut r, &retry, retry.qty)).expect("closed");
    assert!(pnl.net().0 > 0, "{pnl:?}");
}
