//! Binance USDT-M WebSockets on the routed paths (`/public`, `/market`, `/private`, and
//! the unrouted legacy form), raw `/ws/<streams>` and combined `/stream?streams=`; live
//! SUBSCRIBE/UNSUBSCRIBE/LIST_SUBSCRIPTIONS, pings every 3 minutes, the 10-messages-per-
//! second client limit, and the user-data stream by listen key.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::Message;

use super::book::{DepthDiff, Px, Qt};
use super::events::{MdEvent, Out};
use super::http::{self, Conn, Request, Response, parse_params};
use super::json::{dp, levels, s};
use super::server::{Shared, lock, refuse_upgrade, wall_ms};
use super::ws::{self, Session, WsOut};

/// `depthUpdate` payload.
pub fn depth_json(sym: &str, e: u64, t: u64, d: &DepthDiff, pdp: u32, qdp: u32) -> String {
    format!(
        "{{\"e\":\"depthUpdate\",\"E\":{e},\"T\":{t},\"s\":{},\"U\":{},\"u\":{},\"pu\":{},\"b\":{},\"a\":{}}}",
        s(sym),
        d.first_id,
        d.last_id,
        d.prev_id,
        levels(&d.bids, pdp, qdp),
        levels(&d.asks, pdp, qdp)
    )
}

/// `bookTicker` payload.
#[allow(clippy::too_many_arguments)]
pub fn book_ticker_json(
    sym: &str,
    u: u64,
    e: u64,
    t: u64,
    bid: (Px, Qt),
    ask: (Px, Qt),
    pdp: u32,
    qdp: u32,
) -> String {
    format!(
        "{{\"e\":\"bookTicker\",\"u\":{u},\"E\":{e},\"T\":{t},\"s\":{},\"b\":\"{}\",\"B\":\"{}\",\"a\":\"{}\",\"A\":\"{}\"}}",
        s(sym),
        dp(bid.0, pdp),
        dp(bid.1, qdp),
        dp(ask.0, pdp),
        dp(ask.1, qdp)
    )
}

/// `markPriceUpdate` payload.
pub fn mark_json(sym: &str, e: u64, mark: Px, index: Px, rate: i64, next: u64) -> String {
    format!(
        "{{\"e\":\"markPriceUpdate\",\"E\":{e},\"s\":{},\"p\":\"{}\",\"i\":\"{}\",\"P\":\"{}\",\"r\":\"{}\",\"T\":{next}}}",
        s(sym),
        dp(mark, 8),
        dp(index, 8),
        dp(index, 8),
        dp(rate, 8)
    )
}

/// Renders a market-data event in the form of a stream kind.
pub fn render_md(ev: &MdEvent, kind: Kind) -> Option<String> {
    Some(match (ev, kind) {
        (MdEvent::BinDepth { sym, e, t, diff, pdp, qdp }, Kind::Depth(_)) => {
            depth_json(sym, *e, *t, diff, *pdp, *qdp)
        }
        (MdEvent::BinBookTicker { sym, u, e, t, bid, ask, pdp, qdp }, Kind::BookTicker) => {
            book_ticker_json(sym, *u, *e, *t, *bid, *ask, *pdp, *qdp)
        }
        (MdEvent::BinMark { sym, e, mark, index, rate, next_funding }, Kind::Mark(_)) => {
            mark_json(sym, *e, *mark, *index, *rate, *next_funding)
        }
        (MdEvent::BinTrade { sym, e, id, px, qty, buyer_maker, pdp, qdp }, Kind::Trade) => format!(
            "{{\"e\":\"trade\",\"E\":{e},\"T\":{e},\"s\":{},\"t\":{id},\"p\":\"{}\",\"q\":\"{}\",\"X\":\"MARKET\",\"m\":{buyer_maker}}}",
            s(sym),
            dp(*px, *pdp),
            dp(*qty, *qdp)
        ),
        (MdEvent::BinTrade { sym, e, id, px, qty, buyer_maker, pdp, qdp }, Kind::AggTrade) => {
            format!(
                "{{\"e\":\"aggTrade\",\"E\":{e},\"a\":{id},\"s\":{},\"p\":\"{}\",\"q\":\"{}\",\"f\":{id},\"l\":{id},\"T\":{e},\"m\":{buyer_maker}}}",
                s(sym),
                dp(*px, *pdp),
                dp(*qty, *qdp)
            )
        }
        _ => return None,
    })
}

