//! `kimp demo` as an operator sees it (issue #14, item 12): every line of the live view
//! fits a 100-column terminal, and the summary and `--json` carry the pairs still open
//! with their unrealised PnL.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kimp::runtime::demo::VIEW_COLS;

#[test]
fn live_view_fits_100_columns_and_summary_carries_open_pairs() {
    let d = std::env::temp_dir().join(format!("kimp-demo-view-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kimp"))
        .args(["demo", "--duration", "6s", "--json"])
        .current_dir(&d)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kimp demo");
    let end = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&d);
            panic!("kimp demo --duration 6s still running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&d);
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{:?}\n{stderr}", out.status);
    // The live view (stderr): several frames, no line wider than the terminal.
    let frames = stderr.lines().filter(|l| l.starts_with('[')).count();
    assert!(frames >= 4, "{frames} frames:\n{stderr}");
    let widest = stderr.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    println!("FIGURE demo view: {frames} frames, widest line {widest} columns");
    for l in stderr.lines() {
        assert!(l.chars().count() <= VIEW_COLS, "{} columns: {l}", l.chars().count());
    }
    // The summary: open pairs and their unrealised PnL, in text and in JSON.
    assert!(stdout.contains("open pairs") && stdout.contains("unrealised PnL"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap()).expect("last line is JSON");
    let open = json["open"].as_array().expect("open: [...]");
    assert_eq!(json["open_pairs"].as_u64(), Some(open.len() as u64), "{json}");
    let total = json["unrealized_pnl_krw"].as_i64().expect("unrealized_pnl_krw");
    let sum: i64 = open.iter().map(|p| p["unrealized_pnl_krw"].as_i64().unwrap()).sum();
    assert!((total - sum).abs() <= open.len() as i64, "{total} vs {sum}: {json}");
    for p in open {
        assert!(p["pair"].is_u64() && p["coin"].is_string() && p["state"].is_string(), "{p}");
    }
    // In 6 s of the demo's 20 s premium cycle a pair opens near 3 % and is still open.
    println!("FIGURE demo summary: {} open pairs, unrealised {total} KRW", open.len());
    assert!(!open.is_empty(), "no pair open after 6 s: {json}");
}
