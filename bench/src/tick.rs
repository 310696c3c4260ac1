//! In-process tick-to-order: recorded venue payload bytes in → the gateways' parsers →
//! `Engine::on_event` (book, premium, strategy, risk, OMS) → for every `Action::Place` the
//! real encoders and signers (`BinanceEncoder::place`, HMAC-SHA256; `UpbitEncoder::place`,
//! JWT HS512) → signed HTTP request bytes. The venue's answers (ack, fill, done) are fed
//! back untimed, so pairs open and close as they would live.
//!
//! The input is the real Binance BTCUSDT depth stream (looped; each loop starts from its
//! REST snapshot) interleaved with real-format Upbit KRW-BTC books (the protocol fixtures,
//! their prices shifted so the premium alternates between 4.5 % and −1 % around the
//! Binance mid) and the KRW-USDT fixture book.

use std::time::Instant;

use anyhow::{Result, anyhow};
use hdrhistogram::Histogram;
use kimp_core::action::{Action, Outbox};
use kimp_core::book::Book;
use kimp_core::config::{EngineConfig, FundingFilter};
use kimp_core::engine::{Engine, LADDER_TICKS, Markets};
use kimp_core::event::{Balance, Control, Event, OrderEvent, OrderEventKind};
use kimp_core::instrument::{Symbol, Venue};
use kimp_core::order::OrderRequest;
use kimp_core::testkit::{self, BTCUSDT};
use kimp_core::units::{Nanos, Price, Qty, Quote, SCALE};
use kimp_gateways::binance::BinanceEncoder;
use kimp_gateways::binance::BinanceMarketParser;
use kimp_gateways::codec::MarketMsg;
use kimp_gateways::sign::{JwtAlg, NonceGen, Secret};
use kimp_gateways::symbols::SymbolTable;
use kimp_gateways::upbit::{UpbitEncoder, UpbitMarketParser};
use serde_json::{Value, json};

use crate::data::{self, Binance, Upbit};
use crate::stats::{hist, pct, pct_line};

/// Premium of the Upbit books while the harness wants entries (sell_premium enters ≥ 3 %).
const HIGH: f64 = 0.045;
/// Premium while it wants exits (a pair entered at 4.5 % closes in profit).
const LOW: f64 = -0.01;
/// Upbit books per premium regime.
const REGIME: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Snapshot,
    Depth,
    UpbitBtc,
    UpbitUsdt,
}

/// Digits of the exchange timestamp the harness writes into every Upbit book (ms since
/// the epoch, so 13 digits until the year 2286).
const TS_DIGITS: usize = 13;

/// The message schedule of one pass over the Binance file.
#[derive(Debug)]
pub struct Stream {
    arena: Vec<u8>,
    /// (kind, start, length, offset of the Upbit timestamp digits in the payload).
    items: Vec<(Kind, u32, u32, u32)>,
}

