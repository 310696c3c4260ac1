//! WebSocket transport over loopback: a blocking tungstenite server thread on one side, the
//! non-blocking `WsConn` driven by a mio `Poll` on the other. Each test is bounded by
//! `transport_support::LIMIT`; none touches a public host.

mod transport_support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use kimp_core::units::Nanos;
use kimp_gateways::transport::{
    BackoffConfig, DownReason, Endpoint, UrlError, WsConfig, WsConn, WsPoll, WsState,
};
use mio::Token;
use transport_support::{Driver, accept, listener};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

const T: Token = Token(7);

fn fast_cfg() -> WsConfig {
    WsConfig {
        connect_timeout: Nanos::from_ms(2_000),
        backoff: BackoffConfig {
            base: Nanos::from_ms(20),
            cap: Nanos::from_ms(200),
            healthy_after: Nanos::from_ms(60_000),
            seed: 1,
        },
        ..WsConfig::default()
    }
}

fn client(addr: SocketAddr, cfg: WsConfig) -> WsConn {
    let ep = Endpoint::parse(&format!("ws://127.0.0.1:{}/ws", addr.port())).unwrap();
    WsConn::new(ep, addr, None, T, cfg).unwrap()
}

fn payload(i: usize) -> String {
    format!("{{\"type\":\"orderbook\",\"code\":\"KRW-BTC\",\"seq\":{i}}}")
}

/// Reads until the peer is gone, answering pings and the closing handshake on the way.
fn read_to_end<S: std::io::Read + Write>(ws: &mut WebSocket<S>) {
    while ws.read().is_ok() {}
}

#[test]
fn text_and_binary_frames_then_server_close_then_reconnect() {
    // Goal: every frame arrives, in order, whatever its opcode (Upbit sends JSON in BINARY
    // frames, Binance in TEXT), including one bigger than a socket read; a server Close is
    // reported with its code, and the connection comes back by itself.
    const N: usize = 500;
    let (l, addr) = listener();
    let server = thread::spawn(move || {
        let mut ws = tungstenite::accept(accept(&l)).unwrap();
        let sub = ws.read().unwrap();
        assert_eq!(sub, Message::text("SUB"));
        for i in 0..N {
            let p = payload(i);
            let msg = if i % 2 == 0 { Message::text(p) } else { Message::binary(p.into_bytes()) };
            ws.send(msg).unwrap();
            if i == N / 2 {
                ws.send(Message::binary(vec![b'x'; 300_000])).unwrap();
            }
        }
        ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() })).unwrap();
        read_to_end(&mut ws);
        // Second connection: the client reconnected on its own.
        let mut ws = tungstenite::accept(accept(&l)).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text("SUB"));
        ws.send(Message::binary(&b"again"[..])).unwrap();
        read_to_end(&mut ws);
    });

    let mut d = Driver::new();
    let mut c = client(addr, fast_cfg());
    let (mut msgs, mut seen) = (Vec::new(), Vec::new());
    d.ws_until(&mut c, &mut msgs, &mut seen, Some("SUB"), |_, m, _| {
        m.last().is_some_and(|p| p == b"again")
    });
    assert_eq!(msgs.len(), N + 2, "all frames, the big one and the post-reconnect one");
    let mut it = msgs.iter();
    for i in 0..N {
        assert_eq!(it.next().unwrap(), payload(i).as_bytes(), "frame {i} in order");
        if i == N / 2 {
            assert_eq!(it.next().unwrap().len(), 300_000);
        }
    }
    assert_eq!(seen[0], WsPoll::Opened);
    assert_eq!(seen[1], WsPoll::Down(DownReason::PeerClosed(Some(1000))));
    assert_eq!(seen[2], WsPoll::Opened);
    let st = c.stats();
    assert_eq!((st.opens, st.downs, st.messages), (2, 1, N as u64 + 2));
    c.close(d.now());
    drop(c);
    server.join().unwrap();
}