/// Which endpoint route the connection used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/public`.
    Public,
    /// `/market`.
    Market,
    /// `/private`.
    Private,
    /// No route: public streams only.
    Unrouted,
}

/// A stream kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Diff depth with its push interval in ms (0 = every event).
    Depth(u64),
    /// bookTicker.
    BookTicker,
    /// markPrice with interval (1000 or 3000 ms).
    Mark(u64),
    /// trade.
    Trade,
    /// aggTrade.
    AggTrade,
}

/// Parses a stream name (`btcusdt@depth@100ms`) into (upper-case symbol, kind).
pub fn parse_stream(name: &str) -> Option<(String, Kind)> {
    let (sym, rest) = name.split_once('@')?;
    let kind = match rest {
        "depth" => Kind::Depth(250),
        "depth@100ms" | "depth@0ms" => Kind::Depth(0),
        "depth@500ms" => Kind::Depth(500),
        "depth@250ms" => Kind::Depth(250),
        "bookTicker" => Kind::BookTicker,
        "markPrice" => Kind::Mark(3_000),
        "markPrice@1s" => Kind::Mark(1_000),
        "trade" => Kind::Trade,
        "aggTrade" => Kind::AggTrade,
        _ => return None,
    };
    Some((sym.to_ascii_uppercase(), kind))
}

fn served_on(route: Route, kind: Kind) -> bool {
    match route {
        Route::Public | Route::Unrouted => {
            matches!(kind, Kind::Depth(_) | Kind::BookTicker | Kind::Trade)
        }
        Route::Market => matches!(kind, Kind::Mark(_) | Kind::AggTrade | Kind::Trade),
        Route::Private => false,
    }
}

/// Depth merged for a slower push interval: ids and the latest quantity per level.
#[derive(Debug)]
struct DepthAgg {
    first: u64,
    prev: u64,
    last: u64,
    bids: BTreeMap<Px, Qt>,
    asks: BTreeMap<Px, Qt>,
    pdp: u32,
    qdp: u32,
}

#[derive(Debug)]
struct Sub {
    name: String,
    sym: String,
    kind: Option<Kind>,
    /// Depth aggregation for slower intervals: merged levels and ids since last push.
    agg: Option<DepthAgg>,
    next_push: u64,
}

struct BinSession {
    route: Route,
    combined: bool,
    subs: Vec<Sub>,
    account: Option<usize>,
    listen_key: Option<String>,
    events: Option<Vec<String>>,
    epoch: u64,
    incoming: VecDeque<Instant>,
    last_ping: Instant,
    last_pong: Instant,
    connected: Instant,
}

fn text(j: String, md: bool) -> WsOut {
    WsOut { msg: Message::text(j), md }
}

impl BinSession {
    fn add(&mut self, name: &str) {
        if self.subs.iter().any(|x| x.name == name) {
            return;
        }
        let (sym, kind) = match parse_stream(name) {
            Some((sym, k)) => (sym, served_on(self.route, k).then_some(k)),
            None => (String::new(), None),
        };
        self.subs.push(Sub { name: name.to_owned(), sym, kind, agg: None, next_push: 0 });
    }

    fn wrap(&self, name: &str, payload: String) -> String {
        if self.combined {
            format!("{{\"stream\":{},\"data\":{payload}}}", s(name))
        } else {
            payload
        }
    }

