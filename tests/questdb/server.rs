//! A real QuestDB server for one test: its own loopback ports and data directory, started
//! from `../shared/questdb` (or `KIMP_QUESTDB_HOME`), ready once `/ping` answers, stopped
//! by PID when dropped — also when the test fails. SQL goes over HTTP (`/exec`, with ureq)
//! and over the PostgreSQL wire protocol (the `postgres` crate), as an operator's console
//! or Grafana would reach it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest wait for a start (the README measures ~5 s on a loaded 2-CPU machine).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Where the server is: `KIMP_QUESTDB_HOME`, else `shared/questdb` beside the checkout.
pub fn home() -> PathBuf {
    if let Some(h) = std::env::var_os("KIMP_QUESTDB_HOME") {
        return PathBuf::from(h);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/questdb")
}

/// A loopback port nobody listens on.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The server's ports.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    /// HTTP: `/exec`, `/ping`, ILP over HTTP.
    pub http: u16,
    /// ILP over TCP.
    pub ilp: u16,
    /// PostgreSQL wire protocol.
    pub pg: u16,
}

/// One running (or killed) QuestDB.
pub struct QuestDb {
    /// Its data directory (removed with the guard).
    pub data: tempfile::TempDir,
    /// Its ports, kept across a restart.
    pub ports: Ports,
    child: Option<Child>,
    http: ureq::Agent,
}

impl std::fmt::Debug for QuestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuestDb").field("ports", &self.ports).finish_non_exhaustive()
    }
}

impl QuestDb {
    /// Starts a server on fresh ports and a fresh data directory; returns once it answers
    /// `/ping`, with the time that took.
    pub fn start() -> (QuestDb, Duration) {
        let home = home();
        assert!(
            home.join("start.sh").is_file(),
            "no QuestDB at {} (set KIMP_QUESTDB_HOME)",
            home.display()
        );
        let data = tempfile::Builder::new().prefix("kimp-qdb-").tempdir().expect("temp dir");
        let ports = Ports { http: free_port(), ilp: free_port(), pg: free_port() };
        let http = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut q = QuestDb { data, ports, child: None, http };
        let took = q.launch();
        (q, took)
    }

    fn launch(&mut self) -> Duration {
        let t0 = Instant::now();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.path().join("server.log"))
            .expect("server log");
        let child = Command::new("bash")
            .arg(home().join("start.sh"))
            .arg(self.data.path().join("db"))
            .env("QDB_HTTP_PORT", self.ports.http.to_string())
            .env("QDB_ILP_PORT", self.ports.ilp.to_string())
            .env("QDB_PG_PORT", self.ports.pg.to_string())
            .env("QDB_HTTP_MIN_PORT", "off")
            .env("QDB_XMX", std::env::var("QDB_XMX").unwrap_or_else(|_| "512m".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start QuestDB (is a Java 17 runtime installed?)");
        self.child = Some(child);
        let end = Instant::now() + START_TIMEOUT;
        while !self.ping() {
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("QuestDB exited at start ({st}):\n{}", self.log_tail());
            }
            assert!(Instant::now() < end, "QuestDB not ready in {START_TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        t0.elapsed()
    }

    /// The last lines of the server's log (for failure messages).
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(self.data.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// True when `/ping` answers 2xx.
    pub fn ping(&self) -> bool {
        let url = format!("http://127.0.0.1:{}/ping", self.ports.http);
        let short = self
            .http
            .get(&url)
            .config()
            .timeout_global(Some(Duration::from_millis(500)))
            .build()
            .call();
        short.is_ok_and(|r| r.status().is_success())
    }

    /// The JVM's PID (start.sh `exec`s it).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, as a crash: no shutdown, no flush.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same data directory and ports; returns the time to `/ping`.
    pub fn restart(&mut self) -> Duration {
        assert!(self.child.is_none(), "restart of a running server");
        self.launch()
    }

    /// A configuration string for the store: `tcp` or `http`.
    pub fn conf(&self, transport: &str) -> String {
        let port = if transport == "tcp" { self.ports.ilp } else { self.ports.http };
        format!("{transport}::addr=127.0.0.1:{port};")
    }

    /// One SQL statement over `/exec`: the JSON answer, or QuestDB's error message.
    pub fn exec(&self, sql: &str) -> Result<Value, String> {
        let url = format!("http://127.0.0.1:{}/exec", self.ports.http);
        let mut r = self.http.get(&url).query("query", sql).call().map_err(|e| e.to_string())?;
        let status = r.status();
        let body = r
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        match v.get("error") {
            Some(e) => Err(format!("{status}: {e}")),
            None if !status.is_success() => Err(format!("{status}: {body}")),
            None => Ok(v),
        }
    }

    /// The rows of a query (panics on an SQL error, naming the statement).
    pub fn rows(&self, sql: &str) -> Vec<Vec<Value>> {
        let v = self.exec(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        v["dataset"].as_array().cloned().unwrap_or_default().into_iter().map(row).collect()
    }

    /// A single number (`SELECT count() ...`); -1 when the query fails (server down).
    pub fn count(&self, sql: &str) -> i64 {
        self.exec(sql).ok().and_then(|v| v["dataset"][0][0].as_i64()).unwrap_or(-1)
    }

    /// Waits until every WAL table applied everything its sequencer holds (writes are
    /// applied asynchronously); false after `secs`.
    pub fn wait_applied(&self, secs: f64) -> bool {
        let sql = "SELECT count() FROM wal_tables() WHERE writerTxn < sequencerTxn OR suspended";
        let end = Instant::now() + Duration::from_secs_f64(secs);
        loop {
            if self.count(sql) == 0 {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A PostgreSQL-protocol session (user `admin`, password `quest`, database `qdb`).
    pub fn pg(&self) -> postgres::Client {
        let c = format!(
            "host=127.0.0.1 port={} user=admin password=quest dbname=qdb connect_timeout=10",
            self.ports.pg
        );
        postgres::Client::connect(&c, postgres::NoTls).expect("PostgreSQL wire connection")
    }
}

fn row(v: Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

impl Drop for QuestDb {
    /// SIGTERM by PID (a clean shutdown takes ~2 s), SIGKILL after 15 s.
    fn drop(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        // SAFETY: kill(2) on the PID of a child this guard started and has not reaped.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let end = Instant::now() + Duration::from_secs(15);
        while Instant::now() < end {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}
