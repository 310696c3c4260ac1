//! Parse throughput on real recorded data (release mode):
//! `cargo run --release -p kimp-gateways --example parse_bench`
//!
//! Binance: every `depthUpdate` of binance-usdm/btcusdt_20240808.gz (mean ~1.6 KB, ~67
//! levels), parsed by the fast scanner and by the simd-json path, and parsed + applied to
//! a `kimp_core::book::Book` (starting from the file's REST snapshot each pass). Upbit:
//! every SIMPLE order book of upbit/UPBIT-d78752.0.gz plus the DEFAULT fixtures. File
//! I/O and decompression are excluded; each figure is the median of 7 passes.

use std::io::{BufRead, BufReader};
use std::time::Instant;

use kimp_core::book::{Book, SeqRule};
use kimp_core::event::Event;
use kimp_core::instrument::{InstrumentId, Symbol, Venue};
use kimp_core::testkit;
use kimp_core::units::Nanos;
use kimp_gateways::binance::BinanceMarketParser;
use kimp_gateways::codec::MarketMsg;
use kimp_gateways::symbols::SymbolTable;
use kimp_gateways::upbit::UpbitMarketParser;

fn shared(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared").join(rel)
}

fn gz_lines(rel: &str) -> Vec<Vec<u8>> {
    let f = std::fs::File::open(shared(rel)).expect("data file");
    BufReader::new(flate2::read::GzDecoder::new(f)).split(b'\n').map(|l| l.expect("read")).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn run(name: &str, n: usize, bytes: usize, mut f: impl FnMut() -> u64) {
    let mut ns = Vec::new();
    let mut check = 0;
    f(); // warm-up
    for _ in 0..7 {
        let t = Instant::now();
        check = f();
        ns.push(t.elapsed().as_nanos() as f64 / n as f64);
    }
    let m = median(ns);
    println!(
        "{name:<44} {m:>8.1} ns/msg {:>10.0} msg/s {:>7.0} MB/s  (n={n}, check={check})",
        1e9 / m,
        bytes as f64 / n as f64 / m * 1e3
    );
}

fn main() {
    let markets = testkit::btc_markets();
    let table = SymbolTable::for_venue(Venue::Binance, &markets.instruments);
    let lines = gz_lines("data/binance-usdm/btcusdt_20240808.gz");
    let json = |l: &Vec<u8>| l[l.iter().position(|&c| c == b' ').map_or(0, |i| i + 1)..].to_vec();
    let depth: Vec<Vec<u8>> =
        lines.iter().map(json).filter(|j| j.windows(13).any(|w| w == b"depthUpdate\",")).collect();
    let snapshot =
        lines.iter().map(json).find(|j| j.starts_with(b"{\"lastUpdateId\"")).expect("snapshot");
    let bytes: usize = depth.iter().map(Vec::len).sum();
    let levels: usize = {
        let mut p = BinanceMarketParser::new(table.clone());
        depth
            .iter()
            .map(|m| match p.parse(m) {
                Ok(MarketMsg::Event(Event::Depth(d))) => d.bids.len() + d.asks.len(),
                _ => 0,
            })
            .sum()
    };
    println!(
        "binance depth: {} msgs, mean {:.0} B, mean {:.1} levels",
        depth.len(),
        bytes as f64 / depth.len() as f64,
        levels as f64 / depth.len() as f64
    );

    let mut p = BinanceMarketParser::new(table.clone());
    run("binance depth parse (scanner)", depth.len(), bytes, || {
        let mut n = 0u64;
        for m in &depth {
            if let Ok(MarketMsg::Event(Event::Depth(d))) = p.parse(m) {
                n += d.bids.len() as u64;
            }
        }
        n
    });
    let mut p = BinanceMarketParser::new(table.clone());
    run("binance depth parse (simd-json tape)", depth.len(), bytes, || {
        let mut n = 0u64;
        for m in &depth {
            if let Ok(MarketMsg::Event(Event::Depth(d))) = p.parse_simd(m) {
                n += d.bids.len() as u64;
            }
        }
        n
    });
    let mut p = BinanceMarketParser::new(table.clone());
    let mut sp = BinanceMarketParser::new(table.clone());
    let mut book = Book::new(SeqRule::Futures, kimp_core::engine::BOOK_DEPTH);
    run("binance depth parse+apply (scanner, core Book)", depth.len(), bytes, || {
        if let Ok(MarketMsg::Event(Event::Book(s))) = sp.parse_snapshot(InstrumentId(1), &snapshot)
        {
            book.apply_snapshot(&s, Nanos(0));
        }
        let mut applied = 0u64;
        for m in &depth {
            if let Ok(MarketMsg::Event(Event::Depth(d))) = p.parse(m)
                && book.apply_diff(&d, Nanos(1)) == kimp_core::book::DiffOutcome::Applied
            {
                applied += 1;
            }
        }
        applied
    });

    let bbo: Vec<Vec<u8>> =
        lines.iter().map(json).filter(|j| j.windows(12).any(|w| w == b"@bookTicker\"")).collect();
    let bbytes: usize = bbo.iter().map(Vec::len).sum();
    let mut p = BinanceMarketParser::new(table.clone());
    run("binance bookTicker parse (scanner, enveloped)", bbo.len(), bbytes, || {
        bbo.iter().filter(|m| p.parse(m).is_ok_and(|r| r.is_event())).count() as u64
    });
    let mut p = BinanceMarketParser::new(table.clone());
    run("binance bookTicker parse (simd-json tape)", bbo.len(), bbytes, || {
        bbo.iter().filter(|m| p.parse_simd(m).is_ok_and(|r| r.is_event())).count() as u64
    });

    // Upbit.
    let mut up_table = SymbolTable::for_venue(Venue::Upbit, &markets.instruments);
    for (i, c) in [
        "KRW-ADA",
        "KRW-STX",
        "KRW-DAWN",
        "KRW-ANKR",
        "KRW-IQ",
        "KRW-BAT",
        "USDT-ADA",
        "BTC-FLOW",
        "BTC-BASIC",
        "BTC-CHZ",
    ]
    .iter()
    .enumerate()
    {
        up_table.insert(Symbol::new(c).expect("symbol"), InstrumentId(10 + i as u16));
    }
    let books: Vec<Vec<u8>> = gz_lines("data/upbit/UPBIT-d78752.0.gz")
        .iter()
        .filter_map(|l| {
            let i = l.windows(3).position(|w| w == b"b'{")?;
            let b = &l[i + 2..];
            let b = b.strip_suffix(b"'").unwrap_or(b);
            b.windows(11).any(|w| w == b"\"orderbook\"").then(|| b.to_vec())
        })
        .collect();
    let ubytes: usize = books.iter().map(Vec::len).sum();
    println!(
        "upbit SIMPLE books: {} msgs, mean {:.0} B",
        books.len(),
        ubytes as f64 / books.len() as f64
    );
    let mut u = UpbitMarketParser::new(up_table.clone());
    run("upbit SIMPLE orderbook parse (scanner)", books.len(), ubytes, || {
        books.iter().filter(|m| u.parse(m).is_ok_and(|r| r.is_event())).count() as u64
    });
    let mut u = UpbitMarketParser::new(up_table.clone());
    run("upbit SIMPLE orderbook parse (simd-json tape)", books.len(), ubytes, || {
        books.iter().filter(|m| u.parse_simd(m).is_ok_and(|r| r.is_event())).count() as u64
    });
    let default: Vec<Vec<u8>> =
        std::fs::read_to_string(shared("fixtures/protocol/upbit_orderbook.jsonl"))
            .expect("fixture")
            .lines()
            .map(|l| l.as_bytes().to_vec())
            .collect::<Vec<_>>();
    let default: Vec<Vec<u8>> = (0..1000).flat_map(|_| default.iter().cloned()).collect();
    let dbytes: usize = default.iter().map(Vec::len).sum();
    let mut u = UpbitMarketParser::new(up_table.clone());
    run("upbit DEFAULT orderbook parse (scanner, fixtures)", default.len(), dbytes, || {
        default.iter().filter(|m| u.parse(m).is_ok_and(|r| r.is_event())).count() as u64
    });
    let mut u = UpbitMarketParser::new(up_table.clone());
    run("upbit DEFAULT orderbook parse (simd-json, fixtures)", default.len(), dbytes, || {
        default.iter().filter(|m| u.parse_simd(m).is_ok_and(|r| r.is_event())).count() as u64
    });
}