    fn control(&mut self, text_in: &str, out: &mut Vec<WsOut>) {
        let v: Result<Value, _> = serde_json::from_str(text_in);
        let Ok(v) = v else {
            out.push(text(
                "{\"code\":3,\"msg\":\"Invalid JSON: expected value at line 1 column 1\"}".into(),
                false,
            ));
            return;
        };
        let id = v.get("id").cloned().unwrap_or(Value::Null);
        let id_s = serde_json::to_string(&id).unwrap_or_else(|_| "null".into());
        let params: Vec<String> = v
            .get("params")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        match v.get("method").and_then(Value::as_str) {
            Some("SUBSCRIBE") => {
                for p in &params {
                    self.add(p);
                }
                out.push(text(format!("{{\"result\":null,\"id\":{id_s}}}"), false));
            }
            Some("UNSUBSCRIBE") => {
                self.subs.retain(|x| !params.contains(&x.name));
                out.push(text(format!("{{\"result\":null,\"id\":{id_s}}}"), false));
            }
            Some("LIST_SUBSCRIPTIONS") => {
                let names: Vec<String> = self.subs.iter().map(|x| s(&x.name)).collect();
                out.push(text(
                    format!("{{\"result\":[{}],\"id\":{id_s}}}", names.join(",")),
                    false,
                ));
            }
            Some("SET_PROPERTY") => {
                if params.is_empty()
                    && let Some(a) = v.get("params").and_then(Value::as_array)
                    && a.first().and_then(Value::as_str) == Some("combined")
                {
                    self.combined = a.get(1).and_then(Value::as_bool).unwrap_or(self.combined);
                }
                out.push(text(format!("{{\"result\":null,\"id\":{id_s}}}"), false));
            }
            Some("GET_PROPERTY") => {
                out.push(text(format!("{{\"result\":{},\"id\":{id_s}}}", self.combined), false))
            }
            _ => out.push(text(
                format!("{{\"code\":2,\"msg\":\"Invalid request: unknown method\",\"id\":{id_s}}}"),
                false,
            )),
        }
    }
}

impl Session for BinSession {
    fn on_message(&mut self, _sh: &Shared, t: &str, out: &mut Vec<WsOut>) -> bool {
        let now = Instant::now();
        self.incoming.push_back(now);
        while self.incoming.front().is_some_and(|x| now.duration_since(*x) > Duration::from_secs(1))
        {
            self.incoming.pop_front();
        }
        if self.incoming.len() > 10 {
            return false; // more than 10 incoming messages per second: disconnect
        }
        self.control(t, out);
        true
    }

    fn render(&mut self, _sh: &Shared, ev: &Out, out: &mut Vec<WsOut>) {
        match ev {
            Out::Md(md) => {
                let sym = match md {
                    MdEvent::BinDepth { sym, .. }
                    | MdEvent::BinBookTicker { sym, .. }
                    | MdEvent::BinMark { sym, .. }
                    | MdEvent::BinTrade { sym, .. } => sym,
                    _ => return,
                };
                let mut msgs = Vec::new();
                for sub in &mut self.subs {
                    let Some(kind) = sub.kind else { continue };
                    if &sub.sym != sym {
                        continue;
                    }
                    match (kind, md) {
                        (Kind::Depth(iv), MdEvent::BinDepth { sym, e, t, diff, pdp, qdp })
                            if iv > 0 =>
                        {
                            let agg = sub.agg.get_or_insert_with(|| DepthAgg {
                                first: diff.first_id,
                                prev: diff.prev_id,
                                last: 0,
                                bids: BTreeMap::new(),
                                asks: BTreeMap::new(),
                                pdp: *pdp,
                                qdp: *qdp,
                            });
                            agg.last = diff.last_id;
                            for &(p, q) in &diff.bids {
                                agg.bids.insert(p, q);
                            }
                            for &(p, q) in &diff.asks {
                                agg.asks.insert(p, q);
                            }
                            if sub.next_push == 0 {
                                sub.next_push = e - e % iv + iv;
                            }
                            if *e >= sub.next_push {
                                sub.next_push = e - e % iv + iv;
                                if let Some(a) = sub.agg.take() {
                                    let d = DepthDiff {
                                        first_id: a.first,
                                        last_id: a.last,
                                        prev_id: a.prev,
                                        bids: a.bids.into_iter().rev().collect(),
                                        asks: a.asks.into_iter().collect(),
                                    };
                                    let j = depth_json(sym, *e, *t, &d, a.pdp, a.qdp);
                                    msgs.push((sub.name.clone(), j));
                                }
                            }
                        }
                        (Kind::Mark(iv), MdEvent::BinMark { e, .. }) => {
                            if *e >= sub.next_push {
                                sub.next_push = e - e % iv + iv;
                                if let Some(j) = render_md(md, kind) {
                                    msgs.push((sub.name.clone(), j));
                                }
                            }
                        }
                        _ => {
                            if let Some(j) = render_md(md, kind) {
                                msgs.push((sub.name.clone(), j));
                            }
                        }
                    }
                }
                for (name, j) in msgs {
                    let w = self.wrap(&name, j);
                    out.push(text(w, true));
                }
            }
            Out::BinanceUser { account, json } if Some(*account) == self.account => {
                let wanted = match &self.events {
                    None => true,
                    Some(list) => {
                        list.iter().any(|e| json.starts_with(&format!("{{\"e\":\"{e}\"")))
                    }
                };
                if wanted {
                    let key = self.listen_key.clone().unwrap_or_default();
                    let w = self.wrap(&key, json.clone());
                    out.push(text(w, false));
                }
            }
            _ => {}
        }
    }

