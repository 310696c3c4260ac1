//! Replay of recorded market data (the formats in `shared/data`), paced by the recorded
//! exchange times at the simulator's speed, with timestamps moved to the simulated clock.
//!
//! - Binance USDT-M, hftbacktest collector format: gzip lines `<local_ts> <json>`, the JSON
//!   being the combined-stream envelope, or a bare REST depth snapshot. The book starts at
//!   the first snapshot; depth events older than it are skipped, later ones are applied and
//!   republished with their recorded `U/u/pu`.
//! - Upbit, cryptofeed format: `<unix_ts>: b'<json>'` lines (SIMPLE keys), after a header.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use kimp_core::units::parse_decimal;
use serde_json::Value;

use super::binance_venue::BinMarket;
use super::book::{DepthDiff, Px, Qt, SimBook};
use super::config::CoinSpec;
use super::events::{MdEvent, Out};
use super::server::{Shared, lock};

/// Which venue a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// Binance USDT-M collector lines.
    Binance,
    /// Upbit cryptofeed lines.
    Upbit,
}

/// Opens a file, transparently un-gzipping.
pub fn open(path: &Path) -> std::io::Result<Box<dyn BufRead + Send>> {
    let f = File::open(path)?;
    let gz = path.extension().is_some_and(|e| e == "gz");
    Ok(if gz {
        Box::new(BufReader::new(flate2::read::GzDecoder::new(f)))
    } else {
        Box::new(BufReader::new(f))
    })
}

/// Detects the format from the first lines.
pub fn detect(path: &Path) -> std::io::Result<FileKind> {
    let r = open(path)?;
    for line in r.lines().take(20) {
        let line = line?;
        if line.contains(": b'{")
            || line.starts_with("configuration:")
            || line.contains("upbit.com")
        {
            return Ok(FileKind::Upbit);
        }
        if line.contains("\"stream\"") || line.contains("\"lastUpdateId\"") {
            return Ok(FileKind::Binance);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{}: not a recognised recording", path.display()),
    ))
}

