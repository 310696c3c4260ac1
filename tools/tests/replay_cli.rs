//! `kimp replay` on the real Binance USDT-M recording: the documented sync procedure
//! (buffer, snapshot, drop what it covers, `pu` continuity) gives a book whose top matches
//! the venue's own bookTicker stream recorded alongside, and the CLI prints exactly the
//! documented CSV.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;

#[path = "../../testdata/locate.rs"]
mod locate;

const RECORDING: &str = "data/binance-usdm/btcusdt_20240808.gz";

fn lines(recording: &Path) -> Vec<String> {
    let mut s = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(recording).unwrap())
        .read_to_string(&mut s)
        .unwrap();
    s.lines().map(str::to_owned).collect()
}

/// (u, best bid, best ask) of every bookTicker in the recording, from serde_json.
fn tickers(lines: &[String]) -> BTreeMap<u64, (String, String)> {
    let mut m = BTreeMap::new();
    for l in lines {
        let Some((_, j)) = l.split_once(' ') else { continue };
        let v: serde_json::Value = serde_json::from_str(j).unwrap();
        if v["data"]["e"] == "bookTicker" {
            let d = &v["data"];
            let n = |k: &str| {
                kimp_core::units::Decimal(
                    kimp_core::units::parse_decimal(d[k].as_str().unwrap().as_bytes()).unwrap(),
                )
                .to_string()
            };
            m.insert(d["u"].as_u64().unwrap(), (n("b"), n("a")));
        }
    }
    m
}

/// On the repository's first 20,000 lines of the recording (testdata/README.md).
#[test]
fn replayed_book_top_matches_the_recorded_book_ticker() {
    // The slice holds 15,377 bookTicker lines (distinct `u`) and 1,598 depth events; 154
    // replayed rows end at an update id that has a bookTicker.
    book_top_matches(&locate::testdata(RECORDING), 14_000, 100);
}

/// The same on the whole 6-minute recording (opt-in: needs ../shared/data; run with
/// `cargo test -p kimp --test replay_cli -- --ignored`).
#[test]
#[ignore = "reads the full recording in shared/data beside the checkout"]
fn full_replayed_book_top_matches_the_recorded_book_ticker() {
    book_top_matches(&locate::shared(RECORDING), 60_000, 500);
}

/// `kimp replay --print book-top` on `recording` gives the top of the venue's own
/// bookTicker at every update id that has one; `min_tickers` and `min_checked` say how
/// much of that the recording must hold.
fn book_top_matches(recording: &Path, min_tickers: usize, min_checked: usize) {
    let lines = lines(recording);
    let tick = tickers(&lines);
    assert!(tick.len() > min_tickers, "bookTicker lines: {}", tick.len());
    let out = Command::new(env!("CARGO_BIN_EXE_kimp"))
        .args(["replay", "--print", "book-top", "--input"])
        .arg(recording)
        .output()
        .expect("run kimp replay");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut rows = csv.lines();
    assert_eq!(rows.next(), Some("exchange_ts_ms,venue,symbol,bid_px,bid_qty,ask_px,ask_qty"));
    let rows: Vec<Vec<&str>> = rows.map(|r| r.split(',').collect()).collect();
    assert!(rows.iter().all(|r| r.len() == 7 && r[1] == "binance-usdm" && r[2] == "BTCUSDT"));
    assert!(rows.iter().all(|r| !r[3].ends_with('0') || !r[3].contains('.')), "trailing zeros");
    // Depth rows in order, with the update ids they end at, from the recording itself.
    let mut depth_u = Vec::new();
    for l in &lines {
        let Some((_, j)) = l.split_once(' ') else { continue };
        if j.contains("\"e\":\"depthUpdate\"") {
            let v: serde_json::Value = serde_json::from_str(j).unwrap();
            depth_u.push((v["data"]["E"].as_u64().unwrap(), v["data"]["u"].as_u64().unwrap()));
        }
    }
    // Every row after the snapshot row is one applied diff; the last diffs of the file map
    // one to one onto the last rows.
    let applied = &depth_u[depth_u.len() - (rows.len() - 1)..];
    let (mut checked, mut matched) = (0, 0);
    for (row, &(e, u)) in rows[1..].iter().zip(applied) {
        assert_eq!(row[0].parse::<u64>().unwrap(), e, "row time is the event time E");
        // The ticker at exactly this update id, if the venue sent one: same top.
        if let Some((b, a)) = tick.get(&u) {
            checked += 1;
            if row[3] == b && row[5] == a {
                matched += 1;
            }
        }
    }
    assert!(checked > min_checked, "only {checked} rows had a ticker at the same update id");
    assert_eq!(
        matched,
        checked,
        "top of book differs from bookTicker in {} of {checked}",
        checked - matched
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("0 gaps"), "{err}");
}

