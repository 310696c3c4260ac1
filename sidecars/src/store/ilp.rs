//! Records → ILP rows (through questdb-rs's `Buffer`), and a small ILP line parser used to
//! load local files into QuestDB, by `kimp report`, and by the tests' fake receivers.

use std::collections::HashMap;

use kimp_core::action::{Record, TradingState};
use kimp_core::event::{Bbo, Funding, FxQuote, Side};
use kimp_core::instrument::InstrumentId;
use kimp_core::order::{ClientId, OrderState};
use kimp_core::units::Nanos;
use questdb::ingress::{Buffer, TimestampMicros, TimestampNanos};

use super::candles::Candle;
use super::{JournalEntry, LatencySample};
use crate::labels;
use crate::names::{Names, UNKNOWN};

/// Result of the encoder (errors are questdb-rs's own: bad names, negative timestamps).
pub type EncResult = questdb::Result<()>;

/// A QuestDB designated timestamp from engine/exchange nanoseconds (Unix epoch).
fn at(ts: Nanos) -> TimestampNanos {
    TimestampNanos::new(i64::try_from(ts.0).unwrap_or(i64::MAX))
}

/// What the store remembers about an order to label its fills (venue, symbol, side).
#[derive(Clone, Copy, Debug)]
struct OrderInfo {
    inst: InstrumentId,
    side: Side,
    coin: Option<u16>,
}

/// Stateful encoder: it remembers each live order's instrument so fills get a venue.
#[derive(Debug)]
pub struct Encoder {
    names: std::sync::Arc<Names>,
    orders: HashMap<ClientId, OrderInfo>,
    /// Coin of each pending intent's orders (Intent comes before Order).
    intent_coin: HashMap<ClientId, u16>,
}

/// Orders remembered at most (terminal orders are forgotten; this bounds a leak).
const ORDERS_MAX: usize = 65_536;

impl Encoder {
    /// An encoder over a name table.
    pub fn new(names: std::sync::Arc<Names>) -> Self {
        Self { names, orders: HashMap::new(), intent_coin: HashMap::new() }
    }

