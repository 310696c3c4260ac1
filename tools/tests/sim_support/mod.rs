//! Plain clients for the simulator tests: raw HTTP/1.1 over a TcpStream, tungstenite
//! WebSockets, and request signing through the gateways' signing module.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kimp::sim::config::{ApiKeyPair, SimConfig};
use kimp::sim::{SimHandle, Simulator};
use kimp_gateways::sign::{JwtAlg, NonceGen, Secret, UpbitSigner, binance_signature};
use serde_json::Value;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// Test key pair (both venues).
pub const KEY: &str = "test-key";
/// Test secret.
pub const SECRET: &str = "test-secret-0123456789";

/// Starts a simulator with the test account and `f` applied to the config.
pub fn start(f: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut cfg =
        SimConfig { seed: 7, accounts: vec![ApiKeyPair::new(KEY, SECRET)], ..SimConfig::default() };
    f(&mut cfg);
    Simulator::start(cfg).expect("simulator starts")
}

#[path = "../../../testdata/locate.rs"]
pub mod locate;

/// The protocol fixtures folder (testdata/fixtures/protocol).
pub fn fixtures() -> PathBuf {
    locate::testdata("fixtures/protocol")
}

/// Line `n` (0-based) of a fixture file.
pub fn fixture_line(file: &str, n: usize) -> String {
    let t = std::fs::read_to_string(fixtures().join(file)).expect("fixture");
    t.lines().nth(n).expect("line").to_owned()
}

/// A response.
#[derive(Debug)]
pub struct Resp {
    /// Status.
    pub status: u16,
    /// Headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl Resp {
    /// Header value.
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }
    /// Body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("bad json {e}: {}", self.body))
    }
}

/// One HTTP request with `Connection: close`; `None` when the server closed without answering.
pub fn try_http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Option<Resp> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    if buf.is_empty() {
        return None;
    }
    let mut hs = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut hs);
    let n = match r.parse(&buf).expect("http response") {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => panic!("partial response"),
    };
    Some(Resp {
        status: r.code.unwrap_or(0),
        headers: r
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
            .collect(),
        body: String::from_utf8_lossy(&buf[n..]).into_owned(),
    })
}

/// One HTTP request that must be answered.
pub fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Resp {
    try_http(addr, method, target, headers, body).expect("an answer")
}

/// Wall clock ms.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// An Upbit client signing with the gateways' signer.
pub struct Upbit {
    /// Address.
    pub addr: SocketAddr,
    signer: UpbitSigner,
    nonces: NonceGen,
}

impl Upbit {
    /// A client for `addr` with the test key (HS512).
    pub fn new(addr: SocketAddr, alg: JwtAlg) -> Self {
        Self::with_secret(addr, alg, SECRET)
    }
    /// A client with another secret (to test rejections).
    pub fn with_secret(addr: SocketAddr, alg: JwtAlg, secret: &str) -> Self {
        Self {
            addr,
            signer: UpbitSigner::new(KEY, &Secret::new(secret), alg).unwrap(),
            nonces: NonceGen::from_seed(now_ms()),
        }
    }
    /// A JWT for the string to hash (empty = no parameters), with a fresh or given nonce.
    pub fn token(&mut self, hashed: &str, nonce: Option<&str>) -> String {
        let mut n = [0u8; 36];
        let fresh = self.nonces.next(&mut n).to_owned();
        let mut out = Vec::new();
        self.signer.sign_into(nonce.unwrap_or(&fresh), hashed.as_bytes(), &mut out).unwrap();
        format!("Bearer {}", String::from_utf8(out).unwrap())
    }
    /// Signed GET/DELETE with a query.
    pub fn query(&mut self, method: &str, path: &str, query: &str) -> Resp {
        let t = self.token(query, None);
        let target = if query.is_empty() { path.to_owned() } else { format!("{path}?{query}") };
        http(self.addr, method, &target, &[("Authorization", t)], "")
    }
    /// Signed `POST /v1/orders` with a JSON body given as ordered pairs.
    pub fn order(&mut self, pairs: &[(&str, &str)]) -> Option<Resp> {
        let body = format!(
            "{{{}}}",
            pairs.iter().map(|(k, v)| format!("\"{k}\":\"{v}\"")).collect::<Vec<_>>().join(",")
        );
        let hashed = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let t = self.token(&hashed, None);
        try_http(
            self.addr,
            "POST",
            "/v1/orders",
            &[("Authorization", t), ("Content-Type", "application/json; charset=utf-8".into())],
            &body,
        )
    }
}

/// Signs Binance parameters: returns `params&signature=…`.
pub fn binance_signed(params: &str, secret: &str) -> String {
    let sig = binance_signature(&Secret::new(secret), params.as_bytes());
    format!("{params}&signature={}", std::str::from_utf8(&sig).unwrap())
}

/// A signed Binance request (parameters in the query string).
pub fn binance(addr: SocketAddr, method: &str, path: &str, params: &str) -> Option<Resp> {
    let q = binance_signed(params, SECRET);
    try_http(addr, method, &format!("{path}?{q}"), &[("X-MBX-APIKEY", KEY.to_owned())], "")
}

/// A WebSocket client.
pub type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// Connects a WebSocket (`path` with query), optionally with an Authorization header.
pub fn ws(addr: SocketAddr, path: &str, auth: Option<String>) -> Ws {
    let stream = TcpStream::connect(addr).expect("connect");
    let mut req =
        tungstenite::client::IntoClientRequest::into_client_request(format!("ws://{addr}{path}"))
            .unwrap();
    if let Some(a) = auth {
        req.headers_mut().insert("Authorization", a.parse().unwrap());
    }
    let (mut w, _) = tungstenite::client_tls(req, stream).expect("ws handshake");
    if let MaybeTlsStream::Plain(s) = w.get_mut() {
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    }
    w
}

/// Next data frame (text or binary) within `deadline`; `None` on timeout or close.
pub fn next_frame(w: &mut Ws, deadline: Instant) -> Option<Message> {
    while Instant::now() < deadline {
        match w.read() {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => return Some(m),
            Ok(Message::Close(_)) => return None,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Next frame's JSON, whatever the frame type.
pub fn next_json(w: &mut Ws, deadline: Instant) -> Option<(Value, String, bool)> {
    let m = next_frame(w, deadline)?;
    let (t, binary) = match m {
        Message::Text(t) => (t.as_str().to_owned(), false),
        Message::Binary(b) => (String::from_utf8(b.to_vec()).expect("utf-8"), true),
        _ => unreachable!(),
    };
    Some((serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t}")), t, binary))
}

/// Top-level keys of a JSON object in the order they appear in the text.
pub fn top_keys(json: &str) -> Vec<String> {
    let b = json.as_bytes();
    let (mut depth, mut i, mut keys) = (0i32, 0usize, Vec::new());
    let mut expect_key = false;
    while i < b.len() {
        match b[i] {
            b'{' | b'[' => {
                depth += 1;
                expect_key = depth == 1 && b[i] == b'{';
            }
            b'}' | b']' => depth -= 1,
            b',' if depth == 1 => expect_key = true,
            b'"' => {
                let start = i + 1;
                i += 1;
                while b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if depth == 1 && expect_key {
                    keys.push(json[start..i].to_owned());
                    expect_key = false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    keys
}