#[test]
fn a_gap_is_reported_and_the_book_waits_for_a_snapshot() {
    // The gap fixture: lines 2 and 3 of the fixture stream, then a broken `pu` chain.
    let dir = std::env::temp_dir().join(format!("kimp-replay-gap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fx = locate::testdata("fixtures/protocol");
    let snap = std::fs::read_to_string(fx.join("binance_futures_depth_snapshot.json")).unwrap();
    let compact: String = snap.split_whitespace().collect();
    let mut text = format!("1 {compact}\n");
    for (i, l) in std::fs::read_to_string(fx.join("binance_futures_depth_gap.jsonl"))
        .unwrap()
        .lines()
        .enumerate()
    {
        text.push_str(&format!("{} {l}\n", i + 2));
    }
    let file = dir.join("btcusdt_gap.txt");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kimp"))
        .args(["replay", "--input"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let csv = String::from_utf8(out.stdout).unwrap();
    assert_eq!(csv.lines().count(), 1 + 3, "header, snapshot and two applied diffs: {csv}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 gaps") && err.contains("gap: binance-usdm BTCUSDT"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_kimp"))
        .args(["replay", "--input", "/nonexistent/file.gz"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/file.gz"));
}

#[test]
fn print_kimp_gives_the_worked_example_of_the_protocol_doc() {
    // The fixture scenario of docs/exchange-protocols.md §6.3 with KRW-USDT as FX: buy
    // -0.0008 % (−0.08 bps) exactly; sell about −10.1 bps (the Binance book after all five
    // fixture diffs has its best ask at 70,500.20 rather than the doc's 70,500.00).
    let fx = locate::testdata("fixtures/protocol");
    let dir = std::env::temp_dir().join(format!("kimp-replay-kimp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let snap: String = std::fs::read_to_string(fx.join("binance_futures_depth_snapshot.json"))
        .unwrap()
        .split_whitespace()
        .collect();
    let depth = std::fs::read_to_string(fx.join("binance_futures_depth.jsonl")).unwrap();
    let file = dir.join("btcusdt_fixture.jsonl");
    std::fs::write(&file, format!("{snap}\n{depth}")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kimp"))
        .args(["replay", "--print", "kimp", "--qty", "0.004", "--input"])
        .arg(&file)
        .arg(fx.join("upbit_orderbook.jsonl"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut it = csv.lines();
    assert_eq!(it.next(), Some("exchange_ts_ms,coin,mid_bps,sell_bps,buy_bps,fx,qty"));
    let row: Vec<&str> = it.next().expect("one row").split(',').collect();
    assert_eq!(row[1], "BTC");
    let (sell, buy): (f64, f64) = (row[3].parse().unwrap(), row[4].parse().unwrap());
    assert!((buy - -0.08).abs() < 0.01, "{buy}");
    assert!((sell - -10.1).abs() < 0.1, "{sell}");
    assert_eq!(row[5], "1468.5");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_kcap_capture_replays_like_the_same_messages_as_text() {
    use kimp::research::capture::{CapVenue, Frame, FrameKind, FrameWriter};
    let fx = locate::testdata("fixtures/protocol");
    let dir = std::env::temp_dir().join(format!("kimp-replay-kcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let snap: String = std::fs::read_to_string(fx.join("binance_futures_depth_snapshot.json"))
        .unwrap()
        .split_whitespace()
        .collect();
    let depth = std::fs::read_to_string(fx.join("binance_futures_depth.jsonl")).unwrap();
    let upbit = std::fs::read_to_string(fx.join("upbit_orderbook.jsonl")).unwrap();
    // The same messages as text files (the snapshot's symbol from the file name) ...
    let text = dir.join("btcusdt_fixture.jsonl");
    std::fs::write(&text, format!("{snap}\n{depth}")).unwrap();
    // ... and as one capture, the way `kimp record` writes it: connection notes, the
    // subscription, the snapshot request line and its body, then the stream messages.
    let mut w = FrameWriter::new(Vec::new(), 1).unwrap();
    let mut t = 1_773_240_000_000_000_000u64;
    let mut frame = |venue, kind, stream, payload: &str| {
        t += 1_000_000;
        w.write(&Frame { recv_ts_ns: t, venue, kind, stream, payload: payload.as_bytes() })
            .unwrap();
    };
    frame(CapVenue::Binance, FrameKind::Conn, 1, "open 1");
    frame(CapVenue::Binance, FrameKind::Sent, 1, "GET /fapi/v1/depth?symbol=BTCUSDT&limit=1000");
    frame(CapVenue::Binance, FrameKind::Rest, 1, &snap);
    for l in depth.lines() {
        frame(CapVenue::Binance, FrameKind::Ws, 1, l);
    }
    frame(CapVenue::Upbit, FrameKind::Conn, 0, "open 0");
    frame(CapVenue::Upbit, FrameKind::Sent, 0, "[{\"ticket\":\"kimp-record\"}]");
    for l in upbit.lines() {
        frame(CapVenue::Upbit, FrameKind::Ws, 0, l);
    }
    let kcap = dir.join("kimp-00001-1773240000.kcap");
    std::fs::write(&kcap, w.into_inner()).unwrap();
    let replay = |files: &[&std::path::Path]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kimp"))
            .args(["replay", "--print", "book-top", "--input"])
            .args(files)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        (String::from_utf8(out.stdout).unwrap(), stderr)
    };
    let (from_text, _) = replay(&[&text, &fx.join("upbit_orderbook.jsonl")]);
    let (from_kcap, err) = replay(&[&kcap]);
    assert_eq!(from_kcap, from_text, "capture and text replays differ");
    let rows: Vec<&str> = from_kcap.lines().skip(1).collect();
    assert!(rows.iter().any(|r| r.contains(",binance-usdm,BTCUSDT,")), "{from_kcap}");
    assert!(rows.iter().any(|r| r.contains(",upbit,KRW-BTC,")), "{from_kcap}");
    assert!(err.contains("0 gaps") && err.contains("0 malformed"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
