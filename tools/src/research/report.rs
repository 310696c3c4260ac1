//! `kimp report`: one self-contained HTML file (inline SVG, inline CSS, no script, no
//! external URL) from a backtest's saved result (`kimp backtest --save`) and, optionally,
//! the store's local ILP files (the `kimp` table: the live premium series).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::cli::SavedRun;
use super::metrics::{PremiumPoint, RunMetrics};
use super::timefmt::{fmt_date, fmt_utc};

/// Write an HTML report of a saved backtest (and/or the store's ILP files).
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// A result written by `kimp backtest --save FILE` (or its `--json` line).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Directory of the store's local ILP files (`*.ilp`); its `kimp` table is charted.
    #[arg(long)]
    pub ilp: Option<PathBuf>,
    /// Output HTML file.
    #[arg(long, default_value = "report.html")]
    pub out: PathBuf,
}

const W: f64 = 900.0;
const H: f64 = 260.0;
const PAD: f64 = 48.0;
/// Left margin: room for the longest y label ([`axis_labels`] keeps them to 8 characters).
const PAD_L: f64 = 64.0;

/// Labels for the y-axis ticks `vals`: large values in k/M, and as many decimals as it
/// takes for neighbouring ticks to read differently (a range of 0.04 % is not five
/// "-0.0 %"); no negative zero.
pub fn axis_labels(vals: &[f64], unit: &str) -> Vec<String> {
    let big = vals.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let (div, suffix) = if big >= 1e9 {
        (1e9, "G")
    } else if big >= 1e6 {
        (1e6, "M")
    } else if big >= 1e4 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let one = |v: f64, d: usize| {
        let t = format!("{:.*}", d, v / div);
        let t = if t.trim_start_matches('-').bytes().all(|b| b == b'0' || b == b'.') {
            t.trim_start_matches('-').to_string()
        } else {
            t
        };
        format!("{t}{suffix}{unit}")
    };
    // Enough decimals for two significant digits of a tick step, more if labels collide.
    let step = vals.windows(2).map(|w| (w[1] - w[0]).abs() / div).fold(f64::MAX, f64::min);
    let d_min = if step.is_finite() && step > 0.0 {
        (1.0 - step.log10().floor()).clamp(0.0, 6.0)
    } else {
        0.0
    };
    let mut best = Vec::new();
    for d in d_min as usize..=6 {
        best = vals.iter().map(|&v| one(v, d)).collect();
        if best.windows(2).all(|w| w[0] != w[1]) {
            break;
        }
    }
    best
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One line of a chart: name, colour, points.
type Line<'a> = (&'a str, &'a str, Vec<(f64, f64)>);
/// A marker: x, y, colour, pointing up.
type Mark<'a> = (f64, f64, &'a str, bool);

