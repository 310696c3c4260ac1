//! Binance USDⓈ-M user-data stream: `ORDER_TRADE_UPDATE`, `ACCOUNT_UPDATE`,
//! `TRADE_LITE` (counted, not used: `ORDER_TRADE_UPDATE` carries the same fill with the
//! cumulative quantity and fee) and `listenKeyExpired`.
//!
//! Goes through simd-json (general path): these messages are rare next to market data.
//! After warm-up nothing allocates (the event buffer and the JSON scratch are reused).

use kimp_core::event::{Balance, Event, OrderEvent, OrderEventKind, PositionReport, RejectReason};
use kimp_core::instrument::{Symbol, Venue};
use kimp_core::order::ClientId;
use kimp_core::units::{Nanos, Price, Qty, Quote};

use crate::codec::{CodecError, CodecResult, CodecStats, UserMsg};
use crate::json::{Doc, JsonScratch};
use crate::symbols::SymbolTable;

/// The quote asset whose commission is charged in the instrument's quote currency.
const QUOTE_ASSET: &str = "USDT";

/// Parses Binance user-data frames.
#[derive(Debug)]
pub struct BinanceUserParser {
    symbols: SymbolTable,
    json: JsonScratch,
    out: Vec<Event<'static>>,
    /// Outcome counters (`foreign_orders`, `fee_other_asset` included).
    pub stats: CodecStats,
    /// `TRADE_LITE` messages seen (ignored on purpose).
    pub trade_lite: u64,
}

enum Kind {
    Events,
    Expired,
    Skipped,
    Foreign,
}

impl BinanceUserParser {
    /// A parser for the futures symbols in `symbols` (positions are reported by symbol).
    pub fn new(symbols: SymbolTable) -> Self {
        Self {
            symbols,
            json: JsonScratch::new(4096),
            out: Vec::with_capacity(64),
            stats: CodecStats::default(),
            trade_lite: 0,
        }
    }

    /// Parses one frame.
    pub fn parse(&mut self, msg: &[u8]) -> CodecResult<UserMsg<'_>> {
        self.out.clear();
        let (out, symbols, stats) = (&mut self.out, &self.symbols, &mut self.stats);
        let mut lite = false;
        let r = self.json.with_doc(msg, false, |d| {
            if !d.is_object(0) {
                return Err(CodecError::Malformed("not an object"));
            }
            let e = d.get(0, "e").and_then(|i| d.str(i)).ok_or(CodecError::Missing("e"))?;
            let ev_time = d.get(0, "E").and_then(|i| d.u64(i)).unwrap_or(0);
            match e {
                "ORDER_TRADE_UPDATE" => {
                    let o = d
                        .get(0, "o")
                        .filter(|&o| d.is_object(o))
                        .ok_or(CodecError::Missing("o"))?;
                    order_update(d, o, ev_time, out, stats)
                }
                "ACCOUNT_UPDATE" => {
                    account_update(d, ev_time, symbols, out, stats)?;
                    Ok(Kind::Events)
                }
                "TRADE_LITE" => {
                    lite = true;
                    Ok(Kind::Skipped)
                }
                "listenKeyExpired" => Ok(Kind::Expired),
                "MARGIN_CALL"
                | "ACCOUNT_CONFIG_UPDATE"
                | "STRATEGY_UPDATE"
                | "GRID_UPDATE"
                | "CONDITIONAL_ORDER_TRIGGER_REJECT" => Ok(Kind::Skipped),
                _ => Err(CodecError::UnknownMessage),
            }
        });
        if lite {
            self.trade_lite += 1;
        }
        let out = r.map(|k| match k {
            Kind::Events => UserMsg::Events(&self.out),
            Kind::Expired => UserMsg::ListenKeyExpired,
            Kind::Skipped => UserMsg::Skipped,
            Kind::Foreign => UserMsg::Foreign,
        });
        let is_event = matches!(out, Ok(UserMsg::Events(e)) if !e.is_empty());
        self.stats.record(&out, is_event);
        out
    }
}

fn dec(d: &Doc<'_, '_>, o: usize, k: &'static str) -> CodecResult<i64> {
    let i = d.get(o, k).ok_or(CodecError::Missing(k))?;
    d.decimal(i).ok_or(CodecError::BadNumber(k))
}

