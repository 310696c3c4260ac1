//! What a backtest measures: pairs and their PnL split (the engine's own `PnlSplit`),
//! the equity curve (realised + open pairs marked at mid), and the statistics over it.

use std::collections::HashMap;

use kimp_core::action::{KimpSample, PairRecord};
use kimp_core::config::Direction;
use kimp_core::engine::Engine;
use kimp_core::instrument::{InstrumentId, Venue};
use kimp_core::units::{Nanos, SCALE};
use serde::{Deserialize, Serialize};

use super::backtest::RunSetup;
use super::exec_model::{ExecStats, FillNote};
use super::timefmt::DAY_MS;

const S: f64 = SCALE as f64;

/// One pair, opened and (maybe) closed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PairTrade {
    /// Pair id (the entry intent's sequence).
    pub pair: u32,
    /// Coin index.
    pub coin: u16,
    /// Entry intent time, epoch ms.
    pub opened_ms: i64,
    /// Executable premium at entry, bps.
    pub entry_bps: f64,
    /// Exit intent time, epoch ms.
    pub exit_ms: Option<i64>,
    /// Executable premium of the closing side when the exit was decided, bps.
    pub exit_bps: Option<f64>,
    /// Time the pair was closed (flat), epoch ms.
    pub closed_ms: Option<i64>,
    /// Premium change component, KRW.
    pub pnl_premium: f64,
    /// FX component, KRW.
    pub pnl_fx: f64,
    /// Fees (negative), KRW.
    pub pnl_fees: f64,
    /// Funding, KRW.
    pub pnl_funding: f64,
    /// Net, KRW.
    pub pnl_net: f64,
}

/// The headline numbers of a run (the `--json` line).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RunMetrics {
    /// Pairs closed.
    pub pairs: u64,
    /// Pairs still open at the end (marked at mid in the net PnL).
    pub open_pairs_at_end: u64,
    /// Realised + unrealised, KRW.
    pub net_pnl_krw: f64,
    /// Realised net PnL of closed pairs, KRW.
    pub realized_pnl_krw: f64,
    /// Open pairs marked at mid (no exit fees), KRW.
    pub unrealized_pnl_krw: f64,
    /// Closed pairs: premium-change component, KRW.
    pub pnl_premium_krw: f64,
    /// Closed pairs: FX component, KRW.
    pub pnl_fx_krw: f64,
    /// Closed pairs: fees component (negative), KRW.
    pub pnl_fees_krw: f64,
    /// Fees paid, KRW (positive): closed pairs' realised fees (`-pnl_fees_krw`, at the FX
    /// the engine booked them) plus `fees_open_krw`.
    pub fees_krw: f64,
    /// Fees of the pairs still open at the end, at the last FX, KRW (positive).
    #[serde(default)]
    pub fees_open_krw: f64,
    /// Funding received (+) / paid (−), closed and open pairs, KRW.
    pub funding_krw: f64,
    /// Funding of the pairs still open at the end, KRW.
    #[serde(default)]
    pub funding_open_krw: f64,
    /// Net PnL / capital, %.
    pub return_pct: f64,
    /// Annualised Sharpe ratio of period returns (see `stats_period`); `None` (JSON null,
    /// "n/a") below [`MIN_RETURNS`] returns, where annualising a few samples means nothing.
    pub sharpe: Option<f64>,
    /// Annualised Sortino ratio; `None` like `sharpe`.
    pub sortino: Option<f64>,
    /// Number of period returns behind `sharpe` and `sortino`.
    #[serde(default)]
    pub stats_returns: u64,
    /// Largest peak-to-trough fall of capital + equity, %.
    pub max_drawdown_pct: f64,
    /// Same, KRW.
    pub max_drawdown_krw: f64,
    /// Closed pairs with net PnL > 0, fraction of the closed pairs (0 when none closed;
    /// pairs open at the end are not counted, see `open_pairs_at_end`).
    pub win_rate: f64,
    /// Mean holding time of closed pairs, hours.
    pub avg_holding_h: f64,
    /// Longest holding time (closed pairs, or open ones until the end), hours.
    pub max_holding_h: f64,
    /// Largest unhedged quantity × Upbit mid seen after any order report, KRW.
    pub max_unhedged_krw: f64,
    /// Longest one-leg episode the engine reported, ms.
    pub max_one_leg_ms: u64,
    /// Traded notional on both venues, KRW.
    pub turnover_krw: f64,
    /// Turnover / capital.
    pub turnover_x: f64,
    /// Capital, KRW.
    pub capital_krw: f64,
    /// Period of the Sharpe/Sortino returns (`1d`, `1h`, `1m`).
    pub stats_period: String,
    /// Events fed to the engine (market, orders, timers, control).
    pub events: u64,
    /// The engine's own event counter.
    pub engine_events: u64,
    /// Orders refused by the engine's pre-trade risk.
    pub risk_rejects: u64,
    /// Funding settlements the engine booked on open pairs.
    pub funding_settlements: u64,
    /// First and last event time, epoch ms.
    pub first_ms: i64,
    /// Last event time, epoch ms.
    pub last_ms: i64,
    /// Wall time of the run, ms.
    pub elapsed_ms: f64,
}

