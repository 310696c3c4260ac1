//! Wrong API keys and refusing venues through the real binary (issue #14, item 2): `kimp run`
//! against the venue simulator with a wrong Binance secret, a wrong Binance API key, a
//! wrong Upbit secret or a wrong Upbit access key must stop within seconds with one line
//! naming the venue and the variable to fix — never the secret — after a bounded number of
//! requests (the simulator answers with the venues' own codes: `-1022`, `-2015`,
//! `jwt_verification`, `invalid_access_key`). A start-up balance query answered 429 every
//! time must be asked again on the back-off, not in a storm.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kimp::runtime::demo::demo_sim;
use kimp::sim::config::CoinSpec;
use kimp::sim::faults::{Faults, Scenario};
use kimp::sim::{SimHandle, Simulator};

/// A fresh directory for one test.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kimp-auth-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sim(faults: &[&str]) -> SimHandle {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut sc = demo_sim(11, 1.0);
    sc.coins = vec![CoinSpec::btc()];
    sc.faults = Faults { list: faults.iter().map(|s| Scenario::parse(s).unwrap()).collect() };
    Simulator::start(sc).expect("simulator")
}

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
        .replace("journal_segment_mib = 64", "journal_segment_mib = 4");
    let p = dir.join("run.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `kimp run` with the simulator's keys, `var` overridden by `value`.
fn spawn(cfg: &Path, var: Option<(&str, &str)>, log: &Path) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kimp"));
    c.args(["run", "--config"]).arg(cfg);
    for (k, v) in [
        ("KIMP_UPBIT_ACCESS_KEY", "kimp-sim-key"),
        ("KIMP_UPBIT_SECRET_KEY", "kimp-sim-secret"),
        ("KIMP_BINANCE_API_KEY", "kimp-sim-key"),
        ("KIMP_BINANCE_SECRET_KEY", "kimp-sim-secret"),
    ] {
        c.env(k, v);
    }
    if let Some((k, v)) = var {
        c.env(k, v);
    }
    c.env_remove("KIMP_FAILPOINT").env_remove("RUST_LOG");
    c.stdout(Stdio::null()).stderr(Stdio::from(std::fs::File::create(log).unwrap()));
    c.spawn().expect("spawn kimp run")
}

/// Waits up to `limit` for the child to exit; kills it (and returns None) otherwise.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A wrong `var` = `value` ends `kimp run` fast, with one line naming `venue` and `var`.
fn wrong_key(name: &str, var: &str, value: &str, venue: &str) {
    let sim = sim(&[]);
    let d = dir(name);
    let cfg = config(&sim, &d);
    let log = d.join("run.log");
    let before = sim.stats().rest_requests;
    let t0 = Instant::now();
    let mut child = spawn(&cfg, Some((var, value)), &log);
    let status = wait_exit(&mut child, Duration::from_secs(15));
    let took = t0.elapsed();
    let requests = sim.stats().rest_requests - before;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("kimp run did not exit within 15 s:\n{text}"));
    println!(
        "FIGURE auth {name}: exit {:?} after {} ms, {requests} REST requests",
        status.code(),
        took.as_millis()
    );
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(took < Duration::from_secs(5), "took {took:?}:\n{text}");
    let naming: Vec<&str> = text.lines().filter(|l| l.contains(var)).collect();
    assert_eq!(naming.len(), 1, "expected one line naming {var}:\n{text}");
    println!("  {}", naming[0]);
    assert!(naming[0].starts_with("kimp: ") && naming[0].contains(venue), "{}", naming[0]);
    assert!(!text.contains(value), "the wrong key was echoed:\n{text}");
    assert!(!text.contains("kimp-sim-secret"), "a secret was echoed:\n{text}");
    // Start-up requests (exchange info, server time, balances, snapshot, listen key),
    // not a storm.
    assert!(requests <= 20, "{requests} REST requests:\n{text}");
    drop(sim);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn wrong_binance_secret_is_fatal_at_start_up() {
    wrong_key("binance-secret", "KIMP_BINANCE_SECRET_KEY", "wrong-secret-4f1d", "Binance");
}

#[test]
fn wrong_binance_api_key_is_fatal_at_start_up() {
    wrong_key("binance-key", "KIMP_BINANCE_API_KEY", "wrong-key-77ab", "Binance");
}

#[test]
fn wrong_upbit_secret_is_fatal_at_start_up() {
    wrong_key("upbit-secret", "KIMP_UPBIT_SECRET_KEY", "wrong-secret-a9c2", "Upbit");
}

#[test]
fn wrong_upbit_access_key_is_fatal_at_start_up() {
    wrong_key("upbit-access", "KIMP_UPBIT_ACCESS_KEY", "wrong-access-5e03", "Upbit");
}

/// Every Upbit request answered 429 (with `Remaining-Req: sec=0`): the start-up balance
/// query is asked again on the back-off, at most a handful of times in 5 s, and the log
/// says so a handful of times, not hundreds.
#[test]
fn balance_query_answered_429_backs_off() {
    let sim = sim(&["rate_limit:venue=upbit,p=1"]);
    let d = dir("balance-429");
    let cfg = config(&sim, &d);
    let log = d.join("run.log");
    let mut child = spawn(&cfg, None, &log);
    // Wait for the first refusal, then count over a 5 s window.
    let end = Instant::now() + Duration::from_secs(20);
    while sim.stats().rest_429 == 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let first = sim.stats().rest_429;
    std::thread::sleep(Duration::from_secs(5));
    let refused = sim.stats().rest_429 - first;
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines = text.lines().filter(|l| l.contains("balance request failed")).count();
    println!("FIGURE retry balance-429: {refused} refused requests and {lines} log lines in 5 s");
    assert!(first > 0, "the simulator never answered 429:\n{text}");
    assert!(alive, "a rate limit is not fatal:\n{text}");
    // 1 s Retry-After floor, growing back-off: at most 6 in 5 s (a storm was hundreds).
    assert!((1..=6).contains(&refused), "{refused} requests answered 429 in 5 s:\n{text}");
    assert!(lines <= 8, "{lines} failure lines:\n{text}");
    drop(sim);
    let _ = std::fs::remove_dir_all(&d);
}
