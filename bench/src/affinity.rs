//! Thread pinning. `core_affinity::get_core_ids()` reports the *calling thread's* mask,
//! so the CPU list is read once in `main` before anything is pinned, and the full mask is
//! restored before threads or child processes are started (both inherit the mask).

use core_affinity::CoreId;

/// The CPUs this process may use, read once at start-up.
#[derive(Debug, Clone)]
pub struct Cpus {
    /// All CPUs.
    pub all: Vec<CoreId>,
}

impl Cpus {
    /// Reads the CPU list (call before pinning anything).
    pub fn read() -> Self {
        Self { all: core_affinity::get_core_ids().unwrap_or_default() }
    }

    /// The CPU a measuring thread is pinned to: the last one (the first usually takes
    /// more interrupts), or `want` when given.
    pub fn hot(&self, want: Option<usize>) -> Option<CoreId> {
        match want {
            Some(w) => self.all.iter().copied().find(|c| c.id == w),
            None => self.all.last().copied(),
        }
    }

    /// Pins the calling thread; returns the CPU id when it worked.
    pub fn pin(&self, want: Option<usize>) -> Option<usize> {
        let c = self.hot(want)?;
        core_affinity::set_for_current(c).then_some(c.id)
    }

    /// Gives the calling thread every CPU back.
    pub fn unpin(&self) {
        // SAFETY: `cpu_set_t` is plain data; CPU_ZERO/CPU_SET only write inside it and
        // sched_setaffinity reads it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_ZERO(&mut set);
            for c in &self.all {
                libc::CPU_SET(c.id, &mut set);
            }
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}
