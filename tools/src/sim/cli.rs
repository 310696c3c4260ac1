//! `kimp sim`: runs the venue simulator in the foreground.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::config::{
    ApiKeyPair, CoinSpec, DEFAULT_KEY, DEFAULT_PREMIUM_MEAN_BPS, DEFAULT_PREMIUM_VOL_BPS, SimConfig,
};
use super::faults::{Faults, Scenario};
use super::{SimHandle, Simulator};

fn parse_scenario(s: &str) -> Result<Scenario, String> {
    Scenario::parse(s).map_err(|e| e.0)
}

fn parse_premium_mean(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (-1_500.0..=3_500.0).contains(&v) => Ok(v),
        _ => Err(format!("premium mean must be bps in [-1500, 3500], got {s:?}")),
    }
}

fn parse_premium_vol(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=1_000.0).contains(&v) => Ok(v),
        _ => Err(format!("premium vol must be bps in [0, 1000], got {s:?}")),
    }
}

/// The scenario reference printed by `kimp sim --help` (docs/simulator.md has the same
/// table; a test keeps both complete).
pub const SCENARIO_HELP: &str = "\
Scenarios: --scenario NAME[:key=value,...], repeatable. Every scenario takes
venue=upbit|binance|both, after=MS and for=MS (its window, in simulated ms from start;
no `for` = until the end); the other keys it reads, with their defaults:

  flash_crash           value=0.10 (price drop), after=10000, for=120000: falls within a
                        minute, recovers within the next; spreads x10 meanwhile
  liquidity_dry         value=0.1: book depth x value
  latency_spike         p=0.2, ms=2000-5000: a REST response is delayed by ms
  partial_fill          value=0.6: taker orders fill at most this share; IOC rest expires
  order_rejection       p=0.3: an order is refused (a 5xx or a venue error)
  one_leg_failure       p=1, venue=binance: orders are refused with a business error
  exchange_maintenance  venue=upbit, after=30000, for=60000: connections refused
  drop_messages         p=0.01: a market-data WebSocket message is dropped
  duplicate_messages    p=0.01: a WebSocket message is sent twice
  reorder_messages      p=0.01: a WebSocket message is swapped with the next
  depth_gap             p=0.01: a Binance depth event is lost (pu gap); Upbit re-sends
                        an old book (timestamp regression)
  disconnect            p=0.02 per second: a WebSocket connection is closed
  stall                 p=0.02 per second, ms=5000-10000: a connection goes silent
  rate_limit            p=0.05: a REST request is answered 429
  clock_skew            value=2000: the server clock runs value ms ahead (negative: behind)
  ambiguous_fill        p=0.1: an order executes and its response is dropped
  listen_key_expiry     after=60000: listen keys expire, private streams close; with
                        for, no new listen key until the window ends
  freeze                venue=upbit, after=10000, for=5000: market data freezes (old
                        book re-sent; Binance repeats its last depth event)
  bad_input             p=0.05 per data message, value=p per REST response: a malformed,
                        truncated, oversized or hostile copy is sent

Example: --scenario latency_spike:p=1,ms=300-400,venue=binance --scenario partial_fill

Market: the premium is mean-reverting around --premium-mean (half-life about a minute)
with noise of standard deviation --premium-vol and jumps of twice that size about
three times an hour. config/default.toml enters at 250 bps against the default 200 +- 60.

Accounts: without --account, one account is served: key kimp-sim-key, secret
kimp-sim-secret. Every account starts with 100,000,000 KRW, 1 BTC, 10 ETH and 10,000 USDT
on Upbit and 100,000 USDT margin on Binance.

A panic in any simulator thread stops the simulator: kimp sim exits 1 naming the thread.
Reference: docs/simulator.md.";

fn parse_speed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 10_000.0 => Ok(v),
        _ => Err(format!("speed must be a number in (0, 10000], got {s:?}")),
    }
}

