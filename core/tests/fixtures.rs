//! Book sync against the protocol fixtures (testdata/fixtures/protocol): the official
//! USD-M and spot procedures must produce the expected books, and the gap file must
//! trigger a resync at its third line. JSON is read with serde_json here because the
//! engine has no parser of its own; the gateways' codecs are tested on the same files.

use kimp_core::book::{Book, BookState, DiffOutcome, SeqRule};
use kimp_core::event::{BookSnapshot, DepthDiff, Level};
use kimp_core::instrument::{InstrumentId, TickRule};
use kimp_core::units::{Nanos, Price, Qty};
use serde_json::Value;

#[path = "../../testdata/locate.rs"]
mod locate;

fn fixture(name: &str) -> String {
    let p = locate::testdata(&format!("fixtures/protocol/{name}"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn levels(v: &Value) -> Vec<Level> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let px = Price::parse(l[0].as_str().unwrap().as_bytes()).unwrap();
            let q = Qty::parse(l[1].as_str().unwrap().as_bytes()).unwrap();
            Level::new(px, q)
        })
        .collect()
}

fn snapshot(book: &mut Book, file: &str) {
    let s: Value = serde_json::from_str(&fixture(file)).unwrap();
    let (b, a) = (levels(&s["bids"]), levels(&s["asks"]));
    let id = s["lastUpdateId"].as_u64().unwrap();
    book.apply_snapshot(
        &BookSnapshot {
            inst: InstrumentId(0),
            exch_ts: Nanos(0),
            last_update_id: id,
            bids: &b,
            asks: &a,
        },
        Nanos(0),
    );
}

fn apply_line(book: &mut Book, line: &str) -> DiffOutcome {
    let d: Value = serde_json::from_str(line).unwrap();
    let (b, a) = (levels(&d["b"]), levels(&d["a"]));
    book.apply_diff(
        &DepthDiff {
            inst: InstrumentId(0),
            exch_ts: Nanos(0),
            first_id: d["U"].as_u64().unwrap(),
            last_id: d["u"].as_u64().unwrap(),
            prev_last_id: d.get("pu").and_then(Value::as_u64),
            bids: &b,
            asks: &a,
        },
        Nanos(1),
    )
}

fn expect(book: &Book, file: &str) {
    let e: Value = serde_json::from_str(&fixture(file)).unwrap();
    let bids: Vec<Level> = book.bids.iter().copied().collect();
    let asks: Vec<Level> = book.asks.iter().copied().collect();
    assert_eq!(bids, levels(&e["bids"]), "bids");
    assert_eq!(asks, levels(&e["asks"]), "asks");
}

#[test]
fn usdm_depth_fixture_gives_the_expected_book() {
    let mut book = Book::new(SeqRule::Futures, 1_024);
    snapshot(&mut book, "binance_futures_depth_snapshot.json");
    let outcomes: Vec<DiffOutcome> =
        fixture("binance_futures_depth.jsonl").lines().map(|l| apply_line(&mut book, l)).collect();
    use DiffOutcome::*;
    assert_eq!(
        outcomes,
        [Dropped, Applied, Applied, Applied, Applied],
        "line 1 dropped, 2-5 applied"
    );
    expect(&book, "binance_futures_depth_expected_book.json");
    assert_eq!(book.last_id(), 8_824_371_923_188);
}

#[test]
fn usdm_gap_fixture_resyncs_at_line_three() {
    let mut book = Book::new(SeqRule::Futures, 1_024);
    snapshot(&mut book, "binance_futures_depth_snapshot.json");
    let outcomes: Vec<DiffOutcome> = fixture("binance_futures_depth_gap.jsonl")
        .lines()
        .map(|l| apply_line(&mut book, l))
        .collect();
    assert_eq!(outcomes, [DiffOutcome::Applied, DiffOutcome::Applied, DiffOutcome::Gap]);
    assert_eq!(book.state(), BookState::Stale);
}

#[test]
fn spot_depth_fixture_gives_the_expected_book() {
    let mut book = Book::new(SeqRule::Spot, 1_024);
    snapshot(&mut book, "binance_spot_depth_snapshot.json");
    let outcomes: Vec<DiffOutcome> =
        fixture("binance_spot_depth.jsonl").lines().map(|l| apply_line(&mut book, l)).collect();
    use DiffOutcome::*;
    assert_eq!(outcomes, [Dropped, Applied, Applied, Applied]);
    expect(&book, "binance_spot_depth_expected_book.json");
}

#[test]
fn upbit_fixture_books_are_on_the_krw_price_grid() {
    // Every price Upbit sent in the fixture books is a valid order price under the KRW
    // price-unit table (KRW-BTC in 1,000-KRW units, KRW-USDT in 1-KRW... or finer).
    let mut n = 0;
    for line in fixture("upbit_orderbook.jsonl").lines() {
        let m: Value = serde_json::from_str(line).unwrap();
        for u in m["orderbook_units"].as_array().unwrap() {
            for k in ["ask_price", "bid_price"] {
                let px = Price::parse(u[k].to_string().as_bytes()).unwrap();
                assert!(TickRule::UpbitKrw.is_valid(px), "{} {px}", m["code"]);
                n += 1;
            }
        }
    }
    assert!(n >= 30, "fixture read: {n} prices");
}
