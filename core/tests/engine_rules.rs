//! The engine's trading rules, one test per rule, driven through `on_event` with a fake
//! clock (no sleeps, no sockets).

mod common;

use common::*;
use kimp_core::action::{Action, Alert, HaltReason, Purpose, Record, Telemetry, TradingState};
use kimp_core::config::{Direction, EngineConfig, FundingFilter, OneLegPolicy};
use kimp_core::event::{Control, DepthDiff, Event, Level, OrderEventKind, Param, Side};
use kimp_core::order::{Leg, OrderKind, OrderState};
use kimp_core::pair::PairState;
use kimp_core::risk::RiskReject;
use kimp_core::testkit::{BTCUSDT, KRW_BTC, KRW_USDT};
use kimp_core::units::{Nanos, Qty};

fn opened(h: &mut H) -> (kimp_core::order::OrderRequest, kimp_core::order::OrderRequest) {
    let acts = h.market(344.0);
    let u = place_on(&acts, KRW_BTC).expect("upbit leg placed");
    let b = place_on(&acts, BTCUSDT).expect("binance leg placed");
    h.fill_all(&u);
    h.fill_all(&b);
    assert_eq!(h.e.pair(0).unwrap().state, PairState::Hedged);
    (u, b)
}

#[test]
fn reconciling_blocks_entries_until_reconcile_done() {
    let mut h = H::simple();
    h.balances(1e9, 10.0, 1e6);
    assert_eq!(h.e.trading_state(), TradingState::Reconciling);
    assert!(places(&h.market(344.0)).is_empty(), "no order while reconciling");
    h.ev(Event::Control(Control::ReconcileDone));
    assert_eq!(h.e.trading_state(), TradingState::Active);
    let acts = h.market(344.0);
    assert_eq!(places(&acts).len(), 2);
}

#[test]
fn entry_at_threshold_sells_upbit_buys_binance_and_journals_first() {
    let mut h = H::simple();
    h.start();
    assert!(places(&h.market(290.0)).is_empty(), "below 3.0 %: no entry");
    let acts = h.market(344.0);
    let ps = places(&acts);
    assert_eq!(ps.len(), 2);
    let u = place_on(&acts, KRW_BTC).unwrap();
    let b = place_on(&acts, BTCUSDT).unwrap();
    assert_eq!((u.side, b.side), (Side::Sell, Side::Buy));
    assert_eq!(u.qty, b.qty, "equal base quantity");
    assert_eq!(u.kind, OrderKind::LimitIoc);
    assert_eq!((u.cl_id.leg, b.cl_id.leg), (Leg::U, Leg::B));
    assert_eq!(u.cl_id.seq, b.cl_id.seq);
    // The intent record comes before any Place.
    let first_place = acts.iter().position(|a| matches!(a, Action::Place(_))).unwrap();
    let intent = acts
        .iter()
        .position(|a| matches!(a, Action::Journal(Record::Intent { purpose: Purpose::Entry, .. })));
    assert!(intent.unwrap() < first_place);
    assert_eq!(h.e.pair(0).unwrap().state, PairState::Opening);
}

#[test]
fn buy_discount_enters_at_or_below_its_threshold() {
    let mut cfg = EngineConfig::default();
    cfg.strategy.direction = Direction::BuyDiscount;
    cfg.strategy.entry_bps = -100;
    cfg.strategy.funding_filter = FundingFilter::Off;
    let mut h = H::new(cfg);
    h.start();
    assert!(places(&h.market(0.0)).is_empty());
    let acts = h.market(-250.0);
    let u = place_on(&acts, KRW_BTC).unwrap();
    let b = place_on(&acts, BTCUSDT).unwrap();
    assert_eq!((u.side, b.side), (Side::Buy, Side::Sell));
}

