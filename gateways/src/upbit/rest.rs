//! Upbit REST replies: order (`POST /v1/orders` 201, `GET /v1/order` with `trades[]`,
//! `DELETE /v1/order`), `GET /v1/accounts`, and `{"error":{"name","message"}}` bodies.
//!
//! Order replies reuse their buffers (no allocation after warm-up); accounts are read at
//! start-up and on reconciliation.

use kimp_core::event::{Balance, Event, OrderEvent, OrderEventKind, RejectReason};
use kimp_core::instrument::{Symbol, Venue};
use kimp_core::order::ClientId;
use kimp_core::units::{Nanos, Price, Qty, Quote, mul_div};

use crate::codec::{CodecError, CodecResult, ErrText, text_id};
use crate::json::{Doc, JsonScratch};
use crate::rest::{AuthError, Credential, Failure, OrderRequestKind, status_is_ambiguous};
use crate::transport::Refusal;

/// Upbit REST error names (docs §2.7), typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpbitError {
    /// `insufficient_funds_bid` / `insufficient_funds_ask`.
    InsufficientFunds,
    /// `under_min_total_bid` / `under_min_total_ask`.
    UnderMinTotal,
    /// `validation_error`, `invalid_parameter`, price/volume unit errors.
    Invalid,
    /// `create_bid_error` / `create_ask_error`.
    CreateError,
    /// `jwt_verification`, `invalid_query_payload`, `invalid_access_key`,
    /// `expired_access_key`, `nonce_used`, `no_authorization_ip` (`no_authorization_i_p`),
    /// `out_of_scope`.
    Auth,
    /// `market_offline`.
    MarketOffline,
    /// `order_not_found`.
    OrderNotFound,
    /// An identifier already used (name not documented; matched on `identifier`/`duplicate`).
    DuplicateIdentifier,
    /// Any other name.
    Other,
}

impl UpbitError {
    /// Types an error name.
    pub fn from_name(n: &[u8]) -> Self {
        match n {
            b"insufficient_funds_bid" | b"insufficient_funds_ask" => Self::InsufficientFunds,
            b"under_min_total_bid" | b"under_min_total_ask" | b"under_min_total_market_ask" => {
                Self::UnderMinTotal
            }
            b"validation_error"
            | b"invalid_parameter"
            | b"invalid_price_bid"
            | b"invalid_price_ask"
            | b"invalid_volume_bid"
            | b"invalid_volume_ask" => Self::Invalid,
            b"create_bid_error" | b"create_ask_error" => Self::CreateError,
            b"jwt_verification"
            | b"invalid_query_payload"
            | b"invalid_access_key"
            | b"expired_access_key"
            | b"nonce_used"
            | b"no_authorization_ip"
            | b"no_authorization_i_p"
            | b"out_of_scope" => Self::Auth,
            b"market_offline" => Self::MarketOffline,
            b"order_not_found" => Self::OrderNotFound,
            n if contains(n, b"identifier") || contains(n, b"duplicate") => {
                Self::DuplicateIdentifier
            }
            _ => Self::Other,
        }
    }

    /// Why an order was refused.
    pub fn reject_reason(self) -> RejectReason {
        match self {
            Self::InsufficientFunds => RejectReason::InsufficientBalance,
            Self::UnderMinTotal => RejectReason::MinNotional,
            Self::Invalid => RejectReason::Filter,
            Self::Auth => RejectReason::Auth,
            Self::MarketOffline => RejectReason::MarketClosed,
            Self::DuplicateIdentifier => RejectReason::Duplicate,
            Self::CreateError | Self::OrderNotFound | Self::Other => RejectReason::Other(0),
        }
    }
}

fn contains(h: &[u8], n: &[u8]) -> bool {
    h.windows(n.len()).any(|w| w == n)
}

/// The credential an error name blames, for the names that no retry can fix: a JWT that
/// does not verify (`jwt_verification`, `invalid_query_payload`: the secret, or how we
/// sign) and a key that is unknown, expired, not allow-listed for this IP or without the
/// permission. `nonce_used` is not among them: the next request has a new nonce.
pub fn auth_credential(name: &[u8]) -> Option<Credential> {
    match name {
        b"jwt_verification" | b"invalid_query_payload" => Some(Credential::Secret),
        b"invalid_access_key"
        | b"expired_access_key"
        | b"no_authorization_ip"
        | b"no_authorization_i_p"
        | b"out_of_scope" => Some(Credential::ApiKey),
        _ => None,
    }
}

