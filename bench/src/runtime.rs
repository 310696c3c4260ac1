//! The real runtime against the simulator over loopback, for memory and wire-to-wire
//! latency.
//!
//! The bench process starts the simulator (N coins) and a timestamping TCP tap in front of
//! it, then runs the runtime (`kimp run`'s `run::build` + the trading loop + the journal
//! sync thread + a consumer of its telemetry channel) in a *child process*, so the child's
//! peak RSS (`VmHWM`) is the runtime's alone. The child also counts the allocations its
//! loop thread makes after warm-up and reports the loop's own stage histograms (frame
//! received → signed request written). The tap timestamps, on the bench side, every chunk
//! of market data it forwards to the runtime and every order request it receives from it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use kimp::runtime::config::{CoinSection, Config};
use kimp::runtime::demo::{demo_sim, sim_keys};
use kimp::runtime::metrics::{STAGE_NAMES, Stage};
use kimp::runtime::run::{self, BuildOptions};
use kimp::sim::Simulator;
use kimp::sim::config::{CoinSpec, SimConfig};
use serde_json::{Value, json};

use crate::stats::{hist, pct};

/// The simulated market: the demo's (premium around the 3 % entry threshold, so pairs
/// open and close) with `coins` coins: BTC, ETH, then ETH-like coins.
pub fn sim_config(coins: usize, seed: u64) -> SimConfig {
    let mut s = demo_sim(seed, 60.0);
    let names = ["SOL", "XRP", "ADA", "DOGE", "AVAX", "LINK", "DOT", "TRX"];
    // A livelier premium than the demo's, so a short run sees several entries and exits.
    s.market.premium_vol_per_sqrt_h = 0.05;
    s.market.premium_jumps_per_h = 120.0;
    s.coins.truncate(coins.min(2));
    for (i, n) in names.iter().take(coins.saturating_sub(2)).enumerate() {
        let mut c = CoinSpec::eth();
        c.base = (*n).to_string();
        c.usdt_price = 100.0 + 37.0 * i as f64;
        c.bin_level_qty = 200.0;
        c.upbit_level_qty = 40.0;
        c.premium_mean = 0.03;
        s.coins.push(c);
        s.balances.upbit_coins.push(((*n).to_string(), 1_000.0));
    }
    s
}

/// One sample of the tap: when, and whether market data left or an order arrived.
#[derive(Clone, Copy, Debug)]
enum Tap {
    Market(Instant),
    Order(Instant),
}

/// A TCP tap in front of one simulated venue.
struct TapProxy {
    addr: SocketAddr,
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    log: Arc<Mutex<Vec<Tap>>>,
    upstream: bool,
    kind: Arc<Mutex<u8>>,
) {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now = Instant::now();
        let chunk = &buf[..n];
        if upstream {
            // Runtime → venue: classify the connection on its first bytes; log orders.
            let mut k = kind.lock().unwrap_or_else(|p| p.into_inner());
            if *k == 0 {
                let head = String::from_utf8_lossy(&chunk[..n.min(512)]).to_ascii_lowercase();
                let ws = head.contains("upgrade: websocket");
                let private = head.contains("private") || head.contains("listenkey");
                *k = if ws && !private { 1 } else { 2 };
            }
            if chunk.starts_with(b"POST /fapi/v1/order ") || chunk.starts_with(b"POST /v1/orders ")
            {
                log.lock().unwrap_or_else(|p| p.into_inner()).push(Tap::Order(now));
            }
        } else if *kind.lock().unwrap_or_else(|p| p.into_inner()) == 1 {
            log.lock().unwrap_or_else(|p| p.into_inner()).push(Tap::Market(now));
        }
        if to.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

impl TapProxy {
    fn start(target: SocketAddr, log: Arc<Mutex<Vec<Tap>>>, stop: Arc<AtomicBool>) -> Result<Self> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let addr = l.local_addr()?;
        l.set_nonblocking(true)?;
        std::thread::Builder::new().name("bench-tap".into()).spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let Ok(s) = TcpStream::connect(target) else { continue };
                        let _ = c.set_nodelay(true);
                        let _ = s.set_nodelay(true);
                        let kind = Arc::new(Mutex::new(0u8));
                        for (a, b, up) in [
                            (c.try_clone(), s.try_clone(), true),
                            (s.try_clone(), c.try_clone(), false),
                        ] {
                            if let (Ok(a), Ok(b)) = (a, b) {
                                let (log, kind) = (log.clone(), kind.clone());
                                let _ = std::thread::Builder::new()
                                    .name("bench-pump".into())
                                    .spawn(move || pump(a, b, log, up, kind));
                            }
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        })?;
        Ok(Self { addr })
    }
}

fn swap_host(url: &str, addr: SocketAddr) -> String {
    // scheme://host:port/path → scheme://addr/path
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    format!("{scheme}://{addr}{path}")
}

