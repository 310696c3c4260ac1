//! What ends a process besides an operator: its output going away, or a thread panicking.
//!
//! The trading commands ignore SIGPIPE (a closed venue socket must be an error value, not a
//! signal), so a closed stdout or stderr (`kimp demo | head -2`, a log reader that quit)
//! shows up as write errors. `println!`/`eprintln!` panic on those, and a panic inside a
//! scoped thread or a tracing layer leaves the other threads busy-polling: a frozen,
//! 100 %-CPU process. So every line the runtime writes goes through here: a failed write
//! marks the output closed and raises the run's stop flag, the run shuts down as on
//! Ctrl-C, and `main` exits with [`CLOSED_EXIT`]. A panic in any thread raises the same
//! flag through a process-wide hook and is reported once the run has stopped.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Exit status after the output was closed: 128 + SIGPIPE, what a shell reports for a
/// Unix tool that SIGPIPE ended (and non-zero, so a supervisor restarts a live run).
pub const CLOSED_EXIT: i32 = 141;

static CLOSED: AtomicBool = AtomicBool::new(false);
static STOPS: Mutex<Vec<Arc<AtomicBool>>> = Mutex::new(Vec::new());
static PANIC: Mutex<Option<String>> = Mutex::new(None);
static HOOK: OnceLock<()> = OnceLock::new();

/// Raises `stop` when the output closes or any thread panics (installs the panic hook
/// once per process; the default hook still prints the panic).
pub fn watch(stop: &Arc<AtomicBool>) {
    HOOK.get_or_init(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CLOSED.load(Ordering::Relaxed) {
                default(info);
            }
            let thread = std::thread::current();
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line()));
            let text = format!(
                "thread '{}' panicked{}: {msg}",
                thread.name().unwrap_or("?"),
                at.unwrap_or_default()
            );
            let mut first = PANIC.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert(text);
            drop(first);
            raise();
        }));
    });
    STOPS.lock().unwrap_or_else(|e| e.into_inner()).push(stop.clone());
    if CLOSED.load(Ordering::Relaxed) {
        stop.store(true, Ordering::Relaxed);
    }
}

fn raise() {
    for s in STOPS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        s.store(true, Ordering::Relaxed);
    }
}

/// Marks the output closed and raises every watched stop flag.
fn closed_now() {
    CLOSED.store(true, Ordering::Relaxed);
    raise();
}

/// True once a write to stdout or stderr failed.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// The first panic seen in any thread (thread name, place, message).
pub fn panicked() -> Option<String> {
    PANIC.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn write_to(mut w: impl Write, s: &[u8]) -> bool {
    if closed() {
        return false;
    }
    match w.write_all(s).and_then(|()| w.flush()) {
        Ok(()) => true,
        Err(_) => {
            closed_now();
            false
        }
    }
}

/// Writes `s` to stdout; false (and the output marked closed) when it failed.
pub fn out(s: &str) -> bool {
    write_to(io::stdout().lock(), s.as_bytes())
}

/// Writes `s` to stderr; false (and the output marked closed) when it failed.
pub fn err(s: &str) -> bool {
    write_to(io::stderr().lock(), s.as_bytes())
}

/// A tracing writer for stderr that turns a failed write into a stop instead of an
/// `eprintln!` panic inside the subscriber (`tracing_subscriber::fmt().with_writer`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The log line is lost either way; the subscriber must not report it.
        write_to(io::stderr().lock(), buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        Stderr
    }
}