#[test]
fn pings_are_sent_and_server_pings_are_answered() {
    // Goal: the client pings on its interval and counts the pongs (the liveness signal the
    // docs recommend), and a server ping gets a pong without the caller doing anything.
    let (l, addr) = listener();
    let (tx, rx) = mpsc::channel();
    let server = thread::spawn(move || {
        let s = accept(&l);
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut ws = tungstenite::accept(s).unwrap();
        ws.send(Message::Ping(b"srv".to_vec().into())).unwrap();
        let (mut pings, mut pong) = (0, false);
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until && !(pings >= 3 && pong) {
            match ws.read() {
                Ok(Message::Ping(_)) => pings += 1,
                Ok(Message::Pong(p)) => pong |= &p[..] == b"srv",
                Ok(_) => {}
                Err(tungstenite::Error::Io(_)) => {} // read timeout: poll again
                Err(e) => panic!("{e}"),
            }
            let _ = ws.flush(); // pongs to the client's pings
        }
        tx.send((pings, pong)).unwrap();
        read_to_end(&mut ws);
    });
    let mut d = Driver::new();
    let cfg = WsConfig { ping_interval: Nanos::from_ms(30), ..fast_cfg() };
    let mut c = client(addr, cfg);
    let (mut msgs, mut seen) = (Vec::new(), Vec::new());
    let mut server_saw = None;
    d.ws_until(&mut c, &mut msgs, &mut seen, None, |c, _, _| {
        server_saw = server_saw.or(rx.try_recv().ok());
        server_saw.is_some() && c.stats().pongs >= 1
    });
    let (server_pings, pong_to_server) = server_saw.unwrap();
    assert!(
        server_pings >= 3 && pong_to_server,
        "server saw {server_pings} pings, pong {pong_to_server}"
    );
    assert!(c.stats().pings >= 3, "{:?}", c.stats());
    assert!(c.stats().pongs >= 1, "{:?}", c.stats());
    assert!(msgs.is_empty(), "control frames are not data");
    drop(c);
    server.join().unwrap();
}

#[test]
fn silent_stall_is_reported_stale() {
    // Goal: a server that accepts and then goes silent (no data, no pongs) is detected by
    // the staleness limit, not left hanging.
    let (l, addr) = listener();
    let (tx, rx) = mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let _ws = tungstenite::accept(accept(&l)).unwrap();
        let _ = rx.recv_timeout(Duration::from_secs(5)); // hold the socket, say nothing
    });
    let mut d = Driver::new();
    let cfg = WsConfig {
        stale_after: Nanos::from_ms(150),
        ping_interval: Nanos::from_ms(40),
        ..fast_cfg()
    };
    let mut c = client(addr, cfg);
    let (mut msgs, mut seen) = (Vec::new(), Vec::new());
    d.ws_until(&mut c, &mut msgs, &mut seen, None, |_, _, s| s.contains(&WsPoll::Opened));
    let opened = d.now();
    d.ws_until(&mut c, &mut msgs, &mut seen, None, |_, _, s| {
        s.iter().any(|x| matches!(x, WsPoll::Down(_)))
    });
    assert_eq!(seen.last(), Some(&WsPoll::Down(DownReason::Stale)));
    assert!(d.now().since(opened) >= Nanos::from_ms(150));
    assert_eq!(c.state(), WsState::Down);
    assert!(c.retry_at().is_some(), "a reconnect is scheduled");
    tx.send(()).unwrap();
    server.join().unwrap();
}

#[test]
fn drop_without_close_is_a_reset_after_the_data() {
    let (l, addr) = listener();
    let server = thread::spawn(move || {
        let mut ws = tungstenite::accept(accept(&l)).unwrap();
        ws.send(Message::text("last words")).unwrap();
        drop(ws); // TCP FIN, no Close frame
    });
    let mut d = Driver::new();
    let mut c = client(addr, fast_cfg());
    let (mut msgs, mut seen) = (Vec::new(), Vec::new());
    d.ws_until(&mut c, &mut msgs, &mut seen, None, |_, _, s| {
        s.iter().any(|x| matches!(x, WsPoll::Down(_)))
    });
    assert_eq!(msgs, vec![b"last words".to_vec()]);
    assert_eq!(seen.last(), Some(&WsPoll::Down(DownReason::Reset)));
    server.join().unwrap();
}

#[test]
fn refused_upgrade_reports_the_status() {
    // Goal: an HTTP error instead of 101 (e.g. 429 on too many connects) is reported with
    // its status so the runtime can back off, and a retry is scheduled.
    let (l, addr) = listener();
    let server = thread::spawn(move || {
        let mut s = accept(&l);
        let _ = transport_support::read_request(&mut s);
        s.write_all(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n").unwrap();
    });
    let mut d = Driver::new();
    let mut c = client(addr, fast_cfg());
    let (mut msgs, mut seen) = (Vec::new(), Vec::new());
    d.ws_until(&mut c, &mut msgs, &mut seen, None, |_, _, s| !s.is_empty());
    assert_eq!(seen, vec![WsPoll::Down(DownReason::HandshakeStatus(429))]);
    // The venue's rate limit, not the 20-200 ms reconnect delay: at least 1 s.
    let at = c.retry_at().expect("a retry is scheduled");
    assert!(at.since(d.now()) >= Nanos::from_ms(900), "retry in {:?}", at.since(d.now()));
    server.join().unwrap();
}

#[test]
fn unanswered_upgrade_times_out() {
    let (l, addr) = listener();
    let (tx, rx) = mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let _s = accept(&l);
        let _ = rx.recv_timeout(Duration::from_secs(5));
    });
    let mut d = Driver::new();
    let mut c = client(addr, WsConfig { connect_timeout: Nanos::from_ms(100), ..fast_cfg() });
    let (mut msgs, mut seen) = (Vec::new(), Vec::new());
    d.ws_until(&mut c, &mut msgs, &mut seen, None, |_, _, s| !s.is_empty());
    assert_eq!(seen, vec![WsPoll::Down(DownReason::ConnectTimeout)]);
    tx.send(()).unwrap();
    server.join().unwrap();
}

