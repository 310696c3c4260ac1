//! `kimp record` against the in-process venue simulator on loopback, then the capture
//! replayed by `kimp backtest --input`.

use std::time::Duration;

use kimp::research::capture::{CapVenue, FrameKind, FrameReader, read_file};
use kimp::research::record::{RecordArgs, record};
use kimp::sim::{Simulator, config::SimConfig};

#[test]
fn records_both_venues_from_the_simulator_and_replays() {
    let sim = Simulator::start(SimConfig::default()).expect("simulator");
    let dir = std::env::temp_dir().join(format!("kimp-rec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("c.toml");
    let u = &sim.urls;
    std::fs::write(
        &cfg,
        format!(
            "[venues.upbit]\nws_url = \"{}\"\nrest_url = \"{}\"\n[venues.binance]\nws_url = \"{}\"\nrest_url = \"{}\"\n\n[[coins]]\nname = \"BTC\"\nupbit = \"KRW-BTC\"\nbinance = \"BTCUSDT\"\n",
            u.upbit_ws, u.upbit_rest, u.binance_ws, u.binance_rest
        ),
    )
    .unwrap();
    let args = RecordArgs {
        config: cfg.clone(),
        out: dir.join("cap"),
        prefix: "t".into(),
        duration: Some(Duration::from_secs(4)),
        max_frames: 400,
        rotate_mib: 256,
        rotate: Duration::from_secs(3_600),
        connect_timeout: Duration::from_secs(10),
        depth_speed: "@100ms".into(),
    };
    let t = std::time::Instant::now();
    let stats = record(&args).expect("record");
    assert!(t.elapsed() < Duration::from_secs(10));
    sim.shutdown();
    assert!(stats.messages >= 50, "{stats:?}");
    let mut kinds = std::collections::HashMap::new();
    let mut last_ts = 0;
    for f in &stats.files {
        let b = read_file(f).unwrap();
        let mut r = FrameReader::new(&b).unwrap();
        for fr in r.by_ref() {
            *kinds.entry((fr.venue, fr.kind)).or_insert(0u64) += 1;
            assert!(fr.recv_ts_ns >= last_ts.min(fr.recv_ts_ns), "receive times");
            last_ts = fr.recv_ts_ns;
        }
        assert_eq!(r.torn_bytes, 0);
    }
    assert!(kinds.get(&(CapVenue::Upbit, FrameKind::Ws)).copied().unwrap_or(0) > 0, "{kinds:?}");
    assert!(kinds.get(&(CapVenue::Binance, FrameKind::Ws)).copied().unwrap_or(0) > 0, "{kinds:?}");
    assert!(
        kinds.get(&(CapVenue::Binance, FrameKind::Rest)).copied().unwrap_or(0) >= 1,
        "depth snapshot: {kinds:?}"
    );
    assert!(
        kinds.contains_key(&(CapVenue::Upbit, FrameKind::Sent)),
        "subscription kept: {kinds:?}"
    );
    // The capture replays through the parsers and the engine.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kimp"));
    cmd.args(["backtest", "--config", cfg.to_str().unwrap(), "--json", "--input"]);
    cmd.args(&stats.files);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let m: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(m["events"].as_u64().unwrap() >= 50, "{m}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn record_against_nothing_fails_naming_what_it_could_not_reach() {
    let dir = std::env::temp_dir().join(format!("kimp-rec-none-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (pu, pb) = (closed_port(), closed_port());
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[venues.upbit]\nws_url = \"ws://127.0.0.1:{pu}/websocket/v1\"\nrest_url = \"http://127.0.0.1:{pu}\"\n[venues.binance]\nws_url = \"ws://127.0.0.1:{pb}\"\nrest_url = \"http://127.0.0.1:{pb}\"\n\n[[coins]]\nname = \"BTC\"\nupbit = \"KRW-BTC\"\nbinance = \"BTCUSDT\"\n"
        ),
    )
    .unwrap();
    let out_dir = dir.join("cap");
    let t = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kimp"))
        .args(["record", "--config", cfg.to_str().unwrap(), "--out", out_dir.to_str().unwrap()])
        .args(["--duration", "20s", "--connect-timeout", "2s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "exit 0 against closed ports: {stdout}{stderr}");
    assert!(t.elapsed() < Duration::from_secs(15), "gave up after the connect timeout");
    assert!(stderr.contains("could not connect to any venue stream"), "{stderr}");
    for url in [
        format!("ws://127.0.0.1:{pu}/websocket/v1"),
        format!("ws://127.0.0.1:{pb}/public/stream"),
        format!("ws://127.0.0.1:{pb}/market/stream"),
    ] {
        assert!(stderr.contains(&url), "{url} not named: {stderr}");
    }
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(!stdout.contains("recorded"), "{stdout}");
    let files: Vec<_> =
        std::fs::read_dir(&out_dir).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(files.is_empty(), "capture files of reconnect notes left behind: {files:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
