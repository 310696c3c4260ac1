//! Every socket-level fault scenario has an observable effect on a plain client.

mod sim_support;

use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kimp::sim::faults::{Faults, Scenario};
use serde_json::Value;
use sim_support::*;

fn with(scenarios: &[&str]) -> kimp::sim::SimHandle {
    let list: Vec<Scenario> = scenarios.iter().map(|s| Scenario::parse(s).unwrap()).collect();
    start(|c| c.faults = Faults { list })
}

fn depth_events(w: &mut Ws, n: usize, secs: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut out = Vec::new();
    while out.len() < n {
        let Some((v, _, _)) = next_json(w, deadline) else { break };
        if v["e"] == "depthUpdate" {
            out.push(v);
        }
    }
    out
}

#[test]
fn exchange_maintenance_refuses_connections_for_the_period() {
    let sim = with(&["exchange_maintenance:venue=binance,after=400,for=1200"]);
    let addr = sim.binance_addr;
    let mut w = ws(addr, "/ws/btcusdt@depth@100ms", None);
    std::thread::sleep(Duration::from_millis(800));
    let e = TcpStream::connect(addr).expect_err("refused during maintenance");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(
        http(sim.upbit_addr, "GET", "/v1/market/all", &[], "").status,
        200,
        "the other venue is up"
    );
    // The open stream was closed.
    let closed = (0..50).any(|_| matches!(w.read(), Err(e) if !matches!(&e, tungstenite::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock)));
    assert!(closed);
    std::thread::sleep(Duration::from_millis(1_200));
    assert_eq!(http(addr, "GET", "/fapi/v1/time", &[], "").status, 200, "back after the window");
    assert!(sim.stats().maintenance_refusals >= 1);
}

#[test]
fn latency_spike_delays_rest_answers_on_its_venue() {
    let sim = with(&["latency_spike:venue=binance,p=1,ms=400-450"]);
    let t = Instant::now();
    assert_eq!(http(sim.binance_addr, "GET", "/fapi/v1/time", &[], "").status, 200);
    assert!(t.elapsed() >= Duration::from_millis(400), "{:?}", t.elapsed());
    let t = Instant::now();
    http(sim.upbit_addr, "GET", "/v1/market/all", &[], "");
    assert!(t.elapsed() < Duration::from_millis(300));
    assert_eq!(sim.stats().latency_spikes, 1);
}

#[test]
fn ambiguous_fill_executes_then_drops_the_answer() {
    let sim = with(&["ambiguous_fill:venue=binance,p=1"]);
    let p = format!(
        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.010&newClientOrderId=amb-1&timestamp={}",
        now_ms()
    );
    assert!(binance(sim.binance_addr, "POST", "/fapi/v1/order", &p).is_none(), "no answer");
    let q = binance(
        sim.binance_addr,
        "GET",
        "/fapi/v1/order",
        &format!("symbol=BTCUSDT&origClientOrderId=amb-1&timestamp={}", now_ms()),
    )
    .unwrap();
    assert_eq!(q.json()["status"], "FILLED", "it did execute");
    assert_eq!(sim.stats().ambiguous, 1);
}

#[test]
fn partial_fill_on_the_wire_leaves_an_expired_ioc_remainder() {
    let sim = with(&["partial_fill"]);
    let key = http(
        sim.binance_addr,
        "POST",
        "/fapi/v1/listenKey",
        &[("X-MBX-APIKEY", KEY.to_owned())],
        "",
    )
    .json()["listenKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut uw = ws(sim.binance_addr, &format!("/private/ws?listenKey={key}"), None);
    std::thread::sleep(Duration::from_millis(100));
    let snap =
        http(sim.binance_addr, "GET", "/fapi/v1/depth?symbol=BTCUSDT&limit=5", &[], "").json();
    let ask: f64 = snap["asks"][0][0].as_str().unwrap().parse().unwrap();
    let p = format!(
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=IOC&quantity=0.010&price={:.2}&newClientOrderId=pf-1&timestamp={}",
        ask + 200.0,
        now_ms()
    );
    let r = binance(sim.binance_addr, "POST", "/fapi/v1/order", &p).unwrap();
    assert_eq!(r.json()["status"], "NEW", "ACK answer by default");
    let q = binance(
        sim.binance_addr,
        "GET",
        "/fapi/v1/order",
        &format!("symbol=BTCUSDT&origClientOrderId=pf-1&timestamp={}", now_ms()),
    )
    .unwrap()
    .json();
    assert_eq!((q["status"].as_str(), q["executedQty"].as_str()), (Some("EXPIRED"), Some("0.006")));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (v, _, _) = next_json(&mut uw, deadline).expect("EXPIRED on the user stream");
        if v["e"] == "ORDER_TRADE_UPDATE" && v["o"]["x"] == "EXPIRED" {
            assert_eq!(v["o"]["z"], "0.006");
            break;
        }
    }
}

