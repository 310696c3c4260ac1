//! The trading loop: one thread, optionally pinned, polling every socket with mio at zero
//! timeout (or 1 ms when `busy_poll = false`), feeding the engine and writing the orders
//! it emits in the same turn.
//!
//! One turn: read the clock once; poll; for each ready WebSocket drain its frames through
//! the codec into the engine, executing the engine's actions right away (journal first,
//! then the signed requests); feed REST completions; drain operator control; run the
//! engine timer on its cadence; tick every connection; measure the turn.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use kimp_core::action::{Action, Alert, Outbox, Purpose, Record, Telemetry, TradingState};
use kimp_core::engine::{Engine, Markets};
use kimp_core::event::{Control, Event, OrderEvent, OrderEventKind, RejectReason};
use kimp_core::instrument::{InstrumentId, Venue};
use kimp_core::units::Nanos;
use kimp_gateways::binance::market::BinanceMarketParser;
use kimp_gateways::binance::user::BinanceUserParser;
use kimp_gateways::codec::{MarketMsg, UserMsg};
use kimp_gateways::rest::{AuthError, Failure};
use kimp_gateways::symbols::SymbolTable;
use kimp_gateways::transport::{BackoffConfig, Refusal, Retry, WsConfig, WsConn, WsPoll};
use kimp_gateways::upbit::market::UpbitMarketParser;
use mio::{Events, Poll, Token};

use super::clock::Clock;
use super::journal::Journal;
use super::metrics::{LoopMetrics, LoopSummary, Stage};
use super::orders::{OrderPath, ReqKind};
use super::record_codec::Entry;
use super::startup::Target;
use crate::dst::failpoint;

/// Journal slots kept free for the outcome of orders already sent (acks, fills, states,
/// pair transitions) once no next segment could be reserved: with less room than this, a
/// new order is refused rather than sent with an outcome that could not be journaled.
pub const ORDER_RESERVE_SLOTS: u64 = 16;

/// How often an idle loop readies the journal's next pages (a store per page when they
/// are ready already).
const PREFAULT_EVERY: Nanos = Nanos(1_000_000);

/// First follow-up query of an answered, still-open order.
const FOLLOW_UP: Nanos = Nanos::from_ms(15);

/// Token of the Upbit quotation WebSocket.
pub const UPBIT_MD: Token = Token(0);
/// Token of the Binance public (depth, bookTicker) WebSocket.
pub const BINANCE_PUBLIC: Token = Token(1);
/// Token of the Binance market (markPrice) WebSocket.
pub const BINANCE_MARKET: Token = Token(2);
/// Token of the Binance user-data WebSocket.
pub const BINANCE_USER: Token = Token(3);
/// First token of the Upbit REST pool.
pub const UPBIT_REST: Token = Token(16);
/// First token of the Binance REST pool.
pub const BINANCE_REST: Token = Token(32);

/// What the loop hands to the sidecars (never blocks: a full channel drops and counts).
#[derive(Clone, Copy, Debug)]
pub enum Out {
    /// Engine telemetry.
    Telemetry(Telemetry),
    /// Engine alert.
    Alert(Alert),
    /// Loop latency and duty cycle for the last interval.
    Loop(LoopSummary),
    /// Counters, once per interval.
    Counters(Counters),
}

/// Counters reported once per interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Engine stats.
    pub engine: kimp_core::engine::Stats,
    /// Order path stats.
    pub orders: super::orders::OrderPathStats,
    /// Malformed frames (all parsers).
    pub malformed: u64,
    /// Frames each parser refused (malformed, unknown symbol or unknown type): Upbit
    /// market data, Binance market data, Binance user stream.
    pub feed_errors: [u64; 3],
    /// Telemetry messages dropped because the channel was full.
    pub telemetry_drops: u64,
    /// Trading state.
    pub trading: Option<TradingState>,
    /// The journal could not reserve its next segment (disk full): entries halted.
    pub journal_degraded: bool,
    /// The journal refused a record.
    pub journal_failed: bool,
    /// Journal slots left (current segment, plus the next one when reserved).
    pub journal_room: u64,
    /// When this report was made (engine time).
    pub at: Nanos,
    /// The connections, in [`FEED_NAMES`] order.
    pub feeds: [FeedReport; 4],
}

/// Names of the connections in [`Counters::feeds`].
pub const FEED_NAMES: [&str; 4] = ["upbit", "binance public", "binance market", "binance user"];

/// One connection in a report (the sidecars log its reconnects and show its age).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedReport {
    /// Open now.
    pub open: bool,
    /// Successful upgrades so far.
    pub opens: u64,
    /// Transitions into down so far (failed attempts included).
    pub downs: u64,
    /// When its newest data message arrived (engine time; 0: none yet).
    pub last_data: Nanos,
}

impl FeedReport {
    fn of(c: &WsConn) -> FeedReport {
        let st = c.stats();
        FeedReport {
            open: c.state() == kimp_gateways::transport::WsState::Open,
            opens: st.opens,
            downs: st.downs,
            last_data: if st.messages == 0 { Nanos(0) } else { c.last_data_at() },
        }
    }
}

