//! End to end over loopback: the venue simulator and the real runtime (gateways, loop,
//! journal, store) with a scripted premium path. A pair opens when the executable premium
//! crosses the threshold, both legs fill, it is held while closing would lose, and it
//! closes once net PnL is positive; the store's files hold the orders, fills and pairs,
//! and the simulator's accounts agree with the engine.

mod kimp_run;

use std::time::Duration;

use kimp::runtime::config::Config;
use kimp::runtime::demo::point_at;
use kimp_core::action::TradingState;
use kimp_core::pair::PairState;
use kimp_run::{InProcess, wait_for};

#[test]
fn pair_opens_at_the_threshold_and_closes_only_in_profit() {
    let sim = kimp_run::sim(11, |_| {});
    let set_premium = |p: f64| sim.with_world(|w| w.mkt.coins[0].premium = p);
    set_premium(0.020);

    let dir = tempfile::tempdir().unwrap();
    let mut cfg =
        Config::parse(include_str!("../../config/demo.toml"), std::path::Path::new("demo.toml"))
            .unwrap();
    point_at(&mut cfg, &sim, dir.path());
    cfg.strategy.exit_min_profit_krw = 0; // the operators' rule: close when net PnL > 0
    cfg.runtime.busy_poll = false;
    let run = InProcess::start(&cfg);
    let board = run.board.clone();

    // Reconciled and quoting, at 2 %: no pair.
    assert!(
        wait_for(15.0, || board.snapshot().trading == Some(TradingState::Active)),
        "never reconciled"
    );
    assert!(
        wait_for(10.0, || board.snapshot().kimp.first().is_some_and(|k| k.is_some())),
        "no premium samples"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(board.snapshot().open_pairs.is_empty(), "entered below the threshold");

    // The premium crosses 3 %: a pair opens and both legs fill.
    set_premium(0.036);
    let hedged =
        wait_for(15.0, || board.snapshot().open_pairs.values().any(|p| p.to == PairState::Hedged));
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
    assert!(wait_for(15.0, || board.snapshot().pnl.closed == 1), "pair never closed");
    let b = board.snapshot();
    assert!(b.pnl.realized.net().0 > 0, "closed without profit: {:?}", b.pnl);

    run.stop(|tl| {
        assert_eq!(tl.core.engine.live_orders().count(), 0);
        let wire = tl.orders.stats.wire_orders;
        let intents = tl.core.engine.stats().intents;
        assert!(wire <= 2 * intents, "Knight control: {wire} orders for {intents} intents");
    });

    // The simulator agrees: flat on Binance, Upbit BTC back where it started.
    sim.with_world(|w| {
        let pos = w.binance.accounts[0].positions.get("BTCUSDT").map_or(0, |p| p.qty);
        assert_eq!(pos, 0, "Binance position left open");
        let btc = w.upbit.accounts[0].get("BTC");
        assert_eq!(btc.free + btc.locked, 100_000_000, "Upbit BTC inventory changed");
    });

    // The store's local files hold the orders, fills and pair records.
    let mut ilp = String::new();
    for f in std::fs::read_dir(dir.path().join("ilp")).unwrap() {
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
}

/// Canary keys through a real `kimp run` process that trades: no byte of a secret may
/// appear in its output (logged at TRACE), its journal or its store files (I9).
#[test]
fn canary_keys_never_leave_the_process() {
    use kimp::sim::config::ApiKeyPair;
    const KEY: &str = "CANARYkey7c1e9a44d2";
    const SECRET: &str = "CANARYsecret5b0f8e13aa";
    let sim = kimp_run::sim(12, |sc| sc.accounts = vec![ApiKeyPair::new(KEY, SECRET)]);
    sim.with_world(|w| w.mkt.coins[0].premium = 0.02);
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = kimp_run::demo_config(&sim, dir.path(), |t| t);
    let child = kimp_run::command(&cfg_path)
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
        for f in std::fs::read_dir(dir.path().join(sub)).unwrap() {
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
}
