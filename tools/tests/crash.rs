//! Crash tests (RELIABILITY.md R8): a real `kimp run` process trading against the venue
//! simulator is SIGKILLed at a failpoint — after an entry intent is journaled, after leg 1
//! is written to its socket, after leg 2 is, after a fill is journaled, or in the middle
//! of a journal append (a torn record) — then restarted on the same journal. After the
//! restart: the torn tail (if any) was found and cut, no client id reached a venue twice,
//! every order a venue saw is journaled with every fill the venue made (no lost fill),
//! the restored pair is repaired without a halt, and both venues end flat.
//!
//! Each test prints one `FIGURE R8 <point> ...` line (run with `--nocapture`).

mod kimp_run;

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

use kimp::runtime::journal::Journal;
use kimp::runtime::record_codec::Entry;
use kimp::sim::SimHandle;
use kimp_core::action::Record;
use kimp_core::order::ClientId;
use kimp_run::{Run, field};

/// `orphan_ms_hard` in config/demo.toml: a restart must reconcile well inside it.
const ORPHAN_MS_HARD: u64 = 2_000;
/// Upbit BTC the simulator's default account starts with.
const START_BTC: i64 = 100_000_000;
/// Dust no venue accepts: under Upbit's 5,000 KRW minimum (0.00005 BTC here).
const DUST: i64 = 5_000;

/// What the venues did with our orders: client id → (times received, quantity executed).
fn venue_orders(sim: &SimHandle) -> HashMap<String, (u32, i64)> {
    sim.with_world(|w| {
        let mut m: HashMap<String, (u32, i64)> = HashMap::new();
        let upbit = w.upbit.orders.iter().filter_map(|o| Some((o.identifier.clone()?, o.executed)));
        let binance = w.binance.orders.iter().map(|o| (o.client_id.clone(), o.executed));
        for (id, executed) in upbit.chain(binance) {
            let e = m.entry(id).or_default();
            e.0 += 1;
            e.1 += executed;
        }
        m
    })
}

/// Perp position and Upbit BTC change.
fn positions(sim: &SimHandle) -> (i64, i64) {
    sim.with_world(|w| {
        let pos = w.binance.accounts[0].positions.get("BTCUSDT").map_or(0, |p| p.qty);
        let btc = w.upbit.accounts[0].get("BTC");
        (pos, btc.free + btc.locked - START_BTC)
    })
}

/// The journal's orders (client id → Σ journaled fill quantity); opened after the last
/// run exited.
fn journal_orders(dir: &Path) -> HashMap<ClientId, i64> {
    let (_, replay) = Journal::open(dir, 4 << 20).expect("journal opens");
    let mut m = HashMap::new();
    for (_, e) in replay.entries {
        match e {
            Entry::Record(Record::Order(r)) => {
                m.entry(r.cl_id).or_insert(0);
            }
            Entry::Record(Record::Fill { cl_id, qty, .. }) => *m.entry(cl_id).or_insert(0) += qty.0,
            _ => {}
        }
    }
    m
}

/// What one crash test measured.
#[derive(Debug)]
struct Figures {
    /// Orders run 1 had put on the wire before it died.
    run1_wire: usize,
    /// Torn slots the restart found and cut.
    torn: u64,
    /// Journal entries the restart replayed.
    replayed: u64,
    /// Restart (process spawn) → the loop reports reconciled, ms (includes start-up
    /// requests: exchange info, server time, connections).
    spawn_to_reconciled_ms: u128,
    /// The loop's own reconciliation time (first turn → `ReconcileDone`), ms.
    reconcile_ms: u64,
    /// Trading state right after reconciliation.
    state: String,
    /// One-leg episodes resolved after the restart (engine-reported age, ms).
    one_leg_ms: Vec<u64>,
}

