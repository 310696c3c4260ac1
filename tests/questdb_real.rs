//! The store against a real QuestDB (`../shared/questdb` or `KIMP_QUESTDB_HOME`; needs a
//! Java 17 runtime). Each test starts its own server on free loopback ports with its own
//! data directory and stops it by PID at the end, also when it fails. The runtime trades
//! against the venue simulator as `kimp demo` does, with the sidecars of `kimp run`
//! (journal tail → store → ILP), and what QuestDB holds is compared by SQL with the
//! journal. Ignored in a plain `cargo test` (no server there; only the local-files test
//! runs); `.ci/run` runs them:
//! `cargo test -p kimp-tests --test questdb_real -- --ignored --nocapture --test-threads=1`.
//! Figures are printed as `FIGURE ...` lines, tables as `TABLE ...` lines.

#[path = "questdb/docs.rs"]
mod docs;
#[path = "questdb/server.rs"]
mod server;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kimp::runtime::record_codec::Entry;
use kimp_core::action::Record;
use kimp_core::units::{Nanos, SCALE};
use kimp_sidecars::names::Names;
use kimp_tests::*;
use serde_json::Value;
use server::QuestDb;

/// Every table docs/questdb.md defines.
const TABLES: [&str; 10] = [
    "fills",
    "orders",
    "pairs",
    "trading",
    "kimp",
    "bbo",
    "funding",
    "fx",
    "latency",
    "candles_1m",
];

/// One premium swing of the simulated market (a pair opens, then closes).
const PERIOD: Duration = Duration::from_millis(1_200);

/// Removes a run's journal and ILP directory when the test ends, however it ends.
struct RunDir(PathBuf);

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Creates the tables with the DDL of docs/questdb.md.
fn create_tables(q: &QuestDb) {
    let ddl = docs::ddl(&docs::text());
    assert_eq!(ddl.len(), TABLES.len(), "one CREATE TABLE per table");
    for sql in ddl {
        q.exec(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// Starts the simulator and the runtime with the sidecars, the store set by `tweak`.
fn start_run(name: &str, tweak: impl FnOnce(&mut kimp::runtime::config::Config)) -> (E2e, RunDir) {
    let sim = kimp::sim::Simulator::start(sim_config(7, 1.0, &[])).expect("simulator");
    let dir = tmp(name);
    let guard = RunDir(dir.to_path_buf());
    let e = E2e::start_opts(sim, dir, tweak, E2eOpts { sidecars: true, ..E2eOpts::default() });
    assert!(e.wait_active(30.0), "the runtime never reconciled");
    (e, guard)
}

/// What one run's journal says the tables must hold.
#[derive(Debug, Default)]
struct Want {
    /// Trading rows (table, event_seq, client id).
    rows: BTreeSet<RowId>,
    /// Per venue: fills, Σ quantity (1e-8).
    fills: BTreeMap<String, (i64, i64)>,
    /// Per pair row (event_seq): net PnL (1e-8 KRW).
    pnl: BTreeMap<i64, i64>,
}

fn want(entries: &[(Nanos, Entry)]) -> Want {
    let mut w = Want { rows: expected_rows(entries), ..Want::default() };
    for (i, (_, e)) in entries.iter().enumerate() {
        match e {
            Entry::Record(Record::Fill { cl_id, qty, .. }) => {
                let v = w.fills.entry(Names::leg_venue(cl_id).name().to_string()).or_default();
                v.0 += 1;
                v.1 += qty.0;
            }
            Entry::Record(Record::Pair(p)) => {
                w.pnl.insert(i as i64 + 1, p.pnl.net().0);
            }
            _ => {}
        }
    }
    w
}

/// A column as i64 (QuestDB's JSON numbers), -1 when absent.
fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(-1)
}

/// A DOUBLE column in fixed point (1e-8), the journal's unit.
fn fixed(v: &Value) -> i64 {
    (v.as_f64().unwrap_or(f64::NAN) * SCALE as f64).round() as i64
}

/// The trading rows QuestDB holds, with how often each appears.
fn held_rows(q: &QuestDb) -> BTreeMap<RowId, usize> {
    let mut m = BTreeMap::new();
    for (table, sql) in [
        ("orders", "SELECT event_seq, cl_id FROM orders"),
        ("fills", "SELECT event_seq, cl_id FROM fills"),
        ("pairs", "SELECT event_seq, '' FROM pairs"),
        ("trading", "SELECT event_seq, '' FROM trading"),
    ] {
        for r in q.rows(sql) {
            let cl = r.get(1).and_then(Value::as_str).unwrap_or("").to_string();
            *m.entry((table.to_string(), int(&r[0]), cl)).or_insert(0) += 1;
        }
    }
    m
}

/// Trading rows against the journal: (expected, lost, duplicated, not in the journal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RowCheck {
    expected: usize,
    lost: usize,
    duplicates: usize,
    extra: usize,
}

fn check_rows(q: &QuestDb, w: &Want) -> RowCheck {
    let held = held_rows(q);
    RowCheck {
        expected: w.rows.len(),
        lost: w.rows.iter().filter(|r| !held.contains_key(*r)).count(),
        duplicates: held.values().filter(|&&n| n > 1).map(|n| n - 1).sum(),
        extra: held.keys().filter(|r| !w.rows.contains(*r)).count(),
    }
}

/// Rows per table, printed as one `TABLE` line each.
fn table_counts(q: &QuestDb, label: &str) -> BTreeMap<&'static str, i64> {
    let mut m = BTreeMap::new();
    for t in TABLES {
        let n = q.count(&format!("SELECT count() FROM {t}"));
        println!("TABLE {label}: {t:<11} {n:>7} rows");
        m.insert(t, n);
    }
    m
}

