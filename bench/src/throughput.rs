//! Throughput on one pinned core: parse + apply per venue (the sorted-array book as it was
//! before this crate's change, and the price ladder now used for Binance), apply only,
//! premium recomputation, and signing. Each figure is the median over timed passes of the
//! whole recorded input (one warm-up pass first); snapshots are applied outside the timer.

use std::hint::black_box;
use std::time::Instant;

use kimp_core::book::{Book, DiffOutcome, SeqRule};
use kimp_core::config::Direction;
use kimp_core::engine::{BOOK_DEPTH, LADDER_TICKS};
use kimp_core::event::{BookSnapshot, Event, Side};
use kimp_core::instrument::{InstrumentId, Symbol, Venue};
use kimp_core::order::{ClientId, Leg, OrderKind, OrderRequest};
use kimp_core::premium::{self, Quotes};
use kimp_core::testkit::{self, BTCUSDT, KRW_BTC};
use kimp_core::units::{Nanos, Price, Qty, SCALE};
use kimp_gateways::binance::{BinanceEncoder, BinanceMarketParser};
use kimp_gateways::codec::MarketMsg;
use kimp_gateways::sign::{BinanceSigner, JwtAlg, NonceGen, Secret, upbit_query_hash};
use kimp_gateways::symbols::SymbolTable;
use kimp_gateways::upbit::{UpbitEncoder, UpbitMarketParser};
use serde_json::{Value, json};

use crate::data::{Binance, Upbit};
use crate::depth::Parsed;
use crate::stats::{median, r1};

/// Runs `run` `reps` times after one warm-up, calling `setup` untimed before each; returns
/// the median ns per item.
pub fn passes(
    items: usize,
    reps: usize,
    mut setup: impl FnMut(),
    mut run: impl FnMut() -> u64,
) -> (f64, u64) {
    setup();
    let mut check = run();
    let mut v = Vec::new();
    for _ in 0..reps.max(1) {
        setup();
        let t = Instant::now();
        check = black_box(run());
        v.push(t.elapsed().as_nanos() as f64 / items.max(1) as f64);
    }
    (median(&mut v), check)
}

/// A contender of an interleaved comparison: called with `true` to set up (untimed),
/// with `false` to run one timed pass; returns a checksum.
pub type Contender<'a> = (&'static str, Box<dyn FnMut(bool) -> u64 + 'a>);

