//! The runtime's clocks. The engine never reads a clock; the loop reads this one once per
//! turn and passes the time in.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use kimp_core::units::Nanos;

/// Monotonic time since start, plus the wall clock for venue timestamps.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    wall_at_start_ns: u64,
}

impl Clock {
    /// Starts the clock now.
    pub fn new() -> Self {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Self { start: Instant::now(), wall_at_start_ns: wall }
    }

    /// Monotonic nanoseconds since start (never goes back, whatever NTP does).
    #[inline]
    pub fn now(&self) -> Nanos {
        Nanos(self.start.elapsed().as_nanos() as u64)
    }

    /// Wall-clock nanoseconds since the Unix epoch that correspond to monotonic `t`.
    #[inline]
    pub fn wall_ns(&self, t: Nanos) -> Nanos {
        Nanos(self.wall_at_start_ns + t.0)
    }

    /// Wall-clock milliseconds since the Unix epoch that correspond to monotonic `t`
    /// (venue request timestamps: Binance `timestamp`, signature windows).
    #[inline]
    pub fn wall_ms(&self, t: Nanos) -> u64 {
        (self.wall_at_start_ns + t.0) / 1_000_000
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