impl RunMetrics {
    /// Sharpe / Sortino for people: the ratios with their sample, or "n/a" and why.
    pub fn ratios_text(&self) -> String {
        let r = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.2}"));
        let n = format!("{} returns of {}", self.stats_returns, self.stats_period);
        if self.sharpe.is_none() && self.sortino.is_none() {
            format!("n/a / n/a ({n}; at least {MIN_RETURNS} needed)")
        } else {
            format!("{} / {} ({n})", r(self.sharpe), r(self.sortino))
        }
    }

    /// Win rate for people: of the closed pairs, saying how many were open at the end.
    pub fn win_text(&self) -> String {
        let rate = if self.pairs == 0 {
            "n/a (no pair closed)".to_string()
        } else {
            format!("{:.1} % of {} closed", self.win_rate * 100.0, self.pairs)
        };
        match self.open_pairs_at_end {
            0 => rate,
            n => format!("{rate}; {n} open at end not counted"),
        }
    }
}

/// A premium sample for the chart.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct PremiumPoint {
    /// Time, epoch ms.
    pub t: i64,
    /// Coin index.
    pub coin: u16,
    /// Mid premium, bps.
    pub mid: f64,
    /// Executable sell_premium premium, bps.
    pub sell: f64,
    /// Executable buy_discount premium, bps.
    pub buy: f64,
}

/// Series kept for the report.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Series {
    /// Premium samples (the engine's telemetry).
    pub premium: Vec<PremiumPoint>,
    /// Equity (net PnL so far), `(epoch ms, KRW)`.
    pub equity: Vec<(i64, f64)>,
}

/// Everything one run produced.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunResult {
    /// Headline numbers.
    pub metrics: RunMetrics,
    /// Every pair.
    pub pairs: Vec<PairTrade>,
    /// Series, when kept.
    pub series: Option<Series>,
    /// Execution-model counters.
    #[serde(skip_deserializing)]
    pub exec: ExecStats,
}

/// Collects what a run needs for its metrics while it runs.
#[derive(Debug)]
pub struct Collector {
    direction: Direction,
    capital: f64,
    keep: bool,
    every: Nanos,
    next_eq: Nanos,
    pairs: Vec<PairTrade>,
    by_id: HashMap<u32, usize>,
    last_sample: Vec<Option<KimpSample>>,
    premium: Vec<PremiumPoint>,
    equity: Vec<(i64, f64)>,
    m: RunMetrics,
    first: Option<Nanos>,
}

fn ms(t: Nanos) -> i64 {
    (t.0 / 1_000_000) as i64
}

impl Collector {
    /// A collector for a run of `setup`.
    pub fn new(setup: &RunSetup) -> Self {
        Self {
            direction: setup.engine.strategy.direction,
            capital: setup.capital_krw,
            keep: setup.keep_series,
            every: Nanos::from_ms(setup.equity_every_ms.max(1)),
            next_eq: Nanos(0),
            pairs: Vec::new(),
            by_id: HashMap::new(),
            last_sample: vec![None; setup.markets.coins.len()],
            premium: Vec::new(),
            equity: Vec::new(),
            m: RunMetrics { capital_krw: setup.capital_krw, ..Default::default() },
            first: None,
        }
    }

    /// Metrics gathered so far.
    pub fn metrics(&self) -> &RunMetrics {
        &self.m
    }

    /// A premium sample from the engine.
    pub fn premium(&mut self, k: KimpSample) {
        if let Some(s) = self.last_sample.get_mut(k.coin as usize) {
            *s = Some(k);
        }
        if self.keep {
            self.premium.push(PremiumPoint {
                t: ms(k.ts),
                coin: k.coin,
                mid: k.mid_bps,
                sell: k.sell_bps,
                buy: k.buy_bps,
            });
        }
    }