fn lv(v: &Value) -> Vec<(Px, Qt)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| {
                    let p = parse_decimal(l.get(0)?.as_str()?.as_bytes())?;
                    let q = parse_decimal(l.get(1)?.as_str()?.as_bytes())?;
                    Some((p, q))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn num(v: Option<&Value>) -> Option<i64> {
    let v = v?;
    match v {
        Value::String(s) => parse_decimal(s.as_bytes()),
        Value::Number(n) => parse_decimal(n.to_string().as_bytes()),
        _ => None,
    }
}

/// Paces one recorded event: waits until its offset from the first event is due.
struct Pacer {
    first: Option<u64>,
}

impl Pacer {
    /// Waits, then returns the simulated time for a recorded time `t` (ms); `None` when
    /// the simulator is stopping.
    fn wait(&mut self, sh: &Shared, t: u64) -> Option<u64> {
        let first = *self.first.get_or_insert(t);
        let off = t.saturating_sub(first);
        while sh.elapsed_ms() < off {
            if sh.stopping() {
                return None;
            }
            let left = (off - sh.elapsed_ms()) as f64 / sh.clock.speed;
            thread::sleep(Duration::from_millis(left.clamp(1.0, 20.0) as u64));
        }
        Some(sh.clock.start_ms + off)
    }
}

fn ensure_binance_market(sh: &Shared, sym: &str) {
    let mut w = lock(&sh.world);
    w.replayed_binance.insert(sym.to_owned());
    if w.binance.markets.contains_key(sym) {
        return;
    }
    let base = sym.trim_end_matches("USDT");
    let spec = match base {
        "BTC" => CoinSpec::btc(),
        "ETH" => CoinSpec::eth(),
        _ => CoinSpec {
            base: base.to_owned(),
            bin_tick: 1_000,
            bin_price_dp: 5,
            bin_step: 100_000,
            bin_qty_dp: 3,
            bin_min_notional: 5 * 100_000_000,
            ..CoinSpec::btc()
        },
    };
    w.binance.markets.insert(
        sym.to_owned(),
        BinMarket {
            spec,
            symbol: sym.to_owned(),
            book: SimBook::new(0, 0),
            shaper: None,
            mark: 0,
            index: 0,
            funding_rate: 0,
            last_funding_rate: 0,
            last_bbo: ((0, 0), (0, 0)),
            funding_history: Vec::new(),
        },
    );
}

/// Replays Binance files one after the other (contiguous recordings of one symbol).
pub fn run_binance(sh: Arc<Shared>, files: Vec<PathBuf>, sym_hint: String) {
    let mut pacer = Pacer { first: None };
    let mut synced: Option<u64> = None; // last applied u
    let mut pending: Vec<(String, Value)> = Vec::new();
    for f in files {
        let Ok(r) = open(&f) else { continue };
        for line in r.lines() {
            let Ok(line) = line else { break };
            let Some((_, json)) = line.split_once(' ') else { continue };
            let Ok(v) = serde_json::from_str::<Value>(json) else { continue };
            if sh.stopping() {
                return;
            }
            super::supervise::checkpoint("sim-replay");
            if let Some(id) = v.get("lastUpdateId").and_then(Value::as_u64) {
                // A REST snapshot: (re)start the book of the symbol seen in the stream.
                let sym =
                    pending.first().map(|(s, _)| s.clone()).unwrap_or_else(|| sym_hint.clone());
                ensure_binance_market(&sh, &sym);
                if let Some(m) = lock(&sh.world).binance.markets.get_mut(&sym) {
                    m.book.reset(id, &lv(&v["bids"]), &lv(&v["asks"]));
                }
                synced = Some(id);
                let buffered = std::mem::take(&mut pending);
                for (_, ev) in buffered {
                    if !publish_binance(&sh, &mut pacer, &ev, &mut synced) {
                        return;
                    }
                }
                continue;
            }
            let Some(stream) = v.get("stream").and_then(Value::as_str) else { continue };
            let sym = stream.split('@').next().unwrap_or("").to_ascii_uppercase();
            if synced.is_none() {
                ensure_binance_market(&sh, &sym);
                if stream.contains("@depth") {
                    pending.push((sym, v));
                    if pending.len() > 200_000 {
                        pending.remove(0);
                    }
                    continue;
                }
            }
            if !publish_binance(&sh, &mut pacer, &v, &mut synced) {
                return;
            }
        }
    }
}

fn publish_binance(sh: &Shared, pacer: &mut Pacer, v: &Value, synced: &mut Option<u64>) -> bool {
    let stream = v.get("stream").and_then(Value::as_str).unwrap_or("");
    let d = &v["data"];
    let sym = d.get("s").and_then(Value::as_str).unwrap_or("").to_owned();
    let e = d.get("E").and_then(Value::as_u64).unwrap_or(0);
    let Some(at) = pacer.wait(sh, e) else { return false };
    let shift = |t: u64| at + t.saturating_sub(e);
    let out = if stream.contains("@depth") {
        let (fu, lu) = (d["U"].as_u64().unwrap_or(0), d["u"].as_u64().unwrap_or(0));
        if synced.is_some_and(|l| lu < l) {
            return true; // older than the book
        }
        *synced = Some(lu);
        let diff = DepthDiff {
            first_id: fu,
            last_id: lu,
            prev_id: d["pu"].as_u64().unwrap_or(0),
            bids: lv(&d["b"]),
            asks: lv(&d["a"]),
        };
        lock(&sh.world).replay_binance_depth(&sym, at, shift(d["T"].as_u64().unwrap_or(e)), diff)
    } else {
        let w = lock(&sh.world);
        let Some(m) = w.binance.markets.get(&sym) else { return true };
        let (pdp, qdp) = (m.spec.bin_price_dp, m.spec.bin_qty_dp);
        match d.get("e").and_then(Value::as_str) {
            Some("bookTicker") => Some(Out::Md(MdEvent::BinBookTicker {
                sym: sym.clone(),
                u: d["u"].as_u64().unwrap_or(0),
                e: at,
                t: shift(d["T"].as_u64().unwrap_or(e)),
                bid: (num(d.get("b")).unwrap_or(0), num(d.get("B")).unwrap_or(0)),
                ask: (num(d.get("a")).unwrap_or(0), num(d.get("A")).unwrap_or(0)),
                pdp,
                qdp,
            })),
            Some("trade") | Some("aggTrade") => Some(Out::Md(MdEvent::BinTrade {
                sym: sym.clone(),
                e: at,
                id: d.get("t").or_else(|| d.get("a")).and_then(Value::as_u64).unwrap_or(0),
                px: num(d.get("p")).unwrap_or(0),
                qty: num(d.get("q")).unwrap_or(0),
                buyer_maker: d["m"].as_bool().unwrap_or(false),
                pdp,
                qdp,
            })),
            Some("markPriceUpdate") => Some(Out::Md(MdEvent::BinMark {
                sym: sym.clone(),
                e: at,
                mark: num(d.get("p")).unwrap_or(0),
                index: num(d.get("i")).unwrap_or(0),
                rate: num(d.get("r")).unwrap_or(0),
                next_funding: shift(d["T"].as_u64().unwrap_or(e)),
            })),
            _ => None,
        }
    };
    if let Some(o) = out {
        sh.publish(vec![o]);
    }
    true
}

/// Replays Upbit cryptofeed recordings.
pub fn run_upbit(sh: Arc<Shared>, files: Vec<PathBuf>) {
    let mut pacer = Pacer { first: None };
    for f in files {
        let Ok(mut r) = open(&f) else { continue };
        let mut text = String::new();
        if r.read_to_string(&mut text).is_err() {
            continue;
        }
        for line in text.lines() {
            if sh.stopping() {
                return;
            }
            super::supervise::checkpoint("sim-replay");
            let Some((_, rest)) = line.split_once(": b'") else { continue };
            let json = rest.strip_suffix('\'').unwrap_or(rest);
            if json.contains("\\x") {
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(json) else { continue };
            let g = |a: &str, b: &str| v.get(a).or_else(|| v.get(b)).cloned();
            let code =
                g("cd", "code").and_then(|x| x.as_str().map(str::to_owned)).unwrap_or_default();
            let ts = g("tms", "timestamp").and_then(|x| x.as_u64()).unwrap_or(0);
            let Some(at) = pacer.wait(&sh, ts) else { return };
            let out = match g("ty", "type").as_ref().and_then(Value::as_str) {
                Some("orderbook") => {
                    let units = g("obu", "orderbook_units")
                        .and_then(|u| u.as_array().cloned())
                        .unwrap_or_default();
                    let side = |p: &str, pl: &str, q: &str, ql: &str| -> Vec<(Px, Qt)> {
                        units
                            .iter()
                            .filter_map(|u| {
                                Some((
                                    num(u.get(p).or_else(|| u.get(pl)))?,
                                    num(u.get(q).or_else(|| u.get(ql)))?,
                                ))
                            })
                            .filter(|l| l.0 > 0)
                            .collect()
                    };
                    let bids = side("bp", "bid_price", "bs", "bid_size");
                    let asks = side("ap", "ask_price", "as", "ask_size");
                    let mut w = lock(&sh.world);
                    w.replayed_upbit.insert(code.clone());
                    vec![w.replay_upbit_book(&code, at, bids, asks)]
                }
                Some("trade") => {
                    let px = num(g("tp", "trade_price").as_ref()).unwrap_or(0);
                    let qty = num(g("tv", "trade_volume").as_ref()).unwrap_or(0);
                    let bid = g("ab", "ask_bid").as_ref().and_then(Value::as_str) == Some("BID");
                    let mut w = lock(&sh.world);
                    w.replayed_upbit.insert(code.clone());
                    let m =
                        w.upbit.markets.entry(code.clone()).or_insert_with(|| {
                            super::upbit_venue::UpbitMarket::new(&code, None, 0)
                        });
                    m.record_trade(at, px, qty, bid).into_iter().map(Out::Md).collect()
                }
                _ => Vec::new(),
            };
            sh.publish(out);
        }
    }
}

/// Starts one replay thread per venue and symbol group (files named `<symbol>_<date>`
/// replay one after another).
pub fn start(sh: &Arc<Shared>, files: &[PathBuf]) -> std::io::Result<Vec<thread::JoinHandle<()>>> {
    let mut groups: Vec<(FileKind, String, Vec<PathBuf>)> = Vec::new();
    for f in files {
        let kind = detect(f)?;
        let stem = f
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .split('_')
            .next()
            .unwrap_or("")
            .to_owned();
        match groups.iter_mut().find(|g| g.0 == kind && g.1 == stem) {
            Some(g) => g.2.push(f.clone()),
            None => groups.push((kind, stem, vec![f.clone()])),
        }
    }
    let mut hs = Vec::new();
    for (kind, stem, fs) in groups {
        let sh = sh.clone();
        let s = sh.clone();
        hs.push(s.spawn("sim-replay", move || match kind {
            FileKind::Binance => run_binance(sh, fs, stem.to_ascii_uppercase()),
            FileKind::Upbit => run_upbit(sh, fs),
        })?);
    }
    Ok(hs)
}
