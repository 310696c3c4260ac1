//! Issue 14 item 4 through the real binary: `kimp run` restarted on a journal that holds a
//! hedged pair, against a simulator account without that position, must not log
//! `state=Active` silently. It reconciles to `Halted({Mismatch})`, logs the trading state
//! with its reason and a critical alert naming coin, venue, expected and actual, and sends
//! no order.
//!
//! Prints one `FIGURE reconcile_restart ...` line (run with `--nocapture`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kimp::runtime::demo::demo_sim;
use kimp::runtime::journal::Journal;
use kimp::runtime::record_codec::Entry;
use kimp::sim::config::CoinSpec;
use kimp::sim::{SimHandle, Simulator};
use kimp_core::action::{PairRecord, PnlSplit, Purpose, Record};
use kimp_core::config::Direction;
use kimp_core::event::Side;
use kimp_core::instrument::InstrumentId;
use kimp_core::order::{ClientId, Leg, OrderKind, OrderRequest, OrderState};
use kimp_core::pair::PairState;
use kimp_core::units::{Nanos, Price, Qty, Quote};

const QTY: i64 = 1_000_000;
const E8: i64 = 100_000_000;

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
    let p = dir.join("reconcile.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// The journal of a previous run (epoch 1) that opened one hedged BTC pair, at prices that
/// make an exit unprofitable (the pair stays open whatever the market does).
fn journal_with_hedged_pair(dir: &Path) {
    let (mut j, _) = Journal::open(&dir.join("journal"), 4 << 20).expect("journal");
    let id = |leg| ClientId { epoch: 1, seq: 0, leg, attempt: 0 };
    let (u, b) = (id(Leg::U), id(Leg::B));
    let order = |cl_id, inst, side, px| OrderRequest {
        cl_id,
        inst: InstrumentId(inst),
        side,
        kind: OrderKind::LimitIoc,
        px: Price(px),
        qty: Qty(QTY),
        reduce_only: false,
    };
    let fill = |cl_id, px| Record::Fill {
        cl_id,
        trade_id: 1,
        px: Price(px),
        qty: Qty(QTY),
        fee: Quote(0),
        exch_ts: Nanos(0),
    };
    let done = |cl_id| Record::OrderState { cl_id, state: OrderState::Filled, filled: Qty(QTY) };
    let (upx, bpx) = (50_000_000 * E8, 200_000 * E8);
    let recs = [
        Record::Intent {
            seq: 0,
            pair: 0,
            coin: 0,
            purpose: Purpose::Entry,
            orders: [Some(u), Some(b)],
        },
        Record::Order(order(u, 0, Side::Sell, upx)),
        Record::Order(order(b, 1, Side::Buy, bpx)),
        fill(u, upx),
        done(u),
        fill(b, bpx),
        done(b),
        Record::Pair(PairRecord {
            pair: 0,
            coin: 0,
            direction: Direction::SellPremium,
            from: PairState::Opening,
            to: PairState::Hedged,
            pos_u: Qty(-QTY),
            pos_b: Qty(QTY),
            entry_premium_bps: 300.0,
            fx_entry: Price(1_450 * E8),
            pnl: PnlSplit::default(),
        }),
    ];
    j.append(Nanos(1), &Entry::Epoch(1)).unwrap();
    for (i, r) in recs.iter().enumerate() {
        j.append(Nanos(2 + i as u64), &Entry::Record(*r)).unwrap();
    }
}

fn spawn(cfg: &Path, log: &Path) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kimp"));
    c.args(["run", "--config"]).arg(cfg);
    c.env("KIMP_UPBIT_ACCESS_KEY", "kimp-sim-key")
        .env("KIMP_UPBIT_SECRET_KEY", "kimp-sim-secret")
        .env("KIMP_BINANCE_API_KEY", "kimp-sim-key")
        .env("KIMP_BINANCE_SECRET_KEY", "kimp-sim-secret")
        .env_remove("KIMP_FAILPOINT")
        .env_remove("RUST_LOG");
    c.stdout(Stdio::null()).stderr(Stdio::from(std::fs::File::create(log).unwrap()));
    c.spawn().expect("spawn kimp run")
}

/// The first log line containing `needle`, waiting up to `secs` for it.
fn wait_log(log: &Path, needle: &str, secs: u64) -> Option<String> {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if let Ok(s) = std::fs::read_to_string(log)
            && let Some(l) = s.lines().find(|l| l.contains(needle))
        {
            return Some(l.to_owned());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    line[at..].split_whitespace().next()
}

#[test]
fn a_restart_on_a_pair_the_venue_does_not_hold_is_halted_and_says_why() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut sc = demo_sim(31, 1.0);
    sc.coins = vec![CoinSpec::btc()];
    let sim = Simulator::start(sc).expect("simulator");
    let dir = std::env::temp_dir().join(format!("kimp-reconcile-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    journal_with_hedged_pair(&dir);
    let cfg = config(&sim, &dir);
    let log = dir.join("run.log");
    let t0 = Instant::now();
    let mut child = spawn(&cfg, &log);
    let dump = || std::fs::read_to_string(&log).unwrap_or_default();
    let rec = wait_log(&log, "reconciled", 30);
    let alert = wait_log(&log, "POSITION MISMATCH", 10);
    let halted = wait_log(&log, "trading: HALTED (mismatch)", 10);
    let took = t0.elapsed();
    // SAFETY: kill(2) with the child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() >= end {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = dump();
    let rec = rec.unwrap_or_else(|| panic!("never reconciled:\n{text}"));
    let state = field(&rec, "state").unwrap_or("?").to_owned();
    let orders = sim.with_world(|w| w.upbit.orders.len() + w.binance.orders.len());
    println!(
        "FIGURE reconcile_restart: spawn → reconciled state={state}, alert and halt logged in {} ms; \
         venue orders {orders}",
        took.as_millis()
    );
    assert_eq!(state, "Halted({Mismatch})", "reconciled silently:\n{text}");
    let alert = alert.unwrap_or_else(|| panic!("no mismatch alert logged:\n{text}"));
    assert!(alert.contains("BTC on binance: expected 0.01000000, venue has 0.00000000"), "{alert}");
    assert!(halted.is_some(), "no trading-state line:\n{text}");
    assert_eq!(orders, 0, "an order reached a venue");
    assert!(status.is_some_and(|s| s.success()), "exit: {status:?}\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
