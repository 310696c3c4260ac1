//! Plain-text answers from the status board (no markup: nothing to escape, nothing to
//! mis-render).

use std::fmt::Write;

use kimp_core::action::TradingState;
use kimp_core::instrument::{InstrumentId, Venue};
use kimp_core::units::{DecimalDp, Krw, Qty};

use crate::labels;
use crate::status::{Board, StatusBoard};
use crate::store::QuestDbState;

fn krw(k: Krw) -> String {
    let whole = DecimalDp(k.0, 0).to_string();
    let (sign, digits) = whole.strip_prefix('-').map_or(("", whole.as_str()), |d| ("-", d));
    let mut out = String::with_capacity(digits.len() + 4);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out} KRW")
}

fn qty(q: Qty) -> DecimalDp {
    DecimalDp(q.0, 8)
}

fn ns(v: u64) -> String {
    match v {
        0..1_000 => format!("{v} ns"),
        1_000..1_000_000 => format!("{:.1} us", v as f64 / 1e3),
        _ => format!("{:.1} ms", v as f64 / 1e6),
    }
}

fn trading(t: Option<TradingState>) -> String {
    match t {
        None => "unknown (no report yet)".into(),
        Some(TradingState::Halted(set)) => format!("HALTED ({})", labels::halt_reasons(set, ", ")),
        Some(s) => labels::trading_state(s).into(),
    }
}

/// `/status`.
pub fn status(sb: &StatusBoard) -> String {
    let b = sb.snapshot();
    let mut s = format!("Trading: {}\n", trading(b.trading));
    if let Some(st) = b.status {
        let _ = writeln!(
            s,
            "Open pairs: {}  live orders: {}  unknown orders: {}  unhedged: {}",
            st.open_pairs, st.live_orders, st.unknown_orders, st.unhedged_pairs
        );
        let _ = writeln!(s, "Events: {}", st.events);
    } else {
        let _ = writeln!(s, "Open pairs: {}", b.open_pairs.len());
    }
    let _ = writeln!(
        s,
        "Realized: {} over {} pairs (today {})",
        krw(b.pnl.realized.net()),
        b.pnl.closed,
        krw(b.pnl.today)
    );
    let up = sb.uptime().as_secs();
    let _ = write!(s, "Uptime: {}h{:02}m", up / 3600, up / 60 % 60);
    s
}

/// The line `kimp run` logs every `status_interval_s`: state, premium per coin, open
/// pairs, PnL today, feed ages.
pub fn status_line(sb: &StatusBoard) -> String {
    let b = sb.snapshot();
    let n = sb.names();
    let mut premium = Vec::new();
    for i in 0..n.coin_count() {
        let coin = n.coin(i as u16);
        match b.kimp.get(i).copied().flatten() {
            None => premium.push(format!("{coin} none yet")),
            Some(k) => {
                let age = b.now.0.saturating_sub(k.ts.0) / 1_000_000;
                // A coin whose books are stale gets no new samples: say how old this one is.
                let old =
                    if age >= 5_000 { format!(" ({} s old)", age / 1_000) } else { String::new() };
                premium.push(format!("{coin} {}{old}", labels::bps(k.mid_bps)));
            }
        }
    }
    let feeds: Vec<String> = b
        .feeds
        .iter()
        .map(|f| match (f.open, f.age_ms) {
            (false, None) => format!("{} connecting", f.name),
            (false, Some(_)) => format!("{} DOWN", f.name),
            (true, _) if f.quiet => format!("{} up", f.name),
            (true, None) => format!("{} no data yet", f.name),
            (true, Some(a)) => format!("{} {}", f.name, age(a)),
        })
        .collect();
    format!(
        "state {}; premium {}; open pairs {}; PnL today {} ({} pairs); feed ages {}",
        trading(b.trading),
        premium.join(", "),
        b.open_pairs.len(),
        krw(b.pnl.today),
        b.pnl.today_closed,
        if feeds.is_empty() { "none reported yet".to_string() } else { feeds.join(", ") }
    )
}

