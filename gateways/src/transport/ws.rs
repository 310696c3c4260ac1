//! WebSocket client connection: a state machine over a non-blocking mio socket
//! (connect -> TLS -> upgrade -> open -> down -> back-off -> connect ...).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use kimp_core::units::Nanos;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::ClientConfig;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::http::{HeaderName, HeaderValue};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Bytes, Message, WebSocket};

use super::backoff::{Backoff, BackoffConfig, Refusal};
use super::tls::{ConnectCheck, NetStream, check_connect};
use super::url::{Endpoint, UrlError};
use super::{DownReason, io_reason};

/// Timing and size limits of a WebSocket connection.
#[derive(Clone, Copy, Debug)]
pub struct WsConfig {
    /// TCP connect + TLS + upgrade must finish within this.
    pub connect_timeout: Nanos,
    /// Send a WebSocket Ping this often (Upbit closes after ~120 s idle; docs say 30–60 s).
    pub ping_interval: Nanos,
    /// No frame at all (data, pong, ping) for this long means a silent stall: report `Stale`.
    pub stale_after: Nanos,
    /// Largest message accepted; a bigger one closes the connection (`TooLarge`).
    pub max_message_bytes: usize,
    /// tungstenite read buffer, allocated once per connection.
    pub read_buffer_bytes: usize,
    /// Reconnect policy.
    pub backoff: BackoffConfig,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Nanos::from_ms(10_000),
            ping_interval: Nanos::from_ms(30_000),
            stale_after: Nanos::from_ms(75_000),
            max_message_bytes: 4 << 20,
            read_buffer_bytes: 128 << 10,
            backoff: BackoffConfig::default(),
        }
    }
}

/// What a `poll` or `tick` call changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsPoll {
    /// Nothing to report (messages, if any, went to the callback).
    Idle,
    /// The upgrade just completed: send subscriptions now.
    Opened,
    /// The connection is down (every transition into down is reported, including each failed
    /// attempt); the runtime emits `Event::FeedDown`. A reconnect is already scheduled.
    Down(DownReason),
}

/// Coarse state, for status displays and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsState {
    /// No socket; waiting for the back-off to expire (or closed by us).
    Down,
    /// TCP connect in progress.
    Connecting,
    /// TLS and/or WebSocket upgrade in progress.
    Handshaking,
    /// Open: messages flow.
    Open,
    /// We sent a Close and wait for the peer's.
    Closing,
}

/// Why a send was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsSendError {
    /// Not open; nothing was sent.
    NotOpen,
    /// The connection failed while sending and is now down.
    Down(DownReason),
}

/// A header name or value that HTTP does not allow (the value is not echoed: it may be a secret).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidHeader;

/// Counters since creation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WsStats {
    /// Data messages delivered to the callback.
    pub messages: u64,
    /// Payload bytes delivered.
    pub bytes: u64,
    /// Successful upgrades.
    pub opens: u64,
    /// Transitions into down (failed attempts included).
    pub downs: u64,
    /// Pings sent.
    pub pings: u64,
    /// Pongs received.
    pub pongs: u64,
}

type Handshake = MidHandshake<ClientHandshake<NetStream>>;

enum Conn {
    Down,
    Connecting(TcpStream),
    Handshaking(Box<Handshake>),
    Open(Box<WebSocket<NetStream>>),
    Closing(Box<WebSocket<NetStream>>),
}

/// A WebSocket client connection over a non-blocking mio socket, reconnecting by itself.
pub struct WsConn {
    endpoint: Endpoint,
    addr: SocketAddr,
    tls: Option<Arc<ClientConfig>>,
    token: Token,
    cfg: WsConfig,
    headers: Vec<(HeaderName, HeaderValue)>,
    conn: Conn,
    since: Nanos,
    backoff: Backoff,
    retry_at: Option<Nanos>,
    flush_pending: bool,
    last_rx: Nanos,
    last_data: Nanos,
    last_ping: Nanos,
    stats: WsStats,
}