/// Classifies the failed reply to a request that is not an order (balances): an
/// authentication error is fatal, the rest is retried after the wait the status asks
/// for. Allocates a parser: start-up and failure paths only.
pub fn classify(status: u16, body: &[u8], retry_after_s: Option<u64>) -> Failure {
    let err = JsonScratch::new(body.len().max(64)).with_doc(body, false, |d| {
        let e = d.get(0, "error").ok_or(CodecError::Missing("error"))?;
        let name = d.get(e, "name").and_then(|i| d.str(i)).ok_or(CodecError::Missing("name"))?;
        let msg = d.get(e, "message").and_then(|i| d.str(i)).unwrap_or("");
        Ok((ErrText::new(name.as_bytes()), ErrText::new(msg.as_bytes())))
    });
    if let Ok((code, message)) = err
        && let Some(credential) = auth_credential(code.as_bytes())
    {
        return Failure::Auth(AuthError { venue: Venue::Upbit, credential, status, code, message });
    }
    Failure::Retry(Refusal::from_status(status, retry_after_s))
}

/// Parses `{"error":{"name":…,"message":…}}`.
pub fn parse_error(json: &mut JsonScratch, body: &[u8]) -> Option<(UpbitError, ErrText)> {
    json.with_doc(body, false, |d| {
        let e = d.get(0, "error").ok_or(CodecError::Missing("error"))?;
        let name = d.get(e, "name").and_then(|i| d.str(i)).ok_or(CodecError::Missing("name"))?;
        Ok((UpbitError::from_name(name.as_bytes()), ErrText::new(name.as_bytes())))
    })
    .ok()
}

/// Parses Upbit order replies into order events (reused buffers).
#[derive(Debug, Default)]
pub struct UpbitRestParser {
    json: JsonScratch,
    out: Vec<Event<'static>>,
    /// Last venue error (type, name), for logs and alerts.
    pub last_error: Option<(UpbitError, ErrText)>,
}

impl UpbitRestParser {
    /// A parser with its buffers.
    pub fn new() -> Self {
        Self { json: JsonScratch::new(4096), out: Vec::with_capacity(16), last_error: None }
    }

    /// Turns the reply to an order request into events for `cl_id`.
    ///
    /// - 2xx order body: `wait`/`watch` → Ack; with `trades[]` each trade is a fill (the
    ///   order's `paid_fee` spread over them pro rata); `done`/`cancel` → Done. A cancel
    ///   reply shows the order at acceptance of the cancel, so it yields nothing.
    /// - errors: `order_not_found` on a query → NotFound; on a new order, a reused
    ///   identifier means an earlier send of the same id reached Upbit → Unknown (query
    ///   it); other names → Reject; 429 → Reject(RateLimited); 5xx/408 → Unknown.
    pub fn order_reply(
        &mut self,
        kind: OrderRequestKind,
        cl_id: ClientId,
        status: u16,
        body: &[u8],
        now: Nanos,
    ) -> CodecResult<&[Event<'static>]> {
        self.out.clear();
        if (200..300).contains(&status) {
            if kind == OrderRequestKind::Cancel {
                return Ok(&self.out);
            }
            let out = &mut self.out;
            self.json.with_doc(body, false, |d| order_body(d, cl_id, now, out))?;
            return Ok(&self.out);
        }
        let err = parse_error(&mut self.json, body);
        self.last_error = err;
        let k = match (kind, err.map(|e| e.0)) {
            (_, _) if status_is_ambiguous(status) => Some(OrderEventKind::Unknown),
            (OrderRequestKind::Query, Some(UpbitError::OrderNotFound)) => {
                Some(OrderEventKind::NotFound)
            }
            (OrderRequestKind::Place, Some(UpbitError::DuplicateIdentifier)) => {
                Some(OrderEventKind::Unknown)
            }
            (OrderRequestKind::Place, _) if status == 429 || status == 418 => {
                Some(OrderEventKind::Reject(RejectReason::RateLimited))
            }
            (OrderRequestKind::Place, Some(e)) => Some(OrderEventKind::Reject(e.reject_reason())),
            (OrderRequestKind::Place, None) => {
                Some(OrderEventKind::Reject(RejectReason::Other(status as i32)))
            }
            _ => None,
        };
        if let Some(k) = k {
            self.out.push(Event::Order(OrderEvent { cl_id, exch_ts: now, kind: k }));
        }
        Ok(&self.out)
    }
}

