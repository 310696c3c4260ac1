//! The runtime: `kimp run` and `kimp demo` — configuration, secrets, the journal and the
//! single pinned busy-poll loop that drives the engine.

pub mod clock;
pub mod config;
pub mod journal;
pub mod metrics;
pub mod record_codec;
pub mod secrets;