impl fmt::Debug for WsConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values may carry a JWT: print names only.
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("WsConn")
            .field("url", &self.endpoint.ws_url())
            .field("addr", &self.addr)
            .field("token", &self.token)
            .field("state", &self.state())
            .field("headers", &names)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl WsConn {
    /// A connection to `endpoint` at `addr` (resolved at start-up), registered under `token`.
    /// `tls` must be given exactly when the endpoint is `wss://`. The first `tick` connects.
    pub fn new(
        endpoint: Endpoint,
        addr: SocketAddr,
        tls: Option<Arc<ClientConfig>>,
        token: Token,
        cfg: WsConfig,
    ) -> Result<Self, UrlError> {
        if endpoint.is_tls() != tls.is_some() {
            return Err(UrlError::BadScheme);
        }
        if !endpoint.is_tls() && !addr.ip().is_loopback() {
            return Err(UrlError::PlainNotLoopback(addr.ip().to_string()));
        }
        Ok(Self {
            endpoint,
            addr,
            tls,
            token,
            cfg,
            headers: Vec::new(),
            conn: Conn::Down,
            since: Nanos(0),
            backoff: Backoff::new(cfg.backoff),
            retry_at: Some(Nanos(0)),
            flush_pending: false,
            last_rx: Nanos(0),
            last_data: Nanos(0),
            last_ping: Nanos(0),
            stats: WsStats::default(),
        })
    }

    /// Sets a header for the upgrade request of the next connection attempts (Upbit's private
    /// stream needs `Authorization: Bearer <JWT>`; refresh it after each `Down`).
    pub fn set_header(&mut self, name: &str, value: &str) -> Result<(), InvalidHeader> {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| InvalidHeader)?;
        let mut value = HeaderValue::from_str(value).map_err(|_| InvalidHeader)?;
        value.set_sensitive(true);
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value));
        Ok(())
    }

    /// The mio token this connection's socket is registered with.
    pub fn token(&self) -> Token {
        self.token
    }

    /// Coarse state.
    pub fn state(&self) -> WsState {
        match self.conn {
            Conn::Down => WsState::Down,
            Conn::Connecting(_) => WsState::Connecting,
            Conn::Handshaking(_) => WsState::Handshaking,
            Conn::Open(_) => WsState::Open,
            Conn::Closing(_) => WsState::Closing,
        }
    }

    /// Counters.
    pub fn stats(&self) -> WsStats {
        self.stats
    }

    /// When the last data message arrived (for per-feed staleness checks by the caller).
    pub fn last_data_at(&self) -> Nanos {
        self.last_data
    }

    /// When any frame last arrived.
    pub fn last_rx_at(&self) -> Nanos {
        self.last_rx
    }

    /// When the next connection attempt is due, if one is scheduled.
    pub fn retry_at(&self) -> Option<Nanos> {
        self.retry_at
    }

    /// Drives the connection after its token fired: finishes connects and handshakes, flushes
    /// queued writes, and reads until the socket would block (edge-triggered: always drain),
    /// handing each text or binary payload to `on_msg`.
    pub fn poll(&mut self, now: Nanos, mut on_msg: impl FnMut(&[u8])) -> WsPoll {
        match std::mem::replace(&mut self.conn, Conn::Down) {
            Conn::Down => WsPoll::Idle,
            Conn::Connecting(tcp) => match check_connect(&tcp) {
                ConnectCheck::Pending => {
                    self.conn = Conn::Connecting(tcp);
                    WsPoll::Idle
                }
                ConnectCheck::Failed(e) => self.down(now, DownReason::ConnectFailed(e.kind())),
                ConnectCheck::Done => self.start_upgrade(now, tcp, &mut on_msg),
            },
            Conn::Handshaking(mid) => self.on_upgrade(now, mid.handshake(), &mut on_msg),
            Conn::Open(ws) => self.drain(now, ws, &mut on_msg),
            Conn::Closing(ws) => self.drain_closing(now, ws),
        }
    }

    /// Timers, once per loop turn: reconnect when due, connect timeout, ping, staleness.
    pub fn tick(&mut self, registry: &Registry, now: Nanos) -> WsPoll {
        match &mut self.conn {
            Conn::Down => match self.retry_at {
                Some(at) if at <= now => self.connect(registry, now),
                _ => WsPoll::Idle,
            },
            Conn::Connecting(_) | Conn::Handshaking(_) | Conn::Closing(_) => {
                if now.since(self.since) >= self.cfg.connect_timeout {
                    let closing = matches!(self.conn, Conn::Closing(_));
                    let reason =
                        if closing { DownReason::Local } else { DownReason::ConnectTimeout };
                    return self.down(now, reason);
                }
                WsPoll::Idle
            }
            Conn::Open(ws) => {
                if now.since(self.last_rx) >= self.cfg.stale_after {
                    return self.down(now, DownReason::Stale);
                }
                if now.since(self.last_ping) >= self.cfg.ping_interval {
                    self.last_ping = now;
                    self.stats.pings += 1;
                    // An empty ping payload: `Bytes::new()` does not allocate.
                    if let Err(r) =
                        send_or_queue(ws, Message::Ping(Bytes::new()), &mut self.flush_pending)
                    {
                        return self.down(now, r);
                    }
                }
                WsPoll::Idle
            }
        }
    }

    /// Sends a text frame (subscriptions, `PING` text). Copies `text` into a frame, so keep it
    /// off the per-message path. A send that would block is queued and flushed on the next poll.
    pub fn send_text(&mut self, now: Nanos, text: &str) -> Result<(), WsSendError> {
        let Conn::Open(ws) = &mut self.conn else { return Err(WsSendError::NotOpen) };
        match send_or_queue(ws, Message::text(text), &mut self.flush_pending) {
            Ok(()) => Ok(()),
            Err(r) => {
                self.down(now, r);
                Err(WsSendError::Down(r))
            }
        }
    }

    /// Starts a graceful close; no reconnect follows until [`WsConn::reconnect`].
    pub fn close(&mut self, now: Nanos) {
        self.retry_at = None;
        // Any state but Open is simply dropped: there is no handshake to finish.
        if let Conn::Open(mut ws) = std::mem::replace(&mut self.conn, Conn::Down) {
            // Err(WouldBlock) leaves the Close queued; the next poll flushes it.
            let _ = ws.close(None);
            self.since = now;
            self.conn = Conn::Closing(ws);
        }
    }

    /// Drops the current connection (if any) and connects again on the next `tick`, e.g. to
    /// recycle a connection before Binance's 24 h limit or after the caller saw stale books.
    pub fn reconnect(&mut self, now: Nanos) {
        self.conn = Conn::Down;
        self.retry_at = Some(now);
    }

    fn connect(&mut self, registry: &Registry, now: Nanos) -> WsPoll {
        self.since = now;
        let mut tcp = match TcpStream::connect(self.addr) {
            Ok(t) => t,
            Err(e) => return self.down(now, DownReason::ConnectFailed(e.kind())),
        };
        // Edge-triggered READABLE|WRITABLE: WRITABLE wakes us for connect completion and for
        // flushing queued writes; a fresh registration reports the socket's current readiness.
        if let Err(e) =
            registry.register(&mut tcp, self.token, Interest::READABLE | Interest::WRITABLE)
        {
            return self.down(now, DownReason::Io(e.kind()));
        }
        self.retry_at = None;
        self.conn = Conn::Connecting(tcp);
        WsPoll::Idle
    }

    fn start_upgrade(
        &mut self,
        now: Nanos,
        tcp: TcpStream,
        on_msg: &mut impl FnMut(&[u8]),
    ) -> WsPoll {
        let tls = match &self.tls {
            Some(cfg) => match self.endpoint.server_name() {
                Ok(name) => Some((cfg, name)),
                Err(_) => return self.down(now, DownReason::Tls),
            },
            None => None,
        };
        let stream = match NetStream::new(tcp, tls) {
            Ok(s) => s,
            Err(_) => return self.down(now, DownReason::Tls),
        };
        let mut req = match self.endpoint.ws_url().into_client_request() {
            Ok(r) => r,
            Err(_) => return self.down(now, DownReason::Handshake),
        };
        for (name, value) in &self.headers {
            req.headers_mut().insert(name.clone(), value.clone());
        }
        let cfg = WebSocketConfig::default()
            .read_buffer_size(self.cfg.read_buffer_bytes)
            // Write each frame at once: our writes are latency-critical and tiny.
            .write_buffer_size(0)
            .max_message_size(Some(self.cfg.max_message_bytes))
            .max_frame_size(Some(self.cfg.max_message_bytes));
        let res = tungstenite::client::client_with_config(req, stream, Some(cfg));
        self.on_upgrade(now, res.map(|(ws, _)| ws), on_msg)
    }

    fn on_upgrade(
        &mut self,
        now: Nanos,
        res: Result<impl UpgradeResult, HandshakeError<ClientHandshake<NetStream>>>,
        on_msg: &mut impl FnMut(&[u8]),
    ) -> WsPoll {
        match res {
            Ok(done) => {
                let ws = Box::new(done.into_ws());
                self.stats.opens += 1;
                self.backoff.on_open(now);
                self.last_rx = now;
                self.last_ping = now;
                self.flush_pending = false;
                // Bytes that arrived with the 101 response sit in tungstenite's buffer and will
                // not raise another edge: drain now.
                match self.drain(now, ws, on_msg) {
                    WsPoll::Idle => WsPoll::Opened,
                    other => other,
                }
            }
            Err(HandshakeError::Interrupted(mid)) => {
                self.conn = Conn::Handshaking(Box::new(mid));
                WsPoll::Idle
            }
            Err(HandshakeError::Failure(e)) => {
                let reason = match &e {
                    tungstenite::Error::Http(resp) => {
                        DownReason::HandshakeStatus(resp.status().as_u16())
                    }
                    other => ws_reason(other),
                };
                self.down(now, reason)
            }
        }
    }

    fn drain(
        &mut self,
        now: Nanos,
        mut ws: Box<WebSocket<NetStream>>,
        on_msg: &mut impl FnMut(&[u8]),
    ) -> WsPoll {
        if self.flush_pending {
            match ws.flush() {
                Ok(()) => self.flush_pending = false,
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return self.down(now, ws_reason(&e)),
            }
        }
        loop {
            match ws.read() {
                Ok(msg) => {
                    self.last_rx = now;
                    let payload: &[u8] = match &msg {
                        Message::Text(t) => t.as_bytes(),
                        Message::Binary(b) => b,
                        Message::Ping(_) => continue, // tungstenite queues the pong itself
                        Message::Pong(_) => {
                            self.stats.pongs += 1;
                            continue;
                        }
                        Message::Close(frame) => {
                            let code = frame.as_ref().map(|f| u16::from(f.code));
                            // Best effort: send our Close reply, then go; no data follows a Close.
                            let _ = ws.flush();
                            return self.down(now, DownReason::PeerClosed(code));
                        }
                        Message::Frame(_) => continue,
                    };
                    self.last_data = now;
                    self.stats.messages += 1;
                    self.stats.bytes += payload.len() as u64;
                    on_msg(payload);
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.conn = Conn::Open(ws);
                    return WsPoll::Idle;
                }
                Err(e) => return self.down(now, ws_reason(&e)),
            }
        }
    }

    fn drain_closing(&mut self, now: Nanos, mut ws: Box<WebSocket<NetStream>>) -> WsPoll {
        loop {
            match ws.read() {
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.conn = Conn::Closing(ws);
                    return WsPoll::Idle;
                }
                // After a Close, a TCP end without TLS close_notify (rustls UnexpectedEof) is
                // just how many servers finish: it is a clean close.
                Err(_) => return self.down(now, DownReason::Local),
            }
        }
    }

    fn down(&mut self, now: Nanos, reason: DownReason) -> WsPoll {
        // Dropping the socket closes it, which also removes it from the epoll set.
        self.conn = Conn::Down;
        self.flush_pending = false;
        self.stats.downs += 1;
        // A refused upgrade is the venue's rate limit too: 429 waits at least 1 s, 418 at
        // least the shortest ban, on top of the exponential delay.
        let next = match reason {
            DownReason::HandshakeStatus(s) => {
                self.backoff.on_refused(now, Refusal::from_status(s, None))
            }
            _ => self.backoff.on_down(now),
        };
        self.retry_at = match reason {
            DownReason::Local => None,
            _ => Some(next),
        };
        WsPoll::Down(reason)
    }
}