#[test]
fn depth_gap_injection_produces_a_pu_gap_on_the_stream() {
    let sim = with(&["depth_gap:venue=binance,p=0.3"]);
    let mut w = ws(sim.binance_addr, "/public/ws/btcusdt@depth@100ms", None);
    let ev = depth_events(&mut w, 25, 10);
    assert_eq!(ev.len(), 25);
    let gaps = ev.windows(2).filter(|p| p[1]["pu"] != p[0]["u"]).count();
    assert!(gaps >= 1, "a pu gap within 25 events at p=0.3");
    assert!(sim.stats().depth_gaps >= gaps as u64);
}

#[test]
fn drop_duplicate_and_reorder_damage_the_stream_as_configured() {
    for (sc, check) in [
        ("drop_messages:venue=binance,p=0.3", "drop"),
        ("duplicate_messages:venue=binance,p=0.3", "dup"),
        ("reorder_messages:venue=binance,p=0.3", "reorder"),
    ] {
        let sim = with(&[sc]);
        let mut w = ws(sim.binance_addr, "/ws/btcusdt@depth@100ms", None);
        let ev = depth_events(&mut w, 25, 10);
        let pairs = ev.windows(2);
        let seen = match check {
            "drop" => pairs.filter(|p| p[1]["pu"] != p[0]["u"]).count(),
            "dup" => pairs.filter(|p| p[1] == p[0]).count(),
            _ => pairs.filter(|p| p[1]["u"].as_u64() < p[0]["u"].as_u64()).count(),
        };
        assert!(seen >= 1, "{sc}: no effect in {} events", ev.len());
        let s = sim.stats();
        assert!(s.ws_dropped + s.ws_duplicated + s.ws_reordered >= 1);
    }
}

#[test]
fn disconnect_and_stall_scenarios() {
    let sim = with(&["disconnect:venue=upbit,p=1"]);
    let mut w = ws(sim.upbit_addr, "/websocket/v1", None);
    w.send(tungstenite::Message::text(
        r#"[{"ticket":"t"},{"type":"orderbook","codes":["KRW-BTC"]}]"#,
    ))
    .unwrap();
    let t = Instant::now();
    let closed = loop {
        match w.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break true,
        }
        if t.elapsed() > Duration::from_secs(4) {
            break false;
        }
    };
    assert!(closed, "closed within ~1 s");
    assert!(sim.stats().ws_disconnects >= 1);
    drop(sim);
    let sim = with(&["stall:venue=binance,p=1,ms=1500-1500"]);
    let mut w = ws(sim.binance_addr, "/ws/btcusdt@depth@100ms", None);
    let deadline = Instant::now() + Duration::from_secs(6);
    let (mut last, mut longest) = (Instant::now(), Duration::ZERO);
    let mut n = 0;
    while Instant::now() < deadline {
        if next_frame(&mut w, deadline).is_some() {
            longest = longest.max(last.elapsed());
            last = Instant::now();
            n += 1;
        }
    }
    assert!(longest >= Duration::from_millis(1_000), "a silent period: {longest:?}");
    assert!(n > 5, "and the connection stayed open: {n} messages");
}