/// Buffering of Binance diffs while a depth snapshot is on its way (docs §3.5 step 2).
#[derive(Debug)]
struct DepthSync {
    buffering: bool,
    requested: bool,
    /// A failed snapshot request is asked again on this schedule, not every turn.
    retry: Retry,
    arena: Vec<u8>,
    frames: Vec<(u32, u32)>,
}

impl DepthSync {
    fn new() -> Self {
        Self {
            buffering: false,
            requested: false,
            // No trading on the coin without its book: at most 5 s between snapshot
            // requests (weight 20 each), a 429/418 waits what the venue says.
            retry: Retry::new(BackoffConfig { cap: Nanos::from_ms(5_000), ..Retry::DEFAULT }),
            arena: Vec::with_capacity(4 << 20),
            frames: Vec::with_capacity(8_192),
        }
    }

    fn start(&mut self) {
        self.buffering = true;
        self.requested = false;
        self.arena.clear();
        self.frames.clear();
    }

    fn buffer(&mut self, payload: &[u8]) {
        if self.frames.len() < self.frames.capacity()
            && self.arena.len() + payload.len() <= self.arena.capacity()
        {
            let start = self.arena.len() as u32;
            self.arena.extend_from_slice(payload);
            self.frames.push((start, payload.len() as u32));
        }
        // When full, later frames are lost: the engine will see a gap and ask again.
    }
}

/// The engine side of the loop.
pub struct Core {
    /// The engine.
    pub engine: Engine,
    /// Its outbox.
    pub out: Outbox,
    /// The journal.
    pub journal: Journal,
    /// Loop metrics.
    pub metrics: LoopMetrics,
    /// Channel to the sidecars.
    pub tx: Sender<Out>,
    /// Markets (venue and symbol lookup).
    pub markets: Markets,
    /// Balance reports received: bit 0 Upbit accounts, bit 1 Binance account.
    pub balances_seen: u8,
    /// Balance requests in flight, same bits (cleared when one fails, so it is retried).
    balances_asked: u8,
    /// When each venue's account (Upbit, Binance) was last asked for: the engine checks
    /// the answer against its positions as of then (`Control::CheckAccount`).
    balances_asked_at: [Nanos; 2],
    /// Books that need a snapshot (from `Action::Resync`), handled after the poll.
    resync: Vec<InstrumentId>,
    /// Set when the journal refused a record: entries stop, and nothing is sent whose
    /// intent was not journaled.
    pub journal_failed: bool,
    /// Telemetry dropped.
    pub telemetry_drops: u64,
    /// The journal's disk-full condition was logged.
    journal_alarmed: bool,
    /// The venue refused our keys: before reconciliation finished the loop stops with this
    /// error (no retry can fix a key); after, it is logged and the request backs off.
    pub auth_failure: Option<AuthError>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("trading", &self.engine.trading_state())
            .finish_non_exhaustive()
    }
}

impl Core {
    /// The engine side of the loop.
    pub fn new(
        engine: Engine,
        journal: Journal,
        markets: Markets,
        tx: Sender<Out>,
        cycle_us_max: u64,
    ) -> Self {
        Self {
            engine,
            out: Outbox::with_capacity(512),
            journal,
            metrics: LoopMetrics::new(cycle_us_max),
            tx,
            markets,
            balances_seen: 0,
            balances_asked: 0,
            balances_asked_at: [Nanos(0); 2],
            resync: Vec::with_capacity(64),
            journal_failed: false,
            telemetry_drops: 0,
            journal_alarmed: false,
            auth_failure: None,
        }
    }

    /// Asks the venues in `want` (bit 0 Upbit, bit 1 Binance) for their accounts through
    /// the loop's REST pools, unless already asked; returns the bits sent. Never waits.
    fn ask_accounts(&mut self, orders: &mut OrderPath, now: Nanos, wall_ms: u64, want: u8) -> u8 {
        let missing = want & !self.balances_asked & 0b11;
        let mut sent = 0;
        if missing & 1 != 0 && orders.upbit_accounts(now) {
            sent |= 1;
        }
        if missing & 2 != 0 && orders.binance_account(now, wall_ms) {
            sent |= 2;
        }
        for (i, bit) in [1u8, 2].into_iter().enumerate() {
            if sent & bit != 0 {
                self.balances_asked_at[i] = now;
            }
        }
        self.balances_asked |= sent;
        sent
    }

    fn send_out(&mut self, o: Out) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(o) {
            self.telemetry_drops += 1;
        }
    }
}

/// Feeds one event to the engine and executes its actions (journal first, then orders).
fn feed(core: &mut Core, orders: &mut OrderPath, clock: &Clock, now: Nanos, ev: &Event<'_>) {
    core.engine.on_event(now, ev, &mut core.out);
    execute(core, orders, clock, now);
}

