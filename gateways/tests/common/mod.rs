//! Shared helpers for the codec tests: fixture paths and recorded-data readers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};

use kimp_core::instrument::{Instrument, InstrumentId, Symbol, Venue};
use kimp_core::testkit;
use kimp_gateways::symbols::SymbolTable;

#[path = "../../../testdata/locate.rs"]
pub mod locate;

/// One fixture file's text.
pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(locate::testdata(&format!("fixtures/protocol/{name}"))).expect(name)
}

/// Non-empty lines of a `.jsonl` fixture.
pub fn fixture_lines(name: &str) -> Vec<String> {
    fixture(name).lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect()
}

/// Lines of a gzip file.
pub fn gz_lines(path: &std::path::Path) -> Vec<Vec<u8>> {
    let f = std::fs::File::open(path).expect("open");
    let r = BufReader::with_capacity(1 << 20, flate2::read::GzDecoder::new(f));
    r.split(b'\n').map(|l| l.expect("read")).filter(|l| !l.is_empty()).collect()
}

/// The JSON part of a `<ts> <json>` recording line.
pub fn recorded_json(line: &[u8]) -> &[u8] {
    match line.iter().position(|&c| c == b' ') {
        Some(i) => &line[i + 1..],
        None => line,
    }
}

/// Sorted `.gz` files of a data folder (not the cryptofeed-alt subfolder), found by `root`
/// ([`locate::testdata`], or [`locate::shared`] for the full recordings).
pub fn data_files(root: fn(&str) -> std::path::PathBuf, dir: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(root(&format!("data/{dir}")))
        .expect("data dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gz"))
        .collect();
    v.sort();
    v
}

/// The instruments used across the codec tests: the testkit's BTC markets plus ETHUSDT
/// on both Binance venues and BTCUSDT spot.
pub fn instruments() -> Vec<Instrument> {
    let mut v = testkit::btc_markets().instruments; // 0 KRW-BTC, 1 BTCUSDT, 2 KRW-USDT
    v.push(testkit::binance_perp("ETHUSDT")); // 3
    let mut spot = testkit::binance_perp("BTCUSDT");
    spot.venue = Venue::BinanceSpot;
    v.push(spot); // 4
    let mut spot_eth = testkit::binance_perp("ETHUSDT");
    spot_eth.venue = Venue::BinanceSpot;
    v.push(spot_eth); // 5
    v
}

/// Symbol table of a venue over [`instruments`].
pub fn table(venue: Venue) -> SymbolTable {
    SymbolTable::for_venue(venue, &instruments())
}

/// The Upbit symbols found in the recorded sample data (the recorder subscribed to
/// these), added after the testkit ones.
pub fn upbit_recorded_table() -> SymbolTable {
    let mut t = table(Venue::Upbit);
    let codes = [
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
        "BTC-ARK",
        "BTC-FCT2",
        "BTC-STPT",
        "BTC-ITAM",
        "BTC-MARO",
        "KRW-WAVES",
        "BTC-AQT",
        "BTC-XTZ",
        "KRW-LAMB",
        "BTC-PAX",
    ];
    for (i, c) in codes.iter().enumerate() {
        t.insert(Symbol::new(c).unwrap(), InstrumentId(100 + i as u16));
    }
    t
}

/// Instrument id of the file's symbol (`btcusdt_…` / `ethusdt_…`) for REST snapshots.
pub fn file_inst(path: &std::path::Path, venue: Venue) -> InstrumentId {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let sym = name.split('_').next().unwrap();
    table(venue).get(sym.as_bytes()).expect("file symbol")
}

/// Upbit recording lines (`<ts>: b'<json>'`) → JSON payloads.
pub fn upbit_recorded(path: &std::path::Path) -> Vec<Vec<u8>> {
    let raw: Vec<Vec<u8>> = if path.extension().is_some_and(|x| x == "gz") {
        gz_lines(path)
    } else {
        std::fs::read(path).expect("read").split(|&c| c == b'\n').map(<[u8]>::to_vec).collect()
    };
    raw.into_iter()
        .filter_map(|l| {
            let i = l.windows(3).position(|w| w == b"b'{")?;
            let body = &l[i + 2..];
            let body = body.strip_suffix(b"'").unwrap_or(body);
            Some(body.to_vec())
        })
        .collect()
}
