//! The whole simulated market in one pure state machine: both venues, the generator,
//! accounts and the market-level faults. `step(now)` advances it; order entry points take
//! `now` too. Sockets live elsewhere and only lock, call and broadcast.

use std::collections::BTreeSet;

use kimp_core::instrument::TickRule;
use kimp_core::units::Price;

use super::account::{BinanceAccount, UpbitAccount};
use super::binance_venue::{BinError, BinMarket, BinOrderReq, BinanceVenue};
use super::book::{Px, Qt, SimBook};
use super::config::SimConfig;
use super::events::{MdEvent, Out};
use super::faults::{FaultKind, Faults};
use super::market::{MarketGen, Shape, Shaper};
use super::rng::Rng;
use super::upbit_venue::{FillCap, UpbitError, UpbitMarket, UpbitOrderReq, UpbitVenue};

const E8: f64 = 100_000_000.0;

/// Counters of what the market-level faults did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorldStats {
    /// Steps run.
    pub steps: u64,
    /// Binance depth events lost at the source (`pu` gaps).
    pub depth_gaps: u64,
    /// Upbit books re-sent with an older timestamp.
    pub upbit_regressions: u64,
    /// Old books or depth events repeated by `freeze`.
    pub frozen_repeats: u64,
    /// Orders refused by `order_rejection` / `one_leg_failure`.
    pub fault_rejections: u64,
    /// Funding settlements.
    pub fundings: u64,
}

/// The simulated world.
#[derive(Debug)]
pub struct World {
    /// Simulated epoch at start, ms.
    pub start_ms: u64,
    /// Time of the last step.
    pub now_ms: u64,
    /// Generator.
    pub mkt: MarketGen,
    /// Upbit.
    pub upbit: UpbitVenue,
    /// Binance.
    pub binance: BinanceVenue,
    /// Fault scenarios.
    pub faults: Faults,
    /// Counters.
    pub stats: WorldStats,
    frng: Rng,
    trng: Rng,
    next_mark_ms: u64,
    /// Next funding time (markPrice `T`).
    pub next_funding_ms: u64,
    mark_interval_ms: u64,
    funding_interval_ms: u64,
    /// Binance symbols driven by a replay.
    pub replayed_binance: BTreeSet<String>,
    /// Upbit markets driven by a replay.
    pub replayed_upbit: BTreeSet<String>,
    /// The last depth event published per Binance symbol (`freeze` repeats it).
    last_depth: std::collections::HashMap<String, MdEvent>,
}

fn f2i(v: f64) -> i64 {
    (v * E8).round() as i64
}