fn age(ms: u64) -> String {
    if ms < 10_000 { format!("{ms} ms") } else { format!("{} s", ms / 1_000) }
}

/// `/position`.
pub fn position(sb: &StatusBoard) -> String {
    let b = sb.snapshot();
    let n = sb.names();
    if b.open_pairs.is_empty() {
        return "No open pairs.".into();
    }
    let mut s = String::new();
    for p in b.open_pairs.values() {
        let _ = writeln!(
            s,
            "#{} {} {} {}: upbit {} / binance {}, entry {} at fx {}",
            p.pair,
            n.coin(p.coin),
            labels::direction(p.direction),
            labels::pair_state(p.to),
            qty(p.pos_u),
            qty(p.pos_b),
            labels::bps(p.entry_premium_bps),
            DecimalDp(p.fx_entry.0, 2)
        );
    }
    s.pop();
    s
}

/// `/kimp [coin]`: the latest premium of one coin or all.
pub fn kimp(sb: &StatusBoard, coin: Option<u16>) -> String {
    let b = sb.snapshot();
    let n = sb.names();
    let mut s = String::new();
    for (i, k) in b.kimp.iter().enumerate() {
        let Some(k) = k else { continue };
        if coin.is_some_and(|c| c as usize != i) {
            continue;
        }
        let age = b.now.0.saturating_sub(k.ts.0) / 1_000_000;
        let _ = writeln!(
            s,
            "{}: mid {:.1} bps, sell {:.1}, buy {:.1} (qty {}); fx {} {}; funding {:.4}%; age {} ms",
            n.coin(k.coin),
            k.mid_bps,
            k.sell_bps,
            k.buy_bps,
            qty(k.qty),
            DecimalDp(k.fx.0, 2),
            labels::fx_source(k.fx_source),
            k.funding_e8 as f64 / 1e6,
            age
        );
    }
    if s.is_empty() {
        return "No premium samples yet.".into();
    }
    s.pop();
    s
}

/// `/pnl`.
pub fn pnl(sb: &StatusBoard) -> String {
    let p = sb.snapshot().pnl;
    let r = p.realized;
    format!(
        "Realized net: {} over {} pairs\n  premium {}, fx {}, fees {}, funding {}\nToday: {} ({} pairs)",
        krw(r.net()),
        p.closed,
        krw(r.premium),
        krw(r.fx),
        krw(r.fees),
        krw(r.funding),
        krw(p.today),
        p.today_closed
    )
}

/// `/latency`.
pub fn latency(sb: &StatusBoard) -> String {
    let b = sb.snapshot();
    if b.latency.is_empty() {
        return "No latency samples yet.".into();
    }
    let mut s = String::new();
    for l in b.latency.values() {
        let _ = writeln!(
            s,
            "{}: p50 {}, p99 {}, p99.9 {}, max {} (n={})",
            l.stage,
            ns(l.p50_ns),
            ns(l.p99_ns),
            ns(l.p999_ns),
            ns(l.max_ns),
            l.count
        );
    }
    s.pop();
    s
}

fn venues(b: &Board, s: &mut String) {
    for v in [Venue::Upbit, Venue::Binance, Venue::BinanceSpot] {
        let h = &b.venues[v.idx()];
        if !h.connected && h.reconnects == 0 && h.api_errors_in_row == 0 && h.last_error.is_none() {
            continue;
        }
        let _ = writeln!(
            s,
            "{}: {}, API errors in a row {}, reconnects {}{}",
            v.name(),
            if h.connected { "connected" } else { "DISCONNECTED" },
            h.api_errors_in_row,
            h.reconnects,
            h.last_error.as_deref().map(|e| format!(", last error: {e}")).unwrap_or_default()
        );
    }
}

