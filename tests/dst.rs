//! The deterministic simulation suite (RELIABILITY.md R3, R4, R20 and the sim side of
//! R1, R2, R5, R6, R8, R17): the real engine against fake venues with seeded faults, the
//! invariant checker after every step, a safety phase then a liveness phase.
//!
//! A failing seed prints `reproduce: kimp sim swarm --seeds 1 --start <seed>`; add it to
//! `REGRESSION_SEEDS` once fixed. `kimp sim swarm --seeds N` runs more than CI does.

use kimp::dst::run::Mutant;
use kimp::dst::swarm::Summary;
use kimp::dst::{FaultMix, RunConfig, run_seed};

/// Seeds that failed once, with the bug each found (all fixed; see docs/reliability.md).
const REGRESSION_SEEDS: &[(u64, &str)] = &[
    (4, "a late request executed after a NotFound retired its order: lost fill"),
    (13, "the same race, Binance leg"),
    (23, "the same race across a crash and restart"),
    (30, "operator resume during a flatten suspended the hard orphan deadline (no halt)"),
    (36, "the same"),
    (86, "the same"),
    (8, "an Upbit book older than the one held was applied (decision on a regressed book)"),
    (11, "the same"),
    (14, "the same, across a crash"),
];

fn check(seeds: impl Iterator<Item = u64>, cfg: &RunConfig) -> Summary {
    let mut sum = Summary::default();
    let mut failed = Vec::new();
    for seed in seeds {
        let o = run_seed(seed, cfg);
        if !o.ok() {
            failed.push(o.line());
        }
        sum.add(&o);
    }
    assert!(failed.is_empty(), "{} seeds failed:\n{}", failed.len(), failed.join("\n"));
    sum
}

#[test]
fn swarm_seeds_hold_every_invariant() {
    let sum = check(1..=300, &RunConfig::default());
    println!("{}", sum.report());
    // The runs must exercise what they claim to, or passing proves little.
    assert!(sum.decisions > 1_000, "too few entries/exits: {}", sum.decisions);
    assert!(sum.crashes > 100, "too few crashes: {}", sum.crashes);
    assert!(sum.unknowns > 100, "too few unknown outcomes: {}", sum.unknowns);
    assert!(sum.resyncs > 100, "too few gaps/resyncs: {}", sum.resyncs);
    assert!(!sum.halt_latency_ms.is_empty(), "no hard orphan deadline was ever reached");
    assert_eq!((sum.duplicates, sum.lost_fill_qty, sum.stale_decisions), (0, 0, 0));
}

#[test]
fn all_faults_together() {
    let cfg = RunConfig { faults: Some(FaultMix::all(1.0)), ..RunConfig::default() };
    let sum = check(1_000..1_060, &cfg);
    println!("{}", sum.report());
    assert!(sum.crashes > 20 && sum.unknowns > 20, "{}", sum.report());
}

#[test]
fn regression_seeds() {
    for &(seed, bug) in REGRESSION_SEEDS {
        let o = run_seed(seed, &RunConfig::default());
        assert!(o.ok(), "regression seed {seed} ({bug}):\n{}", o.line());
    }
}

#[test]
fn a_run_is_fixed_by_its_seed() {
    let cfg = RunConfig::default();
    for seed in [3, 77, 500] {
        let (a, b) = (run_seed(seed, &cfg), run_seed(seed, &cfg));
        assert_eq!(format!("{:?}", a.fig), format!("{:?}", b.fig), "seed {seed}");
        assert_eq!(a.line(), b.line());
    }
}

/// Each deliberate bug is caught, by the invariant it breaks, on a handful of seeds.
#[test]
fn the_checker_catches_deliberate_bugs() {
    let cases = [
        (Mutant::DoubleSend, "I1"),
        (Mutant::SendBeforeJournal, "I1"),
        (Mutant::LoseFill, "I7"),
        (Mutant::BlindResync, "I6"),
        (Mutant::NoTimer, "I4"),
    ];
    for (m, inv) in cases {
        let cfg =
            RunConfig { mutant: Some(m), faults: Some(FaultMix::all(1.0)), ..RunConfig::default() };
        let caught = (1..=10)
            .map(|s| run_seed(s, &cfg))
            .find(|o| o.violations.iter().any(|v| v.contains(&format!("{inv}:"))));
        assert!(caught.is_some(), "{m:?} was not caught as {inv}");
    }
}