/// Runs the contenders round-robin (one warm-up round, then `reps` timed rounds) so that
/// load from other processes on a shared machine hits all of them alike; returns each
/// one's median ns per item and last checksum.
pub fn interleaved(items: usize, reps: usize, cs: &mut [Contender<'_>]) -> Vec<(f64, u64)> {
    let mut samples = vec![Vec::new(); cs.len()];
    let mut checks = vec![0u64; cs.len()];
    for round in 0..=reps.max(1) {
        for (i, (_, f)) in cs.iter_mut().enumerate() {
            f(true);
            let t = Instant::now();
            checks[i] = black_box(f(false));
            if round > 0 {
                samples[i].push(t.elapsed().as_nanos() as f64 / items.max(1) as f64);
            }
        }
    }
    samples.iter_mut().zip(checks).map(|(s, c)| (median(s), c)).collect()
}

fn line(name: &str, ns: f64, check: u64) {
    println!("  {name:<52} {ns:>9.1} ns/msg {:>11.0} msg/s  (check {check})", 1e9 / ns);
}

fn fig(ns: f64) -> Value {
    json!({ "ns_per_msg": r1(ns), "msgs_per_s": (1e9 / ns).round() })
}

/// A futures book: the sorted array (`Book::new`, the code path every book used before
/// the ladder) or the ladder (`Book::with_tick`, what the engine now builds for Binance).
pub fn binance_book(ladder: bool) -> Book {
    if ladder {
        Book::with_tick(SeqRule::Futures, Price(SCALE / 10), LADDER_TICKS)
    } else {
        Book::new(SeqRule::Futures, BOOK_DEPTH)
    }
}

fn snapshot(book: &mut Book, p: &Parsed) {
    book.apply_snapshot(
        &BookSnapshot {
            inst: BTCUSDT,
            exch_ts: Nanos(0),
            last_update_id: p.snap_id,
            bids: &p.snap_bids,
            asks: &p.snap_asks,
        },
        Nanos(0),
    );
}

/// Binance depth: parse only, parse + apply (before / after), apply only (before / after).
pub fn binance(bin: &Binance, parsed: &Parsed, reps: usize) -> Value {
    let m = testkit::btc_markets();
    let table = SymbolTable::for_venue(Venue::Binance, &m.instruments);
    let n = bin.frames.len();
    println!(
        "  input: {} real depth frames, mean {:.0} B, mean {:.1} levels",
        n,
        bin.bytes() as f64 / n as f64,
        parsed.level_count() as f64 / parsed.diffs.len() as f64
    );
    let mut p = BinanceMarketParser::new(table.clone());
    let (parse_ns, c) = passes(
        n,
        reps,
        || {},
        || {
            let mut k = 0u64;
            for f in &bin.frames {
                if let Ok(MarketMsg::Event(Event::Depth(d))) = p.parse(f) {
                    k += d.bids.len() as u64;
                }
            }
            k
        },
    );
    line("parse only (scanner)", parse_ns, c);
    let mut out = json!({ "frames": n, "parse_only": fig(parse_ns) });
    let parse_apply = |ladder: bool| -> Box<dyn FnMut(bool) -> u64 + '_> {
        let mut book = binance_book(ladder);
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
            let mut applied = 0u64;
            for f in &bin.frames {
                if let Ok(MarketMsg::Event(Event::Depth(d))) = p.parse(f)
                    && book.apply_diff(&d, Nanos(1)) == DiffOutcome::Applied
                {
                    applied += 1;
                }
            }
            applied
        })
    };
    let mut cs: Vec<Contender<'_>> =
        vec![("before_sorted_array", parse_apply(false)), ("after_ladder", parse_apply(true))];
    let res = interleaved(n, reps, &mut cs);
    for ((name, _), (ns, c)) in cs.iter().zip(res) {
        line(&format!("parse + apply, {name}"), ns, c);
        out[format!("parse_apply_{name}")] = fig(ns);
    }
    let mut cs: Vec<Contender<'_>> = vec![
        ("before_sorted_array", apply_only(parsed, false)),
        ("after_ladder", apply_only(parsed, true)),
    ];
    let res = interleaved(parsed.diffs.len(), reps, &mut cs);
    for ((name, _), (ns, c)) in cs.iter().zip(res) {
        line(&format!("apply only (pre-parsed), {name}"), ns, c);
        out[format!("apply_only_{name}")] = fig(ns);
    }
    // Both books must agree on what an executable walk sees after the whole stream.
    let (mut a, mut b) = (binance_book(false), binance_book(true));
    for bk in [&mut a, &mut b] {
        snapshot(bk, parsed);
        for d in &parsed.diffs {
            bk.apply_diff(&parsed.diff(d), Nanos(1));
        }
    }
    let top = |bk: &Book| -> Vec<_> {
        bk.bids.iter().take(200).chain(bk.asks.iter().take(200)).copied().collect()
    };
    let agree = top(&a) == top(&b);
    println!(
        "  sorted array and ladder agree on the top 200 levels a side after the stream: {agree}"
    );
    out["top_200_levels_agree"] = json!(agree);
    let px = |l: Option<kimp_core::event::Level>| l.map_or(0.0, |l| l.px.to_f64());
    println!("  final top of book: bid {} / ask {}", px(b.best_bid()), px(b.best_ask()));
    out["final_best_bid"] = json!(px(b.best_bid()));
    out["final_best_ask"] = json!(px(b.best_ask()));
    out
}