/// A line chart of `series` with `marks`.
fn chart(title: &str, series: &[Line<'_>], marks: &[Mark<'_>], y_unit: &str) -> String {
    let pts =
        series.iter().flat_map(|s| s.2.iter().copied()).chain(marks.iter().map(|m| (m.0, m.1)));
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in pts {
        if x.is_finite() && y.is_finite() {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    let mut s = format!("<h3>{}</h3>", esc(title));
    if x0 > x1 {
        s.push_str("<p class=\"muted\">no data</p>");
        return s;
    }
    if x1 == x0 {
        x1 = x0 + 1.0;
    }
    if y1 == y0 {
        y0 -= 1.0;
        y1 += 1.0;
    }
    let sx = |x: f64| PAD_L + (x - x0) / (x1 - x0) * (W - PAD_L - PAD);
    let sy = |y: f64| H - PAD / 2.0 - (y - y0) / (y1 - y0) * (H - PAD);
    let _ = write!(
        s,
        "<svg viewBox=\"0 0 {W} {H}\" width=\"100%\" role=\"img\" aria-label=\"{}\">",
        esc(title)
    );
    let _ = write!(
        s,
        "<rect x=\"{PAD_L}\" y=\"{}\" width=\"{}\" height=\"{}\" class=\"frame\"/>",
        PAD / 2.0,
        W - PAD_L - PAD,
        H - PAD
    );
    let ticks: Vec<f64> = (0..=4).map(|k| y0 + (y1 - y0) * k as f64 / 4.0).collect();
    for (&y, label) in ticks.iter().zip(axis_labels(&ticks, y_unit)) {
        let _ = write!(
            s,
            "<line x1=\"{PAD_L}\" x2=\"{}\" y1=\"{1:.1}\" y2=\"{1:.1}\" class=\"grid\"/><text x=\"{2}\" y=\"{3:.1}\" class=\"ax\" text-anchor=\"end\">{4}</text>",
            W - PAD,
            sy(y),
            PAD_L - 4.0,
            sy(y) + 4.0,
            esc(&label)
        );
    }
    for k in 0..=4 {
        let x = x0 + (x1 - x0) * k as f64 / 4.0;
        let label = if x1 - x0 > 3.0 * 86_400_000.0 {
            fmt_date(x as i64)
        } else {
            fmt_utc(x as i64)[5..16].replace('T', " ")
        };
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" class=\"ax\" text-anchor=\"middle\">{}</text>",
            sx(x),
            H - 4.0,
            label
        );
    }
    if y0 < 0.0 && y1 > 0.0 {
        let _ = write!(
            s,
            "<line x1=\"{PAD_L}\" x2=\"{}\" y1=\"{1:.1}\" y2=\"{1:.1}\" class=\"zero\"/>",
            W - PAD,
            sy(0.0)
        );
    }
    for (i, (name, colour, p)) in series.iter().enumerate() {
        let mut d = String::with_capacity(p.len() * 14);
        let mut pen = false;
        for &(x, y) in p {
            if !(x.is_finite() && y.is_finite()) {
                pen = false;
                continue;
            }
            let _ = write!(d, "{}{:.1},{:.1}", if pen { " L" } else { " M" }, sx(x), sy(y));
            pen = true;
        }
        let _ =
            write!(s, "<path d=\"{d}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.2\"/>");
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" fill=\"{colour}\" class=\"ax\">{}</text>",
            PAD_L + 6.0 + 110.0 * i as f64,
            PAD / 2.0 - 6.0,
            esc(name)
        );
    }
    for &(x, y, colour, up) in marks {
        let (cx, cy) = (sx(x), sy(y));
        let pts = if up {
            format!(
                "{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}",
                cx,
                cy - 6.0,
                cx - 5.0,
                cy + 4.0,
                cx + 5.0,
                cy + 4.0
            )
        } else {
            format!(
                "{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}",
                cx,
                cy + 6.0,
                cx - 5.0,
                cy - 4.0,
                cx + 5.0,
                cy - 4.0
            )
        };
        let _ = write!(s, "<polygon points=\"{pts}\" fill=\"{colour}\"/>");
    }
    s.push_str("</svg>");
    s
}

/// At most `n` points: the series thinned evenly (first and last kept).
fn thin<T: Copy>(v: &[T], n: usize) -> Vec<T> {
    if v.len() <= n || n < 2 {
        return v.to_vec();
    }
    (0..n).map(|i| v[i * (v.len() - 1) / (n - 1)]).collect()
}

