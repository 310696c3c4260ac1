//! `kimp backtest`, `kimp record` and `kimp report`: arguments and the glue between them
//! and the research modules.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use kimp_core::event::FxSource;
use kimp_core::units::Nanos;
use serde::Serialize;

use super::backtest::{RunSetup, StartBalances};
use super::candle_mode::{BookModel, CandleData, CoinCandles, FundingMissing};
use super::candles::{BadLine, load_candles, load_funding, load_fx};
use super::exec_model::{ExecConfig, Latency};
use super::metrics::{RunMetrics, RunResult};
use super::sweep::{self, Point, SweepAxis, SweepRow, WalkWindow, fmt_point};
use super::timefmt::{fmt_utc, parse_duration_ms, parse_duration_or_zero, parse_utc_ms};
use crate::runtime::config::Config;

/// Backtest the engine over candles (`--upbit/--binance/--fx`) or recorded messages
/// (`--input`), with a simulated execution model; optionally sweep parameters.
///
/// Sweep keys are config keys (`strategy.entry_bps`, `risk.collar_bps`, ...) or the
/// model's own: `book.upbit_spread_bps`, `book.binance_spread_bps`, `book.levels`,
/// `book.level_step_bps`, `book.upbit_depth_krw`, `book.binance_depth_usdt`,
/// `exec.upbit_fee_bps`, `exec.binance_fee_bps`, `exec.upbit_latency_ms`,
/// `exec.binance_latency_ms`.
#[derive(Debug, Clone, clap::Args)]
pub struct BacktestArgs {
    /// Runtime config file ([strategy], [risk], [[coins]] are used; venue URLs ignored).
    #[arg(long)]
    pub config: PathBuf,
    /// Recorded messages: capture files (`kimp record`) or raw JSON-lines recordings (.gz).
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub input: Vec<PathBuf>,
    /// Upbit KRW OHLCV CSV, one per coin in [[coins]] order (repeatable).
    #[arg(long, value_name = "CSV")]
    pub upbit: Vec<PathBuf>,
    /// Binance USDT OHLCV CSV, one per coin (repeatable).
    #[arg(long, value_name = "CSV")]
    pub binance: Vec<PathBuf>,
    /// FX CSV: `date,rate`, FRED `observation_date,DEXKOUS` or OHLCV (close).
    #[arg(long, value_name = "CSV")]
    pub fx: Option<PathBuf>,
    /// Funding: CSV `timestamp,symbol,funding_rate` or the REST JSON lines (repeatable).
    #[arg(long, value_name = "FILE")]
    pub funding: Vec<PathBuf>,
    /// Where funding data is missing: `block` (entries blocked by the funding filter) or
    /// `zero` (funding treated as zero and not blocking).
    #[arg(long, default_value = "block", value_parser = FundingMissing::parse)]
    pub funding_missing: FundingMissing,
    /// Start (UTC date/time or epoch).
    #[arg(long, value_name = "T")]
    pub from: Option<String>,
    /// End, exclusive.
    #[arg(long, value_name = "T")]
    pub to: Option<String>,
    /// Sweep a key over a grid, `KEY=START:END:STEP` (repeatable: the full grid is run).
    #[arg(long, value_name = "KEY=START:END:STEP")]
    pub sweep: Vec<String>,
    /// Walk-forward `TRAIN:TEST` durations (e.g. `180d:30d`); needs `--sweep`.
    #[arg(long, value_name = "TRAIN:TEST")]
    pub walk_forward: Option<String>,
    /// Print the metrics as one JSON object on the last stdout line.
    #[arg(long)]
    pub json: bool,
    /// Write the full result (metrics, pairs, series, sweep) as JSON for `kimp report`.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Capital the returns are measured against (KRW); split 40 % coin + 10 % KRW on
    /// Upbit (sell_premium) or 50 % KRW (buy_discount), 50 % USDT on Binance.
    #[arg(long, default_value_t = 100_000_000.0)]
    pub capital_krw: f64,
    /// Upbit taker fee, bps (0.05 % = 5).
    #[arg(long, default_value_t = 5.0)]
    pub upbit_fee_bps: f64,
    /// Binance taker fee, bps (0.04 % = 4).
    #[arg(long, default_value_t = 4.0)]
    pub binance_fee_bps: f64,
    /// One-way engine ↔ Upbit latency (e.g. `15ms`).
    #[arg(long, default_value = "15ms", value_name = "DURATION", value_parser = parse_duration_or_zero)]
    pub upbit_latency: Duration,
    /// One-way engine ↔ Binance latency (e.g. `10ms`).
    #[arg(long, default_value = "10ms", value_name = "DURATION", value_parser = parse_duration_or_zero)]
    pub binance_latency: Duration,
    /// Recorded Upbit latencies to sample from (one per line, ms); overrides the constant.
    #[arg(long, value_name = "FILE")]
    pub upbit_latency_file: Option<PathBuf>,
    /// Recorded Binance latencies to sample from.
    #[arg(long, value_name = "FILE")]
    pub binance_latency_file: Option<PathBuf>,
    /// Seed of the sampled latencies.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Candle mode: Upbit spread, bps.
    #[arg(long, default_value_t = 4.0)]
    pub upbit_spread_bps: f64,
    /// Candle mode: Binance spread, bps.
    #[arg(long, default_value_t = 2.0)]
    pub binance_spread_bps: f64,
    /// Candle mode: levels per side.
    #[arg(long, default_value_t = 5)]
    pub levels: usize,
    /// Candle mode: distance between levels, bps.
    #[arg(long, default_value_t = 1.0)]
    pub level_step_bps: f64,
    /// Candle mode: KRW per Upbit level.
    #[arg(long, default_value_t = 50_000_000.0)]
    pub upbit_depth_krw: f64,
    /// Candle mode: USDT per Binance level.
    #[arg(long, default_value_t = 50_000.0)]
    pub binance_depth_usdt: f64,
    /// How long after midnight UTC a date-only FX value comes into force (e.g. `17h`).
    #[arg(long, default_value = "17h", value_name = "DURATION", value_parser = parse_duration_or_zero)]
    pub fx_lag: Duration,
    /// Threads for sweeps (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Everything one run depends on that a sweep may change.
#[derive(Clone, Debug)]
pub struct Params {
    /// The config file as a TOML table (sweeps edit it, then it is validated again).
    pub table: toml::Table,
    /// The parsed, validated config.
    pub config: Config,
    /// Synthetic book model.
    pub book: BookModel,
    /// Fees, bps.
    pub fees_bps: (f64, f64),
    /// Latencies.
    pub latency: (Latency, Latency),
    /// Capital, KRW.
    pub capital_krw: f64,
}

impl Params {
    /// From the arguments and the config file.
    pub fn from_args(a: &BacktestArgs) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(&a.config)
            .with_context(|| format!("reading {}", a.config.display()))?;
        let config = Config::parse(&text, &a.config).map_err(|e| anyhow::anyhow!("{e}"))?;
        let table: toml::Table = toml::from_str(&text).context("config TOML")?;
        let lat = |file: &Option<PathBuf>, d: Duration| -> anyhow::Result<Latency> {
            match file {
                Some(f) => Latency::from_samples_text(&std::fs::read_to_string(f)?)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", f.display())),
                None => Ok(Latency::Const(Nanos(d.as_nanos() as u64))),
            }
        };
        Ok(Self {
            table,
            config,
            book: BookModel {
                upbit_spread_bps: a.upbit_spread_bps,
                binance_spread_bps: a.binance_spread_bps,
                levels: a.levels,
                level_step_bps: a.level_step_bps,
                upbit_depth_krw: a.upbit_depth_krw,
                binance_depth_usdt: a.binance_depth_usdt,
            },
            fees_bps: (a.upbit_fee_bps, a.binance_fee_bps),
            latency: (
                lat(&a.upbit_latency_file, a.upbit_latency)?,
                lat(&a.binance_latency_file, a.binance_latency)?,
            ),
            capital_krw: a.capital_krw,
        })
    }

