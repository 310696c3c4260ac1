//! Upbit quotation WebSocket: `orderbook` (DEFAULT and SIMPLE keys, full top-N books),
//! `trade`, `ticker`, the `{"status":"UP"}` keep-alive answer and `{"error":…}`.
//!
//! Prices and sizes are JSON numbers written as integers, fractions or exponents
//! (`4.843e-05`); both paths read the number's text and convert it exactly, never via
//! f64. `parse` uses the scanner (measured faster, see examples/parse_bench.rs);
//! `parse_simd` uses simd-json and must agree (tested over the recordings).

use kimp_core::event::{BookSnapshot, Event, Level, Side, Trade};
use kimp_core::instrument::InstrumentId;
use kimp_core::units::{Nanos, Price, Qty};

use crate::codec::{CodecError, CodecResult, CodecStats, ErrText, MarketMsg, Ticker, VenueError};
use crate::json::{Cursor, Doc, JsonScratch};
use crate::symbols::SymbolTable;

/// Most order-book units accepted (Upbit sends at most 30).
pub const MAX_UNITS: usize = 64;

#[derive(Default, Clone, Copy)]
struct Raw<'x> {
    ty: Option<&'x [u8]>,
    code: Option<&'x [u8]>,
    tms: Option<u64>,
    units: bool,
    tp: Option<i64>,
    tv: Option<i64>,
    ab: Option<&'x [u8]>,
    ttms: Option<u64>,
    sid: Option<u64>,
    atv24h: Option<i64>,
    status: Option<&'x [u8]>,
    err_name: Option<&'x [u8]>,
}

/// Parses Upbit quotation frames into engine events. One per connection/thread.
#[derive(Debug)]
pub struct UpbitMarketParser {
    symbols: SymbolTable,
    bids: Vec<Level>,
    asks: Vec<Level>,
    json: JsonScratch,
    /// Outcome counters.
    pub stats: CodecStats,
}

impl UpbitMarketParser {
    /// A parser for the markets in `symbols`.
    pub fn new(symbols: SymbolTable) -> Self {
        Self {
            symbols,
            bids: Vec::with_capacity(MAX_UNITS),
            asks: Vec::with_capacity(MAX_UNITS),
            json: JsonScratch::new(16 * 1024),
            stats: CodecStats::default(),
        }
    }

    /// Parses one frame (binary or text; the bytes are UTF-8 JSON) with the scanner.
    pub fn parse<'a>(&'a mut self, msg: &'a [u8]) -> CodecResult<MarketMsg<'a>> {
        let r = scan(msg, &mut self.bids, &mut self.asks);
        if matches!(&r, Ok(raw) if raw.err_name.is_some() || raw.status.is_some()) {
            // Errors and keep-alive answers are rare and their text may be escaped: the
            // general path decodes it properly.
            return self.parse_simd(msg);
        }
        let out = match r {
            Ok(raw) => build(&raw, &self.symbols, &self.bids, &self.asks),
            Err(e) => Err(e),
        };
        self.stats.record(&out, matches!(out, Ok(MarketMsg::Event(_))));
        out
    }

