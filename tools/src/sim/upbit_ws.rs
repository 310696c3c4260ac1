//! Upbit quotation (`/websocket/v1`) and private (`/websocket/v1/private`) WebSockets:
//! subscription arrays, DEFAULT/SIMPLE (and list) formats, binary frames, `PING` →
//! `{"status":"UP"}`, the 120 s idle close, and error objects for bad requests.

use std::time::{Duration, Instant};

use kimp_gateways::sign::verify_upbit_jwt;
use serde_json::Value;
use tungstenite::Message;

use super::book::{Px, Qt};
use super::events::{MdEvent, Out, UpbitTicker, UpbitTrade};
use super::http::{self, Conn, Request, Response};
use super::json::{dec, dec_wide, parts, s};
use super::server::{Shared, lock, refuse_upgrade};
use super::ws::{self, Session, WsOut};

/// Output key set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Full keys.
    Default,
    /// Abbreviated keys.
    Simple,
    /// Full keys, each message wrapped in a one-element list.
    JsonList,
    /// Abbreviated keys in a list.
    SimpleList,
}

impl Format {
    fn simple(self) -> bool {
        matches!(self, Format::Simple | Format::SimpleList)
    }
    fn wrap(self, j: String) -> String {
        if matches!(self, Format::JsonList | Format::SimpleList) { format!("[{j}]") } else { j }
    }
}

struct Obj {
    simple: bool,
    o: String,
}

impl Obj {
    fn new(simple: bool) -> Self {
        Self { simple, o: String::from("{") }
    }
    fn raw(&mut self, full: &str, short: &str, v: &str) -> &mut Self {
        if self.o.len() > 1 {
            self.o.push(',');
        }
        self.o.push('"');
        self.o.push_str(if self.simple { short } else { full });
        self.o.push_str("\":");
        self.o.push_str(v);
        self
    }
    fn str(&mut self, full: &str, short: &str, v: &str) -> &mut Self {
        self.raw(full, short, &s(v))
    }
    fn done(&mut self) -> String {
        self.o.push('}');
        std::mem::take(&mut self.o)
    }
}

fn stream_type(snapshot: bool) -> &'static str {
    if snapshot { "SNAPSHOT" } else { "REALTIME" }
}

/// An `orderbook` message with `units` levels (asks and bids zipped, zero-padded).
pub fn orderbook_json(
    code: &str,
    ts: u64,
    bids: &[(Px, Qt)],
    asks: &[(Px, Qt)],
    units: usize,
    fmt: Format,
    snapshot: bool,
) -> String {
    let n = units.min(bids.len().max(asks.len()));
    let tas: i64 = asks.iter().take(n).map(|l| l.1).sum();
    let tbs: i64 = bids.iter().take(n).map(|l| l.1).sum();
    let sm = fmt.simple();
    let mut units_s = String::from("[");
    for i in 0..n {
        let a = asks.get(i).copied().unwrap_or((0, 0));
        let b = bids.get(i).copied().unwrap_or((0, 0));
        if i > 0 {
            units_s.push(',');
        }
        units_s.push_str(
            &Obj::new(sm)
                .raw("ask_price", "ap", &dec(a.0))
                .raw("bid_price", "bp", &dec(b.0))
                .raw("ask_size", "as", &dec(a.1))
                .raw("bid_size", "bs", &dec(b.1))
                .done(),
        );
    }
    units_s.push(']');
    fmt.wrap(
        Obj::new(sm)
            .str("type", "ty", "orderbook")
            .str("code", "cd", code)
            .raw("timestamp", "tms", &ts.to_string())
            .raw("total_ask_size", "tas", &dec(tas))
            .raw("total_bid_size", "tbs", &dec(tbs))
            .raw("orderbook_units", "obu", &units_s)
            .str("stream_type", "st", stream_type(snapshot))
            .raw("level", "lv", "0")
            .done(),
    )
}

fn change(px: Px, prev: Px) -> (&'static str, i64, f64) {
    let d = px - prev;
    let c = if d > 0 {
        "RISE"
    } else if d < 0 {
        "FALL"
    } else {
        "EVEN"
    };
    let rate = if prev > 0 { d as f64 / prev as f64 } else { 0.0 };
    (c, d, rate)
}

