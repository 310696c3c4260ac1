//! Orders: deterministic client ids, order requests and the per-order state machine.
//!
//! A client id is `(run epoch, intent sequence, leg, attempt)`. The epoch changes on every
//! start (the runtime takes it from the journal), the sequence on every intent, and the
//! attempt on every new order for the same intent and leg, so an id is never reused —
//! which matters because Binance only rejects a duplicate `newClientOrderId` while the
//! first order is still open. On the wire it is `k<epoch>-<seq>-<leg><attempt>`, at most
//! 27 ASCII characters, valid as Binance `newClientOrderId` (`^[.A-Z:/a-z0-9_-]{1,36}$`)
//! and as Upbit `identifier`.

use crate::event::{OrderEventKind, RejectReason, Side};
use crate::instrument::InstrumentId;
use crate::units::{Nanos, Price, Qty, Quote};

/// Which leg of a pair an order belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Leg {
    /// Upbit leg.
    U,
    /// Binance leg.
    B,
}

impl Leg {
    /// Wire character.
    const fn ch(self) -> u8 {
        match self {
            Leg::U => b'u',
            Leg::B => b'b',
        }
    }
}

/// A deterministic, never-reused client order id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId {
    /// Run epoch (increments on every start).
    pub epoch: u32,
    /// Intent sequence within the epoch.
    pub seq: u32,
    /// Leg.
    pub leg: Leg,
    /// Attempt number for this intent and leg.
    pub attempt: u8,
}

/// Longest encoded client id.
pub const CLIENT_ID_MAX: usize = 27;

impl ClientId {
    /// Encodes into `buf` and returns the text, without allocating.
    pub fn encode<'b>(&self, buf: &'b mut [u8; CLIENT_ID_MAX]) -> &'b str {
        let mut n = 0;
        buf[n] = b'k';
        n += 1;
        n += write_u32(&mut buf[n..], self.epoch);
        buf[n] = b'-';
        n += 1;
        n += write_u32(&mut buf[n..], self.seq);
        buf[n] = b'-';
        n += 1;
        buf[n] = self.leg.ch();
        n += 1;
        n += write_u32(&mut buf[n..], self.attempt as u32);
        // Only ASCII digits, letters and '-' were written.
        core::str::from_utf8(&buf[..n]).unwrap_or("")
    }

    /// Decodes wire text; `None` for anything that is not one of our ids (orders placed
    /// by hand on the same account are ignored, not misattributed).
    pub fn decode(s: &[u8]) -> Option<ClientId> {
        let rest = s.strip_prefix(b"k")?;
        let (epoch, rest) = read_u32(rest)?;
        let rest = rest.strip_prefix(b"-")?;
        let (seq, rest) = read_u32(rest)?;
        let rest = rest.strip_prefix(b"-")?;
        let (leg, rest) = match rest.split_first()? {
            (b'u', r) => (Leg::U, r),
            (b'b', r) => (Leg::B, r),
            _ => return None,
        };
        let (attempt, rest) = read_u32(rest)?;
        if !rest.is_empty() || attempt > u8::MAX as u32 {
            return None;
        }
        Some(ClientId { epoch, seq, leg, attempt: attempt as u8 })
    }
}

impl core::fmt::Display for ClientId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut b = [0u8; CLIENT_ID_MAX];
        f.write_str(self.encode(&mut b))
    }
}

fn write_u32(out: &mut [u8], mut v: u32) -> usize {
    let mut tmp = [0u8; 10];
    let mut n = 0;
    loop {
        tmp[n] = b'0' + (v % 10) as u8;
        v /= 10;
        n += 1;
        if v == 0 {
            break;
        }
    }
    for i in 0..n {
        out[i] = tmp[n - 1 - i];
    }
    n
}

fn read_u32(s: &[u8]) -> Option<(u32, &[u8])> {
    let n = s.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 || n > 10 || (n > 1 && s[0] == b'0') {
        return None;
    }
    let mut v: u64 = 0;
    for &c in &s[..n] {
        v = v * 10 + (c - b'0') as u64;
    }
    Some((u32::try_from(v).ok()?, &s[n..]))
}

/// How long after an order was sent a venue's "no such order" is final. Binance refuses
/// a request older than its `recvWindow` (5 s, set by the gateway's encoder) when it
/// arrives, so a query answered after this cannot be overtaken by the order itself;
/// before it, a request delayed on a slow connection may still execute, and trusting
/// the answer would lose that order's fills.
pub const NOT_FOUND_FINAL: Nanos = Nanos::from_ms(6_000);

/// How an order executes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderKind {
    /// Limit, immediate-or-cancel: the taker leg with a price collar.
    LimitIoc,
    /// Market (used by the flatten path when the collar keeps failing).
    Market,
}