/// Runs the runtime child against a fresh simulator with `coins` coins for `secs` seconds.
pub fn measure(exe: &Path, coins: usize, secs: f64, cpus: &crate::affinity::Cpus) -> Result<Value> {
    cpus.unpin();
    let sim = Simulator::start(sim_config(coins, 7)).map_err(|e| anyhow!("simulator: {e}"))?;
    let log = Arc::new(Mutex::new(Vec::with_capacity(1 << 20)));
    let stop = Arc::new(AtomicBool::new(false));
    let up = TapProxy::start(sim.upbit_addr, log.clone(), stop.clone())?;
    let bn = TapProxy::start(sim.binance_addr, log.clone(), stop.clone())?;
    let urls = [
        swap_host(&sim.urls.upbit_rest, up.addr),
        swap_host(&sim.urls.upbit_ws, up.addr),
        swap_host(&sim.urls.binance_rest, bn.addr),
        swap_host(&sim.urls.binance_ws, bn.addr),
    ];
    let names: Vec<String> = sim_config(coins, 7).coins.iter().map(|c| c.base.clone()).collect();
    let dir = std::env::temp_dir().join(format!("kimp-bench-rt-{}-{coins}", std::process::id()));
    let mut cmd = Command::new(exe);
    cmd.arg("--runtime-child")
        .arg(format!("{secs}"))
        .arg(dir.as_os_str())
        .arg(names.join(","))
        .args(&urls);
    if std::env::var_os("KIMP_BENCH_ALLOC_TRACE").is_some() {
        // The child's allocation backtraces go straight to our stderr.
        cmd.stderr(std::process::Stdio::inherit());
    }
    let out = cmd.output().context("running the runtime child")?;
    stop.store(true, Ordering::Relaxed);
    sim.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or("");
    let mut child: Value = serde_json::from_str(last).map_err(|e| {
        anyhow!(
            "runtime child gave no JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    // Wire-to-wire as seen by the tap: order arrival − the last market-data chunk sent
    // to the runtime before it.
    let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut h = hist();
    let mut last_md: Option<Instant> = None;
    for t in &log {
        match *t {
            Tap::Market(at) => last_md = Some(at),
            Tap::Order(at) => {
                if let Some(m) = last_md {
                    let _ = h.record(((at - m).as_nanos() as u64).max(1));
                }
            }
        }
    }
    child["tap_md_to_order"] = pct(&h);
    child["tap_market_chunks"] = json!(log.iter().filter(|t| matches!(t, Tap::Market(_))).count());
    child["coins"] = json!(coins);
    Ok(child)
}

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The child: `--runtime-child SECS DIR COINS UPBIT_REST UPBIT_WS BINANCE_REST BINANCE_WS`.
pub fn child(args: &[String]) -> Result<()> {
    let [secs, dir, coins, ur, uw, br, bw] = args else {
        return Err(anyhow!(
            "--runtime-child SECS DIR COINS UPBIT_REST UPBIT_WS BINANCE_REST BINANCE_WS"
        ));
    };
    let secs: f64 = secs.parse()?;
    let dir = PathBuf::from(dir);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut cfg =
        Config::parse(include_str!("../../config/demo.toml"), Path::new("config/demo.toml"))
            .map_err(|e| anyhow!("{e}"))?;
    cfg.coins = coins
        .split(',')
        .map(|n| CoinSection {
            name: n.into(),
            upbit: format!("KRW-{n}"),
            binance: format!("{n}USDT"),
        })
        .collect();
    cfg.venues.upbit.rest_url = ur.clone();
    cfg.venues.upbit.ws_url = uw.clone();
    cfg.venues.binance.rest_url = br.clone();
    cfg.venues.binance.ws_url = bw.clone();
    cfg.runtime.journal_dir = dir.join("journal");
    cfg.store.dir = dir.join("ilp");
    cfg.risk.max_open_pairs = cfg.coins.len() as u32;
    // Enter below the simulated premium's mean so pairs open as soon as they are closed:
    // more orders per second of measurement (the latency of an order does not depend on
    // the threshold that let it through).
    cfg.strategy.entry_bps = 150;
    let mut rt = run::build(&cfg, &sim_keys(), &BuildOptions::default())?;
    let stop = Arc::new(AtomicBool::new(false));
    let syncer = rt.spawn_syncer(Duration::from_millis(cfg.runtime.journal_sync_ms), stop.clone());
    let rx = rt.out_rx.clone();
    let drain = std::thread::Builder::new().name("bench-drain".into()).spawn(move || {
        let mut n = 0u64;
        while rx.recv().is_ok() {
            n += 1;
        }
        n
    })?;
    let mut tl = rt.tl;
    let start = Instant::now();
    let warm = Duration::from_secs_f64(secs / 3.0);
    let end = Duration::from_secs_f64(secs);
    while start.elapsed() < warm {
        tl.turn()?;
    }
    let before = *tl.core.engine.stats();
    let wire_before = tl.orders.stats.wire_orders;
    let a0 = crate::alloc::start();
    let mut turns = 0u64;
    while start.elapsed() < end {
        tl.turn()?;
        turns += 1;
    }
    let allocs = crate::alloc::stop(a0);
    let after = *tl.core.engine.stats();
    let wire = tl.orders.stats.wire_orders - wire_before;
    let totals = tl.core.metrics.totals();
    stop.store(true, Ordering::Relaxed);
    let hwm = status_kib("VmHWM:");
    let rss = status_kib("VmRSS:");
    let mut stages = serde_json::Map::new();
    for (i, name) in STAGE_NAMES.iter().enumerate() {
        let s = totals[i];
        stages.insert(
            (*name).into(),
            json!({"n": s.count, "p50_ns": s.p50, "p99_ns": s.p99, "p999_ns": s.p999, "max_ns": s.max}),
        );
    }
    let _ = Stage::TickToOrder;
    drop(tl);
    drop(rt.control_tx);
    if let Some(s) = syncer {
        let _ = s.join();
    }
    let _ = drain.join();
    println!(
        "{}",
        json!({
            "vm_hwm_kib": hwm,
            "vm_rss_kib": rss,
            "measured_s": secs - secs / 3.0,
            "turns": turns,
            "loop_thread_allocations_after_warmup": allocs,
            "engine_events": after.events - before.events,
            "intents": after.intents - before.intents,
            "risk_rejects": after.risk_rejects - before.risk_rejects,
            "orders_sent": wire,
            "pairs_closed": after.pairs_closed - before.pairs_closed,
            "runtime_stages_whole_run": stages,
        })
    );
    Ok(())
}
