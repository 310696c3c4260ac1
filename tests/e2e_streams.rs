//! Stream faults end to end (RELIABILITY.md R5 freeze, R7, R16), the real runtime against
//! the venue simulator on loopback:
//! - R5: a market-data feed that freezes — Upbit keeps delivering its last book with the
//!   old `timestamp`, Binance repeats its last depth event — must go stale after
//!   `book_age_ms_max` (StaleBook alert), allow no entry while frozen, and trade again
//!   when the feed moves;
//! - R7: every listen key expires and no new one is issued for 6 s: fills are found by
//!   REST (reply and queries) meanwhile, the runtime gets a new key and reconnects, no
//!   fill lost; figure: fill detection latency with and without the user stream;
//! - R16: the venue's clock 8 s ahead of (or behind) ours, beyond the 5 s `recvWindow`:
//!   the runtime signs with the server-time offset it measured, so no `-1021`.
//!
//! Figures are printed as `FIGURE <test> ...` lines (run with `--nocapture`).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kimp::runtime::record_codec::Entry;
use kimp_core::action::{Alert, Purpose, Record};
use kimp_core::event::{Control, RejectReason};
use kimp_core::instrument::InstrumentId;
use kimp_core::order::ClientId;
use kimp_tests::*;

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Simulated ms since the simulator started.
fn elapsed(e: &E2e) -> u64 {
    e.sim.with_world(|w| w.now_ms.saturating_sub(w.start_ms))
}

/// Sleeps until the simulator is `ms` into its run; returns that moment.
fn until(e: &E2e, ms: u64) -> Instant {
    loop {
        let el = elapsed(e);
        if el >= ms {
            return Instant::now();
        }
        std::thread::sleep(Duration::from_millis((ms - el).min(20)));
    }
}

/// Finishes the run; orders still unresolved are resolved by a restart on the same
/// journal (never a resend). Returns the first run (for figures: its journal times map
/// to wall time through its clock) and the final verdict.
fn finish(e: E2e, name: &str) -> (Finished, Verdict) {
    let f = e.finish();
    if f.tl.core.engine.live_orders().count() == 0 {
        let v = verdict(&f);
        return (f, v);
    }
    let first_journal = f.journal.clone();
    let first_clock = f.tl.clock;
    let Finished { tl, sim, dir, log, .. } = f;
    drop(tl);
    let e = E2e::start_on(sim, dir, |_| {});
    assert!(e.wait_reconciled(20.0), "{name}: restart never reconciled");
    let mut f = e.finish();
    println!("FIGURE {name}: restarted to resolve orders left in flight at shutdown");
    let v = verdict(&f);
    f.journal = first_journal;
    f.tl.clock = first_clock;
    f.log = log;
    (f, v)
}

/// Entry intents of the (first) run, with the wall time they were journaled at.
fn entries_at(f: &Finished) -> Vec<u64> {
    f.journal
        .iter()
        .filter_map(|(t, e)| match e {
            Entry::Record(Record::Intent { purpose: Purpose::Entry, .. }) => {
                Some(f.tl.clock.wall_ms(*t))
            }
            _ => None,
        })
        .collect()
}

fn inst_of(f: &Finished, symbol: &str) -> InstrumentId {
    let i = f.tl.core.markets.instruments.iter().position(|i| i.symbol.as_str() == symbol);
    InstrumentId(i.expect("instrument") as u16)
}

