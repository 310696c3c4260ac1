//! Store tests on loopback: exact ILP lines to a TCP receiver, an outage with backfill and
//! exactly-once after dedup, HTTP with server errors, and local files loaded later.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kimp_core::action::{KimpSample, Record};
use kimp_core::event::{Bbo, FxSource, Level, Side};
use kimp_core::instrument::InstrumentId;
use kimp_core::order::{ClientId, Leg, OrderKind, OrderRequest};
use kimp_core::units::{Nanos, Price, Qty, Quote};
use kimp_sidecars::names::Names;
use kimp_sidecars::store::{
    self, QuestDbConf, QuestDbState, Store, StoreAlert, StoreConfig, StoreEvent,
};
use support::{FakeIlpHttp, FakeIlpTcp, dedup, free_port, temp_dir, wait_until};

const E8: i64 = 100_000_000;
const T0: u64 = 1_700_000_000_000_000_000;

fn names() -> Arc<Names> {
    Arc::new(Names::from_markets(&kimp_core::testkit::btc_markets()))
}

fn cl(seq: u32) -> ClientId {
    ClientId { epoch: 3, seq, leg: Leg::B, attempt: 0 }
}

fn order(seq: u32) -> Record {
    Record::Order(OrderRequest {
        cl_id: cl(seq),
        inst: InstrumentId(1),
        side: Side::Buy,
        kind: OrderKind::LimitIoc,
        px: Price(70_500 * E8),
        qty: Qty(E8 / 100),
        reduce_only: false,
    })
}

fn fill(seq: u32, trade_id: u64) -> Record {
    Record::Fill {
        cl_id: cl(seq),
        trade_id,
        px: Price(70_500 * E8),
        qty: Qty(E8 / 100),
        fee: Quote(28_200_000),
        exch_ts: Nanos(T0 + 5_000_000 + seq as u64),
    }
}

fn kimp(ts: u64) -> KimpSample {
    KimpSample {
        coin: 0,
        ts: Nanos(ts),
        mid_bps: 251.5,
        sell_bps: 240.25,
        buy_bps: -260.5,
        fx: Price(1_468 * E8 + E8 / 2),
        fx_source: FxSource::UpbitUsdt,
        qty: Qty(E8 / 100),
        funding_e8: 10_000,
    }
}

fn alert_log() -> (store::AlertFn, Arc<Mutex<Vec<StoreAlert>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    (Arc::new(move |a| l.lock().unwrap().push(a)), log)
}

fn quick(dir: &std::path::Path, questdb: Option<String>) -> StoreConfig {
    StoreConfig {
        questdb: questdb.map(QuestDbConf),
        dir: dir.join("ilp"),
        flush_ms: 5,
        retry_min_ms: 20,
        retry_max_ms: 100,
        tcp_replay_ms: 100,
        ship_poll_ms: 2,
        spool_rotate_kb: 8,
        drain_ms: 3_000,
        ..StoreConfig::default()
    }
}

