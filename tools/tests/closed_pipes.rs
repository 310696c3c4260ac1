//! Closed pipes through the real binary (issue #14, item 8): `kimp demo` whose stdout and
//! stderr go to a pipe that the reader closes after two lines (`kimp demo 2>&1 | head -2`)
//! must exit within a couple of seconds — it used to hang at 100 % CPU after `eprintln!`
//! panicked inside `thread::scope` — and `kimp run` whose output goes to a closed pipe must
//! stop cleanly instead of exiting 101 from a panic. Both end with status 141 (128 +
//! SIGPIPE, what a shell reports for a tool a closed pipe ended).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kimp::runtime::demo::demo_sim;
use kimp::runtime::output::CLOSED_EXIT;
use kimp::sim::Simulator;
use kimp::sim::config::CoinSpec;

/// A pipe (read end, write end), both close-on-exec so no other test's child keeps
/// either end open.
fn pipe() -> (File, File) {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes; each is owned by one
    // `File` from here on.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2");
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kimp-pipes-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Waits up to `limit` for the child; kills it and returns None otherwise.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn demo_into_a_pipe_closed_after_two_lines_exits_quickly() {
    let d = dir("demo");
    let (r, w) = pipe();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kimp"))
        .args(["demo", "--duration", "5s"])
        .current_dir(&d)
        .stdin(Stdio::null())
        .stdout(Stdio::from(w.try_clone().unwrap()))
        .stderr(Stdio::from(w))
        .spawn()
        .expect("kimp demo");
    // `head -2`: read two lines, then close the pipe.
    let mut reader = BufReader::new(r);
    let mut lines = Vec::new();
    for _ in 0..2 {
        let mut l = String::new();
        if reader.read_line(&mut l).unwrap_or(0) == 0 {
            break;
        }
        lines.push(l);
    }
    drop(reader);
    let closed_at = Instant::now();
    let status = wait_exit(&mut child, Duration::from_secs(4));
    let took = closed_at.elapsed();
    let _ = std::fs::remove_dir_all(&d);
    let status = status.unwrap_or_else(|| {
        panic!("kimp demo still running 4 s after its pipe closed (read: {lines:?})")
    });
    println!(
        "FIGURE pipes demo: exit {:?} {} ms after the pipe closed",
        status.code(),
        took.as_millis()
    );
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(status.code(), Some(CLOSED_EXIT), "{status:?}");
    // --duration 5s would end the demo ~5 s after start; the closed pipe ended it sooner.
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn run_with_its_output_to_a_closed_pipe_stops_cleanly() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut sc = demo_sim(5, 1.0);
    sc.coins = vec![CoinSpec::btc()];
    let sim = Simulator::start(sc).expect("simulator");
    let d = dir("run");
    let u = &sim.urls;
    let text = include_str!("../../config/demo.toml")
        .replace("ws://127.0.0.1:18001/websocket/v1", &u.upbit_ws)
        .replace("http://127.0.0.1:18001", &u.upbit_rest)
        .replace("ws://127.0.0.1:18003", &u.binance_ws)
        .replace("http://127.0.0.1:18003", &u.binance_rest)
        .replace("data/demo/journal", &d.join("journal").display().to_string())
        .replace("data/demo/ilp", &d.join("ilp").display().to_string())
        .replace("busy_poll = true", "busy_poll = false")
        .replace("journal_segment_mib = 64", "journal_segment_mib = 4");
    let cfg: &Path = &d.join("run.toml");
    std::fs::write(cfg, text).unwrap();
    let (r, w) = pipe();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kimp"))
        .args(["run", "--config"])
        .arg(cfg)
        .env("KIMP_UPBIT_ACCESS_KEY", "kimp-sim-key")
        .env("KIMP_UPBIT_SECRET_KEY", "kimp-sim-secret")
        .env("KIMP_BINANCE_API_KEY", "kimp-sim-key")
        .env("KIMP_BINANCE_SECRET_KEY", "kimp-sim-secret")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::from(w.try_clone().unwrap()))
        .stderr(Stdio::from(w))
        .spawn()
        .expect("kimp run");
    // `head -1`.
    let mut first = String::new();
    let _ = BufReader::new(r).read_line(&mut first);
    let closed_at = Instant::now();
    let status = wait_exit(&mut child, Duration::from_secs(10));
    let took = closed_at.elapsed();
    drop(sim);
    let _ = std::fs::remove_dir_all(&d);
    let status =
        status.unwrap_or_else(|| panic!("kimp run still running 10 s after its pipe closed"));
    println!(
        "FIGURE pipes run: exit {:?} {} ms after the pipe closed",
        status.code(),
        took.as_millis()
    );
    assert!(!first.is_empty(), "kimp run wrote nothing");
    assert_ne!(status.code(), Some(101), "kimp run panicked");
    assert_eq!(status.code(), Some(CLOSED_EXIT), "{status:?}");
}
