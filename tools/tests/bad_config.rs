//! Bad operator input through the real binary (issue #9, "bad input"): `kimp check` and
//! `kimp run` on a configuration file with an unknown key, a value of the wrong type, a
//! value out of range, a file that does not exist, a file that is not TOML, and a secrets
//! file readable by others (0644). Each must end with a non-zero exit and one line on
//! stderr that names the file, and the line and key where there is one — before any
//! connection is tried (`kimp run` never gets as far as the venues, which are closed
//! loopback ports here). The config module's own tests check the same errors on parsed
//! text; these check what an operator sees.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A fresh directory for this test's files.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kimp-bad-config-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A valid file; venues on loopback ports nothing listens on.
const GOOD: &str = r#"[runtime]
journal_dir = "JOURNAL"

[venues.upbit]
ws_url = "ws://127.0.0.1:9/websocket/v1"
rest_url = "http://127.0.0.1:9"
[venues.binance]
ws_url = "ws://127.0.0.1:9"
rest_url = "http://127.0.0.1:9"

[[coins]]
name = "BTC"
upbit = "KRW-BTC"
binance = "BTCUSDT"

[strategy]
entry_bps = 300
"#;

/// The four key variables of the default `[keys]` section.
const KEY_VARS: [&str; 4] = [
    "KIMP_UPBIT_ACCESS_KEY",
    "KIMP_UPBIT_SECRET_KEY",
    "KIMP_BINANCE_API_KEY",
    "KIMP_BINANCE_SECRET_KEY",
];

/// Runs the binary with a 20 s limit and no key variables set; returns (exit code,
/// stdout, stderr).
fn kimp(args: &[&str], cwd: &Path) -> (i32, String, String) {
    kimp_env(args, cwd, &[])
}

