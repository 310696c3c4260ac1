//! The order path: engine actions → encoded, signed REST requests on pre-opened keep-alive
//! connections; REST completions → engine events.
//!
//! Completions are not fed to the engine inside the connection's callback (that would
//! need the same pool to send the engine's next orders): order reports are parsed into a
//! pre-allocated queue of `'static` events, other bodies are copied into a reusable arena,
//! and the loop feeds both right after the poll.
//!
//! Knight Capital's missing control lives here: every order that reaches the wire is
//! counted, and a `Place` the engine did not journal first is impossible by construction
//! (the loop executes `Journal` before `Place`, in outbox order) — `wire_orders` is checked
//! against the engine's `intents × 2` by the loop every turn.

use kimp_core::event::{Event, OrderEvent, OrderEventKind, RejectReason};
use kimp_core::instrument::{InstrumentId, Venue};
use kimp_core::order::{ClientId, OrderRequest};
use kimp_core::units::Nanos;
use kimp_gateways::binance::encode::BinanceEncoder;
use kimp_gateways::binance::rest::BinanceRestParser;
use kimp_gateways::rest::OrderRequestKind;
use kimp_gateways::transport::{Completion, HttpPool, Refusal, Retry, SendError};
use kimp_gateways::upbit::encode::UpbitEncoder;
use kimp_gateways::upbit::rest::UpbitRestParser;
use mio::{Registry, Token};

/// Most requests in flight at once.
const PENDING_CAP: usize = 256;
/// Bytes of non-order response bodies kept per turn (depth snapshots are the big ones).
const ARENA_BYTES: usize = 8 << 20;

/// What a request was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReqKind {
    /// New order.
    Place,
    /// Query by client id.
    Query,
    /// Cancel by client id.
    Cancel,
    /// Binance depth snapshot.
    Snapshot,
    /// Upbit `GET /v1/accounts`.
    UpbitAccounts,
    /// Binance account (balances and positions).
    BinanceAccount,
    /// Binance `POST /fapi/v1/listenKey`.
    ListenKey,
    /// Binance `PUT /fapi/v1/listenKey` (keep-alive).
    ListenKeyKeepAlive,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    kind: ReqKind,
    venue: Venue,
    cl_id: Option<ClientId>,
    inst: InstrumentId,
}

/// A non-order response, copied out of the connection's buffer.
#[derive(Clone, Copy, Debug)]
pub struct Body {
    /// What the request was.
    pub kind: ReqKind,
    /// Venue.
    pub venue: Venue,
    /// Instrument (snapshots).
    pub inst: InstrumentId,
    /// HTTP status (0 when the request failed or timed out).
    pub status: u16,
    /// `Retry-After` in seconds, when the venue sent one.
    pub retry_after_s: Option<u64>,
    start: usize,
    len: usize,
}

/// Counters of the order path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrderPathStats {
    /// New orders written to a socket (the Knight counter).
    pub wire_orders: u64,
    /// Queries sent.
    pub queries: u64,
    /// Cancels sent.
    pub cancels: u64,
    /// Requests that could not be sent (no idle connection, encoding failure).
    pub not_sent: u64,
    /// Requests whose outcome is unknown (timeout, failure after sending).
    pub ambiguous: u64,
    /// Responses that could not be parsed.
    pub bad_responses: u64,
    /// Responses for requests we no longer track.
    pub stray: u64,
    /// Rate-limit answers (429/418).
    pub rate_limited: u64,
}

/// Pools, encoders and parsers of both venues.
#[derive(Debug)]
pub struct OrderPath {
    /// Upbit REST connections.
    pub upbit: HttpPool,
    /// Binance REST connections.
    pub binance: HttpPool,
    upbit_enc: UpbitEncoder,
    binance_enc: BinanceEncoder,
    upbit_rest: UpbitRestParser,
    binance_rest: BinanceRestParser,
    pending: Vec<Option<Pending>>,
    /// Order events parsed from completions, for the loop to feed.
    pub events: Vec<Event<'static>>,
    /// Other bodies, for the loop to handle.
    pub bodies: Vec<Body>,
    arena: Vec<u8>,
    /// Orders whose `Place` was answered (the loop follows them up with queries while
    /// they stay open: Upbit reports IOC fills only on a query or its private stream).
    pub answered: Vec<(ClientId, InstrumentId, Venue)>,
    /// Counters.
    pub stats: OrderPathStats,
    deadline: Nanos,
    clock: super::clock::Clock,
    /// Per venue: no request before this time (a 429/418 `Retry-After`, or Upbit's
    /// `Remaining-Req: sec=0`), so a rate limit never turns into a ban.
    blocked_until: [Nanos; Venue::COUNT],
    /// Per venue: when a failed account (balance) request may be asked again, on the
    /// shared back-off, so a refusing venue never sees a storm.
    account_retry: [Retry; Venue::COUNT],
    /// Binance server time minus our wall clock, ms (measured at start-up): signed
    /// timestamps use the venue's clock, so a drifting host clock does not cause -1021.
    pub binance_offset_ms: i64,
}

