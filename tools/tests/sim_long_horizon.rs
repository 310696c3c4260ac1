//! A long simulated horizon: after ten million market steps (and after a year of simulated
//! time) the market still moves, trades, marks and settles funding, and every accumulator
//! the venues publish is still sane. The sockets are not involved: the world is stepped
//! directly, mostly with `World::step_tape` (the processes, the tape, marks and funding)
//! and every 10 000th step in full (books reshaped and published).

use std::collections::HashMap;
use std::time::Instant;

use kimp::sim::config::{CoinSpec, SimConfig};
use kimp::sim::events::{MdEvent, Out};
use kimp::sim::upbit_ws::{Format, ticker_json};
use kimp::sim::world::{World, mid_of};
use serde_json::Value;

const T0: u64 = 1_773_240_059_000;

/// What the last full steps published.
#[derive(Default)]
struct Seen {
    upbit_trades: HashMap<String, u64>,
    binance_trades: u64,
    marks: u64,
    tickers: HashMap<String, Value>,
}

fn observe(outs: &[Out], seen: &mut Seen, last_trade_id: &mut u64) {
    for o in outs {
        match o {
            Out::Md(MdEvent::UpbitTrade(t)) => {
                *seen.upbit_trades.entry(t.code.clone()).or_default() += 1;
            }
            Out::Md(MdEvent::UpbitTicker(t)) => {
                let j = ticker_json(t, Format::Default, false);
                let v: Value = serde_json::from_str(&j).expect("ticker is JSON");
                seen.tickers.insert(t.code.clone(), v);
            }
            Out::Md(MdEvent::BinTrade { id, .. }) => {
                assert!(
                    *id > *last_trade_id,
                    "Binance trade ids increase: {id} after {last_trade_id}"
                );
                *last_trade_id = *id;
                seen.binance_trades += 1;
            }
            Out::Md(MdEvent::BinMark { .. }) => seen.marks += 1,
            _ => {}
        }
    }
}

fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// The market in the last `steps` full steps after `w` ran for a long time: books move,
/// every market trades, marks go out, tickers are consistent.
fn assert_still_moving(w: &mut World, step_ms: u64, steps: u64, last_trade_id: &mut u64) {
    // The coin books (KRW-USDT follows the slow FX process and may sit on one tick).
    let mids = |w: &World| -> Vec<i64> {
        let mut v: Vec<i64> = w.binance.markets.values().map(|m| mid_of(&m.book)).collect();
        v.extend(
            w.upbit.markets.values().filter(|m| m.code != "KRW-USDT").map(|m| mid_of(&m.book)),
        );
        v
    };
    let fx_before = w.mkt.krw_usdt_mid();
    let before = mids(w);
    let mut seen = Seen::default();
    for _ in 0..steps {
        let now = w.now_ms + step_ms;
        let outs = w.step(now);
        observe(&outs, &mut seen, last_trade_id);
    }
    let after = mids(w);
    assert!(before.iter().chain(&after).all(|m| *m > 0), "every book has both sides: {after:?}");
    assert!(
        before.iter().zip(&after).all(|(a, b)| a != b),
        "every mid moved over the last {steps} steps: {before:?} -> {after:?}"
    );
    for code in w.upbit.markets.keys() {
        let n = seen.upbit_trades.get(code).copied().unwrap_or(0);
        assert!(n > 0, "{code} traded in the last {steps} steps");
        let t = &seen.tickers[code];
        let (day, day24) = (num(t, "acc_trade_price"), num(t, "acc_trade_price_24h"));
        let (vol, vol24) = (num(t, "acc_trade_volume"), num(t, "acc_trade_volume_24h"));
        assert!(day > 0.0 && vol > 0.0, "{code}: {t}");
        // Since 00:00 UTC is part of the last 24 h.
        assert!(day <= day24 * (1.0 + 1e-12) && vol <= vol24 * (1.0 + 1e-12), "{code}: {t}");
        let (lo, hi, last) = (num(t, "low_price"), num(t, "high_price"), num(t, "trade_price"));
        assert!(lo <= last && last <= hi && lo > 0.0, "{code}: {t}");
        // A day's turnover is at most a day of trades at the day's high.
        assert!(vol24 * hi * 1.5 >= day24, "{code}: {t}");
    }
    assert_ne!(fx_before, w.mkt.krw_usdt_mid(), "the FX process moves");
    assert!(seen.binance_trades > 0, "Binance traded in the last {steps} steps");
    assert!(seen.marks > 0, "marks were published");
    for c in &w.mkt.coins {
        assert!(c.premium.is_finite() && (-0.15..=0.35).contains(&c.premium));
        assert!(c.funding_rate.is_finite());
    }
}

