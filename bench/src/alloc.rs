//! A counting global allocator: counts allocations made by threads that opted in, so a
//! harness can report how many allocations its measured phase made (the same approach as
//! core/tests/no_alloc.rs, limited to the measuring thread so other threads' start-up and
//! logging do not blur the figure).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The allocator (installed in main.rs).
#[derive(Debug)]
pub struct Counting;

static COUNT: AtomicU64 = AtomicU64::new(0);
static TRACE: AtomicBool = AtomicBool::new(false);

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
}

#[inline]
fn note(l: Layout) {
    if ON.with(Cell::get) {
        COUNT.fetch_add(1, Ordering::Relaxed);
        if TRACE.load(Ordering::Relaxed) {
            trace(l);
        }
    }
}

/// Prints where a counted allocation came from. Counting is off meanwhile, so the
/// backtrace's own allocations are neither counted nor traced.
#[cold]
#[inline(never)]
fn trace(l: Layout) {
    ON.with(|c| c.set(false));
    let bt = std::backtrace::Backtrace::force_capture();
    eprintln!("counted allocation of {} bytes:\n{bt}", l.size());
    ON.with(|c| c.set(true));
}

/// Prints a backtrace for every counted allocation from now on (`KIMP_BENCH_ALLOC_TRACE=1`).
pub fn trace_each() {
    TRACE.store(true, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter only
// reads a const-initialised thread-local (no allocation) and bumps an atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note(l);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        note(l);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

/// Starts counting the calling thread's allocations; returns the counter's value now.
pub fn start() -> u64 {
    ON.with(|c| c.set(true));
    COUNT.load(Ordering::Relaxed)
}

/// Stops counting on this thread; returns allocations since `start` returned `since`.
pub fn stop(since: u64) -> u64 {
    ON.with(|c| c.set(false));
    COUNT.load(Ordering::Relaxed) - since
}