    /// A copy with a grid point applied (config keys are validated again).
    pub fn with(&self, point: &Point) -> anyhow::Result<Self> {
        let mut p = self.clone();
        let mut config_changed = false;
        for (key, v) in point {
            let v = *v;
            let b = &mut p.book;
            match key.as_str() {
                "book.upbit_spread_bps" => b.upbit_spread_bps = v,
                "book.binance_spread_bps" => b.binance_spread_bps = v,
                "book.levels" => b.levels = v.max(1.0) as usize,
                "book.level_step_bps" => b.level_step_bps = v,
                "book.upbit_depth_krw" => b.upbit_depth_krw = v,
                "book.binance_depth_usdt" => b.binance_depth_usdt = v,
                "exec.upbit_fee_bps" => p.fees_bps.0 = v,
                "exec.binance_fee_bps" => p.fees_bps.1 = v,
                "exec.upbit_latency_ms" => p.latency.0 = Latency::Const(Nanos((v * 1e6) as u64)),
                "exec.binance_latency_ms" => p.latency.1 = Latency::Const(Nanos((v * 1e6) as u64)),
                "capital_krw" => p.capital_krw = v,
                _ => {
                    set_dotted(&mut p.table, key, v)?;
                    config_changed = true;
                }
            }
        }
        if config_changed {
            let text = toml::to_string(&p.table)?;
            p.config = match Config::parse(&text, Path::new("<sweep>")) {
                Ok(c) => c,
                Err(_) => {
                    // The key may be a float (or an integer written as a float): retry.
                    for (key, v) in point {
                        if !key.starts_with("book.") && !key.starts_with("exec.") {
                            set_dotted_float(&mut p.table, key, *v)?;
                        }
                    }
                    let text = toml::to_string(&p.table)?;
                    Config::parse(&text, Path::new("<sweep>"))
                        .map_err(|e| anyhow::anyhow!("{e}"))?
                }
            };
        }
        Ok(p)
    }

