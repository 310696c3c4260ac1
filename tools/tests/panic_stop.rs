//! A panic in any thread stops the run (issue #14: `kimp demo` runs the simulator and the
//! runtime in one process; a panicking thread must end it with a message, not leave the
//! others busy-polling). `output::watch` installs the process-wide hook that does it; this
//! test binary has the process to itself, so the hook sees only this test's threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kimp::runtime::output;

#[test]
fn a_panic_in_any_thread_raises_the_stop_flag_and_is_reported() {
    let stop = Arc::new(AtomicBool::new(false));
    output::watch(&stop);
    assert!(!stop.load(Ordering::Relaxed) && output::panicked().is_none());
    let t = std::thread::Builder::new()
        .name("sim-clock".into())
        .spawn(|| panic!("the market clock broke"))
        .unwrap();
    assert!(t.join().is_err());
    assert!(stop.load(Ordering::Relaxed), "the stop flag was not raised");
    let p = output::panicked().expect("the panic was recorded");
    assert!(p.starts_with("thread 'sim-clock' panicked at "), "{p}");
    assert!(p.ends_with(": the market clock broke"), "{p}");
    // A panic caught by its thread (a supervised simulator thread) still stops the run,
    // and the first panic is the one reported.
    let caught = std::thread::spawn(|| std::panic::catch_unwind(|| panic!("second")).is_err());
    assert!(caught.join().unwrap());
    assert!(output::panicked().unwrap().ends_with("the market clock broke"));
    assert!(!output::closed(), "a panic is not a closed output");
}

/// Through the binary: the simulator's clock thread panics inside `kimp demo`; the demo
/// must stop with exit 1 and the thread named, not stay up with a frozen market.
#[test]
fn a_simulator_panic_inside_kimp_demo_ends_it_with_exit_1_and_the_thread_named() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kimp"))
        .args(["demo", "--duration", "60s"])
        // The demo writes its journal and store under ./data/demo: keep them in the tempdir.
        .current_dir(dir.path())
        .env("KIMP_SIM_PANIC", "sim-clock@50")
        .env("TMPDIR", dir.path())
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kimp demo still running 30 s after its simulator clock panicked");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("kimp: the demo stopped: thread 'sim-clock' panicked"), "{err}");
    println!("FIGURE demo sim panic: exit 1 after {:?}", t0.elapsed());
}
