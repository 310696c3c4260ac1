//! Keep-alive HTTP/1.1 client connections for REST orders: pre-opened (TCP + TLS done before
//! the first order), one request in flight per connection, responses parsed with `httparse`.
//!
//! A request that was (even partly) written and then got no complete answer — deadline passed,
//! connection dropped — is reported as ambiguous: the venue may have executed it. The caller
//! marks the order `Unknown` and queries it; it must never send the same request again.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use httparse::Status;
use kimp_core::units::Nanos;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::ClientConfig;

use super::backoff::{Backoff, BackoffConfig};
use super::tls::{ConnectCheck, NetStream, check_connect};
use super::url::{Endpoint, UrlError};
use super::{DownReason, io_reason};

/// Limits of an HTTP connection.
#[derive(Clone, Copy, Debug)]
pub struct HttpConfig {
    /// TCP connect + TLS handshake must finish within this.
    pub connect_timeout: Nanos,
    /// Response buffer allocated up front; it only grows (up to the max) for a bigger response.
    pub initial_response_bytes: usize,
    /// Largest response (head + body) accepted; a bigger one fails the request.
    pub max_response_bytes: usize,
    /// Request buffer allocated up front; a bigger request is refused.
    pub max_request_bytes: usize,
    /// Reconnect policy.
    pub backoff: BackoffConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Nanos::from_ms(5_000),
            initial_response_bytes: 64 << 10,
            max_response_bytes: 16 << 20,
            max_request_bytes: 16 << 10,
            // A keep-alive close is routine: reconnect quickly, and any connection that got
            // as far as a TLS session counts as healthy.
            backoff: BackoffConfig {
                base: Nanos::from_ms(20),
                cap: Nanos::from_ms(5_000),
                healthy_after: Nanos(0),
                seed: 0x6874_7470,
            },
        }
    }
}

/// A complete response, borrowed from the connection's buffers until the callback returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpResponse<'a> {
    /// HTTP status code.
    pub status: u16,
    /// Body, de-chunked.
    pub body: &'a [u8],
    /// `Retry-After` in seconds (429/418), when given as a number.
    pub retry_after_s: Option<u64>,
    /// Raw Upbit `Remaining-Req` value, e.g. `group=default; min=1800; sec=29`.
    pub remaining_req: Option<&'a [u8]>,
    /// Binance `X-MBX-USED-WEIGHT-1M`.
    pub used_weight_1m: Option<u64>,
    /// Binance `X-MBX-ORDER-COUNT-10S`.
    pub order_count_10s: Option<u64>,
}

impl HttpResponse<'_> {
    /// The `sec=<n>` part of `Remaining-Req` (requests left this second; `min` is deprecated).
    pub fn remaining_req_sec(&self) -> Option<u64> {
        let raw = self.remaining_req?;
        raw.split(|&b| b == b';').find_map(|part| {
            let part = part.trim_ascii();
            part.strip_prefix(b"sec=").and_then(parse_u64)
        })
    }
}

/// The end of a request, delivered to the caller's callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion<'a> {
    /// The response to request `tag`.
    Response {
        /// Caller's request tag.
        tag: u64,
        /// The response.
        response: HttpResponse<'a>,
    },
    /// No complete response before the deadline: outcome unknown, never resend.
    TimedOut {
        /// Caller's request tag.
        tag: u64,
    },
    /// The connection failed mid-request. With `sent` the outcome is unknown (never resend);
    /// without it no byte left the process and the request may go out on another connection.
    Failed {
        /// Caller's request tag.
        tag: u64,
        /// What happened.
        reason: DownReason,
        /// Whether any request byte was handed to the socket (or TLS session).
        sent: bool,
    },
}

/// What a `poll` or `tick` changed on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpPoll {
    /// Nothing to report.
    Idle,
    /// Connected (TCP and TLS done) and ready for a request.
    Connected,
    /// The connection went down; a reconnect is scheduled.
    Down(DownReason),
}