fn rate_s(r: f64) -> String {
    let t = format!("{r:.10}");
    let t = t.trim_end_matches('0');
    let t = t.trim_end_matches('.');
    if t == "-0" { "0".into() } else { t.to_owned() }
}

/// A `trade` message.
pub fn trade_json(t: &UpbitTrade, fmt: Format, snapshot: bool) -> String {
    let (y, mo, d, h, mi, se) = parts(t.trade_ts, 0);
    let (c, diff, _) = change(t.px, t.prev_close);
    fmt.wrap(
        Obj::new(fmt.simple())
            .str("type", "ty", "trade")
            .str("code", "cd", &t.code)
            .raw("timestamp", "tms", &t.ts.to_string())
            .str("trade_date", "td", &format!("{y:04}-{mo:02}-{d:02}"))
            .str("trade_time", "ttm", &format!("{h:02}:{mi:02}:{se:02}"))
            .raw("trade_timestamp", "ttms", &t.trade_ts.to_string())
            .raw("trade_price", "tp", &dec(t.px))
            .raw("trade_volume", "tv", &dec(t.qty))
            .str("ask_bid", "ab", if t.bid { "BID" } else { "ASK" })
            .raw("prev_closing_price", "pcp", &dec(t.prev_close))
            .str("change", "c", c)
            .raw("change_price", "cp", &dec(diff.abs()))
            .raw("sequential_id", "sid", &t.seq_id.to_string())
            .raw("best_ask_price", "bap", &dec(t.best_ask.0))
            .raw("best_ask_size", "bas", &dec(t.best_ask.1))
            .raw("best_bid_price", "bbp", &dec(t.best_bid.0))
            .raw("best_bid_size", "bbs", &dec(t.best_bid.1))
            .str("stream_type", "st", stream_type(snapshot))
            .done(),
    )
}

/// A `ticker` message.
pub fn ticker_json(t: &UpbitTicker, fmt: Format, snapshot: bool) -> String {
    let (y, mo, d, h, mi, se) = parts(t.trade_ts, 0);
    let (c, diff, rate) = change(t.last, t.prev_close);
    let date = format!("{y:04}-{mo:02}-{d:02}");
    fmt.wrap(
        Obj::new(fmt.simple())
            .str("type", "ty", "ticker")
            .str("code", "cd", &t.code)
            .raw("opening_price", "op", &dec(t.open))
            .raw("high_price", "hp", &dec(t.high))
            .raw("low_price", "lp", &dec(t.low))
            .raw("trade_price", "tp", &dec(t.last))
            .raw("prev_closing_price", "pcp", &dec(t.prev_close))
            .str("change", "c", c)
            .raw("change_price", "cp", &dec(diff.abs()))
            .raw("signed_change_price", "scp", &dec(diff))
            .raw("change_rate", "cr", &rate_s(rate.abs()))
            .raw("signed_change_rate", "scr", &rate_s(rate))
            .raw("trade_volume", "tv", &dec(t.last_qty))
            .raw("acc_trade_volume", "atv", &dec_wide(t.acc_volume))
            .raw("acc_trade_volume_24h", "atv24h", &dec_wide(t.acc_volume_24h))
            .raw("acc_trade_price", "atp", &dec_wide(t.acc_price))
            .raw("acc_trade_price_24h", "atp24h", &dec_wide(t.acc_price_24h))
            .str("trade_date", "tdt", &format!("{y:04}{mo:02}{d:02}"))
            .str("trade_time", "ttm", &format!("{h:02}{mi:02}{se:02}"))
            .raw("trade_timestamp", "ttms", &t.trade_ts.to_string())
            .str("ask_bid", "ab", if t.bid { "BID" } else { "ASK" })
            .raw("acc_ask_volume", "aav", &dec_wide(t.acc_ask))
            .raw("acc_bid_volume", "abv", &dec_wide(t.acc_bid))
            .raw("highest_52_week_price", "h52wp", &dec(t.high))
            .str("highest_52_week_date", "h52wdt", &date)
            .raw("lowest_52_week_price", "l52wp", &dec(t.low))
            .str("lowest_52_week_date", "l52wdt", &date)
            .str("market_state", "ms", "ACTIVE")
            .raw("is_trading_suspended", "its", "false")
            .raw("delisting_date", "dd", "null")
            .str("market_warning", "mw", "NONE")
            .raw("timestamp", "tms", &t.ts.to_string())
            .str("stream_type", "st", stream_type(snapshot))
            .done(),
    )
}