#[test]
fn funding_filter_positive_needs_a_positive_rate() {
    let mut cfg = EngineConfig::default();
    cfg.strategy.entry_cooldown_ms = 0;
    let mut h = H::new(cfg);
    h.start();
    assert!(places(&h.market(344.0)).is_empty(), "no funding known yet");
    h.funding(0.0, 100_000_000);
    assert!(places(&h.market(344.0)).is_empty(), "rate 0 is not > 0");
    h.funding(-0.0001, 100_000_000);
    assert!(places(&h.market(344.0)).is_empty());
    h.funding(0.0001, 100_000_000);
    assert_eq!(places(&h.market(344.0)).len(), 2);
}

#[test]
fn funding_filter_favourable_follows_the_perp_side() {
    let mut cfg = EngineConfig::default();
    cfg.strategy.funding_filter = FundingFilter::Favourable;
    cfg.strategy.entry_cooldown_ms = 0;
    let mut h = H::new(cfg);
    h.start();
    // sell_premium is long the perp: paid when funding is negative.
    h.funding(0.0001, 100_000_000);
    assert!(places(&h.market(344.0)).is_empty());
    h.funding(-0.0001, 100_000_000);
    assert_eq!(places(&h.market(344.0)).len(), 2);
}

#[test]
fn one_open_pair_per_coin() {
    let mut h = H::simple();
    h.start();
    let acts = h.market(344.0);
    assert_eq!(places(&acts).len(), 2);
    for _ in 0..5 {
        h.advance_ms(10);
        assert!(places(&h.market(400.0)).is_empty(), "pair open: no second entry");
    }
}

#[test]
fn size_is_capped_by_max_notional_and_rounded_to_the_binance_lot() {
    let mut h = H::simple();
    h.start();
    let acts = h.market(344.0);
    let u = place_on(&acts, KRW_BTC).unwrap();
    // 10,000,000 KRW / 104,992,000 ≈ 0.0952 → 0.095 on Binance's 0.001 step.
    assert_eq!(u.qty, q(0.095));
}

#[test]
fn size_keeps_five_percent_of_capital_in_reserve() {
    let mut cfg = EngineConfig::default();
    cfg.strategy.funding_filter = FundingFilter::Off;
    cfg.strategy.max_pair_notional_krw = 1_000_000_000;
    cfg.risk.max_order_notional_krw = 1_000_000_000;
    cfg.risk.max_coin_notional_krw = 1_000_000_000;
    cfg.risk.max_order_notional_usdt = 1_000_000;
    let mut h = H::new(cfg);
    h.balances(1e9, 0.2, 1e6); // 0.2 BTC on Upbit: 95 % = 0.19
    h.ev(Event::Control(Control::ReconcileDone));
    let u = place_on(&h.market(344.0), KRW_BTC).unwrap();
    assert_eq!(u.qty, q(0.19));
}

#[test]
fn size_is_limited_by_depth_within_the_slippage_budget() {
    let mut cfg = EngineConfig::default();
    cfg.strategy.funding_filter = FundingFilter::Off;
    cfg.strategy.max_pair_notional_krw = 1_000_000_000;
    cfg.risk.max_order_notional_krw = 1_000_000_000;
    cfg.risk.max_coin_notional_krw = 1_000_000_000;
    cfg.risk.max_order_notional_usdt = 1_000_000;
    let mut h = H::new(cfg);
    h.start();
    h.market(200.0);
    // Thin Binance book: 0.05 BTC per 0.1 level, 20 levels span 1.9 USDT ≈ 2.7 bps
    // (all within 10 bps) → 1.0 BTC; and a single deep level beyond the budget.
    let mut asks: Vec<Level> =
        (0..20).map(|i| Level::new(px(70_000.1 + 0.1 * i as f64), q(0.05))).collect();
    asks.push(Level::new(px(70_200.0), q(50.0)));
    let bids = [Level::new(px(70_000.0), q(5.0))];
    let acts = h.ev(Event::Book(kimp_core::event::BookSnapshot {
        inst: BTCUSDT,
        exch_ts: h.now,
        last_update_id: 0,
        bids: &bids,
        asks: &asks,
    }));
    assert!(places(&acts).is_empty(), "premium still below the threshold");
    let bid = ((70_000.1 * 1_450.0 * 1.0344) / 1_000.0f64).round() * 1_000.0;
    let acts = h.book(KRW_BTC, bid, bid + 100_000.0, 1_000.0, 1.0, 20);
    let b = place_on(&acts, BTCUSDT).unwrap();
    assert_eq!(b.qty, q(1.0), "the 70,200 level is beyond 10 bps");
}

