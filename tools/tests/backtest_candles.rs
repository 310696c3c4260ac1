//! `kimp backtest` in candle mode: a hand-made series whose trades are known, and the
//! real 2021-2023 candles of testdata/data.

use std::path::{Path, PathBuf};
use std::process::Command;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kimp-bt-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[path = "../../testdata/locate.rs"]
mod locate;

/// A file of testdata/data, as a command-line argument.
fn data(rel: &str) -> String {
    locate::testdata(&format!("data/{rel}")).to_string_lossy().to_string()
}

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

[strategy]
entry_bps = 300
"#;

/// Runs the binary; returns (stdout, the parsed last stdout line).
fn kimp(args: &[&str]) -> (String, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_kimp")).args(args).output().expect("run kimp");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "kimp {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or("").to_string();
    let v: serde_json::Value = serde_json::from_str(&last)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"));
    (stdout, v)
}

/// Hourly candles from 2024-01-02 00:00 UTC: Binance flat at 10,000 USDT, FX 1,000, and
/// Upbit closes at the given premiums (percent of 10,000,000 KRW).
fn write_series(dir: &Path, premiums: &[f64]) -> (PathBuf, PathBuf, PathBuf) {
    let t0 = 1_704_153_600_000i64; // 2024-01-02T00:00:00Z
    let mut u = String::from("open_time_utc,open,high,low,close,volume\n");
    let mut b = String::from("timestamp,open,high,low,close,volume\n");
    for (i, p) in premiums.iter().enumerate() {
        let t = t0 + i as i64 * 3_600_000;
        let close = (10_000_000.0 * (1.0 + p / 100.0)).round();
        let h = i % 24;
        u.push_str(&format!("2024-01-02T{h:02}:00:00Z,{close},{close},{close},{close},1.0\n"));
        b.push_str(&format!("{t},10000.0,10000.0,10000.0,10000.0,1.0\n"));
    }
    let (up, bp, fp) = (dir.join("u.csv"), dir.join("b.csv"), dir.join("fx.csv"));
    std::fs::write(&up, u).unwrap();
    std::fs::write(&bp, b).unwrap();
    std::fs::write(&fp, "date,rate\n2024-01-01,1000\n").unwrap();
    (up, bp, fp)
}

#[test]
fn hand_made_series_opens_and_closes_on_the_known_bars() {
    let dir = tmp("hand");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    // Bar 3 (close 04:00) is the first at >= 3 % executable; bars 4-5 are higher (a loss
    // if closed); bar 6 (close 07:00) has converged to 0.5 %: the first profitable exit.
    let (u, b, fx) = write_series(&dir, &[1.0, 1.0, 2.5, 4.0, 4.5, 4.5, 0.5, 0.5, 0.5]);
    let save = dir.join("run.json");
    let args = [
        "backtest",
        "--config",
        cfg.to_str().unwrap(),
        "--upbit",
        u.to_str().unwrap(),
        "--binance",
        b.to_str().unwrap(),
        "--fx",
        fx.to_str().unwrap(),
        "--funding-missing",
        "zero",
        "--json",
        "--save",
        save.to_str().unwrap(),
    ];
    let (_, m) = kimp(&args);
    assert_eq!(m["pairs"], 1, "{m}");
    assert_eq!(m["open_pairs_at_end"], 0);
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&save).unwrap()).unwrap();
    let p = &saved["result"]["pairs"][0];
    let bar_close = |i: i64| 1_704_153_600_000i64 + (i + 1) * 3_600_000;
    assert_eq!(p["opened_ms"].as_i64(), Some(bar_close(3)), "entry on bar 3's close: {p}");
    assert_eq!(p["exit_ms"].as_i64(), Some(bar_close(6)), "exit on bar 6's close: {p}");
    let closed = p["closed_ms"].as_i64().unwrap();
    assert!(
        closed > bar_close(6) && closed < bar_close(6) + 1_000,
        "closed once both exit legs fill"
    );
    // By hand: q = 0.961 (10M KRW / 10,397,000, Binance lot 0.001); Upbit sold at
    // 10,397,000, bought back at 10,053,000 (close ± 2 bps, tick 1,000); Binance bought at
    // 10,001.0, sold at 9,999.0; fees 0.05 % and 0.04 %; FX 1,000.
    let q = 0.961;
    let gross = q * (10_397_000.0 - 10_053_000.0) - q * 2.0 * 1_000.0;
    let fees =
        q * (10_397_000.0 + 10_053_000.0) * 0.0005 + q * (10_001.0 + 9_999.0) * 0.0004 * 1_000.0;
    let net = p["pnl_net"].as_f64().unwrap();
    assert!(net > 0.0);
    assert!((net - (gross - fees)).abs() < 5.0, "net {net} vs hand {}", gross - fees);
    assert!((p["pnl_fees"].as_f64().unwrap() + fees).abs() < 5.0);
    assert_eq!(m["win_rate"], 1.0);
    assert!((m["net_pnl_krw"].as_f64().unwrap() - net).abs() < 1e-6);
    for k in [
        "pairs",
        "net_pnl_krw",
        "sharpe",
        "max_drawdown_pct",
        "win_rate",
        "fees_krw",
        "funding_krw",
        "events",
        "elapsed_ms",
    ] {
        assert!(m.get(k).is_some(), "--json line lacks {k}");
    }
    // Without funding data and `block`, the default `positive` filter refuses entries.
    let mut blocked = args.to_vec();
    blocked[10] = "block";
    let (_, m) = kimp(&blocked);
    assert_eq!(m["pairs"], 0);
    assert_eq!(m["fees_krw"], 0.0);
}

