//! `kimp backtest --input`: recorded venue messages through the gateways' parsers and the
//! engine, from the capture format and from raw JSON-lines recordings.

use std::path::{Path, PathBuf};
use std::process::Command;

use kimp::research::capture::{CapVenue, Frame, FrameKind, FrameWriter};

#[path = "../../testdata/locate.rs"]
mod locate;

const CONFIG: &str = r#"
[venues.upbit]
ws_url = "ws://127.0.0.1:18001/websocket/v1"
rest_url = "http://127.0.0.1:18002"
[venues.binance]
ws_url = "ws://127.0.0.1:18003"
rest_url = "http://127.0.0.1:18004"

[[coins]]
name = "BTC"
upbit = "KRW-BTC"
binance = "BTCUSDT"
"#;

const T0_MS: u64 = 1_773_240_000_000;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kimp-tick-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn upbit_book(code: &str, ms: u64, bid: u64, ask: u64, step: u64, size: &str) -> String {
    let units: Vec<String> = (0..3)
        .map(|i| {
            format!(
                "{{\"ask_price\":{},\"bid_price\":{},\"ask_size\":{size},\"bid_size\":{size}}}",
                ask + i * step,
                bid - i * step
            )
        })
        .collect();
    format!(
        "{{\"type\":\"orderbook\",\"code\":\"{code}\",\"timestamp\":{ms},\"total_ask_size\":1,\"total_bid_size\":1,\"orderbook_units\":[{}],\"stream_type\":\"REALTIME\",\"level\":0}}",
        units.join(",")
    )
}

/// The market, one step every 100 ms for 6 s: Binance BTCUSDT 10,000.0 / 10,000.1 (diffs
/// after one REST snapshot), KRW-USDT 1,000 / 1,001, funding +0.01 %, and KRW-BTC at a
/// premium of 1 % (0-2 s), 4 % (2-4 s), then 0 %.
/// Returns `(receive ns, venue, is the REST snapshot, payload)`.
fn market() -> Vec<(u64, CapVenue, bool, String)> {
    let mut v = Vec::new();
    let ns = |ms: u64| ms * 1_000_000;
    v.push((
        ns(T0_MS) - 50_000_000,
        CapVenue::Binance,
        true,
        "{\"lastUpdateId\":1000,\"E\":1,\"T\":1,\"bids\":[[\"10000.0\",\"5.000\"],[\"9999.9\",\"5.000\"]],\"asks\":[[\"10000.1\",\"5.000\"],[\"10000.2\",\"5.000\"]]}".to_string(),
    ));
    let fair = 10_000.1 * 1_001.0;
    for k in 0..60u64 {
        let ms = T0_MS + 100 * k;
        if k % 10 == 0 {
            v.push((ns(ms), CapVenue::Binance, false, format!(
                "{{\"stream\":\"btcusdt@markPrice@1s\",\"data\":{{\"e\":\"markPriceUpdate\",\"E\":{ms},\"s\":\"BTCUSDT\",\"p\":\"10000.00\",\"i\":\"10000.00\",\"P\":\"10000.00\",\"r\":\"0.00010000\",\"T\":{}}}}}",
                T0_MS + 8 * 3_600_000
            )));
        }
        let (first, last, prev) =
            if k == 0 { (1000, 1001, 999) } else { (1001 + k, 1001 + k, 1000 + k) };
        v.push((ns(ms), CapVenue::Binance, false, format!(
            "{{\"stream\":\"btcusdt@depth@100ms\",\"data\":{{\"e\":\"depthUpdate\",\"E\":{ms},\"T\":{ms},\"s\":\"BTCUSDT\",\"U\":{first},\"u\":{last},\"pu\":{prev},\"b\":[[\"10000.0\",\"5.000\"]],\"a\":[[\"10000.1\",\"5.000\"]]}}}}"
        )));
        v.push((
            ns(ms) + 1_000_000,
            CapVenue::Upbit,
            false,
            upbit_book("KRW-USDT", ms, 1_000, 1_001, 1, "1000000"),
        ));
        let p: f64 = if k < 20 {
            0.01
        } else if k < 40 {
            0.04
        } else {
            0.0
        };
        let bid = ((fair * (1.0 + p)) / 1_000.0).floor() as u64 * 1_000;
        v.push((
            ns(ms) + 2_000_000,
            CapVenue::Upbit,
            false,
            upbit_book("KRW-BTC", ms, bid, bid + 2_000, 1_000, "2.0"),
        ));
    }
    v
}

