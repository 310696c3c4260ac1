//! Lower-case hex without allocation.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `src` as lower-case hex into `out` (which must be `2 * src.len()` long).
#[inline]
pub fn hex_lower_into(src: &[u8], out: &mut [u8]) {
    for (i, &b) in src.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
}

/// Lower-case hex of a fixed-size digest, e.g. `hex_lower::<32, 64>(&mac)`.
#[inline]
pub fn hex_lower<const N: usize, const M: usize>(src: &[u8; N]) -> [u8; M] {
    let mut out = [0u8; M];
    hex_lower_into(src, &mut out[..2 * N.min(M / 2)]);
    out
}

/// Decodes hex (either case) into `out`; `None` on a bad digit or length.
pub(crate) fn decode_hex(s: &[u8], out: &mut [u8]) -> Option<()> {
    if s.len() != out.len() * 2 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nibble(s[2 * i])? << 4) | nibble(s[2 * i + 1])?;
    }
    Some(())
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}