#[test]
fn refused_connects_back_off_exponentially() {
    // A port nobody listens on: each attempt fails fast and the next one waits longer.
    let (l, addr) = listener();
    drop(l);
    let mut d = Driver::new();
    let mut c = client(addr, fast_cfg());
    let mut delays = Vec::new();
    let deadline = Instant::now() + transport_support::LIMIT;
    while delays.len() < 4 {
        assert!(Instant::now() < deadline);
        for s in d.ws_turn(&mut c, &mut Vec::new()) {
            assert_eq!(
                s,
                WsPoll::Down(DownReason::ConnectFailed(std::io::ErrorKind::ConnectionRefused))
            );
            delays.push(c.retry_at().unwrap().since(d.now()));
        }
    }
    // Jittered into [d/2, d] with d = 20 ms * 2^k: attempt 0 <= 20 ms, attempt 2 >= 40 ms.
    assert!(delays[0] <= Nanos::from_ms(20), "{delays:?}");
    assert!(delays[2] >= Nanos::from_ms(39), "{delays:?}");
    assert!(delays[3] <= Nanos::from_ms(200), "capped: {delays:?}");
}

#[test]
fn plain_text_to_a_public_host_is_refused_without_connecting() {
    match Endpoint::parse("ws://example.com/ws") {
        Err(UrlError::PlainNotLoopback(h)) => assert_eq!(h, "example.com"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Endpoint::parse("http://api.venue.example/v1/orders"),
        Err(UrlError::PlainNotLoopback(_))
    ));
    // A loopback URL cannot be pointed at a public address either.
    let ep = Endpoint::parse("ws://127.0.0.1:9/ws").unwrap();
    let public: SocketAddr = "93.184.216.34:80".parse().unwrap();
    assert!(matches!(
        WsConn::new(ep.clone(), public, None, T, WsConfig::default()),
        Err(UrlError::PlainNotLoopback(_))
    ));
    // wss needs a TLS config, ws must not have one.
    let wss = Endpoint::parse("wss://api.venue.example/websocket/v1").unwrap();
    assert!(WsConn::new(wss, public, None, T, WsConfig::default()).is_err());
}

#[test]
fn upgrade_carries_the_auth_header_and_debug_hides_it() {
    // Upbit's private stream authenticates in the upgrade request; the value is a JWT and
    // must never show up in Debug output.
    let (l, addr) = listener();
    let (tx, rx) = mpsc::channel();
    let server = thread::spawn(move || {
        // The Err type is fixed by tungstenite's handshake callback signature.
        #[allow(clippy::result_large_err)]
        let cb = |req: &tungstenite::handshake::server::Request,
                  resp: tungstenite::handshake::server::Response| {
            let auth = req.headers().get("authorization").map(|v| v.to_str().unwrap().to_string());
            tx.send(auth).unwrap();
            Ok(resp)
        };
        let mut ws = tungstenite::accept_hdr(accept(&l), cb).unwrap();
        ws.send(Message::text("ok")).unwrap();
        read_to_end(&mut ws);
    });
    let mut d = Driver::new();
    let mut c = client(addr, fast_cfg());
    c.set_header("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.secret.sig").unwrap();
    assert!(c.set_header("Bad Name", "x").is_err());
    let shown = format!("{c:?}");
    assert!(!shown.contains("secret") && shown.contains("authorization"), "{shown}");
    let (mut msgs, mut seen) = (Vec::new(), Vec::new());
    d.ws_until(&mut c, &mut msgs, &mut seen, None, |_, m, _| !m.is_empty());
    assert_eq!(rx.recv().unwrap().as_deref(), Some("Bearer eyJhbGciOiJIUzI1NiJ9.secret.sig"));
    drop(c);
    server.join().unwrap();
}
