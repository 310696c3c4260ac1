//! Shared state of a running simulator, the clock, the broadcast hub and the accept
//! loops (one listener per venue serving REST and WebSockets on the same address).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use rustls::ServerConfig;

use super::config::{ApiKeyPair, SimConfig};
use super::events::Out;
use super::faults::FaultKind;
use super::http::{self, Conn, ReadOutcome, Request, Response};
use super::rng::Rng;
use super::supervise::{self, Supervisor, checkpoint};
use super::world::World;
use super::{binance_rest, binance_ws, upbit_rest, upbit_ws};

/// Wall clock, ms since the epoch.
pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Simulated time: `start_ms` plus real elapsed time × speed.
#[derive(Debug)]
pub struct SimClock {
    started: Instant,
    /// Simulated epoch at start.
    pub start_ms: u64,
    /// Speed.
    pub speed: f64,
}

impl SimClock {
    /// A clock starting now.
    pub fn new(start_ms: u64, speed: f64) -> Self {
        Self { started: Instant::now(), start_ms, speed }
    }

    /// Simulated ms since start.
    pub fn elapsed_ms(&self) -> u64 {
        (self.started.elapsed().as_secs_f64() * 1_000.0 * self.speed) as u64
    }

    /// Simulated now.
    pub fn now_ms(&self) -> u64 {
        self.start_ms + self.elapsed_ms()
    }
}

/// Live counters (see [`SimStats`]).
#[derive(Debug, Default)]
pub struct Counters {
    /// WebSocket connections accepted.
    pub ws_connections: AtomicU64,
    /// WebSocket messages sent.
    pub ws_sent: AtomicU64,
    /// Messages dropped by `drop_messages`.
    pub ws_dropped: AtomicU64,
    /// Messages duplicated.
    pub ws_duplicated: AtomicU64,
    /// Messages reordered.
    pub ws_reordered: AtomicU64,
    /// Connections closed by `disconnect`.
    pub ws_disconnects: AtomicU64,
    /// Stalls started.
    pub ws_stalls: AtomicU64,
    /// REST requests.
    pub rest_requests: AtomicU64,
    /// 429 answers.
    pub rest_429: AtomicU64,
    /// Responses delayed by `latency_spike`.
    pub latency_spikes: AtomicU64,
    /// Responses dropped after execution (`ambiguous_fill`).
    pub ambiguous: AtomicU64,
    /// Connections refused by `exchange_maintenance`.
    pub maintenance_refusals: AtomicU64,
    /// Orders accepted (both venues).
    pub orders: AtomicU64,
    /// Bad frames injected by `bad_input`, per `bad_input::Stream`.
    pub bad_frames: [AtomicU64; 5],
    /// Bad frames injected, per `bad_input::Variant`.
    pub bad_variants: [AtomicU64; 13],
}

/// A snapshot of the counters and of the world's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// WebSocket connections accepted.
    pub ws_connections: u64,
    /// WebSocket messages sent.
    pub ws_sent: u64,
    /// Dropped.
    pub ws_dropped: u64,
    /// Duplicated.
    pub ws_duplicated: u64,
    /// Reordered.
    pub ws_reordered: u64,
    /// Disconnects injected.
    pub ws_disconnects: u64,
    /// Stalls injected.
    pub ws_stalls: u64,
    /// REST requests.
    pub rest_requests: u64,
    /// 429s.
    pub rest_429: u64,
    /// Latency spikes.
    pub latency_spikes: u64,
    /// Ambiguous outcomes.
    pub ambiguous: u64,
    /// Maintenance refusals.
    pub maintenance_refusals: u64,
    /// Orders accepted.
    pub orders: u64,
    /// Market steps run.
    pub steps: u64,
    /// Depth events lost at the source.
    pub depth_gaps: u64,
    /// Orders refused by faults.
    pub fault_rejections: u64,
    /// Funding settlements.
    pub fundings: u64,
    /// Bad frames injected by `bad_input`, per `bad_input::Stream` (Upbit MD, Upbit
    /// private, Binance MD, Binance user, REST).
    pub bad_frames: [u64; 5],
    /// Bad frames injected, per `bad_input::Variant`.
    pub bad_variants: [u64; 13],
    /// Old books or depth events repeated by `freeze`.
    pub frozen_repeats: u64,
}

