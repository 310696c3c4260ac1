//! The `bad_input` fault: malformed, truncated, oversized and hostile copies of what a
//! venue sends. Each bad frame is built from the real message it precedes (so it names
//! a real market and looks plausible) and is sent *in addition* to it: a client that
//! refuses every bad frame loses nothing, one that accepts a corrupted copy ends with a
//! wrong book (or drops the real message as a duplicate of the bad one).

use std::fmt;

/// Where a bad frame is injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Upbit quotation WebSocket.
    UpbitMd,
    /// Upbit private WebSocket.
    UpbitPrivate,
    /// Binance market-data WebSockets (`/public`, `/market`).
    BinanceMd,
    /// Binance user-data WebSocket.
    BinanceUser,
    /// A REST response body (either venue).
    Rest,
}

impl Stream {
    /// Every stream, in counter order.
    pub const ALL: [Stream; 5] = [
        Stream::UpbitMd,
        Stream::UpbitPrivate,
        Stream::BinanceMd,
        Stream::BinanceUser,
        Stream::Rest,
    ];

    /// Counter index.
    pub fn idx(self) -> usize {
        Stream::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }
}

/// The kinds of bad frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Not JSON (a stray separator).
    InvalidJson,
    /// The first two thirds of the message.
    Truncated,
    /// A book with more levels than any parser accepts (Upbit 100 units, Binance 6,000).
    ManyLevels,
    /// A 256 KiB string where a symbol or type name belongs.
    HugeString,
    /// A binary frame of bytes that are not UTF-8.
    BinaryGarbage,
    /// A negative price.
    Negative,
    /// `NaN` as a price.
    NaN,
    /// `1e400` as a price (beyond f64, and beyond i64 fixed point).
    Overflow,
    /// A 40-digit price.
    Digits40,
    /// A price of the wrong JSON type (`true`).
    WrongType,
    /// A symbol the client does not trade.
    UnknownSymbol,
    /// 100,000 nested arrays where a value belongs.
    DeepNesting,
    /// Valid JSON of the wrong shape for its type.
    WrongSchema,
}