impl OrderPath {
    /// Builds the path; `deadline` is how long an order request may take before its
    /// outcome counts as unknown.
    pub fn new(
        upbit: HttpPool,
        binance: HttpPool,
        upbit_enc: UpbitEncoder,
        binance_enc: BinanceEncoder,
        deadline: Nanos,
        clock: super::clock::Clock,
    ) -> Self {
        Self {
            upbit,
            binance,
            upbit_enc,
            binance_enc,
            upbit_rest: UpbitRestParser::new(),
            binance_rest: BinanceRestParser::new(),
            pending: vec![None; PENDING_CAP],
            events: Vec::with_capacity(256),
            bodies: Vec::with_capacity(64),
            arena: Vec::with_capacity(ARENA_BYTES),
            answered: Vec::with_capacity(256),
            stats: OrderPathStats::default(),
            deadline,
            clock,
            blocked_until: [Nanos(0); Venue::COUNT],
            account_retry: std::array::from_fn(|_| Retry::new(Retry::DEFAULT)),
            binance_offset_ms: 0,
        }
    }

    /// True when `token` is one of the REST connections.
    pub fn owns(&self, token: Token) -> bool {
        self.upbit.owns(token) || self.binance.owns(token)
    }

    /// The body bytes of a copied response.
    pub fn body(&self, b: &Body) -> &[u8] {
        &self.arena[b.start..b.start + b.len]
    }

    /// Forgets the bodies handled this turn.
    pub fn clear_bodies(&mut self) {
        self.bodies.clear();
        self.arena.clear();
    }

    fn order_event(&mut self, cl_id: ClientId, now: Nanos, kind: OrderEventKind) {
        if self.events.len() < self.events.capacity() {
            self.events.push(Event::Order(OrderEvent { cl_id, exch_ts: now, kind }));
        }
    }

    /// Encodes, signs and sends a new order. If it cannot leave the process, the engine
    /// hears a gateway reject; if it may have left, an unknown outcome (never a resend).
    pub fn place(&mut self, now: Nanos, wall_ms: u64, venue: Venue, req: &OrderRequest) {
        if now < self.blocked_until[venue.idx()] {
            self.stats.rate_limited += 1;
            self.order_event(req.cl_id, now, OrderEventKind::Reject(RejectReason::RateLimited));
            return;
        }
        let wall_ms = self.venue_ms(venue, wall_ms);
        let p = Pending { kind: ReqKind::Place, venue, cl_id: Some(req.cl_id), inst: req.inst };
        let sent = match venue {
            Venue::Upbit => self
                .upbit_enc
                .place(req)
                .map(|b| send_bytes(&mut self.upbit, &mut self.pending, now, p, self.deadline, b)),
            _ => self.binance_enc.place(req, wall_ms).map(|b| {
                send_bytes(&mut self.binance, &mut self.pending, now, p, self.deadline, b)
            }),
        };
        let Ok(sent) = sent else {
            self.stats.not_sent += 1;
            self.order_event(req.cl_id, now, OrderEventKind::Reject(RejectReason::Gateway));
            return;
        };
        match sent {
            Ok(()) => self.stats.wire_orders += 1,
            Err(SendError::Ambiguous(_)) => {
                self.stats.wire_orders += 1;
                self.stats.ambiguous += 1;
                self.order_event(req.cl_id, now, OrderEventKind::Unknown);
            }
            Err(_) => {
                self.stats.not_sent += 1;
                self.order_event(req.cl_id, now, OrderEventKind::Reject(RejectReason::Gateway));
            }
        }
    }

