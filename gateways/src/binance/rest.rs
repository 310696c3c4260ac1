//! Binance REST replies: order ack (`ACK` and `RESULT`), query and cancel replies,
//! `{"code","msg"}` errors, `exchangeInfo` filters, server time and listenKey.
//!
//! Order replies are on the order path and reuse their buffers (no allocation after
//! warm-up); `exchange_info` and `listen_key` allocate and run at start-up or every
//! ~30 minutes, off the hot path.

use kimp_core::event::{Event, OrderEvent, OrderEventKind, RejectReason};
use kimp_core::instrument::{Instrument, Symbol, TickRule, Venue};
use kimp_core::order::ClientId;
use kimp_core::units::{Nanos, Price, Qty, Quote};

use crate::codec::{CodecError, CodecResult, ErrText};
use crate::json::{Doc, JsonScratch};
use crate::rest::{AuthError, Credential, Failure, OrderRequestKind, status_is_ambiguous};
use crate::transport::Refusal;

/// Maps a Binance error code to why an order was refused. Only for codes that mean the
/// order was certainly not placed; `-1007` (timeout) is ambiguous and handled apart.
pub fn reject_reason(code: i64) -> RejectReason {
    match code {
        -2019 | -2018 => RejectReason::InsufficientBalance,
        -4164 => RejectReason::MinNotional,
        // Precision, price/lot filters, percent-price band, quantity bounds.
        -1111 | -1013 | -4003 | -4004 | -4005 | -4013 | -4014 | -4023 | -4024 | -4131 => {
            RejectReason::Filter
        }
        -1003 | -1015 => RejectReason::RateLimited,
        -1002 | -1022 | -2014 | -2015 => RejectReason::Auth,
        -4402..=-4400 => RejectReason::MarketClosed,
        c => RejectReason::Other(i32::try_from(c).unwrap_or(i32::MIN)),
    }
}

/// The credential an error code blames: `-1022` is a signature the venue cannot verify
/// (the secret); `-2014` (key format), `-2015` (key, IP or permissions) and `-1002`
/// (unauthorized) the API key. `None` for every other code.
pub fn auth_credential(code: i64) -> Option<Credential> {
    match code {
        -1022 => Some(Credential::Secret),
        -2014 | -2015 | -1002 => Some(Credential::ApiKey),
        _ => None,
    }
}

/// Classifies the failed reply to a request that is not an order (balances, listen key,
/// snapshot): an authentication error is fatal, the rest is retried after the wait the
/// status asks for. Allocates a parser: start-up and failure paths only.
pub fn classify(status: u16, body: &[u8], retry_after_s: Option<u64>) -> Failure {
    let err = parse_error(&mut JsonScratch::new(body.len().max(64)), body);
    if let Some((code, msg)) = err
        && let Some(credential) = auth_credential(code)
    {
        return Failure::Auth(AuthError {
            venue: Venue::Binance,
            credential,
            status,
            code: ErrText::new(code.to_string().as_bytes()),
            message: msg,
        });
    }
    Failure::Retry(Refusal::from_status(status, retry_after_s))
}

/// Parses a `{"code":…,"msg":…}` error body.
pub fn parse_error(json: &mut JsonScratch, body: &[u8]) -> Option<(i64, ErrText)> {
    json.with_doc(body, false, |d| {
        let code = d.get(0, "code").and_then(|i| d.i64(i)).ok_or(CodecError::Missing("code"))?;
        let msg = d.get(0, "msg").and_then(|i| d.str(i)).unwrap_or("");
        Ok((code, ErrText::new(msg.as_bytes())))
    })
    .ok()
}

/// Parses order REST replies into order events (reused buffers).
#[derive(Debug, Default)]
pub struct BinanceRestParser {
    json: JsonScratch,
    out: Vec<Event<'static>>,
    /// Last venue error seen (code, message), for logs and alerts.
    pub last_error: Option<(i64, ErrText)>,
}

impl BinanceRestParser {
    /// A parser with its buffers.
    pub fn new() -> Self {
        Self { json: JsonScratch::new(4096), out: Vec::with_capacity(8), last_error: None }
    }