/// An error object as Upbit sends it on the WebSocket.
pub fn error_json(name: &str, message: &str) -> String {
    format!("{{\"error\":{{\"name\":{},\"message\":{}}}}}", s(name), s(message))
}

#[derive(Clone, Debug)]
struct Sub {
    ty: String,
    codes: Vec<(String, usize)>,
    realtime: bool,
}

/// Parses `KRW-BTC.15` → (`KRW-BTC`, 15); counts other than 1/5/15/30 give 30.
fn code_units(c: &str) -> (String, usize) {
    match c.rsplit_once('.') {
        Some((code, n)) => {
            let n = n.parse::<usize>().ok().filter(|v| matches!(v, 1 | 5 | 15 | 30)).unwrap_or(30);
            (code.to_owned(), n)
        }
        None => (c.to_owned(), 30),
    }
}

struct UpbitSession {
    fmt: Format,
    subs: Vec<Sub>,
    account: Option<usize>,
    ticket: String,
    status_next: Option<Instant>,
    last_activity: Instant,
}

fn bin(j: String, md: bool) -> WsOut {
    WsOut { msg: Message::binary(j.into_bytes()), md }
}

impl UpbitSession {
    fn request(
        &mut self,
        sh: &Shared,
        text: &str,
        out: &mut Vec<WsOut>,
    ) -> Result<(), (&'static str, String)> {
        let v: Value = serde_json::from_str(text)
            .map_err(|_| ("WRONG_FORMAT", "요청 형식이 올바르지 않습니다.".to_owned()))?;
        let arr =
            v.as_array().ok_or(("WRONG_FORMAT", "request must be a JSON array".to_owned()))?;
        let mut ticket = None;
        let mut fmt = self.fmt;
        let mut subs = Vec::new();
        let mut list = false;
        for item in arr {
            let o = item
                .as_object()
                .ok_or(("WRONG_FORMAT", "array items must be objects".to_owned()))?;
            if let Some(t) = o.get("ticket") {
                ticket = Some(
                    t.as_str()
                        .ok_or(("WRONG_FORMAT", "ticket must be a string".to_owned()))?
                        .to_owned(),
                );
            } else if let Some(f) = o.get("format") {
                fmt = match f.as_str() {
                    Some("DEFAULT") => Format::Default,
                    Some("SIMPLE") => Format::Simple,
                    Some("JSON_LIST") => Format::JsonList,
                    Some("SIMPLE_LIST") => Format::SimpleList,
                    _ => {
                        return Err(("INVALID_PARAM", "format does not have a valid value".into()));
                    }
                };
            } else if o.get("method").and_then(Value::as_str) == Some("LIST_SUBSCRIPTIONS") {
                list = true;
            } else if let Some(ty) = o.get("type") {
                let ty = ty.as_str().ok_or(("WRONG_FORMAT", "type must be a string".to_owned()))?;
                let private = matches!(ty, "myOrder" | "myAsset");
                if !matches!(ty, "orderbook" | "trade" | "ticker") && !private {
                    return Err(("INVALID_PARAM", format!("type {ty} is not supported")));
                }
                if private && self.account.is_none() {
                    return Err(("INVALID_AUTH", "Authentication information is invalid.".into()));
                }
                if ty == "myAsset" && o.contains_key("codes") {
                    return Err(("WRONG_FORMAT", "myAsset does not take codes".into()));
                }
                let codes: Vec<(String, usize)> = match o.get("codes") {
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|c| {
                            c.as_str()
                                .map(|c| code_units(&c.to_ascii_uppercase()))
                                .ok_or(("WRONG_FORMAT", "codes must be strings".to_owned()))
                        })
                        .collect::<Result<_, _>>()?,
                    None if private => Vec::new(),
                    _ => return Err(("NO_CODES", "codes is missing".into())),
                };
                if !private && codes.is_empty() {
                    return Err(("NO_CODES", "codes is empty".into()));
                }
                let flag = |a: &str, b: &str| {
                    o.get(a).or_else(|| o.get(b)).and_then(Value::as_bool).unwrap_or(false)
                };
                let only_snapshot = flag("is_only_snapshot", "isOnlySnapshot");
                let only_realtime = flag("is_only_realtime", "isOnlyRealtime");
                subs.push((
                    Sub { ty: ty.to_owned(), codes, realtime: !only_snapshot },
                    !only_realtime,
                ));
            } else {
                return Err(("NO_TYPE", "type is missing".into()));
            }
        }
        let ticket = ticket.ok_or(("NO_TICKET", "ticket is missing".to_owned()))?;
        if list {
            let sm = fmt.simple();
            let items: Vec<String> = self
                .subs
                .iter()
                .map(|s_| {
                    let codes: Vec<String> = s_.codes.iter().map(|c| s(&c.0)).collect();
                    Obj::new(sm)
                        .str("type", "ty", &s_.ty)
                        .raw("codes", "cds", &format!("[{}]", codes.join(",")))
                        .raw("level", "lv", "0")
                        .done()
                })
                .collect();
            let j = Obj::new(sm)
                .str("method", "mthd", "LIST_SUBSCRIPTIONS")
                .raw("result", "rslt", &format!("[{}]", items.join(",")))
                .str("ticket", "tckt", &ticket)
                .done();
            out.push(bin(j, false));
            return Ok(());
        }
        if subs.is_empty() {
            return Err(("NO_TYPE", "no data type requested".into()));
        }
        self.ticket = ticket;
        self.fmt = fmt;
        self.subs = subs.iter().map(|x| x.0.clone()).collect();
        // Snapshots: the current book (and ticker) of each requested market.
        let w = lock(&sh.world);
        for (sub, snap) in &subs {
            if !snap {
                continue;
            }
            for (code, units) in &sub.codes {
                let Some(m) = w.upbit.markets.get(code) else { continue };
                match sub.ty.as_str() {
                    "orderbook" => {
                        let (b, a) = &m.last_sent;
                        out.push(bin(
                            orderbook_json(code, m.last_sent_ts, b, a, *units, fmt, true),
                            true,
                        ));
                    }
                    "ticker" => {
                        if let Some((_, t)) = &m.last_trade {
                            out.push(bin(ticker_json(t, fmt, true), true));
                        }
                    }
                    "trade" => {
                        if let Some((t, _)) = &m.last_trade {
                            out.push(bin(trade_json(t, fmt, true), true));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn wants(&self, ty: &str, code: &str) -> Option<usize> {
        self.subs
            .iter()
            .filter(|s_| s_.ty == ty && s_.realtime)
            .find_map(|s_| s_.codes.iter().find(|c| c.0 == code).map(|c| c.1))
    }
}

impl Session for UpbitSession {
    fn on_message(&mut self, sh: &Shared, text: &str, out: &mut Vec<WsOut>) -> bool {
        self.last_activity = Instant::now();
        if text.trim() == "PING" {
            self.status_next = Some(Instant::now());
            return true;
        }
        if let Err((name, msg)) = self.request(sh, text, out) {
            out.push(bin(error_json(name, &msg), false));
        }
        true
    }

    fn render(&mut self, _sh: &Shared, ev: &Out, out: &mut Vec<WsOut>) {
        match ev {
            Out::Md(MdEvent::UpbitBook { code, ts, bids, asks }) => {
                if let Some(units) = self.wants("orderbook", code) {
                    out.push(bin(
                        orderbook_json(code, *ts, bids, asks, units, self.fmt, false),
                        true,
                    ));
                }
            }
            Out::Md(MdEvent::UpbitTrade(t)) if self.wants("trade", &t.code).is_some() => {
                out.push(bin(trade_json(t, self.fmt, false), true));
            }
            Out::Md(MdEvent::UpbitTicker(t)) if self.wants("ticker", &t.code).is_some() => {
                out.push(bin(ticker_json(t, self.fmt, false), true));
            }
            Out::UpbitPrivate { account, kind, json } if Some(*account) == self.account => {
                let ok = self.subs.iter().any(|s_| {
                    s_.ty == *kind
                        && (s_.codes.is_empty()
                            || s_
                                .codes
                                .iter()
                                .any(|c| json.contains(&format!("\"code\":\"{}\"", c.0))))
                });
                if ok {
                    out.push(bin(json.clone(), false));
                }
            }
            _ => {}
        }
        if !out.is_empty() {
            self.last_activity = Instant::now();
        }
    }

    fn tick(&mut self, _sh: &Shared, out: &mut Vec<WsOut>) -> bool {
        let now = Instant::now();
        if let Some(t) = self.status_next
            && now >= t
        {
            out.push(bin("{\"status\":\"UP\"}".into(), false));
            self.status_next = Some(t + Duration::from_secs(10));
            self.last_activity = now;
        }
        now.duration_since(self.last_activity) < Duration::from_secs(120)
    }

    fn on_pong(&mut self) {
        self.last_activity = Instant::now();
    }

    fn private(&self) -> bool {
        self.account.is_some()
    }
}

/// Serves an upgrade request on the Upbit address.
pub fn serve(sh: &Shared, conn: Conn, req: &Request, leftover: Vec<u8>) {
    let account = match req.path.as_str() {
        "/websocket/v1" => None,
        "/websocket/v1/private" => match auth(sh, req) {
            Ok(a) => Some(a),
            Err(()) => {
                let body = error_json("INVALID_AUTH", "Authentication information is invalid.");
                refuse_upgrade(conn, Response::json(401, body));
                return;
            }
        },
        _ => {
            refuse_upgrade(conn, super::server::not_found(req));
            return;
        }
    };
    let Ok(wsock) = http::accept_websocket(conn, req, leftover) else { return };
    let rx = sh.hub.subscribe(true);
    let mut sess = UpbitSession {
        fmt: Format::Default,
        subs: Vec::new(),
        account,
        ticket: String::new(),
        status_next: None,
        last_activity: Instant::now(),
    };
    ws::run(wsock, rx, sh, true, &mut sess, Vec::new());
}

fn auth(sh: &Shared, req: &Request) -> Result<usize, ()> {
    let h = req.header("authorization").ok_or(())?;
    let token = h.strip_prefix("Bearer ").ok_or(())?;
    let claims =
        verify_upbit_jwt(token.trim().as_bytes(), |k| sh.account_of(k).map(|i| &sh.keys[i].secret))
            .map_err(|_| ())?;
    if !claims.query_matches(b"") {
        return Err(());
    }
    let acct = sh.account_of(&claims.access_key).ok_or(())?;
    if !lock(&sh.world).upbit.use_nonce(acct, &claims.nonce) {
        return Err(());
    }
    Ok(acct)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orderbook_matches_the_fixture_shape() {
        let s8 = 100_000_000i64;
        let bids = [(103_460_000 * s8, 400_000), (103_438_000 * s8, 483_381)];
        let asks = [(103_493_000 * s8, 4_910_155), (103_507_000 * s8, 6_146_000)];
        let j =
            orderbook_json("KRW-BTC", 1_773_240_059_027, &bids, &asks, 15, Format::Default, true);
        assert_eq!(
            j,
            "{\"type\":\"orderbook\",\"code\":\"KRW-BTC\",\"timestamp\":1773240059027,\"total_ask_size\":0.11056155,\"total_bid_size\":0.00883381,\"orderbook_units\":[{\"ask_price\":103493000,\"bid_price\":103460000,\"ask_size\":0.04910155,\"bid_size\":0.004},{\"ask_price\":103507000,\"bid_price\":103438000,\"ask_size\":0.06146,\"bid_size\":0.00483381}],\"stream_type\":\"SNAPSHOT\",\"level\":0}"
        );
        let j = orderbook_json("KRW-BTC", 1, &bids, &asks, 1, Format::Simple, false);
        assert!(j.starts_with("{\"ty\":\"orderbook\",\"cd\":\"KRW-BTC\",\"tms\":1,\"tas\":0.04910155,\"tbs\":0.004,\"obu\":[{\"ap\":103493000,"), "{j}");
        assert_eq!(code_units("KRW-BTC.15"), ("KRW-BTC".into(), 15));
        assert_eq!(code_units("KRW-BTC.7"), ("KRW-BTC".into(), 30));
        assert_eq!(code_units("KRW-BTC"), ("KRW-BTC".into(), 30));
    }
}
