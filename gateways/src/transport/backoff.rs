//! Reconnect policy: exponential back-off with a cap and seeded jitter. Time is an argument,
//! so the same inputs always give the same retry times (replay and tests are deterministic).

use kimp_core::units::Nanos;

/// Back-off parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Delay scale of the first retry (the actual delay is jittered into `[base/2, base]`).
    pub base: Nanos,
    /// Largest delay, whatever the attempt count.
    pub cap: Nanos,
    /// A connection that stayed up this long resets the attempt count: a long-lived
    /// connection dropping is news, a flapping one must not hammer the venue.
    pub healthy_after: Nanos,
    /// Jitter seed; give each connection its own so they do not reconnect in lock step.
    pub seed: u64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            base: Nanos::from_ms(100),
            cap: Nanos::from_ms(30_000),
            healthy_after: Nanos::from_ms(30_000),
            seed: 0x6b69_6d70,
        }
    }
}

/// Exponential back-off state for one connection.
#[derive(Clone, Debug)]
pub struct Backoff {
    cfg: BackoffConfig,
    attempt: u32,
    rng: u64,
    opened_at: Option<Nanos>,
}

impl Backoff {
    /// A fresh policy (attempt 0).
    pub fn new(cfg: BackoffConfig) -> Self {
        Self { cfg, attempt: 0, rng: cfg.seed, opened_at: None }
    }

    /// Failed attempts since the last healthy connection.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Records that a connection came up at `now`.
    pub fn on_open(&mut self, now: Nanos) {
        self.opened_at = Some(now);
    }

    /// Records a failure or disconnect at `now` and returns when to try again.
    pub fn on_down(&mut self, now: Nanos) -> Nanos {
        if let Some(opened) = self.opened_at.take()
            && now.since(opened) >= self.cfg.healthy_after
        {
            self.attempt = 0;
        }
        let delay = self.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        now.plus(delay)
    }

    /// Jittered delay for `attempt`: uniform in `[d/2, d]` with `d = min(cap, base * 2^attempt)`.
    fn delay(&mut self, attempt: u32) -> Nanos {
        let d = self.cfg.base.0.saturating_mul(1u64 << attempt.min(40)).min(self.cfg.cap.0);
        let half = d / 2;
        Nanos(half + self.next_rand() % (d - half + 1))
    }

    /// splitmix64: tiny, seedable, good enough to spread retries.
    fn next_rand(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BackoffConfig {
        BackoffConfig {
            base: Nanos::from_ms(100),
            cap: Nanos::from_ms(5_000),
            healthy_after: Nanos::from_ms(10_000),
            seed: 7,
        }
    }

    #[test]
    fn grows_exponentially_within_jitter_and_caps() {
        let mut b = Backoff::new(cfg());
        let now = Nanos::from_ms(1_000);
        for attempt in 0..20u32 {
            let d = b.on_down(now).since(now).0;
            let full = (100_000_000u64 << attempt.min(40)).min(5_000_000_000);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d} not in [{}, {full}]",
                full / 2
            );
        }
        assert_eq!(b.attempt(), 20);
    }

    #[test]
    fn same_seed_same_schedule_other_seed_differs() {
        let run = |seed| {
            let mut b = Backoff::new(BackoffConfig { seed, ..cfg() });
            (0..8).map(|i| b.on_down(Nanos(i * 1_000)).0).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn healthy_connection_resets_but_flapping_does_not() {
        let mut b = Backoff::new(cfg());
        for _ in 0..5 {
            b.on_down(Nanos(0));
        }
        // Up for 1 s only: still flapping, attempt keeps growing.
        b.on_open(Nanos::from_ms(1_000));
        b.on_down(Nanos::from_ms(2_000));
        assert_eq!(b.attempt(), 6);
        // Up for 20 s: healthy, the next delay is the base one again.
        b.on_open(Nanos::from_ms(3_000));
        let now = Nanos::from_ms(23_000);
        let d = b.on_down(now).since(now);
        assert!(d <= Nanos::from_ms(100) && d >= Nanos::from_ms(50), "{d:?}");
        assert_eq!(b.attempt(), 1);
    }
}