    /// The execution model's settings.
    pub fn exec(&self, seed: u64) -> ExecConfig {
        ExecConfig {
            upbit_latency: self.latency.0.clone(),
            binance_latency: self.latency.1.clone(),
            seed,
            leverage: self.config.strategy.leverage,
        }
    }
}

fn table_at<'t>(
    t: &'t mut toml::Table,
    key: &str,
) -> anyhow::Result<(&'t mut toml::Table, String)> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().filter(|l| !l.is_empty()).ok_or_else(|| anyhow::anyhow!("empty key"))?;
    let mut cur = t;
    for p in parts {
        cur = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| anyhow::anyhow!("{key}: {p} is not a table"))?;
    }
    Ok((cur, last.to_string()))
}

fn set_dotted(t: &mut toml::Table, key: &str, v: f64) -> anyhow::Result<()> {
    let (tab, last) = table_at(t, key)?;
    let as_float = matches!(tab.get(&last), Some(toml::Value::Float(_))) || v.fract() != 0.0;
    let val = if as_float { toml::Value::Float(v) } else { toml::Value::Integer(v as i64) };
    tab.insert(last, val);
    Ok(())
}

fn set_dotted_float(t: &mut toml::Table, key: &str, v: f64) -> anyhow::Result<()> {
    let (tab, last) = table_at(t, key)?;
    tab.insert(last, toml::Value::Float(v));
    Ok(())
}

fn report_bad(file: &Path, bad: &[BadLine]) {
    for b in bad.iter().take(20) {
        eprintln!("warning: {}: {b}", file.display());
    }
    if bad.len() > 20 {
        eprintln!("warning: {}: {} more bad lines", file.display(), bad.len() - 20);
    }
}

