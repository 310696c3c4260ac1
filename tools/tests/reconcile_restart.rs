//! Issue 14 item 4 through the real binary: `kimp run` restarted on a journal that holds a
//! hedged pair, against a simulator account without that position, must not log
//! `state=Active` silently. It reconciles to `Halted({Mismatch})`, logs the trading state
//! with its reason and a critical alert naming coin, venue, expected and actual, and sends
//! no order.
//!
//! Prints one `FIGURE reconcile_restart ...` line (run with `--nocapture`).

mod kimp_run;

use std::path::Path;
use std::time::Instant;

use kimp::runtime::journal::Journal;
use kimp::runtime::record_codec::Entry;
use kimp_core::action::{PairRecord, PnlSplit, Purpose, Record};
use kimp_core::config::Direction;
use kimp_core::event::Side;
use kimp_core::instrument::InstrumentId;
use kimp_core::order::{ClientId, Leg, OrderKind, OrderRequest, OrderState};
use kimp_core::pair::PairState;
use kimp_core::units::{Nanos, Price, Qty, Quote};
use kimp_run::{Run, field};

const QTY: i64 = 1_000_000;
const E8: i64 = 100_000_000;

/// The journal of a previous run (epoch 1) that opened one hedged BTC pair, at prices that
/// make an exit unprofitable (the pair stays open whatever the market does).
fn journal_with_hedged_pair(dir: &Path) {
    let (mut j, _) = Journal::open(&dir.join("journal"), 4 << 20).expect("journal");
    let id = |leg| ClientId { epoch: 1, seq: 0, leg, attempt: 0 };
    let (u, b) = (id(Leg::U), id(Leg::B));
    let order = |cl_id, inst, side, px| OrderRequest {
        cl_id,
        inst: InstrumentId(inst),
        side,
        kind: OrderKind::LimitIoc,
        px: Price(px),
        qty: Qty(QTY),
        reduce_only: false,
    };
    let fill = |cl_id, px| Record::Fill {
        cl_id,
        trade_id: 1,
        px: Price(px),
        qty: Qty(QTY),
        fee: Quote(0),
        exch_ts: Nanos(0),
    };
    let done = |cl_id| Record::OrderState { cl_id, state: OrderState::Filled, filled: Qty(QTY) };
    let (upx, bpx) = (50_000_000 * E8, 200_000 * E8);
    let recs = [
        Record::Intent {
            seq: 0,
            pair: 0,
            coin: 0,
            purpose: Purpose::Entry,
            orders: [Some(u), Some(b)],
        },
        Record::Order(order(u, 0, Side::Sell, upx)),
        Record::Order(order(b, 1, Side::Buy, bpx)),
        fill(u, upx),
        done(u),
        fill(b, bpx),
        done(b),
        Record::Pair(PairRecord {
            pair: 0,
            coin: 0,
            direction: Direction::SellPremium,
            from: PairState::Opening,
            to: PairState::Hedged,
            pos_u: Qty(-QTY),
            pos_b: Qty(QTY),
            entry_premium_bps: 300.0,
            fx_entry: Price(1_450 * E8),
            pnl: PnlSplit::default(),
        }),
    ];
    j.append(Nanos(1), &Entry::Epoch(1)).unwrap();
    for (i, r) in recs.iter().enumerate() {
        j.append(Nanos(2 + i as u64), &Entry::Record(*r)).unwrap();
    }
}

#[test]
fn a_restart_on_a_pair_the_venue_does_not_hold_is_halted_and_says_why() {
    let sim = kimp_run::sim(31, |_| {});
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    journal_with_hedged_pair(dir);
    let cfg = kimp_run::demo_config(&sim, dir, |t| t);
    let t0 = Instant::now();
    let mut run = Run::spawn(&cfg, &dir.join("run.log"));
    let rec = run.wait_log("reconciled", 30);
    let alert = run.wait_log("POSITION MISMATCH", 10);
    let halted = run.wait_log("trading: HALTED (mismatch)", 10);
    let took = t0.elapsed();
    run.signal(libc::SIGINT);
    let status = run.wait_exit(20);
    run.kill();
    let text = run.text();
    let rec = rec.unwrap_or_else(|| panic!("never reconciled:\n{text}"));
    let state = field(&rec, "state").unwrap_or("?").to_owned();
    let orders = sim.with_world(|w| w.upbit.orders.len() + w.binance.orders.len());
    println!(
        "FIGURE reconcile_restart: spawn → reconciled state={state}, alert and halt logged in {} ms; \
         venue orders {orders}",
        took.as_millis()
    );
    assert_eq!(state, "Halted({Mismatch})", "reconciled silently:\n{text}");
    let alert = alert.unwrap_or_else(|| panic!("no mismatch alert logged:\n{text}"));
    assert!(alert.contains("BTC on binance: expected 0.01000000, venue has 0.00000000"), "{alert}");
    assert!(halted.is_some(), "no trading-state line:\n{text}");
    assert_eq!(orders, 0, "an order reached a venue");
    assert!(status.is_some_and(|s| s.success()), "exit: {status:?}\n{text}");
}
