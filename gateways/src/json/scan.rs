//! A pull scanner over JSON bytes that knows nothing but JSON's grammar.
//!
//! Why it exists: simd-json builds a tape of every value and converts every number to
//! f64/u64 before the parser sees it; the depth parser only wants raw decimal strings,
//! which it converts straight to fixed-point. Scanning once and skipping what is not
//! needed is measured faster on real depth messages (see examples/parse_bench.rs). It
//! checks the grammar of everything it reads; values it skips are checked for balanced
//! structure and string termination, not for full validity (e.g. a bad escape inside an
//! ignored string passes). No recursion deeper than [`MAX_DEPTH`], no panics, no
//! allocation.

use crate::codec::{CodecError, CodecResult};

/// Deepest nesting the scanner skips through.
pub const MAX_DEPTH: u32 = 64;

/// A position in a JSON document.
#[derive(Clone, Copy, Debug)]
pub struct Cursor<'a> {
    b: &'a [u8],
    p: usize,
}

const M: CodecError = CodecError::Malformed("json");

impl<'a> Cursor<'a> {
    /// A cursor at the start of `b`.
    #[inline]
    pub fn new(b: &'a [u8]) -> Self {
        Self { b, p: 0 }
    }

    /// Byte offset.
    #[inline]
    pub fn pos(&self) -> usize {
        self.p
    }