impl World {
    /// Builds the markets and accounts of `cfg`, with the simulated clock at `start_ms`.
    pub fn new(cfg: &SimConfig, start_ms: u64) -> Self {
        let seed = cfg.seed;
        let mkt = MarketGen::new(seed, cfg.market, &cfg.coins);
        let n_acc = cfg.effective_accounts().len();
        let mut ua = UpbitAccount::default();
        ua.get_mut("KRW").free = f2i(cfg.balances.upbit_krw);
        for (c, v) in &cfg.balances.upbit_coins {
            ua.get_mut(c).free = f2i(*v);
        }
        let ba = BinanceAccount { wallet: f2i(cfg.balances.binance_usdt), ..Default::default() };
        let mut upbit = UpbitVenue::new(vec![ua; n_acc], cfg.fees.upbit_e8, seed);
        let mut binance = BinanceVenue::new(
            vec![ba; n_acc],
            cfg.fees.binance_taker_e8,
            cfg.fees.binance_maker_e8,
            cfg.leverage as i64,
        );
        for (i, c) in cfg.coins.iter().enumerate() {
            let label = i as u64 * 16;
            let bshape = Shape {
                tick: TickRule::Fixed(Price(c.bin_tick)),
                half_spread_ticks: 0.5,
                slots: 160,
                occupancy: 0.6,
                level_qty: c.bin_level_qty,
                lot: c.bin_step,
            };
            binance.markets.insert(
                c.binance_symbol(),
                BinMarket {
                    spec: c.clone(),
                    symbol: c.binance_symbol(),
                    book: SimBook::new(8_824_371_922_000 + label * 1_000_000, seed ^ (label + 1)),
                    shaper: Some(Shaper::new(bshape, seed, 0x100 + label)),
                    mark: 0,
                    index: 0,
                    funding_rate: 0,
                    last_funding_rate: 0,
                    last_bbo: ((0, 0), (0, 0)),
                    funding_history: Vec::new(),
                },
            );
            let ushape = Shape {
                tick: TickRule::UpbitKrw,
                half_spread_ticks: c.upbit_half_spread_ticks,
                slots: 100,
                occupancy: 0.5,
                level_qty: c.upbit_level_qty,
                lot: 1,
            };
            upbit.markets.insert(
                c.upbit_code(),
                UpbitMarket::new(
                    &c.upbit_code(),
                    Some(Shaper::new(ushape, seed, 0x200 + label)),
                    seed,
                ),
            );
        }
        let fx_shape = Shape {
            tick: TickRule::UpbitKrw,
            half_spread_ticks: 0.5,
            slots: 40,
            occupancy: 0.9,
            level_qty: 60_000.0,
            lot: 1_000_000,
        };
        upbit.markets.insert(
            "KRW-USDT".into(),
            UpbitMarket::new("KRW-USDT", Some(Shaper::new(fx_shape, seed, 0x300)), seed),
        );
        let fi = cfg.funding_interval_ms;
        let mut w = World {
            start_ms,
            now_ms: start_ms,
            mkt,
            upbit,
            binance,
            faults: cfg.faults.clone(),
            stats: WorldStats::default(),
            frng: Rng::stream(seed, 0xFA17),
            trng: Rng::stream(seed, 0x7AD3),
            next_mark_ms: start_ms,
            next_funding_ms: (start_ms / fi + 1) * fi,
            mark_interval_ms: cfg.mark_interval_ms,
            funding_interval_ms: fi,
            replayed_binance: BTreeSet::new(),
            replayed_upbit: BTreeSet::new(),
            last_depth: std::collections::HashMap::new(),
        };
        // Shape the first books and publish them silently: the streams start from there.
        let _ = w.shape_all(1.0, 1.0, 1.0, 1.0, 1.0, 1.0);
        for m in w.binance.markets.values_mut() {
            let _ = m.book.publish_diff();
            m.last_bbo = (m.book.best_bid().unwrap_or((0, 0)), m.book.best_ask().unwrap_or((0, 0)));
        }
        for m in w.upbit.markets.values_mut() {
            m.last_sent = m.book.top(30);
            m.last_sent_ts = start_ms;
            m.stats.prev_close = mid_of(&m.book);
        }
        w.update_marks();
        w
    }

    /// Simulated ms since start.
    pub fn elapsed(&self, now: u64) -> u64 {
        now.saturating_sub(self.start_ms)
    }

    /// Price multiplier and spread multiplier of `flash_crash` for a venue.
    fn crash(&self, upbit: bool, elapsed: u64) -> (f64, f64) {
        match self.faults.active(FaultKind::FlashCrash, upbit, elapsed) {
            Some(sc) => {
                let phase = (elapsed - sc.after_ms) as f64 / 60_000.0;
                let drop = sc.value.clamp(0.0, 0.95);
                let m = if phase < 1.0 {
                    1.0 - drop * phase
                } else {
                    1.0 - drop * (2.0 - phase).max(0.0)
                };
                (m, 10.0)
            }
            None => (1.0, 1.0),
        }
    }

    fn depth_mult(&self, upbit: bool, elapsed: u64) -> f64 {
        self.faults
            .active(FaultKind::LiquidityDry, upbit, elapsed)
            .map(|s| s.value.clamp(0.001, 10.0))
            .unwrap_or(1.0)
    }