    /// An entry intent (the pair's open time).
    pub fn entry(&mut self, pair: u32, coin: u16, now: Nanos) {
        let entry_bps =
            self.last_sample.get(coin as usize).copied().flatten().map_or(f64::NAN, |k| {
                if self.direction == Direction::SellPremium { k.sell_bps } else { k.buy_bps }
            });
        self.by_id.insert(pair, self.pairs.len());
        self.pairs.push(PairTrade {
            pair,
            coin,
            opened_ms: ms(now),
            entry_bps,
            ..Default::default()
        });
    }

    /// Both legs filled: the engine's entry premium.
    pub fn opened(&mut self, pair: u32, _now: Nanos, premium_bps: f64) {
        if let Some(&i) = self.by_id.get(&pair) {
            self.pairs[i].entry_bps = premium_bps;
        }
    }

    /// An exit intent.
    pub fn exit(&mut self, pair: u32, now: Nanos) {
        if let Some(&i) = self.by_id.get(&pair) {
            let coin = self.pairs[i].coin as usize;
            let k = self.last_sample.get(coin).copied().flatten();
            self.pairs[i].exit_ms = Some(ms(now));
            self.pairs[i].exit_bps = k.map(|k| {
                if self.direction == Direction::SellPremium { k.buy_bps } else { k.sell_bps }
            });
        }
    }

    /// A pair closed with its PnL split.
    pub fn closed(&mut self, pr: &PairRecord, now: Nanos) {
        let i = match self.by_id.get(&pr.pair) {
            Some(&i) => i,
            None => {
                self.by_id.insert(pr.pair, self.pairs.len());
                self.pairs.push(PairTrade { pair: pr.pair, coin: pr.coin, ..Default::default() });
                self.pairs.len() - 1
            }
        };
        let p = &mut self.pairs[i];
        p.closed_ms = Some(ms(now));
        p.pnl_premium = pr.pnl.premium.0 as f64 / S;
        p.pnl_fx = pr.pnl.fx.0 as f64 / S;
        p.pnl_fees = pr.pnl.fees.0 as f64 / S;
        p.pnl_funding = pr.pnl.funding.0 as f64 / S;
        p.pnl_net = pr.pnl.net().0 as f64 / S;
        self.next_eq = Nanos(0); // sample the equity step at the close
    }

    /// A one-leg episode ended after `age_ms`.
    pub fn one_leg(&mut self, age_ms: u64) {
        self.m.max_one_leg_ms = self.m.max_one_leg_ms.max(age_ms);
    }

    /// Fills the venues made (turnover, converted at the FX of the moment). Fees are taken
    /// from the pairs instead, so the total agrees with the realised split.
    pub fn fills(&mut self, fills: &[FillNote], fx: f64) {
        for f in fills {
            let k = if f.venue == Venue::Upbit { 1.0 } else { fx };
            self.m.turnover_krw += f.notional.0 as f64 / S * k;
        }
    }

    /// After an order report: the unhedged exposure.
    pub fn after_order(&mut self, e: &Engine, _now: Nanos, upbit: &[InstrumentId]) {
        for (c, inst) in upbit.iter().enumerate() {
            let Some(p) = e.pair(c as u16) else { continue };
            let un = p.unhedged().0;
            if un != 0 {
                let mid = e.book(*inst).and_then(|b| b.mid_f64()).unwrap_or(0.0);
                self.m.max_unhedged_krw = self.m.max_unhedged_krw.max(un.abs() as f64 / S * mid);
            }
        }
    }

    /// Open pairs marked at mid, KRW (no exit fees), their accrued funding and the fees
    /// they paid so far.
    fn open_value(
        e: &Engine,
        fx: f64,
        upbit: &[InstrumentId],
        binance: &[InstrumentId],
    ) -> (f64, f64, f64) {
        let mut v = 0.0;
        let mut funding = 0.0;
        let mut fees = 0.0;
        for c in 0..upbit.len() {
            let Some(p) = e.pair(c as u16) else { continue };
            let mid = |i: InstrumentId| e.book(i).and_then(|b| b.mid_f64()).unwrap_or(0.0);
            v += p.marked_krw(mid(upbit[c]), mid(binance[c]), fx);
            funding += p.funding_usdt as f64 / S * fx;
            fees += p.u.fees.0 as f64 / S + p.b.fees.0 as f64 / S * fx;
        }
        (v, funding, fees)
    }

