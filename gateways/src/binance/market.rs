//! Binance market data: `depthUpdate` (futures with `pu`, spot without), `bookTicker`
//! (futures with `e`/`E`/`T`, spot without), `markPriceUpdate`, `trade`, the combined
//! stream envelope `{"stream":…,"data":…}`, REST depth snapshots, subscription acks and
//! error replies.
//!
//! Two paths produce identical results (tested over all recorded data): `parse` uses the
//! schema-aware scanner (measured faster on real depth messages, see
//! examples/parse_bench.rs); `parse_simd` uses simd-json and is the general,
//! fully-validating path.

use kimp_core::event::{Bbo, BookSnapshot, DepthDiff, Event, Funding, Level, Side, Trade};
use kimp_core::instrument::{InstrumentId, Venue};
use kimp_core::units::{Nanos, Price, Qty};

use super::depth::{scan_levels, tape_levels};
use crate::codec::{CodecError, CodecResult, CodecStats, ErrText, MarketMsg, VenueError};
use crate::json::{Cursor, Doc, JsonScratch};
use crate::symbols::SymbolTable;

/// Most levels accepted per side (spot REST snapshots go up to 5,000).
pub const MAX_LEVELS: usize = 5_000;

/// Fields of one Binance market payload, as raw text; levels go straight to the buffers.
#[derive(Default, Clone, Copy)]
struct Raw<'x> {
    e: Option<&'x [u8]>,
    ev_time: Option<u64>,
    tx_time: Option<u64>,
    sym: Option<&'x [u8]>,
    first_id: Option<u64>,
    last_id: Option<u64>,
    prev_id: Option<u64>,
    last_update_id: Option<u64>,
    /// `b`/`a` as strings (bookTicker) and `B`/`A`.
    b: Option<&'x [u8]>,
    bq: Option<&'x [u8]>,
    a: Option<&'x [u8]>,
    aq: Option<&'x [u8]>,
    /// `b`/`bids` and `a`/`asks` were level arrays.
    levels_b: bool,
    levels_a: bool,
    p: Option<&'x [u8]>,
    q: Option<&'x [u8]>,
    r: Option<&'x [u8]>,
    t: Option<u64>,
    m: Option<bool>,
    /// `result` key present (subscription ack), with `id`.
    result: bool,
    id: Option<u64>,
    code: Option<i64>,
    msg: Option<&'x [u8]>,
}

/// Parses Binance market-data frames into engine events. One per connection/thread.
#[derive(Debug)]
pub struct BinanceMarketParser {
    symbols: SymbolTable,
    bids: Vec<Level>,
    asks: Vec<Level>,
    json: JsonScratch,
    /// Outcome counters.
    pub stats: CodecStats,
}

impl BinanceMarketParser {
    /// A parser for the symbols in `symbols` (futures or spot table).
    pub fn new(symbols: SymbolTable) -> Self {
        Self {
            symbols,
            bids: Vec::with_capacity(1024),
            asks: Vec::with_capacity(1024),
            json: JsonScratch::new(64 * 1024),
            stats: CodecStats::default(),
        }
    }

    /// The venue of the symbol table (futures or spot).
    pub fn venue(&self) -> Venue {
        self.symbols.venue()
    }

    /// Parses one WebSocket frame (raw or combined-stream form) with the fast scanner.
    pub fn parse<'a>(&'a mut self, msg: &'a [u8]) -> CodecResult<MarketMsg<'a>> {
        let r = scan(msg, &mut self.bids, &mut self.asks);
        if matches!(&r, Ok(raw) if raw.code.is_some() && raw.e.is_none()) {
            // Venue errors are rare and their text may be escaped: the general path
            // decodes it properly.
            return self.parse_simd(msg);
        }
        let out = match r {
            Ok(raw) => build(&raw, &self.symbols, None, &self.bids, &self.asks),
            Err(e) => Err(e),
        };
        self.stats.record(&out, matches!(out, Ok(MarketMsg::Event(_))));
        out
    }