fn heat(rows: &SavedRun) -> String {
    let mut s = String::from("<h3>Sweep: net PnL by parameters</h3>");
    let keys = &rows.sweep_keys;
    let cells: Vec<(f64, f64, Option<f64>)> = rows
        .sweep
        .iter()
        .map(|r| {
            let a = r.params.first().map_or(0.0, |p| p.1);
            let b = r.params.get(1).map_or(0.0, |p| p.1);
            (a, b, r.metrics.as_ref().map(|m| m.net_pnl_krw))
        })
        .collect();
    let mut xs: Vec<f64> = cells.iter().map(|c| c.0).collect();
    let mut ys: Vec<f64> = cells.iter().map(|c| c.1).collect();
    for v in [&mut xs, &mut ys] {
        v.sort_by(f64::total_cmp);
        v.dedup();
    }
    let (lo, hi) = cells
        .iter()
        .filter_map(|c| c.2)
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let (cw, ch) = ((W - 160.0) / xs.len().max(1) as f64, 28.0);
    let h = 60.0 + ch * ys.len() as f64;
    let _ = write!(s, "<svg viewBox=\"0 0 {W} {h}\" width=\"100%\">");
    for c in &cells {
        let xi = xs.iter().position(|&x| x == c.0).unwrap_or(0) as f64;
        let yi = ys.iter().position(|&y| y == c.1).unwrap_or(0) as f64;
        let (fill, label) = match c.2 {
            Some(v) => {
                // Red for losses, green for gains, by magnitude against the largest.
                let m = lo.abs().max(hi.abs()).max(1.0);
                let k = (v.abs() / m).clamp(0.0, 1.0);
                let fill = if v >= 0.0 {
                    format!(
                        "rgb({},{},{})",
                        (255.0 - 200.0 * k) as u8,
                        (255.0 - 90.0 * k) as u8,
                        (255.0 - 200.0 * k) as u8
                    )
                } else {
                    format!(
                        "rgb({},{},{})",
                        (255.0 - 40.0 * k) as u8,
                        (255.0 - 200.0 * k) as u8,
                        (255.0 - 200.0 * k) as u8
                    )
                };
                (fill, format!("{:.0}k", v / 1e3))
            }
            None => ("#ddd".to_string(), "invalid".to_string()),
        };
        let (x, y) = (140.0 + xi * cw, 20.0 + yi * ch);
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{ch}\" fill=\"{fill}\" stroke=\"#fff\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"ax\" text-anchor=\"middle\">{label}</text>",
            cw,
            x + cw / 2.0,
            y + 18.0
        );
    }
    for (i, x) in xs.iter().enumerate() {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"ax\" text-anchor=\"middle\">{x}</text>",
            140.0 + (i as f64 + 0.5) * cw,
            h - 24.0
        );
    }
    for (i, y) in ys.iter().enumerate() {
        let _ = write!(
            s,
            "<text x=\"132\" y=\"{:.1}\" class=\"ax\" text-anchor=\"end\">{y}</text>",
            20.0 + i as f64 * ch + 18.0
        );
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" class=\"ax\" text-anchor=\"middle\">{}</text><text x=\"4\" y=\"14\" class=\"ax\">{}</text></svg>",
        W / 2.0,
        h - 6.0,
        esc(keys.first().map_or("", |k| k.as_str())),
        esc(keys.get(1).map_or("(one key)", |k| k.as_str()))
    );
    s
}

fn metrics_table(m: &RunMetrics) -> String {
    let rows = [
        ("Period", format!("{} .. {}", fmt_utc(m.first_ms), fmt_utc(m.last_ms))),
        ("Pairs closed (open at end)", format!("{} ({})", m.pairs, m.open_pairs_at_end)),
        ("Net PnL", format!("{:.0} KRW ({:+.3} %)", m.net_pnl_krw, m.return_pct)),
        (
            "Premium change / FX / fees / funding",
            format!(
                "{:.0} / {:.0} / {:.0} / {:.0} KRW",
                m.pnl_premium_krw,
                m.pnl_fx_krw,
                m.pnl_fees_krw,
                m.funding_krw - m.funding_open_krw
            ),
        ),
        ("Unrealised (open pairs at mid)", format!("{:.0} KRW", m.unrealized_pnl_krw)),
        (
            "Fees paid (closed pairs + open pairs)",
            format!(
                "{:.0} KRW ({:.0} + {:.0})",
                m.fees_krw,
                m.fees_krw - m.fees_open_krw,
                m.fees_open_krw
            ),
        ),
        ("Sharpe / Sortino", m.ratios_text()),
        ("Max drawdown", format!("{:.3} % ({:.0} KRW)", m.max_drawdown_pct, m.max_drawdown_krw)),
        ("Win rate", m.win_text()),
        ("Holding avg / max", format!("{:.1} h / {:.1} h", m.avg_holding_h, m.max_holding_h)),
        ("Max unhedged exposure", format!("{:.0} KRW", m.max_unhedged_krw)),
        (
            "Turnover",
            format!(
                "{:.0} KRW ({:.2}x capital {:.0})",
                m.turnover_krw, m.turnover_x, m.capital_krw
            ),
        ),
        ("Events / run time", format!("{} / {:.1} ms", m.events, m.elapsed_ms)),
    ];
    let mut s = String::from("<table>");
    for (k, v) in rows {
        let _ = write!(s, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    }
    s.push_str("</table>");
    s
}

/// Premium samples from the store's ILP files (`kimp` table lines).
pub fn read_ilp_premium(dir: &Path) -> anyhow::Result<Vec<PremiumPoint>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ilp"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    let mut coins: Vec<String> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        for line in text.lines().filter(|l| l.starts_with("kimp,") || l.starts_with("kimp ")) {
            let mut parts = line.rsplitn(2, ' ');
            let (Some(ts), Some(rest)) = (parts.next(), parts.next()) else { continue };
            let Some((tags, fields)) = rest.split_once(' ') else { continue };
            let coin =
                tags.split(',').find_map(|t| t.strip_prefix("coin=")).unwrap_or("?").to_string();
            let ci = coins.iter().position(|c| *c == coin).unwrap_or_else(|| {
                coins.push(coin);
                coins.len() - 1
            });
            let field = |k: &str| {
                fields
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                    .and_then(|v| v.trim_end_matches('i').parse::<f64>().ok())
            };
            let Ok(ts) = ts.trim().parse::<i64>() else { continue };
            out.push(PremiumPoint {
                t: super::timefmt::epoch_to_ms(ts),
                coin: ci as u16,
                mid: field("mid_bps").unwrap_or(f64::NAN),
                sell: field("sell_bps").unwrap_or(f64::NAN),
                buy: field("buy_bps").unwrap_or(f64::NAN),
            });
        }
    }
    out.sort_by_key(|p| p.t);
    Ok(out)
}

