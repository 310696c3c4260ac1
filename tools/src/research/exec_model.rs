//! The simulated venues of the backtest: latency, taker fills against the book as it is
//! when the order arrives, fees and balances.
//!
//! The model keeps its own copy of every book (fed the same market events as the engine)
//! and consumes the liquidity our fills take, so a second order before the next update
//! cannot fill against the same quantity twice. It never decides anything for the
//! strategy: it only answers the engine's `Place`, `Query` and `Cancel` actions with the
//! venue reports a real venue would send, later by the configured latency.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use kimp_core::book::{Book, SeqRule};
use kimp_core::event::{OrderEvent, OrderEventKind, RejectReason, Side};
use kimp_core::instrument::{Instrument, InstrumentId, RuleViolation, Venue};
use kimp_core::order::{ClientId, OrderKind, OrderRequest};
use kimp_core::units::{Nanos, Price, Qty, Quote, SCALE, apply_rate_ceil};

/// One-way latency between the engine and a venue.
#[derive(Clone, Debug, PartialEq)]
pub enum Latency {
    /// Always the same.
    Const(Nanos),
    /// Drawn (seeded, uniformly) from recorded one-way latencies, ns.
    Samples(Vec<u64>),
}

impl Latency {
    fn draw(&self, rng: &mut u64) -> Nanos {
        match self {
            Latency::Const(n) => *n,
            Latency::Samples(v) if v.is_empty() => Nanos(0),
            Latency::Samples(v) => {
                // xorshift64*: reproducible without a dependency.
                *rng ^= *rng >> 12;
                *rng ^= *rng << 25;
                *rng ^= *rng >> 27;
                let r = rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
                Nanos(v[(r % v.len() as u64) as usize])
            }
        }
    }

    /// Reads one latency per line, in milliseconds (fractions allowed; `#` comments).
    pub fn from_samples_text(text: &str) -> Result<Latency, String> {
        let mut v = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let l = line.split('#').next().unwrap_or("").trim();
            if l.is_empty() {
                continue;
            }
            match l.parse::<f64>() {
                Ok(ms) if ms.is_finite() && ms >= 0.0 => v.push((ms * 1e6).round() as u64),
                _ => return Err(format!("line {}: {l:?} is not a latency in ms", n + 1)),
            }
        }
        if v.is_empty() {
            return Err("no latency samples".into());
        }
        Ok(Latency::Samples(v))
    }
}

/// Execution-model settings.
#[derive(Clone, Debug)]
pub struct ExecConfig {
    /// Engine ↔ Upbit one-way latency (request and response each draw once).
    pub upbit_latency: Latency,
    /// Engine ↔ Binance one-way latency.
    pub binance_latency: Latency,
    /// Seed of the latency draws.
    pub seed: u64,
    /// Binance leverage (margin = notional / leverage).
    pub leverage: u32,
}

impl Default for ExecConfig {
    fn default() -> Self {
        Self {
            upbit_latency: Latency::Const(Nanos::from_ms(15)),
            binance_latency: Latency::Const(Nanos::from_ms(10)),
            seed: 1,
            leverage: 1,
        }
    }
}

/// Balances at the simulated venues (fixed-point 1e-8).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Balances {
    /// Upbit KRW.
    pub krw: i64,
    /// Upbit coin inventory, by instrument index (Upbit instruments only).
    pub coin: Vec<i64>,
    /// Binance USDT wallet (fees and funding booked here).
    pub usdt: i64,
    /// Binance perp position, by instrument index.
    pub perp_pos: Vec<i64>,
    /// Binance perp trade cash (− bought + sold notional), by instrument index.
    pub perp_cash: Vec<i64>,
}

/// Counters of the execution model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExecStats {
    /// Orders that reached a venue.
    pub orders: u64,
    /// Fill reports sent.
    pub fills: u64,
    /// Orders refused by a venue.
    pub rejects: u64,
    /// IOC orders that filled only part of their quantity.
    pub partial: u64,
    /// IOC orders that filled nothing.
    pub unfilled: u64,
    /// Market orders whose remainder went past the visible book (filled at its worst
    /// price).
    pub market_beyond_depth: u64,
    /// Queries answered.
    pub queries: u64,
    /// Resync requests that replay data cannot answer.
    pub resyncs: u64,
    /// Fees, KRW (Upbit), fixed-point.
    #[serde(skip)]
    pub fees_krw: i64,
    /// Fees, USDT (Binance), fixed-point.
    #[serde(skip)]
    pub fees_usdt: i64,
    /// Traded notional, KRW.
    #[serde(skip)]
    pub notional_krw: i64,
    /// Traded notional, USDT.
    #[serde(skip)]
    pub notional_usdt: i64,
}

