//! Request encoders against the signing vectors: the Binance B3/B4 payloads and
//! signatures, the Upbit U2/U4 bodies, hashed strings and JWTs byte for byte; and every
//! encoded request verifies with the simulator-side verifiers.

mod common;

use kimp_core::event::Side;
use kimp_core::instrument::InstrumentId;
use kimp_core::order::{ClientId, Leg, OrderKind, OrderRequest};
use kimp_core::testkit;
use kimp_core::units::{Price, Qty};
use kimp_gateways::binance::BinanceEncoder;
use kimp_gateways::binance::encode::RespType;
use kimp_gateways::http;
use kimp_gateways::sign::*;
use kimp_gateways::upbit::UpbitEncoder;

const B_KEY: &str = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
const B_SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
const U_KEY: &str = "xZfUTD1mGwQpQ3PqK4mbqW6gkn8GqEwB2yGr1NbG";
const U_SECRET: &str = "sKz3YtTq8pWmDnE5vRbH7jLcXa9uF2gN4kQwZe6S";

fn vector(venue: &str, prefix: &str) -> simd_json::OwnedValue {
    use simd_json::prelude::*;
    let mut b = common::fixture("signing_vectors.json").into_bytes();
    let v = simd_json::to_owned_value(&mut b).unwrap();
    v.get(venue)
        .and_then(|a| a.as_array())
        .unwrap()
        .iter()
        .find(|x| x.get("name").and_then(|n| n.as_str()).unwrap().starts_with(prefix))
        .unwrap()
        .clone()
}
fn s<'a>(v: &'a simd_json::OwnedValue, k: &str) -> &'a str {
    use simd_json::prelude::*;
    v.get(k).and_then(|x| x.as_str()).unwrap()
}

fn req(
    inst: InstrumentId,
    leg: Leg,
    side: Side,
    kind: OrderKind,
    px: &str,
    qty: &str,
) -> OrderRequest {
    OrderRequest {
        cl_id: ClientId { epoch: 7, seq: 42, leg, attempt: 0 },
        inst,
        side,
        kind,
        px: Price::parse(px.as_bytes()).unwrap(),
        qty: Qty::parse(qty.as_bytes()).unwrap(),
        reduce_only: false,
    }
}

fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    std::str::from_utf8(head)
        .unwrap()
        .split("\r\n")
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

#[test]
fn binance_b3_b4_payloads_and_signatures() {
    let m = testkit::btc_markets();
    let secret = Secret::new(B_SECRET);
    let mut e = BinanceEncoder::new("fapi.venue.example", B_KEY, &secret, &m.instruments);
    for (name, r, ts, rt) in [
        (
            "B4",
            req(testkit::BTCUSDT, Leg::B, Side::Buy, OrderKind::LimitIoc, "70500", "0.01"),
            1773240059150u64,
            RespType::Ack,
        ),
        (
            "B3",
            req(testkit::BTCUSDT, Leg::B, Side::Sell, OrderKind::Market, "70499.9", "0.01"),
            1773240059100,
            RespType::Result,
        ),
    ] {
        let v = vector("binance", name);
        e.resp_type = rt;
        let id = if name == "B4" { "kimp-h-000002" } else { "kimp-h-000001" };
        let bytes = e.place_with_id(&r, id, ts).unwrap().to_vec();
        assert_eq!(
            std::str::from_utf8(e.last_params()).unwrap(),
            s(&v, "signature_payload"),
            "{name}"
        );
        let (head, body) = http::split(&bytes).unwrap();
        assert_eq!(std::str::from_utf8(body).unwrap(), s(&v, "final_query"), "{name}");
        assert!(head.starts_with(b"POST /fapi/v1/order HTTP/1.1\r\nHost: fapi.venue.example\r\n"));
        assert_eq!(header(head, "X-MBX-APIKEY"), Some(B_KEY));
        assert_eq!(header(head, "Content-Length"), Some(body.len().to_string().as_str()));
        assert_eq!(header(head, "Content-Type"), Some("application/x-www-form-urlencoded"));
        assert_eq!(verify_binance_request(&secret, b"", body), Ok(()));
    }
    // Our own client id and reduce-only.
    let mut r = req(testkit::BTCUSDT, Leg::B, Side::Sell, OrderKind::LimitIoc, "70499.9", "0.012");
    r.reduce_only = true;
    let bytes = e.place(&r, 1).unwrap().to_vec();
    let (_, body) = http::split(&bytes).unwrap();
    let body = std::str::from_utf8(body).unwrap();
    assert!(body.contains("&quantity=0.012&price=70499.90&newClientOrderId=k7-42-b0&newOrderRespType=RESULT&reduceOnly=true&recvWindow=5000&timestamp=1&signature="), "{body}");
    assert!(
        e.place(&req(testkit::KRW_BTC, Leg::U, Side::Buy, OrderKind::LimitIoc, "1", "1"), 1)
            .is_err(),
        "Upbit inst"
    );
    assert!(
        e.place(&req(testkit::BTCUSDT, Leg::B, Side::Buy, OrderKind::LimitIoc, "1", "0"), 1)
            .is_err(),
        "zero qty"
    );
}

