//! Market telemetry for the store: each coin leg's best bid/offer when its book changes,
//! at most once per telemetry interval, mark price and funding when they change, and FX quotes when they change (the
//! KRW-USDT book's top and official quotes). Only copies into the outbox: no allocation.

use super::{Engine, Role};
use crate::action::{Action, Outbox, Telemetry};
use crate::event::{Bbo, Funding, FxQuote, FxSource};
use crate::instrument::InstrumentId;
use crate::order::Leg;
use crate::units::Nanos;

impl Engine {
    /// The best bid/offer of a coin leg's book that just changed, at most once per
    /// telemetry interval per book. Sampled on a change, so an idle book sends nothing and
    /// no two samples share the DEDUP key (ts = the book's exchange time, venue, symbol).
    pub(super) fn bbo_telemetry(&mut self, inst: InstrumentId, now: Nanos, out: &mut Outbox) {
        let i = inst.0 as usize;
        let interval = Nanos::from_ms(self.cfg.strategy.telemetry_interval_ms);
        let (Some(b), Some(last)) = (self.books.get(i), self.bbo_sent.get(i).copied()) else {
            return;
        };
        // A book repeated with its old exchange time (Upbit may resend one) is no news.
        if last.is_some_and(|(t, ts)| now.since(t) < interval || ts == b.exch_ts) {
            return;
        }
        if let (Some(bid), Some(ask)) = (b.best_bid(), b.best_ask()) {
            let bbo = Bbo { inst, exch_ts: b.exch_ts, update_id: b.last_id(), bid, ask };
            out.push(Action::Telemetry(Telemetry::Bbo(bbo)));
            self.bbo_sent[i] = Some((now, b.exch_ts));
        }
    }

    /// `f` when it differs from what its coin holds (call before storing it).
    pub(super) fn funding_telemetry(&self, f: &Funding, out: &mut Outbox) {
        let Some(Role::Leg(c, Leg::B)) = self.roles.get(f.inst.0 as usize).copied() else {
            return;
        };
        let changed = self.coins[c as usize].funding.is_none_or(|p| {
            (p.mark, p.rate_e8, p.next_funding) != (f.mark, f.rate_e8, f.next_funding)
        });
        if changed {
            out.push(Action::Telemetry(Telemetry::Funding(*f)));
        }
    }

    /// An official quote `q` when it differs from the one held (call before storing it).
    pub(super) fn official_fx_telemetry(&self, q: &FxQuote, out: &mut Outbox) {
        if self.official_fx.is_none_or(|p| (p.bid, p.ask) != (q.bid, q.ask)) {
            out.push(Action::Telemetry(Telemetry::Fx(*q)));
        }
    }

    /// The KRW-USDT book's top as an FX quote, when it moved since the last one sent
    /// (called after the FX book was updated).
    pub(super) fn usdt_fx_telemetry(&mut self, out: &mut Outbox) {
        let Some(b) = self.fx_inst.and_then(|i| self.books.get(i.0 as usize)) else { return };
        let (Some(bid), Some(ask)) = (b.best_bid(), b.best_ask()) else { return };
        let top = (bid.px, ask.px);
        if self.fx_sent != Some(top) {
            self.fx_sent = Some(top);
            let q =
                FxQuote { source: FxSource::UpbitUsdt, exch_ts: b.exch_ts, bid: top.0, ask: top.1 };
            out.push(Action::Telemetry(Telemetry::Fx(q)));
        }
    }
}
