//! The recorded inputs: real Binance USDT-M depth frames and REST snapshot, real Upbit
//! order books (recordings and protocol fixtures). File I/O and decompression happen
//! here, before any timing.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};

/// `../shared` beside the workspace, or `$KIMP_SHARED`.
pub fn shared(rel: &str) -> PathBuf {
    let base = std::env::var_os("KIMP_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    base.join(rel)
}

fn gz_lines(rel: &str) -> Result<Vec<Vec<u8>>> {
    let p = shared(rel);
    let f = std::fs::File::open(&p).with_context(|| format!("opening {}", p.display()))?;
    BufReader::new(flate2::read::GzDecoder::new(f))
        .split(b'\n')
        .map(|l| l.with_context(|| format!("reading {}", p.display())))
        .collect()
}

/// The Binance recording used everywhere.
pub const BINANCE_FILE: &str = "data/binance-usdm/btcusdt_20240808.gz";

/// Real Binance depth frames in recorded order and the REST snapshot they bridge.
#[derive(Debug)]
pub struct Binance {
    /// Every `depthUpdate` frame (combined-stream envelope, unmodified bytes).
    pub frames: Vec<Vec<u8>>,
    /// The REST depth snapshot (1,000 levels a side).
    pub snapshot: Vec<u8>,
}

impl Binance {
    /// Loads [`BINANCE_FILE`].
    pub fn load() -> Result<Self> {
        let lines = gz_lines(BINANCE_FILE)?;
        // `<local ts> <json>`
        let json =
            |l: &Vec<u8>| l[l.iter().position(|&c| c == b' ').map_or(0, |i| i + 1)..].to_vec();
        let frames: Vec<Vec<u8>> = lines
            .iter()
            .map(json)
            .filter(|j| j.windows(13).any(|w| w == b"depthUpdate\","))
            .collect();
        let snapshot = lines
            .iter()
            .map(json)
            .find(|j| j.starts_with(b"{\"lastUpdateId\""))
            .ok_or_else(|| anyhow!("no REST snapshot in {BINANCE_FILE}"))?;
        Ok(Self { frames, snapshot })
    }

    /// Total payload bytes of the depth frames.
    pub fn bytes(&self) -> usize {
        self.frames.iter().map(Vec::len).sum()
    }
}

/// Real Upbit order books.
#[derive(Debug)]
pub struct Upbit {
    /// SIMPLE-format books from the recording (15 units, KRW-ADA, KRW-STX, ...).
    pub simple: Vec<Vec<u8>>,
    /// Codes seen in `simple`.
    pub simple_codes: Vec<String>,
    /// DEFAULT-format KRW-BTC books from the protocol fixtures (15 units).
    pub krw_btc: Vec<Vec<u8>>,
    /// The DEFAULT-format KRW-USDT book from the fixtures.
    pub krw_usdt: Vec<u8>,
}

impl Upbit {
    /// Loads the recording and the fixtures.
    pub fn load() -> Result<Self> {
        let simple: Vec<Vec<u8>> = gz_lines("data/upbit/UPBIT-d78752.0.gz")?
            .iter()
            .filter_map(|l| {
                // `<ts>: b'<payload>'`
                let i = l.windows(3).position(|w| w == b"b'{")?;
                let b = &l[i + 2..];
                let b = b.strip_suffix(b"'").unwrap_or(b);
                b.windows(11).any(|w| w == b"\"orderbook\"").then(|| b.to_vec())
            })
            .collect();
        let mut simple_codes: Vec<String> = Vec::new();
        for m in &simple {
            if let Some(c) = field_str(m, b"\"cd\":\"")
                && !simple_codes.contains(&c)
            {
                simple_codes.push(c);
            }
        }
        let p = shared("fixtures/protocol/upbit_orderbook.jsonl");
        let text = std::fs::read_to_string(&p).with_context(|| format!("{}", p.display()))?;
        let lines: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
        let krw_btc: Vec<Vec<u8>> = lines
            .iter()
            .filter(|l| field_str(l, b"\"code\":\"").as_deref() == Some("KRW-BTC"))
            .cloned()
            .collect();
        let krw_usdt = lines
            .iter()
            .find(|l| field_str(l, b"\"code\":\"").as_deref() == Some("KRW-USDT"))
            .cloned()
            .ok_or_else(|| anyhow!("no KRW-USDT book in the fixtures"))?;
        if krw_btc.is_empty() {
            return Err(anyhow!("no KRW-BTC book in the fixtures"));
        }
        Ok(Self { simple, simple_codes, krw_btc, krw_usdt })
    }
}

/// The string value after `key` (e.g. `"code":"`).
fn field_str(m: &[u8], key: &[u8]) -> Option<String> {
    let i = m.windows(key.len()).position(|w| w == key)? + key.len();
    let n = m[i..].iter().position(|&c| c == b'"')?;
    Some(String::from_utf8_lossy(&m[i..i + n]).into_owned())
}

/// Rewrites every `"ask_price":N` / `"bid_price":N` in a DEFAULT Upbit book to `N + add`
/// (KRW, integers), keeping every other byte: the book keeps its real shape and sizes
/// while its level sits where the benchmark needs the premium to be.
pub fn shift_upbit_prices(msg: &[u8], add: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 64);
    let mut i = 0;
    while i < msg.len() {
        let rest = &msg[i..];
        let key = [&b"\"ask_price\":"[..], &b"\"bid_price\":"[..]]
            .into_iter()
            .find(|k| rest.starts_with(k));
        if let Some(k) = key {
            out.extend_from_slice(k);
            i += k.len();
            let n = msg[i..].iter().take_while(|c| c.is_ascii_digit() || **c == b'.').count();
            let text = std::str::from_utf8(&msg[i..i + n]).unwrap_or("0");
            let v: f64 = text.parse().unwrap_or(0.0);
            let shifted = v as i64 + add;
            out.extend_from_slice(shifted.to_string().as_bytes());
            i += n;
        } else {
            out.push(msg[i]);
            i += 1;
        }
    }
    out
}

/// Best bid of a DEFAULT Upbit book (the first unit's `bid_price`), KRW.
pub fn upbit_best_bid(msg: &[u8]) -> Option<i64> {
    let k = b"\"bid_price\":";
    let i = msg.windows(k.len()).position(|w| w == k)? + k.len();
    let n = msg[i..].iter().take_while(|c| c.is_ascii_digit() || **c == b'.').count();
    std::str::from_utf8(&msg[i..i + n]).ok()?.parse::<f64>().ok().map(|v| v as i64)
}

/// Where the exchange timestamp's digits are in an Upbit book (`"timestamp":` or
/// `"tms":`): (offset, length).
pub fn upbit_ts_digits(msg: &[u8]) -> Option<(usize, usize)> {
    [&b"\"timestamp\":"[..], &b"\"tms\":"[..]].into_iter().find_map(|k| {
        let i = msg.windows(k.len()).position(|w| w == k)? + k.len();
        let n = msg[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        (n > 0).then_some((i, n))
    })
}