#[test]
fn real_2021_2023_candles_run_with_sane_numbers() {
    let dir = tmp("real");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let c = |f: &str| data(&format!("candles/{f}"));
    let fx = data("fx/DEXKOUS.csv");
    let (out, m) = kimp(&[
        "backtest",
        "--config",
        cfg.to_str().unwrap(),
        "--upbit",
        &c("upbit_KRW-BTC_1d_2021-01-01_2023-01-31.csv"),
        "--binance",
        &c("binance_usdm_BTCUSDT_perp_1d_2021-01-01_2023-01-31.csv"),
        "--fx",
        &fx,
        "--funding-missing",
        "zero",
        "--json",
    ]);
    let pairs = m["pairs"].as_u64().unwrap();
    // The premium peaked near +20 % in 2021: a 3 % entry rule trades, and every closed
    // pair was closed at a profit (the exit rule).
    assert!(pairs >= 5, "{out}");
    assert_eq!(m["win_rate"], 1.0);
    let net = m["net_pnl_krw"].as_f64().unwrap();
    assert!(net.is_finite() && net > 0.0 && net < 50_000_000.0, "{net}");
    let dd = m["max_drawdown_pct"].as_f64().unwrap();
    assert!((0.0..50.0).contains(&dd), "{dd}");
    assert!(m["fees_krw"].as_f64().unwrap() > 0.0);
    assert_eq!(m["funding_krw"], 0.0, "funding treated as zero");
    assert!(m["events"].as_u64().unwrap() >= 3 * 700);
    let sum = ["pnl_premium_krw", "pnl_fx_krw", "pnl_fees_krw"]
        .iter()
        .map(|k| m[k].as_f64().unwrap())
        .sum::<f64>();
    assert!(
        (sum - m["realized_pnl_krw"].as_f64().unwrap()).abs() < 1.0,
        "attribution sums to realised"
    );

    // Hourly Upbit (Jan 2022) against hourly Binance: only aligned hours are used.
    let (_, h) = kimp(&[
        "backtest",
        "--config",
        cfg.to_str().unwrap(),
        "--upbit",
        &c("upbit_KRW-BTC_1h_2022-01-01_2022-01-31.csv"),
        "--binance",
        &c("binance_usdm_BTCUSDT_perp_1h_2021-12-01_2022-02-28.csv"),
        "--fx",
        &fx,
        "--funding-missing",
        "zero",
        "--json",
    ]);
    assert!(h["events"].as_u64().unwrap() >= 2 * 700);
    assert!(h["net_pnl_krw"].as_f64().unwrap().is_finite());
}

#[test]
fn sweep_and_walk_forward_report_every_point() {
    let dir = tmp("sweep");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let c = |f: &str| data(&format!("candles/{f}"));
    let fx = data("fx/DEXKOUS.csv");
    let base = [
        "backtest",
        "--config",
        cfg.to_str().unwrap(),
        "--upbit",
        &c("upbit_KRW-BTC_1d_2021-01-01_2023-01-31.csv"),
        "--binance",
        &c("binance_usdm_BTCUSDT_perp_1d_2021-01-01_2023-01-31.csv"),
        "--fx",
        &fx,
        "--funding-missing",
        "zero",
        "--json",
        "--quiet",
    ];
    let mut a = base.to_vec();
    a.extend([
        "--sweep",
        "strategy.entry_bps=200:600:100",
        "--sweep",
        "book.upbit_spread_bps=2:6:4",
    ]);
    let (out, m) = kimp(&a);
    assert_eq!(m["sweep_points"], 10, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("strategy.entry_bps=")).count(),
        10,
        "one row per point"
    );
    // The exit rule never closes a pair at a loss, whatever the parameters.
    for l in out.lines().filter(|l| l.starts_with("strategy.") && !l.contains("pairs 0 closed")) {
        assert!(l.contains("win 100 % of "), "{l}");
    }
    let mut w = base.to_vec();
    w.extend(["--sweep", "strategy.entry_bps=200:500:150", "--walk-forward", "180d:90d"]);
    let (out, m) = kimp(&w);
    let windows = m["walk_forward_windows"].as_u64().unwrap();
    assert!(windows >= 5, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("window ")).count() as u64, windows);
}
