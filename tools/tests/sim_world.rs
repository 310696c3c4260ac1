//! The pure core of the simulator (no sockets): determinism, the market-level fault
//! scenarios, matching against the book, and funding settlement.

use kimp::sim::binance_venue::BinOrderReq;
use kimp::sim::binance_ws::{Kind, render_md};
use kimp::sim::config::SimConfig;
use kimp::sim::events::{MdEvent, Out};
use kimp::sim::faults::{Faults, Scenario};
use kimp::sim::upbit_venue::UpbitOrderReq;
use kimp::sim::upbit_ws::{Format, orderbook_json, ticker_json, trade_json};
use kimp::sim::world::{World, mid_of};

const T0: u64 = 1_773_240_059_000;

fn world(seed: u64, scenarios: &[&str]) -> World {
    let cfg = SimConfig {
        seed,
        faults: Faults { list: scenarios.iter().map(|s| Scenario::parse(s).unwrap()).collect() },
        ..SimConfig::default()
    };
    World::new(&cfg, T0)
}

fn render(o: &Out) -> String {
    match o {
        Out::Md(MdEvent::UpbitBook { code, ts, bids, asks }) => {
            orderbook_json(code, *ts, bids, asks, 30, Format::Default, false)
        }
        Out::Md(MdEvent::UpbitTrade(t)) => trade_json(t, Format::Default, false),
        Out::Md(MdEvent::UpbitTicker(t)) => ticker_json(t, Format::Default, false),
        Out::Md(m) => [Kind::Depth(0), Kind::BookTicker, Kind::Mark(1_000), Kind::Trade]
            .iter()
            .filter_map(|k| render_md(m, *k))
            .collect(),
        Out::UpbitPrivate { json, .. } | Out::BinanceUser { json, .. } => json.clone(),
    }
}

fn run(w: &mut World, steps: u64) -> String {
    let mut s = String::new();
    for i in 1..=steps {
        for o in w.step(T0 + i * 100) {
            s.push_str(&render(&o));
            s.push('\n');
        }
    }
    s
}

#[test]
fn the_same_seed_gives_the_same_market_data_byte_for_byte() {
    let a = run(&mut world(11, &[]), 300);
    let b = run(&mut world(11, &[]), 300);
    let c = run(&mut world(12, &[]), 300);
    assert!(a.len() > 100_000, "30 s of both venues: {} bytes", a.len());
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(
        a.contains("\"e\":\"depthUpdate\"")
            && a.contains("\"type\":\"orderbook\"")
            && a.contains("\"e\":\"markPriceUpdate\"")
    );
}

#[test]
fn flash_crash_drops_the_price_ten_percent_within_a_minute_with_wide_spreads() {
    let mut normal = world(5, &[]);
    let mut crash = world(5, &["flash_crash:after=0,for=120000"]);
    let (mut spread_n, mut spread_c) = (0i64, 0i64);
    for i in 1..=600 {
        normal.step(T0 + i * 100);
        crash.step(T0 + i * 100);
        if i % 10 == 0 {
            let b = |w: &World| {
                let bk = &w.binance.markets["BTCUSDT"].book;
                bk.best_ask().unwrap().0 - bk.best_bid().unwrap().0
            };
            spread_n += b(&normal);
            spread_c += b(&crash);
        }
    }
    let mid = |w: &World, s: &str| mid_of(&w.binance.markets[s].book) as f64;
    let ratio = mid(&crash, "BTCUSDT") / mid(&normal, "BTCUSDT");
    assert!((0.885..0.915).contains(&ratio), "after 60 s the crash world is ~10 % lower: {ratio}");
    let up = |w: &World| mid_of(&w.upbit.markets["KRW-BTC"].book) as f64;
    assert!(up(&crash) / up(&normal) < 0.92, "both venues crash by default");
    assert!(spread_c >= 5 * spread_n, "spreads widen: {spread_c} vs {spread_n}");
    // And it comes back in the second minute.
    for i in 601..=1_300 {
        normal.step(T0 + i * 100);
        crash.step(T0 + i * 100);
    }
    let ratio = mid(&crash, "BTCUSDT") / mid(&normal, "BTCUSDT");
    assert!(ratio > 0.99, "{ratio}");
}

#[test]
fn liquidity_dry_cuts_depth_to_a_tenth() {
    let mut normal = world(6, &[]);
    let mut dry = world(6, &["liquidity_dry"]);
    for i in 1..=50 {
        normal.step(T0 + i * 100);
        dry.step(T0 + i * 100);
    }
    let depth = |w: &World| -> i64 {
        let (b, a) = w.binance.markets["BTCUSDT"].book.top(50);
        b.iter().chain(a.iter()).map(|l| l.1).sum()
    };
    let r = depth(&dry) as f64 / depth(&normal) as f64;
    assert!((0.05..0.2).contains(&r), "depth ratio {r}");
}

fn bin_req(
    side: &str,
    otype: &str,
    qty: &str,
    price: Option<String>,
    tif: Option<&str>,
    cid: &str,
) -> BinOrderReq {
    BinOrderReq {
        symbol: Some("BTCUSDT".into()),
        side: Some(side.into()),
        otype: Some(otype.into()),
        tif: tif.map(str::to_owned),
        quantity: Some(qty.into()),
        price,
        reduce_only: false,
        client_id: Some(cid.into()),
        result: true,
    }
}

