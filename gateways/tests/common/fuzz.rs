//! The byte-fuzzing harness shared by `tests/codec_fuzz.rs` (proptest, modest case count)
//! and `examples/fuzz_parsers.rs` (millions of inputs, release mode): a corpus of real
//! messages, a deterministic mutator, and one call into every parser per input.
#![allow(dead_code)]

use kimp_core::instrument::{InstrumentId, Venue};
use kimp_core::order::{ClientId, Leg};
use kimp_core::testkit;
use kimp_core::units::Nanos;
use kimp_gateways::binance::{
    BinanceMarketParser, BinanceRestParser, BinanceUserParser, rest as brest,
};
use kimp_gateways::rest::OrderRequestKind;
use kimp_gateways::sign::{Secret, json_body_to_query, verify_binance_request, verify_upbit_jwt};
use kimp_gateways::symbols::SymbolTable;
use kimp_gateways::upbit::{UpbitMarketParser, UpbitRestParser, UpbitUserParser, rest as urest};

/// Names of the parsers, in the order of [`Harness::counts`].
pub const NAMES: [&str; 14] = [
    "binance market (scanner)",
    "binance market (simd-json)",
    "binance depth snapshot",
    "upbit market (scanner)",
    "upbit market (simd-json)",
    "binance user data",
    "upbit myOrder/myAsset",
    "binance REST order reply",
    "upbit REST order reply",
    "binance exchangeInfo/time/listenKey",
    "upbit accounts",
    "upbit JWT verify",
    "upbit body->query",
    "binance signature verify",
];

/// Every parser, with per-parser (inputs, ok) counters and path disagreements.
pub struct Harness {
    bm: BinanceMarketParser,
    bs: BinanceMarketParser,
    um: UpbitMarketParser,
    us: UpbitMarketParser,
    bu: BinanceUserParser,
    uu: UpbitUserParser,
    br: BinanceRestParser,
    ur: UpbitRestParser,
    secret: Secret,
    /// (inputs, accepted) per parser.
    pub counts: [(u64, u64); 14],
    /// Inputs both paths accepted with different results (must stay 0).
    pub disagreements: u64,
    /// First disagreeing input, for the report.
    pub first_disagreement: Option<Vec<u8>>,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// All parsers over the testkit markets.
    pub fn new() -> Self {
        let m = testkit::btc_markets();
        let bt = SymbolTable::for_venue(Venue::Binance, &m.instruments);
        let ut = SymbolTable::for_venue(Venue::Upbit, &m.instruments);
        Self {
            bm: BinanceMarketParser::new(bt.clone()),
            bs: BinanceMarketParser::new(bt.clone()),
            um: UpbitMarketParser::new(ut.clone()),
            us: UpbitMarketParser::new(ut),
            bu: BinanceUserParser::new(bt),
            uu: UpbitUserParser::new(),
            br: BinanceRestParser::new(),
            ur: UpbitRestParser::new(),
            secret: Secret::new("sKz3YtTq8pWmDnE5vRbH7jLcXa9uF2gN4kQwZe6S"),
            counts: [(0, 0); 14],
            disagreements: 0,
            first_disagreement: None,
        }
    }

    fn count(&mut self, i: usize, ok: bool) {
        self.counts[i].0 += 1;
        self.counts[i].1 += ok as u64;
    }

    /// Feeds one input to every parser. Panics propagate (a panic is a failure).
    pub fn run(&mut self, x: &[u8]) {
        let id_b = ClientId { epoch: 7, seq: 42, leg: Leg::B, attempt: 0 };
        let id_u = ClientId { epoch: 7, seq: 42, leg: Leg::U, attempt: 1 };
        let a = self.bm.parse(x).map(|m| format!("{m:?}"));
        let b = self.bs.parse_simd(x).map(|m| format!("{m:?}"));
        self.count(0, a.is_ok());
        self.count(1, b.is_ok());
        self.check(&a, &b, x);
        let ok = self.bm.parse_snapshot(InstrumentId(1), x).is_ok();
        self.count(2, ok);
        let a = self.um.parse(x).map(|m| format!("{m:?}"));
        let b = self.us.parse_simd(x).map(|m| format!("{m:?}"));
        self.count(3, a.is_ok());
        self.count(4, b.is_ok());
        self.check(&a, &b, x);
        let ok = self.bu.parse(x).is_ok();
        self.count(5, ok);
        let ok = self.uu.parse(x).is_ok();
        self.count(6, ok);
        let ok = self.br.order_reply(OrderRequestKind::Query, id_b, 200, x, Nanos(1)).is_ok()
            & self.br.order_reply(OrderRequestKind::Place, id_b, 400, x, Nanos(1)).is_ok();
        self.count(7, ok);
        let ok = self.ur.order_reply(OrderRequestKind::Query, id_u, 200, x, Nanos(1)).is_ok()
            & self.ur.order_reply(OrderRequestKind::Place, id_u, 400, x, Nanos(1)).is_ok();
        self.count(8, ok);
        let ok = brest::exchange_info(x, Venue::Binance, &[], 0).is_ok() as u8
            + brest::server_time(x).is_ok() as u8
            + brest::listen_key(x).is_ok() as u8;
        self.count(9, ok > 0);
        let ok = urest::accounts(x).is_ok();
        self.count(10, ok);
        let ok = verify_upbit_jwt(x, |_| Some(&self.secret)).is_ok();
        self.count(11, ok);
        let ok = json_body_to_query(x).is_ok();
        self.count(12, ok);
        let cut = x.len() / 2;
        let ok = verify_binance_request(&self.secret, &x[..cut], &x[cut..]).is_ok();
        self.count(13, ok);
    }

