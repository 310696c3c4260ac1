//! The simulated network: messages scheduled for delivery at a simulated time, FIFO per
//! channel unless a fault lets one overtake.

use std::collections::BTreeMap;

use kimp_core::event::OrderEvent;
use kimp_core::instrument::{InstrumentId, Venue};
use kimp_core::order::{ClientId, OrderRequest};

use super::market::Md;

/// A channel (FIFO unless told otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chan {
    /// Upbit quotation WebSocket.
    UpbitMd = 0,
    /// Binance depth WebSocket.
    BinanceMd = 1,
    /// Private stream (order updates).
    Stream = 2,
    /// REST requests and replies (independent connections: no FIFO).
    Rest = 3,
}

/// What travels.
#[derive(Clone, Debug)]
pub enum Msg {
    /// Market data to the engine.
    Md(Md),
    /// A Binance REST snapshot is ready for the engine (built when delivered).
    Snapshot(InstrumentId),
    /// An order report to the engine.
    Order(OrderEvent),
    /// A feed went down (gateway → engine).
    FeedDown(Venue),
    /// A new order to the venue, with the engine time it was sent.
    Place(OrderRequest, u64),
    /// A query by client id to the venue.
    Query(ClientId, InstrumentId),
    /// A cancel by client id to the venue.
    Cancel(ClientId, InstrumentId),
}

impl Msg {
    /// True for messages addressed to the engine process.
    pub fn to_engine(&self) -> bool {
        matches!(self, Msg::Md(_) | Msg::Snapshot(_) | Msg::Order(_) | Msg::FeedDown(_))
    }

    /// True for order traffic (anything but market data and feed state).
    pub fn is_order_traffic(&self) -> bool {
        matches!(self, Msg::Order(_) | Msg::Place(..) | Msg::Query(..) | Msg::Cancel(..))
    }
}

/// The network.
#[derive(Debug, Default)]
pub struct Net {
    q: BTreeMap<(u64, u64), Msg>,
    seq: u64,
    last: [u64; 4],
}

impl Net {
    /// Schedules `msg` on `chan` for `now + delay`; FIFO on the channel unless
    /// `overtake` (then it may arrive before messages sent earlier).
    pub fn send(&mut self, now: u64, chan: Chan, delay: u64, overtake: bool, msg: Msg) {
        let mut at = now + delay;
        let c = chan as usize;
        if chan != Chan::Rest && !overtake {
            at = at.max(self.last[c]);
            self.last[c] = at;
        }
        self.seq += 1;
        self.q.insert((at, self.seq), msg);
    }

    /// The next message due at or before `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<Msg> {
        let (&(at, _), _) = self.q.first_key_value()?;
        if at > now {
            return None;
        }
        self.q.pop_first().map(|(_, m)| m)
    }

    /// Drops everything addressed to the engine (its process died; its sockets closed).
    pub fn drop_engine_bound(&mut self) {
        self.q.retain(|_, m| !m.to_engine());
        self.last = [0; 4];
    }

    /// True while order traffic is still in flight.
    pub fn order_traffic(&self) -> bool {
        self.q.values().any(Msg::is_order_traffic)
    }

    /// Messages in flight.
    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }
}
