//! `kimp ctl` end to end: the real `kimp run` against the venue simulator on loopback,
//! controlled only through its local socket — status, stop (entries blocked), resume with
//! its confirmation (also out of a risk halt latched in the journal by an earlier run),
//! flatten with its confirmation; the socket's mode, a stale socket file from a killed
//! run, and the help texts.

mod kimp_run;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use kimp::runtime::journal::Journal;
use kimp::runtime::record_codec::Entry;
use kimp::sim::SimHandle;
use kimp_core::action::{HaltReason, Record, TradingState};
use kimp_core::units::Nanos;
use kimp_run::{Run, ctl, kimp, wait_for};

/// Upbit BTC the simulator's default account starts with (1e-8).
const START_BTC: i64 = 100_000_000;
/// Dust no venue accepts: under Upbit's 5,000 KRW minimum.
const DUST: i64 = 5_000;

fn sim(seed: u64, premium: f64) -> SimHandle {
    let sim = kimp_run::sim(seed, |_| {});
    set_premium(&sim, premium);
    sim
}

fn set_premium(sim: &SimHandle, p: f64) {
    sim.with_world(|w| w.mkt.coins[0].premium = p);
}

fn venue_orders(sim: &SimHandle) -> usize {
    sim.with_world(|w| w.upbit.orders.len() + w.binance.orders.len())
}

/// Perp position and Upbit BTC held (1e-8).
fn positions(sim: &SimHandle) -> (i64, i64) {
    sim.with_world(|w| {
        let pos = w.binance.accounts[0].positions.get("BTCUSDT").map_or(0, |p| p.qty);
        let btc = w.upbit.accounts[0].get("BTC");
        (pos, btc.free + btc.locked)
    })
}

/// `kimp ctl status` until its output contains `want` (up to 5 s); the last output.
fn status_until(sock: &Path, want: &str) -> (bool, String) {
    let mut last = String::new();
    let ok = wait_for(5.0, || {
        let (ok, out, err) = ctl(sock, &["status"]);
        last = format!("{out}{err}");
        ok && out.contains(want)
    });
    (ok, last)
}

/// Asserts `kimp ctl ARGS` succeeds and prints something containing `want`.
fn ok(sock: &Path, args: &[&str], want: &str) -> String {
    let (ok, out, err) = ctl(sock, args);
    assert!(ok && out.contains(want), "kimp ctl {args:?}: ok={ok} out={out:?} err={err:?}");
    out
}

/// As root: `kimp ctl` run as `nobody` is refused (the directories on the way are opened
/// to everyone for this check, so only the socket's own mode stands in the way).
fn refused_to_another_user(dir: &Path, sock: &Path) {
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("not root: the other-user check is skipped");
        return;
    }
    for d in [dir, sock.parent().unwrap()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_kimp"))
        .args(["ctl", "--socket"])
        .arg(sock)
        .arg("stop")
        .uid(65_534)
        .gid(65_534)
        .output()
        .expect("run kimp ctl as nobody");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "another user was served");
    assert!(err.contains("permission denied (the socket belongs to another user)"), "{err}");
}