/// Loads the candle inputs named by the arguments for the config's coins.
pub fn load_candle_data(a: &BacktestArgs, config: &Config) -> anyhow::Result<CandleData> {
    if a.upbit.len() != a.binance.len() || a.upbit.is_empty() {
        anyhow::bail!(
            "give one --upbit and one --binance CSV per coin (got {} and {})",
            a.upbit.len(),
            a.binance.len()
        );
    }
    if a.upbit.len() > config.coins.len() {
        anyhow::bail!(
            "{} candle pairs but only {} [[coins]] in the config",
            a.upbit.len(),
            config.coins.len()
        );
    }
    let fx_path = a.fx.as_ref().ok_or_else(|| anyhow::anyhow!("candle mode needs --fx"))?;
    let fx = load_fx(fx_path, a.fx_lag.as_millis() as i64)?;
    report_bad(fx_path, &fx.bad);
    let mut funding = Vec::new();
    for f in &a.funding {
        let s = load_funding(f)?;
        report_bad(f, &s.bad);
        funding.extend(s.rows);
    }
    let mut coins = Vec::new();
    for (k, (u, b)) in a.upbit.iter().zip(&a.binance).enumerate() {
        let c = &config.coins[k];
        let (upbit, binance) = (load_candles(u)?, load_candles(b)?);
        report_bad(u, &upbit.bad);
        report_bad(b, &binance.bad);
        let mut rows: Vec<_> = funding
            .iter()
            .filter(|r| r.symbol.is_empty() || r.symbol.eq_ignore_ascii_case(&c.binance))
            .cloned()
            .collect();
        rows.sort_by_key(|r| r.t_ms);
        coins.push(CoinCandles {
            name: c.name.clone(),
            upbit_symbol: c.upbit.clone(),
            binance_symbol: c.binance.clone(),
            upbit,
            binance,
            funding: rows,
        });
    }
    Ok(CandleData::new(coins, fx))
}

/// The run setup of a candle backtest starting at `from`.
pub fn candle_setup(
    p: &Params,
    data: &CandleData,
    from: i64,
    seed: u64,
    keep_series: bool,
) -> RunSetup {
    let mut engine = p.config.engine();
    // The FX input is an official rate series: the engine must use the official source.
    engine.strategy.fx_source = FxSource::Official;
    let fee = |bps: f64| (bps * 10_000.0).round() as i64;
    let markets = data.markets(fee(p.fees_bps.0), fee(p.fees_bps.1));
    let first = data.first_prices(from);
    let fx0 = data.fx.at(from.max(data.span().map_or(from, |s| s.0))).map_or(1.0, |r| r.to_f64());
    RunSetup {
        markets,
        engine,
        exec: p.exec(seed),
        balances: start_balances(
            p,
            engine.strategy.direction,
            &first.iter().map(|f| f.0).collect::<Vec<_>>(),
            fx0,
        ),
        capital_krw: p.capital_krw,
        timer_ms: p.config.runtime.timer_ms,
        equity_every_ms: data.interval_ms.max(1_000) as u64,
        keep_series,
    }
}

/// Splits capital: Upbit 40 % coin + 10 % KRW (sell_premium sells coin and must buy it
/// back) or 50 % KRW (buy_discount), Binance 50 % USDT; split evenly across coins.
pub fn start_balances(
    p: &Params,
    dir: kimp_core::config::Direction,
    upbit_px: &[f64],
    fx: f64,
) -> StartBalances {
    let cap = p.capital_krw;
    let n = upbit_px.len().max(1) as f64;
    let sell = dir == kimp_core::config::Direction::SellPremium;
    StartBalances {
        krw: if sell { cap * 0.10 } else { cap * 0.5 },
        coins: upbit_px
            .iter()
            .map(
                |&px| {
                    if sell && px > 0.0 { (cap * 0.40 / n / px * 1e8).floor() / 1e8 } else { 0.0 }
                },
            )
            .collect(),
        usdt: (cap * 0.5 / fx.max(1e-9) * 100.0).floor() / 100.0,
    }
}

