//! Named crash points for the crash tests (RELIABILITY.md R8).
//!
//! The runtime calls [`hit`] at a few places (after an entry intent is journaled, after
//! each entry leg is written to its socket, after a fill is journaled) and [`fires`]
//! inside the journal append. Everything is inert unless the environment variable
//! `KIMP_FAILPOINT` is set when the process starts: `KIMP_FAILPOINT=after_intent` kills the
//! process with SIGKILL the first time that point is reached, `NAME@N` the N-th time. The
//! cost when unset is one load of an initialised `OnceLock`.
//!
//! Names: `after_intent`, `after_leg1_sent`, `after_leg2_sent`, `after_fill`,
//! `torn_append` (an order record is half written — its checksum never lands — and the
//! process dies before the order is sent).
//!
//! Storage faults do not kill: `journal_enospc@N` makes the N-th journal segment
//! reservation and every later one fail with ENOSPC (a disk that stays full; R13).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a failpoint.
pub const ENV: &str = "KIMP_FAILPOINT";

#[derive(Debug)]
struct Armed {
    name: String,
    nth: u64,
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn armed() -> Option<&'static Armed> {
    ARMED
        .get_or_init(|| {
            let v = std::env::var(ENV).ok().filter(|v| !v.is_empty())?;
            let (name, nth) = match v.split_once('@') {
                Some((n, k)) => (n.to_owned(), k.parse().unwrap_or(1)),
                None => (v, 1),
            };
            Some(Armed { name, nth: nth.max(1) })
        })
        .as_ref()
}

/// True when failpoint `name` is armed and this is the hit it waits for.
#[inline]
pub fn fires(name: &str) -> bool {
    match armed() {
        Some(a) if a.name == name => HITS.fetch_add(1, Ordering::Relaxed) + 1 == a.nth,
        _ => false,
    }
}

/// True when failpoint `name` is armed and this hit is the N-th or a later one (a fault
/// that persists once it started, like a full disk).
#[inline]
pub fn from(name: &str) -> bool {
    match armed() {
        Some(a) if a.name == name => HITS.fetch_add(1, Ordering::Relaxed) + 1 >= a.nth,
        _ => false,
    }
}

/// Kills the process with SIGKILL when failpoint `name` fires.
#[inline]
pub fn hit(name: &str) {
    if fires(name) {
        kill(name);
    }
}

/// SIGKILLs the calling process (no destructors, no flush: a crash).
pub fn kill(name: &str) -> ! {
    eprintln!("failpoint {name}: SIGKILL");
    // SAFETY: raise has no memory-safety preconditions.
    unsafe {
        libc::raise(libc::SIGKILL);
    }
    std::process::abort()
}