/// An order the engine wants on the wire. The gateway encodes and signs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderRequest {
    /// Client id (journaled before it is sent).
    pub cl_id: ClientId,
    /// Instrument.
    pub inst: InstrumentId,
    /// Side.
    pub side: Side,
    /// Execution kind.
    pub kind: OrderKind,
    /// Limit price (the collar). For market orders, the reference price used by risk.
    pub px: Price,
    /// Base quantity.
    pub qty: Qty,
    /// Binance `reduceOnly` (closing or unwinding a perp leg).
    pub reduce_only: bool,
}

/// State of one order. `Unknown` is a state of its own: it is never assumed flat and
/// never re-sent; it is queried until the venue tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderState {
    /// Written to the outbox, no answer yet.
    Sent,
    /// Accepted by the venue.
    Open,
    /// Outcome unknown; a query by client id is outstanding.
    Unknown,
    /// Terminal: fully filled.
    Filled,
    /// Terminal: ended (cancelled / expired) with `filled` possibly > 0.
    Done,
    /// Terminal: refused by the venue (nothing filled).
    Rejected(RejectReason),
}

impl OrderState {
    /// True when no more fills can come.
    #[inline]
    pub const fn is_terminal(self) -> bool {
        matches!(self, OrderState::Filled | OrderState::Done | OrderState::Rejected(_))
    }
}

/// One order and what the venue said about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Order {
    /// The request as sent.
    pub req: OrderRequest,
    /// Current state.
    pub state: OrderState,
    /// Cumulative filled quantity.
    pub filled: Qty,
    /// Σ price × qty of fills, quote currency.
    pub notional: Quote,
    /// Σ fees, quote currency.
    pub fees: Quote,
    /// When it was sent.
    pub sent_at: Nanos,
    /// Last time it changed.
    pub updated_at: Nanos,
}

/// What applying an order event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Nothing changed (duplicate or stale report).
    Ignored,
    /// State changed without a fill.
    State,
    /// New fill of this quantity at this notional and fee.
    Fill {
        /// Newly filled quantity.
        qty: Qty,
        /// Its notional.
        notional: Quote,
        /// Its fee.
        fee: Quote,
    },
}

impl Order {
    /// A freshly sent order.
    pub fn new(req: OrderRequest, now: Nanos) -> Self {
        Self {
            req,
            state: OrderState::Sent,
            filled: Qty::ZERO,
            notional: Quote::ZERO,
            fees: Quote::ZERO,
            sent_at: now,
            updated_at: now,
        }
    }

    /// Quantity not yet filled.
    #[inline]
    pub fn remaining(&self) -> Qty {
        Qty(self.req.qty.0 - self.filled.0)
    }

