//! The engine: one deterministic state machine from events to actions.
//!
//! `Engine::on_event(now, &event, &mut outbox)` applies the event (books, funding, FX,
//! balances, order reports, control), then runs whatever the event makes due: the
//! premium and strategy for the coin whose book moved, the pair state machine for the
//! coin whose order changed, deadlines on a timer. It never reads a clock, never
//! allocates after `new`, never blocks and never panics on venue input.

use crate::action::{
    Action, Alert, HaltReason, KimpSample, Outbox, PairRecord, PnlSplit, Purpose, Record,
    StatusSnapshot, Telemetry, TradingState,
};
use crate::book::{Book, BookState, DiffOutcome, SeqRule};
use crate::config::{ConfigError, Direction, EngineConfig, FundingFilter, OneLegPolicy};
use crate::event::{
    Balance, Control, Event, FxQuote, FxSource, OrderEvent, OrderEventKind, Param, Side,
};
use crate::instrument::{Instrument, InstrumentId, Symbol, TickRule, Venue};
use crate::order::{Applied, ClientId, Leg, Order, OrderKind, OrderRequest, OrderState};
use crate::pair::{Goal, Pair, PairState};
use crate::premium::{self, Quotes};
use crate::risk::{OrderRate, RiskReject, purpose_allowed};
use crate::units::{Nanos, Price, Qty, Quote, SCALE, mul_div};

mod recovery;
mod telemetry;

/// Most orders alive at once (not yet terminal).
pub const ORDER_CAP: usize = 64;
/// Levels kept per side of every book.
pub const BOOK_DEPTH: usize = 1_024;
/// Price window, in ticks, of the ladder books of fixed-tick instruments (Binance): at
/// BTCUSDT's tick of 0.1 that is ±~800 USDT around the top, far more than a REST
/// snapshot's 1,000 levels span.
pub const LADDER_TICKS: usize = 8_192;
/// Actions one intent may need (intent record + 2 × (order record + place)).
const INTENT_ACTIONS: usize = 5;

/// A coin traded as a pair: its Upbit KRW market and its Binance perpetual.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoinSpec {
    /// Base asset, e.g. `BTC`.
    pub name: Symbol,
    /// Upbit instrument (`KRW-BTC`).
    pub upbit: InstrumentId,
    /// Binance perpetual (`BTCUSDT`).
    pub binance: InstrumentId,
}

/// The markets the engine trades: the instrument table, the coins, and the FX book.
#[derive(Clone, Debug)]
pub struct Markets {
    /// Instruments, indexed by `InstrumentId`.
    pub instruments: Vec<Instrument>,
    /// Coins.
    pub coins: Vec<CoinSpec>,
    /// The Upbit `KRW-USDT` instrument, when FX comes from its book.
    pub fx: Option<InstrumentId>,
}

/// Counters the engine keeps (exported as telemetry and checked by tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events processed.
    pub events: u64,
    /// Intents made.
    pub intents: u64,
    /// Orders placed (Place actions).
    pub orders_placed: u64,
    /// Orders refused by pre-trade risk.
    pub risk_rejects: u64,
    /// Order reports for ids we do not track (foreign or retired orders).
    pub unmatched_reports: u64,
    /// Order reports that changed nothing (duplicates, stale).
    pub ignored_reports: u64,
    /// Diffs that arrived while a book was not synced.
    pub diffs_not_synced: u64,
    /// Diffs dropped as older than the book.
    pub diffs_dropped: u64,
    /// Sequence gaps detected.
    pub gaps: u64,
    /// Events for instruments the engine does not know.
    pub unknown_instrument: u64,
    /// Funding settlements booked.
    pub funding_settlements: u64,
    /// Pairs closed.
    pub pairs_closed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    None,
    Leg(u16, Leg),
    Fx,
}

#[derive(Clone, Copy, Debug)]
struct LiveOrder {
    order: Order,
    coin: u16,
}

#[derive(Clone, Copy, Debug)]
struct CoinState {
    spec: CoinSpec,
    pair: Option<Pair>,
    funding: Option<crate::event::Funding>,
    last_entry: Option<Nanos>,
    last_sample: Option<Nanos>,
    /// Free coin inventory on Upbit.
    upbit_free: Qty,
    upbit_base: Qty,
    /// Last position the venue reported for the perp, and when (reconciliation).
    venue_pos_b: Option<(Qty, Nanos)>,
    /// Last free coin balance Upbit reported, and when (reconciliation).
    venue_u: Option<(Qty, Nanos)>,
    /// Last order activity of this run on the coin (a placement or a report): an account
    /// report asked for before it may predate a fill.
    touched: Option<Nanos>,
    flatten_pending: bool,
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    instruments: Vec<Instrument>,
    books: Vec<Book>,
    fresh: Vec<bool>,
    roles: Vec<Role>,
    coins: Vec<CoinState>,
    fx_inst: Option<InstrumentId>,
    official_fx: Option<FxQuote>,
    /// The KRW-USDT top last sent as FX telemetry.
    fx_sent: Option<(Price, Price)>,
    /// Per instrument, the engine time and the book's exchange time of its last BBO sample.
    bbo_sent: Vec<Option<(Nanos, Nanos)>>,
    orders: Vec<LiveOrder>,
    epoch: u32,
    next_seq: u32,
    trading: TradingState,
    reconciled: bool,
    rate: OrderRate,
    krw_free: i64,
    /// Last free KRW Upbit reported after reconciliation, and when.
    venue_krw: Option<(Qty, Nanos)>,
    krw_base: i64,
    usdt_free: i64,
    usdt_base: i64,
    realized: i64,
    stats: Stats,
}

impl Engine {
    /// Builds an engine. `epoch` must differ on every start (the runtime keeps it in the
    /// journal) so client ids are never reused across restarts.
    pub fn new(cfg: EngineConfig, markets: &Markets, epoch: u32) -> Result<Self, ConfigError> {
        cfg.validate()?;
        if cfg.strategy.slippage_bps > cfg.risk.collar_bps {
            return Err(ConfigError {
                key: "strategy.slippage_bps",
                problem: format!(
                    "{} exceeds risk.collar_bps ({}): entries would be refused by the collar",
                    cfg.strategy.slippage_bps, cfg.risk.collar_bps
                ),
            });
        }
        let n = markets.instruments.len();
        if n > u16::MAX as usize || markets.coins.len() > u16::MAX as usize {
            return Err(ConfigError { key: "markets", problem: "too many instruments".into() });
        }
        let mut roles = vec![Role::None; n];
        let bad = |what: &str| ConfigError { key: "markets", problem: what.to_string() };
        for (c, spec) in markets.coins.iter().enumerate() {
            for (leg, id, venue) in
                [(Leg::U, spec.upbit, Venue::Upbit), (Leg::B, spec.binance, Venue::Binance)]
            {
                let i = id.0 as usize;
                let inst = markets
                    .instruments
                    .get(i)
                    .ok_or_else(|| bad("coin names an unknown instrument"))?;
                if inst.venue != venue {
                    return Err(bad("coin leg is on the wrong venue"));
                }
                if roles[i] != Role::None {
                    return Err(bad("instrument used twice"));
                }
                roles[i] = Role::Leg(c as u16, leg);
            }
        }
        if let Some(fx) = markets.fx {
            let r = roles.get_mut(fx.0 as usize).ok_or_else(|| bad("unknown FX instrument"))?;
            if *r != Role::None {
                return Err(bad("FX instrument is also a coin leg"));
            }
            *r = Role::Fx;
        } else if cfg.strategy.fx_source == FxSource::UpbitUsdt {
            return Err(ConfigError {
                key: "strategy.fx_source",
                problem: "upbit_usdt needs the KRW-USDT market in the instrument list".into(),
            });
        }
        let books = markets
            .instruments
            .iter()
            .map(|i| {
                let rule = match i.venue {
                    Venue::Upbit => SeqRule::Snapshots,
                    Venue::Binance => SeqRule::Futures,
                    Venue::BinanceSpot => SeqRule::Spot,
                };
                match i.tick {
                    TickRule::Fixed(t) if t.0 > 0 => Book::with_tick(rule, t, LADDER_TICKS),
                    _ => Book::new(rule, BOOK_DEPTH),
                }
            })
            .collect();
        let coins = markets
            .coins
            .iter()
            .map(|&spec| CoinState {
                spec,
                pair: None,
                funding: None,
                last_entry: None,
                last_sample: None,
                upbit_free: Qty::ZERO,
                upbit_base: Qty::ZERO,
                venue_pos_b: None,
                venue_u: None,
                touched: None,
                flatten_pending: false,
            })
            .collect();
        Ok(Self {
            rate: OrderRate::new(cfg.risk.orders_per_sec_max),
            cfg,
            instruments: markets.instruments.clone(),
            books,
            fresh: vec![false; n],
            roles,
            coins,
            fx_inst: markets.fx,
            official_fx: None,
            fx_sent: None,
            bbo_sent: vec![None; n],
            orders: Vec::with_capacity(ORDER_CAP),
            epoch,
            next_seq: 0,
            trading: TradingState::Reconciling,
            reconciled: false,
            krw_free: 0,
            venue_krw: None,
            krw_base: 0,
            usdt_free: 0,
            usdt_base: 0,
            realized: 0,
            stats: Stats::default(),
        })
    }

