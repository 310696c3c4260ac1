//! The one retry policy of the workspace: exponential back-off with a cap and seeded jitter,
//! for reconnects ([`Backoff`]) and for requests that are asked again after a failure
//! ([`Retry`]), never sooner than a venue's `Retry-After` ([`Refusal`]). Time is an
//! argument, so the same inputs always give the same retry times (replay and tests are
//! deterministic), and nothing here sleeps: the loop asks [`Retry::due`] every turn.

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

    /// Records a refused request at `now` and returns when to try again: the later of the
    /// exponential delay and the wait the venue asked for ([`Refusal::venue_wait`]), which
    /// is honoured even beyond the cap.
    pub fn on_refused(&mut self, now: Nanos, refusal: Refusal) -> Nanos {
        let next = self.on_down(now);
        next.max(now.plus(refusal.venue_wait()))
    }

    /// Records a success: the next failure starts from the base delay again.
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.opened_at = None;
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

/// Why a request was refused, as far as the wait before the next one is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Transport failure, timeout, 5xx or another error: the exponential delay alone.
    Failed,
    /// HTTP 429: over the rate limit. `Retry-After` in seconds when the venue sent it.
    RateLimited(Option<u64>),
    /// HTTP 418: Binance banned the IP for ignoring 429s (2 minutes to 3 days, growing on
    /// repeat). `Retry-After` in seconds when sent.
    Banned(Option<u64>),
}

impl Refusal {
    /// Wait on a 429 without `Retry-After`.
    pub const RATE_LIMITED_WAIT: Nanos = Nanos::from_ms(1_000);
    /// Shortest wait on a 418: Binance's shortest ban.
    pub const BANNED_WAIT: Nanos = Nanos::from_ms(120_000);

    /// The refusal an HTTP status means (0 = no response).
    pub fn from_status(status: u16, retry_after_s: Option<u64>) -> Self {
        match status {
            429 => Self::RateLimited(retry_after_s),
            418 => Self::Banned(retry_after_s),
            _ => Self::Failed,
        }
    }

    /// The least wait the venue asked for: `Retry-After`, or 1 s on a 429 without it; a
    /// ban is never shorter than [`Refusal::BANNED_WAIT`], whatever the header says.
    pub fn venue_wait(self) -> Nanos {
        let secs = |s: u64| Nanos::from_ms(s.saturating_mul(1_000));
        match self {
            Self::Failed => Nanos(0),
            Self::RateLimited(s) => s.map_or(Self::RATE_LIMITED_WAIT, secs),
            Self::Banned(s) => s.map_or(Self::BANNED_WAIT, secs).max(Self::BANNED_WAIT),
        }
    }
}

/// A request that is asked again after a failure, not before a time: the loop checks
/// [`Retry::due`] against its clock every turn instead of sleeping.
#[derive(Clone, Debug)]
pub struct Retry {
    backoff: Backoff,
    next: Nanos,
}

impl Retry {
    /// Delays for start-up and housekeeping requests (balances, snapshots, listen keys):
    /// 100 ms doubling to 30 s.
    pub const DEFAULT: BackoffConfig = BackoffConfig {
        base: Nanos::from_ms(100),
        cap: Nanos::from_ms(30_000),
        healthy_after: Nanos(0),
        seed: 0x7265_7472,
    };

    /// Due at once.
    pub fn new(cfg: BackoffConfig) -> Self {
        Self { backoff: Backoff::new(cfg), next: Nanos(0) }
    }

    /// True when the request may be sent at `now`.
    pub fn due(&self, now: Nanos) -> bool {
        now >= self.next
    }

    /// Records a failure at `now`; returns the time before which it is not asked again.
    pub fn failed(&mut self, now: Nanos, refusal: Refusal) -> Nanos {
        self.next = self.backoff.on_refused(now, refusal);
        self.next
    }

    /// Records a success (the next failure waits the base delay again).
    pub fn succeeded(&mut self) {
        self.backoff.reset();
        self.next = Nanos(0);
    }

    /// Failures in a row.
    pub fn failures(&self) -> u32 {
        self.backoff.attempt()
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

    #[test]
    fn refusals_honour_retry_after_and_a_ban_waits_longer_than_a_rate_limit() {
        let now = Nanos::from_ms(1_000);
        // A venue's Retry-After wins over a shorter exponential delay, even beyond the cap.
        let mut b = Backoff::new(cfg());
        let next = b.on_refused(now, Refusal::RateLimited(Some(7)));
        assert_eq!(next, now.plus(Nanos::from_ms(7_000)));
        // Without the header: 1 s for a 429, 2 min for a 418.
        let mut b = Backoff::new(cfg());
        assert_eq!(b.on_refused(now, Refusal::RateLimited(None)), now.plus(Nanos::from_ms(1_000)));
        let mut b = Backoff::new(cfg());
        let ban = b.on_refused(now, Refusal::Banned(None));
        assert_eq!(ban, now.plus(Nanos::from_ms(120_000)));
        // A 418 is never shorter than the shortest ban, whatever Retry-After says, and
        // always at least as long as a 429 with the same header.
        for s in [None, Some(0), Some(1), Some(30), Some(600)] {
            let (r, n) = (Refusal::RateLimited(s), Refusal::Banned(s));
            assert!(n.venue_wait() >= r.venue_wait(), "{s:?}");
            assert!(n.venue_wait() >= Refusal::BANNED_WAIT);
        }
        assert_eq!(Refusal::from_status(429, Some(3)), Refusal::RateLimited(Some(3)));
        assert_eq!(Refusal::from_status(418, None), Refusal::Banned(None));
        assert_eq!(Refusal::from_status(503, Some(3)), Refusal::Failed);
        // A long exponential delay is not shortened by a short Retry-After.
        let mut b = Backoff::new(cfg());
        for _ in 0..10 {
            b.on_down(now);
        }
        let d = b.on_refused(now, Refusal::RateLimited(Some(1))).since(now);
        assert!(d >= Nanos::from_ms(2_500), "{d:?}");
    }

    #[test]
    fn retry_gate_backs_off_exponentially_and_resets_on_success() {
        let mut r = Retry::new(Retry::DEFAULT);
        let mut now = Nanos::from_ms(10);
        assert!(r.due(now));
        let mut gaps = Vec::new();
        for _ in 0..12 {
            let next = r.failed(now, Refusal::Failed);
            assert!(!r.due(now) && !r.due(Nanos(next.0 - 1)) && r.due(next));
            gaps.push(next.since(now).0);
            now = next;
        }
        // Jittered into [d/2, d] with d doubling from 100 ms, capped at 30 s.
        for (i, g) in gaps.iter().enumerate() {
            let d = (100_000_000u64 << i).min(30_000_000_000);
            assert!(*g >= d / 2 && *g <= d, "attempt {i}: {g} not in [{}, {d}]", d / 2);
        }
        assert_eq!(r.failures(), 12);
        // Asking every 10 ms for 5 s against a venue that always fails sends few requests.
        let mut r = Retry::new(Retry::DEFAULT);
        let sent = (0..500u64)
            .map(|i| Nanos::from_ms(i * 10))
            .filter(|&t| {
                r.due(t) && {
                    r.failed(t, Refusal::Failed);
                    true
                }
            })
            .count();
        assert!((4..=8).contains(&sent), "{sent} requests in 5 s");
        r.succeeded();
        assert!(r.due(Nanos::from_ms(5_000)) && r.failures() == 0);
    }
}