/// `/health`: venues, books, the store.
pub fn health(sb: &StatusBoard) -> String {
    let b = sb.snapshot();
    let n = sb.names();
    let mut s = String::new();
    venues(&b, &mut s);
    for (id, h) in &b.books {
        let inst = InstrumentId(*id);
        let _ = writeln!(
            s,
            "{} {}: age {} ms, gaps {}, {}",
            n.venue_name(inst),
            n.symbol(inst),
            h.age_ms,
            h.gaps,
            if h.stale { "STALE" } else { "ok" }
        );
    }
    if let Some(st) = sb.store() {
        use std::sync::atomic::Ordering::Relaxed;
        let q = match st.questdb() {
            QuestDbState::Off => "off (local files)",
            QuestDbState::Up => "up",
            QuestDbState::Down => "DOWN (buffering)",
        };
        let _ = writeln!(
            s,
            "Store: QuestDB {q}, spool {:.1} MiB, telemetry dropped {}, record queue full {}",
            st.spool_bytes.load(Relaxed) as f64 / (1 << 20) as f64,
            st.telemetry_dropped.load(Relaxed) + st.spool_dropped_rows.load(Relaxed),
            st.critical_full.load(Relaxed)
        );
    }
    if s.is_empty() {
        return "No health reports yet.".into();
    }
    s.pop();
    s
}

/// The daily summary pushed by the alerts thread.
pub fn daily_summary(sb: &StatusBoard) -> String {
    let b = sb.snapshot();
    format!(
        "Daily summary\nTrading: {}\nToday: {} ({} pairs closed)\nSince start: {} ({} pairs)\nOpen pairs: {}\n{}",
        trading(b.trading),
        krw(b.pnl.today),
        b.pnl.today_closed,
        krw(b.pnl.realized.net()),
        b.pnl.closed,
        b.open_pairs.len(),
        kimp(sb, None)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_names_state_premium_pairs_pnl_and_feeds() {
        use crate::status::FeedHealth;
        use kimp_core::action::{HaltReason, KimpSample};
        use kimp_core::units::{Nanos, Price};
        let sb = StatusBoard::new(std::sync::Arc::new(crate::names::Names::from_markets(
            &kimp_core::testkit::btc_markets(),
        )));
        let feed =
            |name, open, age_ms, quiet| FeedHealth { name, open, age_ms, reconnects: 0, quiet };
        sb.set_kimp(KimpSample {
            coin: 0,
            ts: Nanos(1_000_000_000),
            mid_bps: 251.26,
            sell_bps: 240.0,
            buy_bps: -260.0,
            fx: Price(1_400 * 100_000_000),
            fx_source: kimp_core::event::FxSource::UpbitUsdt,
            qty: Qty(1),
            funding_e8: 0,
        });
        sb.on_report(
            Nanos(1_200_000_000),
            Some(TradingState::halted(HaltReason::Operator)),
            &[
                feed("upbit", true, Some(12), false),
                feed("binance user", true, None, true),
                feed("binance public", false, Some(9_000), false),
                feed("binance market", false, None, false),
            ],
        );
        assert_eq!(
            status_line(&sb),
            "state HALTED (operator); premium BTC 251.3 bps; open pairs 0; PnL today 0 KRW \
             (0 pairs); feed ages upbit 12 ms, binance user up, binance public DOWN, binance market connecting"
        );
    }

    #[test]
    fn krw_has_thousands_separators() {
        assert_eq!(krw(Krw(1_234_567 * 100_000_000)), "1,234,567 KRW");
        assert_eq!(krw(Krw(-12_000 * 100_000_000)), "-12,000 KRW");
        assert_eq!(krw(Krw(999 * 100_000_000)), "999 KRW");
        assert_eq!(ns(1_500), "1.5 us");
    }

    #[test]
    fn a_halt_shows_every_active_reason() {
        use kimp_core::action::{HaltReason, HaltSet};
        let set = HaltSet::of(HaltReason::OrphanHard).with(HaltReason::OrderRate);
        assert_eq!(trading(Some(TradingState::Halted(set))), "HALTED (order_rate, orphan_hard)");
        assert_eq!(trading(Some(TradingState::halted(HaltReason::Mismatch))), "HALTED (mismatch)");
    }
}