    /// The whole input.
    #[inline]
    pub fn input(&self) -> &'a [u8] {
        self.b
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.p) {
            if c == b' ' || c == b'\n' || c == b'\r' || c == b'\t' {
                self.p += 1;
            } else {
                break;
            }
        }
    }

    /// Next non-space byte, not consumed.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.p).copied()
    }

    /// Consumes `c` (after spaces) or fails.
    #[inline]
    pub fn eat(&mut self, c: u8) -> CodecResult<()> {
        if self.peek() == Some(c) {
            self.p += 1;
            Ok(())
        } else {
            Err(M)
        }
    }

    /// True (and consumed) when the document has nothing but spaces left.
    pub fn at_end(&mut self) -> bool {
        self.ws();
        self.p >= self.b.len()
    }

    /// A string's raw bytes between the quotes (escapes left as written).
    #[inline]
    pub fn str(&mut self) -> CodecResult<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.p;
        loop {
            match self.b.get(self.p) {
                Some(b'"') => {
                    let s = &self.b[start..self.p];
                    self.p += 1;
                    return Ok(s);
                }
                Some(b'\\') => self.p += 2,
                Some(&c) if c < 0x20 => return Err(M),
                Some(_) => self.p += 1,
                None => return Err(M),
            }
        }
    }

    /// A number's raw text (`-4.843e-05`), checked only for its character set; the
    /// caller's exact parser rejects bad forms.
    #[inline]
    pub fn num(&mut self) -> CodecResult<&'a [u8]> {
        self.ws();
        let start = self.p;
        while let Some(&c) = self.b.get(self.p) {
            if c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E') {
                self.p += 1;
            } else {
                break;
            }
        }
        if self.p == start { Err(M) } else { Ok(&self.b[start..self.p]) }
    }

    /// Either a string's contents or a number's text (Binance quotes decimals, Upbit
    /// does not; ids are numbers on both).
    #[inline]
    pub fn str_or_num(&mut self) -> CodecResult<&'a [u8]> {
        if self.peek() == Some(b'"') { self.str() } else { self.num() }
    }

    /// An unsigned integer value.
    #[inline]
    pub fn u64(&mut self, field: &'static str) -> CodecResult<u64> {
        let t = self.num()?;
        crate::num::uint(t).ok_or(CodecError::BadNumber(field))
    }

    /// A fixed-point decimal, quoted or not. Plain unquoted numbers (Upbit's
    /// `103493000.0`, `0.04910155`) are converted while scanned; other forms go through
    /// `num::decimal` on the text.
    #[inline]
    pub fn decimal(&mut self, field: &'static str) -> CodecResult<i64> {
        const POW10: [u64; 9] =
            [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000];
        if self.peek() == Some(b'"') {
            let t = self.str()?;
            return crate::num::decimal(t).ok_or(CodecError::BadNumber(field));
        }
        let b = self.b;
        let start = self.p;
        let mut p = start;
        let mut v: u64 = 0;
        let mut dot = usize::MAX;
        while let Some(&c) = b.get(p) {
            let d = c.wrapping_sub(b'0');
            if d <= 9 {
                v = v.wrapping_mul(10).wrapping_add(d as u64);
            } else if c == b'.' && dot == usize::MAX {
                dot = p;
            } else if matches!(c, b'e' | b'E' | b'+' | b'-' | b'.') {
                let t = self.num()?;
                return crate::num::decimal(t).ok_or(CodecError::BadNumber(field));
            } else {
                break;
            }
            p += 1;
        }
        let text = &b[start..p];
        self.p = p;
        let frac = if dot == usize::MAX { 0 } else { p - dot - 1 };
        let digits = text.len() - (dot != usize::MAX) as usize;
        if digits == 0 || digits > 18 || frac > 8 {
            return crate::num::decimal(text).ok_or(CodecError::BadNumber(field));
        }
        v.checked_mul(POW10[8 - frac])
            .and_then(|x| i64::try_from(x).ok())
            .ok_or(CodecError::BadNumber(field))
    }

    /// A quoted plain decimal (`"61496.50"`) converted while it is scanned, so the
    /// bytes are read once; anything unusual (escapes, exponents, signs, long or
    /// over-precise text, or an unquoted number) goes through [`Cursor::decimal`], so the
    /// result always equals `parse_decimal` of the text.
    #[inline]
    pub fn quoted_decimal(&mut self, field: &'static str) -> CodecResult<i64> {
        const POW10: [u64; 9] =
            [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000];
        let b = self.b;
        let mut p = self.p;
        if b.get(p) != Some(&b'"') {
            return self.decimal(field);
        }
        p += 1;
        let start = p;
        let mut v: u64 = 0;
        let mut dot = usize::MAX;
        loop {
            let Some(&c) = b.get(p) else { return Err(M) };
            let d = c.wrapping_sub(b'0');
            if d <= 9 {
                // Wrapping is harmless: more than 18 digits is re-parsed below.
                v = v.wrapping_mul(10).wrapping_add(d as u64);
            } else if c == b'.' && dot == usize::MAX {
                dot = p;
            } else if c == b'"' {
                break;
            } else {
                return self.decimal(field);
            }
            p += 1;
        }
        let text = &b[start..p];
        self.p = p + 1;
        let frac = if dot == usize::MAX { 0 } else { p - dot - 1 };
        let digits = text.len() - (dot != usize::MAX) as usize;
        if digits == 0 || digits > 18 || frac > 8 {
            return crate::num::decimal(text).ok_or(CodecError::BadNumber(field));
        }
        v.checked_mul(POW10[8 - frac])
            .and_then(|x| i64::try_from(x).ok())
            .ok_or(CodecError::BadNumber(field))
    }

    /// `true`/`false`.
    pub fn bool(&mut self) -> CodecResult<bool> {
        self.ws();
        let r = &self.b[self.p.min(self.b.len())..];
        if r.starts_with(b"true") {
            self.p += 4;
            Ok(true)
        } else if r.starts_with(b"false") {
            self.p += 5;
            Ok(false)
        } else {
            Err(M)
        }
    }

    /// True (and consumed) when the next value is `null`.
    pub fn null(&mut self) -> bool {
        self.ws();
        if self.b.get(self.p..self.p + 4) == Some(b"null") {
            self.p += 4;
            true
        } else {
            false
        }
    }

    /// Opens an object (`{`).
    #[inline]
    pub fn object(&mut self) -> CodecResult<()> {
        self.eat(b'{')
    }

    /// The next key of an open object, or `None` at its `}`. `first` says whether this
    /// is the first key (no comma before it).
    #[inline]
    pub fn key(&mut self, first: &mut bool) -> CodecResult<Option<&'a [u8]>> {
        match self.peek() {
            Some(b'}') => {
                self.p += 1;
                return Ok(None);
            }
            Some(b',') if !*first => self.p += 1,
            Some(b'"') if *first => {}
            _ => return Err(M),
        }
        *first = false;
        let k = self.str()?;
        self.eat(b':')?;
        Ok(Some(k))
    }

    /// Opens an array (`[`).
    #[inline]
    pub fn array(&mut self) -> CodecResult<()> {
        self.eat(b'[')
    }

    /// True when the open array has another element (consuming the comma), false at its
    /// `]` (consumed).
    #[inline]
    pub fn next_elem(&mut self, first: &mut bool) -> CodecResult<bool> {
        match self.peek() {
            Some(b']') => {
                self.p += 1;
                Ok(false)
            }
            Some(b',') if !*first => {
                self.p += 1;
                Ok(true)
            }
            Some(_) if *first => {
                *first = false;
                Ok(true)
            }
            _ => Err(M),
        }
    }

    /// Consumes `lit` when the input continues with exactly those bytes (no spaces
    /// skipped); otherwise leaves the cursor where it was and returns false. For
    /// schema-aware fast paths that fall back to the general scan on any surprise.
    #[inline]
    pub fn lit(&mut self, lit: &[u8]) -> bool {
        let hit = self.b.get(self.p..self.p + lit.len()) == Some(lit);
        if hit {
            self.p += lit.len();
        }
        hit
    }

    /// An unquoted number written exactly `digits[.digits]` at the cursor (no spaces, at
    /// most 18 digits and 8 decimals, followed by something that cannot continue a
    /// number), as fixed-point 1e-8. `None` — cursor unmoved — for anything else, so a
    /// schema-aware fast path can fall back to [`Cursor::decimal`], which gives the same
    /// value for every input this accepts.
    #[inline]
    pub fn plain_decimal(&mut self) -> Option<i64> {
        const POW10: [u64; 9] =
            [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000];
        let b = self.b;
        let mut p = self.p;
        let mut v: u64 = 0;
        // Wrapping is harmless: more than 18 digits is refused below.
        while let Some(d) = b.get(p).map(|c| c.wrapping_sub(b'0')).filter(|&d| d <= 9) {
            v = v.wrapping_mul(10).wrapping_add(d as u64);
            p += 1;
        }
        let int_digits = p - self.p;
        let mut frac = 0;
        if b.get(p) == Some(&b'.') {
            p += 1;
            let f = p;
            while let Some(d) = b.get(p).map(|c| c.wrapping_sub(b'0')).filter(|&d| d <= 9) {
                v = v.wrapping_mul(10).wrapping_add(d as u64);
                p += 1;
            }
            frac = p - f;
        }
        let digits = int_digits + frac;
        if digits == 0 || digits > 18 || frac > 8 {
            return None;
        }
        if matches!(b.get(p), None | Some(b'.' | b'e' | b'E' | b'+' | b'-')) {
            return None;
        }
        let x = i64::try_from(v.checked_mul(POW10[8 - frac])?).ok()?;
        self.p = p;
        Some(x)
    }

    /// Skips one value of any kind.
    pub fn skip(&mut self) -> CodecResult<()> {
        match self.peek() {
            Some(b'"') => self.str().map(|_| ()),
            Some(b'{') | Some(b'[') => self.skip_nested(),
            Some(b't') | Some(b'f') => self.bool().map(|_| ()),
            Some(b'n') => {
                if self.null() {
                    Ok(())
                } else {
                    Err(M)
                }
            }
            Some(_) => self.num().map(|_| ()),
            None => Err(M),
        }
    }

    /// Skips a nested object/array iteratively, tracking strings and depth.
    fn skip_nested(&mut self) -> CodecResult<()> {
        let mut depth = 0u32;
        loop {
            match self.b.get(self.p) {
                Some(b'{') | Some(b'[') => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(M);
                    }
                    self.p += 1;
                }
                Some(b'}') | Some(b']') => {
                    self.p += 1;
                    depth = depth.checked_sub(1).ok_or(M)?;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                Some(b'"') => {
                    self.str()?;
                }
                Some(_) => self.p += 1,
                None => return Err(M),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_objects_and_arrays() {
        let j = br#" {"a" : "x\"y", "b":[1,-2.5e-3,[true,null]], "c":{"d":{}} ,"e":false} "#;
        let mut c = Cursor::new(j);
        c.object().unwrap();
        let mut first = true;
        let mut keys = vec![];
        while let Some(k) = c.key(&mut first).unwrap() {
            keys.push(k.to_vec());
            match k {
                b"a" => assert_eq!(c.str().unwrap(), br#"x\"y"#),
                b"b" => {
                    c.array().unwrap();
                    let mut f = true;
                    assert!(c.next_elem(&mut f).unwrap());
                    assert_eq!(c.u64("b").unwrap(), 1);
                    assert!(c.next_elem(&mut f).unwrap());
                    assert_eq!(c.num().unwrap(), b"-2.5e-3");
                    assert!(c.next_elem(&mut f).unwrap());
                    c.skip().unwrap();
                    assert!(!c.next_elem(&mut f).unwrap());
                }
                _ => c.skip().unwrap(),
            }
        }
        assert!(c.at_end());
        assert_eq!(keys.len(), 4);
    }

    #[test]
    fn refuses_broken_input() {
        for j in [
            &br#"{"a":"#[..],
            br#"{"a" "b"}"#,
            br#"{,"a":1}"#,
            br#"[1,,2]"#,
            br#"{"a":[}"#,
            b"\"abc",
            b"}",
        ] {
            let mut c = Cursor::new(j);
            let r = (|| -> CodecResult<()> {
                c.skip()?;
                if c.at_end() { Ok(()) } else { Err(M) }
            })();
            // skip() is lenient inside nested values; the key walk is strict.
            let mut c2 = Cursor::new(j);
            let strict = (|| -> CodecResult<()> {
                c2.object()?;
                let mut f = true;
                while c2.key(&mut f)?.is_some() {
                    if c2.peek() == Some(b'[') {
                        c2.array()?;
                        let mut g = true;
                        while c2.next_elem(&mut g)? {
                            c2.skip()?;
                        }
                    } else {
                        c2.skip()?;
                    }
                }
                Ok(())
            })();
            assert!(r.is_err() || strict.is_err(), "{:?}", String::from_utf8_lossy(j));
        }
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(Cursor::new(br#""1.5"#).quoted_decimal("x").is_err());
        assert!(Cursor::new(deep.as_bytes()).skip().is_err());
    }

    proptest::proptest! {
        #[test]
        fn quoted_decimal_equals_core(s in "[-+]?[0-9]{0,20}(\\.[0-9]{0,12})?([eE][-+]?[0-9]{1,3})?|[0-9.\\\\a-z]{0,8}") {
            let j = format!("\"{s}\"");
            let got = Cursor::new(j.as_bytes()).quoted_decimal("x").ok();
            proptest::prop_assert_eq!(got, kimp_core::units::parse_decimal(s.as_bytes()), "{}", j);
            // Unquoted, as Upbit sends numbers, followed by a delimiter.
            let u = format!("{s},");
            let mut c = Cursor::new(u.as_bytes());
            let got = c.decimal("x").ok();
            // The strict form agrees with the general one wherever it answers, and ends
            // where the number ends.
            let mut f = Cursor::new(u.as_bytes());
            if let Some(v) = f.plain_decimal() {
                proptest::prop_assert_eq!(Some(v), got, "{}", u);
                proptest::prop_assert_eq!(f.pos(), c.pos(), "{}", u);
            } else {
                proptest::prop_assert_eq!(f.pos(), 0);
            }
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b".eE+-".contains(&b)) {
                proptest::prop_assert_eq!(got, kimp_core::units::parse_decimal(s.as_bytes()), "{}", u);
            }
        }
    }
}