    #[allow(clippy::too_many_arguments)]
    fn shape_all(&mut self, bm: f64, bs: f64, bd: f64, um: f64, us: f64, ud: f64) -> Vec<()> {
        for (i, c) in self.mkt.coins.clone().iter().enumerate() {
            let sym = c.spec.binance_symbol();
            let bin_mid = if self.replayed_binance.contains(&sym) {
                match self.binance.markets.get(&sym).map(|m| mid_of(&m.book)) {
                    Some(m) if m > 0 => {
                        self.mkt.set_binance_mid(i, m as f64 / E8);
                        m as f64 / E8
                    }
                    _ => self.mkt.binance_mid(i),
                }
            } else {
                self.mkt.binance_mid(i)
            };
            if !self.replayed_binance.contains(&sym)
                && let Some(m) = self.binance.markets.get_mut(&sym)
                && let Some(sh) = m.shaper.as_mut()
            {
                sh.shape(&mut m.book, bin_mid * bm, bs, bd);
            }
            let code = c.spec.upbit_code();
            let up_mid = self.mkt.upbit_mid(i, bin_mid) * um;
            if !self.replayed_upbit.contains(&code)
                && let Some(m) = self.upbit.markets.get_mut(&code)
                && let Some(sh) = m.shaper.as_mut()
            {
                sh.shape(&mut m.book, up_mid, us, ud);
            }
        }
        let fx = self.mkt.krw_usdt_mid();
        if !self.replayed_upbit.contains("KRW-USDT")
            && let Some(m) = self.upbit.markets.get_mut("KRW-USDT")
            && let Some(sh) = m.shaper.as_mut()
        {
            sh.shape(&mut m.book, fx, us.min(3.0), ud);
        }
        Vec::new()
    }

    fn update_marks(&mut self) {
        for (i, c) in self.mkt.coins.iter().enumerate() {
            let sym = c.spec.binance_symbol();
            let rate = f2i(c.funding_rate);
            if let Some(m) = self.binance.markets.get_mut(&sym) {
                let mid = mid_of(&m.book);
                let mid = if mid > 0 { mid } else { f2i(self.mkt.binance_mid(i)) };
                m.index = mid - mid / 2_500;
                // Mark = index + a premium-index basis proportional to the funding rate.
                m.mark = m.index + ((m.index as i128 * rate as i128 * 8) / 100_000_000) as i64;
                m.funding_rate = rate;
            }
        }
    }

    /// Advances the world to `now` (one cadence step) and returns what it publishes.
    pub fn step(&mut self, now: u64) -> Vec<Out> {
        let now = self.advance_processes(now);
        let el = self.elapsed(now);
        let (bm, bs) = self.crash(false, el);
        let (um, us) = self.crash(true, el);
        let (bd, ud) = (self.depth_mult(false, el), self.depth_mult(true, el));
        self.shape_all(bm, bs, bd, um, us, ud);
        let mut out = Vec::new();
        self.binance.match_resting(now, &mut out);
        self.upbit.match_resting(now, &mut out);
        self.synthetic_trades(now, &mut out);
        self.publish_binance(now, el, &mut out);
        self.publish_upbit(now, el, &mut out);
        self.marks_and_funding(now, &mut out);
        out
    }

    /// One cadence step without the book work (no reshaping, publishing or resting
    /// matches): the processes advance, the tape trades against the current books, and
    /// marks and funding settle, exactly as in [`World::step`]. The book work is the
    /// expensive part of a step; the long-horizon test runs millions of these between
    /// full steps to cover a year of every accumulator quickly.
    pub fn step_tape(&mut self, now: u64) -> Vec<Out> {
        let now = self.advance_processes(now);
        let mut out = Vec::new();
        self.synthetic_trades(now, &mut out);
        self.marks_and_funding(now, &mut out);
        out
    }

