//! Fault scenarios: what can go wrong, when, and how often, all seeded.
//!
//! A scenario is written `NAME` or `NAME:key=value,key=value` on the command line (and
//! built the same way in tests). Keys: `venue` (`upbit`, `binance`, `both`), `p`
//! (probability per message, order or second, depending on the scenario), `after` and
//! `for` (window in simulated milliseconds from start; no `for` = until the end),
//! `value` (a ratio or magnitude) and `ms` (a duration range `lo-hi` in milliseconds).

use std::fmt;

/// The kinds of fault the simulator can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The coin price falls `value` (10 %) within a minute and comes back within the
    /// next; spreads ×10 meanwhile.
    FlashCrash,
    /// Book depth × `value` (0.1).
    LiquidityDry,
    /// With probability `p`, a REST response is delayed by `ms` (2000-5000 ms).
    LatencySpike,
    /// Taker orders fill at most `value` (60 %) of their quantity; IOC remainders expire.
    PartialFill,
    /// With probability `p` (0.3), an order is refused with a 5xx or a venue error.
    OrderRejection,
    /// Every order on `venue` (Binance) is refused with a business error.
    OneLegFailure,
    /// `venue` (Upbit) refuses connections during the window (default 30 s after start
    /// for 60 s); open connections are closed.
    ExchangeMaintenance,
    /// Each market-data WebSocket message is dropped with probability `p`.
    DropMessages,
    /// Each WebSocket message (market data and private) is sent twice with probability `p`.
    DuplicateMessages,
    /// Each WebSocket message is swapped with the next one with probability `p`.
    ReorderMessages,
    /// With probability `p` a Binance depth event is lost at the source (a `pu` gap); on
    /// Upbit an old book is sent again (timestamp regression).
    DepthGap,
    /// Each WebSocket connection is closed with probability `p` per second.
    Disconnect,
    /// With probability `p` per second a WebSocket connection goes silent for `ms` without
    /// closing.
    Stall,
    /// With probability `p` a REST request is answered 429 regardless of its budget.
    RateLimit,
    /// The server clock runs `value` ms ahead (negative: behind) of the real clock.
    ClockSkew,
    /// With probability `p` an order is executed and its response is dropped (the
    /// connection closes without an answer): an ambiguous outcome.
    AmbiguousFill,
    /// At `after`, every Binance listen key expires (`listenKeyExpired`, stream closed) and
    /// Upbit private connections are closed; with `for`, no new listen key is issued
    /// (503, -1001) until the window ends.
    ListenKeyExpiry,
    /// The venue's market data freezes: Upbit keeps sending the last book with its old
    /// `timestamp` every step; Binance repeats its last depth event (same ids) and holds
    /// the new ones back (they go out merged when the window ends, so the chain stays
    /// consistent). Default `venue=upbit`, 5 s from 10 s after start.
    Freeze,
    /// With probability `p` (0.05) per WebSocket data message, a malformed, truncated,
    /// oversized or hostile copy is sent first (see `bad_input`; the first data message
    /// of each connection in the window always gets one); with probability
    /// `value` (default: `p`) a REST response body is replaced by one.
    BadInput,
}

impl FaultKind {
    /// Every kind with its command-line name.
    pub const ALL: [(FaultKind, &'static str); 19] = [
        (FaultKind::FlashCrash, "flash_crash"),
        (FaultKind::LiquidityDry, "liquidity_dry"),
        (FaultKind::LatencySpike, "latency_spike"),
        (FaultKind::PartialFill, "partial_fill"),
        (FaultKind::OrderRejection, "order_rejection"),
        (FaultKind::OneLegFailure, "one_leg_failure"),
        (FaultKind::ExchangeMaintenance, "exchange_maintenance"),
        (FaultKind::DropMessages, "drop_messages"),
        (FaultKind::DuplicateMessages, "duplicate_messages"),
        (FaultKind::ReorderMessages, "reorder_messages"),
        (FaultKind::DepthGap, "depth_gap"),
        (FaultKind::Disconnect, "disconnect"),
        (FaultKind::Stall, "stall"),
        (FaultKind::RateLimit, "rate_limit"),
        (FaultKind::ClockSkew, "clock_skew"),
        (FaultKind::AmbiguousFill, "ambiguous_fill"),
        (FaultKind::ListenKeyExpiry, "listen_key_expiry"),
        (FaultKind::Freeze, "freeze"),
        (FaultKind::BadInput, "bad_input"),
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        FaultKind::ALL.iter().find(|(k, _)| *k == self).map(|(_, n)| *n).unwrap_or("?")
    }

    fn from_name(s: &str) -> Option<Self> {
        FaultKind::ALL.iter().find(|(_, n)| *n == s).map(|(k, _)| *k)
    }
}

/// Which venue a scenario applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VenueSel {
    /// Upbit only.
    Upbit,
    /// Binance only.
    Binance,
    /// Both venues.
    Both,
}

impl VenueSel {
    /// True when the selection covers `upbit` (true) or Binance (false).
    pub fn covers(self, upbit: bool) -> bool {
        match self {
            VenueSel::Both => true,
            VenueSel::Upbit => upbit,
            VenueSel::Binance => !upbit,
        }
    }
}

/// One configured fault scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// What goes wrong.
    pub kind: FaultKind,
    /// Where.
    pub venue: VenueSel,
    /// Probability per message, order or second (meaning depends on the kind).
    pub p: f64,
    /// Start, simulated ms after the simulator started.
    pub after_ms: u64,
    /// Length of the window; `None` = until the end.
    pub for_ms: Option<u64>,
    /// Ratio or magnitude.
    pub value: f64,
    /// Duration range in ms (latency, stall length).
    pub ms: (u64, u64),
}