    /// Wall-clock ms as the venue counts it.
    fn venue_ms(&self, venue: Venue, wall_ms: u64) -> u64 {
        match venue {
            Venue::Upbit => wall_ms,
            _ => wall_ms.saturating_add_signed(self.binance_offset_ms),
        }
    }

    /// True when requests to `venue` must wait (rate limited).
    pub fn blocked(&self, venue: Venue, now: Nanos) -> bool {
        now < self.blocked_until[venue.idx()]
    }

    /// Queries an order by client id (a failure is harmless: the engine asks again).
    pub fn query(
        &mut self,
        now: Nanos,
        wall_ms: u64,
        venue: Venue,
        cl_id: ClientId,
        inst: InstrumentId,
    ) {
        if self.by_id(ReqKind::Query, now, wall_ms, venue, cl_id, inst) {
            self.stats.queries += 1;
        }
    }

    /// Cancels an order by client id.
    pub fn cancel(
        &mut self,
        now: Nanos,
        wall_ms: u64,
        venue: Venue,
        cl_id: ClientId,
        inst: InstrumentId,
    ) {
        if self.by_id(ReqKind::Cancel, now, wall_ms, venue, cl_id, inst) {
            self.stats.cancels += 1;
        }
    }

    /// Sends a query or a cancel by client id; false (and counted) when it did not go out.
    fn by_id(
        &mut self,
        kind: ReqKind,
        now: Nanos,
        wall_ms: u64,
        venue: Venue,
        cl_id: ClientId,
        inst: InstrumentId,
    ) -> bool {
        if self.blocked(venue, now) {
            return false;
        }
        let wall_ms = self.venue_ms(venue, wall_ms);
        let p = Pending { kind, venue, cl_id: Some(cl_id), inst };
        let cancel = kind == ReqKind::Cancel;
        let sent = match venue {
            Venue::Upbit => {
                let b =
                    if cancel { self.upbit_enc.cancel(cl_id) } else { self.upbit_enc.query(cl_id) };
                send_bytes(&mut self.upbit, &mut self.pending, now, p, self.deadline, b)
            }
            _ => {
                let b = if cancel {
                    self.binance_enc.cancel(inst, cl_id, wall_ms)
                } else {
                    self.binance_enc.query(inst, cl_id, wall_ms)
                };
                match b {
                    Ok(b) => {
                        send_bytes(&mut self.binance, &mut self.pending, now, p, self.deadline, b)
                    }
                    Err(_) => Err(SendError::NoIdle),
                }
            }
        };
        if sent.is_err() {
            self.stats.not_sent += 1;
        }
        sent.is_ok()
    }

    /// Requests a Binance depth snapshot for `inst`.
    /// False when it did not go out (rate-limit wait, no idle connection).
    pub fn snapshot(&mut self, now: Nanos, inst: InstrumentId) -> bool {
        if self.blocked(Venue::Binance, now) {
            return false;
        }
        let p = Pending { kind: ReqKind::Snapshot, venue: Venue::Binance, cl_id: None, inst };
        match self.binance_enc.depth_snapshot(inst, 1_000) {
            Ok(b) => {
                send_bytes(&mut self.binance, &mut self.pending, now, p, Nanos::from_ms(10_000), b)
                    .is_ok()
            }
            Err(_) => false,
        }
    }

    /// Requests Upbit balances (`GET /v1/accounts`).
    /// False when it did not go out (rate-limit or back-off wait, no idle connection).
    pub fn upbit_accounts(&mut self, now: Nanos) -> bool {
        if self.blocked(Venue::Upbit, now) || !self.account_retry[Venue::Upbit.idx()].due(now) {
            return false;
        }
        let p = Pending {
            kind: ReqKind::UpbitAccounts,
            venue: Venue::Upbit,
            cl_id: None,
            inst: InstrumentId(0),
        };
        let b = self.upbit_enc.accounts();
        send_bytes(&mut self.upbit, &mut self.pending, now, p, Nanos::from_ms(10_000), b).is_ok()
    }

    /// Requests the Binance account (USDT balance and positions).
    /// False when it did not go out (rate-limit or back-off wait, no idle connection).
    pub fn binance_account(&mut self, now: Nanos, wall_ms: u64) -> bool {
        if self.blocked(Venue::Binance, now) || !self.account_retry[Venue::Binance.idx()].due(now) {
            return false;
        }
        let p = Pending {
            kind: ReqKind::BinanceAccount,
            venue: Venue::Binance,
            cl_id: None,
            inst: InstrumentId(0),
        };
        let b = self.binance_enc.account(wall_ms.saturating_add_signed(self.binance_offset_ms));
        send_bytes(&mut self.binance, &mut self.pending, now, p, Nanos::from_ms(10_000), b).is_ok()
    }