#[test]
fn exit_only_when_net_pnl_is_positive() {
    let mut h = H::simple();
    h.start();
    let (u, b) = opened(&mut h);
    // Premium unchanged or higher: closing now would lose (spreads + fees): hold.
    for bps in [344.0, 400.0, 600.0, 330.0] {
        h.advance_ms(10);
        assert!(places(&h.market(bps)).is_empty(), "no exit at {bps} bps");
    }
    // Premium converged: profitable after fees.
    h.advance_ms(10);
    let acts = h.market(50.0);
    let cu = place_on(&acts, KRW_BTC).expect("close upbit");
    let cb = place_on(&acts, BTCUSDT).expect("close binance");
    assert_eq!((cu.side, cb.side), (Side::Buy, Side::Sell));
    assert_eq!((cu.qty, cb.qty), (u.qty, b.qty));
    assert!(cb.reduce_only);
    assert_eq!(h.e.pair(0).unwrap().state, PairState::Closing);
    h.fill_all(&cu);
    let acts = h.fill_all(&cb);
    assert!(h.e.pair(0).is_none(), "closed pair is released");
    let closed = acts.iter().find_map(|a| match a {
        Action::Alert(Alert::PairClosed { pnl, .. }) => Some(*pnl),
        _ => None,
    });
    let pnl = closed.expect("pair closed alert");
    assert!(pnl.net().0 > 0, "{pnl:?}");
    assert!(pnl.fees.0 < 0);
    assert_eq!(h.e.realized_krw(), pnl.net().0);
}

#[test]
fn halt_latches_and_blocks_entries_and_exits_until_resume() {
    let mut h = H::simple();
    h.start();
    let acts = h.ev(Event::Control(Control::Stop));
    assert!(has(&acts, |a| matches!(a, Action::Alert(Alert::Halted(HaltReason::Operator)))));
    assert!(places(&h.market(344.0)).is_empty());
    h.advance_ms(2_000);
    assert!(places(&h.market(344.0)).is_empty(), "still halted: it latches");
    h.ev(Event::Control(Control::Resume));
    assert_eq!(h.e.trading_state(), TradingState::Active);
    assert_eq!(places(&h.market(344.0)).len(), 2);
}

#[test]
fn one_leg_rehedges_the_missing_quantity_with_a_wider_collar() {
    let mut h = H::simple();
    h.start();
    let acts = h.market(344.0);
    let u = place_on(&acts, KRW_BTC).unwrap();
    let b = place_on(&acts, BTCUSDT).unwrap();
    h.fill_all(&u);
    // Halted between the legs: the repair must still go out.
    h.ev(Event::Control(Control::Stop));
    let acts = h.reject(&b);
    assert!(has(&acts, |a| matches!(a, Action::Alert(Alert::OneLeg { .. }))));
    let hedge = place_on(&acts, BTCUSDT).expect("re-hedge on Binance");
    assert_eq!(hedge.side, Side::Buy);
    assert_eq!(hedge.qty, b.qty);
    assert!(hedge.px > b.px, "collar widened");
    assert_ne!(hedge.cl_id, b.cl_id, "a new id, never a re-send");
    assert_eq!(h.e.pair(0).unwrap().state, PairState::OneLeg);
    assert_eq!(h.e.pair(0).unwrap().unhedged(), kimp_core::units::Qty(-u.qty.0));
    h.advance_ms(50);
    let acts = h.fill_all(&hedge);
    assert!(has(&acts, |a| matches!(a, Action::Alert(Alert::OneLegResolved { age_ms: 50, .. }))));
    assert_eq!(h.e.pair(0).unwrap().state, PairState::Hedged);
}