/// Venue simulator: Upbit and Binance USDT-M on loopback, with the venues' own REST and
/// WebSocket protocols, a seeded market, a matching engine and fault scenarios.
///
/// The scenarios and the market are described in [`SCENARIO_HELP`] (shown by `--help`).
///
/// Without --account, one account is served: key `kimp-sim-key`, secret `kimp-sim-secret`.
/// Every account starts with 100,000,000 KRW, 1 BTC, 10 ETH and 10,000 USDT on Upbit and
/// 100,000 USDT margin on Binance.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = SCENARIO_HELP)]
pub struct SimArgs {
    /// Upbit address: REST under /v1/..., WebSockets at /websocket/v1[/private].
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub upbit_listen: SocketAddr,
    /// Binance address: REST under /fapi/..., streams under /public, /market, /private, /ws, /stream.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub binance_listen: SocketAddr,
    /// Seed of the market and of every fault (same seed, same market data).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A fault scenario (repeatable), e.g. `partial_fill` or `latency_spike:p=1,ms=2000-5000`.
    #[arg(long = "scenario", value_name = "NAME[:k=v,...]", value_parser = parse_scenario)]
    pub scenarios: Vec<Scenario>,
    /// An API key pair both venues accept (repeatable).
    #[arg(long = "account", value_name = "KEY:SECRET", value_parser = ApiKeyPair::parse)]
    pub accounts: Vec<ApiKeyPair>,
    /// Simulated time per real time (funding every 8 h comes sooner at higher speeds).
    #[arg(long, default_value = "1", value_parser = parse_speed)]
    pub speed: f64,
    /// Recorded files to replay (Binance collector .gz, Upbit cryptofeed); repeatable.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub replay: Vec<PathBuf>,
    /// Coins to generate on both venues (BTC, ETH).
    #[arg(long, value_delimiter = ',', default_value = "BTC,ETH")]
    pub coins: Vec<String>,
    /// Long-run kimchi premium of every generated coin against KRW-USDT, in bps (the
    /// executable premium a taker sees is a few bps lower).
    #[arg(long, value_name = "BPS", default_value_t = DEFAULT_PREMIUM_MEAN_BPS, allow_negative_numbers = true, value_parser = parse_premium_mean)]
    pub premium_mean: f64,
    /// How far the premium wanders: the standard deviation of its noise around the mean,
    /// in bps (jumps are twice that); 0 = a flat premium.
    #[arg(long, value_name = "BPS", default_value_t = DEFAULT_PREMIUM_VOL_BPS, value_parser = parse_premium_vol)]
    pub premium_vol: f64,
    /// Funding interval in simulated time (`8h`, `30m`; a bare number is seconds).
    #[arg(long, alias = "funding-interval-s", value_name = "DURATION", default_value = "8h",
          value_parser = crate::research::timefmt::parse_duration_arg)]
    pub funding_interval: Duration,
    /// Serve TLS (https/wss) with a generated self-signed certificate.
    #[arg(long)]
    pub tls: bool,
    /// Write the generated certificate (PEM) here, for clients to trust.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub tls_cert_out: Option<PathBuf>,
    /// Print the base URLs as one JSON line on stdout.
    #[arg(long)]
    pub print_urls: bool,
    /// Stop after this long (`30s`, `10m`, `2h`; a bare number is seconds; default: run
    /// until Ctrl-C).
    #[arg(long, value_name = "DURATION", value_parser = crate::research::timefmt::parse_duration_arg)]
    pub duration: Option<Duration>,
    /// `swarm`: seeded deterministic-simulation runs of the engine instead (tools/src/dst).
    #[command(subcommand)]
    pub action: Option<SimAction>,
}

/// What `kimp sim` runs besides the simulator itself.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SimAction {
    /// Many seeded runs of the real engine against fake venues with faults (VOPR style).
    Swarm(crate::dst::swarm::SwarmArgs),
}