/// Polls until `f` holds (or `secs` pass), with WAL apply settled; true when it held.
fn settle(q: &QuestDb, secs: f64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        if q.wait_applied(5.0) && f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The journal's values against the tables: every table has rows, the trading rows are
/// the journal's (none lost, none twice), fills per venue and each pair's net PnL match.
fn assert_matches_journal(q: &QuestDb, w: &Want, label: &str) {
    let ok = settle(q, 60.0, || check_rows(q, w).lost == 0);
    let c = check_rows(q, w);
    println!(
        "FIGURE {label}: trading rows expected {} lost {} duplicates {} not in journal {}",
        c.expected, c.lost, c.duplicates, c.extra
    );
    assert!(ok, "{label}: rows missing after 60 s: {c:?}\n{}", q.log_tail());
    assert_eq!((c.lost, c.duplicates, c.extra), (0, 0, 0), "{label}: {c:?}");
    let counts = table_counts(q, label);
    for (t, n) in &counts {
        assert!(*n > 0, "{label}: table {t} has no rows");
    }
    let mut fills = BTreeMap::new();
    for r in q.rows("SELECT venue, count(), sum(qty) FROM fills ORDER BY venue") {
        let venue = r[0].as_str().unwrap_or("?").to_string();
        fills.insert(venue, (int(&r[1]), fixed(&r[2])));
    }
    for (venue, (n, qty)) in &fills {
        println!("TABLE {label}: fills {venue:<8} {n:>4} fills, Σ qty {qty} (1e-8)");
    }
    assert_eq!(fills, w.fills, "{label}: fills per venue (count, Σ qty) differ from the journal");
    let mut pnl = BTreeMap::new();
    for r in q.rows("SELECT event_seq, pnl_net FROM pairs") {
        pnl.insert(int(&r[0]), fixed(&r[1]));
    }
    assert_eq!(pnl, w.pnl, "{label}: pairs' net PnL differs from the journal");
    let closed: i64 = q
        .rows("SELECT sum(pnl_net) FROM pairs WHERE to_state = 'closed'")
        .first()
        .map_or(0, |r| fixed(&r[0]));
    println!("FIGURE {label}: pairs rows {} Σ closed pnl_net {} (1e-8 KRW)", pnl.len(), closed);
    assert!(w.pnl.values().any(|&v| v != 0), "{label}: no pair closed with a PnL");
}

/// Loop figures over a run: (turns, turns over cycle_us_max, median of the per-second
/// p99 turn, longest turn ns).
fn duty(e: &E2e) -> (u64, u64, u64, u64) {
    e.with_log(|l| {
        let turn = kimp::runtime::metrics::Stage::Turn as usize;
        let mut p99: Vec<u64> = l.loops.iter().map(|(_, s)| s.stages[turn].p99).collect();
        p99.sort_unstable();
        (
            l.loops.iter().map(|(_, s)| s.turns).sum(),
            l.loops.iter().map(|(_, s)| s.stalls).sum(),
            p99.get(p99.len() / 2).copied().unwrap_or(0),
            l.loops.iter().map(|(_, s)| s.turn_max_ns).max().unwrap_or(0),
        )
    })
}

/// Trades `swings` premium swings into a fresh QuestDB over `transport`, then compares.
fn demo_run_into(transport: &str, swings: usize) {
    let t0 = Instant::now();
    let (q, up) = QuestDb::start();
    create_tables(&q);
    let conf = q.conf(transport);
    let (e, _dir) = start_run(&format!("qdb-{transport}"), |c| c.store.questdb = Some(conf));
    e.cycle_premium(swings, PERIOD);
    let f = e.finish();
    let v = verdict(&f);
    let w = want(&run_entries(&f.journal, f.epoch));
    let label = format!("ilp_{transport}");
    println!(
        "FIGURE {label}: server ready in {} ms; intents {} wire orders {} journal records {}",
        up.as_millis(),
        v.intents,
        v.wire_orders,
        w.rows.len()
    );
    assert_matches_journal(&q, &w, &label);
    println!("FIGURE {label}: test wall time {} ms", t0.elapsed().as_millis());
}

/// (1) A demo run over ILP/TCP: every table has rows, and they are the journal's.
#[test]
#[ignore = "needs the QuestDB server and Java 17 (.ci/run runs it)"]
fn demo_run_over_ilp_tcp_fills_every_table_as_journaled() {
    demo_run_into("tcp", 6);
}

/// (1) The same over ILP/HTTP.
#[test]
#[ignore = "needs the QuestDB server and Java 17 (.ci/run runs it)"]
fn demo_run_over_ilp_http_fills_every_table_as_journaled() {
    demo_run_into("http", 6);
}

/// (2) R12 for real: QuestDB is SIGKILLed in the middle of a run and started again on the
/// same data directory `KIMP_QDB_OUTAGE_S` (default 30) seconds later, while pairs keep
/// opening and closing. After catch-up the tables hold every trading row of the journal
/// exactly once.
#[test]
#[ignore = "needs the QuestDB server and Java 17 (.ci/run runs it)"]
fn questdb_killed_mid_run_loses_and_duplicates_no_row() {
    let outage = Duration::from_secs(
        std::env::var("KIMP_QDB_OUTAGE_S").ok().and_then(|s| s.parse().ok()).unwrap_or(30),
    );
    let (mut q, _) = QuestDb::start();
    create_tables(&q);
    let conf = q.conf("tcp");
    let (mut e, _dir) = start_run("qdb-r12", |c| c.store.questdb = Some(conf));
    let mut seen = Vec::new();
    e.cycle_premium(4, PERIOD);
    let sent_before = e.tail.as_mut().map_or(0, |t| {
        let _ = t.poll(&mut seen);
        seen.len()
    });
    let opened = |e: &E2e| {
        e.with_log(|l| l.count(|a| matches!(a, kimp_core::action::Alert::PairOpened { .. })))
    };
    let opened_before = opened(&e);
    let pid = q.pid();
    q.kill9();
    let killed = Instant::now();
    let killed_us = unix_us();
    while killed.elapsed() + PERIOD * 2 <= outage {
        e.cycle_premium(2, PERIOD);
    }
    std::thread::sleep(outage.saturating_sub(killed.elapsed()));
    let down_for = killed.elapsed();
    let opened_down = opened(&e) - opened_before;
    let store = e.sidecars.as_ref().and_then(|s| s.board.store()).expect("store stats");
    let spool_peak = store.spool_bytes.load(std::sync::atomic::Ordering::Relaxed);
    let restarted = Instant::now();
    let restarted_us = unix_us();
    let ping = q.restart();
    if let Some(t) = e.tail.as_mut() {
        let _ = t.poll(&mut seen);
    }
    let w_now = want(&seen);
    // When the store's shipper got through again (its retry backoff runs up to
    // retry_max_ms, 30 s), and when every row of the journal so far was in the tables.
    let mut reconnected = None;
    let caught = settle(&q, 120.0, || {
        if reconnected.is_none() && store.questdb() == kimp_sidecars::store::QuestDbState::Up {
            reconnected = Some(restarted.elapsed());
        }
        check_rows(&q, &w_now).lost == 0
    });
    let catch_up = restarted.elapsed();
    let reconnected = reconnected.unwrap_or(catch_up);
    let outage_kimp = q.count(&format!(
        "SELECT count() FROM kimp WHERE ts BETWEEN cast({killed_us} AS timestamp) AND cast({restarted_us} AS timestamp)"
    ));
    assert!(caught, "no catch-up in 120 s: {:?}\n{}", check_rows(&q, &w_now), q.log_tail());
    e.cycle_premium(2, PERIOD);
    let f = e.finish();
    let v = verdict(&f);
    let w = want(&run_entries(&f.journal, f.epoch));
    let outages =
        f.store.as_ref().map_or(0, |s| s.outages.load(std::sync::atomic::Ordering::Relaxed));
    println!(
        "FIGURE R12 real questdb: SIGKILL of pid {pid:?} after {sent_before} journal entries; down {} ms \
         (pairs opened meanwhile {opened_down}, spool {spool_peak} B); restart to /ping {} ms; \
         restart to the store reconnected {} ms; restart to every row of the journal so far in SQL \
         (catch-up) {} ms; premium samples of the outage in SQL {outage_kimp}; store outages {outages}; \
         intents {} wire orders {}",
        down_for.as_millis(),
        ping.as_millis(),
        reconnected.as_millis(),
        catch_up.as_millis(),
        v.intents,
        v.wire_orders,
    );
    assert!(
        opened_down >= 1,
        "no pair opened while QuestDB was down: the outage was not mid-trading"
    );
    assert!(outages >= 1, "the store never noticed the outage");
    assert!(outage_kimp > 0, "the telemetry spooled during the outage never arrived");
    assert_matches_journal(&q, &w, "R12 after restart");
}

/// Now, in Unix epoch microseconds (QuestDB's TIMESTAMP unit).
fn unix_us() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_micros()
}