#[test]
fn one_leg_unwind_policy_reverses_the_filled_leg() {
    let mut cfg = EngineConfig::default();
    cfg.strategy.funding_filter = FundingFilter::Off;
    cfg.risk.one_leg_policy = OneLegPolicy::Unwind;
    let mut h = H::new(cfg);
    h.start();
    let acts = h.market(344.0);
    let u = place_on(&acts, KRW_BTC).unwrap();
    let b = place_on(&acts, BTCUSDT).unwrap();
    h.fill_all(&u);
    let acts = h.reject(&b);
    let unwind = place_on(&acts, KRW_BTC).expect("unwind on Upbit");
    assert_eq!(unwind.side, Side::Buy);
    assert_eq!(unwind.qty, u.qty);
    h.fill_all(&unwind);
    assert!(h.e.pair(0).is_none(), "flat again: pair closed");
}

#[test]
fn partial_second_leg_is_completed() {
    let mut h = H::simple();
    h.start();
    let acts = h.market(344.0);
    let u = place_on(&acts, KRW_BTC).unwrap();
    let b = place_on(&acts, BTCUSDT).unwrap();
    h.fill_all(&u);
    h.report(&b, OrderEventKind::Ack);
    h.fill(&b, q(0.05), q(0.05));
    let acts = h.report(&b, OrderEventKind::Done { cum_qty: q(0.05) });
    let hedge = place_on(&acts, BTCUSDT).expect("residual re-hedged");
    assert_eq!(hedge.qty, q(0.045));
}

#[test]
fn orphan_past_the_hard_deadline_flattens_and_halts() {
    let mut cfg = EngineConfig::default();
    cfg.strategy.funding_filter = FundingFilter::Off;
    cfg.risk.orders_per_sec_max = 20;
    let mut h = H::new(cfg);
    h.start();
    let acts = h.market(344.0);
    let u = place_on(&acts, KRW_BTC).unwrap();
    let b = place_on(&acts, BTCUSDT).unwrap();
    h.fill_all(&u);
    let mut acts = h.reject(&b);
    let mut flat = None;
    // Every repair is rejected; the hard deadline (2 s) must flatten and halt.
    for _ in 0..40 {
        while let Some(r) = place_on(&acts, BTCUSDT) {
            acts = h.reject(&r);
        }
        h.advance_ms(100);
        acts = h.timer();
        flat = place_on(&acts, KRW_BTC);
        if flat.is_some() {
            break;
        }
    }
    assert_eq!(h.e.trading_state(), TradingState::halted(HaltReason::OrphanHard));
    let flat = flat.expect("flatten the Upbit leg");
    assert_eq!(flat.kind, OrderKind::Market);
    assert_eq!(flat.side, Side::Buy);
    assert_eq!(flat.qty, u.qty);
    let age = h.now.since(Nanos::from_ms(1_000));
    assert!(age >= Nanos::from_ms(2_000) && age < Nanos::from_ms(2_200), "{age:?}");
    h.fill_all(&flat);
    assert!(h.e.pair(0).is_none());
}

