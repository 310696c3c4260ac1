//! The README's two-terminal flow, in one process: the simulator's default market (what
//! `kimp sim` serves without flags, seed 1) and the runtime with `config/default.toml`
//! as shipped. Pairs must open at the configured threshold and close in profit, which
//! they never did while the default market hovered at 2 % and the config waited for 3 %.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kimp::runtime::bridge::Sidecars;
use kimp::runtime::config::Config;
use kimp::runtime::demo::{point_at, sim_keys};
use kimp::runtime::run::{self, BuildOptions};
use kimp::sim::Simulator;
use kimp::sim::config::SimConfig;
use kimp_core::action::TradingState;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kimp-sim-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn the_default_config_trades_against_the_default_simulator() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // `kimp sim`'s defaults (seed 1, BTC and ETH, the default market), 4x faster so the
    // first minutes of simulated time pass in seconds.
    let sim = Simulator::start(SimConfig { speed: 4.0, ..SimConfig::default() }).expect("sim");
    let dir = tmp("paper");
    let text = include_str!("../../config/default.toml");
    let mut cfg = Config::parse(text, Path::new("config/default.toml")).expect("default.toml");
    point_at(&mut cfg, &sim, &dir);
    cfg.runtime.busy_poll = false; // the test machine's cores are shared
    let rt = run::build(&cfg, &sim_keys(), &BuildOptions::default()).expect("runtime");
    let sidecars = Sidecars::start(
        &cfg,
        &rt.tl.core.markets,
        rt.tl.clock,
        rt.out_rx.clone(),
        rt.journal_tail,
        rt.control_tx.clone(),
    )
    .expect("sidecars");
    let board = sidecars.board.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let loop_stop = stop.clone();
    let mut tl = rt.tl;
    let trading = std::thread::spawn(move || {
        tl.run(&loop_stop, Duration::from_secs(3)).expect("loop");
        tl
    });
    assert!(
        wait_for(20, || board.snapshot().trading == Some(TradingState::Active)),
        "never reconciled"
    );
    let started = Instant::now();
    let closed = wait_for(120, || board.snapshot().pnl.closed >= 1);
    let b = board.snapshot();
    stop.store(true, Ordering::Relaxed);
    let tl = trading.join().expect("loop thread");
    drop(tl);
    sidecars.shutdown();
    assert!(sim.failure().is_none(), "{:?}", sim.failure());
    sim.shutdown();
    let mut ilp = String::new();
    for f in std::fs::read_dir(dir.join("ilp")).expect("store dir") {
        ilp.push_str(&std::fs::read_to_string(f.expect("entry").path()).expect("ilp"));
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(closed, "no pair closed in 120 s: {:?} open {:?}", b.pnl, b.open_pairs);
    assert!(b.pnl.realized.net().0 > 0, "closed without profit: {:?}", b.pnl);
    let entries: Vec<f64> = ilp
        .lines()
        .filter(|l| l.starts_with("pairs,") && l.contains("to_state=closed"))
        .filter_map(|l| l.split("entry_premium_bps=").nth(1)?.split(',').next()?.parse().ok())
        .collect();
    assert!(!entries.is_empty(), "closed pairs in the store: {entries:?}");
    assert!(entries.iter().all(|e| *e >= 250.0), "entered below entry_bps: {entries:?}");
    eprintln!(
        "{} pairs closed within {:.0} s of trading (4x): net {:?}, entries {entries:?}",
        b.pnl.closed,
        started.elapsed().as_secs_f64(),
        b.pnl.realized.net()
    );
}