/// [`kimp`] with these variables set.
fn kimp_env(args: &[&str], cwd: &Path, vars: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kimp"));
    cmd.args(args).current_dir(cwd);
    for v in KEY_VARS {
        cmd.env_remove(v);
    }
    cmd.envs(vars.iter().copied());
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("kimp binary");
    let end = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            panic!("kimp {args:?} did not exit within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `text` as `name` in `d` (the journal kept inside `d`).
fn write(d: &Path, name: &str, text: &str) -> PathBuf {
    let p = d.join(name);
    std::fs::write(&p, text.replace("JOURNAL", &d.join("journal").display().to_string()))
        .expect("write");
    p
}

/// `kimp check` and `kimp run` on `file` both fail with one line naming `file`, then
/// `":{line}:"` when given, then every string of `must`.
fn refused(d: &Path, file: &Path, line: Option<usize>, must: &[&str]) -> String {
    let f = file.to_str().expect("utf-8 path");
    let mut first = String::new();
    for cmd in ["check", "run"] {
        let (code, stdout, stderr) = kimp(&[cmd, "--config", f], d);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_ne!(code, 0, "kimp {cmd} accepted {f}: {stdout}{stderr}");
        assert_eq!(lines.len(), 1, "kimp {cmd}: not one line:\n{stderr}");
        let msg = lines[0];
        let at = format!("kimp: {f}");
        assert!(msg.starts_with(&at), "kimp {cmd}: the file is not named first: {msg}");
        if let Some(l) = line {
            assert!(
                msg[at.len()..].starts_with(&format!(":{l}:")),
                "kimp {cmd}: no line {l}: {msg}"
            );
        }
        for m in must {
            assert!(msg.contains(m), "kimp {cmd}: {m:?} missing in: {msg}");
        }
        assert!(stdout.trim().is_empty(), "kimp {cmd} printed: {stdout}");
        assert!(!d.join("journal").exists(), "kimp {cmd} created a journal before failing");
        if first.is_empty() {
            first = msg.to_string();
        }
    }
    first
}

/// The key variables set to placeholder values (the check never sends them anywhere).
fn keys_set() -> Vec<(&'static str, &'static str)> {
    KEY_VARS.iter().map(|v| (*v, "placeholder-not-a-key")).collect()
}

#[test]
fn a_valid_file_passes_check_and_its_settings_are_printed_for_people() {
    let d = dir("good");
    let f = write(&d, "good.toml", GOOD);
    let (code, stdout, stderr) =
        kimp_env(&["check", "--config", f.to_str().unwrap()], &d, &keys_set());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains(": OK"), "{stdout}");
    // Settings as `key = value` lines with their meaning, not Rust's Debug of the structs.
    for debug in ["StrategyConfig", "RiskConfig", " { ", "SellPremium", "Rehedge", "UpbitUsdt"] {
        assert!(!stdout.contains(debug), "Rust Debug output ({debug:?}):\n{stdout}");
    }
    for want in [
        "[strategy]",
        "direction = \"sell_premium\"",
        "entry_bps = 300",
        "3.00 %",
        "[risk]",
        "one_leg_policy = \"rehedge\"",
        "KRW-BTC / BTCUSDT",
    ] {
        assert!(stdout.contains(want), "{want:?} missing:\n{stdout}");
    }
    let pairs = stdout.lines().find(|l| l.starts_with("max_open_pairs = 3")).unwrap();
    assert!(pairs.contains("one pair at a time") && pairs.contains("at most 1"), "{pairs}");
    assert!(!stdout.contains("placeholder-not-a-key"), "a key was printed");
    assert!(!d.join("journal").exists(), "kimp check created the journal");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn coins_whose_markets_are_of_another_coin_are_refused() {
    let d = dir("coins");
    let f = write(&d, "upbit.toml", &GOOD.replace("upbit = \"KRW-BTC\"", "upbit = \"KRW-ETH\""));
    let shown = refused(&d, &f, Some(13), &["coins.upbit", "\"KRW-ETH\"", "BTC", "\"KRW-BTC\""]);
    println!("FIGURE bad_config: {shown}");
    let f =
        write(&d, "binance.toml", &GOOD.replace("binance = \"BTCUSDT\"", "binance = \"ETHUSDT\""));
    refused(&d, &f, Some(14), &["coins.binance", "\"ETHUSDT\"", "\"BTCUSDT\""]);
    // A second coin's mistake is located in its own table (line 19, not the first coin's).
    let two = GOOD.replace(
        "binance = \"BTCUSDT\"\n",
        "binance = \"BTCUSDT\"\n\n[[coins]]\nname = \"ETH\"\nupbit = \"KRW-ETH\"\nbinance = \"BTCUSDT\"\n",
    );
    let f = write(&d, "second.toml", &two);
    refused(&d, &f, Some(19), &["coins.binance", "ETH", "\"ETHUSDT\""]);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn every_missing_key_variable_is_named_in_one_error() {
    let d = dir("env");
    let f = write(&d, "env.toml", GOOD);
    let fs = f.to_str().unwrap();
    // One variable set: the other three are named, by `kimp check` and by `kimp run`.
    let one = [(KEY_VARS[0], "placeholder-not-a-key")];
    for cmd in ["check", "run"] {
        let (code, stdout, stderr) = kimp_env(&[cmd, "--config", fs], &d, &one);
        assert_ne!(code, 0, "kimp {cmd} without keys: {stdout}{stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "kimp {cmd}: not one line:\n{stderr}");
        for v in &KEY_VARS[1..] {
            assert!(lines[0].contains(v), "kimp {cmd}: {v} not named: {}", lines[0]);
        }
        assert!(!lines[0].contains(KEY_VARS[0]), "a set variable named: {}", lines[0]);
        assert!(!lines[0].contains("placeholder-not-a-key"), "a key was printed");
        assert!(!d.join("journal").exists(), "kimp {cmd} created a journal before failing");
        println!("FIGURE bad_config: kimp {cmd}: {}", lines[0]);
    }
    let (_, _, stderr) = kimp(&["check", "--config", fs], &d);
    assert!(stderr.starts_with(&format!("kimp: {fs}: keys: ")), "{stderr}");
    assert!(KEY_VARS.iter().all(|v| stderr.contains(v)), "{stderr}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_journal_directory_that_cannot_be_created_is_refused_by_check() {
    let d = dir("journal");
    // A regular file where a directory of the journal path should be: nothing can create
    // the journal under it, whoever runs the check (root included).
    let blocker = d.join("blocker");
    std::fs::write(&blocker, "not a directory").unwrap();
    for (name, journal) in [("under-file", blocker.join("journal")), ("is-file", blocker.clone())] {
        let text = GOOD.replace("JOURNAL", &journal.display().to_string());
        let f = write(&d, &format!("{name}.toml"), &text);
        let fs = f.to_str().unwrap();
        let (code, stdout, stderr) = kimp_env(&["check", "--config", fs], &d, &keys_set());
        assert_ne!(code, 0, "kimp check accepted journal_dir {}: {stdout}", journal.display());
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "not one line:\n{stderr}");
        assert!(
            lines[0].starts_with(&format!("kimp: {fs}:2: runtime.journal_dir: ")),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("is not a directory"), "{}", lines[0]);
        assert!(lines[0].contains(blocker.to_str().unwrap()), "{}", lines[0]);
        assert!(stdout.trim().is_empty(), "{stdout}");
        println!("FIGURE bad_config: {}", lines[0]);
    }
    // A journal directory that does not exist yet under a writable one passes (and is not
    // created by the check).
    let f = write(
        &d,
        "fresh.toml",
        &GOOD.replace("JOURNAL", &d.join("new/journal").display().to_string()),
    );
    let (code, stdout, stderr) =
        kimp_env(&["check", "--config", f.to_str().unwrap()], &d, &keys_set());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!d.join("new").exists(), "the check created the journal directory");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_fraction_for_an_integer_key_says_an_integer_was_expected() {
    let d = dir("integer");
    let f = write(&d, "frac.toml", &GOOD.replace("entry_bps = 300", "entry_bps = 3.5"));
    let shown = refused(&d, &f, Some(17), &["strategy.entry_bps", "3.5", "expected an integer"]);
    assert!(!shown.contains("i64"), "Rust type name shown: {shown}");
    println!("FIGURE bad_config: {shown}");
    let f =
        write(&d, "neg.toml", &GOOD.replace("entry_bps = 300", "entry_bps = 300\nleverage = -1"));
    let shown =
        refused(&d, &f, Some(18), &["strategy.leverage", "expected an integer (0 or more)"]);
    assert!(!shown.contains("u32"), "Rust type name shown: {shown}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn config_errors_name_file_line_and_key_with_a_non_zero_exit() {
    let d = dir("errors");
    let mut shown = Vec::new();
    // Unknown key (line 18 of the edited file).
    let f = write(
        &d,
        "unknown.toml",
        &GOOD.replace("entry_bps = 300", "entry_bps = 300\nentry_pct = 3"),
    );
    shown.push(refused(&d, &f, Some(18), &["strategy.entry_pct", "unknown field"]));
    // Wrong type.
    let f = write(&d, "type.toml", &GOOD.replace("entry_bps = 300", "entry_bps = \"high\""));
    shown.push(refused(&d, &f, Some(17), &["strategy.entry_bps", "invalid type"]));
    // Out of range: the value is shown too.
    let f = write(&d, "range.toml", &GOOD.replace("entry_bps = 300", "entry_bps = 9000"));
    shown.push(refused(&d, &f, Some(17), &["strategy.entry_bps", "9000", "outside"]));
    // A section of the wrong shape (a table where a list of tables belongs).
    let f = write(&d, "shape.toml", &GOOD.replace("[[coins]]", "[coins]"));
    shown.push(refused(&d, &f, Some(11), &["coins"]));
    // Missing file.
    let f = d.join("missing.toml");
    shown.push(refused(&d, &f, None, &["cannot read", "No such file"]));
    // Not TOML at all.
    let f = write(&d, "json.toml", "{\"venues\": {\"upbit\": 1}}\n");
    shown.push(refused(&d, &f, Some(1), &[]));
    for s in &shown {
        println!("FIGURE bad_config: {s}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_world_readable_secrets_file_is_refused_without_echoing_it() {
    let d = dir("secrets");
    const CANARY: &str = "CANARY-SECRET-0123456789abcdef";
    let secrets = d.join("secrets.toml");
    std::fs::write(
        &secrets,
        format!(
            "upbit_access_key = \"{CANARY}-ua\"\nupbit_secret_key = \"{CANARY}-us\"\n\
             binance_api_key = \"{CANARY}-ba\"\nbinance_secret_key = \"{CANARY}-bs\"\n"
        ),
    )
    .expect("write");
    let cfg = GOOD.replace(
        "[venues.upbit]",
        &format!("[keys]\nsource = \"file\"\nfile = \"{}\"\n\n[venues.upbit]", secrets.display()),
    );
    let f = write(&d, "cfg.toml", &cfg);
    let fs = f.to_str().unwrap();
    // Owner-only: `kimp check` accepts it (so the refusal below is about the mode).
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, stdout, stderr) = kimp(&["check", "--config", fs], &d);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stdout.contains(CANARY) && !stderr.contains(CANARY), "a key was printed");
    // World-readable: both commands refuse, naming the file and its mode, never its content.
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o644)).unwrap();
    for cmd in ["check", "run"] {
        let (code, stdout, stderr) = kimp(&[cmd, "--config", fs], &d);
        assert_ne!(code, 0, "kimp {cmd} accepted a 0644 secrets file");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "kimp {cmd}: not one line:\n{stderr}");
        assert!(lines[0].contains("0644"), "{}", lines[0]);
        assert!(lines[0].contains(secrets.to_str().unwrap()), "{}", lines[0]);
        assert!(!stdout.contains(CANARY) && !stderr.contains(CANARY), "a key was printed");
        assert!(!d.join("journal").exists(), "kimp {cmd} created a journal before failing");
        println!("FIGURE bad_config: kimp {cmd}: {}", lines[0]);
    }
    let _ = std::fs::remove_dir_all(&d);
}
