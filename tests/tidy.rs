//! Tidy checks: the workspace keeps its boundaries.
//!
//! kimp-core is the deterministic engine: it may not depend on anything that does I/O or
//! starts threads, and its source may not reach for the network, files, threads or a
//! clock. Both are checked here so a careless `use` fails CI, not a code review.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Crates that do I/O or threads; none may be a normal dependency of kimp-core.
const BANNED_CRATES: &[&str] = &[
    "mio",
    "tungstenite",
    "rustls",
    "tokio",
    "questdb-rs",
    "teloxide",
    "reqwest",
    "hyper",
    "ureq",
    "crossbeam-channel",
    "rtrb",
    "core_affinity",
    "libc",
    "socket2",
];

#[test]
fn core_has_no_io_dependencies() {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "-p", "kimp-core", "-e", "normal", "--prefix", "none", "--offline"])
        .current_dir(root())
        .output()
        .expect("run cargo tree");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(names.contains(&"kimp-core"), "unexpected cargo tree output:\n{tree}");
    for banned in BANNED_CRATES {
        assert!(!names.contains(banned), "kimp-core depends on {banned}:\n{tree}");
    }
}

/// Source patterns that mean I/O, threads or a clock inside the engine.
const BANNED_SOURCE: &[&str] = &[
    "std::net",
    "std::fs",
    "std::thread",
    "std::process",
    "std::io::stdin",
    "Instant::now",
    "SystemTime",
    "thread_rng",
    "async fn",
    "println!",
    "eprintln!",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn core_source_does_no_io() {
    let mut files = Vec::new();
    rust_files(&root().join("core/src"), &mut files);
    assert!(files.len() > 5, "core sources not found");
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read source");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for pat in BANNED_SOURCE {
                assert!(!code.contains(pat), "{}:{}: `{pat}` in kimp-core", f.display(), n + 1);
            }
        }
    }
}

#[test]
fn tidy_detects_a_banned_pattern() {
    // The check above must be able to fail: a line with a banned call is caught, the same
    // text in a comment is not.
    let caught = |line: &str| {
        let code = line.split("//").next().unwrap_or("");
        BANNED_SOURCE.iter().any(|p| code.contains(p))
    };
    assert!(caught("let t = std::time::Instant::now();"));
    assert!(!caught("// never call Instant::now here"));
}

/// Folders `cargo test --workspace` builds whose sources may read `../shared` beside the
/// checkout: benchmarks, examples and the opt-in real-QuestDB suite.
const MAY_READ_SHARED: &[&str] = &["/examples/", "/tests/questdb/", "/tests/questdb_real.rs"];

/// The folder beside the checkout, spelled in two parts so this file does not match itself.
const SHARED: &str = concat!("..", "/shared");

/// True when a source line (outside its comment) builds a path to `../shared`.
fn reads_shared(line: &str) -> bool {
    line.split("//").next().unwrap_or("").contains(SHARED)
}

#[test]
fn tests_read_their_data_from_testdata_not_from_beside_the_checkout() {
    // A fresh clone must pass the suite: test data lives in testdata/ (testdata/README.md).
    let mut files = Vec::new();
    for d in ["core", "gateways", "sidecars", "tools", "tests"] {
        rust_files(&root().join(d), &mut files);
    }
    assert!(files.len() > 50, "sources not found");
    for f in files {
        let path = f.to_string_lossy().replace('\\', "/");
        if MAY_READ_SHARED.iter().any(|m| path.contains(m)) {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("read source");
        for (n, line) in text.lines().enumerate() {
            assert!(!reads_shared(line), "{path}:{}: reads {SHARED}; use testdata/", n + 1);
        }
    }
}

#[test]
fn tidy_detects_a_read_of_shared() {
    assert!(reads_shared(&format!(r#"let p = dir.join("../{SHARED}/data/x.gz");"#)));
    assert!(!reads_shared(&format!("// the full file is in {SHARED}/data")));
}
