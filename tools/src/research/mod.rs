//! Research tools: `kimp backtest` (the very same engine over recorded or candle data with
//! a simulated execution model), parameter sweeps and walk-forward, `kimp record` (a
//! versioned binary capture of raw venue messages) and `kimp report` (a self-contained
//! HTML report). See docs/backtest.md and docs/capture-format.md.

pub mod backtest;
pub mod candle_mode;
pub mod candles;
pub mod capture;
pub mod cli;
pub mod exec_model;
pub mod metrics;
pub mod record;
pub mod replay;
pub mod report;
pub mod sweep;
pub mod tick_mode;
pub mod timefmt;
