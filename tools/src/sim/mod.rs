//! The venue simulator: Upbit (KRW spot) and Binance (USDT-M futures) on loopback, with
//! the venues' own REST and WebSocket protocols, a seeded synthetic market (or recorded
//! data), a matching engine with fees, balances, positions and funding, and seeded fault
//! scenarios.
//!
//! In-process use (tests, `kimp demo`):
//!
//! ```no_run
//! use kimp::sim::{Simulator, config::SimConfig};
//! let sim = Simulator::start(SimConfig::default()).expect("start");
//! println!("{}", sim.urls.upbit_rest);   // http://127.0.0.1:<port>
//! sim.shutdown();
//! ```
//!
//! Layers: `market`, `book`, `world`, `upbit_venue`, `binance_venue`, `account` are pure
//! (seeded, time as an argument); `server`, `http`, `ws`, `*_rest`, `*_ws` and `replay`
//! are the socket layer around them.

pub mod account;
pub mod bad_input;
pub mod binance_rest;
pub mod binance_venue;
pub mod binance_ws;
pub mod book;
pub mod cli;
pub mod config;
pub mod events;
pub mod faults;
pub mod http;
pub mod json;
pub mod limits;
pub mod market;
pub mod replay;
pub mod rng;
pub mod server;
pub mod supervise;
pub mod upbit_rest;
pub mod upbit_venue;
pub mod upbit_ws;
pub mod world;
pub mod ws;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use config::SimConfig;
pub use server::SimStats;
use server::{Counters, Hub, Shared, SimClock, lock, wall_ms};
use world::World;

/// The base URLs of a running simulator (one address per venue, as the real venues have
/// one host each for REST and streams).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimUrls {
    /// Upbit REST base (`/v1/...`).
    pub upbit_rest: String,
    /// Upbit quotation WebSocket.
    pub upbit_ws: String,
    /// Upbit private WebSocket.
    pub upbit_private_ws: String,
    /// Binance REST base (`/fapi/v1/...`).
    pub binance_rest: String,
    /// Binance stream host (append `/public`, `/market`, `/private`, `/ws/...`, `/stream?...`).
    pub binance_ws: String,
}

impl SimUrls {
    fn new(upbit: SocketAddr, binance: SocketAddr, tls: bool) -> Self {
        let (h, w) = if tls { ("https", "wss") } else { ("http", "ws") };
        Self {
            upbit_rest: format!("{h}://{upbit}"),
            upbit_ws: format!("{w}://{upbit}/websocket/v1"),
            upbit_private_ws: format!("{w}://{upbit}/websocket/v1/private"),
            binance_rest: format!("{h}://{binance}"),
            binance_ws: format!("{w}://{binance}"),
        }
    }

    /// Machine-readable form (`--print-urls`).
    pub fn to_json(&self) -> String {
        let j = json::s;
        format!(
            "{{\"upbit_rest\":{},\"upbit_ws\":{},\"upbit_private_ws\":{},\"binance_rest\":{},\"binance_ws\":{},\"binance_ws_public\":{},\"binance_ws_market\":{},\"binance_ws_private\":{}}}",
            j(&self.upbit_rest),
            j(&self.upbit_ws),
            j(&self.upbit_private_ws),
            j(&self.binance_rest),
            j(&self.binance_ws),
            j(&format!("{}/public", self.binance_ws)),
            j(&format!("{}/market", self.binance_ws)),
            j(&format!("{}/private", self.binance_ws)),
        )
    }
}

/// A running simulator. Dropping it stops it.
#[derive(Debug)]
pub struct SimHandle {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// Upbit address.
    pub upbit_addr: SocketAddr,
    /// Binance address.
    pub binance_addr: SocketAddr,
    /// Base URLs.
    pub urls: SimUrls,
    cert: Option<(Vec<u8>, String)>,
}

impl SimHandle {
    /// Counters so far.
    pub fn stats(&self) -> SimStats {
        self.shared.stats()
    }

    /// Runs `f` on the world under its lock (inspection in tests and the demo).
    pub fn with_world<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        f(&mut lock(&self.shared.world))
    }

    /// The self-signed certificate (DER) clients must trust when TLS is on.
    pub fn tls_cert_der(&self) -> Option<&[u8]> {
        self.cert.as_ref().map(|c| c.0.as_slice())
    }

    /// The same certificate as PEM.
    pub fn tls_cert_pem(&self) -> Option<&str> {
        self.cert.as_ref().map(|c| c.1.as_str())
    }

    /// Simulated now, ms.
    pub fn now_ms(&self) -> u64 {
        self.shared.now_ms()
    }

    /// The first simulator thread that panicked, if any. A panic in any simulator thread
    /// (clock, accept loops, connections, replay) stops the simulator: callers that run
    /// it in-process poll this and stop too (`kimp sim` exits non-zero with it).
    pub fn failure(&self) -> Option<supervise::ThreadFailure> {
        self.shared.supervisor.failure()
    }

    /// Stops every thread and waits for the listeners and the clock to finish.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Starts simulators.
#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// Binds both venues, starts the market clock and serves until the handle is dropped.
    pub fn start(cfg: SimConfig) -> io::Result<SimHandle> {
        cfg.validate().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let start_ms = cfg.start_ms.unwrap_or_else(wall_ms);
        let world = World::new(&cfg, start_ms);
        let ul = TcpListener::bind(cfg.upbit_listen)?;
        let bl = TcpListener::bind(cfg.binance_listen)?;
        ul.set_nonblocking(true)?;
        bl.set_nonblocking(true)?;
        let (ua, ba) = (ul.local_addr()?, bl.local_addr()?);
        let (tls, cert) = if cfg.tls {
            let (c, d, p) = http::self_signed_tls()?;
            (Some(c), Some((d, p)))
        } else {
            (None, None)
        };
        let seed = cfg.seed;
        let shared = Arc::new(Shared {
            keys: cfg.effective_accounts(),
            clock: SimClock::new(start_ms, cfg.speed),
            cfg,
            world: Mutex::new(world),
            hub: Hub::default(),
            stop: AtomicBool::new(false),
            counters: Counters::default(),
            upbit_down: AtomicBool::new(false),
            binance_down: AtomicBool::new(false),
            private_epoch: AtomicU64::new(0),
            rates: Mutex::new(limits::RateState::default()),
            frng: Mutex::new(rng::Rng::stream(seed, 0x50C4)),
            supervisor: supervise::Supervisor::default(),
        });
        let mut threads = Vec::new();
        let sh = shared.clone();
        threads.push(shared.spawn("sim-clock", move || server::clock_loop(sh))?);
        for (upbit, l, a) in [(true, ul, ua), (false, bl, ba)] {
            let sh = shared.clone();
            let tls = tls.clone();
            let name = if upbit { "sim-upbit" } else { "sim-binance" };
            threads.push(shared.spawn(name, move || server::accept_loop(sh, upbit, a, l, tls))?);
        }
        let replay_threads = replay::start(&shared, &shared.cfg.replay.clone());
        let replay_threads = match replay_threads {
            Ok(t) => t,
            Err(e) => {
                shared.stop.store(true, Ordering::Relaxed);
                for t in threads {
                    let _ = t.join();
                }
                return Err(e);
            }
        };
        threads.extend(replay_threads);
        Ok(SimHandle {
            shared,
            threads,
            upbit_addr: ua,
            binance_addr: ba,
            urls: SimUrls::new(ua, ba, tls.is_some()),
            cert,
        })
    }
}
