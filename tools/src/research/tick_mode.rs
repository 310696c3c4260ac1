//! Tick mode: recorded venue messages (capture files, or raw JSON-lines recordings) parsed
//! by the gateways' own codecs and replayed through the engine in receive-time order.
//!
//! Inputs:
//! - capture files (`kimp record`, docs/capture-format.md);
//! - collector recordings `<receive ts> <json>` per line (ns, µs or ms; Binance combined
//!   streams, bare REST depth snapshots), gzip or plain;
//! - cryptofeed Upbit recordings `<unix ts float>: b'<json>'`.
//!
//! The receive time is the clock: the venue's book at an order's arrival is the recorded
//! book at that receive time (market-data latency is not modelled separately). Binance
//! diffs that arrive before a snapshot are buffered and applied after it, as the gateway
//! does; a gap makes the book stale until a later snapshot in the data.

use std::path::{Path, PathBuf};

use kimp_core::book::BookState;
use kimp_core::config::FundingFilter;
use kimp_core::engine::{CoinSpec, Markets};
use kimp_core::event::{DepthDiff, Event, Funding, FxSource, Level};
use kimp_core::instrument::{InstrumentId, Symbol, TickRule, Venue};
use kimp_core::testkit::{binance_perp, upbit_krw};
use kimp_core::units::{Nanos, Price};
use kimp_gateways::binance::BinanceMarketParser;
use kimp_gateways::codec::MarketMsg;
use kimp_gateways::symbols::SymbolTable;
use kimp_gateways::upbit::UpbitMarketParser;

use super::backtest::{RunSetup, Runner};
use super::candle_mode::FundingMissing;
use super::candles::{FxSeries, read_text};
use super::capture::{CapVenue, FrameKind, FrameReader, is_capture, read_file};
use super::cli::{BacktestArgs, Params, start_balances};
use super::metrics::RunResult;
use super::timefmt::epoch_to_ms;

/// A message to replay.
#[derive(Clone, Copy, Debug)]
struct Msg {
    ts: u64,
    venue: CapVenue,
    /// REST body: the Binance symbol it is for (index into `TickData::symbols`).
    rest: Option<u16>,
    file: u32,
    start: u32,
    end: u32,
}

/// Recorded messages, loaded and ordered by receive time.
#[derive(Debug, Default)]
pub struct TickData {
    arenas: Vec<Vec<u8>>,
    msgs: Vec<Msg>,
    symbols: Vec<String>,
    /// Lines or frames that could not be used, per file: `(file, count)`.
    pub skipped: Vec<(PathBuf, u64)>,
}

fn symbol_index(symbols: &mut Vec<String>, s: &str) -> u16 {
    let s = s.to_ascii_uppercase();
    match symbols.iter().position(|x| *x == s) {
        Some(i) => i as u16,
        None => {
            symbols.push(s);
            (symbols.len() - 1) as u16
        }
    }
}