#[test]
fn partial_fill_leaves_forty_percent_and_ioc_remainders_expire() {
    let mut w = world(8, &["partial_fill"]);
    w.step(T0 + 100);
    let ask = w.binance.markets["BTCUSDT"].book.best_ask().unwrap().0;
    let px = kimp_core::units::DecimalDp(ask + 100 * 100_000_000, 2).to_string();
    let (r, outs) = w.binance_place(
        T0 + 150,
        0,
        &bin_req("BUY", "LIMIT", "0.010", Some(px), Some("IOC"), "pf-1"),
    );
    let v: serde_json::Value = serde_json::from_str(&r.unwrap()).unwrap();
    assert_eq!((v["status"].as_str(), v["executedQty"].as_str()), (Some("EXPIRED"), Some("0.006")));
    let last = outs.iter().rev().find_map(|o| match o {
        Out::BinanceUser { json, .. } if json.contains("ORDER_TRADE_UPDATE") => Some(json.clone()),
        _ => None,
    });
    assert!(last.unwrap().contains("\"x\":\"EXPIRED\""));
    // Upbit: an IOC bid for 0.01 BTC fills 0.006 and ends `cancel`.
    let ask = w.upbit.markets["KRW-BTC"].book.best_ask().unwrap().0;
    let req = UpbitOrderReq {
        market: Some("KRW-BTC".into()),
        side: Some("bid".into()),
        volume: Some("0.01".into()),
        price: Some(kimp_core::units::Decimal(ask + 100_000 * 100_000_000).to_string()),
        ord_type: Some("limit".into()),
        time_in_force: Some("ioc".into()),
        identifier: Some("pf-u".into()),
    };
    let (r, _) = w.upbit_place(T0 + 160, 0, &req);
    assert!(r.is_ok(), "{r:?}");
    let o = &w.upbit.orders[0];
    assert_eq!((o.state, o.executed), ("cancel", 600_000));
}

#[test]
fn one_leg_failure_and_order_rejection_refuse_orders() {
    let mut w = world(9, &["one_leg_failure"]);
    w.step(T0 + 100);
    let (r, _) =
        w.binance_place(T0 + 100, 0, &bin_req("SELL", "MARKET", "0.010", None, None, "ol-1"));
    assert_eq!(r.unwrap_err().code, -2019);
    let req = UpbitOrderReq {
        market: Some("KRW-BTC".into()),
        side: Some("ask".into()),
        volume: Some("0.01".into()),
        ord_type: Some("market".into()),
        identifier: Some("ol-u".into()),
        ..Default::default()
    };
    let (r, _) = w.upbit_place(T0 + 100, 0, &req);
    assert!(r.is_ok(), "the other leg fills: {r:?}");
    let mut w = world(10, &["order_rejection:p=1"]);
    w.step(T0 + 100);
    let mut statuses = std::collections::BTreeSet::new();
    for i in 0..20 {
        let (r, _) = w.binance_place(
            T0 + 100,
            0,
            &bin_req("SELL", "MARKET", "0.010", None, None, &format!("rj-{i}")),
        );
        statuses.insert(r.unwrap_err().status);
    }
    assert_eq!(
        statuses.into_iter().collect::<Vec<_>>(),
        vec![400, 503],
        "a mix of venue errors and 5xx"
    );
    assert_eq!(w.stats.fault_rejections, 20);
    assert!(w.binance.orders.is_empty());
}

#[test]
fn depth_gap_breaks_the_pu_chain() {
    let mut w = world(12, &["depth_gap:p=0.3,venue=binance"]);
    let mut prev: Option<u64> = None;
    let mut gaps = 0;
    for i in 1..=100 {
        for o in w.step(T0 + i * 100) {
            if let Out::Md(MdEvent::BinDepth { sym, diff, .. }) = o
                && sym == "BTCUSDT"
            {
                if prev.is_some_and(|p| p != diff.prev_id) {
                    gaps += 1;
                }
                prev = Some(diff.last_id);
            }
        }
    }
    assert!(gaps > 5, "{gaps}");
    assert!(w.stats.depth_gaps >= gaps);
}

#[test]
fn funding_settles_on_positions_with_the_right_sign() {
    let cfg = SimConfig { seed: 13, funding_interval_ms: 2_000, ..SimConfig::default() };
    let mut w = World::new(&cfg, T0);
    w.step(T0 + 100);
    let (r, _) =
        w.binance_place(T0 + 100, 0, &bin_req("SELL", "MARKET", "0.100", None, None, "f-1"));
    assert!(r.is_ok());
    let wallet0 = w.binance.accounts[0].wallet;
    let pos = w.binance.accounts[0].position("BTCUSDT");
    assert_eq!(pos, -10_000_000);
    for i in 2..=50 {
        w.step(T0 + i * 100);
    }
    let hist = w.binance.markets["BTCUSDT"].funding_history.clone();
    // Funding times are multiples of the interval since the epoch (as 00/08/16 UTC are):
    // ...060000, ...062000 and ...064000 fall within the 5 s run.
    assert_eq!(hist.len(), 3);
    assert!(hist.iter().all(|h| h.0 % 2_000 == 0));
    let expected: i64 = hist
        .iter()
        .map(|(_, rate, mark)| {
            -(((*mark as i128 * pos as i128 / 100_000_000) * *rate as i128 / 100_000_000) as i64)
        })
        .sum();
    assert_eq!(w.binance.accounts[0].wallet - wallet0, expected);
    assert!(hist.iter().all(|(_, r, _)| *r != 0));
    // A short receives positive funding and pays negative funding.
    let net_rate: i64 = hist.iter().map(|h| h.1).sum();
    assert_eq!(expected.signum(), net_rate.signum());
}