    fn tick(&mut self, sh: &Shared, out: &mut Vec<WsOut>) -> bool {
        let now = Instant::now();
        if now.duration_since(self.connected) > Duration::from_secs(24 * 3_600) {
            return false;
        }
        if now.duration_since(self.last_ping) >= Duration::from_secs(180) {
            self.last_ping = now;
            out.push(WsOut { msg: Message::Ping(Vec::new().into()), md: false });
        }
        if now.duration_since(self.last_pong) > Duration::from_secs(600)
            && now.duration_since(self.connected) > Duration::from_secs(600)
        {
            return false;
        }
        if let Some(key) = &self.listen_key {
            let valid = sh.private_epoch.load(Ordering::Relaxed) == self.epoch
                && lock(&sh.world)
                    .binance
                    .listen_keys
                    .get(key)
                    .is_some_and(|(_, exp)| *exp > wall_ms());
            if !valid {
                let j = format!(
                    "{{\"e\":\"listenKeyExpired\",\"E\":{},\"listenKey\":{}}}",
                    sh.now_ms(),
                    s(key)
                );
                let w = self.wrap(key, j);
                out.push(text(w, false));
                self.listen_key = None;
                self.account = None;
                out.push(WsOut { msg: Message::Close(None), md: false });
            }
        }
        true
    }

    fn on_pong(&mut self) {
        self.last_pong = Instant::now();
    }

    fn private(&self) -> bool {
        self.route == Route::Private
    }
}