#[test]
fn rate_limit_clock_skew_and_listen_key_expiry() {
    let sim = with(&["rate_limit:p=1"]);
    let r = http(sim.binance_addr, "GET", "/fapi/v1/time", &[], "");
    assert_eq!((r.status, r.json()["code"].as_i64()), (429, Some(-1003)));
    assert!(r.header("retry-after").is_some());
    let r = http(sim.upbit_addr, "GET", "/v1/market/all", &[], "");
    assert_eq!(r.status, 429);
    drop(sim);
    let sim = with(&["clock_skew:value=-10000"]);
    let st = http(sim.binance_addr, "GET", "/fapi/v1/time", &[], "").json()["serverTime"]
        .as_u64()
        .unwrap();
    let skew = now_ms() as i64 - st as i64;
    assert!((9_000..11_000).contains(&skew), "{skew}");
    let p = format!("symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.010&timestamp={}", now_ms());
    assert_eq!(
        binance(sim.binance_addr, "POST", "/fapi/v1/order", &p).unwrap().json()["code"],
        -1021
    );
    let p = format!("symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.010&timestamp={st}");
    assert_eq!(
        binance(sim.binance_addr, "POST", "/fapi/v1/order", &p).unwrap().status,
        200,
        "server time works"
    );
    drop(sim);
    let sim = with(&["listen_key_expiry:after=600"]);
    let key = http(
        sim.binance_addr,
        "POST",
        "/fapi/v1/listenKey",
        &[("X-MBX-APIKEY", KEY.to_owned())],
        "",
    )
    .json()["listenKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut uw = ws(sim.binance_addr, &format!("/private/ws?listenKey={key}"), None);
    let (v, _, _) =
        next_json(&mut uw, Instant::now() + Duration::from_secs(5)).expect("listenKeyExpired");
    assert_eq!(
        (v["e"].as_str(), v["listenKey"].as_str()),
        (Some("listenKeyExpired"), Some(key.as_str()))
    );
    let r = http(
        sim.binance_addr,
        "PUT",
        "/fapi/v1/listenKey",
        &[("X-MBX-APIKEY", KEY.to_owned())],
        "",
    );
    assert_eq!(r.json()["code"], -1125);
}

#[test]
fn order_rejection_and_one_leg_failure_on_the_wire() {
    let sim = with(&["order_rejection:venue=upbit,p=1", "one_leg_failure:venue=binance"]);
    let mut up = Upbit::new(sim.upbit_addr, kimp_gateways::sign::JwtAlg::Hs512);
    let r = up
        .order(&[
            ("market", "KRW-BTC"),
            ("side", "ask"),
            ("volume", "0.001"),
            ("ord_type", "market"),
            ("identifier", "rj-1"),
        ])
        .unwrap();
    assert!(matches!(r.status, 400 | 500), "{}", r.body);
    assert!(r.json()["error"]["name"].is_string());
    let again = up
        .order(&[
            ("market", "KRW-BTC"),
            ("side", "ask"),
            ("volume", "0.001"),
            ("ord_type", "market"),
            ("identifier", "rj-1"),
        ])
        .unwrap();
    assert_eq!(
        again.json()["error"]["name"],
        "duplicate_identifier",
        "a refused identifier stays used"
    );
    let p = format!("symbol=BTCUSDT&side=SELL&type=MARKET&quantity=0.010&timestamp={}", now_ms());
    let r = binance(sim.binance_addr, "POST", "/fapi/v1/order", &p).unwrap();
    assert_eq!((r.status, r.json()["code"].as_i64()), (400, Some(-2019)));
}

#[test]
fn tls_serves_https_and_wss_with_the_generated_certificate() {
    let sim = start(|c| c.tls = true);
    assert!(
        sim.urls.binance_rest.starts_with("https://") && sim.urls.upbit_ws.starts_with("wss://")
    );
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(sim.tls_cert_der().unwrap().to_vec()))
        .unwrap();
    let cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    // HTTPS.
    let tcp = TcpStream::connect(sim.binance_addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let conn = rustls::ClientConnection::new(cfg.clone(), "localhost".try_into().unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    use std::io::{Read, Write};
    tls.write_all(b"GET /fapi/v1/time HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = tls.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200") && text.contains("serverTime"), "{text}");
    // WSS.
    let tcp = TcpStream::connect(sim.binance_addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let url = format!("wss://localhost:{}/public/ws/btcusdt@depth@100ms", sim.binance_addr.port());
    let (mut w, _) = tungstenite::client_tls_with_config(
        url,
        tcp,
        None,
        Some(tungstenite::Connector::Rustls(cfg)),
    )
    .expect("wss handshake");
    let m = w.read().expect("a frame over TLS");
    assert!(m.to_text().unwrap().contains("depthUpdate"));
}
