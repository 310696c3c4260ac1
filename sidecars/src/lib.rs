//! Sidecars that run beside the trading loop: store, Telegram control, alerts.
//!
//! Nothing here runs on the loop's thread. The loop talks to the sidecars through bounded
//! queues it never blocks on ([`store::StoreTx`], crossbeam channels for alerts and
//! control) and a shared [`status::StatusBoard`] it updates off the hot path.

pub mod alerts;
pub mod commands;
pub mod labels;
pub mod names;
pub mod status;
pub mod store;
pub mod telegram;
