//! Upbit REST on loopback: JWT verification (HS256/HS512, `query_hash` over the
//! unencoded query or the JSON body in body order, nonce reuse), the order endpoints,
//! accounts, public book/market endpoints, `Remaining-Req` and 429s.

use std::sync::atomic::Ordering;
use std::time::Instant;

use kimp_gateways::sign::{SignError, json_body_to_query, verify_upbit_jwt};
use serde_json::Value;

use super::faults::FaultKind;
use super::http::{Request, Response, parse_params, percent_decode};
use super::json::{dec, s};
use super::server::{Shared, lock, not_found};
use super::upbit_venue::{UpbitError, UpbitOrderReq};

fn err(e: &UpbitError) -> Response {
    Response::json(e.status, e.body())
}

fn group_min(group: &str) -> u32 {
    match group {
        "order" => 480,
        "default" => 1_800,
        _ => 600,
    }
}

/// Handles one request; `None` = the answer is lost (connection closes).
pub fn handle(sh: &Shared, req: &Request) -> Option<Response> {
    let route = (req.method.as_str(), req.path.as_str());
    let (group, private) = match route {
        ("POST", "/v1/orders") => ("order", true),
        ("POST", "/v1/orders/test") => ("order_test", true),
        ("GET" | "DELETE", "/v1/order")
        | ("GET", "/v1/accounts" | "/v1/orders/chance" | "/v1/orders/open") => ("default", true),
        ("GET", "/v1/orderbook" | "/v1/orderbook/instruments") => ("orderbook", false),
        ("GET", "/v1/market/all") => ("market", false),
        _ => return Some(not_found(req)),
    };
    let account = if private {
        match auth(sh, req) {
            Ok(a) => Some(a),
            Err(e) => return Some(err(&e)),
        }
    } else {
        None
    };
    let limits = sh.cfg.limits;
    let limit = match group {
        "order" | "order_test" => limits.upbit_order_per_s,
        "default" => limits.upbit_default_per_s,
        _ => 10,
    };
    let too_many = || {
        sh.counters.rest_429.fetch_add(1, Ordering::Relaxed);
        Response::json(
            429,
            UpbitError::new(429, "too_many_requests", "요청 수 제한을 초과하였습니다.").body(),
        )
        .with("Remaining-Req", format!("group={group}; min={}; sec=0", group_min(group)))
    };
    if let Some(sc) = sh.cfg.faults.active(FaultKind::RateLimit, true, sh.elapsed_ms())
        && sh.chance(sc.p)
    {
        return Some(too_many());
    }
    let left = match lock(&sh.rates).upbit_take(account, group, limit, Instant::now()) {
        Some(l) => l,
        None => return Some(too_many()),
    };
    let rr = format!("group={group}; min={}; sec={left}", group_min(group));
    let q = parse_params(&req.query);
    let get = |k: &str| q.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
    let resp = match (route, account) {
        (("POST", "/v1/orders"), Some(a)) => {
            let r = match order_req(&req.body) {
                Ok(r) => r,
                Err(e) => return Some(err(&e).with("Remaining-Req", rr)),
            };
            let (res, outs) = lock(&sh.world).upbit_place(sh.now_ms(), a, &r);
            sh.publish(outs);
            match res {
                Ok(body) => {
                    sh.counters.orders.fetch_add(1, Ordering::Relaxed);
                    if let Some(sc) =
                        sh.cfg.faults.active(FaultKind::AmbiguousFill, true, sh.elapsed_ms())
                        && sh.chance(sc.p)
                    {
                        return None;
                    }
                    Response::json(201, body)
                }
                Err(e) => err(&e),
            }
        }
        (("POST", "/v1/orders/test"), Some(_)) => match order_req(&req.body) {
            Ok(_) => Response::json(201, "{}"),
            Err(e) => err(&e),
        },
        (("GET", "/v1/order"), Some(a)) | (("DELETE", "/v1/order"), Some(a)) => {
            let (uuid, ident) = (get("uuid"), get("identifier"));
            if uuid.is_none() && ident.is_none() {
                err(&UpbitError::new(400, "validation_error", "uuid or identifier is required"))
            } else {
                let mut w = lock(&sh.world);
                match w.upbit.find(a, uuid.as_deref(), ident.as_deref()) {
                    None => {
                        err(&UpbitError::new(404, "order_not_found", "주문을 찾지 못했습니다."))
                    }
                    Some(i) if req.method == "GET" => {
                        Response::json(200, w.upbit.orders[i].json(true))
                    }
                    Some(i) => {
                        let now = sh.now_ms().max(w.now_ms);
                        let mut outs = Vec::new();
                        let r = w.upbit.cancel(i, now, &mut outs);
                        drop(w);
                        sh.publish(outs);
                        match r {
                            Ok(j) => Response::json(200, j),
                            Err(e) => err(&e),
                        }
                    }
                }
            }
        }
        (("GET", "/v1/accounts"), Some(a)) => {
            Response::json(200, lock(&sh.world).upbit.accounts_json(a))
        }
        (("GET", "/v1/orders/open"), Some(a)) => {
            let w = lock(&sh.world);
            let market = get("market");
            let items: Vec<String> = w
                .upbit
                .orders
                .iter()
                .filter(|o| {
                    o.account == a
                        && o.state == "wait"
                        && market.as_ref().is_none_or(|m| *m == o.market)
                })
                .map(|o| o.json(false))
                .collect();
            Response::json(200, format!("[{}]", items.join(",")))
        }
        (("GET", "/v1/orders/chance"), Some(a)) => {
            let w = lock(&sh.world);
            let found: Option<(String, String)> = get("market").and_then(|m| {
                w.upbit.markets.get(m.as_str()).map(|x| (x.code.clone(), x.base.clone()))
            });
            match found {
                None => err(&UpbitError::new(
                    400,
                    "validation_error",
                    "market does not have a valid value",
                )),
                Some((m, base)) => {
                    let acct = &w.upbit.accounts[a];
                    let bal = |c: &str| {
                        let b = acct.get(c);
                        format!(
                            "{{\"currency\":{},\"balance\":{},\"locked\":{},\"avg_buy_price\":{},\"avg_buy_price_modified\":false,\"unit_currency\":\"KRW\"}}",
                            s(c),
                            s(&dec(b.free)),
                            s(&dec(b.locked)),
                            s(&dec(b.avg_buy))
                        )
                    };
                    Response::json(
                        200,
                        format!(
                            "{{\"bid_fee\":{f},\"ask_fee\":{f},\"maker_bid_fee\":{f},\"maker_ask_fee\":{f},\"market\":{{\"id\":{},\"name\":{},\"order_types\":[\"limit\"],\"order_sides\":[\"ask\",\"bid\"],\"bid_types\":[\"best_fok\",\"best_ioc\",\"limit\",\"limit_fok\",\"limit_ioc\",\"price\"],\"ask_types\":[\"best_fok\",\"best_ioc\",\"limit\",\"limit_fok\",\"limit_ioc\",\"market\"],\"bid\":{{\"currency\":\"KRW\",\"min_total\":\"5000\"}},\"ask\":{{\"currency\":{},\"min_total\":\"5000\"}},\"max_total\":\"1000000000\",\"state\":\"active\"}},\"bid_account\":{},\"ask_account\":{}}}",
                            s(&m),
                            s(&format!("{base}/KRW")),
                            s(&base),
                            bal("KRW"),
                            bal(&base),
                            f = s(&dec(w.upbit.fee_e8)),
                        ),
                    )
                }
            }
        }
        (("GET", "/v1/orderbook"), _) => {
            let w = lock(&sh.world);
            let mut items = Vec::new();
            for m in get("markets").unwrap_or_default().split(',').filter(|x| !x.is_empty()) {
                let Some(mk) = w.upbit.markets.get(m) else {
                    return Some(
                        err(&UpbitError::new(404, "not_found", "Code not found"))
                            .with("Remaining-Req", rr),
                    );
                };
                let j = super::upbit_ws::orderbook_json(
                    m,
                    mk.last_sent_ts,
                    &mk.last_sent.0,
                    &mk.last_sent.1,
                    30,
                    super::upbit_ws::Format::Default,
                    true,
                );
                // The REST form names the pair `market` and has no stream_type.
                let j = j.replacen("\"type\":\"orderbook\",\"code\"", "\"market\"", 1).replacen(
                    ",\"stream_type\":\"SNAPSHOT\"",
                    "",
                    1,
                );
                items.push(j);
            }
            Response::json(200, format!("[{}]", items.join(",")))
        }
        (("GET", "/v1/orderbook/instruments"), _) => {
            let w = lock(&sh.world);
            let mut items = Vec::new();
            for m in get("markets").unwrap_or_default().split(',').filter(|x| !x.is_empty()) {
                if let Some(mk) = w.upbit.markets.get(m) {
                    let mid = super::world::mid_of(&mk.book);
                    let tick = kimp_core::instrument::TickRule::UpbitKrw
                        .tick_at(kimp_core::units::Price(mid))
                        .0;
                    items.push(format!(
                        "{{\"market\":{},\"quote_currency\":\"KRW\",\"tick_size\":{},\"supported_levels\":[\"0\"]}}",
                        s(m),
                        s(&dec(tick))
                    ));
                }
            }
            Response::json(200, format!("[{}]", items.join(",")))
        }
        (("GET", "/v1/market/all"), _) => {
            let w = lock(&sh.world);
            let items: Vec<String> = w
                .upbit
                .markets
                .values()
                .map(|m| {
                    format!(
                        "{{\"market\":{},\"korean_name\":{},\"english_name\":{}}}",
                        s(&m.code),
                        s(&m.base),
                        s(&m.base)
                    )
                })
                .collect();
            Response::json(200, format!("[{}]", items.join(",")))
        }
        _ => not_found(req),
    };
    Some(resp.with("Remaining-Req", rr))
}

