//! Measurement helpers: latency histograms and repeated-pass throughput.

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// A latency histogram in ns (1 ns .. 100 s, 3 significant digits).
pub fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// p50/p99/p99.9/max of a histogram, as JSON.
pub fn pct(h: &Histogram<u64>) -> Value {
    json!({
        "n": h.len(),
        "p50_ns": h.value_at_quantile(0.5),
        "p99_ns": h.value_at_quantile(0.99),
        "p999_ns": h.value_at_quantile(0.999),
        "max_ns": h.max(),
        "mean_ns": (h.mean() * 10.0).round() / 10.0,
    })
}

/// One line for people.
pub fn pct_line(name: &str, h: &Histogram<u64>) -> String {
    format!(
        "{name:<34} n={:<9} p50 {:>7} ns  p99 {:>7} ns  p99.9 {:>8} ns  max {:>9} ns",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    )
}

/// Median of a sample (sorts it).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

/// Rounds to one decimal for the report.
pub fn r1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