    /// As [`parse`](Self::parse), through simd-json (general path).
    pub fn parse_simd<'a>(&'a mut self, msg: &[u8]) -> CodecResult<MarketMsg<'a>> {
        let (bids, asks, symbols) = (&mut self.bids, &mut self.asks, &self.symbols);
        let r = self.json.with_doc(msg, true, |d| {
            let raw = tape_raw(d, bids, asks)?;
            Ok(match build(&raw, symbols, &[], &[]) {
                Ok(MarketMsg::Event(Event::Book(b))) => Ok(Pending::Book(b.inst, b.exch_ts)),
                Ok(MarketMsg::Event(Event::Trade(t))) => {
                    Ok(Pending::Msg(MarketMsg::Event(Event::Trade(t))))
                }
                Ok(MarketMsg::Ticker(t)) => Ok(Pending::Msg(MarketMsg::Ticker(t))),
                Ok(MarketMsg::Heartbeat) => Ok(Pending::Msg(MarketMsg::Heartbeat)),
                Ok(MarketMsg::VenueError(v)) => Ok(Pending::Msg(MarketMsg::VenueError(v))),
                Ok(_) => Ok(Pending::Msg(MarketMsg::Skipped)),
                Err(e) => Err(e),
            })
        });
        let out = match r {
            Ok(Ok(Pending::Book(inst, ts))) => Ok(book(inst, ts, &self.bids, &self.asks)),
            Ok(Ok(Pending::Msg(m))) => Ok(m),
            Ok(Err(e)) | Err(e) => Err(e),
        };
        self.stats.record(&out, matches!(out, Ok(MarketMsg::Event(_))));
        out
    }
}

enum Pending {
    Book(InstrumentId, Nanos),
    Msg(MarketMsg<'static>),
}

fn book<'a>(inst: InstrumentId, ts: Nanos, bids: &'a [Level], asks: &'a [Level]) -> MarketMsg<'a> {
    MarketMsg::Event(Event::Book(BookSnapshot { inst, exch_ts: ts, last_update_id: 0, bids, asks }))
}

/// Adds a unit's two sides; zero-price units pad thin books and are skipped (as
/// cryptofeed does), each side on its own.
#[inline]
fn push_unit(bids: &mut Vec<Level>, asks: &mut Vec<Level>, u: [Option<i64>; 4]) -> CodecResult<()> {
    let [ap, bp, asz, bsz] = u;
    let m = |v: Option<i64>, f| v.ok_or(CodecError::Missing(f));
    let (ap, bp, asz, bsz) =
        (m(ap, "ask_price")?, m(bp, "bid_price")?, m(asz, "ask_size")?, m(bsz, "bid_size")?);
    // Zero pads a thin book; a negative value is hostile (dropping just that level would
    // leave a book that looks whole).
    if ap < 0 || bp < 0 || asz < 0 || bsz < 0 {
        return Err(CodecError::BadNumber("orderbook_units"));
    }
    if bp > 0 {
        bids.push(Level::new(Price(bp), Qty(bsz)));
    }
    if ap > 0 {
        asks.push(Level::new(Price(ap), Qty(asz)));
    }
    Ok(())
}

/// The unit layouts Upbit sends, key by key with their punctuation: DEFAULT and SIMPLE.
const UNIT_LAYOUTS: [[&[u8]; 4]; 2] = [
    [b"{\"ask_price\":", b",\"bid_price\":", b",\"ask_size\":", b",\"bid_size\":"],
    [b"{\"ap\":", b",\"bp\":", b",\"as\":", b",\"bs\":"],
];

/// A unit written exactly as Upbit writes it (one of [`UNIT_LAYOUTS`], no spaces): its
/// keys are matched as whole byte strings instead of being scanned and looked up one by
/// one, and numbers must be plain (`Cursor::plain_decimal`). `None` on anything else
/// (other order, spaces, extra keys, exponents, a bad number); the
/// caller then rescans the unit from its start with the general path, so the result and
/// the errors are the general path's.
#[inline]
fn fast_unit(c: &mut Cursor<'_>) -> Option<[Option<i64>; 4]> {
    let keys = UNIT_LAYOUTS.iter().find(|k| c.lit(k[0]))?;
    let mut u = [None; 4];
    for (i, k) in keys.iter().enumerate() {
        if i > 0 && !c.lit(k) {
            return None;
        }
        u[i] = Some(c.plain_decimal()?);
    }
    c.lit(b"}").then_some(u)
}

fn scan_units(c: &mut Cursor<'_>, bids: &mut Vec<Level>, asks: &mut Vec<Level>) -> CodecResult<()> {
    bids.clear();
    asks.clear();
    c.array()?;
    let mut first = true;
    let mut n = 0;
    while c.next_elem(&mut first)? {
        n += 1;
        if n > MAX_UNITS {
            return Err(CodecError::TooLarge);
        }
        let at = *c;
        if let Some(u) = fast_unit(c) {
            push_unit(bids, asks, u)?;
            continue;
        }
        *c = at;
        c.object()?;
        let mut u = [None; 4];
        let mut f = true;
        while let Some(k) = c.key(&mut f)? {
            let slot = match k {
                b"ap" | b"ask_price" => 0,
                b"bp" | b"bid_price" => 1,
                b"as" | b"ask_size" => 2,
                b"bs" | b"bid_size" => 3,
                _ => {
                    c.skip()?;
                    continue;
                }
            };
            u[slot] = Some(c.decimal("orderbook_units")?);
        }
        push_unit(bids, asks, u)?;
    }
    Ok(())
}

fn scan<'x>(msg: &'x [u8], bids: &mut Vec<Level>, asks: &mut Vec<Level>) -> CodecResult<Raw<'x>> {
    let mut c = Cursor::new(msg);
    let mut raw = Raw::default();
    c.object()?;
    let mut first = true;
    while let Some(k) = c.key(&mut first)? {
        match k {
            b"ty" | b"type" => raw.ty = Some(c.str()?),
            b"cd" | b"code" => raw.code = Some(c.str()?),
            b"tms" | b"timestamp" => raw.tms = Some(c.u64("timestamp")?),
            b"obu" | b"orderbook_units" => {
                scan_units(&mut c, bids, asks)?;
                raw.units = true;
            }
            b"tp" | b"trade_price" => raw.tp = Some(c.decimal("trade_price")?),
            b"tv" | b"trade_volume" => raw.tv = Some(c.decimal("trade_volume")?),
            b"ab" | b"ask_bid" => raw.ab = Some(c.str()?),
            b"ttms" | b"trade_timestamp" => raw.ttms = Some(c.u64("trade_timestamp")?),
            b"sid" | b"sequential_id" => raw.sid = Some(c.u64("sequential_id")?),
            b"atv24h" | b"acc_trade_volume_24h" => {
                raw.atv24h = Some(c.decimal("acc_trade_volume_24h")?)
            }
            b"status" => raw.status = Some(c.str()?),
            b"error" => {
                c.object()?;
                let mut f = true;
                raw.err_name = Some(b"");
                while let Some(k) = c.key(&mut f)? {
                    if k == b"name" {
                        raw.err_name = Some(c.str()?);
                    } else {
                        c.skip()?;
                    }
                }
            }
            _ => c.skip()?,
        }
    }
    if !c.at_end() {
        return Err(CodecError::Malformed("trailing bytes"));
    }
    Ok(raw)
}