/// Broadcast of published events to every WebSocket session of a venue.
#[derive(Debug, Default)]
pub struct Hub {
    subs: Mutex<Vec<(bool, Sender<Arc<Out>>)>>,
    /// Events not delivered because a session's queue was full.
    pub overflow: AtomicU64,
}

impl Hub {
    /// A new subscriber queue for Upbit (`true`) or Binance sessions.
    pub fn subscribe(&self, upbit: bool) -> Receiver<Arc<Out>> {
        let (tx, rx) = crossbeam_channel::bounded(65_536);
        lock(&self.subs).push((upbit, tx));
        rx
    }

    /// Sends events to the sessions of their venue.
    pub fn publish(&self, outs: Vec<Out>) {
        if outs.is_empty() {
            return;
        }
        let mut subs = lock(&self.subs);
        for o in outs {
            let upbit = match &o {
                Out::Md(m) => m.is_upbit(),
                Out::UpbitPrivate { .. } => true,
                Out::BinanceUser { .. } => false,
            };
            let o = Arc::new(o);
            subs.retain(|(u, tx)| {
                if *u != upbit {
                    return true;
                }
                match tx.try_send(o.clone()) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_)) => {
                        self.overflow.fetch_add(1, Ordering::Relaxed);
                        true
                    }
                    Err(TrySendError::Disconnected(_)) => false,
                }
            });
        }
    }
}

/// Locks a mutex, recovering from poisoning: after a thread panics the supervisor stops the
/// simulator, and the shutdown path and the failure report must still get the lock.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything the threads share.
#[derive(Debug)]
pub struct Shared {
    /// Configuration.
    pub cfg: SimConfig,
    /// Accounts (index = account number in the world).
    pub keys: Vec<ApiKeyPair>,
    /// The world.
    pub world: Mutex<World>,
    /// Broadcast.
    pub hub: Hub,
    /// Clock.
    pub clock: SimClock,
    /// Set to stop every thread.
    pub stop: AtomicBool,
    /// Counters.
    pub counters: Counters,
    /// Venue in maintenance: Upbit.
    pub upbit_down: AtomicBool,
    /// Venue in maintenance: Binance.
    pub binance_down: AtomicBool,
    /// Bumped when listen keys expire (`listen_key_expiry`): private sessions close.
    pub private_epoch: AtomicU64,
    /// Rate-limit windows.
    pub rates: Mutex<super::limits::RateState>,
    /// Fault randomness for the socket layer.
    pub frng: Mutex<Rng>,
    /// The first thread that panicked (it stops the simulator).
    pub supervisor: Supervisor,
}