/// Executes the outbox in order.
fn execute(core: &mut Core, orders: &mut OrderPath, clock: &Clock, now: Nanos) {
    let wall = clock.wall_ms(now);
    // An intent whose record could not be journaled must not reach the wire.
    let mut journal_ok = true;
    // Legs of an entry intent placed so far (crash tests' failpoints, inert unless armed).
    let mut entry_legs: Option<u8> = None;
    for i in 0..core.out.len() {
        let a = core.out.as_slice()[i];
        match a {
            Action::Journal(r) => {
                let sends = matches!(r, Record::Intent { .. } | Record::Order(_));
                if let Record::Intent { .. } = r {
                    journal_ok = true;
                }
                // Disk full: what is left is kept for the outcomes of orders already sent.
                let reserve =
                    sends && core.journal.degraded && core.journal.room() < ORDER_RESERVE_SLOTS;
                if reserve || core.journal.append(now, &Entry::Record(r)).is_err() {
                    journal_ok = false;
                    core.journal_failed = true;
                }
                match r {
                    Record::Intent { purpose: Purpose::Entry, .. } => {
                        entry_legs = Some(0);
                        failpoint::hit("after_intent");
                    }
                    Record::Fill { .. } => failpoint::hit("after_fill"),
                    _ => {}
                }
            }
            Action::Place(req) => {
                let venue = core.markets.instruments[req.inst.0 as usize].venue;
                if journal_ok {
                    orders.place(now, wall, venue, &req);
                    if let Some(n) = entry_legs.as_mut() {
                        *n += 1;
                        failpoint::hit(if *n == 1 { "after_leg1_sent" } else { "after_leg2_sent" });
                    }
                } else {
                    let kind = OrderEventKind::Reject(RejectReason::Gateway);
                    orders.events.push(Event::Order(OrderEvent {
                        cl_id: req.cl_id,
                        exch_ts: now,
                        kind,
                    }));
                }
            }
            Action::Query { cl_id, inst } => orders.query(
                now,
                wall,
                core.markets.instruments[inst.0 as usize].venue,
                cl_id,
                inst,
            ),
            Action::Cancel { cl_id, inst } => orders.cancel(
                now,
                wall,
                core.markets.instruments[inst.0 as usize].venue,
                cl_id,
                inst,
            ),
            Action::Resync(inst) => {
                if core.resync.len() < core.resync.capacity() && !core.resync.contains(&inst) {
                    core.resync.push(inst);
                }
            }
            Action::Telemetry(t) => core.send_out(Out::Telemetry(t)),
            Action::Alert(al) => core.send_out(Out::Alert(al)),
        }
    }
    core.out.clear();
    journal_guard(core, orders, clock, now);
}

/// A journal that refused a record, or cannot reserve its next segment (disk full), halts
/// entries at once — before the next event can open a pair; hedges go on while its last
/// segment has room.
fn journal_guard(core: &mut Core, orders: &mut OrderPath, clock: &Clock, now: Nanos) {
    if !(core.journal_failed || core.journal.degraded) {
        return;
    }
    // A refused record (journal_failed) means the journal lacks something: that latches
    // until a restart replays it; a full disk alone clears once a segment is reserved.
    if !core.journal_alarmed {
        core.journal_alarmed = true;
        tracing::error!(
            room = core.journal.room(),
            refused = core.journal_failed,
            "journal: no segment can be reserved (disk full); entries halted"
        );
    }
    if core.engine.trading_state() == TradingState::Active {
        feed(core, orders, clock, now, &Event::Control(Control::Stop));
    }
}

/// Market-data parsers and feeds.
struct Feeds {
    upbit: WsConn,
    binance_public: WsConn,
    binance_market: WsConn,
    binance_user: Option<WsConn>,
    binance_ws: Target,
    upbit_sub: String,
    upbit_p: UpbitMarketParser,
    binance_p: BinanceMarketParser,
    user_p: BinanceUserParser,
    sync: Vec<DepthSync>,
    perps: Vec<InstrumentId>,
    /// When to ask for a new listen key: the key expired or was refused, or the last
    /// request failed (without this the user stream would retry a dead key forever).
    user_key_due: Option<Nanos>,
    /// Back-off of failed listen-key requests.
    user_key_retry: Retry,
}

/// Start-up reconciliation progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for order outcomes, balances and books.
    Reconciling { since: Nanos, queried: bool },
    /// Trading (or halted).
    Running,
}

/// The loop.
pub struct TradingLoop {
    poll: Poll,
    events: Events,
    /// The clock.
    pub clock: Clock,
    feeds: Feeds,
    /// The order path.
    pub orders: OrderPath,
    /// The engine side.
    pub core: Core,
    control: Receiver<Control>,
    busy_poll: bool,
    timer: Nanos,
    next_timer: Nanos,
    /// Next idle turn that readies the journal's next pages.
    next_prefault: Nanos,
    next_report: Nanos,
    next_listen_keepalive: Nanos,
    next_planned_reconnect: Nanos,
    next_reconcile_log: Nanos,
    /// Next periodic account check (`risk.reconcile_interval_s`); none before start-up
    /// reconciliation finished.
    next_account_check: Option<Nanos>,
    /// Accounts of the current check not yet asked for (a busy pool is retried next turn).
    accounts_due: u8,
    phase: Phase,
    /// Answered orders still open: (due, id, instrument, venue, tries).
    followups: Vec<(Nanos, kimp_core::order::ClientId, InstrumentId, Venue, u8)>,
}

