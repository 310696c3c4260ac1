//! Names for the ids the engine uses: coin index → coin name, instrument → venue and symbol.
//!
//! The engine's records carry dense indices only; the store and the bot need names. The
//! runtime builds one table at start (usually with [`Names::from_markets`]) and shares it.

use kimp_core::engine::Markets;
use kimp_core::instrument::{InstrumentId, Venue};
use kimp_core::order::{ClientId, Leg};

/// Venue, symbol and coin of one instrument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstName {
    /// Venue.
    pub venue: Venue,
    /// Venue symbol (`KRW-BTC`, `BTCUSDT`).
    pub symbol: String,
    /// Coin index when the instrument is a leg of a traded coin (`None` for the FX book).
    pub coin: Option<u16>,
}

/// The name table (immutable after start; share it behind an `Arc`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    coins: Vec<String>,
    insts: Vec<Option<InstName>>,
    /// Per coin: (Upbit instrument, Binance instrument).
    legs: Vec<(InstrumentId, InstrumentId)>,
}

/// Shown for an index nobody named (a sizing bug; rows are still written).
pub const UNKNOWN: &str = "?";

impl Names {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the table from the engine's markets.
    pub fn from_markets(m: &Markets) -> Self {
        let mut n = Names::new();
        for (i, inst) in m.instruments.iter().enumerate() {
            n.set_instrument(InstrumentId(i as u16), inst.venue, inst.symbol.as_str(), None);
        }
        for spec in &m.coins {
            n.add_coin(spec.name.as_str(), spec.upbit, spec.binance);
        }
        n
    }

    /// Adds a coin with its two legs; returns its index.
    pub fn add_coin(&mut self, name: &str, upbit: InstrumentId, binance: InstrumentId) -> u16 {
        let idx = self.coins.len() as u16;
        self.coins.push(name.to_string());
        self.legs.push((upbit, binance));
        for id in [upbit, binance] {
            if let Some(Some(i)) = self.insts.get_mut(id.0 as usize) {
                i.coin = Some(idx);
            }
        }
        idx
    }

    /// Names an instrument.
    pub fn set_instrument(
        &mut self,
        id: InstrumentId,
        venue: Venue,
        symbol: &str,
        coin: Option<u16>,
    ) {
        let i = id.0 as usize;
        if self.insts.len() <= i {
            self.insts.resize(i + 1, None);
        }
        self.insts[i] = Some(InstName { venue, symbol: symbol.to_string(), coin });
    }

    /// Coin name, or [`UNKNOWN`].
    pub fn coin(&self, idx: u16) -> &str {
        self.coins.get(idx as usize).map_or(UNKNOWN, String::as_str)
    }

    /// Number of coins.
    pub fn coin_count(&self) -> usize {
        self.coins.len()
    }

    /// Coin index by name, case-insensitive (`btc` → BTC).
    pub fn coin_index(&self, name: &str) -> Option<u16> {
        self.coins.iter().position(|c| c.eq_ignore_ascii_case(name)).map(|i| i as u16)
    }

    /// Instrument names, if known.
    pub fn inst(&self, id: InstrumentId) -> Option<&InstName> {
        self.insts.get(id.0 as usize).and_then(Option::as_ref)
    }

    /// Venue name of an instrument, or [`UNKNOWN`].
    pub fn venue_name(&self, id: InstrumentId) -> &'static str {
        self.inst(id).map_or(UNKNOWN, |i| i.venue.name())
    }

    /// Symbol of an instrument, or [`UNKNOWN`].
    pub fn symbol(&self, id: InstrumentId) -> &str {
        self.inst(id).map_or(UNKNOWN, |i| i.symbol.as_str())
    }

    /// The instrument of an order leg for a coin.
    pub fn leg_inst(&self, coin: u16, leg: Leg) -> Option<InstrumentId> {
        self.legs.get(coin as usize).map(|&(u, b)| if leg == Leg::U { u } else { b })
    }

    /// The venue a client id's leg trades on when nothing else is known (`u` → Upbit).
    pub fn leg_venue(cl: &ClientId) -> Venue {
        match cl.leg {
            Leg::U => Venue::Upbit,
            Leg::B => Venue::Binance,
        }
    }

    /// All instruments with names, by id.
    pub fn instruments(&self) -> impl Iterator<Item = (InstrumentId, &InstName)> {
        self.insts
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (InstrumentId(i as u16), n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_markets_names_coins_and_legs() {
        let n = Names::from_markets(&kimp_core::testkit::btc_markets());
        assert_eq!(n.coin(0), "BTC");
        assert_eq!(n.coin(7), UNKNOWN);
        assert_eq!(n.coin_index("btc"), Some(0));
        assert_eq!(n.symbol(InstrumentId(1)), "BTCUSDT");
        assert_eq!(n.venue_name(InstrumentId(0)), "upbit");
        assert_eq!(n.inst(InstrumentId(0)).and_then(|i| i.coin), Some(0));
        assert_eq!(n.inst(InstrumentId(2)).and_then(|i| i.coin), None);
        assert_eq!(n.leg_inst(0, Leg::B), Some(InstrumentId(1)));
    }
}
