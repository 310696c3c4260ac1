//! Replay of the recorded Binance USDT-M and Upbit files: the recorded depth chain is
//! served unbroken, consistent with the REST snapshot, with timestamps on the simulated
//! clock; recorded Upbit books are served as the venue's own messages.

mod sim_support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sim_support::*;

fn data(p: &str) -> PathBuf {
    locate::testdata(&format!("data/{p}"))
}

#[test]
fn replayed_depth_keeps_its_pu_chain_and_matches_the_snapshot() {
    let sim = start(|c| {
        c.speed = 20.0;
        c.replay = vec![data("binance-usdm/btcusdt_20240808.gz"), data("upbit/UPBIT-d78752.0.gz")];
    });
    let mut w = ws(sim.binance_addr, "/ws/btcusdt@depth@0ms", None);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut ev = Vec::new();
    while ev.len() < 40 {
        let (v, _, _) = next_json(&mut w, deadline).expect("replayed depth");
        assert_eq!(v["e"], "depthUpdate");
        ev.push(v);
    }
    for p in ev.windows(2) {
        assert_eq!(p[1]["pu"], p[0]["u"], "recorded chain, unbroken");
    }
    let e = ev[0]["E"].as_u64().unwrap();
    assert!(e.abs_diff(now_ms()) < 60_000, "timestamps moved to the simulated clock: {e}");
    let snap =
        http(sim.binance_addr, "GET", "/fapi/v1/depth?symbol=BTCUSDT&limit=1000", &[], "").json();
    let l = snap["lastUpdateId"].as_u64().unwrap();
    assert!(l >= ev[39]["u"].as_u64().unwrap(), "snapshot from the same id sequence");
    let bid: f64 = snap["bids"][0][0].as_str().unwrap().parse().unwrap();
    assert!((55_000.0..70_000.0).contains(&bid), "the recorded 2024-08-08 price level: {bid}");
    // Upbit: the recorded SIMPLE books are served in the format the client asks for.
    let mut u = ws(sim.upbit_addr, "/websocket/v1", None);
    u.send(tungstenite::Message::text(
        r#"[{"ticket":"r"},{"type":"orderbook","codes":["KRW-ADA"]},{"format":"DEFAULT"}]"#,
    ))
    .unwrap();
    let (v, _, binary) = next_json(&mut u, Instant::now() + Duration::from_secs(10))
        .expect("a replayed KRW-ADA book");
    assert!(binary);
    assert_eq!((v["type"].as_str(), v["code"].as_str()), (Some("orderbook"), Some("KRW-ADA")));
    let units = v["orderbook_units"].as_array().unwrap();
    assert!(units.len() >= 10 && units[0]["ask_price"].as_f64() > units[0]["bid_price"].as_f64());
}
