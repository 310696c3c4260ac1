//! Peers on the same input, in the same run: hftbacktest's depth structures applying the
//! same pre-parsed diffs, and serde_json / simd-json (+ a BTreeMap book) against the
//! gateway's scanner (+ the ladder) on the same frames.

use std::collections::BTreeMap;
use std::hint::black_box;

use kimp_core::book::DiffOutcome;
use kimp_core::event::Event;
use kimp_core::instrument::Venue;
use kimp_core::testkit::{self, BTCUSDT};
use kimp_core::units::Nanos;
use kimp_gateways::binance::BinanceMarketParser;
use kimp_gateways::codec::MarketMsg;
use kimp_gateways::symbols::SymbolTable;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::data::Binance;
use crate::depth::Parsed;
use crate::stats::r1;
use crate::throughput::binance_book;

fn line(name: &str, ns: f64) {
    println!("  {name:<52} {ns:>9.1} ns/msg {:>11.0} msg/s", 1e9 / ns);
}

/// hftbacktest 0.9.4 depth structures, apply only, against the ladder on the same diffs,
/// interleaved pass by pass.
#[cfg(feature = "peers")]
pub fn hftbacktest(parsed: &Parsed, reps: usize) -> Value {
    use crate::throughput::{Contender, apply_only, interleaved};
    use hftbacktest::depth::{
        BTreeMarketDepth, HashMapMarketDepth, L2MarketDepth, MarketDepth, ROIVectorMarketDepth,
    };

    fn peer<'a, D: L2MarketDepth + MarketDepth + 'a>(
        parsed: &'a Parsed,
        make: impl Fn() -> D + 'a,
    ) -> Box<dyn FnMut(bool) -> u64 + 'a> {
        let mut d = make();
        Box::new(move |setup| {
            if setup {
                d = make();
                for l in &parsed.snap_bids {
                    d.update_bid_depth(l.px.to_f64(), l.qty.to_f64(), 0);
                }
                for l in &parsed.snap_asks {
                    d.update_ask_depth(l.px.to_f64(), l.qty.to_f64(), 0);
                }
                return 0;
            }
            let mut k = 0u64;
            for df in &parsed.diffs {
                for &(p, q) in &parsed.levels_f64[df.b.0 as usize..df.b.1 as usize] {
                    d.update_bid_depth(p, q, 0);
                }
                for &(p, q) in &parsed.levels_f64[df.a.0 as usize..df.a.1 as usize] {
                    d.update_ask_depth(p, q, 0);
                }
                k = k.wrapping_add(d.best_bid_tick() as u64).wrapping_add(d.best_ask_tick() as u64);
            }
            k
        })
    }
    let (tick, lot) = (0.1, 0.001);
    // The range of interest: ±3,000 USDT around the snapshot's top (every top of book in
    // the file is inside; the ladder keeps ±819 USDT around the moving top).
    let top = parsed.snap_bids.first().map_or(60_000.0, |l| l.px.to_f64());
    let roi = (top - 3_000.0, top + 3_000.0);
    let mut cs: Vec<Contender<'_>> = vec![
        ("kimp ladder (Book::with_tick)", apply_only(parsed, true)),
        (
            "hftbacktest ROIVectorMarketDepth",
            peer(parsed, move || ROIVectorMarketDepth::new(tick, lot, roi.0, roi.1)),
        ),
        (
            "hftbacktest HashMapMarketDepth",
            peer(parsed, move || HashMapMarketDepth::new(tick, lot)),
        ),
        ("hftbacktest BTreeMarketDepth", peer(parsed, move || BTreeMarketDepth::new(tick, lot))),
    ];
    let res = interleaved(parsed.diffs.len(), reps, &mut cs);
    for ((name, _), (ns, _)) in cs.iter().zip(&res) {
        line(&format!("{name}, apply only"), *ns);
    }
    let kimp_ns = res[0].0;
    let (roi_ns, hm_ns, bt_ns) = (res[1].0, res[2].0, res[3].0);
    let fastest = roi_ns.min(hm_ns).min(bt_ns);
    let ratio = fastest / kimp_ns;
    println!("  kimp / fastest hftbacktest (throughput ratio): {ratio:.2}x");
    json!({
        "version": "0.9.4",
        "kimp_ladder_apply_ns_per_msg": r1(kimp_ns),
        "roivector_ns_per_msg": r1(roi_ns),
        "roivector_range": [roi.0, roi.1],
        "hashmap_ns_per_msg": r1(hm_ns),
        "btree_ns_per_msg": r1(bt_ns),
        "vs_fastest_ratio": (ratio * 100.0).round() / 100.0,
    })
}

