//! Property tests: the book against a reference model, gap detection, and the pair state
//! machine under any interleaving of venue reports and operator commands.

mod common;

use std::collections::{BTreeMap, HashSet};

use common::*;
use kimp_core::action::{Action, Purpose, Record, TradingState};
use kimp_core::book::{Book, BookState, DiffOutcome, SeqRule};
use kimp_core::event::{
    BookSnapshot, Control, DepthDiff, Event, Level, OrderEventKind, RejectReason, Side,
};
use kimp_core::instrument::InstrumentId;
use kimp_core::order::{ClientId, Leg, OrderRequest};
use kimp_core::testkit::{BTCUSDT, KRW_BTC, KRW_USDT};
use kimp_core::units::{Nanos, Price, Qty};
use proptest::prelude::*;

// ----- books ---------------------------------------------------------------------------

/// One generated diff message: a new mid, and level changes on both sides.
#[derive(Debug, Clone)]
struct Msg {
    mid: i64,
    changes: Vec<(bool, i64, i64)>, // (is_bid, price offset from mid, qty; 0 = remove)
    removes_absent: Vec<(bool, i64)>,
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        100i64..300,
        prop::collection::vec((any::<bool>(), 1i64..40, 0i64..5), 0..25),
        prop::collection::vec((any::<bool>(), 0i64..400), 0..3),
    )
        .prop_map(|(mid, changes, removes_absent)| Msg { mid, changes, removes_absent })
}

/// The reference: what a venue's book is after each message, and the diff it would send.
struct Reference {
    bids: BTreeMap<i64, i64>,
    asks: BTreeMap<i64, i64>,
}

impl Reference {
    /// Applies `m` and returns the diff levels (absolute quantities) a venue would send.
    fn step(&mut self, m: &Msg) -> (Vec<Level>, Vec<Level>) {
        let mut b: BTreeMap<i64, i64> = BTreeMap::new();
        let mut a: BTreeMap<i64, i64> = BTreeMap::new();
        // Levels the new mid crossed disappear (the venue sends them as removals).
        for (&p, _) in self.bids.range(m.mid..) {
            b.insert(p, 0);
        }
        for (&p, _) in self.asks.range(..=m.mid) {
            a.insert(p, 0);
        }
        for &(is_bid, off, qty) in &m.changes {
            if is_bid {
                b.insert(m.mid - off, qty);
            } else {
                a.insert(m.mid + off, qty);
            }
        }
        for &(is_bid, p) in &m.removes_absent {
            let side = if is_bid { &self.bids } else { &self.asks };
            let diff = if is_bid { &mut b } else { &mut a };
            if !side.contains_key(&p) && !diff.contains_key(&p) {
                diff.insert(p, 0);
            }
        }
        for (&p, &qty) in &b {
            if qty == 0 {
                self.bids.remove(&p)
            } else {
                self.bids.insert(p, qty)
            };
        }
        for (&p, &qty) in &a {
            if qty == 0 {
                self.asks.remove(&p)
            } else {
                self.asks.insert(p, qty)
            };
        }
        let lv = |m: &BTreeMap<i64, i64>| {
            m.iter().map(|(&p, &q)| Level::new(Price(p), Qty(q))).collect()
        };
        (lv(&b), lv(&a))
    }

    fn best_first(&self) -> (Vec<Level>, Vec<Level>) {
        let bids = self.bids.iter().rev().map(|(&p, &q)| Level::new(Price(p), Qty(q))).collect();
        let asks = self.asks.iter().map(|(&p, &q)| Level::new(Price(p), Qty(q))).collect();
        (bids, asks)
    }
}

fn levels(b: &Book) -> (Vec<Level>, Vec<Level>) {
    (b.bids.iter().copied().collect(), b.asks.iter().copied().collect())
}