/// Lets `on_upgrade` take both the first attempt's `(ws, response)` and a resumed handshake.
trait UpgradeResult {
    fn into_ws(self) -> WebSocket<NetStream>;
}

impl UpgradeResult for WebSocket<NetStream> {
    fn into_ws(self) -> WebSocket<NetStream> {
        self
    }
}

impl UpgradeResult for (WebSocket<NetStream>, tungstenite::handshake::client::Response) {
    fn into_ws(self) -> WebSocket<NetStream> {
        self.0
    }
}

/// Writes a frame; a send that would block stays queued inside tungstenite (flushed later).
fn send_or_queue(
    ws: &mut WebSocket<NetStream>,
    msg: Message,
    flush_pending: &mut bool,
) -> Result<(), DownReason> {
    match ws.send(msg) {
        Ok(()) => Ok(()),
        Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
            *flush_pending = true;
            Ok(())
        }
        Err(e) => Err(ws_reason(&e)),
    }
}

fn ws_reason(e: &tungstenite::Error) -> DownReason {
    use tungstenite::error::{CapacityError, ProtocolError};
    match e {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            DownReason::PeerClosed(None)
        }
        tungstenite::Error::Io(io) => io_reason(io),
        tungstenite::Error::Tls(_) => DownReason::Tls,
        tungstenite::Error::Capacity(CapacityError::MessageTooLong { .. }) => DownReason::TooLarge,
        tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            DownReason::Reset
        }
        tungstenite::Error::Http(r) => DownReason::HandshakeStatus(r.status().as_u16()),
        tungstenite::Error::Url(_) | tungstenite::Error::HttpFormat(_) => DownReason::Handshake,
        _ => DownReason::Protocol,
    }
}
