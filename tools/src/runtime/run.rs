//! Assembling a runtime: configuration, keys, venues, the journal (replayed into a fresh
//! engine of the next epoch), the sidecar threads, and the loop — for `kimp run` and
//! `kimp demo` alike.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use crossbeam_channel::{Receiver, Sender, bounded};
use kimp_core::engine::Engine;
use kimp_core::event::Control;
use kimp_core::instrument::Venue;
use kimp_core::units::Nanos;
use kimp_gateways::binance::encode::BinanceEncoder;
use kimp_gateways::rest::{AuthError, Credential};
use kimp_gateways::sign::JwtAlg;
use kimp_gateways::transport::{Backoff, BackoffConfig, Refusal, Retry};
use kimp_gateways::upbit::encode::UpbitEncoder;
use mio::{Poll, Token};
use rustls::ClientConfig;

use super::clock::Clock;
use super::config::{Config, KeySource, KeysSection};
use super::journal::{Journal, Syncer, Tail};
use super::orders::OrderPath;
use super::record_codec::Entry;
use super::secrets::Keys;
use super::startup::{self, Target};
use super::trading_loop::{BINANCE_REST, Core, LoopParts, Out, TradingLoop, UPBIT_REST};

/// Capacity of the loop → sidecars channel (telemetry beyond it is dropped and counted).
pub const OUT_CAPACITY: usize = 65_536;

/// A built runtime, ready to run on the calling thread.
pub struct Runtime {
    /// The loop.
    pub tl: TradingLoop,
    /// Telemetry, alerts and loop summaries from the loop.
    pub out_rx: Receiver<Out>,
    /// Operator control into the loop.
    pub control_tx: Sender<Control>,
    /// Journal entries as the loop writes them (for the store sidecar).
    pub journal_tail: Tail,
    /// Entries of earlier runs found at start.
    pub replayed: usize,
    /// Torn slots cut at start.
    pub torn_slots: u64,
    /// The epoch of this run.
    pub epoch: u32,
    syncer: Option<Syncer>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("epoch", &self.epoch)
            .field("replayed", &self.replayed)
            .finish_non_exhaustive()
    }
}

/// Options that do not live in the configuration file.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Extra trust roots (the simulator's self-signed certificate).
    pub tls: Option<Arc<ClientConfig>>,
    /// Journal segment size in bytes instead of `runtime.journal_segment_mib` (storage
    /// fault tests: a segment of a few dozen records fills within one test).
    pub journal_segment_bytes: Option<u64>,
    /// Capacity of the loop → sidecars channel instead of [`OUT_CAPACITY`] (ring tests).
    pub out_capacity: Option<usize>,
}

/// Builds everything up to the loop. Blocks (bounded) while it fetches the instrument
/// rules from the venue.
pub fn build(cfg: &Config, keys: &Keys, opts: &BuildOptions) -> Result<Runtime> {
    let clock = Clock::new();
    let upbit_rest = Target::new(&cfg.venues.upbit.rest_url, opts.tls.clone())?;
    let binance_rest = Target::new(&cfg.venues.binance.rest_url, opts.tls.clone())?;
    let upbit_ws = Target::new(&cfg.venues.upbit.ws_url, opts.tls.clone())?;
    let binance_ws = Target::new(&cfg.venues.binance.ws_url, opts.tls.clone())?;
    let text = |s: &kimp_gateways::sign::Secret| std::str::from_utf8(s.expose()).map(str::to_owned);
    let binance_key = text(&keys.binance_key).context("Binance API key is not UTF-8")?;
    let upbit_access = text(&keys.upbit_access).context("Upbit access key is not UTF-8")?;

    // Instrument rules from the venue (exchangeInfo), before the engine exists.
    let mut boot_poll = Poll::new()?;
    let mut boot = binance_rest.pool(1, Token(1))?;
    let mut enc = BinanceEncoder::new(
        &binance_rest.endpoint.host_header(),
        &binance_key,
        &keys.binance_secret,
        &[],
    );
    let req = enc.exchange_info(false).to_vec();
    // A rate limit or a venue hiccup at start-up is waited out (bounded, on the shared
    // back-off and the venue's Retry-After), not fatal. This is before the loop, on the
    // thread that builds it: sleeping here holds up nothing.
    let mut backoff = Backoff::new(BackoffConfig { base: Nanos::from_ms(500), ..Retry::DEFAULT });
    let body = loop {
        let reply =
            startup::fetch_reply(&mut boot, &mut boot_poll, &clock, &req, Duration::from_secs(10))
                .with_context(|| {
                    format!("fetching exchangeInfo from {}", cfg.venues.binance.rest_url)
                })?;
        match reply.status {
            200 => break reply.body,
            429 | 418 | 500..=599 if backoff.attempt() < 5 => {
                let now = clock.now();
                let refusal = Refusal::from_status(reply.status, reply.retry_after_s);
                let wait = backoff.on_refused(now, refusal).since(now);
                tracing::warn!(
                    status = reply.status,
                    attempt = backoff.attempt(),
                    retry_in_ms = wait.as_ms(),
                    "exchangeInfo refused; retrying"
                );
                std::thread::sleep(Duration::from_nanos(wait.0));
            }
            s => return Err(anyhow!("exchangeInfo answered HTTP {s}")),
        }
    };
    let markets = startup::markets(cfg, &body)?;
    // The venue's clock, for signed timestamps: offset at the middle of the round trip.
    let sent = clock.now();
    let req = enc.server_time().to_vec();
    let binance_offset_ms =
        match startup::fetch(&mut boot, &mut boot_poll, &clock, &req, Duration::from_secs(5)) {
            Ok((200, body)) => {
                let mid = clock.wall_ms(Nanos((sent.0 + clock.now().0) / 2)) as i64;
                kimp_gateways::binance::rest::server_time(&body).map_or(0, |t| t as i64 - mid)
            }
            _ => 0,
        };
    tracing::info!(binance_offset_ms, "server time offset");
    drop(boot);

    // The journal: replay earlier runs into a fresh engine of the next epoch.
    let seg = opts.journal_segment_bytes.unwrap_or(cfg.runtime.journal_segment_mib << 20);
    let (journal, replay) = Journal::open(&cfg.runtime.journal_dir, seg)
        .with_context(|| format!("opening the journal in {}", cfg.runtime.journal_dir.display()))?;
    let epoch = replay.last_epoch + 1;
    let mut engine = Engine::new(cfg.engine(), &markets, epoch).map_err(|e| anyhow!("{e}"))?;
    for (ts, e) in &replay.entries {
        if let Entry::Record(r) = e {
            engine.replay(*ts, r);
        }
    }
    let journal_tail = Tail::new(&journal);
    let syncer = Syncer::new(&journal);

    let upbit_enc = UpbitEncoder::new(
        &upbit_rest.endpoint.host_header(),
        &upbit_access,
        &keys.upbit_secret,
        JwtAlg::Hs512,
        &markets.instruments,
    )
    .map_err(|e| anyhow!("Upbit signer: {e:?}"))?;
    let binance_enc = BinanceEncoder::new(
        &binance_rest.endpoint.host_header(),
        &binance_key,
        &keys.binance_secret,
        &markets.instruments,
    );
    let mut orders = OrderPath::new(
        upbit_rest.pool(4, UPBIT_REST)?,
        binance_rest.pool(4, BINANCE_REST)?,
        upbit_enc,
        binance_enc,
        Nanos::from_ms(cfg.risk.order_timeout_ms),
        clock,
    );
    orders.binance_offset_ms = binance_offset_ms;
    let (out_tx, out_rx) = bounded(opts.out_capacity.unwrap_or(OUT_CAPACITY));
    let (control_tx, control_rx) = bounded(1_024);
    let core = Core::new(engine, journal, markets.clone(), out_tx, cfg.runtime.cycle_us_max);
    let parts = LoopParts {
        markets,
        upbit_ws,
        binance_ws,
        busy_poll: cfg.runtime.busy_poll,
        timer: Nanos::from_ms(cfg.runtime.timer_ms),
    };
    let tl = TradingLoop::new(parts, core, orders, clock, control_rx)?;
    Ok(Runtime {
        tl,
        out_rx,
        control_tx,
        journal_tail,
        replayed: replay.entries.len(),
        torn_slots: replay.torn_slots,
        epoch,
        syncer: Some(syncer),
    })
}