impl Stream {
    /// Builds one pass: the REST snapshot, then every depth frame, an Upbit KRW-BTC book
    /// after every third frame and a KRW-USDT book after every twentieth.
    pub fn build(bin: &Binance, up: &Upbit) -> Result<Self> {
        let markets = testkit::btc_markets();
        // Where the Binance mid is after each frame (to place the Upbit books).
        let mut p =
            BinanceMarketParser::new(SymbolTable::for_venue(Venue::Binance, &markets.instruments));
        let mut book =
            Book::with_tick(kimp_core::book::SeqRule::Futures, Price(SCALE / 10), LADDER_TICKS);
        if let Ok(MarketMsg::Event(Event::Book(s))) = p.parse_snapshot(BTCUSDT, &bin.snapshot) {
            book.apply_snapshot(&s, Nanos(0));
        }
        let mut mids = Vec::with_capacity(bin.frames.len());
        let mut last = book.mid_f64().unwrap_or(0.0);
        for f in &bin.frames {
            if let Ok(MarketMsg::Event(Event::Depth(d))) = p.parse(f) {
                book.apply_diff(&d, Nanos(1));
            }
            last = book.mid_f64().unwrap_or(last);
            mids.push(last);
        }
        let mut u =
            UpbitMarketParser::new(SymbolTable::for_venue(Venue::Upbit, &markets.instruments));
        let fx_ask = match u.parse(&up.krw_usdt) {
            Ok(MarketMsg::Event(Event::Book(b))) => {
                b.asks.first().map(|l| l.px.to_f64()).ok_or_else(|| anyhow!("empty KRW-USDT"))?
            }
            _ => return Err(anyhow!("the KRW-USDT fixture does not parse")),
        };
        let mut s = Self { arena: Vec::new(), items: Vec::new() };
        s.push(Kind::Snapshot, &bin.snapshot)?;
        let mut k = 0usize;
        for (i, f) in bin.frames.iter().enumerate() {
            s.push(Kind::Depth, f)?;
            if i % 3 == 2 {
                let tmpl = &up.krw_btc[k % up.krw_btc.len()];
                let prem = if (k / REGIME).is_multiple_of(2) { HIGH } else { LOW };
                let target = mids[i] * fx_ask * (1.0 + prem);
                let target = (target / 1_000.0).floor() as i64 * 1_000;
                let bid = data::upbit_best_bid(tmpl).ok_or_else(|| anyhow!("no bid"))?;
                s.push(Kind::UpbitBtc, &data::shift_upbit_prices(tmpl, target - bid))?;
                k += 1;
            }
            if i % 20 == 10 {
                s.push(Kind::UpbitUsdt, &up.krw_usdt)?;
            }
        }
        Ok(s)
    }

    fn push(&mut self, k: Kind, b: &[u8]) -> Result<()> {
        let start = self.arena.len() as u32;
        let ts = match k {
            Kind::UpbitBtc | Kind::UpbitUsdt => match data::upbit_ts_digits(b) {
                Some((at, TS_DIGITS)) => at as u32,
                _ => return Err(anyhow!("an Upbit book without a 13-digit timestamp")),
            },
            Kind::Snapshot | Kind::Depth => 0,
        };
        self.arena.extend_from_slice(b);
        self.items.push((k, start, b.len() as u32, ts));
        Ok(())
    }

    /// Writes `ms` as the exchange time of the Upbit book at `idx`. A live feed sends each
    /// book with a later time than the one before; the engine ignores an older book and
    /// lets a book whose time stops advancing go stale, so the looped fixtures are
    /// re-stamped as they are sent (outside the timed region).
    #[inline]
    fn stamp(&mut self, idx: usize, mut ms: u64) {
        let (_, start, _, ts) = self.items[idx];
        let at = (start + ts) as usize;
        for d in self.arena[at..at + TS_DIGITS].iter_mut().rev() {
            *d = b'0' + (ms % 10) as u8;
            ms /= 10;
        }
    }
}

/// Everything the measured loop touches.
struct Rig {
    engine: Engine,
    out: Outbox,
    bp: BinanceMarketParser,
    up: UpbitMarketParser,
    benc: BinanceEncoder,
    uenc: UpbitEncoder,
    pending: Vec<OrderRequest>,
    now: Nanos,
    trade_id: u64,
    /// Exchange time (ms) of the last Upbit book sent.
    upbit_ms: u64,
    venues: Vec<Venue>,
    wire_bytes: u64,
    orders: u64,
    errors: u64,
}

/// The engine configuration of the harness: the defaults, with the funding filter off,
/// no entry cool-down and rate limits that never bind (the harness trades far faster
/// than a live desk would).
pub fn engine_config() -> EngineConfig {
    let mut cfg = EngineConfig::default();
    cfg.strategy.funding_filter = FundingFilter::Off;
    cfg.strategy.entry_cooldown_ms = 0;
    cfg.risk.orders_per_sec_max = 1_000;
    cfg.risk.max_order_notional_usdt = 1_000_000;
    cfg.risk.max_order_notional_krw = 1_000_000_000;
    cfg.risk.max_coin_notional_krw = 1_000_000_000;
    cfg
}

