//! What `kimp run` says while it runs, end to end against the venue simulator: a status
//! line every `status_interval_s` (state, premium per coin, open pairs, PnL today, feed
//! ages), `feed recovered` after a frozen feed's stale alert, a line for each connection
//! that goes down and reconnects, and a Ctrl-C that is an INFO line and exit 0, not
//! `ERROR ... HALTED (shutdown)`.

mod kimp_run;

use kimp_run::Run;

/// Seconds of the day of a log line's RFC 3339 timestamp (`2026-12-03T09:01:36.123456Z`).
fn secs_of_day(line: &str) -> Option<f64> {
    let t = line.get(11..26)?;
    let h: f64 = t.get(0..2)?.parse().ok()?;
    let m: f64 = t.get(3..5)?.parse().ok()?;
    let s: f64 = t.get(6..)?.parse().ok()?;
    Some(h * 3_600.0 + m * 60.0 + s)
}

#[test]
fn kimp_run_logs_status_lines_feed_recovery_reconnects_and_a_quiet_ctrl_c() {
    // Upbit's books freeze (old timestamps repeated) 10 s in for 3 s (well after the run
    // is trading, even on a loaded machine); every Binance WebSocket is closed 16 s in.
    let faults = [
        "freeze:venue=upbit,after=10000,for=3000",
        "disconnect:venue=binance,p=1,after=16000,for=900",
    ];
    let sim = kimp_run::sim(47, |sc| sc.faults = kimp_run::faults(&faults));
    sim.with_world(|w| w.mkt.coins[0].premium = 0.012);
    let dir = tempfile::tempdir().unwrap();
    let cfg = kimp_run::config(&sim, dir.path(), |t| {
        t.replace("shutdown_ms = 5000", "shutdown_ms = 5000\nstatus_interval_s = 1")
    });
    let mut run = Run::spawn(&cfg, &dir.path().join("run.log"));
    assert!(run.wait_log("reconciled", 30).is_some(), "never reconciled:\n{}", run.text());
    let stale = run.wait_log("Stale book: upbit KRW-BTC", 20);
    assert!(stale.is_some(), "the frozen Upbit book never went stale:\n{}", run.text());
    let back = run.wait_log("feed recovered: upbit KRW-BTC", 15);
    assert!(back.is_some(), "no `feed recovered` after the stale alert:\n{}", run.text());
    let down = run.wait_log("feed down: binance public; reconnecting", 20);
    assert!(down.is_some(), "no line for the closed Binance stream:\n{}", run.text());
    let again = run.wait_log("feed reconnected: binance public", 20);
    assert!(again.is_some(), "no reconnect line:\n{}", run.text());
    std::thread::sleep(std::time::Duration::from_millis(1_200));

    run.signal(libc::SIGINT);
    let st = run.wait_exit(20).expect("kimp run did not stop on SIGINT");
    let log = run.text();
    assert!(st.success(), "exit {st:?}\n{log}");

    for l in log.lines().filter(|l| {
        ["kimp::status", "kimp::feeds", "Stale book", "feed recovered", "Shutting down", "stopped"]
            .iter()
            .any(|k| l.contains(k))
    }) {
        println!("{l}");
    }
    // Status lines: one a second, each with every field.
    let status: Vec<&str> = log.lines().filter(|l| l.contains("kimp::status: status: ")).collect();
    assert!(status.len() >= 10, "{} status lines:\n{log}", status.len());
    for l in &status {
        assert!(l.contains(" INFO "), "{l}");
        for field in [
            "state ",
            "; premium BTC ",
            "; open pairs 0",
            "; PnL today 0 KRW",
            "; feed ages upbit ",
        ] {
            assert!(l.contains(field), "status line without {field:?}: {l}");
        }
    }
    assert!(
        status.iter().any(|l| l.contains("state active; premium BTC ") && l.contains(" bps")),
        "{log}"
    );
    let times: Vec<f64> = status.iter().filter_map(|l| secs_of_day(l)).collect();
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!((0.5..1.6).contains(&gap), "status lines {gap:.3} s apart:\n{log}");
    }
    // Ctrl-C: an INFO line, no error.
    let bye = log.lines().find(|l| l.contains("Shutting down: no new entries"));
    assert!(bye.is_some_and(|l| l.contains(" INFO ")), "no INFO shutdown line:\n{log}");
    assert!(
        !log.lines().any(|l| {
            (l.contains(" ERROR ") || l.contains(" WARN ")) && l.contains("HALTED (shutdown)")
        }),
        "Ctrl-C logged as an error or a warning:\n{log}"
    );
    sim.shutdown();
}
