//! Parity: the same synthetic market, traded by the runtime against the simulator (paper)
//! and replayed from a capture recorded at the same time by `kimp backtest`, gives the same
//! pairs and a net PnL within 1 %.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kimp::research::record::{RecordArgs, record};
use kimp::runtime::config::Config;
use kimp::runtime::demo::{demo_sim, point_at, sim_keys};
use kimp::runtime::run::{self, BuildOptions};
use kimp::sim::Simulator;
use kimp::sim::config::CoinSpec;
use kimp_core::units::SCALE;

#[test]
fn paper_run_and_backtest_agree() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut sc = demo_sim(21, 1.0);
    sc.coins = vec![CoinSpec::btc()];
    let sim = Simulator::start(sc).expect("simulator");
    sim.with_world(|w| w.mkt.coins[0].premium = 0.02);
    let dir = std::env::temp_dir().join(format!("kimp-parity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let text = include_str!("../../config/demo.toml");
    let mut cfg = Config::parse(text, std::path::Path::new("demo.toml")).unwrap();
    point_at(&mut cfg, &sim, &dir);
    cfg.runtime.busy_poll = false;
    // The same file for the recorder and the backtest (venue URLs point at the simulator).
    let cfg_path = dir.join("parity.toml");
    let u = &sim.urls;
    let file = text
        .replace("ws://127.0.0.1:18001/websocket/v1", &u.upbit_ws)
        .replace("http://127.0.0.1:18001", &u.upbit_rest)
        .replace("ws://127.0.0.1:18003", &u.binance_ws)
        .replace("http://127.0.0.1:18003", &u.binance_rest);
    std::fs::write(&cfg_path, file).unwrap();

    let rec_args = RecordArgs {
        config: cfg_path.clone(),
        out: dir.join("cap"),
        prefix: "p".into(),
        duration: Some(Duration::from_secs(13)),
        max_frames: 1_000_000,
        rotate_mib: 256,
        rotate: Duration::from_secs(3_600),
        connect_timeout: Duration::from_secs(10),
        depth_speed: "@100ms".into(),
    };
    let recorder = std::thread::spawn(move || record(&rec_args).expect("record"));
    let rt = run::build(&cfg, &sim_keys(), &BuildOptions::default()).expect("runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let loop_stop = stop.clone();
    let mut tl = rt.tl;
    let trading = std::thread::spawn(move || {
        tl.run(&loop_stop, Duration::from_secs(3)).expect("loop");
        tl
    });
    // A scripted premium path: below, above the entry threshold, converged.
    for (p, secs) in [(0.02, 3), (0.036, 4), (0.015, 4)] {
        sim.with_world(|w| w.mkt.coins[0].premium = p);
        std::thread::sleep(Duration::from_secs(secs));
    }
    stop.store(true, Ordering::Relaxed);
    let tl = trading.join().unwrap();
    let paper_pairs = tl.core.engine.stats().pairs_closed;
    let paper_pnl = tl.core.engine.realized_krw() as f64 / SCALE as f64;
    drop(tl);
    let rec = recorder.join().unwrap();
    sim.shutdown();
    assert!(paper_pairs >= 1, "the paper run closed no pair");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kimp"))
        .args(["backtest", "--config", cfg_path.to_str().unwrap(), "--json", "--input"])
        .args(&rec.files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let m: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let bt_pairs = m["pairs"].as_u64().unwrap();
    let bt_pnl = m["net_pnl_krw"].as_f64().unwrap();
    eprintln!(
        "paper: {paper_pairs} pairs, {paper_pnl:.0} KRW; backtest: {bt_pairs} pairs, {bt_pnl:.0} KRW"
    );
    assert_eq!(bt_pairs, paper_pairs, "pairs differ");
    let diff = (bt_pnl - paper_pnl).abs() / paper_pnl.abs().max(1.0);
    assert!(
        diff <= 0.01,
        "net PnL differs by {:.2} %: paper {paper_pnl:.0}, backtest {bt_pnl:.0}",
        diff * 100.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}