fn order_req(body: &[u8]) -> Result<UpbitOrderReq, UpbitError> {
    let bad = || UpbitError::new(400, "validation_error", "요청 본문이 올바른 JSON이 아닙니다.");
    let v: Value = serde_json::from_slice(body).map_err(|_| bad())?;
    let o = v.as_object().ok_or_else(bad)?;
    let f = |k: &str| -> Option<String> {
        match o.get(k)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    Ok(UpbitOrderReq {
        market: f("market"),
        side: f("side"),
        volume: f("volume"),
        price: f("price"),
        ord_type: f("ord_type"),
        time_in_force: f("time_in_force"),
        identifier: f("identifier"),
    })
}

/// Verifies the JWT of an Exchange API request; returns the account.
fn auth(sh: &Shared, req: &Request) -> Result<usize, UpbitError> {
    let jwt_fail = || UpbitError::new(401, "jwt_verification", "Jwt 토큰 검증에 실패했습니다.");
    let h = req.header("authorization").ok_or_else(jwt_fail)?;
    let token = h.strip_prefix("Bearer ").ok_or_else(jwt_fail)?.trim();
    let claims =
        verify_upbit_jwt(token.as_bytes(), |k| sh.account_of(k).map(|i| &sh.keys[i].secret))
            .map_err(|e| match e {
                SignError::UnknownKey => {
                    UpbitError::new(401, "invalid_access_key", "잘못된 엑세스 키입니다.")
                }
                _ => jwt_fail(),
            })?;
    let hashed = if req.method == "POST" && !req.body.is_empty() {
        json_body_to_query(&req.body).map_err(|_| {
            UpbitError::new(400, "validation_error", "요청 본문이 올바른 JSON이 아닙니다.")
        })?
    } else {
        percent_decode(&req.query)
    };
    if !claims.query_matches(hashed.as_bytes()) {
        return Err(UpbitError::new(
            401,
            "invalid_query_payload",
            "Jwt의 query를 검증하는데 실패하였습니다.",
        ));
    }
    let acct = sh.account_of(&claims.access_key).ok_or_else(jwt_fail)?;
    if !lock(&sh.world).upbit.use_nonce(acct, &claims.nonce) {
        return Err(UpbitError::new(
            401,
            "nonce_used",
            "이미 요청한 nonce값이 다시 사용되었습니다.",
        ));
    }
    Ok(acct)
}
