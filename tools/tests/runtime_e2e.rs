//! End to end over loopback: the venue simulator and the real runtime (gateways, loop,
//! journal, store) with a scripted premium path. A pair opens when the executable premium
//! crosses the threshold, both legs fill, it is held while closing would lose, and it
//! closes once net PnL is positive; the store's files hold the orders, fills and pairs,
//! and the simulator's accounts agree with the engine.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kimp::runtime::bridge::Sidecars;
use kimp::runtime::config::Config;
use kimp::runtime::demo::{demo_sim, point_at, sim_keys};
use kimp::runtime::run::{self, BuildOptions};
use kimp::sim::Simulator;
use kimp::sim::config::CoinSpec;
use kimp_core::action::TradingState;
use kimp_core::pair::PairState;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kimp-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Polls `f` until it is true or `secs` pass.
fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn pair_opens_at_the_threshold_and_closes_only_in_profit() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut sc = demo_sim(11, 1.0);
    sc.coins = vec![CoinSpec::btc()];
    let sim = Simulator::start(sc).expect("simulator");
    let set_premium = |p: f64| sim.with_world(|w| w.mkt.coins[0].premium = p);
    set_premium(0.020);

    let dir = tmp("pair");
    let mut cfg =
        Config::parse(include_str!("../../config/demo.toml"), std::path::Path::new("demo.toml"))
            .unwrap();
    point_at(&mut cfg, &sim, &dir);
    cfg.strategy.exit_min_profit_krw = 0; // the operators' rule: close when net PnL > 0
    cfg.runtime.busy_poll = false;
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

    // Reconciled and quoting, at 2 %: no pair.
    assert!(
        wait_for(15, || board.snapshot().trading == Some(TradingState::Active)),
        "never reconciled"
    );
    assert!(
        wait_for(10, || board.snapshot().kimp.first().is_some_and(|k| k.is_some())),
        "no premium samples"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(board.snapshot().open_pairs.is_empty(), "entered below the threshold");

    // The premium crosses 3 %: a pair opens and both legs fill.
    set_premium(0.036);
    let hedged =
        wait_for(15, || board.snapshot().open_pairs.values().any(|p| p.to == PairState::Hedged));
    assert!(hedged, "no hedged pair: {:?}", board.snapshot().open_pairs);
    let entry = *board.snapshot().open_pairs.values().next().unwrap();
    assert!(entry.entry_premium_bps >= 300.0, "{entry:?}");

    // Still at the entry level: closing would lose the spreads and fees, so it is held.
    set_premium(0.0365);
    std::thread::sleep(Duration::from_secs(2));
    let b = board.snapshot();
    assert_eq!(b.pnl.closed, 0, "closed at a loss: {:?} {:?} entry {entry:?}", b.pnl, b.trading);
    assert_eq!(b.open_pairs.len(), 1);

    // Converged: closed with net PnL > 0.
    set_premium(0.018);
    assert!(wait_for(15, || board.snapshot().pnl.closed == 1), "pair never closed");
    let b = board.snapshot();
    assert!(b.pnl.realized.net().0 > 0, "closed without profit: {:?}", b.pnl);

    stop.store(true, Ordering::Relaxed);
    let tl = trading.join().expect("loop thread");
    assert_eq!(tl.core.engine.live_orders().count(), 0);
    let wire = tl.orders.stats.wire_orders;
    let intents = tl.core.engine.stats().intents;
    assert!(wire <= 2 * intents, "Knight control: {wire} orders for {intents} intents");
    drop(tl);
    sidecars.shutdown();

    // The simulator agrees: flat on Binance, Upbit BTC back where it started.
    sim.with_world(|w| {
        let pos = w.binance.accounts[0].positions.get("BTCUSDT").map_or(0, |p| p.qty);
        assert_eq!(pos, 0, "Binance position left open");
        let btc = w.upbit.accounts[0].get("BTC");
        assert_eq!(btc.free + btc.locked, 100_000_000, "Upbit BTC inventory changed");
    });

    // The store's local files hold the orders, fills and pair records.
    let mut ilp = String::new();
    for f in std::fs::read_dir(dir.join("ilp")).unwrap() {
        ilp.push_str(&std::fs::read_to_string(f.unwrap().path()).unwrap());
    }
    for needle in [
        "orders,event=sent",
        "fills,venue=upbit",
        "fills,venue=binance",
        "to_state=hedged",
        "to_state=closed",
    ] {
        assert!(ilp.contains(needle), "store files lack {needle}");
    }
    sim.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Canary keys through a real `kimp run` process that trades: no byte of a secret may
/// appear in its output (logged at TRACE), its journal or its store files (I9).
#[test]
fn canary_keys_never_leave_the_process() {
    use kimp::sim::config::ApiKeyPair;
    const KEY: &str = "CANARYkey7c1e9a44d2";
    const SECRET: &str = "CANARYsecret5b0f8e13aa";
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut sc = demo_sim(12, 1.0);
    sc.coins = vec![CoinSpec::btc()];
    sc.accounts = vec![ApiKeyPair::new(KEY, SECRET)];
    let sim = Simulator::start(sc).expect("simulator");
    sim.with_world(|w| w.mkt.coins[0].premium = 0.02);
    let dir = tmp("canary");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg_text = include_str!("../../config/demo.toml")
        .replace("ws://127.0.0.1:18001/websocket/v1", &sim.urls.upbit_ws)
        .replace("http://127.0.0.1:18001", &sim.urls.upbit_rest)
        .replace("ws://127.0.0.1:18003", &sim.urls.binance_ws)
        .replace("http://127.0.0.1:18003", &sim.urls.binance_rest)
        .replace("data/demo/journal", &dir.join("journal").display().to_string())
        .replace("data/demo/ilp", &dir.join("ilp").display().to_string())
        .replace("busy_poll = true", "busy_poll = false");
    let cfg_path = dir.join("canary.toml");
    std::fs::write(&cfg_path, cfg_text).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_kimp"))
        .args(["run", "--config"])
        .arg(&cfg_path)
        .env("RUST_LOG", "trace")
        .env("KIMP_UPBIT_ACCESS_KEY", KEY)
        .env("KIMP_UPBIT_SECRET_KEY", SECRET)
        .env("KIMP_BINANCE_API_KEY", KEY)
        .env("KIMP_BINANCE_SECRET_KEY", SECRET)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kimp run");
    // Trade: cross the threshold, then converge.
    std::thread::sleep(Duration::from_secs(3));
    sim.with_world(|w| w.mkt.coins[0].premium = 0.036);
    std::thread::sleep(Duration::from_secs(3));
    sim.with_world(|w| w.mkt.coins[0].premium = 0.015);
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: plain kill(2) on the child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().expect("kimp run exits");
    assert!(
        out.status.success(),
        "kimp run failed: {}",
        String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
    );
    let mut haystack = out.stdout.clone();
    haystack.extend_from_slice(&out.stderr);
    let mut files = 0;
    for sub in ["journal", "ilp"] {
        for f in std::fs::read_dir(dir.join(sub)).unwrap() {
            haystack.extend(std::fs::read(f.unwrap().path()).unwrap());
            files += 1;
        }
    }
    assert!(files >= 2, "journal and store files written");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("TRACE") || log.contains("trace"), "logging was not at trace level");
    assert!(sim.stats().rest_requests > 5, "the keys were used");
    let journal_orders =
        haystack.windows(b"orders,event=sent".len()).any(|w| w == b"orders,event=sent");
    let tail: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("INFO") || l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(
        journal_orders,
        "no order was placed: the test would prove nothing; log:\n{}",
        tail.join("\n")
    );
    for canary in [KEY, SECRET, "CANARY"] {
        assert!(
            !haystack.windows(canary.len()).any(|w| w == canary.as_bytes()),
            "{canary} leaked into the output or files"
        );
    }
    sim.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