    /// The name table.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Writes one journal record as zero or more rows.
    pub fn journal(&mut self, e: &JournalEntry, buf: &mut Buffer) -> EncResult {
        let seq = i64::try_from(e.seq).unwrap_or(i64::MAX);
        match e.record {
            Record::Intent { seq: iseq, pair, coin, purpose, orders } => {
                for cl in orders.iter().flatten() {
                    if self.intent_coin.len() < ORDERS_MAX {
                        self.intent_coin.insert(*cl, coin);
                    }
                    let venue = self
                        .names
                        .leg_inst(coin, cl.leg)
                        .map_or(Names::leg_venue(cl).name(), |i| self.names.venue_name(i));
                    buf.table("orders")?
                        .symbol("event", "intent")?
                        .symbol("venue", venue)?
                        .symbol("coin", self.names.coin(coin))?
                        .symbol("purpose", labels::purpose(purpose))?
                        .column_str("cl_id", cl.to_string())?
                        .column_i64("event_seq", seq)?
                        .column_i64("intent", iseq as i64)?
                        .column_i64("pair", pair as i64)?
                        .at(at(e.ts))?;
                }
            }
            Record::Order(req) => {
                let coin = self
                    .intent_coin
                    .remove(&req.cl_id)
                    .or_else(|| self.names.inst(req.inst).and_then(|i| i.coin));
                if self.orders.len() < ORDERS_MAX {
                    self.orders
                        .insert(req.cl_id, OrderInfo { inst: req.inst, side: req.side, coin });
                }
                buf.table("orders")?
                    .symbol("event", "sent")?
                    .symbol("venue", self.names.venue_name(req.inst))?
                    .symbol("symbol", self.names.symbol(req.inst))?
                    .symbol("coin", coin.map_or(UNKNOWN, |c| self.names.coin(c)))?
                    .symbol("side", labels::side(req.side))?
                    .symbol("kind", labels::order_kind(req.kind))?
                    .column_str("cl_id", req.cl_id.to_string())?
                    .column_i64("event_seq", seq)?
                    .column_f64("px", req.px.to_f64())?
                    .column_f64("qty", req.qty.to_f64())?
                    .column_bool("reduce_only", req.reduce_only)?
                    .at(at(e.ts))?;
            }
            Record::OrderState { cl_id, state, filled } => {
                let info = self.orders.get(&cl_id).copied();
                buf.table("orders")?.symbol("event", "state")?;
                self.order_labels(buf, &cl_id, info)?;
                buf.symbol("state", labels::order_state(state))?;
                if let OrderState::Rejected(r) = state {
                    buf.symbol("reason", labels::reject(r))?;
                    if let kimp_core::event::RejectReason::Other(code) = r {
                        buf.column_i64("reject_code", code as i64)?;
                    }
                }
                buf.column_str("cl_id", cl_id.to_string())?
                    .column_i64("event_seq", seq)?
                    .column_f64("filled", filled.to_f64())?
                    .at(at(e.ts))?;
                if state.is_terminal() {
                    self.orders.remove(&cl_id);
                }
            }
            Record::Fill { cl_id, trade_id, px, qty, fee, exch_ts } => {
                let info = self.orders.get(&cl_id).copied();
                buf.table("fills")?;
                self.order_labels(buf, &cl_id, info)?;
                // The dedup key is (ts, venue, trade_id): ts must be the venue's time, the
                // same on every replay, so the engine time is only a fallback.
                let ts = if exch_ts.0 != 0 { exch_ts } else { e.ts };
                buf.column_str("cl_id", cl_id.to_string())?
                    .column_i64("trade_id", trade_id as i64)?
                    .column_f64("px", px.to_f64())?
                    .column_f64("qty", qty.to_f64())?
                    .column_f64("fee", fee.to_f64())?
                    .column_i64("event_seq", seq)?
                    .at(at(ts))?;
            }
            Record::Pair(p) => {
                buf.table("pairs")?
                    .symbol("coin", self.names.coin(p.coin))?
                    .symbol("direction", labels::direction(p.direction))?
                    .symbol("from_state", labels::pair_state(p.from))?
                    .symbol("to_state", labels::pair_state(p.to))?
                    .column_i64("pair", p.pair as i64)?
                    .column_f64("pos_u", p.pos_u.to_f64())?
                    .column_f64("pos_b", p.pos_b.to_f64())?
                    .column_f64("entry_premium_bps", p.entry_premium_bps)?
                    .column_f64("fx_entry", p.fx_entry.to_f64())?
                    .column_f64("pnl_premium", p.pnl.premium.to_f64())?
                    .column_f64("pnl_fx", p.pnl.fx.to_f64())?
                    .column_f64("pnl_fees", p.pnl.fees.to_f64())?
                    .column_f64("pnl_funding", p.pnl.funding.to_f64())?
                    .column_f64("pnl_net", p.pnl.net().to_f64())?
                    .column_i64("event_seq", seq)?
                    .at(at(e.ts))?;
            }
            Record::Trading { state } => {
                buf.table("trading")?.symbol("state", labels::trading_state(state))?;
                // Every active reason (`order_rate+orphan_hard`), not just the first.
                if let TradingState::Halted(set) = state {
                    buf.symbol("reason", labels::halt_reasons(set, "+"))?;
                }
                buf.column_i64("event_seq", seq)?.at(at(e.ts))?;
            }
        }
        Ok(())
    }

    fn order_labels(&self, buf: &mut Buffer, cl: &ClientId, info: Option<OrderInfo>) -> EncResult {
        match info {
            Some(o) => {
                buf.symbol("venue", self.names.venue_name(o.inst))?
                    .symbol("symbol", self.names.symbol(o.inst))?
                    .symbol("coin", o.coin.map_or(UNKNOWN, |c| self.names.coin(c)))?
                    .symbol("side", labels::side(o.side))?;
            }
            // After a restart the order's `Sent` record may be in an earlier file: the
            // client id's leg still tells the venue, which the fill dedup key needs.
            None => {
                buf.symbol("venue", Names::leg_venue(cl).name())?;
            }
        }
        Ok(())
    }

