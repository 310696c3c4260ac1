//! The `kimp` command: one binary for the operator's jobs.

use clap::{Parser, Subcommand};

/// kimp — kimchi-premium arbitrage between Upbit (KRW spot) and Binance (USDT-M perps).
///
/// Every command is listed below (`kimp help COMMAND` for its options). Durations are
/// written `30s`, `500ms`, `10m`, `2h`.
#[derive(Debug, Parser)]
#[command(name = "kimp", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the venue simulator (Upbit + Binance on loopback) in the foreground.
    Sim(Box<kimp::sim::cli::SimArgs>),
    /// Trade live (or against `kimp sim`): one pinned busy-poll loop, journal, recovery.
    Run(kimp::runtime::cli::RunArgs),
    /// Control a running `kimp run` over its local socket: status, stop, resume, flatten.
    Ctl(kimp::runtime::ctl::CtlArgs),
    /// Simulator + runtime + store in one process, with a live terminal view.
    Demo(kimp::runtime::demo::DemoArgs),
    /// Backtest the engine over candles or recorded messages (docs/backtest.md).
    Backtest(Box<kimp::research::cli::BacktestArgs>),
    /// Replay recorded venue messages through the codecs and books; print CSV.
    Replay(kimp::research::replay::ReplayArgs),
    /// Record raw venue messages into capture files (docs/capture-format.md).
    Record(kimp::research::record::RecordArgs),
    /// Write a self-contained HTML report of a saved backtest.
    Report(kimp::research::report::ReportArgs),
    /// The store: load local ILP files into QuestDB.
    #[command(subcommand)]
    Store(kimp::runtime::cli::StoreCmd),
    /// Check a configuration file (values, coins, keys, journal directory); print its settings.
    Check {
        /// Configuration file (TOML).
        #[arg(long, default_value = "config/default.toml")]
        config: std::path::PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    // Commands whose output is meant for pipes (`kimp replay ... | head`) end quietly
    // when the reader goes away, as Unix tools do. The trading commands keep Rust's
    // default (SIGPIPE ignored) so a closed socket is an error value, never a signal;
    // a closed stdout or stderr there stops the run cleanly instead (runtime::output).
    if matches!(
        cli.command,
        Command::Replay(_) | Command::Check { .. } | Command::Backtest(_) | Command::Report(_)
    ) {
        // SAFETY: restoring the default disposition of one signal at start-up, before any
        // thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = dispatch(cli.command);
    if let Err(e) = result {
        // The error chain, without a backtrace: these are operating errors (bad config,
        // unreachable venue), not bugs. Not `eprintln!`: a closed stderr must not panic.
        kimp::runtime::output::err(&format!("kimp: {e:#}\n"));
        std::process::exit(1);
    }
    // The trading commands stop when their output is closed (runtime::output).
    if kimp::runtime::output::closed() {
        std::process::exit(kimp::runtime::output::CLOSED_EXIT);
    }
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Sim(args) => kimp::sim::cli::run(*args),
        Command::Run(args) => kimp::runtime::cli::run(args),
        Command::Ctl(args) => kimp::runtime::ctl::ctl(args),
        Command::Demo(args) => kimp::runtime::demo::demo(args),
        Command::Backtest(args) => kimp::research::cli::run_backtest(*args),
        Command::Replay(args) => kimp::research::replay::run(args),
        Command::Record(args) => kimp::research::record::run_record(args),
        Command::Report(args) => kimp::research::report::run_report(args),
        Command::Store(cmd) => kimp::runtime::cli::store(cmd),
        Command::Check { config } => kimp::runtime::cli::check(&config),
    }
}