    /// Samples the equity curve (at most once per `equity_every_ms`).
    pub fn sample_equity(
        &mut self,
        e: &Engine,
        now: Nanos,
        fx: f64,
        upbit: &[InstrumentId],
        binance: &[InstrumentId],
    ) {
        if self.first.is_none() {
            self.first = Some(now);
        }
        if now < self.next_eq {
            return;
        }
        self.next_eq = now.plus(self.every);
        let (open, _, _) = Self::open_value(e, fx, upbit, binance);
        let eq = e.realized_krw() as f64 / S + open;
        self.equity.push((ms(now), eq));
    }

    /// The last equity point, at the end of the run.
    pub fn final_equity(
        &mut self,
        e: &Engine,
        now: Nanos,
        fx: f64,
        upbit: &[InstrumentId],
        binance: &[InstrumentId],
    ) {
        let (open, funding, fees) = Self::open_value(e, fx, upbit, binance);
        let realized = e.realized_krw() as f64 / S;
        self.equity.push((ms(now), realized + open));
        self.m.realized_pnl_krw = realized;
        self.m.unrealized_pnl_krw = open;
        self.m.net_pnl_krw = realized + open;
        self.m.funding_krw = funding;
        self.m.funding_open_krw = funding;
        self.m.fees_open_krw = fees;
        self.m.first_ms = self.first.map_or(ms(now), ms);
        self.m.last_ms = ms(now);
    }

    /// Computes the statistics.
    pub fn finish(mut self, _e: &Engine, _fx: f64) -> RunResult {
        let m = &mut self.m;
        let closed: Vec<&PairTrade> = self.pairs.iter().filter(|p| p.closed_ms.is_some()).collect();
        m.pairs = closed.len() as u64;
        m.open_pairs_at_end = (self.pairs.len() - closed.len()) as u64;
        for p in &closed {
            m.pnl_premium_krw += p.pnl_premium;
            m.pnl_fx_krw += p.pnl_fx;
            m.pnl_fees_krw += p.pnl_fees;
            m.funding_krw += p.pnl_funding;
        }
        m.fees_krw = -m.pnl_fees_krw + m.fees_open_krw;
        if !closed.is_empty() {
            m.win_rate =
                closed.iter().filter(|p| p.pnl_net > 0.0).count() as f64 / closed.len() as f64;
            let hold: Vec<f64> = closed
                .iter()
                .map(|p| (p.closed_ms.unwrap_or(p.opened_ms) - p.opened_ms) as f64 / 3.6e6)
                .collect();
            m.avg_holding_h = hold.iter().sum::<f64>() / hold.len() as f64;
            m.max_holding_h = hold.iter().copied().fold(0.0, f64::max);
        }
        for p in self.pairs.iter().filter(|p| p.closed_ms.is_none()) {
            m.max_holding_h = m.max_holding_h.max((m.last_ms - p.opened_ms) as f64 / 3.6e6);
        }
        if self.capital > 0.0 {
            m.return_pct = m.net_pnl_krw / self.capital * 100.0;
            m.turnover_x = m.turnover_krw / self.capital;
        }
        let st = equity_stats(&self.equity, self.capital);
        m.sharpe = st.sharpe;
        m.sortino = st.sortino;
        m.max_drawdown_pct = st.max_dd_pct;
        m.max_drawdown_krw = st.max_dd_krw;
        m.stats_period = st.period.to_string();
        m.stats_returns = st.returns as u64;
        let series = self.keep.then_some(Series { premium: self.premium, equity: self.equity });
        RunResult { metrics: self.m, pairs: self.pairs, series, exec: ExecStats::default() }
    }
}

/// Fewest period returns a Sharpe or Sortino ratio is given for: below this the
/// annualised figure of a few samples (a 30 s run's two minute returns) is noise.
pub const MIN_RETURNS: usize = 30;

/// Statistics of an equity curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EquityStats {
    /// Annualised Sharpe (`None` below [`MIN_RETURNS`] returns).
    pub sharpe: Option<f64>,
    /// Annualised Sortino (`None` below [`MIN_RETURNS`] returns).
    pub sortino: Option<f64>,
    /// Number of period returns.
    pub returns: usize,
    /// Max drawdown of capital + equity, %.
    pub max_dd_pct: f64,
    /// Max drawdown, KRW.
    pub max_dd_krw: f64,
    /// Return period used.
    pub period: &'static str,
}