impl Rig {
    fn new(markets: &Markets) -> Result<Self> {
        let engine = Engine::new(engine_config(), markets, 1).map_err(|e| anyhow!("{e}"))?;
        let secret = Secret::new("bench-secret-0123456789abcdef0123456789abcdef");
        let benc = BinanceEncoder::new("127.0.0.1:9", "bench-key", &secret, &markets.instruments);
        let uenc = UpbitEncoder::new(
            "127.0.0.1:9",
            "bench-access",
            &secret,
            JwtAlg::Hs512,
            &markets.instruments,
        )
        .map_err(|e| anyhow!("{e:?}"))?
        .with_nonces(NonceGen::from_seed(7));
        let mut r = Self {
            engine,
            out: Outbox::with_capacity(256),
            bp: BinanceMarketParser::new(SymbolTable::for_venue(
                Venue::Binance,
                &markets.instruments,
            )),
            up: UpbitMarketParser::new(SymbolTable::for_venue(Venue::Upbit, &markets.instruments)),
            benc,
            uenc,
            pending: Vec::with_capacity(256),
            now: Nanos::from_ms(1_000),
            trade_id: 0,
            upbit_ms: 1_773_240_000_000,
            venues: markets.instruments.iter().map(|i| i.venue).collect(),
            wire_bytes: 0,
            orders: 0,
            errors: 0,
        };
        let bal = |venue, a: &str, x: i64| {
            Event::Balance(Balance {
                venue,
                asset: Symbol::new(a).unwrap_or_default(),
                free: Qty(x * SCALE),
                locked: Qty(0),
            })
        };
        for ev in [
            bal(Venue::Upbit, "KRW", 10_000_000_000),
            bal(Venue::Binance, "USDT", 10_000_000),
            bal(Venue::Upbit, "BTC", 10_000),
            Event::Control(Control::ReconcileDone),
        ] {
            r.engine.on_event(r.now, &ev, &mut r.out);
            r.out.clear();
        }
        Ok(r)
    }

    /// Encodes and signs every order in the outbox; returns how many, and when the first
    /// one's bytes were ready.
    #[inline]
    fn encode(&mut self) -> (u32, Option<Instant>) {
        let mut n = 0;
        let mut first = None;
        let ts_ms = 1_723_161_600_000 + self.now.0 / 1_000_000;
        for a in self.out.as_slice() {
            if let Action::Place(req) = a {
                let bytes = match self.venues[req.inst.0 as usize] {
                    Venue::Upbit => self.uenc.place(req).map(<[u8]>::len),
                    _ => self.benc.place(req, ts_ms).map(<[u8]>::len),
                };
                match bytes {
                    Ok(len) => self.wire_bytes += std::hint::black_box(len) as u64,
                    Err(_) => self.errors += 1,
                }
                if self.pending.len() < self.pending.capacity() {
                    self.pending.push(*req);
                }
                if n == 0 {
                    first = Some(Instant::now());
                }
                n += 1;
            }
        }
        self.out.clear();
        self.orders += n as u64;
        (n, first)
    }

    /// The venue answers every pending order at once: ack, full fill at the limit, done.
    fn answer(&mut self) {
        while let Some(r) = self.pending.pop() {
            self.trade_id += 1;
            let fee = Quote(r.px.notional(r.qty).map_or(0, |n| n.0) / 2_000);
            let kinds = [
                OrderEventKind::Ack,
                OrderEventKind::Fill {
                    trade_id: self.trade_id,
                    px: r.px,
                    qty: r.qty,
                    cum_qty: r.qty,
                    fee,
                },
                OrderEventKind::Done { cum_qty: r.qty },
            ];
            for kind in kinds {
                let ev = Event::Order(OrderEvent { cl_id: r.cl_id, exch_ts: self.now, kind });
                self.engine.on_event(self.now, &ev, &mut self.out);
                self.encode(); // repairs, if the engine asks for any
            }
        }
    }
}