/// Kills `kimp run` at `failpoint` once the premium crosses the entry level, restarts it
/// on the same journal with the premium back below exit, waits until both venues are
/// flat, stops it, and checks I1, I3, I4 (no halt), I7.
fn run_crash(failpoint: &str, seed: u64) -> Figures {
    let sim = kimp_run::sim(seed, |_| {});
    let premium = |p: f64| sim.with_world(|w| w.mkt.coins[0].premium = p);
    premium(0.02);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cfg = kimp_run::config(&sim, dir, |t| t);

    // Run 1: dies at the failpoint once the premium crosses the entry level.
    let mut c1 =
        Run::start(kimp_run::command(&cfg).env("KIMP_FAILPOINT", failpoint), &dir.join("run1.log"));
    assert!(c1.wait_log("reconciled", 20).is_some(), "run 1 never reconciled:\n{}", c1.text());
    premium(0.036);
    let status = c1.wait_exit(20).expect("the failpoint never fired");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "run 1 was not SIGKILLed: {status:?}");
    assert!(c1.text().contains(&format!("failpoint {failpoint}: SIGKILL")));
    let run1_wire = venue_orders(&sim).len();

    // Run 2 on the same journal, the premium now below the exit level: reconcile, repair
    // the restored pair, close it, stop once flat.
    premium(0.012);
    // Let the simulator publish books at the new premium (it steps every 100 ms): a book
    // from before the change would be a fresh 3.6 % and the restart would enter on it.
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let mut c2 = Run::spawn(&cfg, &dir.join("run2.log"));
    let replay = c2.wait_log("journal replayed epoch=2", 20).expect("run 2 did not replay");
    let rec = c2.wait_log("reconciled", 30).expect("run 2 never reconciled");
    let spawn_to_reconciled_ms = t0.elapsed().as_millis();
    let end = Instant::now() + Duration::from_secs(20);
    let mut flat_since: Option<Instant> = None;
    while Instant::now() < end {
        let (pos, delta) = positions(&sim);
        if pos == 0 && delta.abs() <= DUST {
            let s = *flat_since.get_or_insert_with(Instant::now);
            if s.elapsed() >= Duration::from_millis(500) {
                break;
            }
        } else {
            flat_since = None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    c2.signal(libc::SIGINT);
    let s2 = c2.wait_exit(20).expect("run 2 did not stop");
    let log = c2.text();
    assert!(s2.success(), "run 2 exit: {s2:?}\n{log}");

    let fig = Figures {
        run1_wire,
        torn: field(&replay, "torn").and_then(|v| v.parse().ok()).expect("torn=N"),
        replayed: field(&replay, "replayed").and_then(|v| v.parse().ok()).expect("replayed=N"),
        spawn_to_reconciled_ms,
        reconcile_ms: field(&rec, "elapsed_ms").and_then(|v| v.parse().ok()).expect("elapsed_ms"),
        state: field(&rec, "state").unwrap_or("?").to_owned(),
        one_leg_ms: log
            .lines()
            .filter_map(|l| l.split("One leg resolved: ").nth(1))
            .filter_map(|s| s.split(" after ").nth(1)?.split(' ').next()?.parse().ok())
            .collect(),
    };

    // I1: no client id reached a venue twice, and each one is journaled.
    let vo = venue_orders(&sim);
    let jo = journal_orders(&dir.join("journal"));
    let duplicates = vo.values().filter(|o| o.0 > 1).count();
    let mut unjournaled = 0;
    let mut lost_fill_qty = 0;
    for (id, &(_, executed)) in &vo {
        match ClientId::decode(id.as_bytes()).and_then(|c| jo.get(&c)) {
            None => unjournaled += 1,
            // I3: every quantity a venue executed is in the journal, exactly.
            Some(&journaled) => lost_fill_qty += (executed - journaled).abs(),
        }
    }
    let (pos, delta) = positions(&sim);
    // On a failure: both runs' logs, every venue order and the journal.
    let detail = || {
        let mut d = format!("run 1:\n{}\nrun 2:\n{log}\n", c1.text());
        sim.with_world(|w| {
            w.upbit.orders.iter().for_each(|o| d += &format!("upbit {o:?}\n"));
            w.binance.orders.iter().for_each(|o| d += &format!("binance {o:?}\n"));
        });
        if let Ok((_, r)) = Journal::open(&dir.join("journal"), 4 << 20) {
            r.entries.iter().for_each(|e| d += &format!("journal {e:?}\n"));
        }
        d
    };
    println!(
        "FIGURE R8 {failpoint}: run-1 wire orders {} | restart: replayed {} torn slots cut {} | \
         spawn→reconciled {} ms, loop reconcile {} ms, state {} | one-leg resolved after restart \
         {:?} ms | venue orders {} duplicates {duplicates} unjournaled {unjournaled} lost fill qty \
         {lost_fill_qty} | final perp {pos} Upbit Δ {delta} (1e-8 BTC)",
        fig.run1_wire,
        fig.replayed,
        fig.torn,
        fig.spawn_to_reconciled_ms,
        fig.reconcile_ms,
        fig.state,
        fig.one_leg_ms,
        vo.len(),
    );
    assert_eq!(duplicates, 0, "I1: a client id reached a venue twice\n{}", detail());
    assert_eq!(unjournaled, 0, "I1: a venue saw an order the journal lacks\n{}", detail());
    assert_eq!(lost_fill_qty, 0, "I3: venue fills missing from the journal\n{}", detail());
    // I4: the restored pair is repaired inside the hard deadline, without a halt.
    assert_eq!(fig.state, "Active", "run 2 reconciled into {}\n{}", fig.state, detail());
    assert!(fig.reconcile_ms < ORPHAN_MS_HARD, "reconciliation too slow\n{}", detail());
    assert!(!log.contains("HALTED (orphan_hard)"), "orphan deadline passed\n{}", detail());
    // I7: flat on both venues (the pair was repaired, then closed).
    assert_eq!(pos, 0, "pair not closed: perp {pos}\n{}", detail());
    assert!(delta.abs() <= DUST, "Upbit not flat: {delta}\n{}", detail());
    sim.shutdown();
    fig
}

#[test]
fn killed_after_the_intent_is_journaled() {
    let f = run_crash("after_intent", 31);
    assert_eq!(f.run1_wire, 0, "killed before any order was written to a socket");
    assert_eq!(f.torn, 0);
}

#[test]
fn killed_after_leg_1_is_sent() {
    let f = run_crash("after_leg1_sent", 33);
    assert_eq!(f.run1_wire, 1, "only the first leg reached a venue");
    assert_eq!(f.torn, 0);
    // The first leg filled alone: the restart found a real orphan and repaired it.
    assert!(!f.one_leg_ms.is_empty(), "{f:?}");
}

#[test]
fn killed_after_leg_2_is_sent() {
    let f = run_crash("after_leg2_sent", 34);
    assert_eq!(f.run1_wire, 2);
    assert_eq!(f.torn, 0);
}

#[test]
fn killed_after_one_leg_filled() {
    let f = run_crash("after_fill", 32);
    assert_eq!(f.run1_wire, 2);
    assert_eq!(f.torn, 0);
}

#[test]
fn killed_in_the_middle_of_a_journal_append() {
    let f = run_crash("torn_append", 35);
    // The first leg's order record was half written (no checksum) and the process died
    // before sending it: the restart cuts that slot, and the order never existed.
    assert_eq!(f.torn, 1, "{f:?}");
    assert_eq!(f.run1_wire, 0, "an order whose record is torn must not have been sent");
}