impl std::fmt::Debug for TradingLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TradingLoop").field("phase", &self.phase).finish_non_exhaustive()
    }
}

/// Everything needed to build the loop.
#[derive(Debug)]
pub struct LoopParts {
    /// Markets the engine trades.
    pub markets: Markets,
    /// Upbit quotation WebSocket.
    pub upbit_ws: Target,
    /// Binance WebSocket base (routes `/public`, `/market`, `/private` are appended).
    pub binance_ws: Target,
    /// Zero-timeout polling.
    pub busy_poll: bool,
    /// Engine timer cadence.
    pub timer: Nanos,
}

impl TradingLoop {
    /// Builds the loop around an engine that was already restored from the journal.
    pub fn new(
        parts: LoopParts,
        core: Core,
        orders: OrderPath,
        clock: Clock,
        control: Receiver<Control>,
    ) -> anyhow::Result<Self> {
        let poll = Poll::new()?;
        let insts = &parts.markets.instruments;
        let perps: Vec<InstrumentId> = (0..insts.len())
            .filter(|&i| insts[i].venue == Venue::Binance)
            .map(|i| InstrumentId(i as u16))
            .collect();
        let upbit_codes: Vec<String> = insts
            .iter()
            .filter(|i| i.venue == Venue::Upbit)
            .map(|i| format!("\"{}\"", i.symbol))
            .collect();
        let upbit_sub = format!(
            "[{{\"ticket\":\"kimp\"}},{{\"type\":\"orderbook\",\"codes\":[{}]}},{{\"format\":\"DEFAULT\"}}]",
            upbit_codes.join(",")
        );
        let lower: Vec<String> = perps
            .iter()
            .map(|i| insts[i.0 as usize].symbol.as_str().to_ascii_lowercase())
            .collect();
        let public: Vec<String> = lower
            .iter()
            .flat_map(|s| [format!("{s}@depth@100ms"), format!("{s}@bookTicker")])
            .collect();
        let market: Vec<String> = lower.iter().map(|s| format!("{s}@markPrice@1s")).collect();
        let bpub =
            parts.binance_ws.with_path(&format!("/public/stream?streams={}", public.join("/")))?;
        let bmkt =
            parts.binance_ws.with_path(&format!("/market/stream?streams={}", market.join("/")))?;
        let ws = |t: &Target, tok| {
            WsConn::new(t.endpoint.clone(), t.addr, t.tls.clone(), tok, WsConfig::default())
                .map_err(|e| anyhow::anyhow!("{}: {e:?}", t.endpoint.host()))
        };
        let feeds = Feeds {
            upbit: ws(&parts.upbit_ws, UPBIT_MD)?,
            binance_public: ws(&bpub, BINANCE_PUBLIC)?,
            binance_market: ws(&bmkt, BINANCE_MARKET)?,
            binance_user: None,
            binance_ws: parts.binance_ws,
            upbit_sub,
            upbit_p: UpbitMarketParser::new(SymbolTable::for_venue(Venue::Upbit, insts)),
            binance_p: BinanceMarketParser::new(SymbolTable::for_venue(Venue::Binance, insts)),
            user_p: BinanceUserParser::new(SymbolTable::for_venue(Venue::Binance, insts)),
            sync: (0..insts.len()).map(|_| DepthSync::new()).collect(),
            perps,
            user_key_due: None,
            // Fills arrive on the user stream: its key is asked again within a second at
            // most (weight 1), while a 429/418 still waits what the venue says.
            user_key_retry: Retry::new(BackoffConfig {
                cap: Nanos::from_ms(1_000),
                ..Retry::DEFAULT
            }),
        };
        Ok(Self {
            poll,
            events: Events::with_capacity(256),
            clock,
            feeds,
            orders,
            core,
            control,
            busy_poll: parts.busy_poll,
            timer: parts.timer,
            next_timer: Nanos(0),
            next_prefault: Nanos(0),
            next_report: Nanos(0),
            next_listen_keepalive: Nanos(0),
            next_planned_reconnect: Nanos(0),
            next_reconcile_log: Nanos::from_ms(2_000),
            next_account_check: None,
            accounts_due: 0,
            phase: Phase::Reconciling { since: Nanos(0), queried: false },
            followups: Vec::with_capacity(256),
        })
    }

    /// True once start-up reconciliation finished.
    pub fn reconciled(&self) -> bool {
        self.phase == Phase::Running
    }

    /// Runs until `stop` is set, then stops entries and waits (up to `drain`) for orders
    /// in flight to finish before returning.
    pub fn run(&mut self, stop: &AtomicBool, drain: Duration) -> anyhow::Result<()> {
        while !stop.load(Ordering::Relaxed) {
            self.turn()?;
        }
        let now = self.clock.now();
        feed(
            &mut self.core,
            &mut self.orders,
            &self.clock,
            now,
            &Event::Control(Control::Shutdown),
        );
        let end = now.plus(Nanos(drain.as_nanos() as u64));
        while self.clock.now() < end && self.core.engine.live_orders().count() > 0 {
            self.turn()?;
        }
        self.report(self.clock.now());
        Ok(())
    }

