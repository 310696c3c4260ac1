//! `kimp run` and `kimp check`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Result, anyhow};
use clap::Args;

use super::config::Config;
use super::run;

/// `kimp run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file (TOML); see config/live.example.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long)]
    pub log_json: bool,
}

/// Sets up tracing (stderr; `RUST_LOG` filters, default `info`).
pub fn init_logs(json: bool) {
    // tungstenite logs whole handshake requests at TRACE (a listen key is in the URL):
    // never below INFO, whatever RUST_LOG asks for.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        .add_directive("tungstenite=info".parse().expect("static directive"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A closed stderr stops the run (`output`), never panics inside the subscriber.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(super::output::Stderr)
        .log_internal_errors(false)
        .with_ansi(ansi);
    let _ = if json { b.json().try_init() } else { b.try_init() };
}

/// `kimp run --config FILE`.
pub fn run(args: RunArgs) -> Result<()> {
    init_logs(args.log_json);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let stop = Arc::new(AtomicBool::new(false));
    super::output::watch(&stop);
    let (cfg, keys) = run::load(&args.config)?;
    // Bound before anything else: a second `kimp run` on the same journal stops here.
    let ctl = super::ctl::CtlListener::bind(&cfg.control_socket())?;
    let mut rt = run::build(&cfg, &keys, &run::BuildOptions::default())?;
    drop(keys);
    tracing::info!(
        epoch = rt.epoch,
        replayed = rt.replayed,
        torn = rt.torn_slots,
        "journal replayed"
    );
    // First signal: stop entries, finish in-flight orders, exit 0. Second: exit at once.
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())?;
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let syncer = rt.spawn_syncer(Duration::from_millis(cfg.runtime.journal_sync_ms), stop.clone());
    let mut sidecars = super::bridge::Sidecars::start(
        &cfg,
        &rt.tl.core.markets,
        rt.tl.clock,
        rt.out_rx.clone(),
        rt.journal_tail,
        rt.control_tx.clone(),
    )?;
    let confirm = Duration::from_secs(cfg.control.confirm_s.unwrap_or(60));
    sidecars.serve_ctl(ctl, rt.control_tx.clone(), confirm)?;
    if cfg.runtime.status_interval_s > 0 {
        sidecars.log_status_every(Duration::from_secs(cfg.runtime.status_interval_s))?;
    }
    run::pin(cfg.runtime.core)?;
    let drain = Duration::from_millis(cfg.runtime.shutdown_ms);
    let result = rt.tl.run(&stop, drain);
    // A loop that failed leaves the flag down: the journal's sync thread waits for it.
    stop.store(true, Ordering::Relaxed);
    let live = rt.tl.core.engine.live_orders().count();
    drop(rt.tl);
    if let Some(s) = syncer {
        let _ = s.join();
    }
    sidecars.shutdown();
    result.map_err(|e| run::name_the_key(e, &cfg.keys))?;
    if live > 0 {
        tracing::warn!(
            live,
            "orders still in flight at exit: they are journaled and reconciled on restart"
        );
    }
    // A panicking thread stopped the run (entries halted, orders drained): a bug, so the
    // exit is an error and a supervisor restarts it into reconciliation.
    if let Some(p) = super::output::panicked() {
        return Err(anyhow!("stopped: {p}"));
    }
    tracing::info!("stopped");
    Ok(())
}

/// `kimp check --config FILE`: validates the file, the coins, the journal directory and
/// the keys (as `kimp run` would, without connecting), and prints the settings in effect.
pub fn check(path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))?;
    let cfg = Config::parse(&text, path).map_err(|e| anyhow!("{e}"))?;
    cfg.check_journal_dir(&text, path).map_err(|e| anyhow!("{e}"))?;
    // Keys are loaded as `kimp run` would (a file: permissions first, then its form; the
    // environment: every variable named at once), dropped at once and never printed.
    let keys = super::secrets::Keys::load(&cfg.keys, |k| std::env::var(k).ok());
    let source = match cfg.keys.source {
        super::config::KeySource::Env => format!(
            "environment ({}, {}, {}, {})",
            cfg.keys.upbit_access_env,
            cfg.keys.upbit_secret_env,
            cfg.keys.binance_key_env,
            cfg.keys.binance_secret_env
        ),
        super::config::KeySource::File => {
            format!("file {}", cfg.keys.file.as_deref().unwrap_or(Path::new("?")).display())
        }
    };
    drop(keys.map_err(|e| anyhow!("{}: keys: {e}", path.display()))?);
    println!("{}: OK", path.display());
    println!("keys: from the {source}: all four present");
    println!(
        "coins: {}",
        cfg.coins
            .iter()
            .map(|c| format!("{} ({} / {})", c.name, c.upbit, c.binance))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "journal: {} (writable)  store: {}{}",
        cfg.runtime.journal_dir.display(),
        cfg.store.dir.display(),
        if cfg.store.questdb.is_some() { " + QuestDB" } else { "" }
    );
    println!();
    print!("{}", cfg.describe());
    Ok(())
}

/// `kimp store` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum StoreCmd {
    /// Send local ILP files (written when no QuestDB is configured) to QuestDB.
    Load {
        /// questdb-rs configuration string, e.g. `tcp::addr=127.0.0.1:9009;` or
        /// `http::addr=127.0.0.1:9000;`.
        #[arg(long)]
        questdb: String,
        /// ILP files or directories (default: data/ilp).
        #[arg(default_value = "data/ilp")]
        paths: Vec<PathBuf>,
    },
}

/// `kimp store ...`.
pub fn store(cmd: StoreCmd) -> Result<()> {
    match cmd {
        StoreCmd::Load { questdb, paths } => {
            let mut files = Vec::new();
            for p in &paths {
                if p.is_dir() {
                    files.extend(
                        kimp_sidecars::store::files::list(p)
                            .map_err(|e| anyhow!("{}: {e}", p.display()))?,
                    );
                } else {
                    files.push(p.clone());
                }
            }
            if files.is_empty() {
                return Err(anyhow!(
                    "no ILP files under {}",
                    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                ));
            }
            let stats =
                kimp_sidecars::store::load_files(&files, &questdb).map_err(|e| anyhow!("{e}"))?;
            println!(
                "loaded {} rows from {} file(s) ({} bytes) into QuestDB; {} unreadable lines skipped",
                stats.rows, stats.files, stats.bytes, stats.bad_lines
            );
            Ok(())
        }
    }
}