#[test]
fn hard_deadline_flattens_the_free_leg_while_the_other_is_unknown() {
    let mut h = H::simple();
    h.start();
    let acts = h.market(344.0);
    let u = place_on(&acts, KRW_BTC).unwrap();
    let b = place_on(&acts, BTCUSDT).unwrap();
    h.fill_all(&u);
    h.report(&b, OrderEventKind::Unknown);
    let mut flat = None;
    for _ in 0..30 {
        h.advance_ms(100);
        let acts = h.timer();
        assert!(place_on(&acts, BTCUSDT).is_none(), "the unknown leg is never re-sent");
        if let Some(f) = place_on(&acts, KRW_BTC) {
            flat = Some(f);
            break;
        }
    }
    let flat = flat.expect("Upbit leg flattened at the hard deadline");
    assert_eq!((flat.side, flat.qty, flat.kind), (Side::Buy, u.qty, OrderKind::Market));
    assert_eq!(h.e.trading_state(), TradingState::halted(HaltReason::OrphanHard));
    // The unknown order turns out filled: the new Binance long is flattened too.
    h.fill_all(&flat);
    let mut acts = h.fill(&b, b.qty, b.qty);
    acts.extend(h.report(&b, OrderEventKind::Done { cum_qty: b.qty }));
    h.advance_ms(100);
    acts.extend(h.timer());
    let fb = place_on(&acts, BTCUSDT).expect("flatten the Binance leg once known");
    assert_eq!(
        (fb.side, fb.qty, fb.reduce_only, fb.kind),
        (Side::Sell, b.qty, true, OrderKind::Market)
    );
    h.fill_all(&fb);
    assert!(h.e.pair(0).is_none());
}

#[test]
fn unknown_outcome_is_queried_never_resent() {
    let mut h = H::simple();
    h.start();
    let acts = h.market(344.0);
    let u = place_on(&acts, KRW_BTC).unwrap();
    let b = place_on(&acts, BTCUSDT).unwrap();
    h.fill_all(&u);
    let acts = h.report(&b, OrderEventKind::Unknown);
    assert!(has(&acts, |a| matches!(a, Action::Query { cl_id, .. } if *cl_id == b.cl_id)));
    assert!(places(&acts).is_empty());
    // Time passes (within the orphan deadline), the market moves: no new order for this
    // coin while its leg is unknown.
    for _ in 0..15 {
        h.advance_ms(100);
        let mut acts = h.timer();
        acts.extend(h.market(344.0));
        assert!(places(&acts).is_empty(), "an unknown leg is never re-sent");
    }
    // The query answers: it had filled.
    h.fill(&b, b.qty, b.qty);
    h.report(&b, OrderEventKind::Done { cum_qty: b.qty });
    assert_eq!(h.e.pair(0).unwrap().state, PairState::Hedged);
}

#[test]
fn silent_order_becomes_unknown_after_the_timeout() {
    let mut h = H::simple();
    h.start();
    let acts = h.market(344.0);
    let b = place_on(&acts, BTCUSDT).unwrap();
    h.advance_ms(1_999);
    assert!(!has(&h.timer(), |a| matches!(a, Action::Query { .. })));
    h.advance_ms(1);
    let acts = h.timer();
    assert!(has(&acts, |a| matches!(a, Action::Query { cl_id, .. } if *cl_id == b.cl_id)));
    let st = h.e.live_orders().find(|o| o.req.cl_id == b.cl_id).unwrap().state;
    assert_eq!(st, OrderState::Unknown);
    // NotFound from the query once the request could no longer arrive: it never did.
    h.advance_ms(kimp_core::order::NOT_FOUND_FINAL.as_ms());
    h.report(&b, OrderEventKind::NotFound);
    assert!(h.e.live_orders().all(|o| o.req.cl_id != b.cl_id));
}

#[test]
fn duplicate_fills_are_booked_once() {
    let mut h = H::simple();
    h.start();
    let acts = h.market(344.0);
    let u = place_on(&acts, KRW_BTC).unwrap();
    h.report(&u, OrderEventKind::Ack);
    h.fill(&u, u.qty, u.qty);
    h.fill(&u, u.qty, u.qty);
    assert_eq!(h.e.pair(0).unwrap().u.pos, kimp_core::units::Qty(-u.qty.0));
    assert_eq!(h.e.stats().ignored_reports + h.e.stats().unmatched_reports, 1);
}