fn diff<'a>(u0: u64, u1: u64, pu: u64, bids: &'a [Level], asks: &'a [Level]) -> DepthDiff<'a> {
    DepthDiff {
        inst: InstrumentId(0),
        exch_ts: Nanos(0),
        first_id: u0,
        last_id: u1,
        prev_last_id: Some(pu),
        bids,
        asks,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A book fed any valid diff sequence equals the book rebuilt from the final snapshot;
    /// bids stay sorted, asks stay sorted, and the book never crosses.
    #[test]
    fn book_follows_any_valid_diff_sequence(msgs in prop::collection::vec(msg(), 1..60)) {
        let mut reference = Reference { bids: BTreeMap::new(), asks: BTreeMap::new() };
        reference.step(&Msg { mid: 200, changes: vec![(true, 1, 3), (false, 1, 3)], removes_absent: vec![] });
        let (sb, sa) = reference.best_first();
        let mut book = Book::new(SeqRule::Futures, 1_024);
        book.apply_snapshot(&BookSnapshot { inst: InstrumentId(0), exch_ts: Nanos(0), last_update_id: 10, bids: &sb, asks: &sa }, Nanos(0));
        let mut last = 10u64;
        for (i, m) in msgs.iter().enumerate() {
            let (b, a) = reference.step(m);
            let (u0, u1) = (last - (i == 0) as u64 * 2 + 1, last + 3);
            prop_assert_eq!(book.apply_diff(&diff(u0, u1, last, &b, &a), Nanos(i as u64)), DiffOutcome::Applied);
            last = u1;
            let (bb, aa) = levels(&book);
            prop_assert!(bb.windows(2).all(|w| w[0].px > w[1].px), "bids sorted");
            prop_assert!(aa.windows(2).all(|w| w[0].px < w[1].px), "asks sorted");
            if let (Some(x), Some(y)) = (book.best_bid(), book.best_ask()) {
                prop_assert!(x.px < y.px, "crossed: {:?} {:?}", x, y);
            }
            prop_assert_eq!((bb, aa), reference.best_first());
        }
        let (fb, fa) = reference.best_first();
        let mut rebuilt = Book::new(SeqRule::Futures, 1_024);
        rebuilt.apply_snapshot(&BookSnapshot { inst: InstrumentId(0), exch_ts: Nanos(0), last_update_id: last, bids: &fb, asks: &fa }, Nanos(0));
        prop_assert_eq!(levels(&book), levels(&rebuilt));
    }

    /// Any break in the `pu` chain is detected on the message that breaks it, and nothing
    /// is applied after it until a new snapshot.
    #[test]
    fn any_gap_is_detected(n in 2usize..40, gap_at in 1usize..40, skip in 1u64..5) {
        let gap_at = gap_at % n;
        let mut book = Book::new(SeqRule::Futures, 64);
        let one = [Level::new(Price(100), Qty(1))];
        let ask = [Level::new(Price(200), Qty(1))];
        book.apply_snapshot(&BookSnapshot { inst: InstrumentId(0), exch_ts: Nanos(0), last_update_id: 5, bids: &one, asks: &ask }, Nanos(0));
        let mut last = 5u64;
        for i in 0..n {
            let pu = if i == gap_at && i > 0 { last + skip } else { last };
            let first = if i == 0 { 4 } else { pu + 1 };
            let out = book.apply_diff(&diff(first, pu + 3, pu, &[], &[]), Nanos(0));
            if i == gap_at && i > 0 {
                prop_assert_eq!(out, DiffOutcome::Gap);
                prop_assert_eq!(book.state(), BookState::Stale);
            } else if i > gap_at && gap_at > 0 {
                prop_assert_eq!(out, DiffOutcome::NotSynced);
            } else {
                prop_assert_eq!(out, DiffOutcome::Applied);
            }
            last = pu + 3;
        }
    }
}

// ----- the pair state machine -------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Market(u8),
    Ack(u8),
    Fill(u8, u8),
    DupFill(u8),
    Done(u8),
    Reject(u8),
    Unknown(u8),
    NotFound(u8),
    Timer(u16),
    Stop,
    Resume,
    Flatten,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..7).prop_map(Op::Market),
        2 => any::<u8>().prop_map(Op::Ack),
        4 => (any::<u8>(), 1u8..=4).prop_map(|(k, f)| Op::Fill(k, f)),
        1 => any::<u8>().prop_map(Op::DupFill),
        2 => any::<u8>().prop_map(Op::Done),
        1 => any::<u8>().prop_map(Op::Reject),
        1 => any::<u8>().prop_map(Op::Unknown),
        1 => any::<u8>().prop_map(Op::NotFound),
        3 => (1u16..800).prop_map(Op::Timer),
        1 => Just(Op::Stop),
        1 => Just(Op::Resume),
        1 => Just(Op::Flatten),
    ]
}

