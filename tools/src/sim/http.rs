//! Minimal HTTP/1.1 server plumbing over a plain or TLS socket: request parsing with
//! `httparse`, responses, and the WebSocket upgrade (handshake here, frames by
//! tungstenite).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use tungstenite::WebSocket;
use tungstenite::protocol::{Role, WebSocketConfig};

/// A server-side connection, plain or TLS.
#[derive(Debug)]
pub enum Conn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Conn {
    /// Wraps an accepted socket, with TLS when a config is given.
    pub fn new(tcp: TcpStream, tls: Option<&Arc<ServerConfig>>) -> io::Result<Self> {
        tcp.set_nodelay(true)?;
        match tls {
            None => Ok(Conn::Plain(tcp)),
            Some(cfg) => {
                let sc = ServerConnection::new(cfg.clone()).map_err(io::Error::other)?;
                Ok(Conn::Tls(Box::new(StreamOwned::new(sc, tcp))))
            }
        }
    }

    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(t) => t,
            Conn::Tls(s) => &s.sock,
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(t) => t.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(t) => t.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(t) => t.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// One parsed request.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// Method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string as received (no `?`), not decoded.
    pub query: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Vec<u8>,
}

impl Request {
    /// First header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// True for a WebSocket upgrade request.
    pub fn is_upgrade(&self) -> bool {
        self.header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    }
}

/// An HTTP response.
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// JSON body.
    pub body: String,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Self { status, headers: Vec::new(), body: body.into() }
    }

    /// Adds a header.
    pub fn with(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_owned(), v.into()));
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        418 => "I'm a teapot",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Outcome of reading one request.
#[derive(Debug)]
pub enum ReadOutcome {
    /// A request.
    Request(Request),
    /// The peer closed, or the connection idled out, or the server is stopping.
    Closed,
    /// Bytes that are not HTTP.
    Malformed,
}

/// Largest request accepted (headers + body).
const MAX_REQUEST: usize = 1 << 20;

/// Reads one request; `buf` keeps bytes that belong to the next one. The socket must have
/// a read timeout; `keep_going` is polled on every timeout.
pub fn read_request(
    conn: &mut Conn,
    buf: &mut Vec<u8>,
    idle: Duration,
    keep_going: &dyn Fn() -> bool,
) -> ReadOutcome {
    let started = Instant::now();
    let mut chunk = [0u8; 8192];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => {
                let mut r =
                    Request { method: req.method.unwrap_or("").to_owned(), ..Default::default() };
                let target = req.path.unwrap_or("/");
                let (p, q) = target.split_once('?').unwrap_or((target, ""));
                r.path = p.to_owned();
                r.query = q.to_owned();
                for h in req.headers.iter() {
                    r.headers.push((
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    ));
                }
                let len: usize =
                    r.header("content-length").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                if n + len > MAX_REQUEST {
                    return ReadOutcome::Malformed;
                }
                while buf.len() < n + len {
                    match conn.read(&mut chunk) {
                        Ok(0) => return ReadOutcome::Closed,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        Err(e) if is_timeout(&e) => {
                            if !keep_going() || started.elapsed() > idle {
                                return ReadOutcome::Closed;
                            }
                        }
                        Err(_) => return ReadOutcome::Closed,
                    }
                }
                r.body = buf[n..n + len].to_vec();
                buf.drain(..n + len);
                return ReadOutcome::Request(r);
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_REQUEST {
                    return ReadOutcome::Malformed;
                }
            }
            Err(_) => return ReadOutcome::Malformed,
        }
        match conn.read(&mut chunk) {
            Ok(0) => return ReadOutcome::Closed,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) if is_timeout(&e) => {
                if !keep_going() || (buf.is_empty() && started.elapsed() > idle) {
                    return ReadOutcome::Closed;
                }
            }
            Err(_) => return ReadOutcome::Closed,
        }
    }
}

/// True for the errors a read timeout produces.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Writes a response.
pub fn write_response(conn: &mut Conn, r: &Response, keep_alive: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: {}\r\n",
        r.status,
        reason(r.status),
        r.body.len()
    );
    for (k, v) in &r.headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    let mut all = head.into_bytes();
    all.extend_from_slice(r.body.as_bytes());
    conn.write_all(&all)?;
    conn.flush()
}

/// Completes a WebSocket upgrade (RFC 6455 handshake) and hands the socket to
/// tungstenite. `leftover` holds bytes the client sent after the request.
pub fn accept_websocket(
    mut conn: Conn,
    req: &Request,
    leftover: Vec<u8>,
) -> io::Result<WebSocket<Conn>> {
    let key =
        req.header("sec-websocket-key").ok_or_else(|| io::Error::other("no Sec-WebSocket-Key"))?;
    if req.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(io::Error::other("unsupported WebSocket version"));
    }
    let accept = tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    conn.write_all(head.as_bytes())?;
    conn.flush()?;
    let cfg = WebSocketConfig::default().max_write_buffer_size(16 << 20);
    Ok(WebSocket::from_partially_read(conn, leftover, Role::Server, Some(cfg)))
}

/// Builds a rustls server config with a fresh self-signed certificate for `localhost` and
/// `127.0.0.1`; returns it with the certificate (DER and PEM) for clients to trust.
pub fn self_signed_tls() -> io::Result<(Arc<ServerConfig>, Vec<u8>, String)> {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .map_err(io::Error::other)?;
    let cert_der = ck.cert.der().to_vec();
    let cert_pem = ck.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        ck.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(vec![rustls::pki_types::CertificateDer::from(cert_der.clone())], key)
        .map_err(io::Error::other)?;
    Ok((Arc::new(cfg), cert_der, cert_pem))
}

/// Percent-decodes a query component (`+` is a space in forms).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|x| u8::from_str_radix(x, 16).ok());
                match h {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `a=1&b=2` into decoded pairs, in order.
pub fn parse_params(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        assert_eq!(percent_decode("uuids%5B%5D=a"), "uuids[]=a");
        assert_eq!(percent_decode("a+b%2"), "a b%2");
        assert_eq!(
            parse_params("symbol=BTCUSDT&x=%EF%BC%91&flag"),
            vec![
                ("symbol".into(), "BTCUSDT".into()),
                ("x".into(), "１".into()),
                ("flag".into(), "".into())
            ]
        );
    }
}