    /// Moves the clock to `now` (never backwards) and advances the generator.
    fn advance_processes(&mut self, now: u64) -> u64 {
        let now = now.max(self.now_ms);
        let dt = now - self.now_ms;
        self.now_ms = now;
        self.stats.steps += 1;
        self.mkt.advance(dt);
        now
    }

    fn marks_and_funding(&mut self, now: u64, out: &mut Vec<Out>) {
        if now >= self.next_mark_ms {
            self.update_marks();
            for m in self.binance.markets.values() {
                out.push(Out::Md(MdEvent::BinMark {
                    sym: m.symbol.clone(),
                    e: now,
                    mark: m.mark,
                    index: m.index,
                    rate: m.funding_rate,
                    next_funding: self.next_funding_ms,
                }));
            }
            while self.next_mark_ms <= now {
                self.next_mark_ms += self.mark_interval_ms;
            }
        }
        if now >= self.next_funding_ms {
            let syms: Vec<String> = self.binance.markets.keys().cloned().collect();
            for s in syms {
                self.binance.settle_funding(&s, now, out);
            }
            self.stats.fundings += 1;
            while self.next_funding_ms <= now {
                self.next_funding_ms += self.funding_interval_ms;
            }
        }
    }

    fn synthetic_trades(&mut self, now: u64, out: &mut Vec<Out>) {
        // Borrowed field by field: this runs every step, so no key lists are collected.
        let trng = &mut self.trng;
        for m in self.upbit.markets.values_mut() {
            if self.replayed_upbit.contains(&m.code) || !trng.chance(0.15) {
                continue;
            }
            let bid = trng.chance(0.5);
            let lvl = if bid { m.book.best_ask() } else { m.book.best_bid() };
            if let Some((px, q)) = lvl {
                let frac = 0.02 + 0.2 * trng.unit();
                let qty = ((q as f64 * frac) as i64).max(1);
                for e in m.record_trade(now, px, qty, bid) {
                    out.push(Out::Md(e));
                }
            }
        }
        let (markets, trade_ids) = self.binance.markets_and_trade_ids();
        for m in markets.values() {
            if self.replayed_binance.contains(&m.symbol) || !trng.chance(0.3) {
                continue;
            }
            let buy = trng.chance(0.5);
            let lvl = if buy { m.book.best_ask() } else { m.book.best_bid() };
            if let Some((px, q)) = lvl {
                let step = m.spec.bin_step;
                let qty = (((q as f64 * 0.1 * trng.unit()) as i64) / step * step).max(step);
                let id = *trade_ids;
                *trade_ids += 1;
                out.push(Out::Md(MdEvent::BinTrade {
                    sym: m.symbol.clone(),
                    e: now,
                    id,
                    px,
                    qty,
                    buyer_maker: !buy,
                    pdp: m.spec.bin_price_dp,
                    qdp: m.spec.bin_qty_dp,
                }));
            }
        }
    }

    fn publish_binance(&mut self, now: u64, el: u64, out: &mut Vec<Out>) {
        let gap = self.faults.active(FaultKind::DepthGap, false, el).map(|s| s.p).unwrap_or(0.0);
        let freeze = self.faults.active(FaultKind::Freeze, false, el).is_some();
        for m in self.binance.markets.values_mut() {
            if self.replayed_binance.contains(&m.symbol) {
                continue;
            }
            if freeze {
                // Changes stay unpublished (one merged event when the freeze ends).
                if let Some(ev) = self.last_depth.get(&m.symbol) {
                    self.stats.frozen_repeats += 1;
                    out.push(Out::Md(ev.clone()));
                }
                continue;
            }
            if let Some(d) = m.book.publish_diff() {
                if gap > 0.0 && self.frng.chance(gap) {
                    self.stats.depth_gaps += 1;
                } else {
                    let ev = MdEvent::BinDepth {
                        sym: m.symbol.clone(),
                        e: now,
                        t: now.saturating_sub(2),
                        diff: d,
                        pdp: m.spec.bin_price_dp,
                        qdp: m.spec.bin_qty_dp,
                    };
                    if self.faults.configured(FaultKind::Freeze, false).is_some() {
                        self.last_depth.insert(m.symbol.clone(), ev.clone());
                    }
                    out.push(Out::Md(ev));
                }
            }
            let bbo = (m.book.best_bid().unwrap_or((0, 0)), m.book.best_ask().unwrap_or((0, 0)));
            if bbo != m.last_bbo {
                m.last_bbo = bbo;
                out.push(Out::Md(MdEvent::BinBookTicker {
                    sym: m.symbol.clone(),
                    u: m.book.current_id(),
                    e: now,
                    t: now.saturating_sub(2),
                    bid: bbo.0,
                    ask: bbo.1,
                    pdp: m.spec.bin_price_dp,
                    qdp: m.spec.bin_qty_dp,
                }));
            }
        }
    }