impl Variant {
    /// Every variant, in counter order.
    pub const ALL: [Variant; 13] = [
        Variant::InvalidJson,
        Variant::Truncated,
        Variant::ManyLevels,
        Variant::HugeString,
        Variant::BinaryGarbage,
        Variant::Negative,
        Variant::NaN,
        Variant::Overflow,
        Variant::Digits40,
        Variant::WrongType,
        Variant::UnknownSymbol,
        Variant::DeepNesting,
        Variant::WrongSchema,
    ];
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A bad frame: bytes and whether it goes out as a binary WebSocket frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadFrame {
    /// Payload.
    pub bytes: Vec<u8>,
    /// Send as a binary frame (otherwise text; only valid UTF-8 is ever sent as text).
    pub binary: bool,
}

/// Where the first price of a message of `stream` starts, and whether it is quoted.
fn price_at(stream: Stream, o: &str) -> Option<(usize, bool)> {
    let (markers, quoted): (&[&str], bool) = match stream {
        Stream::UpbitMd => (&["\"ask_price\":", "\"ap\":", "\"trade_price\":", "\"tp\":"], false),
        Stream::BinanceMd => (&["\"b\":[[\"", "\"a\":[[\"", "\"p\":\"", "\"b\":\""], true),
        // Only a fill's price is read (a `NEW` report carries `"L":"0"`, unused).
        Stream::BinanceUser if o.contains("\"x\":\"TRADE\"") => (&["\"L\":\""], true),
        Stream::BinanceUser => return None,
        Stream::UpbitPrivate => (&["\"price\":", "\"balance\":"], false),
        // Fields the client reads: filled quantity, balances, snapshot levels.
        Stream::Rest => (
            &[
                "\"executedQty\":\"",
                "\"executed_volume\":\"",
                "\"balance\":\"",
                "\"walletBalance\":\"",
                "\"bids\":[[\"",
            ],
            true,
        ),
    };
    markers.iter().find_map(|m| o.find(m).map(|i| (i + m.len(), quoted)))
}

/// Replaces the value starting at `at` (a quoted string's content, or a bare token).
fn replace_value(o: &str, at: usize, quoted: bool, new: &str) -> String {
    let rest = &o[at..];
    let end =
        if quoted { rest.find('"') } else { rest.find([',', '}', ']']) }.unwrap_or(rest.len());
    // A bare value may itself be a quoted string (Upbit REST); replace it whole.
    format!("{}{new}{}", &o[..at], &rest[end..])
}

/// Replaces the string value of the first of `keys` found with `new` (raw JSON text).
fn replace_field(o: &str, keys: &[&str], new: &str) -> Option<String> {
    keys.iter().find_map(|k| {
        let m = format!("\"{k}\":");
        let at = o.find(&m)? + m.len();
        let rest = &o[at..];
        let end = if let Some(inner) = rest.strip_prefix('"') {
            1 + inner.find('"')? + 1
        } else {
            rest.find([',', '}', ']']).unwrap_or(rest.len())
        };
        Some(format!("{}{new}{}", &o[..at], &rest[end..]))
    })
}

fn text(s: String) -> Option<BadFrame> {
    Some(BadFrame { bytes: s.into_bytes(), binary: false })
}

/// The Upbit code or Binance symbol the message is about.
fn symbol_of(o: &str) -> Option<&str> {
    for k in ["\"code\":\"", "\"cd\":\"", "\"s\":\"", "\"market\":\"", "\"symbol\":\""] {
        if let Some(i) = o.find(k) {
            let rest = &o[i + k.len()..];
            return rest.find('"').map(|e| &rest[..e]);
        }
    }
    None
}

/// Builds the `v` variant of a bad frame for a message `o` of `stream`; `None` when the
/// variant does not apply to this message (e.g. no price in it).
pub fn corrupt(stream: Stream, o: &[u8], v: Variant) -> Option<BadFrame> {
    let o = std::str::from_utf8(o).ok()?;
    let sym = symbol_of(o);
    match v {
        Variant::InvalidJson => text(o.replacen(':', ":,", 1)),
        Variant::Truncated => {
            let mut n = o.len() * 2 / 3;
            while !o.is_char_boundary(n) {
                n -= 1;
            }
            text(o[..n.max(1)].to_owned())
        }
        Variant::BinaryGarbage => Some(BadFrame {
            bytes: (0..64u8).map(|i| 0x80 | i.wrapping_mul(37)).collect(),
            binary: true,
        }),
        Variant::ManyLevels => match stream {
            Stream::UpbitMd if o.contains("orderbook") => {
                let unit = "{\"ask_price\":103493000,\"bid_price\":103460000,\"ask_size\":0.049,\"bid_size\":0.004}";
                let units = vec![unit; 100].join(",");
                text(format!(
                    "{{\"type\":\"orderbook\",\"code\":\"{}\",\"timestamp\":1,\"total_ask_size\":1,\"total_bid_size\":1,\"orderbook_units\":[{units}],\"stream_type\":\"REALTIME\",\"level\":0}}",
                    sym?
                ))
            }
            Stream::BinanceMd if o.contains("depthUpdate") => {
                let lv = vec!["[\"70000.00\",\"1.000\"]"; 6_000].join(",");
                text(format!(
                    "{{\"e\":\"depthUpdate\",\"E\":1,\"T\":1,\"s\":\"{}\",\"U\":1,\"u\":2,\"pu\":0,\"b\":[{lv}],\"a\":[]}}",
                    sym?
                ))
            }
            _ => None,
        },
        Variant::HugeString => {
            let huge = format!("\"{}\"", "A".repeat(256 << 10));
            let keys: &[&str] = match stream {
                Stream::UpbitMd | Stream::UpbitPrivate => &["code", "cd", "type"],
                Stream::BinanceMd => &["s"],
                Stream::BinanceUser => &["x", "e"],
                Stream::Rest => &["status", "state", "symbol", "listenKey", "currency"],
            };
            text(replace_field(o, keys, &huge)?)
        }
        Variant::Negative | Variant::NaN | Variant::Overflow | Variant::Digits40 => {
            let (at, quoted) = price_at(stream, o)?;
            let bare = match v {
                Variant::Negative => "-70000",
                Variant::NaN => "NaN",
                Variant::Overflow => "1e400",
                _ => "1234567890123456789012345678901234567890",
            };
            text(replace_value(o, at, quoted, bare))
        }
        Variant::WrongType => {
            let (at, quoted) = price_at(stream, o)?;
            // `true` in place of the number (or of the quoted decimal, quotes included).
            let start = if quoted { at - 1 } else { at };
            let rest = &o[at..];
            let end = if quoted { rest.find('"')? + 1 } else { rest.find([',', '}', ']'])? };
            text(format!("{}true{}", &o[..start], &rest[end..]))
        }
        Variant::UnknownSymbol => {
            let (keys, name): (&[&str], &str) = match stream {
                Stream::UpbitMd => (&["code", "cd"], "\"KRW-NOPE\""),
                Stream::BinanceMd => (&["s"], "\"NOPEUSDT\""),
                _ => return None,
            };
            text(replace_field(o, keys, name)?)
        }
        Variant::DeepNesting => {
            let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
            let keys: &[&str] = match stream {
                Stream::UpbitMd => &["orderbook_units", "obu", "trade_price", "tp"],
                Stream::BinanceMd => &["b", "p"],
                Stream::BinanceUser => &["o", "a"],
                Stream::UpbitPrivate => &["state", "assets"],
                Stream::Rest => &["status", "state", "bids", "listenKey", "balance"],
            };
            text(replace_field(o, keys, &deep)?)
        }
        Variant::WrongSchema => text(match stream {
            Stream::UpbitMd => format!(
                "{{\"type\":\"orderbook\",\"code\":\"{}\",\"timestamp\":\"soon\",\"orderbook_units\":{{\"ask_price\":1}}}}",
                sym?
            ),
            Stream::BinanceMd => format!(
                "{{\"e\":\"depthUpdate\",\"E\":\"x\",\"s\":\"{}\",\"U\":\"one\",\"u\":[],\"pu\":{{}},\"b\":\"none\",\"a\":7}}",
                sym?
            ),
            Stream::BinanceUser => "{\"e\":\"ORDER_TRADE_UPDATE\",\"E\":1,\"o\":[1,2,3]}".into(),
            Stream::UpbitPrivate => "{\"type\":\"myOrder\",\"uuid\":7,\"state\":[]}".into(),
            Stream::Rest => "[{\"unexpected\":[true,null,{}]}]".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_changes_a_real_depth_message() {
        let o = br#"{"e":"depthUpdate","E":1773240059032,"T":1773240059030,"s":"BTCUSDT","U":5,"u":9,"pu":4,"b":[["70499.90","3.512"]],"a":[["70500.00","1.950"]]}"#;
        for v in Variant::ALL {
            let b = corrupt(Stream::BinanceMd, o, v).expect("applies to depth");
            assert_ne!(b.bytes, o.to_vec(), "{v}");
        }
        let neg = corrupt(Stream::BinanceMd, o, Variant::Negative).unwrap();
        assert!(String::from_utf8(neg.bytes).unwrap().contains(r#""b":[["-70000","3.512"]]"#));
        let wt = corrupt(Stream::BinanceMd, o, Variant::WrongType).unwrap();
        assert!(String::from_utf8(wt.bytes).unwrap().contains(r#""b":[[true,"3.512"]]"#));
    }
}

#[cfg(test)]
mod parser_tests {
    use super::*;
    use kimp_core::instrument::Venue;
    use kimp_gateways::binance::market::BinanceMarketParser;
    use kimp_gateways::binance::user::BinanceUserParser;
    use kimp_gateways::symbols::SymbolTable;
    use kimp_gateways::upbit::market::UpbitMarketParser;

    /// Real messages of each stream, as the simulator renders them for the runtime.
    fn samples() -> Vec<(Stream, String)> {
        let s8 = 100_000_000i64;
        let bids = [(103_460_000 * s8, 400_000), (103_438_000 * s8, 483_381)];
        let asks = [(103_493_000 * s8, 4_910_155), (103_507_000 * s8, 6_146_000)];
        let ob = crate::sim::upbit_ws::orderbook_json(
            "KRW-BTC",
            1_773_240_059_027,
            &bids,
            &asks,
            30,
            crate::sim::upbit_ws::Format::Default,
            false,
        );
        let depth = r#"{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1773240059032,"T":1773240059030,"s":"BTCUSDT","U":5,"u":9,"pu":4,"b":[["70499.90","3.512"]],"a":[["70500.00","1.950"]]}}"#;
        let bt = r#"{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":9,"E":1773240059033,"T":1773240059030,"s":"BTCUSDT","b":"70499.90","B":"3.512","a":"70500.00","A":"1.950"}}"#;
        let mark = r#"{"stream":"btcusdt@markPrice@1s","data":{"e":"markPriceUpdate","E":1773240059000,"s":"BTCUSDT","p":"70501.25718750","i":"70533.81462791","P":"70533.81462791","r":"0.00005923","T":1773244800000}}"#;
        let fill = r#"{"e":"ORDER_TRADE_UPDATE","E":1773240059100,"T":1773240059100,"o":{"s":"BTCUSDT","c":"k1-7-b0","S":"SELL","o":"LIMIT","f":"IOC","q":"0.010","p":"70400.00","ap":"70499.90","sp":"0","x":"TRADE","X":"FILLED","i":42,"l":"0.010","z":"0.010","L":"70499.90","N":"USDT","n":"0.28199960","T":1773240059100,"t":7,"b":"0","a":"0","m":false,"R":false,"wt":"CONTRACT_PRICE","ot":"LIMIT","ps":"BOTH","cp":false,"rp":"0","pP":false,"si":0,"ss":0,"V":"EXPIRE_MAKER","pm":"NONE","gtd":0,"er":"0"}}"#;
        vec![
            (Stream::UpbitMd, ob),
            (Stream::BinanceMd, depth.into()),
            (Stream::BinanceMd, bt.into()),
            (Stream::BinanceMd, mark.into()),
            (Stream::BinanceUser, fill.into()),
        ]
    }

    #[test]
    fn the_runtime_parsers_refuse_every_bad_frame() {
        let insts = kimp_core::testkit::btc_markets().instruments;
        let mut up = UpbitMarketParser::new(SymbolTable::for_venue(Venue::Upbit, &insts));
        let mut bp = BinanceMarketParser::new(SymbolTable::for_venue(Venue::Binance, &insts));
        let mut user = BinanceUserParser::new(SymbolTable::for_venue(Venue::Binance, &insts));
        let mut accepted = Vec::new();
        for (stream, o) in samples() {
            // The real message itself is accepted.
            let ok = match stream {
                Stream::UpbitMd => up.parse(o.as_bytes()).is_ok(),
                Stream::BinanceMd => bp.parse(o.as_bytes()).is_ok(),
                _ => user.parse(o.as_bytes()).is_ok(),
            };
            assert!(ok, "{stream:?}: the real message was refused: {o}");
            for v in Variant::ALL {
                let Some(b) = corrupt(stream, o.as_bytes(), v) else { continue };
                let refused = match stream {
                    Stream::UpbitMd => up.parse(&b.bytes).is_err(),
                    Stream::BinanceMd => bp.parse(&b.bytes).is_err(),
                    _ => user.parse(&b.bytes).is_err(),
                };
                if !refused {
                    accepted.push(format!("{stream:?}/{v}: {}", &o[..o.len().min(60)]));
                }
            }
        }
        assert!(accepted.is_empty(), "bad frames accepted:\n{}", accepted.join("\n"));
    }
}

#[cfg(test)]
#[path = "../../../testdata/locate.rs"]
mod locate;

#[cfg(test)]
mod rest_tests {
    use super::*;
    use kimp_core::order::ClientId;
    use kimp_core::units::Nanos;
    use kimp_gateways::binance::market::BinanceMarketParser;
    use kimp_gateways::binance::rest::BinanceRestParser;
    use kimp_gateways::rest::OrderRequestKind;
    use kimp_gateways::symbols::SymbolTable;
    use kimp_gateways::upbit::rest::UpbitRestParser;

    /// A shared fixture, compacted as the simulator writes its bodies.
    fn fixture(name: &str) -> String {
        let p = locate::testdata(&format!("fixtures/protocol/{name}"));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).expect("fixture")).expect("json");
        v.to_string()
    }

    #[test]
    fn the_rest_parsers_refuse_every_bad_body() {
        let cl = ClientId::decode(b"k1-7-b0").expect("id");
        let bin_order = r#"{"orderId":42,"symbol":"BTCUSDT","status":"FILLED","clientOrderId":"k1-7-b0","price":"70400.00","avgPrice":"70499.90","origQty":"0.010","executedQty":"0.010","cumQuote":"704.99900","timeInForce":"IOC","type":"LIMIT","side":"SELL","updateTime":1773240059100}"#;
        let insts = kimp_core::testkit::btc_markets().instruments;
        let mut md = BinanceMarketParser::new(SymbolTable::for_venue(
            kimp_core::instrument::Venue::Binance,
            &insts,
        ));
        let (mut bp, mut up) = (BinanceRestParser::new(), UpbitRestParser::new());
        type Check<'a> = Box<dyn FnMut(&[u8]) -> bool + 'a>;
        let q = OrderRequestKind::Query;
        let cases: Vec<(&str, String, Check<'_>)> = vec![
            (
                "binance order",
                bin_order.into(),
                Box::new(|b| bp.order_reply(q, cl, 200, b, Nanos(0)).is_err()),
            ),
            (
                "upbit order",
                fixture("upbit_order_done.json"),
                Box::new(|b| up.order_reply(q, cl, 200, b, Nanos(0)).is_err()),
            ),
            (
                "upbit accounts",
                fixture("upbit_accounts.json"),
                Box::new(|b| kimp_gateways::upbit::rest::accounts(b).is_err()),
            ),
            (
                "binance snapshot",
                fixture("binance_futures_depth_snapshot.json"),
                Box::new(|b| md.parse_snapshot(kimp_core::testkit::BTCUSDT, b).is_err()),
            ),
        ];
        let mut accepted = Vec::new();
        for (name, body, mut refused) in cases {
            assert!(!refused(body.as_bytes()), "{name}: the real body was refused");
            for v in Variant::ALL {
                if let Some(b) = corrupt(Stream::Rest, body.as_bytes(), v)
                    && !refused(&b.bytes)
                {
                    accepted.push(format!("{name}/{v}"));
                }
            }
        }
        assert!(accepted.is_empty(), "bad bodies accepted: {accepted:?}");
    }
}