/// The store's rows for one order, one fill, a premium and a BBO sample, byte for byte as
/// the ILP receiver reads them (and the candles built from the samples at shutdown).
#[test]
fn tcp_receiver_gets_the_exact_lines() {
    let dir = temp_dir("exact");
    let rx = FakeIlpTcp::start(0);
    let conf = format!("tcp::addr=127.0.0.1:{};protocol_version=1;", rx.port);
    let cfg = StoreConfig { flush_ms: 60_000, ..quick(&dir, Some(conf)) };
    let (cb, alerts) = alert_log();
    let st = Store::spawn(cfg, names(), cb).unwrap();
    let tx = st.tx();
    tx.journal(10, Nanos(T0), order(1)).unwrap();
    tx.journal(11, Nanos(T0 + 1), fill(1, 777)).unwrap();
    assert!(tx.telemetry(StoreEvent::Kimp(kimp(T0 + 10_000_000))));
    let bbo = Bbo {
        inst: InstrumentId(0),
        exch_ts: Nanos(T0 + 20_000_000),
        update_id: 0,
        bid: Level::new(Price(103_460_000 * E8), Qty(E8 / 2)),
        ask: Level::new(Price(103_493_000 * E8), Qty(E8 / 4)),
    };
    assert!(tx.telemetry(StoreEvent::Bbo(bbo)));
    st.shutdown();
    let mut got = Vec::new();
    assert!(wait_until(Duration::from_secs(5), || {
        got = rx.lines();
        got.len() >= 6
    }));
    got.sort();
    let mut want = vec![
        "orders,event=sent,venue=binance,symbol=BTCUSDT,coin=BTC,side=buy,kind=limit_ioc \
         cl_id=\"k3-1-b0\",event_seq=10i,px=70500.0,qty=0.01,reduce_only=f 1700000000000000000",
        "fills,venue=binance,symbol=BTCUSDT,coin=BTC,side=buy \
         cl_id=\"k3-1-b0\",trade_id=777i,px=70500.0,qty=0.01,fee=0.282,event_seq=11i 1700000000005000001",
        "kimp,coin=BTC,fx_source=upbit_usdt \
         mid_bps=251.5,sell_bps=240.25,buy_bps=-260.5,fx=1468.5,qty=0.01,funding_rate=0.0001 1700000000010000000",
        "bbo,venue=upbit,symbol=KRW-BTC,coin=BTC \
         bid=103460000.0,bid_qty=0.5,ask=103493000.0,ask_qty=0.25,update_id=0i 1700000000020000000",
        "candles_1m,venue=kimp,coin=BTC \
         open=251.5,high=251.5,low=251.5,close=251.5,samples=1i 1699999980000000000",
        "candles_1m,venue=upbit,coin=BTC \
         open=103476500.0,high=103476500.0,low=103476500.0,close=103476500.0,samples=1i 1699999980000000000",
    ];
    want.sort();
    assert_eq!(got, want);
    assert!(alerts.lock().unwrap().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn send_trades(tx: &store::StoreTx, from: u32, to: u32) {
    for s in from..to {
        tx.journal(2 * s as u64, Nanos(T0 + s as u64), order(s)).unwrap();
        tx.journal(2 * s as u64 + 1, Nanos(T0 + s as u64), fill(s, 10_000 + s as u64)).unwrap();
        tx.telemetry(StoreEvent::Kimp(kimp(T0 + s as u64 * 1_000)));
    }
}

fn keys_of(table: &str, lines: &[String]) -> usize {
    dedup(lines).keys().filter(|k| k.starts_with(&format!("{table}|"))).count()
}

/// QuestDB is down at start, comes up, is killed mid-stream and comes back: every fill and
/// order event arrives, exactly once after applying the dedup keys.
#[test]
fn tcp_outage_buffers_to_disk_and_backfills_without_loss() {
    let dir = temp_dir("outage");
    let port = free_port();
    let conf = format!("tcp::addr=127.0.0.1:{port};protocol_version=1;");
    let (cb, alerts) = alert_log();
    let st = Store::spawn(quick(&dir, Some(conf)), names(), cb).unwrap();
    let (tx, stats) = (st.tx(), st.stats());

    // Phase 1: nobody listens.
    send_trades(&tx, 0, 150);
    assert!(wait_until(Duration::from_secs(5), || stats.questdb() == QuestDbState::Down));
    assert!(wait_until(Duration::from_secs(5), || stats
        .spool_bytes
        .load(std::sync::atomic::Ordering::Relaxed)
        > 0));

    // Phase 2: the receiver comes up; the spool backfills and live rows follow.
    let mut rx = FakeIlpTcp::start(port);
    send_trades(&tx, 150, 300);
    assert!(
        wait_until(Duration::from_secs(10), || keys_of("fills", &rx.lines()) == 300),
        "backfill incomplete: {} fills",
        keys_of("fills", &rx.lines())
    );
    assert_eq!(stats.questdb(), QuestDbState::Up);

    // Phase 3: killed mid-stream (unread bytes are lost), then back on the same port.
    send_trades(&tx, 300, 375);
    std::thread::sleep(Duration::from_millis(10));
    let before = rx.lines();
    rx.kill();
    send_trades(&tx, 375, 450);
    assert!(wait_until(Duration::from_secs(5), || stats
        .outages
        .load(std::sync::atomic::Ordering::Relaxed)
        == 2));
    let mut rx2 = FakeIlpTcp::start(port);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let mut all = before.clone();
            all.extend(rx2.lines());
            keys_of("fills", &all) == 450 && keys_of("orders", &all) == 450
        }),
        "lost rows after the kill"
    );
    st.shutdown();
    std::thread::sleep(Duration::from_millis(50));
    rx2.kill();
    let mut all = before;
    all.extend(rx2.lines());
    let rows = dedup(&all);
    assert_eq!(keys_of("fills", &all), 450);
    assert_eq!(keys_of("orders", &all), 450);
    assert_eq!(keys_of("kimp", &all), 450, "telemetry goes through the same spool");
    // Every fill is the one sent: its trade id matches its client id.
    for s in 0..450u32 {
        let k = format!("fills|{}|binance|{}", T0 + 5_000_000 + s as u64, 10_000 + s);
        assert!(rows.contains_key(&k), "missing {k}");
    }
    let dup = all.len() - rows.len();
    println!(
        "outage test: {} lines received, {} distinct rows, {dup} re-sent duplicates",
        all.len(),
        rows.len()
    );
    let a = alerts.lock().unwrap();
    assert!(matches!(a.first(), Some(StoreAlert::QuestDbDown { .. })), "{a:?}");
    assert_eq!(a.iter().filter(|x| matches!(x, StoreAlert::QuestDbUp { .. })).count(), 2, "{a:?}");
    assert_eq!(stats.critical_full.load(std::sync::atomic::Ordering::Relaxed), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Over HTTP a 500 is a refusal: the rows stay in the spool and are sent again, and since
/// a 204 is an acknowledgement, nothing is sent twice.
#[test]
fn http_sender_retries_after_server_errors_without_duplicates() {
    let dir = temp_dir("http");
    let rx = FakeIlpHttp::start();
    rx.failing.store(true, std::sync::atomic::Ordering::Release);
    let conf = format!("http::addr=127.0.0.1:{};protocol_version=1;retry_timeout=0;", rx.port);
    let (cb, alerts) = alert_log();
    let st = Store::spawn(quick(&dir, Some(conf)), names(), cb).unwrap();
    let (tx, stats) = (st.tx(), st.stats());
    send_trades(&tx, 0, 100);
    assert!(wait_until(Duration::from_secs(5), || stats.questdb() == QuestDbState::Down));
    rx.failing.store(false, std::sync::atomic::Ordering::Release);
    send_trades(&tx, 100, 200);
    assert!(wait_until(Duration::from_secs(10), || keys_of("fills", &rx.lines()) == 200));
    st.shutdown();
    let lines = rx.lines();
    assert_eq!(lines.len(), dedup(&lines).len(), "HTTP must not duplicate rows");
    assert_eq!(keys_of("orders", &lines), 200);
    assert!(rx.requests.lock().unwrap().iter().all(|r| r.starts_with("POST /write")));
    assert!(matches!(alerts.lock().unwrap().first(), Some(StoreAlert::QuestDbDown { .. })));
    // Nothing is left in the spool once HTTP acknowledged it.
    assert_eq!(store::files::list(&dir.join("spool")).unwrap(), Vec::<std::path::PathBuf>::new());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Without QuestDB the rows go to rotating local files that parse line by line, and
/// `load_files` sends the same rows to QuestDB later.
#[test]
fn local_files_are_parseable_and_load_later() {
    let dir = temp_dir("files");
    let cfg = StoreConfig { rotate_kb: 16, ..quick(&dir, None) };
    let (cb, _) = alert_log();
    let st = Store::spawn(cfg, names(), cb).unwrap();
    assert_eq!(st.stats().questdb(), QuestDbState::Off);
    send_trades(&st.tx(), 0, 200);
    st.shutdown();
    let files = store::files::list(&dir.join("ilp")).unwrap();
    assert!(files.len() > 1, "expected rotation, got {files:?}");
    let mut lines = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.ends_with('\n'));
        lines.extend(text.lines().map(str::to_string));
    }
    let rows = dedup(&lines); // parses every line
    assert_eq!(lines.len(), rows.len());
    assert_eq!(keys_of("fills", &lines), 200);
    assert_eq!(keys_of("kimp", &lines), 200);

    let mut rx = FakeIlpTcp::start(0);
    let conf = format!("tcp::addr=127.0.0.1:{};protocol_version=1;", rx.port);
    let stats = store::load_files(&[dir.join("ilp")], &conf).unwrap();
    assert_eq!((stats.files, stats.rows as usize, stats.bad_lines), (files.len(), lines.len(), 0));
    assert!(wait_until(Duration::from_secs(5), || rx.lines().len() == lines.len()));
    rx.kill();
    let mut got = rx.lines();
    got.sort();
    lines.sort();
    assert_eq!(got, lines);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A full telemetry queue drops and counts; the record queue reports `StoreFull` instead of
/// blocking (the runtime halts entries on it).
#[test]
fn full_queues_never_block_the_sender() {
    let dir = temp_dir("full");
    let cfg =
        StoreConfig { record_queue: 4, telemetry_queue: 4, flush_ms: 60_000, ..quick(&dir, None) };
    let (cb, _) = alert_log();
    let st = Store::spawn(cfg, names(), cb).unwrap();
    let tx = st.tx();
    let t = std::time::Instant::now();
    let mut full = 0;
    let mut dropped = 0;
    for s in 0..10_000u32 {
        if tx.journal(s as u64, Nanos(T0), order(s)).is_err() {
            full += 1;
        }
        if !tx.telemetry(StoreEvent::Kimp(kimp(T0 + s as u64))) {
            dropped += 1;
        }
    }
    let elapsed = t.elapsed();
    let stats = st.stats();
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stats.critical_full.load(Relaxed), full);
    assert_eq!(stats.telemetry_dropped.load(Relaxed), dropped);
    assert!(full > 0 && dropped > 0, "queues of 4 must overflow ({full}, {dropped})");
    println!("20000 sends in {elapsed:?}; {full} record refusals, {dropped} telemetry drops");
    st.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Past `spool_max_mb` the spool keeps trading rows and drops (and counts) telemetry.
#[test]
fn full_spool_keeps_trading_rows_and_drops_telemetry() {
    let dir = temp_dir("spoolmax");
    let port = free_port();
    let conf = format!("tcp::addr=127.0.0.1:{port};protocol_version=1;");
    let cfg = StoreConfig { spool_max_mb: 0, ..quick(&dir, Some(conf)) };
    let (cb, _) = alert_log();
    let st = Store::spawn(cfg, names(), cb).unwrap();
    let (tx, stats) = (st.tx(), st.stats());
    use std::sync::atomic::Ordering::Relaxed;
    for chunk in 0..10 {
        send_trades(&tx, chunk * 20, chunk * 20 + 20);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(wait_until(Duration::from_secs(5), || stats.spool_dropped_rows.load(Relaxed) > 0));
    let rx = FakeIlpTcp::start(port);
    assert!(wait_until(Duration::from_secs(10), || keys_of("fills", &rx.lines()) == 200));
    st.shutdown();
    let lines = rx.lines();
    assert_eq!(keys_of("orders", &lines), 200);
    let kimp_rows = keys_of("kimp", &lines) as u64;
    assert!(kimp_rows < 200, "telemetry should have been dropped");
    assert!(stats.spool_dropped_rows.load(Relaxed) >= 200 - kimp_rows);
    std::fs::remove_dir_all(&dir).unwrap();
}