#[test]
fn stale_book_blocks_entries() {
    let mut h = H::simple();
    h.start();
    h.market(200.0);
    h.advance_ms(600);
    // Only the Upbit book refreshes; Binance is 600 ms old (> 500 ms).
    let bid = ((70_000.1 * 1_450.0 * 1.0344) / 1_000.0f64).round() * 1_000.0;
    let acts = h.book(KRW_BTC, bid, bid + 100_000.0, 1_000.0, 1.0, 20);
    assert!(places(&acts).is_empty());
    let acts = h.timer();
    assert!(has(&acts, |a| matches!(a, Action::Alert(Alert::StaleBook(i)) if *i == BTCUSDT)));
}

#[test]
fn depth_gap_asks_for_a_resync_and_blocks_entries() {
    let mut h = H::simple();
    h.start();
    // Binance book from a REST snapshot with lastUpdateId 100, then diffs.
    let bids = [Level::new(px(70_000.0), q(1.0))];
    let asks = [Level::new(px(70_000.1), q(1.0))];
    h.ev(Event::Book(kimp_core::event::BookSnapshot {
        inst: BTCUSDT,
        exch_ts: h.now,
        last_update_id: 100,
        bids: &bids,
        asks: &asks,
    }));
    let diff = |u0, u1, pu| DepthDiff {
        inst: BTCUSDT,
        exch_ts: Nanos(0),
        first_id: u0,
        last_id: u1,
        prev_last_id: Some(pu),
        bids: &[],
        asks: &[],
    };
    h.ev(Event::Depth(diff(95, 105, 90)));
    let acts = h.ev(Event::Depth(diff(120, 130, 110)));
    assert!(has(&acts, |a| matches!(a, Action::Resync(i) if *i == BTCUSDT)));
    assert_eq!(h.e.stats().gaps, 1);
    h.book(KRW_USDT, 1_449.0, 1_450.0, 1.0, 1e6, 5);
    let bid = ((70_000.1 * 1_450.0 * 1.0344) / 1_000.0f64).round() * 1_000.0;
    let acts = h.book(KRW_BTC, bid, bid + 100_000.0, 1_000.0, 1.0, 20);
    assert!(places(&acts).is_empty(), "no decision on a book with a gap");
}

#[test]
fn price_collar_refuses_an_entry_through_the_touch() {
    let mut cfg = EngineConfig::default();
    cfg.strategy.funding_filter = FundingFilter::Off;
    cfg.strategy.slippage_bps = 1;
    cfg.risk.collar_bps = 1;
    let mut h = H::new(cfg);
    h.start();
    h.market(200.0);
    // An Upbit book whose first level is tiny: the walk must go 2 levels (2,000 KRW ≈
    // 0.19 bps) deep... within the collar; make the second level 30 bps away.
    let bid = ((70_000.1 * 1_450.0 * 1.0344) / 1_000.0f64).round() * 1_000.0;
    let bids = [Level::new(px(bid), q(0.001)), Level::new(px(bid - 400_000.0), q(5.0))];
    let asks = [Level::new(px(bid + 100_000.0), q(5.0))];
    let acts = h.ev(Event::Book(kimp_core::event::BookSnapshot {
        inst: KRW_BTC,
        exch_ts: h.now,
        last_update_id: 0,
        bids: &bids,
        asks: &asks,
    }));
    // Depth within 1 bp is 0.001 BTC: below Binance's lot → no entry at all, and nothing
    // crosses the collar.
    for p in places(&acts) {
        let touch = if p.side == Side::Sell { bid } else { bid + 100_000.0 };
        assert!((p.px.0 as f64 - px(touch).0 as f64).abs() / px(touch).0 as f64 <= 0.0001);
    }
}