/// The dedup identities of every row in a run's local ILP files, per table.
fn file_rows(dir: &std::path::Path) -> BTreeMap<String, BTreeSet<String>> {
    use kimp_sidecars::store::ilp::{parse_line, split_lines};
    let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in kimp_sidecars::store::files::list(dir).expect("ILP files") {
        let data = std::fs::read(&p).expect("read");
        let (lines, tail) = split_lines(&data);
        assert!(tail.is_none(), "a torn line in {}", p.display());
        for l in lines {
            let l = parse_line(l).expect("ILP line");
            m.entry(l.table.clone()).or_default().insert(dedup_key(&l));
        }
    }
    m
}

/// Without a server (so it runs in every `cargo test`): a demo run's local ILP files hold
/// rows of every table docs/questdb.md defines, the market tables included.
#[test]
fn demo_run_writes_every_table_to_local_files() {
    let (e, _dir) = start_run("qdb-files", |_| {});
    e.cycle_premium(4, PERIOD);
    let f = e.finish();
    let files = file_rows(&f.dir.join("ilp"));
    for t in TABLES {
        let n = files.get(t).map_or(0, BTreeSet::len);
        println!("TABLE local files: {t:<11} {n:>7} rows");
        assert!(n > 0, "no {t} rows in the local files");
    }
    assert_eq!(files.len(), TABLES.len(), "tables the docs do not define: {:?}", files.keys());
}

