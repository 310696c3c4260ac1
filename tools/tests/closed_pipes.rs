//! Closed pipes through the real binary (issue #14, item 8): `kimp demo` whose stdout and
//! stderr go to a pipe that the reader closes after two lines (`kimp demo 2>&1 | head -2`)
//! must exit within a couple of seconds — it used to hang at 100 % CPU after `eprintln!`
//! panicked inside `thread::scope` — and `kimp run` whose output goes to a closed pipe must
//! stop cleanly instead of exiting 101 from a panic. Both end with status 141 (128 +
//! SIGPIPE, what a shell reports for a tool a closed pipe ended).

mod kimp_run;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::FromRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kimp::runtime::output::CLOSED_EXIT;
use kimp_run::Run;

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

#[test]
fn demo_into_a_pipe_closed_after_two_lines_exits_quickly() {
    let d = tempfile::tempdir().unwrap();
    let (r, w) = pipe();
    let child = Command::new(env!("CARGO_BIN_EXE_kimp"))
        .args(["demo", "--duration", "5s"])
        .current_dir(d.path())
        .stdin(Stdio::null())
        .stdout(Stdio::from(w.try_clone().unwrap()))
        .stderr(Stdio::from(w))
        .spawn()
        .expect("kimp demo");
    let mut child = Run::adopt(child);
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
    let status = child.wait_exit(4);
    let took = closed_at.elapsed();
    drop(child);
    drop(d);
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
    let sim = kimp_run::sim(5, |_| {});
    let d = tempfile::tempdir().unwrap();
    let cfg = kimp_run::demo_config(&sim, d.path(), |t| t);
    let (r, w) = pipe();
    let child = kimp_run::command(&cfg)
        .stdout(Stdio::from(w.try_clone().unwrap()))
        .stderr(Stdio::from(w))
        .spawn()
        .expect("kimp run");
    let mut child = Run::adopt(child);
    // `head -1`.
    let mut first = String::new();
    let _ = BufReader::new(r).read_line(&mut first);
    let closed_at = Instant::now();
    let status = child.wait_exit(10);
    let took = closed_at.elapsed();
    drop(child);
    drop(sim);
    drop(d);
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