/// What `--save` writes and `kimp report` reads.
#[derive(Debug, Serialize, serde::Deserialize, Default)]
pub struct SavedRun {
    /// `backtest`.
    pub kind: String,
    /// Config file.
    pub config: String,
    /// Mode: `candles` or `ticks`.
    pub mode: String,
    /// Assumptions of the run, in words.
    pub assumptions: Vec<String>,
    /// Funding data choice and coverage.
    pub funding: String,
    /// Coin names.
    pub coins: Vec<String>,
    /// The single run (or the best sweep point, or the concatenated walk-forward tests).
    pub result: RunResult,
    /// Sweep keys, in grid order.
    pub sweep_keys: Vec<String>,
    /// Sweep rows.
    pub sweep: Vec<SweepRow>,
    /// Walk-forward windows.
    pub walk_forward: Vec<WalkWindow>,
}

fn range(a: &BacktestArgs, span: Option<(i64, i64)>) -> anyhow::Result<(i64, i64)> {
    let parse = |s: &Option<String>, d: i64| -> anyhow::Result<i64> {
        match s {
            Some(s) => parse_utc_ms(s).ok_or_else(|| anyhow::anyhow!("{s:?} is not a UTC time")),
            None => Ok(d),
        }
    };
    let (lo, hi) = span.map_or((i64::MIN / 4, i64::MAX / 4), |(a, b)| (a, b + 1));
    Ok((parse(&a.from, lo)?, parse(&a.to, hi)?))
}

fn print_metrics(m: &RunMetrics) {
    println!("period            {} .. {}", fmt_utc(m.first_ms), fmt_utc(m.last_ms));
    println!("pairs closed      {} (open at end: {})", m.pairs, m.open_pairs_at_end);
    println!(
        "net PnL           {:.0} KRW ({:+.3} % of {:.0})",
        m.net_pnl_krw, m.return_pct, m.capital_krw
    );
    println!(
        "  realised        {:.0} = premium {:.0} + fx {:.0} + fees {:.0} + funding(closed) {:.0}",
        m.realized_pnl_krw,
        m.pnl_premium_krw,
        m.pnl_fx_krw,
        m.pnl_fees_krw,
        m.realized_pnl_krw - m.pnl_premium_krw - m.pnl_fx_krw - m.pnl_fees_krw
    );
    println!(
        "  unrealised      {:.0} (open pairs at mid: {})",
        m.unrealized_pnl_krw, m.open_pairs_at_end
    );
    println!(
        "fees              {:.0} KRW: closed pairs {:.0} (realised), open pairs {:.0}",
        m.fees_krw,
        m.fees_krw - m.fees_open_krw,
        m.fees_open_krw
    );
    println!(
        "funding           {:.0} KRW: closed pairs {:.0} (realised), open pairs {:.0}",
        m.funding_krw,
        m.funding_krw - m.funding_open_krw,
        m.funding_open_krw
    );
    println!("sharpe / sortino  {}", m.ratios_text());
    println!("max drawdown      {:.3} % ({:.0} KRW)", m.max_drawdown_pct, m.max_drawdown_krw);
    println!("win rate          {}", m.win_text());
    println!("holding avg/max   {:.1} h / {:.1} h", m.avg_holding_h, m.max_holding_h);
    println!(
        "max unhedged      {:.0} KRW (longest one-leg {} ms)",
        m.max_unhedged_krw, m.max_one_leg_ms
    );
    println!("turnover          {:.0} KRW ({:.2}x capital)", m.turnover_krw, m.turnover_x);
    println!("events            {} in {:.1} ms", m.events, m.elapsed_ms);
}

fn json_line(m: &RunMetrics, extra: serde_json::Value) -> anyhow::Result<String> {
    let mut v = serde_json::to_value(m)?;
    if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    Ok(serde_json::to_string(&v)?)
}

