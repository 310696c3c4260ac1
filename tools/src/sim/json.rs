//! Small helpers to write venue JSON by hand, so key order and number formats follow the
//! fixtures exactly (serde would sort or reformat them).

use kimp_core::units::{Decimal, DecimalDp};

/// A fixed-point value as a plain decimal without trailing zeros (`"0.0005"`, `"103493000"`).
pub fn dec(v: i64) -> String {
    Decimal(v).to_string()
}

/// A wide fixed-point value (day and 24 h sums) formatted as [`dec`] formats an `i64`.
pub fn dec_wide(v: i128) -> String {
    if let Ok(n) = i64::try_from(v) {
        return dec(n);
    }
    let (sign, a) = if v < 0 { ("-", v.unsigned_abs()) } else { ("", v.unsigned_abs()) };
    let frac = format!("{:08}", a % 100_000_000);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{sign}{}", a / 100_000_000)
    } else {
        format!("{sign}{}.{frac}", a / 100_000_000)
    }
}

/// A fixed-point value with exactly `dp` decimals (`"70500.00"`).
pub fn dp(v: i64, dp: u32) -> String {
    DecimalDp(v, dp).to_string()
}

/// A JSON string literal (quoted, escaped).
pub fn s(v: &str) -> String {
    let mut o = String::with_capacity(v.len() + 2);
    o.push('"');
    for c in v.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// `[["px","qty"],...]` with fixed decimals (Binance levels).
pub fn levels(v: &[(i64, i64)], price_dp: u32, qty_dp: u32) -> String {
    let mut o = String::from("[");
    for (i, (p, q)) in v.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push_str(&format!("[\"{}\",\"{}\"]", dp(*p, price_dp), dp(*q, qty_dp)));
    }
    o.push(']');
    o
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Calendar parts of an epoch-ms instant shifted by `offset_h` hours.
pub fn parts(ms: u64, offset_h: i64) -> (i64, u32, u32, u32, u32, u32) {
    let secs = (ms / 1_000) as i64 + offset_h * 3_600;
    let (y, mo, d) = civil(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    (y, mo, d, (t / 3_600) as u32, ((t / 60) % 60) as u32, (t % 60) as u32)
}

/// Upbit REST `created_at`: KST ISO-8601 (`2026-03-11T23:40:59+09:00`).
pub fn kst_iso(ms: u64) -> String {
    let (y, mo, d, h, mi, s) = parts(ms, 9);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+09:00")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_the_fixtures() {
        assert_eq!(kst_iso(1_773_240_059_027), "2026-03-11T23:40:59+09:00");
        assert_eq!(parts(1_773_240_059_027, 0), (2026, 3, 11, 14, 40, 59));
        assert_eq!(dec(2_587_325_000), "25.87325");
        assert_eq!(dec_wide(2_587_325_000), "25.87325");
        let big = i64::MAX as i128 * 10 + 5_000_000;
        assert_eq!(dec_wide(big), "922337203685.5275807");
        assert_eq!(dec_wide(-(big - 5_000_000 - 70)), "-922337203685.47758");
        assert_eq!(dec_wide(1_000_000_000_000_000_000_000), "10000000000000");
        assert_eq!(dp(7_050_000_000_000, 2), "70500.00");
        assert_eq!(levels(&[(7_049_990_000_000, 351_200_000)], 2, 3), "[[\"70499.90\",\"3.512\"]]");
        assert_eq!(s("a\"b\\"), "\"a\\\"b\\\\\"");
    }
}