    /// As [`parse`](Self::parse), through simd-json (general path).
    pub fn parse_simd<'a>(&'a mut self, msg: &[u8]) -> CodecResult<MarketMsg<'a>> {
        let (bids, asks, symbols) = (&mut self.bids, &mut self.asks, &self.symbols);
        let r = self.json.with_doc(msg, false, |d| {
            let raw = tape_raw(d, bids, asks)?;
            // Resolve everything that borrows the tape before it is released.
            Ok(Resolved::from_raw(&raw, symbols))
        });
        let out = match r {
            Ok(res) => res.finish(&self.bids, &self.asks),
            Err(e) => Err(e),
        };
        self.stats.record(&out, matches!(out, Ok(MarketMsg::Event(_))));
        out
    }

    /// Parses a REST depth snapshot (`GET /fapi/v1/depth`, `/api/v3/depth`), which does
    /// not name its symbol, for `inst`.
    pub fn parse_snapshot<'a>(
        &'a mut self,
        inst: InstrumentId,
        msg: &'a [u8],
    ) -> CodecResult<MarketMsg<'a>> {
        let r = scan(msg, &mut self.bids, &mut self.asks);
        let out = match r {
            Ok(raw) if raw.last_update_id.is_some() => {
                build(&raw, &self.symbols, Some(inst), &self.bids, &self.asks)
            }
            Ok(_) => Err(CodecError::Missing("lastUpdateId")),
            Err(e) => Err(e),
        };
        self.stats.record(&out, matches!(out, Ok(MarketMsg::Event(_))));
        out
    }
}

/// Scans a frame, descending into the combined-stream envelope.
fn scan<'x>(msg: &'x [u8], bids: &mut Vec<Level>, asks: &mut Vec<Level>) -> CodecResult<Raw<'x>> {
    bids.clear();
    asks.clear();
    let mut c = Cursor::new(msg);
    let mut raw = Raw::default();
    c.object()?;
    let mut first = true;
    let mut enveloped = false;
    let mut n = 0;
    while let Some(k) = c.key(&mut first)? {
        if n == 0 && (k == b"stream" || k == b"data") {
            enveloped = true;
        }
        n += 1;
        if !enveloped {
            field(&mut c, k, &mut raw, bids, asks)?;
            continue;
        }
        match k {
            b"stream" => {
                c.str()?;
            }
            b"data" => raw = scan_payload(&mut c, bids, asks)?,
            _ => c.skip()?,
        }
    }
    if !c.at_end() {
        return Err(CodecError::Malformed("trailing bytes"));
    }
    Ok(raw)
}

fn scan_payload<'x>(
    c: &mut Cursor<'x>,
    bids: &mut Vec<Level>,
    asks: &mut Vec<Level>,
) -> CodecResult<Raw<'x>> {
    let mut raw = Raw::default();
    c.object()?;
    let mut first = true;
    while let Some(k) = c.key(&mut first)? {
        field(c, k, &mut raw, bids, asks)?;
    }
    Ok(raw)
}