/// Renders the report.
pub fn render(run: Option<&SavedRun>, live: &[PremiumPoint], notes: &[String]) -> String {
    let mut h = String::from(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>kimp backtest report</title><style>body{font:14px system-ui,sans-serif;margin:24px;max-width:960px;color:#222}table{border-collapse:collapse;margin:8px 0}th,td{border-bottom:1px solid #ddd;padding:3px 10px;text-align:left;font-weight:normal}th{color:#555}.muted{color:#888}.frame{fill:#fcfcfc;stroke:#ccc}.grid{stroke:#eee}.zero{stroke:#999;stroke-dasharray:4 3}.ax{font-size:11px;fill:#555}</style></head><body><h1>kimp backtest report</h1>",
    );
    for n in notes {
        let _ = write!(h, "<p class=\"muted\">{}</p>", esc(n));
    }
    if let Some(r) = run {
        let _ = write!(
            h,
            "<p>Config <code>{}</code>, mode {}, coins {}.</p>",
            esc(&r.config),
            esc(&r.mode),
            esc(&r.coins.join(", "))
        );
        h.push_str(&metrics_table(&r.result.metrics));
        h.push_str("<h3>Assumptions</h3><ul>");
        for a in &r.assumptions {
            let _ = write!(h, "<li>{}</li>", esc(a));
        }
        h.push_str("</ul>");
        let series = r.result.series.clone().unwrap_or_default();
        for (c, name) in r.coins.iter().enumerate() {
            let p: Vec<&PremiumPoint> =
                series.premium.iter().filter(|p| p.coin as usize == c).collect();
            let p = thin(&p, 3_000);
            let mut marks = Vec::new();
            for t in r.result.pairs.iter().filter(|t| t.coin as usize == c) {
                marks.push((t.opened_ms as f64, t.entry_bps, "#1a7f37", true));
                if let (Some(x), Some(y)) = (t.exit_ms, t.exit_bps) {
                    marks.push((x as f64, y, "#cf222e", false));
                }
            }
            h.push_str(&chart(
                &format!("{name}: premium (bps) with entries ▲ and exits ▼"),
                &[
                    ("mid", "#888", p.iter().map(|q| (q.t as f64, q.mid)).collect()),
                    ("sell (exec.)", "#0969da", p.iter().map(|q| (q.t as f64, q.sell)).collect()),
                    ("buy (exec.)", "#bf8700", p.iter().map(|q| (q.t as f64, q.buy)).collect()),
                ],
                &marks,
                "",
            ));
        }
        let eq = thin(&series.equity, 3_000);
        h.push_str(&chart(
            "Equity: net PnL (KRW)",
            &[("net PnL", "#0969da", eq.iter().map(|&(t, v)| (t as f64, v)).collect())],
            &[],
            "",
        ));
        let cap = r.result.metrics.capital_krw;
        let mut peak = f64::MIN;
        let dd: Vec<(f64, f64)> = eq
            .iter()
            .map(|&(t, v)| {
                peak = peak.max(cap + v);
                (t as f64, if peak > 0.0 { -(peak - cap - v) / peak * 100.0 } else { 0.0 })
            })
            .collect();
        h.push_str(&chart("Drawdown (%)", &[("drawdown", "#cf222e", dd)], &[], "%"));
        if !r.sweep.is_empty() {
            h.push_str(&heat(r));
        }
        if !r.walk_forward.is_empty() {
            h.push_str("<h3>Walk-forward</h3><table><tr><th>train</th><th>test</th><th>chosen</th><th>train net</th><th>test pairs</th><th>test net</th></tr>");
            for w in &r.walk_forward {
                let _ = write!(
                    h,
                    "<tr><td>{} .. {}</td><td>{} .. {}</td><td>{}</td><td>{:.0}</td><td>{}</td><td>{:.0}</td></tr>",
                    fmt_date(w.train.0),
                    fmt_date(w.train.1),
                    fmt_date(w.test.0),
                    fmt_date(w.test.1),
                    esc(&super::sweep::fmt_point(&w.chosen)),
                    w.train_net_pnl_krw,
                    w.result.pairs,
                    w.result.net_pnl_krw
                );
            }
            h.push_str("</table>");
        }
        if !r.result.pairs.is_empty() {
            h.push_str("<h3>Pairs</h3><table><tr><th>pair</th><th>opened</th><th>entry bps</th><th>closed</th><th>exit bps</th><th>net KRW</th><th>premium</th><th>fx</th><th>fees</th><th>funding</th></tr>");
            for p in r.result.pairs.iter().take(500) {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td></tr>",
                    p.pair,
                    fmt_utc(p.opened_ms),
                    p.entry_bps,
                    p.closed_ms.map_or("open".into(), fmt_utc),
                    p.exit_bps.map_or("-".into(), |b| format!("{b:.1}")),
                    p.pnl_net,
                    p.pnl_premium,
                    p.pnl_fx,
                    p.pnl_fees,
                    p.pnl_funding
                );
            }
            h.push_str("</table>");
        }
    }
    if !live.is_empty() {
        let p = thin(live, 3_000);
        h.push_str(&chart(
            "Store (ILP `kimp` table): premium (bps)",
            &[
                ("mid", "#888", p.iter().map(|q| (q.t as f64, q.mid)).collect()),
                ("sell (exec.)", "#0969da", p.iter().map(|q| (q.t as f64, q.sell)).collect()),
                ("buy (exec.)", "#bf8700", p.iter().map(|q| (q.t as f64, q.buy)).collect()),
            ],
            &[],
            "",
        ));
    }
    h.push_str("</body></html>\n");
    h
}