#[derive(Clone, Copy, Debug)]
enum Item {
    Arrive(OrderRequest),
    Report(OrderEvent),
    Query(ClientId, InstrumentId),
}

#[derive(Clone, Copy, Debug)]
struct Due {
    at: Nanos,
    seq: u64,
    item: Item,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// A fill the model made, for metrics (turnover, fees).
#[derive(Clone, Copy, Debug)]
pub struct FillNote {
    /// Venue time.
    pub at: Nanos,
    /// Venue.
    pub venue: Venue,
    /// Notional, quote currency.
    pub notional: Quote,
    /// Fee, quote currency.
    pub fee: Quote,
}

/// The simulated venues.
#[derive(Debug)]
pub struct ExecModel {
    cfg: ExecConfig,
    instruments: Vec<Instrument>,
    /// The venues' books (replicas of the market data, minus what we took).
    pub books: Vec<Book>,
    /// Balances.
    pub bal: Balances,
    /// Counters.
    pub stats: ExecStats,
    queue: BinaryHeap<Reverse<Due>>,
    seq: u64,
    rng: u64,
    trade_id: u64,
    done: HashMap<ClientId, Qty>,
    marks: Vec<Price>,
    /// Fills since the caller last drained them.
    pub fills: Vec<FillNote>,
}

impl ExecModel {
    /// A model for `instruments` with starting balances.
    pub fn new(cfg: ExecConfig, instruments: &[Instrument], bal: Balances) -> Self {
        let books = instruments
            .iter()
            .map(|i| {
                Book::new(
                    match i.venue {
                        Venue::Upbit => SeqRule::Snapshots,
                        Venue::Binance => SeqRule::Futures,
                        Venue::BinanceSpot => SeqRule::Spot,
                    },
                    kimp_core::engine::BOOK_DEPTH,
                )
            })
            .collect();
        let n = instruments.len();
        let mut bal = bal;
        bal.coin.resize(n, 0);
        bal.perp_pos.resize(n, 0);
        bal.perp_cash.resize(n, 0);
        Self {
            rng: cfg.seed.max(1),
            cfg,
            instruments: instruments.to_vec(),
            books,
            bal,
            stats: ExecStats::default(),
            queue: BinaryHeap::new(),
            seq: 0,
            trade_id: 0,
            done: HashMap::new(),
            marks: vec![Price(0); n],
            fills: Vec::new(),
        }
    }

    fn latency(&mut self, inst: InstrumentId) -> Nanos {
        let venue = self.instruments.get(inst.0 as usize).map_or(Venue::Binance, |i| i.venue);
        match venue {
            Venue::Upbit => self.cfg.upbit_latency.draw(&mut self.rng),
            _ => self.cfg.binance_latency.draw(&mut self.rng),
        }
    }

    fn push(&mut self, at: Nanos, item: Item) {
        self.seq += 1;
        self.queue.push(Reverse(Due { at, seq: self.seq, item }));
    }

    /// The engine sent an order at `now`: it reaches the venue one latency later.
    pub fn place(&mut self, now: Nanos, req: OrderRequest) {
        let at = now.plus(self.latency(req.inst));
        self.push(at, Item::Arrive(req));
    }

    /// The engine asked about an order: the venue answers with what it knows.
    pub fn query(&mut self, now: Nanos, cl_id: ClientId, inst: InstrumentId) {
        let at = now.plus(self.latency(inst));
        self.push(at, Item::Query(cl_id, inst));
    }

    /// The engine asked for a new snapshot; recorded data cannot give one.
    pub fn resync(&mut self) {
        self.stats.resyncs += 1;
    }

    /// Time of the next queued item.
    pub fn next_due(&self) -> Option<Nanos> {
        self.queue.peek().map(|r| r.0.at)
    }

    /// True when nothing is in flight.
    pub fn idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// Processes the next item due at or before `until`; returns a report for the engine
    /// (with its delivery time) when the item was one.
    pub fn step(&mut self, until: Nanos) -> Option<Option<(Nanos, OrderEvent)>> {
        if self.queue.peek().is_none_or(|r| r.0.at > until) {
            return None;
        }
        let Reverse(due) = self.queue.pop()?;
        Some(match due.item {
            Item::Report(oe) => Some((due.at, oe)),
            Item::Arrive(req) => {
                self.arrive(due.at, &req);
                None
            }
            Item::Query(cl_id, inst) => {
                self.stats.queries += 1;
                let kind = match self.done.get(&cl_id) {
                    Some(&cum_qty) => OrderEventKind::Done { cum_qty },
                    None => OrderEventKind::NotFound,
                };
                let back = due.at.plus(self.latency(inst));
                self.push(back, Item::Report(OrderEvent { cl_id, exch_ts: due.at, kind }));
                None
            }
        })
    }