/// R5: freezes `venue`'s market data from 7 s for 6 s. Entries are stopped by the operator
/// while the premium is raised to 3.6 % (so the last books before the freeze show an
/// entry), resumed 1.5 s into the freeze: a frozen book that counted as fresh would be
/// traded at once.
fn freeze(venue: &str, symbol: &str) {
    const AFTER: u64 = 7_000;
    const FOR: u64 = 6_000;
    let name = format!("freeze_{venue}");
    let scenario = format!("freeze:venue={venue},after={AFTER},for={FOR}");
    let e = E2e::start(&name, sim_config(7, 1.0, &[&scenario]), |_| {});
    assert!(e.wait_active(20.0), "{name}: never reconciled");
    let start_wall = e.sim.with_world(|w| w.start_ms);
    e.control.send(Control::Stop).expect("control");
    std::thread::sleep(Duration::from_millis(300));
    e.set_premium(0.036);
    let frozen_at = until(&e, AFTER);
    until(&e, AFTER + 1_500);
    let resumed_wall = wall_ms();
    e.control.send(Control::Resume).expect("control");
    let thawed_at = until(&e, AFTER + FOR);
    let thawed_wall = start_wall + AFTER + FOR;
    // The feed moves again: entries resume (the premium is still 3.6 %).
    let intents_at_thaw = e.with_log(|l| l.counters.engine.intents);
    let resumed = wait_for(6.0, || e.with_log(|l| l.counters.engine.intents) > intents_at_thaw);
    let repeats = e.sim.stats().frozen_repeats;
    let (f, v) = finish(e, &name);
    let inst = inst_of(&f, symbol);
    let stale: Vec<Instant> = f
        .log
        .alerts
        .iter()
        .filter(|(_, a)| matches!(a, Alert::StaleBook(i) if *i == inst))
        .map(|(t, _)| *t)
        .filter(|t| *t >= frozen_at && *t <= thawed_at)
        .collect();
    let entries = entries_at(&f);
    let while_frozen = entries.iter().filter(|&&t| t >= resumed_wall && t < thawed_wall).count();
    let first_after = entries.iter().filter(|&&t| t >= thawed_wall).min().map(|t| t - thawed_wall);
    let detect_ms = stale.first().map(|t| t.duration_since(frozen_at).as_millis() as u64);
    println!(
        "FIGURE {name}: frozen repeats sent {repeats}; {symbol} stale alert {detect_ms:?} ms after \
         the freeze (book_age_ms_max {} ms); entries while frozen and active {while_frozen}; \
         freeze end → first entry {first_after:?} ms; intents {} duplicates {} lost fill qty {} \
         gaps {}",
        f.tl.core.engine.config().risk.book_age_ms_max,
        v.intents,
        v.duplicates,
        v.lost_fill_qty,
        f.tl.core.engine.stats().gaps,
    );
    assert!(repeats > 0, "the simulator never repeated an old book");
    assert!(!stale.is_empty(), "the frozen {symbol} book was never reported stale");
    assert_eq!(while_frozen, 0, "entered on a frozen {symbol} book");
    assert!(resumed && first_after.is_some(), "trading did not resume after the freeze");
    assert_hedged(&v);
    let _ = std::fs::remove_dir_all(&f.dir);
}

#[test]
fn a_frozen_upbit_feed_goes_stale_blocks_entries_and_recovers() {
    freeze("upbit", "KRW-BTC");
}

#[test]
fn a_frozen_binance_feed_goes_stale_blocks_entries_and_recovers() {
    freeze("binance", "BTCUSDT");
}