    // ----- read-only views -------------------------------------------------------------

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    /// Trading state.
    pub fn trading_state(&self) -> TradingState {
        self.trading
    }
    /// The open pair of a coin, if any.
    pub fn pair(&self, coin: u16) -> Option<&Pair> {
        self.coins.get(coin as usize)?.pair.as_ref()
    }
    /// Book of an instrument.
    pub fn book(&self, inst: InstrumentId) -> Option<&Book> {
        self.books.get(inst.0 as usize)
    }
    /// Live (non-terminal) orders.
    pub fn live_orders(&self) -> impl Iterator<Item = &Order> + '_ {
        self.orders.iter().map(|o| &o.order)
    }
    /// Number of coins.
    pub fn coin_count(&self) -> usize {
        self.coins.len()
    }
    /// The configuration in force.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }
    /// Realised net PnL since start, KRW fixed-point.
    pub fn realized_krw(&self) -> i64 {
        self.realized
    }
    /// Next intent sequence (journal replay restores it).
    pub fn next_seq(&self) -> u32 {
        self.next_seq
    }
    /// The last perp position the venue reported for a coin (reconciliation check).
    pub fn venue_position(&self, coin: u16) -> Option<Qty> {
        self.coins.get(coin as usize)?.venue_pos_b.map(|(q, _)| q)
    }

    // ----- the entry point -------------------------------------------------------------

    /// Applies one event at time `now` and writes the resulting actions to `out`.
    pub fn on_event(&mut self, now: Nanos, ev: &Event<'_>, out: &mut Outbox) {
        self.stats.events += 1;
        match *ev {
            Event::Book(ref s) => {
                if let Some(b) = self.books.get_mut(s.inst.0 as usize) {
                    // Upbit books carry no sequence number: one older than the book held
                    // (a repeated or reordered message) would turn the book back in time.
                    if b.rule() == SeqRule::Snapshots
                        && b.state() == BookState::Synced
                        && s.exch_ts < b.exch_ts
                    {
                        self.stats.diffs_dropped += 1;
                        return;
                    }
                    b.apply_snapshot(s, now);
                    self.on_market(s.inst, now, out);
                } else {
                    self.stats.unknown_instrument += 1;
                }
            }
            Event::Depth(ref d) => {
                let Some(b) = self.books.get_mut(d.inst.0 as usize) else {
                    self.stats.unknown_instrument += 1;
                    return;
                };
                match b.apply_diff(d, now) {
                    DiffOutcome::Applied => self.on_market(d.inst, now, out),
                    DiffOutcome::Dropped => self.stats.diffs_dropped += 1,
                    DiffOutcome::NotSynced => self.stats.diffs_not_synced += 1,
                    DiffOutcome::Gap => {
                        self.stats.gaps += 1;
                        out.push(Action::Resync(d.inst));
                        self.note_stale(d.inst, out);
                    }
                }
            }
            Event::Bbo(_) | Event::Trade(_) => {}
            Event::Funding(f) => {
                self.funding_telemetry(&f, out);
                self.on_funding(f);
            }
            Event::Fx(q) => {
                if q.source == FxSource::Official && q.bid.0 > 0 && q.ask.0 >= q.bid.0 {
                    self.official_fx_telemetry(&q, out);
                    self.official_fx = Some(q);
                    if self.cfg.strategy.fx_source == FxSource::Official {
                        for c in 0..self.coins.len() {
                            self.evaluate(c as u16, now, out);
                        }
                    }
                }
            }
            Event::Balance(b) => self.on_balance(b, now),
            Event::Position(p) => {
                if let Some(Role::Leg(c, Leg::B)) = self.roles.get(p.inst.0 as usize).copied() {
                    self.coins[c as usize].venue_pos_b = Some((p.qty, now));
                } else {
                    self.stats.unknown_instrument += 1;
                }
            }
            Event::Order(oe) => self.on_order(oe, now, out),
            Event::Control(c) => self.on_control(c, now, out),
            Event::FeedDown(v) => {
                for i in 0..self.books.len() {
                    if self.instruments[i].venue == v {
                        self.books[i].mark_stale();
                        self.note_stale(InstrumentId(i as u16), out);
                    }
                }
            }
            Event::Timer => self.on_timer(now, out),
        }
    }

    // ----- market data -----------------------------------------------------------------

    fn on_market(&mut self, inst: InstrumentId, now: Nanos, out: &mut Outbox) {
        self.fresh[inst.0 as usize] = true;
        match self.roles[inst.0 as usize] {
            Role::Leg(c, _) => {
                self.bbo_telemetry(inst, now, out);
                self.evaluate(c, now, out)
            }
            Role::Fx => {
                self.usdt_fx_telemetry(out);
                if self.cfg.strategy.fx_source == FxSource::UpbitUsdt {
                    for c in 0..self.coins.len() {
                        self.evaluate(c as u16, now, out);
                    }
                }
            }
            Role::None => {}
        }
    }

    fn note_stale(&mut self, inst: InstrumentId, out: &mut Outbox) {
        let i = inst.0 as usize;
        if self.fresh[i] {
            self.fresh[i] = false;
            out.push(Action::Alert(Alert::StaleBook(inst)));
        }
    }

    fn on_funding(&mut self, f: crate::event::Funding) {
        let Some(Role::Leg(c, Leg::B)) = self.roles.get(f.inst.0 as usize).copied() else {
            self.stats.unknown_instrument += 1;
            return;
        };
        let coin = &mut self.coins[c as usize];
        if let Some(prev) = coin.funding {
            // The rate announced before a funding time settles at that time.
            if f.next_funding > prev.next_funding
                && f.exch_ts >= prev.next_funding
                && let Some(p) = coin.pair.as_mut()
            {
                p.settle_funding(prev.rate_e8, f.mark);
                self.stats.funding_settlements += 1;
            }
        }
        coin.funding = Some(f);
    }

    fn on_balance(&mut self, b: Balance, now: Nanos) {
        let free = b.free.0;
        match (b.venue, b.asset.as_str()) {
            // After reconciliation a KRW report may predate a fill: it is taken only when
            // checked (`CheckAccount`) with nothing in flight since it was asked for.
            (Venue::Upbit, "KRW") if self.reconciled => self.venue_krw = Some((b.free, now)),
            (Venue::Upbit, "KRW") => self.krw_free = free,
            (Venue::Binance, "USDT") => self.usdt_free = free,
            (Venue::Upbit, asset) => {
                for c in self.coins.iter_mut() {
                    if c.spec.name.as_str() == asset {
                        c.venue_u = Some((b.free, now));
                        // After reconciliation the engine's own count (fills since) is
                        // what a report is checked against (`CheckAccount`), not replaced by.
                        if !self.reconciled {
                            c.upbit_free = b.free;
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn fx_quote(&self) -> Option<(Price, Price)> {
        match self.cfg.strategy.fx_source {
            FxSource::Official => self.official_fx.map(|q| (q.bid, q.ask)),
            FxSource::UpbitUsdt => {
                let b = self.books.get(self.fx_inst?.0 as usize)?;
                Some((b.best_bid()?.px, b.best_ask()?.px))
            }
        }
    }

    /// What may be deployed out of `free`, keeping the reserve of `base` (the balance at
    /// reconciliation) that the deployable percentage leaves aside.
    fn usable(&self, free: i64, base: i64) -> i64 {
        let reserve = mul_div(base.max(0), 100 - self.cfg.strategy.deployable_pct as i64, 100)
            .unwrap_or(i64::MAX);
        free.saturating_sub(reserve).max(0)
    }

    /// Entry size for a coin: min of the configured maximum, free capital on each leg
    /// and depth within the slippage budget, rounded to both venues' lots.
    fn size(&self, c: usize) -> Qty {
        let spec = self.coins[c].spec;
        let (bu, bb) = (&self.books[spec.upbit.0 as usize], &self.books[spec.binance.0 as usize]);
        let dir = self.cfg.strategy.direction;
        let u_side = dir.upbit_open_side();
        let (Some(u_touch), Some(b_touch)) =
            (bu.side_for_taker(u_side).best(), bb.side_for_taker(u_side.opposite()).best())
        else {
            return Qty::ZERO;
        };
        let slip = self.cfg.strategy.slippage_bps;
        let lim = |px: Price, side: Side| -> Price {
            let d = mul_div(px.0, slip, 10_000).unwrap_or(0);
            Price(if side == Side::Buy { px.0 + d } else { px.0 - d })
        };
        let depth_u = bu.side_for_taker(u_side).depth_within(lim(u_touch.px, u_side));
        let b_side = u_side.opposite();
        let depth_b = bb.side_for_taker(b_side).depth_within(lim(b_touch.px, b_side));
        let max_q =
            mul_div(self.cfg.strategy.max_pair_notional_krw, SCALE * SCALE, u_touch.px.0.max(1))
                .unwrap_or(0);
        let usdt = self.usable(self.usdt_free - self.margin_used(), self.usdt_base);
        let margin_q =
            mul_div(usdt, SCALE * self.cfg.strategy.leverage as i64, b_touch.px.0.max(1))
                .unwrap_or(0);
        let fee_u = self.instruments[spec.upbit.0 as usize].taker_fee_e8;
        let capital_q = match dir {
            Direction::SellPremium => {
                let cs = &self.coins[c];
                self.usable(cs.upbit_free.0, cs.upbit_base.0)
            }
            Direction::BuyDiscount => {
                let krw = self.usable(self.krw_free, self.krw_base);
                let px_with_fee = u_touch.px.0 as i128 * (SCALE + fee_u) as i128 / SCALE as i128;
                (krw as i128 * SCALE as i128 / px_with_fee.max(1)) as i64
            }
        };
        let q = Qty(depth_u.0.min(depth_b.0).min(max_q).min(margin_q).min(capital_q).max(0));
        let ib = &self.instruments[spec.binance.0 as usize];
        let iu = &self.instruments[spec.upbit.0 as usize];
        iu.round_qty(ib.round_qty(q))
    }

    fn margin_used(&self) -> i64 {
        let lev = self.cfg.strategy.leverage.max(1) as i64;
        let mut used = 0i64;
        for c in &self.coins {
            if let Some(p) = &c.pair {
                let px = self.books[c.spec.binance.0 as usize].best_bid().map_or(0, |l| l.px.0);
                used = used
                    .saturating_add(mul_div(p.b.pos.0.abs(), px, SCALE * lev).unwrap_or(i64::MAX));
            }
        }
        used
    }

    fn evaluate(&mut self, coin: u16, now: Nanos, out: &mut Outbox) {
        let c = coin as usize;
        let spec = self.coins[c].spec;
        let max_age = Nanos::from_ms(self.cfg.risk.book_age_ms_max);
        let (bu, bb) = (&self.books[spec.upbit.0 as usize], &self.books[spec.binance.0 as usize]);
        if !bu.is_fresh(now, max_age) || !bb.is_fresh(now, max_age) {
            return;
        }
        let Some(fx) = self.fx_quote() else { return };
        if self.cfg.strategy.fx_source == FxSource::UpbitUsdt {
            let fb = &self.books[self.fx_inst.map_or(0, |i| i.0 as usize)];
            if !fb.is_fresh(now, max_age) {
                return;
            }
        }
        let pair = self.coins[c].pair;
        let hedged = pair.filter(|p| p.state == PairState::Hedged);
        let interval = Nanos::from_ms(self.cfg.strategy.telemetry_interval_ms);
        let sample = self.coins[c].last_sample.is_none_or(|t| now.since(t) >= interval);
        // Sizing and the book walks below are the costly part of an event, so they run only
        // where a result is used: a telemetry sample needs both directions at the sample
        // size; otherwise only a coin without a pair uses them, and only in the configured
        // direction (a hedged pair prices its exit with its own walks in `consider_exit`).
        // What is emitted is the same as computing everything every time.
        let dir = self.cfg.strategy.direction;
        let sized =
            if hedged.is_none() && (sample || pair.is_none()) { self.size(c) } else { Qty::ZERO };
        let q = match hedged {
            Some(p) => p.hedged_qty(),
            None if sized.0 > 0 => sized,
            None => self.instruments[spec.binance.0 as usize].min_qty,
        };
        let quotes = Quotes { upbit: bu, binance: bb, fx_bid: fx.0, fx_ask: fx.1 };
        let wanted = |d: Direction| sample || (pair.is_none() && sized.0 > 0 && d == dir);
        let exec = |d: Direction| {
            if wanted(d) { premium::executable(&quotes, d, q) } else { None }
        };
        let sell = exec(Direction::SellPremium);
        let buy = exec(Direction::BuyDiscount);
        let funding_e8 = self.coins[c].funding.map_or(0, |f| f.rate_e8);
        if sample {
            self.coins[c].last_sample = Some(now);
            let mid = premium::mid_bps(&quotes).unwrap_or(f64::NAN);
            out.push(Action::Telemetry(Telemetry::Kimp(KimpSample {
                coin,
                ts: now,
                mid_bps: mid,
                sell_bps: sell.map_or(f64::NAN, |e| e.bps),
                buy_bps: buy.map_or(f64::NAN, |e| e.bps),
                fx: Price((fx.0.0 + fx.1.0) / 2),
                fx_source: self.cfg.strategy.fx_source,
                qty: q,
                funding_e8,
            })));
        }
        match pair {
            None => {
                let exec = if dir == Direction::SellPremium { sell } else { buy };
                if let Some(e) = exec
                    && sized.0 > 0
                    && self.entry_signal(c, e.bps, funding_e8, now)
                {
                    self.enter(coin, sized, e, now, out);
                }
            }
            Some(p) if p.state == PairState::Hedged => self.consider_exit(coin, fx, now, out),
            Some(p) if p.goal == Goal::Exit => self.exit_retry(coin, now, out),
            Some(_) => {}
        }
    }

    fn entry_signal(&self, c: usize, bps: f64, funding_e8: i64, now: Nanos) -> bool {
        let s = &self.cfg.strategy;
        if self.trading != TradingState::Active {
            return false;
        }
        let premium_ok = match s.direction {
            Direction::SellPremium => bps >= s.entry_bps as f64,
            Direction::BuyDiscount => bps <= s.entry_bps as f64,
        };
        let have_funding = self.coins[c].funding.is_some();
        let funding_ok = match s.funding_filter {
            FundingFilter::Off => true,
            FundingFilter::Positive => have_funding && funding_e8 > 0,
            FundingFilter::Favourable => {
                have_funding
                    && match s.direction {
                        Direction::SellPremium => funding_e8 < 0, // long perp is paid when < 0
                        Direction::BuyDiscount => funding_e8 > 0,
                    }
            }
        };
        let cooled = self.coins[c]
            .last_entry
            .is_none_or(|t| now.since(t) >= Nanos::from_ms(s.entry_cooldown_ms));
        premium_ok && funding_ok && cooled
    }

    fn open_pairs(&self) -> u32 {
        self.coins.iter().filter(|c| c.pair.is_some()).count() as u32
    }

    fn enter(&mut self, coin: u16, q: Qty, e: premium::Exec, now: Nanos, out: &mut Outbox) {
        let c = coin as usize;
        self.coins[c].last_entry = Some(now);
        if self.open_pairs() >= self.cfg.risk.max_open_pairs {
            self.reject(coin, RiskReject::MaxOpenPairs, out);
            return;
        }
        let spec = self.coins[c].spec;
        let coin_limit = self.cfg.risk.max_coin_notional_krw as i128 * SCALE as i128;
        if e.upbit_notional.0 as i128 > coin_limit {
            self.reject(coin, RiskReject::MaxCoinNotional, out);
            return;
        }
        let dir = self.cfg.strategy.direction;
        let u_side = dir.upbit_open_side();
        let legs = [
            (
                Leg::U,
                spec.upbit,
                u_side,
                self.ioc_limit(spec.upbit, u_side, e.upbit_worst),
                q,
                false,
            ),
            (
                Leg::B,
                spec.binance,
                u_side.opposite(),
                self.ioc_limit(spec.binance, u_side.opposite(), e.binance_worst),
                q,
                false,
            ),
        ];
        if let Some(seq) = self.intent(coin, Purpose::Entry, None, &legs, 0, now, out) {
            let p = Pair::new(seq, coin, dir, q, e.fx, e.bps, now);
            self.coins[c].pair = Some(p);
        }
    }

    /// The strategy's exit: both legs closed by IOC at their walked worst level, for the
    /// same lot-rounded hedged quantity, when the pair's net PnL stays above
    /// `exit_min_profit_krw` even if either leg then has to be retried `slippage_bps`
    /// worse than its limit. That headroom is what lets a leg that one venue does not
    /// fill be completed at a profit (`exit_retry`) instead of becoming a one-leg loss.
    fn consider_exit(&mut self, coin: u16, fx: (Price, Price), now: Nanos, out: &mut Outbox) {
        if self.trading != TradingState::Active {
            return;
        }
        let c = coin as usize;
        let Some(p) = self.coins[c].pair else { return };
        // After an exit whose legs both missed, the next decision waits like an entry does,
        // so a venue that keeps missing is not sent two orders per book.
        let cooldown = Nanos::from_ms(self.cfg.strategy.entry_cooldown_ms);
        if p.exit_at.is_some_and(|t| now.since(t) < cooldown) {
            return;
        }
        let spec = self.coins[c].spec;
        let (iu, ib) =
            (self.instruments[spec.upbit.0 as usize], self.instruments[spec.binance.0 as usize]);
        let q = iu.round_qty(ib.round_qty(p.hedged_qty()));
        if q.0 == 0 {
            return;
        }
        let (bu, bb) = (&self.books[spec.upbit.0 as usize], &self.books[spec.binance.0 as usize]);
        let close_u_side = if p.u.pos.0 > 0 { Side::Sell } else { Side::Buy };
        let close_b_side = close_u_side.opposite();
        let wu = bu.side_for_taker(close_u_side).walk(q);
        let wb = bb.side_for_taker(close_b_side).walk(q);
        if wu.filled != q || wb.filled != q {
            return;
        }
        // Priced at the worst level each leg may fill at (its IOC limit), not at the
        // VWAP: every fill inside the limits is then at least as good as this estimate,
        // which is what makes "never closed at a loss" hold on the venue, not just here.
        let slip = self.cfg.strategy.slippage_bps;
        let (Some(ru), Some(rb)) =
            (worse_by(wu.worst, close_u_side, slip), worse_by(wb.worst, close_b_side, slip))
        else {
            return;
        };
        // Either leg retried at its headroom price, the other at its limit (the net is
        // monotone in each price, so this also covers both legs at their limits).
        let min = self.exit_min_net();
        let ok = |u: Price, b: Price| {
            let t = [(Leg::U, close_u_side, u, q), (Leg::B, close_b_side, b, q)];
            self.net_after(c, &t, fx).is_some_and(|n| n > min)
        };
        if !ok(ru, wb.worst) || !ok(wu.worst, rb) {
            return;
        }
        let legs = [
            (Leg::U, spec.upbit, close_u_side, wu.worst, q, false),
            (Leg::B, spec.binance, close_b_side, wb.worst, q, true),
        ];
        if self.intent(coin, Purpose::Exit, None, &legs, 0, now, out).is_some() {
            self.transition(coin, PairState::Closing, None, out);
            if let Some(p) = self.coins[c].pair.as_mut() {
                p.goal = Goal::Exit;
                p.exit_at = Some(now);
            }
        }
    }

    /// The smallest net PnL (exclusive) a strategy exit may close a pair at, KRW fixed-point.
    fn exit_min_net(&self) -> i128 {
        self.cfg.strategy.exit_min_profit_krw as i128 * SCALE as i128
    }

    /// Net PnL in KRW (fixed-point) if the pair made `trades` now and held nothing else:
    /// each trade at its price with the instrument's taker fee (rounded up), the USDT
    /// side converted at the FX side that makes it smaller (a gain sells USDT at the bid,
    /// a loss buys it at the ask). `None` on overflow.
    fn net_after(
        &self,
        c: usize,
        trades: &[(Leg, Side, Price, Qty)],
        fx: (Price, Price),
    ) -> Option<i128> {
        let p = self.coins[c].pair?;
        let spec = self.coins[c].spec;
        let (mut cash, mut fees) = ([0i64; 2], [0i64; 2]);
        for &(leg, side, px, qty) in trades {
            if qty.0 == 0 {
                continue;
            }
            let (k, inst) = match leg {
                Leg::U => (0, spec.upbit),
                Leg::B => (1, spec.binance),
            };
            let n = px.notional(qty).ok()?.0;
            let fee =
                crate::units::apply_rate_ceil(n, self.instruments[inst.0 as usize].taker_fee_e8)
                    .ok()?;
            cash[k] = cash[k].checked_sub(side.sign().checked_mul(n)?)?;
            fees[k] = fees[k].checked_add(fee)?;
        }
        let b = p.b.cash.0 as i128 + cash[1] as i128 - p.b.fees.0 as i128 - fees[1] as i128
            + p.funding_usdt as i128;
        let conv = if b >= 0 { fx.0 } else { fx.1 };
        Some(p.net_if_closed(Quote(cash[0]), Quote(fees[0]), Quote(cash[1]), Quote(fees[1]), conv))
    }

    /// Completes a strategy exit whose legs filled unequally: one IOC for the missing
    /// quantity with a new client id, priced by `exit_limit` so that the pair's net stays
    /// above the exit minimum. Checked afresh before every attempt, paced by
    /// `hedge_retry_ms`; while the market does not allow it nothing is sent, and every
    /// book and timer tries again until `orphan_ms_hard` flattens instead. A hedge, not an
    /// exit: it reduces exposure, so it still goes out while trading is halted.
    fn exit_retry(&mut self, coin: u16, now: Nanos, out: &mut Outbox) {
        let c = coin as usize;
        let Some(p) = self.coins[c].pair else { return };
        // Not before reconciliation: the positions it would complete are not confirmed.
        if p.goal != Goal::Exit
            || self.coins[c].flatten_pending
            || self.in_flight(coin)
            || self.trading == TradingState::Reconciling
        {
            return;
        }
        let Some((leg, inst, side, qty, reduce)) = self.repair_order(c) else { return };
        let retry = Nanos::from_ms(self.cfg.risk.hedge_retry_ms);
        if p.repaired_at.is_some_and(|t| now.since(t) < retry) {
            return;
        }
        // The check prices against the books and the FX: only fresh ones will do.
        let max_age = Nanos::from_ms(self.cfg.risk.book_age_ms_max);
        let spec = self.coins[c].spec;
        let fresh = |i: InstrumentId| self.books[i.0 as usize].is_fresh(now, max_age);
        if !fresh(spec.upbit)
            || !fresh(spec.binance)
            || (self.cfg.strategy.fx_source == FxSource::UpbitUsdt
                && !self.fx_inst.is_some_and(fresh))
        {
            return;
        }
        let Some(fx) = self.fx_quote() else { return };
        let Some(px) = self.exit_limit(c, leg, inst, side, qty, fx) else { return };
        let legs = [(leg, inst, side, px, qty, reduce)];
        if self.intent(coin, Purpose::Hedge, None, &legs, 0, now, out).is_some()
            && let Some(pp) = self.coins[c].pair.as_mut()
        {
            pp.repaired_at = Some(now);
        }
    }

    /// The limit for an exit retry of `qty` on `leg`: the most aggressive price, at most
    /// `collar_bps` through the touch, at which the pair's net stays above the exit
    /// minimum — what both legs still hold after it valued at their books' walk for it.
    /// `None` when not even the touch keeps the net there (the order would lose or not
    /// fill).
    fn exit_limit(
        &self,
        c: usize,
        leg: Leg,
        inst: InstrumentId,
        side: Side,
        qty: Qty,
        fx: (Price, Price),
    ) -> Option<Price> {
        let p = self.coins[c].pair?;
        let spec = self.coins[c].spec;
        // After this order the legs are equal at `rest`, which a later exit closes.
        let rest = p.hedged_qty();
        let close_u = if p.u.pos.0 > 0 { Side::Sell } else { Side::Buy };
        let (mut rest_u, mut rest_b) = (Price(0), Price(0));
        if rest.0 > 0 {
            let wu = self.books[spec.upbit.0 as usize].side_for_taker(close_u).walk(rest);
            let wb =
                self.books[spec.binance.0 as usize].side_for_taker(close_u.opposite()).walk(rest);
            if wu.filled != rest || wb.filled != rest {
                return None;
            }
            (rest_u, rest_b) = (wu.worst, wb.worst);
        }
        let min = self.exit_min_net();
        let pass = |x: Price| {
            let t = [
                (leg, side, x, qty),
                (Leg::U, close_u, rest_u, rest),
                (Leg::B, close_u.opposite(), rest_b, rest),
            ];
            self.net_after(c, &t, fx).is_some_and(|n| n > min)
        };
        let b = &self.books[inst.0 as usize];
        let touch = if side == Side::Buy { b.best_ask()? } else { b.best_bid()? }.px;
        let bound = self.aggressive_px(inst, side, self.cfg.risk.collar_bps)?;
        if pass(bound) {
            return Some(bound);
        }
        if !pass(touch) {
            return None;
        }
        // The net falls as the price gets more aggressive: bisect between the touch
        // (passes) and the collar bound (fails), then round towards the touch.
        let (mut good, mut bad) = (touch.0, bound.0);
        while (good - bad).abs() > 1 {
            let mid = good + (bad - good) / 2;
            if pass(Price(mid)) {
                good = mid;
            } else {
                bad = mid;
            }
        }
        let tick = self.instruments[inst.0 as usize].tick;
        let px = match side {
            Side::Buy => tick.round_down(Price(good)).max(touch),
            Side::Sell => tick.round_up(Price(good)).min(touch),
        };
        pass(px).then_some(px)
    }

    /// Reports a strategy exit's one-leg exposure once it outlives `orphan_ms_max`: the
    /// pair turns `OneLeg` and `ONE LEG` is raised, once. A leg that missed and was
    /// completed within that window (or legs that both missed) is a routine exit miss and
    /// raises nothing.
    fn exit_exposure(&mut self, coin: u16, now: Nanos, out: &mut Outbox) {
        let c = coin as usize;
        let Some(p) = self.coins[c].pair else { return };
        let window = Nanos::from_ms(self.cfg.risk.orphan_ms_max);
        if p.state == PairState::Closing
            && p.goal == Goal::Exit
            && p.unhedged_since.is_some_and(|s| now.since(s) >= window)
            && self.repair_order(c).is_some()
        {
            self.transition(coin, PairState::OneLeg, None, out);
            out.push(Action::Alert(Alert::OneLeg { pair: p.id, coin, unhedged: p.unhedged() }));
        }
    }

    // ----- intents and risk ------------------------------------------------------------

    fn reject(&mut self, coin: u16, reason: RiskReject, out: &mut Outbox) {
        self.stats.risk_rejects += 1;
        out.push(Action::Telemetry(Telemetry::RiskReject { coin, reason }));
    }

    /// Risk-checks and emits one intent: journal first, then the orders. All legs pass
    /// or none is sent. `collar_extra_bps` widens the collar for repairs.
    #[allow(clippy::too_many_arguments)]
    fn intent(
        &mut self,
        coin: u16,
        purpose: Purpose,
        kind: Option<OrderKind>,
        legs: &[(Leg, InstrumentId, Side, Price, Qty, bool)],
        collar_extra_bps: i64,
        now: Nanos,
        out: &mut Outbox,
    ) -> Option<u32> {
        let active = self.trading == TradingState::Active;
        if !purpose_allowed(active, purpose) {
            self.reject(coin, RiskReject::NotActive, out);
            return None;
        }
        if out.room() < INTENT_ACTIONS + 2 || self.orders.len() + legs.len() > ORDER_CAP {
            self.reject(coin, RiskReject::OrderRate, out);
            return None;
        }
        let seq = self.next_seq;
        let mut reqs: [Option<OrderRequest>; 2] = [None, None];
        for (k, &(leg, inst, side, px, qty, reduce_only)) in legs.iter().enumerate().take(2) {
            let attempt = self.coins[coin as usize].pair.map_or(0, |p| p.repairs);
            let req = OrderRequest {
                cl_id: ClientId { epoch: self.epoch, seq, leg, attempt },
                inst,
                side,
                kind: kind.unwrap_or(OrderKind::LimitIoc),
                px,
                qty,
                reduce_only,
            };
            if let Err(r) = self.check_order(&req, purpose, collar_extra_bps, now) {
                self.reject(coin, r, out);
                if r == RiskReject::OrderRate {
                    self.halt(HaltReason::OrderRate, out);
                }
                return None;
            }
            reqs[k] = Some(req);
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        self.stats.intents += 1;
        let pair_id = self.coins[coin as usize].pair.map_or(seq, |p| p.id);
        out.push(Action::Journal(Record::Intent {
            seq,
            pair: pair_id,
            coin,
            purpose,
            orders: [reqs[0].map(|r| r.cl_id), reqs[1].map(|r| r.cl_id)],
        }));
        for req in reqs.into_iter().flatten() {
            out.push(Action::Journal(Record::Order(req)));
            out.push(Action::Place(req));
            self.rate.record(self.instruments[req.inst.0 as usize].venue, now);
            self.coins[coin as usize].touched = Some(now);
            self.orders.push(LiveOrder { order: Order::new(req, now), coin });
            self.stats.orders_placed += 1;
        }
        Some(seq)
    }

    fn check_order(
        &self,
        req: &OrderRequest,
        purpose: Purpose,
        extra_bps: i64,
        now: Nanos,
    ) -> Result<(), RiskReject> {
        let inst = &self.instruments[req.inst.0 as usize];
        if req.qty.0 <= 0 {
            return Err(RiskReject::ZeroQty);
        }
        if self.orders.iter().any(|o| o.order.req.cl_id == req.cl_id) {
            return Err(RiskReject::Duplicate);
        }
        if !self.rate.allows(inst.venue, now) {
            return Err(RiskReject::OrderRate);
        }
        // Reduce-only perp orders are exempt from Binance's minimum notional.
        match inst.check(req.px, req.qty) {
            Ok(()) => {}
            Err(crate::instrument::RuleViolation::MinNotional) if req.reduce_only => {}
            Err(v) => return Err(RiskReject::Rule(v)),
        }
        let book = &self.books[req.inst.0 as usize];
        let entering = matches!(purpose, Purpose::Entry | Purpose::Exit);
        if entering && !book.is_fresh(now, Nanos::from_ms(self.cfg.risk.book_age_ms_max)) {
            return Err(RiskReject::StaleData);
        }
        let touch = match req.side {
            Side::Buy => book.best_ask(),
            Side::Sell => book.best_bid(),
        }
        .ok_or(RiskReject::StaleData)?;
        let collar = mul_div(touch.px.0, self.cfg.risk.collar_bps + extra_bps, 10_000).unwrap_or(0);
        let through = (req.px.0 - touch.px.0) * req.side.sign();
        if req.kind == OrderKind::LimitIoc && through > collar {
            return Err(RiskReject::Collar);
        }
        let notional = req.px.notional(req.qty).map_err(|_| RiskReject::MaxOrderNotional)?;
        let max = match inst.venue {
            Venue::Upbit => self.cfg.risk.max_order_notional_krw,
            Venue::Binance | Venue::BinanceSpot => self.cfg.risk.max_order_notional_usdt,
        };
        if notional.0 as i128 > max as i128 * SCALE as i128 {
            return Err(RiskReject::MaxOrderNotional);
        }
        if purpose == Purpose::Entry {
            let fee =
                crate::units::apply_rate_ceil(notional.0, inst.taker_fee_e8).unwrap_or(i64::MAX);
            let coin = self.roles[req.inst.0 as usize];
            let ok = match (inst.venue, req.side, coin) {
                (Venue::Upbit, Side::Buy, _) => notional.0.saturating_add(fee) <= self.krw_free,
                (Venue::Upbit, Side::Sell, Role::Leg(c, _)) => {
                    req.qty.0 <= self.coins[c as usize].upbit_free.0
                }
                (Venue::Binance, _, _) => {
                    let lev = self.cfg.strategy.leverage as i64;
                    notional.0 / lev.max(1) <= self.usdt_free - self.margin_used()
                }
                _ => false,
            };
            if !ok {
                return Err(RiskReject::Balance);
            }
        }
        Ok(())
    }

    // ----- order reports and the pair state machine ------------------------------------

    fn on_order(&mut self, oe: OrderEvent, now: Nanos, out: &mut Outbox) {
        let Some(i) = self.orders.iter().position(|o| o.order.req.cl_id == oe.cl_id) else {
            self.stats.unmatched_reports += 1;
            return;
        };
        let coin = self.orders[i].coin;
        self.coins[coin as usize].touched = Some(now);
        let applied = self.orders[i].order.apply(oe.kind, now);
        let o = self.orders[i].order;
        match applied {
            Applied::Ignored => self.stats.ignored_reports += 1,
            Applied::Fill { qty, notional, fee } => {
                let trade_id = match oe.kind {
                    OrderEventKind::Fill { trade_id, .. } => trade_id,
                    _ => 0,
                };
                out.push(Action::Journal(Record::Fill {
                    cl_id: o.req.cl_id,
                    trade_id,
                    px: Price(mul_div(notional.0, SCALE, qty.0.max(1)).unwrap_or(0)),
                    qty,
                    fee,
                    exch_ts: oe.exch_ts,
                }));
                self.book_fill(coin, &o, qty, notional, fee, now);
            }
            Applied::State => {
                out.push(Action::Journal(Record::OrderState {
                    cl_id: o.req.cl_id,
                    state: o.state,
                    filled: o.filled,
                }));
                match o.state {
                    OrderState::Unknown => {
                        out.push(Action::Query { cl_id: o.req.cl_id, inst: o.req.inst });
                    }
                    OrderState::Rejected(reason) => {
                        let venue = self.instruments[o.req.inst.0 as usize].venue;
                        out.push(Action::Alert(Alert::Rejected { venue, reason }));
                    }
                    _ => {}
                }
            }
        }
        if o.state.is_terminal() {
            self.orders.swap_remove(i);
        }
        self.progress(coin, now, out);
    }

    fn book_fill(
        &mut self,
        coin: u16,
        o: &Order,
        qty: Qty,
        notional: Quote,
        fee: Quote,
        now: Nanos,
    ) {
        let venue = self.instruments[o.req.inst.0 as usize].venue;
        let side = o.req.side;
        let cs = &mut self.coins[coin as usize];
        match venue {
            Venue::Upbit => {
                let s = side.sign();
                cs.upbit_free = Qty(cs.upbit_free.0 + s * qty.0);
                self.krw_free = self.krw_free - s * notional.0 - fee.0;
            }
            _ => self.usdt_free -= fee.0,
        }
        if let Some(p) = cs.pair.as_mut() {
            p.leg_mut(o.req.cl_id.leg).fill(side, qty, notional, fee);
            if p.unhedged().0 != 0 {
                p.unhedged_since.get_or_insert(now);
            }
        }
    }

    fn transition(&mut self, coin: u16, to: PairState, pnl: Option<PnlSplit>, out: &mut Outbox) {
        let Some(p) = self.coins[coin as usize].pair.as_mut() else { return };
        let from = p.state;
        if from == to {
            return;
        }
        p.state = to;
        out.push(Action::Journal(Record::Pair(PairRecord {
            pair: p.id,
            coin,
            direction: p.direction,
            from,
            to,
            pos_u: p.u.pos,
            pos_b: p.b.pos,
            entry_premium_bps: p.entry_premium_bps,
            fx_entry: p.fx_entry,
            pnl: pnl.unwrap_or_default(),
        })));
    }

    fn in_flight(&self, coin: u16) -> bool {
        self.orders.iter().any(|o| o.coin == coin)
    }

    /// The part of `q` that `inst` can trade now: lot-rounded, at least the minimum
    /// quantity and, unless the order is a reduce-only perp order, the minimum notional
    /// at the touch. Zero when `q` is dust on that venue.
    fn tradeable(&self, inst: InstrumentId, q: Qty, reduce_only: bool) -> Qty {
        let i = &self.instruments[inst.0 as usize];
        let r = i.round_qty(q.abs());
        if r.0 == 0 || r.0 < i.min_qty.0 {
            return Qty::ZERO;
        }
        let exempt = reduce_only && i.venue != Venue::Upbit;
        let b = &self.books[inst.0 as usize];
        if !exempt
            && let Some(l) = b.best_bid().or(b.best_ask())
            && l.px.notional(r).is_ok_and(|n| n.0 < i.min_notional.0)
        {
            return Qty::ZERO;
        }
        r
    }

    /// The order that repairs a pair whose legs differ, in order of preference: raise
    /// the smaller leg (re-hedge) or bring the larger down (unwind); towards flat only
    /// the latter. `None` when the difference is dust on every venue that could fix it.
    fn repair_order(&self, c: usize) -> Option<(Leg, InstrumentId, Side, Qty, bool)> {
        let p = self.coins[c].pair?;
        let spec = self.coins[c].spec;
        let (au, ab) = (p.u.pos.0.abs(), p.b.pos.0.abs());
        let diff = Qty((au - ab).abs());
        if diff.0 == 0 {
            return None;
        }
        let raise_first =
            p.goal == Goal::Open && self.cfg.risk.one_leg_policy == OneLegPolicy::Rehedge;
        let leg_inst = |leg: Leg| match leg {
            Leg::U => (spec.upbit, p.u.pos),
            Leg::B => (spec.binance, p.b.pos),
        };
        let (small, large) = if au < ab { (Leg::U, Leg::B) } else { (Leg::B, Leg::U) };
        let raise = |e: &Self| {
            let (inst, _) = leg_inst(small);
            let q = e.tradeable(inst, diff, false);
            (q.0 > 0).then_some((small, inst, p.open_side(small), q, false))
        };
        let reduce = |e: &Self| {
            let (inst, pos) = leg_inst(large);
            let reduce_only = large == Leg::B;
            let q = e.tradeable(inst, diff, reduce_only);
            let side = if pos.0 > 0 { Side::Sell } else { Side::Buy };
            (q.0 > 0).then_some((large, inst, side, q, reduce_only))
        };
        match (p.goal, raise_first) {
            (Goal::Flat | Goal::Exit, _) => reduce(self),
            (Goal::Open, true) => raise(self).or_else(|| reduce(self)),
            (Goal::Open, false) => reduce(self).or_else(|| raise(self)),
        }
    }

    /// True when neither leg holds a quantity its venue would let us close.
    fn flat_enough(&self, c: usize) -> bool {
        let Some(p) = self.coins[c].pair else { return true };
        let spec = self.coins[c].spec;
        self.tradeable(spec.upbit, p.u.pos, false).0 == 0
            && self.tradeable(spec.binance, p.b.pos, true).0 == 0
    }

    /// Advances a pair once no order of its coin is in flight. A leg difference that no
    /// venue can trade (below the lot or the minimum notional) counts as hedged, and a
    /// pair whose legs are both such dust counts as flat; the dust stays in the records.
    fn progress(&mut self, coin: u16, now: Nanos, out: &mut Outbox) {
        if self.in_flight(coin) {
            return;
        }
        let c = coin as usize;
        let Some(p) = self.coins[c].pair else { return };
        let unhedged = p.unhedged();
        let balanced = self.repair_order(c).is_none();
        let flat = self.flat_enough(c);
        if balanced {
            if let (PairState::OneLeg, Some(since)) = (p.state, p.unhedged_since) {
                out.push(Action::Alert(Alert::OneLegResolved {
                    pair: p.id,
                    coin,
                    age_ms: now.since(since).as_ms(),
                }));
            }
            if let Some(pp) = self.coins[c].pair.as_mut() {
                pp.unhedged_since = None;
            }
        }
        match (p.state, balanced, flat) {
            (PairState::Hedged, true, false) | (PairState::Closed, _, _) => {}
            (_, _, true) => self.close_pair(coin, out),
            (PairState::Opening, true, false) => {
                self.transition(coin, PairState::Hedged, None, out);
                out.push(Action::Alert(Alert::PairOpened {
                    pair: p.id,
                    coin,
                    qty: p.hedged_qty(),
                    premium_bps: p.entry_premium_bps,
                }));
            }
            (PairState::Closing | PairState::OneLeg, true, false) => {
                if p.goal == Goal::Flat || self.coins[c].flatten_pending {
                    // Equal legs but the goal is flat: close what is left.
                    self.flatten_coin(coin, now, out);
                } else {
                    // Equal legs again: an exit that missed on both venues (or filled
                    // both equally in part) is hedged, and the exit is decided afresh.
                    if let Some(pp) = self.coins[c].pair.as_mut() {
                        pp.goal = Goal::Open;
                    }
                    self.transition(coin, PairState::Hedged, None, out);
                }
            }
            (_, false, false) if p.goal == Goal::Exit && !self.coins[c].flatten_pending => {
                self.exit_exposure(coin, now, out);
                self.exit_retry(coin, now, out);
            }
            (state, false, false) => {
                if state != PairState::OneLeg {
                    if state == PairState::Closing
                        && let Some(pp) = self.coins[c].pair.as_mut()
                    {
                        pp.goal = Goal::Flat;
                    }
                    self.transition(coin, PairState::OneLeg, None, out);
                    out.push(Action::Alert(Alert::OneLeg { pair: p.id, coin, unhedged }));
                }
                if self.coins[c].flatten_pending {
                    self.flatten_coin(coin, now, out);
                } else {
                    self.repair(coin, now, out);
                }
            }
        }
    }

    fn close_pair(&mut self, coin: u16, out: &mut Outbox) {
        let c = coin as usize;
        let Some(p) = self.coins[c].pair else { return };
        let fx = self.fx_quote().map_or(p.fx_entry, |(b, a)| Price((b.0 + a.0) / 2));
        let pnl = p.realised(fx);
        self.transition(coin, PairState::Closed, Some(pnl), out);
        self.realized = self.realized.saturating_add(pnl.net().0);
        if p.u.fees.0 != 0 || p.b.fees.0 != 0 {
            out.push(Action::Alert(Alert::PairClosed { pair: p.id, coin, pnl }));
        }
        self.stats.pairs_closed += 1;
        self.coins[c].pair = None;
        self.coins[c].flatten_pending = false;
    }

    /// Sends one repair order for a one-leg pair.
    fn repair(&mut self, coin: u16, now: Nanos, out: &mut Outbox) {
        let c = coin as usize;
        let Some(p) = self.coins[c].pair else { return };
        let Some((leg, inst, side, qty, reduce)) = self.repair_order(c) else { return };
        let retry = Nanos::from_ms(self.cfg.risk.hedge_retry_ms);
        if p.repaired_at.is_some_and(|t| now.since(t) < retry) {
            return; // paced: the timer retries
        }
        let extra = self.cfg.risk.hedge_collar_step_bps * (p.repairs as i64 + 1);
        let Some(px) = self.aggressive_px(inst, side, self.cfg.risk.collar_bps + extra - 1) else {
            return; // no book to price against: the timer retries; the hard deadline applies
        };
        let legs = [(leg, inst, side, px, qty, reduce)];
        if self.intent(coin, Purpose::Hedge, None, &legs, extra, now, out).is_some()
            && let Some(pp) = self.coins[c].pair.as_mut()
        {
            pp.repairs = pp.repairs.saturating_add(1);
            pp.repaired_at = Some(now);
        }
    }

    /// The limit of a taker IOC leg: the slippage budget through the touch, or the worst
    /// level the walk needed if that is further. Using the whole budget (not just the
    /// walked level) lets the order fill when the book moved a tick between our view and
    /// the venue's, without paying more than the budget the sizing allowed for.
    fn ioc_limit(&self, inst: InstrumentId, side: Side, worst: Price) -> Price {
        let budget =
            self.aggressive_px(inst, side, self.cfg.strategy.slippage_bps).unwrap_or(worst);
        match side {
            Side::Buy => budget.max(worst),
            Side::Sell => budget.min(worst),
        }
    }

    /// A limit price `bps` through the touch, rounded inside the collar.
    fn aggressive_px(&self, inst: InstrumentId, side: Side, bps: i64) -> Option<Price> {
        let b = &self.books[inst.0 as usize];
        let touch = if side == Side::Buy { b.best_ask()? } else { b.best_bid()? };
        let d = mul_div(touch.px.0, bps.max(0), 10_000).ok()?;
        let tick = self.instruments[inst.0 as usize].tick;
        Some(match side {
            Side::Buy => tick.round_down(Price(touch.px.0 + d)).max(touch.px),
            Side::Sell => tick.round_up(Price(touch.px.0 - d)).min(touch.px),
        })
    }

    /// Closes whatever a coin holds at market on both venues (flatten). A leg with an
    /// order in flight is not touched (its order is cancelled if open, and an unknown one
    /// is never re-sent); the free leg is flattened at once, and the timer retries the
    /// rest until the coin is flat.
    fn flatten_coin(&mut self, coin: u16, now: Nanos, out: &mut Outbox) {
        let c = coin as usize;
        self.coins[c].flatten_pending = true;
        let Some(p) = self.coins[c].pair else {
            self.coins[c].flatten_pending = false;
            return;
        };
        if self.flat_enough(c) && !self.in_flight(coin) {
            self.close_pair(coin, out);
            return;
        }
        let spec = self.coins[c].spec;
        let mut legs = [(Leg::U, spec.upbit, Side::Sell, Price(0), Qty(0), false); 2];
        let mut n = 0;
        for (leg, inst, pos) in [(Leg::U, spec.upbit, p.u.pos), (Leg::B, spec.binance, p.b.pos)] {
            let mut busy = false;
            for o in self.orders.iter().filter(|o| o.coin == coin && o.order.req.cl_id.leg == leg) {
                busy = true;
                if o.order.state == OrderState::Open {
                    out.push(Action::Cancel { cl_id: o.order.req.cl_id, inst: o.order.req.inst });
                }
            }
            let qty = self.tradeable(inst, pos, leg == Leg::B);
            if busy || qty.0 == 0 {
                continue;
            }
            let side = if pos.0 > 0 { Side::Sell } else { Side::Buy };
            let b = &self.books[inst.0 as usize];
            let reference = if side == Side::Buy { b.best_ask() } else { b.best_bid() };
            let Some(r) = reference else { continue };
            legs[n] = (leg, inst, side, r.px, qty, leg == Leg::B);
            n += 1;
        }
        if let Some(pp) = self.coins[c].pair.as_mut() {
            pp.goal = Goal::Flat;
        }
        if n > 0
            && self
                .intent(coin, Purpose::Flatten, Some(OrderKind::Market), &legs[..n], 0, now, out)
                .is_some()
        {
            self.transition(coin, PairState::Closing, None, out);
        }
    }

    // ----- control and timers ----------------------------------------------------------

    /// Adds `reason` to the active halt reasons. A new reason is journaled with the whole
    /// set (a restart restores every latched reason, not just the first); a repeated one
    /// is only alerted again.
    fn halt(&mut self, reason: HaltReason, out: &mut Outbox) {
        let active = self.trading.halts();
        if !active.contains(reason) {
            self.trading = TradingState::Halted(active.with(reason));
            out.push(Action::Journal(Record::Trading { state: self.trading }));
        }
        out.push(Action::Alert(Alert::Halted(reason)));
    }

    /// Compares `venue`'s account, as reported since `asked_at`, with the engine's
    /// positions: the perp position with the pair's Binance leg (the journal's, after a
    /// restart), the free coin on Upbit with the balance at reconciliation plus the fills
    /// since (taken as reported at start-up: the journal holds no balances). A difference
    /// no venue could trade (dust) is ignored; anything more halts and names the coin, the
    /// venue, what was expected and what the venue holds. A coin with an order in flight or
    /// order activity since `asked_at` is skipped: its report may predate a fill. Upbit's
    /// KRW is not compared (fee rounding moves it); it is taken from a quiet report.
    fn check_account(&mut self, venue: Venue, asked_at: Nanos, out: &mut Outbox) {
        let quiet = self.orders.is_empty()
            && self.coins.iter().all(|c| c.touched.is_none_or(|t| t < asked_at));
        if venue == Venue::Upbit
            && quiet
            && let Some((krw, _)) = self.venue_krw.filter(|&(_, at)| at >= asked_at)
        {
            self.krw_free = krw.0;
        }
        for coin in 0..self.coins.len() as u16 {
            let c = coin as usize;
            let cs = self.coins[c];
            if self.in_flight(coin) || cs.touched.is_some_and(|t| t >= asked_at) {
                continue;
            }
            // An account that does not list the coin (no report since the ask) holds none.
            let reported = |v: Option<(Qty, Nanos)>| {
                v.filter(|&(_, at)| at >= asked_at).map_or(Qty::ZERO, |(q, _)| q)
            };
            let (inst, expected, actual) = match venue {
                Venue::Binance => {
                    let expected = cs.pair.map_or(Qty::ZERO, |p| p.b.pos);
                    (cs.spec.binance, expected, reported(cs.venue_pos_b))
                }
                Venue::Upbit if self.reconciled => {
                    let actual = reported(cs.venue_u);
                    // Sizing goes on from what the venue holds; the alert (and the halt)
                    // say it changed.
                    self.coins[c].upbit_free = actual;
                    (cs.spec.upbit, cs.upbit_free, actual)
                }
                _ => continue,
            };
            let diff = Qty(expected.0.saturating_sub(actual.0));
            // A perp difference a reduce-only order could close is not dust.
            if self.tradeable(inst, diff, venue == Venue::Binance).0 == 0 {
                continue;
            }
            out.push(Action::Alert(Alert::Mismatch { coin, venue, expected, actual }));
            self.halt(HaltReason::Mismatch, out);
        }
    }

    fn on_control(&mut self, c: Control, now: Nanos, out: &mut Outbox) {
        match c {
            Control::Stop => self.halt(HaltReason::Operator, out),
            Control::CheckAccount { venue, asked_at } => self.check_account(venue, asked_at, out),
            Control::Shutdown => self.halt(HaltReason::Shutdown, out),
            Control::Resume => {
                // One resume clears every reason at once (the operator has seen them all
                // in /status); a cause still present halts again on its next check.
                if matches!(self.trading, TradingState::Halted(_)) {
                    self.trading = if self.reconciled {
                        TradingState::Active
                    } else {
                        TradingState::Reconciling
                    };
                    out.push(Action::Journal(Record::Trading { state: self.trading }));
                    out.push(Action::Alert(Alert::Resumed));
                }
            }
            Control::Flatten(which) => {
                self.halt(HaltReason::Flatten, out);
                for coin in 0..self.coins.len() as u16 {
                    if which.is_none_or(|w| w == coin) && self.coins[coin as usize].pair.is_some() {
                        self.flatten_coin(coin, now, out);
                    }
                }
            }
            Control::Set(param, v) => {
                self.set_param(param, v);
            }
            Control::ReconcileDone => {
                self.reconciled = true;
                self.krw_base = self.krw_free;
                self.usdt_base = self.usdt_free;
                for cs in self.coins.iter_mut() {
                    // Restored orders executed before the restart, so the venue's report
                    // already holds the fills reconciliation learned after it: counting
                    // them again made a false mismatch (and a halt) after a crash.
                    if let Some((free, _)) = cs.venue_u {
                        cs.upbit_free = free;
                    }
                    cs.upbit_base = cs.upbit_free;
                }
                if self.trading == TradingState::Reconciling {
                    self.trading = TradingState::Active;
                    out.push(Action::Journal(Record::Trading { state: self.trading }));
                }
                // Pairs restored from the journal may be one-legged: repair them now.
                for coin in 0..self.coins.len() as u16 {
                    self.progress(coin, now, out);
                }
            }
            Control::Status => {
                let unknown =
                    self.orders.iter().filter(|o| o.order.state == OrderState::Unknown).count();
                let unhedged = self
                    .coins
                    .iter()
                    .filter(|c| c.pair.is_some_and(|p| p.unhedged().0 != 0))
                    .count();
                out.push(Action::Telemetry(Telemetry::Status(StatusSnapshot {
                    trading: self.trading,
                    open_pairs: self.open_pairs(),
                    live_orders: self.orders.len() as u32,
                    unknown_orders: unknown as u32,
                    unhedged_pairs: unhedged as u32,
                    realized_krw: crate::units::Krw(self.realized),
                    events: self.stats.events,
                })));
            }
        }
    }

    /// Applies a run-time parameter change if it passes the same validation as the
    /// config; returns whether it was applied.
    pub fn set_param(&mut self, param: Param, v: i64) -> bool {
        let mut next = self.cfg;
        match param {
            Param::EntryBps => next.strategy.entry_bps = v,
            Param::ExitMinProfitKrw => next.strategy.exit_min_profit_krw = v,
            Param::MaxPairNotionalKrw => next.strategy.max_pair_notional_krw = v,
            Param::MaxOpenPairs => next.risk.max_open_pairs = u32::try_from(v).unwrap_or(0),
        }
        if next.validate().is_ok() {
            self.cfg = next;
            true
        } else {
            false
        }
    }

    fn on_timer(&mut self, now: Nanos, out: &mut Outbox) {
        let timeout = Nanos::from_ms(self.cfg.risk.order_timeout_ms);
        let mut i = 0;
        while i < self.orders.len() {
            let o = self.orders[i].order;
            let silent = now.since(o.updated_at) >= timeout;
            match o.state {
                OrderState::Sent if silent => {
                    self.orders[i].order.apply(OrderEventKind::Unknown, now);
                    out.push(Action::Journal(Record::OrderState {
                        cl_id: o.req.cl_id,
                        state: OrderState::Unknown,
                        filled: o.filled,
                    }));
                    out.push(Action::Query { cl_id: o.req.cl_id, inst: o.req.inst });
                }
                OrderState::Unknown | OrderState::Open if silent => {
                    // Ask again; `updated_at` paces the queries.
                    self.orders[i].order.updated_at = now;
                    out.push(Action::Query { cl_id: o.req.cl_id, inst: o.req.inst });
                }
                _ => {}
            }
            i += 1;
        }
        let max_age = Nanos::from_ms(self.cfg.risk.book_age_ms_max);
        for k in 0..self.books.len() {
            if self.roles[k] != Role::None && self.fresh[k] && !self.books[k].is_fresh(now, max_age)
            {
                self.note_stale(InstrumentId(k as u16), out);
            }
        }
        let hard = Nanos::from_ms(self.cfg.risk.orphan_ms_hard);
        for coin in 0..self.coins.len() as u16 {
            let Some(p) = self.coins[coin as usize].pair else { continue };
            if self.coins[coin as usize].flatten_pending {
                // A flatten still under way does not suspend the hard deadline (the
                // operator may have resumed meanwhile): past it, trading halts.
                if p.unhedged_since.is_some_and(|s| now.since(s) >= hard)
                    && !self.trading.halts().contains(HaltReason::OrphanHard)
                {
                    self.halt(HaltReason::OrphanHard, out);
                }
                self.flatten_coin(coin, now, out);
                continue;
            }
            if let Some(since) = p.unhedged_since
                && now.since(since) >= hard
            {
                self.halt(HaltReason::OrphanHard, out);
                self.flatten_coin(coin, now, out);
                continue;
            }
            if p.goal == Goal::Exit {
                self.exit_exposure(coin, now, out);
                self.exit_retry(coin, now, out);
            } else if p.state == PairState::OneLeg && !self.in_flight(coin) {
                self.repair(coin, now, out);
            }
        }
    }
}

/// `px` moved `bps` against a trade on `side` (up for a buy, down for a sell).
fn worse_by(px: Price, side: Side, bps: i64) -> Option<Price> {
    let d = mul_div(px.0, bps.max(0), 10_000).ok()?;
    Some(Price(px.0 + side.sign() * d))
}
