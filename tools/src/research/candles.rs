//! CSV and JSON-lines inputs of the candle backtest: OHLCV candles, an FX series and
//! funding settlements.
//!
//! Prices are read exactly (`parse_decimal`, no floats), so a synthetic book is built from
//! the very digits in the file. A line that cannot be read is skipped and reported with its
//! 1-based line number; the caller prints them, so a bad file is never silently half-used.

use std::fmt;
use std::io::Read;
use std::path::Path;

use kimp_core::units::{Price, parse_decimal};

use super::timefmt::{DAY_MS, parse_utc_ms};

/// A line of an input file that was skipped, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// One OHLCV candle; prices fixed-point 1e-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// Candle open time, epoch ms UTC.
    pub open_ms: i64,
    /// Open.
    pub open: Price,
    /// High.
    pub high: Price,
    /// Low.
    pub low: Price,
    /// Close.
    pub close: Price,
}

/// A candle series, sorted by time, with its interval.
#[derive(Clone, Debug, Default)]
pub struct Candles {
    /// Bars in time order (duplicates removed).
    pub bars: Vec<Bar>,
    /// Candle length (the most common gap between consecutive bars), ms.
    pub interval_ms: i64,
    /// Skipped lines.
    pub bad: Vec<BadLine>,
}

impl Candles {
    /// Close time of bar `i`: when its close is known (no look-ahead).
    pub fn close_ms(&self, i: usize) -> i64 {
        self.bars[i].open_ms + self.interval_ms
    }
}

/// An FX series (KRW per USD), as step values effective from a time on.
#[derive(Clone, Debug, Default)]
pub struct FxSeries {
    /// `(effective from, rate)` in time order.
    pub points: Vec<(i64, Price)>,
    /// Rows whose value was empty and carried forward from the previous row (whole file).
    pub carried: usize,
    /// Effective times of those rows, in time order.
    pub carried_at: Vec<i64>,
    /// Skipped lines.
    pub bad: Vec<BadLine>,
}

impl FxSeries {
    /// The rate in force at `t` (the last point effective at or before `t`).
    pub fn at(&self, t: i64) -> Option<Price> {
        let i = self.points.partition_point(|p| p.0 <= t);
        i.checked_sub(1).map(|i| self.points[i].1)
    }

    /// Carried-forward rows a run over `[from, to)` uses: those that take effect inside it,
    /// and the one already in force at `from` if it was carried.
    pub fn carried_in(&self, from: i64, to: i64) -> usize {
        let inside = self.carried_at.iter().filter(|&&t| t > from && t < to).count();
        let i = self.points.partition_point(|p| p.0 <= from);
        let at_start = i
            .checked_sub(1)
            .is_some_and(|i| self.carried_at.binary_search(&self.points[i].0).is_ok());
        inside + usize::from(at_start)
    }
}

/// One funding settlement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FundingRow {
    /// Settlement time, epoch ms.
    pub t_ms: i64,
    /// Symbol (`BTCUSDT`).
    pub symbol: String,
    /// Rate, fixed-point 1e-8.
    pub rate_e8: i64,
    /// Mark price at settlement, when the source has it.
    pub mark: Option<Price>,
}

/// Funding settlements of one or more symbols.
#[derive(Clone, Debug, Default)]
pub struct FundingSeries {
    /// Rows in time order.
    pub rows: Vec<FundingRow>,
    /// Skipped lines.
    pub bad: Vec<BadLine>,
}

/// Reads a file, decompressing `.gz`.
pub fn read_text(path: &Path) -> anyhow::Result<String> {
    let mut raw = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut raw))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 6);
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| anyhow::anyhow!("{}: gzip: {e}", path.display()))?;
        raw = out;
    }
    String::from_utf8(raw).map_err(|e| anyhow::anyhow!("{}: not UTF-8: {e}", path.display()))
}

fn header_index(header: &str, names: &[&str]) -> Option<usize> {
    header.split(',').position(|h| {
        let h = h.trim().trim_matches('"').to_ascii_lowercase();
        names.iter().any(|n| h == *n)
    })
}

fn price(field: Option<&str>, what: &str) -> Result<Price, String> {
    let f = field.ok_or_else(|| format!("missing column {what}"))?.trim();
    match parse_decimal(f.as_bytes()) {
        Some(v) if v > 0 => Ok(Price(v)),
        _ => Err(format!("{what} {f:?} is not a positive number")),
    }
}