/// Undoes a Python bytes literal's escapes (`\\`, `\'`, `\xNN`, `\n`, `\t`).
pub(crate) fn unescape_py(s: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 1 < s.len() {
            match s[i + 1] {
                b'x' if i + 3 < s.len() => {
                    let h = std::str::from_utf8(&s[i + 2..i + 4])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    out.push(h.unwrap_or(b'?'));
                    i += 4;
                    continue;
                }
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                c => out.push(c),
            }
            i += 2;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
}

fn venue_of(payload: &[u8]) -> CapVenue {
    let head = &payload[..payload.len().min(64)];
    let has = |n: &[u8]| head.windows(n.len()).any(|w| w == n);
    if has(b"\"ty\":") || has(b"\"type\":") || has(b"\"cd\":") || has(b"\"code\":\"KRW-") {
        CapVenue::Upbit
    } else {
        CapVenue::Binance
    }
}

impl TickData {
    /// Loads files: captures and raw recordings. A file name like `btcusdt_...` names the
    /// symbol of bare REST snapshots in a raw recording.
    pub fn load(paths: &[PathBuf]) -> anyhow::Result<Self> {
        let mut d = TickData::default();
        for (fi, path) in paths.iter().enumerate() {
            let raw = read_file(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let skipped = if is_capture(&raw) {
                d.load_capture(fi as u32, raw, path)?
            } else {
                let text = read_text(path)?;
                d.load_lines(fi as u32, text, path)
            };
            d.skipped.push((path.clone(), skipped));
        }
        // Stable: equal receive times keep file and line order.
        d.msgs.sort_by_key(|m| m.ts);
        Ok(d)
    }

    fn load_capture(&mut self, fi: u32, raw: Vec<u8>, path: &Path) -> anyhow::Result<u64> {
        let mut r =
            FrameReader::new(&raw).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let base = raw.as_ptr() as usize;
        let mut rest_symbol: std::collections::HashMap<u16, u16> = Default::default();
        let mut skipped = 0;
        let mut msgs = Vec::new();
        while let Some(f) = r.next_frame() {
            let start = f.payload.as_ptr() as usize - base;
            let m = |rest| Msg {
                ts: f.recv_ts_ns,
                venue: f.venue,
                rest,
                file: fi,
                start: start as u32,
                end: (start + f.payload.len()) as u32,
            };
            match f.kind {
                FrameKind::Ws => msgs.push(m(None)),
                FrameKind::Sent => {
                    // `GET /fapi/v1/depth?symbol=BTCUSDT...` names the next REST body.
                    let s = String::from_utf8_lossy(f.payload);
                    if let Some(sym) = s.split("symbol=").nth(1) {
                        let sym: String =
                            sym.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
                        let i = symbol_index(&mut self.symbols, &sym);
                        rest_symbol.insert(f.stream, i);
                    }
                }
                FrameKind::Rest => match rest_symbol.get(&f.stream) {
                    Some(&i) => msgs.push(m(Some(i))),
                    None => skipped += 1,
                },
                FrameKind::Conn => {}
            }
        }
        skipped += r.unknown + u64::from(r.torn_bytes > 0);
        self.msgs.extend(msgs);
        self.arenas.push(raw);
        Ok(skipped)
    }

    fn load_lines(&mut self, fi: u32, text: String, path: &Path) -> u64 {
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let file_symbol = name.split(['_', '.', '-']).next().unwrap_or("").to_ascii_uppercase();
        let sym = symbol_index(&mut self.symbols, &file_symbol);
        let mut arena: Vec<u8> = Vec::with_capacity(text.len());
        let mut skipped = 0;
        for line in text.lines() {
            let line = line.trim_end();
            // cryptofeed: `<float>: b'<json>'` or `<float>: <json>`; collector: `<int> <json>`.
            let (ts, payload): (Option<u64>, Vec<u8>) =
                if let Some((t, rest)) = line.split_once(": b'") {
                    let mut v = Vec::new();
                    unescape_py(rest.strip_suffix('\'').unwrap_or(rest).as_bytes(), &mut v);
                    (t.trim().parse::<f64>().ok().map(|s| (s * 1e9) as u64), v)
                } else if let Some((t, rest)) = line.split_once(' ') {
                    let t = t.trim_end_matches(':');
                    let ts = if t.contains('.') {
                        t.parse::<f64>().ok().map(|s| (s * 1e9) as u64)
                    } else {
                        t.parse::<i64>().ok().map(ns_of)
                    };
                    (ts, rest.trim().as_bytes().to_vec())
                } else {
                    (None, Vec::new())
                };
            let Some(ts) = ts.filter(|_| payload.first() == Some(&b'{')) else {
                skipped += 1;
                continue;
            };
            let venue = venue_of(&payload);
            let rest = (venue == CapVenue::Binance && payload.starts_with(b"{\"lastUpdateId\""))
                .then_some(sym);
            let start = arena.len() as u32;
            arena.extend_from_slice(&payload);
            self.msgs.push(Msg { ts, venue, rest, file: fi, start, end: arena.len() as u32 });
        }
        // Header lines of cryptofeed files are not messages; do not count them as bad.
        self.arenas.push(arena);
        skipped
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    /// True when nothing was loaded.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// First and last receive time, ns.
    pub fn span(&self) -> Option<(u64, u64)> {
        Some((self.msgs.first()?.ts, self.msgs.last()?.ts))
    }

    fn payload(&self, m: &Msg) -> &[u8] {
        &self.arenas[m.file as usize][m.start as usize..m.end as usize]
    }
}

/// An integer epoch (s, ms, µs or ns) to ns.
fn ns_of(v: i64) -> u64 {
    if v >= 100_000_000_000_000_000 {
        v as u64
    } else if v >= 100_000_000_000_000 {
        v as u64 * 1_000
    } else {
        epoch_to_ms(v).max(0) as u64 * 1_000_000
    }
}

/// The markets of the config's coins (BTC/ETH perp rules built in, others generic) and,
/// for `fx_source = upbit_usdt`, Upbit KRW-USDT.
pub fn markets(
    coins: &[(String, String, String)],
    with_usdt: bool,
    fees_e8: (i64, i64),
) -> Markets {
    let mut instruments = Vec::new();
    let mut specs = Vec::new();
    for (name, upbit, binance) in coins {
        let mut u = upbit_krw(upbit);
        u.taker_fee_e8 = fees_e8.0;
        let mut b = binance_perp(binance);
        if binance != "BTCUSDT" {
            b.tick = TickRule::Fixed(Price(1_000_000)); // 0.01
        }
        b.taker_fee_e8 = fees_e8.1;
        let base = instruments.len() as u16;
        instruments.push(u);
        instruments.push(b);
        specs.push(CoinSpec {
            name: Symbol::new(name).unwrap_or_default(),
            upbit: InstrumentId(base),
            binance: InstrumentId(base + 1),
        });
    }
    let fx = with_usdt.then(|| {
        instruments.push(upbit_krw("KRW-USDT"));
        InstrumentId(instruments.len() as u16 - 1)
    });
    Markets { instruments, coins: specs, fx }
}

struct Pending {
    ts: u64,
    first_id: u64,
    last_id: u64,
    prev: Option<u64>,
    bids: Vec<Level>,
    asks: Vec<Level>,
}

/// Replays `data` through one run over `[from, to)` (ns); `fx` feeds an official rate.
pub fn run(
    data: &TickData,
    setup: &RunSetup,
    fx: Option<&FxSeries>,
    missing: FundingMissing,
    from: u64,
    to: u64,
) -> anyhow::Result<RunResult> {
    let wall = std::time::Instant::now();
    let m = &setup.markets;
    let mut up = UpbitMarketParser::new(SymbolTable::for_venue(Venue::Upbit, &m.instruments));
    let mut bn = BinanceMarketParser::new(SymbolTable::for_venue(Venue::Binance, &m.instruments));
    let bn_table = SymbolTable::for_venue(Venue::Binance, &m.instruments);
    let rest_inst: Vec<Option<InstrumentId>> =
        data.symbols.iter().map(|s| bn_table.get(s.as_bytes())).collect();
    let mut r = Runner::new(setup)?;
    let msgs = &data.msgs[data.msgs.partition_point(|x| x.ts < from)..];
    let msgs = &msgs[..msgs.partition_point(|x| x.ts < to)];
    let Some(first) = msgs.first() else { return Ok(r.finish(0, wall)) };
    r.start(Nanos(first.ts.saturating_sub(1)), setup);
    let strat = setup.engine.strategy;
    if missing == FundingMissing::Zero && strat.funding_filter != FundingFilter::Off {
        // No settlement ever (next funding far away); the sign the filter accepts.
        let rate = match (strat.funding_filter, strat.direction) {
            (FundingFilter::Favourable, kimp_core::config::Direction::SellPremium) => -1,
            _ => 1,
        };
        for c in &m.coins {
            let f = Funding {
                inst: c.binance,
                exch_ts: Nanos(first.ts),
                mark: Price(0),
                rate_e8: rate,
                next_funding: Nanos(1 << 62),
            };
            r.funding(Nanos(first.ts), f, None);
        }
    }
    let mut fx_i = 0;
    let mut last_funding: Vec<Option<Funding>> = vec![None; m.instruments.len()];
    let mut pending: Vec<Vec<Pending>> = (0..m.instruments.len()).map(|_| Vec::new()).collect();
    for msg in msgs {
        let t = Nanos(msg.ts);
        if let Some(fx) = fx {
            while fx_i < fx.points.len() && fx.points[fx_i].0 as u64 * 1_000_000 <= msg.ts {
                r.fx(t, fx.points[fx_i].1);
                fx_i += 1;
            }
        }
        let payload = data.payload(msg);
        let parsed = match (msg.venue, msg.rest) {
            (CapVenue::Upbit, _) => up.parse(payload),
            (_, Some(sym)) => match rest_inst.get(sym as usize).copied().flatten() {
                Some(inst) => bn.parse_snapshot(inst, payload),
                None => continue,
            },
            _ => bn.parse(payload),
        };
        let Ok(MarketMsg::Event(ev)) = parsed else { continue };
        match ev {
            Event::Depth(d) if r.exec.books[d.inst.0 as usize].state() != BookState::Synced => {
                let q = &mut pending[d.inst.0 as usize];
                if q.len() < 100_000 {
                    q.push(Pending {
                        ts: msg.ts,
                        first_id: d.first_id,
                        last_id: d.last_id,
                        prev: d.prev_last_id,
                        bids: d.bids.to_vec(),
                        asks: d.asks.to_vec(),
                    });
                }
                // The engine counts it as not synced, as it would live.
                r.market(t, &ev);
            }
            Event::Book(b) => {
                let inst = b.inst;
                r.market(t, &ev);
                for p in std::mem::take(&mut pending[inst.0 as usize]) {
                    let _ = p.ts;
                    let d = DepthDiff {
                        inst,
                        exch_ts: t,
                        first_id: p.first_id,
                        last_id: p.last_id,
                        prev_last_id: p.prev,
                        bids: &p.bids,
                        asks: &p.asks,
                    };
                    r.market(t, &Event::Depth(d));
                }
            }
            Event::Funding(f) => {
                let i = f.inst.0 as usize;
                let settles = last_funding.get(i).copied().flatten().and_then(|p| {
                    (f.next_funding > p.next_funding && f.exch_ts >= p.next_funding)
                        .then_some((p.rate_e8, f.mark))
                });
                if let Some(s) = last_funding.get_mut(i) {
                    *s = Some(f);
                }
                r.funding(t, f, settles);
            }
            _ => r.market(t, &ev),
        }
    }
    let mut res = r.finish(2_000, wall);
    res.metrics.elapsed_ms = wall.elapsed().as_secs_f64() * 1e3;
    Ok(res)
}

/// `kimp backtest --input ...`.
pub fn run_cli(a: &BacktestArgs, base: &Params) -> anyhow::Result<()> {
    let data = TickData::load(&a.input)?;
    for (p, n) in &data.skipped {
        if *n > 0 {
            eprintln!("note: {}: {n} lines/frames skipped (headers, unknown or torn)", p.display());
        }
    }
    let fx = match &a.fx {
        Some(f) => Some(super::candles::load_fx(f, a.fx_lag.as_millis() as i64)?),
        None => None,
    };
    let (lo, hi) = data.span().ok_or_else(|| anyhow::anyhow!("no messages in the inputs"))?;
    let parse = |s: &Option<String>, d: u64| -> anyhow::Result<u64> {
        match s {
            Some(s) => super::timefmt::parse_utc_ms(s)
                .map(|ms| ms.max(0) as u64 * 1_000_000)
                .ok_or_else(|| anyhow::anyhow!("{s:?} is not a UTC time")),
            None => Ok(d),
        }
    };
    let (from, to) = (parse(&a.from, lo)?, parse(&a.to, hi + 1)?);
    let setup = tick_setup(base, &data, fx.as_ref(), a.seed, a.save.is_some());
    let res = run(&data, &setup, fx.as_ref(), a.funding_missing, from, to)?;
    super::cli::finish_single(
        a,
        base,
        res,
        "ticks",
        tick_notes(&data, fx.is_some(), a.funding_missing),
    )
}

/// The run setup of a tick backtest; balances are sized at the first recorded Upbit
/// price of each coin.
pub fn tick_setup(
    p: &Params,
    data: &TickData,
    fx: Option<&FxSeries>,
    seed: u64,
    keep: bool,
) -> RunSetup {
    let mut engine = p.config.engine();
    if fx.is_some() {
        engine.strategy.fx_source = FxSource::Official;
    }
    let fee = |bps: f64| (bps * 10_000.0).round() as i64;
    let coins: Vec<_> = p
        .config
        .coins
        .iter()
        .map(|c| (c.name.clone(), c.upbit.clone(), c.binance.clone()))
        .collect();
    let markets = markets(
        &coins,
        engine.strategy.fx_source == FxSource::UpbitUsdt,
        (fee(p.fees_bps.0), fee(p.fees_bps.1)),
    );
    let (px, usdt_fx) = first_prices(data, &markets);
    let fx0 = fx.and_then(|f| f.points.last().map(|x| x.1.to_f64())).or(usdt_fx).unwrap_or(1_400.0);
    RunSetup {
        balances: start_balances(p, engine.strategy.direction, &px, fx0),
        markets,
        engine,
        exec: p.exec(seed),
        capital_krw: p.capital_krw,
        timer_ms: p.config.runtime.timer_ms,
        equity_every_ms: 1_000,
        keep_series: keep,
    }
}

/// First recorded Upbit mid of each coin, and of KRW-USDT.
fn first_prices(data: &TickData, m: &Markets) -> (Vec<f64>, Option<f64>) {
    let mut up = UpbitMarketParser::new(SymbolTable::for_venue(Venue::Upbit, &m.instruments));
    let mut px = vec![0.0; m.coins.len()];
    let mut usdt = None;
    for msg in data.msgs.iter().filter(|x| x.venue == CapVenue::Upbit) {
        if let Ok(MarketMsg::Event(Event::Book(b))) = up.parse(data.payload(msg))
            && let (Some(bid), Some(ask)) = (b.bids.first(), b.asks.first())
        {
            let mid = (bid.px.to_f64() + ask.px.to_f64()) / 2.0;
            if Some(b.inst) == m.fx {
                usdt.get_or_insert(mid);
            }
            for (c, spec) in m.coins.iter().enumerate() {
                if spec.upbit == b.inst && px[c] == 0.0 {
                    px[c] = mid;
                }
            }
            if px.iter().all(|&p| p > 0.0) && (m.fx.is_none() || usdt.is_some()) {
                break;
            }
        }
    }
    (px, usdt)
}

fn tick_notes(data: &TickData, official_fx: bool, missing: FundingMissing) -> Vec<String> {
    vec![
        format!("Tick mode: {} recorded messages replayed in receive-time order through the gateways' parsers.", data.len()),
        "Fills walk the recorded book at the order's arrival (receive-time clock); our fills consume liquidity until the next update.".into(),
        if official_fx { "FX: --fx series as the official rate (fx_source = official).".into() } else { "FX: from the recorded Upbit KRW-USDT book (fx_source as configured).".into() },
        format!("Funding: from recorded markPrice messages; where absent: {missing:?}."),
    ]
}
