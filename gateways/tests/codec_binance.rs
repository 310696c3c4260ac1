//! Binance market-data parsers: fixtures field by field, the documented sync scenario,
//! and every line of the real recordings (futures and spot) through both the fast scanner
//! and the simd-json path, which must agree exactly.

mod common;

use common::*;
use kimp_core::book::{Book, DiffOutcome, SeqRule};
use kimp_core::event::{Event, Level, Side};
use kimp_core::instrument::{InstrumentId, Venue};
use kimp_core::units::{Nanos, Price, Qty};
use kimp_gateways::binance::BinanceMarketParser;
use kimp_gateways::codec::{CodecError, MarketMsg};

fn px(s: &str) -> Price {
    Price::parse(s.as_bytes()).unwrap()
}
fn q(s: &str) -> Qty {
    Qty::parse(s.as_bytes()).unwrap()
}

/// An owned, comparable rendering of a parse result.
fn norm(r: &Result<MarketMsg<'_>, CodecError>) -> String {
    match r {
        Ok(m) => format!("{m:?}"),
        Err(_) => "ERR".to_owned(),
    }
}

#[test]
fn futures_depth_fields() {
    let mut p = BinanceMarketParser::new(table(Venue::Binance));
    let line = &fixture_lines("binance_futures_depth.jsonl")[1];
    let Ok(MarketMsg::Event(Event::Depth(d))) = p.parse(line.as_bytes()) else { panic!("depth") };
    assert_eq!(d.inst, InstrumentId(1));
    assert!(d.prev_last_id.is_some());
    assert!(d.first_id <= d.last_id);
    assert!(!d.bids.is_empty() || !d.asks.is_empty());
    let first = &fixture_lines("binance_futures_combined.jsonl")[0];
    let Ok(MarketMsg::Event(Event::Depth(d))) = p.parse(first.as_bytes()) else {
        panic!("combined depth")
    };
    assert_eq!(
        (d.first_id, d.last_id, d.prev_last_id),
        (8824371922851, 8824371922945, Some(8824371922850))
    );
    assert_eq!(d.exch_ts, Nanos::from_ms(1773240059032));
    assert_eq!(
        d.bids,
        &[Level::new(px("70499.90"), q("3.512")), Level::new(px("70498.70"), Qty(0))]
    );
    assert_eq!(
        d.asks,
        &[Level::new(px("70500.00"), q("1.950")), Level::new(px("70500.40"), Qty(0))]
    );
}

#[test]
fn bookticker_markprice_and_spot() {
    let mut p = BinanceMarketParser::new(table(Venue::Binance));
    for (i, l) in fixture_lines("binance_bookticker.jsonl").iter().enumerate() {
        let Ok(MarketMsg::Event(Event::Bbo(b))) = p.parse(l.as_bytes()) else { panic!("bbo {i}") };
        assert_eq!(b.inst, InstrumentId(1));
        if i == 0 {
            assert_eq!(b.update_id, 8824371922945);
            assert_eq!(b.exch_ts, Nanos::from_ms(1773240059033));
            assert_eq!(b.bid, Level::new(px("70499.90"), q("3.512")));
            assert_eq!(b.ask, Level::new(px("70500.00"), q("1.950")));
        }
    }
    let lines = fixture_lines("binance_markprice.jsonl");
    let Ok(MarketMsg::Event(Event::Funding(f))) = p.parse(lines[0].as_bytes()) else {
        panic!("funding")
    };
    assert_eq!(f.mark, px("70501.25718750"));
    assert_eq!(f.rate_e8, 5_923);
    assert_eq!(f.next_funding, Nanos::from_ms(1773244800000));
    assert_eq!(f.exch_ts, Nanos::from_ms(1773240059000));
    assert!(p.parse(lines[3].as_bytes()).is_ok(), "ap is ignored");

    let mut s = BinanceMarketParser::new(table(Venue::BinanceSpot));
    let l = &fixture_lines("binance_spot_bookticker.jsonl")[0];
    let Ok(MarketMsg::Event(Event::Bbo(b))) = s.parse(l.as_bytes()) else { panic!("spot bbo") };
    assert_eq!((b.inst, b.update_id, b.exch_ts), (InstrumentId(4), 71234567897, Nanos(0)));
    assert_eq!(b.bid, Level::new(px("70525.01"), q("0.912")));
    let l = &fixture_lines("binance_spot_depth.jsonl")[1];
    let Ok(MarketMsg::Event(Event::Depth(d))) = s.parse(l.as_bytes()) else { panic!("spot depth") };
    assert_eq!(d.prev_last_id, None);
    assert_eq!(d.bids[1], Level::new(px("70524.36"), Qty(0)));
}