/// Sharpe and Sortino of period returns (equity change / capital), annualised over 365
/// days (crypto trades every day); the period is a day for runs of 30 days or more, an
/// hour for 2 days or more, else a minute. Drawdown is over every sample. Below
/// [`MIN_RETURNS`] returns the ratios are `None`.
pub fn equity_stats(eq: &[(i64, f64)], capital: f64) -> EquityStats {
    let mut out = EquityStats {
        sharpe: None,
        sortino: None,
        returns: 0,
        max_dd_pct: 0.0,
        max_dd_krw: 0.0,
        period: "1d",
    };
    if eq.is_empty() {
        return out;
    }
    let (mut peak, mut dd_pct, mut dd_krw) = (capital + eq[0].1, 0.0f64, 0.0f64);
    for &(_, v) in eq {
        let v = capital + v;
        peak = peak.max(v);
        dd_krw = dd_krw.max(peak - v);
        if peak > 0.0 {
            dd_pct = dd_pct.max((peak - v) / peak * 100.0);
        }
    }
    out.max_dd_pct = dd_pct;
    out.max_dd_krw = dd_krw;
    let span = eq[eq.len() - 1].0 - eq[0].0;
    let (period, name) = if span >= 30 * DAY_MS {
        (DAY_MS, "1d")
    } else if span >= 2 * DAY_MS {
        (3_600_000, "1h")
    } else {
        (60_000, "1m")
    };
    out.period = name;
    if capital <= 0.0 {
        return out;
    }
    // Equity at the end of each period (carried through empty periods).
    let start = eq[0].0.div_euclid(period);
    let end = eq[eq.len() - 1].0.div_euclid(period);
    let mut rets = Vec::with_capacity((end - start + 1) as usize);
    let mut i = 0;
    let mut prev = eq[0].1;
    for k in start..=end {
        let boundary = (k + 1) * period;
        let mut last = prev;
        while i < eq.len() && eq[i].0 < boundary {
            last = eq[i].1;
            i += 1;
        }
        rets.push((last - prev) / capital);
        prev = last;
    }
    out.returns = rets.len();
    if rets.len() < MIN_RETURNS {
        return out;
    }
    let n = rets.len() as f64;
    let mean = rets.iter().sum::<f64>() / n;
    let var = rets.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / (n - 1.0);
    let down = (rets.iter().map(|r| r.min(0.0).powi(2)).sum::<f64>() / n).sqrt();
    let ann = ((365 * DAY_MS) as f64 / period as f64).sqrt();
    out.sharpe = Some(if var > 0.0 { mean / var.sqrt() * ann } else { 0.0 });
    out.sortino = Some(if down > 0.0 { mean / down * ann } else { 0.0 });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawdown_and_sharpe_of_a_known_curve() {
        // Daily equity: +100, +100, -300 (from 200 to -100), +50 over capital 10,000.
        let d = DAY_MS;
        let eq = vec![(0, 0.0), (d, 100.0), (2 * d, 200.0), (3 * d, -100.0), (4 * d, -50.0)];
        let st = equity_stats(&eq, 10_000.0);
        assert!((st.max_dd_krw - 300.0).abs() < 1e-9);
        assert!((st.max_dd_pct - 300.0 / 10_200.0 * 100.0).abs() < 1e-9);
        assert_eq!(st.period, "1h", "4 days of data use hourly returns");
        let flat = vec![(0, 0.0), (40 * d, 0.0)];
        assert_eq!(equity_stats(&flat, 1.0).sharpe, Some(0.0));
        // Five minute returns: too few to annualise.
        let short: Vec<(i64, f64)> = (0..6).map(|i| (i * 60_000, (i % 2) as f64)).collect();
        let st = equity_stats(&short, 1e6);
        assert_eq!((st.sharpe, st.sortino, st.returns), (None, None, 6));
        // A steadily rising curve has a positive Sharpe and no drawdown.
        let up: Vec<(i64, f64)> = (0..60).map(|i| (i * d, (i * i) as f64)).collect();
        let st = equity_stats(&up, 1e6);
        assert!(st.sharpe > Some(0.0) && st.max_dd_pct == 0.0 && st.period == "1d");
    }
}
