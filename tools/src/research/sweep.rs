//! Parameter grids, run in parallel across cores with a progress bar, and walk-forward
//! (fit on one window by best net PnL, test on the next).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use super::metrics::{RunMetrics, RunResult};

/// One swept key: `KEY=START:END:STEP`.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepAxis {
    /// Dotted key, e.g. `strategy.entry_bps`.
    pub key: String,
    /// Values, START to END inclusive.
    pub values: Vec<f64>,
}

impl SweepAxis {
    /// Parses `KEY=START:END:STEP` (END inclusive; at most 10,000 values).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (key, range) =
            s.split_once('=').ok_or_else(|| format!("{s:?}: expected KEY=START:END:STEP"))?;
        let p: Vec<f64> = range
            .split(':')
            .map(|v| v.trim().parse::<f64>().map_err(|_| format!("{s:?}: {v:?} is not a number")))
            .collect::<Result<_, _>>()?;
        let [start, end, step] = p[..] else {
            return Err(format!("{s:?}: expected KEY=START:END:STEP"));
        };
        if step.is_nan() || step <= 0.0 || end < start || !start.is_finite() || !end.is_finite() {
            return Err(format!("{s:?}: need STEP > 0 and END >= START"));
        }
        let n = ((end - start) / step + 1e-9).floor() as usize + 1;
        if n > 10_000 {
            return Err(format!("{s:?}: {n} values is too many"));
        }
        let values = (0..n).map(|i| round9(start + step * i as f64)).collect();
        Ok(Self { key: key.trim().to_string(), values })
    }
}

fn round9(v: f64) -> f64 {
    (v * 1e9).round() / 1e9
}

/// One grid point: a value per axis, in axis order.
pub type Point = Vec<(String, f64)>;

/// A point for people: `strategy.entry_bps=400, book.levels=5`.
pub fn fmt_point(p: &[(String, f64)]) -> String {
    p.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

/// Every combination of the axes (the first axis varies slowest).
pub fn grid(axes: &[SweepAxis]) -> Vec<Point> {
    let mut out: Vec<Point> = vec![Vec::new()];
    for a in axes {
        out = out
            .into_iter()
            .flat_map(|p| {
                a.values.iter().map(move |&v| {
                    let mut q = p.clone();
                    q.push((a.key.clone(), v));
                    q
                })
            })
            .collect();
    }
    out
}

/// Runs `f` on every point on `threads` threads, with a progress bar on stderr when
/// `progress` is set. Results come back in point order.
pub fn run_parallel<T: Send>(
    points: &[Point],
    threads: usize,
    progress: bool,
    label: &str,
    f: impl Fn(&Point) -> T + Sync,
) -> Vec<T> {
    let n = points.len();
    let bar = if progress {
        let b = indicatif::ProgressBar::with_draw_target(
            Some(n as u64),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} runs, {elapsed} elapsed, eta {eta}",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        b.set_prefix(label.to_string());
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<T>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, n.max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let r = f(&points[i]);
                    if let Ok(mut v) = slots.lock() {
                        v[i] = Some(r);
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    slots.into_inner().unwrap_or_default().into_iter().flatten().collect()
}

/// One row of a sweep's output.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SweepRow {
    /// The point.
    pub params: Vec<(String, f64)>,
    /// Its metrics (`None` when the point was invalid, e.g. a config check failed).
    pub metrics: Option<RunMetrics>,
    /// Why the point did not run.
    pub error: Option<String>,
}

/// Index of the row with the best net PnL (first on ties).
pub fn best(rows: &[SweepRow]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, r) in rows.iter().enumerate() {
        if let Some(m) = &r.metrics
            && best.is_none_or(|(_, v)| m.net_pnl_krw > v)
        {
            best = Some((i, m.net_pnl_krw));
        }
    }
    best.map(|b| b.0)
}

/// Turns run results into sweep rows.
pub fn rows(points: &[Point], results: Vec<anyhow::Result<RunResult>>) -> Vec<SweepRow> {
    points
        .iter()
        .zip(results)
        .map(|(p, r)| match r {
            Ok(r) => SweepRow { params: p.clone(), metrics: Some(r.metrics), error: None },
            Err(e) => SweepRow { params: p.clone(), metrics: None, error: Some(format!("{e:#}")) },
        })
        .collect()
}

/// One walk-forward window.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WalkWindow {
    /// Training window `[from, to)`, epoch ms.
    pub train: (i64, i64),
    /// Test window.
    pub test: (i64, i64),
    /// Parameters chosen on the training window.
    pub chosen: Vec<(String, f64)>,
    /// Net PnL of the chosen point on the training window.
    pub train_net_pnl_krw: f64,
    /// Test metrics.
    pub result: RunMetrics,
}

/// Walk-forward windows over `[start, end)`: train `train_ms`, then test `test_ms`,
/// rolling forward by `test_ms`.
pub fn windows(start: i64, end: i64, train_ms: i64, test_ms: i64) -> Vec<((i64, i64), (i64, i64))> {
    let mut out = Vec::new();
    let mut s = start;
    while s + train_ms < end {
        let tr = (s, s + train_ms);
        let te = (tr.1, (tr.1 + test_ms).min(end));
        out.push((tr, te));
        s += test_ms;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_grids_and_windows() {
        let a = SweepAxis::parse("strategy.entry_bps=100:500:25").unwrap();
        assert_eq!(a.values.len(), 17);
        assert_eq!(a.values[16], 500.0);
        let b = SweepAxis::parse("x=0.1:0.3:0.1").unwrap();
        assert_eq!(b.values, vec![0.1, 0.2, 0.3]);
        assert!(SweepAxis::parse("x=1:0:1").is_err());
        assert!(SweepAxis::parse("x=1:2").is_err());
        let g = grid(&[a, b]);
        assert_eq!(g.len(), 51);
        assert_eq!(g[1], vec![("strategy.entry_bps".to_string(), 100.0), ("x".to_string(), 0.2)]);
        assert_eq!(
            windows(0, 100, 40, 20),
            vec![((0, 40), (40, 60)), ((20, 60), (60, 80)), ((40, 80), (80, 100))]
        );
        let out = run_parallel(&g, 2, false, "t", |p| p[0].1);
        assert_eq!(out.len(), 51);
        assert_eq!(out[50], 500.0);
    }
}
