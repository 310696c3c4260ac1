//! Tick-level replay speed from the capture format, measured apart from parsing and from
//! the engine.
//!
//! Converts the real Binance USDT-M recordings of ../shared/data (BTCUSDT and ETHUSDT,
//! 2024-08-08: depth@0ms, bookTicker, trade, REST snapshots) into one capture file with
//! their receive timestamps, then measures:
//! 1. replay = read the file + decode every frame (header, venue, kind, payload slice);
//! 2. decode only, from memory (many passes over a buffer larger than the caches);
//! 3. the same frames through the gateway parser (`BinanceMarketParser`);
//! 4. parser + engine + execution model: `kimp backtest --input` on the file (command
//!    printed at the end; its JSON gives `events` and `elapsed_ms`).
//!
//! ```text
//! cargo run --release -p kimp --example capture_replay -- /tmp/kimp-capture.kcap
//! ```

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use kimp::research::capture::{CapVenue, Frame, FrameKind, FrameReader, FrameWriter};
use kimp_core::instrument::Venue;
use kimp_gateways::binance::BinanceMarketParser;
use kimp_gateways::symbols::SymbolTable;

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .map_or_else(|| std::env::temp_dir().join("kimp-capture.kcap"), PathBuf::from);
    let data =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/binance-usdm");
    let mut lines = Vec::new();
    for f in ["btcusdt_20240808.gz", "ethusdt_20240808.gz"] {
        let text = kimp::research::candles::read_text(&data.join(f))?;
        for l in text.lines() {
            if let Some((ts, json)) = l.split_once(' ')
                && let Ok(ts) = ts.parse::<u64>()
            {
                lines.push((ts, json.to_string()));
            }
        }
    }
    lines.sort_by_key(|l| l.0);
    let mut w =
        FrameWriter::new(std::io::BufWriter::new(std::fs::File::create(&out)?), lines[0].0)?;
    for (ts, json) in &lines {
        let rest = json.starts_with("{\"lastUpdateId\"");
        if rest {
            let req = b"GET /fapi/v1/depth?symbol=BTCUSDT&limit=1000";
            w.write(&Frame {
                recv_ts_ns: *ts,
                venue: CapVenue::Binance,
                kind: FrameKind::Sent,
                stream: 0,
                payload: req,
            })?;
        }
        let kind = if rest { FrameKind::Rest } else { FrameKind::Ws };
        w.write(&Frame {
            recv_ts_ns: *ts,
            venue: CapVenue::Binance,
            kind,
            stream: 0,
            payload: json.as_bytes(),
        })?;
    }
    let (frames, bytes) = (w.frames(), w.bytes());
    w.flush()?;
    drop(w);
    println!(
        "capture: {} frames, {:.1} MB, mean payload {:.0} B -> {}",
        frames,
        bytes as f64 / 1e6,
        (bytes as f64 - 24.0) / frames as f64 - 16.0,
        out.display()
    );

    // 1. read + decode, file in the page cache.
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let buf = kimp::research::capture::map_file(&out)?;
        let mut n = 0u64;
        let mut sum = 0u64;
        let mut r = FrameReader::new(&buf).map_err(|e| anyhow::anyhow!("{e}"))?;
        while let Some(f) = r.next_frame() {
            n += 1;
            sum = sum.wrapping_add(f.recv_ts_ns ^ f.payload.len() as u64);
        }
        black_box(sum);
        assert_eq!(n, frames);
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "1. read file (mmap) + decode frames: {:.1} M frames/s ({:.2} GB/s), best of 5",
        frames as f64 / best / 1e6,
        bytes as f64 / best / 1e9
    );

    // 2. decode only, from memory.
    let buf = std::fs::read(&out)?;
    let passes = (20_000_000 / frames).max(1);
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let mut sum = 0u64;
        for _ in 0..passes {
            let mut r = FrameReader::new(black_box(&buf)).map_err(|e| anyhow::anyhow!("{e}"))?;
            while let Some(f) = r.next_frame() {
                sum = sum.wrapping_add(f.recv_ts_ns ^ f.payload.len() as u64 ^ f.venue as u64);
            }
        }
        black_box(sum);
        best = best.min(t.elapsed().as_secs_f64());
    }
    let n = (passes * frames) as f64;
    println!(
        "2. decode frames from memory: {:.1} M frames/s over {} frames ({} passes), best of 3",
        n / best / 1e6,
        passes * frames,
        passes
    );

    // 3. + the gateway parser on every WS payload.
    let markets = kimp::research::tick_mode::markets(
        &[
            ("BTC".into(), "KRW-BTC".into(), "BTCUSDT".into()),
            ("ETH".into(), "KRW-ETH".into(), "ETHUSDT".into()),
        ],
        false,
        (50_000, 40_000),
    );
    let mut p =
        BinanceMarketParser::new(SymbolTable::for_venue(Venue::Binance, &markets.instruments));
    let t = Instant::now();
    let mut events = 0u64;
    let mut r = FrameReader::new(&buf).map_err(|e| anyhow::anyhow!("{e}"))?;
    while let Some(f) = r.next_frame() {
        if f.kind == FrameKind::Ws && p.parse(f.payload).is_ok_and(|m| m.is_event()) {
            events += 1;
        }
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "3. decode + Binance parser: {:.2} M frames/s ({events} events)",
        frames as f64 / s / 1e6
    );
    println!(
        "4. parser + engine: target/release/kimp backtest --config config/default.toml --input {} --json   (events / elapsed_ms)",
        out.display()
    );
    Ok(())
}