#[test]
fn order_rate_limit_halts_a_runaway() {
    let mut cfg = EngineConfig::default();
    cfg.strategy.funding_filter = FundingFilter::Off;
    cfg.strategy.entry_cooldown_ms = 0;
    cfg.risk.orders_per_sec_max = 3;
    let mut h = H::new(cfg);
    h.start();
    // Each entry that gets no fills closes flat at once (both legs rejected), so the
    // strategy re-enters on every tick: a runaway that the rate limit must stop.
    let mut sent = [0; 3];
    let mut halted_at = None;
    for i in 0..20 {
        h.advance_ms(10);
        let acts = h.market(344.0);
        for p in places(&acts) {
            sent[p.inst.0 as usize] += 1;
            h.reject(&p);
        }
        if h.e.trading_state().halts().contains(HaltReason::OrderRate) {
            halted_at = Some(i);
            break;
        }
    }
    assert!(halted_at.is_some(), "runaway halted");
    assert!(sent.iter().all(|&n| n <= 3), "orders leaked past the per-venue limit: {sent:?}");
    assert_eq!(sent[KRW_BTC.0 as usize], 3);
    assert!(h.log.iter().any(|a| matches!(
        a,
        Action::Telemetry(Telemetry::RiskReject { reason: RiskReject::OrderRate, .. })
    )));
}

#[test]
fn max_open_pairs_is_enforced_across_coins() {
    let mut cfg = EngineConfig::default();
    cfg.strategy.funding_filter = FundingFilter::Off;
    cfg.risk.max_open_pairs = 2;
    cfg.risk.orders_per_sec_max = 100;
    let markets = kimp_core::testkit::multi_markets(4);
    let mut e = kimp_core::Engine::new(cfg, &markets, 1).unwrap();
    let mut out = kimp_core::action::Outbox::with_capacity(256);
    let now = Nanos::from_ms(1_000);
    for (venue, asset, v) in [
        (kimp_core::instrument::Venue::Upbit, "KRW", 1e9),
        (kimp_core::instrument::Venue::Binance, "USDT", 1e6),
    ] {
        e.on_event(
            now,
            &Event::Balance(kimp_core::event::Balance {
                venue,
                asset: kimp_core::instrument::Symbol::new(asset).unwrap(),
                free: q(v),
                locked: Qty(0),
            }),
            &mut out,
        );
    }
    for c in 0..4 {
        e.on_event(
            now,
            &Event::Balance(kimp_core::event::Balance {
                venue: kimp_core::instrument::Venue::Upbit,
                asset: kimp_core::instrument::Symbol::new(&format!("C{c}")).unwrap(),
                free: q(10.0),
                locked: Qty(0),
            }),
            &mut out,
        );
    }
    e.on_event(now, &Event::Control(Control::ReconcileDone), &mut out);
    out.clear();
    let book = |e: &mut kimp_core::Engine,
                out: &mut kimp_core::action::Outbox,
                inst: u16,
                bid: f64,
                ask: f64,
                tick: f64| {
        let bids: Vec<Level> =
            (0..10).map(|i| Level::new(px(bid - tick * i as f64), q(1.0))).collect();
        let asks: Vec<Level> =
            (0..10).map(|i| Level::new(px(ask + tick * i as f64), q(1.0))).collect();
        e.on_event(
            now,
            &Event::Book(kimp_core::event::BookSnapshot {
                inst: kimp_core::instrument::InstrumentId(inst),
                exch_ts: now,
                last_update_id: 0,
                bids: &bids,
                asks: &asks,
            }),
            out,
        );
    };
    book(&mut e, &mut out, 8, 1_449.0, 1_450.0, 1.0);
    for c in 0..4u16 {
        book(&mut e, &mut out, 2 * c + 1, 70_000.0, 70_000.1, 0.1);
        book(&mut e, &mut out, 2 * c, 104_992_000.0, 105_092_000.0, 1_000.0);
    }
    let entries = out
        .as_slice()
        .iter()
        .filter(|a| matches!(a, Action::Journal(Record::Intent { purpose: Purpose::Entry, .. })))
        .count();
    assert_eq!(entries, 2);
    assert!(out.as_slice().iter().any(|a| matches!(
        a,
        Action::Telemetry(Telemetry::RiskReject { reason: RiskReject::MaxOpenPairs, .. })
    )));
}