    /// Applies a venue report. Every interleaving is accepted: fills before the ack, a
    /// REST reply after the stream's terminal event, duplicated fills (de-duplicated by
    /// the cumulative quantity), and reports after a terminal state (fills only).
    pub fn apply(&mut self, kind: OrderEventKind, now: Nanos) -> Applied {
        use OrderState::*;
        let out = match kind {
            OrderEventKind::Ack => match self.state {
                Sent | Unknown => {
                    self.state = Open;
                    Applied::State
                }
                _ => Applied::Ignored,
            },
            OrderEventKind::Reject(r) => match self.state {
                // A reject after fills were seen would contradict the venue; keep fills.
                Sent | Open | Unknown if self.filled.0 == 0 => {
                    self.state = Rejected(r);
                    Applied::State
                }
                _ => Applied::Ignored,
            },
            OrderEventKind::NotFound => match self.state {
                // Before NOT_FOUND_FINAL the request may still be on its way: "not found"
                // then means "not yet", and the order stays unknown (queried again).
                Unknown | Sent
                    if self.filled.0 == 0 && now.since(self.sent_at) >= NOT_FOUND_FINAL =>
                {
                    self.state = Rejected(RejectReason::Gateway);
                    Applied::State
                }
                _ => Applied::Ignored,
            },
            OrderEventKind::Fill { px, qty, cum_qty, fee, .. } => {
                let cum = cum_qty.0.min(self.req.qty.0);
                if cum <= self.filled.0 || qty.0 <= 0 {
                    return Applied::Ignored;
                }
                let delta = Qty(cum - self.filled.0);
                // If an earlier fill message was lost, the delta is priced at this fill's
                // price; the venue's own average is reconciled at query time.
                let notional = px.notional(delta).unwrap_or(Quote(i64::MAX));
                let fee = if delta == qty {
                    fee
                } else {
                    Quote(crate::units::mul_div(fee.0, delta.0, qty.0).unwrap_or(fee.0))
                };
                self.filled = Qty(cum);
                self.notional = self.notional.saturating_add(notional);
                self.fees = self.fees.saturating_add(fee);
                if self.filled == self.req.qty {
                    self.state = Filled;
                } else if matches!(self.state, Sent | Unknown | Rejected(_)) {
                    self.state = Open;
                }
                Applied::Fill { qty: delta, notional, fee }
            }
            OrderEventKind::Done { cum_qty } => {
                if self.state.is_terminal() && !matches!(self.state, Rejected(_)) {
                    return Applied::Ignored;
                }
                if cum_qty.0 > self.filled.0 {
                    // Fills we have not seen yet are still to come (or will be found by a
                    // query); do not close the order on a quantity we cannot price.
                    self.state = Unknown;
                    return Applied::State;
                }
                self.state = if self.filled == self.req.qty { Filled } else { Done };
                Applied::State
            }
            OrderEventKind::Unknown => match self.state {
                Sent | Open => {
                    self.state = Unknown;
                    Applied::State
                }
                _ => Applied::Ignored,
            },
        };
        if out != Applied::Ignored {
            self.updated_at = now;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::SCALE;

    fn req(q: i64) -> OrderRequest {
        OrderRequest {
            cl_id: ClientId { epoch: 7, seq: 42, leg: Leg::B, attempt: 0 },
            inst: InstrumentId(1),
            side: Side::Buy,
            kind: OrderKind::LimitIoc,
            px: Price(100 * SCALE),
            qty: Qty(q),
            reduce_only: false,
        }
    }

    fn fill(id: u64, q: i64, cum: i64) -> OrderEventKind {
        OrderEventKind::Fill {
            trade_id: id,
            px: Price(100 * SCALE),
            qty: Qty(q),
            cum_qty: Qty(cum),
            fee: Quote(q / 1000),
        }
    }

    #[test]
    fn client_id_round_trips_and_is_bounded() {
        let id = ClientId { epoch: u32::MAX, seq: u32::MAX, leg: Leg::U, attempt: 255 };
        let mut b = [0u8; CLIENT_ID_MAX];
        let s = id.encode(&mut b).to_owned();
        assert!(s.len() <= CLIENT_ID_MAX);
        assert_eq!(s, "k4294967295-4294967295-u255");
        assert_eq!(ClientId::decode(s.as_bytes()), Some(id));
        let small = ClientId { epoch: 1, seq: 0, leg: Leg::B, attempt: 0 };
        assert_eq!(small.to_string(), "k1-0-b0");
        for bad in ["", "k", "k1-2-x0", "k1-2-b", "k01-2-b0", "x1-2-b0", "k1-2-b0 ", "k1-2-b256"] {
            assert_eq!(ClientId::decode(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn fills_are_deduplicated_by_cumulative_quantity() {
        let mut o = Order::new(req(10), Nanos(0));
        assert!(matches!(o.apply(fill(1, 4, 4), Nanos(1)), Applied::Fill { .. }));
        assert_eq!(o.apply(fill(1, 4, 4), Nanos(2)), Applied::Ignored);
        assert!(matches!(o.apply(fill(2, 6, 10), Nanos(3)), Applied::Fill { .. }));
        assert_eq!(o.state, OrderState::Filled);
        assert_eq!(o.apply(OrderEventKind::Ack, Nanos(4)), Applied::Ignored, "ack after fill");
        assert_eq!(o.filled, Qty(10));
    }

    #[test]
    fn unknown_is_resolved_only_by_the_venue() {
        let mut o = Order::new(req(10), Nanos(0));
        o.apply(OrderEventKind::Unknown, Nanos(1));
        assert_eq!(o.state, OrderState::Unknown);
        assert!(!o.state.is_terminal());
        o.apply(fill(9, 10, 10), Nanos(2));
        assert_eq!(o.state, OrderState::Filled);
        let mut n = Order::new(req(10), Nanos(0));
        n.apply(OrderEventKind::Unknown, Nanos(1));
        n.apply(OrderEventKind::NotFound, Nanos(2));
        assert_eq!(n.state, OrderState::Unknown, "not found yet: the request may be late");
        n.apply(OrderEventKind::NotFound, NOT_FOUND_FINAL);
        assert!(matches!(n.state, OrderState::Rejected(_)));
    }

    #[test]
    fn done_with_unseen_fills_waits() {
        let mut o = Order::new(req(10), Nanos(0));
        o.apply(OrderEventKind::Ack, Nanos(1));
        o.apply(OrderEventKind::Done { cum_qty: Qty(5) }, Nanos(2));
        assert_eq!(o.state, OrderState::Unknown, "5 filled but no fill seen");
        o.apply(fill(3, 5, 5), Nanos(3));
        o.apply(OrderEventKind::Done { cum_qty: Qty(5) }, Nanos(4));
        assert_eq!(o.state, OrderState::Done);
        assert_eq!(o.remaining(), Qty(5));
    }
}
