//! The fault mix of one run: which faults are on and how often, chosen from the seed
//! (swarm testing: each seed turns a random subset of faults on, at random intensities,
//! so rare combinations get explored instead of every fault at a constant low rate).

use crate::sim::rng::Rng;

/// Probabilities (per message, per order, or per second as named) of every fault.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultMix {
    /// A market-data message is lost in transit.
    pub md_drop: f64,
    /// A market-data message is delivered twice.
    pub md_dup: f64,
    /// A market-data message overtakes the one before it.
    pub md_reorder: f64,
    /// A market-data message is delayed by 200–1500 ms (the stream behind it waits).
    pub md_delay: f64,
    /// A Binance depth event is lost at the source (an update-id gap).
    pub depth_gap: f64,
    /// An old Upbit book is sent again (its timestamp goes backwards).
    pub upbit_regress: f64,
    /// A venue's market-data feeds disconnect (per venue per second) for 100–3000 ms.
    pub disconnect_per_s: f64,
    /// A venue's market-data feeds go silent without closing (per second), 200–3000 ms.
    pub stall_per_s: f64,
    /// A REST reply is delayed by 500–5000 ms.
    pub rest_spike: f64,
    /// The venue executes an order and its reply is lost (unknown outcome).
    pub reply_drop: f64,
    /// An order request is lost before it reaches the venue (unknown outcome).
    pub request_drop: f64,
    /// An order request reaches the venue 1–4.5 s late (inside Binance's recvWindow).
    pub late_request: f64,
    /// A private-stream event is lost.
    pub stream_drop: f64,
    /// A private-stream event is delivered twice.
    pub stream_dup: f64,
    /// A private-stream event is delayed by 0–800 ms, out of order.
    pub stream_reorder: f64,
    /// The venue rejects an order (business error).
    pub reject: f64,
    /// The venue fills only part of an order (the IOC remainder expires).
    pub partial: f64,
    /// The engine process crashes (per second) at a random point of its outbox.
    pub crash_per_s: f64,
    /// The operator sends stop, resume or flatten (per second).
    pub operator_per_s: f64,
}

impl FaultMix {
    /// No faults (the liveness phase).
    pub const NONE: FaultMix = FaultMix {
        md_drop: 0.0,
        md_dup: 0.0,
        md_reorder: 0.0,
        md_delay: 0.0,
        depth_gap: 0.0,
        upbit_regress: 0.0,
        disconnect_per_s: 0.0,
        stall_per_s: 0.0,
        rest_spike: 0.0,
        reply_drop: 0.0,
        request_drop: 0.0,
        late_request: 0.0,
        stream_drop: 0.0,
        stream_dup: 0.0,
        stream_reorder: 0.0,
        reject: 0.0,
        partial: 0.0,
        crash_per_s: 0.0,
        operator_per_s: 0.0,
    };

    /// The swarm mix of `seed`: each fault on with probability one half, at a random
    /// intensity up to its ceiling.
    pub fn from_seed(seed: u64) -> FaultMix {
        let mut r = Rng::stream(seed, 0xFA17);
        let mut pick = |max: f64| if r.chance(0.5) { max * (0.1 + 0.9 * r.unit()) } else { 0.0 };
        FaultMix {
            md_drop: pick(0.05),
            md_dup: pick(0.05),
            md_reorder: pick(0.05),
            md_delay: pick(0.02),
            depth_gap: pick(0.05),
            upbit_regress: pick(0.05),
            disconnect_per_s: pick(0.1),
            stall_per_s: pick(0.1),
            rest_spike: pick(0.2),
            reply_drop: pick(0.2),
            request_drop: pick(0.1),
            late_request: pick(0.05),
            stream_drop: pick(0.3),
            stream_dup: pick(0.3),
            stream_reorder: pick(0.3),
            reject: pick(0.3),
            partial: pick(0.4),
            crash_per_s: pick(0.1),
            operator_per_s: pick(0.05),
        }
    }

    /// Every fault at one fixed, moderate intensity (the "all faults together" mix).
    pub fn all(scale: f64) -> FaultMix {
        FaultMix {
            md_drop: 0.02 * scale,
            md_dup: 0.02 * scale,
            md_reorder: 0.02 * scale,
            md_delay: 0.01 * scale,
            depth_gap: 0.02 * scale,
            upbit_regress: 0.02 * scale,
            disconnect_per_s: 0.05 * scale,
            stall_per_s: 0.05 * scale,
            rest_spike: 0.1 * scale,
            reply_drop: 0.1 * scale,
            request_drop: 0.05 * scale,
            late_request: 0.02 * scale,
            stream_drop: 0.1 * scale,
            stream_dup: 0.1 * scale,
            stream_reorder: 0.1 * scale,
            reject: 0.1 * scale,
            partial: 0.2 * scale,
            crash_per_s: 0.05 * scale,
            operator_per_s: 0.02 * scale,
        }
    }

    /// The faults that are on, as `name=p` pairs (the reporting format's "fault mix").
    pub fn describe(&self) -> String {
        let all = [
            ("md_drop", self.md_drop),
            ("md_dup", self.md_dup),
            ("md_reorder", self.md_reorder),
            ("md_delay", self.md_delay),
            ("depth_gap", self.depth_gap),
            ("upbit_regress", self.upbit_regress),
            ("disconnect/s", self.disconnect_per_s),
            ("stall/s", self.stall_per_s),
            ("rest_spike", self.rest_spike),
            ("reply_drop", self.reply_drop),
            ("request_drop", self.request_drop),
            ("late_request", self.late_request),
            ("stream_drop", self.stream_drop),
            ("stream_dup", self.stream_dup),
            ("stream_reorder", self.stream_reorder),
            ("reject", self.reject),
            ("partial", self.partial),
            ("crash/s", self.crash_per_s),
            ("operator/s", self.operator_per_s),
        ];
        let on: Vec<String> =
            all.iter().filter(|(_, p)| *p > 0.0).map(|(n, p)| format!("{n}={p:.3}")).collect();
        if on.is_empty() { "none".into() } else { on.join(" ") }
    }
}