/// Why a request could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The connection is not idle (connecting, busy or down). Nothing was sent.
    NotReady,
    /// No idle connection in the pool. Nothing was sent.
    NoIdle,
    /// The request is larger than `max_request_bytes`. Nothing was sent.
    TooLarge,
    /// The socket failed before any byte was accepted: safe to send elsewhere.
    NotSent(DownReason),
    /// The socket failed after part of the request was accepted: outcome unknown, never resend.
    Ambiguous(DownReason),
}

/// Counters since creation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Connections established.
    pub connects: u64,
    /// Requests started.
    pub requests: u64,
    /// Complete responses.
    pub responses: u64,
    /// Requests that hit their deadline.
    pub timeouts: u64,
    /// Requests that failed mid-flight.
    pub failures: u64,
}

enum Conn {
    Down,
    Connecting(TcpStream),
    Handshaking(NetStream),
    Idle(NetStream),
    Busy(NetStream),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyKind {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

#[derive(Clone, Copy, Debug)]
struct Head {
    status: u16,
    body_start: usize,
    kind: BodyKind,
    keep_alive: bool,
    retry_after_s: Option<u64>,
    remaining_req: Option<(usize, usize)>,
    used_weight_1m: Option<u64>,
    order_count_10s: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// Incremental response parser state over the connection's receive buffer.
struct Parser {
    buf: Vec<u8>,
    len: usize,
    head_start: usize,
    head: Option<Head>,
    chunk: Chunk,
    chunk_pos: usize,
    body: Vec<u8>,
    max: usize,
    unclean_eof: bool,
}

#[derive(Clone, Copy, Debug)]
struct InFlight {
    tag: u64,
    deadline: Nanos,
    sent: bool,
}

/// One keep-alive HTTP/1.1 connection (plain to loopback, TLS otherwise).
pub struct HttpConn {
    endpoint: Endpoint,
    addr: SocketAddr,
    tls: Option<Arc<ClientConfig>>,
    token: Token,
    cfg: HttpConfig,
    conn: Conn,
    since: Nanos,
    backoff: Backoff,
    retry_at: Option<Nanos>,
    out: Vec<u8>,
    out_pos: usize,
    parser: Parser,
    inflight: Option<InFlight>,
    stats: HttpStats,
}

impl fmt::Debug for HttpConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Request bytes carry signatures and API keys: never print them.
        f.debug_struct("HttpConn")
            .field("host", &self.endpoint.host())
            .field("addr", &self.addr)
            .field("token", &self.token)
            .field("ready", &self.is_idle())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl HttpConn {
    /// A connection to `endpoint` at `addr` under `token`; `tls` exactly when `https://`.
    /// Buffers are allocated here; the first `tick` connects.
    pub fn new(
        endpoint: Endpoint,
        addr: SocketAddr,
        tls: Option<Arc<ClientConfig>>,
        token: Token,
        cfg: HttpConfig,
    ) -> Result<Self, UrlError> {
        if endpoint.is_tls() != tls.is_some() {
            return Err(UrlError::BadScheme);
        }
        if !endpoint.is_tls() && !addr.ip().is_loopback() {
            return Err(UrlError::PlainNotLoopback(addr.ip().to_string()));
        }
        let initial = cfg.initial_response_bytes.clamp(1024, cfg.max_response_bytes.max(1024));
        Ok(Self {
            endpoint,
            addr,
            tls,
            token,
            cfg,
            conn: Conn::Down,
            since: Nanos(0),
            backoff: Backoff::new(cfg.backoff),
            retry_at: Some(Nanos(0)),
            out: Vec::with_capacity(cfg.max_request_bytes),
            out_pos: 0,
            parser: Parser {
                buf: vec![0; initial],
                len: 0,
                head_start: 0,
                head: None,
                chunk: Chunk::Size,
                chunk_pos: 0,
                body: Vec::with_capacity(initial),
                max: cfg.max_response_bytes,
                unclean_eof: false,
            },
            inflight: None,
            stats: HttpStats::default(),
        })
    }

    /// The mio token.
    pub fn token(&self) -> Token {
        self.token
    }

    /// True when connected with no request in flight.
    pub fn is_idle(&self) -> bool {
        matches!(self.conn, Conn::Idle(_))
    }

    /// True while a request is in flight.
    pub fn is_busy(&self) -> bool {
        matches!(self.conn, Conn::Busy(_))
    }

    /// Counters.
    pub fn stats(&self) -> HttpStats {
        self.stats
    }

    /// Starts a request: `request` is the complete pre-encoded HTTP/1.1 request (head and
    /// body; not HEAD). It is copied into the pre-allocated buffer and written at once; the
    /// answer arrives through `poll`, or `tick` reports `TimedOut` once `deadline` passes.
    pub fn send(
        &mut self,
        now: Nanos,
        tag: u64,
        request: &[u8],
        deadline: Nanos,
    ) -> Result<(), SendError> {
        if request.len() > self.cfg.max_request_bytes {
            return Err(SendError::TooLarge);
        }
        let stream = match std::mem::replace(&mut self.conn, Conn::Down) {
            Conn::Idle(s) => s,
            other => {
                self.conn = other;
                return Err(SendError::NotReady);
            }
        };
        self.out.clear();
        self.out.extend_from_slice(request);
        self.out_pos = 0;
        self.parser.reset();
        self.stats.requests += 1;
        self.inflight = Some(InFlight { tag, deadline, sent: false });
        self.conn = Conn::Busy(stream);
        match self.write_out() {
            Ok(()) => Ok(()),
            Err(e) => {
                let reason = io_reason(&e);
                let sent = self.inflight.is_some_and(|f| f.sent);
                self.inflight = None;
                self.stats.failures += 1;
                self.down(now, reason);
                Err(if sent { SendError::Ambiguous(reason) } else { SendError::NotSent(reason) })
            }
        }
    }

    /// Drives the connection after its token fired: connect, TLS, writes, reads and parsing.
    /// A finished or failed request is handed to `on_done`.
    pub fn poll(&mut self, now: Nanos, mut on_done: impl FnMut(Completion<'_>)) -> HttpPoll {
        match std::mem::replace(&mut self.conn, Conn::Down) {
            Conn::Down => HttpPoll::Idle,
            Conn::Connecting(tcp) => match check_connect(&tcp) {
                ConnectCheck::Pending => {
                    self.conn = Conn::Connecting(tcp);
                    HttpPoll::Idle
                }
                ConnectCheck::Failed(e) => self.down(now, DownReason::ConnectFailed(e.kind())),
                ConnectCheck::Done => self.start_tls(now, tcp),
            },
            Conn::Handshaking(stream) => self.handshake(now, stream),
            Conn::Idle(stream) => self.poll_idle(now, stream),
            Conn::Busy(stream) => {
                self.conn = Conn::Busy(stream);
                self.poll_busy(now, &mut on_done)
            }
        }
    }

    /// Timers, once per loop turn: reconnect when due, connect timeout, request deadline.
    pub fn tick(
        &mut self,
        registry: &Registry,
        now: Nanos,
        mut on_done: impl FnMut(Completion<'_>),
    ) -> HttpPoll {
        match self.conn {
            Conn::Down => match self.retry_at {
                Some(at) if at <= now => self.connect(registry, now),
                _ => HttpPoll::Idle,
            },
            Conn::Connecting(_) | Conn::Handshaking(_) => {
                if now.since(self.since) >= self.cfg.connect_timeout {
                    return self.down(now, DownReason::ConnectTimeout);
                }
                HttpPoll::Idle
            }
            Conn::Busy(_) => match self.inflight {
                Some(f) if now >= f.deadline => {
                    // The connection cannot be reused: a late answer would be taken for the
                    // next request's.
                    self.inflight = None;
                    self.stats.timeouts += 1;
                    on_done(Completion::TimedOut { tag: f.tag });
                    self.down(now, DownReason::RequestTimeout)
                }
                _ => HttpPoll::Idle,
            },
            Conn::Idle(_) => HttpPoll::Idle,
        }
    }

    fn connect(&mut self, registry: &Registry, now: Nanos) -> HttpPoll {
        self.since = now;
        let mut tcp = match TcpStream::connect(self.addr) {
            Ok(t) => t,
            Err(e) => return self.down(now, DownReason::ConnectFailed(e.kind())),
        };
        if let Err(e) =
            registry.register(&mut tcp, self.token, Interest::READABLE | Interest::WRITABLE)
        {
            return self.down(now, DownReason::Io(e.kind()));
        }
        self.retry_at = None;
        self.conn = Conn::Connecting(tcp);
        HttpPoll::Idle
    }

    fn start_tls(&mut self, now: Nanos, tcp: TcpStream) -> HttpPoll {
        let tls = match &self.tls {
            Some(cfg) => match self.endpoint.server_name() {
                Ok(name) => Some((cfg, name)),
                Err(_) => return self.down(now, DownReason::Tls),
            },
            None => None,
        };
        match NetStream::new(tcp, tls) {
            Ok(stream) => self.handshake(now, stream),
            Err(_) => self.down(now, DownReason::Tls),
        }
    }

    fn handshake(&mut self, now: Nanos, mut stream: NetStream) -> HttpPoll {
        match stream.drive_handshake() {
            Ok(true) => {
                self.stats.connects += 1;
                self.backoff.on_open(now);
                self.conn = Conn::Idle(stream);
                HttpPoll::Connected
            }
            Ok(false) => {
                self.conn = Conn::Handshaking(stream);
                HttpPoll::Idle
            }
            Err(e) => self.down(now, io_reason(&e)),
        }
    }

    fn poll_idle(&mut self, now: Nanos, mut stream: NetStream) -> HttpPoll {
        // Nothing is expected on an idle connection; reading notices a keep-alive close and
        // lets TLS process post-handshake messages (session tickets).
        let mut scratch = [0u8; 256];
        match stream.read(&mut scratch) {
            Ok(0) => return self.down(now, DownReason::PeerClosed(None)),
            Ok(_) => return self.down(now, DownReason::Protocol),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return self.down(now, DownReason::PeerClosed(None));
            }
            Err(e) => return self.down(now, io_reason(&e)),
        }
        if stream.wants_write() {
            match stream.flush() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return self.down(now, io_reason(&e)),
            }
        }
        self.conn = Conn::Idle(stream);
        HttpPoll::Idle
    }

    fn poll_busy(&mut self, now: Nanos, on_done: &mut impl FnMut(Completion<'_>)) -> HttpPoll {
        if let Err(e) = self.write_out() {
            return self.fail(now, io_reason(&e), on_done);
        }
        let Conn::Busy(stream) = &mut self.conn else { return HttpPoll::Idle };
        let eof = match self.parser.fill(stream) {
            Ok(eof) => eof,
            Err(reason) => return self.fail(now, reason, on_done),
        };
        match self.parser.advance(eof) {
            Ok(false) => HttpPoll::Idle,
            Ok(true) => self.complete(now, eof, on_done),
            Err(reason) => self.fail(now, reason, on_done),
        }
    }

    fn complete(
        &mut self,
        now: Nanos,
        eof: bool,
        on_done: &mut impl FnMut(Completion<'_>),
    ) -> HttpPoll {
        let Some(flight) = self.inflight.take() else { return HttpPoll::Idle };
        let Some(head) = self.parser.head else { return HttpPoll::Idle };
        let (response, end) = self.parser.response(&head);
        self.stats.responses += 1;
        on_done(Completion::Response { tag: flight.tag, response });
        // An end of stream already read will not raise another edge: retire the connection now
        // rather than send the next order into a closed socket.
        if eof || !head.keep_alive || head.kind == BodyKind::UntilClose {
            return self.down(now, DownReason::PeerClosed(None));
        }
        // Bytes beyond the response were never asked for (no pipelining): the stream is
        // out of step, so the connection cannot be trusted any more.
        if end != self.parser.len {
            return self.down(now, DownReason::Protocol);
        }
        if let Conn::Busy(stream) = std::mem::replace(&mut self.conn, Conn::Down) {
            self.conn = Conn::Idle(stream);
        }
        HttpPoll::Idle
    }

    fn fail(
        &mut self,
        now: Nanos,
        reason: DownReason,
        on_done: &mut impl FnMut(Completion<'_>),
    ) -> HttpPoll {
        if let Some(f) = self.inflight.take() {
            self.stats.failures += 1;
            on_done(Completion::Failed { tag: f.tag, reason, sent: f.sent });
        }
        self.down(now, reason)
    }

    /// Writes what is left of the request and flushes TLS; `WouldBlock` waits for WRITABLE.
    fn write_out(&mut self) -> io::Result<()> {
        let Conn::Busy(stream) = &mut self.conn else { return Ok(()) };
        while self.out_pos < self.out.len() {
            match stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out_pos += n;
                    if let Some(f) = &mut self.inflight {
                        f.sent = true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        match stream.flush() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(()),
        }
    }

    fn down(&mut self, now: Nanos, reason: DownReason) -> HttpPoll {
        self.conn = Conn::Down;
        self.retry_at = Some(self.backoff.on_down(now));
        HttpPoll::Down(reason)
    }
}

impl Parser {
    fn reset(&mut self) {
        self.len = 0;
        self.head_start = 0;
        self.head = None;
        self.chunk = Chunk::Size;
        self.chunk_pos = 0;
        self.body.clear();
        self.unclean_eof = false;
    }

    /// Reads until the socket would block; `Ok(true)` on end of stream.
    fn fill(&mut self, stream: &mut NetStream) -> Result<bool, DownReason> {
        loop {
            if self.len == self.buf.len() {
                if self.buf.len() >= self.max {
                    return Err(DownReason::TooLarge);
                }
                // Only a response bigger than any before it gets here.
                let grown = (self.buf.len() * 2).min(self.max);
                self.buf.resize(grown, 0);
            }
            match stream.read(&mut self.buf[self.len..]) {
                Ok(0) => return Ok(true),
                Ok(n) => self.len += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                // TCP end without TLS close_notify: a length-delimited response may still be
                // complete; `advance` decides, and refuses a read-until-close body (it may
                // have been cut short by anyone on the path).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.unclean_eof = true;
                    return Ok(true);
                }
                Err(e) => return Err(io_reason(&e)),
            }
        }
    }

    /// Parses what has arrived; `Ok(true)` once the response is complete.
    fn advance(&mut self, eof: bool) -> Result<bool, DownReason> {
        loop {
            let Some(head) = self.head else {
                match self.parse_head()? {
                    None if eof => return Err(DownReason::Reset),
                    None => return Ok(false),
                    Some(h) if (100..200).contains(&h.status) => {
                        // Interim response (100 Continue): skip it, the real one follows.
                        self.head_start = h.body_start;
                        continue;
                    }
                    Some(h) => {
                        self.head = Some(h);
                        self.chunk_pos = h.body_start;
                        continue;
                    }
                }
            };
            let done = match head.kind {
                BodyKind::Empty => true,
                BodyKind::Length(n) => self.len - head.body_start >= n,
                BodyKind::UntilClose if eof && self.unclean_eof => return Err(DownReason::Reset),
                BodyKind::UntilClose => eof,
                BodyKind::Chunked => self.dechunk()?,
            };
            return if !done && eof { Err(DownReason::Reset) } else { Ok(done) };
        }
    }

    fn parse_head(&self) -> Result<Option<Head>, DownReason> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let data = &self.buf[self.head_start..self.len];
        let n = match resp.parse(data) {
            Ok(Status::Complete(n)) => n,
            Ok(Status::Partial) => return Ok(None),
            Err(_) => return Err(DownReason::Protocol),
        };
        let status = resp.code.ok_or(DownReason::Protocol)?;
        let mut head = Head {
            status,
            body_start: self.head_start + n,
            kind: BodyKind::UntilClose,
            // HTTP/1.1 defaults to keep-alive, 1.0 to close.
            keep_alive: resp.version == Some(1),
            retry_after_s: None,
            remaining_req: None,
            used_weight_1m: None,
            order_count_10s: None,
        };
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let base = self.buf.as_ptr() as usize;
        for h in resp.headers.iter() {
            let v = h.value.trim_ascii();
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let n = parse_u64(v).ok_or(DownReason::Protocol)? as usize;
                if length.is_some_and(|l| l != n) {
                    return Err(DownReason::Protocol);
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                // Only plain `chunked`: we never send Accept-Encoding or TE, and delivering a
                // still-compressed body as if it were JSON would be worse than failing.
                if !v.eq_ignore_ascii_case(b"chunked") {
                    return Err(DownReason::Protocol);
                }
                chunked = true;
            } else if name.eq_ignore_ascii_case("connection") {
                for token in v.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if token.eq_ignore_ascii_case(b"close") {
                        head.keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        head.keep_alive = true;
                    }
                }
            } else if name.eq_ignore_ascii_case("retry-after") {
                head.retry_after_s = parse_u64(v);
            } else if name.eq_ignore_ascii_case("remaining-req") {
                let start = v.as_ptr() as usize - base;
                head.remaining_req = Some((start, start + v.len()));
            } else if name.eq_ignore_ascii_case("x-mbx-used-weight-1m") {
                head.used_weight_1m = parse_u64(v);
            } else if name.eq_ignore_ascii_case("x-mbx-order-count-10s") {
                head.order_count_10s = parse_u64(v);
            }
        }
        head.kind = if (100..200).contains(&status) || status == 204 || status == 304 {
            BodyKind::Empty
        } else if chunked {
            BodyKind::Chunked
        } else if let Some(n) = length {
            if head.body_start.saturating_add(n) > self.max {
                return Err(DownReason::TooLarge);
            }
            BodyKind::Length(n)
        } else {
            head.keep_alive = false;
            BodyKind::UntilClose
        };
        Ok(Some(head))
    }

    /// Decodes chunked framing (sizes via `httparse::parse_chunk_size`, trailers via
    /// `httparse::parse_headers`) from `chunk_pos` on into `body`; `Ok(true)` when done.
    fn dechunk(&mut self) -> Result<bool, DownReason> {
        loop {
            let avail = &self.buf[self.chunk_pos..self.len];
            match self.chunk {
                Chunk::Size => match httparse::parse_chunk_size(avail) {
                    Ok(Status::Complete((used, 0))) => {
                        self.chunk_pos += used;
                        self.chunk = Chunk::Trailers;
                    }
                    Ok(Status::Complete((used, size))) => {
                        self.chunk_pos += used;
                        self.chunk = Chunk::Data(size);
                    }
                    Ok(Status::Partial) => return Ok(false),
                    Err(_) => return Err(DownReason::Protocol),
                },
                Chunk::Data(left) => {
                    if avail.is_empty() {
                        return Ok(false);
                    }
                    let take = (left.min(avail.len() as u64)) as usize;
                    if self.body.len() + take > self.max {
                        return Err(DownReason::TooLarge);
                    }
                    self.body.extend_from_slice(&avail[..take]);
                    self.chunk_pos += take;
                    let left = left - take as u64;
                    self.chunk = if left == 0 { Chunk::DataEnd } else { Chunk::Data(left) };
                }
                Chunk::DataEnd => {
                    if avail.len() < 2 {
                        return Ok(false);
                    }
                    if &avail[..2] != b"\r\n" {
                        return Err(DownReason::Protocol);
                    }
                    self.chunk_pos += 2;
                    self.chunk = Chunk::Size;
                }
                Chunk::Trailers => {
                    let mut trailers = [httparse::EMPTY_HEADER; 16];
                    return match httparse::parse_headers(avail, &mut trailers) {
                        Ok(Status::Complete((used, _))) => {
                            self.chunk_pos += used;
                            Ok(true)
                        }
                        Ok(Status::Partial) => Ok(false),
                        Err(_) => Err(DownReason::Protocol),
                    };
                }
            }
        }
    }

    /// The finished response and the offset just past it.
    fn response(&self, head: &Head) -> (HttpResponse<'_>, usize) {
        let (body, end): (&[u8], usize) = match head.kind {
            BodyKind::Empty => (&[], head.body_start),
            BodyKind::Length(n) => {
                (&self.buf[head.body_start..head.body_start + n], head.body_start + n)
            }
            BodyKind::UntilClose => (&self.buf[head.body_start..self.len], self.len),
            BodyKind::Chunked => (&self.body, self.chunk_pos),
        };
        let response = HttpResponse {
            status: head.status,
            body,
            retry_after_s: head.retry_after_s,
            remaining_req: head.remaining_req.map(|(a, b)| &self.buf[a..b]),
            used_weight_1m: head.used_weight_1m,
            order_count_10s: head.order_count_10s,
        };
        (response, end)
    }
}

/// Decimal digits to u64, rejecting anything else (and overflow).
fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0')))
}

/// A small pool of keep-alive connections to one venue; requests go to an idle one.
#[derive(Debug)]
pub struct HttpPool {
    conns: Vec<HttpConn>,
    first_token: usize,
}

impl HttpPool {
    /// `n` connections to `endpoint`, with tokens `first_token .. first_token + n`.
    pub fn new(
        endpoint: &Endpoint,
        addr: SocketAddr,
        tls: Option<Arc<ClientConfig>>,
        n: usize,
        first_token: Token,
        cfg: HttpConfig,
    ) -> Result<Self, UrlError> {
        let conns = (0..n)
            .map(|i| {
                // Distinct jitter seeds so the pool does not reconnect in lock step.
                let backoff =
                    BackoffConfig { seed: cfg.backoff.seed ^ (i as u64 + 1), ..cfg.backoff };
                let cfg = HttpConfig { backoff, ..cfg };
                HttpConn::new(endpoint.clone(), addr, tls.clone(), Token(first_token.0 + i), cfg)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { conns, first_token: first_token.0 })
    }

    /// True when `token` belongs to this pool.
    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.first_token && token.0 < self.first_token + self.conns.len()
    }

    /// Sends on the first idle connection and returns its index. A connection that fails
    /// before accepting any byte is skipped (the request is safe to try on the next one).
    pub fn send(
        &mut self,
        now: Nanos,
        tag: u64,
        request: &[u8],
        deadline: Nanos,
    ) -> Result<usize, SendError> {
        for (i, c) in self.conns.iter_mut().enumerate() {
            if !c.is_idle() {
                continue;
            }
            match c.send(now, tag, request, deadline) {
                Ok(()) => return Ok(i),
                Err(SendError::NotSent(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(SendError::NoIdle)
    }

    /// Routes a readiness event to its connection.
    pub fn poll(
        &mut self,
        token: Token,
        now: Nanos,
        on_done: impl FnMut(Completion<'_>),
    ) -> HttpPoll {
        match token.0.checked_sub(self.first_token).and_then(|i| self.conns.get_mut(i)) {
            Some(c) => c.poll(now, on_done),
            None => HttpPoll::Idle,
        }
    }

    /// Timers of every connection (reconnects, connect timeouts, request deadlines).
    pub fn tick(
        &mut self,
        registry: &Registry,
        now: Nanos,
        mut on_done: impl FnMut(Completion<'_>),
    ) {
        for c in &mut self.conns {
            c.tick(registry, now, &mut on_done);
        }
    }

    /// Connections ready for a request.
    pub fn idle_count(&self) -> usize {
        self.conns.iter().filter(|c| c.is_idle()).count()
    }

    /// The connections, for stats.
    pub fn conns(&self) -> &[HttpConn] {
        &self.conns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser(max: usize) -> Parser {
        Parser {
            buf: vec![0; 16],
            len: 0,
            head_start: 0,
            head: None,
            chunk: Chunk::Size,
            chunk_pos: 0,
            body: Vec::new(),
            max,
            unclean_eof: false,
        }
    }

    fn push(p: &mut Parser, bytes: &[u8]) {
        if p.len + bytes.len() > p.buf.len() {
            p.buf.resize(p.len + bytes.len(), 0);
        }
        p.buf[p.len..p.len + bytes.len()].copy_from_slice(bytes);
        p.len += bytes.len();
    }

    /// Feeds `wire` one byte at a time; returns the index of the byte that completed it.
    fn byte_by_byte(p: &mut Parser, wire: &[u8]) -> Result<Option<usize>, DownReason> {
        for (i, b) in wire.iter().enumerate() {
            push(p, std::slice::from_ref(b));
            if p.advance(false)? {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    fn owned(p: &Parser) -> (u16, Vec<u8>, bool, usize) {
        let head = p.head.unwrap();
        let (r, end) = p.response(&head);
        (r.status, r.body.to_vec(), head.keep_alive, end)
    }

    #[test]
    fn content_length_completes_exactly_at_the_last_byte() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nRetry-After: 3\r\n\r\nhello";
        let mut p = parser(1 << 20);
        assert_eq!(byte_by_byte(&mut p, wire), Ok(Some(wire.len() - 1)));
        assert_eq!(owned(&p), (200, b"hello".to_vec(), true, wire.len()));
        assert_eq!(p.response(&p.head.unwrap()).0.retry_after_s, Some(3));
    }

    #[test]
    fn chunked_with_extensions_and_trailers_byte_by_byte() {
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip-not, chunked\r\n\r\n\
                     4;x=y\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nA: b\r\n\r\n";
        // Any coding besides `chunked` is refused...
        let mut p = parser(1 << 20);
        assert_eq!(byte_by_byte(&mut p, wire), Err(DownReason::Protocol));
        // ...plain `chunked` is.
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                     4;x=y\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nA: b\r\n\r\n";
        let mut p = parser(1 << 20);
        assert_eq!(byte_by_byte(&mut p, wire), Ok(Some(wire.len() - 1)));
        assert_eq!(owned(&p), (200, b"Wikipedia in \r\n\r\nchunks.".to_vec(), true, wire.len()));
    }

    #[test]
    fn interim_and_bodyless_responses() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let mut p = parser(1 << 20);
        assert_eq!(byte_by_byte(&mut p, wire), Ok(Some(wire.len() - 1)));
        assert_eq!(owned(&p), (204, Vec::new(), true, wire.len()));
    }

    #[test]
    fn no_length_reads_to_close_and_http10_closes() {
        let mut p = parser(1 << 20);
        push(&mut p, b"HTTP/1.0 200 OK\r\n\r\npartial");
        assert_eq!(p.advance(false), Ok(false));
        assert_eq!(p.advance(true), Ok(true));
        assert_eq!(owned(&p), (200, b"partial".to_vec(), false, 26));
        // The same body ended by a TCP close without TLS close_notify may be truncated.
        let mut p = parser(1 << 20);
        push(&mut p, b"HTTP/1.1 200 OK\r\n\r\npartial");
        p.unclean_eof = true;
        assert_eq!(p.advance(true), Err(DownReason::Reset));
    }

    #[test]
    fn malformed_and_oversized_responses_are_errors() {
        let cases: [(&[u8], DownReason); 6] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
                DownReason::Protocol,
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", DownReason::Protocol),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", DownReason::Protocol),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", DownReason::Protocol),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 999999\r\n\r\n", DownReason::TooLarge),
            (b"garbage\r\n\r\n", DownReason::Protocol),
        ];
        for (wire, want) in cases {
            let mut p = parser(4096);
            push(&mut p, wire);
            assert_eq!(p.advance(false), Err(want), "{}", String::from_utf8_lossy(wire));
        }
        // A response cut short by the end of the stream is not a response.
        let mut p = parser(4096);
        push(&mut p, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
        assert_eq!(p.advance(false), Ok(false));
        assert_eq!(p.advance(true), Err(DownReason::Reset));
    }

    #[test]
    fn remaining_req_sec_is_parsed() {
        let r = HttpResponse {
            status: 200,
            body: b"",
            retry_after_s: None,
            remaining_req: Some(b"group=default; min=1800; sec=29"),
            used_weight_1m: None,
            order_count_10s: None,
        };
        assert_eq!(r.remaining_req_sec(), Some(29));
        assert_eq!(
            HttpResponse { remaining_req: Some(b"group=order"), ..r }.remaining_req_sec(),
            None
        );
        assert_eq!(parse_u64(b"18446744073709551615"), None, "20 digits refused, no overflow");
        assert_eq!(parse_u64(b"1234567890123456789"), Some(1_234_567_890_123_456_789));
    }
}