/// Without the `peers` feature there is no hftbacktest to compare with.
#[cfg(not(feature = "peers"))]
pub fn hftbacktest(_parsed: &Parsed, _reps: usize) -> Value {
    println!("  (built without the `peers` feature: hftbacktest skipped)");
    Value::Null
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    data: DepthMsg<'a>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct DepthMsg<'a> {
    #[serde(rename = "E")]
    ev_time: u64,
    #[serde(rename = "U")]
    first: u64,
    u: u64,
    pu: u64,
    #[serde(borrow)]
    b: Vec<[&'a str; 2]>,
    #[serde(borrow)]
    a: Vec<[&'a str; 2]>,
}

/// The usual way: prices as `f64`, keyed by integer ticks in a BTreeMap per side.
#[derive(Default)]
struct TreeBook {
    bids: BTreeMap<i64, f64>,
    asks: BTreeMap<i64, f64>,
}

impl TreeBook {
    fn apply(&mut self, m: &DepthMsg<'_>) -> u64 {
        for (side, levels) in [(&mut self.bids, &m.b), (&mut self.asks, &m.a)] {
            for [p, q] in levels.iter() {
                let px: f64 = p.parse().unwrap_or(0.0);
                let qty: f64 = q.parse().unwrap_or(0.0);
                let t = (px * 10.0).round() as i64;
                if qty == 0.0 {
                    side.remove(&t);
                } else {
                    side.insert(t, qty);
                }
            }
        }
        self.bids.keys().next_back().copied().unwrap_or(0) as u64
    }
}

/// serde_json and simd-json (+ a BTreeMap book) against the scanner (+ the ladder),
/// interleaved pass by pass.
pub fn json(bin: &Binance, reps: usize) -> Value {
    use crate::throughput::{Contender, interleaved};
    let n = bin.frames.len();
    let m = testkit::btc_markets();
    let table = SymbolTable::for_venue(Venue::Binance, &m.instruments);
    let serde = |apply: bool| -> Box<dyn FnMut(bool) -> u64 + '_> {
        let mut t = TreeBook::default();
        Box::new(move |setup| {
            if setup {
                t = TreeBook::default();
                return 0;
            }
            let mut k = 0u64;
            for f in &bin.frames {
                if let Ok(e) = serde_json::from_slice::<Envelope<'_>>(f) {
                    k = k.wrapping_add(if apply {
                        t.apply(&e.data)
                    } else {
                        e.data.b.len() as u64
                    });
                }
            }
            k
        })
    };
    let simd = |apply: bool| -> Box<dyn FnMut(bool) -> u64 + '_> {
        let mut t = TreeBook::default();
        let mut buffers = simd_json::Buffers::default();
        let mut scratch: Vec<u8> = Vec::with_capacity(64 * 1024);
        Box::new(move |setup| {
            if setup {
                t = TreeBook::default();
                return 0;
            }
            let mut k = 0u64;
            for f in &bin.frames {
                scratch.clear();
                scratch.extend_from_slice(f);
                if let Ok(e) = simd_json::serde::from_slice_with_buffers::<Envelope<'_>>(
                    &mut scratch,
                    &mut buffers,
                ) {
                    k = k.wrapping_add(if apply {
                        t.apply(&e.data)
                    } else {
                        e.data.b.len() as u64
                    });
                }
            }
            k
        })
    };
    let scanner = |apply: bool| -> Box<dyn FnMut(bool) -> u64 + '_> {
        let mut book = binance_book(true);
        let mut sp = BinanceMarketParser::new(table.clone());
        let mut p = BinanceMarketParser::new(table.clone());
        Box::new(move |setup| {
            if setup {
                if let Ok(MarketMsg::Event(Event::Book(s))) =
                    sp.parse_snapshot(BTCUSDT, &bin.snapshot)
                {
                    book.apply_snapshot(&s, Nanos(0));
                }
                return 0;
            }
            let mut k = 0u64;
            for f in &bin.frames {
                if let Ok(MarketMsg::Event(Event::Depth(d))) = p.parse(f) {
                    k += if !apply {
                        1
                    } else {
                        (book.apply_diff(&d, Nanos(1)) == DiffOutcome::Applied) as u64
                    };
                }
            }
            black_box(k)
        })
    };
    let mut cs: Vec<Contender<'_>> = vec![
        ("serde_json, borrowed struct, parse only", serde(false)),
        ("serde_json + BTreeMap book (f64), parse + apply", serde(true)),
        ("simd-json (reused buffers), parse only", simd(false)),
        ("simd-json + BTreeMap book (f64), parse + apply", simd(true)),
        ("kimp scanner, parse only", scanner(false)),
        ("kimp scanner + ladder book, parse + apply", scanner(true)),
    ];
    let res = interleaved(n, reps, &mut cs);
    for ((name, _), (ns, _)) in cs.iter().zip(&res) {
        line(name, *ns);
    }
    let [sj, sjb, sd, sdb, sc, scb] = [res[0].0, res[1].0, res[2].0, res[3].0, res[4].0, res[5].0];
    println!(
        "  ratios: scanner+ladder vs serde_json+BTreeMap {:.2}x, vs simd-json+BTreeMap {:.2}x; simd-json vs serde_json parse {:.2}x",
        sjb / scb,
        sdb / scb,
        sj / sd
    );
    json!({
        "serde_json_parse_ns": r1(sj),
        "serde_json_btreemap_parse_apply_ns": r1(sjb),
        "simd_json_parse_ns": r1(sd),
        "simd_json_btreemap_parse_apply_ns": r1(sdb),
        "kimp_scanner_parse_ns": r1(sc),
        "kimp_scanner_ladder_parse_apply_ns": r1(scb),
        "kimp_vs_serde_json_btreemap": (sjb / scb * 100.0).round() / 100.0,
        "kimp_vs_simd_json_btreemap": (sdb / scb * 100.0).round() / 100.0,
    })
}

