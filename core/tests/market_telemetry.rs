//! The market telemetry the store's `bbo`, `funding` and `fx` tables are made of: each
//! leg's best bid/offer with every premium sample (at the telemetry interval), mark price
//! and funding when they change, FX quotes from both sources when they change.

mod common;

use common::*;
use kimp_core::action::{Action, Telemetry};
use kimp_core::event::{Bbo, Event, Funding, FxQuote, FxSource};
use kimp_core::testkit::{BTCUSDT, KRW_BTC};
use kimp_core::units::Nanos;

fn bbos(acts: &[Action]) -> Vec<Bbo> {
    acts.iter()
        .filter_map(|a| if let Action::Telemetry(Telemetry::Bbo(b)) = a { Some(*b) } else { None })
        .collect()
}

fn fundings(acts: &[Action]) -> Vec<Funding> {
    acts.iter()
        .filter_map(
            |a| if let Action::Telemetry(Telemetry::Funding(f)) = a { Some(*f) } else { None },
        )
        .collect()
}

fn fxs(acts: &[Action]) -> Vec<FxQuote> {
    acts.iter()
        .filter_map(|a| if let Action::Telemetry(Telemetry::Fx(q)) = a { Some(*q) } else { None })
        .collect()
}

#[test]
fn bbo_of_each_leg_is_sampled_when_its_book_changes_at_most_once_per_interval() {
    let mut h = H::simple();
    let acts = h.market(100.0);
    let b = bbos(&acts);
    assert_eq!(b.len(), 2, "one sample per venue: {b:?}");
    let up = *b.iter().find(|b| b.inst == KRW_BTC).expect("Upbit leg");
    let bi = b.iter().find(|b| b.inst == BTCUSDT).expect("Binance leg");
    assert_eq!((bi.bid.px, bi.ask.px), (px(70_000.0), px(70_000.1)));
    assert!(up.bid.px < up.ask.px && up.bid.qty == q(1.0));
    assert_eq!(up.exch_ts, h.now, "the venue's time of the book");
    h.advance_ms(50);
    assert!(bbos(&h.market(100.0)).is_empty(), "within the interval: no new sample");
    h.advance_ms(50);
    assert_eq!(bbos(&h.market(100.0)).len(), 2, "next interval");
    // Only the Upbit book changes: only its row, with what the book holds now.
    h.advance_ms(100);
    let moved = h.book(KRW_BTC, up.bid.px.to_f64(), up.ask.px.to_f64(), 1_000.0, 2.0, 20);
    let b = bbos(&moved);
    assert_eq!(b.iter().map(|b| b.inst).collect::<Vec<_>>(), vec![KRW_BTC], "{b:?}");
    assert_eq!((b[0].bid.qty, b[0].exch_ts), (q(2.0), h.now));
}

#[test]
fn funding_is_sent_when_it_changes() {
    let mut h = H::simple();
    let f = fundings(&h.funding(0.0001, 8 * 3_600_000));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].rate_e8, fp(0.0001));
    h.advance_ms(1_000);
    assert!(fundings(&h.funding(0.0001, 8 * 3_600_000)).is_empty(), "unchanged");
    assert_eq!(fundings(&h.funding(0.0002, 8 * 3_600_000)).len(), 1, "new rate");
    assert_eq!(fundings(&h.funding(0.0002, 16 * 3_600_000)).len(), 1, "new funding time");
}

#[test]
fn fx_of_both_sources_is_sent_when_it_changes() {
    let mut h = H::simple();
    let acts = h.market(100.0);
    let fx = fxs(&acts);
    assert_eq!(fx.len(), 1, "{fx:?}");
    assert_eq!(
        (fx[0].source, fx[0].bid, fx[0].ask),
        (FxSource::UpbitUsdt, px(1_449.0), px(1_450.0))
    );
    h.advance_ms(100);
    assert!(fxs(&h.market(100.0)).is_empty(), "the KRW-USDT top did not move");
    let moved = h.book(kimp_core::testkit::KRW_USDT, 1_450.0, 1_451.0, 1.0, 1_000_000.0, 5);
    assert_eq!(fxs(&moved).len(), 1, "it moved");
    let official = |bid: f64| {
        Event::Fx(FxQuote {
            source: FxSource::Official,
            exch_ts: Nanos::from_ms(5),
            bid: px(bid),
            ask: px(bid + 1.0),
        })
    };
    let o = fxs(&h.ev(official(1_400.0)));
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].source, FxSource::Official);
    assert!(fxs(&h.ev(official(1_400.0))).is_empty(), "unchanged official quote");
    assert_eq!(fxs(&h.ev(official(1_401.0))).len(), 1);
}