/// (3) `kimp store load` of one run's local files, twice: every row once, in every table.
/// (4) Then every query of docs/questdb.md runs over `/exec` and returns rows (the
/// invariant check returns none); (5) the same over the PostgreSQL wire protocol, in its
/// simple (psql) and extended (Grafana's drivers) query modes.
#[test]
#[ignore = "needs the QuestDB server and Java 17 (.ci/run runs it)"]
fn store_load_twice_holds_every_row_once_and_the_docs_queries_answer() {
    let (e, _dir) = start_run("qdb-load", |_| {});
    e.cycle_premium(6, PERIOD);
    let f = e.finish();
    verdict(&f);
    let w = want(&run_entries(&f.journal, f.epoch));
    let ilp = f.dir.join("ilp");
    let files = file_rows(&ilp);
    let (q, _) = QuestDb::start();
    create_tables(&q);
    for (i, transport) in ["http", "tcp"].into_iter().enumerate() {
        let t = Instant::now();
        kimp::runtime::cli::store(kimp::runtime::cli::StoreCmd::Load {
            questdb: q.conf(transport),
            paths: vec![ilp.clone()],
        })
        .expect("kimp store load");
        println!("FIGURE store load #{} over {transport}: {} ms", i + 1, t.elapsed().as_millis());
    }
    assert_matches_journal(&q, &w, "store load x2");
    for t in TABLES {
        let want_n = files.get(t).map_or(0, BTreeSet::len) as i64;
        let got = q.count(&format!("SELECT count() FROM {t}"));
        assert_eq!(got, want_n, "table {t}: distinct rows in the files vs rows after two loads");
    }

    // (4) and (5): the docs' queries, on this data.
    let queries = docs::queries(&docs::text());
    assert!(queries.len() >= 9, "the docs' queries: {}", queries.len());
    let mut pg = q.pg();
    for s in &queries {
        let http = q.rows(&s.sql).len();
        let simple = pg
            .simple_query(&s.sql)
            .unwrap_or_else(|e| panic!("PG simple query {}: {e}", s.sql))
            .into_iter()
            .filter(|m| matches!(m, postgres::SimpleQueryMessage::Row(_)))
            .count();
        let extended = pg
            .query(s.sql.as_str(), &[])
            .unwrap_or_else(|e| panic!("PG query {}: {e}", s.sql))
            .len();
        let first = s.sql.lines().next().unwrap_or("");
        println!("QUERY http {http:>5} pg {simple:>5} pg-extended {extended:>5} rows | {first}");
        if s.expect_empty {
            assert_eq!((http, simple, extended), (0, 0, 0), "must return no rows: {}", s.sql);
        } else {
            assert!(http > 0, "no rows over /exec: {}", s.sql);
            assert_eq!((simple, extended), (http, http), "PG and /exec disagree: {}", s.sql);
        }
    }
    // The console and Grafana statements the docs name besides the queries.
    let span = q.rows("SELECT min(ts), max(ts) FROM kimp");
    let (from, to) = (span[0][0].as_str().unwrap_or(""), span[0][1].as_str().unwrap_or(""));
    let panel = format!(
        "SELECT ts AS time, avg(mid_bps) mid_bps FROM kimp WHERE ts BETWEEN '{from}' AND '{to}' SAMPLE BY 1s"
    );
    let panel_rows = pg.query(panel.as_str(), &[]).expect("Grafana-style panel query").len();
    let tables = pg.query("SELECT table_name FROM tables();", &[]).expect("tables()").len();
    println!("QUERY pg-extended {panel_rows:>5} rows | {panel}");
    println!("QUERY pg-extended {tables:>5} rows | SELECT table_name FROM tables();");
    assert!(panel_rows > 0 && tables >= TABLES.len());
}