    /// A premium sample.
    pub fn kimp(&self, k: &kimp_core::action::KimpSample, buf: &mut Buffer) -> EncResult {
        buf.table("kimp")?
            .symbol("coin", self.names.coin(k.coin))?
            .symbol("fx_source", labels::fx_source(k.fx_source))?
            .column_f64("mid_bps", k.mid_bps)?
            .column_f64("sell_bps", k.sell_bps)?
            .column_f64("buy_bps", k.buy_bps)?
            .column_f64("fx", k.fx.to_f64())?
            .column_f64("qty", k.qty.to_f64())?
            .column_f64("funding_rate", k.funding_e8 as f64 / 1e8)?
            .at(at(k.ts))
    }

    /// A best bid/offer sample.
    pub fn bbo(&self, b: &Bbo, buf: &mut Buffer) -> EncResult {
        let coin = self.names.inst(b.inst).and_then(|i| i.coin);
        buf.table("bbo")?
            .symbol("venue", self.names.venue_name(b.inst))?
            .symbol("symbol", self.names.symbol(b.inst))?
            .symbol("coin", coin.map_or(UNKNOWN, |c| self.names.coin(c)))?
            .column_f64("bid", b.bid.px.to_f64())?
            .column_f64("bid_qty", b.bid.qty.to_f64())?
            .column_f64("ask", b.ask.px.to_f64())?
            .column_f64("ask_qty", b.ask.qty.to_f64())?
            .column_i64("update_id", b.update_id as i64)?
            .at(at(b.exch_ts))
    }

    /// A funding / mark price sample.
    pub fn funding(&self, f: &Funding, buf: &mut Buffer) -> EncResult {
        let coin = self.names.inst(f.inst).and_then(|i| i.coin);
        buf.table("funding")?
            .symbol("venue", self.names.venue_name(f.inst))?
            .symbol("symbol", self.names.symbol(f.inst))?
            .symbol("coin", coin.map_or(UNKNOWN, |c| self.names.coin(c)))?
            .column_f64("mark", f.mark.to_f64())?
            .column_f64("rate", f.rate_e8 as f64 / 1e8)?
            .column_ts("next_funding", TimestampMicros::new((f.next_funding.0 / 1_000) as i64))?
            .at(at(f.exch_ts))
    }

    /// An FX quote.
    pub fn fx(&self, q: &FxQuote, buf: &mut Buffer) -> EncResult {
        let (bid, ask) = (q.bid.to_f64(), q.ask.to_f64());
        buf.table("fx")?
            .symbol("source", labels::fx_source(q.source))?
            .column_f64("bid", bid)?
            .column_f64("ask", ask)?
            .column_f64("mid", (bid + ask) / 2.0)?
            .at(at(q.exch_ts))
    }

    /// Latency percentiles of one stage over one interval.
    pub fn latency(&self, l: &LatencySample, buf: &mut Buffer) -> EncResult {
        buf.table("latency")?
            .symbol("stage", l.stage)?
            .column_i64("samples", l.count as i64)?
            .column_i64("p50_ns", l.p50_ns as i64)?
            .column_i64("p99_ns", l.p99_ns as i64)?
            .column_i64("p999_ns", l.p999_ns as i64)?
            .column_i64("max_ns", l.max_ns as i64)?
            .at(at(l.ts))
    }

    /// A closed (or, at shutdown, partial) one-minute candle.
    pub fn candle(&self, c: &Candle, buf: &mut Buffer) -> EncResult {
        buf.table("candles_1m")?
            .symbol("venue", c.venue)?
            .symbol("coin", self.names.coin(c.coin))?
            .column_f64("open", c.open)?
            .column_f64("high", c.high)?
            .column_f64("low", c.low)?
            .column_f64("close", c.close)?
            .column_i64("samples", c.samples as i64)?
            .at(at(c.minute))
    }
}

// ---------------------------------------------------------------- parsing