impl Runtime {
    /// Starts the journal's sync thread (fdatasync every `every`), stopped by `stop`.
    pub fn spawn_syncer(
        &mut self,
        every: Duration,
        stop: Arc<AtomicBool>,
    ) -> Option<JoinHandle<()>> {
        let mut s = self.syncer.take()?;
        std::thread::Builder::new()
            .name("kimp-journal-sync".into())
            .spawn(move || {
                // A failing disk fails every sync: one line per 10 s with the count, not
                // one per sync.
                let mut failed = 0u64;
                let mut last_log: Option<std::time::Instant> = None;
                while !stop.load(Ordering::Relaxed) {
                    if let Err(e) = s.sync() {
                        failed += 1;
                        if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                            tracing::error!(error = %e, failures = failed, "journal sync failed");
                            last_log = Some(std::time::Instant::now());
                        }
                    }
                    std::thread::sleep(every);
                }
                let _ = s.sync();
            })
            .ok()
    }
}

/// Pins the calling thread to `core`, reading the CPU list first (core_affinity reports
/// the *calling thread's* mask, so this must run before any thread is pinned).
pub fn pin(core: Option<usize>) -> Result<()> {
    let Some(c) = core else { return Ok(()) };
    let ids = core_affinity::get_core_ids().ok_or_else(|| anyhow!("cannot read the CPU list"))?;
    let id = ids
        .into_iter()
        .find(|i| i.id == c)
        .ok_or_else(|| anyhow!("runtime.core = {c}: no such CPU"))?;
    if !core_affinity::set_for_current(id) {
        return Err(anyhow!("could not pin the trading thread to CPU {c}"));
    }
    Ok(())
}

/// Loads the configuration and the keys for `kimp run`.
pub fn load(path: &Path) -> Result<(Config, Keys)> {
    let cfg = Config::load(path).map_err(|e| anyhow!("{e}"))?;
    let keys = Keys::load(&cfg.keys, |k| std::env::var(k).ok()).map_err(|e| anyhow!("{e}"))?;
    Ok((cfg, keys))
}

/// Names the key an authentication error blames (the variable, or the field of the
/// secrets file) so the operator's one line says what to fix; other errors pass through.
pub fn name_the_key(e: anyhow::Error, keys: &KeysSection) -> anyhow::Error {
    let Some(auth) = e.downcast_ref::<AuthError>() else { return e };
    let (env, field) = match (auth.venue, auth.credential) {
        (Venue::Upbit, Credential::ApiKey) => (&keys.upbit_access_env, "upbit_access_key"),
        (Venue::Upbit, Credential::Secret) => (&keys.upbit_secret_env, "upbit_secret_key"),
        (_, Credential::ApiKey) => (&keys.binance_key_env, "binance_api_key"),
        (_, Credential::Secret) => (&keys.binance_secret_env, "binance_secret_key"),
    };
    let place = match (keys.source, &keys.file) {
        (KeySource::File, Some(f)) => format!("{field} in {}", f.display()),
        _ => env.clone(),
    };
    anyhow!("{auth}; check {place}")
}
