//! Binance USDT-M REST on loopback: HMAC-SHA256 over the raw received query + body,
//! `timestamp`/`recvWindow`, filters, orders by `origClientOrderId`, listen keys, depth
//! snapshots consistent with the diff stream, weight headers and 429 + `Retry-After`.

use std::sync::atomic::Ordering;
use std::time::Instant;

use kimp_gateways::sign::verify_binance_request;

use super::binance_venue::{BinError, BinOrderReq};
use super::faults::FaultKind;
use super::http::{Request, Response, parse_params};
use super::json::{dec, dp, levels, s};
use super::server::{Shared, lock, wall_ms};

fn err(e: &BinError) -> Response {
    Response::json(e.status, e.body())
}

struct Params(Vec<(String, String)>);

impl Params {
    /// Body parameters first, then the query string's, which win on duplicates.
    fn of(req: &Request) -> Self {
        let mut v = Vec::new();
        if req.header("content-type").is_none_or(|c| c.contains("x-www-form-urlencoded")) {
            v.extend(parse_params(&String::from_utf8_lossy(&req.body)));
        }
        v.extend(parse_params(&req.query));
        Params(v)
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().rev().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }
}

fn weight(method: &str, path: &str, p: &Params) -> u32 {
    match (method, path) {
        ("GET", "/fapi/v1/depth") => {
            match p.get("limit").and_then(|l| l.parse::<u32>().ok()).unwrap_or(500) {
                0..=50 => 2,
                51..=100 => 5,
                101..=500 => 10,
                _ => 20,
            }
        }
        ("POST", "/fapi/v1/order") => 0,
        ("GET", "/fapi/v1/ticker/bookTicker") => 2,
        (
            "GET",
            "/fapi/v2/balance"
            | "/fapi/v2/account"
            | "/fapi/v3/account"
            | "/fapi/v2/positionRisk"
            | "/fapi/v3/positionRisk",
        ) => 5,
        ("GET", "/fapi/v1/commissionRate") => 20,
        _ => 1,
    }
}

/// Handles one request; `None` = the answer is lost (connection closes).
pub fn handle(sh: &Shared, req: &Request) -> Option<Response> {
    let p = Params::of(req);
    let m = req.method.as_str();
    let path = req.path.as_str();
    let limit = sh.cfg.limits.binance_weight_per_min;
    let too_many = |retry: u64| {
        sh.counters.rest_429.fetch_add(1, Ordering::Relaxed);
        Response::json(
            429,
            BinError::bad(-1003, format!("Too many requests; current limit is {limit} requests per minute. Please use the websocket for live updates to avoid polling the API.")).body(),
        )
        .with("Retry-After", retry.to_string())
    };
    if let Some(sc) = sh.cfg.faults.active(FaultKind::RateLimit, false, sh.elapsed_ms())
        && sh.chance(sc.p)
    {
        let used = lock(&sh.rates).binance_used(Instant::now());
        return Some(too_many(1).with("X-MBX-USED-WEIGHT-1M", used.to_string()));
    }
    let used = match lock(&sh.rates).binance_weight(weight(m, path, &p), limit, Instant::now()) {
        Ok(u) => u,
        Err(retry) => return Some(too_many(retry).with("X-MBX-USED-WEIGHT-1M", limit.to_string())),
    };
    let resp = route(sh, req, &p)?;
    Some(resp.with("X-MBX-USED-WEIGHT-1M", used.to_string()))
}

fn api_key_account(sh: &Shared, req: &Request) -> Result<usize, Response> {
    let key = req.header("x-mbx-apikey").ok_or_else(|| {
        Response::json(401, BinError::bad(-2014, "API-key format invalid.").body())
    })?;
    sh.account_of(key.trim()).ok_or_else(|| {
        Response::json(
            401,
            BinError::bad(-2015, "Invalid API-key, IP, or permissions for action.").body(),
        )
    })
}

/// Checks key, signature, timestamp and recvWindow; returns the account.
fn signed(sh: &Shared, req: &Request, p: &Params) -> Result<usize, Response> {
    let account = api_key_account(sh, req)?;
    let ts: u64 = p.get("timestamp").and_then(|t| t.parse().ok()).ok_or_else(|| {
        err(&BinError::bad(
            -1102,
            "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
        ))
    })?;
    if verify_binance_request(&sh.keys[account].secret, req.query.as_bytes(), &req.body).is_err() {
        return Err(err(&BinError::bad(-1022, "Signature for this request is not valid.")));
    }
    let window: u64 = match p.get("recvWindow") {
        None => 5_000,
        Some(v) => match v.parse() {
            Ok(w) if w <= 60_000 => w,
            _ => return Err(err(&BinError::bad(-1131, "recvWindow must be less than 60000"))),
        },
    };
    let server = sh.server_time_ms();
    if ts >= server + 1_000 {
        return Err(err(&BinError::bad(
            -1021,
            "Timestamp for this request was 1000ms ahead of the server's time.",
        )));
    }
    if server.saturating_sub(ts) > window {
        return Err(err(&BinError::bad(
            -1021,
            "Timestamp for this request is outside of the recvWindow.",
        )));
    }
    Ok(account)
}

