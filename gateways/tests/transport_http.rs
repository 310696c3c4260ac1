//! Keep-alive HTTP/1.1 over loopback: scripted blocking servers on helper threads, the
//! non-blocking `HttpPool` driven by mio. The no-resend rule is checked from the server side:
//! it counts every request that reaches it.

mod transport_support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::Duration;

use kimp_core::units::Nanos;
use kimp_gateways::transport::{DownReason, Endpoint, HttpConfig, HttpPool, SendError, UrlError};
use mio::Token;
use transport_support::{Done, Driver, accept, listener, read_request, request, write_in_parts};

fn pool(addr: SocketAddr, n: usize) -> (HttpPool, Endpoint) {
    let ep = Endpoint::parse(&format!("http://127.0.0.1:{}", addr.port())).unwrap();
    (HttpPool::new(&ep, addr, None, n, Token(100), HttpConfig::default()).unwrap(), ep)
}

/// Waits for an idle connection, sends, and runs until `n` completions exist.
fn roundtrip(
    d: &mut Driver,
    p: &mut HttpPool,
    done: &mut Vec<Done>,
    tag: u64,
    req: &[u8],
    timeout_ms: u64,
) {
    d.http_until(p, done, |p, _| p.idle_count() > 0);
    let deadline = d.now().plus(Nanos::from_ms(timeout_ms));
    p.send(d.now(), tag, req, deadline).unwrap();
    let n = done.len() + 1;
    d.http_until(p, done, |_, dn| dn.len() == n);
}