#[test]
fn acks_errors_and_junk() {
    let mut p = BinanceMarketParser::new(table(Venue::Binance));
    assert!(matches!(p.parse(br#"{"result":null,"id":1}"#), Ok(MarketMsg::Ack { id: 1 })));
    let Ok(MarketMsg::VenueError(e)) =
        p.parse(br#"{"code":2,"msg":"Invalid request: unknown","id":3}"#)
    else {
        panic!()
    };
    assert_eq!((e.code, e.name.as_str()), (2, "Invalid request: unknown"));
    assert_eq!(p.parse(br#"{"e":"kline","s":"BTCUSDT"}"#).unwrap_err(), CodecError::UnknownMessage);
    assert_eq!(
        p.parse(br#"{"e":"bookTicker","s":"XRPUSDT","b":"1","B":"1","a":"1","A":"1"}"#)
            .unwrap_err(),
        CodecError::UnknownSymbol
    );
    assert!(
        p.parse(br#"{"e":"bookTicker","s":"BTCUSDT","b":"1e","B":"1","a":"1","A":"1"}"#).is_err()
    );
    assert!(
        p.parse(br#"{"e":"depthUpdate","s":"BTCUSDT","U":1,"u":2,"b":[["1","2","3"]],"a":[]}"#)
            .is_err()
    );
    assert!(p.parse(b"").is_err());
    assert!(p.parse(b"{} x").is_err());
    assert!(p.parse(br#"{"e":"depthUpdate","s":"BTCUSDT","U":1,"u":2,"b":[],"a":[]}"#).is_ok());
    // A depth event missing a side is refused: levels must never leak from the previous
    // message (found by the fuzzer).
    let ok = br#"{"e":"depthUpdate","s":"BTCUSDT","U":1,"u":2,"b":[["1","2"]],"a":[["3","4"]]}"#;
    assert!(p.parse(ok).is_ok());
    assert_eq!(
        p.parse(br#"{"e":"depthUpdate","s":"BTCUSDT","U":3,"u":4,"C":[["1","2"]],"a":[]}"#)
            .unwrap_err(),
        CodecError::Missing("b/a")
    );
    assert!(p.parse_simd(ok).is_ok());
    assert_eq!(
        p.parse_simd(br#"{"e":"depthUpdate","s":"BTCUSDT","U":3,"u":4,"b":[]}"#).unwrap_err(),
        CodecError::Missing("b/a")
    );
    let s = p.stats;
    assert_eq!(s.messages, 13);
    assert_eq!((s.unknown_message, s.unknown_symbol), (1, 1));
    assert_eq!(s.malformed, 6);
    assert_eq!((s.events, s.skipped), (3, 2));
}

#[test]
fn documented_sync_scenario_gives_the_expected_book() {
    let mut p = BinanceMarketParser::new(table(Venue::Binance));
    let mut book = Book::new(SeqRule::Futures, 64);
    let snap = fixture("binance_futures_depth_snapshot.json");
    let Ok(MarketMsg::Event(Event::Book(s))) = p.parse_snapshot(InstrumentId(1), snap.as_bytes())
    else {
        panic!("snapshot")
    };
    book.apply_snapshot(&s, Nanos(1));
    let outcomes: Vec<DiffOutcome> = fixture_lines("binance_futures_depth.jsonl")
        .iter()
        .map(|l| match p.parse(l.as_bytes()) {
            Ok(MarketMsg::Event(Event::Depth(d))) => book.apply_diff(&d, Nanos(2)),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(outcomes[0], DiffOutcome::Dropped);
    assert!(outcomes[1..].iter().all(|o| *o == DiffOutcome::Applied), "{outcomes:?}");
    let mut exp = fixture("binance_futures_depth_expected_book.json").into_bytes();
    let v = simd_json::to_owned_value(&mut exp).unwrap();
    use simd_json::prelude::*;
    let side = |k: &str| -> Vec<Level> {
        v.get(k)
            .and_then(|x| x.as_array())
            .unwrap()
            .iter()
            .map(|l| {
                let a = l.as_array().unwrap();
                Level::new(px(a[0].as_str().unwrap()), q(a[1].as_str().unwrap()))
            })
            .collect()
    };
    assert_eq!(book.bids.iter().copied().collect::<Vec<_>>(), side("bids"));
    assert_eq!(book.asks.iter().copied().collect::<Vec<_>>(), side("asks"));
    assert_eq!(book.best_bid().map(|l| l.px), side("bids").first().map(|l| l.px));

    // The gap file must make the book stale at its third line.
    let mut book = Book::new(SeqRule::Futures, 64);
    let Ok(MarketMsg::Event(Event::Book(s))) = p.parse_snapshot(InstrumentId(1), snap.as_bytes())
    else {
        panic!()
    };
    book.apply_snapshot(&s, Nanos(1));
    let gap: Vec<DiffOutcome> = fixture_lines("binance_futures_depth_gap.jsonl")
        .iter()
        .map(|l| match p.parse(l.as_bytes()) {
            Ok(MarketMsg::Event(Event::Depth(d))) => book.apply_diff(&d, Nanos(2)),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(gap, vec![DiffOutcome::Applied, DiffOutcome::Applied, DiffOutcome::Gap]);
    let _ = Side::Buy;
}

/// What a recording set must give per venue folder: more depth, bbo, trade and (futures)
/// funding messages than these, and exactly this many REST snapshots (futures, spot).
struct Expect {
    depth: u64,
    bbo: u64,
    trade: u64,
    funding: u64,
    snapshots: (u64, u64),
}

/// Every recorded line of the repository's slices (testdata/README.md) parses on both
/// paths with identical results, and the update-id chains are continuous.
#[test]
fn recorded_data_parses_completely_on_both_paths() {
    // Counted on the slices: usdm depth 9,246 bbo 29,255 trade 6,195 funding 99; spot
    // depth 5,815 bbo 22,739 trade 6,532; one REST snapshot per slice that has one:
    // 3 futures, 2 spot.
    let e = Expect { depth: 5_000, bbo: 20_000, trade: 6_000, funding: 90, snapshots: (3, 2) };
    recorded_data_parses(locate::testdata, &e);
}

/// The same over the full recordings beside the checkout (opt-in: `cargo test -p
/// kimp-gateways --test codec_binance -- --ignored`, needs ../shared/data).
#[test]
#[ignore = "reads the full recordings in shared/data beside the checkout"]
fn full_recorded_data_parses_completely_on_both_paths() {
    // One REST snapshot per recording that has one (README): 5 futures, 2 spot.
    let e = Expect { depth: 10_000, bbo: 50_000, trade: 10_000, funding: 400, snapshots: (5, 2) };
    recorded_data_parses(locate::shared, &e);
}

/// Every line under `root`'s Binance folders parses on both paths with identical results,
/// and the futures update-id chains are continuous (`pu == previous u`), spot
/// (`U == previous u + 1`).
fn recorded_data_parses(root: fn(&str) -> std::path::PathBuf, e: &Expect) {
    for (dir, venue) in [("binance-usdm", Venue::Binance), ("binance-spot", Venue::BinanceSpot)] {
        let mut fast = BinanceMarketParser::new(table(venue));
        let mut simd = BinanceMarketParser::new(table(venue));
        let mut kinds = [0u64; 5];
        for path in data_files(root, dir) {
            let inst = file_inst(&path, venue);
            let mut prev_u: Option<u64> = None;
            let lines = gz_lines(&path);
            for line in &lines {
                let json = recorded_json(line);
                let a = if json.starts_with(b"{\"lastUpdateId\"") {
                    prev_u = None;
                    fast.parse_snapshot(inst, json)
                } else {
                    fast.parse(json)
                };
                match &a {
                    Ok(MarketMsg::Event(Event::Depth(d))) => {
                        kinds[0] += 1;
                        if let Some(p) = prev_u {
                            match venue {
                                Venue::Binance => {
                                    assert_eq!(d.prev_last_id, Some(p), "{}", path.display())
                                }
                                _ => assert_eq!(d.first_id, p + 1, "{}", path.display()),
                            }
                        }
                        prev_u = Some(d.last_id);
                    }
                    Ok(MarketMsg::Event(Event::Bbo(_))) => kinds[1] += 1,
                    Ok(MarketMsg::Event(Event::Trade(_))) => kinds[2] += 1,
                    Ok(MarketMsg::Event(Event::Funding(_))) => kinds[3] += 1,
                    Ok(MarketMsg::Event(Event::Book(_))) => kinds[4] += 1,
                    other => panic!(
                        "{}: {other:?} for {}",
                        path.display(),
                        String::from_utf8_lossy(json)
                    ),
                }
                let na = norm(&a);
                let b = if json.starts_with(b"{\"lastUpdateId\"") {
                    // The simd path has no snapshot entry; compare the scanner against
                    // itself only for the instrument-less snapshot.
                    Ok(MarketMsg::Skipped)
                } else {
                    simd.parse_simd(json)
                };
                if !matches!(b, Ok(MarketMsg::Skipped)) {
                    assert_eq!(na, norm(&b), "{}", String::from_utf8_lossy(json));
                }
            }
        }
        assert_eq!(fast.stats.errors(), 0);
        assert!(kinds[0] > e.depth && kinds[1] > e.bbo && kinds[2] > e.trade, "{dir} {kinds:?}");
        if venue == Venue::Binance {
            assert!(kinds[3] > e.funding, "markPrice in the 2023 files: {kinds:?}");
        }
        let snapshots = if venue == Venue::Binance { e.snapshots.0 } else { e.snapshots.1 };
        assert_eq!(kinds[4], snapshots, "{dir} snapshots {kinds:?}");
        eprintln!(
            "{dir}: depth {} bbo {} trade {} funding {} snapshot {}",
            kinds[0], kinds[1], kinds[2], kinds[3], kinds[4]
        );
    }
}