fn route(sh: &Shared, req: &Request, p: &Params) -> Option<Response> {
    let ok = |b: String| Some(Response::json(200, b));
    let need_sym = || {
        err(&BinError::bad(
            -1102,
            "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
        ))
    };
    let bad_sym = || err(&BinError::bad(-1121, "Invalid symbol."));
    macro_rules! signed {
        () => {
            match signed(sh, req, p) {
                Ok(a) => a,
                Err(r) => return Some(r),
            }
        };
    }
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/fapi/v1/ping") => ok("{}".into()),
        ("GET", "/fapi/v1/time") => ok(format!("{{\"serverTime\":{}}}", sh.server_time_ms())),
        ("GET", "/fapi/v1/exchangeInfo") => ok(exchange_info(sh)),
        ("GET", "/fapi/v1/depth") => {
            let Some(sym) = p.get("symbol") else { return Some(need_sym()) };
            let limit: usize = match p.get("limit").map(str::parse::<usize>) {
                None => 500,
                Some(Ok(l @ (5 | 10 | 20 | 50 | 100 | 500 | 1000))) => l,
                _ => {
                    return Some(err(&BinError::bad(
                        -1130,
                        "Data sent for parameter 'limit' is not valid.",
                    )));
                }
            };
            let w = lock(&sh.world);
            let Some(mk) = w.binance.markets.get(sym) else { return Some(bad_sym()) };
            let (id, bids, asks) = mk.book.published(limit);
            let (pdp, qdp) = (mk.spec.bin_price_dp, mk.spec.bin_qty_dp);
            let now = w.now_ms;
            ok(format!(
                "{{\"lastUpdateId\":{id},\"E\":{now},\"T\":{now},\"bids\":{},\"asks\":{}}}",
                levels(&bids, pdp, qdp),
                levels(&asks, pdp, qdp)
            ))
        }
        ("GET", "/fapi/v1/ticker/bookTicker") => {
            let Some(sym) = p.get("symbol") else { return Some(need_sym()) };
            let w = lock(&sh.world);
            let Some(mk) = w.binance.markets.get(sym) else { return Some(bad_sym()) };
            let (_, b, a) = mk.book.published(1);
            let (bb, ba) =
                (b.first().copied().unwrap_or((0, 0)), a.first().copied().unwrap_or((0, 0)));
            let (pdp, qdp) = (mk.spec.bin_price_dp, mk.spec.bin_qty_dp);
            ok(format!(
                "{{\"symbol\":{},\"bidPrice\":\"{}\",\"bidQty\":\"{}\",\"askPrice\":\"{}\",\"askQty\":\"{}\",\"time\":{}}}",
                s(sym),
                dp(bb.0, pdp),
                dp(bb.1, qdp),
                dp(ba.0, pdp),
                dp(ba.1, qdp),
                w.now_ms
            ))
        }
        ("GET", "/fapi/v1/premiumIndex") => {
            let Some(sym) = p.get("symbol") else { return Some(need_sym()) };
            let w = lock(&sh.world);
            let Some(mk) = w.binance.markets.get(sym) else { return Some(bad_sym()) };
            ok(format!(
                "{{\"symbol\":{},\"markPrice\":\"{}\",\"indexPrice\":\"{}\",\"estimatedSettlePrice\":\"{}\",\"lastFundingRate\":\"{}\",\"interestRate\":\"0.00010000\",\"nextFundingTime\":{},\"time\":{}}}",
                s(sym),
                dp(mk.mark, 8),
                dp(mk.index, 8),
                dp(mk.index, 8),
                dp(mk.funding_rate, 8),
                w.next_funding_ms,
                w.now_ms
            ))
        }
        ("GET", "/fapi/v1/fundingRate") => {
            let w = lock(&sh.world);
            let items: Vec<String> = w
                .binance
                .markets
                .values()
                .filter(|mk| p.get("symbol").is_none_or(|x| x == mk.symbol))
                .flat_map(|mk| {
                    mk.funding_history.iter().map(move |(t, r, mp)| {
                        format!(
                            "{{\"symbol\":{},\"fundingRate\":\"{}\",\"fundingTime\":{t},\"markPrice\":\"{}\",\"rateType\":\"Regular\"}}",
                            s(&mk.symbol),
                            dp(*r, 8),
                            dp(*mp, 8)
                        )
                    })
                })
                .collect();
            ok(format!("[{}]", items.join(",")))
        }
        ("GET", "/fapi/v1/commissionRate") => {
            let _ = signed!();
            let Some(sym) = p.get("symbol") else { return Some(need_sym()) };
            let w = lock(&sh.world);
            ok(format!(
                "{{\"symbol\":{},\"makerCommissionRate\":\"{}\",\"takerCommissionRate\":\"{}\"}}",
                s(sym),
                dp(w.binance.maker_e8, 6),
                dp(w.binance.taker_e8, 6)
            ))
        }
        ("POST", "/fapi/v1/order") => {
            let a = signed!();
            if let Some(ps) = p.get("positionSide")
                && ps != "BOTH"
            {
                return Some(err(&BinError::bad(
                    -4061,
                    "Order's position side does not match user's setting.",
                )));
            }
            let l = sh.cfg.limits;
            let counts = match lock(&sh.rates).binance_order(
                a,
                l.binance_orders_per_10s,
                l.binance_orders_per_min,
                Instant::now(),
            ) {
                Ok(c) => c,
                Err(retry) => {
                    sh.counters.rest_429.fetch_add(1, Ordering::Relaxed);
                    return Some(
                        Response::json(429, BinError::bad(-1015, format!("Too many new orders; current limit is {} orders per TEN_SECONDS.", l.binance_orders_per_10s)).body())
                            .with("Retry-After", retry.to_string()),
                    );
                }
            };
            let r = BinOrderReq {
                symbol: p.get("symbol").map(str::to_owned),
                side: p.get("side").map(str::to_owned),
                otype: p.get("type").map(str::to_owned),
                tif: p.get("timeInForce").map(str::to_owned),
                quantity: p.get("quantity").map(str::to_owned),
                price: p.get("price").map(str::to_owned),
                reduce_only: p.get("reduceOnly") == Some("true"),
                client_id: p.get("newClientOrderId").map(str::to_owned),
                result: p.get("newOrderRespType") == Some("RESULT"),
            };
            let (res, outs) = lock(&sh.world).binance_place(sh.now_ms(), a, &r);
            sh.publish(outs);
            match res {
                Ok(body) => {
                    sh.counters.orders.fetch_add(1, Ordering::Relaxed);
                    if let Some(sc) =
                        sh.cfg.faults.active(FaultKind::AmbiguousFill, false, sh.elapsed_ms())
                        && sh.chance(sc.p)
                    {
                        return None;
                    }
                    Some(
                        Response::json(200, body)
                            .with("X-MBX-ORDER-COUNT-10S", counts.0.to_string())
                            .with("X-MBX-ORDER-COUNT-1M", counts.1.to_string()),
                    )
                }
                Err(e) => Some(err(&e)),
            }
        }
        ("GET" | "DELETE", "/fapi/v1/order") => {
            let a = signed!();
            let Some(sym) = p.get("symbol") else { return Some(need_sym()) };
            let oid = p.get("orderId").and_then(|x| x.parse().ok());
            let cid = p.get("origClientOrderId");
            if oid.is_none() && cid.is_none() {
                return Some(err(&BinError::bad(
                    -1102,
                    "Param 'orderId' or 'origClientOrderId' must be sent, but both were empty/null!",
                )));
            }
            let mut w = lock(&sh.world);
            let found = w.binance.find(a, oid, cid).filter(|&i| w.binance.orders[i].symbol == sym);
            match (found, req.method.as_str()) {
                (None, "GET") => Some(err(&BinError::bad(-2013, "Order does not exist."))),
                (None, _) => Some(err(&BinError::bad(-2011, "Unknown order sent."))),
                (Some(i), "GET") => ok(w.binance.orders[i].query_json()),
                (Some(i), _) => {
                    let now = sh.now_ms().max(w.now_ms);
                    let mut outs = Vec::new();
                    let r = w.binance.cancel(i, now, &mut outs);
                    drop(w);
                    sh.publish(outs);
                    match r {
                        Ok(j) => ok(j),
                        Err(e) => Some(err(&e)),
                    }
                }
            }
        }
        ("GET", "/fapi/v1/openOrders") => {
            let a = signed!();
            let w = lock(&sh.world);
            let items: Vec<String> = w
                .binance
                .orders
                .iter()
                .filter(|o| {
                    o.account == a
                        && matches!(o.status, "NEW" | "PARTIALLY_FILLED")
                        && p.get("symbol").is_none_or(|x| x == o.symbol)
                })
                .map(|o| o.query_json())
                .collect();
            ok(format!("[{}]", items.join(",")))
        }
        (method @ ("POST" | "PUT" | "DELETE"), "/fapi/v1/listenKey") => {
            let a = match api_key_account(sh, req) {
                Ok(a) => a,
                Err(r) => return Some(r),
            };
            // `listen_key_expiry` with a `for` window: no new key until it ends, so the
            // client has to follow its orders without the user stream meanwhile.
            if method == "POST"
                && let Some(sc) = sh.cfg.faults.configured(FaultKind::ListenKeyExpiry, false)
                && sc.for_ms.is_some()
                && sc.in_window(sh.elapsed_ms())
            {
                let e = BinError {
                    status: 503,
                    code: -1001,
                    msg: "Internal error; unable to process your request. Please try again.".into(),
                };
                return Some(err(&e));
            }
            let mut w = lock(&sh.world);
            let now = wall_ms();
            let existing = w
                .binance
                .listen_keys
                .iter()
                .find(|(_, (acc, exp))| *acc == a && *exp > now)
                .map(|(k, _)| k.clone());
            match (method, existing) {
                ("POST", Some(k)) | ("PUT", Some(k)) => {
                    w.binance.listen_keys.insert(k.clone(), (a, now + 3_600_000));
                    if method == "POST" {
                        ok(format!("{{\"listenKey\":{}}}", s(&k)))
                    } else {
                        ok("{}".into())
                    }
                }
                ("POST", None) => {
                    let mut k = String::with_capacity(64);
                    while k.len() < 64 {
                        let v = sh.range(0, 61) as u8;
                        k.push(match v {
                            0..=9 => b'0' + v,
                            10..=35 => b'a' + v - 10,
                            _ => b'A' + v - 36,
                        } as char);
                    }
                    w.binance.listen_keys.insert(k.clone(), (a, now + 3_600_000));
                    ok(format!("{{\"listenKey\":{}}}", s(&k)))
                }
                ("PUT", None) => Some(err(&BinError::bad(-1125, "This listenKey does not exist."))),
                _ => {
                    w.binance.listen_keys.retain(|_, (acc, _)| *acc != a);
                    ok("{}".into())
                }
            }
        }
        ("GET", "/fapi/v2/balance" | "/fapi/v3/balance") => {
            let a = signed!();
            let w = lock(&sh.world);
            let acc = &w.binance.accounts[a];
            let upnl: i64 = acc
                .positions
                .keys()
                .map(|sym| {
                    acc.unrealised(sym, w.binance.markets.get(sym).map(|m| m.mark).unwrap_or(0))
                })
                .sum();
            let avail = w.binance.available(a);
            ok(format!(
                "[{{\"accountAlias\":\"SimAcct\",\"asset\":\"USDT\",\"balance\":\"{}\",\"crossWalletBalance\":\"{}\",\"crossUnPnl\":\"{}\",\"availableBalance\":\"{}\",\"maxWithdrawAmount\":\"{}\",\"marginAvailable\":true,\"updateTime\":{}}}]",
                dp(acc.wallet, 8),
                dp(acc.wallet, 8),
                dp(upnl, 8),
                dp(avail, 8),
                dp(avail.max(0), 8),
                w.now_ms
            ))
        }
        ("GET", "/fapi/v2/positionRisk" | "/fapi/v3/positionRisk") => {
            let a = signed!();
            let w = lock(&sh.world);
            ok(positions_json(&w, a, p.get("symbol")))
        }
        ("GET", "/fapi/v2/account" | "/fapi/v3/account") => {
            let a = signed!();
            let w = lock(&sh.world);
            let acc = &w.binance.accounts[a];
            let avail = w.binance.available(a);
            ok(format!(
                "{{\"totalWalletBalance\":\"{}\",\"availableBalance\":\"{}\",\"maxWithdrawAmount\":\"{}\",\"assets\":[{{\"asset\":\"USDT\",\"walletBalance\":\"{}\",\"availableBalance\":\"{}\"}}],\"positions\":{}}}",
                dp(acc.wallet, 8),
                dp(avail, 8),
                dp(avail.max(0), 8),
                dp(acc.wallet, 8),
                dp(avail, 8),
                positions_json(&w, a, None)
            ))
        }
        _ => Some(Response::json(
            404,
            format!(
                "{{\"code\":-5000,\"msg\":\"Path {}, Method {} is invalid\"}}",
                req.path.replace('"', ""),
                req.method
            ),
        )),
    }
}