    fn check(
        &mut self,
        a: &Result<String, kimp_gateways::codec::CodecError>,
        b: &Result<String, kimp_gateways::codec::CodecError>,
        x: &[u8],
    ) {
        if let (Ok(a), Ok(b)) = (a, b)
            && a != b
        {
            self.disagreements += 1;
            if std::env::var_os("FUZZ_SHOW").is_some() {
                eprintln!(
                    "disagree on {:?}\n  scanner {a}\n  simd    {b}",
                    String::from_utf8_lossy(x)
                );
            }
            if self.first_disagreement.is_none() {
                self.first_disagreement = Some(x.to_vec());
            }
        }
    }
}

/// The corpus: every fixture message, a sample of each real recording, and a few
/// signed artefacts (a JWT, a signed query) so the verifiers get near-valid input.
pub fn corpus() -> Vec<Vec<u8>> {
    use crate::common::*;
    let mut c: Vec<Vec<u8>> = Vec::new();
    let dir = locate::testdata("fixtures/protocol");
    let mut names: Vec<_> =
        std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).collect();
    names.sort();
    for p in names {
        let text = std::fs::read_to_string(&p).unwrap();
        match p.extension().and_then(|e| e.to_str()) {
            Some("jsonl") => {
                c.extend(text.lines().filter(|l| !l.is_empty()).map(|l| l.as_bytes().to_vec()))
            }
            Some("json") => c.push(text.into_bytes()),
            _ => {}
        }
    }
    let ours = |s: &[u8]| {
        String::from_utf8_lossy(s)
            .replace("kimp-h-000001", "k7-42-b0")
            .replace("kimp-u-000001", "k7-42-u1")
    };
    let extra: Vec<Vec<u8>> = c.iter().map(|m| ours(m).into_bytes()).collect();
    c.extend(extra);
    for f in [
        "data/binance-usdm/btcusdt_20240718.gz",
        "data/binance-spot/btcusdt_20230405.dat.gz",
        "data/binance-usdm/btcusdt_20230404.dat.gz",
    ] {
        let lines = gz_lines(&locate::testdata(f));
        c.extend(lines.iter().step_by(97).take(300).map(|l| recorded_json(l).to_vec()));
    }
    c.extend(
        upbit_recorded(&locate::testdata("data/upbit/UPBIT-d78752.0.gz"))
            .into_iter()
            .step_by(7)
            .take(200),
    );
    c.push(b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhY2Nlc3Nfa2V5IjoieFpmVVREMW1Hd1FwUTNQcUs0bWJxVzZna244R3FFd0IyeUdyMU5iRyIsIm5vbmNlIjoiMmYxZDRiMGUtN2MxYS00YjhlLTlhNTMtMWMyZTNkNGY1YTZiIn0.-6DII6dtkd3S6RJ1BrECthtkWztCtIr_O6QaG2q0Fos".to_vec());
    c.push(b"symbol=BTCUSDT&side=BUY&type=LIMIT&timestamp=1&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71".to_vec());
    c
}

/// A small deterministic PRNG (xorshift64*), so runs are reproducible from a seed.
pub struct Rng(pub u64);

impl Rng {
    /// Next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[u8] = b"{}[]\",:0123456789.-+eE\\ntfu \x00\xff";

/// Applies `ops` mutations to `x`: byte flips, JSON-ish byte replacement, insertion,
/// deletion, truncation, slice duplication, digit changes.
pub fn mutate(x: &mut Vec<u8>, rng: &mut Rng, ops: usize) {
    for _ in 0..ops {
        let n = x.len();
        match rng.below(8) {
            0 if n > 0 => {
                let i = rng.below(n);
                x[i] ^= 1 << rng.below(8);
            }
            1 if n > 0 => {
                let i = rng.below(n);
                x[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(n + 1);
                x.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
            }
            3 if n > 0 => {
                let i = rng.below(n);
                let len = 1 + rng.below(8.min(n - i));
                x.drain(i..i + len);
            }
            4 => {
                let i = rng.below(n + 1);
                x.truncate(i);
            }
            5 if n > 1 => {
                let a = rng.below(n);
                let b = (a + 1 + rng.below(32)).min(n);
                let chunk = x[a..b].to_vec();
                let at = rng.below(x.len() + 1);
                x.splice(at..at, chunk);
            }
            6 if n > 0 => {
                let i = rng.below(n);
                if x[i].is_ascii_digit() {
                    x[i] = b'0' + rng.below(10) as u8;
                } else {
                    x[i] = rng.next() as u8;
                }
            }
            _ => {
                let len = rng.below(64);
                x.clear();
                x.extend((0..len).map(|_| rng.next() as u8));
            }
        }
    }
}
