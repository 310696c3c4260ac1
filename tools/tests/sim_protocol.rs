//! The simulator speaks the venues' wire protocols: driven by plain clients (tungstenite,
//! raw HTTP), checked against the protocol fixtures.

mod sim_support;

use std::time::{Duration, Instant};

use kimp_core::book::{Book, DiffOutcome, SeqRule};
use kimp_core::event::{BookSnapshot, DepthDiff, Level};
use kimp_core::instrument::InstrumentId;
use kimp_core::units::{Nanos, Price, Qty};
use serde_json::Value;
use sim_support::*;

fn levels(v: &Value) -> Vec<Level> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| {
            Level::new(
                Price::parse(l[0].as_str().unwrap().as_bytes()).unwrap(),
                Qty::parse(l[1].as_str().unwrap().as_bytes()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn upbit_ws_sends_binary_orderbook_frames_in_default_and_simple_formats() {
    let sim = start(|_| {});
    let mut w = ws(sim.upbit_addr, "/websocket/v1", None);
    w.send(tungstenite::Message::text(fixture_line("upbit_ws_requests.jsonl", 0))).unwrap();
    let fixture_keys = top_keys(&fixture_line("upbit_orderbook.jsonl", 0));
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut btc_snap, mut usdt_snap, mut realtime) = (false, false, 0);
    while !(btc_snap && usdt_snap && realtime >= 3) {
        let (v, raw, binary) = next_json(&mut w, deadline).expect("orderbook frames within 5 s");
        assert!(binary, "Upbit sends binary frames");
        if v["type"] != "orderbook" {
            continue;
        }
        assert_eq!(top_keys(&raw), fixture_keys, "DEFAULT keys in fixture order");
        let units = v["orderbook_units"].as_array().unwrap();
        let want = if v["code"] == "KRW-BTC" { 15 } else { 5 };
        assert_eq!(units.len(), want, "{raw}");
        let tas: f64 = units.iter().map(|u| u["ask_size"].as_f64().unwrap()).sum();
        assert!(
            (tas - v["total_ask_size"].as_f64().unwrap()).abs() < 1e-6,
            "total over the sent units"
        );
        let (a0, b0) =
            (units[0]["ask_price"].as_f64().unwrap(), units[0]["bid_price"].as_f64().unwrap());
        assert!(a0 > b0, "uncrossed");
        for u in units.windows(2) {
            assert!(
                u[1]["ask_price"].as_f64() > u[0]["ask_price"].as_f64()
                    && u[1]["bid_price"].as_f64() < u[0]["bid_price"].as_f64()
            );
        }
        match (v["code"].as_str().unwrap(), v["stream_type"].as_str().unwrap()) {
            ("KRW-BTC", "SNAPSHOT") => btc_snap = true,
            ("KRW-USDT", "SNAPSHOT") => usdt_snap = true,
            (_, "REALTIME") => realtime += 1,
            other => panic!("{other:?}"),
        }
    }
    // SIMPLE format with is_only_realtime: no snapshot, abbreviated keys.
    let mut w2 = ws(sim.upbit_addr, "/websocket/v1", None);
    w2.send(tungstenite::Message::text(fixture_line("upbit_ws_requests.jsonl", 1))).unwrap();
    let simple_keys = top_keys(&fixture_line("upbit_orderbook_simple.jsonl", 0));
    let (v, raw, binary) =
        next_json(&mut w2, Instant::now() + Duration::from_secs(5)).expect("a SIMPLE frame");
    assert!(binary);
    assert_eq!(top_keys(&raw), simple_keys);
    assert_eq!((v["ty"].as_str(), v["st"].as_str()), (Some("orderbook"), Some("REALTIME")));
    // Malformed request → an error object, connection kept.
    w2.send(tungstenite::Message::text("{\"not\":\"an array\"}")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (v, _, _) = next_json(&mut w2, deadline).expect("error reply");
        if v.get("error").is_some() {
            assert_eq!(v["error"]["name"], "WRONG_FORMAT");
            break;
        }
    }
    // Text PING → {"status":"UP"}.
    w2.send(tungstenite::Message::text("PING")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (v, _, _) = next_json(&mut w2, deadline).expect("status UP");
        if v.get("status").is_some() {
            assert_eq!(v["status"], "UP");
            break;
        }
    }
}

#[test]
fn binance_depth_stream_chains_by_pu_and_matches_the_rest_snapshot() {
    let sim = start(|_| {});
    let mut w =
        ws(sim.binance_addr, "/public/stream?streams=btcusdt@depth@100ms/btcusdt@bookTicker", None);
    let depth_keys = top_keys(&fixture_line("binance_futures_depth.jsonl", 0));
    let wrapper_keys = top_keys(&fixture_line("binance_futures_combined.jsonl", 0));
    let bt_keys = top_keys(&fixture_line("binance_bookticker.jsonl", 0));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buffered: Vec<Value> = Vec::new();
    // Buffer a few events first, as the official procedure says.
    while buffered.len() < 3 {
        let (v, raw, binary) = next_json(&mut w, deadline).expect("depth events");
        assert!(!binary, "Binance sends text frames");
        assert_eq!(top_keys(&raw), wrapper_keys);
        let stream = v["stream"].as_str().unwrap();
        if stream == "btcusdt@bookTicker" {
            let inner = &raw[raw.find("\"data\":").unwrap() + 7..raw.len() - 1];
            assert_eq!(top_keys(inner), bt_keys);
            continue;
        }
        assert_eq!(stream, "btcusdt@depth@100ms");
        let inner = &raw[raw.find("\"data\":").unwrap() + 7..raw.len() - 1];
        assert_eq!(top_keys(inner), depth_keys);
        buffered.push(v["data"].clone());
    }
    let snap =
        http(sim.binance_addr, "GET", "/fapi/v1/depth?symbol=BTCUSDT&limit=1000", &[], "").json();
    let mut book = Book::new(SeqRule::Futures, 1000);
    let apply_snapshot = |book: &mut Book, s: &Value| {
        let (b, a) = (levels(&s["bids"]), levels(&s["asks"]));
        book.apply_snapshot(
            &BookSnapshot {
                inst: InstrumentId(0),
                exch_ts: Nanos(0),
                last_update_id: s["lastUpdateId"].as_u64().unwrap(),
                bids: &b,
                asks: &a,
            },
            Nanos(0),
        );
    };
    apply_snapshot(&mut book, &snap);
    let apply = |book: &mut Book, d: &Value| -> DiffOutcome {
        let (b, a) = (levels(&d["b"]), levels(&d["a"]));
        book.apply_diff(
            &DepthDiff {
                inst: InstrumentId(0),
                exch_ts: Nanos(0),
                first_id: d["U"].as_u64().unwrap(),
                last_id: d["u"].as_u64().unwrap(),
                prev_last_id: Some(d["pu"].as_u64().unwrap()),
                bids: &b,
                asks: &a,
            },
            Nanos(0),
        )
    };
    let (mut applied, mut non_contiguous, mut prev_u) = (0, 0, None::<u64>);
    let mut check_chain = |d: &Value| {
        let (uu, u, pu) =
            (d["U"].as_u64().unwrap(), d["u"].as_u64().unwrap(), d["pu"].as_u64().unwrap());
        if let Some(p) = prev_u {
            assert_eq!(pu, p, "pu = previous u");
            if uu != p + 1 {
                non_contiguous += 1;
            }
        }
        assert!(uu <= u);
        prev_u = Some(u);
    };
    for d in &buffered {
        check_chain(d);
        match apply(&mut book, d) {
            DiffOutcome::Applied => applied += 1,
            DiffOutcome::Dropped => {}
            o => panic!("{o:?} for a buffered event"),
        }
    }
    // Live events until a second snapshot's id is reached; then the books must be equal.
    let mut target: Option<Value> = None;
    loop {
        let (v, _, _) = next_json(&mut w, deadline).expect("live depth");
        if v["stream"] != "btcusdt@depth@100ms" {
            continue;
        }
        let d = &v["data"];
        check_chain(d);
        let out = apply(&mut book, d);
        assert!(matches!(out, DiffOutcome::Applied | DiffOutcome::Dropped), "{out:?}");
        if out == DiffOutcome::Applied {
            applied += 1;
        }
        if applied >= 10 && target.is_none() {
            target = Some(
                http(sim.binance_addr, "GET", "/fapi/v1/depth?symbol=BTCUSDT&limit=1000", &[], "")
                    .json(),
            );
        }
        if let Some(t) = &target
            && book.last_id() == t["lastUpdateId"].as_u64().unwrap()
        {
            let mine_b: Vec<Level> = book.bids.iter().copied().collect();
            let mine_a: Vec<Level> = book.asks.iter().copied().collect();
            assert_eq!(mine_b, levels(&t["bids"]), "bids equal the REST snapshot at the same id");
            assert_eq!(mine_a, levels(&t["asks"]), "asks equal the REST snapshot at the same id");
            break;
        }
    }
    assert!(non_contiguous > 0, "U is not previous u + 1 in general");
    assert!(book.gaps == 0);
}

#[test]
fn binance_routes_serve_mark_price_on_market_only_and_live_subscribe_works() {
    let sim = start(|c| c.mark_interval_ms = 200);
    let mut m = ws(sim.binance_addr, "/market/ws/btcusdt@markPrice@1s", None);
    let keys = top_keys(&fixture_line("binance_markprice.jsonl", 0));
    let (v, raw, _) =
        next_json(&mut m, Instant::now() + Duration::from_secs(5)).expect("markPrice on /market");
    assert_eq!(top_keys(&raw), keys);
    assert_eq!(v["e"], "markPriceUpdate");
    assert!(v["r"].as_str().unwrap().parse::<f64>().unwrap().abs() < 0.01);
    assert!(v["T"].as_u64().unwrap() > v["E"].as_u64().unwrap(), "next funding in the future");
    // Unrouted and /public connections never receive markPrice.
    let mut p = ws(sim.binance_addr, "/ws/btcusdt@markPrice@1s", None);
    assert!(next_frame(&mut p, Instant::now() + Duration::from_millis(1_500)).is_none());
    // Live SUBSCRIBE on the public route.
    p.send(tungstenite::Message::text(
        r#"{"method":"SUBSCRIBE","params":["btcusdt@bookTicker"],"id":1}"#,
    ))
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let (ack, _, _) = next_json(&mut p, deadline).expect("ack");
    assert_eq!(ack, serde_json::json!({"result": null, "id": 1}));
    let (bt, _, _) = next_json(&mut p, deadline).expect("bookTicker after SUBSCRIBE");
    assert_eq!(bt["e"], "bookTicker");
    p.send(tungstenite::Message::text(r#"{"method":"LIST_SUBSCRIPTIONS","id":3}"#)).unwrap();
    loop {
        let (v, _, _) = next_json(&mut p, deadline).expect("list reply");
        if v.get("id").is_some() {
            assert_eq!(
                v["result"],
                serde_json::json!(["btcusdt@markPrice@1s", "btcusdt@bookTicker"])
            );
            break;
        }
    }
}

#[test]
fn rest_answers_carry_rate_limit_headers_and_429_past_the_budget() {
    let sim = start(|c| c.limits.binance_weight_per_min = 5);
    let mut up = Upbit::new(sim.upbit_addr, kimp_gateways::sign::JwtAlg::Hs512);
    // Upbit order group: 8/s per account; under-minimum orders still count.
    let mut statuses = Vec::new();
    for i in 0..9 {
        let id = format!("rl-{i}");
        let r = up
            .order(&[
                ("market", "KRW-BTC"),
                ("side", "bid"),
                ("volume", "0.00000001"),
                ("price", "100000000"),
                ("ord_type", "limit"),
                ("identifier", &id),
            ])
            .unwrap();
        let rr = r.header("remaining-req").expect("Remaining-Req").to_owned();
        assert!(rr.starts_with("group=order; min="), "{rr}");
        statuses.push((r.status, rr));
    }
    assert_eq!(statuses[0].0, 400, "under_min_total_bid");
    assert!(statuses[7].1.ends_with("sec=0"), "{:?}", statuses[7]);
    assert_eq!(statuses[8].0, 429, "{statuses:?}");
    // Binance IP weight: /fapi/v1/time weighs 1; the 6th in a minute is refused.
    let mut last = None;
    for i in 1..=6 {
        let r = http(sim.binance_addr, "GET", "/fapi/v1/time", &[], "");
        if i <= 5 {
            assert_eq!(r.status, 200);
            assert_eq!(r.header("x-mbx-used-weight-1m"), Some(i.to_string().as_str()));
        }
        last = Some(r);
    }
    let r = last.unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["code"], -1003);
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
}

#[test]
fn exchange_info_and_fixture_shaped_rest_bodies() {
    let sim = start(|_| {});
    let info = http(sim.binance_addr, "GET", "/fapi/v1/exchangeInfo", &[], "");
    let fx: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("binance_futures_exchange_info_btcusdt.json"))
            .unwrap(),
    )
    .unwrap();
    let v = info.json();
    let btc = v["symbols"].as_array().unwrap().iter().find(|s| s["symbol"] == "BTCUSDT").unwrap();
    let types: Vec<&str> = btc["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filterType"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = fx["symbols"][0]["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filterType"].as_str().unwrap())
        .collect();
    assert_eq!(types, want);
    assert_eq!(btc["filters"][0]["tickSize"], "0.10");
    assert_eq!(btc["filters"][1]["stepSize"], "0.001");
    let pi = http(sim.binance_addr, "GET", "/fapi/v1/premiumIndex?symbol=BTCUSDT", &[], "");
    let pi_keys = top_keys(
        &std::fs::read_to_string(fixtures().join("binance_premium_index.json"))
            .unwrap()
            .replace(['\n', ' '], ""),
    );
    assert_eq!(top_keys(&pi.body), pi_keys);
    let t = http(sim.binance_addr, "GET", "/fapi/v1/time", &[], "").json();
    assert!(t["serverTime"].as_u64().unwrap().abs_diff(now_ms()) < 2_000);
    let mut up = Upbit::new(sim.upbit_addr, kimp_gateways::sign::JwtAlg::Hs256);
    let acc = up.query("GET", "/v1/accounts", "");
    assert_eq!(acc.status, 200, "{}", acc.body);
    let acc_keys = top_keys(
        &serde_json::to_string(
            &serde_json::from_str::<Value>(
                &std::fs::read_to_string(fixtures().join("upbit_accounts.json")).unwrap(),
            )
            .unwrap()[0],
        )
        .unwrap(),
    );
    let mut sorted = acc_keys.clone();
    sorted.sort();
    let first = acc.json()[0].clone();
    let mut got: Vec<String> = first.as_object().unwrap().keys().cloned().collect();
    got.sort();
    assert_eq!(got, sorted, "same account fields as the fixture");
    assert_eq!(first["currency"], "BTC");
    assert!(
        acc.json()
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["currency"] == "KRW" && a["balance"] == "100000000")
    );
}
