//! Venue symbol → `InstrumentId`, case-insensitive, without allocation on lookup.
//!
//! Binance payloads carry `BTCUSDT` but stream names are `btcusdt@depth`; Upbit carries
//! `KRW-BTC`. A small open-addressing table keyed by an ASCII-case-folded FNV hash keeps a
//! lookup to one hash and usually one compare.

use kimp_core::instrument::{Instrument, InstrumentId, Symbol, Venue};

const SLOTS: usize = 1024;

/// Maps one venue's symbols to instrument ids.
#[derive(Clone, Debug)]
pub struct SymbolTable {
    venue: Venue,
    slots: Box<[Option<(Symbol, InstrumentId)>]>,
    len: usize,
}

#[inline]
fn hash(b: &[u8]) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for &c in b {
        h = (h ^ c.to_ascii_uppercase() as u32).wrapping_mul(0x0100_0193);
    }
    h as usize
}

impl SymbolTable {
    /// An empty table for `venue`.
    pub fn new(venue: Venue) -> Self {
        Self { venue, slots: vec![None; SLOTS].into_boxed_slice(), len: 0 }
    }

    /// A table of every instrument of `venue` in `instruments`, with the id being the index
    /// (the engine's `Markets.instruments` order).
    pub fn for_venue(venue: Venue, instruments: &[Instrument]) -> Self {
        let mut t = Self::new(venue);
        for (i, inst) in instruments.iter().enumerate() {
            if inst.venue == venue {
                t.insert(inst.symbol, InstrumentId(i as u16));
            }
        }
        t
    }

    /// The venue this table serves.
    pub fn venue(&self) -> Venue {
        self.venue
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds or replaces a symbol; returns false when the table is full.
    pub fn insert(&mut self, sym: Symbol, id: InstrumentId) -> bool {
        let mut i = hash(sym.as_str().as_bytes()) % SLOTS;
        for _ in 0..SLOTS {
            match &mut self.slots[i] {
                Some((s, v)) if s.eq_ignore_case(sym.as_str().as_bytes()) => {
                    *v = id;
                    return true;
                }
                None => {
                    self.slots[i] = Some((sym, id));
                    self.len += 1;
                    return true;
                }
                _ => i = (i + 1) % SLOTS,
            }
        }
        false
    }

    /// Looks a wire symbol up, ignoring ASCII case.
    #[inline]
    pub fn get(&self, wire: &[u8]) -> Option<InstrumentId> {
        if wire.is_empty() || wire.len() > Symbol::CAP {
            return None;
        }
        let mut i = hash(wire) % SLOTS;
        for _ in 0..SLOTS {
            match &self.slots[i] {
                Some((s, v)) if s.eq_ignore_case(wire) => return Some(*v),
                Some(_) => i = (i + 1) % SLOTS,
                None => return None,
            }
        }
        None
    }

    /// The symbol of an id (reverse lookup for encoders; linear, off the hot path).
    pub fn symbol_of(&self, id: InstrumentId) -> Option<Symbol> {
        self.slots.iter().flatten().find(|(_, v)| *v == id).map(|(s, _)| *s)
    }

    /// Looks up the symbol part of a Binance stream name (`btcusdt@depth@100ms`).
    #[inline]
    pub fn get_stream(&self, stream: &[u8]) -> Option<InstrumentId> {
        let end = stream.iter().position(|&c| c == b'@').unwrap_or(stream.len());
        self.get(&stream[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kimp_core::testkit::btc_markets;

    #[test]
    fn lookups_ignore_case_and_venue() {
        let m = btc_markets();
        let up = SymbolTable::for_venue(Venue::Upbit, &m.instruments);
        let bn = SymbolTable::for_venue(Venue::Binance, &m.instruments);
        assert_eq!(up.get(b"KRW-BTC"), Some(InstrumentId(0)));
        assert_eq!(up.get(b"KRW-USDT"), Some(InstrumentId(2)));
        assert_eq!(up.get(b"krw-btc"), Some(InstrumentId(0)));
        assert_eq!(up.get(b"BTCUSDT"), None);
        assert_eq!(bn.get(b"BTCUSDT"), Some(InstrumentId(1)));
        assert_eq!(bn.get(b"btcusdt"), Some(InstrumentId(1)));
        assert_eq!(bn.get_stream(b"btcusdt@depth@100ms"), Some(InstrumentId(1)));
        assert_eq!(bn.get(b""), None);
        assert_eq!(bn.get(&[0xff; 40]), None);
        assert_eq!(bn.symbol_of(InstrumentId(1)).unwrap().as_str(), "BTCUSDT");
    }

    #[test]
    fn many_symbols() {
        let mut t = SymbolTable::new(Venue::Binance);
        for i in 0..500u16 {
            assert!(t.insert(Symbol::new(&format!("C{i}USDT")).unwrap(), InstrumentId(i)));
        }
        for i in 0..500u16 {
            assert_eq!(t.get(format!("c{i}usdt").as_bytes()), Some(InstrumentId(i)));
        }
        assert_eq!(t.len(), 500);
    }
}