#[test]
fn binance_cancel_query_and_unsigned_requests() {
    let m = testkit::btc_markets();
    let secret = Secret::new(B_SECRET);
    let mut e = BinanceEncoder::new("127.0.0.1:9000", B_KEY, &secret, &m.instruments);
    let id = ClientId { epoch: 7, seq: 42, leg: Leg::B, attempt: 3 };
    for (method, bytes) in [
        ("DELETE", e.cancel(testkit::BTCUSDT, id, 1773240059150).unwrap().to_vec()),
        ("GET", e.query(testkit::BTCUSDT, id, 1773240059150).unwrap().to_vec()),
    ] {
        let (head, body) = http::split(&bytes).unwrap();
        assert!(body.is_empty());
        let line = std::str::from_utf8(head).unwrap().lines().next().unwrap().to_owned();
        let q = line
            .strip_prefix(&format!("{method} /fapi/v1/order?"))
            .unwrap()
            .strip_suffix(" HTTP/1.1")
            .unwrap();
        assert!(q.starts_with("symbol=BTCUSDT&origClientOrderId=k7-42-b3&recvWindow=5000&timestamp=1773240059150&signature="));
        assert_eq!(verify_binance_request(&secret, q.as_bytes(), b""), Ok(()));
    }
    let acc = e.account(1773240060000).to_vec();
    let v = vector("binance", "B5");
    assert!(
        std::str::from_utf8(&acc)
            .unwrap()
            .starts_with(&format!("GET /fapi/v3/account?{} HTTP/1.1\r\n", s(&v, "final_query")))
    );
    assert_eq!(
        e.depth_snapshot(testkit::BTCUSDT, 1000).unwrap(),
        b"GET /fapi/v1/depth?symbol=BTCUSDT&limit=1000 HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n\r\n"
    );
    assert!(e.exchange_info(false).starts_with(b"GET /fapi/v1/exchangeInfo HTTP/1.1\r\n"));
    let lk = e.listen_key("POST").to_vec();
    assert_eq!(
        lk,
        format!("POST /fapi/v1/listenKey HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nX-MBX-APIKEY: {B_KEY}\r\nContent-Length: 0\r\n\r\n").into_bytes()
    );
}