fn order_body(
    d: &Doc<'_, '_>,
    cl_id: ClientId,
    now: Nanos,
    out: &mut Vec<Event<'static>>,
) -> CodecResult<()> {
    if !d.is_object(0) {
        return Err(CodecError::Malformed("not an object"));
    }
    if let Some(id) = d.get(0, "identifier").and_then(|i| d.str(i))
        && ClientId::decode(id.as_bytes()).is_some_and(|x| x != cl_id)
    {
        return Err(CodecError::Malformed("identifier of another order"));
    }
    // Volumes and prices are never negative: a hostile one is refused, not applied.
    let dec = |o: usize, k: &'static str| {
        d.get(o, k).and_then(|i| d.decimal(i)).filter(|&v| v >= 0).ok_or(CodecError::BadNumber(k))
    };
    let state = d.get(0, "state").and_then(|i| d.str(i)).ok_or(CodecError::Missing("state"))?;
    let cum = Qty(dec(0, "executed_volume")?);
    let paid_fee = d.get(0, "paid_fee").and_then(|i| d.decimal(i)).unwrap_or(0);
    let mut push = |kind| out.push(Event::Order(OrderEvent { cl_id, exch_ts: now, kind }));
    match state {
        "wait" | "watch" | "done" | "cancel" | "prevented" => push(OrderEventKind::Ack),
        _ => return Err(CodecError::Malformed("state")),
    }
    if let Some(trades) = d.get(0, "trades") {
        let mut run = 0i64;
        let mut fee_left = paid_fee;
        let n = d.array_len(trades).unwrap_or(0);
        for (k, t) in d.elems(trades).enumerate() {
            let qty = dec(t, "volume")?;
            run = run.checked_add(qty).ok_or(CodecError::BadNumber("volume"))?;
            // The last trade takes the rounding remainder so fees add up to paid_fee.
            let fee = if k + 1 == n || cum.0 == 0 {
                fee_left
            } else {
                mul_div(paid_fee, qty, cum.0).unwrap_or(0)
            };
            fee_left -= fee;
            let uuid = d.get(t, "uuid").and_then(|i| d.str(i)).unwrap_or("");
            push(OrderEventKind::Fill {
                trade_id: text_id(uuid.as_bytes()),
                px: Price(dec(t, "price")?),
                qty: Qty(qty),
                cum_qty: Qty(run),
                fee: Quote(fee),
            });
        }
    }
    if matches!(state, "done" | "cancel" | "prevented") {
        push(OrderEventKind::Done { cum_qty: cum });
    }
    Ok(())
}

/// `GET /v1/accounts` → balances (free = `balance`, `locked`). Allocates; off the hot path.
pub fn accounts(body: &[u8]) -> CodecResult<Vec<Event<'static>>> {
    JsonScratch::new(body.len()).with_doc(body, false, |d| {
        let n = d.array_len(0).ok_or(CodecError::Malformed("accounts is not an array"))?;
        let mut out = Vec::with_capacity(n);
        for a in d.elems(0) {
            let cur = d
                .get(a, "currency")
                .and_then(|i| d.str(i))
                .ok_or(CodecError::Missing("currency"))?;
            let num = |k: &'static str| {
                d.get(a, k)
                    .and_then(|i| d.decimal(i))
                    .filter(|&v| v >= 0)
                    .ok_or(CodecError::BadNumber(k))
            };
            out.push(Event::Balance(Balance {
                venue: Venue::Upbit,
                asset: Symbol::new(cur).ok_or(CodecError::Malformed("currency"))?,
                free: Qty(num("balance")?),
                locked: Qty(num("locked")?),
            }));
        }
        Ok(out)
    })
}

#[cfg(test)]
mod classify_tests {
    use super::*;

    #[test]
    fn auth_names_are_fatal_and_name_the_credential_the_rest_is_retried() {
        let body = |name: &str| {
            format!(r#"{{"error":{{"name":"{name}","message":"잘못된 엑세스 키입니다."}}}}"#)
        };
        let Failure::Auth(a) = classify(401, body("invalid_access_key").as_bytes(), None) else {
            panic!("not auth")
        };
        assert_eq!((a.credential, a.status), (Credential::ApiKey, 401));
        assert_eq!(a.code.as_str(), "invalid_access_key");
        assert!(a.to_string().starts_with("Upbit refused the API key"), "{a}");
        for (name, cred) in [
            ("jwt_verification", Credential::Secret),
            ("invalid_query_payload", Credential::Secret),
            ("expired_access_key", Credential::ApiKey),
            ("no_authorization_ip", Credential::ApiKey),
            ("out_of_scope", Credential::ApiKey),
        ] {
            let Failure::Auth(a) = classify(401, body(name).as_bytes(), None) else {
                panic!("{name} not auth")
            };
            assert_eq!(a.credential, cred, "{name}");
        }
        // A reused nonce, a rate limit or a server error is asked again.
        assert_eq!(
            classify(401, body("nonce_used").as_bytes(), None),
            Failure::Retry(Refusal::Failed)
        );
        let limited = body("too_many_requests");
        assert_eq!(
            classify(429, limited.as_bytes(), None),
            Failure::Retry(Refusal::RateLimited(None))
        );
        assert_eq!(classify(500, b"", None), Failure::Retry(Refusal::Failed));
    }
}