fn kimp(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_kimp")).args(args).output().expect("run kimp");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("JSON last line")
}

fn check(dir: &Path, input: &Path) {
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let save = dir.join("run.json");
    let m = kimp(&[
        "backtest",
        "--config",
        cfg.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--json",
        "--save",
        save.to_str().unwrap(),
    ]);
    assert_eq!(m["pairs"], 1, "{m}");
    assert_eq!(m["mode"], "ticks");
    assert_eq!(m["exec"]["rejects"], 0);
    assert_eq!(m["exec"]["fills"], 4, "two legs in, two legs out");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&save).unwrap()).unwrap();
    let p = &saved["result"]["pairs"][0];
    // Entry on the first 4 % KRW-BTC book (step 20, received 2 ms into the step), exit on
    // the first 0 % one (step 40).
    assert_eq!(p["opened_ms"].as_u64(), Some(T0_MS + 2_002), "{p}");
    assert_eq!(p["exit_ms"].as_u64(), Some(T0_MS + 4_002), "{p}");
    assert!(p["pnl_net"].as_f64().unwrap() > 0.0);
    assert!((p["entry_bps"].as_f64().unwrap() - 399.5).abs() < 1.0, "{p}");
    let prem = &saved["result"]["series"]["premium"];
    assert!(prem.as_array().unwrap().len() >= 40, "the engine's premium samples are kept");
}

#[test]
fn capture_replay_trades_the_known_premium_path() {
    let dir = tmp("cap");
    let path = dir.join("m.kcap");
    let mut w = FrameWriter::new(Vec::new(), T0_MS * 1_000_000).unwrap();
    for (ts, venue, rest, payload) in market() {
        if rest {
            let req = b"GET /fapi/v1/depth?symbol=BTCUSDT&limit=1000";
            w.write(&Frame {
                recv_ts_ns: ts,
                venue,
                kind: FrameKind::Sent,
                stream: 9,
                payload: req,
            })
            .unwrap();
        }
        let kind = if rest { FrameKind::Rest } else { FrameKind::Ws };
        w.write(&Frame { recv_ts_ns: ts, venue, kind, stream: 9, payload: payload.as_bytes() })
            .unwrap();
    }
    std::fs::write(&path, w.into_inner()).unwrap();
    check(&dir, &path);
}

#[test]
fn raw_json_lines_replay_gives_the_same_trades() {
    let dir = tmp("raw");
    // The collector's layout: `<receive ns> <json>`; the file name names the snapshot.
    let path = dir.join("btcusdt_test.txt");
    let text: String = market().into_iter().map(|(ts, _, _, p)| format!("{ts} {p}\n")).collect();
    std::fs::write(&path, text).unwrap();
    check(&dir, &path);
}

#[test]
fn a_real_binance_recording_replays() {
    let f = locate::testdata("data/binance-usdm/btcusdt_20230404.dat.gz");
    let dir = tmp("real");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let m = kimp(&[
        "backtest",
        "--config",
        cfg.to_str().unwrap(),
        "--input",
        f.to_str().unwrap(),
        "--json",
    ]);
    // No Upbit data in the file: nothing trades, but every message went through.
    assert_eq!(m["pairs"], 0);
    assert!(m["events"].as_u64().unwrap() > 1_000, "{m}");
}
