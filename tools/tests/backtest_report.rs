//! `kimp report`: a self-contained HTML file from a saved backtest and from ILP files.

use std::process::Command;

#[path = "../../testdata/locate.rs"]
mod locate;

fn kimp(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kimp")).args(args).output().expect("run kimp");
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{s}{}", String::from_utf8_lossy(&out.stderr));
    s
}

#[test]
fn report_is_self_contained_with_all_charts() {
    let dir = std::env::temp_dir().join(format!("kimp-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, "[venues.upbit]\nws_url = \"ws://127.0.0.1:1/websocket/v1\"\nrest_url = \"http://127.0.0.1:2\"\n[venues.binance]\nws_url = \"ws://127.0.0.1:3\"\nrest_url = \"http://127.0.0.1:4\"\n[[coins]]\nname = \"BTC\"\nupbit = \"KRW-BTC\"\nbinance = \"BTCUSDT\"\n").unwrap();
    let d = |rel: &str| locate::testdata(&format!("data/{rel}")).to_string_lossy().to_string();
    let c = |f: &str| d(&format!("candles/{f}"));
    let fx = d("fx/DEXKOUS.csv");
    let save = dir.join("sweep.json");
    kimp(&[
        "backtest",
        "--config",
        cfg.to_str().unwrap(),
        "--upbit",
        &c("upbit_KRW-BTC_1d_2021-01-01_2023-01-31.csv"),
        "--binance",
        &c("binance_usdm_BTCUSDT_perp_1d_2021-01-01_2023-01-31.csv"),
        "--fx",
        &fx,
        "--funding-missing",
        "zero",
        "--quiet",
        "--sweep",
        "strategy.entry_bps=300:500:100",
        "--sweep",
        "book.upbit_spread_bps=2:4:2",
        "--save",
        save.to_str().unwrap(),
    ]);
    let ilp = dir.join("ilp");
    std::fs::create_dir_all(&ilp).unwrap();
    std::fs::write(
        ilp.join("20260101-000000-000001.ilp"),
        "kimp,coin=BTC,fx_source=upbit_usdt mid_bps=310.5,sell_bps=300.1,buy_bps=320.2,fx=1468.5,qty=0.1,funding_rate=0.0001 1767225600000000000\n\
         bbo,venue=upbit,symbol=KRW-BTC bid=1.0,ask=2.0 1767225600000000000\n\
         kimp,coin=BTC,fx_source=upbit_usdt mid_bps=290.0,sell_bps=280.0,buy_bps=300.0,fx=1468.5,qty=0.1,funding_rate=0.0001 1767225601000000000\n",
    )
    .unwrap();
    let html_path = dir.join("r.html");
    kimp(&[
        "report",
        "--input",
        save.to_str().unwrap(),
        "--ilp",
        ilp.to_str().unwrap(),
        "--out",
        html_path.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&html_path).unwrap();
    for h in [
        "premium (bps) with entries",
        "Equity",
        "Drawdown",
        "Sweep: net PnL",
        "Store (ILP",
        "Assumptions",
        "Pairs",
    ] {
        assert!(html.contains(h), "missing {h}");
    }
    assert_eq!(html.matches("<svg").count(), 5, "premium, equity, drawdown, heat-map, store");
    assert!(html.matches("<polygon").count() >= 2, "entry and exit markers");
    assert_eq!(html.matches("stroke=\"#fff\"").count(), 6, "one heat-map cell per sweep point");
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("<script"),
        "self-contained"
    );
    let parsed = kimp::research::report::read_ilp_premium(&ilp).unwrap();
    assert_eq!(parsed.len(), 2);
    assert_eq!((parsed[0].t, parsed[0].sell), (1_767_225_600_000, 300.1));
}