#[inline]
fn field<'x>(
    c: &mut Cursor<'x>,
    k: &[u8],
    raw: &mut Raw<'x>,
    bids: &mut Vec<Level>,
    asks: &mut Vec<Level>,
) -> CodecResult<()> {
    match k {
        b"e" => raw.e = Some(c.str()?),
        b"E" => raw.ev_time = Some(c.u64("E")?),
        b"T" => raw.tx_time = Some(c.u64("T")?),
        b"s" => raw.sym = Some(c.str()?),
        b"U" => raw.first_id = Some(c.u64("U")?),
        b"u" => raw.last_id = Some(c.u64("u")?),
        b"pu" => raw.prev_id = Some(c.u64("pu")?),
        b"lastUpdateId" => raw.last_update_id = Some(c.u64("lastUpdateId")?),
        b"b" | b"bids" if c.peek() == Some(b'[') => {
            scan_levels(c, bids, MAX_LEVELS, "bids")?;
            raw.levels_b = true;
        }
        b"a" | b"asks" if c.peek() == Some(b'[') => {
            scan_levels(c, asks, MAX_LEVELS, "asks")?;
            raw.levels_a = true;
        }
        // Spot `trade` carries buyer/seller order ids as numbers under `b`/`a`.
        b"b" if c.peek() == Some(b'"') => raw.b = Some(c.str()?),
        b"a" if c.peek() == Some(b'"') => raw.a = Some(c.str()?),
        b"B" => raw.bq = Some(c.str()?),
        b"A" => raw.aq = Some(c.str()?),
        b"p" => raw.p = Some(c.str()?),
        b"q" => raw.q = Some(c.str()?),
        b"r" => raw.r = Some(c.str()?),
        b"t" => raw.t = Some(c.u64("t")?),
        b"m" => raw.m = Some(c.bool()?),
        b"result" => {
            raw.result = true;
            c.skip()?;
        }
        b"id" => raw.id = if c.null() { Some(0) } else { Some(c.u64("id")?) },
        b"code" => {
            let t = c.num()?;
            let (neg, d) = match t.split_first() {
                Some((b'-', d)) => (true, d),
                _ => (false, t),
            };
            let v = crate::num::uint(d)
                .and_then(|v| i64::try_from(v).ok())
                .ok_or(CodecError::BadNumber("code"))?;
            raw.code = Some(if neg { -v } else { v });
        }
        b"msg" => raw.msg = Some(c.str()?),
        _ => c.skip()?,
    }
    Ok(())
}

/// The simd-json twin of `scan`.
fn tape_raw<'x>(
    d: &Doc<'_, 'x>,
    bids: &mut Vec<Level>,
    asks: &mut Vec<Level>,
) -> CodecResult<Raw<'x>> {
    if !d.is_object(0) {
        return Err(CodecError::Malformed("not an object"));
    }
    let mut obj = 0;
    if let Some((k, _)) = d.fields(0).next()
        && (k == "stream" || k == "data")
    {
        if d.get(0, "stream").is_some_and(|s| d.str(s).is_none()) {
            return Err(CodecError::Malformed("stream"));
        }
        match d.get(0, "data") {
            Some(data) if d.is_object(data) => obj = data,
            Some(_) => return Err(CodecError::Malformed("data")),
            None => return Err(CodecError::UnknownMessage),
        }
    }
    let mut raw = Raw::default();
    let bad = |f: &'static str| CodecError::BadNumber(f);
    for (k, v) in d.fields(obj) {
        let s = || d.str(v).map(str::as_bytes).ok_or(CodecError::Malformed("string field"));
        match k {
            "e" => raw.e = Some(s()?),
            "E" => raw.ev_time = Some(d.u64(v).ok_or(bad("E"))?),
            "T" => raw.tx_time = Some(d.u64(v).ok_or(bad("T"))?),
            "s" => raw.sym = Some(s()?),
            "U" => raw.first_id = Some(d.u64(v).ok_or(bad("U"))?),
            "u" => raw.last_id = Some(d.u64(v).ok_or(bad("u"))?),
            "pu" => raw.prev_id = Some(d.u64(v).ok_or(bad("pu"))?),
            "lastUpdateId" => raw.last_update_id = Some(d.u64(v).ok_or(bad("lastUpdateId"))?),
            "b" | "bids" if d.array_len(v).is_some() => {
                tape_levels(d, v, bids, MAX_LEVELS, "bids")?;
                raw.levels_b = true;
            }
            "a" | "asks" if d.array_len(v).is_some() => {
                tape_levels(d, v, asks, MAX_LEVELS, "asks")?;
                raw.levels_a = true;
            }
            "b" if d.str(v).is_some() => raw.b = Some(s()?),
            "a" if d.str(v).is_some() => raw.a = Some(s()?),
            "B" => raw.bq = Some(s()?),
            "A" => raw.aq = Some(s()?),
            "p" => raw.p = Some(s()?),
            "q" => raw.q = Some(s()?),
            "r" => raw.r = Some(s()?),
            "t" => raw.t = Some(d.u64(v).ok_or(bad("t"))?),
            "m" => raw.m = Some(d.bool(v).ok_or(CodecError::Malformed("m"))?),
            "result" => raw.result = true,
            "id" => raw.id = if d.is_null(v) { Some(0) } else { Some(d.u64(v).ok_or(bad("id"))?) },
            "code" => raw.code = Some(d.i64(v).ok_or(bad("code"))?),
            "msg" => raw.msg = Some(s()?),
            _ => {}
        }
    }
    Ok(raw)
}

