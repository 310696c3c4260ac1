//! Exact number parsing from wire text, without floats.
//!
//! [`decimal`] is a fast path for the common wire form (`"70500.00"`, `"0.014"`, plain
//! digits with at most one dot) that defers to `kimp_core::units::parse_decimal` for
//! everything else (signs, exponents, long or over-precise fractions), so both give the
//! same answer on every input (checked by a property test). The fast path matters because
//! a real Binance depth message carries ~136 decimal strings.

use kimp_core::units::parse_decimal;

const POW10: [u64; 9] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000];

/// Parses a decimal into fixed-point 1e-8 units; same result as `parse_decimal`.
#[inline]
pub fn decimal(s: &[u8]) -> Option<i64> {
    // 18 digits always fit in u64 before scaling; longer inputs take the exact slow path.
    if s.is_empty() || s.len() > 18 {
        return parse_decimal(s);
    }
    let mut v: u64 = 0;
    let mut i = 0;
    while i < s.len() {
        let d = s[i].wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        v = v * 10 + d as u64;
        i += 1;
    }
    let int_digits = i;
    let mut frac = 0usize;
    if i < s.len() {
        if s[i] != b'.' {
            return parse_decimal(s);
        }
        i += 1;
        while i < s.len() {
            let d = s[i].wrapping_sub(b'0');
            if d > 9 {
                return parse_decimal(s);
            }
            v = v * 10 + d as u64;
            i += 1;
            frac += 1;
        }
        if int_digits + frac == 0 || frac > 8 {
            return parse_decimal(s);
        }
    } else if int_digits == 0 {
        return None;
    }
    let scaled = v.checked_mul(POW10[8 - frac])?;
    i64::try_from(scaled).ok()
}

/// Parses an unsigned decimal integer (ids, times); `None` on anything else or overflow.
#[inline]
pub fn uint(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(d as u64)?;
    }
    Some(v)
}

/// Writes `v` in decimal into `out`, returning the bytes written (no allocation).
#[inline]
pub fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut n = tmp.len();
    loop {
        n -= 1;
        tmp[n] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[n..]);
}

/// Writes a fixed-point value with exactly `dp` decimals (truncating, like
/// `kimp_core::units::DecimalDp`) without going through `fmt`.
pub fn write_fixed(out: &mut Vec<u8>, v: i64, dp: u32) {
    let dp = dp.min(8) as usize;
    if v < 0 {
        out.push(b'-');
    }
    let a = v.unsigned_abs();
    write_u64(out, a / 100_000_000);
    if dp > 0 {
        out.push(b'.');
        let frac = (a % 100_000_000) / POW10[8 - dp];
        let mut digits = [b'0'; 8];
        let mut f = frac;
        for k in (0..dp).rev() {
            digits[k] = b'0' + (f % 10) as u8;
            f /= 10;
        }
        out.extend_from_slice(&digits[..dp]);
    }
}

/// Writes a fixed-point value in its shortest exact form (`70500`, `0.0005`), like
/// `kimp_core::units::Decimal`.
pub fn write_plain(out: &mut Vec<u8>, v: i64) {
    let a = v.unsigned_abs();
    let mut frac = a % 100_000_000;
    let mut dp = 8u32;
    while dp > 0 && frac.is_multiple_of(10) {
        frac /= 10;
        dp -= 1;
    }
    write_fixed(out, v, dp);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kimp_core::units::{Decimal, DecimalDp};
    use proptest::prelude::*;

    #[test]
    fn wire_forms() {
        for s in [
            "70500.00",
            "0.000",
            "0.014",
            "12.111",
            "7",
            "0",
            ".5",
            "5.",
            "4.843e-05",
            "-1",
            "1.123456789",
        ] {
            assert_eq!(decimal(s.as_bytes()), parse_decimal(s.as_bytes()), "{s}");
        }
        assert_eq!(decimal(b""), None);
        assert_eq!(decimal(b"."), None);
        assert_eq!(uint(b"8824371922945"), Some(8_824_371_922_945));
        assert_eq!(uint(b"18446744073709551616"), None);
    }

    proptest! {
        #[test]
        fn fast_path_equals_core(s in "[-+]?[0-9]{0,12}(\\.[0-9]{0,10})?([eE][-+]?[0-9]{1,3})?") {
            prop_assert_eq!(decimal(s.as_bytes()), parse_decimal(s.as_bytes()));
        }

        #[test]
        fn any_bytes_equal_core(b in proptest::collection::vec(any::<u8>(), 0..24)) {
            prop_assert_eq!(decimal(&b), parse_decimal(&b));
        }

        #[test]
        fn formatting_matches_core(v in any::<i64>(), dp in 0u32..=8) {
            let mut out = Vec::new();
            write_fixed(&mut out, v, dp);
            prop_assert_eq!(String::from_utf8(out).unwrap(), DecimalDp(v, dp).to_string());
            let mut out = Vec::new();
            write_plain(&mut out, v);
            prop_assert_eq!(String::from_utf8(out).unwrap(), Decimal(v).to_string());
        }
    }
}