#[test]
fn ctl_reports_stops_resumes_and_flattens_a_running_kimp_run() {
    let sim = sim(41, 0.012);
    let dir = tempfile::tempdir().unwrap();
    let cfg = kimp_run::config(&sim, dir.path(), |t| t);
    // The default socket: kimp.sock next to the journal.
    let sock = dir.path().join("journal").join("kimp.sock");
    let (up, _, err) = ctl(&sock, &["status"]);
    assert!(!up);
    assert!(
        err.contains(&format!("no kimp run is listening on {}", sock.display())),
        "before the run: {err}"
    );

    let mut run = Run::spawn(&cfg, &dir.path().join("run.log"));
    assert!(run.wait_log("reconciled", 30).is_some(), "never reconciled:\n{}", run.text());
    let meta = std::fs::symlink_metadata(&sock).expect("socket file");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "socket mode");
    refused_to_another_user(dir.path(), &sock);

    // Found through --config too.
    let c = cfg.display().to_string();
    let o = kimp(&["ctl", "--config", &c, "status"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("Trading: active"), "{out}");

    // stop: halted by the operator, and no entry even with the premium above entry_bps.
    let t0 = std::time::Instant::now();
    ok(&sock, &["stop"], "STOP sent");
    let stop_ms = t0.elapsed().as_secs_f64() * 1e3;
    let (halted, last) = status_until(&sock, "Trading: HALTED (operator)");
    assert!(halted, "{last}");
    println!(
        "FIGURE ctl: `kimp ctl stop` process {stop_ms:.1} ms; stop -> status shows HALTED {:.1} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    set_premium(&sim, 0.036);
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    assert_eq!(venue_orders(&sim), 0, "an entry went out while stopped\n{}", run.text());

    // resume asks first; only `resume confirm` re-arms.
    let ask = ok(&sock, &["resume"], "Re-arm trading?");
    assert!(ask.contains("kimp ctl resume confirm within 60 s"), "{ask}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(status_until(&sock, "HALTED (operator)").0, "asking alone must not re-arm");
    ok(&sock, &["resume", "confirm"], "RESUME sent");
    let (active, last) = status_until(&sock, "Trading: active");
    assert!(active, "{last}");
    assert!(
        wait_for(15.0, || positions(&sim).0 != 0),
        "no pair opened after resume\n{}",
        run.text()
    );

    // flatten BTC asks; a confirmation of another target does nothing; the same one does.
    let ask = ok(&sock, &["flatten", "BTC"], "Close BTC pairs at market and halt?");
    assert!(ask.contains("kimp ctl flatten BTC confirm"), "{ask}");
    ok(&sock, &["flatten", "confirm"], "Nothing to confirm");
    assert!(positions(&sim).0 != 0, "flattened on the wrong confirmation");
    ok(&sock, &["flatten", "BTC"], "Close BTC pairs");
    ok(&sock, &["flatten", "BTC", "confirm"], "FLATTEN sent: closing BTC pairs, then halting.");
    let (halted, last) = status_until(&sock, "Trading: HALTED (flatten)");
    assert!(halted, "{last}");
    assert!(
        wait_for(15.0, || {
            let (pos, btc) = positions(&sim);
            pos == 0 && (btc - START_BTC).abs() <= DUST
        }),
        "not flat after flatten: {:?}\n{}",
        positions(&sim),
        run.text()
    );

    run.signal(libc::SIGINT);
    let st = run.wait_exit(20).expect("kimp run did not stop");
    assert!(st.success(), "{st:?}\n{}", run.text());
    assert!(!sock.exists(), "the socket file outlived its run");
    sim.shutdown();
}

#[test]
fn ctl_resume_clears_a_risk_halt_latched_by_an_earlier_run() {
    let sim = sim(43, 0.012);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ctl.sock");
    let s = sock.display().to_string();
    let cfg = kimp_run::config(&sim, dir.path(), |t| {
        format!("{t}\n[control]\nsocket = \"{s}\"\nconfirm_s = 30\n")
    });
    // An earlier run halted on a risk limit: the halt is latched in its journal.
    {
        let (mut j, _) = Journal::open(&dir.path().join("journal"), 4 << 20).unwrap();
        let halted = TradingState::halted(HaltReason::OrphanHard);
        j.append(Nanos(1), &Entry::Record(Record::Trading { state: halted })).unwrap();
    }
    let mut run = Run::spawn(&cfg, &dir.path().join("run1.log"));
    let rec = run.wait_log("reconciled", 30).unwrap_or_else(|| panic!("{}", run.text()));
    assert!(rec.contains("Halted({OrphanHard})"), "{rec}");
    assert!(status_until(&sock, "Trading: HALTED (orphan_hard)").0);
    let ask = ok(&sock, &["resume"], "Re-arm trading?");
    assert!(ask.contains("within 30 s"), "{ask}");
    ok(&sock, &["resume", "confirm"], "RESUME sent");
    let (active, last) = status_until(&sock, "Trading: active");
    assert!(active, "{last}");

    // Killed: its socket file stays behind, and nobody answers on it.
    run.signal(libc::SIGKILL);
    run.wait_exit(10).expect("killed");
    assert!(sock.exists());
    let (up, _, err) = ctl(&sock, &["status"]);
    assert!(!up);
    assert!(err.contains(&format!("no kimp run is listening on {s}")), "{err}");
    // The next run replaces the stale file and starts Active: the resume was journaled.
    let mut run = Run::spawn(&cfg, &dir.path().join("run2.log"));
    let rec = run.wait_log("reconciled", 30).unwrap_or_else(|| panic!("{}", run.text()));
    assert!(rec.contains("state=Active"), "{rec}");
    assert!(status_until(&sock, "Trading: active").0);
    run.signal(libc::SIGINT);
    let st = run.wait_exit(20).expect("kimp run did not stop");
    assert!(st.success(), "{st:?}\n{}", run.text());
    sim.shutdown();
}

#[test]
fn ctl_and_each_subcommand_have_help() {
    let o = kimp(&["ctl", "--help"]);
    let top = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{top}");
    for sub in ["status", "stop", "resume", "flatten", "--socket", "--config"] {
        assert!(top.contains(sub), "kimp ctl --help lacks {sub}:\n{top}");
    }
    for (sub, usage) in [
        ("status", "Usage: kimp ctl status [OPTIONS]"),
        ("stop", "Usage: kimp ctl stop [OPTIONS]"),
        ("resume", "Usage: kimp ctl resume [OPTIONS] [confirm]"),
        ("flatten", "Usage: kimp ctl flatten [OPTIONS] [COIN] [confirm]"),
    ] {
        let o = kimp(&["ctl", sub, "--help"]);
        let h = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(o.status.success() && h.contains(usage), "kimp ctl {sub} --help:\n{h}");
        assert!(h.lines().count() > 4, "kimp ctl {sub} --help is bare:\n{h}");
    }
    let o = kimp(&["ctl", "resume", "now"]);
    assert!(!o.status.success(), "resume takes only `confirm`");
}