/// Parses OHLCV text: header `open_time_utc,open,high,low,close,volume` or
/// `timestamp,open,high,low,close,volume[,...]` (ms epoch or naive UTC time).
pub fn parse_candles(text: &str) -> anyhow::Result<Candles> {
    let mut lines = text.lines();
    let header = lines.next().ok_or_else(|| anyhow::anyhow!("empty file"))?;
    let col = |names: &[&str]| {
        header_index(header, names)
            .ok_or_else(|| anyhow::anyhow!("header {header:?} has no {} column", names[0]))
    };
    let (ti, oi, hi, li, ci) = (
        col(&["open_time_utc", "timestamp", "open_time", "time", "date"])?,
        col(&["open"])?,
        col(&["high"])?,
        col(&["low"])?,
        col(&["close"])?,
    );
    let mut out = Candles::default();
    let mut fields: Vec<&str> = Vec::with_capacity(12);
    for (n, line) in lines.enumerate() {
        let line_no = n + 2;
        if line.trim().is_empty() {
            continue;
        }
        fields.clear();
        fields.extend(line.split(','));
        let row = (|| -> Result<Bar, String> {
            let t = fields.get(ti).ok_or("missing time")?;
            let open_ms = parse_utc_ms(t).ok_or_else(|| format!("bad time {t:?}"))?;
            let bar = Bar {
                open_ms,
                open: price(fields.get(oi).copied(), "open")?,
                high: price(fields.get(hi).copied(), "high")?,
                low: price(fields.get(li).copied(), "low")?,
                close: price(fields.get(ci).copied(), "close")?,
            };
            if bar.low > bar.high || bar.close > bar.high || bar.close < bar.low {
                return Err("close outside low..high".into());
            }
            Ok(bar)
        })();
        match row {
            Ok(b) => out.bars.push(b),
            Err(reason) => out.bad.push(BadLine { line: line_no, reason }),
        }
    }
    // Files are in order; sorting is cheap when they are and makes joined blocks safe.
    if !out.bars.is_sorted_by_key(|b| b.open_ms) {
        out.bars.sort_by_key(|b| b.open_ms);
    }
    let before = out.bars.len();
    out.bars.dedup_by_key(|b| b.open_ms);
    if out.bars.len() < before {
        out.bad.push(BadLine {
            line: 0,
            reason: format!("{} duplicate candle times dropped", before - out.bars.len()),
        });
    }
    out.interval_ms = modal_gap(out.bars.iter().map(|b| b.open_ms));
    Ok(out)
}

/// The most common positive gap of a time sequence (0 when there are fewer than two).
fn modal_gap(ts: impl Iterator<Item = i64>) -> i64 {
    let mut gaps: Vec<i64> = Vec::new();
    let mut prev = None;
    for t in ts {
        if let Some(p) = prev
            && t > p
        {
            gaps.push(t - p);
        }
        prev = Some(t);
    }
    if gaps.is_empty() {
        return 0;
    }
    gaps.sort_unstable();
    let (mut best, mut best_n, mut i) = (gaps[0], 0, 0);
    while i < gaps.len() {
        let j = gaps.partition_point(|&g| g <= gaps[i]);
        if j - i > best_n {
            best_n = j - i;
            best = gaps[i];
        }
        i = j;
    }
    best
}

