//! `kimp replay`: recorded raw venue messages through the gateway codecs and the engine's
//! books, with the documented Binance sync procedure, printed as CSV.
//!
//! `--print book-top` writes one row per applied book update (a depth diff or a snapshot):
//! `exchange_ts_ms,venue,symbol,bid_px,bid_qty,ask_px,ask_qty`. `--print kimp` writes the
//! mid and executable premium of one coin whenever either of its books or the FX book moves.
//! Diagnostics (gaps, resyncs, malformed lines) go to stderr. Files given together are one
//! continuous stream, in the order given; `kimp record` captures (`.kcap`) are read frame by
//! frame, the venue taken from each frame and a REST snapshot's symbol from its request.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use clap::{Args, ValueEnum};
use kimp_core::book::{Book, DiffOutcome, SeqRule};
use kimp_core::config::Direction;
use kimp_core::event::{BookSnapshot, Event};
use kimp_core::instrument::{Instrument, InstrumentId, Symbol, TickRule, Venue};
use kimp_core::premium::{self, Quotes};
use kimp_core::units::{Nanos, Price, Qty, Quote};
use kimp_gateways::binance::market::BinanceMarketParser;
use kimp_gateways::codec::MarketMsg;
use kimp_gateways::symbols::SymbolTable;
use kimp_gateways::upbit::market::UpbitMarketParser;

use super::candles::read_text;
use super::capture::{CapVenue, FrameKind, FrameReader, is_capture, read_file};
use super::tick_mode::unescape_py;

/// What to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrintWhat {
    /// Top of book after every applied update.
    BookTop,
    /// Mid and executable premium of one coin.
    Kimp,
}

/// `kimp replay` arguments.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Recorded files: `kimp record` captures (`.kcap`), gzip or plain `<local_ts> <json>`
    /// lines (Binance collector), cryptofeed `<ts>: b'<json>'` lines (Upbit), or bare JSON
    /// lines; one stream, in the order given.
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Output.
    #[arg(long, value_enum, default_value = "book-top")]
    pub print: PrintWhat,
    /// `--print kimp`: the Upbit market (e.g. `KRW-BTC`).
    #[arg(long, default_value = "KRW-BTC")]
    pub upbit: String,
    /// `--print kimp`: the Binance symbol (e.g. `BTCUSDT`).
    #[arg(long, default_value = "BTCUSDT")]
    pub binance: String,
    /// `--print kimp`: FX from this Upbit book (default `KRW-USDT`) unless `--fx-rate` is given.
    #[arg(long, default_value = "KRW-USDT")]
    pub fx_book: String,
    /// `--print kimp`: a fixed KRW per USD(T) rate instead of an FX book.
    #[arg(long)]
    pub fx_rate: Option<f64>,
    /// `--print kimp`: quantity (coins) the executable premium is walked for.
    #[arg(long, default_value_t = 0.01)]
    pub qty: f64,
}

/// Which venue a file's Binance messages belong to (spot files have no `pu`).
fn binance_venue(path: &Path) -> Venue {
    let p = path.to_string_lossy().to_ascii_lowercase();
    if p.contains("spot") { Venue::BinanceSpot } else { Venue::Binance }
}

/// One message of a recording.
struct Rec {
    /// Receive time, ns (0 when the line has none).
    ts: u64,
    payload: Vec<u8>,
    /// The venue, when the file says (captures); text files are told apart by content.
    venue: Option<Venue>,
    /// A REST depth snapshot of this Binance symbol (captures name it in a `Sent` frame).
    snapshot: Option<String>,
}

/// The messages of a text recording and the number of lines that are not messages.
fn text_msgs(text: &str) -> (Vec<Rec>, u64) {
    let mut out = Vec::new();
    let mut bad = 0;
    for l in lines(text) {
        match l {
            Some((ts, payload)) => out.push(Rec { ts, payload, venue: None, snapshot: None }),
            None => bad += 1,
        }
    }
    (out, bad)
}

