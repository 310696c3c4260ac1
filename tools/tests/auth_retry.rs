//! Wrong API keys and refusing venues through the real binary (issue #14, item 2): `kimp run`
//! against the venue simulator with a wrong Binance secret, a wrong Binance API key, a
//! wrong Upbit secret or a wrong Upbit access key must stop within seconds with one line
//! naming the venue and the variable to fix — never the secret — after a bounded number of
//! requests (the simulator answers with the venues' own codes: `-1022`, `-2015`,
//! `jwt_verification`, `invalid_access_key`). A start-up balance query answered 429 every
//! time must be asked again on the back-off, not in a storm.

mod kimp_run;

use std::time::{Duration, Instant};

use kimp::sim::SimHandle;
use kimp_run::Run;

fn sim(faults: &[&str]) -> SimHandle {
    kimp_run::sim(11, |sc| sc.faults = kimp_run::faults(faults))
}

/// A wrong `var` = `value` ends `kimp run` fast, with one line naming `venue` and `var`.
fn wrong_key(name: &str, var: &str, value: &str, venue: &str) {
    let sim = sim(&[]);
    let d = tempfile::tempdir().unwrap();
    let cfg = kimp_run::demo_config(&sim, d.path(), |t| t);
    let before = sim.stats().rest_requests;
    let t0 = Instant::now();
    let mut run = Run::start(kimp_run::command(&cfg).env(var, value), &d.path().join("run.log"));
    let status = run.wait_exit(15);
    let took = t0.elapsed();
    let requests = sim.stats().rest_requests - before;
    run.kill();
    let text = run.text();
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
    let d = tempfile::tempdir().unwrap();
    let cfg = kimp_run::demo_config(&sim, d.path(), |t| t);
    let mut run = Run::spawn(&cfg, &d.path().join("run.log"));
    // Wait for the first refusal, then count over a 5 s window.
    let end = Instant::now() + Duration::from_secs(20);
    while sim.stats().rest_429 == 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let first = sim.stats().rest_429;
    std::thread::sleep(Duration::from_secs(5));
    let refused = sim.stats().rest_429 - first;
    let alive = run.alive();
    run.kill();
    let text = run.text();
    let lines = text.lines().filter(|l| l.contains("balance request failed")).count();
    println!("FIGURE retry balance-429: {refused} refused requests and {lines} log lines in 5 s");
    assert!(first > 0, "the simulator never answered 429:\n{text}");
    assert!(alive, "a rate limit is not fatal:\n{text}");
    // 1 s Retry-After floor, growing back-off: at most 6 in 5 s (a storm was hundreds).
    assert!((1..=6).contains(&refused), "{refused} requests answered 429 in 5 s:\n{text}");
    assert!(lines <= 8, "{lines} failure lines:\n{text}");
    drop(sim);
}