    /// Records the mark (last trade or close) of a perp, for margin checks and funding.
    pub fn set_mark(&mut self, inst: InstrumentId, px: Price) {
        if let Some(m) = self.marks.get_mut(inst.0 as usize) {
            *m = px;
        }
    }

    /// Books a funding settlement at the venue: a long pays `rate × mark × pos`.
    pub fn settle_funding(&mut self, inst: InstrumentId, rate_e8: i64, mark: Price) {
        let i = inst.0 as usize;
        let pos = self.bal.perp_pos.get(i).copied().unwrap_or(0) as i128;
        let pay = mark.0 as i128 * pos / SCALE as i128 * rate_e8 as i128 / SCALE as i128;
        self.bal.usdt = self.bal.usdt.saturating_sub(pay as i64);
    }

    fn margin_available(&self) -> i64 {
        let lev = self.cfg.leverage.max(1) as i64;
        let mut avail = self.bal.usdt as i128;
        for (i, &pos) in self.bal.perp_pos.iter().enumerate() {
            if pos == 0 {
                continue;
            }
            let mark = self.marks[i].0 as i128;
            let value = pos as i128 * mark / SCALE as i128;
            avail += self.bal.perp_cash[i] as i128 + value - value.abs() / lev as i128;
        }
        avail.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    fn report(&mut self, at: Nanos, inst: InstrumentId, cl_id: ClientId, kind: OrderEventKind) {
        let back = at.plus(self.latency(inst));
        self.push(back, Item::Report(OrderEvent { cl_id, exch_ts: at, kind }));
    }

    fn reject(&mut self, at: Nanos, req: &OrderRequest, r: RejectReason) {
        self.stats.rejects += 1;
        self.done.insert(req.cl_id, Qty(0));
        self.report(at, req.inst, req.cl_id, OrderEventKind::Reject(r));
    }

    /// An order reaches its venue at `at`: check it, walk the book, book the fills.
    fn arrive(&mut self, at: Nanos, req: &OrderRequest) {
        self.stats.orders += 1;
        let i = req.inst.0 as usize;
        let Some(inst) = self.instruments.get(i).copied() else {
            return self.reject(at, req, RejectReason::Other(-1121));
        };
        let perp = inst.venue != Venue::Upbit;
        let mut qty = req.qty;
        if perp && req.reduce_only {
            // Binance shrinks a reduce-only order to the position it can reduce.
            let pos = self.bal.perp_pos[i];
            let reducible =
                if (pos > 0 && req.side == Side::Sell) || (pos < 0 && req.side == Side::Buy) {
                    pos.abs()
                } else {
                    0
                };
            if reducible == 0 {
                return self.reject(at, req, RejectReason::Other(-2022));
            }
            qty = Qty(qty.0.min(reducible));
        }
        let check_px = if req.kind == OrderKind::Market { None } else { Some(req.px) };
        if let Some(px) = check_px {
            match inst.check(px, qty) {
                Ok(()) => {}
                Err(RuleViolation::MinNotional) if perp && req.reduce_only => {}
                Err(RuleViolation::MinNotional) => {
                    return self.reject(at, req, RejectReason::MinNotional);
                }
                Err(_) => return self.reject(at, req, RejectReason::Filter),
            }
        } else if qty.0 <= 0 || inst.round_qty(qty) != qty {
            return self.reject(at, req, RejectReason::Filter);
        }
        // Walk the book as it is now.
        let mut fills: [(Price, Qty); 16] = [(Price(0), Qty(0)); 16];
        let mut n = 0;
        let mut left = qty.0;
        let mut worst = None;
        {
            let side = self.books[i].side_for_taker(req.side);
            for l in side.iter() {
                if left <= 0 || n == fills.len() - 1 {
                    break;
                }
                let through = match req.side {
                    Side::Buy => l.px.0 > req.px.0,
                    Side::Sell => l.px.0 < req.px.0,
                };
                if req.kind == OrderKind::LimitIoc && through {
                    break;
                }
                let take = left.min(l.qty.0);
                if take > 0 {
                    fills[n] = (l.px, Qty(take));
                    n += 1;
                    left -= take;
                }
                worst = Some(l.px);
            }
        }
        if req.kind == OrderKind::Market
            && left > 0
            && let Some(px) = worst
        {
            fills[n] = (px, Qty(left));
            n += 1;
            left = 0;
            self.stats.market_beyond_depth += 1;
        }
        let filled = qty.0 - left;
        let notional: i64 = fills[..n]
            .iter()
            .map(|&(px, q)| px.notional(q).map_or(i64::MAX, |v| v.0))
            .fold(0i64, i64::saturating_add);
        let fee_rate = inst.taker_fee_e8;
        let fee_total = apply_rate_ceil(notional, fee_rate).unwrap_or(i64::MAX);
        // Balance check on the whole order, as the venue does before matching.
        let ok = match (inst.venue, req.side) {
            (Venue::Upbit, Side::Buy) => notional.saturating_add(fee_total) <= self.bal.krw,
            (Venue::Upbit, Side::Sell) => filled <= self.bal.coin[i],
            _ if req.reduce_only => true,
            _ => {
                let lev = self.cfg.leverage.max(1) as i64;
                notional / lev + fee_total <= self.margin_available()
            }
        };
        if !ok {
            return self.reject(at, req, RejectReason::InsufficientBalance);
        }
        self.report(at, req.inst, req.cl_id, OrderEventKind::Ack);
        let mut cum = 0i64;
        for &(px, q) in &fills[..n] {
            cum += q.0;
            let nt = px.notional(q).unwrap_or(Quote(i64::MAX));
            let fee = Quote(apply_rate_ceil(nt.0, fee_rate).unwrap_or(i64::MAX));
            self.book_fill(i, inst.venue, req.side, px, q, nt, fee);
            self.fills.push(FillNote { at, venue: inst.venue, notional: nt, fee });
            self.trade_id += 1;
            self.stats.fills += 1;
            let kind = OrderEventKind::Fill {
                trade_id: self.trade_id,
                px,
                qty: q,
                cum_qty: Qty(cum),
                fee,
            };
            self.report(at, req.inst, req.cl_id, kind);
        }
        if filled == 0 {
            self.stats.unfilled += 1;
        } else if filled < req.qty.0 {
            self.stats.partial += 1;
        }
        self.done.insert(req.cl_id, Qty(cum));
        self.report(at, req.inst, req.cl_id, OrderEventKind::Done { cum_qty: Qty(cum) });
    }

    #[allow(clippy::too_many_arguments)]
    fn book_fill(
        &mut self,
        i: usize,
        venue: Venue,
        side: Side,
        px: Price,
        q: Qty,
        nt: Quote,
        fee: Quote,
    ) {
        // Take the liquidity out of our copy of the book until the market replaces it.
        let book = &mut self.books[i];
        let level_side = side.opposite();
        let have = book.side_for_taker(side).iter().find(|l| l.px == px).map_or(0, |l| l.qty.0);
        book.set(level_side, px, Qty((have - q.0).max(0)));
        let s = side.sign();
        match venue {
            Venue::Upbit => {
                self.bal.coin[i] += s * q.0;
                self.bal.krw -= s * nt.0 + fee.0;
                self.stats.fees_krw += fee.0;
                self.stats.notional_krw += nt.0;
            }
            _ => {
                self.bal.perp_pos[i] += s * q.0;
                self.bal.perp_cash[i] -= s * nt.0;
                self.bal.usdt -= fee.0;
                self.stats.fees_usdt += fee.0;
                self.stats.notional_usdt += nt.0;
                // Realised perp PnL moves to the wallet once flat, so margin stays honest.
                if self.bal.perp_pos[i] == 0 {
                    self.bal.usdt += self.bal.perp_cash[i];
                    self.bal.perp_cash[i] = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kimp_core::event::{BookSnapshot, Level};
    use kimp_core::testkit::{BTCUSDT, KRW_BTC, btc_markets};

    fn q(v: f64) -> Qty {
        Qty::from_f64(v).unwrap()
    }
    fn px(v: f64) -> Price {
        Price::from_f64(v).unwrap()
    }

    fn model() -> ExecModel {
        let m = btc_markets();
        let bal =
            Balances { krw: 10_000_000_000 * SCALE, usdt: 1_000_000 * SCALE, ..Default::default() };
        let mut e = ExecModel::new(ExecConfig::default(), &m.instruments, bal);
        e.bal.coin[KRW_BTC.0 as usize] = 10 * SCALE;
        let asks = [Level::new(px(70_000.1), q(0.5)), Level::new(px(70_000.5), q(1.0))];
        let bids = [Level::new(px(70_000.0), q(1.0))];
        e.books[BTCUSDT.0 as usize].apply_snapshot(
            &BookSnapshot {
                inst: BTCUSDT,
                exch_ts: Nanos(0),
                last_update_id: 1,
                bids: &bids,
                asks: &asks,
            },
            Nanos(0),
        );
        e
    }

    fn drain(e: &mut ExecModel) -> Vec<OrderEventKind> {
        let mut v = Vec::new();
        while let Some(r) = e.step(Nanos(u64::MAX / 2)) {
            if let Some((_, oe)) = r {
                v.push(oe.kind);
            }
        }
        v
    }

    fn order(side: Side, p: f64, qty: f64, kind: OrderKind) -> OrderRequest {
        OrderRequest {
            cl_id: ClientId { epoch: 1, seq: 1, leg: kimp_core::order::Leg::B, attempt: 0 },
            inst: BTCUSDT,
            side,
            kind,
            px: px(p),
            qty: q(qty),
            reduce_only: false,
        }
    }

    #[test]
    fn ioc_walks_levels_up_to_its_limit_and_consumes_them() {
        let mut e = model();
        e.place(Nanos(0), order(Side::Buy, 70_000.1, 0.8, OrderKind::LimitIoc));
        let r = drain(&mut e);
        assert_eq!(r[0], OrderEventKind::Ack);
        assert!(matches!(r[1], OrderEventKind::Fill { qty, .. } if qty == q(0.5)));
        assert_eq!(
            r[2],
            OrderEventKind::Done { cum_qty: q(0.5) },
            "partial: the 70,000.5 level is through the limit"
        );
        assert_eq!(e.stats.partial, 1);
        // The 0.5 taken is gone from the model's book.
        assert_eq!(e.books[BTCUSDT.0 as usize].best_ask().unwrap().px, px(70_000.5));
        assert_eq!(e.bal.perp_pos[BTCUSDT.0 as usize], q(0.5).0);
    }

    #[test]
    fn market_order_fills_fully_across_levels() {
        let mut e = model();
        e.place(Nanos(0), order(Side::Buy, 70_000.1, 1.2, OrderKind::Market));
        let r = drain(&mut e);
        let fills: Vec<_> = r.iter().filter(|k| matches!(k, OrderEventKind::Fill { .. })).collect();
        assert_eq!(fills.len(), 2);
        assert_eq!(*r.last().unwrap(), OrderEventKind::Done { cum_qty: q(1.2) });
        // 0.5 × 70,000.1 + 0.7 × 70,000.5, fee 0.04 %.
        let notional = 0.5 * 70_000.1 + 0.7 * 70_000.5;
        assert!((e.stats.notional_usdt as f64 / 1e8 - notional).abs() < 1e-6);
        assert!((e.stats.fees_usdt as f64 / 1e8 - notional * 0.0004).abs() < 1e-6);
    }

    #[test]
    fn latency_delays_arrival_and_report() {
        let mut e = model();
        e.place(Nanos::from_ms(100), order(Side::Sell, 70_000.0, 0.1, OrderKind::LimitIoc));
        assert!(e.step(Nanos::from_ms(109)).is_none(), "not arrived before 10 ms");
        assert!(matches!(e.step(Nanos::from_ms(110)), Some(None)), "arrives at 110 ms");
        assert!(e.step(Nanos::from_ms(119)).is_none(), "report needs another 10 ms");
        let (at, oe) = e.step(Nanos::from_ms(120)).unwrap().unwrap();
        assert_eq!((at, oe.kind), (Nanos::from_ms(120), OrderEventKind::Ack));
    }

    #[test]
    fn reduce_only_without_position_is_rejected_and_sampled_latency_parses() {
        let mut e = model();
        let mut o = order(Side::Sell, 70_000.0, 0.1, OrderKind::LimitIoc);
        o.reduce_only = true;
        e.place(Nanos(0), o);
        assert!(matches!(drain(&mut e)[0], OrderEventKind::Reject(RejectReason::Other(-2022))));
        let l = Latency::from_samples_text("# ms\n1.5\n2\n").unwrap();
        assert_eq!(l, Latency::Samples(vec![1_500_000, 2_000_000]));
        assert!(Latency::from_samples_text("x").unwrap_err().contains("line 1"));
    }
}
