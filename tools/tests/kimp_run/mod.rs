//! Driving the real `kimp run` binary against the in-process venue simulator: a BTC-only
//! simulator, a config from config/demo.toml pointed at it and a temporary directory, the
//! child's log in a file, `kimp ctl` as a child too; and the runtime built in-process with
//! its sidecars and trading loop on a thread.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kimp::runtime::bridge::Sidecars;
use kimp::runtime::config::Config;
use kimp::runtime::demo::{demo_sim, sim_keys};
use kimp::runtime::run::{self, BuildOptions};
use kimp::runtime::trading_loop::TradingLoop;
use kimp::sim::config::{CoinSpec, SimConfig};
use kimp::sim::faults::{Faults, Scenario};
use kimp::sim::{SimHandle, Simulator};
use kimp_sidecars::status::StatusBoard;

/// The demo simulator (`seed`, real time) with BTC only, changed by `edit`, started.
pub fn sim(seed: u64, edit: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut sc = demo_sim(seed, 1.0);
    sc.coins = vec![CoinSpec::btc()];
    edit(&mut sc);
    Simulator::start(sc).expect("simulator")
}

/// Fault scenarios parsed from their command-line form.
pub fn faults(list: &[&str]) -> Faults {
    Faults { list: list.iter().map(|s| Scenario::parse(s).unwrap()).collect() }
}

/// Writes config/demo.toml for `sim` under `dir` (journal in `dir/journal`, store in
/// `dir/ilp`, no busy polling, 4 MiB journal segments) to `dir/run.toml`; `edit` changes
/// the text further.
pub fn demo_config(sim: &SimHandle, dir: &Path, edit: impl FnOnce(String) -> String) -> PathBuf {
    let u = &sim.urls;
    let text = include_str!("../../../config/demo.toml")
        .replace("ws://127.0.0.1:18001/websocket/v1", &u.upbit_ws)
        .replace("http://127.0.0.1:18001", &u.upbit_rest)
        .replace("ws://127.0.0.1:18003", &u.binance_ws)
        .replace("http://127.0.0.1:18003", &u.binance_rest)
        .replace("data/demo/journal", &dir.join("journal").display().to_string())
        .replace("data/demo/ilp", &dir.join("ilp").display().to_string())
        .replace("busy_poll = true", "busy_poll = false")
        .replace("journal_segment_mib = 64", "journal_segment_mib = 4");
    let p = dir.join("run.toml");
    std::fs::write(&p, edit(text)).unwrap();
    p
}

/// [`demo_config`] that also closes a pair at any net profit (`exit_min_profit_krw = 0`).
pub fn config(sim: &SimHandle, dir: &Path, edit: impl FnOnce(String) -> String) -> PathBuf {
    demo_config(sim, dir, |t| {
        edit(t.replace("exit_min_profit_krw = 20000", "exit_min_profit_krw = 0"))
    })
}

/// `kimp run --config cfg` with the simulator's keys, no failpoint, the default log
/// level, stdin and stdout closed; the caller may change it before starting it.
pub fn command(cfg: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kimp"));
    c.args(["run", "--config"]).arg(cfg);
    c.env("KIMP_UPBIT_ACCESS_KEY", "kimp-sim-key")
        .env("KIMP_UPBIT_SECRET_KEY", "kimp-sim-secret")
        .env("KIMP_BINANCE_API_KEY", "kimp-sim-key")
        .env("KIMP_BINANCE_SECRET_KEY", "kimp-sim-secret")
        .env_remove("KIMP_FAILPOINT")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    c
}

/// A child (`kimp run` or another `kimp` command), killed if the test ends without
/// stopping it.
#[derive(Debug)]
pub struct Run {
    /// The child.
    pub child: Child,
    /// Its stderr, when it goes to a file.
    pub log: Option<PathBuf>,
}

impl Run {
    /// Starts `kimp run --config cfg`, logging to `log`.
    pub fn spawn(cfg: &Path, log: &Path) -> Run {
        Run::start(&mut command(cfg), log)
    }

    /// Starts `cmd` with its stderr in `log`.
    pub fn start(cmd: &mut Command, log: &Path) -> Run {
        cmd.stderr(Stdio::from(std::fs::File::create(log).unwrap()));
        Run { child: cmd.spawn().expect("spawn kimp"), log: Some(log.to_owned()) }
    }

    /// Takes charge of a child started elsewhere (its output goes where the caller put it).
    pub fn adopt(child: Child) -> Run {
        Run { child, log: None }
    }

    /// The log so far.
    pub fn text(&self) -> String {
        self.log.as_ref().and_then(|l| std::fs::read_to_string(l).ok()).unwrap_or_default()
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
    pub fn wait_exit(&mut self, secs: u64) -> Option<ExitStatus> {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Whether the child is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Kills the child (if it still runs) and reaps it.
    pub fn kill(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `key=<value>` in a log line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    line[at..].split_whitespace().next()
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

/// The runtime built from a config in this process: its sidecars, and its trading loop on
/// a thread of its own.
pub struct InProcess {
    /// The status board the sidecars keep.
    pub board: Arc<StatusBoard>,
    stop: Arc<AtomicBool>,
    trading: JoinHandle<TradingLoop>,
    sidecars: Sidecars,
}

impl InProcess {
    /// Builds the runtime for `cfg` with the simulator's keys and starts it.
    pub fn start(cfg: &Config) -> InProcess {
        let rt = run::build(cfg, &sim_keys(), &BuildOptions::default()).expect("runtime");
        let sidecars = Sidecars::start(
            cfg,
            &rt.tl.core.markets,
            rt.tl.clock,
            rt.out_rx.clone(),
            rt.journal_tail,
            rt.control_tx.clone(),
        )
        .expect("sidecars");
        let stop = Arc::new(AtomicBool::new(false));
        let loop_stop = stop.clone();
        let mut tl = rt.tl;
        let trading = std::thread::spawn(move || {
            tl.run(&loop_stop, Duration::from_secs(3)).expect("loop");
            tl
        });
        InProcess { board: sidecars.board.clone(), stop, trading, sidecars }
    }

    /// Stops the loop, hands it to `inspect`, drops it, then shuts the sidecars down.
    pub fn stop(self, inspect: impl FnOnce(&TradingLoop)) {
        self.stop.store(true, Ordering::Relaxed);
        let tl = self.trading.join().expect("loop thread");
        inspect(&tl);
        drop(tl);
        self.sidecars.shutdown();
    }
}
