//! Endpoint URLs and the plain-text rule: `wss://`/`https://` anywhere, `ws://`/`http://` only
//! to loopback, so a misconfigured live endpoint can never send keys or orders in clear text.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use rustls::pki_types::ServerName;

/// URL scheme of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// WebSocket over plain TCP (loopback only).
    Ws,
    /// WebSocket over TLS.
    Wss,
    /// HTTP/1.1 over plain TCP (loopback only).
    Http,
    /// HTTP/1.1 over TLS.
    Https,
}

impl Scheme {
    /// True for the TLS schemes.
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Wss | Scheme::Https)
    }

    fn default_port(self) -> u16 {
        if self.is_tls() { 443 } else { 80 }
    }
}

/// Why a URL was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrlError {
    /// Not one of `ws`, `wss`, `http`, `https`.
    BadScheme,
    /// Empty or malformed host.
    BadHost,
    /// Port is not a number in 1..=65535.
    BadPort,
    /// User info (`user@host`) is not accepted: credentials never go in URLs.
    UserInfo,
    /// A plain-text scheme aimed at a host that is not loopback.
    PlainNotLoopback(String),
    /// Name resolution failed (only [`Endpoint::resolve`] does this).
    Resolve(std::io::ErrorKind),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::BadScheme => f.write_str("url scheme must be ws, wss, http or https"),
            UrlError::BadHost => f.write_str("url host is empty or malformed"),
            UrlError::BadPort => f.write_str("url port is not in 1..=65535"),
            UrlError::UserInfo => f.write_str("user info in a url is not accepted"),
            UrlError::PlainNotLoopback(h) => write!(
                f,
                "plain ws:// or http:// is only allowed to loopback (127.0.0.0/8, ::1, \
                 localhost), not to {h}: use wss:// or https://"
            ),
            UrlError::Resolve(k) => write!(f, "cannot resolve host: {k}"),
        }
    }
}

impl std::error::Error for UrlError {}

/// A parsed, policy-checked endpoint: scheme, host, port and request target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    scheme: Scheme,
    host: String,
    port: u16,
    target: String,
}

impl Endpoint {
    /// Parses `url` and applies the plain-text-only-to-loopback rule.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let (scheme, rest) = split_scheme(url)?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err(UrlError::UserInfo);
        }
        let (host, port) = split_host_port(authority, scheme.default_port())?;
        // The fragment never goes on the wire.
        let tail = tail.split('#').next().unwrap_or("");
        let target = if tail.starts_with('/') { tail.to_string() } else { format!("/{tail}") };
        if !scheme.is_tls() && !is_loopback_host(&host) {
            return Err(UrlError::PlainNotLoopback(host));
        }
        Ok(Self { scheme, host, port, target })
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// True when the connection must use TLS.
    pub fn is_tls(&self) -> bool {
        self.scheme.is_tls()
    }

    /// Host as written (lower case; IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// TCP port (explicit or the scheme's default).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Path and query, always starting with `/`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Value for an HTTP `Host` header (port only when it is not the default).
    pub fn host_header(&self) -> String {
        let host =
            if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == self.scheme.default_port() { host } else { format!("{host}:{}", self.port) }
    }

    /// The URL in the `ws`/`wss` form tungstenite expects (an `https` endpoint maps to `wss`).
    pub fn ws_url(&self) -> String {
        let scheme = if self.is_tls() { "wss" } else { "ws" };
        let host =
            if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("{scheme}://{host}:{}{}", self.port, self.target)
    }

    /// Name for TLS certificate verification (SNI is sent for DNS names only).
    pub fn server_name(&self) -> Result<ServerName<'static>, UrlError> {
        ServerName::try_from(self.host.clone()).map_err(|_| UrlError::BadHost)
    }

    /// Resolves the address to connect to. May block on DNS for a host name, so call it at
    /// start-up (or off the trading thread) and hand the address to the connection; IP literals
    /// never touch DNS. A plain-text endpoint must resolve to a loopback address.
    pub fn resolve(&self) -> Result<SocketAddr, UrlError> {
        let addr = if let Ok(ip) = self.host.parse::<IpAddr>() {
            SocketAddr::new(ip, self.port)
        } else {
            (self.host.as_str(), self.port)
                .to_socket_addrs()
                .map_err(|e| UrlError::Resolve(e.kind()))?
                .next()
                .ok_or(UrlError::Resolve(std::io::ErrorKind::NotFound))?
        };
        if !self.is_tls() && !addr.ip().is_loopback() {
            return Err(UrlError::PlainNotLoopback(addr.ip().to_string()));
        }
        Ok(addr)
    }
}

