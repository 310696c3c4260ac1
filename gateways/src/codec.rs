//! What every parser returns: a typed error without allocation, and counters the runtime
//! reports.

use core::fmt;

/// Why a message was not turned into an event. No heap data, so returning one on the hot
/// path costs nothing; the message itself is counted and skipped by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CodecError {
    /// Not JSON, or JSON of the wrong shape; names the field or construct.
    Malformed(&'static str),
    /// A required field is absent.
    Missing(&'static str),
    /// A price, quantity, id or time that is not an exact number we can hold.
    BadNumber(&'static str),
    /// A symbol that is not in the instrument table.
    UnknownSymbol,
    /// Valid JSON of a message type this parser does not know.
    UnknownMessage,
    /// More levels or bytes than the parser accepts.
    TooLarge,
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Malformed(w) => write!(f, "malformed {w}"),
            CodecError::Missing(w) => write!(f, "missing field {w}"),
            CodecError::BadNumber(w) => write!(f, "bad number in {w}"),
            CodecError::UnknownSymbol => f.write_str("unknown symbol"),
            CodecError::UnknownMessage => f.write_str("unknown message type"),
            CodecError::TooLarge => f.write_str("message too large"),
        }
    }
}

impl std::error::Error for CodecError {}

/// Shorthand result.
pub type CodecResult<T> = Result<T, CodecError>;

/// Per-parser counters (plain integers: one parser lives on one thread).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodecStats {
    /// Messages offered to the parser.
    pub messages: u64,
    /// Messages that produced an event.
    pub events: u64,
    /// Well-formed messages deliberately not turned into events (acks, heartbeats, lite
    /// trades, tickers).
    pub skipped: u64,
    /// Messages refused as malformed (any `CodecError` except the two below).
    pub malformed: u64,
    /// Messages for symbols not in the table.
    pub unknown_symbol: u64,
    /// Valid JSON of an unknown type.
    pub unknown_message: u64,
    /// Order reports whose client id is not one of ours (placed by hand, liquidations).
    pub foreign_orders: u64,
    /// Fills whose fee was in an asset other than the quote currency (fee reported as 0).
    pub fee_other_asset: u64,
}

impl CodecStats {
    /// Records the outcome of one message.
    #[inline]
    pub fn record<T>(&mut self, r: &CodecResult<T>, produced_event: bool) {
        self.messages += 1;
        match r {
            Ok(_) if produced_event => self.events += 1,
            Ok(_) => self.skipped += 1,
            Err(CodecError::UnknownSymbol) => self.unknown_symbol += 1,
            Err(CodecError::UnknownMessage) => self.unknown_message += 1,
            Err(_) => self.malformed += 1,
        }
    }

    /// Sum of all refused messages.
    pub fn errors(&self) -> u64 {
        self.malformed + self.unknown_symbol + self.unknown_message
    }
}

/// A venue's error name or message, copied inline (no heap, no borrow), truncated to
/// [`ErrText::CAP`] bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrText {
    len: u8,
    bytes: [u8; ErrText::CAP],
}

impl ErrText {
    /// Longest text kept.
    pub const CAP: usize = 48;

    /// Copies (and truncates) `b`.
    pub fn new(b: &[u8]) -> Self {
        let n = b.len().min(Self::CAP);
        let mut bytes = [0u8; Self::CAP];
        bytes[..n].copy_from_slice(&b[..n]);
        Self { len: n as u8, bytes }
    }

    /// The bytes kept.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The text, lossy when truncation split a UTF-8 character.
    pub fn as_str(&self) -> &str {
        match core::str::from_utf8(self.as_bytes()) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.as_bytes()[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl Default for ErrText {
    fn default() -> Self {
        Self::new(b"")
    }
}

impl fmt::Debug for ErrText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// An error reported by the venue on a market-data connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VenueError {
    /// Binance numeric code (`{"code":2,"msg":…}`); 0 for Upbit.
    pub code: i64,
    /// Upbit error name (`INVALID_AUTH`) or Binance `msg`.
    pub name: ErrText,
}

/// Upbit `ticker` (last trade price; the engine's books come from `orderbook`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticker {
    /// Instrument.
    pub inst: kimp_core::instrument::InstrumentId,
    /// Message time.
    pub exch_ts: kimp_core::units::Nanos,
    /// Last trade price.
    pub last: kimp_core::units::Price,
    /// Accumulated volume over 24 h.
    pub volume_24h: kimp_core::units::Qty,
}

/// What one market-data frame turned into.
#[derive(Clone, Copy, Debug)]
pub enum MarketMsg<'a> {
    /// An engine event (book, depth, bbo, trade, funding).
    Event(kimp_core::event::Event<'a>),
    /// Upbit ticker.
    Ticker(Ticker),
    /// Upbit `{"status":"UP"}` keep-alive answer.
    Heartbeat,
    /// Binance `{"result":…,"id":…}` answer to SUBSCRIBE etc.
    Ack {
        /// Request id echoed.
        id: u64,
    },
    /// The venue reported an error on the stream.
    VenueError(VenueError),
    /// A well-formed message of a known type that carries nothing for the engine.
    Skipped,
}

impl MarketMsg<'_> {
    /// True when the message is an engine event.
    pub fn is_event(&self) -> bool {
        matches!(self, MarketMsg::Event(_))
    }
}

/// What one private-stream frame or REST body turned into: events in order (a fill and
/// the order's end can arrive in one message), or a control condition.
#[derive(Clone, Copy, Debug)]
pub enum UserMsg<'a> {
    /// Engine events, in order (order reports, balances, positions).
    Events(&'a [kimp_core::event::Event<'static>]),
    /// Binance `listenKeyExpired`: reconnect with a new key.
    ListenKeyExpired,
    /// Well-formed, nothing for the engine (`TRADE_LITE`, acks).
    Skipped,
    /// An order report for an order that is not ours (hand-placed, liquidation).
    Foreign,
}

/// A stable 64-bit id for a venue trade id given as text (Upbit trade UUIDs). Fills are
/// de-duplicated by cumulative quantity, so this only labels the fill.
pub fn text_id(s: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &c in s {
        h = (h ^ c as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
