//! Runaway strategy (RELIABILITY.md R10): the real engine with a configuration that makes
//! its strategy want a new pair on every market event — entry level below the premium,
//! no cool-down — while every taker order expires unfilled (the book keeps refilling at
//! the same premium, so the next event wants in again). That is the "bug emits an intent
//! every cycle" mutant, built from the production strategy without touching its code.
//!
//! What must hold: no venue ever gets more than `orders_per_sec_max` orders in any one
//! second (orders leaked past the limit = 0), the first intent over the limit halts the
//! engine with `OrderRate` on that very event, nothing new leaves while halted — long
//! after the rate window has drained — and only an explicit `Resume` re-arms it.
//! Each case prints a `FIGURE R10 ...` line (run with `--nocapture`).

mod common;

use common::*;
use kimp_core::action::{Action, Alert, HaltReason, Record, Telemetry, TradingState};
use kimp_core::config::{EngineConfig, FundingFilter};
use kimp_core::event::{Control, Event, OrderEventKind};
use kimp_core::risk::RiskReject;
use kimp_core::testkit::KRW_BTC;
use kimp_core::units::{Nanos, Qty};

/// What one runaway produced.
#[derive(Debug, Default)]
struct Runaway {
    /// Send time of every order that left the engine, per venue (Upbit, Binance).
    sent: [Vec<Nanos>; 2],
    /// Entry intents the engine emitted.
    intents: u64,
    /// First intent refused for the order rate.
    first_refused: Option<Nanos>,
    /// The `Halted(OrderRate)` alert.
    halted: Option<Nanos>,
    /// Orders emitted after the halt.
    after_halt: usize,
    /// The halt was journaled.
    halt_journaled: bool,
}

impl Runaway {
    /// Orders beyond the limit in some one-second window, per venue: for a sorted list
    /// of send times, order `j` leaks when `per_sec` orders before it are less than a
    /// second older.
    fn leaked(&self, per_sec: usize) -> [usize; 2] {
        self.sent.clone().map(|t| {
            (per_sec..t.len())
                .filter(|&j| t[j].since(t[j - per_sec]) < Nanos::from_ms(1_000))
                .count()
        })
    }

    /// The most orders any venue got in a window of one second.
    fn max_per_sec(&self) -> usize {
        let mut m = 0;
        for t in &self.sent {
            for (i, &a) in t.iter().enumerate() {
                let n = t[i..].iter().take_while(|&&b| b.since(a) < Nanos::from_ms(1_000)).count();
                m = m.max(n);
            }
        }
        m
    }
}

/// Runs the mutant for `secs` simulated seconds with a market event every `step_us`.
fn runaway(per_sec: u32, step_us: u64, secs: u64) -> (H, Runaway) {
    let mut cfg = EngineConfig::default();
    cfg.strategy.funding_filter = FundingFilter::Off;
    cfg.strategy.entry_cooldown_ms = 0;
    cfg.strategy.entry_bps = 100; // the market below sits at 3.44 %
    cfg.risk.orders_per_sec_max = per_sec;
    let mut h = H::new(cfg);
    h.start();
    let mut r = Runaway::default();
    let t0 = h.now;
    let end = t0.plus(Nanos::from_ms(secs * 1_000));
    while h.now < end {
        let mut acts = h.market(344.0);
        // Answer every order as an IOC that found nothing (the pair closes flat), and
        // any order those answers cause, until the engine is quiet.
        let mut i = 0;
        while i < acts.len() {
            match acts[i] {
                Action::Place(p) => {
                    r.sent[usize::from(p.inst != KRW_BTC)].push(h.now);
                    if r.halted.is_some() {
                        r.after_halt += 1;
                    }
                    let mut more = h.report(&p, OrderEventKind::Ack);
                    more.extend(h.report(&p, OrderEventKind::Done { cum_qty: Qty::ZERO }));
                    acts.extend(more);
                }
                Action::Journal(Record::Intent { .. }) => r.intents += 1,
                Action::Journal(Record::Trading { state: TradingState::Halted(_) }) => {
                    r.halt_journaled = true
                }
                Action::Telemetry(Telemetry::RiskReject {
                    reason: RiskReject::OrderRate, ..
                }) => {
                    r.first_refused.get_or_insert(h.now);
                }
                Action::Alert(Alert::Halted(HaltReason::OrderRate)) => {
                    r.halted.get_or_insert(h.now);
                }
                _ => {}
            }
            i += 1;
        }
        h.now = h.now.plus(Nanos(step_us * 1_000));
    }
    (h, r)
}