/// The venue side of the test: what each of our orders has done so far.
#[derive(Debug, Clone)]
struct VenueOrder {
    req: OrderRequest,
    cum: Qty,
    terminal: bool,
    last_fill: Option<OrderEventKind>,
}

/// R11: every limit order's price is inside the collar (widened per repair attempt) of the
/// touch of the book it was priced against — checked right after the event that made it.
fn collared(h: &H, acts: &[Action]) -> Result<(), TestCaseError> {
    let risk = h.e.config().risk;
    for a in acts {
        let Action::Place(r) = a else { continue };
        if r.kind != kimp_core::order::OrderKind::LimitIoc {
            continue;
        }
        let book = h.e.book(r.inst).unwrap();
        let touch = if r.side == Side::Buy { book.best_ask() } else { book.best_bid() };
        let touch = touch.expect("an order is priced against a book").px.0 as i128;
        let extra = risk.hedge_collar_step_bps as i128 * (r.cl_id.attempt as i128 + 1);
        let collar = touch * (risk.collar_bps as i128 + extra) / 10_000;
        let through = (r.px.0 as i128 - touch) * r.side.sign() as i128;
        prop_assert!(through <= collar, "limit outside the collar: {:?} touch {}", r, touch);
    }
    Ok(())
}

/// Runs `ops` and checks the invariants after every step; returns the action log.
fn run(ops: &[Op]) -> Result<Vec<Action>, TestCaseError> {
    let mut h = H::simple();
    h.start();
    let mut venue: Vec<VenueOrder> = Vec::new();
    let mut ids: HashSet<ClientId> = HashSet::new();
    let mut sides: BTreeMap<ClientId, Side> = BTreeMap::new();
    let mut pos = [0i64; 2];
    // Pairs the strategy decided to exit, and pairs that were flattened at market.
    let (mut exits, mut flattens): (HashSet<u32>, HashSet<u32>) = Default::default();
    // 303 and 293 bps sit just inside the exit thresholds of a pair entered at 344 (with
    // and without the exit's retry headroom): exits there have the thinnest margin.
    let bps = [344.0, 200.0, 50.0, -50.0, 600.0, 303.0, 293.0];
    for op in ops {
        let state_before = h.e.trading_state();
        let live_before: HashSet<ClientId> = h.e.live_orders().map(|o| o.req.cl_id).collect();
        let pick =
            |venue: &Vec<VenueOrder>, k: u8| (!venue.is_empty()).then(|| k as usize % venue.len());
        let acts = match *op {
            Op::Market(i) => {
                // The three books one event at a time, so each order's limit is checked
                // against the book as it was when the order was made.
                let p: f64 = bps[i as usize];
                let bid = ((70_000.1 * 1_450.0 * (1.0 + p / 10_000.0)) / 1_000.0).round() * 1_000.0;
                let mut acts = h.book(KRW_USDT, 1_449.0, 1_450.0, 1.0, 1_000_000.0, 5);
                collared(&h, &acts)?;
                let a = h.book(BTCUSDT, 70_000.0, 70_000.1, 0.1, 1.0, 20);
                collared(&h, &a)?;
                acts.extend(a);
                let a = h.book(KRW_BTC, bid, bid + 100_000.0, 1_000.0, 1.0, 20);
                collared(&h, &a)?;
                acts.extend(a);
                acts
            }
            Op::Timer(ms) => {
                h.advance_ms(ms as u64);
                h.timer()
            }
            Op::Stop => h.ev(Event::Control(Control::Stop)),
            Op::Resume => h.ev(Event::Control(Control::Resume)),
            Op::Flatten => h.ev(Event::Control(Control::Flatten(None))),
            Op::Ack(k) => match pick(&venue, k) {
                Some(i) if !venue[i].terminal => {
                    let r = venue[i].req;
                    h.report(&r, OrderEventKind::Ack)
                }
                _ => vec![],
            },
            Op::Fill(k, quarters) => match pick(&venue, k) {
                Some(i) if !venue[i].terminal => {
                    let v = &mut venue[i];
                    // Binance fills in whole lots (0.001); Upbit in any 1e-8 volume.
                    let lot = if v.req.cl_id.leg == Leg::B { 100_000 } else { 1 };
                    let want = Qty((v.req.qty.0 * quarters as i64 / 4 / lot * lot).max(v.cum.0));
                    let qty = Qty(want.0 - v.cum.0);
                    if qty.0 == 0 {
                        vec![]
                    } else {
                        v.cum = want;
                        let kind = OrderEventKind::Fill {
                            trade_id: v.cum.0 as u64,
                            px: v.req.px,
                            qty,
                            cum_qty: want,
                            fee: kimp_core::units::Quote(1),
                        };
                        v.last_fill = Some(kind);
                        if want == v.req.qty {
                            v.terminal = true;
                        }
                        let r = v.req;
                        h.report(&r, kind)
                    }
                }
                _ => vec![],
            },
            Op::DupFill(k) => {
                match pick(&venue, k).and_then(|i| venue[i].last_fill.map(|f| (venue[i].req, f))) {
                    Some((r, f)) => h.report(&r, f),
                    None => vec![],
                }
            }
            Op::Done(k) => match pick(&venue, k) {
                Some(i) if !venue[i].terminal => {
                    venue[i].terminal = true;
                    let (r, cum) = (venue[i].req, venue[i].cum);
                    h.report(&r, OrderEventKind::Done { cum_qty: cum })
                }
                _ => vec![],
            },
            Op::Reject(k) | Op::NotFound(k) => match pick(&venue, k) {
                Some(i) if !venue[i].terminal && venue[i].cum.0 == 0 => {
                    venue[i].terminal = true;
                    let r = venue[i].req;
                    let kind = if matches!(op, Op::Reject(_)) {
                        OrderEventKind::Reject(RejectReason::Other(-1))
                    } else {
                        OrderEventKind::NotFound
                    };
                    h.report(&r, kind)
                }
                _ => vec![],
            },
            Op::Unknown(k) => match pick(&venue, k) {
                Some(i) if !venue[i].terminal => {
                    let r = venue[i].req;
                    h.report(&r, OrderEventKind::Unknown)
                }
                _ => vec![],
            },
        };
        // Every other op is one event: the books did not move while it was handled.
        if !matches!(op, Op::Market(_)) {
            collared(&h, &acts)?;
        }
        // Orders in flight before and still in flight after this event (an unknown one
        // among them): their legs may not get a new order now.
        let busy: HashSet<Leg> =
            h.e.live_orders()
                .filter(|o| live_before.contains(&o.req.cl_id))
                .map(|o| o.req.cl_id.leg)
                .collect();
        for a in &acts {
            match a {
                Action::Place(r) => {
                    prop_assert!(ids.insert(r.cl_id), "client id reused: {:?}", r.cl_id);
                    // R11: nothing erroneous reaches the outbox — notional within the
                    // per-order maximum and a positive quantity (the collar is checked
                    // right after the event that placed the order, in `collared`).
                    let risk = h.e.config().risk;
                    let notional = r.px.notional(r.qty).unwrap().0 as i128;
                    let max = if r.cl_id.leg == Leg::U {
                        risk.max_order_notional_krw
                    } else {
                        risk.max_order_notional_usdt
                    };
                    prop_assert!(
                        notional <= max as i128 * 100_000_000,
                        "over max notional: {:?}",
                        r
                    );
                    prop_assert!(r.qty.0 > 0);
                    prop_assert!(
                        !busy.contains(&r.cl_id.leg),
                        "new order on a leg with one in flight (never re-send an unknown): {:?}",
                        r
                    );
                    sides.insert(r.cl_id, r.side);
                    venue.push(VenueOrder {
                        req: *r,
                        cum: Qty(0),
                        terminal: false,
                        last_fill: None,
                    });
                }
                Action::Journal(Record::Intent {
                    purpose: purpose @ (Purpose::Entry | Purpose::Exit),
                    pair,
                    ..
                }) => {
                    prop_assert_eq!(
                        state_before,
                        TradingState::Active,
                        "entry or exit while not active"
                    );
                    if *purpose == Purpose::Exit {
                        exits.insert(*pair);
                    }
                }
                Action::Journal(Record::Intent { purpose: Purpose::Flatten, pair, .. }) => {
                    flattens.insert(*pair);
                }
                // The exit rule: a pair the strategy exits and nothing flattened closes at
                // net > 0 (fills here are at the limit, fees below the configured rate).
                Action::Journal(Record::Pair(r))
                    if r.to == kimp_core::pair::PairState::Closed
                        && exits.contains(&r.pair)
                        && !flattens.contains(&r.pair) =>
                {
                    prop_assert!(r.pnl.net().0 > 0, "exit closed at net <= 0: {:?}", r);
                }
                Action::Journal(Record::Fill { cl_id, qty, .. }) => {
                    let leg = if cl_id.leg == Leg::U { 0 } else { 1 };
                    pos[leg] += sides[cl_id].sign() * qty.0;
                }
                _ => {}
            }
        }
        // The engine always knows its unhedged quantity, and it matches the fills.
        match h.e.pair(0) {
            Some(p) => {
                prop_assert_eq!((p.u.pos.0, p.b.pos.0), (pos[0], pos[1]));
                prop_assert_eq!(p.unhedged().0, pos[0] + pos[1]);
            }
            // Released only when flat, or holding dust no venue accepts (Upbit's 5,000
            // KRW minimum: under 0.00005 BTC at these prices).
            None => prop_assert!(
                pos[1] == 0 && pos[0].abs() <= 5_000,
                "pair released while not flat: {pos:?}"
            ),
        }
        prop_assert!(h.e.stats().orders_placed <= 2 * h.e.stats().intents);
    }
    Ok(h.log)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn pair_state_machine_invariants(ops in prop::collection::vec(op(), 1..120)) {
        run(&ops)?;
    }

    /// Same events in, same actions out.
    #[test]
    fn engine_is_deterministic(ops in prop::collection::vec(op(), 1..60)) {
        let a = format!("{:?}", run(&ops)?);
        let b = format!("{:?}", run(&ops)?);
        prop_assert_eq!(a, b);
    }
}

/// The random runs above must reach every pair state, or they prove little: run a fixed
/// sample and check that each state and both kinds of repair occurred.
#[test]
fn random_runs_cover_every_pair_state() {
    use kimp_core::pair::PairState;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strat = prop::collection::vec(op(), 60..120);
    let mut seen: HashSet<PairState> = HashSet::new();
    let mut purposes: HashSet<&'static str> = HashSet::new();
    for _ in 0..300 {
        let ops = strat.new_tree(&mut runner).unwrap().current();
        for a in run(&ops).unwrap() {
            match a {
                Action::Journal(Record::Pair(p)) => {
                    seen.insert(p.to);
                }
                Action::Journal(Record::Intent { purpose, .. }) => {
                    purposes.insert(match purpose {
                        Purpose::Entry => "entry",
                        Purpose::Exit => "exit",
                        Purpose::Hedge => "hedge",
                        Purpose::Flatten => "flatten",
                    });
                }
                _ => {}
            }
        }
    }
    for s in [PairState::Hedged, PairState::OneLeg, PairState::Closing, PairState::Closed] {
        assert!(seen.contains(&s), "never reached {s:?}: {seen:?}");
    }
    assert_eq!(purposes.len(), 4, "{purposes:?}");
}