/// Everything of a `Raw` except the levels, resolved to owned values (so the simd-json
/// tape can be released before the event borrows the level buffers).
#[derive(Clone, Copy)]
enum Resolved {
    Snapshot { inst: InstrumentId, ts: Nanos, id: u64 },
    Depth { inst: InstrumentId, ts: Nanos, first: u64, last: u64, prev: Option<u64> },
    Msg(MarketMsg<'static>),
    Err(CodecError),
}

impl Resolved {
    fn from_raw(raw: &Raw<'_>, symbols: &SymbolTable) -> Self {
        match build(raw, symbols, None, &[], &[]) {
            Ok(MarketMsg::Event(Event::Book(b))) => {
                Resolved::Snapshot { inst: b.inst, ts: b.exch_ts, id: b.last_update_id }
            }
            Ok(MarketMsg::Event(Event::Depth(d))) => Resolved::Depth {
                inst: d.inst,
                ts: d.exch_ts,
                first: d.first_id,
                last: d.last_id,
                prev: d.prev_last_id,
            },
            Ok(MarketMsg::Event(e)) => Resolved::Msg(MarketMsg::Event(detach(e))),
            Ok(MarketMsg::Ticker(t)) => Resolved::Msg(MarketMsg::Ticker(t)),
            Ok(MarketMsg::Heartbeat) => Resolved::Msg(MarketMsg::Heartbeat),
            Ok(MarketMsg::Ack { id }) => Resolved::Msg(MarketMsg::Ack { id }),
            Ok(MarketMsg::VenueError(v)) => Resolved::Msg(MarketMsg::VenueError(v)),
            Ok(MarketMsg::Skipped) => Resolved::Msg(MarketMsg::Skipped),
            Err(e) => Resolved::Err(e),
        }
    }

