//! Every command's `--help` speaks one duration syntax (`30s`, `500ms`, `10m`, `2h`):
//! no option named in a unit (`--duration-s`, `--rotate-s`, `--latency-ms`) and no value
//! named `SECONDS` (issue #14 item 12). The top-level help lists every command.

use std::process::Command;

fn help(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_kimp")).args(args).arg("--help").output().unwrap();
    assert!(o.status.success(), "kimp {args:?} --help failed");
    String::from_utf8(o.stdout).unwrap()
}

const COMMANDS: [&[&str]; 11] = [
    &["sim"],
    &["run"],
    &["ctl"],
    &["demo"],
    &["backtest"],
    &["replay"],
    &["record"],
    &["report"],
    &["store"],
    &["store", "load"],
    &["check"],
];

#[test]
fn every_help_uses_one_duration_syntax() {
    let unit_named = |w: &str| {
        w.starts_with("--")
            && ["-s", "-ms", "-secs", "-hours", "-min"].iter().any(|u| w.ends_with(u))
    };
    for c in COMMANDS {
        let h = help(c);
        for w in h.split(|ch: char| ch.is_whitespace() || ch == ',' || ch == '[' || ch == ']') {
            assert!(!unit_named(w), "kimp {c:?}: option {w} names its unit; take a DURATION");
            assert!(!w.contains("SECONDS"), "kimp {c:?}: {w} takes bare seconds");
        }
    }
}

#[test]
fn the_top_level_help_lists_every_command() {
    let h = help(&[]);
    for c in COMMANDS.iter().filter(|c| c.len() == 1) {
        assert!(
            h.lines().any(|l| l.trim_start().starts_with(&format!("{} ", c[0]))),
            "{}: {h}",
            c[0]
        );
    }
}

#[test]
fn the_simulator_takes_durations_too() {
    let o = Command::new(env!("CARGO_BIN_EXE_kimp"))
        .args(["sim", "--duration", "300ms", "--funding-interval", "1m"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bad = Command::new(env!("CARGO_BIN_EXE_kimp"))
        .args(["sim", "--duration", "soon"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a duration like 30s"));
}