fn split_scheme(url: &str) -> Result<(Scheme, &str), UrlError> {
    let (name, rest) = url.split_once("://").ok_or(UrlError::BadScheme)?;
    let scheme = match name.to_ascii_lowercase().as_str() {
        "ws" => Scheme::Ws,
        "wss" => Scheme::Wss,
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(UrlError::BadScheme),
    };
    Ok((scheme, rest))
}

fn split_host_port(authority: &str, default_port: u16) -> Result<(String, u16), UrlError> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or(UrlError::BadHost)?;
        host.parse::<std::net::Ipv6Addr>().map_err(|_| UrlError::BadHost)?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or(UrlError::BadPort)?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':');
    if host.is_empty() || !host.chars().all(valid) {
        return Err(UrlError::BadHost);
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(UrlError::BadPort),
        },
    };
    Ok((host.to_ascii_lowercase(), port))
}

/// True for `localhost`, 127.0.0.0/8 and `::1`: the only hosts plain text may reach.
pub fn is_loopback_host(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    host.parse::<IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_urls_parse_anywhere() {
        let e = Endpoint::parse("wss://api.upbit.com/websocket/v1").unwrap();
        assert_eq!((e.host(), e.port(), e.target()), ("api.upbit.com", 443, "/websocket/v1"));
        assert!(e.is_tls());
        let e =
            Endpoint::parse("wss://fstream.binance.com/public/stream?streams=btcusdt@depth@100ms")
                .unwrap();
        assert_eq!(e.target(), "/public/stream?streams=btcusdt@depth@100ms");
        assert_eq!(
            e.ws_url(),
            "wss://fstream.binance.com:443/public/stream?streams=btcusdt@depth@100ms"
        );
        let e = Endpoint::parse("https://fapi.binance.com").unwrap();
        assert_eq!((e.target(), e.host_header()), ("/", "fapi.binance.com".to_string()));
    }

    #[test]
    fn plain_only_to_loopback() {
        for ok in
            ["ws://127.0.0.1:9001/ws", "http://localhost:8080", "ws://[::1]:9/x", "ws://127.9.9.9/"]
        {
            let e = Endpoint::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert!(!e.is_tls());
        }
        for bad in
            ["ws://example.com/ws", "http://api.upbit.com/v1", "ws://10.0.0.1:80/", "ws://[::2]/"]
        {
            match Endpoint::parse(bad) {
                Err(UrlError::PlainNotLoopback(_)) => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_urls_are_errors() {
        assert_eq!(Endpoint::parse("ftp://127.0.0.1/"), Err(UrlError::BadScheme));
        assert_eq!(Endpoint::parse("127.0.0.1:80"), Err(UrlError::BadScheme));
        assert_eq!(Endpoint::parse("wss://:443/"), Err(UrlError::BadHost));
        assert_eq!(Endpoint::parse("wss://a.com:0/"), Err(UrlError::BadPort));
        assert_eq!(Endpoint::parse("wss://a.com:99999/"), Err(UrlError::BadPort));
        assert_eq!(Endpoint::parse("wss://u:p@a.com/"), Err(UrlError::UserInfo));
        assert_eq!(Endpoint::parse("wss://a b.com/"), Err(UrlError::BadHost));
    }

    #[test]
    fn loopback_resolves_without_dns() {
        let e = Endpoint::parse("http://127.0.0.1:8080/x#frag").unwrap();
        assert_eq!(e.target(), "/x");
        assert_eq!(e.resolve().unwrap(), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(e.host_header(), "127.0.0.1:8080");
    }
}
