//! What the loop's reports say about its connections and books, as lines for people: a
//! connection that goes down and comes back (reconnect lines), and a book that went stale
//! and is traded on again (`feed recovered`). Runs on the bridge thread, never on the
//! loop's; time is passed in.

use std::time::Instant;

use kimp_core::instrument::InstrumentId;
use kimp_sidecars::names::Names;
use kimp_sidecars::status::FeedHealth;

use super::trading_loop::{FEED_NAMES, FeedReport};

/// Something worth a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedLine {
    /// A connection opened for the first time.
    Connected(&'static str),
    /// An open connection went down; it reconnects by itself.
    Down(&'static str),
    /// A connection opened again after being down (`down_ms` when the down was seen).
    Reconnected {
        /// Connection.
        name: &'static str,
        /// How long it was down.
        down_ms: Option<u64>,
        /// Reconnects of this connection so far.
        count: u64,
    },
}

/// Tracks connections across reports and stale books across alerts.
#[derive(Debug, Default)]
pub struct FeedWatch {
    prev: [FeedReport; 4],
    ever_open: [bool; 4],
    reconnects: [u64; 4],
    down_since: [Option<Instant>; 4],
    stale: Vec<(InstrumentId, Instant)>,
}

impl FeedWatch {
    /// A watch that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A report from the loop at `now`: the lines it calls for, and the connections for
    /// the status board (ages against `loop_now`, the report's engine time).
    pub fn on_report(
        &mut self,
        feeds: &[FeedReport; 4],
        loop_now: kimp_core::units::Nanos,
        now: Instant,
        lines: &mut Vec<FeedLine>,
    ) -> [FeedHealth; 4] {
        for (i, cur) in feeds.iter().enumerate() {
            let prev = self.prev[i];
            let name = FEED_NAMES[i];
            // A connection replaced by a new one (the user stream, per listen key) starts
            // its counters again.
            let replaced = cur.opens < prev.opens || cur.downs < prev.downs;
            let went_down = prev.open && (!cur.open || (!replaced && cur.downs > prev.downs));
            if went_down || (prev.open && replaced) {
                lines.push(FeedLine::Down(name));
                // Down and open again within one report: how long is not known.
                self.down_since[i] = (!cur.open).then_some(now);
            }
            let opened = if replaced { cur.opens > 0 } else { cur.opens > prev.opens };
            if opened && cur.open {
                if self.ever_open[i] {
                    self.reconnects[i] += 1;
                    let down_ms =
                        self.down_since[i].map(|t| now.duration_since(t).as_millis() as u64);
                    lines.push(FeedLine::Reconnected { name, down_ms, count: self.reconnects[i] });
                } else {
                    lines.push(FeedLine::Connected(name));
                }
                self.ever_open[i] = true;
                self.down_since[i] = None;
            }
            self.prev[i] = *cur;
        }
        std::array::from_fn(|i| {
            let f = feeds[i];
            FeedHealth {
                name: FEED_NAMES[i],
                open: f.open,
                age_ms: (f.last_data.0 > 0).then(|| loop_now.since(f.last_data).as_ms()),
                reconnects: self.reconnects[i],
                quiet: i == 3,
            }
        })
    }

    /// The engine reported `inst` stale at `now`.
    pub fn on_stale(&mut self, inst: InstrumentId, now: Instant) {
        if !self.stale.iter().any(|(i, _)| *i == inst) {
            self.stale.push((inst, now));
        }
    }

    /// A premium sample of `coin` arrived at `now`: the engine computes one only when
    /// every book the coin trades on is fresh, so each stale book of the coin is back;
    /// so is a stale book of no coin (the FX book: without fresh FX there is no sample
    /// either, when the premium uses it). Returns those books and how long each was stale.
    pub fn on_sample(
        &mut self,
        coin: u16,
        names: &Names,
        now: Instant,
    ) -> Vec<(InstrumentId, u64)> {
        let mut back = Vec::new();
        let legs = [
            names.leg_inst(coin, kimp_core::order::Leg::U),
            names.leg_inst(coin, kimp_core::order::Leg::B),
        ];
        let of_a_coin = |inst: InstrumentId| {
            (0..names.coin_count() as u16).any(|c| {
                names.leg_inst(c, kimp_core::order::Leg::U) == Some(inst)
                    || names.leg_inst(c, kimp_core::order::Leg::B) == Some(inst)
            })
        };
        self.stale.retain(|&(inst, since)| {
            let fresh = legs.contains(&Some(inst)) || !of_a_coin(inst);
            if fresh {
                back.push((inst, now.duration_since(since).as_millis() as u64));
            }
            !fresh
        });
        back
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kimp_core::units::Nanos;
    use std::time::Duration;

    fn rep(open: bool, opens: u64, downs: u64) -> FeedReport {
        FeedReport { open, opens, downs, last_data: Nanos(5_000_000) }
    }

    #[test]
    fn connects_downs_and_reconnects_are_lines_once_each() {
        let mut w = FeedWatch::new();
        let t = Instant::now();
        let mut l = Vec::new();
        let idle = rep(false, 0, 0);
        let h = w.on_report(&[rep(true, 1, 0), idle, idle, idle], Nanos(17_000_000), t, &mut l);
        assert_eq!(l, vec![FeedLine::Connected("upbit")]);
        assert_eq!(h[0].age_ms, Some(12));
        l.clear();
        w.on_report(&[rep(true, 1, 0), idle, idle, idle], Nanos(0), t, &mut l);
        assert!(l.is_empty(), "{l:?}");
        w.on_report(&[rep(false, 1, 3), idle, idle, idle], Nanos(0), t, &mut l);
        assert_eq!(l, vec![FeedLine::Down("upbit")]);
        l.clear();
        let t2 = t + Duration::from_millis(1_500);
        w.on_report(&[rep(true, 2, 3), idle, idle, idle], Nanos(0), t2, &mut l);
        assert_eq!(
            l,
            vec![FeedLine::Reconnected { name: "upbit", down_ms: Some(1_500), count: 1 }]
        );
        l.clear();
        // Down and up again between two reports.
        w.on_report(&[rep(true, 3, 4), idle, idle, idle], Nanos(0), t2, &mut l);
        assert_eq!(
            l,
            vec![
                FeedLine::Down("upbit"),
                FeedLine::Reconnected { name: "upbit", down_ms: None, count: 2 }
            ]
        );
        l.clear();
        // The user stream: dropped with its listen key, then a new connection (its
        // counters start again).
        let user = |r| [rep(true, 3, 4), idle, idle, r];
        w.on_report(&user(rep(true, 1, 0)), Nanos(0), t2, &mut l);
        assert_eq!(l, vec![FeedLine::Connected("binance user")]);
        l.clear();
        w.on_report(&user(idle), Nanos(0), t2, &mut l);
        assert_eq!(l, vec![FeedLine::Down("binance user")]);
        l.clear();
        w.on_report(&user(rep(true, 1, 0)), Nanos(0), t2, &mut l);
        assert_eq!(
            l,
            vec![FeedLine::Reconnected { name: "binance user", down_ms: Some(0), count: 1 }]
        );
    }

    #[test]
    fn a_stale_book_is_back_with_its_coins_next_sample() {
        let names = Names::from_markets(&kimp_core::testkit::btc_markets());
        let upbit = names.leg_inst(0, kimp_core::order::Leg::U).unwrap();
        let mut w = FeedWatch::new();
        let t = Instant::now();
        w.on_stale(upbit, t);
        w.on_stale(upbit, t + Duration::from_secs(1));
        assert_eq!(w.on_sample(0, &names, t + Duration::from_secs(6)), vec![(upbit, 6_000)]);
        assert!(w.on_sample(0, &names, t + Duration::from_secs(7)).is_empty(), "once");
    }
}
