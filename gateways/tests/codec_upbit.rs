//! Upbit quotation parsers: fixtures field by field (DEFAULT and SIMPLE give the same
//! books, exponent numbers are exact, zero-price units are skipped), and every recorded
//! frame through both the scanner and the simd-json path, which must agree.

mod common;

use common::*;
use kimp_core::event::{Event, Level, Side};
use kimp_core::instrument::{InstrumentId, Venue};
use kimp_core::units::{Nanos, Price, Qty};
use kimp_gateways::codec::{CodecError, MarketMsg};
use kimp_gateways::upbit::UpbitMarketParser;

fn px(s: &str) -> Price {
    Price::parse(s.as_bytes()).unwrap()
}
fn q(s: &str) -> Qty {
    Qty::parse(s.as_bytes()).unwrap()
}

fn book_of(
    p: &mut UpbitMarketParser,
    line: &str,
    simd: bool,
) -> (InstrumentId, Nanos, Vec<Level>, Vec<Level>) {
    let r = if simd { p.parse_simd(line.as_bytes()) } else { p.parse(line.as_bytes()) };
    match r {
        Ok(MarketMsg::Event(Event::Book(b))) => {
            (b.inst, b.exch_ts, b.bids.to_vec(), b.asks.to_vec())
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn default_and_simple_books_are_identical_and_exact() {
    let default = fixture_lines("upbit_orderbook.jsonl");
    let simple = fixture_lines("upbit_orderbook_simple.jsonl");
    let mut p = UpbitMarketParser::new(table(Venue::Upbit));
    for simd in [false, true] {
        let (inst, ts, bids, asks) = book_of(&mut p, &default[0], simd);
        assert_eq!((inst, ts), (InstrumentId(0), Nanos::from_ms(1773240059027)));
        assert_eq!((bids.len(), asks.len()), (15, 15));
        assert_eq!(bids[0], Level::new(px("103460000"), q("0.004")));
        assert_eq!(asks[0], Level::new(px("103493000"), q("0.04910155")));
        assert_eq!(bids[1], Level::new(px("103438000"), q("0.00483381")));
        // total_*_size is the sum over the returned units.
        let total_ask: i64 = asks.iter().map(|l| l.qty.0).sum();
        assert_eq!(total_ask, q("1.5464068").0);
        assert_eq!(book_of(&mut p, &simple[0], simd), (inst, ts, bids, asks));
        let usdt = book_of(&mut p, &default[3], simd);
        assert_eq!(usdt.0, InstrumentId(2), "KRW-USDT is just another book");
        assert_eq!((usdt.2[0].px, usdt.3[0].px), (px("1468"), px("1469")));
        assert_eq!(book_of(&mut p, &simple[1], simd), usdt);
        // Line 3 carries 4.843e-05.
        let (_, _, b3, a3) = book_of(&mut p, &default[2], simd);
        assert!(
            b3.iter().chain(a3.iter()).any(|l| l.qty == Qty(4_843)),
            "4.843e-05 parsed exactly"
        );
    }
}

/// The scanner reads units in Upbit's own layouts with a fast path and anything else
/// with the general one; a unit that leaves the fast path part-way (other key order,
/// spaces, an extra key, an exponent, a bad number) must come out exactly as the general
/// path and the simd-json path read it.
#[test]
fn units_off_the_fast_path_parse_the_same() {
    let mut p = UpbitMarketParser::new(table(Venue::Upbit));
    let units = [
        r#"{"ap":10,"bp":9,"as":1.5,"bs":2}"#,
        r#"{"ask_price":10,"bid_price":9,"ask_size":1.5,"bid_size":2}"#,
        r#"{"bp":9,"ap":10,"as":1.5,"bs":2}"#,
        r#"{"ap":10,"bp":9,"x":[1,{"y":2}],"as":1.5,"bs":2}"#,
        r#"{"ap":10,"bp":9,"as":1.5,"bs":2,"x":0}"#,
        r#"{"ap":10, "bp":9,"as":1.5,"bs":2}"#,
        r#"{ "ap":10,"bp":9,"as":1.5,"bs":2 }"#,
        r#"{"ap":10,"bp":9,"as":15e-1,"bs":2.0}"#,
        r#"{"ap":10,"bp":9,"as":1.5,"bs":2,"bs":2}"#,
        r#"{"ask_price":10,"bp":9,"as":1.5,"bid_size":2}"#,
    ];
    for (i, u) in units.iter().enumerate() {
        let m = format!(r#"{{"ty":"orderbook","cd":"KRW-BTC","tms":5,"obu":[{u},{u}]}}"#);
        for simd in [false, true] {
            let (_, _, bids, asks) = book_of(&mut p, &m, simd);
            let bid = Level::new(px("9"), q("2"));
            let ask = Level::new(px("10"), q("1.5"));
            assert_eq!((bids, asks), (vec![bid, bid], vec![ask, ask]), "unit {i} simd {simd}");
        }
    }
    for bad in [r#"{"ap":10,"bp":9,"as":1.5}"#, r#"{"ap":10,"bp":9,"as":1.5,"bs":-2}"#] {
        let m = format!(r#"{{"ty":"orderbook","cd":"KRW-BTC","tms":5,"obu":[{bad}]}}"#);
        assert!(p.parse(m.as_bytes()).is_err(), "{bad}");
        assert!(p.parse_simd(m.as_bytes()).is_err(), "{bad}");
    }
}

#[test]
fn zero_price_units_are_skipped_per_side() {
    let mut p = UpbitMarketParser::new(table(Venue::Upbit));
    let m = br#"{"ty":"orderbook","cd":"KRW-BTC","tms":5,"obu":[{"ap":10,"bp":9,"as":1.5,"bs":2},{"ap":0,"bp":8,"as":0,"bs":1e-8},{"ap":0,"bp":0,"as":0,"bs":0}],"st":"REALTIME","lv":0}"#;
    for simd in [false, true] {
        let r = if simd { p.parse_simd(m) } else { p.parse(m) };
        let Ok(MarketMsg::Event(Event::Book(b))) = r else { panic!("{r:?}") };
        assert_eq!(b.bids, &[Level::new(px("9"), q("2")), Level::new(px("8"), Qty(1))]);
        assert_eq!(b.asks, &[Level::new(px("10"), q("1.5"))]);
        assert_eq!(b.last_update_id, 0);
    }
}

#[test]
fn trades_tickers_status_errors() {
    let mut p = UpbitMarketParser::new(table(Venue::Upbit));
    for simd in [false, true] {
        let lines = fixture_lines("upbit_trade.jsonl");
        let r = if simd { p.parse_simd(lines[0].as_bytes()) } else { p.parse(lines[0].as_bytes()) };
        let Ok(MarketMsg::Event(Event::Trade(t))) = r else { panic!("{r:?}") };
        assert_eq!(t.inst, InstrumentId(0));
        assert_eq!((t.px, t.qty, t.aggressor), (px("103460000"), q("0.00193"), Side::Sell));
        assert_eq!((t.trade_id, t.exch_ts), (17732400575470000, Nanos::from_ms(1773240057547)));
        for l in &fixture_lines("upbit_ticker.jsonl") {
            let r = if simd { p.parse_simd(l.as_bytes()) } else { p.parse(l.as_bytes()) };
            let Ok(MarketMsg::Ticker(t)) = r else { panic!("{r:?}") };
            assert!(t.last.is_positive() && t.volume_24h.is_positive());
        }
        let up =
            if simd { p.parse_simd(br#"{"status":"UP"}"#) } else { p.parse(br#"{"status":"UP"}"#) };
        assert!(matches!(up, Ok(MarketMsg::Heartbeat)));
        let e = br#"{"error":{"name":"INVALID_AUTH","message":"Authentication information is invalid."}}"#;
        let r = if simd { p.parse_simd(e) } else { p.parse(e) };
        let Ok(MarketMsg::VenueError(v)) = r else { panic!("{r:?}") };
        assert_eq!(v.name.as_str(), "INVALID_AUTH");
    }
    let l = fixture_lines("upbit_ticker.jsonl");
    let Ok(MarketMsg::Ticker(t)) = p.parse(l[0].as_bytes()) else { panic!() };
    assert_eq!((t.last, t.volume_24h), (px("103493000"), q("2401.50231207")));
    assert_eq!(
        p.parse(br#"{"ty":"candle.1s","cd":"KRW-BTC"}"#).unwrap_err(),
        CodecError::UnknownMessage
    );
    assert_eq!(
        p.parse(br#"{"ty":"trade","cd":"KRW-XRP","tp":1,"tv":1,"ab":"BID","ttms":1,"sid":1}"#)
            .unwrap_err(),
        CodecError::UnknownSymbol
    );
    assert!(
        p.parse(
            br#"{"ty":"trade","cd":"KRW-BTC","tp":1.000000001,"tv":1,"ab":"BID","ttms":1,"sid":1}"#
        )
        .is_err()
    );
    assert!(
        p.parse(br#"{"ty":"trade","cd":"KRW-BTC","tp":1,"tv":1,"ab":"X","ttms":1,"sid":1}"#)
            .is_err()
    );
}

/// Every frame of the three Upbit recordings parses (books and trades of the recorded
/// markets) and both paths agree.
#[test]
fn recorded_frames_parse_completely_on_both_paths() {
    let mut fast = UpbitMarketParser::new(upbit_recorded_table());
    let mut simd = UpbitMarketParser::new(upbit_recorded_table());
    let mut books = 0;
    let mut trades = 0;
    for f in ["data/upbit/UPBIT-d78752.0.gz", "data/upbit/UPBIT.ws.62.0"] {
        for m in upbit_recorded(&locate::testdata(f)) {
            let a = fast.parse(&m);
            match &a {
                Ok(MarketMsg::Event(Event::Book(b))) => {
                    books += 1;
                    assert!(b.bids.len() <= 15 && b.asks.len() <= 15);
                    assert!(b.bids.windows(2).all(|w| w[0].px > w[1].px), "bids best first");
                    assert!(b.asks.windows(2).all(|w| w[0].px < w[1].px), "asks best first");
                }
                Ok(MarketMsg::Event(Event::Trade(_))) => trades += 1,
                other => panic!("{other:?}: {}", String::from_utf8_lossy(&m)),
            }
            let na = format!("{a:?}");
            let b = simd.parse_simd(&m);
            assert_eq!(na, format!("{b:?}"), "{}", String::from_utf8_lossy(&m));
        }
    }
    assert_eq!(fast.stats.errors(), 0);
    assert!(books > 1000 && trades > 600, "books {books} trades {trades}");
    eprintln!("upbit recorded: {books} books, {trades} trades");
}
