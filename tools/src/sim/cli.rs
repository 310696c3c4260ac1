//! `kimp sim`: runs the venue simulator in the foreground.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::config::{ApiKeyPair, CoinSpec, DEFAULT_KEY, SimConfig};
use super::faults::{Faults, Scenario};
use super::{SimHandle, Simulator};

fn parse_scenario(s: &str) -> Result<Scenario, String> {
    Scenario::parse(s).map_err(|e| e.0)
}

fn parse_speed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 10_000.0 => Ok(v),
        _ => Err(format!("speed must be a number in (0, 10000], got {s:?}")),
    }
}

/// Venue simulator: Upbit and Binance USDT-M on loopback, with the venues' own REST and
/// WebSocket protocols, a seeded market, a matching engine and fault scenarios.
///
/// Scenarios (`--scenario NAME[:key=value,...]`, keys venue/p/after/for/value/ms):
/// flash_crash, liquidity_dry, latency_spike, partial_fill, order_rejection,
/// one_leg_failure, exchange_maintenance, drop_messages, duplicate_messages,
/// reorder_messages, depth_gap, disconnect, stall, rate_limit, clock_skew,
/// ambiguous_fill, listen_key_expiry, freeze, bad_input.
///
/// Without --account, one account is served: key `kimp-sim-key`, secret `kimp-sim-secret`.
/// Every account starts with 100,000,000 KRW, 1 BTC, 10 ETH and 10,000 USDT on Upbit and
/// 100,000 USDT margin on Binance.
#[derive(Debug, Clone, clap::Args)]
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
    /// Funding interval in simulated seconds.
    #[arg(long, default_value_t = 8 * 3600)]
    pub funding_interval_s: u64,
    /// Serve TLS (https/wss) with a generated self-signed certificate.
    #[arg(long)]
    pub tls: bool,
    /// Write the generated certificate (PEM) here, for clients to trust.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub tls_cert_out: Option<PathBuf>,
    /// Print the base URLs as one JSON line on stdout.
    #[arg(long)]
    pub print_urls: bool,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
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
            coins.push(match c.trim().to_ascii_uppercase().as_str() {
                "BTC" => CoinSpec::btc(),
                "ETH" => CoinSpec::eth(),
                "" => continue,
                other => anyhow::bail!("unknown coin {other:?}: the generator knows BTC and ETH"),
            });
        }
        for f in &self.replay {
            anyhow::ensure!(f.is_file(), "replay file not found: {}", f.display());
        }
        if let Some(d) = self.duration {
            anyhow::ensure!(d.is_finite() && d > 0.0, "duration must be positive seconds");
        }
        anyhow::ensure!(self.funding_interval_s > 0, "funding interval must be positive");
        let cfg = SimConfig {
            seed: self.seed,
            speed: self.speed,
            upbit_listen: self.upbit_listen,
            binance_listen: self.binance_listen,
            tls: self.tls,
            accounts: self.accounts.clone(),
            faults: Faults { list: self.scenarios.clone() },
            replay: self.replay.clone(),
            coins,
            funding_interval_ms: self.funding_interval_s * 1_000,
            ..SimConfig::default()
        };
        cfg.validate().map_err(anyhow::Error::msg)?;
        Ok(cfg)
    }
}

fn banner(h: &SimHandle, args: &SimArgs) {
    let u = &h.urls;
    eprintln!(
        "kimp sim: seed {} speed {}x{}",
        args.seed,
        args.speed,
        if args.tls { " (TLS)" } else { "" }
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
            && started.elapsed().as_secs_f64() >= d
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
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
    h.shutdown();
    eprintln!("kimp sim: stopped after {} steps, {} orders", s.steps, s.orders);
    Ok(())
}
