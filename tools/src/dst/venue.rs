//! The fake venues (Upbit and Binance in one): IOC and market orders matched against the
//! true book, partial fills, rejects, reduce-only rules, positions, and queries by client
//! id. Everything a venue did is kept, so the checker can compare it with the journal.

use std::collections::HashMap;

use kimp_core::event::{Level, OrderEventKind, RejectReason, Side};
use kimp_core::instrument::Instrument;
use kimp_core::order::{ClientId, OrderKind, OrderRequest};
use kimp_core::units::{Price, Qty, Quote, SCALE, mul_div};

/// How an order ended at the venue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Filled completely.
    Filled,
    /// IOC remainder expired (possibly after partial fills).
    Expired,
    /// Refused.
    Rejected(RejectReason),
}

/// One order as the venue knows it.
#[derive(Clone, Copy, Debug)]
pub struct VOrder {
    /// The request.
    pub req: OrderRequest,
    /// Filled quantity.
    pub filled: Qty,
    /// Σ price × qty, quote currency.
    pub notional: Quote,
    /// Σ fees.
    pub fee: Quote,
    /// Outcome.
    pub end: End,
    /// Last trade id.
    pub last_trade: u64,
}

/// What a new order produced: the REST reply and the private-stream events.
#[derive(Clone, Debug, Default)]
pub struct Placed {
    /// REST reply events.
    pub reply: Vec<OrderEventKind>,
    /// Private-stream events.
    pub stream: Vec<OrderEventKind>,
}

/// Both venues.
#[derive(Debug, Default)]
pub struct FakeVenue {
    /// Every order received, by client id.
    pub orders: HashMap<ClientId, VOrder>,
    /// New-order messages received per client id (must never exceed one).
    pub new_order_msgs: HashMap<ClientId, u32>,
    /// Signed base position per instrument (Upbit: change of the coin balance).
    pub pos: Vec<i64>,
    /// Upbit KRW balance change (fixed-point).
    pub krw: i64,
    /// Binance USDT fees paid (fixed-point).
    pub usdt_fees: i64,
    next_trade: u64,
}

impl FakeVenue {
    /// Venues for `n` instruments.
    pub fn new(n: usize) -> Self {
        Self { pos: vec![0; n], next_trade: 1, ..Self::default() }
    }

    /// Handles a new order against the true book of its instrument. `reject` forces a
    /// business reject, `cap` a partial fill (fraction of the quantity), `coin_free` is
    /// the Upbit coin balance available to sell.
    #[allow(clippy::too_many_arguments)]
    pub fn place(
        &mut self,
        req: &OrderRequest,
        inst: &Instrument,
        book: (&[Level], &[Level]),
        reject: Option<RejectReason>,
        cap: Option<f64>,
        coin_free: i64,
        krw_free: i64,
    ) -> Placed {
        *self.new_order_msgs.entry(req.cl_id).or_insert(0) += 1;
        let mut out = Placed::default();
        if self.orders.contains_key(&req.cl_id) {
            // Upbit refuses a reused identifier; Binance would accept it once the first
            // order is done — the checker counts this as a duplicate either way.
            out.reply.push(OrderEventKind::Reject(RejectReason::Duplicate));
            return out;
        }
        let i = req.inst.0 as usize;
        let lot = inst.lot.0.max(1);
        let mut want = req.qty.0;
        let mut why = reject;
        if why.is_none() && req.reduce_only {
            let p = self.pos[i];
            if p == 0 || p.signum() == req.side.sign() {
                why = Some(RejectReason::Other(-2022));
            } else {
                want = want.min(p.abs());
            }
        }
        if why.is_none()
            && inst.venue == kimp_core::instrument::Venue::Upbit
            && req.side == Side::Sell
            && want > coin_free
        {
            why = Some(RejectReason::InsufficientBalance);
        }
        if let Some(r) = why {
            self.orders.insert(
                req.cl_id,
                VOrder {
                    req: *req,
                    filled: Qty(0),
                    notional: Quote(0),
                    fee: Quote(0),
                    end: End::Rejected(r),
                    last_trade: 0,
                },
            );
            out.reply.push(OrderEventKind::Reject(r));
            return out;
        }
        if let Some(c) = cap {
            want = ((want as f64 * c) as i64 / lot) * lot;
        }
        let levels = if req.side == Side::Buy { book.1 } else { book.0 };
        let mut o = VOrder {
            req: *req,
            filled: Qty(0),
            notional: Quote(0),
            fee: Quote(0),
            end: End::Expired,
            last_trade: 0,
        };
        out.reply.push(OrderEventKind::Ack);
        let mut spent = 0i64;
        for l in levels {
            if o.filled.0 >= want {
                break;
            }
            let through = match req.side {
                Side::Buy => l.px.0 <= req.px.0,
                Side::Sell => l.px.0 >= req.px.0,
            };
            if req.kind == OrderKind::LimitIoc && !through {
                break;
            }
            let q = ((want - o.filled.0).min(l.qty.0) / lot) * lot;
            if q <= 0 {
                continue;
            }
            let n = l.px.notional(Qty(q)).unwrap_or(Quote(0));
            if inst.venue == kimp_core::instrument::Venue::Upbit
                && req.side == Side::Buy
                && spent + n.0 > krw_free
            {
                break;
            }
            let fee = Quote(mul_div(n.0, inst.taker_fee_e8, SCALE).unwrap_or(0));
            spent += n.0;
            o.filled = Qty(o.filled.0 + q);
            o.notional = Quote(o.notional.0 + n.0);
            o.fee = Quote(o.fee.0 + fee.0);
            o.last_trade = self.next_trade;
            self.next_trade += 1;
            let kind = OrderEventKind::Fill {
                trade_id: o.last_trade,
                px: l.px,
                qty: Qty(q),
                cum_qty: o.filled,
                fee,
            };
            out.reply.push(kind);
            out.stream.push(kind);
            self.pos[i] += req.side.sign() * q;
            match inst.venue {
                kimp_core::instrument::Venue::Upbit => {
                    self.krw += -req.side.sign() * n.0 - fee.0;
                }
                _ => self.usdt_fees += fee.0,
            }
        }
        if o.filled == req.qty {
            o.end = End::Filled;
        }
        let done = OrderEventKind::Done { cum_qty: o.filled };
        out.reply.push(done);
        out.stream.push(done);
        self.orders.insert(req.cl_id, o);
        out
    }

    /// Answers a query by client id, as the gateways turn a venue's order status into
    /// events: a cumulative fill at the average price, then the terminal state.
    pub fn query(&self, cl_id: ClientId) -> Vec<OrderEventKind> {
        let Some(o) = self.orders.get(&cl_id) else {
            return vec![OrderEventKind::NotFound];
        };
        match o.end {
            End::Rejected(r) => vec![OrderEventKind::Reject(r)],
            _ => {
                let mut v = Vec::new();
                if o.filled.0 > 0 {
                    let avg = Price(mul_div(o.notional.0, SCALE, o.filled.0).unwrap_or(0));
                    v.push(OrderEventKind::Fill {
                        trade_id: o.last_trade,
                        px: avg,
                        qty: o.filled,
                        cum_qty: o.filled,
                        fee: o.fee,
                    });
                }
                v.push(OrderEventKind::Done { cum_qty: o.filled });
                v
            }
        }
    }

    /// Filled quantity of an order (0 when the venue never saw it).
    pub fn filled(&self, cl_id: &ClientId) -> i64 {
        self.orders.get(cl_id).map_or(0, |o| o.filled.0)
    }
}