    fn publish_upbit(&mut self, now: u64, el: u64, out: &mut Vec<Out>) {
        let regress = self.faults.active(FaultKind::DepthGap, true, el).map(|s| s.p).unwrap_or(0.0);
        let freeze = self.faults.active(FaultKind::Freeze, true, el).is_some();
        for m in self.upbit.markets.values_mut() {
            if self.replayed_upbit.contains(&m.code) {
                continue;
            }
            if freeze {
                // The last book, with its old timestamp, every step.
                self.stats.frozen_repeats += 1;
                out.push(Out::Md(MdEvent::UpbitBook {
                    code: m.code.clone(),
                    ts: m.last_sent_ts,
                    bids: m.last_sent.0.clone(),
                    asks: m.last_sent.1.clone(),
                }));
                continue;
            }
            let top = m.book.top(30);
            if top == m.last_sent {
                continue;
            }
            let old = std::mem::replace(&mut m.last_sent, top.clone());
            let old_ts = std::mem::replace(&mut m.last_sent_ts, now);
            out.push(Out::Md(MdEvent::UpbitBook {
                code: m.code.clone(),
                ts: now,
                bids: top.0,
                asks: top.1,
            }));
            if regress > 0.0 && self.frng.chance(regress) {
                self.stats.upbit_regressions += 1;
                out.push(Out::Md(MdEvent::UpbitBook {
                    code: m.code.clone(),
                    ts: old_ts,
                    bids: old.0,
                    asks: old.1,
                }));
            }
        }
    }

    /// Fill cap from `partial_fill` for a venue.
    fn cap(&self, upbit: bool, now: u64) -> f64 {
        self.faults
            .active(FaultKind::PartialFill, upbit, self.elapsed(now))
            .map(|s| s.value)
            .unwrap_or(1.0)
    }

    /// Decides whether a fault refuses this order: `Some(true)` = a 5xx, `Some(false)` = a
    /// venue business error.
    fn fault_refusal(&mut self, upbit: bool, now: u64) -> Option<bool> {
        let el = self.elapsed(now);
        if self
            .faults
            .active(FaultKind::OneLegFailure, upbit, el)
            .is_some_and(|s| self.frng.chance(s.p))
        {
            self.stats.fault_rejections += 1;
            return Some(false);
        }
        if let Some(p) = self.faults.active(FaultKind::OrderRejection, upbit, el).map(|s| s.p)
            && self.frng.chance(p)
        {
            self.stats.fault_rejections += 1;
            return Some(self.frng.chance(0.5));
        }
        None
    }

