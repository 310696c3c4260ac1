//! Deterministic simulation testing (VOPR style): the real [`kimp_core::engine::Engine`]
//! against fake in-process venues, on a seeded clock, with seeded faults, and an invariant
//! checker run after every step.
//!
//! One run is fixed by its seed (and the git commit). It has two phases:
//! - **safety**: faults on — dropped, duplicated, reordered and delayed messages, feed
//!   disconnects and silent stalls, depth gaps, rejects, partial fills, unknown outcomes
//!   (the venue fills, the reply is lost), late requests, crashes of the engine at any
//!   point of its outbox (then a restart from the journal), operator stop/resume/flatten;
//! - **liveness**: faults off — the system must end flat or hedged, reconciled, with no
//!   order of unknown outcome and the venue's positions equal to the journal's fills.
//!
//! The invariants are RELIABILITY.md §9's I1–I7 (see [`check`]). A failing run reports
//! its seed; `kimp sim swarm --seeds N` runs many seeds and prints a summary, and the
//! kimp-tests package runs a fixed set of seeds in CI plus every pinned regression seed.
//!
//! [`failpoint`] is the tiny crash hook the runtime calls (inert unless `KIMP_FAILPOINT`
//! is set) so the crash tests can SIGKILL a real `kimp run` at named points.

pub mod check;
pub mod failpoint;
pub mod faults;
pub mod market;
pub mod net;
pub mod run;
pub mod swarm;
pub mod venue;

pub use faults::FaultMix;
pub use run::{Outcome, RunConfig, run_seed};
