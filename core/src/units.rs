//! Fixed-point units: prices, quantities and money as integers.
//!
//! Every price, quantity and amount in the engine is an `i64` counted in units of
//! `10^-8` (the finest precision either venue quotes). One scale for everything means a
//! KRW price, a USDT price and a base quantity can be compared and multiplied without
//! per-instrument bookkeeping; which values an *order* may carry is the instrument's tick
//! and lot rule (`instrument.rs`). Floats appear only at the very end (premium ratios
//! for display and for threshold comparison), never in order prices or limits.
//!
//! Products of two fixed-point values go through `i128` and are checked: an overflow is an
//! `Err`, never a wrap.

use core::fmt;

/// Number of fixed-point units in one whole unit (10^8).
pub const SCALE: i64 = 100_000_000;
/// Decimal places represented by [`SCALE`].
pub const DECIMALS: u32 = 8;

/// Arithmetic on units overflowed or divided by zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("fixed-point overflow")
    }
}

macro_rules! fixed_newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// Zero.
            pub const ZERO: Self = Self(0);
            /// The raw fixed-point value (units of 1e-8).
            #[inline]
            pub const fn raw(self) -> i64 {
                self.0
            }
            /// From a whole number of units (e.g. `from_int(5)` = 5.0).
            #[inline]
            pub const fn from_int(v: i64) -> Self {
                Self(v * SCALE)
            }
            /// Checked addition.
            #[inline]
            pub fn checked_add(self, o: Self) -> Result<Self, Overflow> {
                self.0.checked_add(o.0).map(Self).ok_or(Overflow)
            }
            /// Checked subtraction.
            #[inline]
            pub fn checked_sub(self, o: Self) -> Result<Self, Overflow> {
                self.0.checked_sub(o.0).map(Self).ok_or(Overflow)
            }
            /// Saturating addition, for counters that must never panic.
            #[inline]
            pub fn saturating_add(self, o: Self) -> Self {
                Self(self.0.saturating_add(o.0))
            }
            /// True when the value is exactly zero.
            #[inline]
            pub const fn is_zero(self) -> bool {
                self.0 == 0
            }
            /// True when strictly positive.
            #[inline]
            pub const fn is_positive(self) -> bool {
                self.0 > 0
            }
            /// Absolute value.
            #[inline]
            pub const fn abs(self) -> Self {
                Self(self.0.abs())
            }
            /// Lossy conversion for display and analytics only.
            #[inline]
            pub fn to_f64(self) -> f64 {
                self.0 as f64 / SCALE as f64
            }
            /// Nearest fixed-point value to a float; for configuration and tests, never
            /// for wire input (use [`parse_decimal`]).
            pub fn from_f64(v: f64) -> Result<Self, Overflow> {
                let scaled = (v * SCALE as f64).round();
                if scaled.is_finite() && scaled.abs() < i64::MAX as f64 {
                    Ok(Self(scaled as i64))
                } else {
                    Err(Overflow)
                }
            }
            /// Parses a decimal string exactly (see [`parse_decimal`]).
            pub fn parse(s: &[u8]) -> Option<Self> {
                parse_decimal(s).map(Self)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), Decimal(self.0))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&Decimal(self.0), f)
            }
        }
    };
}

fixed_newtype!(
    /// A price in quote currency per base unit (KRW or USDT), fixed-point 1e-8.
    Price
);
fixed_newtype!(
    /// A base-asset quantity (coins), fixed-point 1e-8. Signed where it is a position.
    Qty
);
fixed_newtype!(
    /// An amount of Korean won, fixed-point 1e-8.
    Krw
);
fixed_newtype!(
    /// An amount of USDT, fixed-point 1e-8.
    Usdt
);
fixed_newtype!(
    /// An amount in an instrument's quote currency (KRW on Upbit, USDT on Binance).
    Quote
);

impl Qty {
    /// Negation (position of the other sign).
    #[inline]
    pub const fn neg(self) -> Self {
        Self(-self.0)
    }
    /// The smaller of two quantities.
    #[inline]
    pub fn min(self, o: Self) -> Self {
        if self.0 <= o.0 { self } else { o }
    }
}

impl Price {
    /// Notional `price × qty` in the quote currency, exact (truncated toward zero at 1e-8).
    #[inline]
    pub fn notional(self, qty: Qty) -> Result<Quote, Overflow> {
        mul_div(self.0, qty.0, SCALE).map(Quote)
    }
}

impl Quote {
    /// Reinterprets a quote amount as KRW (the caller knows the instrument quotes in KRW).
    #[inline]
    pub const fn krw(self) -> Krw {
        Krw(self.0)
    }
    /// Reinterprets a quote amount as USDT (the caller knows the instrument quotes in USDT).
    #[inline]
    pub const fn usdt(self) -> Usdt {
        Usdt(self.0)
    }
}

