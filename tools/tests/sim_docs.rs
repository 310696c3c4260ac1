//! The simulator's reference stays complete: every scenario, with its keys, in
//! `kimp sim --help` and docs/simulator.md; the market flags documented; and the shipped
//! `config/default.toml` enters within reach of the simulator's default market.

use std::path::Path;
use std::process::Command;

use kimp::runtime::config::Config;
use kimp::sim::cli::SCENARIO_HELP;
use kimp::sim::config::{DEFAULT_PREMIUM_MEAN_BPS, DEFAULT_PREMIUM_VOL_BPS};
use kimp::sim::faults::{FaultKind, Scenario};

fn help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kimp")).args(["sim", "--help"]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_scenario_is_listed_with_its_keys_in_help_and_docs() {
    let help = help();
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/simulator.md"))
            .expect("docs/simulator.md");
    assert!(help.contains(SCENARIO_HELP.lines().next().unwrap()), "{help}");
    for (kind, name) in FaultKind::ALL {
        let d = Scenario::new(kind);
        let row = docs
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("docs/simulator.md has no row for {name}"));
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("kimp sim --help does not list {name}"));
        // The documented defaults are the parser's.
        let mut keys: Vec<String> = Vec::new();
        if d.p != 1.0 {
            keys.push(format!("p={}", d.p));
        }
        if d.value != 0.0 {
            keys.push(format!("value={}", d.value));
        }
        if d.ms != (0, 0) {
            keys.push(format!("ms={}-{}", d.ms.0, d.ms.1));
        }
        if d.after_ms != 0 {
            keys.push(format!("after={}", d.after_ms));
        }
        if let Some(f) = d.for_ms {
            keys.push(format!("for={f}"));
        }
        for k in keys {
            assert!(line.contains(&k), "--help: {name} default {k} missing: {line}");
            assert!(row.contains(&k), "docs: {name} default {k} missing: {row}");
        }
    }
    for flag in ["--premium-mean", "--premium-vol"] {
        assert!(help.contains(flag), "--help lacks {flag}");
        assert!(docs.contains(&format!("`{flag} BPS`")), "docs lack {flag}");
    }
}

#[test]
fn the_default_config_enters_within_reach_of_the_default_market() {
    let text = include_str!("../../config/default.toml");
    let cfg = Config::parse(text, Path::new("config/default.toml")).expect("default.toml");
    let entry = cfg.strategy.entry_bps as f64;
    // Above the mean (no entry the moment the market starts), within one standard deviation
    // of it (reached within minutes), as docs/simulator.md and the README say.
    assert!(entry > DEFAULT_PREMIUM_MEAN_BPS, "entry {entry} at or below the mean");
    assert!(
        entry <= DEFAULT_PREMIUM_MEAN_BPS + DEFAULT_PREMIUM_VOL_BPS,
        "entry {entry} beyond mean + 1 sd ({DEFAULT_PREMIUM_MEAN_BPS} + {DEFAULT_PREMIUM_VOL_BPS})"
    );
    assert!(text.contains(&format!("--premium-mean {DEFAULT_PREMIUM_MEAN_BPS}")), "comment");
}
