//! Non-blocking transports driven by the caller's `mio::Poll`.
//!
//! Nothing here blocks, sleeps, spawns a thread or reads a clock: the one pinned trading loop
//! polls every socket with a zero timeout, then calls `poll(now, ..)` on the connection whose
//! token fired and `tick(registry, now, ..)` on every connection once per turn (timers:
//! connect timeouts, pings, staleness, request deadlines, reconnects).
//!
//! ```text
//! loop {
//!     poll.poll(&mut events, Some(Duration::ZERO))?;
//!     let now = clock.now();
//!     for ev in &events {
//!         match ev.token() {
//!             UPBIT => if let WsPoll::Down(r) = upbit.poll(now, |payload| codec.on_frame(payload)) {
//!                 engine.on_event(now, &Event::FeedDown(Venue::Upbit), &mut out);
//!             }
//!             t if rest.owns(t) => rest.poll(t, now, |done| oms.on_completion(done)),
//!             _ => {}
//!         }
//!     }
//!     upbit.tick(poll.registry(), now);          // may report Down (stale) or reconnect
//!     rest.tick(poll.registry(), now, |done| oms.on_completion(done)); // timeouts
//! }
//! ```
//!
//! Allocations after warm-up, measured by `tests/transport_alloc.rs` (run it with
//! `--nocapture`; ~900 B messages): plain WebSocket ~0.001 per message (tungstenite hands each
//! frame out as `Bytes` split off a shared read buffer and reclaims it); TLS WebSocket ~1 per
//! TLS record (rustls' buffered API copies each decrypted record into a new `Vec`: a known
//! limit, its unbuffered API would remove it); HTTP over plain TCP 0 (asserted); HTTP over TLS
//! 2 per request (one record each way). Connecting and handshaking allocate; that is not the
//! per-message path.

pub mod backoff;
pub mod http;
pub mod tls;
pub mod url;
pub mod ws;

use std::io;

pub use backoff::{Backoff, BackoffConfig, Refusal, Retry};
pub use http::{Completion, HttpConfig, HttpConn, HttpPoll, HttpPool, HttpResponse, SendError};
pub use tls::{NetStream, client_config, webpki_client_config};
pub use url::{Endpoint, Scheme, UrlError};
pub use ws::{InvalidHeader, WsConfig, WsConn, WsPoll, WsSendError, WsState, WsStats};

/// Why a connection went down. `Copy` so reporting it never allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownReason {
    /// The TCP connect failed.
    ConnectFailed(io::ErrorKind),
    /// Connect, TLS or WebSocket handshake did not finish within the configured time.
    ConnectTimeout,
    /// TLS failure (certificate, alert, bad record).
    Tls,
    /// The WebSocket upgrade was refused with this HTTP status.
    HandshakeStatus(u16),
    /// The WebSocket upgrade failed for another reason.
    Handshake,
    /// The peer closed cleanly (WebSocket Close frame with its code, or HTTP keep-alive end).
    PeerClosed(Option<u16>),
    /// The peer dropped the connection without a closing handshake.
    Reset,
    /// Other socket error.
    Io(io::ErrorKind),
    /// The peer broke the protocol (bad frame, bad HTTP response).
    Protocol,
    /// A message or response larger than the configured limit.
    TooLarge,
    /// Nothing was received for longer than the staleness limit (silent stall).
    Stale,
    /// A request got no answer before its deadline.
    RequestTimeout,
    /// Closed by our side.
    Local,
}

/// Maps an I/O error to a reason, recognising TLS errors that rustls wraps in `io::Error`.
pub(crate) fn io_reason(e: &io::Error) -> DownReason {
    if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
        return DownReason::Tls;
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe => DownReason::Reset,
        k => DownReason::Io(k),
    }
}