    /// `POST /v1/orders`: returns the 201 body.
    pub fn upbit_place(
        &mut self,
        now: u64,
        account: usize,
        req: &UpbitOrderReq,
    ) -> (Result<String, UpbitError>, Vec<Out>) {
        let now = now.max(self.now_ms);
        let mut out = Vec::new();
        if let Err(e) = self.upbit.burn_identifier(account, req.identifier.as_deref()) {
            return (Err(e), out);
        }
        let bid = req.side.as_deref() == Some("bid");
        match self.fault_refusal(true, now) {
            Some(true) => {
                return (
                    Err(UpbitError::new(500, "server_error", "일시적인 서버 오류입니다.")),
                    out,
                );
            }
            Some(false) => {
                let name = if bid { "insufficient_funds_bid" } else { "insufficient_funds_ask" };
                let cur = if bid {
                    "KRW"
                } else {
                    req.market.as_deref().unwrap_or("").trim_start_matches("KRW-")
                };
                return (
                    Err(UpbitError::new(
                        400,
                        name,
                        format!("주문가능한 금액({cur})이 부족합니다."),
                    )),
                    out,
                );
            }
            None => {}
        }
        let cap = self.cap(true, now);
        let r = self.upbit.place(now, account, req, FillCap(cap), &mut out).map(|i| {
            // The answer reflects the order at acceptance (`wait`), as Upbit's does.
            let mut o = self.upbit.orders[i].clone();
            o.state = "wait";
            o.executed = 0;
            o.funds = 0;
            o.paid_fee = 0;
            o.fills.clear();
            o.locked = if o.bid {
                o.price
                    .map(|p| {
                        if o.ord_type == "limit" {
                            super::book::notional(p, o.volume.unwrap_or(0))
                        } else {
                            p
                        }
                    })
                    .unwrap_or(0)
                    + o.reserved_fee
            } else {
                o.volume.unwrap_or(0)
            };
            o.json(false)
        });
        (r, out)
    }

    /// `POST /fapi/v1/order`: returns the body (ACK or RESULT).
    pub fn binance_place(
        &mut self,
        now: u64,
        account: usize,
        req: &BinOrderReq,
    ) -> (Result<String, BinError>, Vec<Out>) {
        let now = now.max(self.now_ms);
        let mut out = Vec::new();
        match self.fault_refusal(false, now) {
            Some(true) => {
                return (
                    Err(BinError {
                        status: 503,
                        code: -1001,
                        msg: "Internal error; unable to process your request. Please try again."
                            .into(),
                    }),
                    out,
                );
            }
            Some(false) => return (Err(BinError::bad(-2019, "Margin is insufficient.")), out),
            None => {}
        }
        let cap = self.cap(false, now);
        let r = self
            .binance
            .place(now, account, req, cap, &mut out)
            .map(|i| self.binance.orders[i].json(!req.result));
        (r, out)
    }

    /// Replayed Binance depth: applies it and returns the event to publish.
    pub fn replay_binance_depth(
        &mut self,
        sym: &str,
        e: u64,
        t: u64,
        diff: super::book::DepthDiff,
    ) -> Option<Out> {
        let m = self.binance.markets.get_mut(sym)?;
        m.book.apply_recorded(&diff);
        Some(Out::Md(MdEvent::BinDepth {
            sym: sym.to_owned(),
            e,
            t,
            diff,
            pdp: m.spec.bin_price_dp,
            qdp: m.spec.bin_qty_dp,
        }))
    }

    /// Replayed Upbit book: replaces it and returns the event to publish.
    pub fn replay_upbit_book(
        &mut self,
        code: &str,
        ts: u64,
        bids: Vec<(Px, Qt)>,
        asks: Vec<(Px, Qt)>,
    ) -> Out {
        let m = self
            .upbit
            .markets
            .entry(code.to_owned())
            .or_insert_with(|| UpbitMarket::new(code, None, 0));
        m.book.reset(0, &bids, &asks);
        m.last_sent = (bids.clone(), asks.clone());
        m.last_sent_ts = ts;
        Out::Md(MdEvent::UpbitBook { code: code.to_owned(), ts, bids, asks })
    }
}

/// Mid price of a book (0 when a side is empty).
pub fn mid_of(b: &SimBook) -> Px {
    match (b.best_bid(), b.best_ask()) {
        (Some(x), Some(y)) => (x.0 + y.0) / 2,
        _ => 0,
    }
}
