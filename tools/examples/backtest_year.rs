//! Speed of a one-year, one-minute candle backtest of one coin (both venues + FX).
//!
//! No real year-long 1-minute file of both venues exists in ../shared/data, so this writes
//! a synthetic year in the same CSV layout (seeded random walk for Binance, a
//! mean-reverting premium for Upbit that crosses the 3 % entry now and then, daily FX),
//! then times loading, preparation and the run through the real engine.
//!
//! ```text
//! cargo run --release -p kimp --example backtest_year -- /tmp/kimp-year
//! # then the same through the command:
//! time target/release/kimp backtest --config /tmp/kimp-year/config.toml \
//!     --upbit /tmp/kimp-year/upbit_1m.csv --binance /tmp/kimp-year/binance_1m.csv \
//!     --fx /tmp/kimp-year/fx.csv --funding-missing zero --json
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use kimp::research::candle_mode::{BookModel, CandleData, CoinCandles, FundingMissing};
use kimp::research::candles::{load_candles, load_fx};
use kimp::research::cli::{Params, candle_setup};
use kimp::research::timefmt::fmt_utc;

const CONFIG: &str = r#"[venues.upbit]
ws_url = "ws://127.0.0.1:18001/websocket/v1"
rest_url = "http://127.0.0.1:18002"
[venues.binance]
ws_url = "ws://127.0.0.1:18003"
rest_url = "http://127.0.0.1:18004"

[[coins]]
name = "BTC"
upbit = "KRW-BTC"
binance = "BTCUSDT"

[strategy]
entry_bps = 300
"#;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-12), self.next());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

fn write_year(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).expect("dir");
    let t0 = 1_704_067_200_000i64; // 2024-01-01
    let n = 365 * 24 * 60;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut px, mut prem, fx) = (42_000.0f64, 0.01f64, 1_300.0f64);
    let mut u = String::with_capacity(n * 64);
    let mut b = String::with_capacity(n * 64);
    u.push_str("open_time_utc,open,high,low,close,volume\n");
    b.push_str("timestamp,open,high,low,close,volume\n");
    for i in 0..n {
        let t = t0 + i as i64 * 60_000;
        px *= 1.0 + 0.0006 * rng.normal();
        // Ornstein-Uhlenbeck premium around 1.5 %, with excursions past 3 %.
        prem += 0.0005 * (0.015 - prem) + 0.0008 * rng.normal();
        let close_b = (px * 10.0).round() / 10.0;
        let close_u = ((close_b * fx * (1.0 + prem)) / 1_000.0).round() * 1_000.0;
        let ts = fmt_utc(t);
        let _ = writeln!(u, "{ts},{close_u},{close_u},{close_u},{close_u},1.0");
        let _ = writeln!(b, "{t},{close_b:.1},{close_b:.1},{close_b:.1},{close_b:.1},1.0");
    }
    let mut f = String::from("observation_date,DEXKOUS\n");
    for d in 0..367 {
        let _ = writeln!(f, "{},{fx:.2}", &fmt_utc(t0 - 86_400_000 + d * 86_400_000)[..10]);
    }
    let (up, bp, fp) = (dir.join("upbit_1m.csv"), dir.join("binance_1m.csv"), dir.join("fx.csv"));
    std::fs::write(&up, u).expect("write");
    std::fs::write(&bp, b).expect("write");
    std::fs::write(&fp, f).expect("write");
    std::fs::write(dir.join("config.toml"), CONFIG).expect("write");
    (up, bp, fp)
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| std::env::temp_dir().join("kimp-year"), PathBuf::from);
    let (up, bp, fp) = write_year(&dir);
    let cfg = dir.join("config.toml");
    let config = kimp::runtime::config::Config::load(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    let params = Params {
        table: toml::from_str(CONFIG)?,
        config,
        book: BookModel::default(),
        fees_bps: (5.0, 4.0),
        latency: (
            kimp::research::exec_model::Latency::Const(kimp_core::units::Nanos::from_ms(15)),
            kimp::research::exec_model::Latency::Const(kimp_core::units::Nanos::from_ms(10)),
        ),
        capital_krw: 100_000_000.0,
    };
    let mut best = f64::MAX;
    for round in 0..5 {
        let t = Instant::now();
        let (upbit, binance) = (load_candles(&up)?, load_candles(&bp)?);
        let fx = load_fx(&fp, 17 * 3_600_000)?;
        let t_load = t.elapsed();
        let data = CandleData::new(
            vec![CoinCandles {
                name: "BTC".into(),
                upbit_symbol: "KRW-BTC".into(),
                binance_symbol: "BTCUSDT".into(),
                upbit,
                binance,
                funding: Vec::new(),
            }],
            fx,
        );
        let t_prep = t.elapsed() - t_load;
        let setup = candle_setup(&params, &data, i64::MIN / 4, 1, false);
        let t_run0 = Instant::now();
        let r = data.run(&setup, &params.book, FundingMissing::Zero, i64::MIN / 4, i64::MAX / 4)?;
        let t_run = t_run0.elapsed();
        let total = t.elapsed();
        best = best.min(total.as_secs_f64());
        println!(
            "round {round}: {} aligned 1m closes, {} engine events, {} pairs, net {:.0} KRW | load {:.0} ms, prepare {:.0} ms, run {:.0} ms ({:.2} M events/s), total {:.0} ms",
            data.aligned(),
            r.metrics.events,
            r.metrics.pairs,
            r.metrics.net_pnl_krw,
            t_load.as_secs_f64() * 1e3,
            t_prep.as_secs_f64() * 1e3,
            t_run.as_secs_f64() * 1e3,
            r.metrics.events as f64 / t_run.as_secs_f64() / 1e6,
            total.as_secs_f64() * 1e3,
        );
    }
    println!("best total (load + prepare + run): {:.0} ms", best * 1e3);
    Ok(())
}
