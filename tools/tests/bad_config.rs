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

/// Runs the binary with a 20 s limit; returns (exit code, stdout, stderr).
fn kimp(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kimp"))
        .args(args)
        .current_dir(cwd)
        .env_remove("KIMP_UPBIT_ACCESS_KEY")
        .env_remove("KIMP_UPBIT_SECRET_KEY")
        .env_remove("KIMP_BINANCE_API_KEY")
        .env_remove("KIMP_BINANCE_SECRET_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kimp binary");
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

#[test]
fn a_valid_file_passes_check() {
    let d = dir("good");
    let f = write(&d, "good.toml", GOOD);
    let (code, stdout, stderr) = kimp(&["check", "--config", f.to_str().unwrap()], &d);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains(": OK"), "{stdout}");
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
