//! Rebuilding the engine from its journal after a restart.
//!
//! The journal holds every intent, order, fill, order state and pair transition the
//! engine emitted. Replaying them restores pairs (with their positions and accounting),
//! the orders that were not yet terminal, and every latched halt reason. The engine stays
//! `Reconciling`: [`Engine::start_reconcile`] then asks the venues about every order whose
//! outcome the journal does not know, and nothing new is opened until the runtime sends
//! `Control::ReconcileDone` — at which point one-legged pairs are repaired first.

use super::{Engine, LiveOrder, Role};
use crate::action::{Action, HaltReason, Outbox, Purpose, Record, TradingState};
use crate::order::{Applied, Order, OrderState};
use crate::pair::{Goal, Pair, PairState};
use crate::units::{Nanos, Price, Qty, Quote};

impl Engine {
    /// Applies one journaled record (from an earlier run) to rebuild state. Records must
    /// come in journal order. Unknown ids and inconsistent records are skipped and
    /// counted in `Stats::unmatched_reports`; replay never panics.
    pub fn replay(&mut self, ts: Nanos, rec: &Record) {
        match *rec {
            Record::Intent { pair, coin, purpose, .. } => {
                let Some(cs) = self.coins.get_mut(coin as usize) else {
                    self.stats.unmatched_reports += 1;
                    return;
                };
                if purpose == Purpose::Entry && cs.pair.is_none() {
                    let dir = self.cfg.strategy.direction;
                    cs.pair = Some(Pair::new(pair, coin, dir, Qty::ZERO, Price(0), f64::NAN, ts));
                }
                if let Some(p) = cs.pair.as_mut() {
                    match purpose {
                        Purpose::Exit => p.goal = Goal::Exit,
                        Purpose::Flatten => p.goal = Goal::Flat,
                        Purpose::Entry | Purpose::Hedge => {}
                    }
                }
            }
            Record::Order(req) => {
                let coin = match self.roles.get(req.inst.0 as usize) {
                    Some(Role::Leg(c, _)) => *c,
                    _ => {
                        self.stats.unmatched_reports += 1;
                        return;
                    }
                };
                if let Some(p) = self.coins[coin as usize].pair.as_mut()
                    && p.target.0 == 0
                {
                    p.target = req.qty;
                }
                if self.orders.len() < super::ORDER_CAP {
                    self.orders.push(LiveOrder { order: Order::new(req, ts), coin });
                    self.stats.orders_placed += 1;
                }
            }
            Record::Fill { cl_id, trade_id: _, px, qty, fee, exch_ts: _ } => {
                let Some(i) = self.orders.iter().position(|o| o.order.req.cl_id == cl_id) else {
                    self.stats.unmatched_reports += 1;
                    return;
                };
                let o = &mut self.orders[i];
                // Journal fills carry the delta; rebuild the cumulative quantity from it.
                let cum = Qty(o.order.filled.0 + qty.0);
                let kind =
                    crate::event::OrderEventKind::Fill { trade_id: 0, px, qty, cum_qty: cum, fee };
                if let Applied::Fill { qty, notional, fee } = o.order.apply(kind, ts) {
                    let (coin, order) = (o.coin, o.order);
                    self.book_fill(coin, &order, qty, notional, fee, ts);
                }
                self.retire(i);
            }
            Record::OrderState { cl_id, state, .. } => {
                let Some(i) = self.orders.iter().position(|o| o.order.req.cl_id == cl_id) else {
                    self.stats.unmatched_reports += 1;
                    return;
                };
                // Take the journaled state as it was; an order left `Unknown` or `Sent`
                // stays non-terminal and will be queried.
                self.orders[i].order.state = state;
                self.retire(i);
            }
            Record::Pair(pr) => {
                let Some(cs) = self.coins.get_mut(pr.coin as usize) else { return };
                if pr.to == PairState::Closed {
                    if cs.pair.is_some_and(|p| p.id == pr.pair) {
                        cs.pair = None;
                        self.realized = self.realized.saturating_add(pr.pnl.net().0);
                    }
                    return;
                }
                if let Some(p) = cs.pair.as_mut() {
                    p.state = pr.to;
                    p.fx_entry = if pr.fx_entry.0 > 0 { pr.fx_entry } else { p.fx_entry };
                    p.entry_premium_bps = pr.entry_premium_bps;
                    // The intent before it set the goal (an exit keeps its profit rule).
                    if pr.to == PairState::Closing && p.goal == Goal::Open {
                        p.goal = Goal::Flat;
                    }
                }
            }
            Record::Trading { state } => {
                // Every halt reason latches across restarts except the one a graceful
                // shutdown makes (a record holding only that one changes nothing); anything
                // else restarts in Reconciling. Each record carries the whole set.
                match state {
                    TradingState::Halted(set) => {
                        let latched = set.without(HaltReason::Shutdown);
                        if !latched.is_empty() {
                            self.trading = TradingState::Halted(latched);
                        }
                    }
                    _ if matches!(self.trading, TradingState::Halted(_)) => {
                        self.trading = TradingState::Reconciling;
                    }
                    _ => {}
                }
            }
        }
    }

    fn retire(&mut self, i: usize) {
        if self.orders[i].order.state.is_terminal() {
            self.orders.swap_remove(i);
        }
    }

    /// After replay: asks the venues about every order whose outcome is not known (sent,
    /// open or unknown). Returns how many queries were written.
    pub fn start_reconcile(&mut self, now: Nanos, out: &mut Outbox) -> usize {
        let mut n = 0;
        for o in self.orders.iter_mut() {
            if o.order.state != OrderState::Unknown {
                o.order.state = OrderState::Unknown;
            }
            // Journal times are the previous process's clock: restart the clock of each
            // restored order here (conservatively late), or "not found is final after a
            // while" would wait for as long as the previous process had been running.
            o.order.sent_at = now;
            o.order.updated_at = now;
            if out.push(Action::Query { cl_id: o.order.req.cl_id, inst: o.order.req.inst }) {
                n += 1;
            }
        }
        // Pairs whose legs differ count as unhedged from now: the deadlines restart here.
        for cs in self.coins.iter_mut() {
            if let Some(p) = cs.pair.as_mut() {
                p.unhedged_since = (p.unhedged().0 != 0).then_some(now);
                if p.state == PairState::Opening && p.target.0 == 0 {
                    p.target = p.hedged_qty();
                }
            }
        }
        n
    }

    /// True when no order's outcome is still unknown (reconciliation may finish).
    pub fn outcomes_known(&self) -> bool {
        self.orders.iter().all(|o| !matches!(o.order.state, OrderState::Unknown | OrderState::Sent))
    }

    /// Quantity and fee totals restored, for reporting after a restart.
    pub fn restored_positions(&self) -> impl Iterator<Item = (u16, Qty, Qty, Quote)> + '_ {
        self.coins.iter().enumerate().filter_map(|(c, cs)| {
            cs.pair.map(|p| (c as u16, p.u.pos, p.b.pos, Quote(p.u.fees.0 + p.b.fees.0)))
        })
    }
}
