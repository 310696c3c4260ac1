//! Driving the real `kimp run` binary against the in-process venue simulator, as
//! tests/crash.rs does: a config from config/demo.toml pointed at the simulator and a
//! temporary directory, the child's log in a file, `kimp ctl` as a child too.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kimp::sim::SimHandle;

/// Writes a config for `sim` under `dir` (journal in `dir/journal`); `edit` changes the
/// text further.
pub fn config(sim: &SimHandle, dir: &Path, edit: impl FnOnce(String) -> String) -> PathBuf {
    let u = &sim.urls;
    let text = include_str!("../../../config/demo.toml")
        .replace("ws://127.0.0.1:18001/websocket/v1", &u.upbit_ws)
        .replace("http://127.0.0.1:18001", &u.upbit_rest)
        .replace("ws://127.0.0.1:18003", &u.binance_ws)
        .replace("http://127.0.0.1:18003", &u.binance_rest)
        .replace("data/demo/journal", &dir.join("journal").display().to_string())
        .replace("data/demo/ilp", &dir.join("ilp").display().to_string())
        .replace("busy_poll = true", "busy_poll = false")
        .replace("journal_segment_mib = 64", "journal_segment_mib = 4")
        .replace("exit_min_profit_krw = 20000", "exit_min_profit_krw = 0");
    let p = dir.join("run.toml");
    std::fs::write(&p, edit(text)).unwrap();
    p
}

/// A `kimp run` child, killed if the test ends without stopping it.
#[derive(Debug)]
pub struct Run {
    /// The child.
    pub child: Child,
    /// Its stderr.
    pub log: PathBuf,
}

impl Run {
    /// Starts `kimp run --config cfg`, logging to `log`.
    pub fn spawn(cfg: &Path, log: &Path) -> Run {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kimp"));
        c.args(["run", "--config"]).arg(cfg);
        c.env("KIMP_UPBIT_ACCESS_KEY", "kimp-sim-key")
            .env("KIMP_UPBIT_SECRET_KEY", "kimp-sim-secret")
            .env("KIMP_BINANCE_API_KEY", "kimp-sim-key")
            .env("KIMP_BINANCE_SECRET_KEY", "kimp-sim-secret")
            .env_remove("KIMP_FAILPOINT")
            .env_remove("RUST_LOG");
        c.stdout(Stdio::null()).stderr(Stdio::from(std::fs::File::create(log).unwrap()));
        Run { child: c.spawn().expect("spawn kimp run"), log: log.to_owned() }
    }

    /// The log so far.
    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The first log line containing `needle`, waiting up to `secs` for it.
    pub fn wait_log(&self, needle: &str, secs: u64) -> Option<String> {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if let Some(l) = self.text().lines().find(|l| l.contains(needle)) {
                return Some(l.to_owned());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Sends `sig` to the child.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with the child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits up to `secs` for the child to exit.
    pub fn wait_exit(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `kimp ARGS...` to completion.
pub fn kimp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kimp"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run kimp")
}

/// `kimp ctl --socket PATH ARGS...`: (exit ok, stdout, stderr).
pub fn ctl(socket: &Path, args: &[&str]) -> (bool, String, String) {
    let s = socket.display().to_string();
    let mut all = vec!["ctl", "--socket", s.as_str()];
    all.extend_from_slice(args);
    let o = kimp(&all);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Polls `f` every 20 ms for up to `secs`.
pub fn wait_for(secs: f64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}
