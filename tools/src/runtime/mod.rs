//! The runtime: `kimp run` and `kimp demo` — configuration, secrets, the journal and the
//! single pinned busy-poll loop that drives the engine.

pub mod bridge;
pub mod cli;
pub mod clock;
pub mod config;
pub mod ctl;
pub mod demo;
pub mod feed_watch;
pub mod journal;
pub mod metrics;
pub mod orders;
pub mod output;
pub mod record_codec;
pub mod run;
pub mod secrets;
pub mod startup;
pub mod trading_loop;
