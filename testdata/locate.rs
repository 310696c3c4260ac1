//! Finds the repository's test data, so `cargo test --workspace` needs nothing beside the
//! checkout. Included by each crate's tests with `#[path]` (one copy of the rule).
#![allow(dead_code)]

use std::path::PathBuf;

/// `<repo>/testdata/<rel>`; a missing file fails the test with its path (never a skip).
pub fn testdata(rel: &str) -> PathBuf {
    found(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata").join(rel))
}

/// `<repo>/../shared/<rel>`: only for the opt-in (`#[ignore]`) full-recording tests.
pub fn shared(rel: &str) -> PathBuf {
    found(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared").join(rel))
}

fn found(p: PathBuf) -> PathBuf {
    assert!(p.exists(), "test data missing: {} (see testdata/README.md)", p.display());
    p
}