/// Serves an upgrade request on the Binance address.
pub fn serve(sh: &Shared, conn: Conn, req: &Request, leftover: Vec<u8>) {
    let (route, rest) = if let Some(r) = req.path.strip_prefix("/public") {
        (Route::Public, r)
    } else if let Some(r) = req.path.strip_prefix("/market") {
        (Route::Market, r)
    } else if let Some(r) = req.path.strip_prefix("/private") {
        (Route::Private, r)
    } else {
        (Route::Unrouted, req.path.as_str())
    };
    let params = parse_params(&req.query);
    let (combined, mut names): (bool, Vec<String>) = if rest == "/stream" {
        let st =
            params.iter().find(|(k, _)| k == "streams").map(|(_, v)| v.clone()).unwrap_or_default();
        (true, st.split('/').filter(|x| !x.is_empty()).map(str::to_owned).collect())
    } else if rest == "/ws" {
        (false, Vec::new())
    } else if let Some(r) = rest.strip_prefix("/ws/") {
        (false, r.split('/').filter(|x| !x.is_empty()).map(str::to_owned).collect())
    } else {
        refuse_upgrade(conn, Response::json(404, "{\"code\":-1,\"msg\":\"Unknown path.\"}"));
        return;
    };
    let mut listen_key = params.iter().find(|(k, _)| k == "listenKey").map(|(_, v)| v.clone());
    let mut route = route;
    {
        let w = lock(&sh.world);
        // Legacy form: /ws/<listenKey>.
        if listen_key.is_none()
            && names.len() == 1
            && !names[0].contains('@')
            && w.binance.listen_keys.contains_key(&names[0])
        {
            listen_key = names.pop();
            route = Route::Private;
        }
    }
    let mut account = None;
    if route == Route::Private || listen_key.is_some() {
        let w = lock(&sh.world);
        match listen_key.as_ref().and_then(|k| w.binance.listen_keys.get(k)) {
            Some((a, exp)) if *exp > wall_ms() => account = Some(*a),
            _ => {
                drop(w);
                refuse_upgrade(
                    conn,
                    Response::json(
                        400,
                        "{\"code\":-1125,\"msg\":\"This listenKey does not exist.\"}",
                    ),
                );
                return;
            }
        }
        route = Route::Private;
    }
    let events = params.iter().find(|(k, _)| k == "events").map(|(_, v)| {
        v.split('/').filter(|x| !x.is_empty()).map(str::to_owned).collect::<Vec<_>>()
    });
    let Ok(wsock) = http::accept_websocket(conn, req, leftover) else { return };
    let rx = sh.hub.subscribe(false);
    let now = Instant::now();
    let mut sess = BinSession {
        route,
        combined,
        subs: Vec::new(),
        account,
        listen_key,
        events,
        epoch: sh.private_epoch.load(Ordering::Relaxed),
        incoming: VecDeque::new(),
        last_ping: now,
        last_pong: now,
        connected: now,
    };
    for n in &names {
        sess.add(n);
    }
    ws::run(wsock, rx, sh, false, &mut sess, Vec::new());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_match_the_fixtures() {
        let d = DepthDiff {
            first_id: 8_824_371_922_851,
            last_id: 8_824_371_922_945,
            prev_id: 8_824_371_922_850,
            bids: vec![(7_049_990_000_000, 351_200_000), (7_049_870_000_000, 0)],
            asks: vec![(7_050_000_000_000, 195_000_000), (7_050_040_000_000, 0)],
        };
        assert_eq!(
            depth_json("BTCUSDT", 1_773_240_059_032, 1_773_240_059_030, &d, 2, 3),
            r#"{"e":"depthUpdate","E":1773240059032,"T":1773240059030,"s":"BTCUSDT","U":8824371922851,"u":8824371922945,"pu":8824371922850,"b":[["70499.90","3.512"],["70498.70","0.000"]],"a":[["70500.00","1.950"],["70500.40","0.000"]]}"#
        );
        assert_eq!(
            book_ticker_json(
                "BTCUSDT",
                8_824_371_922_945,
                1_773_240_059_033,
                1_773_240_059_030,
                (7_049_990_000_000, 351_200_000),
                (7_050_000_000_000, 195_000_000),
                2,
                3
            ),
            r#"{"e":"bookTicker","u":8824371922945,"E":1773240059033,"T":1773240059030,"s":"BTCUSDT","b":"70499.90","B":"3.512","a":"70500.00","A":"1.950"}"#
        );
        assert_eq!(
            mark_json(
                "BTCUSDT",
                1_773_240_059_000,
                7_050_125_718_750,
                7_053_381_462_791,
                5_923,
                1_773_244_800_000
            ),
            r#"{"e":"markPriceUpdate","E":1773240059000,"s":"BTCUSDT","p":"70501.25718750","i":"70533.81462791","P":"70533.81462791","r":"0.00005923","T":1773244800000}"#
        );
        assert_eq!(parse_stream("btcusdt@depth@100ms"), Some(("BTCUSDT".into(), Kind::Depth(0))));
        assert_eq!(
            parse_stream("btcusdt@markPrice@1s"),
            Some(("BTCUSDT".into(), Kind::Mark(1_000)))
        );
        assert!(!served_on(Route::Unrouted, Kind::Mark(1_000)));
        assert!(served_on(Route::Market, Kind::Mark(1_000)));
    }
}