#[test]
fn upbit_u2_u4_bodies_and_jwts() {
    let m = testkit::btc_markets();
    let secret = Secret::new(U_SECRET);
    for (name, r, ident) in [
        (
            "U2",
            req(testkit::KRW_BTC, Leg::U, Side::Buy, OrderKind::LimitIoc, "103493000", "0.0005"),
            "kimp-u-000001",
        ),
        (
            "U4",
            req(testkit::KRW_USDT, Leg::U, Side::Buy, OrderKind::Market, "10000", "1"),
            "kimp-u-000002",
        ),
    ] {
        let v = vector("upbit", name);
        for (alg, key) in [(JwtAlg::Hs256, "jwt_hs256"), (JwtAlg::Hs512, "jwt_hs512")] {
            let mut e = UpbitEncoder::new("api.venue.example", U_KEY, &secret, alg, &m.instruments)
                .unwrap();
            let bytes = e.place_with(&r, ident, s(&v, "nonce")).unwrap().to_vec();
            assert_eq!(
                std::str::from_utf8(e.last_hashed()).unwrap(),
                s(&v, "query_string"),
                "{name}"
            );
            let (head, body) = http::split(&bytes).unwrap();
            assert_eq!(std::str::from_utf8(body).unwrap(), s(&v, "ccxt_upbit_sign_body"), "{name}");
            let auth = header(head, "Authorization").unwrap();
            assert_eq!(auth, format!("Bearer {}", s(&v, key)), "{name} {alg:?}");
            assert!(head.starts_with(b"POST /v1/orders HTTP/1.1\r\nHost: api.venue.example\r\n"));
            assert_eq!(header(head, "Content-Type"), Some("application/json; charset=utf-8"));
            assert_eq!(header(head, "Content-Length"), Some(body.len().to_string().as_str()));
            // Simulator side: verify the token and recompute the hash from the body.
            let claims = verify_upbit_jwt(auth.strip_prefix("Bearer ").unwrap().as_bytes(), |_| {
                Some(&secret)
            })
            .unwrap();
            assert!(claims.query_matches(json_body_to_query(body).unwrap().as_bytes()));
        }
    }
    // Market sell: volume, no price.
    let mut e =
        UpbitEncoder::new("api.venue.example", U_KEY, &secret, JwtAlg::Hs512, &m.instruments)
            .unwrap();
    e.place(&req(testkit::KRW_BTC, Leg::U, Side::Sell, OrderKind::Market, "103460000", "0.0005"))
        .unwrap();
    assert_eq!(
        std::str::from_utf8(e.last_body()).unwrap(),
        r#"{"market":"KRW-BTC","side":"ask","volume":"0.0005","ord_type":"market","identifier":"k7-42-u0"}"#
    );
    assert!(
        e.place(&req(testkit::BTCUSDT, Leg::B, Side::Sell, OrderKind::Market, "1", "1")).is_err()
    );
}

#[test]
fn upbit_cancel_query_accounts_sign_the_query() {
    let m = testkit::btc_markets();
    let secret = Secret::new(U_SECRET);
    let mut e = UpbitEncoder::new("127.0.0.1:9001", U_KEY, &secret, JwtAlg::Hs512, &m.instruments)
        .unwrap()
        .with_nonces(NonceGen::from_seed(1));
    let id = ClientId { epoch: 7, seq: 42, leg: Leg::U, attempt: 1 };
    let mut nonces = std::collections::HashSet::new();
    for (method, bytes) in [
        ("DELETE", e.cancel(id).to_vec()),
        ("GET", e.query(id).to_vec()),
        ("GET", e.accounts().to_vec()),
    ] {
        let (head, _) = http::split(&bytes).unwrap();
        let line = std::str::from_utf8(head).unwrap().lines().next().unwrap().to_owned();
        let target =
            line.strip_prefix(&format!("{method} ")).unwrap().strip_suffix(" HTTP/1.1").unwrap();
        let query = target.split_once('?').map_or("", |(_, q)| q);
        let token = header(head, "Authorization").unwrap().strip_prefix("Bearer ").unwrap();
        let c = verify_upbit_jwt(token.as_bytes(), |_| Some(&secret)).unwrap();
        assert!(c.query_matches(query.as_bytes()), "{line}");
        assert!(nonces.insert(c.nonce.clone()), "fresh nonce per request");
        if target.starts_with("/v1/order") {
            assert_eq!(query, "identifier=k7-42-u1");
        } else {
            assert_eq!((target, c.query_hash), ("/v1/accounts", None));
        }
    }
    assert_eq!(
        e.orderbook(testkit::KRW_USDT).unwrap(),
        b"GET /v1/orderbook?markets=KRW-USDT HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n\r\n"
    );
}