/// The messages of a capture file (docs/capture-format.md): WebSocket payloads, and REST
/// bodies named by the request line sent before them on the same stream. Frames of an
/// unknown kind and a torn tail are counted as skipped.
fn capture_msgs(raw: &[u8]) -> Result<(Vec<Rec>, u64)> {
    let mut r = FrameReader::new(raw)?;
    let mut request: std::collections::HashMap<u16, String> = Default::default();
    let mut out = Vec::new();
    let mut skipped = 0;
    while let Some(f) = r.next_frame() {
        let venue = match f.venue {
            CapVenue::Upbit => Venue::Upbit,
            CapVenue::Binance => Venue::Binance,
            CapVenue::BinanceSpot => Venue::BinanceSpot,
        };
        let rec = |snapshot| Rec {
            ts: f.recv_ts_ns,
            payload: f.payload.to_vec(),
            venue: Some(venue),
            snapshot,
        };
        match f.kind {
            FrameKind::Ws => out.push(rec(None)),
            FrameKind::Sent => {
                // `GET /fapi/v1/depth?symbol=BTCUSDT&limit=1000` names the next REST body.
                let s = String::from_utf8_lossy(f.payload);
                if let Some(sym) = s.split("symbol=").nth(1) {
                    let sym: String = sym.chars().take_while(char::is_ascii_alphanumeric).collect();
                    request.insert(f.stream, sym.to_ascii_uppercase());
                }
            }
            FrameKind::Rest => match request.remove(&f.stream) {
                Some(sym) => out.push(rec(Some(sym))),
                None => skipped += 1,
            },
            FrameKind::Conn => {}
        }
    }
    skipped += r.unknown + u64::from(r.torn_bytes > 0);
    Ok((out, skipped))
}

/// One message of a text recording: receive time (ns, 0 when the line has none) and payload.
fn lines(text: &str) -> impl Iterator<Item = Option<(u64, Vec<u8>)>> + '_ {
    text.lines().filter(|l| !l.trim().is_empty()).map(|line| {
        let line = line.trim_end();
        if line.starts_with('{') {
            return Some((0, line.as_bytes().to_vec()));
        }
        if let Some((t, rest)) = line.split_once(": b'") {
            let body = rest.strip_suffix('\'').unwrap_or(rest);
            let mut v = Vec::with_capacity(body.len());
            unescape_py(body.as_bytes(), &mut v);
            return Some(((t.trim().parse::<f64>().ok()? * 1e9) as u64, v));
        }
        let (t, rest) = line.split_once(' ')?;
        let t = t.trim_end_matches(':');
        let ts = if t.contains('.') {
            (t.parse::<f64>().ok()? * 1e9) as u64
        } else {
            t.parse::<u64>().ok()?
        };
        let body = rest.trim();
        body.starts_with('{').then(|| (ts, body.as_bytes().to_vec()))
    })
}

/// The symbol a file's bare REST snapshots are for: the file name's first part (`btcusdt_…`).
fn file_symbol(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    name.split(['_', '.', '-']).next().unwrap_or("").to_ascii_uppercase()
}

/// A bare REST depth snapshot (`{"lastUpdateId":…,"bids":…}`, any key order), as the
/// collector records them, as opposed to a stream event (which has `"e"`).
fn is_snapshot(p: &[u8]) -> bool {
    let has = |n: &[u8]| p.windows(n.len()).any(|w| w == n);
    has(b"\"lastUpdateId\"") && !has(b"\"e\":")
}

/// Symbols that appear in the payloads (a cheap scan: `"s":"…"`, `"cd":"…"`, `"code":"…"`).
fn scan_symbols(payload: &[u8], out: &mut Vec<String>) {
    for key in [&b"\"s\":\""[..], b"\"cd\":\"", b"\"code\":\""] {
        if let Some(i) = payload.windows(key.len()).position(|w| w == key) {
            let rest = &payload[i + key.len()..];
            let end = rest.iter().position(|&c| c == b'"').unwrap_or(0);
            if let Ok(s) = std::str::from_utf8(&rest[..end])
                && !s.is_empty()
                && s.len() <= Symbol::CAP
                && !out.iter().any(|x| x == s)
            {
                out.push(s.to_string());
            }
        }
    }
}

struct Replay {
    instruments: Vec<Instrument>,
    books: Vec<Book>,
    /// Diffs received while a book waits for its snapshot (the documented buffering).
    pending: Vec<Vec<Vec<u8>>>,
    gaps: u64,
    malformed: u64,
    rows: u64,
}