    /// Records a failed account request of `venue`: it is not asked again before the
    /// returned time. Also returns the failures in a row.
    pub fn account_failed(&mut self, venue: Venue, now: Nanos, refusal: Refusal) -> (Nanos, u32) {
        let r = &mut self.account_retry[venue.idx()];
        (r.failed(now, refusal), r.failures())
    }

    /// Records an answered account request of `venue` (the back-off starts over).
    pub fn account_answered(&mut self, venue: Venue) {
        self.account_retry[venue.idx()].succeeded();
    }

    /// Creates (`POST`) or extends (`PUT`) the Binance user-data listen key.
    /// False when it did not go out (rate-limit wait, no idle connection).
    pub fn listen_key(&mut self, now: Nanos, keep_alive: bool) -> bool {
        if self.blocked(Venue::Binance, now) {
            return false;
        }
        let (method, kind) = if keep_alive {
            ("PUT", ReqKind::ListenKeyKeepAlive)
        } else {
            ("POST", ReqKind::ListenKey)
        };
        let p = Pending { kind, venue: Venue::Binance, cl_id: None, inst: InstrumentId(0) };
        let b = self.binance_enc.listen_key(method);
        send_bytes(&mut self.binance, &mut self.pending, now, p, Nanos::from_ms(10_000), b).is_ok()
    }

    /// Handles a readiness event for a REST connection.
    pub fn poll(&mut self, token: Token, now: Nanos) {
        self.drive(Drive::Ready(token), now);
    }

    /// Timers of every REST connection (reconnects, deadlines → unknown outcomes).
    pub fn tick(&mut self, registry: &Registry, now: Nanos) {
        self.drive(Drive::Timers(registry), now);
    }

    /// Runs one pool (readiness) or both (timers), turning completions into events and
    /// bodies; the fields are split so the callback can fill them while a pool is borrowed.
    fn drive(&mut self, what: Drive<'_>, now: Nanos) {
        let Self {
            upbit,
            binance,
            pending,
            arena,
            upbit_rest,
            binance_rest,
            events,
            bodies,
            answered,
            stats,
            blocked_until,
            clock,
            ..
        } = self;
        let wall = clock.wall_ns(now);
        let mut on_done = |c: Completion<'_>| {
            let sink = Sink {
                pending,
                arena,
                upbit_rest,
                binance_rest,
                events,
                bodies,
                answered,
                stats,
                blocked: blocked_until,
            };
            complete(c, wall, now, sink);
        };
        match what {
            Drive::Ready(token) => {
                let pool = if upbit.owns(token) { upbit } else { binance };
                pool.poll(token, now, &mut on_done);
            }
            Drive::Timers(registry) => {
                upbit.tick(registry, now, &mut on_done);
                binance.tick(registry, now, &mut on_done);
            }
        }
    }
}

/// What [`OrderPath::drive`] runs.
enum Drive<'r> {
    /// The pool owning this token became ready.
    Ready(Token),
    /// Every connection's timers.
    Timers(&'r Registry),
}

/// Where completions go (borrowed fields of [`OrderPath`]).
struct Sink<'a> {
    pending: &'a mut [Option<Pending>],
    arena: &'a mut Vec<u8>,
    upbit_rest: &'a mut UpbitRestParser,
    binance_rest: &'a mut BinanceRestParser,
    events: &'a mut Vec<Event<'static>>,
    bodies: &'a mut Vec<Body>,
    answered: &'a mut Vec<(ClientId, InstrumentId, Venue)>,
    stats: &'a mut OrderPathStats,
    blocked: &'a mut [Nanos; Venue::COUNT],
}

/// Sends pre-encoded `bytes` for `p` on `pool`, tracking it under a free tag.
fn send_bytes(
    pool: &mut HttpPool,
    pending: &mut [Option<Pending>],
    now: Nanos,
    p: Pending,
    deadline: Nanos,
    bytes: &[u8],
) -> Result<(), SendError> {
    let Some(i) = pending.iter().position(Option::is_none) else {
        return Err(SendError::NoIdle);
    };
    pending[i] = Some(p);
    match pool.send(now, i as u64, bytes, now.plus(deadline)) {
        Ok(_) => Ok(()),
        Err(e) => {
            pending[i] = None;
            Err(e)
        }
    }
}