/// Writes the pre-parsed diffs for the nautilus_trader script: a header line
/// `snapshot <n_bids> <n_asks> <n_diffs> <n_levels>` then one line per level
/// `<diff index or -1 for the snapshot> <b|a> <price> <qty>` (decimal text as received).
pub fn export_deltas(parsed: &Parsed, path: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    let dec = |v: i64, dp: u32| kimp_core::units::DecimalDp(v, dp).to_string();
    writeln!(
        w,
        "kimp-deltas 1 {} {} {} {}",
        parsed.snap_bids.len(),
        parsed.snap_asks.len(),
        parsed.diffs.len(),
        parsed.level_count()
    )?;
    for (side, ls) in [("b", &parsed.snap_bids), ("a", &parsed.snap_asks)] {
        for l in ls.iter() {
            writeln!(w, "-1 {side} {} {}", dec(l.px.0, 1), dec(l.qty.0, 3))?;
        }
    }
    for (i, d) in parsed.diffs.iter().enumerate() {
        for (side, r) in [("b", d.b), ("a", d.a)] {
            for l in &parsed.levels[r.0 as usize..r.1 as usize] {
                writeln!(w, "{i} {side} {} {}", dec(l.px.0, 1), dec(l.qty.0, 3))?;
            }
        }
    }
    w.flush()
}