/// Histograms of one run.
struct Hists {
    parse: Histogram<u64>,
    engine: Histogram<u64>,
    encode: Histogram<u64>,
    parse_o: Histogram<u64>,
    engine_o: Histogram<u64>,
    frame: Histogram<u64>,
    t2o: Histogram<u64>,
    first: Histogram<u64>,
    depth: Histogram<u64>,
    upbit: Histogram<u64>,
}

/// Runs `warmup` messages untimed, then `n` measured ones; returns the report section.
pub fn run(stream: &mut Stream, warmup: u64, n: u64) -> Result<Value> {
    let markets = testkit::btc_markets();
    let mut rig = Rig::new(&markets)?;
    let mut h = Hists {
        parse: hist(),
        engine: hist(),
        encode: hist(),
        parse_o: hist(),
        engine_o: hist(),
        frame: hist(),
        t2o: hist(),
        first: hist(),
        depth: hist(),
        upbit: hist(),
    };
    let mut done = 0u64;
    let mut idx = 0usize;
    while done < warmup {
        step(&mut rig, stream, idx, None);
        idx = (idx + 1) % stream.items.len();
        done += 1;
    }
    let before = *rig.engine.stats();
    let orders_before = rig.orders;
    let a0 = crate::alloc::start();
    let t = Instant::now();
    let mut done = 0u64;
    while done < n {
        step(&mut rig, stream, idx, Some(&mut h));
        idx = (idx + 1) % stream.items.len();
        done += 1;
    }
    let wall = t.elapsed();
    let allocs = crate::alloc::stop(a0);
    let after = *rig.engine.stats();
    for (name, x) in [
        ("parse", &h.parse),
        ("engine", &h.engine),
        ("  parse (msgs with orders)", &h.parse_o),
        ("  engine (msgs with orders)", &h.engine_o),
        ("encode+sign (msgs with orders)", &h.encode),
        ("total per message", &h.frame),
        ("  binance depth frames", &h.depth),
        ("  upbit books", &h.upbit),
        ("tick-to-order (msgs with orders)", &h.t2o),
        ("  tick to first signed request", &h.first),
    ] {
        println!("  {}", pct_line(name, x));
    }
    println!(
        "  {} messages in {:.2} s; intents {}, orders signed {}, pairs closed {}, allocations {}",
        n,
        wall.as_secs_f64(),
        after.intents - before.intents,
        rig.orders - orders_before,
        after.pairs_closed - before.pairs_closed,
        allocs
    );
    Ok(json!({
        "messages": n,
        "warmup": warmup,
        "wall_s": wall.as_secs_f64(),
        "parse": pct(&h.parse),
        "engine": pct(&h.engine),
        "parse_msgs_with_orders": pct(&h.parse_o),
        "engine_msgs_with_orders": pct(&h.engine_o),
        "encode_sign": pct(&h.encode),
        "total_per_message": pct(&h.frame),
        "binance_depth_frame": pct(&h.depth),
        "upbit_book_frame": pct(&h.upbit),
        "tick_to_order": pct(&h.t2o),
        "tick_to_first_order": pct(&h.first),
        "intents": after.intents - before.intents,
        "orders_signed": rig.orders - orders_before,
        "pairs_closed": after.pairs_closed - before.pairs_closed,
        "risk_rejects": after.risk_rejects - before.risk_rejects,
        "codec_errors": rig.errors,
        "allocations": allocs,
        "wire_bytes": rig.wire_bytes,
    }))
}