/// The loop's duty cycle with the store shipping to a real QuestDB (ILP/TCP) vs writing
/// local files, from one run of this test: the same market, the same swings, busy
/// polling as `kimp demo` does.
#[test]
#[ignore = "needs the QuestDB server and Java 17 (.ci/run runs it)"]
fn loop_duty_cycle_store_to_questdb_vs_local_files() {
    let swings = 10;
    let (q, _) = QuestDb::start();
    create_tables(&q);
    let mut lines = Vec::new();
    for mode in ["local files", "questdb tcp"] {
        let conf = (mode != "local files").then(|| q.conf("tcp"));
        let (e, _dir) = start_run("qdb-duty", |c| {
            c.runtime.busy_poll = true;
            c.store.questdb = conf;
        });
        let from = e.with_log(|l| l.loops.len());
        e.cycle_premium(swings, PERIOD);
        let (turns, stalls, p99, max) = e.with_log(|l| {
            let turn = kimp::runtime::metrics::Stage::Turn as usize;
            let s = &l.loops[from..];
            let mut p: Vec<u64> = s.iter().map(|(_, s)| s.stages[turn].p99).collect();
            p.sort_unstable();
            (
                s.iter().map(|(_, s)| s.turns).sum::<u64>(),
                s.iter().map(|(_, s)| s.stalls).sum::<u64>(),
                p.get(p.len() / 2).copied().unwrap_or(0),
                s.iter().map(|(_, s)| s.turn_max_ns).max().unwrap_or(0),
            )
        });
        let all = duty(&e);
        let f = e.finish();
        let store = f.store.as_ref().expect("store");
        let sent = store.rows_sent.load(std::sync::atomic::Ordering::Relaxed);
        let written = store.rows_written.load(std::sync::atomic::Ordering::Relaxed);
        let line = format!(
            "FIGURE duty cycle, store to {mode}: {stalls} of {turns} turns over 50 us ({:.4} %), \
             p99 turn (median of 1 s intervals) {p99} ns, longest turn {max} ns, over {} s of trading; \
             store rows written {written} sent {sent}; whole run {} turns {} stalls",
            100.0 * stalls as f64 / turns.max(1) as f64,
            (PERIOD * swings as u32).as_secs(),
            all.0,
            all.1,
        );
        println!("{line}");
        lines.push(line);
        assert!(turns > 0, "{mode}: no loop summary");
    }
}