#[test]
fn listen_key_expiry_loses_no_fill_and_the_stream_comes_back() {
    // R7: at 6 s every listen key expires (`listenKeyExpired`, stream closed) and the venue
    // issues no new one until 12 s.
    const AFTER: u64 = 6_000;
    const FOR: u64 = 6_000;
    let name = "listen_key_expiry";
    let scenario = format!("listen_key_expiry:after={AFTER},for={FOR}");
    let e = E2e::start(name, sim_config(7, 1.0, &[&scenario]), |_| {});
    assert!(e.wait_active(20.0), "never reconciled");
    let start_wall = e.sim.with_world(|w| w.start_ms);
    let before = e.sim.with_world(|w| w.binance.listen_keys.keys().cloned().collect::<Vec<_>>());
    e.cycle_premium(12, Duration::from_millis(1_200));
    until(&e, AFTER + FOR + 2_000);
    // A key issued after the window, that is not the expired one.
    let after = e.sim.with_world(|w| w.binance.listen_keys.keys().cloned().collect::<Vec<_>>());
    let (f, v) = finish(e, name);
    // Detection latency of each Binance fill: journaled (first fill record) − executed.
    let mut first_fill: HashMap<ClientId, u64> = HashMap::new();
    for (t, en) in &f.journal {
        if let Entry::Record(Record::Fill { cl_id, .. }) = en {
            first_fill.entry(*cl_id).or_insert(f.tl.clock.wall_ms(*t));
        }
    }
    let (lo, hi) = (start_wall + AFTER, start_wall + AFTER + FOR);
    let (mut up, mut down) = (Vec::new(), Vec::new());
    f.sim.with_world(|w| {
        for o in w.binance.orders.iter().filter(|o| o.executed > 0) {
            let Some(cl) = ClientId::decode(o.client_id.as_bytes()) else { continue };
            let Some(&seen) = first_fill.get(&cl) else { continue };
            let lat = seen.saturating_sub(o.time);
            if (lo..hi).contains(&o.time) { down.push(lat) } else { up.push(lat) }
        }
    });
    up.sort_unstable();
    down.sort_unstable();
    let fig = |x: &[u64]| {
        format!(
            "n {} p50 {} p99 {} max {}",
            x.len(),
            pct(x, 50.0),
            pct(x, 99.0),
            x.iter().max().copied().unwrap_or(0)
        )
    };
    println!(
        "FIGURE {name}: Binance fill detection latency (journaled − executed, ms): user stream \
         up {} | stream down (REST reply and queries only) {} | new listen key after the window \
         {} | queries {} intents {} duplicates {} lost fill qty {}",
        fig(&up),
        fig(&down),
        !after.is_empty() && after.iter().all(|k| !before.contains(k)),
        f.tl.orders.stats.queries,
        v.intents,
        v.duplicates,
        v.lost_fill_qty,
    );
    assert!(!down.is_empty(), "no Binance fill while the user stream was down");
    assert!(
        !after.is_empty() && after.iter().all(|k| !before.contains(k)),
        "no new listen key after the window: before {before:?} after {after:?}"
    );
    assert_eq!(v.live_orders, 0);
    assert_hedged(&v);
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// R16: the venues' clocks `skew_ms` off ours.
fn skew(skew_ms: i64) {
    let name = format!("clock_skew_{skew_ms}");
    let scenario = format!("clock_skew:value={skew_ms}");
    let e = E2e::start(&name, sim_config(7, 1.0, &[&scenario]), |_| {});
    assert!(e.wait_active(20.0), "{name}: never reconciled");
    e.cycle_premium(6, Duration::from_millis(1_500));
    let (f, v) = finish(e, &name);
    let offset = f.tl.orders.binance_offset_ms;
    let rejects_1021 =
        f.log.count(|a| matches!(a, Alert::Rejected { reason: RejectReason::Other(-1021), .. }));
    let rejects = f.log.count(|a| matches!(a, Alert::Rejected { .. }));
    println!(
        "FIGURE {name}: measured server-time offset {offset} ms (error {} ms); -1021 rejects \
         {rejects_1021} (all rejects {rejects}); intents {} wire orders {} venue orders {} \
         duplicates {} lost fill qty {}",
        offset - skew_ms,
        v.intents,
        v.wire_orders,
        v.venue_orders,
        v.duplicates,
        v.lost_fill_qty,
    );
    assert!((offset - skew_ms).abs() < 1_000, "offset {offset} ms for a {skew_ms} ms skew");
    assert_eq!(rejects_1021, 0, "-1021 rejects");
    assert!(v.intents >= 2 && v.venue_orders >= 4, "signed orders did not trade: {v:?}");
    assert_eq!(v.live_orders, 0);
    assert_hedged(&v);
    let _ = std::fs::remove_dir_all(&f.dir);
}

#[test]
fn clock_skew_8s_ahead_beyond_the_receive_window_is_signed_with_the_offset() {
    skew(8_000);
}

#[test]
fn clock_skew_8s_behind_beyond_the_receive_window_is_signed_with_the_offset() {
    skew(-8_000);
}