    /// Turns the reply to an order request into events for `cl_id`. `now` stamps
    /// events that carry no venue time. A reply to `Place` with `newOrderRespType=RESULT`
    /// gives the final state but no fill prices: it yields `Ack` and `Done{cum}`, and the
    /// fills come from `ORDER_TRADE_UPDATE` or a query (docs §4.3). A query reply with
    /// fills yields one aggregate fill at `avgPrice` (fee unknown there: 0).
    pub fn order_reply(
        &mut self,
        kind: OrderRequestKind,
        cl_id: ClientId,
        status: u16,
        body: &[u8],
        now: Nanos,
    ) -> CodecResult<&[Event<'static>]> {
        self.out.clear();
        let ev = |kind| Event::Order(OrderEvent { cl_id, exch_ts: now, kind });
        if (200..300).contains(&status) {
            let out = &mut self.out;
            self.json.with_doc(body, false, |d| order_body(d, kind, cl_id, now, out))?;
            return Ok(&self.out);
        }
        let err = parse_error(&mut self.json, body);
        self.last_error = err;
        let code = err.map(|e| e.0);
        let k = match (kind, code) {
            (_, Some(-1007)) => Some(OrderEventKind::Unknown),
            (OrderRequestKind::Query, Some(-2013)) => Some(OrderEventKind::NotFound),
            (_, _) if status_is_ambiguous(status) => Some(OrderEventKind::Unknown),
            (OrderRequestKind::Place, Some(c)) => Some(OrderEventKind::Reject(reject_reason(c))),
            (OrderRequestKind::Place, None) if status == 429 || status == 418 => {
                Some(OrderEventKind::Reject(RejectReason::RateLimited))
            }
            // A 4xx without a Binance body: the request was refused before the engine.
            (OrderRequestKind::Place, None) => {
                Some(OrderEventKind::Reject(RejectReason::Other(status as i32)))
            }
            // A failed query or cancel says nothing new about the order.
            _ => None,
        };
        if let Some(k) = k {
            self.out.push(ev(k));
        }
        Ok(&self.out)
    }
}

fn order_body(
    d: &Doc<'_, '_>,
    kind: OrderRequestKind,
    cl_id: ClientId,
    now: Nanos,
    out: &mut Vec<Event<'static>>,
) -> CodecResult<()> {
    if !d.is_object(0) {
        return Err(CodecError::Malformed("not an object"));
    }
    if let Some(c) = d.get(0, "clientOrderId").and_then(|i| d.str(i))
        && ClientId::decode(c.as_bytes()).is_some_and(|id| id != cl_id)
    {
        return Err(CodecError::Malformed("clientOrderId of another order"));
    }
    let status = d.get(0, "status").and_then(|i| d.str(i)).ok_or(CodecError::Missing("status"))?;
    let ts = d.get(0, "updateTime").and_then(|i| d.u64(i)).map_or(now, Nanos::from_ms);
    let dec = |k: &'static str| d.get(0, k).and_then(|i| d.decimal(i));
    let cum = Qty(dec("executedQty").ok_or(CodecError::Missing("executedQty"))?);
    if cum.0 < 0 {
        return Err(CodecError::BadNumber("executedQty"));
    }
    let mut push = |k| out.push(Event::Order(OrderEvent { cl_id, exch_ts: ts, kind: k }));
    let terminal = matches!(status, "FILLED" | "EXPIRED" | "CANCELED" | "EXPIRED_IN_MATCH");
    match status {
        "REJECTED" => {
            push(OrderEventKind::Reject(RejectReason::Other(0)));
            return Ok(());
        }
        "NEW" | "PARTIALLY_FILLED" => {}
        _ if terminal => {}
        _ => return Err(CodecError::Malformed("status")),
    }
    if kind != OrderRequestKind::Cancel {
        push(OrderEventKind::Ack);
    }
    if kind == OrderRequestKind::Query && cum.is_positive() {
        let px = Price(dec("avgPrice").ok_or(CodecError::Missing("avgPrice"))?);
        if px.0 < 0 {
            return Err(CodecError::BadNumber("avgPrice"));
        }
        if px.is_positive() {
            push(OrderEventKind::Fill { trade_id: 0, px, qty: cum, cum_qty: cum, fee: Quote(0) });
        }
    }
    if terminal {
        push(OrderEventKind::Done { cum_qty: cum });
    }
    Ok(())
}

/// `{"serverTime":…}` → milliseconds.
pub fn server_time(body: &[u8]) -> CodecResult<u64> {
    JsonScratch::new(256).with_doc(body, false, |d| {
        d.get(0, "serverTime").and_then(|i| d.u64(i)).ok_or(CodecError::Missing("serverTime"))
    })
}

/// `{"listenKey":"…"}` → the key (allocates; every ~30 min).
pub fn listen_key(body: &[u8]) -> CodecResult<String> {
    JsonScratch::new(256).with_doc(body, false, |d| {
        let k =
            d.get(0, "listenKey").and_then(|i| d.str(i)).ok_or(CodecError::Missing("listenKey"))?;
        if k.is_empty() || !k.bytes().all(|c| c.is_ascii_alphanumeric()) {
            return Err(CodecError::Malformed("listenKey"));
        }
        Ok(k.to_owned())
    })
}

/// Decimal places of a step like `"0.00100000"` (→ 3) or `"0.10"` (→ 1).
fn step_dp(v: i64) -> u32 {
    let mut dp = 8;
    let mut x = v;
    while dp > 0 && x % 10 == 0 && x != 0 {
        x /= 10;
        dp -= 1;
    }
    dp
}