fn venue_name(v: Venue) -> &'static str {
    match v {
        Venue::Upbit => "upbit",
        Venue::Binance => "binance-usdm",
        Venue::BinanceSpot => "binance-spot",
    }
}

fn fmt(v: i64) -> String {
    kimp_core::units::Decimal(v).to_string()
}

/// Runs `kimp replay`.
pub fn run(args: ReplayArgs) -> Result<()> {
    // Read everything first: the instrument table must exist before the parsers.
    let mut files = Vec::new();
    let mut upbit_syms: Vec<String> = Vec::new();
    let mut binance_syms: Vec<(Venue, String)> = Vec::new();
    for path in &args.input {
        let raw = read_file(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let bv = binance_venue(path);
        let capture = is_capture(&raw);
        let (msgs, bad) = if capture {
            capture_msgs(&raw).map_err(|e| anyhow!("{}: {e}", path.display()))?
        } else {
            text_msgs(&read_text(path)?)
        };
        for m in &msgs {
            let mut syms = Vec::new();
            scan_symbols(&m.payload, &mut syms);
            syms.extend(m.snapshot.clone());
            let mv = m.venue.unwrap_or(bv);
            for s in syms {
                if mv == Venue::Upbit || (m.venue.is_none() && s.contains('-')) {
                    if !upbit_syms.contains(&s) {
                        upbit_syms.push(s);
                    }
                } else if !binance_syms.iter().any(|(v, x)| *v == mv && *x == s) {
                    binance_syms.push((mv, s));
                }
            }
        }
        let fs = file_symbol(path);
        if !fs.is_empty()
            && fs.ends_with("USDT")
            && !binance_syms.iter().any(|(v, x)| *v == bv && *x == fs)
        {
            binance_syms.push((bv, fs.clone()));
        }
        if bad > 0 {
            let what = if capture { "frames" } else { "lines" };
            eprintln!("{}: {bad} {what} are not messages (skipped)", path.display());
        }
        files.push((path.clone(), bv, fs, msgs));
    }
    let mut instruments = Vec::new();
    for s in &upbit_syms {
        instruments.push(inst(Venue::Upbit, s, TickRule::UpbitKrw)?);
    }
    for (v, s) in &binance_syms {
        instruments.push(inst(*v, s, TickRule::Fixed(Price(1)))?);
    }
    if instruments.is_empty() {
        bail!("no venue messages found in the input");
    }
    let books = instruments
        .iter()
        .map(|i| {
            let rule = match i.venue {
                Venue::Upbit => SeqRule::Snapshots,
                Venue::Binance => SeqRule::Futures,
                Venue::BinanceSpot => SeqRule::Spot,
            };
            Book::new(rule, 5_000)
        })
        .collect();
    let n = instruments.len();
    let mut st =
        Replay { instruments, books, pending: vec![Vec::new(); n], gaps: 0, malformed: 0, rows: 0 };
    let mut upbit_p = UpbitMarketParser::new(SymbolTable::for_venue(Venue::Upbit, &st.instruments));
    let mut usdm_p =
        BinanceMarketParser::new(SymbolTable::for_venue(Venue::Binance, &st.instruments));
    let mut spot_p =
        BinanceMarketParser::new(SymbolTable::for_venue(Venue::BinanceSpot, &st.instruments));
    let mut kimp = match args.print {
        PrintWhat::Kimp => Some(KimpView::new(&args, &st.instruments)?),
        PrintWhat::BookTop => None,
    };
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    match args.print {
        PrintWhat::BookTop => {
            writeln!(out, "exchange_ts_ms,venue,symbol,bid_px,bid_qty,ask_px,ask_qty")?
        }
        PrintWhat::Kimp => writeln!(out, "exchange_ts_ms,coin,mid_bps,sell_bps,buy_bps,fx,qty")?,
    }
    for (path, bv, fs, msgs) in &files {
        for m in msgs {
            let payload = &m.payload;
            let is_upbit = match m.venue {
                Some(v) => v == Venue::Upbit,
                None => {
                    payload.windows(4).take(64).any(|w| w == b"\"ty\"" || w == b"\"cd\"")
                        || payload.windows(7).take(64).any(|w| w == b"\"code\":")
                }
            };
            let ts = m.ts;
            if is_upbit {
                let parsed = upbit_p.parse(payload);
                st.on_msg(parsed, ts, None, &mut out, kimp.as_mut())?;
                continue;
            }
            let bv = m.venue.unwrap_or(*bv);
            let parser = if bv == Venue::BinanceSpot { &mut spot_p } else { &mut usdm_p };
            let snap = match &m.snapshot {
                Some(s) => Some(s.as_str()),
                None => (m.venue.is_none() && is_snapshot(payload)).then_some(fs.as_str()),
            };
            if let Some(sym) = snap {
                let Some(id) = st.find(bv, sym) else {
                    eprintln!("{}: snapshot for unknown symbol {sym}", path.display());
                    continue;
                };
                let parsed = parser.parse_snapshot(id, payload);
                st.on_snapshot(parsed, ts, &mut out, kimp.as_mut())?;
                // The buffered diffs, in order: what the snapshot covers is dropped.
                let buffered = std::mem::take(&mut st.pending[id.0 as usize]);
                for p in &buffered {
                    let parsed = parser.parse(p);
                    st.on_msg(parsed, ts, None, &mut out, kimp.as_mut())?;
                }
                continue;
            }
            let parsed = parser.parse(payload);
            st.on_msg(parsed, ts, Some(payload), &mut out, kimp.as_mut())?;
        }
    }
    out.flush()?;
    eprintln!(
        "replay: {} rows, {} gaps (book stale until the next snapshot), {} malformed messages",
        st.rows, st.gaps, st.malformed
    );
    Ok(())
}

fn inst(venue: Venue, s: &str, tick: TickRule) -> Result<Instrument> {
    Ok(Instrument {
        venue,
        symbol: Symbol::new(s).ok_or_else(|| anyhow!("bad symbol {s:?}"))?,
        tick,
        lot: Qty(1),
        min_qty: Qty(1),
        min_notional: Quote(0),
        price_dp: 8,
        qty_dp: 8,
        taker_fee_e8: 0,
    })
}

impl Replay {
    fn find(&self, venue: Venue, sym: &str) -> Option<InstrumentId> {
        self.instruments
            .iter()
            .position(|i| i.venue == venue && i.symbol.as_str() == sym)
            .map(|i| InstrumentId(i as u16))
    }

    fn row(&mut self, out: &mut impl Write, ts_ms: u64, inst: InstrumentId) -> Result<()> {
        let b = &self.books[inst.0 as usize];
        let i = &self.instruments[inst.0 as usize];
        let side = |l: Option<kimp_core::event::Level>| {
            l.map_or((String::new(), String::new()), |l| (fmt(l.px.0), fmt(l.qty.0)))
        };
        let (bp, bq) = side(b.best_bid());
        let (ap, aq) = side(b.best_ask());
        writeln!(out, "{ts_ms},{},{},{bp},{bq},{ap},{aq}", venue_name(i.venue), i.symbol)?;
        self.rows += 1;
        Ok(())
    }

    fn on_snapshot(
        &mut self,
        parsed: kimp_gateways::codec::CodecResult<MarketMsg<'_>>,
        ts: u64,
        out: &mut impl Write,
        kimp: Option<&mut KimpView>,
    ) -> Result<()> {
        match parsed {
            Ok(MarketMsg::Event(Event::Book(s))) => self.snapshot(&s, ts, out, kimp),
            _ => {
                self.malformed += 1;
                Ok(())
            }
        }
    }

    fn snapshot(
        &mut self,
        s: &BookSnapshot<'_>,
        ts: u64,
        out: &mut impl Write,
        kimp: Option<&mut KimpView>,
    ) -> Result<()> {
        self.books[s.inst.0 as usize].apply_snapshot(s, Nanos(ts));
        let ms = if s.exch_ts.0 > 0 { s.exch_ts.as_ms() } else { ts / 1_000_000 };
        match kimp {
            Some(k) => k.update(out, ms, &self.books, &mut self.rows),
            None => self.row(out, ms, s.inst),
        }
    }

    fn on_msg(
        &mut self,
        parsed: kimp_gateways::codec::CodecResult<MarketMsg<'_>>,
        ts: u64,
        raw: Option<&Vec<u8>>,
        out: &mut impl Write,
        kimp: Option<&mut KimpView>,
    ) -> Result<()> {
        match parsed {
            Ok(MarketMsg::Event(Event::Book(s))) => self.snapshot(&s, ts, out, kimp),
            Ok(MarketMsg::Event(Event::Depth(d))) => {
                let i = d.inst.0 as usize;
                match self.books[i].apply_diff(&d, Nanos(ts)) {
                    DiffOutcome::Applied => {
                        let ms = d.exch_ts.as_ms();
                        match kimp {
                            Some(k) => k.update(out, ms, &self.books, &mut self.rows),
                            None => self.row(out, ms, d.inst),
                        }
                    }
                    DiffOutcome::NotSynced => {
                        if let Some(r) = raw {
                            self.pending[i].push(r.clone());
                        }
                        Ok(())
                    }
                    DiffOutcome::Dropped => Ok(()),
                    DiffOutcome::Gap => {
                        self.gaps += 1;
                        eprintln!(
                            "gap: {} {} U={} u={} pu={:?} after {}; book stale until the next snapshot",
                            venue_name(self.instruments[i].venue),
                            self.instruments[i].symbol,
                            d.first_id,
                            d.last_id,
                            d.prev_last_id,
                            self.books[i].last_id()
                        );
                        if let Some(r) = raw {
                            self.pending[i].push(r.clone());
                        }
                        Ok(())
                    }
                }
            }
            Ok(_) => Ok(()),
            Err(_) => {
                self.malformed += 1;
                Ok(())
            }
        }
    }
}

/// `--print kimp`: one coin's premium from its two books and an FX source.
struct KimpView {
    upbit: Option<usize>,
    binance: Option<usize>,
    fx_book: Option<usize>,
    fx_rate: Option<Price>,
    qty: Qty,
    coin: String,
}

impl KimpView {
    fn new(a: &ReplayArgs, insts: &[Instrument]) -> Result<Self> {
        let find =
            |v: Venue, s: &str| insts.iter().position(|i| i.venue == v && i.symbol.as_str() == s);
        let fx_rate = match a.fx_rate {
            Some(r) => Some(Price::from_f64(r).map_err(|_| anyhow!("bad --fx-rate"))?),
            None => None,
        };
        let v = KimpView {
            upbit: find(Venue::Upbit, &a.upbit),
            binance: find(Venue::Binance, &a.binance)
                .or_else(|| find(Venue::BinanceSpot, &a.binance)),
            fx_book: find(Venue::Upbit, &a.fx_book),
            fx_rate,
            qty: Qty::from_f64(a.qty).map_err(|_| anyhow!("bad --qty"))?,
            coin: a.upbit.trim_start_matches("KRW-").to_string(),
        };
        if v.upbit.is_none() || v.binance.is_none() {
            bail!(
                "--print kimp needs messages for both {} and {} in the input",
                a.upbit,
                a.binance
            );
        }
        if v.fx_rate.is_none() && v.fx_book.is_none() {
            bail!("no {} book in the input: give --fx-rate", a.fx_book);
        }
        Ok(v)
    }

    fn update(
        &mut self,
        out: &mut impl Write,
        ms: u64,
        books: &[Book],
        rows: &mut u64,
    ) -> Result<()> {
        let (Some(u), Some(b)) = (self.upbit, self.binance) else { return Ok(()) };
        let (fx_bid, fx_ask) = match (self.fx_rate, self.fx_book) {
            (Some(r), _) => (r, r),
            (None, Some(f)) => match (books[f].best_bid(), books[f].best_ask()) {
                (Some(b), Some(a)) => (b.px, a.px),
                _ => return Ok(()),
            },
            _ => return Ok(()),
        };
        let q = Quotes { upbit: &books[u], binance: &books[b], fx_bid, fx_ask };
        let Some(mid) = premium::mid_bps(&q) else { return Ok(()) };
        let e = |d| {
            premium::executable(&q, d, self.qty).map_or(String::new(), |e| format!("{:.2}", e.bps))
        };
        let fx = (fx_bid.to_f64() + fx_ask.to_f64()) / 2.0;
        writeln!(
            out,
            "{ms},{},{mid:.2},{},{},{fx},{}",
            self.coin,
            e(Direction::SellPremium),
            e(Direction::BuyDiscount),
            self.qty
        )?;
        *rows += 1;
        Ok(())
    }
}
