//! UTC timestamps without a date-time crate: the research inputs use a handful of layouts
//! (`2021-01-01T00:00:00Z`, `2025-08-16 23:15:00`, `2021-01-01`, epoch ms) and reports
//! print ISO dates; the civil-calendar arithmetic below is all that needs.

/// Milliseconds in one day.
pub const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

fn num(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    b.iter().try_fold(0i64, |a, &c| a.checked_mul(10)?.checked_add((c - b'0') as i64))
}

/// Parses a UTC time to epoch milliseconds: `YYYY-MM-DD`, `YYYY-MM-DD[T ]HH:MM[:SS[.fff]][Z]`,
/// or an integer epoch in seconds, milliseconds, microseconds or nanoseconds (told apart
/// by magnitude, as recorders disagree).
pub fn parse_utc_ms(s: &str) -> Option<i64> {
    let s = s.trim().trim_matches('"');
    let b = s.as_bytes();
    if !b.is_empty() && b.iter().all(u8::is_ascii_digit) {
        let v = num(b)?;
        return Some(epoch_to_ms(v));
    }
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (num(&b[0..4])?, num(&b[5..7])? as u32, num(&b[8..10])? as u32);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut ms = days_from_civil(y, m, d) * DAY_MS;
    let rest = s[10..].trim_end_matches('Z').trim_end_matches("+00:00");
    if rest.is_empty() {
        return Some(ms);
    }
    let rest = rest.strip_prefix(['T', ' '])?;
    let (hms, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let mut parts = hms.split(':');
    let h = num(parts.next()?.as_bytes())?;
    let mi = num(parts.next()?.as_bytes())?;
    let se = parts.next().map_or(Some(0), |p| num(p.as_bytes()))?;
    if parts.next().is_some() || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    ms += (h * 3_600 + mi * 60 + se) * 1_000;
    if !frac.is_empty() {
        let f = frac.as_bytes();
        if !f.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut v = 0i64;
        for i in 0..3 {
            v = v * 10 + f.get(i).map_or(0, |c| (c - b'0') as i64);
        }
        ms += v;
    }
    Some(ms)
}

/// An integer epoch in s / ms / µs / ns, to ms (magnitude decides: ms epochs of the
/// years 2001-2286 have 13 digits).
pub fn epoch_to_ms(v: i64) -> i64 {
    match v {
        v if v >= 100_000_000_000_000_000 => v / 1_000_000,
        v if v >= 100_000_000_000_000 => v / 1_000,
        v if v >= 100_000_000_000 => v,
        v => v * 1_000,
    }
}

/// Formats epoch ms as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn fmt_utc(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
    let s = ms.rem_euclid(DAY_MS) / 1_000;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3_600, s / 60 % 60, s % 60)
}

/// Formats epoch ms as `YYYY-MM-DD`.
pub fn fmt_date(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses a duration like `90d`, `12h`, `30m`, `45s`, `500ms` (or a bare number of days)
/// to milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let (n, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "d"),
    };
    let n = num(n.as_bytes())?;
    let k = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => DAY_MS,
        "w" => 7 * DAY_MS,
        _ => return None,
    };
    n.checked_mul(k).filter(|&v| v > 0)
}

/// A command-line duration (`30s`, `500ms`, `0.5ms`, `10m`, `2h`, `1d`; a bare number is
/// seconds), zero allowed.
pub fn parse_duration_or_zero(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let i = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (n, unit) = (&t[..i], t[i..].trim());
    let k = match unit {
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3_600.0,
        "d" => 86_400.0,
        _ => f64::NAN,
    };
    match n.parse::<f64>().map(|v| v * k) {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok(std::time::Duration::from_secs_f64(secs)),
        _ => Err(format!("{s:?} is not a duration like 30s, 500ms, 10m or 2h")),
    }
}

/// A command-line duration like [`parse_duration_or_zero`], but more than zero (the one
/// syntax every `kimp` command takes).
pub fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    match parse_duration_or_zero(s)? {
        d if d.is_zero() => Err(format!("{s:?} must be longer than zero")),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_of_the_shared_data() {
        assert_eq!(parse_utc_ms("2021-01-01T00:00:00Z"), Some(1_609_459_200_000));
        assert_eq!(parse_utc_ms("2021-01-01"), Some(1_609_459_200_000));
        assert_eq!(parse_utc_ms("2025-08-16 23:15:00"), Some(1_755_386_100_000));
        assert_eq!(parse_utc_ms("1704844800000"), Some(1_704_844_800_000));
        assert_eq!(parse_utc_ms("1704844800"), Some(1_704_844_800_000));
        assert_eq!(parse_utc_ms("2025-08-24T06:03:18.382000"), Some(1_756_015_398_382));
        assert_eq!(parse_utc_ms("2021-13-01"), None);
        assert_eq!(parse_utc_ms("yesterday"), None);
        assert_eq!(fmt_utc(1_755_386_100_000), "2025-08-16T23:15:00Z");
        for d in [-1000, 0, 18_000, 20_000, 30_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("90d"), Some(90 * DAY_MS));
        assert_eq!(parse_duration_ms("12h"), Some(12 * 3_600_000));
        assert_eq!(parse_duration_ms("30"), Some(30 * DAY_MS));
        assert_eq!(parse_duration_ms("0d"), None);
        assert_eq!(parse_duration_ms("3y"), None);
        assert_eq!(parse_duration_arg("30s"), Ok(std::time::Duration::from_secs(30)));
        assert_eq!(parse_duration_arg("30"), Ok(std::time::Duration::from_secs(30)));
        assert_eq!(parse_duration_arg("1h"), Ok(std::time::Duration::from_secs(3_600)));
        assert!(parse_duration_arg("0s").is_err() && parse_duration_arg("soon").is_err());
        assert_eq!(parse_duration_or_zero("0ms"), Ok(std::time::Duration::ZERO));
        assert_eq!(parse_duration_or_zero("0.5ms"), Ok(std::time::Duration::from_micros(500)));
        assert_eq!(parse_duration_or_zero("16.5h"), Ok(std::time::Duration::from_secs(59_400)));
        assert!(parse_duration_or_zero("-1s").is_err() && parse_duration_or_zero("3y").is_err());
    }
}
