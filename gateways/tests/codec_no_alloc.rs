//! Proves the hot-path codecs do not allocate after warm-up: a counting global allocator
//! (this test binary only) counts allocations made by this thread while every
//! market-data message of the real recordings and fixtures is parsed a second time, and
//! while orders are encoded and signed and user/REST order replies are parsed again.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use kimp_core::event::Side;
use kimp_core::instrument::Venue;
use kimp_core::order::{ClientId, Leg, OrderKind, OrderRequest};
use kimp_core::testkit;
use kimp_core::units::{Nanos, Price, Qty};
use kimp_gateways::binance::{
    BinanceEncoder, BinanceMarketParser, BinanceRestParser, BinanceUserParser,
};
use kimp_gateways::rest::OrderRequestKind;
use kimp_gateways::sign::{JwtAlg, NonceGen, Secret};
use kimp_gateways::upbit::{UpbitEncoder, UpbitMarketParser, UpbitRestParser, UpbitUserParser};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if ON.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if ON.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Runs `f` twice (warm-up, then counted) and returns the allocations of the second run.
fn allocs_after_warmup(mut f: impl FnMut() -> u64) -> (u64, u64) {
    let warm = f();
    ALLOCS.store(0, Ordering::Relaxed);
    ON.with(|c| c.set(true));
    let n = f();
    ON.with(|c| c.set(false));
    assert_eq!(warm, n, "same work both passes");
    (ALLOCS.load(Ordering::Relaxed), n)
}

#[test]
fn hot_path_codecs_do_not_allocate_after_warm_up() {
    // Sanity: the counter sees allocations.
    let (a, _) = allocs_after_warmup(|| std::hint::black_box(vec![1u8; 10]).len() as u64);
    assert!(a >= 1, "counting allocator is active");

    // Binance futures + spot recordings (one file each: keeps the debug test fast) and fixtures.
    let mut msgs: Vec<(Venue, Vec<u8>)> = Vec::new();
    for (dir, file, venue) in [
        ("binance-usdm", "btcusdt_20240808.gz", Venue::Binance),
        ("binance-spot", "ethusdt_20240808.gz", Venue::BinanceSpot),
    ] {
        for l in gz_lines(&locate::testdata(&format!("data/{dir}/{file}"))) {
            let j = recorded_json(&l);
            if !j.starts_with(b"{\"lastUpdateId\"") {
                msgs.push((venue, j.to_vec()));
            }
        }
    }
    for f in [
        "binance_futures_depth.jsonl",
        "binance_bookticker.jsonl",
        "binance_markprice.jsonl",
        "binance_futures_combined.jsonl",
    ] {
        msgs.extend(fixture_lines(f).into_iter().map(|l| (Venue::Binance, l.into_bytes())));
    }
    let mut fut = BinanceMarketParser::new(table(Venue::Binance));
    let mut spot = BinanceMarketParser::new(table(Venue::BinanceSpot));
    let (a, n) = allocs_after_warmup(|| {
        let mut events = 0;
        for (v, m) in &msgs {
            let p = if *v == Venue::Binance { &mut fut } else { &mut spot };
            events += p.parse(m).is_ok_and(|r| r.is_event()) as u64;
            events += p.parse_simd(m).is_ok_and(|r| r.is_event()) as u64;
        }
        events
    });
    eprintln!("binance market: {} messages x2 paths, {n} events, {a} allocations", msgs.len());
    assert_eq!(n as usize, 2 * msgs.len(), "every message is an event");
    assert_eq!(a, 0, "binance market parsers allocated");

    // Upbit recordings and fixtures, both paths.
    let mut up: Vec<Vec<u8>> = upbit_recorded(&locate::testdata("data/upbit/UPBIT-d78752.0.gz"));
    for f in [
        "upbit_orderbook.jsonl",
        "upbit_orderbook_simple.jsonl",
        "upbit_trade.jsonl",
        "upbit_ticker.jsonl",
    ] {
        up.extend(fixture_lines(f).into_iter().map(String::into_bytes));
    }
    let mut u = UpbitMarketParser::new(upbit_recorded_table());
    let (a, n) = allocs_after_warmup(|| {
        up.iter().map(|m| u.parse(m).is_ok() as u64 + u.parse_simd(m).is_ok() as u64).sum()
    });
    eprintln!("upbit market: {} messages x2 paths, {n} ok, {a} allocations", up.len());
    assert_eq!(n as usize, 2 * up.len());
    assert_eq!(a, 0, "upbit market parsers allocated");

    // User streams and REST order replies.
    let ours = |s: String| {
        s.replace("kimp-h-000001", "k7-42-b0").replace("kimp-u-000001", "k7-42-u1").into_bytes()
    };
    let b_user: Vec<Vec<u8>> =
        fixture_lines("binance_user_data.jsonl").into_iter().map(ours).collect();
    let u_user: Vec<Vec<u8>> = fixture_lines("upbit_myorder.jsonl").into_iter().map(ours).collect();
    let b_ack = ours(fixture("binance_order_ack.json"));
    let u_done = ours(fixture("upbit_order_done.json"));
    let b_err = fixture_lines("binance_errors.jsonl");
    let u_err = fixture_lines("upbit_errors.jsonl");
    let b_id = ClientId { epoch: 7, seq: 42, leg: Leg::B, attempt: 0 };
    let u_id = ClientId { epoch: 7, seq: 42, leg: Leg::U, attempt: 1 };
    let mut bu = BinanceUserParser::new(table(Venue::Binance));
    let mut uu = UpbitUserParser::new();
    let mut br = BinanceRestParser::new();
    let mut ur = UpbitRestParser::new();
    let (a, n) = allocs_after_warmup(|| {
        let mut k = 0u64;
        for _ in 0..100 {
            k += b_user.iter().filter(|m| bu.parse(m).is_ok()).count() as u64;
            k += u_user.iter().filter(|m| uu.parse(m).is_ok()).count() as u64;
            k += br
                .order_reply(OrderRequestKind::Query, b_id, 200, &b_ack, Nanos(1))
                .map_or(0, |e| e.len() as u64);
            k += ur
                .order_reply(OrderRequestKind::Query, u_id, 200, &u_done, Nanos(1))
                .map_or(0, |e| e.len() as u64);
            for e in &b_err {
                k += br
                    .order_reply(OrderRequestKind::Place, b_id, 400, e.as_bytes(), Nanos(1))
                    .map_or(0, |e| e.len() as u64);
            }
            for e in &u_err {
                k += ur
                    .order_reply(OrderRequestKind::Place, u_id, 400, e.as_bytes(), Nanos(1))
                    .map_or(0, |e| e.len() as u64);
            }
        }
        k
    });
    eprintln!("user + REST order replies: {n} events, {a} allocations");
    assert!(n > 2_000);
    assert_eq!(a, 0, "user/REST order parsers allocated");

    // Encoders + signers.
    let m = testkit::btc_markets();
    let mut be =
        BinanceEncoder::new("fapi.venue.example", "key", &Secret::new("b-secret"), &m.instruments);
    let mut ue = UpbitEncoder::new(
        "api.venue.example",
        "ak",
        &Secret::new("u-secret"),
        JwtAlg::Hs512,
        &m.instruments,
    )
    .unwrap()
    .with_nonces(NonceGen::from_seed(3));
    let mk = |inst, leg, side, kind, px: i64, q: i64, seq| OrderRequest {
        cl_id: ClientId { epoch: 9, seq, leg, attempt: 0 },
        inst,
        side,
        kind,
        px: Price(px),
        qty: Qty(q),
        reduce_only: seq % 2 == 0,
    };
    let (a, n) = allocs_after_warmup(|| {
        let mut bytes = 0u64;
        for seq in 0..1_000u32 {
            let b = mk(
                testkit::BTCUSDT,
                Leg::B,
                Side::Buy,
                OrderKind::LimitIoc,
                7_050_000_000_000,
                1_000_000,
                seq,
            );
            bytes += be.place(&b, 1_773_240_059_150 + seq as u64).map_or(0, |r| r.len() as u64);
            let b = mk(
                testkit::BTCUSDT,
                Leg::B,
                Side::Sell,
                OrderKind::Market,
                7_050_000_000_000,
                1_000_000,
                seq,
            );
            bytes += be.place(&b, 1_773_240_059_150).map_or(0, |r| r.len() as u64);
            bytes += be.cancel(testkit::BTCUSDT, b.cl_id, 1).map_or(0, |r| r.len() as u64);
            bytes += be.query(testkit::BTCUSDT, b.cl_id, 1).map_or(0, |r| r.len() as u64);
            let u = mk(
                testkit::KRW_BTC,
                Leg::U,
                Side::Sell,
                OrderKind::LimitIoc,
                10_349_300_000_000_000,
                50_000,
                seq,
            );
            bytes += ue.place(&u).map_or(0, |r| r.len() as u64);
            let u = mk(
                testkit::KRW_USDT,
                Leg::U,
                Side::Buy,
                OrderKind::Market,
                146_900_000_000,
                700_000_000,
                seq,
            );
            bytes += ue.place(&u).map_or(0, |r| r.len() as u64);
            bytes += ue.cancel(u.cl_id).len() as u64;
            bytes += ue.query(u.cl_id).len() as u64;
        }
        // Nonces differ per call, so lengths (not bytes) repeat across passes.
        bytes
    });
    eprintln!("encoders + signers: 8,000 requests, {n} bytes, {a} allocations");
    assert!(n > 1_000_000);
    assert_eq!(a, 0, "encoders/signers allocated");
}