    /// One loop turn.
    pub fn turn(&mut self) -> anyhow::Result<()> {
        let now = self.clock.now();
        let timeout =
            if self.busy_poll { Some(Duration::ZERO) } else { Some(Duration::from_millis(1)) };
        if let Err(e) = self.poll.poll(&mut self.events, timeout)
            && e.kind() != std::io::ErrorKind::Interrupted
        {
            return Err(e.into());
        }
        let Self { feeds, orders, core, clock, events, .. } = self;
        for ev in events.iter() {
            let t = ev.token();
            match t {
                UPBIT_MD | BINANCE_PUBLIC | BINANCE_MARKET | BINANCE_USER => {
                    on_ws(feeds, t, now, core, orders, clock)
                }
                t if orders.owns(t) => orders.poll(t, now),
                _ => {}
            }
        }
        self.after_poll(now);
        if let Some(e) = self.core.auth_failure.take() {
            if !self.reconciled() {
                return Err(e.into());
            }
            tracing::error!(error = %e, "the venue refused the keys; asking again on the back-off");
        }
        // Page faults on the journal belong in a turn with nothing to do, not in the
        // append of the next intent (`Journal::prefault`).
        if self.events.is_empty() && now >= self.next_prefault {
            self.next_prefault = now.plus(PREFAULT_EVERY);
            self.core.journal.prefault();
        }
        let dur = self.clock.now().since(now);
        self.core.metrics.turn(dur);
        Ok(())
    }

    fn after_poll(&mut self, now: Nanos) {
        let Self { feeds, orders, core, clock, poll, control, .. } = self;
        // REST completions.
        for i in 0..orders.events.len() {
            let ev = orders.events[i];
            feed(core, orders, clock, now, &ev);
        }
        orders.events.clear();
        // Orders whose placement was answered but which are still open: ask soon (an
        // IOC is over by then), backing off; the engine's own timeout stays the backstop.
        for (id, inst, venue) in orders.answered.drain(..) {
            if self.followups.len() < self.followups.capacity() {
                self.followups.push((now.plus(FOLLOW_UP), id, inst, venue, 0));
            }
        }
        let mut k = 0;
        while k < self.followups.len() {
            let (due, id, inst, venue, tries) = self.followups[k];
            let live = core.engine.live_orders().find(|o| o.req.cl_id == id).map(|o| o.state);
            match live {
                Some(kimp_core::order::OrderState::Open) if now >= due => {
                    orders.query(now, clock.wall_ms(now), venue, id, inst);
                    if tries < 4 {
                        self.followups[k] = (
                            now.plus(Nanos(FOLLOW_UP.0 << (tries + 1))),
                            id,
                            inst,
                            venue,
                            tries + 1,
                        );
                        k += 1;
                    } else {
                        self.followups.swap_remove(k);
                    }
                }
                Some(kimp_core::order::OrderState::Open | kimp_core::order::OrderState::Sent) => {
                    k += 1
                }
                _ => {
                    self.followups.swap_remove(k);
                }
            }
        }
        handle_bodies(feeds, orders, core, clock, now, poll.registry());
        // Operator control (drained every turn; `/stop` takes effect here).
        while let Ok(c) = control.try_recv() {
            feed(core, orders, clock, now, &Event::Control(c));
        }
        // A journal that refused a record, or cannot reserve its next segment (disk
        // full), stops entries at once; hedges go on while its last segment has room.
        if (core.journal_failed || core.journal.degraded)
            && core.engine.trading_state() == TradingState::Active
        {
            feed(core, orders, clock, now, &Event::Control(Control::Stop));
        }
        // Books that need a snapshot.
        while let Some(inst) = core.resync.pop() {
            feeds.sync[inst.0 as usize].start();
        }
        for &inst in &feeds.perps {
            let s = &mut feeds.sync[inst.0 as usize];
            if s.buffering
                && !s.requested
                && s.retry.due(now)
                && feeds.binance_public.state() == kimp_gateways::transport::WsState::Open
            {
                s.requested = orders.snapshot(now, inst);
            }
        }
        // Connections' timers.
        let reg = poll.registry();
        for (conn, venue) in [
            (&mut feeds.upbit, Venue::Upbit),
            (&mut feeds.binance_public, Venue::Binance),
            (&mut feeds.binance_market, Venue::Binance),
        ] {
            if let WsPoll::Down(_) = conn.tick(reg, now) {
                feed(core, orders, clock, now, &Event::FeedDown(venue));
            }
        }
        if let Some(u) = feeds.binance_user.as_mut() {
            u.tick(reg, now);
        }
        orders.tick(reg, now);
        self.timers(now);
    }