/// True when nobody connected to `l` again (checked without blocking).
fn no_more_connections(l: &TcpListener) -> bool {
    l.set_nonblocking(true).unwrap();
    matches!(l.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[test]
fn keep_alive_content_length_then_chunked_on_one_connection() {
    // Goal: two requests share one connection; a Content-Length response and a chunked one
    // (with a chunk extension and a trailer), both written in small pieces so the parser
    // sees every kind of partial input; the rate-limit headers come out parsed.
    let (l, addr) = listener();
    let server = thread::spawn(move || {
        let mut s = accept(&l);
        let r1 = read_request(&mut s).unwrap();
        write_in_parts(
            &mut s,
            &[
                b"HTTP/1.1 200 OK\r\nX-MBX-USED-WEIGHT-1M: 13\r\nX-MBX-ORD",
                b"ER-COUNT-10S: 2\r\nContent-Length: 17\r\n",
                b"\r\n{\"orderId\":",
                b"12345}",
            ],
        );
        let r2 = read_request(&mut s).unwrap();
        write_in_parts(
            &mut s,
            &[
                b"HTTP/1.1 201 Created\r\nRemaining-Req: group=order; min=1800; sec=7\r\n",
                b"Transfer-Encoding: chunked\r\n\r\n",
                b"8;ext=1\r\n{\"uui",
                b"d\":\r\nf",
                b"\r\n\"abcd-efgh-ij\"}\r\n",
                b"0\r\nX-Trailer: t\r\n",
                b"\r\n",
            ],
        );
        assert!(read_request(&mut s).is_none(), "no third request");
        (r1, r2, no_more_connections(&l))
    });
    let (mut p, ep) = pool(addr, 1);
    let mut d = Driver::new();
    let mut done = Vec::new();
    let req1 = request("/fapi/v1/order", &ep.host_header(), "symbol=BTCUSDT&side=BUY");
    let req2 = request("/v1/orders", &ep.host_header(), "{\"market\":\"KRW-BTC\"}");
    roundtrip(&mut d, &mut p, &mut done, 1, &req1, 5_000);
    roundtrip(&mut d, &mut p, &mut done, 2, &req2, 5_000);
    assert_eq!(
        done[0],
        Done::Response {
            tag: 1,
            status: 200,
            body: b"{\"orderId\":12345}".to_vec(),
            retry_after_s: None,
            remaining_sec: None,
            weight: Some(13),
            orders: Some(2),
        }
    );
    assert_eq!(
        done[1],
        Done::Response {
            tag: 2,
            status: 201,
            body: b"{\"uuid\":\"abcd-efgh-ij\"}".to_vec(),
            retry_after_s: None,
            remaining_sec: Some(7),
            weight: None,
            orders: None,
        }
    );
    assert_eq!(p.idle_count(), 1, "still open for the next request");
    assert_eq!(p.conns()[0].stats().connects, 1);
    drop(p);
    let (r1, r2, single) = server.join().unwrap();
    assert_eq!(r1, req1, "request bytes go out exactly as encoded");
    assert_eq!(r2, req2);
    assert!(single, "both requests used the one connection");
}

#[test]
fn connection_close_response_then_a_fresh_connection() {
    // Goal: `Connection: close` (here on a 429 with Retry-After) retires the connection after
    // the response is delivered, and the pool opens a new one for the next request.
    let (l, addr) = listener();
    let server = thread::spawn(move || {
        let mut s = accept(&l);
        read_request(&mut s).unwrap();
        s.write_all(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nConnection: close\r\n\
              Content-Length: 2\r\n\r\n{}",
        )
        .unwrap();
        drop(s);
        let mut s = accept(&l);
        read_request(&mut s).unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
        assert!(read_request(&mut s).is_none());
    });
    let (mut p, ep) = pool(addr, 1);
    let mut d = Driver::new();
    let mut done = Vec::new();
    let req = request("/fapi/v1/order", &ep.host_header(), "a=1");
    roundtrip(&mut d, &mut p, &mut done, 1, &req, 5_000);
    assert!(matches!(done[0], Done::Response { tag: 1, status: 429, retry_after_s: Some(7), .. }));
    assert_eq!(p.idle_count(), 0, "the closed connection is not reused");
    roundtrip(&mut d, &mut p, &mut done, 2, &req, 5_000);
    assert!(matches!(&done[1], Done::Response { tag: 2, status: 200, body, .. } if body == b"ok"));
    assert_eq!(p.conns()[0].stats().connects, 2);
    drop(p);
    server.join().unwrap();
}

#[test]
fn server_closing_mid_request_is_ambiguous_and_not_resent() {
    // Goal: the server takes the order and hangs up without answering. The outcome is
    // reported as failed-after-sending (unknown), and nothing sends the request again.
    let (l, addr) = listener();
    let server = thread::spawn(move || {
        let mut s = accept(&l);
        let first = read_request(&mut s).unwrap();
        drop(s);
        // The pool reconnects; that connection must stay silent.
        let mut s = accept(&l);
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        (first, read_request(&mut s))
    });
    let (mut p, ep) = pool(addr, 1);
    let mut d = Driver::new();
    let mut done = Vec::new();
    let req = request("/fapi/v1/order", &ep.host_header(), "newClientOrderId=k1-1-b0");
    roundtrip(&mut d, &mut p, &mut done, 9, &req, 5_000);
    assert_eq!(done, vec![Done::Failed { tag: 9, reason: DownReason::Reset, sent: true }]);
    // Keep the loop running while the server listens for a resend.
    d.http_until(&mut p, &mut done, |p, _| p.idle_count() == 1);
    let (first, resent) = server.join().unwrap();
    assert_eq!(first, req);
    assert_eq!(resent, None, "the request must not be sent again");
    assert_eq!(done.len(), 1);
}

#[test]
fn unanswered_request_times_out_once_and_is_never_resent() {
    let (l, addr) = listener();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let mut s = accept(&l);
        let first = read_request(&mut s).unwrap();
        // Hold the connection open and never answer; count anything else that arrives.
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut more = 0;
        l.set_nonblocking(true).unwrap();
        let mut others = Vec::new();
        while rx.try_recv().is_err() {
            if read_request(&mut s).is_some() {
                more += 1;
            }
            if let Ok((c, _)) = l.accept() {
                c.set_nonblocking(false).unwrap();
                c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                others.push(c);
            }
            for c in &mut others {
                if read_request(c).is_some() {
                    more += 1;
                }
            }
        }
        (first, more)
    });
    let (mut p, ep) = pool(addr, 1);
    let mut d = Driver::new();
    let mut done = Vec::new();
    let req = request("/v1/orders", &ep.host_header(), "{\"identifier\":\"k1-2-u0\"}");
    let sent_at = {
        d.http_until(&mut p, &mut done, |p, _| p.idle_count() > 0);
        let now = d.now();
        p.send(now, 5, &req, now.plus(Nanos::from_ms(100))).unwrap();
        now
    };
    d.http_until(&mut p, &mut done, |_, dn| !dn.is_empty());
    assert_eq!(done, vec![Done::TimedOut(5)]);
    assert!(d.now().since(sent_at) >= Nanos::from_ms(100));
    assert_eq!(p.conns()[0].stats().timeouts, 1);
    // Run on for a while: the pool reconnects, but nothing is sent again.
    let until = d.now().plus(Nanos::from_ms(300));
    while d.now() < until {
        d.http_turn(&mut p, &mut done);
    }
    tx.send(()).unwrap();
    let (first, more) = server.join().unwrap();
    assert_eq!(first, req);
    assert_eq!(more, 0, "no resend after a timeout");
    assert_eq!(done.len(), 1);
    assert_eq!(p.idle_count(), 1, "a fresh connection replaced the timed-out one");
}

#[test]
fn busy_pool_refuses_and_plain_http_to_a_public_host_is_refused() {
    let (l, addr) = listener();
    let server = thread::spawn(move || {
        let mut s = accept(&l);
        read_request(&mut s).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert!(read_request(&mut s).is_none());
    });
    let (mut p, ep) = pool(addr, 1);
    let mut d = Driver::new();
    let mut done = Vec::new();
    let req = request("/x", &ep.host_header(), "");
    assert_eq!(
        p.send(d.now(), 1, &req, Nanos(u64::MAX)),
        Err(SendError::NoIdle),
        "not connected yet"
    );
    d.http_until(&mut p, &mut done, |p, _| p.idle_count() == 1);
    assert_eq!(p.send(d.now(), 1, &req, Nanos(u64::MAX)), Ok(0));
    assert_eq!(
        p.send(d.now(), 2, &req, Nanos(u64::MAX)),
        Err(SendError::NoIdle),
        "one in flight per connection"
    );
    d.http_until(&mut p, &mut done, |_, dn| !dn.is_empty());
    assert!(
        matches!(&done[0], Done::Response { tag: 1, status: 204, body, .. } if body.is_empty())
    );
    drop(p);
    server.join().unwrap();
    assert!(matches!(
        Endpoint::parse("http://fapi.venue.example/fapi/v1/order"),
        Err(UrlError::PlainNotLoopback(_))
    ));
}