/// As [`dec`] for fill prices and quantities, which are never negative.
fn dec_nn(d: &Doc<'_, '_>, o: usize, k: &'static str) -> CodecResult<i64> {
    dec(d, o, k).and_then(|v| if v < 0 { Err(CodecError::BadNumber(k)) } else { Ok(v) })
}

fn order_update(
    d: &Doc<'_, '_>,
    o: usize,
    ev_time: u64,
    out: &mut Vec<Event<'static>>,
    stats: &mut CodecStats,
) -> CodecResult<Kind> {
    let c = d.get(o, "c").and_then(|i| d.str(i)).ok_or(CodecError::Missing("c"))?;
    let Some(cl_id) = ClientId::decode(c.as_bytes()) else {
        stats.foreign_orders += 1;
        return Ok(Kind::Foreign);
    };
    let x = d.get(o, "x").and_then(|i| d.str(i)).ok_or(CodecError::Missing("x"))?;
    let status = d.get(o, "X").and_then(|i| d.str(i)).ok_or(CodecError::Missing("X"))?;
    let ts =
        Nanos::from_ms(d.get(o, "T").and_then(|i| d.u64(i)).filter(|&t| t > 0).unwrap_or(ev_time));
    let cum = Qty(dec_nn(d, o, "z")?);
    let mut push = |kind| out.push(Event::Order(OrderEvent { cl_id, exch_ts: ts, kind }));
    match x {
        "NEW" => push(OrderEventKind::Ack),
        "TRADE" => {
            let fee = match d.get(o, "N").and_then(|i| d.str(i)) {
                Some(QUOTE_ASSET) => Quote(dec(d, o, "n")?),
                Some(_) => {
                    stats.fee_other_asset += 1;
                    Quote(0)
                }
                None => Quote(0),
            };
            push(OrderEventKind::Fill {
                trade_id: d.get(o, "t").and_then(|i| d.u64(i)).ok_or(CodecError::Missing("t"))?,
                px: Price(dec_nn(d, o, "L")?),
                qty: Qty(dec_nn(d, o, "l")?),
                cum_qty: cum,
                fee,
            });
            if matches!(status, "FILLED" | "EXPIRED" | "CANCELED" | "EXPIRED_IN_MATCH") {
                push(OrderEventKind::Done { cum_qty: cum });
            }
        }
        "CANCELED" | "EXPIRED" => push(OrderEventKind::Done { cum_qty: cum }),
        "REJECTED" => push(OrderEventKind::Reject(RejectReason::Other(0))),
        // Amendments and liquidation calculations do not change our view of the order.
        "AMENDMENT" | "CALCULATED" => return Ok(Kind::Skipped),
        _ => return Err(CodecError::Malformed("x")),
    }
    Ok(Kind::Events)
}

fn account_update(
    d: &Doc<'_, '_>,
    ev_time: u64,
    symbols: &SymbolTable,
    out: &mut Vec<Event<'static>>,
    stats: &mut CodecStats,
) -> CodecResult<()> {
    let _ = ev_time;
    let a = d.get(0, "a").filter(|&a| d.is_object(a)).ok_or(CodecError::Missing("a"))?;
    if let Some(bs) = d.get(a, "B") {
        for b in d.elems(bs) {
            let asset = d.get(b, "a").and_then(|i| d.str(i)).ok_or(CodecError::Missing("B.a"))?;
            let asset = Symbol::new(asset).ok_or(CodecError::Malformed("B.a"))?;
            // Futures report the wallet balance; nothing is "locked" in the spot sense.
            out.push(Event::Balance(Balance {
                venue: Venue::Binance,
                asset,
                free: Qty(dec(d, b, "wb")?),
                locked: Qty(0),
            }));
        }
    }
    if let Some(ps) = d.get(a, "P") {
        for p in d.elems(ps) {
            let side = d.get(p, "ps").and_then(|i| d.str(i)).unwrap_or("BOTH");
            if side != "BOTH" {
                // Hedge-mode legs are not ours (the system trades one-way mode).
                continue;
            }
            let sym = d.get(p, "s").and_then(|i| d.str(i)).ok_or(CodecError::Missing("P.s"))?;
            let Some(inst) = symbols.get(sym.as_bytes()) else {
                stats.unknown_symbol += 1;
                continue;
            };
            out.push(Event::Position(PositionReport { inst, qty: Qty(dec(d, p, "pa")?) }));
        }
    }
    Ok(())
}
