//! Loop metrics: duty cycle (Aeron's `DutyCycleStallTracker` idea) and per-stage latency
//! histograms. Recording is a few integer operations into pre-allocated histograms; the
//! loop hands a summary to the sidecars once per interval and resets.

use hdrhistogram::Histogram;
use kimp_core::units::Nanos;

/// Stages of one market-data message on its way to an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Frame received → parsed into an event.
    Parse = 0,
    /// Event → engine done (book, premium, strategy, risk, OMS).
    Engine = 1,
    /// Engine done → signed order bytes written to the socket.
    Send = 2,
    /// Frame received → order written (tick-to-order), for frames that produced orders.
    TickToOrder = 3,
    /// One loop turn.
    Turn = 4,
    /// Frame received → everything it caused is done (every market-data frame).
    Frame = 5,
}

/// Number of stages.
pub const STAGES: usize = 6;
/// Stage names as they appear in the store and in `/latency`.
pub const STAGE_NAMES: [&str; STAGES] =
    ["parse", "engine", "send", "tick_to_order", "turn", "frame"];

/// Percentiles of one stage over an interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StageSummary {
    /// Samples.
    pub count: u64,
    /// Median (ns).
    pub p50: u64,
    /// 99th percentile (ns).
    pub p99: u64,
    /// 99.9th percentile (ns).
    pub p999: u64,
    /// Maximum (ns).
    pub max: u64,
}

/// Everything the loop measured over one interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoopSummary {
    /// Per stage.
    pub stages: [StageSummary; STAGES],
    /// Turns in the interval.
    pub turns: u64,
    /// Turns longer than `cycle_us_max`.
    pub stalls: u64,
    /// Longest turn (ns).
    pub turn_max_ns: u64,
}

/// The loop's recorder.
#[derive(Debug)]
pub struct LoopMetrics {
    hist: Vec<Histogram<u64>>,
    total: Vec<Histogram<u64>>,
    stall_ns: u64,
    turns: u64,
    stalls: u64,
    turn_max: u64,
    /// Turns over the threshold since start.
    pub stalls_total: u64,
}

impl LoopMetrics {
    /// Histograms from 1 ns to 10 s at 3 significant digits; a turn over `cycle_us_max`
    /// counts as a stall.
    pub fn new(cycle_us_max: u64) -> Self {
        let h =
            || Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("valid histogram bounds");
        Self {
            hist: (0..STAGES).map(|_| h()).collect(),
            total: (0..STAGES).map(|_| h()).collect(),
            stall_ns: cycle_us_max * 1_000,
            turns: 0,
            stalls: 0,
            turn_max: 0,
            stalls_total: 0,
        }
    }

    /// Records one stage duration.
    #[inline]
    pub fn record(&mut self, s: Stage, d: Nanos) {
        let v = d.0.clamp(1, 10_000_000_000);
        // Values are clamped into the histogram's range, so recording cannot fail.
        let _ = self.hist[s as usize].record(v);
        let _ = self.total[s as usize].record(v);
    }

    /// Records one loop turn.
    #[inline]
    pub fn turn(&mut self, d: Nanos) {
        self.turns += 1;
        self.turn_max = self.turn_max.max(d.0);
        if d.0 > self.stall_ns {
            self.stalls += 1;
            self.stalls_total += 1;
        }
        self.record(Stage::Turn, d);
    }

    fn summarise(hs: &[Histogram<u64>]) -> [StageSummary; STAGES] {
        let mut out = [StageSummary::default(); STAGES];
        for (o, h) in out.iter_mut().zip(hs) {
            *o = StageSummary {
                count: h.len(),
                p50: h.value_at_quantile(0.5),
                p99: h.value_at_quantile(0.99),
                p999: h.value_at_quantile(0.999),
                max: h.max(),
            };
        }
        out
    }

    /// The interval's summary; resets the interval (not the totals).
    pub fn take_interval(&mut self) -> LoopSummary {
        let s = LoopSummary {
            stages: Self::summarise(&self.hist),
            turns: self.turns,
            stalls: self.stalls,
            turn_max_ns: self.turn_max,
        };
        for h in &mut self.hist {
            h.reset();
        }
        self.turns = 0;
        self.stalls = 0;
        self.turn_max = 0;
        s
    }

    /// Summary since start.
    pub fn totals(&self) -> [StageSummary; STAGES] {
        Self::summarise(&self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_percentiles_and_stalls() {
        let mut m = LoopMetrics::new(50);
        for i in 1..=1_000u64 {
            m.record(Stage::Parse, Nanos(i * 10));
            m.turn(Nanos(if i % 100 == 0 { 80_000 } else { 1_000 }));
        }
        let s = m.take_interval();
        let p = s.stages[Stage::Parse as usize];
        assert_eq!(p.count, 1_000);
        assert!((4_990..=5_010).contains(&p.p50), "{p:?}");
        assert!(p.max >= 9_990);
        assert_eq!(s.stalls, 10);
        assert_eq!(s.turns, 1_000);
        assert!(s.turn_max_ns >= 80_000);
        assert_eq!(m.take_interval().stages[0].count, 0, "interval reset");
        assert_eq!(m.totals()[0].count, 1_000, "totals kept");
    }
}
