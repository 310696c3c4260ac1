//! Bad venue input through the real runtime (issue #9, "bad input"; RELIABILITY.md I1,
//! I3, I6, I7): the simulator's `bad_input` scenario sends, before some of its real
//! messages, a malformed, truncated, oversized or hostile copy — invalid JSON, two thirds
//! of the message, 100 Upbit units or 6,000 Binance levels, a 256 KiB symbol, a binary
//! frame of non-UTF-8 bytes, a negative / `NaN` / `1e400` / 40-digit price, a price of
//! the wrong type, an unknown symbol, 100,000 nested arrays, valid JSON of the wrong
//! shape — on the Upbit and Binance market-data streams, the Binance user stream and in
//! REST replies. The premium is swung so pairs open and close meanwhile.
//!
//! What must hold: no panic and the loop keeps running; every bad frame is refused and
//! counted by the parser of its stream (the runtime's count equals the number injected,
//! so none was taken for a book or a fill — a corrupted copy applied before the real
//! message would also have made the real one a "duplicate"); unreadable REST replies
//! are counted and the orders they answered are resolved by query; no fill lost, no
//! client id twice, journal = venue positions (`verdict`). Figures: `FIGURE bad_input`.

use std::time::Duration;

use kimp::sim::bad_input::{Stream, Variant};
use kimp_core::action::Alert;
use kimp_tests::*;

#[test]
fn bad_venue_input_is_refused_counted_and_nothing_is_lost() {
    // Bad frames from 2 s to 14 s after the simulator starts (the runtime has read the
    // exchange rules and reconciled by then), then 3 s clean so every injected frame has
    // been read before the counts are compared.
    let sc = sim_config(11, 1.0, &["bad_input:p=0.2,value=0.25,after=2000,for=12000"]);
    let e = E2e::start("bad_input", sc, |_| {});
    assert!(e.wait_active(20.0), "never reconciled");
    e.cycle_premium(10, Duration::from_millis(1_500));
    let in_window = e.sim.with_world(|w| w.now_ms - w.start_ms);
    if in_window < 17_000 {
        std::thread::sleep(Duration::from_millis(17_000 - in_window));
    }
    let mut f = e.finish();
    let injected = f.sim.stats();
    let counters = f.log.counters;
    let bad_rest = f.tl.orders.stats.bad_responses;
    let malformed = f.log.counters.malformed;
    if f.tl.core.engine.live_orders().count() > 0 {
        // Orders still unresolved at shutdown are resolved by a restart (never a resend).
        let Finished { tl, sim, dir, .. } = f;
        drop(tl);
        let e = E2e::start_on(sim, dir, |_| {});
        assert!(e.wait_reconciled(20.0), "restart never reconciled");
        f = e.finish();
        println!("FIGURE bad_input: restarted to resolve orders left in flight at shutdown");
    }
    let v = verdict(&f);
    let per = |s: Stream| injected.bad_frames[s.idx()];
    let variants: Vec<String> =
        Variant::ALL.iter().zip(injected.bad_variants).map(|(v, n)| format!("{v} {n}")).collect();
    println!(
        "FIGURE bad_input: injected upbit_md {} binance_md {} binance_user {} rest {} | refused \
         by the runtime: upbit_md {} binance_md {} binance_user {} (malformed {}) | unreadable \
         REST replies counted {} | variants [{}] | intents {} wire orders {} duplicates {} lost \
         fill qty {} gaps {} stale alerts {} ambiguous {} queries {} halts {:?} rejects {}",
        per(Stream::UpbitMd),
        per(Stream::BinanceMd),
        per(Stream::BinanceUser),
        per(Stream::Rest),
        counters.feed_errors[0],
        counters.feed_errors[1],
        counters.feed_errors[2],
        malformed,
        bad_rest,
        variants.join(", "),
        v.intents,
        v.wire_orders,
        v.duplicates,
        v.lost_fill_qty,
        f.tl.core.engine.stats().gaps,
        f.log.count(|a| matches!(a, Alert::StaleBook(_))),
        f.tl.orders.stats.ambiguous,
        f.tl.orders.stats.queries,
        f.log
            .alerts
            .iter()
            .filter_map(|(_, a)| if let Alert::Halted(r) = a {
                Some(format!("{r:?}"))
            } else {
                None
            })
            .collect::<std::collections::BTreeSet<_>>(),
        f.log.count(|a| matches!(a, Alert::Rejected { .. })),
    );
    // Every stream was hit, with every kind of bad frame.
    for s in [Stream::UpbitMd, Stream::BinanceMd, Stream::BinanceUser, Stream::Rest] {
        assert!(per(s) > 0, "no bad frame injected on {s:?}: {injected:?}");
    }
    assert!(injected.bad_variants.iter().all(|&n| n > 0), "a variant never ran: {variants:?}");
    // Every bad frame was refused and counted by its own parser: none became an event.
    assert_eq!(
        counters.feed_errors,
        [per(Stream::UpbitMd), per(Stream::BinanceMd), per(Stream::BinanceUser)],
        "refused frames per stream differ from the bad frames injected"
    );
    // Unreadable REST replies are counted (some bodies are read twice over: never fewer).
    assert!(bad_rest > 0, "no unreadable REST reply was counted");
    // Trading went on through it, and nothing was lost or sent twice (verdict checked
    // I1, I2, I3 and I7).
    assert!(v.intents >= 2, "trading stopped: {v:?}");
    assert_eq!(v.live_orders, 0);
    assert_hedged(&v);
    // The journal pre-allocates its segment: do not leave it in the temp dir.
    let _ = std::fs::remove_dir_all(&f.dir);
}