/// Apply only: the pre-parsed diffs into a book reset from the snapshot before each pass;
/// the best prices are read after each diff (as the engine does).
pub fn apply_only(parsed: &Parsed, ladder: bool) -> Box<dyn FnMut(bool) -> u64 + '_> {
    let mut b = binance_book(ladder);
    Box::new(move |setup| {
        if setup {
            snapshot(&mut b, parsed);
            return 0;
        }
        let mut k = 0u64;
        for d in &parsed.diffs {
            if b.apply_diff(&parsed.diff(d), Nanos(1)) == DiffOutcome::Applied {
                k = k.wrapping_add(b.best_bid().map_or(0, |l| l.px.0 as u64));
                k = k.wrapping_add(b.best_ask().map_or(0, |l| l.px.0 as u64));
            }
        }
        k
    })
}

/// Upbit books: parse + apply (replace) for the real SIMPLE recording and the DEFAULT
/// fixtures (15 units each).
pub fn upbit(up: &Upbit, reps: usize) -> Value {
    let m = testkit::btc_markets();
    let mut table = SymbolTable::for_venue(Venue::Upbit, &m.instruments);
    for (i, c) in up.simple_codes.iter().enumerate() {
        if let Some(s) = Symbol::new(c) {
            table.insert(s, InstrumentId(10 + i as u16));
        }
    }
    let mut books: Vec<Book> = (0..10 + up.simple_codes.len())
        .map(|_| Book::new(SeqRule::Snapshots, BOOK_DEPTH))
        .collect();
    let mut out = json!({});
    let default: Vec<Vec<u8>> = (0..250)
        .flat_map(|_| up.krw_btc.iter().chain(std::iter::once(&up.krw_usdt)).cloned())
        .collect();
    for (name, msgs) in [("default_fixtures", &default), ("simple_recording", &up.simple)] {
        let mut p = UpbitMarketParser::new(table.clone());
        let (ns, c) = passes(
            msgs.len(),
            reps,
            || {},
            || {
                let mut k = 0u64;
                for f in msgs.iter() {
                    if let Ok(MarketMsg::Event(Event::Book(s))) = p.parse(f)
                        && let Some(b) = books.get_mut(s.inst.0 as usize)
                    {
                        b.apply_snapshot(&s, Nanos(1));
                        k += b.bids.len() as u64;
                    }
                }
                k
            },
        );
        line(&format!("upbit parse + apply, {name} ({} msgs)", msgs.len()), ns, c);
        out[format!("parse_apply_{name}")] = fig(ns);
        let mut p = UpbitMarketParser::new(table.clone());
        let (ns, c) = passes(
            msgs.len(),
            reps,
            || {},
            || msgs.iter().filter(|f| p.parse(f).is_ok_and(|r| r.is_event())).count() as u64,
        );
        line(&format!("upbit parse only, {name}"), ns, c);
        out[format!("parse_only_{name}")] = fig(ns);
    }
    out
}

/// Executable premium (both directions, walking both books) and the mid premium, on the
/// real Binance book after the stream and the KRW-BTC fixture book.
pub fn premium(up: &Upbit, parsed: &Parsed, reps: usize) -> Value {
    let m = testkit::btc_markets();
    let mut bb = binance_book(true);
    snapshot(&mut bb, parsed);
    for d in &parsed.diffs {
        bb.apply_diff(&parsed.diff(d), Nanos(1));
    }
    let mut ub = Book::new(SeqRule::Snapshots, BOOK_DEPTH);
    let mut p = UpbitMarketParser::new(SymbolTable::for_venue(Venue::Upbit, &m.instruments));
    if let Ok(MarketMsg::Event(Event::Book(s))) = p.parse(&up.krw_btc[0]) {
        ub.apply_snapshot(&s, Nanos(1));
    }
    let q = Qty(SCALE / 10);
    let quotes = Quotes {
        upbit: &ub,
        binance: &bb,
        fx_bid: Price(1_468 * SCALE),
        fx_ask: Price(1_469 * SCALE),
    };
    let n = 200_000;
    let (ns, c) = passes(
        n,
        reps,
        || {},
        || {
            let mut k = 0u64;
            for _ in 0..n {
                let qs = black_box(&quotes);
                let s = premium::executable(qs, Direction::SellPremium, black_box(q));
                let b = premium::executable(qs, Direction::BuyDiscount, black_box(q));
                let mid = premium::mid_bps(qs);
                k = k.wrapping_add(
                    s.map_or(0, |e| e.bps as u64)
                        + b.map_or(0, |e| e.bps as u64)
                        + mid.map_or(0.0, |x| x) as u64,
                );
            }
            k
        },
    );
    println!(
        "  {:<52} {ns:>9.1} ns/op {:>11.0} op/s  (check {c})",
        "premium recompute (sell+buy executable 0.1 BTC, mid)",
        1e9 / ns
    );
    json!({ "ns_per_recompute": r1(ns), "recomputes_per_s": (1e9 / ns).round(), "qty_btc": 0.1 })
}

