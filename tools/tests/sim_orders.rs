//! Orders on both simulated venues, signed by the gateways' signing module and sent by a
//! plain HTTP client: fills against the book, fees, queries by client id, private streams,
//! and the venues' rejections (bad signature, stale timestamp, nonce reuse, duplicate
//! identifier, filters).

mod sim_support;

use std::time::{Duration, Instant};

use kimp_gateways::sign::JwtAlg;
use serde_json::Value;
use sim_support::*;

fn f(v: &Value) -> f64 {
    v.as_str().map(|s| s.parse().unwrap()).or_else(|| v.as_f64()).unwrap_or_else(|| panic!("{v}"))
}

#[test]
fn upbit_signed_ioc_order_fills_with_fee_and_reports_on_my_order() {
    let sim = start(|_| {});
    let mut up = Upbit::new(sim.upbit_addr, JwtAlg::Hs512);
    // Private stream first (JWT in the upgrade request, no query_hash).
    let auth = up.token("", None);
    let mut pw = ws(sim.upbit_addr, "/websocket/v1/private", Some(auth));
    pw.send(tungstenite::Message::text(fixture_line("upbit_ws_requests.jsonl", 2))).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let book = http(sim.upbit_addr, "GET", "/v1/orderbook?markets=KRW-BTC", &[], "").json();
    let best_ask = book[0]["orderbook_units"][0]["ask_price"].as_f64().unwrap() as i64;
    let price = (best_ask + 50_000).to_string(); // marketable, on the 1,000 KRW grid
    let r = up
        .order(&[
            ("market", "KRW-BTC"),
            ("side", "bid"),
            ("volume", "0.0005"),
            ("price", &price),
            ("ord_type", "limit"),
            ("time_in_force", "ioc"),
            ("identifier", "kimp-u-000001"),
        ])
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.header("remaining-req").unwrap().starts_with("group=order;"));
    let ack_keys = top_keys(
        &std::fs::read_to_string(fixtures().join("upbit_order_ack.json"))
            .unwrap()
            .replace(['\n', ' '], ""),
    );
    assert_eq!(top_keys(&r.body), ack_keys, "201 body in the recorded key order");
    let ack = r.json();
    assert_eq!(ack["state"], "wait");
    let reserved = f(&ack["reserved_fee"]);
    assert!((reserved - 0.0005 * 0.0005 * price.parse::<f64>().unwrap()).abs() < 1e-6);
    // Query by identifier: done, with trades and 0.05 % fee on the funds.
    let q = up.query("GET", "/v1/order", "identifier=kimp-u-000001");
    assert_eq!(q.status, 200, "{}", q.body);
    let o = q.json();
    assert_eq!(o["state"], "done");
    assert_eq!(o["executed_volume"], "0.0005");
    let funds: f64 = o["trades"].as_array().unwrap().iter().map(|t| f(&t["funds"])).sum();
    assert!(funds <= 0.0005 * price.parse::<f64>().unwrap() && funds > 0.0);
    assert!(
        (f(&o["paid_fee"]) - funds * 0.0005).abs() < 1e-6,
        "fee {} on funds {funds}",
        o["paid_fee"]
    );
    assert_eq!(o["trades"][0]["trend"], "up");
    // The same order by uuid.
    let q2 = up.query("GET", "/v1/order", &format!("uuid={}", ack["uuid"].as_str().unwrap()));
    assert_eq!(q2.json()["identifier"], "kimp-u-000001");
    // myOrder: trade then done.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut states = Vec::new();
    let my_keys = top_keys(&fixture_line("upbit_myorder.jsonl", 0));
    while !states.contains(&"done".to_owned()) {
        let (v, raw, binary) = next_json(&mut pw, deadline).expect("myOrder events");
        assert!(binary);
        if v["type"] == "myOrder" {
            assert_eq!(top_keys(&raw), my_keys);
            assert_eq!(v["identifier"], "kimp-u-000001");
            states.push(v["state"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(states.first().map(String::as_str), Some("trade"));
    // Balances moved: BTC up, KRW down by funds + fee.
    let acc = up.query("GET", "/v1/accounts", "").json();
    let bal = |c: &str| {
        acc.as_array()
            .unwrap()
            .iter()
            .find(|a| a["currency"] == c)
            .map(|a| f(&a["balance"]))
            .unwrap()
    };
    assert!((bal("BTC") - 1.0005).abs() < 1e-9);
    assert!((bal("KRW") - (100_000_000.0 - funds - f(&o["paid_fee"]))).abs() < 1e-4);
}

#[test]
fn upbit_rejects_bad_tokens_reused_nonces_and_duplicate_identifiers() {
    let sim = start(|_| {});
    let mut bad = Upbit::with_secret(sim.upbit_addr, JwtAlg::Hs256, "wrong-secret");
    let r = bad.query("GET", "/v1/accounts", "");
    assert_eq!((r.status, r.json()["error"]["name"].as_str()), (401, Some("jwt_verification")));
    let mut up = Upbit::new(sim.upbit_addr, JwtAlg::Hs512);
    // query_hash over a different query.
    let t = up.token("uuid=aaaa", None);
    let r = http(sim.upbit_addr, "GET", "/v1/order?uuid=bbbb", &[("Authorization", t)], "");
    assert_eq!(
        (r.status, r.json()["error"]["name"].as_str()),
        (401, Some("invalid_query_payload"))
    );
    // Percent-encoded query on the wire, hash over the unencoded form: accepted.
    let t = up.token("uuid=00000000-0000-4000-8000-000000000000", None);
    let r = http(
        sim.upbit_addr,
        "GET",
        "/v1/order?uuid=00000000%2D0000-4000-8000-000000000000",
        &[("Authorization", t)],
        "",
    );
    assert_eq!((r.status, r.json()["error"]["name"].as_str()), (404, Some("order_not_found")));
    // Nonce reuse.
    let t1 = up.token("", Some("11111111-2222-4333-8444-555555555555"));
    assert_eq!(
        http(sim.upbit_addr, "GET", "/v1/accounts", &[("Authorization", t1.clone())], "").status,
        200
    );
    let r = http(sim.upbit_addr, "GET", "/v1/accounts", &[("Authorization", t1)], "");
    assert_eq!((r.status, r.json()["error"]["name"].as_str()), (401, Some("nonce_used")));
    // Identifier: a refused order still uses it up.
    let too_small = [
        ("market", "KRW-BTC"),
        ("side", "bid"),
        ("volume", "0.00001"),
        ("price", "100000000"),
        ("ord_type", "limit"),
        ("identifier", "dup-1"),
    ];
    let r = up.order(&too_small).unwrap();
    assert_eq!((r.status, r.json()["error"]["name"].as_str()), (400, Some("under_min_total_bid")));
    let ok = [
        ("market", "KRW-BTC"),
        ("side", "bid"),
        ("volume", "0.001"),
        ("price", "90000000"),
        ("ord_type", "limit"),
        ("identifier", "dup-1"),
    ];
    let r = up.order(&ok).unwrap();
    assert_eq!((r.status, r.json()["error"]["name"].as_str()), (400, Some("duplicate_identifier")));
    // Bad tick and insufficient funds.
    let r = up
        .order(&[
            ("market", "KRW-BTC"),
            ("side", "bid"),
            ("volume", "0.001"),
            ("price", "90000500"),
            ("ord_type", "limit"),
            ("identifier", "t-1"),
        ])
        .unwrap();
    assert_eq!(r.json()["error"]["name"], "invalid_price_bid");
    let r = up
        .order(&[
            ("market", "KRW-BTC"),
            ("side", "ask"),
            ("volume", "5"),
            ("ord_type", "market"),
            ("identifier", "t-2"),
        ])
        .unwrap();
    assert_eq!(r.json()["error"]["name"], "insufficient_funds_ask");
    // A resting limit bid below the market stays `wait`, cancel returns it as it was.
    let r = up
        .order(&[
            ("market", "KRW-BTC"),
            ("side", "bid"),
            ("volume", "0.001"),
            ("price", "90000000"),
            ("ord_type", "limit"),
            ("identifier", "rest-1"),
        ])
        .unwrap();
    assert_eq!(r.status, 201);
    let c = up.query("DELETE", "/v1/order", "identifier=rest-1");
    assert_eq!((c.status, c.json()["state"].as_str()), (200, Some("wait")));
    assert_eq!(up.query("GET", "/v1/order", "identifier=rest-1").json()["state"], "cancel");
    // Market buy by KRW amount ends `cancel` with fills (the unspendable remainder is returned).
    let r = up
        .order(&[
            ("market", "KRW-USDT"),
            ("side", "bid"),
            ("price", "10000"),
            ("ord_type", "price"),
            ("identifier", "kimp-u-000002"),
        ])
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let o = up.query("GET", "/v1/order", "identifier=kimp-u-000002").json();
    assert_eq!(o["state"], "cancel");
    assert!(f(&o["executed_volume"]) > 6.0);
}

#[test]
fn binance_signed_orders_fill_query_by_client_id_and_stream_user_data() {
    let sim = start(|_| {});
    let lk = http(
        sim.binance_addr,
        "POST",
        "/fapi/v1/listenKey",
        &[("X-MBX-APIKEY", KEY.to_owned())],
        "",
    )
    .json();
    let key = lk["listenKey"].as_str().unwrap().to_owned();
    assert_eq!(key.len(), 64);
    // A second POST returns the same key while it is valid.
    let again = http(
        sim.binance_addr,
        "POST",
        "/fapi/v1/listenKey",
        &[("X-MBX-APIKEY", KEY.to_owned())],
        "",
    )
    .json();
    assert_eq!(again["listenKey"], key.as_str());
    let mut uw = ws(
        sim.binance_addr,
        &format!("/private/ws?listenKey={key}&events=ORDER_TRADE_UPDATE/ACCOUNT_UPDATE"),
        None,
    );
    std::thread::sleep(Duration::from_millis(100));
    let ts = now_ms();
    let params = format!(
        "symbol=BTCUSDT&side=SELL&positionSide=BOTH&type=MARKET&quantity=0.010&newClientOrderId=kimp-h-000001&newOrderRespType=RESULT&recvWindow=5000&timestamp={ts}"
    );
    let r = binance(sim.binance_addr, "POST", "/fapi/v1/order", &params).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-mbx-order-count-10s"), Some("1"));
    let ack_keys = top_keys(
        &std::fs::read_to_string(fixtures().join("binance_order_ack.json"))
            .unwrap()
            .replace(['\n', ' '], ""),
    );
    assert_eq!(top_keys(&r.body), ack_keys);
    let o = r.json();
    assert_eq!((o["status"].as_str(), o["executedQty"].as_str()), (Some("FILLED"), Some("0.010")));
    let avg = f(&o["avgPrice"]);
    // Query by origClientOrderId.
    let q = binance(
        sim.binance_addr,
        "GET",
        "/fapi/v1/order",
        &format!("symbol=BTCUSDT&origClientOrderId=kimp-h-000001&timestamp={}", now_ms()),
    )
    .unwrap();
    assert_eq!((q.status, q.json()["status"].as_str()), (200, Some("FILLED")), "{}", q.body);
    // User stream: NEW, TRADE/FILLED with the taker fee, ACCOUNT_UPDATE with the short.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    let mut fee = 0.0;
    let user_keys = top_keys(&fixture_line("binance_user_data.jsonl", 1));
    while !(seen.contains(&"TRADE".to_owned()) && seen.contains(&"ACCOUNT_UPDATE".to_owned())) {
        let (v, raw, _) = next_json(&mut uw, deadline).expect("user data events");
        match v["e"].as_str().unwrap() {
            "ORDER_TRADE_UPDATE" => {
                assert_eq!(v["o"]["c"], "kimp-h-000001");
                let x = v["o"]["x"].as_str().unwrap().to_owned();
                if x == "TRADE" {
                    assert_eq!(top_keys(&raw), user_keys);
                    fee += f(&v["o"]["n"]);
                    assert_eq!(v["o"]["N"], "USDT");
                }
                seen.push(x);
            }
            "ACCOUNT_UPDATE" => {
                assert_eq!(v["a"]["P"][0]["pa"], "-0.010");
                seen.push("ACCOUNT_UPDATE".into());
            }
            other => panic!("filtered out by events=: {other}"),
        }
    }
    assert_eq!(seen[0], "NEW");
    assert!((fee - avg * 0.010 * 0.0004).abs() < 1e-6, "taker fee 0.04 %: {fee}");
    // A LIMIT IOC far below the market expires with nothing filled.
    let p = format!(
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=IOC&quantity=0.010&price=60000.00&newClientOrderId=kimp-h-000002&newOrderRespType=RESULT&timestamp={}",
        now_ms()
    );
    let r = binance(sim.binance_addr, "POST", "/fapi/v1/order", &p).unwrap().json();
    assert_eq!((r["status"].as_str(), r["executedQty"].as_str()), (Some("EXPIRED"), Some("0.000")));
    // The client id may be reused once the first order is closed; unknown ids are -2013.
    let q = binance(
        sim.binance_addr,
        "GET",
        "/fapi/v1/order",
        &format!("symbol=BTCUSDT&origClientOrderId=nope&timestamp={}", now_ms()),
    )
    .unwrap();
    assert_eq!((q.status, q.json()["code"].as_i64()), (400, Some(-2013)));
}

#[test]
fn binance_rejects_bad_signatures_stale_timestamps_and_filter_violations() {
    let sim = start(|_| {});
    let ts = now_ms();
    let params = format!("symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.010&timestamp={ts}");
    let forged = format!("{}&signature={}", params, "0".repeat(64));
    let r = http(
        sim.binance_addr,
        "POST",
        &format!("/fapi/v1/order?{forged}"),
        &[("X-MBX-APIKEY", KEY.to_owned())],
        "",
    );
    assert_eq!((r.status, r.json()["code"].as_i64()), (400, Some(-1022)));
    // Signed with another secret.
    let wrong = binance_signed(&params, "not-the-secret");
    let r = http(
        sim.binance_addr,
        "POST",
        &format!("/fapi/v1/order?{wrong}"),
        &[("X-MBX-APIKEY", KEY.to_owned())],
        "",
    );
    assert_eq!(r.json()["code"], -1022);
    // Body-signed form (ccxt style: timestamp first, form body) is accepted.
    let body = binance_signed(
        &format!(
            "timestamp={}&symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.002&recvWindow=5000",
            now_ms()
        ),
        SECRET,
    );
    let r = http(
        sim.binance_addr,
        "POST",
        "/fapi/v1/order",
        &[
            ("X-MBX-APIKEY", KEY.to_owned()),
            ("Content-Type", "application/x-www-form-urlencoded".into()),
        ],
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // Stale and future timestamps.
    let r = binance(
        sim.binance_addr,
        "GET",
        "/fapi/v1/order",
        &format!("symbol=BTCUSDT&origClientOrderId=x&recvWindow=1000&timestamp={}", ts - 10_000),
    )
    .unwrap();
    assert_eq!(
        (r.json()["code"].as_i64(), r.json()["msg"].as_str()),
        (Some(-1021), Some("Timestamp for this request is outside of the recvWindow."))
    );
    let r = binance(
        sim.binance_addr,
        "GET",
        "/fapi/v1/order",
        &format!("symbol=BTCUSDT&origClientOrderId=x&timestamp={}", now_ms() + 5_000),
    )
    .unwrap();
    assert_eq!(
        r.json()["msg"],
        "Timestamp for this request was 1000ms ahead of the server's time."
    );
    // Filters.
    let t = now_ms();
    let cases = [
        (format!("symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.0105&timestamp={t}"), -1111),
        (format!("symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001&timestamp={t}"), -4164),
        (
            format!(
                "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.010&price=70000.05&timestamp={t}"
            ),
            -4014,
        ),
        (
            format!(
                "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.010&price=70000.001&timestamp={t}"
            ),
            -1111,
        ),
        (format!("symbol=NOPEUSDT&side=BUY&type=MARKET&quantity=0.010&timestamp={t}"), -1121),
        (format!("symbol=BTCUSDT&side=BUY&type=MARKET&quantity=50.000&timestamp={t}"), -2019),
        (
            format!(
                "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.010&reduceOnly=true&timestamp={t}"
            ),
            -2022,
        ),
    ];
    for (p, code) in cases {
        let r = binance(sim.binance_addr, "POST", "/fapi/v1/order", &p).unwrap();
        assert_eq!((r.status, r.json()["code"].as_i64()), (400, Some(code)), "{p}: {}", r.body);
    }
    // No API key at all.
    let r = http(
        sim.binance_addr,
        "GET",
        &format!("/fapi/v1/openOrders?{}", binance_signed(&format!("timestamp={t}"), SECRET)),
        &[],
        "",
    );
    assert_eq!(r.status, 401);
}
