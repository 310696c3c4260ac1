//! The rustls path end to end over loopback: a self-signed certificate from rcgen, a rustls
//! server (`ServerConnection` over `StreamOwned`) with tungstenite's `accept` or an HTTP
//! responder on top, and the non-blocking client driven by mio.

mod transport_support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use kimp_core::units::Nanos;
use kimp_gateways::transport::{
    BackoffConfig, DownReason, Endpoint, HttpConfig, HttpPool, WsConfig, WsConn, WsPoll,
};
use mio::Token;
use transport_support::{
    Done, Driver, accept, client_trusting, identity, listener, read_request, request,
    server_config, tls_server_stream,
};
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

fn wss_client(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> WsConn {
    // The name checked against the certificate is `localhost`; the socket goes to 127.0.0.1.
    let ep = Endpoint::parse(&format!("wss://localhost:{}/websocket/v1", addr.port())).unwrap();
    let cfg = WsConfig {
        backoff: BackoffConfig { base: Nanos::from_ms(20), ..BackoffConfig::default() },
        ..WsConfig::default()
    };
    WsConn::new(ep, addr, Some(tls), Token(1), cfg).unwrap()
}

#[test]
fn wss_messages_then_client_close_over_tls() {
    // Goal: TLS handshake + upgrade resume across WouldBlock, frames of both opcodes decrypt
    // and arrive in order, and our Close ends cleanly even though the server drops TCP
    // without a TLS close_notify (rustls reports UnexpectedEof after the Close).
    const N: usize = 300;
    let (cert, key) = identity("localhost");
    let scfg = server_config(&cert, &key);
    let (l, addr) = listener();
    let server = thread::spawn(move || {
        let tls = tls_server_stream(&scfg, accept(&l));
        let mut ws = tungstenite::accept(tls).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text("SUB"));
        for i in 0..N {
            let p = format!("{{\"seq\":{i}}}");
            ws.send(if i % 3 == 0 { Message::text(p) } else { Message::binary(p.into_bytes()) })
                .unwrap();
        }
        ws.send(Message::binary(vec![7u8; 100_000])).unwrap();
        // Read until the client's Close; tungstenite answers it, then we drop the socket
        // without close_notify, as many servers do.
        loop {
            match ws.read() {
                Ok(Message::Close(_)) => {
                    let _ = ws.flush();
                    break;
                }
                Ok(_) => {}
                Err(e) => panic!("server: {e}"),
            }
        }
    });
    let mut d = Driver::new();
    let mut c = wss_client(addr, client_trusting(&cert));
    let (mut msgs, mut seen) = (Vec::new(), Vec::new());
    d.ws_until(&mut c, &mut msgs, &mut seen, Some("SUB"), |_, m, _| m.len() == N + 1);
    for (i, m) in msgs[..N].iter().enumerate() {
        assert_eq!(m, format!("{{\"seq\":{i}}}").as_bytes());
    }
    assert_eq!(msgs[N], vec![7u8; 100_000]);
    c.close(d.now());
    d.ws_until(&mut c, &mut msgs, &mut seen, None, |_, _, s| {
        s.iter().any(|x| matches!(x, WsPoll::Down(_)))
    });
    assert_eq!(seen, vec![WsPoll::Opened, WsPoll::Down(DownReason::Local)]);
    assert_eq!(c.retry_at(), None, "a local close does not reconnect");
    server.join().unwrap();
}

#[test]
fn wss_server_close_is_reported_with_its_code() {
    let (cert, key) = identity("localhost");
    let scfg = server_config(&cert, &key);
    let (l, addr) = listener();
    let server = thread::spawn(move || {
        let mut ws = tungstenite::accept(tls_server_stream(&scfg, accept(&l))).unwrap();
        ws.send(Message::text("hello")).unwrap();
        let frame = CloseFrame { code: CloseCode::Away, reason: "24h".into() };
        ws.close(Some(frame)).unwrap();
        let _ = ws.flush();
    });
    let mut d = Driver::new();
    let mut c = wss_client(addr, client_trusting(&cert));
    let (mut msgs, mut seen) = (Vec::new(), Vec::new());
    d.ws_until(&mut c, &mut msgs, &mut seen, None, |_, _, s| {
        s.iter().any(|x| matches!(x, WsPoll::Down(_)))
    });
    assert_eq!(msgs, vec![b"hello".to_vec()]);
    assert_eq!(seen.last(), Some(&WsPoll::Down(DownReason::PeerClosed(Some(1001)))));
    assert!(c.retry_at().is_some(), "a server close reconnects");
    server.join().unwrap();
}

#[test]
fn untrusted_certificate_is_refused() {
    // The server presents a certificate the client does not trust: the connection must fail
    // as a TLS error, before any byte of the upgrade request is readable by the server.
    let (cert, key) = identity("localhost");
    let (other, _) = identity("localhost");
    let scfg = server_config(&cert, &key);
    let (l, addr) = listener();
    let server = thread::spawn(move || {
        let tls = tls_server_stream(&scfg, accept(&l));
        assert!(tungstenite::accept(tls).is_err(), "handshake must not complete");
    });
    let mut d = Driver::new();
    let mut c = wss_client(addr, client_trusting(&other));
    let (mut msgs, mut seen) = (Vec::new(), Vec::new());
    d.ws_until(&mut c, &mut msgs, &mut seen, None, |_, _, s| !s.is_empty());
    assert_eq!(seen, vec![WsPoll::Down(DownReason::Tls)]);
    drop(c);
    server.join().unwrap();
}

#[test]
fn https_keep_alive_two_requests_one_tls_session() {
    let (cert, key) = identity("localhost");
    let scfg = server_config(&cert, &key);
    let (l, addr) = listener();
    let server = thread::spawn(move || {
        let mut s = tls_server_stream(&scfg, accept(&l));
        let mut got = Vec::new();
        for body in ["{\"a\":1}", "{\"b\":2}"] {
            got.push(read_request(&mut s).unwrap());
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                 X-MBX-USED-WEIGHT-1M: 11\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(resp.as_bytes()).unwrap();
            s.flush().unwrap();
        }
        got
    });
    let ep = Endpoint::parse(&format!("https://localhost:{}", addr.port())).unwrap();
    let mut pool =
        HttpPool::new(&ep, addr, Some(client_trusting(&cert)), 1, Token(10), HttpConfig::default())
            .unwrap();
    let mut d = Driver::new();
    let mut done = Vec::new();
    for (tag, path) in [(1u64, "/fapi/v1/order"), (2, "/fapi/v1/order")] {
        d.http_until(&mut pool, &mut done, |p, _| p.idle_count() == 1);
        let req = request(path, &ep.host_header(), "symbol=BTCUSDT");
        let deadline = d.now().plus(Nanos::from_ms(5_000));
        assert_eq!(pool.send(d.now(), tag, &req, deadline), Ok(0));
        d.http_until(&mut pool, &mut done, |_, dn| dn.len() == tag as usize);
    }
    let bodies: Vec<_> = done
        .iter()
        .map(|x| match x {
            Done::Response { status: 200, body, weight: Some(11), .. } => body.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(bodies, vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]);
    assert_eq!(pool.conns()[0].stats().connects, 1, "one TLS session for both");
    let got = server.join().unwrap();
    assert_eq!(got.len(), 2);
    assert!(got[0].starts_with(b"POST /fapi/v1/order HTTP/1.1\r\n"));
}