/// Signing: Binance HMAC-SHA256 alone and the whole signed order request; Upbit's
/// SHA-512 query hash and the whole JWT (HS512) order request.
pub fn signing(reps: usize) -> Value {
    let m = testkit::btc_markets();
    let secret = Secret::new("bench-secret-0123456789abcdef0123456789abcdef");
    let signer = BinanceSigner::new(&secret);
    let params = b"symbol=BTCUSDT&side=BUY&positionSide=BOTH&type=LIMIT&timeInForce=IOC&quantity=0.010&price=61800.10&newClientOrderId=k1-123-b0&newOrderRespType=ACK&recvWindow=5000&timestamp=1723161600000";
    let n = 100_000;
    let mut out = json!({});
    let (ns, c) = passes(
        n,
        reps,
        || {},
        || {
            let mut k = 0u64;
            for _ in 0..n {
                k = k.wrapping_add(signer.sign(black_box(params))[0] as u64);
            }
            k
        },
    );
    println!("  {:<52} {ns:>9.1} ns/op  (check {c})", "binance HMAC-SHA256 of a 190 B order query");
    out["binance_hmac_ns"] = json!(r1(ns));
    let req = |inst, side, px| OrderRequest {
        cl_id: ClientId { epoch: 1, seq: 123, leg: Leg::B, attempt: 0 },
        inst,
        side,
        kind: OrderKind::LimitIoc,
        px: Price(px),
        qty: Qty(SCALE / 100),
        reduce_only: false,
    };
    let mut benc = BinanceEncoder::new("127.0.0.1:9", "bench-key", &secret, &m.instruments);
    let br = req(BTCUSDT, Side::Buy, 61_800 * SCALE + SCALE / 10);
    let (ns, c) = passes(
        n,
        reps,
        || {},
        || {
            let mut k = 0u64;
            for i in 0..n {
                k += benc
                    .place(black_box(&br), 1_723_161_600_000 + i as u64)
                    .map_or(0, |b| b.len() as u64);
            }
            k
        },
    );
    println!(
        "  {:<52} {ns:>9.1} ns/op  (check {c})",
        "binance signed order request (encode + HMAC)"
    );
    out["binance_order_request_ns"] = json!(r1(ns));
    let (ns, c) = passes(
        n,
        reps,
        || {},
        || {
            let mut k = 0u64;
            for _ in 0..n {
                k = k.wrapping_add(upbit_query_hash(black_box(params))[0] as u64);
            }
            k
        },
    );
    println!("  {:<52} {ns:>9.1} ns/op  (check {c})", "upbit SHA-512 query_hash");
    out["upbit_query_hash_ns"] = json!(r1(ns));
    let mut uenc =
        UpbitEncoder::new("127.0.0.1:9", "bench-access", &secret, JwtAlg::Hs512, &m.instruments)
            .expect("upbit signer")
            .with_nonces(NonceGen::from_seed(3));
    let ur = OrderRequest {
        cl_id: ClientId { leg: Leg::U, ..br.cl_id },
        ..req(KRW_BTC, Side::Sell, 92_000_000 * SCALE)
    };
    let (ns, c) = passes(
        n,
        reps,
        || {},
        || {
            let mut k = 0u64;
            for _ in 0..n {
                k += uenc.place(black_box(&ur)).map_or(0, |b| b.len() as u64);
            }
            k
        },
    );
    println!(
        "  {:<52} {ns:>9.1} ns/op  (check {c})",
        "upbit signed order request (body + JWT HS512)"
    );
    out["upbit_order_request_ns"] = json!(r1(ns));
    out
}