impl Shared {
    /// Spawns a supervised simulator thread: its panic is recorded and stops everything.
    pub fn spawn(
        self: &Arc<Self>,
        name: &str,
        f: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<thread::JoinHandle<()>> {
        let sh = self.clone();
        supervise::spawn(name, move |e| sh.supervisor.fail(e, &sh.stop), f)
    }

    /// Simulated now.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Simulated ms since start (fault windows).
    pub fn elapsed_ms(&self) -> u64 {
        self.clock.elapsed_ms()
    }

    /// The server's wall clock as a client sees it (with `clock_skew`).
    pub fn server_time_ms(&self) -> u64 {
        let skew = self
            .cfg
            .faults
            .active(FaultKind::ClockSkew, false, self.elapsed_ms())
            .or_else(|| self.cfg.faults.active(FaultKind::ClockSkew, true, self.elapsed_ms()))
            .map(|s| s.value as i64)
            .unwrap_or(0);
        (wall_ms() as i64 + skew).max(0) as u64
    }

    /// Account index of an API key.
    pub fn account_of(&self, key: &str) -> Option<usize> {
        self.keys.iter().position(|k| k.key == key)
    }

    /// A seeded coin flip for socket-level faults.
    pub fn chance(&self, p: f64) -> bool {
        p > 0.0 && lock(&self.frng).chance(p)
    }

    /// A seeded integer in `[lo, hi]`.
    pub fn range(&self, lo: u64, hi: u64) -> u64 {
        lock(&self.frng).range(lo, hi)
    }

    /// A bad copy of `original` for `stream` (`bad_input`), counted; a variant that does
    /// not apply to this message falls back to invalid JSON.
    pub fn bad_frame(
        &self,
        stream: super::bad_input::Stream,
        original: &[u8],
    ) -> super::bad_input::BadFrame {
        use super::bad_input::{BadFrame, Variant, corrupt};
        let v = Variant::ALL[self.range(0, Variant::ALL.len() as u64 - 1) as usize];
        let (v, b) = match corrupt(stream, original, v) {
            Some(b) => (v, b),
            None => (
                Variant::InvalidJson,
                corrupt(stream, original, Variant::InvalidJson)
                    .unwrap_or(BadFrame { bytes: b"{\"".to_vec(), binary: false }),
            ),
        };
        self.counters.bad_frames[stream.idx()].fetch_add(1, Ordering::Relaxed);
        let vi = Variant::ALL.iter().position(|x| *x == v).unwrap_or(0);
        self.counters.bad_variants[vi].fetch_add(1, Ordering::Relaxed);
        b
    }

    /// True once shutdown was requested.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// True while a venue is in maintenance.
    pub fn venue_down(&self, upbit: bool) -> bool {
        if upbit {
            self.upbit_down.load(Ordering::Relaxed)
        } else {
            self.binance_down.load(Ordering::Relaxed)
        }
    }

    /// Publishes events.
    pub fn publish(&self, outs: Vec<Out>) {
        self.hub.publish(outs);
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimStats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let w = lock(&self.world).stats;
        SimStats {
            ws_connections: g(&c.ws_connections),
            ws_sent: g(&c.ws_sent),
            ws_dropped: g(&c.ws_dropped),
            ws_duplicated: g(&c.ws_duplicated),
            ws_reordered: g(&c.ws_reordered),
            ws_disconnects: g(&c.ws_disconnects),
            ws_stalls: g(&c.ws_stalls),
            rest_requests: g(&c.rest_requests),
            rest_429: g(&c.rest_429),
            latency_spikes: g(&c.latency_spikes),
            ambiguous: g(&c.ambiguous),
            maintenance_refusals: g(&c.maintenance_refusals),
            orders: g(&c.orders),
            steps: w.steps,
            depth_gaps: w.depth_gaps,
            fault_rejections: w.fault_rejections,
            fundings: w.fundings,
            bad_frames: c.bad_frames.each_ref().map(g),
            bad_variants: c.bad_variants.each_ref().map(g),
            frozen_repeats: w.frozen_repeats,
        }
    }
}

/// Runs the market clock until stop: one world step per cadence step of simulated time.
pub fn clock_loop(sh: Arc<Shared>) {
    let step = sh.cfg.step_ms;
    let mut next = lock(&sh.world).now_ms + step;
    let mut expired_keys = false;
    while !sh.stopping() {
        let now = sh.now_ms();
        let mut n = 0;
        while next <= now && n < 10_000 {
            checkpoint("sim-clock");
            let outs = lock(&sh.world).step(next);
            sh.publish(outs);
            next += step;
            n += 1;
        }
        let el = sh.elapsed_ms();
        for upbit in [true, false] {
            let down = sh.cfg.faults.active(FaultKind::ExchangeMaintenance, upbit, el).is_some();
            let flag = if upbit { &sh.upbit_down } else { &sh.binance_down };
            flag.store(down, Ordering::Relaxed);
        }
        if !expired_keys && sh.cfg.faults.active(FaultKind::ListenKeyExpiry, false, el).is_some() {
            expired_keys = true;
            sh.private_epoch.fetch_add(1, Ordering::Relaxed);
            lock(&sh.world).binance.listen_keys.clear();
        }
        let wait_ms = ((next.saturating_sub(sh.now_ms())) as f64 / sh.clock.speed).clamp(1.0, 20.0);
        thread::sleep(Duration::from_millis(wait_ms as u64));
    }
}

/// Accept loop of one venue. Maintenance closes the listener and re-binds it afterwards,
/// so clients see connection refused for the period.
pub fn accept_loop(
    sh: Arc<Shared>,
    upbit: bool,
    addr: SocketAddr,
    first: TcpListener,
    tls: Option<Arc<ServerConfig>>,
) {
    let mut listener = Some(first);
    while !sh.stopping() {
        if sh.venue_down(upbit) {
            if listener.take().is_some() {
                sh.counters.maintenance_refusals.fetch_add(1, Ordering::Relaxed);
            }
            thread::sleep(Duration::from_millis(5));
            continue;
        }
        let Some(l) = listener.as_ref() else {
            match TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|_| l)) {
                Ok(l) => listener = Some(l),
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
            continue;
        };
        match l.accept() {
            Ok((tcp, _)) => {
                checkpoint(if upbit { "sim-upbit" } else { "sim-binance" });
                let name = if upbit { "sim-upbit-conn" } else { "sim-binance-conn" };
                let (s, tls) = (sh.clone(), tls.clone());
                // A thread that cannot be spawned drops the connection (the client retries).
                let _ = sh.spawn(name, move || serve_conn(s, upbit, tcp, tls));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(2))
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn serve_conn(sh: Arc<Shared>, upbit: bool, tcp: TcpStream, tls: Option<Arc<ServerConfig>>) {
    if tcp.set_nonblocking(false).is_err()
        || tcp.set_read_timeout(Some(Duration::from_millis(50))).is_err()
    {
        return;
    }
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(mut conn) = Conn::new(tcp, tls.as_ref()) else { return };
    let mut buf = Vec::new();
    let keep_going = || !sh.stopping() && !sh.venue_down(upbit);
    loop {
        let req =
            match http::read_request(&mut conn, &mut buf, Duration::from_secs(120), &keep_going) {
                ReadOutcome::Request(r) => r,
                ReadOutcome::Closed => return,
                ReadOutcome::Malformed => {
                    let _ = http::write_response(&mut conn, &Response::json(400, "{}"), false);
                    return;
                }
            };
        checkpoint(if upbit { "sim-upbit-conn" } else { "sim-binance-conn" });
        if req.is_upgrade() {
            let leftover = std::mem::take(&mut buf);
            if upbit {
                upbit_ws::serve(&sh, conn, &req, leftover);
            } else {
                binance_ws::serve(&sh, conn, &req, leftover);
            }
            return;
        }
        sh.counters.rest_requests.fetch_add(1, Ordering::Relaxed);
        let close = req.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let reply =
            if upbit { upbit_rest::handle(&sh, &req) } else { binance_rest::handle(&sh, &req) };
        let Some(resp) = reply else {
            // An executed order whose answer is lost: close without a response.
            sh.counters.ambiguous.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let resp = match sh.cfg.faults.active(FaultKind::BadInput, upbit, sh.elapsed_ms()) {
            Some(sc) if sh.chance(if sc.value > 0.0 { sc.value.min(1.0) } else { sc.p }) => {
                let b = sh.bad_frame(super::bad_input::Stream::Rest, resp.body.as_bytes());
                Response { body: String::from_utf8_lossy(&b.bytes).into_owned(), ..resp }
            }
            _ => resp,
        };
        delay_response(&sh, upbit);
        if http::write_response(&mut conn, &resp, !close).is_err() || close {
            return;
        }
    }
}

/// Base latency plus `latency_spike`.
fn delay_response(sh: &Shared, upbit: bool) {
    let mut ms = sh.cfg.rest_latency_ms;
    if let Some(s) = sh.cfg.faults.active(FaultKind::LatencySpike, upbit, sh.elapsed_ms())
        && sh.chance(s.p)
    {
        ms += sh.range(s.ms.0, s.ms.1);
        sh.counters.latency_spikes.fetch_add(1, Ordering::Relaxed);
    }
    if ms > 0 {
        thread::sleep(Duration::from_millis(ms));
    }
}

/// Refuses a WebSocket upgrade with an HTTP error.
pub fn refuse_upgrade(mut conn: Conn, resp: Response) {
    let _ = http::write_response(&mut conn, &resp, false);
}

/// A request that reached a venue but matched no route.
pub fn not_found(req: &Request) -> Response {
    Response::json(
        404,
        format!(
            "{{\"error\":{{\"name\":\"not_found\",\"message\":\"{} {} not found\"}}}}",
            req.method,
            req.path.replace('"', "")
        ),
    )
}