impl Usdt {
    /// Converts to KRW at `fx` KRW per USDT (a [`Price`]), exact to 1e-8.
    #[inline]
    pub fn to_krw(self, fx: Price) -> Result<Krw, Overflow> {
        mul_div(self.0, fx.0, SCALE).map(Krw)
    }
}

/// `a × b / d` through `i128`, checked, truncated toward zero.
#[inline]
pub fn mul_div(a: i64, b: i64, d: i64) -> Result<i64, Overflow> {
    if d == 0 {
        return Err(Overflow);
    }
    let v = (a as i128) * (b as i128) / (d as i128);
    i64::try_from(v).map_err(|_| Overflow)
}

/// Multiplies a fixed-point value by a rate given in parts per `10^8` (e.g. a fee of
/// 0.05 % is `50_000`), rounding up in magnitude so fees are never under-estimated.
#[inline]
pub fn apply_rate_ceil(v: i64, rate_e8: i64) -> Result<i64, Overflow> {
    let p = (v as i128) * (rate_e8 as i128);
    let d = SCALE as i128;
    let q = p / d;
    let r = p % d;
    let q = if r != 0 && (p > 0) {
        q + 1
    } else if r != 0 {
        q - 1
    } else {
        q
    };
    i64::try_from(q).map_err(|_| Overflow)
}

/// Parses an exact decimal number (`"70500.00"`, `"-0.5"`, `"1e-5"`, `"4.843e-05"`, `"7"`)
/// into fixed-point units of 1e-8, without floats and without allocating.
///
/// Returns `None` on malformed input, on more than 8 significant fractional digits that
/// are not zero (a precision the engine cannot hold exactly), and on overflow. This is
/// the parser the gateways use for every price and quantity on the wire, so it must
/// never panic on any byte string.
pub fn parse_decimal(s: &[u8]) -> Option<i64> {
    let (neg, body) = match s.first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    // Split off an exponent, if any.
    let (mant, exp) = match body.iter().position(|&c| c == b'e' || c == b'E') {
        Some(i) => (&body[..i], parse_exp(&body[i + 1..])?),
        None => (body, 0i32),
    };
    if mant.is_empty() {
        return None;
    }
    let mut int_digits: u32 = 0;
    let mut frac_digits: i32 = 0;
    let mut seen_dot = false;
    let mut digits: i128 = 0;
    let mut n_digits = 0u32;
    for &c in mant {
        match c {
            b'0'..=b'9' => {
                if n_digits >= 30 {
                    return None;
                }
                digits = digits * 10 + (c - b'0') as i128;
                n_digits += 1;
                if seen_dot {
                    frac_digits += 1;
                } else {
                    int_digits += 1;
                }
            }
            b'.' if !seen_dot => seen_dot = true,
            _ => return None,
        }
    }
    if n_digits == 0 {
        return None;
    }
    let _ = int_digits;
    // value = digits × 10^(exp - frac_digits); we want value × 10^8.
    let shift = exp.checked_sub(frac_digits)?.checked_add(DECIMALS as i32)?;
    let v = if shift >= 0 {
        if shift > 30 {
            if digits == 0 {
                0
            } else {
                return None;
            }
        } else {
            digits.checked_mul(10i128.pow(shift as u32))?
        }
    } else {
        let down = (-shift) as u32;
        if down > 38 {
            if digits == 0 {
                0
            } else {
                return None;
            }
        } else {
            let p = 10i128.pow(down);
            if digits % p != 0 {
                return None;
            }
            digits / p
        }
    };
    let v = i64::try_from(v).ok()?;
    Some(if neg { -v } else { v })
}

fn parse_exp(s: &[u8]) -> Option<i32> {
    let (neg, digits) = match s.first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 4 {
        return None;
    }
    let mut e: i32 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        e = e * 10 + (c - b'0') as i32;
    }
    Some(if neg { -e } else { e })
}

/// Formats a fixed-point value as a plain decimal without trailing zeros
/// (`7050000000000` → `70500`, `1000000` → `0.01`).
#[derive(Clone, Copy, Debug)]
pub struct Decimal(pub i64);

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        let neg = v < 0;
        let a = v.unsigned_abs();
        let int = a / SCALE as u64;
        let mut frac = a % SCALE as u64;
        if neg {
            f.write_str("-")?;
        }
        write!(f, "{int}")?;
        if frac != 0 {
            let mut width = DECIMALS as usize;
            while frac.is_multiple_of(10) {
                frac /= 10;
                width -= 1;
            }
            write!(f, ".{frac:0width$}")?;
        }
        Ok(())
    }
}

/// Formats a fixed-point value with exactly `dp` decimal places (truncating), as venues
/// want prices and quantities in their own precision (`"70500.00"`, `"0.010"`).
#[derive(Clone, Copy, Debug)]
pub struct DecimalDp(pub i64, pub u32);

