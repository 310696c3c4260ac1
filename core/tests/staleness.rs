//! R5 (RELIABILITY.md): a frozen feed must not count as fresh. Upbit sends whole books
//! with no sequence number, so a feed that keeps repeating an old book (same exchange
//! `timestamp`) arrives on time but carries nothing new; freshness must follow the
//! exchange time, and no entry may be made on such a book once `book_age_ms_max` passed.
//! Binance diffs always advance by update id, so they refresh the book whatever their
//! event time; a duplicate diff (dropped) does not.

mod common;

use common::*;
use kimp_core::action::{Action, Alert};
use kimp_core::event::{BookSnapshot, DepthDiff, Event, Level};
use kimp_core::testkit::{BTCUSDT, KRW_BTC, KRW_USDT};
use kimp_core::units::Nanos;

/// Upbit KRW-BTC bid at 200 bps of premium over a 70,000.1 Binance ask (FX 1,450).
fn upbit_bid(bps: f64) -> f64 {
    ((70_000.1 * 1_450.0 * (1.0 + bps / 10_000.0)) / 1_000.0).round() * 1_000.0
}

/// An Upbit KRW-BTC book (20 levels) stamped with exchange time `exch_ms`.
fn upbit_book(h: &mut H, bid: f64, exch_ms: u64) -> Vec<Action> {
    let bids: Vec<Level> =
        (0..20).map(|i| Level::new(px(bid - 1_000.0 * i as f64), q(1.0))).collect();
    let asks: Vec<Level> =
        (0..20).map(|i| Level::new(px(bid + 100_000.0 + 1_000.0 * i as f64), q(1.0))).collect();
    h.ev(Event::Book(BookSnapshot {
        inst: KRW_BTC,
        exch_ts: Nanos::from_ms(exch_ms),
        last_update_id: 0,
        bids: &bids,
        asks: &asks,
    }))
}

/// Runs 100 ms steps for `steps` steps: FX and Binance books always fresh (Binance drops
/// to `cheap_ask` from step 7 on, which puts the premium against the 200-bps Upbit book
/// at ~344 bps, above the 300-bps entry), and the Upbit book resent every step with
/// exchange time `upbit_exch(now_ms)`. Returns every action and the step of the first
/// entry, if any.
fn run(h: &mut H, steps: usize, upbit_exch: impl Fn(u64) -> u64) -> (Vec<Action>, Option<usize>) {
    let bid = upbit_bid(200.0);
    let cheap_ask = 70_000.1 * 1.02 / 1.0344;
    let mut all = Vec::new();
    let mut first_entry = None;
    for step in 1..=steps {
        h.advance_ms(100);
        let now_ms = h.now.0 / 1_000_000;
        let mut acts = h.book(KRW_USDT, 1_449.0, 1_450.0, 1.0, 1_000_000.0, 5);
        let ask = if step >= 7 { cheap_ask } else { 70_000.1 };
        acts.extend(h.book(BTCUSDT, ask - 0.1, ask, 0.1, 1.0, 20));
        acts.extend(upbit_book(h, bid, upbit_exch(now_ms)));
        acts.extend(h.timer());
        if first_entry.is_none() && !places(&acts).is_empty() {
            first_entry = Some(step);
        }
        all.extend(acts);
    }
    (all, first_entry)
}

#[test]
fn a_frozen_upbit_book_blocks_entries_after_the_age_limit() {
    let mut h = H::simple();
    h.start();
    assert!(places(&h.market(200.0)).is_empty(), "no entry at 200 bps");
    let frozen_at = h.now.0 / 1_000_000;
    let max_age = h.e.config().risk.book_age_ms_max;
    // The feed keeps delivering the book of `frozen_at` on time, every 100 ms, for 1.5 s.
    let (acts, entry) = run(&mut h, 15, |_| frozen_at);
    assert_eq!(entry, None, "entered on an Upbit book frozen for > {max_age} ms");
    assert!(
        has(&acts, |a| matches!(a, Action::Alert(Alert::StaleBook(i)) if *i == KRW_BTC)),
        "the frozen Upbit book was never reported stale"
    );
    // The feed moves again: the first book with a later exchange time is news, and the
    // premium (still ~344 bps) is traded at once.
    h.advance_ms(100);
    let now_ms = h.now.0 / 1_000_000;
    let acts = upbit_book(&mut h, upbit_bid(200.0), now_ms);
    assert!(place_on(&acts, KRW_BTC).is_some(), "no entry after the feed resumed");
}

#[test]
fn the_same_run_with_advancing_exchange_times_enters() {
    // Control: identical books and timing, but each Upbit book carries its own (later)
    // exchange time: the entry happens as soon as Binance moves (step 7).
    let mut h = H::simple();
    h.start();
    h.market(200.0);
    let (_, entry) = run(&mut h, 15, |now| now);
    assert_eq!(entry, Some(7));
}

#[test]
fn a_freeze_shorter_than_the_age_limit_still_trades() {
    // Freshness follows the exchange time, not the arrival: a book repeated for less than
    // `book_age_ms_max` (500 ms) is still usable.
    let mut h = H::simple();
    h.start();
    h.market(200.0);
    // The book of 1,300 ms is repeated from then on; Binance moves at step 7 (1,700 ms),
    // 400 ms after the last new Upbit book.
    let (_, entry) = run(&mut h, 15, |now| now.min(1_300));
    assert_eq!(entry, Some(7));
}

#[test]
fn binance_diffs_refresh_by_update_id_and_duplicates_do_not() {
    let mut h = H::simple();
    h.start();
    h.market(200.0);
    let bids = [Level::new(px(70_000.0), q(1.0))];
    let asks = [Level::new(px(70_000.1), q(1.0))];
    h.ev(Event::Book(BookSnapshot {
        inst: BTCUSDT,
        exch_ts: h.now,
        last_update_id: 100,
        bids: &bids,
        asks: &asks,
    }));
    let max_age = Nanos::from_ms(h.e.config().risk.book_age_ms_max);
    // Diffs with a constant (even zero) event time still advance the ids: each is news.
    let lv = [Level::new(px(70_000.0), q(2.0))];
    let diff = |u0, u1, pu| DepthDiff {
        inst: BTCUSDT,
        exch_ts: Nanos(0),
        first_id: u0,
        last_id: u1,
        prev_last_id: Some(pu),
        bids: &lv,
        asks: &[],
    };
    let mut last = 100;
    for _ in 0..10 {
        h.advance_ms(100);
        h.ev(Event::Depth(diff(last + 1, last + 3, last)));
        last += 3;
    }
    let book = h.e.book(BTCUSDT).expect("book");
    assert!(book.is_fresh(h.now, max_age), "diffs in sequence did not keep the book fresh");
    // The same diff again (a duplicate, dropped) for 600 ms: the book ages out.
    for _ in 0..6 {
        h.advance_ms(100);
        h.ev(Event::Depth(diff(last - 2, last, last - 3)));
    }
    let book = h.e.book(BTCUSDT).expect("book");
    assert!(!book.is_fresh(h.now, max_age), "repeated (dropped) diffs kept the book fresh");
    assert!(h.e.stats().diffs_dropped >= 6);
}