    fn timers(&mut self, now: Nanos) {
        if now >= self.next_timer {
            self.next_timer = now.plus(self.timer);
            feed(&mut self.core, &mut self.orders, &self.clock, now, &Event::Timer);
            self.reconcile_step(now);
            self.account_check(now);
        }
        // Binance closes every connection after 24 h: reconnect on our schedule instead,
        // one book resync at a moment we choose.
        if now >= self.next_planned_reconnect {
            if self.next_planned_reconnect != Nanos(0) {
                self.feeds.binance_public.reconnect(now);
                self.feeds.binance_market.reconnect(now);
                if let Some(u) = self.feeds.binance_user.as_mut() {
                    u.reconnect(now);
                }
            }
            self.next_planned_reconnect = now.plus(Nanos::from_ms(23 * 3_600_000));
        }
        if let Some(due) = self.feeds.user_key_due
            && now >= due
        {
            self.feeds.user_key_due = if self.orders.listen_key(now, false) {
                None
            } else {
                Some(now.plus(Nanos::from_ms(1_000)))
            };
        }
        if now >= self.next_listen_keepalive {
            let first = self.next_listen_keepalive == Nanos(0);
            self.next_listen_keepalive =
                now.plus(Nanos::from_ms(if first { 1_000 } else { 30 * 60_000 }));
            self.orders.listen_key(now, !first && self.feeds.binance_user.is_some());
        }
        if now >= self.next_report {
            self.next_report = now.plus(Nanos::from_ms(1_000));
            // Disk full: try the reservation again (space may have been freed). Entries
            // stay halted until an operator resumes.
            if self.core.journal.degraded && self.core.journal.retry_reserve() {
                self.core.journal_alarmed = false;
                tracing::warn!("journal: next segment reserved again; /resume to trade");
            }
            self.report(now);
        }
    }

    fn report(&mut self, _now: Nanos) {
        let summary = self.core.metrics.take_interval();
        self.core.send_out(Out::Loop(summary));
        let c = Counters {
            engine: *self.core.engine.stats(),
            orders: self.orders.stats,
            malformed: self.feeds.upbit_p.stats.malformed
                + self.feeds.binance_p.stats.malformed
                + self.feeds.user_p.stats.malformed,
            feed_errors: [
                self.feeds.upbit_p.stats.errors(),
                self.feeds.binance_p.stats.errors(),
                self.feeds.user_p.stats.errors(),
            ],
            telemetry_drops: self.core.telemetry_drops,
            trading: Some(self.core.engine.trading_state()),
            journal_degraded: self.core.journal.degraded,
            journal_failed: self.core.journal_failed,
            journal_room: self.core.journal.room(),
            at: self.clock.now(),
            feeds: [
                FeedReport::of(&self.feeds.upbit),
                FeedReport::of(&self.feeds.binance_public),
                FeedReport::of(&self.feeds.binance_market),
                self.feeds.binance_user.as_ref().map(FeedReport::of).unwrap_or_default(),
            ],
        };
        self.core.send_out(Out::Counters(c));
    }

    /// The periodic account check: both venues' accounts are asked for through the loop's
    /// REST pools (never waiting) every `risk.reconcile_interval_s`; the engine compares
    /// each answer with its positions when it arrives (`handle_bodies`), so a position
    /// changed outside kimp halts entries.
    fn account_check(&mut self, now: Nanos) {
        let Some(due) = self.next_account_check else { return };
        if now >= due {
            let every = self.core.engine.config().risk.reconcile_interval_s.saturating_mul(1_000);
            self.next_account_check = Some(now.plus(Nanos::from_ms(every)));
            self.accounts_due = 0b11;
        }
        if self.accounts_due != 0 {
            let wall = self.clock.wall_ms(now);
            let sent = self.core.ask_accounts(&mut self.orders, now, wall, self.accounts_due);
            self.accounts_due &= !sent;
        }
    }

    /// Start-up reconciliation: query every unknown order, load balances, wait for books,
    /// then `ReconcileDone` (the engine repairs orphans first, then trades).
    fn reconcile_step(&mut self, now: Nanos) {
        let Phase::Reconciling { since, mut queried } = self.phase else { return };
        let first = since == Nanos(0);
        let since = if first { now } else { since };
        if !queried {
            // A query that could not go out (at start-up the REST connections are still
            // opening) is asked again on the next turn, not an order timeout later: a
            // restored orphan's hard deadline runs from the first turn (crash test R8).
            let unsent = self.orders.stats.not_sent;
            if first {
                self.core.engine.start_reconcile(now, &mut self.core.out);
                execute(&mut self.core, &mut self.orders, &self.clock, now);
            } else {
                use kimp_core::order::{Order, OrderState};
                let markets = &self.core.markets;
                let unknown =
                    |o: &&Order| matches!(o.state, OrderState::Unknown | OrderState::Sent);
                for o in self.core.engine.live_orders().filter(unknown) {
                    let venue = markets.instruments[o.req.inst.0 as usize].venue;
                    let wall = self.clock.wall_ms(now);
                    self.orders.query(now, wall, venue, o.req.cl_id, o.req.inst);
                }
            }
            queried = self.orders.stats.not_sent == unsent;
        }
        // Each venue's balances once, again only if the request failed. Each answer is
        // also checked against the journal's positions (`handle_bodies`).
        let wall = self.clock.wall_ms(now);
        let missing = !self.core.balances_seen & 0b11;
        self.core.ask_accounts(&mut self.orders, now, wall, missing);
        let books_ok = self.feeds.perps.iter().all(|i| {
            self.core
                .engine
                .book(*i)
                .is_some_and(|b| b.state() == kimp_core::book::BookState::Synced)
        });
        let waited = now.since(since) > Nanos::from_ms(10_000);
        let known = self.core.engine.outcomes_known();
        if self.core.balances_seen == 0b11 && known && (books_ok || waited) {
            let done = Event::Control(Control::ReconcileDone);
            feed(&mut self.core, &mut self.orders, &self.clock, now, &done);
            self.phase = Phase::Running;
            // At once, then on the interval: a start-up answer that was inconclusive (an
            // order of the coin was still being resolved) is checked again from here.
            self.next_account_check = Some(now);
            tracing::info!(
                elapsed_ms = now.since(since).as_ms(),
                books_synced = books_ok,
                state = ?self.core.engine.trading_state(),
                "reconciled"
            );
            return;
        }
        if now >= self.next_reconcile_log {
            self.next_reconcile_log = now.plus(Nanos::from_ms(2_000));
            tracing::info!(
                balances = self.core.balances_seen,
                outcomes_known = known,
                books_synced = books_ok,
                "reconciling"
            );
        }
        self.phase = Phase::Reconciling { since, queried };
    }
}

