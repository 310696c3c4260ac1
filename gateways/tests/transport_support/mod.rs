//! Shared helpers for the loopback transport tests: a test clock, a client loop driver,
//! self-signed TLS identities, and blocking loopback servers run on helper threads.
//!
//! The client side is driven exactly like the trading loop drives it (one `mio::Poll`,
//! `poll` on the fired token, `tick` every turn); only the poll timeout differs (a few ms
//! instead of zero) so the tests do not burn both cores of the CI machine.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kimp_core::units::Nanos;
use kimp_gateways::transport::{Completion, DownReason, HttpPoll, HttpPool, WsConn, WsPoll};
use mio::{Events, Poll};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};

/// Every test gives up after this long: bounded in time whatever happens.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Installs ring as the process provider (the binary's job in production).
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Owns the `Poll` and the clock, and runs one loop turn at a time.
pub struct Driver {
    /// The caller's poll.
    pub poll: Poll,
    events: Events,
    start: Instant,
}

impl Driver {
    /// A fresh poll and clock.
    pub fn new() -> Self {
        Self {
            poll: Poll::new().unwrap(),
            events: Events::with_capacity(64),
            start: Instant::now(),
        }
    }

    /// Monotonic test time (never 0, so "due at 0" is always due).
    pub fn now(&self) -> Nanos {
        Nanos(self.start.elapsed().as_nanos() as u64 + 1)
    }

    /// One turn over a WebSocket: poll, route, tick. Returns what was reported.
    pub fn ws_turn(&mut self, conn: &mut WsConn, msgs: &mut Vec<Vec<u8>>) -> Vec<WsPoll> {
        self.poll.poll(&mut self.events, Some(Duration::from_millis(5))).unwrap();
        let mut out = Vec::new();
        let fired = self.events.iter().any(|e| e.token() == conn.token());
        let now = self.now();
        if fired {
            out.push(conn.poll(now, |p| msgs.push(p.to_vec())));
        }
        out.push(conn.tick(self.poll.registry(), now));
        out.retain(|s| *s != WsPoll::Idle);
        out
    }

    /// Runs WebSocket turns until `stop` holds, sending `sub` (if any) on every `Opened`, as
    /// a feed sends its subscriptions.
    pub fn ws_until(
        &mut self,
        conn: &mut WsConn,
        msgs: &mut Vec<Vec<u8>>,
        seen: &mut Vec<WsPoll>,
        sub: Option<&str>,
        mut stop: impl FnMut(&WsConn, &[Vec<u8>], &[WsPoll]) -> bool,
    ) {
        let deadline = Instant::now() + LIMIT;
        while !stop(conn, msgs, seen) {
            assert!(
                Instant::now() < deadline,
                "timed out; reports so far: {seen:?}, {} msgs",
                msgs.len()
            );
            for s in self.ws_turn(conn, msgs) {
                if let (WsPoll::Opened, Some(text)) = (s, sub) {
                    conn.send_text(self.now(), text).unwrap();
                }
                seen.push(s);
            }
        }
    }

    /// One turn over an HTTP pool; completions are copied out.
    pub fn http_turn(&mut self, pool: &mut HttpPool, done: &mut Vec<Done>) -> Vec<HttpPoll> {
        self.poll.poll(&mut self.events, Some(Duration::from_millis(5))).unwrap();
        let now = self.now();
        let mut out = Vec::new();
        for e in self.events.iter() {
            if pool.owns(e.token()) {
                out.push(pool.poll(e.token(), now, |c| done.push(Done::from(c))));
            }
        }
        pool.tick(self.poll.registry(), now, |c| done.push(Done::from(c)));
        out.retain(|s| *s != HttpPoll::Idle);
        out
    }

    /// Runs HTTP turns until `stop` holds.
    pub fn http_until(
        &mut self,
        pool: &mut HttpPool,
        done: &mut Vec<Done>,
        mut stop: impl FnMut(&HttpPool, &[Done]) -> bool,
    ) {
        let deadline = Instant::now() + LIMIT;
        while !stop(pool, done) {
            assert!(Instant::now() < deadline, "timed out; completions so far: {done:?}");
            self.http_turn(pool, done);
        }
    }
}

/// An owned copy of a [`Completion`], so tests can keep it after the callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Done {
    /// A response.
    Response {
        tag: u64,
        status: u16,
        body: Vec<u8>,
        retry_after_s: Option<u64>,
        remaining_sec: Option<u64>,
        weight: Option<u64>,
        orders: Option<u64>,
    },
    /// Deadline passed.
    TimedOut(u64),
    /// Failed mid-request.
    Failed { tag: u64, reason: DownReason, sent: bool },
}

impl From<Completion<'_>> for Done {
    fn from(c: Completion<'_>) -> Self {
        match c {
            Completion::Response { tag, response: r } => Done::Response {
                tag,
                status: r.status,
                body: r.body.to_vec(),
                retry_after_s: r.retry_after_s,
                remaining_sec: r.remaining_req_sec(),
                weight: r.used_weight_1m,
                orders: r.order_count_10s,
            },
            Completion::TimedOut { tag } => Done::TimedOut(tag),
            Completion::Failed { tag, reason, sent } => Done::Failed { tag, reason, sent },
        }
    }
}

/// A loopback listener on an ephemeral port.
pub fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// Accepts one connection with read/write timeouts, so a server thread never hangs a test.
pub fn accept(l: &TcpListener) -> TcpStream {
    let (s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s.set_write_timeout(Some(LIMIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A self-signed certificate for `name` and its key.
pub fn identity(name: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    (ck.cert.der().clone(), key)
}

/// Server config presenting `cert`.
pub fn server_config(
    cert: &CertificateDer<'static>,
    key: &PrivateKeyDer<'static>,
) -> Arc<ServerConfig> {
    install_provider();
    let cfg = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key.clone_key())
        .unwrap();
    Arc::new(cfg)
}

/// Client config trusting only `cert`.
pub fn client_trusting(cert: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    install_provider();
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    kimp_gateways::transport::client_config(roots).unwrap()
}

/// Server side of a TLS connection over a blocking socket.
pub fn tls_server_stream(
    cfg: &Arc<ServerConfig>,
    tcp: TcpStream,
) -> StreamOwned<ServerConnection, TcpStream> {
    StreamOwned::new(ServerConnection::new(Arc::clone(cfg)).unwrap(), tcp)
}

/// Reads one HTTP request (head, plus a Content-Length body) from a blocking stream.
/// Returns `None` at end of stream.
pub fn read_request(s: &mut impl Read) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    buf.extend_from_slice(&body);
    Some(buf)
}

/// Writes `parts` one at a time with a short pause, so the client sees partial responses.
pub fn write_in_parts(s: &mut impl Write, parts: &[&[u8]]) {
    for p in parts {
        s.write_all(p).unwrap();
        s.flush().unwrap();
        std::thread::sleep(Duration::from_millis(3));
    }
}

/// A pre-encoded request as the codecs would produce it.
pub fn request(path: &str, host: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