impl SimArgs {
    /// The simulator configuration these arguments describe.
    pub fn config(&self) -> anyhow::Result<SimConfig> {
        let mut coins = Vec::new();
        for c in &self.coins {
            let mut spec = match c.trim().to_ascii_uppercase().as_str() {
                "BTC" => CoinSpec::btc(),
                "ETH" => CoinSpec::eth(),
                "" => continue,
                other => anyhow::bail!("unknown coin {other:?}: the generator knows BTC and ETH"),
            };
            spec.premium_mean = self.premium_mean / 10_000.0;
            coins.push(spec);
        }
        for f in &self.replay {
            anyhow::ensure!(f.is_file(), "replay file not found: {}", f.display());
        }
        anyhow::ensure!(
            self.funding_interval.as_millis() > 0,
            "--funding-interval must be at least 1ms"
        );
        let mut market = super::config::MarketParams::default();
        market.set_premium_vol(self.premium_vol / 10_000.0);
        let cfg = SimConfig {
            seed: self.seed,
            market,
            speed: self.speed,
            upbit_listen: self.upbit_listen,
            binance_listen: self.binance_listen,
            tls: self.tls,
            accounts: self.accounts.clone(),
            faults: Faults { list: self.scenarios.clone() },
            replay: self.replay.clone(),
            coins,
            funding_interval_ms: u64::try_from(self.funding_interval.as_millis())
                .unwrap_or(u64::MAX),
            ..SimConfig::default()
        };
        cfg.validate().map_err(anyhow::Error::msg)?;
        Ok(cfg)
    }
}

fn banner(h: &SimHandle, args: &SimArgs) {
    let u = &h.urls;
    eprintln!(
        "kimp sim: seed {} speed {}x{}  premium {} +- {} bps",
        args.seed,
        args.speed,
        if args.tls { " (TLS)" } else { "" },
        args.premium_mean,
        args.premium_vol
    );
    eprintln!(
        "  upbit    REST {}   WS {}   private {}",
        u.upbit_rest, u.upbit_ws, u.upbit_private_ws
    );
    eprintln!(
        "  binance  REST {}   WS {}/public  {}/market  {}/private",
        u.binance_rest, u.binance_ws, u.binance_ws, u.binance_ws
    );
    if args.accounts.is_empty() {
        eprintln!("  account  {DEFAULT_KEY} (default; secret documented in --help)");
    } else {
        let keys: Vec<&str> = args.accounts.iter().map(|a| a.key.as_str()).collect();
        eprintln!("  accounts {}", keys.join(", "));
    }
    for s in &args.scenarios {
        eprintln!(
            "  scenario {} ({:?}, p={}, after={} ms, for={:?} ms)",
            s.kind.name(),
            s.venue,
            s.p,
            s.after_ms,
            s.for_ms
        );
    }
}

/// Runs `kimp sim` until Ctrl-C or `--duration`.
pub fn run(args: SimArgs) -> anyhow::Result<()> {
    if let Some(SimAction::Swarm(a)) = &args.action {
        return crate::dst::swarm::run(a);
    }
    let cfg = args.config()?;
    let h = Simulator::start(cfg).context("starting the simulator")?;
    if let (Some(path), Some(pem)) = (&args.tls_cert_out, h.tls_cert_pem()) {
        std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.print_urls {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", h.urls.to_json())?;
        out.flush()?;
    }
    banner(&h, &args);
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        if let Some(d) = args.duration
            && started.elapsed() >= d
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        if let Some(f) = h.failure() {
            let s = h.stats();
            h.shutdown();
            return Err(anyhow::Error::new(f)
                .context(format!("the simulator stopped after {} steps", s.steps)));
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let s = h.stats();
            eprintln!(
                "  [{:>5.0}s] steps {} ws {} sent {} rest {} orders {} 429s {} gaps {} dropped {}",
                started.elapsed().as_secs_f64(),
                s.steps,
                s.ws_connections,
                s.ws_sent,
                s.rest_requests,
                s.orders,
                s.rest_429,
                s.depth_gaps,
                s.ws_dropped
            );
        }
    }
    let s = h.stats();
    let failure = h.failure();
    h.shutdown();
    if let Some(f) = failure {
        return Err(
            anyhow::Error::new(f).context(format!("the simulator stopped after {} steps", s.steps))
        );
    }
    eprintln!("kimp sim: stopped after {} steps, {} orders", s.steps, s.orders);
    Ok(())
}
