//! Loopback fakes for the sidecars' tests: an ILP receiver over TCP and over HTTP, and the
//! dedup check QuestDB's `DEDUP UPSERT KEYS` would apply.

#![allow(dead_code)]

pub mod fake_bot;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kimp_sidecars::store::ilp::{FieldValue, IlpLine, parse_line};

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kimp-sidecars-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A port nobody listens on (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `f` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

fn bind_retry(port: u16) -> TcpListener {
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        match TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => return l,
            Err(e) if Instant::now() < end => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("bind 127.0.0.1:{port}: {e}"),
        }
    }
}

/// An ILP-over-TCP receiver: records every complete line it reads, like QuestDB would.
pub struct FakeIlpTcp {
    pub port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<JoinHandle<()>>,
    pub connections: Arc<AtomicUsize>,
}

impl FakeIlpTcp {
    /// Listens on `port` (0 = any).
    pub fn start(port: u16) -> Self {
        let l = bind_retry(port);
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (li, st, co, cn) = (lines.clone(), stop.clone(), conns.clone(), connections.clone());
        let accept = std::thread::spawn(move || {
            while !st.load(Ordering::Acquire) {
                match l.accept() {
                    Ok((s, _)) => {
                        cn.fetch_add(1, Ordering::Relaxed);
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                        co.lock().unwrap().push(s.try_clone().unwrap());
                        let (li, st) = (li.clone(), st.clone());
                        std::thread::spawn(move || read_lines(s, &li, &st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self { port, lines, stop, conns, accept: Some(accept), connections }
    }

    /// Lines received so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Dies like a killed server: stops listening and resets every connection. Bytes
    /// the client wrote that were not read yet are lost.
    pub fn kill(&mut self) {
        self.stop.store(true, Ordering::Release);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        if let Some(a) = self.accept.take() {
            a.join().unwrap();
        }
    }
}

impl Drop for FakeIlpTcp {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_lines(mut s: TcpStream, lines: &Mutex<Vec<String>>, stop: &AtomicBool) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        if stop.load(Ordering::Acquire) {
            return;
        }
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    let text = String::from_utf8(line[..line.len() - 1].to_vec()).unwrap();
                    lines.lock().unwrap().push(text);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// An ILP-over-HTTP receiver (`POST /write`): answers 204, or 500 while `failing` is set.
pub struct FakeIlpHttp {
    pub port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    pub failing: Arc<AtomicBool>,
    pub requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl FakeIlpHttp {
    /// Listens on an ephemeral port.
    pub fn start() -> Self {
        let l = bind_retry(0);
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (li, fa, rq, st) = (lines.clone(), failing.clone(), requests.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            while !st.load(Ordering::Acquire) {
                match l.accept() {
                    Ok((s, _)) => {
                        let (li, fa, rq, st) = (li.clone(), fa.clone(), rq.clone(), st.clone());
                        std::thread::spawn(move || serve_http(s, &li, &fa, &rq, &st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self { port, lines, failing, requests, stop, accept: Some(accept) }
    }

    /// Lines accepted (204) so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for FakeIlpHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

/// Reads one HTTP/1.1 request (head + Content-Length body); `None` at EOF.
pub fn read_request(s: &mut TcpStream, stop: &AtomicBool) -> Option<(String, String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = req.parse(&data) {
            let len = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let (method, path) = (req.method?.to_string(), req.path?.to_string());
            while data.len() < head + len {
                match s.read(&mut buf) {
                    Ok(0) => return None,
                    Ok(n) => data.extend_from_slice(&buf[..n]),
                    Err(_) if !stop.load(Ordering::Acquire) => {}
                    Err(_) => return None,
                }
            }
            return Some((method, path, data[head..head + len].to_vec()));
        }
        match s.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::Acquire) {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
}

fn serve_http(
    mut s: TcpStream,
    lines: &Mutex<Vec<String>>,
    failing: &AtomicBool,
    requests: &Mutex<Vec<String>>,
    stop: &AtomicBool,
) {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    while let Some((method, path, body)) = read_request(&mut s, stop) {
        requests.lock().unwrap().push(format!("{method} {path}"));
        let resp: &[u8] = if path.starts_with("/write") && !failing.load(Ordering::Acquire) {
            let text = String::from_utf8(body).unwrap();
            lines.lock().unwrap().extend(text.lines().map(str::to_string));
            b"HTTP/1.1 204 No Content\r\n\r\n"
        } else if path.starts_with("/write") {
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        } else {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        };
        if s.write_all(resp).is_err() {
            return;
        }
    }
}

/// The row identity QuestDB's DEDUP UPSERT KEYS use for each table (docs/questdb.md).
pub fn dedup_key(l: &IlpLine) -> String {
    let f = |k: &str| match l.field(k) {
        Some(FieldValue::I64(v)) => v.to_string(),
        Some(FieldValue::Str(s)) => s.clone(),
        other => format!("{other:?}"),
    };
    let t = |k: &str| l.tag(k).unwrap_or("").to_string();
    let ts = l.ts.unwrap_or(-1);
    let rest = match l.table.as_str() {
        "fills" => format!("{}|{}", t("venue"), f("trade_id")),
        "orders" => format!("{}|{}", f("cl_id"), f("event_seq")),
        "pairs" => format!("{}|{}", f("pair"), t("to_state")),
        "trading" => f("event_seq"),
        "kimp" => t("coin"),
        "bbo" | "funding" => format!("{}|{}", t("venue"), t("symbol")),
        "fx" => t("source"),
        "latency" => t("stage"),
        "candles_1m" => format!("{}|{}", t("venue"), t("coin")),
        other => panic!("unexpected table {other}"),
    };
    format!("{}|{ts}|{rest}", l.table)
}

/// Applies dedup: key → line. Panics if one key arrived with two different rows.
pub fn dedup(lines: &[String]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for line in lines {
        let l = parse_line(line.as_bytes()).unwrap_or_else(|e| panic!("{e}: {line}"));
        let k = dedup_key(&l);
        if let Some(prev) = m.insert(k.clone(), line.clone()) {
            assert_eq!(prev, *line, "two different rows share the dedup key {k}");
        }
    }
    m
}
