//! Thread supervision: every simulator thread (the clock, the two accept loops, each
//! connection, each replay) runs under [`spawn`]. A panic in any of them is caught,
//! recorded as a [`ThreadFailure`] naming the thread, and stops the whole simulator, so
//! a dead clock can never leave a live process serving a frozen market. Callers learn of
//! it through [`crate::sim::SimHandle::failure`]; `kimp sim` exits non-zero with it.
//!
//! A test-only failpoint makes a named thread panic on purpose: it is inert unless the
//! environment variable `KIMP_SIM_PANIC` is set when the simulator starts.
//! `KIMP_SIM_PANIC=sim-clock@50` panics the clock at its 50th market step; the other
//! names are `sim-upbit`, `sim-binance` (accept loops, per accepted connection),
//! `sim-upbit-conn`, `sim-binance-conn` (per request) and `sim-replay` (per event).

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::{self, JoinHandle};

use super::server::lock;

/// The environment variable that arms the panic failpoint (`THREAD[@N]`).
pub const ENV: &str = "KIMP_SIM_PANIC";

/// A simulator thread that panicked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadFailure {
    /// The thread's name (`sim-clock`, `sim-upbit-conn`, ...).
    pub thread: String,
    /// The panic message.
    pub message: String,
}

impl fmt::Display for ThreadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "simulator thread '{}' panicked: {}", self.thread, self.message)
    }
}

impl std::error::Error for ThreadFailure {}

/// The first failure of a simulator and the stop flag it raises.
#[derive(Debug, Default)]
pub struct Supervisor {
    failed: AtomicBool,
    first: Mutex<Option<ThreadFailure>>,
}

impl Supervisor {
    /// Records a failure (the first one is kept) and raises `stop`.
    pub fn fail(&self, failure: ThreadFailure, stop: &AtomicBool) {
        {
            let mut first = lock(&self.first);
            if first.is_none() {
                *first = Some(failure);
            }
        }
        self.failed.store(true, Ordering::Release);
        stop.store(true, Ordering::Release);
    }

    /// The first thread that panicked, if any.
    pub fn failure(&self) -> Option<ThreadFailure> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.first).clone()
    }
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
pub fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Spawns a named thread that hands its panic, as a [`ThreadFailure`], to `on_panic`.
pub fn spawn<F, P>(name: &str, on_panic: P, f: F) -> std::io::Result<JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
    P: FnOnce(ThreadFailure) + Send + 'static,
{
    let owned = name.to_owned();
    thread::Builder::new().name(owned.clone()).spawn(move || {
        if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
            on_panic(ThreadFailure { thread: owned, message: panic_message(p.as_ref()) });
        }
    })
}

#[derive(Debug)]
struct Armed {
    thread: String,
    nth: u64,
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn armed() -> Option<&'static Armed> {
    ARMED
        .get_or_init(|| {
            let v = std::env::var(ENV).ok().filter(|v| !v.is_empty())?;
            let (thread, nth) = match v.split_once('@') {
                Some((t, n)) => (t.to_owned(), n.parse().unwrap_or(1)),
                None => (v, 1),
            };
            Some(Armed { thread, nth: nth.max(1) })
        })
        .as_ref()
}

/// The failpoint: panics on the N-th pass of thread kind `thread` when `KIMP_SIM_PANIC`
/// names it. One load of an initialised `OnceLock` when unset.
#[inline]
pub fn checkpoint(thread: &str) {
    if let Some(a) = armed()
        && a.thread == thread
        && HITS.fetch_add(1, Ordering::Relaxed) + 1 == a.nth
    {
        panic!("{ENV} failpoint: {thread} pass {}", a.nth);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_panicking_thread_is_named_and_raises_stop() {
        let sup = Arc::new(Supervisor::default());
        let stop = Arc::new(AtomicBool::new(false));
        let run = |name: &str, f: Box<dyn FnOnce() + Send>| {
            let (sup, stop) = (sup.clone(), stop.clone());
            spawn(name, move |e| sup.fail(e, &stop), f).unwrap().join().unwrap();
        };
        run("sim-test", Box::new(|| {}));
        assert_eq!(sup.failure(), None);
        assert!(!stop.load(Ordering::Relaxed));
        let v: Vec<u64> = Vec::new();
        run("sim-test", Box::new(move || assert_eq!(v[3], 0)));
        let f = sup.failure().expect("recorded");
        assert_eq!(f.thread, "sim-test");
        assert!(f.message.contains("index out of bounds"), "{f}");
        assert!(f.to_string().starts_with("simulator thread 'sim-test' panicked: "), "{f}");
        assert!(stop.load(Ordering::Relaxed));
        run("sim-other", Box::new(|| panic!("second")));
        assert_eq!(sup.failure().unwrap().thread, "sim-test", "the first failure is kept");
    }
}
