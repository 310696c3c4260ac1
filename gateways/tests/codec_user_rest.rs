//! User-data streams and REST replies → order events, balances, positions, rejects,
//! unknown outcomes and instruments, on the protocol fixtures (with our client-id format
//! substituted for the fixtures' `kimp-…` ids, which are foreign to the engine).

mod common;

use common::*;
use kimp_core::event::{Event, OrderEvent, OrderEventKind, RejectReason};
use kimp_core::instrument::{InstrumentId, TickRule, Venue};
use kimp_core::order::{ClientId, Leg};
use kimp_core::units::{Nanos, Price, Qty, Quote};
use kimp_gateways::binance::{BinanceRestParser, BinanceUserParser, rest as brest};
use kimp_gateways::codec::UserMsg;
use kimp_gateways::rest::OrderRequestKind::{Cancel, Place, Query};
use kimp_gateways::upbit::{UpbitRestParser, UpbitUserParser, rest as urest};

const B_ID: ClientId = ClientId { epoch: 7, seq: 42, leg: Leg::B, attempt: 0 };
const U_ID: ClientId = ClientId { epoch: 7, seq: 42, leg: Leg::U, attempt: 1 };

fn ours(s: &str) -> String {
    s.replace("kimp-h-000001", "k7-42-b0").replace("kimp-u-000001", "k7-42-u1")
}
fn px(s: &str) -> Price {
    Price::parse(s.as_bytes()).unwrap()
}
fn q(s: &str) -> Qty {
    Qty::parse(s.as_bytes()).unwrap()
}
fn kinds(evs: &[Event<'static>]) -> Vec<OrderEventKind> {
    evs.iter()
        .map(|e| match e {
            Event::Order(OrderEvent { kind, .. }) => *kind,
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn binance_order_trade_update_lifecycle() {
    let mut p = BinanceUserParser::new(table(Venue::Binance));
    let lines: Vec<String> =
        fixture_lines("binance_user_data.jsonl").iter().map(|l| ours(l)).collect();
    let Ok(UserMsg::Events(e)) = p.parse(lines[0].as_bytes()) else { panic!() };
    assert_eq!(kinds(e), vec![OrderEventKind::Ack]);
    let Ok(UserMsg::Events(e)) = p.parse(lines[1].as_bytes()) else { panic!() };
    let Event::Order(o) = e[0] else { panic!() };
    assert_eq!((o.cl_id, o.exch_ts), (B_ID, Nanos::from_ms(1773240059145)));
    assert_eq!(
        kinds(e),
        vec![
            OrderEventKind::Fill {
                trade_id: 6873324719,
                px: px("70499.90"),
                qty: q("0.010"),
                cum_qty: q("0.010"),
                fee: Quote::parse(b"0.35249950").unwrap()
            },
            OrderEventKind::Done { cum_qty: q("0.010") }
        ]
    );
    assert!(matches!(p.parse(lines[2].as_bytes()), Ok(UserMsg::Skipped)));
    assert_eq!(p.trade_lite, 1);
    assert!(matches!(p.parse(lines[3].as_bytes()), Ok(UserMsg::ListenKeyExpired)));
    // Foreign ids are counted and skipped.
    assert!(matches!(
        p.parse(fixture_lines("binance_user_data.jsonl")[0].as_bytes()),
        Ok(UserMsg::Foreign)
    ));
    assert_eq!(p.stats.foreign_orders, 1);
    // Fee in another asset: reported as 0 and counted.
    let bnb = lines[1].replace("\"N\":\"USDT\"", "\"N\":\"BNB\"");
    let Ok(UserMsg::Events(e)) = p.parse(bnb.as_bytes()) else { panic!() };
    assert!(matches!(kinds(e)[0], OrderEventKind::Fill { fee: Quote(0), .. }));
    assert_eq!(p.stats.fee_other_asset, 1);
    // IOC remainder expired without fills.
    let exp =
        lines[0].replace("\"x\":\"NEW\",\"X\":\"NEW\"", "\"x\":\"EXPIRED\",\"X\":\"EXPIRED\"");
    let Ok(UserMsg::Events(e)) = p.parse(exp.as_bytes()) else { panic!() };
    assert_eq!(kinds(e), vec![OrderEventKind::Done { cum_qty: Qty(0) }]);
    let rej =
        lines[0].replace("\"x\":\"NEW\",\"X\":\"NEW\"", "\"x\":\"REJECTED\",\"X\":\"REJECTED\"");
    let Ok(UserMsg::Events(e)) = p.parse(rej.as_bytes()) else { panic!() };
    assert!(matches!(kinds(e)[0], OrderEventKind::Reject(_)));
    assert!(p.parse(b"{\"e\":\"ORDER_TRADE_UPDATE\"}").is_err());
}

#[test]
fn binance_account_update() {
    let mut p = BinanceUserParser::new(table(Venue::Binance));
    let m = br#"{"e":"ACCOUNT_UPDATE","E":1564745798939,"T":1564745798938,"a":{"m":"ORDER","B":[{"a":"USDT","wb":"122624.12345678","cw":"100.12345678","bc":"50.12345678"}],"P":[{"s":"BTCUSDT","pa":"-0.010","ep":"70499.9","cr":"200","up":"0","mt":"cross","iw":"0","ps":"BOTH"},{"s":"BTCUSDT","pa":"1","ep":"1","cr":"0","up":"0","mt":"cross","iw":"0","ps":"LONG"},{"s":"XRPUSDT","pa":"5","ep":"1","cr":"0","up":"0","mt":"cross","iw":"0","ps":"BOTH"}]}}"#;
    let Ok(UserMsg::Events(e)) = p.parse(m) else { panic!() };
    assert_eq!(e.len(), 2);
    let Event::Balance(b) = e[0] else { panic!() };
    assert_eq!((b.asset.as_str(), b.free), ("USDT", q("122624.12345678")));
    let Event::Position(pos) = e[1] else { panic!() };
    assert_eq!((pos.inst, pos.qty), (InstrumentId(1), q("-0.010")));
}

#[test]
fn upbit_my_order_trade_then_done() {
    let mut p = UpbitUserParser::new();
    let lines: Vec<String> = fixture_lines("upbit_myorder.jsonl").iter().map(|l| ours(l)).collect();
    let Ok(UserMsg::Events(e)) = p.parse(lines[0].as_bytes()) else { panic!() };
    let Event::Order(o) = e[0] else { panic!() };
    assert_eq!((o.cl_id, o.exch_ts), (U_ID, Nanos::from_ms(1773240059122)));
    let OrderEventKind::Fill { px: fpx, qty, cum_qty, fee, .. } = o.kind else { panic!("{o:?}") };
    assert_eq!(
        (fpx, qty, cum_qty, fee),
        (px("103493000"), q("0.0005"), q("0.0005"), Quote::parse(b"25.87325").unwrap())
    );
    let Ok(UserMsg::Events(e)) = p.parse(lines[1].as_bytes()) else { panic!() };
    assert_eq!(kinds(e), vec![OrderEventKind::Done { cum_qty: q("0.0005") }]);
    let wait = lines[1].replace("\"state\":\"done\"", "\"state\":\"wait\"");
    let Ok(UserMsg::Events(e)) = p.parse(wait.as_bytes()) else { panic!() };
    assert_eq!(kinds(e), vec![OrderEventKind::Ack]);
    assert!(matches!(
        p.parse(fixture_lines("upbit_myorder.jsonl")[0].as_bytes()),
        Ok(UserMsg::Foreign)
    ));
    let asset = br#"{"type":"myAsset","asset_uuid":"x","assets":[{"currency":"KRW","balance":948227.62675,"locked":0.0}],"asset_timestamp":1,"timestamp":2,"stream_type":"REALTIME"}"#;
    let Ok(UserMsg::Events(e)) = p.parse(asset) else { panic!() };
    let Event::Balance(b) = e[0] else { panic!() };
    assert_eq!((b.asset.as_str(), b.free, b.locked), ("KRW", q("948227.62675"), Qty(0)));
}

#[test]
fn binance_rest_replies() {
    let mut p = BinanceRestParser::new();
    let now = Nanos(5);
    let ack = ours(&fixture("binance_order_ack.json"));
    let e = p.order_reply(Place, B_ID, 200, ack.as_bytes(), now).unwrap().to_vec();
    assert_eq!(kinds(&e), vec![OrderEventKind::Ack, OrderEventKind::Done { cum_qty: q("0.010") }]);
    let e = p.order_reply(Query, B_ID, 200, ack.as_bytes(), now).unwrap().to_vec();
    assert_eq!(
        kinds(&e),
        vec![
            OrderEventKind::Ack,
            OrderEventKind::Fill {
                trade_id: 0,
                px: px("70499.90"),
                qty: q("0.010"),
                cum_qty: q("0.010"),
                fee: Quote(0)
            },
            OrderEventKind::Done { cum_qty: q("0.010") }
        ]
    );
    let new_ack = r#"{"clientOrderId":"k7-42-b0","cumQty":"0","executedQty":"0","orderId":22542179,"origQty":"10","price":"0","reduceOnly":false,"side":"SELL","positionSide":"BOTH","status":"NEW","symbol":"BTCUSDT","timeInForce":"IOC","type":"LIMIT","updateTime":1566818724722}"#;
    assert_eq!(
        kinds(p.order_reply(Place, B_ID, 200, new_ack.as_bytes(), now).unwrap()),
        vec![OrderEventKind::Ack]
    );
    let other = new_ack.replace("k7-42-b0", "k7-43-b0");
    assert!(
        p.order_reply(Place, B_ID, 200, other.as_bytes(), now).is_err(),
        "reply for another order"
    );

    let rej = |code: i64| {
        let body = format!(r#"{{"code":{code},"msg":"x"}}"#);
        kinds(BinanceRestParser::new().order_reply(Place, B_ID, 400, body.as_bytes(), now).unwrap())
    };
    assert_eq!(rej(-2019), vec![OrderEventKind::Reject(RejectReason::InsufficientBalance)]);
    assert_eq!(rej(-4164), vec![OrderEventKind::Reject(RejectReason::MinNotional)]);
    assert_eq!(rej(-1111), vec![OrderEventKind::Reject(RejectReason::Filter)]);
    assert_eq!(rej(-1003), vec![OrderEventKind::Reject(RejectReason::RateLimited)]);
    assert_eq!(rej(-1007), vec![OrderEventKind::Unknown]);
    assert_eq!(rej(-2022), vec![OrderEventKind::Reject(RejectReason::Other(-2022))]);
    for l in fixture_lines("binance_errors.jsonl") {
        assert_eq!(p.order_reply(Place, B_ID, 400, l.as_bytes(), now).unwrap().len(), 1, "{l}");
    }
    let gone = r#"{"code":-2013,"msg":"Order does not exist."}"#;
    assert_eq!(
        kinds(p.order_reply(Query, B_ID, 400, gone.as_bytes(), now).unwrap()),
        vec![OrderEventKind::NotFound]
    );
    assert_eq!(
        kinds(p.order_reply(Place, B_ID, 503, b"<html>", now).unwrap()),
        vec![OrderEventKind::Unknown]
    );
    assert_eq!(
        kinds(p.order_reply(Query, B_ID, 502, b"", now).unwrap()),
        vec![OrderEventKind::Unknown]
    );
    assert!(
        p.order_reply(Cancel, B_ID, 400, br#"{"code":-2011,"msg":"Unknown order sent."}"#, now)
            .unwrap()
            .is_empty()
    );
    assert_eq!(p.last_error.map(|e| e.0), Some(-2011));
    assert_eq!(
        kinds(p.order_reply(Place, B_ID, 429, b"", now).unwrap()),
        vec![OrderEventKind::Reject(RejectReason::RateLimited)]
    );
}

#[test]
fn binance_exchange_info_time_listen_key() {
    let body = fixture("binance_futures_exchange_info_btcusdt.json");
    let v = brest::exchange_info(body.as_bytes(), Venue::Binance, &["BTCUSDT"], 40_000).unwrap();
    assert_eq!(v.len(), 1);
    let i = v[0];
    assert_eq!(i.tick, TickRule::Fixed(px("0.10")));
    assert_eq!((i.lot, i.min_qty), (q("0.001"), q("0.001")));
    assert_eq!(i.min_notional, Quote::parse(b"100").unwrap(), "futures MIN_NOTIONAL.notional");
    assert_eq!((i.price_dp, i.qty_dp), (2, 3));
    let spot = r#"{"symbols":[{"symbol":"BTCUSDT","status":"TRADING","filters":[{"filterType":"PRICE_FILTER","minPrice":"0.01000000","maxPrice":"1000000.00000000","tickSize":"0.01000000"},{"filterType":"LOT_SIZE","minQty":"0.00001000","maxQty":"9000.00000000","stepSize":"0.00001000"},{"filterType":"NOTIONAL","minNotional":"5.00000000","applyMinToMarket":true,"maxNotional":"9000000.00000000"}]},{"symbol":"ETHBTC","status":"BREAK","filters":[]}]}"#;
    let v = brest::exchange_info(spot.as_bytes(), Venue::BinanceSpot, &[], 100_000).unwrap();
    assert_eq!(v.len(), 1, "only TRADING symbols");
    assert_eq!(
        (v[0].min_notional, v[0].price_dp, v[0].qty_dp),
        (Quote::parse(b"5").unwrap(), 2, 5)
    );
    assert_eq!(brest::server_time(br#"{"serverTime":1773240059027}"#), Ok(1773240059027));
    assert_eq!(
        brest::listen_key(fixture("binance_listen_key.json").as_bytes()).unwrap(),
        "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"
    );
    assert!(brest::listen_key(b"{}").is_err());
}

#[test]
fn upbit_rest_replies() {
    let mut p = UpbitRestParser::new();
    let now = Nanos(9);
    let ack = ours(&fixture("upbit_order_ack.json"));
    assert_eq!(
        kinds(p.order_reply(Place, U_ID, 201, ack.as_bytes(), now).unwrap()),
        vec![OrderEventKind::Ack]
    );
    let done = ours(&fixture("upbit_order_done.json"));
    let e = p.order_reply(Query, U_ID, 200, done.as_bytes(), now).unwrap().to_vec();
    assert_eq!(
        kinds(&e),
        vec![
            OrderEventKind::Ack,
            OrderEventKind::Fill {
                trade_id: kimp_gateways::codec::text_id(b"4c1b2a3d-9e8f-4a7b-8c6d-5e4f3a2b1c0d"),
                px: px("103493000"),
                qty: q("0.0005"),
                cum_qty: q("0.0005"),
                fee: Quote::parse(b"25.87325").unwrap()
            },
            OrderEventKind::Done { cum_qty: q("0.0005") }
        ]
    );
    assert!(p.order_reply(Cancel, U_ID, 200, ack.as_bytes(), now).unwrap().is_empty());
    let err = |status: u16, name: &str, kind| {
        let body = format!(r#"{{"error":{{"name":"{name}","message":"m"}}}}"#);
        kinds(UpbitRestParser::new().order_reply(kind, U_ID, status, body.as_bytes(), now).unwrap())
    };
    assert_eq!(
        err(400, "insufficient_funds_bid", Place),
        vec![OrderEventKind::Reject(RejectReason::InsufficientBalance)]
    );
    assert_eq!(
        err(400, "under_min_total_bid", Place),
        vec![OrderEventKind::Reject(RejectReason::MinNotional)]
    );
    assert_eq!(
        err(401, "jwt_verification", Place),
        vec![OrderEventKind::Reject(RejectReason::Auth)]
    );
    assert_eq!(err(404, "order_not_found", Query), vec![OrderEventKind::NotFound]);
    assert_eq!(err(400, "duplicate_identifier", Place), vec![OrderEventKind::Unknown]);
    assert_eq!(err(500, "whatever", Place), vec![OrderEventKind::Unknown]);
    assert_eq!(
        err(429, "too_many", Place),
        vec![OrderEventKind::Reject(RejectReason::RateLimited)]
    );
    for l in fixture_lines("upbit_errors.jsonl") {
        let mut j = kimp_gateways::json::JsonScratch::default();
        let (e, name) = urest::parse_error(&mut j, l.as_bytes()).unwrap();
        assert_ne!(name.as_str(), "");
        assert_ne!(e, urest::UpbitError::Other, "{l}");
    }
    let acc = urest::accounts(fixture("upbit_accounts.json").as_bytes()).unwrap();
    assert_eq!(acc.len(), 2);
    let Event::Balance(b) = acc[1] else { panic!() };
    assert_eq!((b.asset.as_str(), b.free), ("BTC", q("0.0005")));
}