/// Checks a runaway that goes faster than the limit and prints its figures.
fn check_halts(per_sec: u32, step_us: u64) {
    let secs = 5;
    let (mut h, r) = runaway(per_sec, step_us, secs);
    let leaked = r.leaked(per_sec as usize);
    let (halted, refused) = (r.halted.expect("auto-halt"), r.first_refused.expect("refused"));
    let t0 = Nanos::from_ms(1_000);
    println!(
        "FIGURE R10 orders_per_sec_max={per_sec} event every {step_us} µs: wire orders Upbit {} \
         Binance {} in {secs} s; most in any 1 s window {} (limit {per_sec}); leaked past limit \
         {leaked:?}; intents {}; runaway start → halt {:.1} ms (simulated); first excess → halt \
         {} ns (same event); orders after halt {}",
        r.sent[0].len(),
        r.sent[1].len(),
        r.max_per_sec(),
        r.intents,
        halted.since(t0).0 as f64 / 1e6,
        halted.since(refused).0,
        r.after_halt,
    );
    assert_eq!(leaked, [0, 0], "orders leaked past the per-venue limit");
    assert!(r.max_per_sec() <= per_sec as usize);
    // The limit is used, not undercut: the engine sent exactly the allowance, then halted.
    assert_eq!(r.sent[0].len(), per_sec as usize);
    assert_eq!(r.sent[1].len(), per_sec as usize);
    assert_eq!(halted, refused, "the first intent over the limit halts on that event");
    assert_eq!(h.e.trading_state(), TradingState::halted(HaltReason::OrderRate));
    assert!(r.halt_journaled, "the halt is journaled (it latches across a restart)");
    // Latched: seconds after the rate window drained, the strategy still wants in every
    // event and nothing leaves.
    assert_eq!(r.after_halt, 0);
    assert!(h.now.since(halted) >= Nanos::from_ms(3_000));
    assert!(places(&h.market(344.0)).is_empty());
    assert!(places(&h.timer()).is_empty());
    // I2: orders out ≤ legs × intents.
    assert!((r.sent[0].len() + r.sent[1].len()) as u64 <= 2 * h.e.stats().intents);
    // Only an explicit re-arm lets it trade again (and the limiter is still on).
    let acts = h.ev(Event::Control(Control::Resume));
    assert!(has(&acts, |a| matches!(a, Action::Alert(Alert::Resumed))));
    assert_eq!(h.e.trading_state(), TradingState::Active);
    assert_eq!(places(&h.market(344.0)).len(), 2);
}

#[test]
fn a_runaway_at_one_intent_per_100us_halts_at_the_limit() {
    check_halts(8, 100);
}

#[test]
fn a_runaway_at_one_intent_per_ms_halts_at_the_limit() {
    check_halts(8, 1_000);
}

#[test]
fn a_runaway_at_the_cycle_rate_with_a_tight_limit_halts() {
    check_halts(1, 50);
}

#[test]
fn a_runaway_under_a_wide_limit_still_halts_exactly_there() {
    check_halts(1_000, 100);
}

#[test]
fn a_runaway_just_over_the_limit_halts() {
    // 10 intents/s against 8 orders/s per venue: the 9th intent (900 ms in) is refused.
    check_halts(8, 100_000);
}

#[test]
fn a_strategy_under_the_limit_is_never_halted() {
    // Control: 5 intents/s against 8/s per venue trades on for 5 s without a halt, so
    // the halts above are the limit working, not the mutant tripping something else.
    let (h, r) = runaway(8, 200_000, 5);
    assert!(r.halted.is_none() && r.first_refused.is_none());
    assert_eq!(h.e.trading_state(), TradingState::Active);
    assert_eq!(r.sent.each_ref().map(Vec::len), [25, 25]);
    assert_eq!(r.leaked(8), [0, 0]);
}