/// Drains one WebSocket and feeds its frames.
fn on_ws(
    feeds: &mut Feeds,
    t: Token,
    now: Nanos,
    core: &mut Core,
    orders: &mut OrderPath,
    clock: &Clock,
) {
    let Feeds {
        upbit,
        binance_public,
        binance_market,
        binance_user,
        upbit_p,
        binance_p,
        user_p,
        sync,
        upbit_sub,
        perps,
        user_key_due,
        ..
    } = feeds;
    let venue = if t == UPBIT_MD { Venue::Upbit } else { Venue::Binance };
    let polled = match t {
        UPBIT_MD => upbit.poll(now, |p| {
            on_market(p, clock.now(), upbit_p.parse(p), None, now, core, orders, clock)
        }),
        BINANCE_PUBLIC => binance_public.poll(now, |p| {
            on_market(p, clock.now(), binance_p.parse(p), Some(sync), now, core, orders, clock)
        }),
        BINANCE_MARKET => binance_market.poll(now, |p| {
            on_market(p, clock.now(), binance_p.parse(p), None, now, core, orders, clock)
        }),
        _ => match binance_user.as_mut() {
            Some(u) => u.poll(now, |p| match user_p.parse(p) {
                Ok(UserMsg::Events(evs)) => {
                    for e in evs {
                        feed(core, orders, clock, now, e);
                    }
                }
                Ok(UserMsg::ListenKeyExpired) => *user_key_due = Some(now),
                _ => {}
            }),
            None => WsPoll::Idle,
        },
    };
    if t == BINANCE_USER {
        // An expired key, or one the venue refuses at the upgrade, is dead: get a new one
        // (orders in flight are meanwhile followed by REST queries).
        if let WsPoll::Down(kimp_gateways::transport::DownReason::HandshakeStatus(_)) = polled {
            *user_key_due = Some(now);
        }
        if user_key_due.is_some() {
            *binance_user = None;
        }
    }
    match polled {
        WsPoll::Opened if t == UPBIT_MD => {
            let _ = upbit.send_text(now, upbit_sub);
        }
        WsPoll::Opened if t == BINANCE_PUBLIC => {
            // A fresh depth stream: buffer every book's diffs until its snapshot arrives.
            for i in perps.iter() {
                sync[i.0 as usize].start();
            }
        }
        WsPoll::Down(_) if t != BINANCE_USER => {
            feed(core, orders, clock, now, &Event::FeedDown(venue))
        }
        _ => {}
    }
}

/// One market-data frame: parse, (buffer while syncing), engine, orders; measured.
/// `t0` is taken before the frame was parsed, so the parse stage is measured.
#[allow(clippy::too_many_arguments)]
fn on_market(
    payload: &[u8],
    t0: Nanos,
    parsed: kimp_gateways::codec::CodecResult<MarketMsg<'_>>,
    sync: Option<&mut Vec<DepthSync>>,
    now: Nanos,
    core: &mut Core,
    orders: &mut OrderPath,
    clock: &Clock,
) {
    let Ok(MarketMsg::Event(ev)) = parsed else { return };
    if let (Event::Depth(d), Some(sync)) = (&ev, sync)
        && let Some(s) = sync.get_mut(d.inst.0 as usize)
        && s.buffering
    {
        s.buffer(payload);
        return;
    }
    let t1 = clock.now();
    let wire_before = orders.stats.wire_orders;
    core.engine.on_event(now, &ev, &mut core.out);
    let t2 = clock.now();
    execute(core, orders, clock, now);
    core.metrics.record(Stage::Parse, t1.since(t0));
    core.metrics.record(Stage::Engine, t2.since(t1));
    let t3 = clock.now();
    core.metrics.record(Stage::Frame, t3.since(t0));
    if orders.stats.wire_orders > wire_before {
        core.metrics.record(Stage::Send, t3.since(t2));
        core.metrics.record(Stage::TickToOrder, t3.since(t0));
    }
}

