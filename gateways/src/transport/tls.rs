//! TLS client configuration (rustls with the ring provider) and the byte stream both
//! transports run over: a mio socket, plain or wrapped in a rustls client session.

use std::io::{self, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// Client config trusting the Mozilla roots compiled in by `webpki-roots` (no OS store needed).
pub fn webpki_client_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    let roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    client_config(roots)
}

/// Client config trusting exactly `roots` (tests use a store holding one self-signed cert).
///
/// The ring provider is named explicitly rather than taken from the process default, so this
/// never panics even if another crate compiles aws-lc-rs in as well.
pub fn client_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Offer only HTTP/1.1: WebSocket upgrades and our REST client both speak it, and a server
    // must not pick h2 on us.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A connected socket, plain (loopback only) or TLS.
#[derive(Debug)]
pub enum NetStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP; boxed because a rustls session is large.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl NetStream {
    /// Wraps a connected socket, starting a TLS session when `tls` is given.
    pub fn new(
        tcp: TcpStream,
        tls: Option<(&Arc<ClientConfig>, ServerName<'static>)>,
    ) -> Result<Self, rustls::Error> {
        Ok(match tls {
            None => NetStream::Plain(tcp),
            Some((cfg, name)) => {
                let conn = ClientConnection::new(Arc::clone(cfg), name)?;
                NetStream::Tls(Box::new(StreamOwned::new(conn, tcp)))
            }
        })
    }

    /// The socket, for mio (re)registration.
    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            NetStream::Plain(s) => s,
            NetStream::Tls(s) => &mut s.sock,
        }
    }

    /// True while the TLS handshake has not finished (always false for plain TCP).
    pub fn is_handshaking(&self) -> bool {
        matches!(self, NetStream::Tls(s) if s.conn.is_handshaking())
    }

    /// True when TLS records are queued for the socket (written on the next flush).
    pub fn wants_write(&self) -> bool {
        matches!(self, NetStream::Tls(s) if s.conn.wants_write())
    }

    /// Advances the TLS handshake without blocking: `Ok(true)` once it is done,
    /// `Ok(false)` while it waits on the socket.
    pub fn drive_handshake(&mut self) -> io::Result<bool> {
        let NetStream::Tls(s) = self else { return Ok(true) };
        while s.conn.is_handshaking() || s.conn.wants_write() {
            match s.conn.complete_io(&mut s.sock) {
                Ok((0, 0)) if s.conn.is_handshaking() => {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// Most bytes one `read` returns (one TLS record's plaintext).
///
/// tungstenite reads as much as its buffer holds and then reserves a frame's length on
/// top of *all* the unread bytes; when that overflows and the unread part is larger than
/// what was consumed, `bytes` allocates a bigger buffer instead of moving the tail down
/// (the live loop's only allocations after warm-up, 3–7 per 20 s, under bursts). Small
/// reads keep the unread part small, so the buffer is always reclaimed in place. Callers
/// read until `WouldBlock`, so nothing waits longer.
pub const READ_CHUNK: usize = 16 << 10;

impl Read for NetStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(READ_CHUNK);
        match self {
            NetStream::Plain(s) => s.read(&mut buf[..n]),
            NetStream::Tls(s) => s.read(&mut buf[..n]),
        }
    }
}

impl Write for NetStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            NetStream::Plain(s) => s.write(buf),
            NetStream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            NetStream::Plain(s) => s.flush(),
            NetStream::Tls(s) => s.flush(),
        }
    }
}

/// Outcome of a non-blocking TCP connect, checked when the socket reports an event.
#[derive(Debug)]
pub(crate) enum ConnectCheck {
    /// Still in progress (spurious wake-up).
    Pending,
    /// Connected.
    Done,
    /// Failed.
    Failed(io::Error),
}

/// Checks a socket whose non-blocking connect was started earlier: `take_error` reports a
/// failed connect, and `peer_addr` succeeds only once it is established.
pub(crate) fn check_connect(tcp: &TcpStream) -> ConnectCheck {
    match tcp.take_error() {
        Ok(Some(e)) | Err(e) => return ConnectCheck::Failed(e),
        Ok(None) => {}
    }
    match tcp.peer_addr() {
        Ok(_) => {
            // Orders and pings are small writes that must not wait for Nagle.
            match tcp.set_nodelay(true) {
                Ok(()) => ConnectCheck::Done,
                Err(e) => ConnectCheck::Failed(e),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotConnected => ConnectCheck::Pending,
        Err(e) => ConnectCheck::Failed(e),
    }
}