#[test]
fn funding_is_booked_with_the_sign_of_the_perp_side() {
    let mut cfg = EngineConfig::default();
    cfg.strategy.entry_cooldown_ms = 0;
    let mut h = H::new(cfg);
    h.start();
    h.funding(0.0001, 10_000);
    opened(&mut h);
    // Settlement at t = 10 s: the next report carries the following funding time.
    h.now = Nanos::from_ms(10_000);
    h.funding(0.0002, 10_000 + 8 * 3_600_000);
    let p = h.e.pair(0).unwrap();
    // Long 0.095 BTC perp at mark 70,000 pays 0.01 % = 0.665 USDT.
    assert_eq!(p.funding_usdt, -66_500_000);
    assert_eq!(h.e.stats().funding_settlements, 1);
    // The same settlement reported again is not booked twice.
    h.funding(0.0002, 10_000 + 8 * 3_600_000);
    assert_eq!(h.e.pair(0).unwrap().funding_usdt, -66_500_000);
}

#[test]
fn flatten_closes_at_market_and_halts() {
    let mut h = H::simple();
    h.start();
    let (u, b) = opened(&mut h);
    let acts = h.ev(Event::Control(Control::Flatten(None)));
    assert_eq!(h.e.trading_state(), TradingState::halted(HaltReason::Flatten));
    let fu = place_on(&acts, KRW_BTC).unwrap();
    let fb = place_on(&acts, BTCUSDT).unwrap();
    assert_eq!((fu.kind, fb.kind), (OrderKind::Market, OrderKind::Market));
    assert_eq!((fu.side, fu.qty), (Side::Buy, u.qty));
    assert_eq!((fb.side, fb.qty, fb.reduce_only), (Side::Sell, b.qty, true));
    h.fill_all(&fu);
    h.fill_all(&fb);
    assert!(h.e.pair(0).is_none());
}

#[test]
fn set_param_is_validated() {
    let mut h = H::simple();
    assert!(h.e.set_param(Param::EntryBps, 250));
    assert_eq!(h.e.config().strategy.entry_bps, 250);
    assert!(!h.e.set_param(Param::ExitMinProfitKrw, -5), "never close at a loss");
    assert!(!h.e.set_param(Param::MaxOpenPairs, 0));
    assert_eq!(h.e.config().risk.max_open_pairs, 3);
}

#[test]
fn telemetry_samples_are_throttled() {
    let mut h = H::simple();
    h.ev(Event::Control(Control::Stop));
    let count = |acts: &[Action]| {
        acts.iter().filter(|a| matches!(a, Action::Telemetry(Telemetry::Kimp(_)))).count()
    };
    let first = count(&h.market(100.0));
    assert_eq!(first, 1);
    assert_eq!(count(&h.market(100.0)), 0, "same instant");
    h.advance_ms(100);
    let acts = h.market(100.0);
    assert_eq!(count(&acts), 1);
    let s = acts
        .iter()
        .find_map(|a| if let Action::Telemetry(Telemetry::Kimp(s)) = a { Some(*s) } else { None })
        .unwrap();
    assert!(s.sell_bps <= s.mid_bps && s.mid_bps <= s.buy_bps);
    assert!((s.sell_bps - 100.0).abs() < 1.0, "{}", s.sell_bps);
}

#[test]
fn bad_markets_are_refused() {
    let mut m = kimp_core::testkit::btc_markets();
    m.coins[0].binance = KRW_USDT;
    assert!(kimp_core::Engine::new(EngineConfig::default(), &m, 1).is_err());
    let mut m = kimp_core::testkit::btc_markets();
    m.fx = None;
    let e = kimp_core::Engine::new(EngineConfig::default(), &m, 1).unwrap_err();
    assert_eq!(e.key, "strategy.fx_source");
}