/// Turns one completion into order events or a copied body. `now` is wall time here (it
/// stamps events whose body carries no venue time); `mono` is the loop's clock.
fn complete(c: Completion<'_>, now: Nanos, mono: Nanos, sink: Sink<'_>) {
    let Sink { pending, arena, upbit_rest, binance_rest, events, bodies, answered, stats, blocked } =
        sink;
    let tag = match c {
        Completion::Response { tag, .. }
        | Completion::TimedOut { tag }
        | Completion::Failed { tag, .. } => tag,
    };
    let Some(p) = pending.get_mut(tag as usize).and_then(Option::take) else {
        stats.stray += 1;
        return;
    };
    if let Completion::Response { response, .. } = c {
        // Back off before the venue has to: 429/418 with Retry-After (1 s for a 429 when
        // absent, a 418 never less than the shortest ban), and Upbit's `Remaining-Req: ... sec=0` (the group's second is used up).
        let wait = match Refusal::from_status(response.status, response.retry_after_s) {
            Refusal::Failed if response.remaining_req_sec() == Some(0) => {
                Some(Refusal::RATE_LIMITED_WAIT)
            }
            Refusal::Failed => None,
            r => Some(r.venue_wait()),
        };
        if let Some(wait) = wait {
            let until = mono.plus(wait);
            let b = &mut blocked[p.venue.idx()];
            *b = (*b).max(until);
        }
    }
    let push = |events: &mut Vec<Event<'static>>, cl_id, kind| {
        if events.len() < events.capacity() {
            events.push(Event::Order(OrderEvent { cl_id, exch_ts: now, kind }));
        }
    };
    match (c, p.cl_id) {
        (Completion::Response { response, .. }, Some(cl_id)) => {
            if matches!(response.status, 429 | 418) {
                stats.rate_limited += 1;
            }
            let kind = match p.kind {
                ReqKind::Place => OrderRequestKind::Place,
                ReqKind::Cancel => OrderRequestKind::Cancel,
                _ => OrderRequestKind::Query,
            };
            let parsed = match p.venue {
                Venue::Upbit => {
                    upbit_rest.order_reply(kind, cl_id, response.status, response.body, now)
                }
                _ => binance_rest.order_reply(kind, cl_id, response.status, response.body, now),
            };
            if p.kind == ReqKind::Place && answered.len() < answered.capacity() {
                answered.push((cl_id, p.inst, p.venue));
            }
            match parsed {
                Ok(evs) => {
                    for e in evs {
                        if events.len() < events.capacity() {
                            events.push(*e);
                        }
                    }
                }
                Err(_) => {
                    stats.bad_responses += 1;
                    // A new order with an unreadable answer may or may not exist.
                    if p.kind == ReqKind::Place {
                        push(events, cl_id, OrderEventKind::Unknown);
                    }
                }
            }
        }
        (Completion::TimedOut { .. }, Some(cl_id))
        | (Completion::Failed { sent: true, .. }, Some(cl_id)) => {
            stats.ambiguous += 1;
            if p.kind == ReqKind::Place {
                push(events, cl_id, OrderEventKind::Unknown);
            }
        }
        (Completion::Failed { sent: false, .. }, Some(cl_id)) => {
            stats.not_sent += 1;
            if p.kind == ReqKind::Place {
                push(events, cl_id, OrderEventKind::Reject(RejectReason::Gateway));
            }
        }
        (Completion::Response { response, .. }, None) => {
            let start = arena.len();
            let fits = start + response.body.len() <= arena.capacity();
            if fits {
                arena.extend_from_slice(response.body);
            }
            if bodies.len() < bodies.capacity() {
                let len = if fits { response.body.len() } else { 0 };
                bodies.push(Body {
                    kind: p.kind,
                    venue: p.venue,
                    inst: p.inst,
                    status: response.status,
                    retry_after_s: response.retry_after_s,
                    start,
                    len,
                });
            }
        }
        (_, None) => {
            if bodies.len() < bodies.capacity() {
                bodies.push(Body {
                    kind: p.kind,
                    venue: p.venue,
                    inst: p.inst,
                    status: 0,
                    retry_after_s: None,
                    start: arena.len(),
                    len: 0,
                });
            }
        }
    }
}