/// `kimp report`.
pub fn run_report(a: ReportArgs) -> anyhow::Result<()> {
    let mut notes = Vec::new();
    let run = match &a.input {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            let last = text.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or("");
            match serde_json::from_str::<SavedRun>(&text) {
                Ok(r) if r.kind == "backtest" => Some(r),
                _ => {
                    // A `--json` line: metrics only.
                    let m: RunMetrics = serde_json::from_str(last).map_err(|e| {
                        anyhow::anyhow!("{}: not a saved backtest or --json line: {e}", p.display())
                    })?;
                    notes.push("Input was a --json metrics line: no series, pairs or sweep (use --save for those).".into());
                    Some(SavedRun {
                        kind: "backtest".into(),
                        result: super::metrics::RunResult { metrics: m, ..Default::default() },
                        ..Default::default()
                    })
                }
            }
        }
        None => None,
    };
    let live = match &a.ilp {
        Some(d) => read_ilp_premium(d)?,
        None => Vec::new(),
    };
    anyhow::ensure!(
        run.is_some() || !live.is_empty(),
        "nothing to report: give --input and/or --ilp"
    );
    let html = render(run.as_ref(), &live, &notes);
    std::fs::write(&a.out, html).map_err(|e| anyhow::anyhow!("{}: {e}", a.out.display()))?;
    println!("wrote {}", a.out.display());
    Ok(())
}