impl fmt::Display for DecimalDp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (v, dp) = (self.0, self.1.min(DECIMALS));
        let neg = v < 0;
        let a = v.unsigned_abs();
        let int = a / SCALE as u64;
        let frac = (a % SCALE as u64) / 10u64.pow(DECIMALS - dp);
        if neg {
            f.write_str("-")?;
        }
        write!(f, "{int}")?;
        if dp > 0 {
            write!(f, ".{frac:0width$}", width = dp as usize)?;
        }
        Ok(())
    }
}

/// A timestamp or duration in nanoseconds. The engine never reads a clock: every call
/// takes `now` from the caller, which is what makes replay and live one code path.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
#[repr(transparent)]
pub struct Nanos(pub u64);

impl Nanos {
    /// From milliseconds.
    #[inline]
    pub const fn from_ms(ms: u64) -> Self {
        Self(ms.saturating_mul(1_000_000))
    }
    /// From microseconds.
    #[inline]
    pub const fn from_us(us: u64) -> Self {
        Self(us.saturating_mul(1_000))
    }
    /// Whole milliseconds.
    #[inline]
    pub const fn as_ms(self) -> u64 {
        self.0 / 1_000_000
    }
    /// `self - earlier`, or zero when `earlier` is later (clocks are never trusted to be
    /// monotonic across venues).
    #[inline]
    pub const fn since(self, earlier: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(earlier.0))
    }
    /// `self + d`, saturating.
    #[inline]
    pub const fn plus(self, d: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(d.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wire_decimals_exactly() {
        assert_eq!(parse_decimal(b"70500.00"), Some(70_500 * SCALE));
        assert_eq!(parse_decimal(b"0.000"), Some(0));
        assert_eq!(parse_decimal(b"0.00483381"), Some(483_381));
        assert_eq!(parse_decimal(b"4.843e-05"), Some(4_843));
        assert_eq!(parse_decimal(b"103493000.0"), Some(103_493_000 * SCALE));
        assert_eq!(parse_decimal(b"1E+2"), Some(100 * SCALE));
        assert_eq!(parse_decimal(b"-0.5"), Some(-SCALE / 2));
        assert_eq!(parse_decimal(b"7"), Some(7 * SCALE));
        assert_eq!(parse_decimal(b".5"), Some(SCALE / 2));
        assert_eq!(parse_decimal(b"0.100000000000"), Some(SCALE / 10));
    }

    #[test]
    fn rejects_malformed_and_unrepresentable() {
        for bad in [
            &b""[..],
            b"-",
            b".",
            b"1.2.3",
            b"abc",
            b"1e",
            b"1e+",
            b"0.000000001",
            b"99999999999999999999",
            b"1e99999",
            b"nan",
        ] {
            assert_eq!(parse_decimal(bad), None, "{:?}", core::str::from_utf8(bad));
        }
        assert_eq!(parse_decimal(b"0e99999"), None, "exponent too long is malformed");
        assert_eq!(parse_decimal(b"0e999"), Some(0));
    }

    #[test]
    fn formats_round_trip() {
        for v in [0i64, 1, 7_050_000_000_000, 483_381, -50_000_000, 103_493_000 * SCALE] {
            let s = Decimal(v).to_string();
            assert_eq!(parse_decimal(s.as_bytes()), Some(v), "{s}");
        }
        assert_eq!(DecimalDp(7_050_000_000_000, 2).to_string(), "70500.00");
        assert_eq!(DecimalDp(1_000_000, 3).to_string(), "0.010");
        assert_eq!(DecimalDp(103_493_000 * SCALE, 0).to_string(), "103493000");
    }

    #[test]
    fn notional_and_fx_are_exact_and_checked() {
        let px = Price::from_int(70_500);
        let q = Qty(1_000_000); // 0.01
        assert_eq!(px.notional(q), Ok(Quote::from_int(705)));
        assert_eq!(Usdt::from_int(2).to_krw(Price::from_int(1_469)), Ok(Krw::from_int(2_938)));
        assert_eq!(Price(i64::MAX).notional(Qty(i64::MAX)), Err(Overflow));
        assert_eq!(Krw(i64::MAX).checked_add(Krw(1)), Err(Overflow));
    }

    #[test]
    fn fee_rounds_up_in_magnitude() {
        // 0.05 % of 1.00000001 KRW-units rounds up.
        assert_eq!(apply_rate_ceil(SCALE + 1, 50_000), Ok(50_001));
        assert_eq!(apply_rate_ceil(-(SCALE + 1), 50_000), Ok(-50_001));
        assert_eq!(apply_rate_ceil(SCALE * 2, 50_000), Ok(100_000));
    }
}