/// A scenario string that could not be understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError(pub String);

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScenarioError {}

impl Scenario {
    /// The documented defaults for a kind.
    pub fn new(kind: FaultKind) -> Self {
        use FaultKind::*;
        let mut s = Scenario {
            kind,
            venue: VenueSel::Both,
            p: 1.0,
            after_ms: 0,
            for_ms: None,
            value: 0.0,
            ms: (0, 0),
        };
        match kind {
            FlashCrash => {
                s.after_ms = 10_000;
                s.for_ms = Some(120_000);
                s.value = 0.10;
            }
            LiquidityDry => s.value = 0.1,
            LatencySpike => {
                s.p = 0.2;
                s.ms = (2_000, 5_000);
            }
            PartialFill => s.value = 0.6,
            OrderRejection => s.p = 0.3,
            OneLegFailure => s.venue = VenueSel::Binance,
            ExchangeMaintenance => {
                s.venue = VenueSel::Upbit;
                s.after_ms = 30_000;
                s.for_ms = Some(60_000);
            }
            DropMessages | DuplicateMessages | ReorderMessages | DepthGap => s.p = 0.01,
            Disconnect => s.p = 0.02,
            Stall => {
                s.p = 0.02;
                s.ms = (5_000, 10_000);
            }
            RateLimit => s.p = 0.05,
            ClockSkew => s.value = 2_000.0,
            AmbiguousFill => s.p = 0.1,
            ListenKeyExpiry => s.after_ms = 60_000,
            Freeze => {
                s.venue = VenueSel::Upbit;
                s.after_ms = 10_000;
                s.for_ms = Some(5_000);
            }
            BadInput => s.p = 0.05,
        }
        s
    }

    /// Parses `NAME[:key=value,...]`.
    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        let (name, params) = match text.split_once(':') {
            Some((n, p)) => (n, p),
            None => (text, ""),
        };
        let kind = FaultKind::from_name(name.trim()).ok_or_else(|| {
            let names: Vec<&str> = FaultKind::ALL.iter().map(|(_, n)| *n).collect();
            ScenarioError(format!("unknown scenario {name:?}; known: {}", names.join(", ")))
        })?;
        let mut s = Scenario::new(kind);
        for kv in params.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| ScenarioError(format!("{name}: expected key=value, got {kv:?}")))?;
            let bad = || ScenarioError(format!("{name}: bad value for {k}: {v:?}"));
            match k {
                "venue" => {
                    s.venue = match v {
                        "upbit" => VenueSel::Upbit,
                        "binance" => VenueSel::Binance,
                        "both" => VenueSel::Both,
                        _ => return Err(bad()),
                    }
                }
                "p" => {
                    s.p = v.parse().map_err(|_| bad())?;
                    if !(0.0..=1.0).contains(&s.p) {
                        return Err(bad());
                    }
                }
                "after" => s.after_ms = v.parse().map_err(|_| bad())?,
                "for" => s.for_ms = Some(v.parse().map_err(|_| bad())?),
                "value" => {
                    s.value = v.parse().map_err(|_| bad())?;
                    if !s.value.is_finite() {
                        return Err(bad());
                    }
                }
                "ms" => {
                    let (lo, hi) = v.split_once('-').unwrap_or((v, v));
                    let lo: u64 = lo.parse().map_err(|_| bad())?;
                    let hi: u64 = hi.parse().map_err(|_| bad())?;
                    if hi < lo {
                        return Err(bad());
                    }
                    s.ms = (lo, hi);
                }
                _ => {
                    return Err(ScenarioError(format!(
                        "{name}: unknown key {k:?} (venue, p, after, for, value, ms)"
                    )));
                }
            }
        }
        Ok(s)
    }

    /// True when the window covers `elapsed_ms` (simulated ms since start).
    pub fn in_window(&self, elapsed_ms: u64) -> bool {
        elapsed_ms >= self.after_ms
            && self.for_ms.is_none_or(|d| elapsed_ms < self.after_ms.saturating_add(d))
    }
}

/// The set of configured scenarios.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Scenarios in command-line order.
    pub list: Vec<Scenario>,
}

impl Faults {
    /// The first scenario of `kind` that covers the venue and is in its window.
    pub fn active(&self, kind: FaultKind, upbit: bool, elapsed_ms: u64) -> Option<&Scenario> {
        self.list
            .iter()
            .find(|s| s.kind == kind && s.venue.covers(upbit) && s.in_window(elapsed_ms))
    }

    /// The first scenario of `kind` for the venue, in or out of its window.
    pub fn configured(&self, kind: FaultKind, upbit: bool) -> Option<&Scenario> {
        self.list.iter().find(|s| s.kind == kind && s.venue.covers(upbit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_parameters() {
        let s = Scenario::parse("partial_fill").unwrap();
        assert_eq!((s.kind, s.value), (FaultKind::PartialFill, 0.6));
        let s = Scenario::parse("latency_spike:p=1,ms=300-400,venue=binance").unwrap();
        assert_eq!((s.p, s.ms, s.venue), (1.0, (300, 400), VenueSel::Binance));
        let s = Scenario::parse("exchange_maintenance:after=100,for=2000").unwrap();
        assert!(!s.in_window(99) && s.in_window(100) && s.in_window(2099) && !s.in_window(2100));
        for bad in
            ["nope", "partial_fill:x=1", "partial_fill:p=2", "stall:ms=5-1", "drop_messages:p"]
        {
            assert!(Scenario::parse(bad).is_err(), "{bad}");
        }
        for (k, n) in FaultKind::ALL {
            assert_eq!(Scenario::parse(n).unwrap().kind, k);
            assert_eq!(k.name(), n);
        }
    }
}
