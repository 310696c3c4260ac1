//! Byte fuzzing in `cargo test` (modest case counts): mutated real messages, truncations
//! and random bytes go through every parser and verifier. No input may panic, and when
//! the scanner and the simd-json path both accept an input they must agree.

mod common;

#[path = "common/fuzz.rs"]
mod fuzz;

use proptest::prelude::*;
use std::sync::OnceLock;

fn corpus() -> &'static [Vec<u8>] {
    static C: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    C.get_or_init(fuzz::corpus)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_messages_never_panic_and_paths_agree(pick in any::<usize>(), seed in 1u64.., ops in 1usize..5) {
        let c = corpus();
        let mut x = c[pick % c.len()].clone();
        let mut rng = fuzz::Rng(seed);
        fuzz::mutate(&mut x, &mut rng, ops);
        let mut h = fuzz::Harness::new();
        h.run(&x);
        prop_assert_eq!(h.disagreements, 0, "{}", String::from_utf8_lossy(&x));
    }

    #[test]
    fn random_bytes_never_panic(x in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut h = fuzz::Harness::new();
        h.run(&x);
        prop_assert_eq!(h.disagreements, 0);
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn every_truncation_of_a_message_is_handled(pick in any::<usize>(), step in 1usize..7) {
        let c = corpus();
        let m = &c[pick % c.len()];
        let mut h = fuzz::Harness::new();
        for cut in (0..m.len()).step_by(step).take(120) {
            h.run(&m[..cut]);
        }
        prop_assert_eq!(h.disagreements, 0);
    }
}

/// The unmutated corpus is accepted by the parsers it belongs to (so the fuzzer starts
/// from valid input, not from noise).
#[test]
fn corpus_is_mostly_valid() {
    let mut h = fuzz::Harness::new();
    for m in corpus() {
        h.run(m);
    }
    assert_eq!(h.disagreements, 0);
    let accepted = h.counts[0].1 + h.counts[3].1 + h.counts[5].1 + h.counts[6].1;
    assert!(accepted as usize > corpus().len() / 2, "{:?}", h.counts);
}