/// `GET /fapi/v1/exchangeInfo` or `/api/v3/exchangeInfo` → instruments for the
/// `TRADING` symbols in `wanted` (all when empty), with tick, lot, minimum quantity and
/// minimum notional read from the filters (futures `MIN_NOTIONAL.notional`, spot
/// `NOTIONAL.minNotional` or the older `MIN_NOTIONAL.minNotional`). Fees are not in
/// exchangeInfo: `taker_fee_e8` comes from `commissionRate`. Allocates (start-up only).
pub fn exchange_info(
    body: &[u8],
    venue: Venue,
    wanted: &[&str],
    taker_fee_e8: i64,
) -> CodecResult<Vec<Instrument>> {
    let mut json = JsonScratch::new(body.len());
    json.with_doc(body, false, |d| {
        let syms = d.get(0, "symbols").ok_or(CodecError::Missing("symbols"))?;
        let mut out = Vec::new();
        for s in d.elems(syms) {
            let name =
                d.get(s, "symbol").and_then(|i| d.str(i)).ok_or(CodecError::Missing("symbol"))?;
            if (!wanted.is_empty() && !wanted.contains(&name))
                || d.get(s, "status").and_then(|i| d.str(i)) != Some("TRADING")
            {
                continue;
            }
            let (mut tick, mut lot, mut min_qty, mut min_notional) = (None, None, None, None);
            let filters = d.get(s, "filters").ok_or(CodecError::Missing("filters"))?;
            for f in d.elems(filters) {
                let g = |k: &'static str| -> CodecResult<i64> {
                    d.get(f, k).and_then(|i| d.decimal(i)).ok_or(CodecError::BadNumber(k))
                };
                match d.get(f, "filterType").and_then(|i| d.str(i)) {
                    Some("PRICE_FILTER") => tick = Some(g("tickSize")?),
                    Some("LOT_SIZE") => {
                        lot = Some(g("stepSize")?);
                        min_qty = Some(g("minQty")?);
                    }
                    Some("MIN_NOTIONAL") if d.get(f, "notional").is_some() => {
                        min_notional = Some(g("notional")?)
                    }
                    Some("MIN_NOTIONAL" | "NOTIONAL") => min_notional = Some(g("minNotional")?),
                    _ => {}
                }
            }
            let tick =
                tick.filter(|&t| t > 0).ok_or(CodecError::Missing("PRICE_FILTER.tickSize"))?;
            let lot = lot.filter(|&l| l > 0).ok_or(CodecError::Missing("LOT_SIZE.stepSize"))?;
            let prec = |k: &'static str, step: i64| {
                d.get(s, k).and_then(|i| d.u64(i)).map_or(step_dp(step), |p| (p as u32).min(8))
            };
            out.push(Instrument {
                venue,
                symbol: Symbol::new(name).ok_or(CodecError::Malformed("symbol"))?,
                tick: TickRule::Fixed(Price(tick)),
                lot: Qty(lot),
                min_qty: Qty(min_qty.unwrap_or(lot)),
                min_notional: Quote(min_notional.unwrap_or(0)),
                price_dp: prec("pricePrecision", tick).max(step_dp(tick)),
                qty_dp: prec("quantityPrecision", lot).max(step_dp(lot)),
                taker_fee_e8,
            });
        }
        Ok(out)
    })
}

#[cfg(test)]
mod classify_tests {
    use super::*;

    #[test]
    fn auth_codes_are_fatal_and_name_the_credential_the_rest_is_retried() {
        let bad_sig = br#"{"code":-1022,"msg":"Signature for this request is not valid."}"#;
        let Failure::Auth(a) = classify(400, bad_sig, None) else { panic!("not auth") };
        assert_eq!((a.venue, a.credential, a.status), (Venue::Binance, Credential::Secret, 400));
        assert_eq!(a.code.as_str(), "-1022");
        assert_eq!(a.message.as_str(), "Signature for this request is not valid.");
        let text = a.to_string();
        assert!(text.starts_with("Binance refused the request signature"), "{text}");
        for body in [
            &br#"{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}"#[..],
            br#"{"code":-2014,"msg":"API-key format invalid."}"#,
        ] {
            let Failure::Auth(a) = classify(401, body, None) else { panic!("not auth") };
            assert_eq!(a.credential, Credential::ApiKey);
        }
        let limited = br#"{"code":-1003,"msg":"Too many requests"}"#;
        assert_eq!(classify(429, limited, Some(4)), Failure::Retry(Refusal::RateLimited(Some(4))));
        assert_eq!(classify(418, b"", None), Failure::Retry(Refusal::Banned(None)));
        assert_eq!(classify(503, b"<html>", None), Failure::Retry(Refusal::Failed));
        let clock =
            br#"{"code":-1021,"msg":"Timestamp for this request is outside of the recvWindow."}"#;
        assert_eq!(classify(400, clock, None), Failure::Retry(Refusal::Failed));
    }
}
