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
