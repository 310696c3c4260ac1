//! Crash tests (RELIABILITY.md R8): a real `kimp run` process is SIGKILLed at a failpoint
//! (after an entry intent is journaled; after one leg filled), restarted on the same
//! journal, and must: never send a client id twice, resolve the orphan (hedge or unwind),
//! and end with positions that match the simulator's accounts.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kimp::runtime::demo::demo_sim;
use kimp::sim::config::CoinSpec;
use kimp::sim::{SimHandle, Simulator};

fn config(sim: &SimHandle, dir: &Path) -> PathBuf {
    let u = &sim.urls;
    let text = include_str!("../../config/demo.toml")
        .replace("ws://127.0.0.1:18001/websocket/v1", &u.upbit_ws)
        .replace("http://127.0.0.1:18001", &u.upbit_rest)
        .replace("ws://127.0.0.1:18003", &u.binance_ws)
        .replace("http://127.0.0.1:18003", &u.binance_rest)
        .replace("data/demo/journal", &dir.join("journal").display().to_string())
        .replace("data/demo/ilp", &dir.join("ilp").display().to_string())
        .replace("busy_poll = true", "busy_poll = false")
        .replace("exit_min_profit_krw = 20000", "exit_min_profit_krw = 0");
    let p = dir.join("crash.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn spawn(cfg: &Path, failpoint: Option<&str>, log: &Path) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kimp"));
    c.args(["run", "--config"]).arg(cfg);
    c.env("KIMP_UPBIT_ACCESS_KEY", "kimp-sim-key")
        .env("KIMP_UPBIT_SECRET_KEY", "kimp-sim-secret")
        .env("KIMP_BINANCE_API_KEY", "kimp-sim-key")
        .env("KIMP_BINANCE_SECRET_KEY", "kimp-sim-secret")
        .env_remove("KIMP_FAILPOINT");
    if let Some(fp) = failpoint {
        c.env("KIMP_FAILPOINT", fp);
    }
    c.stdout(Stdio::null()).stderr(Stdio::from(std::fs::File::create(log).unwrap()));
    c.spawn().expect("spawn kimp run")
}

/// Waits for the child to exit by itself (the failpoint), up to `secs`.
fn wait_exit(child: &mut Child, secs: u64) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn wait_log(log: &Path, needle: &str, secs: u64) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if std::fs::read_to_string(log).is_ok_and(|s| s.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Every client id the venues saw, per venue.
fn venue_ids(sim: &SimHandle) -> (Vec<String>, Vec<String>) {
    sim.with_world(|w| {
        let u = w.upbit.orders.iter().filter_map(|o| o.identifier.clone()).collect();
        let b = w.binance.orders.iter().map(|o| o.client_id.clone()).collect();
        (u, b)
    })
}

fn run_crash(failpoint: &str, seed: u64) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut sc = demo_sim(seed, 1.0);
    sc.coins = vec![CoinSpec::btc()];
    let sim = Simulator::start(sc).expect("simulator");
    let premium = |p: f64| sim.with_world(|w| w.mkt.coins[0].premium = p);
    premium(0.02);
    let dir = std::env::temp_dir().join(format!("kimp-crash-{failpoint}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = config(&sim, &dir);

    // Run 1: dies at the failpoint once the premium crosses the threshold.
    let log1 = dir.join("run1.log");
    let mut c1 = spawn(&cfg, Some(failpoint), &log1);
    assert!(wait_log(&log1, "reconciled", 20), "run 1 never reconciled");
    premium(0.036);
    let status = wait_exit(&mut c1, 20).expect("the failpoint never fired");
    assert!(!status.success(), "run 1 should have been killed");

    // Run 2 on the same journal: reconcile, repair, trade on, converge, stop.
    let log2 = dir.join("run2.log");
    let mut c2 = spawn(&cfg, None, &log2);
    assert!(wait_log(&log2, "journal replayed epoch=2", 20), "run 2 did not replay the journal");
    assert!(wait_log(&log2, "reconciled", 30), "run 2 never reconciled");
    std::thread::sleep(Duration::from_secs(3));
    premium(0.012);
    std::thread::sleep(Duration::from_secs(5));
    // SAFETY: kill(2) with the child's pid.
    unsafe { libc::kill(c2.id() as i32, libc::SIGINT) };
    let s2 = wait_exit(&mut c2, 20).expect("run 2 did not stop");
    assert!(
        s2.success(),
        "run 2 exit: {s2:?}\n{}",
        std::fs::read_to_string(&log2).unwrap_or_default()
    );

    let log = std::fs::read_to_string(&log2).unwrap_or_default();
    if let Some(l) = log.lines().find(|l| l.contains("reconciled")) {
        eprintln!("{failpoint}: run 2 {}", l.split("INFO").last().unwrap_or(l).trim());
    }
    // No client id reached a venue twice.
    let (u, b) = venue_ids(&sim);
    for ids in [&u, &b] {
        let set: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(set.len(), ids.len(), "a client id was sent twice: {ids:?}");
    }
    // Flat at the end on both venues: the orphan was hedged or unwound, then closed.
    sim.with_world(|w| {
        let pos = w.binance.accounts[0].positions.get("BTCUSDT").map_or(0, |p| p.qty);
        let btc = w.upbit.accounts[0].get("BTC");
        let upbit_delta = btc.free + btc.locked - 100_000_000;
        // What may remain is dust no venue accepts: under Upbit's 5,000 KRW minimum
        // (0.00005 BTC at these prices); the pair record keeps it.
        assert!(
            (pos + upbit_delta).abs() <= 5_000,
            "unhedged at the end: perp {pos}, Upbit delta {upbit_delta}"
        );
        assert_eq!(pos, 0, "pair not closed: perp {pos}");
    });
    sim.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn killed_after_the_intent_is_journaled() {
    run_crash("after_intent", 31);
}

#[test]
fn killed_after_one_leg_filled() {
    run_crash("after_fill", 32);
}