/// `kimp backtest`.
pub fn run_backtest(a: BacktestArgs) -> anyhow::Result<()> {
    let wall = std::time::Instant::now();
    let base = Params::from_args(&a)?;
    if !a.input.is_empty() {
        return super::tick_mode::run_cli(&a, &base);
    }
    let data = load_candle_data(&a, &base.config)?;
    let (from, to) = range(&a, data.span())?;
    let assumptions = data_notes(&data, &base.book, a.funding_missing, (from, to));
    for n in &assumptions {
        eprintln!("note: {n}");
    }
    let axes: Vec<SweepAxis> = a
        .sweep
        .iter()
        .map(|s| SweepAxis::parse(s).map_err(anyhow::Error::msg))
        .collect::<Result<_, _>>()?;
    let threads =
        a.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let run_one = |p: &Params, from: i64, to: i64, keep: bool| -> anyhow::Result<RunResult> {
        let setup = candle_setup(p, &data, from, a.seed, keep);
        data.run(&setup, &p.book, a.funding_missing, from, to)
    };
    let mut saved = SavedRun {
        kind: "backtest".into(),
        config: a.config.display().to_string(),
        mode: "candles".into(),
        funding: assumptions.last().cloned().unwrap_or_default(),
        assumptions,
        coins: data.coins.iter().map(|c| c.name.clone()).collect(),
        sweep_keys: axes.iter().map(|x| x.key.clone()).collect(),
        ..Default::default()
    };
    let mut extra = serde_json::json!({});
    if let Some(wf) = &a.walk_forward {
        let (tr, te) =
            wf.split_once(':').ok_or_else(|| anyhow::anyhow!("--walk-forward TRAIN:TEST"))?;
        let (tr, te) = (
            parse_duration_ms(tr).ok_or_else(|| anyhow::anyhow!("{tr:?} is not a duration"))?,
            parse_duration_ms(te).ok_or_else(|| anyhow::anyhow!("{te:?} is not a duration"))?,
        );
        if axes.is_empty() {
            anyhow::bail!("--walk-forward needs at least one --sweep to fit");
        }
        let span = data.span().ok_or_else(|| anyhow::anyhow!("no aligned candles"))?;
        let (lo, hi) = (from.max(span.0), to.min(span.1 + 1));
        let points = sweep::grid(&axes);
        let mut concat = RunResult::default();
        let mut offset = 0.0;
        let mut eq = Vec::new();
        let mut premium = Vec::new();
        // Each window's engine numbers its pairs from the start: shift them so the ids of
        // the concatenated test windows stay unique.
        let mut next_id = 0u32;
        for (k, (train, test)) in sweep::windows(lo, hi, tr, te).into_iter().enumerate() {
            let res = sweep::run_parallel(
                &points,
                threads,
                !a.quiet,
                &format!("window {}", k + 1),
                |pt| base.with(pt).and_then(|p| run_one(&p, train.0, train.1, false)),
            );
            let rows = sweep::rows(&points, res);
            let Some(b) = sweep::best(&rows) else { continue };
            let chosen = rows[b].params.clone();
            let p = base.with(&chosen)?;
            let r = run_one(&p, test.0, test.1, true)?;
            for &(t, v) in r.series.as_ref().map_or(&[][..], |s| &s.equity[..]) {
                eq.push((t, v + offset));
            }
            offset += r.metrics.net_pnl_krw;
            premium.extend(r.series.as_ref().map_or(&[][..], |s| &s.premium[..]).iter().copied());
            let base_id = next_id;
            for p in &r.pairs {
                let mut p = p.clone();
                p.pair += base_id;
                next_id = next_id.max(p.pair + 1);
                concat.pairs.push(p);
            }
            let train_pnl = rows[b].metrics.as_ref().map_or(0.0, |m| m.net_pnl_krw);
            println!(
                "window {}: train {}..{} chose {} (net {:.0}); test {}..{}: pairs {} closed + {} open, net {:.0} KRW",
                k + 1,
                fmt_utc(train.0),
                fmt_utc(train.1),
                fmt_point(&chosen),
                train_pnl,
                fmt_utc(test.0),
                fmt_utc(test.1),
                r.metrics.pairs,
                r.metrics.open_pairs_at_end,
                r.metrics.net_pnl_krw
            );
            saved.walk_forward.push(WalkWindow {
                train,
                test,
                chosen,
                train_net_pnl_krw: train_pnl,
                result: r.metrics,
            });
        }
        let m = combine(&saved.walk_forward, &eq, base.capital_krw);
        concat.metrics = m;
        concat.series = Some(super::metrics::Series { premium, equity: eq });
        concat.metrics.elapsed_ms = wall.elapsed().as_secs_f64() * 1e3;
        print_metrics(&concat.metrics);
        extra = serde_json::json!({ "walk_forward_windows": saved.walk_forward.len() });
        saved.result = concat;
    } else if !axes.is_empty() {
        let points = sweep::grid(&axes);
        let res = sweep::run_parallel(&points, threads, !a.quiet, "sweep", |pt| {
            base.with(pt).and_then(|p| run_one(&p, from, to, false))
        });
        let rows = sweep::rows(&points, res);
        for r in &rows {
            match (&r.metrics, &r.error) {
                (Some(m), _) => println!(
                    "{}: pairs {} closed + {} open, net {:.0} KRW (realised {:.0}, open pairs {:.0}), sharpe {}, max dd {:.3} %, win {}",
                    fmt_point(&r.params),
                    m.pairs,
                    m.open_pairs_at_end,
                    m.net_pnl_krw,
                    m.realized_pnl_krw,
                    m.unrealized_pnl_krw,
                    m.sharpe.map_or_else(|| "n/a".to_string(), |v| format!("{v:.2}")),
                    m.max_drawdown_pct,
                    if m.pairs == 0 {
                        "n/a".to_string()
                    } else {
                        format!("{:.0} % of {} closed", m.win_rate * 100.0, m.pairs)
                    }
                ),
                (None, e) => {
                    println!("{}: invalid: {}", fmt_point(&r.params), e.as_deref().unwrap_or("?"))
                }
            }
        }
        let b = sweep::best(&rows).ok_or_else(|| anyhow::anyhow!("no valid sweep point"))?;
        println!("best: {}", fmt_point(&rows[b].params));
        let p = base.with(&rows[b].params)?;
        let mut best_run = run_one(&p, from, to, true)?;
        best_run.metrics.elapsed_ms = wall.elapsed().as_secs_f64() * 1e3;
        print_metrics(&best_run.metrics);
        extra = serde_json::json!({
            "best": rows[b].params.iter().map(|(k, v)| (k.clone(), *v)).collect::<std::collections::BTreeMap<_, _>>(),
            "sweep_points": rows.len(),
        });
        saved.sweep = rows;
        saved.result = best_run;
    } else {
        let r = run_one(&base, from, to, a.save.is_some())?;
        return finish_single(&a, &base, r, "candles", saved.assumptions);
    }
    if let Some(path) = &a.save {
        std::fs::write(path, serde_json::to_vec(&saved)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("saved {}", path.display());
    }
    if a.json {
        println!("{}", json_line(&saved.result.metrics, extra)?);
    }
    Ok(())
}

/// Prints, saves and emits the JSON line of a single run.
pub fn finish_single(
    a: &BacktestArgs,
    _p: &Params,
    r: RunResult,
    mode: &str,
    notes: Vec<String>,
) -> anyhow::Result<()> {
    print_metrics(&r.metrics);
    let saved = SavedRun {
        kind: "backtest".into(),
        config: a.config.display().to_string(),
        mode: mode.into(),
        funding: notes.last().cloned().unwrap_or_default(),
        assumptions: notes,
        coins: _p.config.coins.iter().map(|c| c.name.clone()).collect(),
        result: r,
        ..Default::default()
    };
    if let Some(path) = &a.save {
        std::fs::write(path, serde_json::to_vec(&saved)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("saved {}", path.display());
    }
    if a.json {
        let exec = serde_json::to_value(saved.result.exec)?;
        println!(
            "{}",
            json_line(&saved.result.metrics, serde_json::json!({ "mode": mode, "exec": exec }))?
        );
    }
    Ok(())
}

/// The run's assumptions and data coverage, in words (the last line is about funding).
/// Counts are of the run's period `[from, to)` where they can be (closes, FX rows).
pub fn data_notes(
    data: &CandleData,
    book: &BookModel,
    missing: FundingMissing,
    (from, to): (i64, i64),
) -> Vec<String> {
    let mut v = book.assumptions();
    v.push(format!(
        "Data: {} aligned closes in the period, interval {} s, {} closes without a partner dropped; FX rows carried forward in the period: {}.",
        data.aligned_in(from, to),
        data.interval_ms / 1_000,
        data.unaligned,
        data.fx.carried_in(from, to)
    ));
    let gap_ms: i64 = data.funding_gaps.iter().map(|g| g.1 - g.0).sum();
    let what = match missing {
        FundingMissing::Block => {
            "entries blocked by the funding filter (engine told rate 0, nothing settles)"
        }
        FundingMissing::Zero => {
            "funding treated as zero (nothing settles; the filter is not blocked)"
        }
    };
    v.push(if data.funding_gaps.is_empty() {
        "Funding: recorded settlements cover the whole run.".to_string()
    } else {
        format!(
            "Funding missing for {:.1} days in {} period(s): {what} (--funding-missing {}).",
            gap_ms as f64 / 86_400_000.0,
            data.funding_gaps.len(),
            serde_json::to_value(missing)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default()
        )
    });
    v
}

/// Metrics of the walk-forward test windows taken together.
fn combine(w: &[WalkWindow], eq: &[(i64, f64)], capital: f64) -> RunMetrics {
    let mut m = RunMetrics { capital_krw: capital, ..Default::default() };
    let mut wins = 0.0;
    for x in w {
        let t = &x.result;
        m.pairs += t.pairs;
        m.net_pnl_krw += t.net_pnl_krw;
        m.realized_pnl_krw += t.realized_pnl_krw;
        m.unrealized_pnl_krw += t.unrealized_pnl_krw;
        m.pnl_premium_krw += t.pnl_premium_krw;
        m.pnl_fx_krw += t.pnl_fx_krw;
        m.pnl_fees_krw += t.pnl_fees_krw;
        m.fees_krw += t.fees_krw;
        m.funding_krw += t.funding_krw;
        m.fees_open_krw += t.fees_open_krw;
        m.funding_open_krw += t.funding_open_krw;
        m.turnover_krw += t.turnover_krw;
        m.events += t.events;
        m.engine_events += t.engine_events;
        m.max_holding_h = m.max_holding_h.max(t.max_holding_h);
        m.max_unhedged_krw = m.max_unhedged_krw.max(t.max_unhedged_krw);
        m.max_one_leg_ms = m.max_one_leg_ms.max(t.max_one_leg_ms);
        m.avg_holding_h += t.avg_holding_h * t.pairs as f64;
        wins += t.win_rate * t.pairs as f64;
        m.open_pairs_at_end += t.open_pairs_at_end;
    }
    if m.pairs > 0 {
        m.win_rate = wins / m.pairs as f64;
        m.avg_holding_h /= m.pairs as f64;
    }
    if capital > 0.0 {
        m.return_pct = m.net_pnl_krw / capital * 100.0;
        m.turnover_x = m.turnover_krw / capital;
    }
    let st = super::metrics::equity_stats(eq, capital);
    m.sharpe = st.sharpe;
    m.sortino = st.sortino;
    m.max_drawdown_pct = st.max_dd_pct;
    m.max_drawdown_krw = st.max_dd_krw;
    m.stats_period = st.period.into();
    m.stats_returns = st.returns as u64;
    m.first_ms = w.first().map_or(0, |x| x.result.first_ms);
    m.last_ms = w.last().map_or(0, |x| x.result.last_ms);
    m
}