fn positions_json(w: &super::world::World, a: usize, only: Option<&str>) -> String {
    let acc = &w.binance.accounts[a];
    let items: Vec<String> = w
        .binance
        .markets
        .values()
        .filter(|mk| only.is_none_or(|x| x == mk.symbol))
        .map(|mk| {
            let pos = acc.positions.get(&mk.symbol).copied().unwrap_or_default();
            format!(
                "{{\"symbol\":{},\"positionAmt\":\"{}\",\"entryPrice\":\"{}\",\"markPrice\":\"{}\",\"unRealizedProfit\":\"{}\",\"liquidationPrice\":\"0\",\"leverage\":\"{}\",\"marginType\":\"cross\",\"positionSide\":\"BOTH\",\"updateTime\":{}}}",
                s(&mk.symbol),
                dp(pos.qty, mk.spec.bin_qty_dp),
                dp(pos.entry, mk.spec.bin_price_dp),
                dp(mk.mark, 8),
                dp(acc.unrealised(&mk.symbol, mk.mark), 8),
                w.binance.leverage,
                w.now_ms
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

fn exchange_info(sh: &Shared) -> String {
    let w = lock(&sh.world);
    let l = sh.cfg.limits;
    let syms: Vec<String> = w
        .binance
        .markets
        .values()
        .map(|mk| {
            let c = &mk.spec;
            let step = dp(c.bin_step, c.bin_qty_dp);
            format!(
                "{{\"symbol\":{sym},\"pair\":{sym},\"contractType\":\"PERPETUAL\",\"deliveryDate\":4133404800000,\"onboardDate\":1569398400000,\"status\":\"TRADING\",\"maintMarginPercent\":\"2.5000\",\"requiredMarginPercent\":\"5.0000\",\"baseAsset\":{base},\"quoteAsset\":\"USDT\",\"marginAsset\":\"USDT\",\"pricePrecision\":{pdp},\"quantityPrecision\":{qdp},\"baseAssetPrecision\":8,\"quotePrecision\":8,\"underlyingType\":\"COIN\",\"underlyingSubType\":[],\"settlePlan\":0,\"triggerProtect\":\"0.0500\",\"filters\":[{{\"filterType\":\"PRICE_FILTER\",\"minPrice\":\"{tick}\",\"maxPrice\":\"10000000\",\"tickSize\":\"{tick}\"}},{{\"filterType\":\"LOT_SIZE\",\"minQty\":\"{step}\",\"maxQty\":\"1000\",\"stepSize\":\"{step}\"}},{{\"filterType\":\"MARKET_LOT_SIZE\",\"minQty\":\"{step}\",\"maxQty\":\"120\",\"stepSize\":\"{step}\"}},{{\"filterType\":\"MAX_NUM_ORDERS\",\"limit\":200}},{{\"filterType\":\"MAX_NUM_ALGO_ORDERS\",\"limit\":10}},{{\"filterType\":\"MIN_NOTIONAL\",\"notional\":\"{notional}\"}},{{\"filterType\":\"PERCENT_PRICE\",\"multiplierUp\":\"1.0500\",\"multiplierDown\":\"0.9500\",\"multiplierDecimal\":\"4\"}}],\"orderTypes\":[\"LIMIT\",\"MARKET\"],\"timeInForce\":[\"GTC\",\"IOC\",\"FOK\",\"GTX\"],\"liquidationFee\":\"0.012500\",\"marketTakeBound\":\"0.05\"}}",
                sym = s(&mk.symbol),
                base = s(&c.base),
                pdp = c.bin_price_dp,
                qdp = c.bin_qty_dp,
                tick = dp(c.bin_tick, c.bin_price_dp),
                step = step,
                notional = dec(c.bin_min_notional),
            )
        })
        .collect();
    format!(
        "{{\"timezone\":\"UTC\",\"serverTime\":{},\"futuresType\":\"U_MARGINED\",\"rateLimits\":[{{\"rateLimitType\":\"REQUEST_WEIGHT\",\"interval\":\"MINUTE\",\"intervalNum\":1,\"limit\":{}}},{{\"rateLimitType\":\"ORDERS\",\"interval\":\"MINUTE\",\"intervalNum\":1,\"limit\":{}}},{{\"rateLimitType\":\"ORDERS\",\"interval\":\"SECOND\",\"intervalNum\":10,\"limit\":{}}}],\"exchangeFilters\":[],\"symbols\":[{}]}}",
        sh.server_time_ms(),
        l.binance_weight_per_min,
        l.binance_orders_per_min,
        l.binance_orders_per_10s,
        syms.join(",")
    )
}