fn tape_raw<'x>(
    d: &Doc<'_, 'x>,
    bids: &mut Vec<Level>,
    asks: &mut Vec<Level>,
) -> CodecResult<Raw<'x>> {
    if !d.is_object(0) {
        return Err(CodecError::Malformed("not an object"));
    }
    let mut raw = Raw::default();
    let s = |v: usize| d.str(v).map(str::as_bytes).ok_or(CodecError::Malformed("string field"));
    let num = |v: usize, f: &'static str| d.decimal(v).ok_or(CodecError::BadNumber(f));
    for (k, v) in d.fields(0) {
        match k {
            "ty" | "type" => raw.ty = Some(s(v)?),
            "cd" | "code" => raw.code = Some(s(v)?),
            "tms" | "timestamp" => {
                raw.tms = Some(d.u64(v).ok_or(CodecError::BadNumber("timestamp"))?)
            }
            "obu" | "orderbook_units" => {
                bids.clear();
                asks.clear();
                let n = d.array_len(v).ok_or(CodecError::Malformed("orderbook_units"))?;
                if n > MAX_UNITS {
                    return Err(CodecError::TooLarge);
                }
                for e in d.elems(v) {
                    if !d.is_object(e) {
                        return Err(CodecError::Malformed("orderbook_units"));
                    }
                    let mut u = [None; 4];
                    for (k, x) in d.fields(e) {
                        let slot = match k {
                            "ap" | "ask_price" => 0,
                            "bp" | "bid_price" => 1,
                            "as" | "ask_size" => 2,
                            "bs" | "bid_size" => 3,
                            _ => continue,
                        };
                        u[slot] =
                            Some(d.decimal(x).ok_or(CodecError::BadNumber("orderbook_units"))?);
                    }
                    push_unit(bids, asks, u)?;
                }
                raw.units = true;
            }
            "tp" | "trade_price" => raw.tp = Some(num(v, "trade_price")?),
            "tv" | "trade_volume" => raw.tv = Some(num(v, "trade_volume")?),
            "ab" | "ask_bid" => raw.ab = Some(s(v)?),
            "ttms" | "trade_timestamp" => {
                raw.ttms = Some(d.u64(v).ok_or(CodecError::BadNumber("trade_timestamp"))?)
            }
            "sid" | "sequential_id" => {
                raw.sid = Some(d.u64(v).ok_or(CodecError::BadNumber("sequential_id"))?)
            }
            "atv24h" | "acc_trade_volume_24h" => raw.atv24h = Some(num(v, "acc_trade_volume_24h")?),
            "status" => raw.status = Some(s(v)?),
            "error" => {
                raw.err_name =
                    Some(d.get(v, "name").and_then(|n| d.str(n)).map_or(&b""[..], str::as_bytes));
            }
            _ => {}
        }
    }
    Ok(raw)
}