    fn finish<'a>(self, bids: &'a [Level], asks: &'a [Level]) -> CodecResult<MarketMsg<'a>> {
        match self {
            Resolved::Snapshot { inst, ts, id } => {
                Ok(MarketMsg::Event(Event::Book(BookSnapshot {
                    inst,
                    exch_ts: ts,
                    last_update_id: id,
                    bids,
                    asks,
                })))
            }
            Resolved::Depth { inst, ts, first, last, prev } => {
                Ok(MarketMsg::Event(Event::Depth(DepthDiff {
                    inst,
                    exch_ts: ts,
                    first_id: first,
                    last_id: last,
                    prev_last_id: prev,
                    bids,
                    asks,
                })))
            }
            Resolved::Msg(m) => Ok(m),
            Resolved::Err(e) => Err(e),
        }
    }
}

/// Re-lifetimes an event that borrows nothing (bbo, trade, funding).
fn detach(e: Event<'_>) -> Event<'static> {
    match e {
        Event::Bbo(b) => Event::Bbo(b),
        Event::Trade(t) => Event::Trade(t),
        Event::Funding(f) => Event::Funding(f),
        // Book and depth are handled by the caller; nothing else is produced here.
        _ => Event::Timer,
    }
}

#[inline]
fn dec<T>(v: Option<&[u8]>, field: &'static str, f: fn(i64) -> T) -> CodecResult<T> {
    let t = v.ok_or(CodecError::Missing(field))?;
    crate::num::decimal(t).map(f).ok_or(CodecError::BadNumber(field))
}

/// As [`dec`] for prices and quantities, which are never negative.
#[inline]
fn dec_nn<T>(v: Option<&[u8]>, field: &'static str, f: fn(i64) -> T) -> CodecResult<T> {
    let t = v.ok_or(CodecError::Missing(field))?;
    crate::num::decimal(t).filter(|&x| x >= 0).map(f).ok_or(CodecError::BadNumber(field))
}

/// Turns collected fields into a message. `snapshot_inst` is given for REST snapshots.
fn build<'a>(
    raw: &Raw<'_>,
    symbols: &SymbolTable,
    snapshot_inst: Option<InstrumentId>,
    bids: &'a [Level],
    asks: &'a [Level],
) -> CodecResult<MarketMsg<'a>> {
    let inst = || -> CodecResult<InstrumentId> {
        symbols.get(raw.sym.ok_or(CodecError::Missing("s"))?).ok_or(CodecError::UnknownSymbol)
    };
    let ms = |t: Option<u64>| Nanos::from_ms(t.unwrap_or(0));
    match raw.e {
        Some(b"depthUpdate") => {
            // Both sides must come from this message, never from a previous one.
            if !(raw.levels_b && raw.levels_a) {
                return Err(CodecError::Missing("b/a"));
            }
            Ok(MarketMsg::Event(Event::Depth(DepthDiff {
                inst: inst()?,
                exch_ts: ms(raw.ev_time),
                first_id: raw.first_id.ok_or(CodecError::Missing("U"))?,
                last_id: raw.last_id.ok_or(CodecError::Missing("u"))?,
                prev_last_id: raw.prev_id,
                bids,
                asks,
            })))
        }
        Some(b"bookTicker") => bbo(raw, inst()?, ms(raw.ev_time.or(raw.tx_time))),
        Some(b"markPriceUpdate") => Ok(MarketMsg::Event(Event::Funding(Funding {
            inst: inst()?,
            exch_ts: ms(raw.ev_time),
            mark: dec_nn(raw.p, "p", Price)?,
            rate_e8: dec(raw.r, "r", |v| v)?,
            next_funding: Nanos::from_ms(raw.tx_time.ok_or(CodecError::Missing("T"))?),
        }))),
        Some(b"trade") => Ok(MarketMsg::Event(Event::Trade(Trade {
            inst: inst()?,
            exch_ts: ms(raw.tx_time.or(raw.ev_time)),
            px: dec_nn(raw.p, "p", Price)?,
            qty: dec_nn(raw.q, "q", Qty)?,
            // `m`: the buyer was the maker, so the seller took liquidity.
            aggressor: if raw.m.ok_or(CodecError::Missing("m"))? { Side::Sell } else { Side::Buy },
            trade_id: raw.t.ok_or(CodecError::Missing("t"))?,
        }))),
        Some(b"serverShutdown") => Ok(MarketMsg::Skipped),
        Some(_) => Err(CodecError::UnknownMessage),
        None => {
            if let Some(id) = raw.last_update_id {
                let inst = match snapshot_inst {
                    Some(i) => i,
                    None => return Err(CodecError::Missing("instrument for snapshot")),
                };
                if !(raw.levels_b && raw.levels_a) {
                    return Err(CodecError::Missing("bids/asks"));
                }
                Ok(MarketMsg::Event(Event::Book(BookSnapshot {
                    inst,
                    exch_ts: ms(raw.ev_time.or(raw.tx_time)),
                    last_update_id: id,
                    bids,
                    asks,
                })))
            } else if raw.b.is_some() && raw.a.is_some() {
                // Spot bookTicker has no event type and no times.
                bbo(raw, inst()?, Nanos(0))
            } else if raw.result {
                Ok(MarketMsg::Ack { id: raw.id.unwrap_or(0) })
            } else if let Some(code) = raw.code {
                Ok(MarketMsg::VenueError(VenueError {
                    code,
                    name: ErrText::new(raw.msg.unwrap_or(b"")),
                }))
            } else {
                Err(CodecError::UnknownMessage)
            }
        }
    }
}

fn bbo<'a>(raw: &Raw<'_>, inst: InstrumentId, ts: Nanos) -> CodecResult<MarketMsg<'a>> {
    Ok(MarketMsg::Event(Event::Bbo(Bbo {
        inst,
        exch_ts: ts,
        update_id: raw.last_id.unwrap_or(0),
        bid: Level::new(dec_nn(raw.b, "b", Price)?, dec_nn(raw.bq, "B", Qty)?),
        ask: Level::new(dec_nn(raw.a, "a", Price)?, dec_nn(raw.aq, "A", Qty)?),
    })))
}