/// A field value of an ILP line.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    /// Float (`1.5`, `NaN`, `Infinity`).
    F64(f64),
    /// Integer (`42i`).
    I64(i64),
    /// Quoted string.
    Str(String),
    /// Boolean (`t`, `false`, ...).
    Bool(bool),
    /// Timestamp column in microseconds (`123t`).
    TsMicros(i64),
    /// Timestamp column in nanoseconds (`123n`, protocol 2).
    TsNanos(i64),
}

/// One parsed ILP row.
#[derive(Clone, Debug, PartialEq)]
pub struct IlpLine {
    /// Table.
    pub table: String,
    /// Symbols (tag set), in order.
    pub tags: Vec<(String, String)>,
    /// Columns, in order.
    pub fields: Vec<(String, FieldValue)>,
    /// Designated timestamp in nanoseconds, if given.
    pub ts: Option<i64>,
}

/// Why a line did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad ILP line at byte {at}: {what}")]
pub struct IlpError {
    /// Byte offset in the line.
    pub at: usize,
    /// What was wrong.
    pub what: &'static str,
}

impl IlpLine {
    /// A symbol's value.
    pub fn tag(&self, k: &str) -> Option<&str> {
        self.tags.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    /// A column's value.
    pub fn field(&self, k: &str) -> Option<&FieldValue> {
        self.fields.iter().find(|(n, _)| n == k).map(|(_, v)| v)
    }

    /// A numeric column as f64 (integers converted).
    pub fn f64(&self, k: &str) -> Option<f64> {
        match self.field(k)? {
            FieldValue::F64(v) => Some(*v),
            FieldValue::I64(v) => Some(*v as f64),
            _ => None,
        }
    }

    /// An integer column.
    pub fn i64(&self, k: &str) -> Option<i64> {
        match self.field(k)? {
            FieldValue::I64(v) => Some(*v),
            _ => None,
        }
    }

    /// A string column.
    pub fn str(&self, k: &str) -> Option<&str> {
        match self.field(k)? {
            FieldValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Appends the row to a questdb-rs buffer (of any protocol version).
    pub fn write_to(&self, buf: &mut Buffer) -> EncResult {
        buf.table(self.table.as_str())?;
        for (k, v) in &self.tags {
            buf.symbol(k.as_str(), v.as_str())?;
        }
        for (k, v) in &self.fields {
            let k = k.as_str();
            match v {
                FieldValue::F64(x) => buf.column_f64(k, *x)?,
                FieldValue::I64(x) => buf.column_i64(k, *x)?,
                FieldValue::Str(s) => buf.column_str(k, s.as_str())?,
                FieldValue::Bool(b) => buf.column_bool(k, *b)?,
                FieldValue::TsMicros(t) => buf.column_ts(k, TimestampMicros::new(*t))?,
                FieldValue::TsNanos(t) => buf.column_ts(k, TimestampNanos::new(*t))?,
            };
        }
        match self.ts {
            Some(t) => buf.at(TimestampNanos::new(t)),
            None => buf.at_now(),
        }
    }
}

/// Splits ILP text into lines at unescaped newlines. The last element is a torn tail
/// (text without its newline, e.g. from a crash mid-write) when `data` does not end in
/// `\n`; callers count and skip it.
pub fn split_lines(data: &[u8]) -> (Vec<&[u8]>, Option<&[u8]>) {
    let mut lines = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < data.len() {
        match data[i] {
            b'\\' => i += 2,
            b'\n' => {
                if i > start {
                    lines.push(&data[start..i]);
                }
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    let tail = if start < data.len() { Some(&data[start..]) } else { None };
    (lines, tail)
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn err(&self, what: &'static str) -> IlpError {
        IlpError { at: self.i, what }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Reads an unquoted, backslash-escaped token up to one of `stops` (not consumed).
    fn token(&mut self, stops: &[u8]) -> Result<String, IlpError> {
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            if stops.contains(&c) {
                break;
            }
            if c == b'\\' {
                let n =
                    self.b.get(self.i + 1).copied().ok_or_else(|| self.err("dangling escape"))?;
                out.push(n);
                self.i += 2;
            } else {
                out.push(c);
                self.i += 1;
            }
        }
        String::from_utf8(out).map_err(|_| self.err("not UTF-8"))
    }

    fn quoted(&mut self) -> Result<String, IlpError> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    let n = self
                        .b
                        .get(self.i + 1)
                        .copied()
                        .ok_or_else(|| self.err("dangling escape"))?;
                    out.push(n);
                    self.i += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| self.err("not UTF-8"))
    }
}

fn scalar(s: &str) -> Option<FieldValue> {
    match s {
        "t" | "T" | "true" | "True" | "TRUE" => return Some(FieldValue::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Some(FieldValue::Bool(false)),
        "NaN" => return Some(FieldValue::F64(f64::NAN)),
        "Infinity" | "+Infinity" => return Some(FieldValue::F64(f64::INFINITY)),
        "-Infinity" => return Some(FieldValue::F64(f64::NEG_INFINITY)),
        _ => {}
    }
    let (body, last) = s.split_at(s.len().checked_sub(1)?);
    match last {
        "i" => body.parse().ok().map(FieldValue::I64),
        "t" => body.parse().ok().map(FieldValue::TsMicros),
        "n" => body.parse().ok().map(FieldValue::TsNanos),
        _ => s.parse::<f64>().ok().map(FieldValue::F64),
    }
}

/// Parses one ILP (protocol 1 text) line, without its newline.
pub fn parse_line(line: &[u8]) -> Result<IlpLine, IlpError> {
    let mut c = Cursor { b: line, i: 0 };
    let table = c.token(b", ")?;
    if table.is_empty() {
        return Err(c.err("empty table name"));
    }
    let mut tags = Vec::new();
    while c.peek() == Some(b',') {
        c.i += 1;
        let k = c.token(b"= ,")?;
        if c.peek() != Some(b'=') || k.is_empty() {
            return Err(c.err("symbol without '='"));
        }
        c.i += 1;
        tags.push((k, c.token(b", ")?));
    }
    if c.peek() != Some(b' ') {
        return Err(c.err("no columns"));
    }
    let mut fields = Vec::new();
    loop {
        c.i += 1;
        let k = c.token(b"= ,")?;
        if c.peek() != Some(b'=') || k.is_empty() {
            return Err(c.err("column without '='"));
        }
        c.i += 1;
        let v = if c.peek() == Some(b'"') {
            FieldValue::Str(c.quoted()?)
        } else {
            let raw = c.token(b", ")?;
            scalar(&raw).ok_or_else(|| c.err("bad column value"))?
        };
        fields.push((k, v));
        if c.peek() != Some(b',') {
            break;
        }
    }
    let ts = match c.peek() {
        None => None,
        Some(b' ') => {
            c.i += 1;
            let raw = c.token(b" ")?;
            let digits = raw.strip_suffix('n').unwrap_or(&raw);
            Some(digits.parse::<i64>().map_err(|_| c.err("bad timestamp"))?)
        }
        Some(_) => return Err(c.err("junk after columns")),
    };
    if c.peek().is_some() {
        return Err(c.err("junk after timestamp"));
    }
    Ok(IlpLine { table, tags, fields, ts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use questdb::ingress::ProtocolVersion;

    #[test]
    fn round_trips_through_questdb_buffer() {
        let mut b = Buffer::new(ProtocolVersion::V1);
        b.table("t x")
            .unwrap()
            .symbol("s 1", "a b=c,\\d")
            .unwrap()
            .column_f64("f", 1.25)
            .unwrap()
            .column_f64("neg", -3e-7)
            .unwrap()
            .column_f64("nan", f64::NAN)
            .unwrap()
            .column_i64("i", -42)
            .unwrap()
            .column_str("s", "q\"uo\\te\nnl")
            .unwrap()
            .column_bool("b", false)
            .unwrap()
            .column_ts("c", TimestampMicros::new(17))
            .unwrap()
            .at(TimestampNanos::new(1_700_000_000_123_000_000))
            .unwrap();
        b.table("u").unwrap().column_bool("ok", true).unwrap().at_now().unwrap();
        let bytes = b.as_bytes().to_vec();
        let (lines, tail) = split_lines(&bytes);
        assert!(tail.is_none());
        assert_eq!(
            lines.len(),
            2,
            "escaped newline must not split: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        let l = parse_line(lines[0]).unwrap();
        assert_eq!(l.table, "t x");
        assert_eq!(l.tag("s 1"), Some("a b=c,\\d"));
        assert_eq!(l.f64("f"), Some(1.25));
        assert_eq!(l.f64("neg"), Some(-3e-7));
        assert!(l.f64("nan").unwrap().is_nan());
        assert_eq!(l.i64("i"), Some(-42));
        assert_eq!(l.str("s"), Some("q\"uo\\te\nnl"));
        assert_eq!(l.field("b"), Some(&FieldValue::Bool(false)));
        assert_eq!(l.field("c"), Some(&FieldValue::TsMicros(17)));
        assert_eq!(l.ts, Some(1_700_000_000_123_000_000));
        assert_eq!(parse_line(lines[1]).unwrap().ts, None);
        // Re-encoding gives the same bytes: what `load` sends is what was written.
        let mut again = Buffer::new(ProtocolVersion::V1);
        for line in &lines {
            parse_line(line).unwrap().write_to(&mut again).unwrap();
        }
        assert_eq!(again.as_bytes(), &bytes[..]);
    }

    fn rows(f: impl FnOnce(&mut Encoder, &mut Buffer)) -> Vec<String> {
        let names = std::sync::Arc::new(Names::from_markets(&kimp_core::testkit::btc_markets()));
        let mut enc = Encoder::new(names);
        let mut b = Buffer::new(ProtocolVersion::V1);
        f(&mut enc, &mut b);
        String::from_utf8(b.as_bytes().to_vec()).unwrap().lines().map(str::to_string).collect()
    }

    #[test]
    fn encodes_every_record_kind_with_names() {
        use kimp_core::action::{HaltReason, PairRecord, PnlSplit, Purpose};
        use kimp_core::config::Direction;
        use kimp_core::event::{FxSource, RejectReason};
        use kimp_core::order::Leg;
        use kimp_core::pair::PairState;
        use kimp_core::units::{Krw, Price, Qty, Quote};
        const E8: i64 = 100_000_000;
        let (u, b) = (
            ClientId { epoch: 1, seq: 5, leg: Leg::U, attempt: 0 },
            ClientId { epoch: 1, seq: 5, leg: Leg::B, attempt: 1 },
        );
        let j = |seq, record| JournalEntry { seq, ts: Nanos(1_000), record };
        let got = rows(|e, buf| {
            let intent = Record::Intent {
                seq: 5,
                pair: 5,
                coin: 0,
                purpose: Purpose::Entry,
                orders: [Some(u), Some(b)],
            };
            e.journal(&j(1, intent), buf).unwrap();
            let st = Record::OrderState {
                cl_id: u,
                state: OrderState::Rejected(RejectReason::Other(-2010)),
                filled: Qty(0),
            };
            e.journal(&j(2, st), buf).unwrap();
            let fill = Record::Fill {
                cl_id: b,
                trade_id: 9,
                px: Price(E8),
                qty: Qty(E8),
                fee: Quote(0),
                exch_ts: Nanos(0),
            };
            e.journal(&j(3, fill), buf).unwrap();
            let pair = PairRecord {
                pair: 5,
                coin: 0,
                direction: Direction::SellPremium,
                from: PairState::Closing,
                to: PairState::Closed,
                pos_u: Qty(0),
                pos_b: Qty(0),
                entry_premium_bps: 250.5,
                fx_entry: Price(1_400 * E8),
                pnl: PnlSplit {
                    premium: Krw(1_000 * E8),
                    fx: Krw(-100 * E8),
                    fees: Krw(-50 * E8),
                    funding: Krw(0),
                },
            };
            e.journal(&j(4, Record::Pair(pair)), buf).unwrap();
            e.journal(
                &j(5, Record::Trading { state: TradingState::halted(HaltReason::Operator) }),
                buf,
            )
            .unwrap();
            let f = Funding {
                inst: InstrumentId(1),
                exch_ts: Nanos(2_000),
                mark: Price(70_000 * E8),
                rate_e8: -5_000,
                next_funding: Nanos(3_000_000),
            };
            e.funding(&f, buf).unwrap();
            let q = FxQuote {
                source: FxSource::Official,
                exch_ts: Nanos(4_000),
                bid: Price(1_390 * E8),
                ask: Price(1_392 * E8),
            };
            e.fx(&q, buf).unwrap();
            let l = LatencySample {
                ts: Nanos(5_000),
                stage: "tick_to_order",
                count: 10,
                p50_ns: 1,
                p99_ns: 2,
                p999_ns: 3,
                max_ns: 4,
            };
            e.latency(&l, buf).unwrap();
        });
        let want = [
            r#"orders,event=intent,venue=upbit,coin=BTC,purpose=entry cl_id="k1-5-u0",event_seq=1i,intent=5i,pair=5i 1000"#,
            r#"orders,event=intent,venue=binance,coin=BTC,purpose=entry cl_id="k1-5-b1",event_seq=1i,intent=5i,pair=5i 1000"#,
            r#"orders,event=state,venue=upbit,state=rejected,reason=other reject_code=-2010i,cl_id="k1-5-u0",event_seq=2i,filled=0.0 1000"#,
            r#"fills,venue=binance cl_id="k1-5-b1",trade_id=9i,px=1.0,qty=1.0,fee=0.0,event_seq=3i 1000"#,
            "pairs,coin=BTC,direction=sell_premium,from_state=closing,to_state=closed pair=5i,pos_u=0.0,pos_b=0.0,\
             entry_premium_bps=250.5,fx_entry=1400.0,pnl_premium=1000.0,pnl_fx=-100.0,pnl_fees=-50.0,pnl_funding=0.0,\
             pnl_net=850.0,event_seq=4i 1000",
            "trading,state=halted,reason=operator event_seq=5i 1000",
            "funding,venue=binance,symbol=BTCUSDT,coin=BTC mark=70000.0,rate=-0.00005,next_funding=3000t 2000",
            "fx,source=official bid=1390.0,ask=1392.0,mid=1391.0 4000",
            "latency,stage=tick_to_order samples=10i,p50_ns=1i,p99_ns=2i,p999_ns=3i,max_ns=4i 5000",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn a_trading_row_names_every_active_halt_reason() {
        use kimp_core::action::{HaltReason, HaltSet};
        let set = HaltSet::of(HaltReason::OrderRate).with(HaltReason::OrphanHard);
        let j =
            |seq, state| JournalEntry { seq, ts: Nanos(1_000), record: Record::Trading { state } };
        let got = rows(|e, buf| {
            e.journal(&j(1, TradingState::halted(HaltReason::OrderRate)), buf).unwrap();
            e.journal(&j(2, TradingState::Halted(set)), buf).unwrap();
            e.journal(&j(3, TradingState::Active), buf).unwrap();
        });
        assert_eq!(
            got,
            [
                "trading,state=halted,reason=order_rate event_seq=1i 1000",
                "trading,state=halted,reason=order_rate+orphan_hard event_seq=2i 1000",
                "trading,state=active event_seq=3i 1000",
            ]
        );
    }

    #[test]
    fn rejects_malformed_lines_and_reports_torn_tail() {
        for bad in [
            &b""[..],
            b"t",
            b"t,a f=1",
            b"t f",
            b"t f=1x",
            b"t f=\"open",
            b"t f=1 12x",
            b"t f=1 1 2",
            b",a=1 f=1",
        ] {
            assert!(parse_line(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let (lines, tail) = split_lines(b"a f=1i 1\nb f=2i 2\nc f=");
        assert_eq!(lines.len(), 2);
        assert_eq!(tail, Some(&b"c f="[..]));
    }
}