fn build<'a>(
    raw: &Raw<'_>,
    symbols: &SymbolTable,
    bids: &'a [Level],
    asks: &'a [Level],
) -> CodecResult<MarketMsg<'a>> {
    let inst = || {
        symbols.get(raw.code.ok_or(CodecError::Missing("code"))?).ok_or(CodecError::UnknownSymbol)
    };
    match raw.ty {
        Some(b"orderbook") => {
            if !raw.units {
                return Err(CodecError::Missing("orderbook_units"));
            }
            let ts = Nanos::from_ms(raw.tms.ok_or(CodecError::Missing("timestamp"))?);
            Ok(book(inst()?, ts, bids, asks))
        }
        Some(b"trade") => Ok(MarketMsg::Event(Event::Trade(Trade {
            inst: inst()?,
            exch_ts: Nanos::from_ms(
                raw.ttms.or(raw.tms).ok_or(CodecError::Missing("trade_timestamp"))?,
            ),
            px: Price(raw.tp.ok_or(CodecError::Missing("trade_price"))?),
            qty: Qty(raw.tv.ok_or(CodecError::Missing("trade_volume"))?),
            aggressor: match raw.ab {
                Some(b"BID") => Side::Buy,
                Some(b"ASK") => Side::Sell,
                _ => return Err(CodecError::Malformed("ask_bid")),
            },
            trade_id: raw.sid.ok_or(CodecError::Missing("sequential_id"))?,
        }))),
        Some(b"ticker") => Ok(MarketMsg::Ticker(Ticker {
            inst: inst()?,
            exch_ts: Nanos::from_ms(raw.tms.ok_or(CodecError::Missing("timestamp"))?),
            last: Price(raw.tp.ok_or(CodecError::Missing("trade_price"))?),
            volume_24h: Qty(raw.atv24h.unwrap_or(0)),
        })),
        Some(_) => Err(CodecError::UnknownMessage),
        None => match (raw.status, raw.err_name) {
            (Some(b"UP"), _) => Ok(MarketMsg::Heartbeat),
            (_, Some(name)) => {
                Ok(MarketMsg::VenueError(VenueError { code: 0, name: ErrText::new(name) }))
            }
            _ => Err(CodecError::UnknownMessage),
        },
    }
}
