//! The WebSocket session loop shared by both venues: reads client messages, renders
//! published events for this session, and applies the socket-level faults (drop,
//! duplicate, reorder, stall, disconnect).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tungstenite::{Message, WebSocket};

use super::bad_input::Stream;
use super::events::Out;
use super::faults::FaultKind;
use super::http::Conn;
use super::server::Shared;

/// A message to send; `md` marks market data (subject to `drop_messages`).
#[derive(Debug)]
pub struct WsOut {
    /// The frame.
    pub msg: Message,
    /// Market data.
    pub md: bool,
}

/// What a venue's session does with client messages and events.
pub trait Session {
    /// A text (or binary) message from the client. `false` closes the connection.
    fn on_message(&mut self, sh: &Shared, text: &str, out: &mut Vec<WsOut>) -> bool;
    /// A published event.
    fn render(&mut self, sh: &Shared, ev: &Out, out: &mut Vec<WsOut>);
    /// Called every loop turn. `false` closes the connection.
    fn tick(&mut self, sh: &Shared, out: &mut Vec<WsOut>) -> bool;
    /// A pong arrived.
    fn on_pong(&mut self) {}
    /// True for a private (account) stream.
    fn private(&self) -> bool {
        false
    }
}

/// Runs a session until the client leaves, a fault closes it, or the simulator stops.
pub fn run(
    mut ws: WebSocket<Conn>,
    rx: Receiver<Arc<Out>>,
    sh: &Shared,
    upbit: bool,
    s: &mut dyn Session,
    first: Vec<WsOut>,
) {
    sh.counters.ws_connections.fetch_add(1, Ordering::Relaxed);
    if ws.get_ref().tcp().set_nonblocking(true).is_err() {
        return;
    }
    let mut pending: Vec<WsOut> = first;
    let mut held: Option<Message> = None;
    let mut stall_until: Option<Instant> = None;
    let mut next_fault_check = Instant::now() + Duration::from_secs(1);
    let mut bad_first_done = false;
    loop {
        if sh.stopping() || sh.venue_down(upbit) {
            let _ = ws.close(None);
            let _ = ws.flush();
            return;
        }
        // Client messages.
        loop {
            match ws.read() {
                Ok(Message::Text(t)) => {
                    if !s.on_message(sh, t.as_str(), &mut pending) {
                        let _ = ws.flush();
                        return;
                    }
                }
                Ok(Message::Binary(b)) => {
                    let t = String::from_utf8_lossy(&b).into_owned();
                    if !s.on_message(sh, &t, &mut pending) {
                        return;
                    }
                }
                Ok(Message::Pong(_)) => s.on_pong(),
                Ok(Message::Close(_)) => {
                    let _ = ws.flush();
                    return;
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if super::http::is_timeout(&e) => break,
                Err(_) => return,
            }
        }
        if !s.tick(sh, &mut pending) {
            let _ = ws.close(None);
            let _ = ws.flush();
            return;
        }
        // Published events.
        match rx.recv_timeout(Duration::from_millis(2)) {
            Ok(ev) => {
                s.render(sh, &ev, &mut pending);
                for ev in rx.try_iter().take(4_096) {
                    s.render(sh, &ev, &mut pending);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // Per-second faults.
        let el = sh.elapsed_ms();
        if Instant::now() >= next_fault_check {
            next_fault_check += Duration::from_secs(1);
            if let Some(sc) = sh.cfg.faults.active(FaultKind::Disconnect, upbit, el)
                && sh.chance(sc.p)
            {
                sh.counters.ws_disconnects.fetch_add(1, Ordering::Relaxed);
                return; // dropped without a close frame
            }
            if stall_until.is_none()
                && let Some(sc) = sh.cfg.faults.active(FaultKind::Stall, upbit, el)
                && sh.chance(sc.p)
            {
                sh.counters.ws_stalls.fetch_add(1, Ordering::Relaxed);
                let ms = sh.range(sc.ms.0, sc.ms.1);
                stall_until = Some(Instant::now() + Duration::from_millis(ms));
            }
        }
        if let Some(t) = stall_until {
            if Instant::now() < t {
                pending.clear();
                continue;
            }
            stall_until = None;
        }
        let drop_p =
            sh.cfg.faults.active(FaultKind::DropMessages, upbit, el).map(|s| s.p).unwrap_or(0.0);
        let dup_p = sh
            .cfg
            .faults
            .active(FaultKind::DuplicateMessages, upbit, el)
            .map(|s| s.p)
            .unwrap_or(0.0);
        let reo_p =
            sh.cfg.faults.active(FaultKind::ReorderMessages, upbit, el).map(|s| s.p).unwrap_or(0.0);
        let bad_p =
            sh.cfg.faults.active(FaultKind::BadInput, upbit, el).map(|s| s.p).unwrap_or(0.0);
        for o in pending.drain(..) {
            let is_data = matches!(o.msg, Message::Text(_) | Message::Binary(_));
            // The first data message of a connection in the window always gets one (a
            // private stream may carry only a few messages).
            if is_data && bad_p > 0.0 && (!bad_first_done || sh.chance(bad_p)) {
                bad_first_done = true;
                let stream = match (upbit, s.private()) {
                    (true, false) => Stream::UpbitMd,
                    (true, true) => Stream::UpbitPrivate,
                    (false, false) => Stream::BinanceMd,
                    (false, true) => Stream::BinanceUser,
                };
                let original: &[u8] = match &o.msg {
                    Message::Text(t) => t.as_bytes(),
                    Message::Binary(b) => b,
                    _ => &[],
                };
                let b = sh.bad_frame(stream, original);
                let m = match String::from_utf8(b.bytes) {
                    Ok(t) if !b.binary && !upbit => Message::text(t),
                    Ok(t) => Message::binary(t.into_bytes()),
                    Err(e) => Message::binary(e.into_bytes()),
                };
                if !write(&mut ws, m) {
                    return;
                }
            }
            if is_data && o.md && sh.chance(drop_p) {
                sh.counters.ws_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if is_data && held.is_none() && sh.chance(reo_p) {
                sh.counters.ws_reordered.fetch_add(1, Ordering::Relaxed);
                held = Some(o.msg);
                continue;
            }
            let dup = is_data && sh.chance(dup_p);
            if dup {
                sh.counters.ws_duplicated.fetch_add(1, Ordering::Relaxed);
                if !write(&mut ws, o.msg.clone()) {
                    return;
                }
            }
            if !write(&mut ws, o.msg) {
                return;
            }
            sh.counters.ws_sent.fetch_add(1 + dup as u64, Ordering::Relaxed);
            if let Some(h) = held.take() {
                if !write(&mut ws, h) {
                    return;
                }
                sh.counters.ws_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        match ws.flush() {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if super::http::is_timeout(&e) => {}
            Err(_) => return,
        }
    }
}

/// Queues a frame; `WouldBlock` means it is buffered and goes out on a later flush.
fn write(ws: &mut WebSocket<Conn>, m: Message) -> bool {
    match ws.write(m) {
        Ok(()) => true,
        Err(tungstenite::Error::Io(e)) => super::http::is_timeout(&e),
        Err(_) => false,
    }
}
