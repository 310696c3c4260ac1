//! The real Binance diffs parsed once into owned form, for apply-only comparisons: every
//! book sees exactly the same levels in the same order (fixed-point for kimp, `f64` for
//! the peers, converted before timing).

use kimp_core::event::{DepthDiff, Event, Level};
use kimp_core::instrument::{InstrumentId, Venue};
use kimp_core::testkit::{self, BTCUSDT};
use kimp_core::units::Nanos;
use kimp_gateways::binance::BinanceMarketParser;
use kimp_gateways::codec::MarketMsg;
use kimp_gateways::symbols::SymbolTable;

use crate::data::Binance;

/// One diff: ids and level ranges into the arenas.
#[derive(Debug, Clone, Copy)]
pub struct Diff {
    /// `U`.
    pub first: u64,
    /// `u`.
    pub last: u64,
    /// `pu`.
    pub prev: Option<u64>,
    /// Bids `[b0, b1)` and asks `[a0, a1)` in `levels`.
    pub b: (u32, u32),
    /// Asks.
    pub a: (u32, u32),
    /// Exchange time.
    pub ts: Nanos,
}

/// Parsed diffs and snapshot.
#[derive(Debug)]
pub struct Parsed {
    /// Levels of every diff.
    pub levels: Vec<Level>,
    /// Same levels as `(price, qty)` floats.
    #[cfg_attr(not(feature = "peers"), allow(dead_code))]
    pub levels_f64: Vec<(f64, f64)>,
    /// The diffs.
    pub diffs: Vec<Diff>,
    /// Snapshot levels, best first.
    pub snap_bids: Vec<Level>,
    /// Snapshot asks.
    pub snap_asks: Vec<Level>,
    /// Snapshot id.
    pub snap_id: u64,
}

impl Parsed {
    /// Parses everything with the gateway's scanner.
    pub fn new(bin: &Binance) -> Self {
        let m = testkit::btc_markets();
        let mut p =
            BinanceMarketParser::new(SymbolTable::for_venue(Venue::Binance, &m.instruments));
        let (mut snap_bids, mut snap_asks, mut snap_id) = (Vec::new(), Vec::new(), 0);
        if let Ok(MarketMsg::Event(Event::Book(s))) = p.parse_snapshot(BTCUSDT, &bin.snapshot) {
            snap_bids = s.bids.to_vec();
            snap_asks = s.asks.to_vec();
            snap_id = s.last_update_id;
        }
        let mut levels = Vec::new();
        let mut diffs = Vec::new();
        for f in &bin.frames {
            if let Ok(MarketMsg::Event(Event::Depth(d))) = p.parse(f) {
                let b0 = levels.len() as u32;
                levels.extend_from_slice(d.bids);
                let a0 = levels.len() as u32;
                levels.extend_from_slice(d.asks);
                let a1 = levels.len() as u32;
                diffs.push(Diff {
                    first: d.first_id,
                    last: d.last_id,
                    prev: d.prev_last_id,
                    b: (b0, a0),
                    a: (a0, a1),
                    ts: d.exch_ts,
                });
            }
        }
        let levels_f64 = levels.iter().map(|l| (l.px.to_f64(), l.qty.to_f64())).collect();
        Self { levels, levels_f64, diffs, snap_bids, snap_asks, snap_id }
    }

    /// The diff as the engine's event type.
    #[inline]
    pub fn diff(&self, d: &Diff) -> DepthDiff<'_> {
        DepthDiff {
            inst: InstrumentId(1),
            exch_ts: d.ts,
            first_id: d.first,
            last_id: d.last,
            prev_last_id: d.prev,
            bids: &self.levels[d.b.0 as usize..d.b.1 as usize],
            asks: &self.levels[d.a.0 as usize..d.a.1 as usize],
        }
    }

    /// Levels updated per pass.
    pub fn level_count(&self) -> usize {
        self.levels.len()
    }
}