/// Loads a candle CSV (optionally gzip).
pub fn load_candles(path: &Path) -> anyhow::Result<Candles> {
    parse_candles(&read_text(path)?).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Parses an FX series: `date,rate`, FRED's `observation_date,DEXKOUS`, or OHLCV (close).
/// Empty values (FRED's US holidays, also `.`) carry the previous value forward. A
/// date-only value becomes effective `date_lag_ms` after that date's midnight UTC (FRED's
/// noon New York rate is known around 17:00 UTC), a timestamped value at its time.
pub fn parse_fx(text: &str, date_lag_ms: i64) -> anyhow::Result<FxSeries> {
    let mut lines = text.lines();
    let header = lines.next().ok_or_else(|| anyhow::anyhow!("empty file"))?;
    let vi = header_index(header, &["close"]).unwrap_or(1);
    let mut out = FxSeries::default();
    let mut last: Option<Price> = None;
    for (n, line) in lines.enumerate() {
        let line_no = n + 2;
        if line.trim().is_empty() {
            continue;
        }
        let mut f = line.split(',');
        let t = f.next().unwrap_or("").trim();
        let Some(t_ms) = parse_utc_ms(t) else {
            out.bad.push(BadLine { line: line_no, reason: format!("bad date {t:?}") });
            continue;
        };
        let v = line.split(',').nth(vi).unwrap_or("").trim().trim_matches('"');
        let date_only = t.len() <= 10 || t.bytes().all(|c| c.is_ascii_digit());
        let eff = if date_only && t_ms % DAY_MS == 0 { t_ms + date_lag_ms } else { t_ms };
        let rate = if v.is_empty() || v == "." {
            match last {
                Some(p) => {
                    out.carried += 1;
                    out.carried_at.push(eff);
                    p
                }
                None => continue, // nothing to carry yet
            }
        } else {
            match parse_decimal(v.as_bytes()) {
                Some(r) if r > 0 => Price(r),
                _ => {
                    out.bad.push(BadLine {
                        line: line_no,
                        reason: format!("rate {v:?} is not a positive number"),
                    });
                    continue;
                }
            }
        };
        last = Some(rate);
        out.points.push((eff, rate));
    }
    out.points.sort_by_key(|p| p.0);
    out.carried_at.sort_unstable();
    Ok(out)
}

/// Loads an FX file.
pub fn load_fx(path: &Path, date_lag_ms: i64) -> anyhow::Result<FxSeries> {
    parse_fx(&read_text(path)?, date_lag_ms).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Parses funding settlements: CSV `timestamp,symbol,funding_rate` (ms epoch) or the REST
/// endpoint's JSON lines (`fundingTime`, `fundingRate`, `symbol`, `markPrice`).
pub fn parse_funding(text: &str) -> anyhow::Result<FundingSeries> {
    let mut out = FundingSeries::default();
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if first.trim_start().starts_with('{') {
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match funding_json(line) {
                Ok(r) => out.rows.push(r),
                Err(reason) => out.bad.push(BadLine { line: n + 1, reason }),
            }
        }
    } else {
        let (ti, si, ri) = (
            header_index(first, &["timestamp", "fundingtime", "time"])
                .ok_or_else(|| anyhow::anyhow!("header {first:?} has no timestamp column"))?,
            header_index(first, &["symbol"]),
            header_index(first, &["funding_rate", "fundingrate", "rate"])
                .ok_or_else(|| anyhow::anyhow!("header {first:?} has no funding_rate column"))?,
        );
        for (n, line) in text.lines().enumerate().skip(1) {
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let t = f.get(ti).and_then(|t| parse_utc_ms(t));
            let r = f.get(ri).and_then(|r| parse_decimal(r.as_bytes()));
            match (t, r) {
                (Some(t_ms), Some(rate_e8)) => out.rows.push(FundingRow {
                    t_ms,
                    symbol: si.and_then(|i| f.get(i)).unwrap_or(&"").to_ascii_uppercase(),
                    rate_e8,
                    mark: None,
                }),
                _ => out.bad.push(BadLine {
                    line: n + 1,
                    reason: "timestamp or funding_rate unreadable".into(),
                }),
            }
        }
    }
    out.rows.sort_by_key(|r| r.t_ms);
    Ok(out)
}

fn funding_json(line: &str) -> Result<FundingRow, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let text = |k: &str| match v.get(k) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let t_ms = text("fundingTime")
        .and_then(|t| parse_utc_ms(&t))
        .ok_or("fundingTime missing or unreadable")?;
    let rate_e8 = text("fundingRate")
        .and_then(|r| parse_decimal(r.as_bytes()))
        .ok_or("fundingRate missing or unreadable")?;
    let mark = text("markPrice").and_then(|m| parse_decimal(m.as_bytes())).map(Price);
    let symbol = text("symbol").unwrap_or_default().to_ascii_uppercase();
    Ok(FundingRow { t_ms, symbol, rate_e8, mark })
}

/// Loads funding settlements from a file.
pub fn load_funding(path: &Path) -> anyhow::Result<FundingSeries> {
    parse_funding(&read_text(path)?).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modal_gap_ignores_holes() {
        assert_eq!(modal_gap([0, 60, 120, 600, 660].into_iter()), 60);
        assert_eq!(modal_gap([5].into_iter()), 0);
    }
}
