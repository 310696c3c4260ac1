//! Long byte-fuzzing run over every parser and verifier (release mode):
//! `cargo run --release -p kimp-gateways --example fuzz_parsers [inputs] [seed]`
//!
//! Each input (a mutated corpus message, or random bytes) goes to every parser; a panic
//! is caught and counted (it must be 0), as are scanner/simd-json disagreements. The
//! default is 1,000,000 inputs, so every parser sees at least that many.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/fuzz.rs"]
mod fuzz;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0x5EED_1234_ABCD_0001);
    let corpus = fuzz::corpus();
    println!("corpus: {} messages; inputs: {n}; seed: {seed:#x}", corpus.len());
    let mut h = fuzz::Harness::new();
    let mut rng = fuzz::Rng(seed);
    let mut panics = 0u64;
    let mut first_panic: Option<Vec<u8>> = None;
    let t = Instant::now();
    std::panic::set_hook(Box::new(|_| {}));
    let mut x = Vec::with_capacity(64 * 1024);
    for i in 0..n {
        x.clear();
        x.extend_from_slice(&corpus[rng.below(corpus.len())]);
        let ops = 1 + rng.below(4);
        fuzz::mutate(&mut x, &mut rng, ops);
        if catch_unwind(AssertUnwindSafe(|| h.run(&x))).is_err() {
            panics += 1;
            if first_panic.is_none() {
                first_panic = Some(x.clone());
            }
            // A panic mid-run leaves the harness in an unknown state: start a fresh one.
            h = fuzz::Harness::new();
        }
        if (i + 1) % 200_000 == 0 {
            eprintln!("{} inputs, {:.0} s", i + 1, t.elapsed().as_secs_f64());
        }
    }
    let _ = std::panic::take_hook();
    println!("{:<38} {:>10} {:>10}", "parser", "inputs", "accepted");
    for (name, (inputs, ok)) in fuzz::NAMES.iter().zip(h.counts) {
        println!("{name:<38} {inputs:>10} {ok:>10}");
    }
    println!(
        "panics: {panics}; scanner/simd disagreements: {}; {:.1} s",
        h.disagreements,
        t.elapsed().as_secs_f64()
    );
    if let Some(p) = first_panic {
        println!("first panicking input: {:?}", String::from_utf8_lossy(&p));
    }
    if let Some(d) = &h.first_disagreement {
        println!("first disagreement: {:?}", String::from_utf8_lossy(d));
    }
    if panics > 0 || h.disagreements > 0 {
        std::process::exit(1);
    }
}
