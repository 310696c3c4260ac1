//! Upbit private WebSocket: `myOrder` (fills and order ends) and `myAsset` (balances).
//!
//! `myOrder` numbers are JSON numbers: read exactly from their text (`Doc::decimal`).
//! `state=trade` carries the fill's own price and volume; `executed_volume` is the
//! cumulative filled quantity, which makes repeated or reordered reports harmless.

use kimp_core::event::{Balance, Event, OrderEvent, OrderEventKind};
use kimp_core::instrument::{Symbol, Venue};
use kimp_core::order::ClientId;
use kimp_core::units::{Nanos, Price, Qty, Quote};

use crate::codec::{CodecError, CodecResult, CodecStats, UserMsg, text_id};
use crate::json::{Doc, JsonScratch};

/// Parses Upbit private-stream frames.
#[derive(Debug)]
pub struct UpbitUserParser {
    json: JsonScratch,
    out: Vec<Event<'static>>,
    /// Outcome counters.
    pub stats: CodecStats,
}

impl Default for UpbitUserParser {
    fn default() -> Self {
        Self::new()
    }
}

enum Kind {
    Events,
    Foreign,
    Skipped,
}

impl UpbitUserParser {
    /// A parser with its buffers.
    pub fn new() -> Self {
        Self {
            json: JsonScratch::new(4096),
            out: Vec::with_capacity(32),
            stats: CodecStats::default(),
        }
    }

    /// Parses one frame.
    pub fn parse(&mut self, msg: &[u8]) -> CodecResult<UserMsg<'_>> {
        self.out.clear();
        let (out, stats) = (&mut self.out, &mut self.stats);
        let r = self.json.with_doc(msg, true, |d| {
            if !d.is_object(0) {
                return Err(CodecError::Malformed("not an object"));
            }
            if d.get(0, "status").is_some() || d.get(0, "error").is_some() {
                return Ok(Kind::Skipped);
            }
            let ty = d.get(0, "type").or_else(|| d.get(0, "ty")).and_then(|i| d.str(i));
            match ty {
                Some("myOrder") => my_order(d, out, stats),
                Some("myAsset") => my_asset(d, out),
                Some(_) => Err(CodecError::UnknownMessage),
                None => Err(CodecError::Missing("type")),
            }
        });
        let out = r.map(|k| match k {
            Kind::Events => UserMsg::Events(&self.out),
            Kind::Foreign => UserMsg::Foreign,
            Kind::Skipped => UserMsg::Skipped,
        });
        let is_event = matches!(out, Ok(UserMsg::Events(e)) if !e.is_empty());
        self.stats.record(&out, is_event);
        out
    }
}

fn get<'i>(d: &Doc<'_, 'i>, long: &str, short: &str) -> Option<usize> {
    d.get(0, long).or_else(|| d.get(0, short))
}

fn dec(d: &Doc<'_, '_>, long: &'static str, short: &str) -> CodecResult<i64> {
    let i = get(d, long, short).ok_or(CodecError::Missing(long))?;
    d.decimal(i).ok_or(CodecError::BadNumber(long))
}

fn my_order(
    d: &Doc<'_, '_>,
    out: &mut Vec<Event<'static>>,
    stats: &mut CodecStats,
) -> CodecResult<Kind> {
    let ident = get(d, "identifier", "id").and_then(|i| d.str(i));
    let Some(cl_id) = ident.and_then(|s| ClientId::decode(s.as_bytes())) else {
        stats.foreign_orders += 1;
        return Ok(Kind::Foreign);
    };
    let state = get(d, "state", "s").and_then(|i| d.str(i)).ok_or(CodecError::Missing("state"))?;
    let ms = |long, short| get(d, long, short).and_then(|i| d.u64(i));
    let ts = Nanos::from_ms(ms("timestamp", "tms").ok_or(CodecError::Missing("timestamp"))?);
    let cum = Qty(dec(d, "executed_volume", "ev")?);
    let mut push = |exch_ts, kind| out.push(Event::Order(OrderEvent { cl_id, exch_ts, kind }));
    match state {
        "wait" | "watch" => push(ts, OrderEventKind::Ack),
        "trade" => {
            let tts = ms("trade_timestamp", "ttms").map_or(ts, Nanos::from_ms);
            let trade = get(d, "trade_uuid", "tuid")
                .and_then(|i| d.str(i))
                .ok_or(CodecError::Missing("trade_uuid"))?;
            // Fees on KRW markets are paid in KRW, the quote currency.
            let fee = match get(d, "trade_fee", "tf") {
                Some(i) if !d.is_null(i) => {
                    Quote(d.decimal(i).ok_or(CodecError::BadNumber("trade_fee"))?)
                }
                _ => Quote(0),
            };
            push(
                tts,
                OrderEventKind::Fill {
                    trade_id: text_id(trade.as_bytes()),
                    px: Price(dec(d, "price", "p")?),
                    qty: Qty(dec(d, "volume", "v")?),
                    cum_qty: cum,
                    fee,
                },
            );
        }
        // `cancel` also ends market buys that did fill (docs §2.3); `prevented` is SMP.
        "done" | "cancel" | "prevented" => push(ts, OrderEventKind::Done { cum_qty: cum }),
        _ => return Err(CodecError::Malformed("state")),
    }
    Ok(Kind::Events)
}

fn my_asset(d: &Doc<'_, '_>, out: &mut Vec<Event<'static>>) -> CodecResult<Kind> {
    let assets = get(d, "assets", "ast").ok_or(CodecError::Missing("assets"))?;
    for a in d.elems(assets) {
        let f = |long: &'static str, short: &str| d.get(a, long).or_else(|| d.get(a, short));
        let cur =
            f("currency", "cu").and_then(|i| d.str(i)).ok_or(CodecError::Missing("currency"))?;
        let num = |long: &'static str, short: &str| {
            f(long, short).and_then(|i| d.decimal(i)).ok_or(CodecError::BadNumber(long))
        };
        out.push(Event::Balance(Balance {
            venue: Venue::Upbit,
            asset: Symbol::new(cur).ok_or(CodecError::Malformed("currency"))?,
            free: Qty(num("balance", "b")?),
            locked: Qty(num("locked", "l")?),
        }));
    }
    Ok(Kind::Events)
}