/// Non-order REST bodies: snapshots (then the buffered diffs), balances, listen keys.
fn handle_bodies(
    feeds: &mut Feeds,
    orders: &mut OrderPath,
    core: &mut Core,
    clock: &Clock,
    now: Nanos,
    registry: &mio::Registry,
) {
    for i in 0..orders.bodies.len() {
        let b = orders.bodies[i];
        let ok = (200..300).contains(&b.status);
        match b.kind {
            ReqKind::Snapshot => {
                let s = &mut feeds.sync[b.inst.0 as usize];
                if !ok {
                    // Ask again after a back-off (and the venue's Retry-After).
                    s.requested = false;
                    s.retry.failed(now, Refusal::from_status(b.status, b.retry_after_s));
                    continue;
                }
                s.retry.succeeded();
                let body = orders.body(&b).to_vec();
                match feeds.binance_p.parse_snapshot(b.inst, &body) {
                    Ok(MarketMsg::Event(ev)) => core.engine.on_event(now, &ev, &mut core.out),
                    _ => orders.stats.bad_responses += 1,
                }
                execute(core, orders, clock, now);
                let s = &mut feeds.sync[b.inst.0 as usize];
                s.buffering = false;
                for k in 0..s.frames.len() {
                    let (start, len) = s.frames[k];
                    let frame = &s.arena[start as usize..(start + len) as usize];
                    if let Ok(MarketMsg::Event(ev)) = feeds.binance_p.parse(frame) {
                        core.engine.on_event(now, &ev, &mut core.out);
                    }
                    execute(core, orders, clock, now);
                }
                s.frames.clear();
                s.arena.clear();
            }
            ReqKind::UpbitAccounts | ReqKind::BinanceAccount => {
                let (bit, evs) = if b.kind == ReqKind::UpbitAccounts {
                    (
                        1,
                        kimp_gateways::upbit::rest::accounts(orders.body(&b))
                            .map_err(|e| anyhow::anyhow!("{e}")),
                    )
                } else {
                    (2, super::startup::binance_account(orders.body(&b), &core.markets))
                };
                let refusal = match evs {
                    Ok(evs) if ok => {
                        for e in &evs {
                            feed(core, orders, clock, now, e);
                        }
                        core.balances_seen |= bit;
                        let asked_at = core.balances_asked_at[(bit >> 1) as usize];
                        let check = Control::CheckAccount { venue: b.venue, asked_at };
                        feed(core, orders, clock, now, &Event::Control(check));
                        orders.account_answered(b.venue);
                        None
                    }
                    Err(_) if ok => {
                        orders.stats.bad_responses += 1;
                        Some(Refusal::Failed)
                    }
                    _ => match balance_failure(&b, orders.body(&b)) {
                        // Wrong keys stop start-up (`turn`); later (a key revoked
                        // mid-run) the request is asked again on the back-off.
                        Failure::Auth(e) => {
                            core.auth_failure = Some(e);
                            orders.account_failed(b.venue, now, Refusal::Failed);
                            None
                        }
                        Failure::Retry(r) => Some(r),
                    },
                };
                // Logged once per failure, and failures are spaced by the back-off.
                if let Some(r) = refusal {
                    let (next, failures) = orders.account_failed(b.venue, now, r);
                    tracing::warn!(
                        venue = ?b.venue,
                        status = b.status,
                        failures,
                        retry_in_ms = next.since(now).as_ms(),
                        "balance request failed; retrying"
                    );
                }
                core.balances_asked &= !bit;
            }
            ReqKind::ListenKey => {
                let key = if ok {
                    kimp_gateways::binance::rest::listen_key(orders.body(&b))
                } else {
                    Err(kimp_gateways::codec::CodecError::Missing("listenKey"))
                };
                if ok && key.is_err() {
                    orders.stats.bad_responses += 1;
                }
                if let Ok(key) = key
                    && let Ok(t) = feeds.binance_ws.with_path(&format!(
                        "/private/ws?listenKey={key}&events=ORDER_TRADE_UPDATE/ACCOUNT_UPDATE"
                    ))
                    && let Ok(conn) =
                        WsConn::new(t.endpoint, t.addr, t.tls, BINANCE_USER, WsConfig::default())
                {
                    feeds.binance_user = Some(conn);
                    feeds.user_key_due = None;
                    feeds.user_key_retry.succeeded();
                    let _ = registry;
                } else {
                    // No user stream without a key: ask again after a back-off.
                    let r = Refusal::from_status(b.status, b.retry_after_s);
                    feeds.user_key_due = Some(feeds.user_key_retry.failed(now, r));
                }
            }
            // A keep-alive the venue refuses means the key is gone.
            ReqKind::ListenKeyKeepAlive if !ok => feeds.user_key_due = Some(now),
            _ => {}
        }
    }
    orders.clear_bodies();
}

/// How a failed balance request is handled: the venue's own error classes.
fn balance_failure(b: &super::orders::Body, body: &[u8]) -> Failure {
    if b.status == 0 {
        return Failure::Retry(Refusal::Failed);
    }
    match b.venue {
        Venue::Upbit => kimp_gateways::upbit::rest::classify(b.status, body, b.retry_after_s),
        _ => kimp_gateways::binance::rest::classify(b.status, body, b.retry_after_s),
    }
}