#[test]
fn the_market_still_moves_after_ten_million_steps() {
    let cfg = SimConfig { coins: vec![CoinSpec::btc()], ..SimConfig::default() };
    let step = cfg.step_ms;
    let mut w = World::new(&cfg, T0);
    let started = Instant::now();
    let n: u64 = 10_000_000;
    let mut last_trade_id = 0;
    let mut seen = Seen::default();
    let mut tape_trades = 0u64;
    for i in 1..=n {
        let now = T0 + i * step;
        if i % 10_000 == 0 {
            observe(&w.step(now), &mut seen, &mut last_trade_id);
        } else {
            for o in w.step_tape(now) {
                if let Out::Md(MdEvent::BinTrade { id, .. }) = o {
                    assert!(id > last_trade_id, "trade id {id} after {last_trade_id}");
                    last_trade_id = id;
                    tape_trades += 1;
                } else if let Out::Md(MdEvent::UpbitTrade(_)) = o {
                    tape_trades += 1;
                }
            }
        }
    }
    let days = (w.now_ms - T0) as f64 / 86_400_000.0;
    assert_eq!(w.stats.steps, n);
    assert!(days > 11.5, "{days} simulated days");
    assert!(tape_trades > n / 2, "{tape_trades} trades on the tape");
    let expected = days * 3.0;
    assert!((w.stats.fundings as f64 - expected).abs() <= 1.0, "{} fundings", w.stats.fundings);
    assert_still_moving(&mut w, step, 600, &mut last_trade_id);
    let usdt = &w.upbit.markets["KRW-USDT"].stats;
    eprintln!(
        "{n} steps ({days:.1} days) in {:.1} s: {tape_trades} tape trades, KRW-USDT 24 h \
         turnover {} (fixed-point 1e-8; i64::MAX = {})",
        started.elapsed().as_secs_f64(),
        usdt.price_24h,
        i64::MAX
    );
}

#[test]
fn a_year_of_simulated_time_keeps_every_accumulator_bounded() {
    // Coarse steps (31.5 s) to cover 365 days in a million steps: day resets, the 24 h
    // window, funding settlements and their history over a year.
    let cfg = SimConfig { coins: vec![CoinSpec::btc()], ..SimConfig::default() };
    let mut w = World::new(&cfg, T0);
    let n: u64 = 1_000_000;
    let dt = 365 * 86_400_000 / n;
    let mut last_trade_id = 0;
    for i in 1..=n {
        for o in w.step_tape(T0 + i * dt) {
            if let Out::Md(MdEvent::BinTrade { id, .. }) = o {
                assert!(id > last_trade_id);
                last_trade_id = id;
            }
        }
    }
    assert!(w.now_ms - T0 >= 364 * 86_400_000);
    assert!(w.stats.fundings >= 365 * 3 - 1, "{} fundings", w.stats.fundings);
    let hist = &w.binance.markets["BTCUSDT"].funding_history;
    assert_eq!(hist.len(), 1_000, "the history keeps the last 1 000 settlements");
    assert!(hist.windows(2).all(|p| p[0].0 < p[1].0));
    for m in w.upbit.markets.values() {
        assert!(m.stats.window_len() <= 1_441, "{}: {} buckets", m.code, m.stats.window_len());
    }
    assert_still_moving(&mut w, cfg.step_ms, 600, &mut last_trade_id);
}