/// Counts the allocations of `f`'s first and only run.
fn allocs_cold(f: impl FnOnce() -> u64) -> (u64, u64) {
    ALLOCS.store(0, Ordering::Relaxed);
    ON.with(|c| c.set(true));
    let n = f();
    ON.with(|c| c.set(false));
    (ALLOCS.load(Ordering::Relaxed), n)
}

/// A live loop warms up on market data; its first user-stream event (an
/// `ACCOUNT_UPDATE`, an `ORDER_TRADE_UPDATE`, a `myOrder`) comes later. A parser built
/// at start-up must not allocate on it either: the JSON scratch is sized when built.
#[test]
fn user_stream_parsers_do_not_allocate_on_their_first_events() {
    let ours = |s: String| {
        s.replace("kimp-h-000001", "k7-42-b0").replace("kimp-u-000001", "k7-42-u1").into_bytes()
    };
    let b_user: Vec<Vec<u8>> =
        fixture_lines("binance_user_data.jsonl").into_iter().map(ours).collect();
    let u_user: Vec<Vec<u8>> = fixture_lines("upbit_myorder.jsonl").into_iter().map(ours).collect();
    let mut bu = BinanceUserParser::new(table(Venue::Binance));
    let mut uu = UpbitUserParser::new();
    let (a, n) = allocs_cold(|| {
        let mut k = b_user.iter().filter(|m| bu.parse(m).is_ok()).count() as u64;
        k += u_user.iter().filter(|m| uu.parse(m).is_ok()).count() as u64;
        k
    });
    eprintln!("user streams, cold: {n} events, {a} allocations");
    assert_eq!(n as usize, b_user.len() + u_user.len(), "every fixture parses");
    assert_eq!(a, 0, "a fresh user-stream parser allocated");
}
