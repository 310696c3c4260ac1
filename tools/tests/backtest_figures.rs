//! The figures `kimp backtest` and `kimp report` print are consistent with each other and
//! readable (issue 14, item 11): open pairs shown beside the win rate of closed pairs, fee
//! totals equal to the realised fees, no Sharpe from a handful of returns, data notes about
//! the run's own period, chart labels that fit and differ, and walk-forward results that
//! keep their premium series and unique pair ids.

use std::path::{Path, PathBuf};
use std::process::Command;

use kimp::research::cli::SavedRun;
use kimp::research::metrics::{RunMetrics, RunResult, Series};
use kimp::research::report::render;

/// A fresh directory for one test, removed when dropped.
struct Tmp(PathBuf);

impl Tmp {
    fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("kimp-fig-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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

const T0: i64 = 1_704_153_600_000; // 2024-01-02T00:00:00Z

/// Candles from 2024-01-02 00:00 UTC every `step_ms`: Binance flat at 10,000 USDT and
/// Upbit closes at the given premiums (percent) over the FX `fx(close time)`.
fn write_series(
    dir: &Path,
    step_ms: i64,
    premiums: &[f64],
    fx: impl Fn(i64) -> f64,
    fx_csv: &str,
) -> [String; 3] {
    let mut u = String::from("timestamp,open,high,low,close,volume\n");
    let mut b = String::from("timestamp,open,high,low,close,volume\n");
    for (i, p) in premiums.iter().enumerate() {
        let t = T0 + i as i64 * step_ms;
        let close = (10_000.0 * fx(t + step_ms) * (1.0 + p / 100.0) / 1_000.0).round() * 1_000.0;
        u.push_str(&format!("{t},{close},{close},{close},{close},1.0\n"));
        b.push_str(&format!("{t},10000.0,10000.0,10000.0,10000.0,1.0\n"));
    }
    let (up, bp, fp) = (dir.join("u.csv"), dir.join("b.csv"), dir.join("fx.csv"));
    std::fs::write(&up, u).unwrap();
    std::fs::write(&bp, b).unwrap();
    std::fs::write(&fp, fx_csv).unwrap();
    let s = |p: PathBuf| p.to_string_lossy().to_string();
    [s(up), s(bp), s(fp)]
}

/// Runs `kimp backtest` on the series with `extra` arguments; returns (stdout, stderr, the
/// `--json` line).
fn backtest(
    dir: &Path,
    files: &[String; 3],
    extra: &[&str],
) -> (String, String, serde_json::Value) {
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let mut args = vec!["backtest", "--config", cfg.to_str().unwrap()];
    args.extend(["--upbit", &files[0], "--binance", &files[1], "--fx", &files[2]]);
    args.extend(["--funding-missing", "zero", "--quiet", "--json"]);
    args.extend(extra);
    let out = Command::new(env!("CARGO_BIN_EXE_kimp")).args(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "kimp {args:?}:\n{stdout}\n{stderr}");
    let last = stdout.lines().last().unwrap_or("");
    let json = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"));
    (stdout, stderr, json)
}

/// A premium path that enters at bar 3, closes at a profit at bar 6, enters again at bar 8
/// and then widens without converging: one closed winner, one open loser at the end.
const WIN_THEN_OPEN_LOSER: &[f64] = &[1.0, 1.0, 2.5, 4.0, 4.5, 4.5, 0.5, 0.5, 4.0, 7.0, 10.0, 10.0];

#[test]
fn a_sweep_row_with_negative_net_shows_its_open_pairs_and_the_win_rate_of_closed_ones() {
    let dir = Tmp::new("sweep-open");
    let files = write_series(
        &dir.0,
        3_600_000,
        WIN_THEN_OPEN_LOSER,
        |_| 1_000.0,
        "date,rate\n2024-01-01,1000\n",
    );
    let (out, _, m) = backtest(&dir.0, &files, &["--sweep", "strategy.entry_bps=300:300:100"]);
    assert_eq!((m["pairs"].as_u64(), m["open_pairs_at_end"].as_u64()), (Some(1), Some(1)), "{m}");
    assert!(m["net_pnl_krw"].as_f64().unwrap() < 0.0, "the open pair is a loss: {m}");
    assert!(m["realized_pnl_krw"].as_f64().unwrap() > 0.0, "{m}");
    assert_eq!(m["win_rate"], 1.0, "of the closed pairs");
    let row = out
        .lines()
        .find(|l| l.starts_with("strategy.entry_bps=300: "))
        .unwrap_or_else(|| panic!("no sweep row for people:\n{out}"));
    assert!(row.contains("pairs 1 closed + 1 open"), "{row}");
    assert!(row.contains("net -"), "{row}");
    assert!(row.contains("open pairs -"), "the open pairs' loss is shown: {row}");
    assert!(row.ends_with("win 100 % of 1 closed"), "{row}");
    let summary = out.lines().find(|l| l.starts_with("win rate")).unwrap();
    assert!(summary.contains("of 1 closed") && summary.contains("1 open at end"), "{summary}");
}

#[test]
fn the_fee_total_equals_the_sum_of_realised_fees() {
    let dir = Tmp::new("fees");
    // FX moves between entry and exit: fees converted at fill time would differ from the
    // engine's realised split (Binance fees at the exit FX).
    let fx = |t: i64| if t >= T0 + 5 * 3_600_000 + 1_800_000 { 1_010.0 } else { 1_000.0 };
    let files = write_series(
        &dir.0,
        3_600_000,
        &[1.0, 1.0, 2.5, 4.0, 4.5, 4.5, 0.5, 0.5, 0.5],
        fx,
        "date,rate\n2024-01-01,1000\n2024-01-02T05:30:00Z,1010\n",
    );
    let save = dir.0.join("run.json");
    let (out, _, m) = backtest(&dir.0, &files, &["--save", save.to_str().unwrap()]);
    assert_eq!((m["pairs"].as_u64(), m["open_pairs_at_end"].as_u64()), (Some(1), Some(0)), "{m}");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&save).unwrap()).unwrap();
    let realised: f64 = saved["result"]["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| -p["pnl_fees"].as_f64().unwrap())
        .sum();
    assert!(realised > 1_000.0, "{realised}");
    let fees = m["fees_krw"].as_f64().unwrap();
    assert!((fees - realised).abs() < 1e-6, "fees_krw {fees} vs realised fees {realised}");
    assert!((fees + m["pnl_fees_krw"].as_f64().unwrap()).abs() < 1e-6, "{m}");
    let line = out.lines().find(|l| l.starts_with("fees ")).unwrap_or_else(|| panic!("{out}"));
    let total: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(total, realised.round(), "{line}");
}

#[test]
fn sharpe_is_na_below_the_minimum_number_of_returns() {
    let dir = Tmp::new("sharpe");
    // Ten one-minute candles: a profitable pair inside, so the equity moves.
    let files = write_series(
        &dir.0,
        60_000,
        &[1.0, 1.0, 2.5, 4.0, 4.5, 4.5, 0.5, 0.5, 0.5, 0.5],
        |_| 1_000.0,
        "date,rate\n2024-01-01,1000\n",
    );
    let (out, _, m) = backtest(&dir.0, &files, &[]);
    assert_eq!(m["pairs"], 1, "{m}");
    let n = m["stats_returns"].as_u64().unwrap_or_else(|| panic!("no stats_returns: {m}"));
    assert!((2..30).contains(&n), "{m}");
    assert!(m["sharpe"].is_null() && m["sortino"].is_null(), "{m}");
    let line = out.lines().find(|l| l.starts_with("sharpe / sortino")).unwrap();
    assert!(line.contains("n/a / n/a") && line.contains("at least 30"), "{line}");
}

#[test]
fn fx_rows_carried_forward_are_counted_inside_the_period_only() {
    let dir = Tmp::new("fx-carried");
    // Three blank (carried) rows before the run, one inside it (effective 2024-01-02
    // 17:00 UTC, within 30 hourly candles from 00:00).
    let fx_csv = "date,rate\n2023-12-20,1000\n2023-12-21,\n2023-12-22,.\n2023-12-25,\n\
                  2024-01-01,1000\n2024-01-02,\n2024-01-03,1000\n";
    let files = write_series(&dir.0, 3_600_000, &[1.0; 30], |_| 1_000.0, fx_csv);
    let (_, err, _) = backtest(&dir.0, &files, &[]);
    assert!(err.contains("FX rows carried forward in the period: 1."), "{err}");
    // The same file over a period before the blank row: none carried.
    let (_, err, _) = backtest(&dir.0, &files, &["--to", "2024-01-02T10:00:00Z"]);
    assert!(err.contains("FX rows carried forward in the period: 0."), "{err}");
}

/// The y-axis labels of the chart titled `title` in `html`, with their x position.
fn y_labels(html: &str, title: &str) -> Vec<(f64, String)> {
    let start = html.find(&format!("<h3>{title}</h3>")).unwrap_or_else(|| panic!("no {title}"));
    let svg = &html[start..start + html[start..].find("</svg>").unwrap()];
    let mut out = Vec::new();
    for part in svg.split("<text ").skip(1) {
        if !part.contains("text-anchor=\"end\"") {
            continue;
        }
        let x: f64 = part.split("x=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
        let label = part.split('>').nth(1).unwrap().split('<').next().unwrap().to_string();
        out.push((x, label));
    }
    out
}

/// A label back to a number (`2.8M`, `-95.5k`, `-0.040%`).
fn value_of(label: &str) -> f64 {
    let l = label.trim_end_matches('%');
    let (num, k) = match l.chars().last() {
        Some('M') => (&l[..l.len() - 1], 1e6),
        Some('k') => (&l[..l.len() - 1], 1e3),
        Some('G') => (&l[..l.len() - 1], 1e9),
        _ => (l, 1.0),
    };
    num.parse::<f64>().unwrap_or_else(|_| panic!("{label:?} is not a number")) * k
}

fn run_with_equity(equity: Vec<(i64, f64)>, capital: f64) -> SavedRun {
    SavedRun {
        kind: "backtest".into(),
        coins: vec!["BTC".into()],
        result: RunResult {
            metrics: RunMetrics { capital_krw: capital, ..Default::default() },
            series: Some(Series { premium: Vec::new(), equity }),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Labels fit left of their anchor (11 px text, at most 6.2 px a character), differ from
/// each other, and read back as the tick values they stand for.
fn assert_readable(labels: &[(f64, String)], lo: f64, hi: f64) {
    assert_eq!(labels.len(), 5, "{labels:?}");
    for (x, l) in labels {
        assert!(l.len() as f64 * 6.2 <= *x, "label {l:?} at x={x} is cut off at the left edge");
    }
    for w in labels.windows(2) {
        assert_ne!(w[0].1, w[1].1, "repeated label: {labels:?}");
    }
    let step = (hi - lo) / 4.0;
    for (k, (_, l)) in labels.iter().enumerate() {
        let want = lo + step * k as f64;
        assert!((value_of(l) - want).abs() <= step * 0.1, "{l:?} does not read as {want}");
        assert_eq!(l.starts_with('-'), want < 0.0 && value_of(l) != 0.0, "sign of {l:?} ({want})");
    }
}

#[test]
fn equity_axis_labels_of_large_and_negative_values_are_complete_and_distinct() {
    let d = 86_400_000;
    let eq = vec![(T0, -1_234_567.0), (T0 + d, 150_000.0), (T0 + 2 * d, 2_795_766.7)];
    let html = render(Some(&run_with_equity(eq, 100_000_000.0)), &[], &[]);
    let labels = y_labels(&html, "Equity: net PnL (KRW)");
    assert_readable(&labels, -1_234_567.0, 2_795_766.7);
    assert!(labels[0].1.starts_with('-'), "{labels:?}");
}

#[test]
fn drawdown_axis_labels_of_a_small_drawdown_are_distinct() {
    let d = 86_400_000;
    // 40,000 KRW off a 100 M capital: a 0.04 % drawdown.
    let eq = vec![(T0, 0.0), (T0 + d, -40_000.0), (T0 + 2 * d, -10_000.0)];
    let html = render(Some(&run_with_equity(eq, 100_000_000.0)), &[], &[]);
    let labels = y_labels(&html, "Drawdown (%)");
    assert_readable(&labels, -0.04, 0.0);
    assert!(labels.iter().all(|(_, l)| l.ends_with('%')), "{labels:?}");
}

#[path = "../../testdata/locate.rs"]
mod locate;

/// A walk-forward run over the real 2021-2023 daily candles, saved; returns the saved run.
fn walk_forward(dir: &Path) -> (serde_json::Value, PathBuf) {
    let d = |rel: &str| locate::testdata(&format!("data/{rel}")).to_string_lossy().to_string();
    let files = [
        d("candles/upbit_KRW-BTC_1d_2021-01-01_2023-01-31.csv"),
        d("candles/binance_usdm_BTCUSDT_perp_1d_2021-01-01_2023-01-31.csv"),
        d("fx/DEXKOUS.csv"),
    ];
    let save = dir.join("wf.json");
    let (out, _, m) = backtest(
        dir,
        &files,
        &[
            "--sweep",
            "strategy.entry_bps=200:500:150",
            "--walk-forward",
            "180d:90d",
            "--save",
            save.to_str().unwrap(),
        ],
    );
    assert!(m["walk_forward_windows"].as_u64().unwrap() >= 4, "{out}");
    (serde_json::from_slice(&std::fs::read(&save).unwrap()).unwrap(), save)
}

#[test]
fn walk_forward_pair_ids_are_unique_across_windows() {
    let dir = Tmp::new("wf-ids");
    let (saved, _) = walk_forward(&dir.0);
    let windows = saved["walk_forward"].as_array().unwrap();
    let traded = windows.iter().filter(|w| w["result"]["pairs"].as_u64().unwrap() > 0).count();
    assert!(traded >= 2, "the check needs pairs in two windows or more: {traded}");
    let ids: Vec<u64> = saved["result"]["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pair"].as_u64().unwrap())
        .collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "pair ids repeat: {ids:?}");
}

#[test]
fn walk_forward_premium_chart_has_a_line_over_the_test_windows() {
    let dir = Tmp::new("wf-chart");
    let (saved, save) = walk_forward(&dir.0);
    let windows = saved["walk_forward"].as_array().unwrap();
    let test_from = windows[0]["test"][0].as_i64().unwrap();
    let test_to = windows.last().unwrap()["test"][1].as_i64().unwrap();
    let premium = saved["result"]["series"]["premium"].as_array().unwrap();
    let ts: Vec<i64> = premium.iter().map(|p| p["t"].as_i64().unwrap()).collect();
    assert!(ts.len() > 100, "premium samples of the test windows: {}", ts.len());
    let (lo, hi) = (*ts.iter().min().unwrap(), *ts.iter().max().unwrap());
    let day = 86_400_000;
    assert!(
        lo >= test_from && lo <= test_from + 2 * day,
        "first sample {lo} vs test start {test_from}"
    );
    assert!(hi <= test_to && hi >= test_to - 2 * day, "last sample {hi} vs test end {test_to}");
    let html_path = dir.0.join("r.html");
    let out = Command::new(env!("CARGO_BIN_EXE_kimp"))
        .args(["report", "--input", save.to_str().unwrap(), "--out", html_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&html_path).unwrap();
    let start = html.find("BTC: premium (bps)").unwrap();
    let svg = &html[start..start + html[start..].find("</svg>").unwrap()];
    let longest = svg
        .split("<path d=\"")
        .skip(1)
        .map(|p| p.split('"').next().unwrap().matches(" L").count())
        .max()
        .unwrap_or(0);
    assert!(longest > 100, "no premium line in the chart (longest path {longest} segments)");
    // The x-axis runs over the data: first and last labels are the first and last days.
    let x_labels: Vec<&str> = svg
        .split("<text ")
        .filter(|p| p.contains("text-anchor=\"middle\""))
        .map(|p| p.split('>').nth(1).unwrap().split('<').next().unwrap())
        .collect();
    use kimp::research::timefmt::fmt_date;
    assert_eq!(x_labels.first().copied(), Some(fmt_date(lo).as_str()), "{x_labels:?}");
    assert_eq!(x_labels.last().copied(), Some(fmt_date(hi).as_str()), "{x_labels:?}");
}
