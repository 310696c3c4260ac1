//! One-minute candles of mid prices per venue and coin (and of the mid premium, as venue
//! `kimp`), built from the BBO and premium samples the store receives.

use std::collections::HashMap;

use kimp_core::units::Nanos;

const MINUTE_NS: u64 = 60_000_000_000;

/// One OHLC candle.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candle {
    /// Venue label (`upbit`, `binance`, or `kimp` for the premium in bps).
    pub venue: &'static str,
    /// Coin index.
    pub coin: u16,
    /// Start of the minute (designated timestamp).
    pub minute: Nanos,
    /// First value.
    pub open: f64,
    /// Highest value.
    pub high: f64,
    /// Lowest value.
    pub low: f64,
    /// Last value.
    pub close: f64,
    /// Samples folded in.
    pub samples: u32,
}

/// Open candles by (venue, coin).
#[derive(Debug, Default)]
pub struct Candles {
    open: HashMap<(&'static str, u16), Candle>,
    /// Samples older than the open candle's minute (dropped; counted).
    pub late: u64,
}

impl Candles {
    /// Folds one sample in; returns the previous candle when this sample starts a new minute.
    pub fn add(&mut self, venue: &'static str, coin: u16, ts: Nanos, v: f64) -> Option<Candle> {
        if !v.is_finite() {
            return None;
        }
        let minute = Nanos(ts.0 - ts.0 % MINUTE_NS);
        let fresh = Candle { venue, coin, minute, open: v, high: v, low: v, close: v, samples: 1 };
        match self.open.get_mut(&(venue, coin)) {
            None => {
                self.open.insert((venue, coin), fresh);
                None
            }
            Some(c) if c.minute == minute => {
                c.high = c.high.max(v);
                c.low = c.low.min(v);
                c.close = v;
                c.samples += 1;
                None
            }
            Some(c) if c.minute < minute => Some(std::mem::replace(c, fresh)),
            Some(_) => {
                self.late += 1;
                None
            }
        }
    }

    /// Takes every open candle (at shutdown; a later run's rows replace them by dedup key).
    pub fn drain(&mut self) -> Vec<Candle> {
        let mut v: Vec<Candle> = self.open.drain().map(|(_, c)| c).collect();
        v.sort_by_key(|c| (c.minute, c.venue, c.coin));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolls_per_minute_and_key() {
        let mut c = Candles::default();
        let t0 = 1_700_000_040_000_000_000u64; // a whole minute
        assert_eq!(c.add("upbit", 0, Nanos(t0 + 1), 10.0), None);
        assert_eq!(c.add("upbit", 0, Nanos(t0 + 2), 12.0), None);
        assert_eq!(c.add("binance", 0, Nanos(t0 + 3), 7.0), None);
        assert_eq!(c.add("upbit", 0, Nanos(t0 + 4), 9.0), None);
        let closed = c.add("upbit", 0, Nanos(t0 + MINUTE_NS + 5), 11.0).unwrap();
        assert_eq!(
            (closed.open, closed.high, closed.low, closed.close, closed.samples),
            (10.0, 12.0, 9.0, 9.0, 3)
        );
        assert_eq!(closed.minute, Nanos(t0));
        assert_eq!(c.add("upbit", 0, Nanos(t0 + 6), 1.0), None);
        assert_eq!(c.late, 1);
        let rest = c.drain();
        assert_eq!(rest.len(), 2);
        assert_eq!(rest[0].venue, "binance");
    }
}