/// One message through the whole path; timed when `h` is given.
#[inline(always)]
fn step(rig: &mut Rig, s: &mut Stream, idx: usize, h: Option<&mut Hists>) {
    let (kind, start, len, _) = s.items[idx];
    rig.now = rig.now.plus(Nanos::from_us(100));
    if matches!(kind, Kind::UpbitBtc | Kind::UpbitUsdt) {
        rig.upbit_ms += 1;
        s.stamp(idx, rig.upbit_ms);
    }
    let payload = &s.arena[start as usize..(start + len) as usize];
    let t0 = Instant::now();
    let parsed = match kind {
        Kind::Depth => rig.bp.parse(payload),
        Kind::Snapshot => rig.bp.parse_snapshot(BTCUSDT, payload),
        Kind::UpbitBtc | Kind::UpbitUsdt => rig.up.parse(payload),
    };
    let Ok(MarketMsg::Event(ev)) = parsed else {
        rig.errors += 1;
        return;
    };
    let t1 = Instant::now();
    rig.engine.on_event(rig.now, &ev, &mut rig.out);
    let t2 = Instant::now();
    let (orders, first) = rig.encode();
    let t3 = Instant::now();
    if let Some(h) = h {
        let ns = |a: Instant, b: Instant| (b - a).as_nanos() as u64;
        let _ = h.parse.record(ns(t0, t1).max(1));
        let _ = h.engine.record(ns(t1, t2).max(1));
        let total = ns(t0, t3).max(1);
        let _ = h.frame.record(total);
        match kind {
            Kind::Depth => {
                let _ = h.depth.record(total);
            }
            Kind::UpbitBtc | Kind::UpbitUsdt => {
                let _ = h.upbit.record(total);
            }
            Kind::Snapshot => {}
        }
        if orders > 0 {
            let _ = h.parse_o.record(ns(t0, t1).max(1));
            let _ = h.engine_o.record(ns(t1, t2).max(1));
            let _ = h.encode.record(ns(t2, t3).max(1));
            let _ = h.t2o.record(total);
            if let Some(f) = first {
                let _ = h.first.record(ns(t0, f).max(1));
            }
        }
    }
    rig.answer();
}

/// The loop `bench/callgrind.sh` counts instructions of: `n` messages through parse,
/// engine and encode+sign, no clocks. Deterministic input, so Ir is stable across runs.
#[inline(never)]
pub fn callgrind_loop(stream: &mut Stream, warmup: u64, n: u64) -> Result<(u64, u64)> {
    let markets = testkit::btc_markets();
    let mut rig = Rig::new(&markets)?;
    for i in 0..warmup as usize {
        plain_step(&mut rig, stream, i % stream.items.len());
    }
    let start = warmup as usize;
    callgrind_measured(&mut rig, stream, start, n);
    Ok((rig.orders, rig.engine.stats().pairs_closed))
}

/// Kept out of line so callgrind can toggle collection on exactly this function.
#[inline(never)]
fn callgrind_measured(rig: &mut Rig, stream: &mut Stream, start: usize, n: u64) {
    for k in 0..n as usize {
        plain_step(rig, stream, (start + k) % stream.items.len());
    }
}

#[inline(always)]
fn plain_step(rig: &mut Rig, s: &mut Stream, idx: usize) {
    let (kind, start, len, _) = s.items[idx];
    rig.now = rig.now.plus(Nanos::from_us(100));
    if matches!(kind, Kind::UpbitBtc | Kind::UpbitUsdt) {
        rig.upbit_ms += 1;
        s.stamp(idx, rig.upbit_ms);
    }
    let payload = &s.arena[start as usize..(start + len) as usize];
    let parsed = match kind {
        Kind::Depth => rig.bp.parse(payload),
        Kind::Snapshot => rig.bp.parse_snapshot(BTCUSDT, payload),
        Kind::UpbitBtc | Kind::UpbitUsdt => rig.up.parse(payload),
    };
    if let Ok(MarketMsg::Event(ev)) = parsed {
        rig.engine.on_event(rig.now, &ev, &mut rig.out);
        rig.encode();
    }
    rig.answer();
}
